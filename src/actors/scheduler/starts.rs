//! Lazy start requests: the spider's iterator is pulled a batch at a time,
//! only while the queue (and the dupe filter) holds less than twice the
//! crawl's concurrency, so a crawl of millions of start URLs never has
//! them all in memory.
//!
//! Every pump calls `pull_starts` first. A pulled batch goes through
//! admission like any other (`accept`); the iterator's one unit of open
//! work closes when it runs out (or panics), and the position reached is
//! recorded for the job directory and, once queued, told to a shared queue.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use actix::AsyncContext;
use slog::{error, info, Logger};

use crate::context::Context;
use crate::error::{panic_message, Error, ErrorKind, Stage};
use crate::request::Callback;
use crate::state::CrawlState;
use crate::stats::{Counter, Stats};

use super::shared::Mark;
use super::Scheduler;

/// How many start requests are pulled from the spider at a time.
pub(super) const START_BATCH: usize = 256;

impl<C: Callback> Scheduler<C> {
    /// Whether a re-crawl's revisits are still being pulled: requests
    /// emitted meanwhile wait for them (`accept_emitted`).
    pub(super) fn revisiting(&self) -> bool {
        self.starts.is_some() && self.starts_pulled < self.revisits_until
    }

    /// Pulls lazy sources' requests, then start requests, while the queue
    /// is short of work.
    pub(super) fn pull_starts(&mut self, ctx: &mut actix::Context<Self>) {
        // A batch the admission policies drop whole (all offsite, say)
        // leaves the queue empty and nothing in flight to pump again:
        // pull on until something is admitted, the watermark is reached or
        // the starts run out. Bounded per call; the rest continues on the
        // next turn of the event loop.
        for _ in 0..64 {
            let before = (self.queued, self.checking);
            let pulled = self.pull_source_batch(ctx)
                || self.pull_start_batch(ctx)
                || self.pull_deferred_batch(ctx);
            if !pulled || (self.queued, self.checking) != before {
                return;
            }
        }
        ctx.run_later(Duration::ZERO, |act, ctx| act.pump(ctx));
    }

    /// Pulls one batch of start requests if the queue is short of work;
    /// `false` when there was nothing to pull.
    fn pull_start_batch(&mut self, ctx: &mut actix::Context<Self>) -> bool {
        let revisiting = self.starts_pulled < self.revisits_until;
        if self.state != CrawlState::Running
            || (self.queued + self.checking >= 2 * self.config.concurrency && !revisiting)
            || self.shared.as_ref().is_some_and(|s| !s.owns_starts)
        {
            return false;
        }
        let Some(starts) = self.starts.as_mut() else {
            return false;
        };
        let take = || starts.by_ref().take(START_BATCH).collect();
        let what = (Stage::Setup, "start_requests");
        let (batch, exhausted) = take_batch(&self.log, &self.stats, take, what);
        let batch: Vec<_> = batch.into_iter().map(|r| Context::new(r, None)).collect();
        self.starts_pulled += batch.len() as u64;
        self.accounting.open(batch.len());
        // Kept open for the revisits still waiting for their sitemap.
        let held = exhausted && self.defer_end_of_starts(ctx);
        if exhausted {
            self.starts = None;
            info!(self.log, "start requests exhausted");
            if self.shared.is_none() && !held {
                self.accounting.close(1);
            }
        }
        self.accept(batch, ctx);
        if exhausted {
            // After the last batch's dupe check is sent.
            self.mark(Mark::StartsDone(self.starts_pulled));
        }
        // After the batch's dupe check is sent: the position is recorded
        // once the accepted ones are.
        if let Some(d) = self.checkpoints.as_mut() {
            d.starts(self.starts_pulled, exhausted && !held);
        }
        true
    }
}

/// Takes a batch of up to [`START_BATCH`] requests with `take`; whether
/// that ran its iterator out. A panic in it (spider code: `what`) ends the
/// iterator, counted in `spider_exceptions` and logged.
pub(super) fn take_batch<T>(
    log: &Logger,
    stats: &Stats,
    take: impl FnOnce() -> Vec<T>,
    (stage, what): (Stage, &str),
) -> (Vec<T>, bool) {
    match std::panic::catch_unwind(AssertUnwindSafe(take)) {
        Ok(batch) => {
            let exhausted = batch.len() < START_BATCH;
            (batch, exhausted)
        }
        Err(panic) => {
            let err = Error::new(stage, ErrorKind::Panic(panic_message(&*panic)));
            error!(log, "a request iterator panicked; it gives no more requests";
                "iterator" => what, "error" => %err);
            stats.inc(Counter::SpiderExceptions);
            (Vec::new(), true)
        }
    }
}
