//! A crawl service: an actix-web app with the control API and two spiders
//! registered by name, each crawling whatever URL a `POST /crawls` gives
//! it. Crawls run on the API's own thread, so they outlive the server's
//! workers; the app stops on Ctrl-C.
//!
//! Spiders: `links` follows every same-host link from `url` (`depth`
//! limits how deep, default unlimited), one item per page (its URL and
//! title); `page` fetches `url` alone, one item. The API is mounted at
//! `/api` on 127.0.0.1:`--port` behind the bearer token `--token` (or the
//! `CONTROL_TOKEN` environment variable); it prints one JSON line with its
//! address when it listens. Log lines go to stderr.
//!
//! ```text
//! cargo run --example service -- --port 8080 --token 0f6c1e9a2b7d4c58a3e1f0b9d2c7a6e4
//! {"api":"http://127.0.0.1:8080/api","spiders":["links","page"]}
//!
//! # In another terminal (any site will do: python3 -m http.server 8000):
//! T='Authorization: Bearer 0f6c1e9a2b7d4c58a3e1f0b9d2c7a6e4'
//! A=http://127.0.0.1:8080/api
//! # Start a crawl: 201, with its summary.
//! curl -H "$T" -H 'Content-Type: application/json' -X POST $A/crawls \
//!   -d '{"spider": "links", "id": "docs", "args": {"url": "http://127.0.0.1:8000/", "depth": 2},
//!        "settings": {"concurrency": 4, "user_agent": "docs-bot/1"}}'
//! curl -H "$T" $A/crawls/docs                  # state, pages, items, stats
//! curl -H "$T" -N $A/crawls/docs/events        # Server-Sent Events until it finishes
//! curl -H "$T" -X DELETE $A/crawls/docs        # 409 while it runs: stop it first
//! curl -H "$T" -X POST $A/crawls/docs/stop     # drains what is in flight
//! curl -H "$T" -X DELETE $A/crawls/docs        # once finished: removed
//! curl -H "$T" -H 'Content-Type: application/json' -X POST $A/crawls -d '{"spider": "nope"}'
//! ```
//!
//! `--smoke` runs that session by itself and exits: it serves a small site
//! from the same app (`/site/{n}`), starts `links` on it over HTTP, waits
//! until the crawl is finished, checks every page was crawled, deletes the
//! crawl and prints one JSON line.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use clap::Parser;
use serde_json::{json, Value};
use slog::{o, Drain, Logger};
use spinneret::control::ControlApi;
use spinneret::{
    Crawler, Error, Html, Output, Request, Response, Selector, Spider, SpiderArgs, SpiderRegistry,
    StartRequests,
};

/// A crawl service driven over HTTP.
#[derive(Parser, Debug)]
#[command(name = "service")]
struct Args {
    /// Port of the API on 127.0.0.1 (0: any free port, printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The bearer token the API requires (at least 16 bytes); default: the
    /// `CONTROL_TOKEN` environment variable.
    #[arg(long)]
    token: Option<String>,
    /// Run the curl session against a site of its own, then exit.
    #[arg(long)]
    smoke: bool,
}

/// Pages of the `--smoke` site.
const SMOKE_PAGES: usize = 20;

/// `links` or `page`: crawls from one URL, one item per page.
struct Site {
    /// The first page.
    start: Request<()>,
    /// Follow same-host links (`links`) or not (`page`).
    follow: bool,
}

impl Spider for Site {
    type Callback = ();

    fn name(&self) -> &str {
        if self.follow {
            "links"
        } else {
            "page"
        }
    }

    fn start_requests(&self) -> StartRequests<()> {
        Box::new(std::iter::once(self.start.clone()))
    }

    fn parse(&self, _: (), response: &Response, out: &mut Output<()>) -> Result<(), Error> {
        let doc = Html::parse_document(&response.text());
        let title = Selector::parse("title").expect("a valid selector");
        let title: String = doc
            .select(&title)
            .next()
            .map(|t| t.text().collect())
            .unwrap_or_default();
        out.item(json!({"url": response.url.as_str(), "title": title.trim()}));
        if !self.follow {
            return Ok(());
        }
        let links = Selector::parse("a[href]").expect("a valid selector");
        for a in doc.select(&links) {
            let Some(Ok(url)) = a.value().attr("href").map(|h| response.urljoin(h)) else {
                continue;
            };
            if url.host_str() == response.url.host_str() {
                out.request(Request::try_from_url(url)?);
            }
        }
        Ok(())
    }
}

/// The spiders the service starts by name.
fn spiders() -> SpiderRegistry {
    let mut spiders = SpiderRegistry::new();
    spiders.register(
        "links",
        "Follows same-host links from url (-a url=URL, -a depth=N)",
        |args: &SpiderArgs| {
            let start = Request::get(args.require("url")?)?;
            let builder = Crawler::builder(Site {
                start,
                follow: true,
            });
            Ok(match args.parse::<u32>("depth")? {
                Some(depth) => builder.depth_limit(depth),
                None => builder,
            })
        },
    );
    spiders.register(
        "page",
        "Fetches url alone (-a url=URL)",
        |args: &SpiderArgs| {
            let start = Request::get(args.require("url")?)?;
            Ok(Crawler::builder(Site {
                start,
                follow: false,
            }))
        },
    );
    spiders
}

/// Page `n` of the `--smoke` site: links to 2n+1 and 2n+2 when they exist.
async fn site_page(n: web::Path<usize>) -> HttpResponse {
    let n = n.into_inner();
    let links: String = [2 * n + 1, 2 * n + 2]
        .into_iter()
        .filter(|&c| c < SMOKE_PAGES)
        .map(|c| format!("<a href=\"/site/{c}\">page {c}</a>"))
        .collect();
    HttpResponse::Ok()
        .content_type("text/html")
        .body(format!("<title>page {n}</title>{links}"))
}

fn fail(what: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("service: {what}: {e}");
    ExitCode::from(2)
}

#[actix_web::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let token = match (args.token.clone(), std::env::var("CONTROL_TOKEN").ok()) {
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) if args.smoke => uuid::Uuid::new_v4().simple().to_string(),
        (None, None) => return fail("no token", "give --token or set CONTROL_TOKEN"),
    };
    let decorator = slog_term::TermDecorator::new().stderr().build();
    let drain = slog_term::FullFormat::new(decorator).build().fuse();
    let log = Logger::root(slog_async::Async::new(drain).build().fuse(), o!());
    let api = match ControlApi::builder(token.clone())
        .spiders(spiders())
        .logger(log.new(o!("api" => "control")))
        .build()
    {
        Ok(api) => api,
        Err(e) => return fail("bad control API settings", e),
    };
    let port = if args.smoke { 0 } else { args.port };
    let mounted = api.clone();
    let server = match HttpServer::new(move || {
        App::new()
            .service(mounted.scope("/api"))
            .route("/site/{n}", web::get().to(site_page))
    })
    .workers(2)
    .bind(("127.0.0.1", port))
    {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot listen on 127.0.0.1:{port}"), e),
    };
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    let serving = actix_web::rt::spawn(server);
    let base = format!("http://{addr}/api");
    println!("{}", json!({"api": base, "spiders": ["links", "page"]}));
    if !args.smoke {
        let _ = serving.await;
        return ExitCode::SUCCESS;
    }
    let outcome = smoke(&base, &token, &format!("http://{addr}/site/0")).await;
    handle.stop(true).await;
    let _ = serving.await;
    match outcome {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => fail("smoke run", e),
    }
}

/// The curl session of the module docs against `site`: start, watch until
/// finished, delete; the summary line.
async fn smoke(base: &str, token: &str, site: &str) -> Result<Value, String> {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let call = |method: &str, path: &str, body: Option<Value>| {
        let req = client
            .request(method.parse().expect("a method"), format!("{base}{path}"))
            .insert_header(("Authorization", format!("Bearer {token}")));
        let path = path.to_string();
        async move {
            let mut res = match body {
                Some(b) => req.send_json(&b).await,
                None => req.send().await,
            }
            .map_err(|e| format!("{path}: {e}"))?;
            let json: Value = res.json().await.map_err(|e| format!("{path}: {e}"))?;
            Ok::<_, String>((res.status().as_u16(), json))
        }
    };
    let body = json!({"spider": "links", "id": "smoke", "args": {"url": site}});
    let (status, started) = call("POST", "/crawls", Some(body)).await?;
    if status != 201 {
        return Err(format!("POST /crawls answered {status}: {started}"));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let crawl = loop {
        let (_, shown) = call("GET", "/crawls/smoke", None).await?;
        if shown["data"]["state"] == "finished" {
            break shown["data"].clone();
        }
        if Instant::now() > deadline {
            return Err(format!("not finished after 30 s: {shown}"));
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    };
    if crawl["pages"] != SMOKE_PAGES || crawl["items"] != SMOKE_PAGES {
        return Err(format!("expected {SMOKE_PAGES} pages and items: {crawl}"));
    }
    let (status, _) = call("DELETE", "/crawls/smoke", None).await?;
    let (gone, _) = call("GET", "/crawls/smoke", None).await?;
    if (status, gone) != (200, 404) {
        return Err(format!("DELETE answered {status}, then GET {gone}"));
    }
    Ok(
        json!({"crawl": "smoke", "pages": crawl["pages"], "items": crawl["items"],
              "finish_reason": crawl["finish_reason"], "deleted": true}),
    )
}
