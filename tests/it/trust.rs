//! What the crawler trusts and what it shows: credentials kept out of logs,
//! errors and events; `stream_to` held to the stream directories, from
//! wherever a request came.

use std::path::{Path, PathBuf};

use spinneret::{Counter, CrawlEvent, Crawler, Request};

use crate::fixture::serve;
use crate::log::Records;
use crate::spiders::{Cb, LinkSpider, StartCrawl};

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
