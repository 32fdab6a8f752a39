//! Graceful shutdown: the drain deadline, a forcing second stop, lifecycle
//! events and the middlewares' open/close hooks.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spinneret::{Counter, CrawlEvent, Crawler, DownloadMiddleware, Error, ErrorKind, Stage};

use crate::fixture::serve;
use crate::spiders::{Cb, LinkSpider, StartCrawl};

#[actix::test]
async fn the_drain_deadline_forces_a_stuck_stop() {
    let mut site = serve(3);
    let crawl = Crawler::builder(LinkSpider::from_urls(&[site.url("/gated/0")]))
        .drain_timeout(Duration::from_millis(200))
        .started();
    let mut events = crawl.subscribe();
    assert_eq!(site.arrival().await, "/gated/0");
    let asked = Instant::now();
    crawl.stop().await.unwrap();
    // The gate never opens: the request in flight cannot finish.
    let s = crawl.join().await.unwrap();
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_millis(190),
        "forced before the deadline: {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "not forced: {waited:?}");
    assert_eq!(s.finish_reason.as_deref(), Some("shutdown"));
    assert_eq!(s.counter(Counter::Dequeued), 1);
    assert_eq!(s.counter(Counter::Unprocessed), 1, "the abandoned request");
    assert_eq!(s.counter(Counter::ResponseCount), 0);
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert!(
        matches!(seen.first(), Some(CrawlEvent::Started)),
        "{seen:?}"
    );
    assert!(seen.contains(&CrawlEvent::Stopping), "{seen:?}");
    assert!(
        matches!(seen.last(), Some(CrawlEvent::Finished { .. })),
        "{seen:?}"
    );
}

#[actix::test]
async fn a_second_stop_forces_at_once() {
    let mut site = serve(3);
    let crawl = Crawler::builder(LinkSpider::from_urls(&[site.url("/gated/0")]))
        .drain_timeout(Duration::from_secs(60))
        .started();
    assert_eq!(site.arrival().await, "/gated/0");
    crawl.stop().await.unwrap();
    let asked = Instant::now();
    crawl.stop().await.unwrap();
    let s = crawl.join().await.unwrap();
    assert!(asked.elapsed() < Duration::from_secs(5));
    assert_eq!(s.finish_reason.as_deref(), Some("shutdown"));
    assert_eq!(s.counter(Counter::Unprocessed), 1);
}

#[actix::test]
async fn lifecycle_events_arrive_in_order() {
    let site = serve(3);
    let crawl = Crawler::builder(LinkSpider::from_urls(&[site.url("/p/0")])).started();
    let mut events = crawl.subscribe();
    crawl.pause().await.unwrap();
    crawl.resume().await.unwrap();
    let s = crawl.join().await.unwrap();
    let mut kinds = Vec::new();
    let mut finished = None;
    while let Ok(e) = events.try_recv() {
        match e {
            CrawlEvent::Started => kinds.push("started"),
            CrawlEvent::Paused => kinds.push("paused"),
            CrawlEvent::Resumed => kinds.push("resumed"),
            CrawlEvent::Error { url, .. } => {
                assert!(url.unwrap().ends_with("/missing"));
                kinds.push("error");
            }
            CrawlEvent::Finished { stats } => {
                kinds.push("finished");
                finished = Some(stats);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(kinds, ["started", "paused", "resumed", "error", "finished"]);
    assert_eq!(*finished.unwrap(), s);
}

/// Counts its hooks; fails to open when told to.
struct Hooks {
    opened: Arc<AtomicU32>,
    closed: Arc<AtomicU32>,
    fail_open: bool,
}

impl DownloadMiddleware<Cb> for Hooks {
    fn open(&self) -> Result<(), Error> {
        self.opened.fetch_add(1, Ordering::SeqCst);
        if self.fail_open {
            return Err(Error::custom(Stage::Setup, "no credentials"));
        }
        Ok(())
    }

    fn close(&self) -> Result<(), Error> {
        self.closed.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[actix::test]
async fn middlewares_open_and_close_exactly_once() {
    let site = serve(3);
    let (opened, closed) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let hooks = |fail_open| Hooks {
        opened: opened.clone(),
        closed: closed.clone(),
        fail_open,
    };
    let crawl = Crawler::builder(LinkSpider::from_urls(&[site.url("/p/0")]))
        .middleware(hooks(false))
        .started();
    crawl.join().await.unwrap();
    assert_eq!(
        (opened.load(Ordering::SeqCst), closed.load(Ordering::SeqCst)),
        (1, 1)
    );

    // The second fails to open: the first is closed, the crawl never starts.
    let fetched_before = site.seen.total();
    opened.store(0, Ordering::SeqCst);
    closed.store(0, Ordering::SeqCst);
    let err = Crawler::builder(LinkSpider::from_urls(&[site.url("/p/0")]))
        .middleware(hooks(false))
        .middleware(hooks(true))
        .build()
        .unwrap()
        .start()
        .err()
        .expect("start fails");
    assert!(matches!(err.kind(), ErrorKind::Custom(_)), "{err}");
    assert_eq!(
        (opened.load(Ordering::SeqCst), closed.load(Ordering::SeqCst)),
        (2, 1)
    );
    assert_eq!(site.seen.total(), fetched_before, "nothing was fetched");
}
