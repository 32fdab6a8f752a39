//! Crawls through a real HTTP proxy: tinyproxy, started by `.ci/run`.
//!
//! `.ci/run` exports `CI_TEST_PROXY` (an open tinyproxy),
//! `CI_TEST_PROXY_LOG` (its log, which names every CONNECT) and
//! `CI_TEST_PROXY_AUTH` (a tinyproxy with `BasicAuth user pass`, as
//! `http://user:pass@127.0.0.1:PORT`). When a variable is unset, a test that
//! needs it fails under CI (`CI` set) and is skipped loudly otherwise. The
//! target is a small actix-web server of this file's own that records every
//! request it gets, so a test can tell that nothing reached it.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use spinneret::{
    Counter, Crawler, Error, Failure, Output, Request, Response, Spider, StartRequests,
    StatsSnapshot,
};

use crate::fixture::{spawn_app, Server};
use crate::spiders::{Cb, Collect, LinkSpider, StartCrawl};

/// A proxy URL from the environment, or `None` (test skipped) outside CI.
pub(crate) fn proxy_var(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{name} is unset under CI: .ci/run starts tinyproxy and exports it")
        }
        _ => {
            eprintln!(
                "*** SKIPPED: {name} is unset; start tinyproxy as .ci/run does and export it ***"
            );
            None
        }
    }
}

/// The target site: `/page` is an HTML page without links; anything else
/// is a 404. Every request is recorded.
struct Target {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    /// Stops the server when dropped.
    _server: Server,
}

impl Target {
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve_target() -> Target {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = web::Data::new(seen.clone());
    let server = spawn_app("127.0.0.1", 1, move |cfg| {
        cfg.app_data(state.clone())
            .route("/page", web::get().to(page))
            .default_service(web::to(page));
    });
    Target {
        addr: server.addr,
        seen,
        _server: server,
    }
}

async fn page(seen: web::Data<Arc<Mutex<Vec<String>>>>, req: HttpRequest) -> HttpResponse {
    let key = match req.query_string() {
        "" => req.path().to_string(),
        q => format!("{}?{q}", req.path()),
    };
    seen.lock().unwrap().push(key);
    if req.path() == "/page" {
        HttpResponse::Ok()
            .content_type("text/html")
            .body("<html><head><title>proxied</title></head><body>hi</body></html>")
    } else {
        HttpResponse::NotFound().finish()
    }
}

/// `LinkSpider`, recording the error of every failed request.
struct Recording {
    inner: LinkSpider,
    failures: Arc<Mutex<Vec<String>>>,
}

impl Recording {
    fn new(starts: Vec<Request<Cb>>) -> Self {
        Recording {
            inner: LinkSpider::new(starts),
            failures: Arc::default(),
        }
    }
}

impl Spider for Recording {
    type Callback = Cb;

    fn name(&self) -> &str {
        "proxied"
    }

    fn start_requests(&self) -> StartRequests<Cb> {
        self.inner.start_requests()
    }

    fn parse(&self, cb: Cb, response: &Response, out: &mut Output<Cb>) -> Result<(), Error> {
        self.inner.parse(cb, response, out)
    }

    fn on_error(&self, failure: &Failure<Cb>) -> Vec<Request<Cb>> {
        self.failures
            .lock()
            .unwrap()
            .push(failure.error.to_string());
        Vec::new()
    }
}

/// Crawls `starts`; returns the stats, the items and the failures.
async fn crawl(starts: Vec<Request<Cb>>) -> (StatsSnapshot, usize, Vec<String>) {
    let spider = Recording::new(starts);
    let failures = spider.failures.clone();
    let collect = Collect::default();
    let handle = Crawler::builder(spider)
        .timeout(Duration::from_secs(20))
        .pipeline(collect.clone())
        .started();
    let stats = handle.join().await.unwrap();
    let items = collect.items.lock().unwrap().len();
    let failures = failures.lock().unwrap().clone();
    (stats, items, failures)
}

/// A port on 127.0.0.1 that nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Whether the open proxy's log names a CONNECT to 127.0.0.1:`port`. Under
/// CI the log must be there; elsewhere a missing log skips the check.
pub(crate) fn proxy_logged_connect_to(port: u16) -> Option<bool> {
    let path = match std::env::var("CI_TEST_PROXY_LOG") {
        Ok(p) => p,
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CI_TEST_PROXY_LOG is unset under CI")
        }
        Err(_) => {
            eprintln!("*** SKIPPED the proxy-log check: CI_TEST_PROXY_LOG is unset ***");
            return None;
        }
    };
    let log = std::fs::read_to_string(&path).expect("read the proxy's log");
    Some(log.contains(&format!("CONNECT 127.0.0.1:{port} HTTP/1.1")))
}

fn assert_fetched_once(s: &StatsSnapshot, items: usize, failures: &[String]) {
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(s.counter(Counter::ResponseCount), 1, "{s:#?}");
    assert_eq!(s.status_count(200), 1, "{s:#?}");
    assert_eq!(s.counter(Counter::ItemScraped), 1, "{s:#?}");
    assert_eq!(s.counter(Counter::RequestFailures), 0, "{s:#?}");
    assert_eq!(items, 1);
}

#[actix::test]
async fn an_http_page_is_fetched_through_the_proxy() {
    let Some(proxy) = proxy_var("CI_TEST_PROXY") else {
        return;
    };
    let target = serve_target();
    let start = Request::get(&target.url("/page")).unwrap().proxy(&proxy);
    let (s, items, failures) = crawl(vec![start]).await;
    assert_fetched_once(&s, items, &failures);
    assert_eq!(target.seen(), ["/page"]);
    // The proxy carried it: its log names the tunnel to the target.
    if let Some(logged) = proxy_logged_connect_to(target.addr.port()) {
        assert!(logged, "the proxy's log has no CONNECT to {}", target.addr);
    }
}

#[actix::test]
async fn an_unreachable_proxy_fails_the_request_and_nothing_goes_direct() {
    // Needs no tinyproxy: the proxy is a closed port.
    let target = serve_target();
    let proxy = format!("http://127.0.0.1:{}", closed_port());
    let start = Request::get(&target.url("/page")).unwrap().proxy(&proxy);
    let (s, items, failures) = crawl(vec![start]).await;
    assert_eq!(s.counter(Counter::RequestFailures), 1, "{s:#?}");
    assert!(s.counter(Counter::ExceptionCount) >= 1, "{s:#?}");
    assert_eq!(s.counter(Counter::ResponseCount), 0, "{s:#?}");
    assert_eq!(items, 0);
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0].contains("cannot connect to proxy 127.0.0.1:"),
        "{failures:?}"
    );
    assert!(
        target.seen().is_empty(),
        "reached directly: {:?}",
        target.seen()
    );
}

#[actix::test]
async fn a_malformed_proxy_url_fails_that_request_and_the_crawl_goes_on() {
    let target = serve_target();
    let starts = vec![
        Request::get(&target.url("/page?bad"))
            .unwrap()
            .proxy("socks5://user:secret@127.0.0.1:1080"),
        Request::get(&target.url("/page")).unwrap(),
    ];
    let (s, items, failures) = crawl(starts).await;
    assert_eq!(s.counter(Counter::RequestFailures), 1, "{s:#?}");
    assert_eq!(s.status_count(200), 1, "{s:#?}");
    assert_eq!(items, 1);
    assert_eq!(failures.len(), 1);
    assert!(failures[0].contains("invalid URL"), "{failures:?}");
    assert!(failures[0].contains("only http:// proxies"), "{failures:?}");
    assert!(
        !failures[0].contains("secret"),
        "credentials leaked: {failures:?}"
    );
    assert_eq!(target.seen(), ["/page"]);
}

#[actix::test]
async fn an_auth_proxy_lets_the_right_credentials_through() {
    let Some(proxy) = proxy_var("CI_TEST_PROXY_AUTH") else {
        return;
    };
    let target = serve_target();
    let start = Request::get(&target.url("/page")).unwrap().proxy(&proxy);
    let (s, items, failures) = crawl(vec![start]).await;
    assert_fetched_once(&s, items, &failures);
    assert_eq!(target.seen(), ["/page"]);
}

#[actix::test]
async fn an_auth_proxy_refuses_wrong_or_missing_credentials() {
    let Some(proxy) = proxy_var("CI_TEST_PROXY_AUTH") else {
        return;
    };
    let mut wrong = url::Url::parse(&proxy).unwrap();
    wrong.set_password(Some("wrong")).unwrap();
    let mut none = wrong.clone();
    none.set_username("").unwrap();
    none.set_password(None).unwrap();
    for (proxy, what) in [(wrong, "wrong credentials"), (none, "no credentials")] {
        let target = serve_target();
        let start = Request::get(&target.url("/page"))
            .unwrap()
            .proxy(proxy.as_str());
        let (s, items, failures) = crawl(vec![start]).await;
        assert_eq!(s.counter(Counter::RequestFailures), 1, "{what}: {s:#?}");
        assert_eq!(s.counter(Counter::ResponseCount), 0, "{what}: {s:#?}");
        assert_eq!(items, 0, "{what}");
        assert_eq!(failures.len(), 1, "{what}");
        // tinyproxy 1.11 answers 401 where RFC 9110 says 407.
        let refused = failures[0].contains("refused CONNECT");
        let status = [" 401 ", " 407 "].iter().any(|s| failures[0].contains(s));
        assert!(refused && status, "{what}: {failures:?}");
        assert!(
            !failures[0].contains("wrong"),
            "credentials leaked: {failures:?}"
        );
        assert!(
            target.seen().is_empty(),
            "{what}: reached: {:?}",
            target.seen()
        );
    }
}

#[actix::test]
async fn an_https_target_gets_a_tunnel_and_tls_runs_over_it() {
    // The client trusts only the webpki roots, so a local HTTPS server with
    // a self-signed certificate cannot complete the handshake. Instead the
    // target is a raw listener: it records the first bytes that come out of
    // the tunnel (a TLS ClientHello starts with 0x16 0x03) and hangs up, so
    // the request fails at the handshake, after the proxy's 200.
    let Some(proxy) = proxy_var("CI_TEST_PROXY") else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let firsts = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let record = firsts.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 5];
            let n = conn.read(&mut buf).unwrap_or(0);
            record.lock().unwrap().push(buf[..n].to_vec());
        }
    });
    let start = Request::get(&format!("https://127.0.0.1:{port}/page"))
        .unwrap()
        .proxy(&proxy);
    let (s, items, failures) = crawl(vec![start]).await;
    assert_eq!(s.counter(Counter::RequestFailures), 1, "{s:#?}");
    assert_eq!(items, 0);
    assert_eq!(failures.len(), 1);
    assert!(!failures[0].contains("refused CONNECT"), "{failures:?}");
    let firsts = firsts.lock().unwrap().clone();
    assert!(!firsts.is_empty(), "nothing came through the tunnel");
    for first in &firsts {
        assert_eq!(
            first.get(..2),
            Some(&[0x16, 0x03][..]),
            "not TLS: {first:?}"
        );
    }
    if let Some(logged) = proxy_logged_connect_to(port) {
        assert!(logged, "the proxy's log has no CONNECT to 127.0.0.1:{port}");
    }
}
