//! Durable crawls: a job directory carries a crawl over a stop, a SIGKILL
//! and a torn journal write; pause and resume lose nothing.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spinneret::{CheckpointPolicy, Counter, CrawlEvent, Crawler, CrawlerBuilder, StatsSnapshot};

use crate::fixture::{serve, Site};
use crate::spiders::{run, wait_for_stats, Collect, LinkSpider, StartCrawl};

/// Pages of the fixture site these tests crawl.
const PAGES: usize = 5000;

/// A crawl of `site` from its root, persisted in `dir`.
fn job(site: &Site, dir: &Path, items: &Collect) -> CrawlerBuilder<LinkSpider> {
    Crawler::builder(LinkSpider::from_urls(&[site.url("/p/0")]))
        .job_dir(dir)
        .pipeline(items.clone())
}

/// Fetches of each tree page, in page order.
fn page_hits(site: &Site, pages: usize) -> Vec<usize> {
    (0..pages)
        .map(|n| site.seen.hits(&format!("/p/{n}")))
        .collect()
}

/// The URLs of the collected items, checked distinct.
fn item_urls(items: &Collect) -> HashSet<String> {
    let items = items.items.lock().unwrap();
    let urls: HashSet<String> = items
        .iter()
        .map(|i| i["url"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(urls.len(), items.len(), "an item was delivered twice");
    urls
}

/// Every page once, and `/missing` (linked from every page) once.
fn assert_each_page_once(site: &Site, pages: usize) {
    let hits = page_hits(site, pages);
    let wrong: Vec<_> = hits
        .iter()
        .enumerate()
        .filter(|(_, &h)| h != 1)
        .map(|(n, h)| format!("/p/{n}: {h}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "pages not fetched exactly once: {wrong:?}"
    );
    assert_eq!(site.seen.hits("/missing"), 1);
}

#[actix::test]
async fn a_stopped_crawl_resumes_and_fetches_every_page_exactly_once() {
    let site = serve(PAGES);
    let dir = tempfile::tempdir().unwrap();
    let first_items = Collect::default();
    let crawl = job(&site, dir.path(), &first_items).started();
    assert!(crawl.resumed().is_none(), "a new job directory");
    wait_for_stats(&crawl, |s| {
        s.counter(Counter::ResponseCount) >= PAGES as u64 / 2
    })
    .await;
    crawl.stop().await.unwrap();
    let first = crawl.join().await.unwrap();
    assert_eq!(first.finish_reason.as_deref(), Some("shutdown"));
    let fetched = site.seen.total();
    assert!(fetched < PAGES, "the stop came too late to test anything");
    assert!(first.counter(Counter::Unprocessed) > 0);
    assert!(first.get("jobdir/checkpoints") >= 1);

    let second_items = Collect::default();
    let crawl = job(&site, dir.path(), &second_items).started();
    let resumed = crawl
        .resumed()
        .expect("resumed from the job directory")
        .clone();
    assert_eq!(resumed.pending, first.counter(Counter::Unprocessed));
    assert_eq!(
        resumed.completed as usize, fetched,
        "every fetched request completed"
    );
    assert!(resumed.starts_exhausted);
    assert_eq!(resumed.dropped_bytes, 0);
    let second = crawl.join().await.unwrap();
    assert_eq!(second.finish_reason.as_deref(), Some("finished"));

    assert_each_page_once(&site, PAGES);
    let a = item_urls(&first_items);
    let b = item_urls(&second_items);
    assert!(a.is_disjoint(&b), "an item scraped by both runs");
    assert_eq!(a.len() + b.len(), PAGES);
    // The stats continued from the first run.
    assert_eq!(second.counter(Counter::ItemScraped), PAGES as u64);
    assert_eq!(second.status_count(200), PAGES as u64);
    assert_eq!(second.status_count(404), 1);
    assert_eq!(second.get("jobdir/resumed"), 1);
    assert_eq!(
        second.counter(Counter::Enqueued),
        second.counter(Counter::Dequeued) + second.counter(Counter::Unprocessed)
    );
}

#[actix::test]
async fn a_finished_job_has_nothing_left_to_do() {
    let site = serve(50);
    let dir = tempfile::tempdir().unwrap();
    let s = run(job(&site, dir.path(), &Collect::default())).await;
    assert_eq!(s.counter(Counter::ItemScraped), 50);

    let items = Collect::default();
    let crawl = job(&site, dir.path(), &items).started();
    let resumed = crawl.resumed().unwrap().clone();
    assert_eq!((resumed.pending, resumed.completed), (0, 51));
    assert!(resumed.starts_exhausted);
    let again = crawl.join().await.unwrap();
    assert_eq!(again.finish_reason.as_deref(), Some("finished"));
    assert!(items.items.lock().unwrap().is_empty());
    assert_each_page_once(&site, 50);
    assert_eq!(
        again.counter(Counter::ItemScraped),
        50,
        "the stats carried over"
    );

    // Asked to, the start requests run again, and are filtered as seen.
    let s = run(job(&site, dir.path(), &Collect::default()).rerun_start_requests(true)).await;
    assert_eq!(
        s.counter(Counter::DupeFiltered),
        again.counter(Counter::DupeFiltered) + 1
    );
    assert_each_page_once(&site, 50);
}

#[actix::test]
async fn a_torn_last_record_still_resumes() {
    let site = serve(PAGES);
    let dir = tempfile::tempdir().unwrap();
    let crawl = job(&site, dir.path(), &Collect::default()).started();
    wait_for_stats(&crawl, |s| {
        s.counter(Counter::ResponseCount) >= PAGES as u64 / 2
    })
    .await;
    crawl.stop().await.unwrap();
    crawl.join().await.unwrap();
    let first_hits = site.seen.total();

    // The last record (the final checkpoint) is cut in the middle, as a
    // crash during its write would leave it.
    let log = dir.path().join("checkpoints.log");
    let len = std::fs::metadata(&log).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    file.set_len(len - 7).unwrap();
    drop(file);

    let crawl = job(&site, dir.path(), &Collect::default()).started();
    let resumed = crawl.resumed().unwrap().clone();
    assert!(resumed.dropped_bytes > 0, "{resumed:?}");
    assert!(resumed.pending > 0);
    let s = crawl.join().await.unwrap();
    assert_eq!(s.finish_reason.as_deref(), Some("finished"));

    let hits = page_hits(&site, PAGES);
    assert!(hits.iter().all(|&h| h >= 1), "a page was never fetched");
    let twice: usize = hits.iter().map(|h| h.saturating_sub(1)).sum();
    assert!(hits.iter().all(|&h| h <= 2), "a page fetched three times");
    let bound = first_hits - resumed.completed as usize;
    println!("torn write: {twice} pages fetched twice (bound {bound})");
    assert!(twice <= bound, "{twice} fetched twice, bound {bound}");
}

/// The environment variables that make [`sigkill_child`] crawl.
const CHILD_URL: &str = "SPINNERET_DURABLE_CHILD_URL";
const CHILD_DIR: &str = "SPINNERET_DURABLE_CHILD_DIR";
/// Set: the child's frontier keeps this many requests in memory.
const CHILD_FRONTIER: &str = "SPINNERET_DURABLE_CHILD_FRONTIER";

/// The crawl [`a_crawl_killed_with_sigkill_resumes_from_its_checkpoints`]
/// runs in a child process (this test binary, run again for this test
/// alone) and kills part-way.
#[actix::test]
#[ignore = "the child process of a_crawl_killed_with_sigkill_resumes_from_its_checkpoints"]
async fn sigkill_child() {
    let url = std::env::var(CHILD_URL).expect("run by the SIGKILL test only");
    let dir = std::env::var(CHILD_DIR).expect("run by the SIGKILL test only");
    let mut builder = Crawler::builder(LinkSpider::from_urls(&[url])).job_dir(dir);
    if let Ok(n) = std::env::var(CHILD_FRONTIER) {
        builder = builder.frontier_memory(n.parse().unwrap());
    }
    builder.started().join().await.unwrap();
}

#[actix::test]
async fn a_crawl_killed_with_sigkill_resumes_from_its_checkpoints() {
    kill_and_resume(None).await;
}

/// The frontier keeps 100 requests in memory: when the child is killed,
/// hundreds of requests are in segment files in the job directory, and the
/// resumed job (spilling too) still fetches every page.
#[actix::test]
async fn a_crawl_killed_with_sigkill_while_its_frontier_is_on_disk_loses_nothing() {
    kill_and_resume(Some(100)).await;
}

/// Files of `dir` whose name marks a frontier segment.
fn segments(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with("seg-")
            })
            .count()
    })
}

/// Crawls in a child process, kills it with SIGKILL half-way and resumes
/// here; with `frontier`, both runs keep that many requests in memory and
/// the kill comes once segments are on disk.
async fn kill_and_resume(frontier: Option<usize>) {
    let site = serve(PAGES);
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(std::env::current_exe().unwrap());
    if let Some(n) = frontier {
        command.env(CHILD_FRONTIER, n.to_string());
    }
    let mut child = command
        .args([
            "--exact",
            "durable::sigkill_child",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_URL, site.url("/p/0"))
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Kill it about half-way, by the server's own count, once a checkpoint
    // is in the journal (and, spilling, with segments on disk).
    let deadline = Instant::now() + Duration::from_secs(60);
    let frontier_dir = dir.path().join("frontier");
    let journal = dir.path().join("checkpoints.log");
    let checkpointed = || std::fs::metadata(&journal).is_ok_and(|m| m.len() > 0);
    while site.seen.total() < PAGES / 2
        || !checkpointed()
        || (frontier.is_some() && segments(&frontier_dir) == 0)
    {
        assert!(
            Instant::now() < deadline,
            "the child crawl did not get half-way"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child exited early"
        );
        actix_rt::time::sleep(Duration::from_millis(1)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let first_hits = site.seen.total();
    assert!(first_hits < PAGES, "killed too late to test anything");

    let left_on_disk = segments(&frontier_dir);
    assert_eq!(left_on_disk > 0, frontier.is_some());

    let items = Collect::default();
    let mut builder = job(&site, dir.path(), &items);
    if let Some(n) = frontier {
        builder = builder.frontier_memory(n);
    }
    let crawl = builder.started();
    let resumed = crawl
        .resumed()
        .expect("checkpoints written before the kill")
        .clone();
    let s = crawl.join().await.unwrap();
    assert_eq!(s.finish_reason.as_deref(), Some("finished"));
    if frontier.is_some() {
        assert!(s.get("scheduler/frontier_spilled") > 0);
        // The resumed run spilled too, and left no segment behind.
        assert_eq!(segments(&frontier_dir), 0);
    }

    let hits = page_hits(&site, PAGES);
    let missing: Vec<_> = (0..PAGES).filter(|&n| hits[n] == 0).collect();
    assert!(missing.is_empty(), "pages never fetched: {missing:?}");
    assert!(hits.iter().all(|&h| h <= 2), "a page fetched three times");
    let twice = hits.iter().filter(|&&h| h == 2).count();
    // Fetched by the first run but not recorded completed by its last
    // checkpoint: in flight, or completed after it.
    let bound = first_hits - resumed.completed as usize;
    println!(
        "SIGKILL after {first_hits} fetches: {} completed at the last checkpoint, \
         {} pending; {twice} pages fetched twice (bound {bound})",
        resumed.completed, resumed.pending
    );
    assert!(twice <= bound, "{twice} fetched twice, bound {bound}");
    assert!(resumed.completed > 0, "no checkpoint recorded a completion");
    // The resumed run scraped the item of every page the checkpoint did
    // not record completed (`completed` may include `/missing`).
    let scraped = item_urls(&items).len();
    let not_completed = PAGES - resumed.completed as usize;
    assert!(
        scraped == not_completed || scraped == not_completed + 1,
        "{scraped} items, {not_completed} pages not completed"
    );
}

/// A snapshot's counters that must not depend on timing.
fn settled(s: &StatsSnapshot) -> Vec<(&'static str, u64)> {
    [
        Counter::RequestCount,
        Counter::ResponseCount,
        Counter::ItemScraped,
        Counter::Enqueued,
        Counter::Dequeued,
        Counter::DupeFiltered,
        Counter::Unprocessed,
        Counter::RequestFailures,
        Counter::DepthMax,
    ]
    .iter()
    .map(|&c| (c.name(), s.counter(c)))
    .collect()
}

#[actix::test]
async fn a_paused_crawl_loses_nothing_and_counts_the_same() {
    const N: usize = 2000;
    let plain_site = serve(N);
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = run(job(&plain_site, plain_dir.path(), &Collect::default())).await;
    assert_each_page_once(&plain_site, N);

    let site = serve(N);
    let dir = tempfile::tempdir().unwrap();
    let items = Collect::default();
    let crawl = job(&site, dir.path(), &items)
        .checkpoint_policy(CheckpointPolicy {
            every: Duration::from_millis(20),
            every_requests: 100,
        })
        .started();
    let mut events = crawl.subscribe();
    wait_for_stats(&crawl, |s| {
        s.counter(Counter::ResponseCount) >= N as u64 / 2
    })
    .await;
    crawl.pause().await.unwrap();
    // Requests in flight finish; nothing new leaves the queue.
    wait_for_stats(&crawl, |s| s.counter(Counter::InFlight) == 0).await;
    let paused = crawl.stats();
    let fetched = site.seen.total();
    assert!(paused.counter(Counter::Queued) > 0, "nothing left to pause");
    // Checkpoints go on while paused: what the journal holds pending is
    // exactly what waits in the queue.
    let info = crawl.checkpoint().await.unwrap();
    assert_eq!(info.pending, paused.counter(Counter::Queued));
    assert_eq!(site.seen.total(), fetched, "fetched while paused");
    assert_eq!(
        crawl.stats().counter(Counter::Dequeued),
        paused.counter(Counter::Dequeued)
    );
    crawl.resume().await.unwrap();
    let s = crawl.join().await.unwrap();

    assert_each_page_once(&site, N);
    assert_eq!(item_urls(&items).len(), N);
    assert_eq!(settled(&s), settled(&plain));
    assert!(s.get("jobdir/checkpoints") > plain.get("jobdir/checkpoints"));
    let mut kinds = Vec::new();
    while let Ok(e) = events.try_recv() {
        kinds.push(e);
    }
    assert!(kinds.contains(&CrawlEvent::Resumed), "{kinds:?}");
    assert!(matches!(kinds.last(), Some(CrawlEvent::Finished { .. })));
}

#[actix::test]
async fn a_forced_stop_keeps_the_request_in_flight_for_the_resume() {
    let mut site = serve(3);
    let dir = tempfile::tempdir().unwrap();
    let crawl = Crawler::builder(LinkSpider::from_urls(&[site.url("/gated/0")]))
        .job_dir(dir.path())
        .started();
    assert_eq!(site.arrival().await, "/gated/0");
    crawl.stop().await.unwrap();
    // The gate stays shut: the second stop abandons the request in flight.
    crawl.stop().await.unwrap();
    let first = crawl.join().await.unwrap();
    assert_eq!(first.counter(Counter::Unprocessed), 1);
    assert_eq!(first.counter(Counter::ResponseCount), 0);

    site.open_gate();
    let items = Collect::default();
    let crawl = Crawler::builder(LinkSpider::from_urls(&[site.url("/gated/0")]))
        .job_dir(dir.path())
        .pipeline(items.clone())
        .started();
    let resumed = crawl.resumed().unwrap().clone();
    assert_eq!((resumed.pending, resumed.completed), (1, 0));
    let s = crawl.join().await.unwrap();
    assert_eq!(s.finish_reason.as_deref(), Some("finished"));
    assert_eq!(
        site.seen.hits("/gated/0"),
        2,
        "fetched again after the resume"
    );
    // Its links (children and home), once each.
    assert_each_page_once(&site, 3);
    let urls = item_urls(&items);
    assert_eq!(urls.len(), 4);
    assert!(urls.contains(&site.url("/gated/0")));
}
