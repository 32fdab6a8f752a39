//! robots.txt as the robots standard (RFC 9309) says: redirects followed
//! (at most five), the first 500 KiB parsed, 4xx allowing everything, 5xx
//! disallowing everything (fetched again, then the origin's requests
//! dropped and counted), the request's proxy used, and a bound on fetches
//! in flight.
//!
//! Each test starts its own server (`serve`), whose `/robots.txt` behaves
//! as the test asks and whose other paths are pages without links; every
//! hit is recorded by path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use spinneret::{Counter, Crawler, Request, StatsSnapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::fixture;
use crate::spiders::{run, wait_for_stats, Cb, LinkSpider};

/// The rules most tests serve.
const RULES: &str = "User-agent: *\nDisallow: /secret\n";

/// How `/robots.txt` answers.
#[derive(Clone)]
enum Robots {
    /// 301 to `/dir/a`, which 302s to `b.txt` (so `/dir/b.txt`): [`RULES`].
    Redirected,
    /// 302 to `/hop/1`, which 302s to `/hop/2`, and so on without end.
    Endless,
    /// This status, no rules.
    Status(u16),
    /// 503 the first time, then [`RULES`].
    FlakyOnce,
    /// [`RULES`], 600 KiB of comments, then `Disallow: /late`.
    Large,
    /// [`RULES`] once the gate opens.
    Gated(watch::Receiver<bool>),
}

/// What the server saw.
#[derive(Default)]
struct Seen {
    hits: Mutex<HashMap<String, usize>>,
    /// `/robots.txt` requests being answered now.
    active: AtomicUsize,
}

impl Seen {
    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

struct Site {
    seen: Arc<Seen>,
    server: fixture::Server,
}

impl Site {
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.server.addr, path)
    }
}

fn serve(robots: Robots) -> Site {
    serve_on("127.0.0.1", robots)
}

/// [`serve`] on another loopback address (another host, for the slots).
fn serve_on(host: &str, robots: Robots) -> Site {
    let seen = Arc::new(Seen::default());
    let state = web::Data::new((robots, seen.clone()));
    let server = fixture::spawn_app(host, 1, move |cfg| {
        cfg.app_data(state.clone()).default_service(web::to(answer));
    });
    Site { seen, server }
}

async fn answer(state: web::Data<(Robots, Arc<Seen>)>, req: HttpRequest) -> HttpResponse {
    let (robots, seen) = &**state;
    let path = req.path().to_string();
    let hits = {
        let mut all = seen.hits.lock().unwrap();
        let n = all.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    let redirect = |code: u16, to: String| {
        HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap())
            .insert_header(("location", to))
            .finish()
    };
    match (path.as_str(), robots) {
        ("/robots.txt", Robots::Redirected) => redirect(301, "/dir/a".into()),
        ("/dir/a", _) => redirect(302, "b.txt".into()),
        ("/dir/b.txt", _) => HttpResponse::Ok().body(RULES),
        ("/robots.txt", Robots::Endless) => redirect(302, "/hop/1".into()),
        (hop, Robots::Endless) if hop.starts_with("/hop/") => {
            let n: u32 = hop["/hop/".len()..].parse().unwrap();
            redirect(302, format!("/hop/{}", n + 1))
        }
        ("/robots.txt", Robots::Status(code)) => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(*code).unwrap()).finish()
        }
        ("/robots.txt", Robots::FlakyOnce) if hits == 1 => {
            HttpResponse::ServiceUnavailable().finish()
        }
        ("/robots.txt", Robots::FlakyOnce) => HttpResponse::Ok().body(RULES),
        ("/robots.txt", Robots::Large) => {
            let mut text = RULES.to_string();
            while text.len() < 600 << 10 {
                text.push_str("# a comment line to make the file large\n");
            }
            text.push_str("Disallow: /late\n");
            HttpResponse::Ok().body(text)
        }
        ("/robots.txt", Robots::Gated(gate)) => {
            seen.active.fetch_add(1, Ordering::SeqCst);
            let mut gate = gate.clone();
            let _ = gate.wait_for(|open| *open).await;
            seen.active.fetch_sub(1, Ordering::SeqCst);
            HttpResponse::Ok().body(RULES)
        }
        _ => HttpResponse::Ok()
            .content_type("text/html")
            .body(format!("<html><head><title>{path}</title></head></html>")),
    }
}

/// Crawls `paths` of `site` (pages without links) obeying robots.txt.
async fn crawl(site: &Site, paths: &[&str]) -> StatsSnapshot {
    let urls: Vec<String> = paths.iter().map(|p| site.url(p)).collect();
    run(Crawler::builder(LinkSpider::from_urls(&urls)).obey_robots_txt(true)).await
}

#[actix::test]
async fn a_redirected_robots_txt_is_followed_and_obeyed() {
    let site = serve(Robots::Redirected);
    let s = crawl(&site, &["/open", "/secret"]).await;
    // Each hop resolved against the last URL: /robots.txt → /dir/a → b.txt.
    for path in ["/robots.txt", "/dir/a", "/dir/b.txt", "/open"] {
        assert_eq!(site.seen.hits(path), 1, "{path}");
    }
    assert_eq!(site.seen.hits("/secret"), 0);
    assert_eq!(s.get("robotstxt/forbidden"), 1);
    assert_eq!(s.get("robotstxt/redirect_count"), 2);
    assert_eq!(s.get("robotstxt/response_status_count/200"), 1);
    assert_eq!(s.counter(Counter::ResponseCount), 1, "{s:#?}");
}

#[actix::test]
async fn more_than_five_redirects_make_robots_txt_unavailable_which_allows_all() {
    let site = serve(Robots::Endless);
    let s = crawl(&site, &["/open", "/secret"]).await;
    assert_eq!(site.seen.hits("/hop/5"), 1);
    assert_eq!(site.seen.hits("/hop/6"), 0, "a sixth redirect was followed");
    assert_eq!((site.seen.hits("/open"), site.seen.hits("/secret")), (1, 1));
    assert_eq!(s.get("robotstxt/unavailable"), 1);
    assert_eq!(s.get("robotstxt/redirect_count"), 5);
    assert_eq!(s.get("robotstxt/forbidden"), 0);
    // Counted as what it is: a redirect too many, not a fetch that got no
    // answer.
    assert_eq!(s.get("robotstxt/too_many_redirects"), 1, "{s:#?}");
    assert_eq!(s.get("robotstxt/exception_count"), 0, "{s:#?}");
    assert_eq!(s.get("robotstxt/response_count"), 1, "{s:#?}");
    assert_eq!(s.get("robotstxt/response_status_count/302"), 1, "{s:#?}");
}

#[actix::test]
async fn a_404_robots_txt_allows_everything() {
    let site = serve(Robots::Status(404));
    let s = crawl(&site, &["/open", "/secret"]).await;
    assert_eq!((site.seen.hits("/open"), site.seen.hits("/secret")), (1, 1));
    assert_eq!(s.get("robotstxt/unavailable"), 1);
    assert_eq!(s.get("robotstxt/response_status_count/404"), 1);
    assert_eq!(s.get("robotstxt/forbidden"), 0);
    assert_eq!(s.counter(Counter::ResponseCount), 2);
}

#[actix::test]
async fn a_5xx_robots_txt_is_retried_then_the_origins_requests_are_dropped_and_counted() {
    let site = serve(Robots::Status(503));
    let s = crawl(&site, &["/open", "/secret", "/other"]).await;
    // Fetched three times (then given up on); no page ever fetched.
    assert_eq!(site.seen.hits("/robots.txt"), 3);
    for path in ["/open", "/secret", "/other"] {
        assert_eq!(site.seen.hits(path), 0, "{path} fetched");
    }
    assert_eq!(s.get("robotstxt/unreachable"), 3);
    assert_eq!(s.get("robotstxt/retry_count"), 2);
    assert_eq!(s.get("robotstxt/gave_up"), 1);
    // Every request ends counted: none is lost.
    assert_eq!(s.get("robotstxt/forbidden"), 3);
    assert_eq!(s.get("robotstxt/forbidden_unreachable"), 3);
    assert_eq!(s.counter(Counter::Enqueued), 3);
    assert_eq!(s.counter(Counter::ResponseCount), 0);
}

#[actix::test]
async fn a_robots_txt_503_once_is_fetched_again_and_its_requests_wait_for_it() {
    let site = serve(Robots::FlakyOnce);
    let s = crawl(&site, &["/open", "/secret"]).await;
    assert_eq!(site.seen.hits("/robots.txt"), 2);
    assert_eq!((site.seen.hits("/open"), site.seen.hits("/secret")), (1, 0));
    assert_eq!(s.get("robotstxt/retry_count"), 1);
    assert_eq!(s.get("robotstxt/forbidden"), 1);
    assert_eq!(s.get("robotstxt/forbidden_unreachable"), 0);
}

#[actix::test]
async fn a_robots_txt_over_500_kib_is_cut_and_its_start_obeyed() {
    let site = serve(Robots::Large);
    let s = crawl(&site, &["/open", "/secret", "/late"]).await;
    assert_eq!(site.seen.hits("/secret"), 0);
    // The rule past the cut is never read.
    assert_eq!((site.seen.hits("/open"), site.seen.hits("/late")), (1, 1));
    assert_eq!(s.get("robotstxt/truncated"), 1);
    assert_eq!(s.get("robotstxt/forbidden"), 1);
}

/// A CONNECT proxy for tests: records each CONNECT line and tunnels every
/// connection to `target`, whatever host it names (so a name only the
/// proxy knows reaches the test's server).
async fn tunnel_to(target: SocketAddr, connects: Arc<Mutex<Vec<String>>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    actix_rt::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let connects = connects.clone();
            actix_rt::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head);
                connects
                    .lock()
                    .unwrap()
                    .push(text.lines().next().unwrap().to_string());
                let mut upstream = tokio::net::TcpStream::connect(target).await.unwrap();
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    addr
}

#[actix::test]
async fn robots_txt_is_fetched_through_the_requests_proxy() {
    let site = serve(Robots::Redirected);
    let connects = Arc::new(Mutex::new(Vec::new()));
    let proxy = tunnel_to(site.server.addr, connects.clone()).await;
    // `robots.invalid` resolves nowhere: only through the proxy is the
    // site reached at all.
    let port = site.server.addr.port();
    let starts: Vec<Request<Cb>> = ["/open", "/secret"]
        .iter()
        .map(|p| {
            Request::get(&format!("http://robots.invalid:{port}{p}"))
                .unwrap()
                .proxy(format!("http://{proxy}"))
        })
        .collect();
    let s = run(Crawler::builder(LinkSpider::new(starts)).obey_robots_txt(true)).await;
    assert_eq!(site.seen.hits("/dir/b.txt"), 1, "{s:#?}");
    assert_eq!((site.seen.hits("/open"), site.seen.hits("/secret")), (1, 0));
    assert_eq!(s.get("robotstxt/forbidden"), 1);
    let connects = connects.lock().unwrap().clone();
    assert!(!connects.is_empty());
    for line in &connects {
        assert_eq!(line, &format!("CONNECT robots.invalid:{port} HTTP/1.1"));
    }
}

#[actix::test]
async fn robots_txt_fetches_in_flight_are_bounded() {
    const ORIGINS: usize = 11;
    let (gate, opened) = watch::channel(false);
    // One host each: a host's slot is held while its robots.txt is fetched.
    let sites: Vec<Site> = (1..=ORIGINS)
        .map(|i| serve_on(&format!("127.0.0.{i}"), Robots::Gated(opened.clone())))
        .collect();
    let urls: Vec<String> = sites.iter().map(|s| s.url("/open")).collect();
    let crawl = Crawler::builder(LinkSpider::from_urls(&urls))
        .obey_robots_txt(true)
        .concurrency(32)
        .build()
        .unwrap()
        .start()
        .unwrap();
    // Eight fetches go out and are held at the servers; the other three
    // wait for a place, and none of them reaches a server meanwhile.
    let active = |sites: &[Site]| -> usize {
        sites
            .iter()
            .map(|s| s.seen.active.load(Ordering::SeqCst))
            .sum()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while active(&sites) < 8 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} fetches arrived",
            active(&sites)
        );
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
    wait_for_stats(&crawl, |s| s.get("robotstxt/fetch_waited") == 3).await;
    let requested: usize = sites.iter().map(|s| s.seen.hits("/robots.txt")).sum();
    assert_eq!((requested, active(&sites)), (8, 8));
    gate.send_replace(true);
    let s = tokio::time::timeout(Duration::from_secs(30), crawl.join())
        .await
        .expect("the crawl ended")
        .unwrap();
    assert_eq!(active(&sites), 0);
    for site in &sites {
        assert_eq!(site.seen.hits("/robots.txt"), 1);
        assert_eq!(site.seen.hits("/open"), 1);
    }
    assert_eq!(s.get("robotstxt/request_count"), ORIGINS as u64);
    assert_eq!(s.counter(Counter::ResponseCount), ORIGINS as u64);
}
