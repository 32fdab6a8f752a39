//! Starting crawls over HTTP: `POST /crawls` with a registered spider,
//! its arguments and settings; the refusals; `DELETE /crawls/{id}`; the
//! retention of finished crawls; and a crawl started this way outliving
//! the server's workers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use spinneret::control::{ControlApi, ControlApiBuilder};
use spinneret::{Counter, Crawler, Request, SpiderArgs, SpiderRegistry};
use tokio::sync::mpsc;

use crate::control::{assert_error, scrape, Api, TOKEN};
use crate::fixture::{serve, spawn_app, Site};
use crate::log::Records;
use crate::spiders::LinkSpider;

/// The spiders the API may start: `links` (from `-a url=URL`) and, with
/// the `distributed` feature, `distributed` (the same, on a Redis given by
/// `-a redis=URL`).
fn spiders() -> SpiderRegistry {
    let mut spiders = SpiderRegistry::new();
    spiders.register(
        "links",
        "Follows every same-host link from url",
        |args: &SpiderArgs| {
            let start = Request::get(args.require("url")?)?;
            Ok(Crawler::builder(LinkSpider::new(vec![start])))
        },
    );
    #[cfg(feature = "distributed")]
    spiders.register(
        "distributed",
        "links, on the Redis at redis",
        |args: &SpiderArgs| {
            let start = Request::get(args.require("url")?)?;
            Ok(Crawler::builder(LinkSpider::new(vec![start])).redis(args.require("redis")?))
        },
    );
    spiders
}

/// The API with `spiders()`, as `builder` configures it otherwise.
fn api(builder: ControlApiBuilder) -> Api {
    Api::with(builder.spiders(spiders()))
}

/// `POST /crawls` with `body`.
async fn start(api: &Api, body: &Value) -> (u16, Value) {
    api.call("POST", "/crawls", Some(TOKEN), Some(&body.to_string()))
        .await
}

/// Starts `links` from `url` as crawl `id`; fails the test if refused.
async fn start_links(api: &Api, id: &str, url: &str) {
    let answer = start(
        api,
        &json!({"spider": "links", "id": id, "args": {"url": url}}),
    )
    .await;
    assert_eq!(answer.0, 201, "{answer:?}");
    assert_eq!(answer.1["data"]["id"], id);
}

async fn delete(api: &Api, id: &str) -> (u16, Value) {
    api.call("DELETE", &format!("/crawls/{id}"), Some(TOKEN), None)
        .await
}

/// The ids `GET /crawls` lists, in order.
async fn listed(api: &Api) -> Vec<String> {
    let (status, list) = api.get("/crawls").await;
    assert_eq!(status, 200);
    let ids = list["data"].as_array().unwrap().iter();
    ids.map(|c| c["id"].as_str().unwrap().to_string()).collect()
}

/// A one-page site recording the `User-Agent` of each request.
fn agent_site() -> (crate::fixture::Server, Arc<Mutex<Vec<String>>>) {
    let agents = Arc::new(Mutex::new(Vec::new()));
    let seen = agents.clone();
    let server = spawn_app("127.0.0.1", 1, move |cfg| {
        let seen = seen.clone();
        cfg.route(
            "/",
            web::get().to(move |req: HttpRequest| {
                let agent = req.headers().get("user-agent").map(|v| v.to_str().unwrap());
                seen.lock().unwrap().push(agent.unwrap_or("").to_string());
                async {
                    HttpResponse::Ok()
                        .content_type("text/html")
                        .body("<p>hi</p>")
                }
            }),
        );
    });
    (server, agents)
}

#[actix::test]
async fn post_starts_a_registered_spider_with_its_arguments_and_settings() {
    let records = Records::default();
    let api = api(ControlApi::builder(TOKEN).logger(records.logger()));
    let site = serve(7);
    let (status, started) = start(
        &api,
        &json!({"spider": "links", "id": "tree", "args": {"url": site.url("/p/0")},
                "settings": {"concurrency": 2}}),
    )
    .await;
    assert_eq!(status, 201, "{started:?}");
    assert_eq!(started["status"], 1);
    assert_eq!(started["data"]["id"], "tree");
    assert_eq!(started["data"]["name"], "links");
    let s = api.api.get("tree").unwrap().join().await.unwrap();
    assert_eq!(s.finish_reason.as_deref(), Some("finished"));
    // /p/0../p/6 and /missing, each once.
    assert_eq!(s.counter(Counter::ResponseCount), 8);
    assert_eq!(site.seen.total(), 8);
    assert_eq!(site.seen.max_hits(), 1);
    let (status, shown) = api.get("/crawls/tree").await;
    assert_eq!(status, 200);
    assert_eq!(shown["data"]["state"], "finished");
    assert_eq!(shown["data"]["pages"], 8);
    assert_eq!(shown["data"]["items"], 7);
    let lines = records.lines("crawl started");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["crawl"], "tree");
    assert_eq!(lines[0]["spider"], "links");

    // The settings reach the crawl: its User-Agent is the one given. No
    // id given: the crawl gets a UUID.
    let (agents_server, agents) = agent_site();
    let url = format!("http://{}/", agents_server.addr);
    let (status, started) = start(
        &api,
        &json!({"spider": "links", "args": {"url": url},
                "settings": {"user_agent": "settings-agent/1"}}),
    )
    .await;
    assert_eq!(status, 201, "{started:?}");
    let id = started["data"]["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    api.api.get(id).unwrap().join().await.unwrap();
    assert_eq!(*agents.lock().unwrap(), ["settings-agent/1"]);
    assert_eq!(listed(&api).await, ["tree", id]);
}

#[actix::test]
async fn refused_starts_say_why_and_register_nothing() {
    let api = api(ControlApi::builder(TOKEN));
    let site = serve(3);
    let url = site.url("/p/0");
    let refused = |body: Value| {
        let api = &api;
        async move { start(api, &body).await }
    };
    let unknown = refused(json!({"spider": "nope", "args": {"url": url}})).await;
    assert_error(&unknown, 404, 1002, "not_found");
    let message = unknown.1["message"].as_str().unwrap();
    let registered = if cfg!(feature = "distributed") {
        "distributed, links"
    } else {
        "links"
    };
    assert!(
        message.contains(&format!(
            "unknown spider \"nope\"; registered: {registered}"
        )),
        "{message}"
    );
    for (body, named) in [
        // An unknown setting and a mistyped one are named.
        (
            json!({"spider": "links", "args": {"url": url}, "settings": {"nope": 1}}),
            "settings: unknown setting \"nope\"",
        ),
        (
            json!({"spider": "links", "args": {"url": url}, "settings": {"concurrency": "x"}}),
            "settings: concurrency = \"x\": expected a whole number, at least 1",
        ),
        (
            json!({"spider": "links", "args": {"url": url}, "settings": [1]}),
            "settings must be a JSON object",
        ),
        // The factory's refusal, and the builder's.
        (
            json!({"spider": "links"}),
            "missing spider argument \"url\"",
        ),
        (
            json!({"spider": "links", "args": {"url": "ftp://x/"}}),
            "invalid URL",
        ),
        (
            json!({"spider": "links", "args": {"url": url}, "settings": {"concurrency": 0}}),
            "settings: concurrency = 0: expected a whole number, at least 1",
        ),
        (
            json!({"spider": "links", "args": {"url": url, "depth": [1]}}),
            "argument \"depth\" must be text, a number or a boolean",
        ),
        (json!({"args": {"url": url}}), "spider is required"),
        (
            json!({"spider": "links", "args": {"url": url}, "when": "now"}),
            "unknown parameter \"when\"",
        ),
        (
            json!({"spider": "links", "args": {"url": url}, "id": "a/b"}),
            "crawl id \"a/b\"",
        ),
    ] {
        let answer = refused(body.clone()).await;
        assert_error(&answer, 400, 1005, "bad_parameter");
        let message = answer.1["message"].as_str().unwrap();
        assert!(message.contains(named), "{body}: {message}");
    }
    #[cfg(feature = "distributed")]
    refused_when_redis_is_unreachable(&api, &url).await;
    assert_eq!(listed(&api).await, Vec::<String>::new());
    assert_eq!(site.seen.total(), 0);

    // An id already registered is a conflict, and starts nothing.
    start_links(&api, "once", &url).await;
    api.api.get("once").unwrap().join().await.unwrap();
    let again = refused(json!({"spider": "links", "id": "once", "args": {"url": url}})).await;
    assert_error(&again, 409, 1004, "illegal_state");
    assert_eq!(listed(&api).await, ["once"]);
    // /p/0../p/2 and /missing, once.
    assert_eq!(site.seen.total(), 4);

    // Without spiders, POST /crawls says so.
    let bare = Api::with(ControlApi::builder(TOKEN));
    let answer = start(&bare, &json!({"spider": "links"})).await;
    assert_error(&answer, 405, 1003, "method_not_allowed");
    let message = answer.1["message"].as_str().unwrap();
    assert!(message.contains("ControlApiBuilder::spiders"), "{message}");
}

/// A spider on a Redis nobody listens on is refused as unavailable.
#[cfg(feature = "distributed")]
async fn refused_when_redis_is_unreachable(api: &Api, url: &str) {
    // Redis unreachable at the start: the dependency is unavailable.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redis = format!("redis://127.0.0.1:{port}/");
    let answer = start(
        api,
        &json!({"spider": "distributed", "args": {"url": url, "redis": redis}}),
    )
    .await;
    assert_error(&answer, 503, 1006, "unavailable");
    let message = answer.1["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("Redis unreachable at {redis}")),
        "{message}"
    );
}

/// A gated crawl started over HTTP as `id` (its first page has arrived
/// when this returns).
async fn gated(api: &Api, site: &mut Site, id: &str) {
    start_links(api, id, &site.url("/gated/0")).await;
    assert_eq!(site.arrival().await, "/gated/0");
}

#[actix::test]
async fn delete_removes_a_finished_crawl_and_refuses_a_running_one() {
    let records = Records::default();
    let api = api(ControlApi::builder(TOKEN).logger(records.logger()));
    let mut site = serve(7);
    gated(&api, &mut site, "g").await;
    let answer = delete(&api, "g").await;
    assert_error(&answer, 409, 1004, "illegal_state");
    assert!(answer.1["message"]
        .as_str()
        .unwrap()
        .contains("crawl \"g\" is running: stop it first"));
    assert_error(&delete(&api, "nope").await, 404, 1002, "not_found");
    site.open_gate();
    let s = api.api.get("g").unwrap().join().await.unwrap();
    // /gated/0, /p/0../p/6 and /missing.
    assert_eq!(s.counter(Counter::ResponseCount), 9);
    let (status, deleted) = delete(&api, "g").await;
    assert_eq!(status, 200, "{deleted:?}");
    assert_eq!(deleted["data"]["id"], "g");
    assert_eq!(deleted["data"]["state"], "finished");
    assert_eq!(deleted["data"]["pages"], 9);
    assert_error(&api.get("/crawls/g").await, 404, 1002, "not_found");
    assert_error(&delete(&api, "g").await, 404, 1002, "not_found");
    assert!(api.api.get("g").is_none());
    let lines = records.lines("removed finished crawl");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["reason"], "deleted");
    // A deletion is not the retention.
    assert_eq!(api.get("/").await.1["data"]["removed_finished"], 0);
}

/// The retention counter, from `/metrics` and from `GET /` alike.
async fn removed(api: &Api) -> u64 {
    let metrics = scrape(api).await;
    let found: Vec<_> = metrics
        .samples
        .iter()
        .filter(|s| s.metric == "spinneret_control_removed_finished_total")
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    let prometheus_parse::Value::Counter(n) = found[0].value else {
        panic!("not a counter: {found:?}");
    };
    let root = api.get("/").await.1["data"]["removed_finished"].as_u64();
    assert_eq!(root, Some(n as u64));
    n as u64
}

#[actix::test]
async fn retention_removes_the_first_finished_and_never_a_running_crawl() {
    let records = Records::default();
    let api = api(ControlApi::builder(TOKEN)
        .logger(records.logger())
        .retain_finished(2));
    let mut gated_site = serve(7);
    gated(&api, &mut gated_site, "g").await;
    let site = serve(3);
    // One after the other: each finishes (and is seen finished) before
    // the next starts.
    for (id, kept, gone) in [
        ("a", vec!["g", "a"], 0),
        ("b", vec!["g", "a", "b"], 0),
        ("c", vec!["g", "b", "c"], 1),
        ("d", vec!["g", "c", "d"], 2),
    ] {
        start_links(&api, id, &site.url("/p/0")).await;
        api.api.get(id).unwrap().join().await.unwrap();
        assert_eq!(listed(&api).await, kept, "after {id}");
        assert_eq!(removed(&api).await, gone, "after {id}");
    }
    // g was registered first but finishes last: c, which finished first
    // of the three, goes.
    gated_site.open_gate();
    api.api.get("g").unwrap().join().await.unwrap();
    assert_eq!(listed(&api).await, ["g", "d"]);
    assert_eq!(removed(&api).await, 3);
    let lines = records.lines("removed finished crawl");
    let ids: Vec<&str> = lines.iter().map(|l| l["crawl"].as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert!(lines.iter().all(|l| l["reason"] == "retention"));
}

/// `api` mounted at `/api` on a server of one worker, with a route
/// `/probe` that leaves a task on the worker; the receiver ends once the
/// server is gone, that task dropped with its worker.
fn serve_with_probe(api: &ControlApi) -> (Api, mpsc::UnboundedReceiver<()>) {
    let (probe_tx, probe_rx) = mpsc::unbounded_channel::<()>();
    let mounted = api.clone();
    let server = spawn_app("127.0.0.1", 1, move |cfg| {
        let probe = probe_tx.clone();
        cfg.service(mounted.scope("/api")).route(
            "/probe",
            web::get().to(move || {
                let probe = probe.clone();
                actix_rt::spawn(async move {
                    let _held = probe;
                    std::future::pending::<()>().await
                });
                async { HttpResponse::Ok().finish() }
            }),
        );
    });
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(20))
        .finish();
    let http = Api {
        api: api.clone(),
        server,
        client,
    };
    (http, probe_rx)
}

/// Leaves a task on the server's worker, stops the server and waits until
/// that task has been dropped with the worker.
async fn stop_server(http: Api, mut probe: mpsc::UnboundedReceiver<()>) {
    let url = format!("http://{}/probe", http.server.addr);
    let res = http.client.get(url).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    drop(http);
    let gone = tokio::time::timeout(Duration::from_secs(20), probe.recv()).await;
    assert_eq!(gone, Ok(None), "the worker's tasks were not dropped");
}

#[actix::test]
async fn a_crawl_started_over_http_outlives_the_servers_workers() {
    let api = ControlApi::builder(TOKEN)
        .spiders(spiders())
        .build()
        .unwrap();
    let (http, probe) = serve_with_probe(&api);
    let mut site = serve(7);
    gated(&http, &mut site, "survivor").await;
    stop_server(http, probe).await;

    site.open_gate();
    let s = api.get("survivor").unwrap().join().await.unwrap();
    assert_eq!(s.finish_reason.as_deref(), Some("finished"));
    // /gated/0, /p/0../p/6 and /missing, each once.
    assert_eq!(s.counter(Counter::ResponseCount), 9);
    assert_eq!(site.seen.total(), 9);
}

#[actix::test]
async fn dropping_the_api_lets_the_crawls_it_started_finish() {
    let api = ControlApi::builder(TOKEN)
        .spiders(spiders())
        .build()
        .unwrap();
    let (http, probe) = serve_with_probe(&api);
    let mut site = serve(7);
    gated(&http, &mut site, "g").await;
    let crawl = api.get("g").unwrap();
    // Every clone of the API is gone once the server is.
    drop(api);
    stop_server(http, probe).await;

    site.open_gate();
    let s = crawl.join().await.unwrap();
    assert_eq!(s.finish_reason.as_deref(), Some("finished"));
    assert_eq!(s.counter(Counter::ResponseCount), 9);
}
