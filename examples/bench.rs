//! Crawl benchmark: pages per second and peak memory of a whole crawl.
//!
//! The benchmark site is generated, not stored: page 0 is `/`, page n > 0 is
//! `/page/{n}`, and every page is rendered on request from its number as
//! about 2 KB of HTML with 10 links — first to its children 10n+1..=10n+10
//! (those below `--pages`; this 10-ary tree makes every page reachable from
//! `/`), then to pseudo-random other pages (a fixed integer hash of the page
//! and link numbers), so the dupe filter has plenty to drop. With
//! `--delay-ms N` every page is answered N milliseconds late (an async timer
//! in the handler: the server's workers serve other requests meanwhile),
//! which makes the crawl latency-bound, as on a real site, not CPU-bound.
//! With `--shape real` the pages are shaped like a real documentation
//! site's instead (same link graph; 14 KB to 1 MB, median about 23 KB, most
//! bytes in inline script and style, 70 to 135 anchors, and markup that only
//! looks like links, under `/trap/`, which the crawl must not follow).
//!
//! ```text
//! # Serve the site in-process (127.0.0.1, ephemeral port, own thread and
//! # actix system), crawl it, print one JSON line:
//! cargo run --release --example bench -- --pages 10000
//! {"pages":10000,"seconds":1.234,"pages_per_sec":8103.7,"peak_rss_mb":31.2,"resumed":false}
//!
//! # The same, each page answered 20 ms late:
//! cargo run --release --example bench -- --pages 10000 --delay-ms 20
//!
//! # Only serve the site (same generator, --pages sets its size, --delay-ms
//! # its latency) until killed:
//! cargo run --release --example bench -- --serve-only --port 18080 --pages 2000
//! cargo run --release --example bench -- --serve-only --port 18080 --pages 2000 --delay-ms 20
//!
//! # Pages shaped like a real site's:
//! cargo run --release --example bench -- --serve-only --port 18083 --pages 20000 --shape real
//!
//! # Crawl a site that is already running (same host only, every link):
//! cargo run --release --example bench -- --url http://127.0.0.1:18080/
//!
//! # The bare loop instead of the framework (one awc client, a HashSet, an
//! # href scan: the yardstick), or both on the same site and their ratio:
//! cargo run --release --example bench -- --pages 10000 --bare
//! cargo run --release --example bench -- --pages 10000 --compare
//! {"mode":"bare","pages":10000,"seconds":0.396,"pages_per_sec":25240.6,"peak_rss_mb":11.7,"resumed":false}
//! {"mode":"framework","pages":10000,"seconds":0.773,"pages_per_sec":12935.4,"peak_rss_mb":19.8,"latency_ms_p50":1.37,"latency_ms_p99":5.94,"resumed":false}
//! {"ratio":0.512}
//!
//! # Crawl settings, passed to the builder (`--threads compact|single|spread`
//! is `CrawlerBuilder::thread_layout`):
//! cargo run --release --example bench -- --pages 50000 --concurrency 64 --downloaders 2 --threads spread
//!
//! # Limits and politeness from the command line: a body limit (bodies are
//! # counted decoded, so a compression bomb fails as body_too_large at
//! # it), and robots.txt obeyed:
//! cargo run --release --example bench -- --url http://127.0.0.1:18080/ --max-body 1048576 --obey-robots
//!
//! # An HTTPS site whose certificate the built-in roots do not vouch for:
//! # trust its authority (or its self-signed certificate), or accept any
//! # certificate (counted per host in tls/invalid_cert_accepted/<host>):
//! cargo run --release --example bench -- --url https://127.0.0.1:8443/ --ca-file ca.pem
//! cargo run --release --example bench -- --url https://127.0.0.1:8443/ --accept-invalid-certs
//! # The site's pages also in 10 gzip sitemaps (an index, named by
//! # robots.txt), crawled from the index instead of from `/` (every page
//! # the sitemaps list, no link followed; the same checks):
//! cargo run --release --example bench -- --pages 500000 --sitemaps 10 --sitemap /sitemap_index.xml
//! cargo run --release --example bench -- --url http://127.0.0.1:18080/ --sitemap /robots.txt
//! # A re-crawl from the sitemaps: pages whose `<lastmod>` is before their
//! # last fetch are not asked (`--ignore-lastmod` asks every page):
//! cargo run --release --example bench -- --pages 50000 --sitemaps 10 --sitemap /robots.txt --job-dir /tmp/rc --recrawl
//!
//! # A durable crawl: state checkpointed in DIR. Kill it (even with
//! # SIGKILL) and run the same command again: it resumes from DIR.
//! cargo run --release --example bench -- --url http://127.0.0.1:18080/ --job-dir /tmp/job
//! # What the serving process saw over all runs (pages fetched, repeats):
//! curl http://127.0.0.1:18080/_bench/coverage
//! ```
//!
//! The crawl runs with de-duplication on, one download middleware (it sets
//! an `x-bench` header), one item pipeline (it counts items) and stats on;
//! the spider emits one item per page and follows every same-host `a[href]`.
//! Both crawlers keep `--concurrency` requests in flight to the site's one
//! host (the framework's per-host limit is raised to match, `--per-host`).
//!
//! Output: one JSON line per crawl on stdout (plus the ratio line with
//! `--compare`): `mode` (`framework` or `bare`), `pages` the responses with
//! status 200 this run (from the crawl's stats), `seconds` the wall time from
//! starting the crawl to its final stats, `peak_rss_mb` the process's
//! `VmHWM` from `/proc/self/status` (server included, in-process; with
//! `--compare`, the larger of the two crawls), `latency_ms_p50`/`_p99` the
//! time from a request's dequeue to its item reaching the pipeline, and
//! `resumed` whether the run continued a job found in `--job-dir`.
//!
//! The run is also a correctness check. In-process, the server records
//! which pages were fetched: unless every page was fetched exactly once
//! (each carrying the middleware's header, no unknown path requested), every
//! page gave one item, and no error was counted, the JSON line is still
//! printed, then the reasons on stderr, and the exit code is 1. With `--url`
//! the check is that every request got a 200 answer (no redirect, no error
//! status, no failure) and gave one item. A resumed run is checked on what
//! it did itself (its stats continue the earlier runs'), and in-process
//! the site's coverage is only checked when the run did not resume: the
//! earlier runs' fetches went to another process's server. Setup errors
//! exit with code 2.
//!
//! The dupe store and the frontier keep the builder's defaults unless
//! `--bloom-capacity`, `--probabilistic` or `--frontier-memory` say
//! otherwise: an exact set behind a Bloom filter that grows in stages (no
//! page is ever skipped), and 50,000 requests in memory with the rest on
//! disk, so a crawl of millions of pages runs in flat memory:
//!
//! ```text
//! cargo run --release --example bench -- --serve-only --port 18080 --pages 3000000
//! cargo run --release --example bench -- --url http://127.0.0.1:18080/
//! curl http://127.0.0.1:18080/_bench/coverage
//! ```

#[path = "common/bench_site.rs"]
mod bench_site;
#[path = "common/bench_sitemap_spider.rs"]
mod bench_sitemap_spider;
#[path = "common/bench_spider.rs"]
mod bench_spider;
// `logger` is for examples that log; this one does not.
#[allow(dead_code)]
#[path = "common/progress.rs"]
mod progress;

use std::collections::{HashSet, VecDeque};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;
use spinneret::dedupe::DupeMode;
use spinneret::{Counter, Crawler, Error, StatsSnapshot};
use url::Url;

use bench_site::editions::Step;
use bench_site::{start_server, Shape, Site};
use bench_sitemap_spider::AnyBenchSpider;
use bench_spider::{peak_rss_mb, round, CountItems, Mark, MARK_HEADER};

/// Crawl a generated site (or a running one) and print one JSON line of
/// throughput and peak memory.
#[derive(Parser, Debug)]
#[command(name = "bench")]
struct Args {
    /// Pages of the generated site.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pages: u64,
    /// Only serve the generated site, until killed.
    #[arg(long, conflicts_with = "url")]
    serve_only: bool,
    /// Port of the generated site (0: any free port).
    #[arg(long, default_value_t = 0, conflicts_with = "url")]
    port: u16,
    /// Answer every page of the generated site this many milliseconds late
    /// (an async timer: it does not block the server's workers).
    #[arg(long, default_value_t = 0, conflicts_with = "url")]
    delay_ms: u64,
    /// What the generated site's pages look like: `synthetic` (about 2 KB,
    /// 10 links) or `real` (14 KB to 1 MB, mostly inline script and style,
    /// 70 to 135 anchors, and markup that only looks like links).
    #[arg(long, value_enum, default_value_t = Shape::Synthetic, conflicts_with = "url")]
    shape: Shape,
    /// Crawl this already running site instead of serving one.
    #[arg(long)]
    url: Option<String>,
    /// Most requests in flight at once (the bare loop's too).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Most requests in flight to one host. The site is one host, so by
    /// default this is `--concurrency`: the framework keeps as many
    /// requests in flight as the bare loop (the builder's own default, 8,
    /// is a politeness setting for crawling other people's sites).
    #[arg(long)]
    per_host: Option<usize>,
    /// Downloader actors.
    #[arg(long, default_value_t = 1)]
    downloaders: usize,
    /// Which threads the actors run on (`spinneret::ThreadLayout`).
    #[arg(long, value_enum, default_value_t = Layout::Compact)]
    threads: Layout,
    /// Persist the crawl in this job directory, and resume the job it
    /// holds.
    #[arg(long, conflicts_with = "serve_only")]
    job_dir: Option<PathBuf>,
    /// Crawl with the bare loop instead of the framework: one awc client,
    /// `--concurrency` requests at once, a HashSet of seen URLs and a scan
    /// for `href="…"`.
    #[arg(long, conflicts_with_all = ["serve_only", "job_dir"])]
    bare: bool,
    /// Crawl twice on the same site, the bare loop then the framework, and
    /// print a third line with the ratio of their pages/s.
    #[arg(long, conflicts_with_all = ["serve_only", "job_dir", "bare"])]
    compare: bool,
    /// Requests the frontier keeps in memory before it spills to disk
    /// (`CrawlerBuilder::frontier_memory`; default the builder's, 50,000).
    #[arg(long)]
    frontier_memory: Option<usize>,
    /// Keep only the Bloom filter, no exact set behind it
    /// (`DupeMode::Probabilistic`): faster, and past its capacity it drops
    /// pages (the coverage check then fails).
    #[arg(long)]
    probabilistic: bool,
    /// The Bloom filter's capacity (its first stage's, in the exact mode;
    /// default the builder's, 1,048,576).
    #[arg(long)]
    bloom_capacity: Option<usize>,
    /// The largest body accepted, decoded (`CrawlerBuilder::max_body`;
    /// default the builder's, 64 MiB).
    #[arg(long, value_name = "BYTES")]
    max_body: Option<usize>,
    /// Obey robots.txt (`CrawlerBuilder::obey_robots_txt`; default off).
    #[arg(long)]
    obey_robots: bool,
    /// Re-crawl the finished job in `--job-dir` (`CrawlerBuilder::recrawl`):
    /// revisit its pages conditionally, parse only what changed or is new.
    /// Without `--url`: crawl the generated site into the (new) job
    /// directory, move the site to its next edition, re-crawl, and print
    /// a third line with the re-crawl's share of the first crawl's time
    /// and bytes.
    #[arg(long, requires = "job_dir")]
    recrawl: bool,
    /// In a re-crawl, ask every known page, whatever its sitemap's
    /// `<lastmod>` says (`CrawlerBuilder::recrawl_sitemap_lastmod(false)`).
    #[arg(long, requires = "recrawl")]
    ignore_lastmod: bool,
    /// Serve a generated site that changes (a site to re-crawl): each of
    /// its editions changes this percentage of the pages (each then links
    /// to a new page) and removes a fifth as many leaves (410). Pages have
    /// validators and conditional requests get 304. `--recrawl` without
    /// `--url` uses 5 by default.
    #[arg(long, conflicts_with = "url")]
    change_percent: Option<f64>,
    /// The edition of the changing site served (0 to 4; 0: as first
    /// crawled).
    #[arg(long, default_value_t = 0, requires = "change_percent",
          value_parser = clap::value_parser!(u64).range(0..=4))]
    edition: u64,
    /// Trust the root certificates of this PEM file too
    /// (`CrawlerBuilder::tls_root_file`), for an HTTPS site whose
    /// certificate an internal or self-made authority signed.
    #[arg(long, value_name = "PATH")]
    ca_file: Option<PathBuf>,
    /// Accept any certificate, even self-signed or expired
    /// (`CrawlerBuilder::danger_accept_invalid_certs`; default off).
    #[arg(long)]
    accept_invalid_certs: bool,
    /// The generated site also serves this many gzip sitemaps of its pages
    /// (`/sitemaps/K.xml.gz`, at most 50,000 pages each), their index
    /// (`/sitemap_index.xml`) and a robots.txt naming it.
    #[arg(long, default_value_t = 0, conflicts_with = "url")]
    sitemaps: u64,
    /// Start the crawl from this sitemap or robots.txt (a path such as
    /// `/sitemap_index.xml`, or a URL) through `SitemapRules`, fetching
    /// every page it lists and following no link, instead of from the
    /// root page.
    #[arg(long, value_name = "PATH_OR_URL", conflicts_with_all = ["bare", "compare"])]
    sitemap: Option<String>,
}

/// `--threads`: `spinneret::ThreadLayout`'s variants.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Layout {
    Compact,
    Single,
    Spread,
}

impl From<Layout> for spinneret::ThreadLayout {
    fn from(l: Layout) -> Self {
        match l {
            Layout::Compact => spinneret::ThreadLayout::Compact,
            Layout::Single => spinneret::ThreadLayout::Single,
            Layout::Spread => spinneret::ThreadLayout::Spread,
        }
    }
}

// ---------------------------------------------------------------------------
// The crawl.

/// What a crawl produced.
struct Outcome {
    stats: StatsSnapshot,
    /// The stats when it started: zero, or the earlier runs' when resumed.
    before: StatsSnapshot,
    resumed: bool,
    seconds: f64,
    items: u64,
    /// Dequeue to pipeline, ms: (p50, p99).
    latency_ms: Option<(f64, f64)>,
}

impl Outcome {
    /// A counter's growth during this run.
    fn this_run(&self, c: Counter) -> u64 {
        self.stats.counter(c) - self.before.counter(c)
    }

    /// Responses with status 200 this run: pages, not the sitemaps and
    /// robots.txt a crawl from a sitemap read.
    fn ok(&self) -> u64 {
        let pages = |s: &StatsSnapshot| {
            s.status_count(200) - s.get("sitemap/read") - s.get("sitemap/robots_txt")
        };
        pages(&self.stats) - pages(&self.before)
    }

    /// Errors counted this run.
    fn errors(&self) -> u64 {
        self.stats.error_count() - self.before.error_count()
    }

    /// Answers this run: 200s, and a re-crawl's 304s and 410s.
    fn answered(&self) -> u64 {
        [200, 304, 410]
            .iter()
            .map(|&s| self.stats.status_count(s) - self.before.status_count(s))
            .sum()
    }

    /// Whether this run re-crawled a finished job.
    fn recrawling(&self) -> bool {
        self.stats.get("recrawl/known") > 0
    }
}

async fn crawl(start: Url, args: &Args) -> Result<Outcome, Error> {
    let items = CountItems::default();
    let spider = AnyBenchSpider::new(start, args.sitemap.as_deref())?;
    let mut builder = Crawler::builder(spider)
        .concurrency(args.concurrency)
        .per_host_concurrency(args.per_host.unwrap_or(args.concurrency))
        .downloaders(args.downloaders)
        .thread_layout(args.threads.into())
        .dedupe(true)
        .middleware(Mark)
        .pipeline(items.clone());
    if let Some(n) = args.frontier_memory {
        builder = builder.frontier_memory(n);
    }
    if args.probabilistic {
        builder = builder.dupe_mode(DupeMode::Probabilistic);
    }
    if let Some(n) = args.bloom_capacity {
        builder = builder.bloom(n, 0.001);
    }
    if let Some(dir) = &args.job_dir {
        builder = builder.job_dir(dir);
    }
    if let Some(n) = args.max_body {
        builder = builder.max_body(n);
    }
    builder = builder
        .recrawl(args.recrawl)
        .recrawl_sitemap_lastmod(!args.ignore_lastmod);
    builder = builder.obey_robots_txt(args.obey_robots);
    if let Some(file) = &args.ca_file {
        builder = builder.tls_root_file(file);
    }
    builder = builder.danger_accept_invalid_certs(args.accept_invalid_certs);
    let crawler = builder.build()?;
    let started = Instant::now();
    let crawl = crawler.start()?;
    let before = crawl.stats();
    if let Some(r) = crawl.resumed() {
        eprintln!(
            "bench: resuming: {} requests pending, {} completed by earlier runs",
            r.pending, r.completed
        );
    }
    // Ctrl-C stops the crawl gracefully (a second one forces it).
    crawl.stop_on_signals()?;
    progress::follow(
        progress::bar(args.url.is_none().then_some(args.pages)),
        &crawl,
    );
    let stats = crawl.join().await?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(Outcome {
        stats,
        before,
        resumed: crawl.resumed().is_some(),
        seconds,
        items: items.items.load(Ordering::Relaxed),
        latency_ms: items.latency_ms(0.5).zip(items.latency_ms(0.99)),
    })
}

/// Problems every crawl must be free of, whatever the site.
fn crawl_problems(out: &Outcome, problems: &mut Vec<String>) {
    let s = &out.stats;
    if out.errors() != 0 {
        problems.push(format!(
            "{} errors counted (downloader/exception_count {}, httperror/response_ignored_count {}, spider_exceptions {}, item_error_count {})",
            out.errors(),
            out.this_run(Counter::ExceptionCount),
            out.this_run(Counter::HttpErrorIgnored),
            out.this_run(Counter::SpiderExceptions),
            out.this_run(Counter::ItemError),
        ));
    }
    for c in [Counter::RequestFailures, Counter::LostMessages] {
        if out.this_run(c) != 0 {
            problems.push(format!("{} is {}", c.name(), out.this_run(c)));
        }
    }
    if s.finish_reason.as_deref() != Some("finished") {
        problems.push(format!("finish_reason is {:?}", s.finish_reason));
    }
    let (ok, answered) = (out.ok(), out.answered());
    for c in [Counter::RequestCount, Counter::ResponseCount] {
        if out.this_run(c) != answered {
            problems.push(format!(
                "{} grew by {} but {answered} responses had status 200, 304 or 410",
                c.name(),
                out.this_run(c)
            ));
        }
    }
    if out.items != ok || out.this_run(Counter::ItemScraped) != ok {
        problems.push(format!(
            "{} items counted by the pipeline, item_scraped_count grew by {}, for {ok} pages",
            out.items,
            out.this_run(Counter::ItemScraped)
        ));
    }
}

/// Problems of an in-process crawl, from what the server saw.
/// What the site saw that a crawl of `ok` pages (`marked`: by the
/// framework, whose middleware marks every request) must not show.
fn site_problems(site: &Site, ok: u64, marked: bool, problems: &mut Vec<String>) {
    let (fetched, missing) = site.coverage();
    if fetched != site.pages {
        problems.push(format!(
            "{fetched} of {} pages fetched; never fetched: {missing:?}{}",
            site.pages,
            if site.pages - fetched > missing.len() as u64 {
                " …"
            } else {
                ""
            }
        ));
    }
    let repeats = site.repeats.load(Ordering::Relaxed);
    if repeats != 0 {
        problems.push(format!(
            "{repeats} repeated fetches, of pages {:?}",
            site.repeated.lock().expect("repeated lock")
        ));
    }
    let misses = site.misses.load(Ordering::Relaxed);
    if misses != 0 {
        problems.push(format!("{misses} requests for paths that are not pages"));
    }
    let unmarked = site.unmarked.load(Ordering::Relaxed);
    if marked && unmarked != 0 {
        problems.push(format!(
            "{unmarked} requests without the {MARK_HEADER} header"
        ));
    }
    if ok != site.pages {
        problems.push(format!(
            "{ok} responses with status 200 for a site of {} pages",
            site.pages
        ));
    }
}

/// What a changing site says of the crawl it answered: the last step's
/// changes, its answers without and with a body, and its coverage.
#[derive(serde::Deserialize)]
struct SiteView {
    step: Step,
    not_modified: u64,
    bodies: u64,
    fetched: u64,
    repeats: u64,
}

impl SiteView {
    fn of(site: &Site) -> Option<Self> {
        Some(SiteView {
            step: site.changes.as_ref()?.step(),
            not_modified: site.not_modified.load(Ordering::Relaxed),
            bodies: site.bodies.load(Ordering::Relaxed),
            fetched: site.coverage().0,
            repeats: site.repeats.load(Ordering::Relaxed),
        })
    }

    /// Asks a site served by `bench --serve-only --edition E`.
    async fn fetch(start: &Url) -> Option<Self> {
        let url = start.join("/_bench/coverage").ok()?;
        let mut answer = awc::Client::default().get(url.as_str()).send().await.ok()?;
        answer.json::<SiteView>().await.ok()
    }
}

/// Problems of a re-crawl, against what the site changed.
fn recrawl_problems(out: &Outcome, site: Option<&SiteView>, problems: &mut Vec<String>) {
    let get = |name: &str| out.stats.get(name) - out.before.get(name);
    let (known, unchanged) = (out.stats.get("recrawl/known"), get("recrawl/unchanged"));
    let (changed, new, gone) = (
        get("recrawl/changed"),
        get("recrawl/new"),
        get("recrawl/gone"),
    );
    // Sitemaps (and robots.txt) read again, and pages their `<lastmod>`
    // spared (unchanged, never asked).
    let (sitemaps, skipped) = (get("recrawl/sitemaps"), get("recrawl/lastmod_skipped"));
    if unchanged + changed + gone + sitemaps != known {
        problems.push(format!(
            "{known} known pages, but {unchanged} unchanged + {changed} changed + {gone} gone + {sitemaps} sitemaps"
        ));
    }
    if out.items != changed + new {
        problems.push(format!(
            "{} items for {changed} changed and {new} new pages",
            out.items
        ));
    }
    let Some(site) = site else {
        eprintln!("bench: the site does not say what changed (not a `bench --edition` site): its counts are not checked");
        return;
    };
    let s = site.step;
    if (changed, new, gone) != (s.changed, s.new, s.gone) {
        problems.push(format!(
            "re-crawl found {changed} changed, {new} new, {gone} gone; the site changed {}, added {}, removed {}",
            s.changed, s.new, s.gone
        ));
    }
    if site.not_modified + skipped != unchanged || site.bodies != changed + new {
        problems.push(format!(
            "the site sent {} bodies and {} 304s for {changed} changed, {new} new and {unchanged} unchanged pages ({skipped} never asked)",
            site.bodies, site.not_modified
        ));
    }
    if site.repeats != 0 || site.fetched + skipped != s.live + s.gone {
        problems.push(format!(
            "the site answered {} pages ({} repeats) of {} live and {} gone ({skipped} never asked)",
            site.fetched, site.repeats, s.live, s.gone
        ));
    }
}

/// The line printed on stdout for a crawl.
#[derive(Serialize)]
struct Line {
    /// `framework` or `bare`.
    mode: &'static str,
    pages: u64,
    seconds: f64,
    pages_per_sec: f64,
    peak_rss_mb: Option<f64>,
    /// Dequeue to pipeline, median and 99th percentile (framework only).
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms_p50: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms_p99: Option<f64>,
    /// Requests the frontier wrote to disk, and the most bytes its
    /// segments held at once (framework only).
    #[serde(skip_serializing_if = "Option::is_none")]
    frontier_spilled: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frontier_disk_mb_max: Option<f64>,
    /// Body bytes received this run (framework only).
    #[serde(skip_serializing_if = "Option::is_none")]
    body_bytes: Option<u64>,
    /// A re-crawl's counts: known, unchanged, changed, new, gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    recrawl: Option<[u64; 5]>,
    /// Of its unchanged pages, those never asked (their sitemap's
    /// `<lastmod>` was before their last fetch); sitemaps read again.
    #[serde(skip_serializing_if = "Option::is_none")]
    recrawl_lastmod_skipped: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recrawl_sitemaps: Option<u64>,
    /// Fingerprints in the dupe store at the end, and its size.
    #[serde(skip_serializing_if = "Option::is_none")]
    dupe_fingerprints: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dupe_store_mb: Option<f64>,
    resumed: bool,
}

impl Line {
    fn new(mode: &'static str, pages: u64, seconds: f64) -> Self {
        Line {
            mode,
            pages,
            seconds: round(seconds, 3),
            pages_per_sec: round(pages as f64 / seconds, 1),
            peak_rss_mb: peak_rss_mb().map(|mb| round(mb, 1)),
            latency_ms_p50: None,
            latency_ms_p99: None,
            frontier_spilled: None,
            frontier_disk_mb_max: None,
            body_bytes: None,
            recrawl: None,
            recrawl_lastmod_skipped: None,
            recrawl_sitemaps: None,
            dupe_fingerprints: None,
            dupe_store_mb: None,
            resumed: false,
        }
    }

    fn print(&self) {
        print_json(self);
    }
}

fn print_json(value: &impl Serialize) {
    let mut stdout = std::io::stdout().lock();
    let json = serde_json::to_string(value).expect("the line serialises");
    let _ = writeln!(stdout, "{json}");
    let _ = stdout.flush();
}

fn report(out: &Outcome, problems: &[String]) -> ExitCode {
    let mut line = Line::new("framework", out.ok(), out.seconds);
    line.resumed = out.resumed;
    if let Some((p50, p99)) = out.latency_ms {
        line.latency_ms_p50 = Some(round(p50, 2));
        line.latency_ms_p99 = Some(round(p99, 2));
    }
    let mb = |name: &str| round(out.stats.get(name) as f64 / 1_048_576.0, 1);
    line.frontier_spilled = Some(out.stats.get("scheduler/frontier_spilled"));
    line.frontier_disk_mb_max = Some(mb("scheduler/frontier_disk_bytes_max"));
    line.dupe_fingerprints = Some(out.stats.get("dupefilter/fingerprints"));
    line.dupe_store_mb = Some(mb("dupefilter/store_bytes"));
    line.body_bytes = Some(out.this_run(Counter::ResponseBytes));
    if out.recrawling() {
        let get = |name: &str| out.stats.get(name) - out.before.get(name);
        line.recrawl = Some([
            out.stats.get("recrawl/known"),
            get("recrawl/unchanged"),
            get("recrawl/changed"),
            get("recrawl/new"),
            get("recrawl/gone"),
        ]);
        line.recrawl_lastmod_skipped = Some(get("recrawl/lastmod_skipped")).filter(|&n| n > 0);
        line.recrawl_sitemaps = Some(get("recrawl/sitemaps")).filter(|&n| n > 0);
    }
    line.print();
    if problems.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!("bench: the crawl did not fetch every page exactly once without errors:");
    for p in problems {
        eprintln!("  - {p}");
    }
    eprintln!(
        "  final stats: {}",
        serde_json::to_string(&out.stats).unwrap_or_default()
    );
    ExitCode::FAILURE
}

fn fail(what: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("bench: {what}: {e}");
    ExitCode::from(2)
}

// ---------------------------------------------------------------------------
// The bare loop: what the framework is measured against.

/// What the bare loop did.
struct Bare {
    pages: u64,
    failures: u64,
    seconds: f64,
}

/// The `href="…"` values of `html`, by plain scanning.
fn hrefs(html: &str) -> impl Iterator<Item = &str> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(value, _)| value))
}

/// Crawls from `start` with no framework: one awc client, `concurrency`
/// requests at once, a HashSet of seen URLs, a FIFO of URLs to fetch and an
/// href scan of each body; same host only, fragments dropped.
async fn bare(start: Url, concurrency: usize) -> Bare {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let host = start.host_str().map(str::to_owned);
    let mut seen = HashSet::from([start.to_string()]);
    let mut todo = VecDeque::from([start]);
    let mut running = FuturesUnordered::new();
    let (mut pages, mut failures) = (0, 0);
    let started = Instant::now();
    loop {
        while running.len() < concurrency.max(1) {
            let Some(url) = todo.pop_front() else { break };
            let client = &client;
            running.push(async move {
                let fetched = async {
                    let mut resp = client.get(url.as_str()).send().await.ok()?;
                    if !resp.status().is_success() {
                        return None;
                    }
                    resp.body().limit(8 << 20).await.ok()
                };
                (url.clone(), fetched.await)
            });
        }
        let Some((url, body)) = running.next().await else {
            break;
        };
        let Some(body) = body else {
            failures += 1;
            continue;
        };
        pages += 1;
        for href in hrefs(&String::from_utf8_lossy(&body)) {
            let Ok(mut next) = url.join(href) else {
                continue;
            };
            next.set_fragment(None);
            if next.host_str() == host.as_deref() && seen.insert(next.to_string()) {
                todo.push_back(next);
            }
        }
    }
    Bare {
        pages,
        failures,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Runs what `args` asks for on the site at `start` (`site`: served
/// in-process, so its coverage is checked) and prints the lines.
async fn run(start: Url, args: &Args, site: Option<&Site>) -> ExitCode {
    let mut bare_rate = None;
    if args.bare || args.compare {
        let b = bare(start.clone(), args.concurrency).await;
        let line = Line::new("bare", b.pages, b.seconds);
        line.print();
        let mut problems = Vec::new();
        if b.failures > 0 {
            problems.push(format!("{} fetches failed", b.failures));
        }
        if let Some(site) = site {
            site_problems(site, b.pages, false, &mut problems);
            site.reset();
        }
        if !problems.is_empty() {
            eprintln!("bench: the bare loop did not fetch every page exactly once:");
            for p in problems {
                eprintln!("  - {p}");
            }
            return ExitCode::FAILURE;
        }
        if args.bare {
            return ExitCode::SUCCESS;
        }
        bare_rate = Some(line.pages_per_sec);
    }
    if let (true, Some(site)) = (args.recrawl, site) {
        return crawl_and_recrawl(start, args, site).await;
    }
    let out = match crawl(start.clone(), args).await {
        Ok(out) => out,
        Err(e) => return fail("crawl failed", e),
    };
    let mut problems = Vec::new();
    crawl_problems(&out, &mut problems);
    match site {
        _ if out.recrawling() => {
            let view = match site {
                Some(site) => SiteView::of(site),
                None => SiteView::fetch(&start).await,
            };
            recrawl_problems(&out, view.as_ref(), &mut problems);
        }
        Some(_) if out.resumed => eprintln!("bench: resumed run: the site's coverage is not checked (earlier runs fetched from another server)"),
        Some(site) => site_problems(site, out.ok(), true, &mut problems),
        None => {}
    }
    let code = report(&out, &problems);
    if let Some(bare) = bare_rate {
        let framework = out.ok() as f64 / out.seconds;
        print_json(&serde_json::json!({ "ratio": round(framework / bare, 3) }));
    }
    code
}

/// Crawls the generated site's edition 0 into the job directory, moves the
/// site to edition 1 and re-crawls; prints both lines and the re-crawl's
/// share of the first crawl's time and body bytes.
async fn crawl_and_recrawl(start: Url, args: &Args, site: &Site) -> ExitCode {
    let mut lines = Vec::new();
    for edition in [0, 1] {
        if let Some(changes) = &site.changes {
            changes.set_edition(edition);
        }
        site.reset();
        let out = match crawl(start.clone(), args).await {
            Ok(out) => out,
            Err(e) => return fail("crawl failed", e),
        };
        let mut problems = Vec::new();
        crawl_problems(&out, &mut problems);
        if edition == 0 && out.recrawling() {
            problems.push("the job directory already held a finished crawl: give a new one".into());
        }
        if edition == 0 {
            site_problems(site, out.ok(), true, &mut problems);
        } else {
            recrawl_problems(&out, SiteView::of(site).as_ref(), &mut problems);
        }
        if report(&out, &problems) != ExitCode::SUCCESS {
            return ExitCode::FAILURE;
        }
        lines.push((out.seconds, out.this_run(Counter::ResponseBytes)));
    }
    let (first, again) = (lines[0], lines[1]);
    print_json(&serde_json::json!({
        "recrawl_time_share": round(again.0 / first.0, 3),
        "recrawl_bytes_share": round(again.1 as f64 / first.1.max(1) as f64, 3),
    }));
    ExitCode::SUCCESS
}

#[actix::main]
async fn main() -> ExitCode {
    let args = Args::parse();

    if let Some(url) = &args.url {
        let start = match Url::parse(url) {
            Ok(u) => u,
            Err(e) => return fail(&format!("invalid --url {url:?}"), e),
        };
        return run(start, &args, None).await;
    }

    if args.sitemaps > 0 && bench_site::sitemaps::per_sitemap(args.pages, args.sitemaps).is_none() {
        let at_least = args.pages.div_ceil(bench_site::sitemaps::MAX_URLS);
        return fail(
            "--sitemaps",
            format!(
                "{} pages need at least {at_least} sitemaps of 50,000",
                args.pages
            ),
        );
    }
    let mut site = Site::new(args.pages, Duration::from_millis(args.delay_ms))
        .with_shape(args.shape)
        .with_sitemaps(args.sitemaps);
    // A site that changes: served at `--edition`, or at 0 then 1 for an
    // in-process re-crawl.
    let percent = match (args.change_percent, args.recrawl) {
        (Some(p), _) => Some(p),
        (None, true) => Some(5.0),
        (None, false) => None,
    };
    if let Some(percent) = percent {
        site = site.with_changes(percent);
        if let Some(changes) = &site.changes {
            changes.set_edition(args.edition);
        }
    }
    let site = Arc::new(site);
    let server = match start_server(site.clone(), args.port) {
        Ok(s) => s,
        Err(e) => return fail("cannot start the server", e),
    };

    if args.serve_only {
        eprintln!(
            "bench: serving {} {:?} pages at {}, each {} ms late",
            args.pages, args.shape, server.url, args.delay_ms
        );
        return match server.thread.join() {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(e)) => fail("server failed", e),
            Err(_) => fail("server failed", "its thread panicked"),
        };
    }

    let code = run(server.url.clone(), &args, Some(&site)).await;
    server.handle.stop(false).await;
    let _ = server.thread.join();
    code
}
