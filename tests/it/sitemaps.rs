//! A crawl started from sitemaps: robots.txt names an index, the index two
//! sitemaps (one gzipped, served as a file with no content coding) and a
//! broken one; pages are requested by rule, with the rule's callback and
//! the sitemap's `<lastmod>` in their meta. Then the limits (a gzip bomb
//! against the crawl's body limit, more than 50,000 URLs), `follow`, the
//! `sitemap/…` counters, and the bench's sitemap mode, crawled whole and
//! stopped and resumed on a job directory.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, Mutex};

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use spinneret::{
    Counter, Crawler, Error, ErrorKind, Output, Response, SitemapRules, Spider, StartRequests,
    SITEMAP_LASTMOD,
};

use crate::fixture;
use crate::spiders::{run, Collect};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
enum Cb {
    #[default]
    Sitemap,
    Product,
    Page,
}

struct Shop {
    sitemaps: SitemapRules<Cb>,
    /// The sitemap errors `parse` returned, as their messages.
    errors: Arc<Mutex<Vec<String>>>,
}

impl Spider for Shop {
    type Callback = Cb;

    fn name(&self) -> &str {
        "shop"
    }

    fn start_requests(&self) -> StartRequests<Cb> {
        self.sitemaps.start_requests()
    }

    fn parse(&self, cb: Cb, response: &Response, out: &mut Output<Cb>) -> Result<(), Error> {
        let path = response.url.path();
        match cb {
            Cb::Sitemap => self.sitemaps.parse(response, out).inspect_err(|e| {
                if let ErrorKind::Sitemap { .. } = e.kind() {
                    self.errors.lock().unwrap().push(e.kind().to_string());
                }
            }),
            Cb::Product => {
                let lastmod = response.meta.request_meta.get(SITEMAP_LASTMOD).cloned();
                out.item(json!({"product": path, "lastmod": lastmod}));
                Ok(())
            }
            Cb::Page => {
                out.item(json!({"page": path}));
                Ok(())
            }
        }
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn urlset(host: &str, entries: &[(&str, Option<&str>)]) -> String {
    let urls: String = entries
        .iter()
        .map(|(path, lastmod)| {
            let lastmod = lastmod.map_or(String::new(), |l| format!("<lastmod>{l}</lastmod>"));
            format!("<url><loc>http://{host}{path}</loc>{lastmod}</url>")
        })
        .collect();
    format!(
        r#"<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>"#
    )
}

/// The site's answer for `path`; every request is recorded.
async fn answer(req: HttpRequest, hits: web::Data<Mutex<BTreeMap<String, usize>>>) -> HttpResponse {
    let path = req.path().to_string();
    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let host = req.connection_info().host().to_string();
    let xml = |body: String| {
        HttpResponse::Ok()
            .content_type("application/xml")
            .body(body)
    };
    match path.as_str() {
        "/robots.txt" => HttpResponse::Ok().content_type("text/plain").body(format!(
            "User-agent: *\nDisallow: /private\nSitemap: http://{host}/index.xml\n"
        )),
        "/index.xml" => xml(format!(
            r#"<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
                <sitemap><loc>http://{host}/s1.xml</loc></sitemap>
                <sitemap><loc>http://{host}/s2.xml.gz</loc></sitemap>
                <sitemap><loc>http://{host}/broken.xml</loc></sitemap>
            </sitemapindex>"#
        )),
        "/s1.xml" => xml(urlset(
            &host,
            &[
                ("/product/1", Some("2024-01-01")),
                ("/product/2", None),
                ("/about", None),
            ],
        )),
        "/s2.xml.gz" => HttpResponse::Ok()
            .content_type("application/gzip")
            .body(gzip(
                urlset(
                    &host,
                    &[
                        ("/product/3", Some("2024-03-03T10:00:00+00:00")),
                        ("/blog/1", None),
                        ("/other/x", None),
                    ],
                )
                .as_bytes(),
            )),
        // One page, 8 MiB of white space, another page: 8 KiB of gzip.
        "/bomb.xml.gz" => {
            let mut xml = format!("<urlset><url><loc>http://{host}/product/first</loc></url>");
            xml.push_str(&" ".repeat(8 << 20));
            xml.push_str(&format!(
                "<url><loc>http://{host}/product/last</loc></url></urlset>"
            ));
            HttpResponse::Ok()
                .content_type("application/gzip")
                .body(gzip(xml.as_bytes()))
        }
        // 50,003 URLs, four of them products: two in the first 50,000.
        "/big.txt" => {
            let lines: String = (0..50_003)
                .map(|i| match i {
                    0 | 49_999 | 50_000 | 50_002 => format!("http://{host}/product/{i}\n"),
                    _ => format!("http://{host}/x/{i}\n"),
                })
                .collect();
            HttpResponse::Ok().content_type("text/plain").body(lines)
        }
        // One entry, then the document breaks.
        "/broken.xml" => xml(format!(
            "<urlset><url><loc>http://{host}/product/4</loc></url><url><loc>http://{host}/x</lo"
        )),
        _ => HttpResponse::Ok()
            .content_type("text/html")
            .body("<html><body>page</body></html>"),
    }
}

type Hits = web::Data<Mutex<BTreeMap<String, usize>>>;

/// The site, and the record of its hits.
fn site() -> (fixture::Server, Hits) {
    let hits = web::Data::new(Mutex::new(BTreeMap::<String, usize>::new()));
    let state = hits.clone();
    let server = fixture::spawn_app("127.0.0.1", 1, move |cfg| {
        cfg.app_data(state.clone()).default_service(web::to(answer));
    });
    (server, hits)
}

/// Rules starting from `path` of `server`: products, and the about and
/// blog pages.
fn shop_rules(server: &fixture::Server, path: &str) -> SitemapRules<Cb> {
    let start = format!("http://{}{path}", server.addr);
    SitemapRules::new(Cb::Sitemap, [start.as_str()])
        .unwrap()
        .rule("/product/", Cb::Product)
        .unwrap()
        .rule("/(about|blog/)", Cb::Page)
        .unwrap()
}

/// What a crawl with `sitemaps` gave: its stats, items, and the errors
/// `parse` returned (their messages).
async fn crawl_shop(
    sitemaps: SitemapRules<Cb>,
    tune: impl FnOnce(spinneret::CrawlerBuilder<Shop>) -> spinneret::CrawlerBuilder<Shop>,
) -> (spinneret::StatsSnapshot, Collect, Vec<String>) {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let collect = Collect::default();
    let spider = Shop {
        sitemaps,
        errors: errors.clone(),
    };
    let s = run(tune(Crawler::builder(spider).pipeline(collect.clone()))).await;
    let errors = errors.lock().unwrap().clone();
    (s, collect, errors)
}

/// `paths` hit once each.
fn once(paths: &[&str]) -> BTreeMap<String, usize> {
    paths.iter().map(|p| (p.to_string(), 1)).collect()
}

#[actix::test]
async fn a_crawl_from_robots_txt_follows_the_index_and_requests_pages_by_rule() {
    let (server, hits) = site();
    let (s, collect, errors) = crawl_shop(shop_rules(&server, "/robots.txt"), |b| b).await;

    assert_eq!(s.finish_reason.as_deref(), Some("finished"));
    // Each sitemap and each page a rule matches, once; /other/x matches no
    // rule and is not fetched.
    let hits = hits.lock().unwrap().clone();
    let want: BTreeMap<String, usize> = [
        "/robots.txt",
        "/index.xml",
        "/s1.xml",
        "/s2.xml.gz",
        "/broken.xml",
        "/product/1",
        "/product/2",
        "/product/3",
        "/product/4",
        "/about",
        "/blog/1",
    ]
    .into_iter()
    .map(|p| (p.to_string(), 1))
    .collect();
    assert_eq!(hits, want);

    let items: BTreeSet<String> = collect
        .items
        .lock()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .collect();
    let want: BTreeSet<String> = [
        json!({"product": "/product/1", "lastmod": "2024-01-01"}),
        json!({"product": "/product/2", "lastmod": null}),
        json!({"product": "/product/3", "lastmod": "2024-03-03T10:00:00+00:00"}),
        json!({"product": "/product/4", "lastmod": null}),
        json!({"page": "/about"}),
        json!({"page": "/blog/1"}),
    ]
    .iter()
    .map(Value::to_string)
    .collect();
    assert_eq!(items, want);
    assert_eq!(s.counter(Counter::ItemScraped), 6);

    // The broken sitemap: its first entry kept, the error counted and named.
    assert_eq!(s.counter(Counter::SpiderExceptions), 1);
    let broken = format!("http://{}/broken.xml", server.addr);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with(&format!("sitemap {broken}: malformed XML")),
        "{errors:?}"
    );

    // What the sitemaps gave, counted.
    let counted: BTreeMap<&str, u64> = [
        ("sitemap/read", 4),            // index, s1, s2, broken
        ("sitemap/robots_txt", 1),      // robots.txt
        ("sitemap/failed", 1),          // broken
        ("sitemap/sitemaps", 4),        // the index, and the three it lists
        ("sitemap/urls", 6),            // the pages fetched
        ("sitemap/skipped/no_rule", 1), // /other/x
        ("sitemap/skipped/not_followed", 0),
        ("sitemap/skipped/bad_url", 0),
        ("sitemap/skipped/too_deep", 0),
        ("sitemap/urls_over_limit", 0),
        ("sitemap/too_large", 0),
    ]
    .into_iter()
    .collect();
    let got: BTreeMap<&str, u64> = counted.keys().map(|&k| (k, s.get(k))).collect();
    assert_eq!(got, counted);
}

#[actix::test]
async fn follow_patterns_choose_the_sitemaps_of_an_index() {
    let (server, hits) = site();
    let rules = shop_rules(&server, "/index.xml")
        .follow(r"/s\d\.xml")
        .unwrap();
    let (s, _, errors) = crawl_shop(rules, |b| b).await;
    // broken.xml is left out: not fetched, not an error.
    let hits = hits.lock().unwrap().clone();
    let want = once(&[
        "/index.xml",
        "/s1.xml",
        "/s2.xml.gz",
        "/product/1",
        "/product/2",
        "/product/3",
        "/about",
        "/blog/1",
    ]);
    assert_eq!(hits, want);
    assert_eq!(errors, Vec::<String>::new());
    assert_eq!(s.get("sitemap/skipped/not_followed"), 1);
    assert_eq!(s.get("sitemap/sitemaps"), 2);
    assert_eq!((s.get("sitemap/read"), s.get("sitemap/failed")), (3, 0));
    let e = shop_rules(&server, "/index.xml").follow("(").unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Config(m) if m.contains("sitemap follow pattern \"(\"")),
        "{e}"
    );
}

#[actix::test]
async fn a_gzip_sitemap_bomb_stops_at_the_crawls_body_limit() {
    let (server, hits) = site();
    let (s, _, errors) =
        crawl_shop(shop_rules(&server, "/bomb.xml.gz"), |b| b.max_body(1 << 20)).await;
    // 8 KiB downloaded, 1 MiB of it inflated: the page after the limit is
    // never seen.
    assert_eq!(
        *hits.lock().unwrap(),
        once(&["/bomb.xml.gz", "/product/first"])
    );
    let bomb = format!("http://{}/bomb.xml.gz", server.addr);
    assert_eq!(
        errors,
        [format!(
            "sitemap {bomb}: more than 1048576 bytes (decoded; the crawl's body limit); the rest is refused"
        )]
    );
    assert_eq!(s.get("sitemap/too_large"), 1);
    assert_eq!(s.get("sitemap/failed"), 1);
    assert_eq!(s.get("sitemap/urls"), 1);
    assert_eq!(s.counter(Counter::SpiderExceptions), 1);
    assert_eq!(s.counter(Counter::ItemScraped), 1);
}

#[actix::test]
async fn of_more_than_50000_urls_the_first_50000_are_used_and_the_rest_counted() {
    let (server, hits) = site();
    let (s, _, errors) = crawl_shop(shop_rules(&server, "/big.txt"), |b| b).await;
    assert_eq!(
        *hits.lock().unwrap(),
        once(&["/big.txt", "/product/0", "/product/49999"])
    );
    let big = format!("http://{}/big.txt", server.addr);
    assert_eq!(
        errors,
        [format!(
            "sitemap {big}: 3 URLs past the first 50000 (the limit of one sitemap) skipped"
        )]
    );
    assert_eq!(s.get("sitemap/urls"), 2);
    assert_eq!(s.get("sitemap/skipped/no_rule"), 49_998);
    assert_eq!(s.get("sitemap/urls_over_limit"), 3);
    assert_eq!((s.get("sitemap/read"), s.get("sitemap/failed")), (1, 1));
}

#[actix::test]
async fn the_bench_site_crawled_from_its_sitemaps_gives_every_page_once() {
    use crate::bench_site::{start_server, Site};
    use crate::bench_sitemap_spider::SitemapBenchSpider;
    use crate::bench_spider::{CountItems, Mark};
    use std::sync::atomic::Ordering;

    // 2,500 pages in 3 sitemaps of 834, 834 and 832.
    let pages = 2_500;
    let site = Arc::new(Site::new(pages, std::time::Duration::ZERO).with_sitemaps(3));
    let server = start_server(site.clone(), 0).unwrap();
    let robots = server.url.join("/robots.txt").unwrap();
    let items = CountItems::default();
    let spider = SitemapBenchSpider::new(&[robots]).unwrap();
    let builder = Crawler::builder(spider)
        .dedupe(true)
        .middleware(Mark)
        .pipeline(items.clone());
    let s = run(builder).await;
    server.handle.stop(false).await;

    assert_eq!(site.coverage(), (pages, vec![]));
    assert_eq!(site.repeats.load(Ordering::Relaxed), 0);
    assert_eq!(site.misses.load(Ordering::Relaxed), 0);
    assert_eq!(site.unmarked.load(Ordering::Relaxed), 0);
    assert_eq!(items.items.load(Ordering::Relaxed), pages);
    assert_eq!(s.status_count(200), pages + 5);
    assert_eq!(s.error_count(), 0);
    let got = ["read", "robots_txt", "sitemaps", "urls", "failed"]
        .map(|k| s.get(&format!("sitemap/{k}")));
    assert_eq!(got, [4, 1, 4, pages, 0]);
}

#[actix::test]
async fn a_crawl_from_the_bench_sitemaps_stopped_and_resumed_fetches_every_page_once() {
    use crate::bench_site::{start_server, Site};
    use crate::bench_sitemap_spider::SitemapBenchSpider;
    use crate::bench_spider::{CountItems, Mark};
    use std::sync::atomic::Ordering;

    // 6,000 pages in 3 sitemaps of 2,000: the stop comes while the first
    // sitemap's pages are still being pulled, the others not begun.
    let pages = 6_000;
    let site = Arc::new(Site::new(pages, std::time::Duration::ZERO).with_sitemaps(3));
    let server = start_server(site.clone(), 0).unwrap();
    let index = server.url.join("/sitemap_index.xml").unwrap();
    let job = tempfile::tempdir().unwrap();
    let items = CountItems::default();
    let builder = || {
        let spider = SitemapBenchSpider::new(std::slice::from_ref(&index)).unwrap();
        Crawler::builder(spider)
            .dedupe(true)
            .concurrency(4)
            .middleware(Mark)
            .pipeline(items.clone())
            .job_dir(job.path())
    };
    let first = run(builder().close_after_pages(300)).await;
    assert_eq!(
        first.finish_reason.as_deref(),
        Some("closespider_pagecount")
    );
    let (fetched, _) = site.coverage();
    assert!(
        fetched < pages / 3,
        "{fetched} pages fetched before the stop"
    );
    // Pulled lazily: far fewer requests made than the sitemaps list.
    assert!(first.counter(Counter::Enqueued) < pages / 3, "{first:#?}");

    // Resumed: the sitemaps (never recorded done) are read again; what
    // was accepted before is a duplicate, the rest is fetched.
    let second = run(builder()).await;
    server.handle.stop(false).await;
    assert_eq!(second.finish_reason.as_deref(), Some("finished"));
    assert_eq!(site.coverage(), (pages, vec![]));
    assert_eq!(site.repeats.load(Ordering::Relaxed), 0);
    assert_eq!(site.misses.load(Ordering::Relaxed), 0);
    assert_eq!(site.unmarked.load(Ordering::Relaxed), 0);
    assert_eq!(items.items.load(Ordering::Relaxed), pages);
    assert_eq!(second.error_count(), 0);
    assert_eq!(second.counter(Counter::SpiderExceptions), 0);
    assert_eq!(
        second.counter(Counter::Enqueued),
        second.counter(Counter::Dequeued) + second.counter(Counter::Unprocessed)
    );
}
