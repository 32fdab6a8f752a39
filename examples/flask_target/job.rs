//! The crawl job: prepare, parse, persist, feed back.
//!
//! For each task handed out by `GET /crawler/tasks`, crawl its `startUrl`
//! (a list envelope of relative detail links), turn every detail into an
//! item, persist the items in batches to `POST /crawler/data/persist` (with
//! retries and a spill file), and once the task's crawl has finished and its
//! items are persisted, `PUT /crawler/task/feedback` with the task's stats.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use slog::{warn, Logger};
use spinneret::pipelines::HttpPersist;
use spinneret::Backoff;
use spinneret::JsonSender;
use spinneret::{
    Crawler, Error, ErrorKind, Method, Output, Request, Response, Spider, Stage, StartRequests,
    StatsSnapshot,
};

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
    /// Tasks crawled.
    pub tasks: u64,
    /// Items that passed the pipelines.
    pub items_scraped: u64,
    /// Items the persist endpoint accepted.
    pub items_persisted: u64,
    /// Items written to the spill file instead.
    pub items_spilled: u64,
    /// Counted errors (download, status, parse, item) plus failed
    /// feedbacks.
    pub errors: u64,
    /// Tasks whose feedback was accepted.
    #[serde(skip)]
    pub fed_back: u64,
}

impl Summary {
    /// Every task crawled and fed back, and nothing spilled.
    pub fn ok(&self) -> bool {
        self.fed_back == self.tasks && self.items_spilled == 0
    }
}

/// Which parse function a request wants.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub enum Page {
    /// The list envelope: relative detail links.
    #[default]
    List,
    /// A detail envelope: one item.
    Detail,
}

/// One task's spider.
pub struct TaskSpider {
    /// The task id, copied into every item.
    pub task_id: String,
    /// The task's seed.
    pub start_url: String,
}

/// `{"status": 1, "data": …, "message": …}`.
#[derive(Deserialize)]
struct Envelope<T> {
    status: i64,
    data: Option<T>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct Detail {
    id: Value,
    url: String,
    title: String,
    content: String,
}

impl Spider for TaskSpider {
    type Callback = Page;

    fn name(&self) -> &str {
        "flask_target"
    }

    fn start_requests(&self) -> StartRequests<Page> {
        Box::new(Request::get(&self.start_url).into_iter())
    }

    fn parse(&self, page: Page, response: &Response, out: &mut Output<Page>) -> Result<(), Error> {
        match page {
            Page::List => {
                let links: Vec<String> = response.envelope()?;
                for link in links {
                    let url = response.urljoin(&link)?;
                    out.request(Request::try_from_url(url)?.callback(Page::Detail));
                }
            }
            Page::Detail => {
                let d: Detail = response.envelope()?;
                let id = match d.id {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                out.item(json!({
                    "id": id,
                    "url": response.urljoin(&d.url)?.as_str(),
                    "title": d.title,
                    "content": d.content,
                    "task_id": self.task_id,
                    "download_latency": response.meta.download_latency.as_secs_f64(),
                    "depth": response.meta.depth,
                }));
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Task {
    id: String,
    #[serde(rename = "spiderName")]
    spider_name: Option<String>,
    seed: Seed,
}

#[derive(Deserialize)]
struct Seed {
    #[serde(rename = "startUrl")]
    start_url: String,
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
        .map_err(|e| Error::new(Stage::Setup, ErrorKind::Connect(e.to_string())).with_url(&url))?;
    let body = resp
        .body()
        .await
        .map_err(|e| Error::new(Stage::Setup, ErrorKind::Body(e.to_string())).with_url(&url))?;
    let env: Envelope<Vec<Task>> = serde_json::from_slice(&body)
        .map_err(|e| Error::new(Stage::Setup, ErrorKind::Json(e.to_string())).with_url(&url))?;
    if env.status != 1 {
        return Err(Error::custom(
            Stage::Setup,
            format!(
                "tasks envelope status {} ({})",
                env.status,
                env.message.unwrap_or_default()
            ),
        )
        .with_url(&url));
    }
    Ok(env.data.unwrap_or_default())
}

/// Crawls one task and returns its stats.
async fn crawl_task(cfg: &JobConfig, task: &Task, log: &Logger) -> Result<StatsSnapshot, Error> {
    let persist_url = format!("{}/crawler/data/persist", cfg.target.trim_end_matches('/'));
    let persist = HttpPersist::new(&persist_url, &cfg.spill)?
        .batch_size(cfg.batch_size)
        .backoff(cfg.backoff.clone());
    let spider = TaskSpider {
        task_id: task.id.clone(),
        start_url: task.seed.start_url.clone(),
    };
    let crawl = Crawler::builder(spider)
        .concurrency(cfg.concurrency)
        .pipeline(persist)
        .logger(log.new(slog::o!("task" => task.id.clone())))
        .build()?
        .start()?;
    crawl.stop_on_signals()?;
    crawl.join().await
}

/// Runs up to `max_tasks` tasks, one after another, adding to `summary`
/// as it goes (so a failure part-way still reports what was done).
pub async fn run(cfg: &JobConfig, log: &Logger, summary: &mut Summary) -> Result<(), Error> {
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
                    "task {} ({}): crawling {}",
                    task.id,
                    task.spider_name.as_deref().unwrap_or("?"),
                    task.seed.start_url
                );
            }
            let stats = crawl_task(cfg, task, log).await?;
            summary.tasks += 1;
            summary.items_scraped += stats.get("item_scraped_count");
            summary.items_persisted += stats.get("persist/items");
            summary.items_spilled += stats.get("persist/spilled_items");
            summary.errors += stats.error_count();
            let sent = feedback
                .send(&json!({"tid": task.id, "stats": stats}))
                .await;
            match &sent {
                Ok(_) => summary.fed_back += 1,
                Err(e) => {
                    summary.errors += 1;
                    warn!(log, "feedback failed"; "task" => &task.id, "error" => %e);
                }
            }
            if cfg.progress {
                println!(
                    "task {}: {} responses, {} items, {} persisted, {} spilled, {} errors, feedback {}",
                    task.id,
                    stats.get("downloader/response_count"),
                    stats.get("item_scraped_count"),
                    stats.get("persist/items"),
                    stats.get("persist/spilled_items"),
                    stats.error_count(),
                    if sent.is_ok() { "sent" } else { "FAILED" },
                );
            }
        }
    }
    Ok(())
}
