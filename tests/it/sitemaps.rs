//! A crawl started from sitemaps: robots.txt names an index, the index two
//! sitemaps (one gzipped, served as a file with no content coding) and a
//! broken one; pages are requested by rule, with the rule's callback and
//! the sitemap's `<lastmod>` in their meta.

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
    /// The errors `parse` returned, by sitemap.
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
                if let ErrorKind::Sitemap { sitemap, .. } = e.kind() {
                    self.errors.lock().unwrap().push(sitemap.clone());
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
        // One entry, then the document breaks.
        "/broken.xml" => xml(format!(
            "<urlset><url><loc>http://{host}/product/4</loc></url><url><loc>http://{host}/x</lo"
        )),
        _ => HttpResponse::Ok()
            .content_type("text/html")
            .body("<html><body>page</body></html>"),
    }
}

#[actix::test]
async fn a_crawl_from_robots_txt_follows_the_index_and_requests_pages_by_rule() {
    let hits = web::Data::new(Mutex::new(BTreeMap::<String, usize>::new()));
    let state = hits.clone();
    let server = fixture::spawn_app("127.0.0.1", 1, move |cfg| {
        cfg.app_data(state.clone()).default_service(web::to(answer));
    });
    let robots = format!("http://{}/robots.txt", server.addr);
    let sitemaps = SitemapRules::new(Cb::Sitemap, [robots.as_str()])
        .unwrap()
        .rule("/product/", Cb::Product)
        .unwrap()
        .rule("/(about|blog/)", Cb::Page)
        .unwrap();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let collect = Collect::default();
    let spider = Shop {
        sitemaps,
        errors: errors.clone(),
    };
    let s = run(Crawler::builder(spider).pipeline(collect.clone())).await;

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
    assert_eq!(*errors.lock().unwrap(), [broken]);
}
