//! What the crawler trusts and what it shows: credentials kept out of logs,
//! errors and events; `stream_to` held to the stream directories, from
//! wherever a request came; cookies kept from public suffixes and capped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use actix_web::{web, HttpRequest, HttpResponse};
use spinneret::{
    Counter, CrawlEvent, Crawler, Error, Output, Request, Response, Spider, StartRequests,
};

use crate::fixture::{serve, spawn_app, Server};
use crate::log::Records;
use crate::spiders::{run, Cb, LinkSpider, StartCrawl};

#[actix::test]
async fn credentials_in_a_url_reach_no_log_error_or_event() {
    let site = serve(1);
    let url = format!("http://someuser:hunter2pw@{}/status/404", site.addr);
    let records = Records::default();
    let crawl = Crawler::builder(LinkSpider::from_urls(&[url]))
        .logger(records.logger())
        .started();
    let mut events = crawl.subscribe();
    crawl.join().await.unwrap();
    assert_eq!(site.seen.hits("/status/404"), 1, "the request was sent");
    let mut errors = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let CrawlEvent::Error { url, message, .. } = &event {
            errors.push((url.clone(), message.clone()));
        }
        let json = serde_json::to_string(&event).unwrap();
        assert!(!json.contains("hunter2pw"), "{json}");
        assert!(!json.contains("someuser"), "{json}");
    }
    // The 404 was recorded as an error, its URL shown masked.
    let masked = format!("http://***:***@{}/status/404", site.addr);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0.as_deref(), Some(masked.as_str()));
    assert!(errors[0].1.contains(&masked), "{errors:?}");
    let failures = records.lines("request failed");
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["url"], masked);
    let logged = records.text();
    assert!(!logged.contains("hunter2pw"), "{logged}");
    assert!(!logged.contains("someuser"), "{logged}");
}

/// A temporary root with `ok/` (the stream directory) and `no/` beside it.
fn stream_dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let ok = root.path().join("ok");
    let no = root.path().join("no");
    std::fs::create_dir(&ok).unwrap();
    std::fs::create_dir(&no).unwrap();
    (root, ok, no)
}

fn streamed(url: String, to: &Path) -> Request<Cb> {
    Request::get(&url).unwrap().stream_to(to)
}

#[actix::test]
async fn stream_to_outside_the_stream_directories_is_refused_and_counted() {
    let site = serve(1);
    let (root, ok, no) = stream_dirs();
    // Up past the stream directory and back down into its sibling.
    let name = root.path().file_name().unwrap();
    let escape = ok.join("../..").join(name).join("no/climbed.bin");
    let crawl = Crawler::builder(LinkSpider::new(vec![
        streamed(site.url("/status/200"), &ok.join("inside.bin")),
        streamed(site.url("/status/201"), &ok.join("../no/sibling.bin")),
        streamed(site.url("/status/202"), &escape),
        streamed(site.url("/status/203"), &no.join("absolute.bin")),
    ]))
    .stream_dir(&ok)
    .started();
    let s = crawl.join().await.unwrap();

    assert_eq!(s.get("downloader/stream_to_refused"), 3, "{s:#?}");
    assert_eq!(s.get("request_failure_count/stream_to_refused"), 3);
    assert_eq!(s.counter(Counter::ResponseCount), 1);
    // The one inside was fetched and written; the others never left.
    assert_eq!(site.seen.hits("/status/200"), 1);
    assert_eq!(
        std::fs::read(ok.join("inside.bin")).unwrap(),
        b"status page"
    );
    for path in ["/status/201", "/status/202", "/status/203"] {
        assert_eq!(site.seen.hits(path), 0, "{path} was sent");
    }
    assert_eq!(std::fs::read_dir(&no).unwrap().count(), 0);
}

#[actix::test]
async fn a_symlink_put_in_place_of_stream_to_after_the_check_is_not_followed() {
    // The path is checked when the request is sent; the file is opened
    // when the answer comes. A symlink put there meanwhile, to a file
    // outside the stream directory, is not written through.
    let mut site = serve(1);
    let (_root, ok, no) = stream_dirs();
    let victim = no.join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let to = ok.join("body.html");
    let crawl = Crawler::builder(LinkSpider::new(vec![streamed(site.url("/gated/0"), &to)]))
        .stream_dir(&ok)
        .started();
    let arrived = tokio::time::timeout(std::time::Duration::from_secs(20), site.arrival()).await;
    assert_eq!(arrived.expect("the request never came"), "/gated/0");
    std::os::unix::fs::symlink(&victim, &to).unwrap();
    site.open_gate();
    let s = crawl.join().await.unwrap();

    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert_eq!(s.get("downloader/stream_to_refused"), 1, "{s:#?}");
    assert_eq!(
        s.get("request_failure_count/stream_to_refused"),
        1,
        "{s:#?}"
    );
    assert_eq!(s.counter(Counter::ResponseCount), 0, "{s:#?}");
    // The link itself is left as it was found.
    assert!(std::fs::symlink_metadata(&to).unwrap().is_symlink());
}

#[actix::test]
async fn without_a_stream_directory_no_stream_to_is_followed() {
    let site = serve(1);
    let (_root, ok, _) = stream_dirs();
    let crawl = Crawler::builder(LinkSpider::new(vec![streamed(
        site.url("/status/200"),
        &ok.join("a.bin"),
    )]))
    .started();
    let s = crawl.join().await.unwrap();
    assert_eq!(s.get("downloader/stream_to_refused"), 1, "{s:#?}");
    assert_eq!(site.seen.hits("/status/200"), 0);
    assert!(!ok.join("a.bin").exists());
}

/// Rewrites every journal record of `dir` with `from` replaced by `to`
/// (of the same length), checksums made right: what someone who can write
/// the job directory could do.
fn forge_journal(dir: &Path, from: &str, to: &str) {
    assert_eq!(from.len(), to.len());
    let path = dir.join("checkpoints.log");
    let mut log = std::fs::read(&path).unwrap();
    let mut at = 0;
    let mut forged = 0;
    while at + 12 <= log.len() {
        let len = u32::from_le_bytes(log[at + 4..at + 8].try_into().unwrap()) as usize;
        let payload = at + 12..at + 12 + len;
        let text = log[payload.clone()].to_vec();
        let mut i = 0;
        while let Some(found) = text[i..]
            .windows(from.len())
            .position(|w| w == from.as_bytes())
        {
            let start = payload.start + i + found;
            log[start..start + to.len()].copy_from_slice(to.as_bytes());
            forged += 1;
            i += found + from.len();
        }
        let crc = crc32fast::hash(&log[payload.clone()]);
        log[at + 8..at + 12].copy_from_slice(&crc.to_le_bytes());
        at = payload.end;
    }
    assert!(forged > 0, "the journal does not hold {from}");
    std::fs::write(&path, log).unwrap();
}

#[actix::test]
async fn a_forged_stream_to_read_back_from_a_job_directory_is_refused() {
    let mut site = serve(3);
    let (root, ok, no) = stream_dirs();
    let job = root.path().join("job");
    let url = site.url("/gated/0");
    let start = || vec![streamed(url.clone(), &ok.join("gated.bin"))];
    // A first run leaves the request pending in the job directory.
    let crawl = Crawler::builder(LinkSpider::new(start()))
        .job_dir(&job)
        .stream_dir(&ok)
        .started();
    assert_eq!(site.arrival().await, "/gated/0");
    crawl.stop().await.unwrap();
    crawl.stop().await.unwrap();
    let first = crawl.join().await.unwrap();
    assert_eq!(first.counter(Counter::Unprocessed), 1);

    // Its stream_to is rewritten to lead out of the stream directory.
    let from = ok.join("gated.bin").display().to_string();
    let to = no.join("gated.bin").display().to_string();
    forge_journal(&job, &from, &to);

    site.open_gate();
    let crawl = Crawler::builder(LinkSpider::new(start()))
        .job_dir(&job)
        .stream_dir(&ok)
        .started();
    assert_eq!(crawl.resumed().unwrap().pending, 1);
    let s = crawl.join().await.unwrap();
    assert_eq!(s.get("downloader/stream_to_refused"), 1, "{s:#?}");
    assert_eq!(site.seen.hits("/gated/0"), 1, "only the first run's");
    assert!(!no.join("gated.bin").exists());
    assert!(!ok.join("gated.bin").exists());
}

/// Fetches its start request, then, from its answer, each of `then` (in
/// order, highest priority first).
struct Then {
    start: Request<()>,
    then: Vec<Request<()>>,
}

impl Spider for Then {
    type Callback = ();

    fn name(&self) -> &str {
        "then"
    }

    fn start_requests(&self) -> StartRequests<()> {
        Box::new(std::iter::once(self.start.clone()))
    }

    fn parse(&self, _: (), response: &Response, out: &mut Output<()>) -> Result<(), Error> {
        if response.url == self.start.url {
            let last = self.then.len() as i32;
            for (i, req) in self.then.iter().enumerate() {
                out.request(req.clone().priority(last - i as i32));
            }
        }
        Ok(())
    }
}

/// The `Cookie` header each `/cookies` request carried, by its `Host`.
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// A site that sets cookies: `/set` a public-suffix one, a host-only one
/// and one for its own domain; `/many/{k}` 50 cookies `c{50k}`..; and
/// `/cookies` records what it was sent.
fn cookie_site() -> (Server, Received) {
    let received = Received::default();
    let seen = received.clone();
    let server = spawn_app("127.0.0.1", 1, move |cfg| {
        let seen = seen.clone();
        cfg.route(
            "/set",
            web::get().to(|| async {
                HttpResponse::Ok()
                    .append_header(("set-cookie", "wide=1; Domain=co.uk; Path=/"))
                    .append_header(("set-cookie", "own=1; Path=/"))
                    .append_header(("set-cookie", "site=1; Domain=one.co.uk; Path=/"))
                    .body("set")
            }),
        )
        .route(
            "/many/{k}",
            web::get().to(|k: web::Path<usize>| async move {
                let mut res = HttpResponse::Ok();
                for i in 50 * *k..50 * (*k + 1) {
                    res.append_header(("set-cookie", format!("c{i:03}={i}; Path=/")));
                }
                res.body("many")
            }),
        )
        .route(
            "/cookies",
            web::get().to(move |req: HttpRequest| {
                let header = |name| {
                    let value = req.headers().get(name).and_then(|v| v.to_str().ok());
                    value.unwrap_or("").to_string()
                };
                seen.lock()
                    .unwrap()
                    .push((header("host"), header("cookie")));
                async { HttpResponse::Ok().body("ok") }
            }),
        );
    });
    (server, received)
}

/// An HTTP proxy on 127.0.0.1 that tunnels every CONNECT to `to`, whatever
/// host it names: a crawl through it reaches `one.co.uk` and `two.co.uk`
/// without DNS. Each connection is served by its own threads, which end
/// when either side closes.
fn tunnel_everything_to(to: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            std::thread::spawn(move || tunnel(client, to));
        }
    });
    addr
}

fn tunnel(mut client: TcpStream, to: SocketAddr) -> std::io::Result<()> {
    // The CONNECT head, up to its blank line.
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let mut server = TcpStream::connect(to)?;
    client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    let (mut c2, mut s2) = (client.try_clone()?, server.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut s2);
        let _ = s2.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut server, &mut client);
    let _ = client.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
    Ok(())
}

fn sorted_cookies(header: &str) -> Vec<&str> {
    let mut pairs: Vec<&str> = header.split("; ").filter(|p| !p.is_empty()).collect();
    pairs.sort();
    pairs
}

#[actix::test]
async fn a_cookie_for_a_public_suffix_is_not_sent_to_other_sites() {
    let (server, received) = cookie_site();
    let port = server.addr.port();
    let proxy = format!("http://{}", tunnel_everything_to(server.addr));
    let get = |host: &str, path: &str| {
        let url = format!("http://{host}:{port}{path}");
        Request::get(&url).unwrap().proxy(proxy.clone())
    };
    let spider = Then {
        start: get("one.co.uk", "/set"),
        then: vec![get("two.co.uk", "/cookies"), get("one.co.uk", "/cookies")],
    };
    let s = run(Crawler::builder(spider).concurrency(1)).await;

    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 2, "{received:?}");
    let other = format!("two.co.uk:{port}");
    let own = format!("one.co.uk:{port}");
    assert_eq!(received[0], (other, String::new()), "nothing for two.co.uk");
    assert_eq!(received[1].0, own);
    assert_eq!(sorted_cookies(&received[1].1), ["own=1", "site=1"]);
    assert_eq!(s.get("cookies/refused_public_suffix"), 1, "{s:#?}");
}

#[actix::test]
async fn a_site_setting_200_cookies_keeps_its_newest_50() {
    let (server, received) = cookie_site();
    let url = |path: &str| format!("http://{}{path}", server.addr);
    let get = |path: &str| Request::get(&url(path)).unwrap();
    let spider = Then {
        start: get("/many/0"),
        then: vec![
            get("/many/1"),
            get("/many/2"),
            get("/many/3"),
            get("/cookies"),
        ],
    };
    let s = run(Crawler::builder(spider).concurrency(1)).await;

    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "{received:?}");
    let sent = sorted_cookies(&received[0].1);
    let newest: Vec<String> = (150..200).map(|i| format!("c{i:03}={i}")).collect();
    assert_eq!(sent, newest.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(s.get("cookies/evicted_per_domain"), 150, "{s:#?}");
    assert_eq!(s.get("cookies/evicted_total"), 0);
}

#[test]
fn cookie_limits_and_stream_directories_are_checked_at_build() {
    let config = |b: spinneret::CrawlerBuilder<LinkSpider>| match b.build() {
        Err(e) => matches!(e.kind(), spinneret::ErrorKind::Config(_)),
        Ok(_) => false,
    };
    let spider = || Crawler::builder(LinkSpider::new(Vec::new()));
    assert!(config(spider().cookie_limits(0, 10)));
    assert!(config(spider().cookie_limits(50, 10)));
    assert!(!config(spider().cookie_limits(1, 1)));
    // A stream directory that cannot be made: under a file.
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("file"), b"").unwrap();
    assert!(config(spider().stream_dir(root.path().join("file/dir"))));
    assert!(!config(spider().stream_dir(root.path().join("new/dir"))));
    assert!(root.path().join("new/dir").is_dir(), "made by build");
}

#[cfg(feature = "distributed")]
#[actix::test]
async fn a_redis_password_stays_out_of_setup_errors() {
    let spider = || Crawler::builder(LinkSpider::new(Vec::new()));
    // Not a URL: refused at build.
    let bad = spider().redis("redis://:hunter2pw@[::1").build();
    let e = bad.err().expect("a malformed Redis URL");
    assert!(matches!(e.kind(), spinneret::ErrorKind::Config(_)), "{e}");
    assert!(!format!("{e} {e:?}").contains("hunter2pw"), "{e:?}");
    // Nothing listens on port 1: unreachable when the crawl connects.
    let crawler = spider()
        .redis("redis://:hunter2pw@127.0.0.1:1/")
        .build()
        .unwrap();
    let e = crawler
        .start_async()
        .await
        .err()
        .expect("Redis unreachable");
    let shown = format!("{e} {e:?}");
    assert!(shown.contains("redis://***:***@127.0.0.1:1/"), "{shown}");
    assert!(!shown.contains("hunter2pw"), "{shown}");
}
