//! The ready-made pipelines inside real crawls.

use std::time::{Duration, Instant};

use serde_json::Value;
use spinneret::pipelines::{HttpPersist, JsonLinesFile};
use spinneret::{Counter, Crawler, Request};

use crate::fixture::serve;
use crate::spiders::{run, Cb, LinkSpider, StartCrawl};

#[actix::test]
async fn jsonl_file_gets_every_item_once() {
    let site = serve(1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("items.jsonl");
    std::fs::write(&path, "stale line\n").unwrap();
    let starts = vec![Request::get(&site.url("/items/5"))
        .unwrap()
        .callback(Cb::Items)];
    let s =
        run(Crawler::builder(LinkSpider::new(starts)).pipeline(JsonLinesFile::new(&path))).await;
    assert_eq!(s.counter(Counter::ItemScraped), 5);
    let lines: Vec<Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let is: Vec<u64> = lines.iter().map(|v| v["i"].as_u64().unwrap()).collect();
    assert_eq!(is, [0, 1, 2, 3, 4], "replaced, not appended");
}

#[actix::test]
async fn http_persist_flushes_a_partial_batch_on_its_interval() {
    // Three items wait in a batch of 100 while the crawl is held open by a
    // gated page: only the interval flush can deliver them before the end.
    let mut site = serve(1);
    let dir = tempfile::tempdir().unwrap();
    let persist = HttpPersist::new(&site.url("/persist"), dir.path().join("spill.jsonl"))
        .unwrap()
        .batch_size(100)
        .interval(Duration::from_millis(50));
    let starts = vec![
        Request::get(&site.url("/items/3"))
            .unwrap()
            .callback(Cb::Items)
            .priority(1),
        Request::get(&site.url("/gated/0")).unwrap(),
    ];
    let crawl = Crawler::builder(LinkSpider::new(starts))
        .concurrency(2)
        .flush_interval(Duration::from_millis(20))
        .pipeline(persist)
        .started();
    assert_eq!(site.arrival().await, "/gated/0");
    let deadline = Instant::now() + Duration::from_secs(20);
    while site.seen.persisted.lock().unwrap().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the partial batch was never flushed"
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!crawl.is_finished(), "flushed before the crawl ended");
    assert_eq!(site.seen.hits("/persist"), 1);
    site.open_gate();
    crawl.stop().await.unwrap();
    let s = crawl.join().await.unwrap();
    // The gated page's item arrives with the final flush at close.
    assert_eq!(s.get("persist/items"), 4);
    assert_eq!(s.get("persist/batches"), 2);
    assert_eq!(site.seen.persisted.lock().unwrap().len(), 4);
}
