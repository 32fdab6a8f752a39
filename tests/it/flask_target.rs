//! The flask_target example's job against its embedded service (with
//! injected faults) and against the real Flask app.

#[path = "../../examples/flask_target/envelope.rs"]
mod envelope;
#[allow(dead_code)]
#[path = "../../examples/flask_target/job.rs"]
mod job;
#[allow(dead_code)]
#[path = "../../examples/flask_target/service.rs"]
mod service;
#[path = "../../examples/flask_target/spiders.rs"]
mod spiders;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use slog::{o, Drain, Logger};
use spinneret::Backoff;

use job::{JobConfig, Summary};
use service::Faults;

fn quiet() -> Logger {
    Logger::root(slog::Discard, o!())
}

/// A log that keeps what was written, to check error messages.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn logger(&self) -> Logger {
        let decorator = slog_term::PlainSyncDecorator::new(self.clone());
        Logger::root(slog_term::FullFormat::new(decorator).build().fuse(), o!())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn config(target: String, spill: &std::path::Path) -> JobConfig {
    JobConfig {
        target,
        spider_name: "test".into(),
        max_tasks: 1,
        concurrency: 4,
        batch_size: 50,
        spill: spill.to_path_buf(),
        backoff: Backoff {
            max_retries: 4,
            base: Duration::from_millis(10),
            max: Duration::from_millis(50),
        },
        progress: false,
    }
}

async fn run(cfg: &JobConfig, log: &Logger) -> Summary {
    let mut summary = Summary::default();
    job::run(cfg, log, &mut summary).await.expect("job runs");
    summary
}

#[actix::test]
async fn one_task_three_items_persisted_and_one_feedback() {
    let svc = service::start(Faults::default(), quiet()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(svc.base_url(), &dir.path().join("spill.jsonl"));
    let summary = run(&cfg, &quiet()).await;
    assert_eq!(
        summary,
        Summary {
            tasks: 1,
            tasks_failed: 0,
            items_scraped: 3,
            items_persisted: 3,
            items_spilled: 0,
            errors: 0,
            fed_back: 1,
        }
    );
    assert!(summary.ok());
    let items = svc.record.items.lock().unwrap().clone();
    assert_eq!(items.len(), 3);
    let feedbacks = svc.record.feedbacks.lock().unwrap().clone();
    assert_eq!(feedbacks.len(), 1);
    let tid = feedbacks[0]["tid"].as_str().unwrap();
    let mut ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["1", "2", "3"]);
    for item in &items {
        let id = item["id"].as_str().unwrap();
        assert_eq!(
            item["url"],
            format!("{}/crawler/crawl_dst/detail?id={id}", svc.base_url())
        );
        assert_eq!(item["title"], format!("title: {id}"));
        assert_eq!(item["content"], format!("content: {id}"));
        assert_eq!(item["task_id"], tid);
        assert_eq!(item["depth"], 1);
        assert!(item["download_latency"].as_f64().unwrap() > 0.0);
    }
    let stats = &feedbacks[0]["stats"];
    assert_eq!(stats["downloader/response_count"], 4, "1 list + 3 details");
    assert_eq!(stats["item_scraped_count"], 3);
    assert_eq!(stats["persist/items"], 3);
    assert_eq!(stats["finish_reason"], "finished");
    assert!(!dir.path().join("spill.jsonl").exists());
}

#[actix::test]
async fn runs_tasks_until_the_service_hands_out_none() {
    let faults = Faults {
        tasks_available: Some(2),
        ..Faults::default()
    };
    let svc = service::start(faults, quiet()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(svc.base_url(), &dir.path().join("spill.jsonl"));
    cfg.max_tasks = 5;
    let summary = run(&cfg, &quiet()).await;
    assert_eq!(summary.tasks, 2);
    assert_eq!(summary.fed_back, 2);
    assert_eq!(summary.items_persisted, 6);
    assert_eq!(svc.record.items.lock().unwrap().len(), 6);
    assert_eq!(svc.record.feedbacks.lock().unwrap().len(), 2);
}

#[actix::test]
async fn a_task_naming_an_unknown_spider_fails_in_its_feedback_and_the_next_is_crawled() {
    let faults = Faults {
        task_spiders: vec!["nope".into(), spiders::LIST_DETAIL.into()],
        tasks_available: Some(2),
        ..Faults::default()
    };
    let svc = service::start(faults, quiet()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(svc.base_url(), &dir.path().join("spill.jsonl"));
    cfg.max_tasks = 2;
    let captured = Captured::default();
    let summary = run(&cfg, &captured.logger()).await;
    assert_eq!(
        summary,
        Summary {
            tasks: 2,
            tasks_failed: 1,
            items_scraped: 3,
            items_persisted: 3,
            items_spilled: 0,
            errors: 1,
            fed_back: 2,
        }
    );
    assert!(!summary.ok(), "the example must exit non-zero");
    let feedbacks = svc.record.feedbacks.lock().unwrap().clone();
    assert_eq!(feedbacks.len(), 2);
    let failed = feedbacks[0]["tid"].as_str().unwrap();
    assert_eq!(
        feedbacks[0]["stats"],
        serde_json::json!({
            "finish_reason": "failed",
            "error": "invalid configuration: unknown spider \"nope\"; registered: test (stage setup)",
        })
    );
    let crawled = feedbacks[1]["tid"].as_str().unwrap();
    let stats = &feedbacks[1]["stats"];
    assert_eq!(stats["finish_reason"], "finished");
    assert_eq!(stats["downloader/response_count"], 4, "1 list + 3 details");
    assert_eq!(stats["item_scraped_count"], 3);
    let items = svc.record.items.lock().unwrap().clone();
    let mut ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["1", "2", "3"]);
    assert!(items.iter().all(|i| i["task_id"] == crawled));
    let log = captured.text();
    assert!(
        log.lines().any(|l| l.contains("task failed")
            && l.contains(failed)
            && l.contains("unknown spider \"nope\"")),
        "no log line for the failed task:\n{log}"
    );
}

#[actix::test]
async fn persist_failing_three_times_still_delivers_every_item() {
    let faults = Faults {
        persist_fail_first: 3,
        ..Faults::default()
    };
    let svc = service::start(faults, quiet()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(svc.base_url(), &dir.path().join("spill.jsonl"));
    let summary = run(&cfg, &quiet()).await;
    assert_eq!(summary.items_persisted, 3);
    assert_eq!(summary.items_spilled, 0);
    assert!(summary.ok());
    assert_eq!(svc.record.items.lock().unwrap().len(), 3);
    assert_eq!(svc.record.persist_calls.load(Ordering::SeqCst), 4);
    let feedbacks = svc.record.feedbacks.lock().unwrap().clone();
    assert_eq!(feedbacks[0]["stats"]["persist/retries"], 3);
    assert!(!dir.path().join("spill.jsonl").exists());
}

#[actix::test]
async fn persist_down_for_good_spills_every_item() {
    let faults = Faults {
        persist_down: true,
        ..Faults::default()
    };
    let svc = service::start(faults, quiet()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("spill.jsonl");
    let cfg = config(svc.base_url(), &spill);
    let summary = run(&cfg, &quiet()).await;
    assert_eq!(summary.items_scraped, 3);
    assert_eq!(summary.items_persisted, 0);
    assert_eq!(summary.items_spilled, 3);
    assert!(!summary.ok(), "the example must exit non-zero");
    // 1 attempt + 4 retries, then the spill file.
    assert_eq!(svc.record.persist_calls.load(Ordering::SeqCst), 5);
    let lines: Vec<Value> = std::fs::read_to_string(&spill)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, summary.items_scraped);
    let mut ids: Vec<&str> = lines.iter().map(|i| i["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["1", "2", "3"]);
}

#[actix::test]
async fn feedback_is_retried_until_it_is_accepted() {
    let faults = Faults {
        feedback_fail_first: 2,
        ..Faults::default()
    };
    let svc = service::start(faults, quiet()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(svc.base_url(), &dir.path().join("spill.jsonl"));
    let summary = run(&cfg, &quiet()).await;
    assert_eq!(summary.fed_back, 1);
    assert!(summary.ok());
    assert_eq!(svc.record.feedback_calls.load(Ordering::SeqCst), 3);
    assert_eq!(svc.record.feedbacks.lock().unwrap().len(), 1);
}

#[actix::test]
async fn a_failing_detail_is_a_counted_error_and_the_rest_persists() {
    let faults = Faults {
        detail_500: Some("2".into()),
        ..Faults::default()
    };
    let svc = service::start(faults, quiet()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(svc.base_url(), &dir.path().join("spill.jsonl"));
    let summary = run(&cfg, &quiet()).await;
    assert_eq!(summary.errors, 1);
    assert_eq!(summary.items_persisted, 2);
    assert_eq!(summary.fed_back, 1);
    let feedbacks = svc.record.feedbacks.lock().unwrap().clone();
    // Retried twice by the default retry policy, then a counted error.
    let stats = &feedbacks[0]["stats"];
    assert_eq!(stats["downloader/response_status_count/500"], 3);
    assert_eq!(stats["retry/count"], 2);
    assert_eq!(stats["retry/max_reached"], 1);
    assert_eq!(stats["httperror/response_ignored_count"], 1);
}

#[actix::test]
async fn a_malformed_list_is_a_counted_error_with_a_clear_message() {
    let faults = Faults {
        list_malformed: true,
        ..Faults::default()
    };
    let svc = service::start(faults, quiet()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(svc.base_url(), &dir.path().join("spill.jsonl"));
    let captured = Captured::default();
    let summary = run(&cfg, &captured.logger()).await;
    assert_eq!(summary.errors, 1);
    assert_eq!(summary.items_scraped, 0);
    assert_eq!(summary.fed_back, 1);
    let feedbacks = svc.record.feedbacks.lock().unwrap().clone();
    assert_eq!(feedbacks[0]["stats"]["spider_exceptions"], 1);
    let log = captured.text();
    let list_url = format!("{}/crawler/crawl_dst/list", svc.base_url());
    assert!(
        log.lines()
            .any(|l| l.contains("invalid JSON") && l.contains(&list_url)),
        "no clear error line in the log:\n{log}"
    );
}

async fn get_json(
    url: &str,
    method: awc::http::Method,
    body: &str,
) -> (u16, Value, awc::http::header::HeaderMap) {
    let mut resp = awc::Client::default()
        .request(method, url)
        .insert_header(("origin", "http://example.test"))
        .insert_header(("content-type", "application/json"))
        .send_body(body.to_string())
        .await
        .unwrap();
    let body = resp.body().await.unwrap();
    let json =
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {body:?}"));
    (resp.status().as_u16(), json, resp.headers().clone())
}

#[actix::test]
async fn the_service_answers_every_request_with_an_envelope() {
    use awc::http::Method;
    let svc = service::start(Faults::default(), quiet()).unwrap();
    let base = svc.base_url();
    let (status, body, headers) = get_json(&format!("{base}/ping"), Method::GET, "").await;
    assert_eq!(
        (status, &body["status"], &body["data"]),
        (200, &1.into(), &"pong".into())
    );
    assert!(headers.contains_key("access-control-allow-origin"), "CORS");
    let (status, body, _) = get_json(&format!("{base}/"), Method::GET, "").await;
    assert_eq!((status, body["status"].as_i64()), (200, Some(1)));
    let (status, body, _) =
        get_json(&format!("{base}/crawler/tasks?count=abc"), Method::GET, "").await;
    assert_eq!((status, body["status"].as_i64()), (400, Some(1005)));
    assert!(body["message"].as_str().unwrap().contains("count"));
    let (status, body, _) = get_json(&format!("{base}/nowhere"), Method::GET, "").await;
    assert_eq!((status, body["status"].as_i64()), (404, Some(1002)));
    let (status, body, _) = get_json(&format!("{base}/ping"), Method::DELETE, "").await;
    assert_eq!((status, body["status"].as_i64()), (405, Some(1003)));
    let (status, body, _) = get_json(
        &format!("{base}/crawler/task/feedback"),
        Method::PUT,
        "{nope",
    )
    .await;
    assert_eq!((status, body["status"].as_i64()), (400, Some(1005)));
    let (status, body, _) = get_json(
        &format!("{base}/crawler/tasks?spider_name=s&count=2"),
        Method::GET,
        "",
    )
    .await;
    assert_eq!(status, 200);
    let tasks = body["data"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[0]["spiderName"], "s");
    assert_eq!(
        tasks[0]["seed"]["startUrl"],
        format!("{base}/crawler/crawl_dst/list")
    );
    assert!(uuid::Uuid::parse_str(tasks[0]["id"].as_str().unwrap()).is_ok());
    let feedback = serde_json::json!({"tid": tasks[0]["id"], "stats": {}}).to_string();
    let url = format!("{base}/crawler/task/feedback");
    let (status, _, _) = get_json(&url, Method::PUT, &feedback).await;
    assert_eq!(status, 200);
    let (status, body, _) = get_json(&url, Method::PUT, &feedback).await;
    assert_eq!(
        (status, body["status"].as_i64()),
        (409, Some(1004)),
        "fed back twice"
    );
}

/// The Flask app as a child process, killed when dropped.
struct Flask {
    child: Child,
    base: String,
}

impl Drop for Flask {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_flask() -> Option<Flask> {
    let has_flask = Command::new("python3")
        .args(["-c", "import flask"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !has_flask {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install Flask (.ci/run does)"
        );
        eprintln!("\n*** SKIPPED: Flask is not installed (pip install flask) ***\n");
        return None;
    }
    let app = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/flask_target/app.py");
    let mut child = Command::new("python3")
        .args([app, "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from app.py: {line:?}"))
        .to_string();
    Some(Flask { child, base })
}

#[actix::test]
async fn against_real_flask_three_tasks_nine_items_three_feedbacks() {
    let Some(flask) = start_flask() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(flask.base.clone(), &dir.path().join("spill.jsonl"));
    cfg.max_tasks = 3;
    let summary = run(&cfg, &quiet()).await;
    assert_eq!(summary.tasks, 3);
    assert_eq!(summary.items_scraped, 9);
    assert_eq!(summary.items_persisted, 9);
    assert_eq!(summary.fed_back, 3);
    assert!(summary.ok());
    let (status, body, _) = get_json(
        &format!("{}/crawler/data/stats", flask.base),
        awc::http::Method::GET,
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["items_persisted"], 9);
    assert_eq!(body["data"]["feedbacks"], 3);
}

#[actix::test]
async fn against_real_flask_a_task_naming_an_unknown_spider_is_fed_back_as_failed() {
    let Some(flask) = start_flask() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(flask.base.clone(), &dir.path().join("spill.jsonl"));
    cfg.spider_name = "nope".into();
    let summary = run(&cfg, &quiet()).await;
    assert_eq!(
        summary,
        Summary {
            tasks: 1,
            tasks_failed: 1,
            errors: 1,
            fed_back: 1,
            ..Summary::default()
        }
    );
    let (status, body, _) = get_json(
        &format!("{}/crawler/data/stats", flask.base),
        awc::http::Method::GET,
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["items_persisted"], 0);
    assert_eq!(body["data"]["feedbacks"], 1);
}
