//! Where redirects may lead and what they carry: the allowed domains apply
//! to a redirect's target, only allow-listed headers cross origins, and the
//! opt-in address guard refuses private and loopback addresses (checked
//! after DNS resolution, on redirects and through proxies too).
//!
//! Servers listen on 127.0.0.1 and 127.0.0.2: two origins (and two
//! loopback addresses) on one machine.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use spinneret::{Crawler, Error, Output, Request, Response, Spider, StartRequests, StatsSnapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::fixture::{spawn_app, Server};
use crate::log::Records;
use crate::spiders::{run, Collect};

/// Starts from the given requests; one item per response (its URL).
struct Starts(Vec<Request<()>>);

impl Spider for Starts {
    type Callback = ();
    fn name(&self) -> &str {
        "starts"
    }
    fn start_requests(&self) -> StartRequests<()> {
        Box::new(self.0.clone().into_iter())
    }
    fn parse(&self, _: (), r: &Response, out: &mut Output<()>) -> Result<(), Error> {
        out.item(json!({ "url": r.url.as_str() }));
        Ok(())
    }
}

/// Each request a [`recorder`] answered: its path and its headers
/// (lower-case names).
type Requests = Arc<Mutex<Vec<(String, HashMap<String, String>)>>>;

/// A server on `host`:0 that records every request; `/to?u=URL` answers
/// 302 to `URL`, every other path a small page.
fn recorder(host: &str) -> (Server, Requests) {
    let seen = Requests::default();
    let state = seen.clone();
    let server = spawn_app(host, 1, move |cfg| {
        let seen = state.clone();
        cfg.app_data(web::Data::new(seen))
            .default_service(web::to(answer));
    });
    (server, seen)
}

async fn answer(seen: web::Data<Requests>, req: HttpRequest) -> HttpResponse {
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    seen.lock().unwrap().push((req.path().to_string(), headers));
    let to = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "u")
        .map(|(_, v)| v.into_owned());
    match (req.path(), to) {
        ("/to", Some(to)) => HttpResponse::Found()
            .insert_header(("location", to))
            .finish(),
        _ => HttpResponse::Ok()
            .content_type("text/html")
            .body("<html><body>page</body></html>"),
    }
}

/// The paths a recorder was asked for, in order.
fn paths(seen: &Requests) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|(p, _)| p.clone())
        .collect()
}

/// A TCP listener on `host`:0 that counts the connections it accepts and
/// closes each at once.
async fn counting_listener(host: &str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind((host, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    actix_rt::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (addr, accepted)
}

/// A CONNECT proxy on 127.0.0.1:0 that tunnels to whatever it is asked
/// for; records each request line and counts connections.
async fn connect_proxy() -> (SocketAddr, Arc<Mutex<Vec<String>>>, Arc<AtomicUsize>) {
    connect_proxy_on("127.0.0.1").await
}

/// [`connect_proxy`] on `host`:0.
async fn connect_proxy_on(host: &str) -> (SocketAddr, Arc<Mutex<Vec<String>>>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind((host, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (lines, accepted) = (Arc::default(), Arc::new(AtomicUsize::new(0)));
    let (seen, count): (Arc<Mutex<Vec<String>>>, _) = (Arc::clone(&lines), accepted.clone());
    actix_rt::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let seen = seen.clone();
            actix_rt::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut byte = [0u8];
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let line = head.lines().next().unwrap_or("").to_string();
                seen.lock().unwrap().push(line.clone());
                let target = line.split(' ').nth(1).unwrap_or("").to_string();
                let Ok(mut upstream) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = client.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (addr, lines, accepted)
}

fn get(url: &str) -> Request<()> {
    Request::get(url).unwrap()
}

/// `http://{addr}/to?u={to}`: a 302 to `to`.
fn via(addr: SocketAddr, to: &str) -> String {
    let to: String = url::form_urlencoded::byte_serialize(to.as_bytes()).collect();
    format!("http://{addr}/to?u={to}")
}

async fn crawl(builder: spinneret::CrawlerBuilder<Starts>) -> (StatsSnapshot, Vec<Value>) {
    let collect = Collect::default();
    let s = run(builder.pipeline(collect.clone())).await;
    let items = collect.items.lock().unwrap().clone();
    (s, items)
}

#[actix::test]
async fn a_redirect_off_the_allowed_domains_is_not_fetched_and_is_counted() {
    let (home, home_seen) = recorder("127.0.0.1");
    let (away, away_seen) = recorder("127.0.0.2");
    let off = format!("http://{}/landing", away.addr);
    let starts = vec![
        // `dont_filter` does not carry a redirect off the allowed domains.
        get(&via(home.addr, &format!("{off}?a"))).dont_filter(),
        get(&via(home.addr, &format!("{off}?b"))),
        get(&via(home.addr, "/landing")),
    ];
    let records = Records::default();
    let builder = Crawler::builder(Starts(starts))
        .allowed_domains(["127.0.0.1"])
        .logger(records.logger());
    let (s, items) = crawl(builder).await;
    assert!(paths(&away_seen).is_empty(), "{:?}", paths(&away_seen));
    assert_eq!(
        items,
        [json!({ "url": format!("http://{}/landing", home.addr) })]
    );
    assert_eq!(paths(&home_seen).iter().filter(|p| *p == "/to").count(), 3);
    assert_eq!(s.get("redirect/count"), 3);
    assert_eq!(s.get("offsite/filtered"), 2);
    assert_eq!(s.get("redirect/offsite_filtered"), 2);
    assert_eq!(s.finish_reason.as_deref(), Some("finished"));
    let lines = records.lines("redirect off the allowed domains dropped");
    let mut urls: Vec<&str> = lines.iter().map(|l| l["url"].as_str()).collect();
    urls.sort();
    assert_eq!(urls, [format!("{off}?a"), format!("{off}?b")]);
    assert!(
        lines.iter().all(|l| l["from"].contains("/to?u=")),
        "{lines:?}"
    );
}

/// The credentials a test request carries, and a User-Agent of its own.
fn with_credentials(url: &str) -> Request<()> {
    get(url)
        .header("Authorization", "Bearer secret")
        .header("Proxy-Authorization", "Basic secret")
        .header("X-Api-Key", "secret")
        .header("Cookie", "raw=secret")
        .cookie("session", "secret")
        .header("User-Agent", "probe/1")
}

#[actix::test]
async fn only_allow_listed_headers_follow_a_redirect_to_another_origin() {
    let (home, home_seen) = recorder("127.0.0.1");
    let (away, away_seen) = recorder("127.0.0.2");
    let starts = vec![
        with_credentials(&via(home.addr, &format!("http://{}/landing", away.addr))),
        with_credentials(&via(home.addr, "/same")),
    ];
    let (s, items) = crawl(Crawler::builder(Starts(starts))).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(s.get("redirect/count"), 2);
    let credentials = [
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "cookie",
    ];

    let away = away_seen.lock().unwrap().clone();
    assert_eq!(away.len(), 1);
    let (path, headers) = &away[0];
    assert_eq!(path, "/landing");
    for name in credentials {
        assert!(!headers.contains_key(name), "{name} crossed: {headers:?}");
    }
    assert_eq!(headers["user-agent"], "probe/1");

    // Within one origin every header stays.
    let home = home_seen.lock().unwrap().clone();
    let (_, headers) = home.iter().find(|(p, _)| p == "/same").unwrap();
    for name in credentials {
        assert!(headers[name].contains("secret"), "{name}: {headers:?}");
    }
    assert_eq!(headers["user-agent"], "probe/1");
}

#[actix::test]
async fn the_cross_origin_allow_list_is_configurable() {
    let (home, _) = recorder("127.0.0.1");
    let (away, away_seen) = recorder("127.0.0.2");
    let starts = vec![with_credentials(&via(
        home.addr,
        &format!("http://{}/landing", away.addr),
    ))];
    let builder = Crawler::builder(Starts(starts)).cross_origin_headers(["x-api-key"]);
    crawl(builder).await;
    let away = away_seen.lock().unwrap().clone();
    let (_, headers) = &away[0];
    assert_eq!(headers["x-api-key"], "secret");
    assert!(!headers.contains_key("authorization"), "{headers:?}");
    // The request's own User-Agent stayed behind: the crawl's is sent.
    assert_eq!(headers["user-agent"], spinneret::DEFAULT_USER_AGENT);

    let bad = Crawler::builder(Starts(Vec::new())).cross_origin_headers(["bad name"]);
    let Err(e) = bad.build() else {
        panic!("a bad header name was accepted");
    };
    assert!(e.to_string().contains("\"bad name\""), "{e}");
}

#[actix::test]
async fn the_guard_refuses_a_redirect_to_a_private_address_before_connecting() {
    let (home, home_seen) = recorder("127.0.0.1");
    let (target, accepted) = counting_listener("127.0.0.2").await;
    let to = format!("http://{target}/inside");
    let records = Records::default();
    let builder = Crawler::builder(Starts(vec![get(&via(home.addr, &to))]))
        .block_private_addresses(true)
        .allow_addresses(["127.0.0.1"])
        .logger(records.logger());
    let (s, items) = crawl(builder).await;
    assert!(items.is_empty());
    assert_eq!(paths(&home_seen), ["/to"]);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "no connection reached it"
    );
    assert_eq!(s.get("redirect/count"), 1);
    assert_eq!(s.get("downloader/exception_type_count/blocked_address"), 1);
    assert_eq!(s.get("request_failure_count/blocked_address"), 1);
    assert_eq!(s.get("retry/count"), 0, "a refusal is not retried");
    let lines = records.lines("request refused by the address guard");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["url"], to);
    assert_eq!(lines[0]["addr"], "127.0.0.2");
    assert_eq!(lines[0]["range"], "loopback");
}

#[actix::test]
async fn the_guard_refuses_a_name_that_resolves_to_loopback() {
    let (target, accepted) = counting_listener("127.0.0.1").await;
    let url = format!("http://localhost:{}/", target.port());
    let builder = Crawler::builder(Starts(vec![get(&url)]))
        .block_private_addresses(true)
        .allow_addresses(["127.0.0.2"]);
    let (s, items) = crawl(builder).await;
    assert!(items.is_empty());
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    assert_eq!(s.get("downloader/exception_type_count/blocked_address"), 1);
    assert_eq!(s.get("request_failure_count/blocked_address"), 1);
}

#[actix::test]
async fn with_the_guard_off_private_addresses_are_fetched() {
    let (home, home_seen) = recorder("127.0.0.1");
    let (away, away_seen) = recorder("127.0.0.2");
    let starts = vec![
        get(&via(home.addr, &format!("http://{}/landing", away.addr))),
        get(&format!("http://localhost:{}/local", home.addr.port())),
    ];
    let (s, items) = crawl(Crawler::builder(Starts(starts))).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(paths(&away_seen), ["/landing"]);
    assert!(paths(&home_seen).contains(&"/local".to_string()));
    assert_eq!(s.get("downloader/exception_type_count/blocked_address"), 0);
}

#[actix::test]
async fn through_a_proxy_the_guard_checks_the_target_before_the_proxy_is_asked() {
    let (proxy, lines, connections) = connect_proxy().await;
    let proxy = format!("http://{proxy}");
    let (refused, accepted) = counting_listener("127.0.0.2").await;
    let (home, home_seen) = recorder("127.0.0.1");
    let starts = vec![
        get(&format!("http://{refused}/inside")).proxy(&proxy),
        get(&format!("http://localhost:{}/allowed", home.addr.port())).proxy(&proxy),
    ];
    let builder = Crawler::builder(Starts(starts))
        .block_private_addresses(true)
        .allow_addresses(["127.0.0.1"]);
    let (s, items) = crawl(builder).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    assert_eq!(s.get("downloader/exception_type_count/blocked_address"), 1);
    // Only the allowed request reached the proxy, which was asked for the
    // checked address, not the name.
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    assert_eq!(
        *lines.lock().unwrap(),
        [format!("CONNECT 127.0.0.1:{} HTTP/1.1", home.addr.port())]
    );
    assert_eq!(paths(&home_seen), ["/allowed"]);
    assert_eq!(items.len(), 1, "{items:?}");
}

#[actix::test]
async fn a_proxy_the_request_names_is_checked_by_the_guard_like_a_target() {
    // A request's proxy is data (it can come from a job directory or a
    // shared queue): one on a refused address is never connected to, and
    // the request fails as a blocked address, counted. One on an allowed
    // address is used.
    let (refused, _, refused_connections) = connect_proxy_on("127.0.0.2").await;
    let (allowed, lines, allowed_connections) = connect_proxy().await;
    let (home, home_seen) = recorder("127.0.0.1");
    let starts = vec![
        get(&format!("http://{}/refused-proxy", home.addr)).proxy(format!("http://{refused}")),
        get(&format!("http://{}/allowed-proxy", home.addr)).proxy(format!("http://{allowed}")),
    ];
    let builder = Crawler::builder(Starts(starts))
        .block_private_addresses(true)
        .allow_addresses(["127.0.0.1"]);
    let (s, items) = crawl(builder).await;
    assert_eq!(refused_connections.load(Ordering::SeqCst), 0, "{s:#?}");
    assert_eq!(
        s.get("downloader/exception_type_count/blocked_address"),
        1,
        "{s:#?}"
    );
    assert_eq!(s.get("request_failure_count/blocked_address"), 1, "{s:#?}");
    assert_eq!(allowed_connections.load(Ordering::SeqCst), 1);
    assert_eq!(
        *lines.lock().unwrap(),
        [format!("CONNECT 127.0.0.1:{} HTTP/1.1", home.addr.port())]
    );
    assert_eq!(paths(&home_seen), ["/allowed-proxy"]);
    assert_eq!(items.len(), 1, "{items:?}");
}

#[actix::test]
async fn robots_txt_is_fetched_through_the_guard_too() {
    // With robots.txt obeyed, a refused host's robots.txt is not fetched
    // either: the fetch goes through the same guarded connector as the
    // pages. The guard's answer cannot change, so the fetch is not retried;
    // the page goes on to the downloader, whose guard refuses it as a
    // blocked address, counted. No connection reaches the host.
    let (target, accepted) = counting_listener("127.0.0.2").await;
    let url = format!("http://{target}/page");
    let builder = Crawler::builder(Starts(vec![get(&url)]))
        .obey_robots_txt(true)
        .block_private_addresses(true)
        .allow_addresses(["127.0.0.1"]);
    let (s, items) = crawl(builder).await;
    assert!(items.is_empty());
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "no connection reached it"
    );
    assert_eq!(s.get("robotstxt/request_count"), 1, "not retried: {s:#?}");
    assert_eq!(s.get("robotstxt/blocked_address"), 1, "{s:#?}");
    assert_eq!(s.get("robotstxt/retry_count"), 0, "{s:#?}");
    assert_eq!(s.get("robotstxt/unreachable"), 0, "{s:#?}");
    assert_eq!(s.get("robotstxt/forbidden"), 0, "{s:#?}");
    assert_eq!(s.get("downloader/request_count"), 1, "{s:#?}");
    assert_eq!(
        s.get("downloader/exception_type_count/blocked_address"),
        1,
        "{s:#?}"
    );
}
