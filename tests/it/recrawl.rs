//! Re-crawls of a finished job against the `bench` example's site in its
//! changing mode: each edition changes some pages (each then links to a
//! page new in that edition) and removes some leaves (410), and the site
//! answers conditional requests with 304. A re-crawl must fetch every
//! page once, bodies only of what changed or is new, and count exactly
//! what the site changed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use spinneret::{Crawler, CrawlerBuilder, StatsSnapshot};

use crate::bench_site::editions::Step;
use crate::bench_site::{start_server, Server, Site};
use crate::bench_sitemap_spider::SitemapBenchSpider;
use crate::bench_spider::{BenchSpider, CountItems, Mark};
use spinneret::Spider;

/// A 400-page site with 10 % of its pages changed per edition.
fn changing_site() -> (Arc<Site>, Server) {
    let site = Arc::new(Site::new(400, Duration::ZERO).with_changes(10.0));
    let server = start_server(site.clone(), 0).expect("the site starts");
    (site, server)
}

fn builder(
    server: &Server,
    job: &std::path::Path,
    items: &CountItems,
) -> CrawlerBuilder<BenchSpider> {
    let spider = BenchSpider::new(server.url.clone()).expect("a start URL");
    Crawler::builder(spider)
        .concurrency(16)
        .per_host_concurrency(16)
        .middleware(Mark)
        .pipeline(items.clone())
        .job_dir(job)
        .recrawl(true)
}

/// The changing site, crawled once (edition 0) into a new job directory.
async fn crawled_once() -> (Arc<Site>, Server, tempfile::TempDir, CountItems) {
    let (site, server) = changing_site();
    let job = tempfile::tempdir().unwrap();
    let items = CountItems::default();
    let (_, got) = run(builder(&server, job.path(), &items), &items).await;
    assert_eq!(got, 400);
    (site, server, job, items)
}

/// Runs a crawl to its end: its stats and the items its pipeline got.
async fn run<S: Spider>(b: CrawlerBuilder<S>, items: &CountItems) -> (StatsSnapshot, u64) {
    items.items.store(0, Ordering::SeqCst);
    let stats = b.build().unwrap().start().unwrap().join().await.unwrap();
    (stats, items.items.load(Ordering::SeqCst))
}

fn edition(site: &Site, e: u64) -> Step {
    let changes = site.changes.as_ref().expect("a changing site");
    changes.set_edition(e);
    site.reset();
    changes.step()
}

/// What a re-crawl counted: known, unchanged, changed, new, gone.
fn counts(stats: &StatsSnapshot) -> [u64; 5] {
    ["known", "unchanged", "changed", "new", "gone"].map(|k| stats.get(&format!("recrawl/{k}")))
}

#[actix::test]
async fn each_recrawl_fetches_every_page_once_and_counts_what_the_site_changed() {
    let (site, server) = changing_site();
    let job = tempfile::tempdir().unwrap();
    let items = CountItems::default();

    let (stats, got) = run(builder(&server, job.path(), &items), &items).await;
    assert_eq!(got, 400);
    assert_eq!(counts(&stats), [0; 5], "a first crawl is no re-crawl");
    let mut live = 400;

    // Twice: a re-crawl's page index is re-crawled in turn.
    for e in [1, 2] {
        let step = edition(&site, e);
        assert!(step.changed > 0 && step.gone > 0, "edition {e}: {step:?}");
        let (stats, got) = run(builder(&server, job.path(), &items), &items).await;
        let unchanged = live - step.changed - step.gone;
        assert_eq!(
            counts(&stats),
            [live, unchanged, step.changed, step.new, step.gone],
            "edition {e}"
        );
        assert_eq!(
            got,
            step.changed + step.new,
            "items of changed and new pages only"
        );
        assert_eq!(stats.get("item_scraped_count"), step.changed + step.new);
        assert_eq!(stats.status_count(304), unchanged);
        assert_eq!(stats.status_count(410), step.gone);
        assert_eq!(
            stats.get("request_failure_count"),
            0,
            "a gone page is no failure"
        );
        assert_eq!(stats.finish_reason.as_deref(), Some("finished"));
        // What the site saw: every page once, bodies only where they changed.
        assert_eq!(site.repeats.load(Ordering::SeqCst), 0);
        assert_eq!(site.coverage().0, live + step.new);
        assert_eq!(site.bodies.load(Ordering::SeqCst), step.changed + step.new);
        assert_eq!(site.not_modified.load(Ordering::SeqCst), unchanged);
        assert_eq!(site.misses.load(Ordering::SeqCst), 0);
        live = step.live;
    }
    server.handle.stop(false).await;
}

#[actix::test]
async fn a_spider_that_wants_every_item_gets_every_body_and_the_same_counts() {
    let (site, server, job, items) = crawled_once().await;

    let step = edition(&site, 1);
    let b = builder(&server, job.path(), &items).recrawl_unchanged_items(true);
    let (stats, got) = run(b, &items).await;
    let unchanged = 400 - step.changed - step.gone;
    // Sent without validators: unchanged pages are told by their body.
    assert_eq!(
        counts(&stats),
        [400, unchanged, step.changed, step.new, step.gone]
    );
    assert_eq!(stats.status_count(304), 0);
    assert_eq!(got, step.live, "every live page's item");
    assert_eq!(site.bodies.load(Ordering::SeqCst), step.live);
    assert_eq!(site.repeats.load(Ordering::SeqCst), 0);
    server.handle.stop(false).await;
}

#[actix::test]
async fn a_recrawl_stopped_halfway_resumes_and_ends_with_the_same_counts() {
    let (site, server, job, items) = crawled_once().await;

    let step = edition(&site, 1);
    let b = builder(&server, job.path(), &items).close_after_pages(60);
    let (stopped, first_items) = run(b, &items).await;
    assert_ne!(stopped.finish_reason.as_deref(), Some("finished"));
    let [known, unchanged, changed, new, gone] = counts(&stopped);
    assert_eq!(known, 400);
    assert!(unchanged + changed + gone < 400, "stopped before the end");

    // Run again (the switch does nothing on a job that has not finished):
    // the re-crawl resumes where it stopped.
    let (stats, more_items) = run(builder(&server, job.path(), &items), &items).await;
    let unchanged_all = 400 - step.changed - step.gone;
    assert_eq!(
        counts(&stats),
        [400, unchanged_all, step.changed, step.new, step.gone]
    );
    assert_eq!(first_items + more_items, step.changed + step.new);
    assert_eq!(stats.finish_reason.as_deref(), Some("finished"));
    assert!(unchanged <= unchanged_all && changed <= step.changed && new <= step.new);
    server.handle.stop(false).await;
}

/// A crawl of the site from the sitemaps its robots.txt names, with
/// re-crawling on.
fn from_sitemaps(
    server: &Server,
    job: &std::path::Path,
    items: &CountItems,
    lastmod: bool,
) -> CrawlerBuilder<SitemapBenchSpider> {
    let robots = server.url.join("/robots.txt").unwrap();
    let spider = SitemapBenchSpider::new(&[robots]).expect("a start URL");
    Crawler::builder(spider)
        .concurrency(16)
        .per_host_concurrency(16)
        .middleware(Mark)
        .pipeline(items.clone())
        .job_dir(job)
        .recrawl(true)
        .recrawl_sitemap_lastmod(lastmod)
}

/// The changing site in 3 sitemaps, each page with the `<lastmod>` of its
/// last change (the site's clock reads noon of its edition's day),
/// crawled once from them into a new job directory.
async fn crawled_once_from_sitemaps() -> (Arc<Site>, Server, tempfile::TempDir, CountItems) {
    let site = Arc::new(
        Site::new(400, Duration::ZERO)
            .with_changes(10.0)
            .with_sitemaps(3),
    );
    let server = start_server(site.clone(), 0).expect("the site starts");
    let job = tempfile::tempdir().unwrap();
    let items = CountItems::default();
    let (_, got) = run(from_sitemaps(&server, job.path(), &items, true), &items).await;
    assert_eq!(got, 400);
    (site, server, job, items)
}

#[actix::test]
async fn a_recrawl_from_sitemaps_asks_only_for_the_pages_their_lastmod_says_changed() {
    let (site, server, job, items) = crawled_once_from_sitemaps().await;
    // robots.txt, the index and 3 sitemaps are in the index too: read
    // again in full at each re-crawl, counted apart.
    let docs = 5;
    let mut live = 400;
    for e in [1, 2] {
        let step = edition(&site, e);
        assert!(
            step.changed > 0 && step.gone > 0 && step.new >= 3,
            "{step:?}"
        );
        let b = from_sitemaps(&server, job.path(), &items, true);
        let (stats, got) = run(b, &items).await;
        let unchanged = live - step.changed - step.gone;
        assert_eq!(
            counts(&stats),
            [live + docs, unchanged, step.changed, step.new, step.gone],
            "edition {e}"
        );
        assert_eq!(stats.get("recrawl/sitemaps"), docs);
        assert_eq!(stats.get("recrawl/lastmod_skipped"), unchanged);
        assert_eq!(got, step.changed + step.new);
        assert_eq!(stats.status_count(304), 0, "no page asked in vain");
        assert_eq!(stats.status_count(410), step.gone, "unlisted: asked last");
        assert_eq!(stats.get("request_failure_count"), 0);
        assert_eq!(stats.finish_reason.as_deref(), Some("finished"));
        // What the site saw: only the pages that changed, are new or gone.
        assert_eq!(site.repeats.load(Ordering::SeqCst), 0);
        assert_eq!(site.coverage().0, step.changed + step.new + step.gone);
        assert_eq!(site.bodies.load(Ordering::SeqCst), step.changed + step.new);
        assert_eq!(site.not_modified.load(Ordering::SeqCst), 0);
        assert_eq!(site.misses.load(Ordering::SeqCst), 0);
        live = step.live;
    }

    // Without trusting `<lastmod>`, every known page is asked again.
    let step = edition(&site, 3);
    let b = from_sitemaps(&server, job.path(), &items, false);
    let (stats, got) = run(b, &items).await;
    let unchanged = live - step.changed - step.gone;
    assert_eq!(stats.get("recrawl/lastmod_skipped"), 0);
    assert_eq!(stats.get("recrawl/unchanged"), unchanged);
    assert_eq!(site.not_modified.load(Ordering::SeqCst), unchanged);
    assert_eq!(got, step.changed + step.new);
    assert_eq!(site.repeats.load(Ordering::SeqCst), 0);
    server.handle.stop(false).await;
}

#[actix::test]
async fn a_recrawl_from_sitemaps_stopped_halfway_resumes_with_the_same_counts() {
    let (site, server, job, items) = crawled_once_from_sitemaps().await;

    let step = edition(&site, 1);
    let b = from_sitemaps(&server, job.path(), &items, true).close_after_pages(30);
    let (stopped, first_items) = run(b, &items).await;
    assert_ne!(stopped.finish_reason.as_deref(), Some("finished"));
    let fetched = site.coverage().0;
    assert!(
        fetched < step.changed + step.new,
        "stopped before the end: {fetched}"
    );

    // Resumed with the switch off: the re-crawl goes on as it began (its
    // list keeps the choice), every count still the site's.
    let (stats, more_items) = run(from_sitemaps(&server, job.path(), &items, false), &items).await;
    let unchanged = 400 - step.changed - step.gone;
    assert_eq!(
        counts(&stats),
        [405, unchanged, step.changed, step.new, step.gone]
    );
    assert_eq!(stats.get("recrawl/sitemaps"), 5);
    assert_eq!(stats.get("recrawl/lastmod_skipped"), unchanged);
    assert_eq!(first_items + more_items, step.changed + step.new);
    assert_eq!(stats.finish_reason.as_deref(), Some("finished"));
    // Over both runs: each page that changed, is new or gone asked once.
    assert_eq!(site.repeats.load(Ordering::SeqCst), 0);
    assert_eq!(site.coverage().0, step.changed + step.new + step.gone);
    assert_eq!(site.not_modified.load(Ordering::SeqCst), 0);
    server.handle.stop(false).await;
}
