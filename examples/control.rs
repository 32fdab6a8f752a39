//! The control API in a server of its own: start a crawl, then inspect,
//! pause, resume and stop it over HTTP, and scrape its metrics.
//!
//! Without `--url` it serves the bench's generated site (each page answered
//! `--delay-ms` late, so the crawl lasts long enough to steer) and crawls
//! it; with `--url` it crawls that site instead (same host only). The API
//! is mounted at `/api` on 127.0.0.1:`--port` behind the bearer token
//! `--token`, with the crawl registered as `main`. It prints one JSON line
//! with the addresses when it starts, and one with the final stats when
//! the crawl finishes; the API keeps answering for `--linger-secs` after
//! that, then the process exits. Ctrl-C stops the crawl gracefully (a
//! second forces it). A progress bar is drawn on stderr when stdout is a
//! terminal; log lines (the timing line of every API request among them)
//! go to stderr, above the bar.
//!
//! ```text
//! cargo run --example control -- --port 8080 --token 0f6c1e9a2b7d4c58a3e1f0b9d2c7a6e4
//! {"api":"http://127.0.0.1:8080/api","crawl":"main","site":"http://127.0.0.1:40713/"}
//!
//! # In another terminal:
//! curl http://127.0.0.1:8080/api/ping                    # open health check
//! curl http://127.0.0.1:8080/api/crawls                  # 401: no token
//! T='Authorization: Bearer 0f6c1e9a2b7d4c58a3e1f0b9d2c7a6e4'
//! curl -H "$T" http://127.0.0.1:8080/api/crawls          # every crawl
//! curl -H "$T" http://127.0.0.1:8080/api/crawls/main     # state, stats, hosts
//! curl -H "$T" -X POST http://127.0.0.1:8080/api/crawls/main/pause
//! curl -H "$T" -X POST http://127.0.0.1:8080/api/crawls/main/resume
//! curl -H "$T" http://127.0.0.1:8080/api/metrics         # Prometheus text
//! curl -H "$T" -N http://127.0.0.1:8080/api/crawls/main/events   # SSE
//! curl -H "$T" -X POST http://127.0.0.1:8080/api/crawls/main/stop
//! curl -H "$T" -X POST 'http://127.0.0.1:8080/api/crawls/main/stop?force=true'
//! ```

// Shared with `bench`, which uses all of them; this example needs less.
#[allow(dead_code)]
#[path = "common/bench_site.rs"]
mod bench_site;
#[allow(dead_code)]
#[path = "common/bench_spider.rs"]
mod bench_spider;
#[path = "common/progress.rs"]
mod progress;

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer};
use clap::Parser;
use serde_json::json;
use slog::{o, Logger};
use spinneret::control::ControlApi;
use spinneret::{Crawler, Error};
use url::Url;

use bench_site::{start_server, Site};
use bench_spider::{BenchSpider, CountItems, Mark};

/// A crawl steered over the control API.
#[derive(Parser, Debug)]
#[command(name = "control")]
struct Args {
    /// Port of the control API on 127.0.0.1 (0: any free port, printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The bearer token the API requires (at least 16 bytes; `openssl rand
    /// -hex 16` makes one).
    #[arg(long)]
    token: String,
    /// Crawl this site instead of the generated one.
    #[arg(long)]
    url: Option<String>,
    /// Pages of the generated site.
    #[arg(long, default_value_t = 100_000, conflicts_with = "url")]
    pages: u64,
    /// How late the generated site answers each page, in milliseconds.
    #[arg(long, default_value_t = 10, conflicts_with = "url")]
    delay_ms: u64,
    /// Requests in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How long the API keeps answering after the crawl has finished.
    #[arg(long, default_value_t = 0)]
    linger_secs: u64,
}

fn fail(what: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("control: {what}: {e}");
    ExitCode::from(2)
}

#[actix::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let bar = progress::bar(args.url.is_none().then_some(args.pages));
    let log = progress::logger(&bar);
    // Checked before anything starts (a token under 16 bytes is refused).
    let api = match ControlApi::builder(args.token.clone())
        .logger(log.new(o!("api" => "control")))
        .build()
    {
        Ok(api) => api,
        Err(e) => return fail("bad control API settings", e),
    };
    let site = match &args.url {
        Some(_) => None,
        None => {
            let site = Arc::new(Site::new(args.pages, Duration::from_millis(args.delay_ms)));
            match start_server(site, 0) {
                Ok(server) => Some(server),
                Err(e) => return fail("cannot serve the generated site", e),
            }
        }
    };
    let start = match (&args.url, &site) {
        (Some(u), _) => match Url::parse(u) {
            Ok(u) => u,
            Err(e) => return fail(&format!("invalid --url {u:?}"), e),
        },
        (None, Some(server)) => server.url.clone(),
        (None, None) => unreachable!("the generated site is served without --url"),
    };
    let crawl = match start_crawl(start.clone(), &args, &log) {
        Ok(c) => c,
        Err(e) => return fail("cannot start the crawl", e),
    };
    if let Err(e) = api.register_as("main", "bench", crawl.clone()) {
        return fail("cannot register the crawl", e);
    }
    let mounted = api.clone();
    let server = match HttpServer::new(move || App::new().service(mounted.scope("/api")))
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", args.port))
    {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot listen on 127.0.0.1:{}", args.port), e),
    };
    let addr = server.addrs()[0];
    let server = server.run();
    let server_handle = server.handle();
    let serving = actix_rt::spawn(server);
    println!(
        "{}",
        json!({"api": format!("http://{addr}/api"), "crawl": "main", "site": start.as_str()})
    );
    let _ = std::io::stdout().flush();
    if let Err(e) = crawl.stop_on_signals() {
        return fail("cannot handle signals", e);
    }
    progress::follow(bar, &crawl);

    let stats = match crawl.join().await {
        Ok(s) => s,
        Err(e) => return fail("the crawl failed", e),
    };
    println!(
        "{}",
        serde_json::to_string(&stats).expect("stats serialise")
    );
    let _ = std::io::stdout().flush();
    if args.linger_secs > 0 {
        // The API keeps answering (the crawl shows as finished).
        actix_rt::time::sleep(Duration::from_secs(args.linger_secs)).await;
    }
    server_handle.stop(true).await;
    let _ = serving.await;
    if let Some(server) = site {
        server.handle.stop(false).await;
        let _ = server.thread.join();
    }
    ExitCode::SUCCESS
}

fn start_crawl(start: Url, args: &Args, log: &Logger) -> Result<spinneret::CrawlHandle, Error> {
    Crawler::builder(BenchSpider::new(start)?)
        .concurrency(args.concurrency)
        .per_host_concurrency(args.concurrency)
        .middleware(Mark)
        .pipeline(CountItems::default())
        .logger(log.new(o!("crawl" => "main")))
        .build()?
        .start()
}
