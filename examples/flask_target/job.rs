//! The crawl job: prepare, parse, persist, feed back.
//!
//! For each task handed out by `GET /crawler/tasks`, the spider its
//! `spiderName` names (see [`super::spiders`]) crawls its `startUrl`, the
//! items go in batches to `POST /crawler/data/persist` (with retries and a
//! spill file), and once the task's crawl has finished and its items are
//! persisted, `PUT /crawler/task/feedback` sends the task's stats.
//!
//! A task the job cannot crawl (a spider name it does not know, no
//! `startUrl`, one that is not a URL) fails on its own: the feedback API
//! has no field for errors, only `tid` and `stats`, so its feedback says so
//! in `stats` the way a crawl's stats say how it ended:
//! `{"finish_reason": "failed", "error": "<why>"}`. It counts as an error
//! and a failed task in the [`Summary`], is logged, and the job goes on
//! with the next task.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use slog::{warn, Logger};
use spinneret::pipelines::HttpPersist;
use spinneret::{
    Backoff, Error, ErrorKind, JsonSender, Method, PreparedCrawl, Settings, SpiderArgs,
    SpiderRegistry, Stage, StatsSnapshot,
};

use super::envelope;

/// What the job needs to know.
#[derive(Clone, Debug)]
pub struct JobConfig {
    /// The service's base URL, e.g. `http://127.0.0.1:5000`.
    pub target: String,
    /// Asked for in `GET /crawler/tasks?spider_name=`.
    pub spider_name: String,
    /// Run at most this many tasks.
    pub max_tasks: usize,
    /// Requests in flight per crawl.
    pub concurrency: usize,
    /// Items per persist call.
    pub batch_size: usize,
    /// Where batches go when persisting keeps failing.
    pub spill: PathBuf,
    /// Retries for persisting and feedback.
    pub backoff: Backoff,
    /// Print one line per task on stdout.
    pub progress: bool,
}

/// The job's result; serialised as the example's last line.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Tasks handed out and handled, failed ones included.
    pub tasks: u64,
    /// Tasks that failed before crawling (an unknown spider, arguments
    /// the spider refused); each also counts as an error.
    pub tasks_failed: u64,
    /// Items that passed the pipelines.
    pub items_scraped: u64,
    /// Items the persist endpoint accepted.
    pub items_persisted: u64,
    /// Items written to the spill file instead.
    pub items_spilled: u64,
    /// Counted errors (download, status, parse, item), failed tasks and
    /// failed feedbacks.
    pub errors: u64,
    /// Tasks whose feedback was accepted.
    #[serde(skip)]
    pub fed_back: u64,
}

impl Summary {
    /// Every task crawled and fed back, none failed, and nothing spilled.
    pub fn ok(&self) -> bool {
        self.fed_back == self.tasks && self.tasks_failed == 0 && self.items_spilled == 0
    }
}

/// One task as the service hands it out.
#[derive(Deserialize)]
struct Task {
    id: String,
    /// Which registered spider crawls it.
    #[serde(rename = "spiderName")]
    spider_name: Option<String>,
    /// The spider's arguments (`startUrl`, …).
    #[serde(default)]
    seed: Map<String, Value>,
}

impl Task {
    /// `id` and every field of the seed (text as is, other values as
    /// JSON).
    fn args(&self) -> SpiderArgs {
        let mut args = SpiderArgs::new();
        for (key, value) in &self.seed {
            match value {
                Value::String(s) => args.set(key, s),
                other => args.set(key, other.to_string()),
            };
        }
        args.set("id", &self.id);
        args
    }

    /// Its spider's crawl, not started: a [`ErrorKind::Config`] error for
    /// no or an unknown `spiderName`, or arguments the spider refused.
    fn prepare(&self, spiders: &SpiderRegistry) -> Result<PreparedCrawl, Error> {
        let Some(name) = self.spider_name.as_deref() else {
            let message = format!("task {} names no spider (no spiderName)", self.id);
            return Err(Error::new(Stage::Setup, ErrorKind::Config(message)));
        };
        spiders.prepare(name, &self.args())
    }
}

/// How a task ended.
enum Outcome {
    /// Its spider crawled it: the crawl's stats.
    Crawled(StatsSnapshot),
    /// It could not be crawled: why.
    Failed(Error),
}

impl Outcome {
    /// The feedback body for task `tid`.
    fn feedback(&self, tid: &str) -> Value {
        match self {
            Outcome::Crawled(stats) => json!({"tid": tid, "stats": stats}),
            Outcome::Failed(e) => json!({
                "tid": tid,
                "stats": {"finish_reason": "failed", "error": e.to_string()},
            }),
        }
    }

    /// Adds it to `summary`.
    fn count(&self, summary: &mut Summary) {
        summary.tasks += 1;
        match self {
            Outcome::Crawled(stats) => {
                summary.items_scraped += stats.get("item_scraped_count");
                summary.items_persisted += stats.get("persist/items");
                summary.items_spilled += stats.get("persist/spilled_items");
                summary.errors += stats.error_count();
            }
            Outcome::Failed(_) => {
                summary.tasks_failed += 1;
                summary.errors += 1;
            }
        }
    }

    /// One progress line.
    fn line(&self) -> String {
        match self {
            Outcome::Crawled(stats) => format!(
                "{} responses, {} items, {} persisted, {} spilled, {} errors",
                stats.get("downloader/response_count"),
                stats.get("item_scraped_count"),
                stats.get("persist/items"),
                stats.get("persist/spilled_items"),
                stats.error_count(),
            ),
            Outcome::Failed(e) => format!("FAILED: {e}"),
        }
    }
}

/// Asks the service for up to `count` tasks.
async fn fetch_tasks(cfg: &JobConfig, count: usize) -> Result<Vec<Task>, Error> {
    let url = format!("{}/crawler/tasks", cfg.target.trim_end_matches('/'));
    let url = url::Url::parse_with_params(
        &url,
        &[
            ("spider_name", cfg.spider_name.as_str()),
            ("count", &count.to_string()),
        ],
    )
    .map_err(|e| {
        Error::new(
            Stage::Setup,
            ErrorKind::InvalidUrl {
                input: cfg.target.clone(),
                reason: e.to_string(),
            },
        )
    })?;
    let mut resp = awc::Client::default()
        .get(url.as_str())
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| {
            Error::new(
                Stage::Setup,
                ErrorKind::Connect {
                    cause: spinneret::ConnectCause::Other,
                    message: e.to_string(),
                },
            )
            .with_url(&url)
        })?;
    let body = resp
        .body()
        .await
        .map_err(|e| Error::new(Stage::Setup, ErrorKind::Body(e.to_string())).with_url(&url))?;
    envelope::open(&body, Stage::Setup).map_err(|e| e.with_url(&url))
}

/// Crawls `crawl` with the job's settings and pipelines, and returns its
/// stats.
async fn crawl_task(
    cfg: &JobConfig,
    crawl: PreparedCrawl,
    task: &Task,
    log: &Logger,
) -> Result<StatsSnapshot, Error> {
    let persist_url = format!("{}/crawler/data/persist", cfg.target.trim_end_matches('/'));
    let persist = HttpPersist::new(&persist_url, &cfg.spill)?
        .batch_size(cfg.batch_size)
        .backoff(cfg.backoff.clone());
    let settings = Settings {
        concurrency: Some(cfg.concurrency),
        ..Settings::default()
    };
    let crawl = crawl
        .settings(&settings)
        .pipeline(persist)
        .logger(log.new(slog::o!("task" => task.id.clone())))
        .start()
        .await?;
    crawl.stop_on_signals()?;
    crawl.join().await
}

/// Runs one task: its spider's crawl, or a failed task when it has none.
async fn run_task(
    cfg: &JobConfig,
    spiders: &SpiderRegistry,
    task: &Task,
    log: &Logger,
) -> Result<Outcome, Error> {
    match task.prepare(spiders) {
        Ok(crawl) => Ok(Outcome::Crawled(crawl_task(cfg, crawl, task, log).await?)),
        Err(e) => {
            warn!(log, "task failed"; "task" => &task.id, "error" => %e);
            Ok(Outcome::Failed(e))
        }
    }
}

/// Runs up to `max_tasks` tasks, one after another, adding to `summary`
/// as it goes (so a failure part-way still reports what was done).
pub async fn run(cfg: &JobConfig, log: &Logger, summary: &mut Summary) -> Result<(), Error> {
    let spiders = super::spiders::registry();
    let feedback_url = format!("{}/crawler/task/feedback", cfg.target.trim_end_matches('/'));
    let feedback = JsonSender::new(Method::PUT, &feedback_url)?.backoff(cfg.backoff.clone());
    while (summary.tasks as usize) < cfg.max_tasks {
        let want = cfg.max_tasks - summary.tasks as usize;
        let tasks = fetch_tasks(cfg, want).await?;
        if tasks.is_empty() {
            if cfg.progress {
                println!("the service handed out no more tasks");
            }
            break;
        }
        for task in tasks.iter().take(want) {
            if cfg.progress {
                println!(
                    "task {} (spider {}): {}",
                    task.id,
                    task.spider_name.as_deref().unwrap_or("?"),
                    task.seed
                        .get("startUrl")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                );
            }
            let outcome = run_task(cfg, &spiders, task, log).await?;
            outcome.count(summary);
            let sent = feedback.send(&outcome.feedback(&task.id)).await;
            match &sent {
                Ok(_) => summary.fed_back += 1,
                Err(e) => {
                    summary.errors += 1;
                    warn!(log, "feedback failed"; "task" => &task.id, "error" => %e);
                }
            }
            if cfg.progress {
                println!(
                    "task {}: {}, feedback {}",
                    task.id,
                    outcome.line(),
                    if sent.is_ok() { "sent" } else { "FAILED" },
                );
            }
        }
    }
    Ok(())
}
