//! The HTML helpers inside a real crawl: charset decoding, CSS selection
//! and the link extractor, against a small site of differently encoded
//! pages served from this file.
//!
//! Routes (every hit recorded by path):
//! - `/latin1`: Latin-1 bytes, declared only in the `Content-Type` header;
//!   links to `/meta` twice (once with a fragment), to `/logout`, to a
//!   `mailto:` and to another host.
//! - `/meta`: windows-1252 bytes, declared only in a `<meta charset>`;
//!   links back to `/latin1` and on to `/utf8`.
//! - `/utf8`: UTF-8 with a `<base href>`; links back to both others.
//! - `/logout`: must never be fetched (the spider denies it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use spinneret::{
    Counter, Crawler, Error, LinkExtractor, Output, Request, Response, Spider, StartRequests,
};

use crate::fixture::{spawn_app, Server};
use crate::spiders::{Collect, StartCrawl};

const LATIN1: &[u8] = b"<html><head><title>latin</title></head><body>\
    <h1>caf\xe9</h1>\
    <a href=\"/meta#top\">meta</a> <a href=\"meta\">meta again</a>\
    <a href=\"/logout\">logout</a> <a href=\"mailto:me@example.com\">mail</a>\
    <a href=\"http://elsewhere.invalid/\">away</a>\
    </body></html>";

const META: &[u8] = b"<!doctype html><html><head><meta charset=\"windows-1252\">\
    <title>meta</title></head><body>\
    <h1>na\xefve \x80</h1>\
    <a href=\"/latin1\">back</a> <a href=\"/utf8\">on</a>\
    </body></html>";

const UTF8: &str = "<html><head><base href=\"/deep/\"><title>utf8</title></head><body>\
    <h1>\u{65e5}\u{672c}</h1>\
    <a href=\"../latin1\">latin1</a> <a href=\"/meta\">meta</a>\
    </body></html>";

/// Hits per path.
type Hits = Arc<Mutex<HashMap<String, usize>>>;

/// The running site; stopped when dropped.
struct Site {
    addr: SocketAddr,
    hits: Hits,
    /// Stops the server when dropped.
    _server: Server,
}

fn serve() -> Site {
    let hits = Hits::default();
    let state = web::Data::new(hits.clone());
    let server = spawn_app("127.0.0.1", 1, move |cfg| {
        cfg.app_data(state.clone()).default_service(web::to(page));
    });
    Site {
        addr: server.addr,
        hits,
        _server: server,
    }
}

async fn page(hits: web::Data<Hits>, req: HttpRequest) -> HttpResponse {
    *hits.lock().unwrap().entry(req.path().into()).or_default() += 1;
    let (content_type, body): (&str, &[u8]) = match req.path() {
        "/latin1" => ("text/html; charset=iso-8859-1", LATIN1),
        "/meta" => ("text/html", META),
        "/utf8" => ("text/html; charset=utf-8", UTF8.as_bytes()),
        _ => return HttpResponse::NotFound().body("no such page"),
    };
    HttpResponse::Ok()
        .content_type(content_type)
        .body(body.to_vec())
}

/// One item per `<h1>`, and follows the same-host links it is allowed.
struct HtmlSpider {
    start: String,
    links: LinkExtractor,
}

impl Spider for HtmlSpider {
    type Callback = ();

    fn name(&self) -> &str {
        "html"
    }

    fn start_requests(&self) -> StartRequests<()> {
        Box::new(Request::get(&self.start).into_iter())
    }

    fn parse(&self, _: (), response: &Response, out: &mut Output<()>) -> Result<(), Error> {
        for h1 in response.css("h1")? {
            out.item(json!({
                "path": response.url.path(),
                "h1": h1,
                "encoding": response.encoding().name(),
            }));
        }
        for request in self.links.requests(response) {
            out.request(request);
        }
        Ok(())
    }
}

#[actix::test]
async fn declared_charsets_decode_and_links_are_followed() {
    let site = serve();
    let collect = Collect::default();
    let spider = HtmlSpider {
        start: format!("http://{}/latin1", site.addr),
        links: LinkExtractor::builder()
            .same_domain(true)
            .deny(["/logout$"])
            .build()
            .unwrap(),
    };
    let s = Crawler::builder(spider)
        .pipeline(collect.clone())
        .started()
        .join()
        .await
        .unwrap();

    let mut items = collect.items.lock().unwrap().clone();
    items.sort_by_key(|i| i["path"].as_str().unwrap().to_string());
    assert_eq!(
        items,
        [
            json!({"path": "/latin1", "h1": "caf\u{e9}", "encoding": "windows-1252"}),
            json!({"path": "/meta", "h1": "na\u{ef}ve \u{20ac}", "encoding": "windows-1252"}),
            json!({"path": "/utf8", "h1": "\u{65e5}\u{672c}", "encoding": "UTF-8"}),
        ]
    );

    assert_eq!(s.finish_reason.as_deref(), Some("finished"));
    assert_eq!(s.counter(Counter::RequestCount), 3);
    assert_eq!(s.status_count(200), 3);
    assert_eq!(s.counter(Counter::ItemScraped), 3);
    // /latin1 once from /meta, then /latin1 and /meta from /utf8: the
    // in-page duplicate of /meta never reached the dupe filter.
    assert_eq!(s.counter(Counter::DupeFiltered), 3);
    assert_eq!(s.error_count(), 0);
    let hits = site.hits.lock().unwrap().clone();
    assert_eq!(
        hits,
        HashMap::from([
            ("/latin1".to_string(), 1),
            ("/meta".to_string(), 1),
            ("/utf8".to_string(), 1),
        ])
    );
}

#[actix::test]
async fn a_bad_selector_fails_the_callback_with_context() {
    /// Fails on its only page, keeping the error's text for the test.
    struct BadSelector(String, Arc<Mutex<Vec<String>>>);
    impl Spider for BadSelector {
        type Callback = ();
        fn name(&self) -> &str {
            "bad-selector"
        }
        fn start_requests(&self) -> StartRequests<()> {
            Box::new(Request::get(&self.0).into_iter())
        }
        fn parse(&self, _: (), response: &Response, _: &mut Output<()>) -> Result<(), Error> {
            let e = response.css("h1[").unwrap_err();
            self.1.lock().unwrap().push(e.to_string());
            Err(e)
        }
    }
    let site = serve();
    let url = format!("http://{}/utf8", site.addr);
    let errors = Arc::new(Mutex::new(Vec::new()));
    let s = Crawler::builder(BadSelector(url.clone(), errors.clone()))
        .started()
        .join()
        .await
        .unwrap();
    assert_eq!(s.counter(Counter::SpiderExceptions), 1);
    assert_eq!(s.counter(Counter::ItemScraped), 0);
    let errors = errors.lock().unwrap();
    assert_eq!(errors.len(), 1);
    // Scraper's own message sits between the selector and the context.
    assert!(
        errors[0].starts_with("invalid CSS selector \"h1[\": "),
        "{errors:?}"
    );
    assert!(
        errors[0].ends_with(&format!(" (stage parse, url {url})")),
        "{errors:?}"
    );
}
