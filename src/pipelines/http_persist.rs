//! A pipeline that persists items to an HTTP endpoint in batches.
//!
//! Items are buffered as JSON and POSTed as one JSON array when the batch is
//! full, when the flush interval has passed (on the stage's periodic flush),
//! and at crawl end. Each batch is sent with a [`JsonSender`]: 5xx, 429,
//! timeouts and connection failures are retried with exponential backoff and
//! jitter. When the retries are exhausted the batch is appended to a JSON
//! Lines spill file and counted: an item is never silently lost. Stats:
//! `persist/items`, `persist/batches`, `persist/retries`,
//! `persist/spilled_items`, `persist/failed_batches`, and
//! `persist/lost_items` should even the spill file fail. A batch is kept
//! until it is sent or spilled: a close abandoned at the crawl's finish
//! deadline (the endpoint too slow, or a pipeline before this one took
//! the time) spills it at once, counted in `persist/abandoned_batches`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use awc::http::Method;
use serde_json::Value;
use slog::{error, info, warn, Logger};

use crate::backoff::Backoff;
use crate::error::{Error, ErrorKind, Stage};
use crate::item::{Item, ItemMeta};
use crate::json_sender::JsonSender;
use crate::pipeline::{Pipeline, PipelineContext, Verdict};
use crate::pipelines::jsonl::append_lines;
use crate::stats::Stats;

/// Batched, retried HTTP persistence with a spill file.
pub struct HttpPersist {
    /// The endpoint and its retry policy.
    sender: JsonSender,
    /// Items per POST.
    batch_size: usize,
    /// A partial batch older than this is sent on the next periodic flush.
    interval: Duration,
    /// Where batches go when the endpoint stays down.
    spill: PathBuf,
    /// Items waiting to be sent, as JSON.
    batch: Vec<Value>,
    /// When the oldest item of `batch` arrived.
    oldest: Option<Instant>,
    /// The crawl's stats, from `open`.
    stats: Option<Arc<Stats>>,
    /// The crawl's log, from `open`.
    log: Option<Logger>,
}

impl HttpPersist {
    /// POSTs batches to `url`; spills to `spill`. Defaults: batches of 50,
    /// flushed after 5 s, [`Backoff::default`], 30 s per attempt.
    pub fn new(url: &str, spill: impl AsRef<Path>) -> Result<Self, Error> {
        Ok(HttpPersist {
            sender: JsonSender::new(Method::POST, url)?,
            batch_size: 50,
            interval: Duration::from_secs(5),
            spill: spill.as_ref().to_path_buf(),
            batch: Vec::new(),
            oldest: None,
            stats: None,
            log: None,
        })
    }

    /// Items per POST (at least 1).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// How old a partial batch may grow before it is sent.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The retry policy.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.sender = self.sender.backoff(backoff);
        self
    }

    /// The deadline for one attempt.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.sender = self.sender.timeout(timeout);
        self
    }

    fn count(&self, name: &str, n: usize) {
        if let Some(stats) = &self.stats {
            stats.add_named(name, n as u64);
        }
    }

    /// Sends the batch; on final failure spills it. The batch stays in
    /// `self` until it is sent or spilled, so a send abandoned mid-way
    /// (its future dropped at the close deadline) leaves it for
    /// [`abandon`](Pipeline::abandon) to spill.
    async fn send_batch(&mut self) -> Result<(), Error> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let sent = self.sender.send(&self.batch).await;
        let batch = std::mem::take(&mut self.batch);
        self.oldest = None;
        let n = batch.len();
        match sent {
            Ok(sent) => {
                self.count("persist/items", n);
                self.count("persist/batches", 1);
                self.count("persist/retries", sent.attempts as usize - 1);
                if let Some(log) = &self.log {
                    info!(log, "batch persisted"; "items" => n, "attempts" => sent.attempts);
                }
                Ok(())
            }
            Err(e) => {
                self.count("persist/retries", e.attempt().saturating_sub(1) as usize);
                self.count("persist/failed_batches", 1);
                if let Some(log) = &self.log {
                    warn!(log, "persisting failed; spilling the batch";
                        "items" => n, "spill" => %self.spill.display(), "error" => %e);
                }
                self.spill_batch(&batch, &format!("endpoint failed ({e})"))
            }
        }
    }

    /// Appends `batch` to the spill file (counted in
    /// `persist/spilled_items`), or counts it in `persist/lost_items` and
    /// fails should the spill file fail too; `why` is why it was not sent.
    fn spill_batch(&self, batch: &[Value], why: &str) -> Result<(), Error> {
        let n = batch.len();
        match append_lines(&self.spill, batch) {
            Ok(()) => {
                self.count("persist/spilled_items", n);
                Ok(())
            }
            Err(io) => {
                self.count("persist/lost_items", n);
                if let Some(log) = &self.log {
                    error!(log, "spill file failed; items lost";
                        "items" => n, "spill" => %self.spill.display(), "error" => %io);
                }
                Err(Error::new(
                    Stage::Pipeline,
                    ErrorKind::Custom(format!(
                        "{n} items lost: {why}, and spill file {} failed ({io})",
                        self.spill.display()
                    )),
                ))
            }
        }
    }

    /// Spills the batch not sent yet, synchronously (counted in
    /// `persist/abandoned_batches` and `persist/spilled_items`).
    fn spill_unsent(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        self.oldest = None;
        self.count("persist/abandoned_batches", 1);
        if let Some(log) = &self.log {
            warn!(log, "close abandoned before the batch was sent; spilling it";
                "items" => batch.len(), "spill" => %self.spill.display());
        }
        // A failure is counted in `persist/lost_items` and logged there.
        let _ = self.spill_batch(&batch, "the close was abandoned");
    }
}

#[async_trait(?Send)]
impl Pipeline for HttpPersist {
    fn name(&self) -> &str {
        "http_persist"
    }

    async fn open(&mut self, ctx: &PipelineContext) -> Result<(), Error> {
        self.stats = Some(ctx.stats.clone());
        self.log = Some(ctx.log.new(slog::o!("pipeline" => "http_persist",
            "endpoint" => self.sender.url().to_string())));
        Ok(())
    }

    async fn process_item(&mut self, item: &mut Item, _: &ItemMeta) -> Result<Verdict, Error> {
        self.batch.push(item.to_json()?);
        self.oldest.get_or_insert_with(Instant::now);
        if self.batch.len() >= self.batch_size {
            self.send_batch().await?;
        }
        Ok(Verdict::Keep)
    }

    async fn flush(&mut self) -> Result<(), Error> {
        match self.oldest {
            Some(t) if t.elapsed() >= self.interval => self.send_batch().await,
            _ => Ok(()),
        }
    }

    /// Sends the partial batch, however young: the checkpoint after it
    /// records its items' requests completed.
    async fn checkpoint(&mut self) -> Result<(), Error> {
        self.send_batch().await
    }

    async fn close(&mut self) -> Result<(), Error> {
        self.send_batch().await
    }

    /// Spills the batch the abandoned close was sending.
    fn abandon(&mut self) {
        self.spill_unsent();
    }
}
