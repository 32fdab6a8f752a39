//! Whole crawls through the eight actors, with exact counts.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;
use spinneret::{Counter, Crawler, ErrorKind, Request, StatsSnapshot, ThreadLayout};

use crate::fixture::serve;
use crate::log::Records;
use crate::spiders::{
    run, wait_for_stats, Cb, Collect, DropOdd, FailAll, LinkSpider, PanicOnce, StartCrawl, Tag,
    Trace,
};

fn count(s: &StatsSnapshot, c: Counter) -> u64 {
    s.counter(c)
}

/// Expected figures for the binary-tree site of `n` pages: every page links
/// to its children, to `/p/0` and to `/missing`.
struct TreeCounts {
    pages: u64,
    links: u64,
    depth_max: u64,
}

fn tree(n: u64) -> TreeCounts {
    // n-1 child links, plus 2 extra links on each of the n pages.
    let links = (n - 1) + 2 * n;
    let depth_max = (63 - n.leading_zeros()) as u64; // depth of node n-1
    TreeCounts {
        pages: n,
        links,
        depth_max,
    }
}

#[actix::test]
async fn tree_site_exact_counts() {
    tree_crawl(ThreadLayout::default()).await;
}

/// The same crawl, the same figures, with every actor on one thread and
/// with an arbiter per Parser, PipelineStage and downloader.
#[actix::test]
async fn tree_site_exact_counts_in_every_thread_layout() {
    tree_crawl(ThreadLayout::Single).await;
    tree_crawl(ThreadLayout::Spread).await;
}

async fn tree_crawl(layout: ThreadLayout) {
    let site = serve(50);
    let collect = Collect::default();
    let s = run(Crawler::builder(LinkSpider::from_urls(&[site.url("/p/0")]))
        .thread_layout(layout)
        .downloaders(2)
        .pipeline(collect.clone()))
    .await;
    let last_item = collect.last.lock().unwrap().expect("items arrived");
    let t = tree(50);

    assert_eq!(s.finish_reason.as_deref(), Some("finished"));
    // Pages plus one /missing.
    assert_eq!(count(&s, Counter::RequestCount), t.pages + 1);
    assert_eq!(count(&s, Counter::ResponseCount), t.pages + 1);
    assert_eq!(s.status_count(200), t.pages);
    assert_eq!(s.status_count(404), 1);
    assert_eq!(count(&s, Counter::HttpErrorIgnored), 1);
    assert_eq!(count(&s, Counter::RequestFailures), 1);
    assert_eq!(count(&s, Counter::ItemScraped), t.pages);
    assert_eq!(collect.items.lock().unwrap().len() as u64, t.pages);
    // Unique requests: the start page plus every other page plus /missing.
    assert_eq!(count(&s, Counter::Enqueued), t.pages + 1);
    assert_eq!(count(&s, Counter::Dequeued), t.pages + 1);
    // Every link beyond the first sight of its target is a duplicate.
    assert_eq!(count(&s, Counter::DupeFiltered), t.links - t.pages);
    assert_eq!(count(&s, Counter::DepthMax), t.depth_max);
    assert_eq!(count(&s, Counter::LostMessages), 0);
    assert_eq!(s.error_count(), 1);
    // Each page fetched exactly once.
    assert_eq!(site.seen.max_hits(), 1);
    assert_eq!(site.seen.total() as u64, t.pages + 1);
    // Pipelines closed exactly once.
    assert_eq!(*collect.closed.lock().unwrap(), 1);
    // Termination is event-driven: join returns right after the last item,
    // not after an idle timer (no fixed idle wait).
    let lag = last_item.elapsed();
    assert!(
        lag.as_millis() < 300,
        "{layout:?}: join returned {lag:?} after the last item"
    );
}

#[actix::test]
async fn dedupe_off_fetches_duplicates_until_depth_is_exhausted() {
    // Without dedupe, a duplicate link is fetched again: here only a
    // non-cyclic graph is safe, so crawl two starts that point at the same
    // JSON page.
    let site = serve(1);
    let url = site.url("/items/2");
    let starts = vec![
        Request::get(&url).unwrap().callback(Cb::Items),
        Request::get(&url).unwrap().callback(Cb::Items),
    ];
    let s = run(Crawler::builder(LinkSpider::new(starts)).dedupe(false)).await;
    assert_eq!(site.seen.hits("/items/2"), 2);
    assert_eq!(count(&s, Counter::ItemScraped), 4);
    assert_eq!(count(&s, Counter::DupeFiltered), 0);
}

#[actix::test]
async fn middleware_order_in_and_out() {
    let site = serve(1);
    let log = Arc::new(Mutex::new(Vec::new()));
    let starts = vec![Request::get(&site.url("/items/0"))
        .unwrap()
        .callback(Cb::Items)];
    // Registered out of order on purpose.
    let crawl = Crawler::builder(LinkSpider::new(starts))
        .middleware(Trace {
            name: "b",
            priority: 20,
            log: log.clone(),
        })
        .middleware(Trace {
            name: "a",
            priority: 10,
            log: log.clone(),
        })
        .middleware(Trace {
            name: "c",
            priority: 30,
            log: log.clone(),
        })
        .started();
    crawl.join().await.unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        ["req:a", "req:b", "req:c", "resp:c", "resp:b", "resp:a"]
    );
}

#[actix::test]
async fn pipelines_run_in_priority_order_and_transform() {
    let site = serve(1);
    let log = Arc::new(Mutex::new(Vec::new()));
    let collect = Collect::default();
    let starts = vec![Request::get(&site.url("/items/3"))
        .unwrap()
        .callback(Cb::Items)];
    let s = run(Crawler::builder(LinkSpider::new(starts))
        .pipeline(collect.clone())
        .pipeline(Tag {
            name: "second",
            priority: 2,
            log: log.clone(),
        })
        .pipeline(Tag {
            name: "first",
            priority: 1,
            log: log.clone(),
        }))
    .await;
    assert_eq!(count(&s, Counter::ItemScraped), 3);
    assert_eq!(log.lock().unwrap().len(), 6);
    assert!(log
        .lock()
        .unwrap()
        .chunks(2)
        .all(|c| c == ["first", "second"]));
    for item in collect.items.lock().unwrap().iter() {
        assert_eq!(item["tags"], serde_json::json!(["first", "second"]));
    }
}

#[actix::test]
async fn dropped_items_are_counted() {
    let site = serve(1);
    let collect = Collect::default();
    let starts = vec![Request::get(&site.url("/items/7"))
        .unwrap()
        .callback(Cb::Items)];
    let s = run(Crawler::builder(LinkSpider::new(starts))
        .pipeline(DropOdd)
        .pipeline(collect.clone()))
    .await;
    // i = 0..7: 1, 3, 5 dropped.
    assert_eq!(count(&s, Counter::ItemDropped), 3);
    assert_eq!(count(&s, Counter::ItemScraped), 4);
    let kept: Vec<u64> = collect
        .items
        .lock()
        .unwrap()
        .iter()
        .map(|v| v["i"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, [0, 2, 4, 6]);
}

#[actix::test]
async fn a_pipeline_failing_on_1000_items_does_not_deadlock() {
    let site = serve(1);
    let collect = Collect::default();
    let starts = vec![Request::get(&site.url("/items/1000"))
        .unwrap()
        .callback(Cb::Items)];
    let s = run(Crawler::builder(LinkSpider::new(starts))
        .pipeline(FailAll)
        .pipeline(collect.clone()))
    .await;
    assert_eq!(s.finish_reason.as_deref(), Some("finished"));
    assert_eq!(count(&s, Counter::ItemError), 1000);
    assert_eq!(count(&s, Counter::ItemScraped), 0);
    assert!(collect.items.lock().unwrap().is_empty());
    assert_eq!(*collect.closed.lock().unwrap(), 1);
}

#[actix::test]
async fn post_bodies_arrive_intact_with_dedupe_on() {
    let site = serve(1);
    let url = site.url("/echo");
    let post = |body: &str| {
        Request::post(&url, body.to_string())
            .unwrap()
            .header("content-type", "application/x-www-form-urlencoded")
            .callback(Cb::Items)
    };
    let starts = vec![post("a=1&b=2"), post("a=1&b=2"), post("a=1&b=3")];
    let s = run(Crawler::builder(LinkSpider::new(starts))).await;
    let mut bodies = site.seen.bodies.lock().unwrap().clone();
    bodies.sort();
    assert_eq!(bodies, ["a=1&b=2", "a=1&b=3"]);
    assert_eq!(count(&s, Counter::DupeFiltered), 1);
    // The echoed body is not JSON: two counted parse errors, crawl finished.
    assert_eq!(count(&s, Counter::SpiderExceptions), 2);
    assert_eq!(s.finish_reason.as_deref(), Some("finished"));
}

#[actix::test]
async fn error_statuses_are_counted_by_exact_code() {
    let site = serve(1);
    let urls: Vec<String> = [200, 404, 429, 500, 599]
        .iter()
        .map(|c| site.url(&format!("/status/{c}")))
        .collect();
    let s = run(Crawler::builder(LinkSpider::from_urls(&urls)).no_retry()).await;
    for code in [200, 404, 429, 500, 599] {
        assert_eq!(s.status_count(code), 1, "status {code}");
    }
    assert_eq!(count(&s, Counter::ResponseCount), 5);
    assert_eq!(count(&s, Counter::HttpErrorIgnored), 4);
    assert_eq!(count(&s, Counter::RequestFailures), 4);
    assert_eq!(s.get("request_failure_count/http_status"), 4);
    assert_eq!(count(&s, Counter::ItemScraped), 1);
}

#[actix::test]
async fn error_callback_reissues_with_dont_filter() {
    let site = serve(1);
    let mut spider = LinkSpider::from_urls(&[site.url("/flaky/a"), site.url("/status/500")]);
    spider.retry_on_error = true;
    let s = run(Crawler::builder(spider).no_retry()).await;
    // Each failed once; the retry passed the dupe filter thanks to
    // dont_filter. /flaky/a then succeeded; /status/500 failed again and
    // was not retried a second time.
    assert_eq!(site.seen.hits("/flaky/a"), 2);
    assert_eq!(site.seen.hits("/status/500"), 2);
    assert_eq!(s.status_count(503), 1);
    assert_eq!(s.status_count(500), 2);
    assert_eq!(s.status_count(200), 1);
    assert_eq!(count(&s, Counter::RequestFailures), 3);
    assert_eq!(count(&s, Counter::ItemScraped), 1);
    assert_eq!(count(&s, Counter::DupeFiltered), 0);
}

#[actix::test]
async fn pause_stops_dequeuing_and_resume_finishes_with_the_same_counts() {
    let mut site = serve(31);
    let crawl = Crawler::builder(LinkSpider::from_urls(&[site.url("/gated/0")]))
        .concurrency(1)
        .started();
    assert_eq!(site.arrival().await, "/gated/0");
    crawl.pause().await.unwrap();
    site.open_gate();
    // The page in flight finishes while paused…
    wait_for_stats(&crawl, |s| {
        s.counter(Counter::ItemScraped) == 1 && s.get("scheduler/in_flight") == 0
    })
    .await;
    // …and nothing more left the queue although it holds work.
    let paused = crawl.stats();
    assert_eq!(paused.counter(Counter::Dequeued), 1);
    assert!(paused.get("scheduler/queued") > 0);
    assert_eq!(site.seen.total(), 1);
    crawl.resume().await.unwrap();
    let s = crawl.join().await.unwrap();
    // /gated/0 links into the /p/ tree: its 4 links plus the tree's.
    let t = tree(31);
    assert_eq!(s.finish_reason.as_deref(), Some("finished"));
    assert_eq!(count(&s, Counter::ItemScraped), t.pages + 1);
    assert_eq!(
        count(&s, Counter::DupeFiltered),
        (t.links + 4) - (t.pages + 1)
    );
    assert_eq!(s.status_count(200), t.pages + 1);
    assert_eq!(s.status_count(404), 1);
    assert_eq!(site.seen.max_hits(), 1);
    // A finished crawl refuses control.
    let err = crawl.pause().await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::IllegalState(_)), "{err}");
}

#[actix::test]
async fn stop_mid_crawl_finishes_with_shutdown_and_consistent_counts() {
    let mut site = serve(31);
    let collect = Collect::default();
    let crawl = Crawler::builder(LinkSpider::from_urls(&[site.url("/gated/0")]))
        .concurrency(1)
        .pipeline(collect.clone())
        .started();
    assert_eq!(site.arrival().await, "/gated/0");
    crawl.stop().await.unwrap();
    site.open_gate();
    let started = Instant::now();
    let s = crawl.join().await.unwrap();
    assert!(started.elapsed().as_secs() < 10);
    assert_eq!(s.finish_reason.as_deref(), Some("shutdown"));
    // The request in flight finished: fetched, parsed, its item through the
    // pipelines, which were closed.
    assert_eq!(count(&s, Counter::Dequeued), 1);
    assert_eq!(count(&s, Counter::ResponseCount), 1);
    assert_eq!(count(&s, Counter::ItemScraped), 1);
    assert_eq!(collect.items.lock().unwrap().len(), 1);
    assert_eq!(*collect.closed.lock().unwrap(), 1);
    // Its 4 links (/p/1, /p/2, /p/0, /missing) were all new and accepted;
    // every accepted request is either dequeued or counted unprocessed.
    let enqueued = count(&s, Counter::Enqueued);
    assert_eq!(enqueued, 1 + 4);
    assert_eq!(
        enqueued,
        count(&s, Counter::Dequeued) + count(&s, Counter::Unprocessed)
    );
    assert_eq!(site.seen.total(), 1);
    let err = crawl.resume().await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::IllegalState(_)), "{err}");
}

#[actix::test]
async fn a_panicking_downloader_is_restarted_and_its_request_requeued() {
    let site = serve(40);
    let collect = Collect::default();
    let s = run(Crawler::builder(LinkSpider::from_urls(&[site.url("/p/0")]))
        .downloaders(2)
        .middleware(PanicOnce {
            suffix: "/p/3".into(),
            fired: AtomicBool::new(false),
        })
        .pipeline(collect.clone()))
    .await;
    let t = tree(40);
    assert_eq!(s.finish_reason.as_deref(), Some("finished"));
    assert_eq!(count(&s, Counter::WorkerRestarts), 1);
    assert!(count(&s, Counter::Requeued) >= 1);
    // Nothing lost, nothing processed twice.
    assert_eq!(count(&s, Counter::ItemScraped), t.pages);
    let mut urls: Vec<String> = collect
        .items
        .lock()
        .unwrap()
        .iter()
        .map(|v: &Value| v["url"].as_str().unwrap().to_string())
        .collect();
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len() as u64, t.pages);
    assert!(site.seen.hits("/p/3") >= 1);
    assert_eq!(
        count(&s, Counter::RequestFailures),
        1,
        "only /missing fails"
    );
}

/// Panics on every item.
struct PanicPipe;

#[spinneret::async_trait(?Send)]
impl spinneret::Pipeline for PanicPipe {
    async fn process_item(
        &mut self,
        _: &mut spinneret::Item,
        _: &spinneret::ItemMeta,
    ) -> Result<spinneret::Verdict, spinneret::Error> {
        panic!("pipeline bug");
    }
}

#[actix::test]
async fn a_panicking_pipeline_is_a_counted_item_error_and_the_crawl_ends() {
    let site = serve(1);
    let starts = vec![Request::get(&site.url("/items/5"))
        .unwrap()
        .callback(Cb::Items)];
    let collect = Collect::default();
    let s = run(Crawler::builder(LinkSpider::new(starts))
        .pipeline(PanicPipe)
        .pipeline(collect.clone()))
    .await;
    assert_eq!(s.finish_reason.as_deref(), Some("finished"));
    assert_eq!(count(&s, Counter::ItemError), 5);
    assert_eq!(count(&s, Counter::ItemScraped), 0);
    assert_eq!(*collect.closed.lock().unwrap(), 1, "the stage survived");
}

#[actix::test]
async fn start_batches_filtered_whole_do_not_stall_the_rest() {
    let site = serve(3);
    // More than one pull's worth of offsite starts, then the real ones.
    let mut starts: Vec<String> = (0..300)
        .map(|i| format!("http://offsite.invalid/{i}"))
        .collect();
    starts.extend([site.url("/items/0"), site.url("/items/1")]);
    let s =
        run(Crawler::builder(LinkSpider::from_urls(&starts)).allowed_domains(["127.0.0.1"])).await;
    assert_eq!(s.get("offsite/filtered"), 300);
    assert_eq!(count(&s, Counter::ResponseCount), 2);
}

#[actix::test]
async fn stop_does_not_wait_for_a_retry_backoff() {
    let site = serve(1);
    let crawl = Crawler::builder(LinkSpider::from_urls(&[site.url("/status/503")]))
        .retry(spinneret::RetryPolicy {
            base_delay: std::time::Duration::from_secs(60),
            jitter: false,
            ..spinneret::RetryPolicy::default()
        })
        .started();
    wait_for_stats(&crawl, |s| s.get("retry/count") == 1).await;
    let asked = Instant::now();
    crawl.stop().await.unwrap();
    let s = crawl.join().await.unwrap();
    assert!(asked.elapsed().as_secs() < 5, "stop waited for the backoff");
    assert_eq!(s.finish_reason.as_deref(), Some("shutdown"));
    // Enqueued twice (the retry goes back to the scheduler), dispatched
    // once, the waiting retry unprocessed.
    assert_eq!(count(&s, Counter::Enqueued), 2);
    assert_eq!(count(&s, Counter::Dequeued), 1);
    assert_eq!(count(&s, Counter::Unprocessed), 1);
}

/// The `progress` lines, as (pages, items, in flight, queued).
fn progress(records: &Records) -> Vec<[u64; 4]> {
    records
        .lines("progress")
        .iter()
        .map(|kv| ["pages", "items", "in_flight", "queued"].map(|k| kv[k].parse().unwrap()))
        .collect()
}

#[actix::test]
async fn progress_is_logged_periodically_and_at_the_finish() {
    let site = serve(50);
    let records = Records::default();
    let s = run(Crawler::builder(LinkSpider::from_urls(&[site.url("/p/0")]))
        .logger(records.logger())
        .log_stats(Some(std::time::Duration::from_millis(1))))
    .await;
    let lines = progress(&records);
    assert!(lines.len() >= 2, "periodic lines and the last: {lines:?}");
    // The counts only grow, and the last line (at the finish) has the
    // crawl's totals, nothing in flight or queued.
    assert!(lines
        .windows(2)
        .all(|w| w[0][0] <= w[1][0] && w[0][1] <= w[1][1]));
    let responses = count(&s, Counter::ResponseCount);
    let items = count(&s, Counter::ItemScraped);
    assert_eq!((responses, items), (51, 50));
    assert_eq!(*lines.last().unwrap(), [responses, items, 0, 0]);

    // Off: no progress line.
    let site = serve(5);
    let records = Records::default();
    run(Crawler::builder(LinkSpider::from_urls(&[site.url("/p/0")]))
        .logger(records.logger())
        .log_stats(None))
    .await;
    assert!(progress(&records).is_empty());
}
