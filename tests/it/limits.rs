//! Download limits: the whole-exchange timeout, the body size limit (counted
//! after decompression, so a compression bomb is refused), the warning size,
//! and streaming a body to a file without holding it in memory.
//!
//! The server here is this file's own (actix-web on 127.0.0.1:0, on its own
//! thread); its large bodies are generated chunk by chunk, never held whole,
//! and it counts the chunks it actually produced, so a test can tell the
//! crawler stopped reading. It runs in the test's process, so its memory is
//! part of the RSS the memory checks measure.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::stream;
use spinneret::{
    Counter, Crawler, CrawlerBuilder, Error, ErrorKind, Failure, Method, Output, Request, Response,
    Spider, Stage, StartRequests, StatsSnapshot,
};

use crate::fixture;
use crate::spiders::run;

/// Chunks of the generated large bodies.
const CHUNK: usize = 64 << 10;
const MB: usize = 1 << 20;

/// The memory checks run one at a time, so one test's allocations do not
/// show in another's RSS figures.
static MEMORY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the server did, shared with the test.
#[derive(Default)]
struct Tracker {
    /// Chunks of generated bodies produced (pulled by the server's writer).
    produced: AtomicUsize,
    /// Set when a generated body's stream is dropped, finished or not.
    dropped: AtomicBool,
    dropped_signal: tokio::sync::Notify,
    /// The `Accept-Encoding` of each request, in arrival order.
    accept_encoding: Mutex<Vec<String>>,
}

impl Tracker {
    /// Waits (bounded) until a generated body's stream has been dropped.
    async fn stream_dropped(&self) {
        let wait = async {
            while !self.dropped.load(Ordering::SeqCst) {
                self.dropped_signal.notified().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("the server's body stream was never dropped");
    }

    fn produced_bytes(&self) -> usize {
        self.produced.load(Ordering::SeqCst) * CHUNK
    }
}

/// Marks the stream dropped when the stream (which owns it) is.
struct DropFlag(Arc<Tracker>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.dropped.store(true, Ordering::SeqCst);
        self.0.dropped_signal.notify_one();
    }
}

struct Server {
    addr: SocketAddr,
    tracker: Arc<Tracker>,
    /// Stops the server when dropped.
    _server: fixture::Server,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// Starts the server. Routes:
/// - `/small`: a short page (not tracked).
/// - `/drip`: 100 bytes, one every 100 ms (10 s in all).
/// - `/big/{mb}`: `mb` MiB of zeros in 64 KiB chunks, chunked (no length).
/// - `/declared/{mb}`: the same with its `Content-Length` (any method).
/// - `/pattern/{n}`: `n` bytes of [`pattern`], in chunks, with its length.
/// - `/bomb`: [`bomb`], as `Content-Encoding: gzip`.
/// - `/coded/{gzip|deflate|br|zstd}`: [`PAGE`] in that coding.
fn serve() -> Server {
    let tracker = Arc::new(Tracker::default());
    let state = web::Data::from(tracker.clone());
    let server = fixture::spawn_app("127.0.0.1", 1, move |cfg| {
        cfg.app_data(state.clone())
            .route("/small", web::get().to(small))
            .route("/drip", web::get().to(drip))
            .route("/big/{mb}", web::get().to(big))
            .route("/declared/{mb}", web::route().to(declared))
            .route("/pattern/{n}", web::get().to(pattern_body))
            .route("/bomb", web::get().to(bomb_body))
            .route("/coded/{coding}", web::get().to(coded));
    });
    Server {
        addr: server.addr,
        tracker,
        _server: server,
    }
}

fn record(tracker: &Tracker, req: &HttpRequest) {
    let accept = req
        .headers()
        .get("accept-encoding")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    tracker.accept_encoding.lock().unwrap().push(accept);
}

async fn small() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html").body(PAGE)
}

async fn drip(tracker: web::Data<Tracker>, req: HttpRequest) -> HttpResponse {
    record(&tracker, &req);
    let bytes = stream::unfold(0u32, |i| async move {
        if i == 100 {
            return None;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        Some((Ok::<_, actix_web::Error>(Bytes::from_static(b"x")), i + 1))
    });
    HttpResponse::Ok()
        .content_type("text/plain")
        .streaming(bytes)
}

/// `total` bytes in `CHUNK`-sized chunks of `fill(offset, chunk)`, counted
/// in the tracker as they are produced.
fn generated(
    tracker: Arc<Tracker>,
    total: usize,
    fill: fn(usize, &mut [u8]),
) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> {
    let flag = DropFlag(tracker);
    stream::unfold((0usize, flag), move |(offset, flag)| async move {
        if offset >= total {
            return None;
        }
        let len = CHUNK.min(total - offset);
        let mut chunk = vec![0u8; len];
        fill(offset, &mut chunk);
        flag.0.produced.fetch_add(1, Ordering::SeqCst);
        Some((Ok(Bytes::from(chunk)), (offset + len, flag)))
    })
}

fn zeros(_: usize, _: &mut [u8]) {}

/// Byte `i` of the `/pattern/` bodies.
fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

fn fill_pattern(offset: usize, chunk: &mut [u8]) {
    for (i, b) in chunk.iter_mut().enumerate() {
        *b = pattern(offset + i);
    }
}

async fn big(tracker: web::Data<Tracker>, req: HttpRequest, mb: web::Path<usize>) -> HttpResponse {
    record(&tracker, &req);
    let body = generated(tracker.into_inner(), mb.into_inner() * MB, zeros);
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .streaming(body)
}

async fn declared(
    tracker: web::Data<Tracker>,
    req: HttpRequest,
    mb: web::Path<usize>,
) -> HttpResponse {
    record(&tracker, &req);
    let total = mb.into_inner() * MB;
    let body = generated(tracker.into_inner(), total, zeros);
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .no_chunking(total as u64)
        .streaming(body)
}

async fn pattern_body(
    tracker: web::Data<Tracker>,
    req: HttpRequest,
    n: web::Path<usize>,
) -> HttpResponse {
    record(&tracker, &req);
    let total = n.into_inner();
    let body = generated(tracker.into_inner(), total, fill_pattern);
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .no_chunking(total as u64)
        .streaming(body)
}

async fn bomb_body(tracker: web::Data<Tracker>, req: HttpRequest) -> HttpResponse {
    record(&tracker, &req);
    HttpResponse::Ok()
        .content_type("text/html")
        .insert_header(("content-encoding", "gzip"))
        .body(bomb().clone())
}

async fn coded(
    tracker: web::Data<Tracker>,
    req: HttpRequest,
    coding: web::Path<String>,
) -> HttpResponse {
    record(&tracker, &req);
    let coding = coding.into_inner();
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("content-encoding", coding.as_str()))
        .body(encode(&coding, PAGE.as_bytes()))
}

/// The page the `/coded/` routes serve.
const PAGE: &str = "<html><head><title>coded ünïcödé</title></head><body>\
    <p>The quick brown fox jumps over the lazy dog.</p>\
    <p>The quick brown fox jumps over the lazy dog.</p></body></html>";

fn encode(coding: &str, data: &[u8]) -> Vec<u8> {
    match coding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        // HTTP's `deflate` is the zlib format (RFC 9110 §8.4.1.2).
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "br" => {
            let mut e = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
            e.write_all(data).unwrap();
            e.into_inner()
        }
        "zstd" => zstd::encode_all(data, 3).unwrap(),
        other => panic!("unknown coding {other}"),
    }
}

/// A gzip body that inflates to 100 MiB of zeros (about 100 KB), built
/// once per process, 64 KiB at a time.
fn bomb() -> &'static Bytes {
    static BOMB: OnceLock<Bytes> = OnceLock::new();
    BOMB.get_or_init(|| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; CHUNK];
        for _ in 0..(100 * MB / CHUNK) {
            e.write_all(&zeros).unwrap();
        }
        Bytes::from(e.finish().unwrap())
    })
}

/// The resident set of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// What the spider saw of one response.
#[derive(Clone, Debug)]
struct Seen {
    url: String,
    status: u16,
    body: Bytes,
    text: String,
    body_len: u64,
    body_path: Option<PathBuf>,
}

/// What the spider saw of one failure.
#[derive(Clone, Debug)]
struct Failed {
    url: String,
    kind: String,
    limit: Option<usize>,
    stage: Stage,
    message: String,
}

/// Fetches its start requests and records what it sees.
#[derive(Clone, Default)]
struct Probe {
    starts: Vec<Request<()>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    failed: Arc<Mutex<Vec<Failed>>>,
}

impl Probe {
    fn new(starts: Vec<Request<()>>) -> Self {
        Probe {
            starts,
            ..Probe::default()
        }
    }

    fn seen(&self, url: &str) -> Seen {
        let seen = self.seen.lock().unwrap();
        let found = seen.iter().find(|s| s.url == url);
        found
            .cloned()
            .unwrap_or_else(|| panic!("{url} was not parsed"))
    }

    fn failed(&self, url: &str) -> Failed {
        let failed = self.failed.lock().unwrap();
        let found = failed.iter().find(|f| f.url == url);
        found
            .cloned()
            .unwrap_or_else(|| panic!("{url} did not fail"))
    }
}

impl Spider for Probe {
    type Callback = ();

    fn name(&self) -> &str {
        "probe"
    }

    fn start_requests(&self) -> StartRequests<()> {
        Box::new(self.starts.clone().into_iter())
    }

    fn parse(&self, _: (), response: &Response, _: &mut Output<()>) -> Result<(), Error> {
        self.seen.lock().unwrap().push(Seen {
            url: response.url.to_string(),
            status: response.status,
            body: response.body.clone(),
            text: response.text().into_owned(),
            body_len: response.meta.body_len,
            body_path: response.meta.body_path.clone(),
        });
        Ok(())
    }

    fn on_error(&self, failure: &Failure<()>) -> Vec<Request<()>> {
        let e = &failure.error;
        let limit = match e.kind() {
            ErrorKind::BodyTooLarge { limit } => Some(*limit),
            _ => None,
        };
        self.failed.lock().unwrap().push(Failed {
            url: failure.request.url.to_string(),
            kind: e.kind_name().to_string(),
            limit,
            stage: e.stage(),
            message: e.to_string(),
        });
        Vec::new()
    }
}

/// Crawls `probe` with the builder `configure` returns (retries off) to
/// its end.
async fn crawl(
    probe: &Probe,
    configure: impl FnOnce(CrawlerBuilder<Probe>) -> CrawlerBuilder<Probe>,
) -> StatsSnapshot {
    // Bodies may be streamed into the tests' temporary directories.
    let builder = Crawler::builder(probe.clone())
        .no_retry()
        .stream_dir(std::env::temp_dir());
    run(configure(builder)).await
}

/// A first small crawl, so the RSS measured around the real one shows its
/// body, not the threads, arenas and actors a process's first crawls set up
/// (about 11 MiB here).
async fn warm_up(server: &Server) {
    let probe = Probe::new(vec![get(&server.url("/small"))]);
    crawl(&probe, |b| b).await;
}

/// Crawls `probe` at a 1 MiB body limit after a warm-up crawl, and how
/// many bytes the RSS grew by. With `dropped`, first waits until the server
/// saw the crawler drop the stream.
async fn crawl_at_1mib(server: &Server, probe: &Probe, dropped: bool) -> (StatsSnapshot, i64) {
    warm_up(server).await;
    let before = rss();
    let s = crawl(probe, |b| b.max_body(MB)).await;
    if dropped {
        server.tracker.stream_dropped().await;
    }
    (s, rss() as i64 - before as i64)
}

fn get(url: &str) -> Request<()> {
    Request::get(url).unwrap()
}

fn mb(bytes: i64) -> f64 {
    bytes as f64 / MB as f64
}

#[actix::test]
async fn a_dripping_body_times_out_as_a_whole() {
    let server = serve();
    let url = server.url("/drip");
    let probe = Probe::new(vec![get(&url)]);
    let started = Instant::now();
    let s = crawl(&probe, |b| b.timeout(Duration::from_millis(500))).await;
    let took = started.elapsed();

    // The body would take 10 s; the deadline covers it, not just headers.
    assert!(took < Duration::from_secs(5), "the crawl took {took:?}");
    assert_eq!(
        s.get("downloader/exception_type_count/timeout"),
        1,
        "{s:#?}"
    );
    assert_eq!(s.counter(Counter::ExceptionCount), 1);
    assert_eq!(s.counter(Counter::RequestFailures), 1);
    assert_eq!(s.counter(Counter::ResponseCount), 0);
    let f = probe.failed(&url);
    assert_eq!((f.kind.as_str(), f.stage), ("timeout", Stage::Download));
    assert!(probe.seen.lock().unwrap().is_empty());
    eprintln!("dripping body: crawl finished after {took:?}");
}

#[actix::test]
async fn a_huge_body_is_refused_at_the_limit_with_flat_memory() {
    let _one_at_a_time = MEMORY.lock().await;
    let server = serve();
    let url = server.url("/big/100");
    let probe = Probe::new(vec![get(&url)]);
    let (s, grew) = crawl_at_1mib(&server, &probe, true).await;

    assert_eq!(
        s.get("downloader/exception_type_count/body_too_large"),
        1,
        "{s:#?}"
    );
    assert_eq!(s.counter(Counter::RequestFailures), 1);
    let f = probe.failed(&url);
    assert_eq!(f.kind, "body_too_large");
    assert_eq!(f.limit, Some(MB));
    assert_eq!(f.stage, Stage::Download);
    assert!(f.message.contains(&url), "{}", f.message);
    // The crawler stopped reading: what the server produced is what fits
    // in the socket buffers past the limit, not the 100 MiB.
    let produced = server.tracker.produced_bytes();
    assert!(produced < 20 * MB, "the server produced {produced} bytes");
    assert!(grew < 50 * MB as i64, "RSS grew by {grew} bytes");
    eprintln!(
        "100 MiB chunked body at a 1 MiB limit: RSS grew {:.1} MiB; server produced {:.1} MiB",
        mb(grew),
        mb(produced as i64)
    );
}

#[actix::test]
async fn a_declared_length_over_the_limit_is_refused_before_reading() {
    let _one_at_a_time = MEMORY.lock().await;
    let server = serve();
    let url = server.url("/declared/100");
    let probe = Probe::new(vec![get(&url)]);
    let (s, grew) = crawl_at_1mib(&server, &probe, true).await;

    assert_eq!(
        s.get("downloader/exception_type_count/body_too_large"),
        1,
        "{s:#?}"
    );
    assert_eq!(s.counter(Counter::RequestFailures), 1);
    assert_eq!(s.counter(Counter::ResponseBytes), 0);
    assert_eq!(probe.failed(&url).limit, Some(MB));
    let produced = server.tracker.produced_bytes();
    assert!(produced < 20 * MB, "the server produced {produced} bytes");
    assert!(grew < 50 * MB as i64, "RSS grew by {grew} bytes");
    eprintln!(
        "100 MiB declared body at a 1 MiB limit: RSS grew {:.1} MiB; server produced {:.1} MiB",
        mb(grew),
        mb(produced as i64)
    );
}

#[actix::test]
async fn a_head_answer_with_a_large_length_is_not_refused() {
    let server = serve();
    let url = server.url("/declared/100");
    let probe = Probe::new(vec![get(&url).method(Method::HEAD)]);
    let s = crawl(&probe, |b| b.max_body(MB)).await;
    assert_eq!(s.counter(Counter::ExceptionCount), 0, "{s:#?}");
    let seen = probe.seen(&url);
    assert_eq!((seen.status, seen.body_len), (200, 0));
}

#[actix::test]
async fn a_gzip_bomb_is_refused_after_decompression_with_flat_memory() {
    let bomb_len = bomb().len();
    let _one_at_a_time = MEMORY.lock().await;
    let server = serve();
    let url = server.url("/bomb");
    let probe = Probe::new(vec![get(&url)]);
    let (s, grew) = crawl_at_1mib(&server, &probe, false).await;

    assert!(bomb_len < MB / 4, "the bomb is {bomb_len} bytes");
    assert_eq!(
        s.get("downloader/exception_type_count/body_too_large"),
        1,
        "{s:#?}"
    );
    assert_eq!(s.counter(Counter::RequestFailures), 1);
    assert_eq!(probe.failed(&url).limit, Some(MB));
    assert!(grew < 50 * MB as i64, "RSS grew by {grew} bytes");
    eprintln!(
        "gzip bomb ({bomb_len} bytes inflating to 100 MiB) at a 1 MiB limit: RSS grew {:.1} MiB",
        mb(grew)
    );
}

#[actix::test]
async fn gzip_deflate_br_and_zstd_are_asked_for_and_decoded() {
    let server = serve();
    let codings = ["gzip", "deflate", "br", "zstd"];
    let urls: Vec<String> = codings
        .iter()
        .map(|c| server.url(&format!("/coded/{c}")))
        .collect();
    let probe = Probe::new(urls.iter().map(|u| get(u)).collect());
    let s = crawl(&probe, |b| b).await;

    assert_eq!(s.counter(Counter::ExceptionCount), 0, "{s:#?}");
    for (coding, url) in codings.iter().zip(&urls) {
        let seen = probe.seen(url);
        assert_eq!(seen.text, PAGE, "{coding}");
        assert_eq!(seen.body_len, PAGE.len() as u64, "{coding}");
    }
    // The decoded size is what counts.
    assert_eq!(
        s.counter(Counter::ResponseBytes),
        4 * PAGE.len() as u64,
        "{s:#?}"
    );
    let asked = server.tracker.accept_encoding.lock().unwrap().clone();
    assert_eq!(asked.len(), 4);
    for accept in asked {
        let offered: Vec<&str> = accept.split(',').map(str::trim).collect();
        for coding in codings {
            assert!(offered.contains(&coding), "{coding} not in {accept:?}");
        }
    }
}

#[actix::test]
async fn a_body_streams_to_a_file_byte_exact_with_flat_memory() {
    const SIZE: usize = 5 * MB;
    let _one_at_a_time = MEMORY.lock().await;
    let server = serve();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("body.bin");
    let url = server.url(&format!("/pattern/{SIZE}"));
    // The crawl's limit is lower than the body: the request's own applies.
    let req = get(&url).stream_to(&path).max_body(8 * MB);
    let probe = Probe::new(vec![req]);
    let (s, grew) = crawl_at_1mib(&server, &probe, false).await;

    assert_eq!(s.counter(Counter::ExceptionCount), 0, "{s:#?}");
    assert_eq!(s.counter(Counter::ResponseBytes), SIZE as u64);
    // Streamed bodies are not held in memory, so they never warn.
    assert_eq!(s.get("downloader/warn_size_count"), 0);
    let seen = probe.seen(&url);
    assert_eq!(seen.status, 200);
    assert!(seen.body.is_empty(), "{} bytes in memory", seen.body.len());
    assert_eq!(seen.body_len, SIZE as u64);
    assert_eq!(seen.body_path.as_deref(), Some(path.as_path()));
    assert!(grew < 20 * MB as i64, "RSS grew by {grew} bytes");

    let written = std::fs::read(&path).unwrap();
    assert_eq!(written.len(), SIZE);
    let first_wrong = (0..SIZE).find(|&i| written[i] != pattern(i));
    assert_eq!(first_wrong, None, "the file differs from the body");
    eprintln!(
        "5 MiB body streamed to a file: RSS grew {:.1} MiB",
        mb(grew)
    );
}

#[actix::test]
async fn streaming_to_an_unwritable_path_fails_clearly() {
    let server = serve();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("body.bin");
    let url = server.url("/pattern/1000");
    let probe = Probe::new(vec![get(&url).stream_to(&path)]);
    let s = crawl(&probe, |b| b).await;

    assert_eq!(
        s.get("downloader/exception_type_count/body_write"),
        1,
        "{s:#?}"
    );
    assert_eq!(s.counter(Counter::RequestFailures), 1);
    let f = probe.failed(&url);
    assert_eq!((f.kind.as_str(), f.stage), ("body_write", Stage::Download));
    assert!(f.message.contains("body.bin"), "{}", f.message);
    assert!(f.message.contains(&url), "{}", f.message);
    assert!(!path.exists());
}

#[actix::test]
async fn a_body_over_the_warning_size_counts_once() {
    let server = serve();
    let between = server.url("/pattern/5000");
    let below = server.url("/pattern/500");
    let over = server.url("/pattern/20000");
    let probe = Probe::new(vec![get(&between), get(&below), get(&over)]);
    let s = crawl(&probe, |b| b.warn_body(1000).max_body(10_000)).await;

    // One warning for the body between the two sizes; none for the small
    // one; the one over the maximum is an error instead.
    assert_eq!(s.get("downloader/warn_size_count"), 1, "{s:#?}");
    assert_eq!(probe.seen(&between).body_len, 5000);
    assert_eq!(probe.seen(&below).body_len, 500);
    assert_eq!(probe.failed(&over).kind, "body_too_large");
    assert_eq!(s.counter(Counter::RequestFailures), 1);
}
