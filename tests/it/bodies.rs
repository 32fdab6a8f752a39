//! Coded bodies: compression bombs in gzip, br and zstd are refused at the
//! body limit without inflating past it, while the other pages of the same
//! crawl (coded or not) come through whole.
//!
//! The bombs are built once per process, each inflating to [`BOMB`] bytes
//! of zeros: gzip as one member whose deflate blocks of a MiB each are
//! repeated (each starts afresh after a full flush), zstd as repeated
//! frames of a MiB each, br as one stream.

use std::io::Write;
use std::sync::OnceLock;

use actix_web::{web, HttpResponse};
use bytes::Bytes;
use spinneret::{Backoff, Counter, Crawler, ErrorKind, JsonSender, Method};

use crate::fixture;
use crate::spiders::{run, Collect, LinkSpider};

const MIB: usize = 1 << 20;

/// What each bomb inflates to (1 GiB).
const BOMB: usize = 1 << 30;

/// The crawl's body limit.
const LIMIT: usize = MIB;

/// gzip: a header, the same deflate blocks of one MiB of zeros again and
/// again, a final empty block and the trailer (the CRC of all the zeros,
/// combined from one MiB's).
fn gzip_bomb() -> Vec<u8> {
    let zeros = vec![0u8; MIB];
    let mut deflate = flate2::Compress::new(flate2::Compression::fast(), false);
    let mut block = Vec::with_capacity(64 << 10);
    deflate
        .compress_vec(&zeros, &mut block, flate2::FlushCompress::Full)
        .unwrap();
    assert_eq!(deflate.total_in(), MIB as u64);
    let mut last = Vec::with_capacity(64);
    deflate
        .compress_vec(&[], &mut last, flate2::FlushCompress::Finish)
        .unwrap();
    let mut one = flate2::Crc::new();
    one.update(&zeros);
    let mut crc = flate2::Crc::new();
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    for _ in 0..BOMB / MIB {
        out.extend_from_slice(&block);
        crc.combine(&one);
    }
    out.extend_from_slice(&last);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(BOMB as u32).to_le_bytes());
    out
}

/// zstd: frames of one MiB of zeros, one after the other.
fn zstd_bomb() -> Vec<u8> {
    let frame = zstd::encode_all(&vec![0u8; MIB][..], 3).unwrap();
    frame.repeat(BOMB / MIB)
}

/// br: one stream, compressed a MiB at a time.
fn br_bomb() -> Vec<u8> {
    let zeros = vec![0u8; MIB];
    let mut e = brotli::CompressorWriter::new(Vec::new(), 1 << 16, 1, 22);
    for _ in 0..BOMB / MIB {
        e.write_all(&zeros).unwrap();
    }
    e.into_inner()
}

fn bomb(coding: &str) -> Bytes {
    static BOMBS: OnceLock<[Bytes; 3]> = OnceLock::new();
    let [gzip, br, zstd] = BOMBS.get_or_init(|| {
        let t = std::time::Instant::now();
        let b = [
            Bytes::from(gzip_bomb()),
            Bytes::from(br_bomb()),
            Bytes::from(zstd_bomb()),
        ];
        eprintln!("bombs built in {:?}", t.elapsed());
        b
    });
    match coding {
        "gzip" => gzip.clone(),
        "br" => br.clone(),
        "zstd" => zstd.clone(),
        other => panic!("no {other} bomb"),
    }
}

/// Serves `/` (links to every page), `/page` (gzip-coded HTML) and
/// `/bomb/{gzip|br|zstd}`.
fn serve() -> fixture::Server {
    fixture::spawn_app("127.0.0.1", 1, |cfg| {
        cfg.route("/", web::get().to(index))
            .route("/page", web::get().to(page))
            .route("/bomb/{coding}", web::route().to(bomb_page));
    })
}

async fn index() -> HttpResponse {
    let links: String = ["/bomb/gzip", "/bomb/br", "/bomb/zstd", "/page"]
        .iter()
        .map(|p| format!("<a href=\"{p}\">{p}</a>"))
        .collect();
    HttpResponse::Ok().content_type("text/html").body(format!(
        "<html><head><title>index</title></head><body>{links}</body></html>"
    ))
}

async fn page() -> HttpResponse {
    let html = "<html><head><title>a coded page</title></head><body>fine</body></html>";
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(html.as_bytes()).unwrap();
    HttpResponse::Ok()
        .content_type("text/html")
        .insert_header(("content-encoding", "gzip"))
        .body(e.finish().unwrap())
}

async fn bomb_page(coding: web::Path<String>) -> HttpResponse {
    let coding = coding.into_inner();
    let body = web::block({
        let coding = coding.clone();
        move || bomb(&coding)
    })
    .await
    .unwrap();
    HttpResponse::Ok()
        .content_type("text/html")
        .insert_header(("content-encoding", coding))
        .body(body)
}

/// The peak resident set of this process so far, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// The environment variable that makes [`bomb_child`] run a case.
const CHILD_CASE: &str = "SPINNERET_BOMB_CHILD";

/// What [`bomb_child`] prints before its peak RSS growth, in bytes.
const GREW: &str = "bomb child peak RSS grew by ";

/// Runs `case` of [`bomb_child`] in a process of its own (this test
/// binary again, that test alone), so no other test's allocations show in
/// its peak nor hide it; returns how much that process's peak RSS grew
/// during the case. The child's own assertions must pass.
fn in_a_child(case: &str) -> u64 {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "bodies::bomb_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_CASE, case)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the {case} child failed:\n{stdout}\n{stderr}"
    );
    let grew = stdout
        .lines()
        .find_map(|l| l.split_once(GREW).map(|(_, n)| n))
        .unwrap_or_else(|| panic!("the {case} child printed no peak:\n{stdout}\n{stderr}"));
    grew.trim().parse().unwrap()
}

/// The process run by [`in_a_child`]: builds the bombs, then runs one case
/// and prints how much its peak RSS grew during it.
#[actix::test]
#[ignore = "the child process of the bomb tests, run by in_a_child"]
async fn bomb_child() {
    let case = std::env::var(CHILD_CASE).expect("run by the bomb tests only");
    // Built before the case, so only the case's own memory shows.
    tokio::task::spawn_blocking(|| ["gzip", "br", "zstd"].map(|c| bomb(c).len()))
        .await
        .unwrap();
    let before = peak_rss();
    match case.as_str() {
        "crawl" => three_bombs_in_a_crawl().await,
        "json" => a_bomb_to_the_json_sender().await,
        other => panic!("no case {other}"),
    }
    println!("{GREW}{}", peak_rss().saturating_sub(before));
}

/// The bombs each fail at the limit; the other pages come through whole.
async fn three_bombs_in_a_crawl() {
    let server = serve();
    let items = Collect::default();
    let url = format!("http://{}/", server.addr);
    let s = run(Crawler::builder(LinkSpider::from_urls(&[url]))
        .max_body(LIMIT)
        .pipeline(items.clone()))
    .await;
    assert_eq!(
        s.get("downloader/exception_type_count/body_too_large"),
        3,
        "{s:#?}"
    );
    assert_eq!(s.counter(Counter::ExceptionCount), 3, "{s:#?}");
    assert_eq!(s.counter(Counter::ResponseCount), 2, "{s:#?}");
    let mut titles: Vec<String> = items
        .items
        .lock()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap().to_string())
        .collect();
    titles.sort();
    assert_eq!(titles, ["a coded page", "index"]);
}

/// The JSON sender's answer, a bomb, is refused at its 16 MiB limit,
/// counted as decoded bytes, on the first attempt.
async fn a_bomb_to_the_json_sender() {
    let server = serve();
    let url = format!("http://{}/bomb/gzip", server.addr);
    let sender = JsonSender::new(Method::POST, &url)
        .unwrap()
        .backoff(Backoff {
            max_retries: 0,
            ..Backoff::default()
        });
    let err = sender.send(&serde_json::json!({"a": 1})).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::BodyTooLarge { limit } if *limit == 16 * MIB),
        "{err}"
    );
    assert_eq!(err.attempt(), 1);
}

#[test]
fn three_bombs_each_fail_at_the_limit_and_the_other_pages_come_through() {
    let grew = in_a_child("crawl");
    // Inflating a bomb a network chunk at a time, before the limit is
    // checked, took 184 MiB more at the peak; decoding in bounded pieces
    // takes about 20 (the limit, the decoders' windows, the crawl itself).
    assert!(
        grew < 100 * MIB as u64,
        "the peak RSS grew by {} MiB",
        grew / MIB as u64
    );
    eprintln!(
        "bombs of 1 GiB each (gzip, br, zstd) at a 1 MiB limit: peak RSS grew {} MiB",
        grew / MIB as u64
    );
}

#[test]
fn the_json_senders_answer_is_read_the_same_bounded_way() {
    // Having inflated no more than the limit's worth.
    let grew = in_a_child("json");
    assert!(
        grew < 100 * MIB as u64,
        "the peak RSS grew by {} MiB",
        grew / MIB as u64
    );
}
