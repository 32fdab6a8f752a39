//! A distributed crawl (one worker, in this process) against a Redis that
//! fails under it: a push refused by a script error, a Redis stalled by
//! SIGSTOP while the worker stops.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use spinneret::distributed::{key_prefix, totals, RedisOptions};
use spinneret::{
    CrawlHandle, Crawler, Error, Html, Output, Request, Response, Selector, Spider, StartRequests,
};

use crate::fixture::{serve, Site};
use crate::redis_server::RedisServer;
use crate::spiders::LinkSpider;

/// Pages of the fixture site's tree.
const PAGES: usize = 50;

/// Options for worker `worker` of crawl `crawl`.
fn options(redis: &RedisServer, crawl: &str, worker: &str) -> RedisOptions {
    RedisOptions {
        crawl_id: Some(crawl.into()),
        worker_id: Some(worker.into()),
        lease_ttl: Duration::from_secs(2),
        ..RedisOptions::new(redis.url())
    }
}

/// Starts one worker crawling from `/gated/0`, whose answer waits for the
/// gate, with a Bloom filter of one exact-set shard (`seen:0`).
async fn start(site: &Site, opts: RedisOptions) -> CrawlHandle {
    Crawler::builder(LinkSpider::from_urls(&[site.url("/gated/0")]))
        .concurrency(4)
        .bloom(100, 0.01)
        .redis_options(opts)
        .build()
        .unwrap()
        .start_async()
        .await
        .unwrap()
}

/// How many replies of `redis` failed with error code `code` so far.
fn errors(redis: &RedisServer, code: &str) -> u64 {
    let info = redis.cmd(&["INFO", "errorstats"]);
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("errorstat_{code}:count=")))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Turns crawl `crawl`'s exact-set shard `seen:0` (its only one) into a
/// string: every push of a new URL then fails inside the script
/// (WRONGTYPE), while pops, acks, give-backs and the checks of URLs whose
/// bits are not all set go on. Answers the shard's key and where it is
/// kept meanwhile.
fn refuse_pushes(redis: &RedisServer, crawl: &str) -> (String, String) {
    let seen = format!("{}seen:0", key_prefix(crawl));
    let saved = format!("{}saved", key_prefix(crawl));
    assert_eq!(redis.cmd(&["RENAME", &seen, &saved]), "OK");
    assert_eq!(redis.cmd(&["SET", &seen, "not a set"]), "OK");
    (seen, saved)
}

/// Puts the shard back: pushes succeed again.
fn lift(redis: &RedisServer, seen: &str, saved: &str) {
    assert_eq!(redis.cmd(&["DEL", seen]), "1");
    assert_eq!(redis.cmd(&["RENAME", saved, seen]), "OK");
}

/// Waits (bounded) until `done` holds.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The crawl's stats once it has finished (bounded: a crawl left holding a
/// reservation or a lease would never finish).
async fn join(handle: &CrawlHandle) -> spinneret::StatsSnapshot {
    actix_rt::time::timeout(Duration::from_secs(60), handle.join())
        .await
        .expect("the crawl did not finish")
        .unwrap()
}

/// Every tree page fetched exactly once.
fn assert_each_page_once(site: &Site) {
    let wrong: Vec<_> = (0..PAGES)
        .map(|n| (n, site.seen.hits(&format!("/p/{n}"))))
        .filter(|&(_, hits)| hits != 1)
        .collect();
    assert!(wrong.is_empty(), "pages not fetched once: {wrong:?}");
}

#[actix::test]
async fn a_push_refused_by_a_script_error_is_retried_and_every_child_is_crawled() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut site = serve(PAGES);
    let handle = start(&site, options(&redis, "refused", "w")).await;
    // The start page is leased and fetched: its children are next.
    assert_eq!(site.arrival().await, "/gated/0");
    let (seen, saved) = refuse_pushes(&redis, "refused");
    let before = errors(&redis, "WRONGTYPE");
    site.open_gate();
    wait_until("a refused push", || errors(&redis, "WRONGTYPE") > before).await;
    lift(&redis, &seen, &saved);
    let stats = join(&handle).await;

    assert_eq!(stats.finish_reason.as_deref(), Some("finished"));
    assert_each_page_once(&site);
    assert_eq!(site.seen.hits("/gated/0"), 1);
    assert_eq!(stats.counters.get("scheduler/lost_on_push_error"), None);
    assert!(stats.counters["redis/retries"] >= 1, "{:?}", stats.counters);
}

#[actix::test]
async fn a_push_refused_past_its_deadline_gives_the_parent_back_to_be_fetched_again() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut site = serve(PAGES);
    let opts = RedisOptions {
        op_timeout: Duration::from_millis(500),
        ..options(&redis, "given", "w")
    };
    let handle = start(&site, opts).await;
    assert_eq!(site.arrival().await, "/gated/0");
    let (seen, saved) = refuse_pushes(&redis, "given");
    site.open_gate();
    // The push fails until its deadline: the parent, not acknowledged,
    // goes back to the queue (and is fetched again, and fails again,
    // until the fault is lifted).
    wait_until("a parent given back", || {
        handle.stats().counters.get("redis/parents_given_back") >= Some(&1)
    })
    .await;
    lift(&redis, &seen, &saved);
    let stats = join(&handle).await;

    assert_eq!(stats.finish_reason.as_deref(), Some("finished"));
    assert_each_page_once(&site);
    let given_back = stats.counters["redis/parents_given_back"];
    assert_eq!(site.seen.hits("/gated/0") as u64, 1 + given_back);
    assert_eq!(stats.counters["redis/pushes_given_up"], given_back);
    assert!(stats.counters["redis/timeouts"] >= given_back);
    assert_eq!(stats.counters.get("scheduler/lost_on_push_error"), None);
}

/// Turns worker `worker`'s lease table in crawl `crawl` into a string:
/// a push that replaces a lease (a retry) then fails inside the script
/// (WRONGTYPE) before it changes anything. Answers the table's key and
/// where it is kept meanwhile.
fn refuse_retries(redis: &RedisServer, crawl: &str, worker: &str) -> (String, String) {
    let lease = format!("{}lease:{worker}", key_prefix(crawl));
    let saved = format!("{}saved", key_prefix(crawl));
    assert_eq!(redis.cmd(&["RENAME", &lease, &saved]), "OK");
    assert_eq!(redis.cmd(&["SET", &lease, "not a hash"]), "OK");
    (lease, saved)
}

#[actix::test]
async fn a_retry_of_the_last_page_refused_past_its_deadline_goes_back_and_the_crawl_ends() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut site = serve(PAGES);
    let opts = RedisOptions {
        op_timeout: Duration::from_millis(500),
        ..options(&redis, "retry", "w")
    };
    // The only page: 503 the first time, so it is retried; nothing else
    // is left to complete (and acknowledge) on this worker.
    let handle = Crawler::builder(LinkSpider::from_urls(&[site.url("/gated_flaky/last")]))
        .redis_options(opts)
        .build()
        .unwrap()
        .start_async()
        .await
        .unwrap();
    assert_eq!(site.arrival().await, "/gated_flaky/last");
    let (lease, saved) = refuse_retries(&redis, "retry", "w");
    site.open_gate();
    wait_until("a retry's push given up", || {
        handle.stats().counters.get("redis/pushes_given_up") >= Some(&1)
    })
    .await;
    lift(&redis, &lease, &saved);
    let stats = join(&handle).await;

    assert_eq!(stats.finish_reason.as_deref(), Some("finished"));
    // The 503, then (its lease given back, leased again) the page.
    assert_eq!(site.seen.hits("/gated_flaky/last"), 2);
    assert_eq!(stats.counters["redis/pushes_given_up"], 1);
    assert_eq!(stats.counters["redis/parents_given_back"], 1);
    assert_eq!(stats.counters["downloader/response_status_count/200"], 1);
    assert_eq!(stats.counters.get("scheduler/lost_on_push_error"), None);
}

#[actix::test]
async fn leases_given_back_when_a_worker_leaves_reach_the_crawls_totals() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut site = serve(PAGES);
    let handle = start(&site, options(&redis, "leave", "w")).await;
    // The start page is leased and waits for the gate: the stop's leave
    // gives its lease back.
    assert_eq!(site.arrival().await, "/gated/0");
    handle.stop_now().await.unwrap();
    let stats = join(&handle).await;
    site.open_gate();

    assert_eq!(stats.finish_reason.as_deref(), Some("shutdown"));
    assert_eq!(stats.counters["redis/leases_given_back"], 1);
    let t = totals(&redis.url(), "leave").await.unwrap();
    assert_eq!(t.workers, 0);
    assert_eq!(t.queued, 1);
    assert_eq!(t.counters.get("redis/leases_given_back"), Some(&1));
}

/// A callback one of whose values cannot be serialised (JSON map keys
/// must be strings).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
enum Odd {
    #[default]
    Page,
    Unserializable(HashMap<Vec<u8>, u8>),
}

/// Follows the tree's links; the link to `odd` gets an unserialisable
/// callback.
struct OddSpider {
    start: String,
    odd: &'static str,
}

impl Spider for OddSpider {
    type Callback = Odd;

    fn name(&self) -> &str {
        "odd"
    }

    fn start_requests(&self) -> StartRequests<Odd> {
        Box::new(std::iter::once(Request::get(&self.start).unwrap()))
    }

    fn parse(&self, _: Odd, response: &Response, out: &mut Output<Odd>) -> Result<(), Error> {
        let doc = Html::parse_document(&response.text());
        for link in doc.select(&Selector::parse("a[href]").unwrap()) {
            let url = response.urljoin(link.value().attr("href").unwrap())?;
            let odd = url.path() == self.odd;
            let mut request = Request::try_from_url(url)?;
            if odd {
                request = request.callback(Odd::Unserializable(HashMap::from([(vec![1], 1)])));
            }
            out.request(request);
        }
        Ok(())
    }
}

#[actix::test]
async fn a_start_that_fails_after_connecting_leaves_no_worker_registered() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let workers = |crawl: &str| redis.cmd(&["ZCARD", &format!("{}workers", key_prefix(crawl))]);
    // The start requests panic (after the worker joined).
    let spider = OddSpider {
        start: "not a URL".into(),
        odd: "",
    };
    let started = Crawler::builder(spider)
        .redis_options(options(&redis, "panic", "w"))
        .build()
        .unwrap()
        .start_async()
        .await;
    let err = started
        .err()
        .expect("started with a panicking start_requests");
    assert!(
        matches!(err.kind(), spinneret::ErrorKind::Panic(_)),
        "{err:?}"
    );
    assert_eq!(workers("panic"), "0");
    // The Bloom filter's shape in Redis is not one this worker can use.
    let shape = format!("{}bloom:shape", key_prefix("shape"));
    redis.cmd(&["HSET", &shape, "m", "0", "k", "7", "s", "0"]);
    redis.cmd(&[
        "SETBIT",
        &format!("{}bloom", key_prefix("shape")),
        "958",
        "0",
    ]);
    let started = Crawler::builder(LinkSpider::from_urls(&["http://127.0.0.1:9/".into()]))
        .redis_options(options(&redis, "shape", "w"))
        .build()
        .unwrap()
        .start_async()
        .await;
    let err = started.err().expect("started with a bad Bloom shape");
    assert!(
        matches!(err.kind(), spinneret::ErrorKind::Config(_)),
        "{err:?}"
    );
    assert_eq!(workers("shape"), "0");
}

#[actix::test]
async fn a_request_that_cannot_be_serialised_is_counted_and_the_rest_of_its_push_is_crawled() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let site = serve(PAGES);
    let spider = OddSpider {
        start: site.url("/p/0"),
        odd: "/p/7",
    };
    let handle = Crawler::builder(spider)
        .concurrency(4)
        .bloom(100, 0.01)
        .redis_options(options(&redis, "odd", "w"))
        .build()
        .unwrap()
        .start_async()
        .await
        .unwrap();
    let stats = join(&handle).await;

    assert_eq!(stats.finish_reason.as_deref(), Some("finished"));
    assert_eq!(stats.counters["scheduler/unserializable"], 1);
    // Page 7 and its subtree are never reached; every other page once,
    // page 8 (pushed with page 7) too.
    let unreached = [7, 15, 16, 31, 32, 33, 34];
    let wrong: Vec<_> = (0..PAGES)
        .map(|n| (n, site.seen.hits(&format!("/p/{n}"))))
        .filter(|&(n, hits)| hits != usize::from(!unreached.contains(&n)))
        .collect();
    assert!(
        wrong.is_empty(),
        "pages fetched a wrong number of times: {wrong:?}"
    );
    assert_eq!(stats.counters.get("scheduler/lost_on_push_error"), None);
}

/// Crawls until 200 pages were fetched, stalls Redis (SIGSTOP), stops
/// (at once if `now`, else draining first) and waits, bounded, for the
/// crawl to end; then lets Redis go on.
async fn stop_while_stalled(crawl: &str, now: bool) {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let site = serve(5000);
    let handle = Crawler::builder(LinkSpider::from_urls(&[site.url("/p/0")]))
        .concurrency(8)
        .drain_timeout(Duration::from_secs(1))
        .redis_options(options(&redis, crawl, "w"))
        .build()
        .unwrap()
        .start_async()
        .await
        .unwrap();
    wait_until("200 pages", || site.seen.total() >= 200).await;
    // Stalled with its connections open: every call waits for an answer.
    redis.signal("STOP");
    let stopped = Instant::now();
    if now {
        handle.stop_now().await.unwrap();
    } else {
        handle.stop().await.unwrap();
    }
    let joined = actix_rt::time::timeout(Duration::from_secs(60), handle.join()).await;
    // For the record (drain timeout 1 s, lease time 2 s), not asserted.
    println!(
        "stop_now={now}: ended {:?} after the stop",
        stopped.elapsed()
    );
    redis.signal("CONT");
    let stats = joined
        .expect("the stop did not end while Redis was stalled")
        .unwrap();
    assert_eq!(stats.finish_reason.as_deref(), Some("shutdown"));
    assert!(
        stats.counters.get("redis/timeouts") >= Some(&1),
        "{:?}",
        stats.counters
    );
}

#[actix::test]
async fn a_stop_while_redis_is_stalled_ends() {
    stop_while_stalled("stalled", false).await;
}

#[actix::test]
async fn a_stop_now_while_redis_is_stalled_ends() {
    stop_while_stalled("stalled_now", true).await;
}
