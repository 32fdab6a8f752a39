//! Distributed crawls on a real Redis: several worker processes (this test
//! binary, run again as `distributed::worker_child`) crawl one fixture site
//! together; one dies by SIGKILL, or Redis restarts, and nothing is lost.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use spinneret::distributed::{key_prefix, totals, RedisOptions};
use spinneret::pipelines::JsonLinesFile;
use spinneret::Crawler;

use crate::fixture::{serve, Site};
use crate::redis_server::RedisServer;
use crate::spiders::{run, Collect, LinkSpider};

/// Pages of the fixture site.
const PAGES: usize = 5000;

/// The environment of [`worker_child`].
const ENV_REDIS: &str = "SPINNERET_DIST_REDIS";
const ENV_URL: &str = "SPINNERET_DIST_URL";
const ENV_CRAWL: &str = "SPINNERET_DIST_CRAWL";
const ENV_WORKER: &str = "SPINNERET_DIST_WORKER";
const ENV_ITEMS: &str = "SPINNERET_DIST_ITEMS";
const ENV_TTL_MS: &str = "SPINNERET_DIST_TTL_MS";
const ENV_REASON: &str = "SPINNERET_DIST_REASON";
const ENV_BLOOM: &str = "SPINNERET_DIST_BLOOM";

/// The options every worker of a test crawl uses.
fn options(redis: &str, crawl: &str, worker: &str, ttl: Duration) -> RedisOptions {
    RedisOptions {
        crawl_id: Some(crawl.into()),
        worker_id: Some(worker.into()),
        lease_ttl: ttl,
        ..RedisOptions::new(redis)
    }
}

/// One worker of a distributed crawl, in a child process: crawls from the
/// site's root (with a Bloom filter sized for `$SPINNERET_DIST_BLOOM`
/// URLs when set), writes its items as JSON lines, and prints the crawl's
/// totals (once every worker has left) as its last line.
#[actix::test]
#[ignore = "a worker process of the distributed tests"]
async fn worker_child() {
    let var = |k: &str| std::env::var(k).expect("run by the distributed tests only");
    let redis = var(ENV_REDIS);
    let crawl = var(ENV_CRAWL);
    let ttl = Duration::from_millis(var(ENV_TTL_MS).parse().unwrap());
    let mut builder = Crawler::builder(LinkSpider::from_urls(&[var(ENV_URL)]))
        .concurrency(8)
        .redis_options(options(&redis, &crawl, &var(ENV_WORKER), ttl))
        .pipeline(JsonLinesFile::new(var(ENV_ITEMS)));
    if let Ok(capacity) = std::env::var(ENV_BLOOM) {
        builder = builder.bloom(capacity.parse().unwrap(), 0.01);
    }
    let handle = builder.build().unwrap().start_async().await.unwrap();
    // SIGINT: this worker leaves the crawl.
    handle.stop_on_signals().unwrap();
    let stats = handle.join().await.unwrap();
    let reason = std::env::var(ENV_REASON).unwrap_or_else(|_| "finished".into());
    assert_eq!(stats.finish_reason.as_deref(), Some(reason.as_str()));
    // The totals are complete once every worker has reported and left.
    let deadline = Instant::now() + Duration::from_secs(10);
    let t = loop {
        let t = totals(&redis, &crawl).await.unwrap();
        if t.workers == 0 || Instant::now() > deadline {
            break t;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    };
    let own = stats.counters["downloader/response_count"];
    let all = t
        .counters
        .get("downloader/response_count")
        .copied()
        .unwrap_or(0);
    println!("TOTALS {own} {all} {}", t.finished.unwrap_or_default());
}

/// A running worker process.
struct Worker {
    id: String,
    child: Child,
    items: PathBuf,
    /// When it exited, once it has.
    exited: Option<(Instant, ExitStatus)>,
}

impl Worker {
    /// A worker of `setup`'s crawl `crawl` that must finish with `reason`.
    fn spawn(setup: &Setup, crawl: &str, id: &str, ttl: Duration, reason: &str) -> Self {
        let items = setup.dir.path().join(format!("{id}.jsonl"));
        let mut command = Command::new(std::env::current_exe().unwrap());
        if let Some(capacity) = setup.bloom {
            command.env(ENV_BLOOM, capacity.to_string());
        }
        let child = command
            .args([
                "--exact",
                "distributed::worker_child",
                "--ignored",
                "--nocapture",
            ])
            .env(ENV_REDIS, setup.redis.url())
            .env(ENV_URL, setup.site.url("/p/0"))
            .env(ENV_CRAWL, crawl)
            .env(ENV_WORKER, id)
            .env(ENV_ITEMS, &items)
            .env(ENV_TTL_MS, ttl.as_millis().to_string())
            .env(ENV_REASON, reason)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Worker {
            id: id.into(),
            child,
            items,
            exited: None,
        }
    }

    /// Notes the exit time if it has exited.
    fn poll(&mut self) -> bool {
        if self.exited.is_none() {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.exited = Some((Instant::now(), status));
            }
        }
        self.exited.is_some()
    }

    /// (this worker's pages, the crawl's total pages) from its last line.
    fn totals(&mut self) -> (u64, u64) {
        use std::io::Read;
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix("TOTALS "))
            .unwrap_or_else(|| panic!("worker {} printed no totals: {out}", self.id));
        let mut f = line.split(' ');
        let mut num = || f.next().unwrap().parse().unwrap();
        (num(), num())
    }

    /// The (path, title) of every item it wrote.
    fn items(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(&self.items).unwrap_or_default();
        text.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                let url = url::Url::parse(v["url"].as_str().unwrap()).unwrap();
                (
                    url.path().to_string(),
                    v["title"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

/// Waits (bounded) for every worker to exit.
async fn wait_all(workers: &mut [Worker]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !workers.iter_mut().all(|w| w.poll() || w.exited.is_some()) {
        assert!(Instant::now() < deadline, "workers did not finish");
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
    for w in workers.iter() {
        let (_, status) = w.exited.unwrap();
        assert!(status.success(), "worker {} failed: {status}", w.id);
    }
}

/// Waits (bounded) until the site has served `n` requests.
async fn wait_for_hits(site: &Site, n: usize, workers: &mut [Worker]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while site.seen.total() < n {
        assert!(
            Instant::now() < deadline,
            "the crawl did not reach {n} fetches"
        );
        for w in workers.iter_mut() {
            assert!(!w.poll(), "worker {} exited early", w.id);
        }
        actix_rt::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Every tree page fetched exactly once.
fn assert_each_page_once(site: &Site) {
    let hits = page_hits(site);
    let wrong: Vec<_> = (0..PAGES)
        .filter(|&n| hits[n] != 1)
        .map(|n| (n, hits[n]))
        .collect();
    assert!(
        wrong.is_empty(),
        "pages not fetched exactly once: {wrong:?}"
    );
}

/// Fetches per tree page.
fn page_hits(site: &Site) -> Vec<usize> {
    (0..PAGES)
        .map(|n| site.seen.hits(&format!("/p/{n}")))
        .collect()
}

fn pages_missing(hits: &[usize]) -> Vec<usize> {
    (0..hits.len()).filter(|&n| hits[n] == 0).collect()
}

/// A single-process crawl's items, as (path, title).
async fn single_process_items() -> BTreeSet<(String, String)> {
    let site = serve(PAGES);
    let items = Collect::default();
    let s =
        run(Crawler::builder(LinkSpider::from_urls(&[site.url("/p/0")])).pipeline(items.clone()))
            .await;
    assert_eq!(s.finish_reason.as_deref(), Some("finished"));
    let items = items.items.lock().unwrap();
    items
        .iter()
        .map(|v| {
            let url = url::Url::parse(v["url"].as_str().unwrap()).unwrap();
            (
                url.path().to_string(),
                v["title"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A Redis and a fixture site of [`PAGES`] pages for one test crawl.
struct Setup {
    redis: RedisServer,
    site: Site,
    dir: tempfile::TempDir,
    /// The Bloom capacity of the workers started from now on (default: the
    /// builder's).
    bloom: Option<usize>,
}

impl Setup {
    /// `None` (the test skips) when Redis cannot be started.
    fn start() -> Option<Self> {
        Some(Setup {
            redis: RedisServer::start()?,
            site: serve(PAGES),
            dir: tempfile::tempdir().unwrap(),
            bloom: None,
        })
    }

    /// Starts a worker of crawl `crawl` that must finish with `reason`.
    fn worker(&self, crawl: &str, id: &str, ttl: Duration, reason: &str) -> Worker {
        Worker::spawn(self, crawl, id, ttl, reason)
    }

    /// Starts workers `ids` of crawl `crawl`, each to finish the crawl.
    fn workers(&self, crawl: &str, ids: &[&str], ttl: Duration) -> Vec<Worker> {
        ids.iter()
            .map(|id| self.worker(crawl, id, ttl, "finished"))
            .collect()
    }
}

#[actix::test]
async fn three_workers_fetch_every_page_once_and_finish_together() {
    let Some(setup) = Setup::start() else {
        return;
    };
    let (redis, site) = (&setup.redis, &setup.site);
    let mut workers = setup.workers("three", &["w1", "w2", "w3"], Duration::from_secs(10));
    wait_all(&mut workers).await;

    assert_each_page_once(site);
    assert_eq!(site.seen.hits("/missing"), 1);

    // Every worker did part of the work; the items' union is the
    // single-process crawl's, with no item twice.
    let mut union = BTreeMap::new();
    for w in &workers {
        let items = w.items();
        assert!(!items.is_empty(), "worker {} scraped nothing", w.id);
        for item in items {
            *union.entry(item).or_insert(0) += 1;
        }
    }
    assert!(union.values().all(|&n| n == 1), "an item was scraped twice");
    let union: BTreeSet<_> = union.into_keys().collect();
    assert_eq!(union, single_process_items().await);

    // Every worker exits within a second of the last page served.
    let last = *site.seen.times("/").last().unwrap();
    for w in &workers {
        let (at, _) = w.exited.unwrap();
        let after = at.saturating_duration_since(last);
        println!("worker {} exited {after:?} after the last page", w.id);
        assert!(
            after < Duration::from_secs(1),
            "worker {} exited {after:?} after the last page",
            w.id
        );
    }
    // Totals: each worker's pages add up to the crawl's, which all report.
    let reported: Vec<_> = workers.iter_mut().map(Worker::totals).collect();
    let sum: u64 = reported.iter().map(|(own, _)| own).sum();
    assert_eq!(sum, PAGES as u64 + 1);
    assert!(reported.iter().all(|&(_, all)| all == sum), "{reported:?}");
    let p = key_prefix("three");
    assert_eq!(redis.cmd(&["GET", &format!("{p}finished")]), "finished");
    assert_eq!(redis.cmd(&["ZCARD", &format!("{p}queue")]), "0");
    assert_eq!(redis.cmd(&["HLEN", &format!("{p}req")]), "0");
    assert_eq!(redis.cmd(&["HLEN", &format!("{p}reserved")]), "0");
}

#[actix::test]
async fn a_bitmap_sized_for_100_urls_still_fetches_every_page_once() {
    let Some(mut setup) = Setup::start() else {
        return;
    };
    // Past a few hundred URLs nearly every check finds all of its bits set:
    // the exact set behind the bitmap tells the new URLs.
    setup.bloom = Some(100);
    let mut workers = setup.workers("small", &["s1", "s2"], Duration::from_secs(10));
    wait_all(&mut workers).await;

    assert_each_page_once(&setup.site);
    assert_eq!(setup.site.seen.hits("/missing"), 1);
    let t = totals(&setup.redis.url(), "small").await.unwrap();
    assert_eq!(t.finished.as_deref(), Some("finished"));
    let false_positives = t.counters.get("dupefilter/bloom_false_positives");
    assert!(
        false_positives.is_some_and(|&n| n > PAGES as u64 / 2),
        "{:?}",
        t.counters
    );
    let p = key_prefix("small");
    // 959 bits, 7 hashes, one shard holding every URL (the pages and
    // `/missing`).
    let shape = setup
        .redis
        .cmd(&["HMGET", &format!("{p}bloom:shape"), "m", "k", "s"]);
    assert_eq!(shape, "959\n7\n0");
    let held = setup.redis.cmd(&["SCARD", &format!("{p}seen:0")]);
    assert_eq!(held, (PAGES + 1).to_string());
}

/// The local ports of process `pid`'s TCP connections to port `remote`
/// (its socket inodes, looked up in the kernel's TCP tables). Only those:
/// a connection elsewhere may share a local port with another process's
/// connection to `remote`.
fn tcp_ports(pid: u32, remote: u16) -> Vec<u16> {
    let inodes: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            let inode = target.strip_prefix("socket:[")?.strip_suffix(']')?;
            Some(inode.to_owned())
        })
        .collect();
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    // sl local_address rem_address st ... uid timeout inode
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let port = |field: usize| {
                        let hex = fields.get(field)?.rsplit(':').next()?;
                        u16::from_str_radix(hex, 16).ok()
                    };
                    (inodes.contains(*fields.get(9)?) && port(2)? == remote)
                        .then(|| port(1))
                        .flatten()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Kills a worker mid-crawl as `kill -9` does: stopped first (so Redis
/// holds its last state), then killed; returns once Redis has closed every
/// connection the worker had, so from then on its leases can only change
/// by the reaper.
async fn kill_worker(dead: &mut Worker, redis: &RedisServer) {
    signal(dead, "STOP");
    let ports = tcp_ports(dead.child.id(), redis.port());
    assert!(!ports.is_empty(), "the worker has no connection to redis");
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ports.iter().any(|port| {
        redis
            .cmd(&["CLIENT", "LIST"])
            .contains(&format!(" addr=127.0.0.1:{port} "))
    }) {
        assert!(
            Instant::now() < deadline,
            "redis kept the dead worker's connections"
        );
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Sends `signal` to a worker process.
fn signal(w: &Worker, signal: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &w.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal} failed");
}

#[actix::test]
async fn a_worker_killed_mid_crawl_loses_nothing_and_repeats_at_most_its_leases() {
    let Some(setup) = Setup::start() else {
        return;
    };
    let (redis, site) = (&setup.redis, &setup.site);
    // Short leases: the dead worker's come back within two seconds.
    let mut workers = setup.workers("killed", &["k1", "k2", "k3"], Duration::from_secs(2));
    wait_for_hits(site, PAGES / 3, &mut workers).await;
    // Count what it holds once Redis has closed its connections: Redis
    // runs whatever the worker had sent before it reads their end.
    let mut dead = workers.remove(1);
    kill_worker(&mut dead, redis).await;
    let p = key_prefix("killed");
    let leases: usize = redis
        .cmd(&["HLEN", &format!("{p}lease:{}", dead.id)])
        .parse()
        .unwrap();
    let at_kill = site.seen.total();
    wait_all(&mut workers).await;

    let hits = page_hits(site);
    assert!(
        pages_missing(&hits).is_empty(),
        "pages never fetched: {:?}",
        pages_missing(&hits)
    );
    assert!(hits.iter().all(|&h| h <= 2), "a page fetched three times");
    let twice = hits.iter().filter(|&&h| h == 2).count();
    println!("SIGKILL after {at_kill} fetches: the worker held {leases} leases; {twice} pages fetched twice");
    assert!(
        twice <= leases,
        "{twice} pages fetched twice, the dead worker held {leases} leases"
    );
    let t = totals(&redis.url(), "killed").await.unwrap();
    assert_eq!(t.finished.as_deref(), Some("finished"));
    assert_eq!(t.counters.get("redis/workers_reaped"), Some(&1));
    assert_eq!(
        t.counters.get("redis/leases_requeued"),
        Some(&(leases as u64))
    );
}

#[actix::test]
async fn a_redis_restart_mid_crawl_loses_nothing() {
    let Some(mut setup) = Setup::start() else {
        return;
    };
    let mut workers = setup.workers("restart", &["r1", "r2", "r3"], Duration::from_secs(10));
    let (redis, site) = (&mut setup.redis, &setup.site);
    wait_for_hits(site, PAGES / 3, &mut workers).await;
    // Down while the workers are busy: every queue operation under way
    // or started until it is back fails and is retried.
    redis.kill();
    let at_kill = site.seen.total();
    redis.restart();
    wait_all(&mut workers).await;

    let hits = page_hits(site);
    assert!(
        pages_missing(&hits).is_empty(),
        "pages never fetched: {:?}",
        pages_missing(&hits)
    );
    let twice = hits.iter().filter(|&&h| h > 1).count();
    println!(
        "Redis killed after {at_kill} fetches and restarted; {twice} pages fetched more than once"
    );
    let t = totals(&redis.url(), "restart").await.unwrap();
    assert_eq!(t.finished.as_deref(), Some("finished"));
    assert!(
        t.counters.get("redis/retries").is_some_and(|&n| n > 0),
        "no retry was counted: {:?}",
        t.counters
    );
}

#[actix::test]
async fn a_worker_joins_a_running_crawl_and_another_leaves_it_without_loss_or_repeat() {
    let Some(setup) = Setup::start() else {
        return;
    };
    let (redis, site) = (&setup.redis, &setup.site);
    let ttl = Duration::from_secs(10);
    let mut workers = vec![setup.worker("churn", "leaver", ttl, "shutdown")];
    wait_for_hits(site, PAGES / 5, &mut workers).await;
    workers.push(setup.worker("churn", "joiner", ttl, "finished"));
    wait_for_hits(site, PAGES / 2, &mut workers).await;
    // The first worker leaves (a graceful stop): what it holds goes back
    // to the queue, its in-flight pages finish and their links are queued.
    signal(&workers[0], "INT");
    wait_all(&mut workers).await;

    assert_each_page_once(site);
    let joiner = workers[1].items().len();
    let leaver = workers[0].items().len();
    println!("the leaver scraped {leaver} pages, the joiner {joiner}");
    assert!(joiner > 0 && leaver > 0);
    // One item per page (`/missing`, a 404, gives none).
    assert_eq!(joiner + leaver, PAGES);
    let t = totals(&redis.url(), "churn").await.unwrap();
    assert_eq!(t.finished.as_deref(), Some("finished"));
    assert_eq!(t.workers, 0);
}

#[actix::test]
async fn redis_unreachable_at_start_is_a_clear_error() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/");
    let crawler = Crawler::builder(LinkSpider::from_urls(&["http://127.0.0.1:1/".to_string()]))
        .redis(&url)
        .build()
        .unwrap();
    let err = match crawler.start_async().await {
        Ok(_) => panic!("started without Redis"),
        Err(e) => e,
    };
    assert_eq!(err.stage(), spinneret::Stage::Setup);
    assert!(
        matches!(err.kind(), spinneret::ErrorKind::Backend(_)),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(&format!("Redis unreachable at {url}")),
        "{err}"
    );

    // A malformed URL fails the build; start() refuses a distributed crawl.
    let bad = Crawler::builder(LinkSpider::from_urls(&[]))
        .redis("http://not-redis/")
        .build();
    assert!(bad.is_err_and(|e| e.to_string().contains("bad Redis URL")));
    let sync = Crawler::builder(LinkSpider::from_urls(&[]))
        .redis(&url)
        .build()
        .unwrap()
        .start();
    assert!(sync.is_err_and(|e| e.to_string().contains("start_async")));
}

#[actix::test]
async fn a_bad_bloom_shape_in_redis_is_refused_at_start() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let site = serve(4);
    let p = key_prefix("shape");
    // Each shape a crawl's `bloom:shape` might hold by accident or by
    // hand, beside a bitmap already made (a crawl under way).
    let bad = [
        ("m", "0", "m = \"0\""),
        ("m", "18446744073709551615", "m = \"18446744073709551615\""),
        ("m", "-5", "m = \"-5\""),
        ("k", "0", "k = \"0\""),
        ("k", "4000000000", "k = \"4000000000\""),
        ("s", "99", "s = \"99\""),
        ("s", "x", "s = \"x\""),
    ];
    for (field, value, named) in bad {
        redis.cmd(&["DEL", &format!("{p}bloom:shape")]);
        redis.cmd(&[
            "HSET",
            &format!("{p}bloom:shape"),
            "m",
            "959",
            "k",
            "7",
            "s",
            "0",
        ]);
        redis.cmd(&["HSET", &format!("{p}bloom:shape"), field, value]);
        redis.cmd(&["SETBIT", &format!("{p}bloom"), "958", "0"]);
        let crawler = Crawler::builder(LinkSpider::from_urls(&[site.url("/p/0")]))
            .redis_options(options(&redis.url(), "shape", "w", Duration::from_secs(5)))
            .build()
            .unwrap();
        let err = match crawler.start_async().await {
            Ok(handle) => {
                let _ = handle.stop_now().await;
                panic!("started with {field} = {value}")
            }
            Err(e) => e,
        };
        assert_eq!(err.stage(), spinneret::Stage::Setup, "{err}");
        assert!(
            matches!(err.kind(), spinneret::ErrorKind::Config(_)),
            "{field} = {value}: {err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!("{p}bloom:shape")) && text.contains(named),
            "{text}"
        );
    }
    // Nothing was fetched, and a good shape still starts.
    assert_eq!(site.seen.total(), 0);
    redis.cmd(&["HSET", &format!("{p}bloom:shape"), "s", "0"]);
    let crawler = Crawler::builder(LinkSpider::from_urls(&[site.url("/p/0")]))
        .redis_options(options(&redis.url(), "shape", "w", Duration::from_secs(5)))
        .build()
        .unwrap();
    let handle = crawler.start_async().await.unwrap();
    let stats = handle.join().await.unwrap();
    assert_eq!(stats.finish_reason.as_deref(), Some("finished"));
    assert_eq!(site.seen.hits("/p/3"), 1);
}

/// Items per page path over `workers`' files; a torn last line (the
/// process killed in the middle of a write) is left out.
fn items_by_page(workers: &[&Worker]) -> BTreeMap<String, usize> {
    let mut by_page = BTreeMap::new();
    for w in workers {
        let text = std::fs::read_to_string(&w.items).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                let last = i + 1 == lines.len() && !text.ends_with('\n');
                assert!(last, "worker {}: a torn line before the end", w.id);
                continue;
            };
            let url = url::Url::parse(v["url"].as_str().unwrap()).unwrap();
            *by_page.entry(url.path().to_string()).or_insert(0) += 1;
        }
    }
    by_page
}

#[actix::test]
async fn a_killed_workers_acknowledged_pages_have_their_items_in_its_file() {
    let Some(setup) = Setup::start() else {
        return;
    };
    let (redis, site) = (&setup.redis, &setup.site);
    let ttl = Duration::from_secs(2);
    let mut first = vec![setup.worker("items", "first", ttl, "finished")];
    // Well into the crawl, the worker has acknowledged hundreds of pages:
    // killed now, whatever its pipelines still buffered is gone with it.
    wait_for_hits(site, PAGES / 5, &mut first).await;
    let mut dead = first.remove(0);
    kill_worker(&mut dead, redis).await;
    let p = key_prefix("items");
    let leases: usize = redis
        .cmd(&["HLEN", &format!("{p}lease:first")])
        .parse()
        .unwrap();
    // A second worker finishes the crawl.
    let mut second = vec![setup.worker("items", "second", ttl, "finished")];
    wait_all(&mut second).await;

    // At least once: every page's item is in one of the two files; twice
    // only for pages the dead worker held leased (fetched again).
    let by_page = items_by_page(&[&dead, &second[0]]);
    let missing: Vec<usize> = (0..PAGES)
        .filter(|n| !by_page.contains_key(&format!("/p/{n}")))
        .collect();
    assert!(missing.is_empty(), "pages whose item is lost: {missing:?}");
    let twice = by_page.values().filter(|&&n| n == 2).count();
    let (own, others) = (items_by_page(&[&dead]), items_by_page(&[&second[0]]));
    println!(
        "killed holding {leases} leases; its file had {} items, the other's {}; {twice} pages' items twice",
        own.len(),
        others.len()
    );
    assert!(by_page.values().all(|&n| n <= 2), "an item three times");
    assert!(twice <= leases, "{twice} items twice, {leases} leases");
    assert!(!own.is_empty() && !others.is_empty());
}

#[actix::test]
async fn a_worker_that_rejoins_keeps_its_earlier_items_in_its_feed() {
    let Some(setup) = Setup::start() else {
        return;
    };
    let ttl = Duration::from_secs(10);
    // One worker, stopped a fifth of the way in (its pages acknowledged),
    // then started again with the same id, hence the same feed path.
    let mut first = vec![setup.worker("rejoin", "again", ttl, "shutdown")];
    wait_for_hits(&setup.site, PAGES / 5, &mut first).await;
    signal(&first[0], "INT");
    wait_all(&mut first).await;
    let before = first[0].items();
    assert!(!before.is_empty(), "the first run scraped nothing");
    let mut second = vec![setup.worker("rejoin", "again", ttl, "finished")];
    wait_all(&mut second).await;

    assert_each_page_once(&setup.site);
    // The file holds the first run's lines, then the second's: one item
    // per page (`/missing`, a 404, gives none).
    let items = second[0].items();
    assert_eq!(items.len(), PAGES);
    assert!(
        items.starts_with(&before),
        "the first run's {} lines are gone",
        before.len()
    );
    let distinct: BTreeSet<_> = items.into_iter().collect();
    assert_eq!(distinct, single_process_items().await);
}
