//! One worker of a distributed crawl on Redis.
//!
//! Every worker started with the same `--redis` and `--crawl-id` shares one
//! crawl of `--url` (same host, every link, as in the `bench` example): one
//! queue, one dupe filter, one set of totals. Start as many as you like,
//! on as many machines, at any time; each finishes when the whole crawl is
//! finished and prints one JSON line:
//!
//! ```text
//! # A site to crawl (the bench's generated site, 20 ms per page):
//! cargo run --release --example bench -- --serve-only --port 18080 --pages 10000 --delay-ms 20
//! # Three workers (in three shells, or on three machines):
//! cargo run --release --features distributed --example distributed -- --redis redis://127.0.0.1:6379/ --url http://127.0.0.1:18080/
//! {"pages":3342,"seconds":3.912,"pages_per_sec":854.3,"peak_rss_mb":21.7,"crawl_pages":10000,"crawl_pages_per_sec":2556.2,"finish_reason":"finished"}
//! ```
//!
//! `pages` is this worker's responses with status 200, `seconds` its wall
//! time from start to finish, `crawl_pages` the crawl's total over every
//! worker (read from Redis once every worker has reported and left, or
//! after two lease times). A run is checked like the bench's: every
//! response a 200, one item each, no error; otherwise the line is printed,
//! then the reasons on stderr, and the exit code is 1. Redis unreachable
//! and other setup errors exit with code 2.
//!
//! The crawl's keys stay in Redis after it finished (a worker started on a
//! finished crawl finishes at once): `--clear` deletes them first, to crawl
//! again under the same id. Ctrl-C makes this worker leave the crawl (what
//! it holds goes back to the queue); the others carry on.
//!
//! `--items PATH` writes this worker's items to a JSON Lines file. A page
//! is acknowledged to Redis only once its item is written there, so after
//! `kill -9` of a worker the others finish the crawl and every page's item
//! is in some worker's file, at least once (a page fetched by the killed
//! worker but not yet acknowledged is fetched again, so its item may be in
//! two files).

#[path = "common/bench_spider.rs"]
mod bench_spider;
// `logger` is for examples that log; this one does not.
#[allow(dead_code)]
#[path = "common/progress.rs"]
mod progress;

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;
use spinneret::distributed::{clear, totals};
use spinneret::pipelines::JsonLinesFile;
use spinneret::{Crawler, RedisOptions};
use url::Url;

use bench_spider::{peak_rss_mb, round, BenchSpider, CountItems, Mark};

/// Run one worker of a distributed crawl and print one JSON line.
#[derive(Parser, Debug)]
#[command(name = "distributed")]
struct Args {
    /// The Redis the workers share, `redis://host:port/db`.
    #[arg(long)]
    redis: String,
    /// The site to crawl.
    #[arg(long)]
    url: String,
    /// Names the crawl: workers with the same id share it.
    #[arg(long, default_value = "bench")]
    crawl_id: String,
    /// Delete the crawl's keys first (only while no worker runs).
    #[arg(long)]
    clear: bool,
    /// Most requests in flight at once in this worker.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Downloader actors, each on its own thread.
    #[arg(long, default_value_t = 2)]
    downloaders: usize,
    /// Requests per second per host, over all workers.
    #[arg(long)]
    host_rate: Option<f64>,
    /// Seconds a dead worker's requests stay leased before others take
    /// them.
    #[arg(long, default_value_t = 30)]
    lease_secs: u64,
    /// Also write this worker's items to this JSON Lines file (appended
    /// to; each page's item is in it before the page is acknowledged to
    /// Redis, so a worker killed at any moment loses none: every page's
    /// item is in some worker's file at least once).
    #[arg(long)]
    items: Option<std::path::PathBuf>,
}

/// The JSON line.
#[derive(Serialize)]
struct Line {
    pages: u64,
    seconds: f64,
    pages_per_sec: f64,
    peak_rss_mb: Option<f64>,
    crawl_pages: u64,
    crawl_pages_per_sec: f64,
    /// This worker's pages, dequeue to pipeline: median and 99th percentile.
    latency_ms_p50: Option<f64>,
    latency_ms_p99: Option<f64>,
    finish_reason: Option<String>,
}

fn fail(what: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("distributed: {what}: {e}");
    ExitCode::from(2)
}

#[actix::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let start = match Url::parse(&args.url) {
        Ok(u) => u,
        Err(e) => return fail(&format!("invalid --url {:?}", args.url), e),
    };
    if args.clear {
        match clear(&args.redis, &args.crawl_id).await {
            Ok(n) => eprintln!("distributed: cleared {n} keys of crawl {:?}", args.crawl_id),
            Err(e) => return fail("clearing the crawl", e),
        }
    }
    let spider = match BenchSpider::new(start) {
        Ok(s) => s,
        Err(e) => return fail("bad start URL", e),
    };
    let items = CountItems::default();
    let lease_ttl = Duration::from_secs(args.lease_secs.max(1));
    let options = RedisOptions {
        crawl_id: Some(args.crawl_id.clone()),
        lease_ttl,
        host_rate: args.host_rate,
        ..RedisOptions::new(&args.redis)
    };
    let mut builder = Crawler::builder(spider)
        .concurrency(args.concurrency)
        .downloaders(args.downloaders)
        .middleware(Mark)
        .pipeline(items.clone())
        .redis_options(options);
    if let Some(path) = &args.items {
        builder = builder.pipeline(JsonLinesFile::new(path).append());
    }
    let crawler = match builder.build() {
        Ok(c) => c,
        Err(e) => return fail("bad configuration", e),
    };
    let started = Instant::now();
    let crawl = match crawler.start_async().await {
        Ok(c) => c,
        Err(e) => return fail("cannot start", e),
    };
    if let Err(e) = crawl.stop_on_signals() {
        return fail("cannot handle signals", e);
    }
    progress::follow(progress::bar(None), &crawl);
    let stats = match crawl.join().await {
        Ok(s) => s,
        Err(e) => return fail("crawl failed", e),
    };
    let seconds = started.elapsed().as_secs_f64();
    // The totals are complete once every worker has reported and left (a
    // dead one is reaped after its lease time).
    let deadline = Instant::now() + 2 * lease_ttl;
    let crawl_totals = loop {
        match totals(&args.redis, &args.crawl_id).await {
            Ok(t) if t.workers == 0 || Instant::now() > deadline => break t,
            Ok(_) => actix_rt::time::sleep(Duration::from_millis(20)).await,
            Err(e) => return fail("reading the crawl's totals", e),
        }
    };
    let ok_key = "downloader/response_status_count/200";
    let pages = stats.status_count(200);
    let crawl_pages = crawl_totals.counters.get(ok_key).copied().unwrap_or(0);
    let line = Line {
        pages,
        seconds: round(seconds, 3),
        pages_per_sec: round(pages as f64 / seconds, 1),
        peak_rss_mb: peak_rss_mb().map(|mb| round(mb, 1)),
        crawl_pages,
        crawl_pages_per_sec: round(crawl_pages as f64 / seconds, 1),
        latency_ms_p50: items.latency_ms(0.5).map(|ms| round(ms, 2)),
        latency_ms_p99: items.latency_ms(0.99).map(|ms| round(ms, 2)),
        finish_reason: stats.finish_reason.clone(),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "{}",
        serde_json::to_string(&line).expect("the line serialises")
    );
    let _ = stdout.flush();

    let mut problems = Vec::new();
    let responses = stats.counter(spinneret::Counter::ResponseCount);
    if responses != pages {
        problems.push(format!(
            "{} of {responses} responses were not 200",
            responses - pages
        ));
    }
    if items.items.load(Ordering::Relaxed) != pages {
        problems.push(format!(
            "{} items for {pages} pages",
            items.items.load(Ordering::Relaxed)
        ));
    }
    if stats.error_count() > 0 {
        problems.push(format!("{} errors", stats.error_count()));
    }
    if problems.is_empty() {
        return ExitCode::SUCCESS;
    }
    for p in problems {
        eprintln!("distributed: {p}");
    }
    ExitCode::FAILURE
}
