//! Large crawls in small: a Bloom filter far past its capacity, a frontier
//! far past its memory bound. Each still fetches every page exactly once.

use spinneret::dedupe::DupeMode;
use spinneret::{Counter, Crawler};

use crate::fixture::{serve, Site};
use crate::spiders::{run, LinkSpider};

/// Pages fetched other than exactly once: (page, fetches).
fn not_once(site: &Site, pages: usize) -> Vec<(usize, usize)> {
    (0..pages)
        .map(|n| (n, site.seen.hits(&format!("/p/{n}"))))
        .filter(|&(_, h)| h != 1)
        .collect()
}

#[actix::test]
async fn a_bloom_filter_sized_for_1000_urls_still_fetches_20000_pages_exactly_once() {
    const PAGES: usize = 20_000;
    let site = serve(PAGES);
    let s =
        run(Crawler::builder(LinkSpider::from_urls(&[site.url("/p/0")])).bloom(1_000, 0.01)).await;
    assert_eq!(s.finish_reason.as_deref(), Some("finished"));
    let wrong = not_once(&site, PAGES);
    assert!(
        wrong.is_empty(),
        "{} pages: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    assert_eq!(s.status_count(200), PAGES as u64);
    // The filter's false positives were caught, not obeyed: each one is a
    // page (and its subtree) the filter alone would have lost.
    assert!(s.get("dupefilter/bloom_false_positives") > 0);
    assert_eq!(s.get("dupefilter/bloom_unconfirmed"), 0);
    // 20,000 pages and /missing.
    assert_eq!(s.get("dupefilter/fingerprints"), PAGES as u64 + 1);
}

#[actix::test]
async fn the_probabilistic_mode_past_its_capacity_counts_what_it_may_have_dropped() {
    const PAGES: usize = 20_000;
    let site = serve(PAGES);
    let s = run(Crawler::builder(LinkSpider::from_urls(&[site.url("/p/0")]))
        .bloom(1_000, 0.01)
        .dupe_mode(DupeMode::Probabilistic))
    .await;
    assert_eq!(s.finish_reason.as_deref(), Some("finished"));
    let missed = (0..PAGES)
        .filter(|n| site.seen.hits(&format!("/p/{n}")) == 0)
        .count();
    // A filter sized for 1,000 cannot hold 20,000: pages are lost, and the
    // stats say so.
    assert!(missed > 0);
    assert!(s.get("dupefilter/bloom_unconfirmed") > 0);
    assert!(s.get("dupefilter/bloom_maybe_lost") > 0);
    assert_eq!(s.get("dupefilter/bloom_false_positives"), 0);
    // None was fetched twice: a Bloom filter has no false negatives.
    assert!(not_once(&site, PAGES).iter().all(|&(_, h)| h == 0));
}

#[actix::test]
async fn a_frontier_bounded_at_100_requests_spills_and_loses_nothing() {
    const PAGES: usize = 5_000;
    let site = serve(PAGES);
    let dir = tempfile::tempdir().unwrap();
    let s = run(Crawler::builder(LinkSpider::from_urls(&[site.url("/p/0")]))
        .frontier_memory(100)
        .frontier_dir(dir.path()))
    .await;
    assert_eq!(s.finish_reason.as_deref(), Some("finished"));
    assert_eq!(not_once(&site, PAGES), []);
    assert_eq!(site.seen.hits("/missing"), 1);
    assert_eq!(s.status_count(200), PAGES as u64);
    // The breadth-first frontier of a binary tree of 5,000 pages holds up
    // to some 2,500 requests: most went to disk and came back.
    let spilled = s.get("scheduler/frontier_spilled");
    assert!(spilled > 1_000, "{spilled} spilled");
    assert!(s.get("scheduler/frontier_on_disk_max") > 1_000);
    assert_eq!(s.get("scheduler/frontier_on_disk"), 0);
    assert_eq!(s.get("scheduler/lost_on_spill_read"), 0);
    assert_eq!(s.counter(Counter::Enqueued), s.counter(Counter::Dequeued));
    // The temporary spill directory was removed at the end.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
