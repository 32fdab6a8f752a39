//! `Crawler::start_on`: a crawl started on an arbiter of its own outlives
//! the arbiter that started it; an arbiter already stopped is a clear
//! error.

use actix::Arbiter;
use spinneret::{Counter, Crawler, ErrorKind};
use tokio::sync::{mpsc, oneshot};

use crate::fixture::serve;
use crate::spiders::LinkSpider;

#[actix::test]
async fn a_crawl_started_on_its_own_arbiter_outlives_the_caller() {
    let mut site = serve(7);
    let crawler = Crawler::builder(LinkSpider::from_urls(&[site.url("/gated/0")]))
        .build()
        .unwrap();
    let crawls = Arbiter::new();
    let home = crawls.handle();
    let caller = Arbiter::new();
    let (started_tx, started_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    // Closed when the caller's tasks are dropped, as its arbiter stops.
    let (gone_tx, mut gone_rx) = mpsc::unbounded_channel::<()>();
    // The crawl's configuration moves to the caller's thread (it is Send).
    caller.spawn_fn(move || {
        actix_rt::spawn(async move {
            let started = crawler.start_on(&home).await;
            let _ = started_tx.send(started);
            actix_rt::spawn(async move {
                let _held = gone_tx;
                std::future::pending::<()>().await
            });
            let _ = stop_rx.await;
            Arbiter::current().stop();
        });
    });
    let handle = started_rx.await.unwrap().unwrap();
    assert_eq!(site.arrival().await, "/gated/0");
    // The caller's arbiter stops while the crawl waits for its first page.
    stop_tx.send(()).unwrap();
    assert_eq!(gone_rx.recv().await, None);
    caller.join().unwrap();

    site.open_gate();
    let s = handle.join().await.unwrap();
    assert_eq!(s.finish_reason.as_deref(), Some("finished"));
    // /gated/0, /p/0../p/6 and /missing, each once.
    assert_eq!(s.counter(Counter::ResponseCount), 9);
    assert_eq!(site.seen.total(), 9);
    crawls.stop();
}

#[actix::test]
async fn starting_on_a_stopped_arbiter_is_a_clear_error() {
    let site = serve(3);
    let crawler = Crawler::builder(LinkSpider::from_urls(&[site.url("/p/0")]))
        .build()
        .unwrap();
    let stopped = Arbiter::new();
    let handle = stopped.handle();
    stopped.stop();
    stopped.join().unwrap();
    let err = match crawler.start_on(&handle).await {
        Ok(_) => panic!("started on a stopped arbiter"),
        Err(e) => e,
    };
    assert!(matches!(err.kind(), ErrorKind::IllegalState(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("the arbiter to start the crawl on has stopped"),
        "{err}"
    );
    assert_eq!(site.seen.total(), 0);
}
