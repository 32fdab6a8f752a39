//! The HTTP cache across whole crawls: the same crawl run again against
//! servers that count what they answer, with the `dummy` and `rfc9111`
//! policies, damaged entries and the size bound.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use spinneret::{
    CachePolicy, Crawler, Error, HttpCacheOptions, Output, Request, Response, Spider,
    StartRequests, StatsSnapshot,
};

use crate::fixture::{self, serve};
use crate::spiders::{run, Collect, LinkSpider};

/// One item per response: its path, status, body and `x-seen` header.
struct Record(Vec<String>);

impl Spider for Record {
    type Callback = ();
    fn name(&self) -> &str {
        "record"
    }
    fn start_requests(&self) -> StartRequests<()> {
        let requests: Vec<Request<()>> = self.0.iter().map(|u| Request::get(u).unwrap()).collect();
        Box::new(requests.into_iter())
    }
    fn parse(&self, _: (), r: &Response, out: &mut Output<()>) -> Result<(), Error> {
        out.item(json!({
            "path": r.url.path(),
            "status": r.status,
            "body": r.text(),
            "seen": r.header("x-seen"),
        }));
        Ok(())
    }
}

/// What the origin was asked: path and its `If-None-Match` /
/// `If-Modified-Since`, in arrival order.
#[derive(Default)]
struct Origin {
    asked: Mutex<Vec<(String, Option<String>)>>,
    /// The version `/changing` serves.
    version: AtomicUsize,
}

impl Origin {
    fn hits(&self, path: &str) -> usize {
        self.asked
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .count()
    }

    fn total(&self) -> usize {
        self.asked.lock().unwrap().len()
    }

    /// The validators of the requests for `path`, in order.
    fn conditions(&self, path: &str) -> Vec<Option<String>> {
        let asked = self.asked.lock().unwrap();
        asked
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, c)| c.clone())
            .collect()
    }
}

fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// An origin with one resource per caching case:
/// - `/fresh`: `max-age=3600`;
/// - `/etag`: `no-cache` with an ETag; a matching `If-None-Match` gets a
///   `304` carrying a new `x-seen`;
/// - `/lastmod`: `max-age=0` with a `Last-Modified`; any
///   `If-Modified-Since` gets a `304`;
/// - `/stale`: `max-age=0` with an ETag, never answered with a `304`;
/// - `/nostore`: `no-store`;
/// - `/changing`: ETag `"v<version>"`, `max-age=0`, `304` when it matches.
async fn origin_page(origin: web::Data<Arc<Origin>>, req: HttpRequest) -> HttpResponse {
    let path = req.path().to_string();
    let inm = header(&req, "if-none-match");
    let ims = header(&req, "if-modified-since");
    origin
        .asked
        .lock()
        .unwrap()
        .push((path.clone(), inm.clone().or(ims.clone())));
    match path.as_str() {
        "/fresh" => HttpResponse::Ok()
            .insert_header(("cache-control", "max-age=3600"))
            .body("fresh body"),
        "/etag" if inm.as_deref() == Some("\"e1\"") => HttpResponse::NotModified()
            .insert_header(("etag", "\"e1\""))
            .insert_header(("cache-control", "no-cache"))
            .insert_header(("x-seen", "revalidated"))
            .finish(),
        "/etag" => HttpResponse::Ok()
            .insert_header(("etag", "\"e1\""))
            .insert_header(("cache-control", "no-cache"))
            .insert_header(("x-seen", "first"))
            .body("etag body"),
        "/lastmod" if ims.is_some() => HttpResponse::NotModified().finish(),
        "/lastmod" => HttpResponse::Ok()
            .insert_header(("last-modified", "Wed, 01 Jan 2020 00:00:00 GMT"))
            .insert_header(("cache-control", "max-age=0"))
            .body("lastmod body"),
        "/stale" => HttpResponse::Ok()
            .insert_header(("etag", "\"s1\""))
            .insert_header(("cache-control", "max-age=0"))
            .body("stale body"),
        "/nostore" => HttpResponse::Ok()
            .insert_header(("cache-control", "no-store"))
            .insert_header(("etag", "\"n1\""))
            .body("private body"),
        "/changing" => {
            let tag = format!("\"v{}\"", origin.version.load(Ordering::SeqCst));
            if inm.as_deref() == Some(tag.as_str()) {
                return HttpResponse::NotModified()
                    .insert_header(("etag", tag))
                    .finish();
            }
            HttpResponse::Ok()
                .insert_header(("etag", tag.clone()))
                .insert_header(("cache-control", "max-age=0"))
                .body(format!("version {tag}"))
        }
        _ => HttpResponse::NotFound().finish(),
    }
}

/// Runs `spider` with `options` as its cache; the stats and the items,
/// sorted by path.
async fn crawl<S: Spider>(spider: S, options: &HttpCacheOptions) -> (StatsSnapshot, Vec<Value>) {
    let collect = Collect::default();
    let builder = Crawler::builder(spider)
        .concurrency(1)
        .http_cache(options.clone())
        .pipeline(collect.clone());
    let stats = run(builder).await;
    let mut items = collect.items.lock().unwrap().clone();
    items.sort_by_key(|i| i["path"].as_str().unwrap_or_default().to_string());
    (stats, items)
}

/// The `httpcache/*` counters of `s`, those at zero left out.
fn cache_stats(s: &StatsSnapshot) -> Vec<(&'static str, u64)> {
    let names = [
        "hit",
        "miss",
        "revalidate",
        "invalidate",
        "store",
        "uncacheable",
        "evicted",
        "corrupt",
        "errors",
        "errorrecovery",
    ];
    let full = |n: &str| format!("httpcache/{n}");
    names
        .into_iter()
        .map(|n| (n, s.get(&full(n))))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn in_dir(dir: &Path, policy: CachePolicy) -> HttpCacheOptions {
    HttpCacheOptions {
        policy,
        dir: Some(dir.to_path_buf()),
        ..HttpCacheOptions::default()
    }
}

#[actix::test]
async fn dummy_a_second_crawl_is_answered_from_the_cache_alone() {
    let site = serve(7);
    let dir = tempfile::tempdir().unwrap();
    let options = in_dir(dir.path(), CachePolicy::Dummy);
    let spider = || LinkSpider::from_urls(&[site.url("/p/0")]);
    let (first, items) = crawl(spider(), &options).await;
    // Seven pages and /missing (a 404, stored too: dummy keeps every answer).
    assert_eq!(site.seen.total(), 8);
    assert_eq!(items.len(), 7);
    assert_eq!(cache_stats(&first), [("miss", 8), ("store", 8)]);
    let (second, again) = crawl(spider(), &options).await;
    assert_eq!(site.seen.total(), 8, "the second crawl sent requests");
    assert_eq!(again, items);
    assert_eq!(cache_stats(&second), [("hit", 8)]);
    assert_eq!(second.get("downloader/request_count"), 0);
    // The 404 from the cache fails its request as the downloaded one did.
    assert_eq!(second.error_count(), first.error_count());
    assert_eq!(second.error_count(), 1);
}

#[actix::test]
async fn dummy_ignored_statuses_are_fetched_again_and_the_job_directory_holds_the_cache() {
    let site = serve(3);
    let job = tempfile::tempdir().unwrap();
    let options = HttpCacheOptions {
        ignore_statuses: vec![404],
        ..HttpCacheOptions::default()
    };
    let collect = Collect::default();
    let builder = Crawler::builder(LinkSpider::from_urls(&[site.url("/p/0")]))
        .job_dir(job.path())
        .http_cache(options.clone())
        .pipeline(collect.clone());
    let first = run(builder).await;
    assert_eq!(site.seen.total(), 4);
    assert_eq!(collect.items.lock().unwrap().len(), 3);
    assert_eq!(
        cache_stats(&first),
        [("miss", 4), ("store", 3), ("uncacheable", 1)]
    );
    let cache = job.path().join("httpcache");
    assert_eq!(files(&cache).len(), 3);
    // Another crawl on the same cache: only the ignored 404 is asked again.
    let options = HttpCacheOptions {
        dir: Some(cache),
        ..options
    };
    let (second, items) = crawl(LinkSpider::from_urls(&[site.url("/p/0")]), &options).await;
    assert_eq!(items.len(), 3);
    assert_eq!(site.seen.hits("/missing"), 2);
    assert_eq!(site.seen.total(), 5);
    assert_eq!(
        cache_stats(&second),
        [("hit", 3), ("miss", 1), ("uncacheable", 1)]
    );
}

#[actix::test]
async fn rfc9111_fresh_answers_stay_stale_ones_are_revalidated_or_replaced() {
    let origin = Arc::new(Origin::default());
    let data = web::Data::new(origin.clone());
    let server = fixture::spawn_app("127.0.0.1", 1, move |cfg| {
        cfg.app_data(data.clone())
            .default_service(web::to(origin_page));
    });
    let url = |p: &str| format!("http://{}{p}", server.addr);
    let paths = ["/changing", "/etag", "/fresh", "/lastmod", "/nostore"];
    let spider = || Record(paths.iter().map(|p| url(p)).collect());
    let dir = tempfile::tempdir().unwrap();
    let options = in_dir(dir.path(), CachePolicy::Rfc9111);

    let (first, items) = crawl(spider(), &options).await;
    assert_eq!(origin.total(), 5);
    assert_eq!(
        cache_stats(&first),
        [("miss", 5), ("store", 4), ("uncacheable", 1)]
    );
    assert_eq!(files(dir.path()).len(), 4, "no-store was stored");
    let body = |items: &[Value], i: usize| items[i]["body"].as_str().unwrap().to_string();
    assert_eq!(body(&items, 0), "version \"v0\"");

    // The resource changes; the fresh one is not asked for, the others
    // are asked conditionally.
    origin.version.store(1, Ordering::SeqCst);
    let (second, items) = crawl(spider(), &options).await;
    assert_eq!(origin.hits("/fresh"), 1, "a fresh entry was fetched again");
    assert_eq!(origin.total(), 9);
    assert_eq!(
        cache_stats(&second),
        [
            ("hit", 1),
            ("miss", 1),
            ("revalidate", 2),
            ("invalidate", 1),
            ("store", 1),
            ("uncacheable", 1),
        ]
    );
    assert_eq!(origin.conditions("/etag")[1].as_deref(), Some("\"e1\""));
    assert_eq!(
        origin.conditions("/lastmod")[1].as_deref(),
        Some("Wed, 01 Jan 2020 00:00:00 GMT")
    );
    assert_eq!(origin.conditions("/nostore"), [None, None]);
    let expected = [
        ("/changing", "version \"v1\"", None),
        ("/etag", "etag body", Some("revalidated")),
        ("/fresh", "fresh body", None),
        ("/lastmod", "lastmod body", None),
        ("/nostore", "private body", None),
    ];
    for (item, (path, text, seen)) in items.iter().zip(expected) {
        // A 304 reaches the spider as the stored 200, its headers updated.
        assert_eq!(item["path"], path);
        assert_eq!(item["status"], 200, "{path}");
        assert_eq!(item["body"], text, "{path}");
        assert_eq!(item["seen"].as_str(), seen, "{path}");
    }
    assert_eq!(second.status_count(304), 2);

    // The replaced entry is the new version: revalidated with its ETag.
    let (third, items) = crawl(spider(), &options).await;
    assert_eq!(origin.conditions("/changing")[2].as_deref(), Some("\"v1\""));
    assert_eq!(body(&items, 0), "version \"v1\"");
    assert_eq!(third.get("httpcache/revalidate"), 3);
    assert_eq!(third.get("httpcache/hit"), 1);
}

/// A crawl of `/p/0` alone, cached in `dir`: its stats and its one item's
/// body.
async fn fetch_one(site: &fixture::Site, dir: &Path) -> (StatsSnapshot, String) {
    let spider = Record(vec![site.url("/p/0")]);
    let (stats, items) = crawl(spider, &in_dir(dir, CachePolicy::Dummy)).await;
    assert_eq!(items.len(), 1);
    (stats, items[0]["body"].as_str().unwrap().to_string())
}

#[actix::test]
async fn a_torn_or_damaged_entry_is_a_miss_fetched_again_never_a_wrong_body() {
    type Damage = fn(&Path);
    let cut: Damage = |file| {
        let len = std::fs::metadata(file).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
        f.set_len(len - 7).unwrap();
    };
    let flip: Damage = |file| {
        let mut data = std::fs::read(file).unwrap();
        let at = data.len() - 40;
        for b in &mut data[at..at + 3] {
            *b ^= 0x20;
        }
        std::fs::write(file, data).unwrap();
    };
    for (name, damage) in [("cut short", cut), ("flipped bytes", flip)] {
        let site = serve(1);
        let dir = tempfile::tempdir().unwrap();
        let (first, page) = fetch_one(&site, dir.path()).await;
        assert!(page.contains("<title>page 0</title>"), "{page}");
        assert_eq!(cache_stats(&first), [("miss", 1), ("store", 1)], "{name}");
        let entry = files(dir.path());
        assert_eq!(entry.len(), 1);
        damage(&entry[0]);
        let (second, body) = fetch_one(&site, dir.path()).await;
        assert_eq!(body, page, "{name}");
        assert_eq!(
            cache_stats(&second),
            [("miss", 1), ("store", 1), ("corrupt", 1)],
            "{name}"
        );
        assert_eq!(site.seen.hits("/p/0"), 2, "{name}");
        // Stored again whole: the next run is a hit.
        let (third, body) = fetch_one(&site, dir.path()).await;
        assert_eq!((body, third.get("httpcache/hit")), (page, 1), "{name}");
        assert_eq!(site.seen.hits("/p/0"), 2, "{name}");
    }
}

#[actix::test]
async fn the_oldest_entries_are_evicted_at_the_size_bound() {
    let site = serve(100);
    let dir = tempfile::tempdir().unwrap();
    // One entry's size (pages 1 to 5 have about the size of page 0).
    fetch_one(&site, dir.path()).await;
    let size = std::fs::metadata(&files(dir.path())[0]).unwrap().len();
    let bounded = tempfile::tempdir().unwrap();
    let options = HttpCacheOptions {
        max_bytes: 2 * size + size / 2,
        ..in_dir(bounded.path(), CachePolicy::Dummy)
    };
    let pages: Vec<String> = (1..=5).map(|n| site.url(&format!("/p/{n}"))).collect();
    let (first, _) = crawl(Record(pages.clone()), &options).await;
    assert_eq!(
        cache_stats(&first),
        [("miss", 5), ("store", 5), ("evicted", 3)]
    );
    assert_eq!(files(bounded.path()).len(), 2);
    // The two written last are kept.
    let asked = site.seen.total();
    let (second, _) = crawl(Record(pages[3..].to_vec()), &options).await;
    assert_eq!(cache_stats(&second), [("hit", 2)]);
    assert_eq!(site.seen.total(), asked);
}

#[actix::test]
async fn rfc9111_a_stale_entry_answers_when_the_site_is_down_unless_it_forbids_it() {
    let origin = Arc::new(Origin::default());
    let data = web::Data::new(origin.clone());
    let server = fixture::spawn_app("127.0.0.1", 1, move |cfg| {
        cfg.app_data(data.clone())
            .default_service(web::to(origin_page));
    });
    let addr = server.addr;
    let urls = vec![
        format!("http://{addr}/etag"),
        format!("http://{addr}/stale"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let options = in_dir(dir.path(), CachePolicy::Rfc9111);
    let once = |urls: Vec<String>| {
        let collect = Collect::default();
        let builder = Crawler::builder(Record(urls))
            .no_retry()
            .http_cache(options.clone())
            .pipeline(collect.clone());
        async move {
            let stats = run(builder).await;
            let items = collect.items.lock().unwrap().clone();
            (stats, items)
        }
    };
    let (first, _) = once(urls.clone()).await;
    assert_eq!(first.get("httpcache/store"), 2);
    // The site goes away: wait (bounded) until its port refuses.
    drop(server);
    let mut refused = false;
    for _ in 0..1000 {
        if std::net::TcpStream::connect(addr).is_err() {
            refused = true;
            break;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(refused, "the server did not stop");
    let (second, items) = once(urls).await;
    // /stale is answered from the cache; /etag said no-cache: it fails.
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["path"], "/stale");
    assert_eq!(
        (items[0]["status"].as_u64(), items[0]["body"].as_str()),
        (Some(200), Some("stale body"))
    );
    assert_eq!(cache_stats(&second), [("errorrecovery", 1)]);
    assert_eq!(second.error_count(), 1);
}
