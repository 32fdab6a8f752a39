//! Criterion benchmarks of the hot functions a page goes through: its
//! fingerprint (with URL canonicalisation), the Bloom filter's
//! test-and-add, link extraction from a 2 KB page, and the memory queue's
//! push and pop. `cargo bench --bench hot`; regressions show against the
//! last saved run.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use spinneret::dedupe::{canonical_url, fingerprint};
use spinneret::dedupe::{DupeMode, MemoryDupe};
use spinneret::queue::{MemoryQueue, SlotAllowance};
use spinneret::{Context, Html, LinkExtractor, Request, Response, ResponseMeta};
use url::Url;

/// A page like the bench site's: about 2 KB, ten links.
fn page() -> String {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html>\n<head><title>page 7</title></head>\n<body>\n<h1>page 7</h1>\n<ul>\n",
    );
    for k in 0..10 {
        html.push_str(&format!(
            "<li><a href=\"/page/{}\">link {k}: page {}</a></li>\n",
            71 + k,
            71 + k
        ));
    }
    html.push_str("</ul>\n<p>");
    while html.len() < 2000 {
        html.push_str("lorem ipsum dolor sit amet ");
    }
    html.push_str("</p>\n</body>\n</html>\n");
    html
}

fn fingerprints(c: &mut Criterion) {
    let url = Url::parse("http://example.com/a/b?z=1&a=2&m=3#frag").unwrap();
    let request = Request::<()>::get(url.as_str()).unwrap();
    c.bench_function("canonical_url (3 query pairs)", |b| {
        b.iter(|| canonical_url(black_box(&url)))
    });
    c.bench_function("fingerprint (GET, 3 query pairs)", |b| {
        b.iter(|| fingerprint(black_box(&request)))
    });
    let plain = Request::<()>::get("http://127.0.0.1:18080/page/12345").unwrap();
    c.bench_function("fingerprint (GET, no query)", |b| {
        b.iter(|| fingerprint(black_box(&plain)))
    });
    let mut bloom = MemoryDupe::new(1 << 20, 0.001, DupeMode::Exact).unwrap();
    let mut n = 0u128;
    c.bench_function("bloom test-and-add", |b| {
        b.iter(|| {
            n = n.wrapping_add(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
            bloom.insert_new(black_box(n))
        })
    });
}

fn links(c: &mut Criterion) {
    let html = page();
    let page_url = Url::parse("http://127.0.0.1:18080/page/7").unwrap();
    let extractor = LinkExtractor::default();
    c.bench_function("parse 2 KB page (scraper)", |b| {
        b.iter(|| Html::parse_document(black_box(&html)))
    });
    c.bench_function("extract 10 links from a parsed page", |b| {
        let doc = Html::parse_document(&html);
        b.iter(|| extractor.extract_from(black_box(&doc), &page_url))
    });
    let response = Response {
        url: page_url.clone(),
        status: 200,
        headers: Default::default(),
        body: html.clone().into(),
        meta: ResponseMeta::default(),
    };
    c.bench_function(
        "extract 10 links from a 2 KB response (lol_html scan)",
        |b| b.iter(|| extractor.extract(black_box(&response))),
    );
}

fn queue(c: &mut Criterion) {
    let requests: Vec<Context<()>> = (0..1000)
        .map(|i| {
            let r = Request::get(&format!("http://h{}/page/{i}", i % 4))
                .unwrap()
                .priority(i % 3);
            Context::new(r, None)
        })
        .collect();
    c.bench_function("memory queue: push 1000 then pop them 64 at a time", |b| {
        b.iter_batched(
            || requests.clone(),
            |batch| {
                let mut q = MemoryQueue::default();
                q.push_now(batch);
                let allowance = SlotAllowance::uniform(64);
                let mut popped = 0;
                while popped < 1000 {
                    popped += q.pop_now(64, &allowance).len();
                }
                q
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(hot, fingerprints, links, queue);
criterion_main!(hot);
