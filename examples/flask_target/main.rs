//! The project's main job: crawling the sites a Flask task service hands out.
//!
//! ```text
//! cargo run --example flask_target                      # embedded service
//! cargo run --example flask_target -- --max-tasks 3
//! pip install flask; python3 examples/flask_target/app.py --port 5000 &
//! cargo run --example flask_target -- --target http://127.0.0.1:5000 --max-tasks 3
//! ```
//!
//! With no `--target` it starts its own target service (actix-web, the task
//! service's API) on 127.0.0.1 and crawls it. Each task names its spider
//! (`spiderName`, one of those registered in `spiders.rs`: `test`, the
//! list-then-details spider): it crawls the list page, then the detail
//! pages, persists the items in batches to the service, and feeds the
//! task's stats back. A task naming a spider the job does not know fails:
//! its feedback says `"finish_reason": "failed"` with the error, and the
//! job goes on. It prints progress, and as its last line one JSON summary.
//! It exits 0 when every task was crawled and fed back with nothing spilled,
//! 1 otherwise (a failed task included).

mod envelope;
mod job;
mod service;
mod spiders;

use std::path::PathBuf;

use clap::Parser;
use slog::{o, Drain};

/// Crawl the tasks of a task service.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Crawl an already running service (e.g. `http://127.0.0.1:5000`)
    /// instead of the embedded one.
    #[arg(long)]
    target: Option<String>,
    /// The spider name sent with task requests (the service names its
    /// tasks after it; each task's name picks the spider that crawls it).
    #[arg(long, default_value = "test")]
    spider_name: String,
    /// Run at most this many tasks.
    #[arg(long, default_value_t = 1)]
    max_tasks: usize,
    /// Requests in flight per crawl.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Items per persist call.
    #[arg(long, default_value_t = 50)]
    batch_size: usize,
    /// Where items go when persisting keeps failing.
    #[arg(long, default_value = "flask_target_spill.jsonl")]
    spill: PathBuf,
}

#[actix::main]
async fn main() {
    let args = Args::parse();
    let decorator = slog_term::TermDecorator::new().stderr().build();
    let drain = slog_term::CompactFormat::new(decorator).build().fuse();
    let drain = slog_async::Async::new(drain).build().fuse();
    let log = slog::Logger::root(drain, o!());

    let embedded = match &args.target {
        Some(_) => None,
        None => match service::start(
            service::Faults::default(),
            log.new(o!("service" => "embedded")),
        ) {
            Ok(s) => {
                println!("embedded target service on {}", s.base_url());
                Some(s)
            }
            Err(e) => {
                eprintln!("cannot start the embedded service: {e}");
                std::process::exit(2);
            }
        },
    };
    let target = args
        .target
        .clone()
        .or_else(|| embedded.as_ref().map(service::Service::base_url))
        .expect("a target");
    let cfg = job::JobConfig {
        target,
        spider_name: args.spider_name,
        max_tasks: args.max_tasks,
        concurrency: args.concurrency,
        batch_size: args.batch_size,
        spill: args.spill,
        backoff: Default::default(),
        progress: true,
    };
    let mut summary = job::Summary::default();
    let result = job::run(&cfg, &log, &mut summary).await;
    if let Some(s) = &embedded {
        s.stop().await;
    }
    if let Err(e) = &result {
        eprintln!("flask_target failed: {e}");
    }
    println!(
        "{}",
        serde_json::to_string(&summary).expect("summary serialises")
    );
    std::process::exit(if result.is_ok() && summary.ok() { 0 } else { 1 });
}
