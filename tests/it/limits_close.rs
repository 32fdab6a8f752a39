//! Limits on an unattended crawl: each ends a crawl of a site too large to
//! finish first, as a graceful stop does (requests in flight drain, the
//! queue is counted unprocessed), with the limit's finish reason.

use std::time::Duration;

use spinneret::{Counter, Crawler, StatsSnapshot};

use crate::fixture::{serve, Site};
use crate::log::Records;
use crate::spiders::{run, LinkSpider};

/// Pages of the fixture site: far more than any limit below lets through.
const PAGES: usize = 5_000;

/// The line a limit logs when it fires.
const FIRED: &str = "limit reached: stopping the crawl";

/// The crawl stopped early, and drained: fewer pages than the site has,
/// every accepted request either fetched (once) or counted unprocessed, and
/// every request dispatched answered.
fn assert_stopped_early(s: &StatsSnapshot, site: &Site) {
    let pages = s.counter(Counter::ResponseCount);
    assert!(pages < PAGES as u64, "not stopped early: {s:#?}");
    assert!(s.counter(Counter::Unprocessed) > 0, "{s:#?}");
    assert_eq!(
        s.counter(Counter::Enqueued),
        s.counter(Counter::Dequeued) + s.counter(Counter::Unprocessed),
        "{s:#?}"
    );
    assert_eq!(s.counter(Counter::Dequeued), pages, "{s:#?}");
    assert_eq!(site.seen.total() as u64, pages);
    assert_eq!(site.seen.max_hits(), 1);
    assert_eq!(s.counter(Counter::LostMessages), 0);
}

/// The one line the limit logged: its reason, threshold and the value seen.
fn assert_fired_once(records: &Records, reason: &str, limit: u64) -> u64 {
    let lines = records.lines(FIRED);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["reason"], reason);
    assert_eq!(lines[0]["limit"], limit.to_string());
    let value: u64 = lines[0]["value"].parse().unwrap();
    assert!(value >= limit, "{lines:?}");
    value
}

/// A spider crawling the whole tree site from its root.
fn tree_spider(site: &Site) -> LinkSpider {
    LinkSpider::from_urls(&[site.url("/p/0")])
}

#[actix::test]
async fn an_item_limit_closes_the_crawl() {
    let site = serve(PAGES);
    let records = Records::default();
    let s = run(Crawler::builder(tree_spider(&site))
        .close_after_items(50)
        .logger(records.logger()))
    .await;
    assert_eq!(s.finish_reason.as_deref(), Some("closespider_itemcount"));
    let items = s.counter(Counter::ItemScraped);
    assert!(items >= 50, "{s:#?}");
    assert_stopped_early(&s, &site);
    let seen = assert_fired_once(&records, "closespider_itemcount", 50);
    println!("item limit 50: {seen} when seen, {items} at the finish");
}

#[actix::test]
async fn a_page_limit_closes_the_crawl() {
    let site = serve(PAGES);
    let records = Records::default();
    let s = run(Crawler::builder(tree_spider(&site))
        .close_after_pages(100)
        .logger(records.logger()))
    .await;
    assert_eq!(s.finish_reason.as_deref(), Some("closespider_pagecount"));
    let pages = s.counter(Counter::ResponseCount);
    assert!(pages >= 100, "{s:#?}");
    assert_stopped_early(&s, &site);
    let seen = assert_fired_once(&records, "closespider_pagecount", 100);
    println!("page limit 100: {seen} when seen, {pages} at the finish");
}

#[actix::test]
async fn an_error_limit_closes_the_crawl() {
    // Every start request answers 404: a request failure each.
    let site = serve(PAGES);
    let urls: Vec<String> = (0..PAGES)
        .map(|i| site.url(&format!("/gone/{i}")))
        .collect();
    let records = Records::default();
    let s = run(Crawler::builder(LinkSpider::from_urls(&urls))
        .close_after_errors(20)
        .logger(records.logger()))
    .await;
    assert_eq!(s.finish_reason.as_deref(), Some("closespider_errorcount"));
    let errors = s.error_count();
    assert!(errors >= 20, "{s:#?}");
    assert_eq!(errors, s.counter(Counter::RequestFailures));
    assert_eq!(s.status_count(404), s.counter(Counter::ResponseCount));
    assert_stopped_early(&s, &site);
    let seen = assert_fired_once(&records, "closespider_errorcount", 20);
    println!("error limit 20: {seen} when seen, {errors} at the finish");
}

#[actix::test]
async fn a_time_limit_closes_the_crawl() {
    // Each page takes 50 ms: 8 at a time (the per-host default), 5,000
    // pages take over 30 s.
    let site = serve(PAGES);
    let urls: Vec<String> = (0..PAGES)
        .map(|i| site.url(&format!("/slow/{i}")))
        .collect();
    let records = Records::default();
    let s = run(Crawler::builder(LinkSpider::from_urls(&urls))
        .close_after_time(Duration::from_millis(300))
        .logger(records.logger()))
    .await;
    assert_eq!(s.finish_reason.as_deref(), Some("closespider_timeout"));
    assert!(s.elapsed_time_seconds >= 0.3, "{s:#?}");
    assert!(s.elapsed_time_seconds < 10.0, "{s:#?}");
    assert_stopped_early(&s, &site);
    let seen = assert_fired_once(&records, "closespider_timeout", 300);
    println!(
        "time limit 300 ms: {seen} ms when seen, {} pages, {:.3} s at the finish",
        s.counter(Counter::ResponseCount),
        s.elapsed_time_seconds
    );
}

#[cfg(target_os = "linux")]
#[actix::test]
async fn a_memory_limit_closes_the_crawl_at_the_first_check() {
    let site = serve(PAGES);
    let records = Records::default();
    let s = run(Crawler::builder(tree_spider(&site))
        .memory_limit(1)
        .memory_check_interval(Duration::from_millis(10))
        .logger(records.logger()))
    .await;
    assert_eq!(s.finish_reason.as_deref(), Some("memusage_exceeded"));
    assert_eq!(s.get("memusage/limit_reached"), 1);
    assert_eq!(s.get("memusage/warning_reached"), 0);
    let startup = s.get("memusage/startup");
    assert!(startup > 0, "{s:#?}");
    assert!(s.get("memusage/max") >= startup, "{s:#?}");
    // The first check, as the crawl starts, stops it: the start page is
    // all that may have left the queue.
    assert!(s.counter(Counter::ResponseCount) <= 1, "{s:#?}");
    assert_eq!(
        s.counter(Counter::Enqueued),
        s.counter(Counter::Dequeued) + s.counter(Counter::Unprocessed)
    );
    assert_eq!(
        s.counter(Counter::Dequeued),
        s.counter(Counter::ResponseCount)
    );
    assert_fired_once(&records, "memusage_exceeded", 1);
    assert!(records
        .lines("memory usage reached the warning threshold")
        .is_empty());
}

#[cfg(target_os = "linux")]
#[actix::test]
async fn a_memory_warning_alone_warns_once_and_the_crawl_finishes() {
    let site = serve(300);
    let records = Records::default();
    let s = run(Crawler::builder(tree_spider(&site))
        .memory_warning(1)
        .memory_check_interval(Duration::from_millis(1))
        .logger(records.logger()))
    .await;
    assert_eq!(s.finish_reason.as_deref(), Some("finished"));
    assert_eq!(s.counter(Counter::ItemScraped), 300);
    assert_eq!(s.counter(Counter::Unprocessed), 0);
    assert_eq!(s.get("memusage/warning_reached"), 1);
    assert_eq!(s.get("memusage/limit_reached"), 0);
    assert!(s.get("memusage/max") >= s.get("memusage/startup"));
    let warnings = records.lines("memory usage reached the warning threshold");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["threshold"], "1");
    let rss: u64 = warnings[0]["rss"].parse().unwrap();
    assert!(rss > 0 && rss <= s.get("memusage/max"), "{warnings:?}");
    assert!(records.lines(FIRED).is_empty());
}
