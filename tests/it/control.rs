//! The control API mounted in an actix-web server the test starts: the
//! token guard on every route, pause and resume, stop, the error envelope,
//! `/metrics` against the stats snapshot, and the event stream.

use std::time::Duration;

use actix_web::web::Bytes;
use futures_util::StreamExt as _;
use serde_json::{json, Value};
use spinneret::control::{metric_name, ControlApi, ControlApiBuilder};
use spinneret::{Counter, CrawlHandle, Crawler};

use crate::fixture::{serve, spawn_app, Server, Site};
use crate::log::Records;
use crate::spiders::{LinkSpider, StartCrawl};

/// At least 16 bytes, as the API requires.
pub(crate) const TOKEN: &str = "t0ken-0123456789";

/// The API mounted at `/api` on a server of its own.
pub(crate) struct Api {
    pub(crate) api: ControlApi,
    pub(crate) server: Server,
    pub(crate) client: awc::Client,
}

impl Api {
    fn start() -> Api {
        Api::with(ControlApi::builder(TOKEN))
    }

    pub(crate) fn with(builder: ControlApiBuilder) -> Api {
        let api = builder
            .stats_every(Duration::from_millis(50))
            .build()
            .unwrap();
        let mounted = api.clone();
        let server = spawn_app("127.0.0.1", 1, move |cfg| {
            cfg.service(mounted.scope("/api"));
        });
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(20))
            .finish();
        Api {
            api,
            server,
            client,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/api{}", self.server.addr, path)
    }

    /// Sends `method path` with `token` (none: no header) and `body`; the
    /// status and the JSON answer.
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self.client.request(method.parse().unwrap(), self.url(path));
        if let Some(t) = token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        let mut res = match body {
            Some(b) => req
                .insert_header(("Content-Type", "application/json"))
                .send_body(b.to_string())
                .await
                .unwrap(),
            None => req.send().await.unwrap(),
        };
        let bytes = res.body().limit(1 << 20).await.unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{method} {path}: not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (res.status().as_u16(), json)
    }

    /// `GET path` with the token, sent; await it for the response, its
    /// body left to read.
    fn open(&self, path: &str) -> awc::SendClientRequest {
        self.client
            .get(self.url(path))
            .insert_header(("Authorization", format!("Bearer {TOKEN}")))
            .send()
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, Some(TOKEN), None).await
    }

    pub(crate) async fn post(&self, path: &str) -> (u16, Value) {
        self.call("POST", path, Some(TOKEN), None).await
    }
}

/// A crawl of a 7-page tree whose first page `/gated/0` answers only once
/// the site's gate opens (it has arrived when this returns).
async fn gated_crawl(api: &Api) -> (Site, CrawlHandle, String) {
    let mut site = serve(7);
    let crawl = Crawler::builder(LinkSpider::from_urls(&[site.url("/gated/0")])).started();
    let id = api.api.register("links", crawl.clone());
    assert_eq!(site.arrival().await, "/gated/0");
    (site, crawl, id)
}

/// The envelope's code for an error row.
pub(crate) fn assert_error(answer: &(u16, Value), status: u16, code: i64, name: &str) {
    assert_eq!(answer.0, status, "{answer:?}");
    assert_eq!(answer.1["status"], code, "{answer:?}");
    assert_eq!(answer.1["data"], Value::Null, "{answer:?}");
    let message = answer.1["message"].as_str().unwrap();
    assert!(message.starts_with(&format!("{name}: ")), "{message}");
}

#[actix::test]
async fn every_route_but_the_health_checks_needs_the_token() {
    let api = Api::start();
    let (site, crawl, id) = gated_crawl(&api).await;
    let routes = [
        ("GET", "/crawls".to_string()),
        ("GET", format!("/crawls/{id}")),
        ("POST", format!("/crawls/{id}/pause")),
        ("POST", format!("/crawls/{id}/resume")),
        ("GET", format!("/crawls/{id}/events")),
        ("GET", "/metrics".to_string()),
        ("POST", format!("/crawls/{id}/stop")),
        ("GET", "/no/such/route".to_string()),
    ];
    for (method, path) in &routes {
        let wrong = [
            None,
            Some(""),
            Some("wrong"),
            Some("t0ken-0123456789-but-longer"),
            Some("t0ken-012345678"),  // a prefix
            Some("t0ken-012345678X"), // only the last byte differs
            Some("X0ken-0123456789"), // only the first byte differs
        ];
        for token in wrong {
            let answer = api.call(method, path, token, None).await;
            assert_error(&answer, 401, 1007, "unauthorized");
        }
        // The right token under another scheme is no bearer token.
        let mut res = api
            .client
            .request(method.parse().unwrap(), api.url(path))
            .insert_header(("Authorization", format!("Basic {TOKEN}")))
            .send()
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&res.body().await.unwrap()).unwrap();
        assert_error(&(res.status().as_u16(), body), 401, 1007, "unauthorized");
    }
    // Nothing the refused requests asked for happened.
    assert_eq!(crawl.state(), spinneret::CrawlState::Running);
    assert_eq!(api.get("/ping").await.0, 200);
    assert_eq!(
        api.call("GET", "/ping", None, None).await,
        (
            200,
            json!({"status": 1, "message": "success", "data": "pong"})
        )
    );
    assert_eq!(api.call("GET", "", None, None).await.0, 200);

    // With the token each route answers.
    let (status, list) = api.get("/crawls").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["id"], id.as_str());
    assert_eq!(list["data"][0]["state"], "running");
    assert_eq!(api.get(&format!("/crawls/{id}")).await.0, 200);
    assert_eq!(
        api.post(&format!("/crawls/{id}/pause")).await.1["data"]["state"],
        "paused"
    );
    assert_eq!(
        api.post(&format!("/crawls/{id}/resume")).await.1["data"]["state"],
        "running"
    );
    let res = api.open(&format!("/crawls/{id}/events")).await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        res.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    drop(res);
    let res = api.open("/metrics").await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let (status, stopped) = api.post(&format!("/crawls/{id}/stop")).await;
    assert_eq!(status, 200);
    assert_eq!(stopped["data"]["state"], "stopping");
    assert_error(&api.get("/no/such/route").await, 404, 1002, "not_found");
    site.open_gate();
    crawl.join().await.unwrap();
}

#[actix::test]
async fn pause_stops_dequeuing_and_resume_goes_on() {
    let api = Api::start();
    let (site, crawl, id) = gated_crawl(&api).await;
    let (status, paused) = api.post(&format!("/crawls/{id}/pause")).await;
    assert_eq!(status, 200);
    assert_eq!(paused["data"]["state"], "paused");
    // /gated/0 finishes; its four new links wait in the queue.
    site.open_gate();
    crate::spiders::wait_for_stats(&crawl, |s| {
        s.counter(Counter::ResponseCount) == 1
            && s.counter(Counter::InFlight) == 0
            && s.counter(Counter::Queued) == 4
    })
    .await;
    // The status asks the Scheduler for its slots: every message it had
    // received is handled by then, and still nothing left the queue.
    let (_, shown) = api.get(&format!("/crawls/{id}")).await;
    let shown = &shown["data"];
    assert_eq!(shown["state"], "paused");
    assert_eq!(shown["stats"]["scheduler/dequeued"], 1);
    assert_eq!(shown["stats"]["scheduler/queued"], 4);
    assert_eq!(
        shown["hosts"],
        json!([{"host": "127.0.0.1", "in_flight": 0, "delay_seconds": 0.0, "resting": false}])
    );
    assert_eq!(site.seen.total(), 1);
    let metrics = scrape(&api).await;
    assert_eq!(sample(&metrics, "spinneret_host_in_flight", &id, None), 0.0);
    assert_eq!(
        sample(&metrics, "spinneret_scheduler_queued", &id, None),
        4.0
    );
    assert_eq!(
        api.get(&format!("/crawls/{id}")).await.1["data"]["stats"]["scheduler/dequeued"],
        1
    );

    let (status, resumed) = api.post(&format!("/crawls/{id}/resume")).await;
    assert_eq!(status, 200);
    assert_eq!(resumed["data"]["state"], "running");
    let s = crawl.join().await.unwrap();
    assert_eq!(s.finish_reason.as_deref(), Some("finished"));
    // /gated/0, /p/0../p/6 and /missing.
    assert_eq!(s.counter(Counter::ResponseCount), 9);
    assert_eq!(site.seen.total(), 9);
    let (_, list) = api.get("/crawls?state=finished").await;
    assert_eq!(list["data"][0]["pages"], 9);
    assert_eq!(api.get("/crawls?state=running").await.1["data"], json!([]));
}

#[actix::test]
async fn stop_finishes_with_shutdown_and_a_finished_crawl_refuses_control() {
    let api = Api::start();
    let (site, crawl, id) = gated_crawl(&api).await;
    let (status, stopping) = api.post(&format!("/crawls/{id}/stop")).await;
    assert_eq!(status, 200);
    assert_eq!(stopping["data"]["state"], "stopping");
    // A second stop without force changes nothing; resuming is refused.
    assert_eq!(api.post(&format!("/crawls/{id}/stop")).await.0, 200);
    assert_eq!(crawl.state(), spinneret::CrawlState::Stopping);
    assert_error(
        &api.post(&format!("/crawls/{id}/resume")).await,
        409,
        1004,
        "illegal_state",
    );
    site.open_gate();
    let s = crawl.join().await.unwrap();
    assert_eq!(s.finish_reason.as_deref(), Some("shutdown"));
    assert_eq!(s.counter(Counter::ResponseCount), 1);
    let (_, shown) = api.get(&format!("/crawls/{id}")).await;
    assert_eq!(shown["data"]["state"], "finished");
    assert_eq!(shown["data"]["finish_reason"], "shutdown");
    assert_eq!(shown["data"]["stats"]["finish_reason"], "shutdown");
    for action in ["pause", "resume", "stop"] {
        let answer = api.post(&format!("/crawls/{id}/{action}")).await;
        assert_error(&answer, 409, 1004, "illegal_state");
        assert!(answer.1["message"].as_str().unwrap().contains("finished"));
    }
}

#[actix::test]
async fn stops_sent_together_drain_and_do_not_force() {
    let api = Api::start();
    let (site, crawl, id) = gated_crawl(&api).await;
    let path = format!("/crawls/{id}/stop");
    let (a, b) = futures_util::join!(api.post(&path), api.post(&path));
    assert_eq!((a.0, b.0), (200, 200));
    site.open_gate();
    let s = crawl.join().await.unwrap();
    assert_eq!(s.finish_reason.as_deref(), Some("shutdown"));
    // /gated/0 was drained, not abandoned; its links came too late.
    assert_eq!(s.counter(Counter::ResponseCount), 1);
    assert_eq!(s.counter(Counter::Unprocessed), 4);
}

#[actix::test]
async fn a_forced_stop_abandons_what_is_in_flight() {
    let api = Api::start();
    let (_site, crawl, id) = gated_crawl(&api).await;
    let (status, _) = api
        .call(
            "POST",
            &format!("/crawls/{id}/stop"),
            Some(TOKEN),
            Some(r#"{"force": true}"#),
        )
        .await;
    assert_eq!(status, 200);
    // The gate never opens: only the force can finish the crawl.
    let s = crawl.join().await.unwrap();
    assert_eq!(s.finish_reason.as_deref(), Some("shutdown"));
    assert_eq!(s.counter(Counter::Unprocessed), 1);
}

#[actix::test]
async fn parameters_come_from_a_form_or_the_query_string_alike() {
    let api = Api::start();
    let (_site, crawl, id) = gated_crawl(&api).await;
    let mut res = api
        .client
        .post(api.url(&format!("/crawls/{id}/stop")))
        .insert_header(("Authorization", format!("bearer {TOKEN}")))
        .send_form(&[("force", "1")])
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200, "{:?}", res.body().await);
    // The gate never opens: only the force can finish the crawl.
    let s = crawl.join().await.unwrap();
    assert_eq!(s.counter(Counter::Unprocessed), 1);
    let (_, finished) = api.get("/crawls?state=finished").await;
    assert_eq!(finished["data"][0]["id"], id.as_str());
}

#[actix::test]
async fn bad_requests_get_the_right_envelope_and_status() {
    let api = Api::start();
    let (site, crawl, id) = gated_crawl(&api).await;
    assert_error(&api.get("/crawls/nope").await, 404, 1002, "not_found");
    assert_error(
        &api.post("/crawls/nope/pause").await,
        404,
        1002,
        "not_found",
    );
    let pause = format!("/crawls/{id}/pause");
    let bad_json = api
        .call("POST", &pause, Some(TOKEN), Some("{\"force\": tru"))
        .await;
    assert_error(&bad_json, 400, 1005, "bad_parameter");
    assert!(bad_json.1["message"]
        .as_str()
        .unwrap()
        .contains("malformed JSON"));
    assert_error(
        &api.call("POST", &pause, Some(TOKEN), Some("[1, 2]")).await,
        400,
        1005,
        "bad_parameter",
    );
    assert_error(
        &api.call("POST", &pause, Some(TOKEN), Some(r#"{"speed": 3}"#))
            .await,
        400,
        1005,
        "bad_parameter",
    );
    assert_error(
        &api.call(
            "POST",
            &format!("/crawls/{id}/stop?force=maybe"),
            Some(TOKEN),
            None,
        )
        .await,
        400,
        1005,
        "bad_parameter",
    );
    assert_error(
        &api.get("/crawls?state=asleep").await,
        400,
        1005,
        "bad_parameter",
    );
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(2 << 20));
    assert_error(
        &api.call("POST", &pause, Some(TOKEN), Some(&big)).await,
        413,
        1008,
        "payload_too_large",
    );
    assert_error(&api.get(&pause).await, 405, 1003, "method_not_allowed");
    assert_error(
        &api.call("PUT", &format!("/crawls/{id}"), Some(TOKEN), None)
            .await,
        405,
        1003,
        "method_not_allowed",
    );
    // None of it paused the crawl.
    assert_eq!(crawl.state(), spinneret::CrawlState::Running);
    site.open_gate();
    assert_eq!(
        crawl.join().await.unwrap().counter(Counter::ResponseCount),
        9
    );
}

/// `/metrics`, parsed.
pub(crate) async fn scrape(api: &Api) -> prometheus_parse::Scrape {
    let mut res = api.open("/metrics").await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(res.body().limit(1 << 20).await.unwrap().to_vec()).unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of the one sample of `metric` for crawl `id` (and status
/// `code`).
fn sample(scrape: &prometheus_parse::Scrape, metric: &str, id: &str, code: Option<&str>) -> f64 {
    let found: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == metric && s.labels.get("crawl") == Some(id) && s.labels.get("code") == code
        })
        .collect();
    assert_eq!(found.len(), 1, "{metric} for {id}: {found:?}");
    match found[0].value {
        prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
        ref other => panic!("{metric}: untyped {other:?}"),
    }
}

#[actix::test]
async fn metrics_parse_and_equal_the_stats_snapshot() {
    let api = Api::start();
    let site = serve(7);
    let one = Crawler::builder(LinkSpider::from_urls(&[site.url("/p/0")])).started();
    let two = Crawler::builder(LinkSpider::from_urls(&[site.url("/p/3")])).started();
    let one_id = api.api.register("one", one.clone());
    let two_id = api.api.register("two", two.clone());
    let stats = [
        (one_id, one.join().await.unwrap()),
        (two_id, two.join().await.unwrap()),
    ];
    let scrape = scrape(&api).await;
    for (id, s) in &stats {
        // /p/0../p/6 and /missing, whichever page it starts from.
        assert_eq!(s.counter(Counter::ResponseCount), 8);
        for (stat, &value) in &s.counters {
            let code = stat.strip_prefix("downloader/response_status_count/");
            assert_eq!(
                sample(&scrape, &metric_name(stat), id, code),
                value as f64,
                "{stat}"
            );
        }
        assert_eq!(
            sample(
                &scrape,
                "spinneret_downloader_response_count_total",
                id,
                None
            ),
            s.counter(Counter::ResponseCount) as f64
        );
        assert_eq!(
            sample(
                &scrape,
                "spinneret_downloader_response_status_count_total",
                id,
                Some("404")
            ),
            1.0
        );
        let info: Vec<_> = scrape
            .samples
            .iter()
            .filter(|x| x.metric == "spinneret_crawl_info" && x.labels.get("crawl") == Some(id))
            .collect();
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].labels.get("state"), Some("finished"));
    }
    let counter = scrape
        .samples
        .iter()
        .find(|x| x.metric == "spinneret_item_scraped_count_total")
        .unwrap();
    assert!(matches!(counter.value, prometheus_parse::Value::Counter(_)));
}

/// Waits for the event named `want`, skipping `stats` events.
async fn next_named(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, want: &str) {
    loop {
        match rx.recv().await.as_deref() {
            Some(n) if n == want => return,
            Some("stats") => continue,
            other => panic!("waiting for {want}, got {other:?}"),
        }
    }
}

/// Reads server-sent events from `res` until the stream ends: (name, data).
async fn read_events(
    mut body: impl futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin,
    mut on_event: impl FnMut(&str, &Value) -> bool,
) -> Vec<(String, Value)> {
    let mut buf = String::new();
    let mut events = Vec::new();
    while let Some(chunk) = body.next().await {
        buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let message: String = buf.drain(..end + 2).collect();
            let mut name = None;
            let mut data = None;
            for line in message.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str::<Value>(d).unwrap());
                }
            }
            if let (Some(n), Some(d)) = (name, data) {
                let go_on = on_event(&n, &d);
                events.push((n, d));
                if !go_on {
                    return events;
                }
            }
        }
    }
    events
}

#[actix::test]
async fn the_event_stream_delivers_lifecycle_events_then_finished() {
    let api = Api::start();
    let (site, crawl, id) = gated_crawl(&api).await;
    let res = api.open(&format!("/crawls/{id}/events")).await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = actix_rt::spawn(read_events(res, move |name, _| {
        let _ = tx.send(name.to_string());
        true
    }));
    next_named(&mut rx, "state").await;
    assert_eq!(api.post(&format!("/crawls/{id}/pause")).await.0, 200);
    next_named(&mut rx, "paused").await;
    assert_eq!(api.post(&format!("/crawls/{id}/resume")).await.0, 200);
    next_named(&mut rx, "resumed").await;
    site.open_gate();
    let final_stats = crawl.join().await.unwrap();
    // The stream ends after `finished`.
    let events = reader.await.unwrap();
    let names: Vec<&str> = events
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| *n != "stats")
        .collect();
    assert_eq!(names, ["state", "paused", "resumed", "error", "finished"]);
    let (_, finished) = events.last().unwrap();
    assert_eq!(finished["event"], "finished");
    let streamed: spinneret::StatsSnapshot =
        serde_json::from_value(finished["stats"].clone()).unwrap();
    assert_eq!(streamed, final_stats);
    let (_, opening) = &events[0];
    assert_eq!(opening["id"], id.as_str());
    assert_eq!(opening["state"], "running");

    // A client arriving after the finish gets the state and `finished`.
    let res = api.open(&format!("/crawls/{id}/events")).await.unwrap();
    let late = read_events(res, |_, _| true).await;
    let names: Vec<&str> = late.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["state", "finished"]);
    assert_eq!(late[0].1["state"], "finished");
    assert_eq!(
        serde_json::from_value::<spinneret::StatsSnapshot>(late[1].1["stats"].clone()).unwrap(),
        final_stats
    );
}

#[actix::test]
async fn a_body_streamed_past_the_limit_is_refused() {
    let api = Api::with(ControlApi::builder(TOKEN).body_limit(1000));
    let (site, crawl, id) = gated_crawl(&api).await;
    // No Content-Length: the limit is found while reading.
    let chunks = (0..3).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 600])));
    let mut res = api
        .client
        .post(api.url(&format!("/crawls/{id}/pause")))
        .insert_header(("Authorization", format!("Bearer {TOKEN}")))
        .send_stream(futures_util::stream::iter(chunks))
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&res.body().await.unwrap()).unwrap();
    assert_error(
        &(res.status().as_u16(), body),
        413,
        1008,
        "payload_too_large",
    );
    // Under the limit, whitespace is an empty body: the pause happens.
    let (status, paused) = api
        .call(
            "POST",
            &format!("/crawls/{id}/pause"),
            Some(TOKEN),
            Some(&" ".repeat(999)),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(paused["data"]["state"], "paused");
    crawl.resume().await.unwrap();
    site.open_gate();
    crawl.join().await.unwrap();
}

/// `method path` sent by a browser page on `origin` (a preflight for a
/// `GET` with a token when `method` is OPTIONS): the status, the origin the
/// answer allows, and its JSON body, if any.
async fn from_origin(
    api: &Api,
    method: &str,
    path: &str,
    origin: &str,
    token: Option<&str>,
) -> (u16, Option<String>, Option<Value>) {
    let mut req = api
        .client
        .request(method.parse().unwrap(), api.url(path))
        .insert_header(("Origin", origin));
    if method == "OPTIONS" {
        req = req
            .insert_header(("Access-Control-Request-Method", "GET"))
            .insert_header(("Access-Control-Request-Headers", "authorization"));
    }
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    let mut res = req.send().await.unwrap();
    let allowed = res
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_string());
    let body = serde_json::from_slice(&res.body().await.unwrap()).ok();
    (res.status().as_u16(), allowed, body)
}

#[actix::test]
async fn cors_answers_allowed_origins_and_every_request_is_timed_in_the_log() {
    let records = Records::default();
    let api = Api::with(
        ControlApi::builder(TOKEN)
            .cors_allow_origin("https://ops.example")
            .logger(records.logger()),
    );
    let ops = Some("https://ops.example".to_string());
    // A preflight needs no token.
    let (status, allowed, _) =
        from_origin(&api, "OPTIONS", "/crawls", "https://ops.example", None).await;
    assert_eq!((status, allowed), (200, ops.clone()));
    let (status, allowed, _) =
        from_origin(&api, "GET", "/crawls", "https://ops.example", Some(TOKEN)).await;
    assert_eq!((status, &allowed), (200, &ops));
    let (status, allowed, _) = from_origin(
        &api,
        "GET",
        "/crawls",
        "https://elsewhere.example",
        Some(TOKEN),
    )
    .await;
    assert_eq!((status, allowed), (200, None));
    // A refusal still carries the CORS headers a browser needs to read it.
    let (status, allowed, body) =
        from_origin(&api, "GET", "/crawls", "https://ops.example", None).await;
    assert_eq!(allowed, ops);
    assert_error(&(status, body.unwrap()), 401, 1007, "unauthorized");
    // A preflight from another origin is refused in the envelope too.
    let (status, _, body) = from_origin(
        &api,
        "OPTIONS",
        "/crawls",
        "https://elsewhere.example",
        None,
    )
    .await;
    assert_error(&(status, body.unwrap()), 400, 1005, "bad_parameter");

    // Without origins configured, no CORS headers at all.
    let plain = Api::start();
    let (status, allowed, _) =
        from_origin(&plain, "GET", "/ping", "https://ops.example", None).await;
    assert_eq!((status, allowed), (200, None));

    let timed = records.lines("request");
    let seen: Vec<(&str, &str, &str)> = timed
        .iter()
        .map(|kv| {
            (
                kv["method"].as_str(),
                kv["url"].as_str(),
                kv["status"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("OPTIONS", "/api/crawls", "200"),
            ("GET", "/api/crawls", "200"),
            ("GET", "/api/crawls", "200"),
            ("GET", "/api/crawls", "401"),
            ("OPTIONS", "/api/crawls", "400"),
        ]
    );
    assert!(timed
        .iter()
        .all(|kv| kv["ms"].parse::<f64>().unwrap() >= 0.0));
}
