//! Resuming safely: a feed continues the first run's file, a second crawl
//! cannot open a job directory in use, a corrupt journal stops the start
//! instead of losing records, and a pipeline whose close never returns
//! does not keep `join()` waiting.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use spinneret::pipelines::JsonLinesFile;
use spinneret::{
    async_trait, Counter, Crawler, Error, ErrorKind, Item, ItemMeta, Pipeline, Request, Verdict,
};

use crate::fixture::serve;
use crate::spiders::{run, wait_for_stats, LinkSpider, StartCrawl};

/// A guard against a hang, not a wait for work.
const PATIENCE: Duration = Duration::from_secs(30);

/// The URLs of a JSON Lines file's items, in order; every line must be
/// JSON.
fn feed_urls(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let item: Value = serde_json::from_str(l).unwrap();
            item["url"].as_str().unwrap().to_string()
        })
        .collect()
}

#[actix::test]
async fn a_resumed_crawl_keeps_the_first_runs_items_in_its_feed() {
    const PAGES: usize = 2000;
    let site = serve(PAGES);
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("items.jsonl");
    let job = || {
        Crawler::builder(LinkSpider::from_urls(&[site.url("/p/0")]))
            .job_dir(dir.path().join("job"))
            .pipeline(JsonLinesFile::new(&feed))
    };
    let crawl = job().started();
    wait_for_stats(&crawl, |s| {
        s.counter(Counter::ResponseCount) >= PAGES as u64 / 2
    })
    .await;
    crawl.stop().await.unwrap();
    let first = crawl.join().await.unwrap();
    let first_items = first.counter(Counter::ItemScraped) as usize;
    assert!(
        first_items < PAGES,
        "the stop came too late to test anything"
    );
    assert_eq!(feed_urls(&feed).len(), first_items);

    let second = run(job()).await;
    assert_eq!(second.finish_reason.as_deref(), Some("finished"));
    let urls = feed_urls(&feed);
    assert_eq!(urls.len(), PAGES, "both runs' items, each once");
    let distinct: HashSet<_> = urls.iter().collect();
    assert_eq!(distinct.len(), PAGES);
    assert_eq!(second.counter(Counter::ItemScraped), PAGES as u64);
}

#[actix::test]
async fn a_second_crawl_on_a_job_directory_in_use_is_refused_until_the_first_ends() {
    let mut site = serve(3);
    let dir = tempfile::tempdir().unwrap();
    let (gated, root) = (site.url("/gated/0"), site.url("/p/0"));
    let job = |start: &String| {
        Crawler::builder(LinkSpider::from_urls(std::slice::from_ref(start))).job_dir(dir.path())
    };
    let first = job(&gated).started();
    assert_eq!(site.arrival().await, "/gated/0");

    let refused = job(&root).build().unwrap().start();
    let err = refused
        .err()
        .expect("a second crawl started on the same job directory");
    match err.kind() {
        ErrorKind::JobDirLocked { dir: d, holder } => {
            assert_eq!(d, dir.path());
            assert_eq!(*holder, Some(std::process::id()));
        }
        other => panic!("{other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );

    site.open_gate();
    let done = first.join().await.unwrap();
    assert_eq!(done.finish_reason.as_deref(), Some("finished"));
    // Free as soon as `join()` returns, every time: crawls one after the
    // other on the directory.
    for run in 1..=10 {
        let next = job(&root).started();
        let again = tokio::time::timeout(PATIENCE, next.join()).await;
        let again = again.expect("the next crawl did not finish").unwrap();
        assert_eq!(again.finish_reason.as_deref(), Some("finished"));
        assert_eq!(again.get("jobdir/resumed"), run);
    }
}

/// The environment variables that make [`lock_holder_child`] crawl.
const CHILD_URL: &str = "SPINNERET_LOCK_CHILD_URL";
const CHILD_DIR: &str = "SPINNERET_LOCK_CHILD_DIR";

/// The crawl that holds a job directory in another process for
/// [`a_job_directory_in_use_by_another_process_is_refused_naming_its_pid`]
/// (this test binary, run again for this test alone, killed by it).
#[actix::test]
#[ignore = "the child process of a_job_directory_in_use_by_another_process_is_refused"]
async fn lock_holder_child() {
    let url = std::env::var(CHILD_URL).expect("run by the lock test only");
    let dir = std::env::var(CHILD_DIR).expect("run by the lock test only");
    let crawl = Crawler::builder(LinkSpider::from_urls(&[url])).job_dir(dir);
    crawl.started().join().await.unwrap();
}

#[actix::test]
async fn a_job_directory_in_use_by_another_process_is_refused_naming_its_pid() {
    let mut site = serve(3);
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "resume::lock_holder_child", "--ignored"])
        .env(CHILD_URL, site.url("/gated/0"))
        .env(CHILD_DIR, dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The child holds the lock once its crawl asks for the gated page.
    let arrived = tokio::time::timeout(PATIENCE, site.arrival()).await;
    assert_eq!(arrived.expect("the child never crawled"), "/gated/0");
    let job = || Crawler::builder(LinkSpider::from_urls(&[site.url("/p/0")])).job_dir(dir.path());
    let err = job().build().unwrap().start().err();
    let err = err.expect("started on a directory another process holds");
    assert!(
        matches!(err.kind(), ErrorKind::JobDirLocked { holder: Some(pid), .. } if *pid == child.id()),
        "{err}"
    );
    // Killed, the child leaves no stale lock behind.
    child.kill().unwrap();
    child.wait().unwrap();
    let s = run(job()).await;
    assert_eq!(s.finish_reason.as_deref(), Some("finished"));
}

#[actix::test]
async fn a_corrupt_record_in_the_middle_of_the_journal_stops_the_resume() {
    let mut site = serve(50);
    let dir = tempfile::tempdir().unwrap();
    let gated = site.url("/gated/0");
    let job = || {
        Crawler::builder(LinkSpider::from_urls(std::slice::from_ref(&gated))).job_dir(dir.path())
    };
    // Two checkpoints asked for while the crawl waits: two records at
    // least, the final checkpoint after them.
    let crawl = job().started();
    assert_eq!(site.arrival().await, "/gated/0");
    assert_eq!(crawl.checkpoint().await.unwrap().sequence, 1);
    assert_eq!(crawl.checkpoint().await.unwrap().sequence, 2);
    site.open_gate();
    crawl.join().await.unwrap();
    let log = dir.path().join("checkpoints.log");
    let mut bytes = std::fs::read(&log).unwrap();
    // A byte of the first record's payload (after its 12-byte header).
    bytes[20] ^= 0x20;
    std::fs::write(&log, &bytes).unwrap();

    let err = job()
        .build()
        .unwrap()
        .start()
        .err()
        .expect("resumed from a corrupt journal");
    match err.kind() {
        ErrorKind::JournalCorrupt {
            path,
            offset,
            next_valid,
        } => {
            assert_eq!(path, &log);
            assert_eq!(*offset, 0);
            assert!(*next_valid > 0);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("corrupt at byte 0"), "{err}");
    assert_eq!(std::fs::read(&log).unwrap(), bytes, "the journal was cut");
}

/// Its `close` never returns.
struct Hangs;

#[async_trait(?Send)]
impl Pipeline for Hangs {
    fn name(&self) -> &str {
        "hangs"
    }

    async fn process_item(&mut self, _: &mut Item, _: &ItemMeta) -> Result<Verdict, Error> {
        Ok(Verdict::Keep)
    }

    async fn close(&mut self) -> Result<(), Error> {
        std::future::pending().await
    }
}

#[actix::test]
async fn a_pipeline_whose_close_never_returns_does_not_keep_join_waiting() {
    let site = serve(5);
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("items.jsonl");
    let starts = vec![Request::get(&site.url("/p/0")).unwrap()];
    let crawl = Crawler::builder(LinkSpider::new(starts))
        .pipeline(Hangs)
        .pipeline(JsonLinesFile::new(&feed))
        .finish_timeout(Duration::from_millis(200))
        .started();
    let joined = tokio::time::timeout(PATIENCE, crawl.join()).await;
    let s = joined.expect("join() still waiting").unwrap();
    assert_eq!(s.finish_reason.as_deref(), Some("finished"));
    assert_eq!(s.get("pipeline/close_timeouts"), 1);
    assert_eq!(s.counter(Counter::ItemScraped), 5);
    // The other pipeline closed: its file holds every item.
    assert_eq!(feed_urls(&feed).len(), 5);
}
