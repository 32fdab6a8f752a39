//! The Scheduler's side of a job directory: what changed since the last
//! checkpoint, when a change may be written, and the writing.
//!
//! A request is recorded *accepted* (with its full content) when it enters
//! the queue, and *completed* when the Scheduler gets its `Completed`. A
//! completion (or a start-request position) waits behind the dupe checks
//! sent before it (`Watermark`), so "parent completed" is never written
//! before "children accepted".
//!
//! A checkpoint is written on a timer, when enough changed (`due`, checked
//! on every completion) and when asked for (`Checkpoint`): the pipelines
//! are flushed first, then the JobStore appends the delta. One write at a
//! time; a delta that could not be written goes out with the next one.

use std::collections::HashMap;

use actix::prelude::*;
use slog::{debug, error};
use tokio::sync::{broadcast, oneshot};
use uuid::Uuid;

use crate::context::Context;
use crate::error::{Error, ErrorKind, Stage};
use crate::events::CheckpointInfo;
use crate::events::CrawlEvent;
use crate::fingerprint::Fingerprint;
use crate::jobdir::{CheckpointPolicy, Delta, StartsState};
use crate::messages::CheckpointPipelines;
use crate::messages::WriteCheckpoint;
use crate::recrawl::PageUpdate;
use crate::request::Callback;
use crate::stats::{Stats, StatsSnapshot};
use std::sync::Arc;

use super::watermark::Watermark;
use super::Scheduler;

/// A change that must wait for earlier dupe checks.
enum Waiting {
    Done(Uuid),
    Starts(StartsState),
}

/// Answers for those who asked for a checkpoint.
pub(crate) type Waiter = oneshot::Sender<Result<CheckpointInfo, Error>>;

/// Checkpoint state of a Scheduler whose crawl has a job directory.
pub(crate) struct Checkpoints<C: Callback> {
    /// The JobStore.
    store: Recipient<WriteCheckpoint<C>>,
    /// The PipelineStage: its pipelines make their items durable before a
    /// checkpoint records completions.
    flush: Option<Recipient<CheckpointPipelines>>,
    /// Lifecycle events (`Checkpointed`).
    events: broadcast::Sender<CrawlEvent>,
    /// When to checkpoint.
    pub(super) policy: CheckpointPolicy,
    /// Accepted since the last checkpoint.
    added: Vec<(Context<C>, bool)>,
    /// Completed since the last checkpoint (released by the watermark).
    done: Vec<Uuid>,
    /// Fingerprints put in the Bloom filter by requests that ended at
    /// admission, since the last checkpoint.
    seen: Vec<Fingerprint>,
    /// Page index changes (and re-crawl verdicts) of requests not
    /// completed yet: each is recorded (and counted) with its request's
    /// completion, never before.
    pages_waiting: HashMap<Uuid, (Option<PageUpdate<C>>, Option<&'static str>)>,
    /// Where the verdicts are counted.
    stats: Arc<Stats>,
    /// Page index changes of requests completed since the last checkpoint.
    pages: Vec<PageUpdate<C>>,
    /// Start-request position, as far as it is safe to record.
    starts: StartsState,
    /// Whether `starts` changed since the last checkpoint.
    starts_changed: bool,
    /// Completions and start positions held behind outstanding checks.
    watermark: Watermark<Waiting>,
    /// Counters of the last checkpoint written, to skip empty ones.
    last_stats: Option<StatsSnapshot>,
    /// A write is under way.
    writing: bool,
    /// Another checkpoint was asked for while writing.
    again: bool,
    /// Waiting for the next write to end.
    next_waiters: Vec<Waiter>,
}

impl<C: Callback> Checkpoints<C> {
    pub(crate) fn new(
        store: Recipient<WriteCheckpoint<C>>,
        flush: Option<Recipient<CheckpointPipelines>>,
        events: broadcast::Sender<CrawlEvent>,
        policy: CheckpointPolicy,
        starts: StartsState,
        stats: Arc<Stats>,
    ) -> Self {
        Checkpoints {
            store,
            flush,
            events,
            policy,
            added: Vec::new(),
            done: Vec::new(),
            seen: Vec::new(),
            pages_waiting: HashMap::new(),
            stats,
            pages: Vec::new(),
            starts,
            starts_changed: false,
            watermark: Watermark::default(),
            last_stats: None,
            writing: false,
            again: false,
            next_waiters: Vec::new(),
        }
    }

    /// Records requests entering the queue (`bloom`: their fingerprints
    /// went into the Bloom filter).
    pub(crate) fn added(&mut self, batch: &[Context<C>], bloom: bool) {
        self.added.extend(batch.iter().map(|c| (c.clone(), bloom)));
    }

    /// Records fingerprints put in the Bloom filter by requests that
    /// ended at admission.
    pub(crate) fn seen(&mut self, fps: impl IntoIterator<Item = Fingerprint>) {
        self.seen.extend(fps);
    }

    /// A `Check` batch is sent: its sequence number.
    pub(crate) fn check_sent(&mut self) -> u64 {
        self.watermark.check_sent()
    }

    /// The answer to check `seq` came back and its accepted requests are
    /// recorded: releases what waited for it.
    pub(crate) fn check_returned(&mut self, seq: u64) {
        for change in self.watermark.check_returned(seq) {
            self.apply(change);
        }
    }

    /// What a page's answer changes in the page index, and its verdict's
    /// counter, kept until its request completes.
    pub(crate) fn page(
        &mut self,
        id: Uuid,
        update: Option<PageUpdate<C>>,
        counter: Option<&'static str>,
    ) {
        self.pages_waiting.insert(id, (update, counter));
    }

    fn apply(&mut self, change: Waiting) {
        match change {
            Waiting::Done(id) => {
                self.done.push(id);
                if let Some((update, counter)) = self.pages_waiting.remove(&id) {
                    self.pages.extend(update);
                    if let Some(counter) = counter {
                        self.stats.add_named(counter, 1);
                    }
                }
            }
            Waiting::Starts(s) => {
                self.starts = s;
                self.starts_changed = true;
            }
        }
    }

    fn record(&mut self, change: Waiting) {
        if let Some(change) = self.watermark.record(change) {
            self.apply(change);
        }
    }

    /// A request completed.
    pub(crate) fn completed(&mut self, id: Uuid) {
        self.record(Waiting::Done(id));
    }

    /// The start requests were consumed this far.
    pub(crate) fn starts(&mut self, pulled: u64, exhausted: bool) {
        self.record(Waiting::Starts(StartsState { pulled, exhausted }));
    }

    /// Puts back the changes of a checkpoint that was not written (the
    /// pipelines could not make their items durable, or the store could
    /// not take it): they go out with the next one, ahead of newer ones.
    pub(crate) fn restore(&mut self, delta: Delta<C>) {
        let mut added = delta.added;
        added.append(&mut self.added);
        self.added = added;
        let mut done = delta.done;
        done.append(&mut self.done);
        self.done = done;
        let mut seen = delta.seen;
        seen.append(&mut self.seen);
        self.seen = seen;
        let mut pages = delta.pages;
        pages.append(&mut self.pages);
        self.pages = pages;
        self.starts_changed = true;
        self.last_stats = None;
    }

    /// Enough changed to checkpoint before the timer.
    pub(crate) fn due(&self) -> bool {
        self.done.len() >= self.policy.every_requests
            || self.added.len() >= 10 * self.policy.every_requests.max(1)
    }

    /// The changes to write now, or `None` when nothing changed since the
    /// last checkpoint (unless `force`).
    pub(crate) fn take(&mut self, stats: StatsSnapshot, force: bool) -> Option<Delta<C>> {
        let unchanged = self.added.is_empty()
            && self.done.is_empty()
            && self.seen.is_empty()
            && !self.starts_changed
            && self
                .last_stats
                .as_ref()
                .is_some_and(|s| s.counters == stats.counters);
        if unchanged && !force {
            return None;
        }
        self.starts_changed = false;
        self.last_stats = Some(stats.clone());
        Some(Delta {
            added: std::mem::take(&mut self.added),
            done: std::mem::take(&mut self.done),
            seen: std::mem::take(&mut self.seen),
            pages: std::mem::take(&mut self.pages),
            starts: self.starts,
            stats,
        })
    }
}

impl<C: Callback> Scheduler<C> {
    /// Writes a checkpoint of what changed (flushing the pipelines first,
    /// so no completed request's items are only in memory). One write at a
    /// time: a checkpoint asked for during a write follows it. `waiter`
    /// gets the result of the write that covers everything up to now.
    pub(super) fn checkpoint(
        &mut self,
        ctx: &mut actix::Context<Self>,
        waiter: Option<Waiter>,
        force: bool,
    ) {
        let Some(d) = self.checkpoints.as_mut() else {
            if let Some(w) = waiter {
                let _ = w.send(Err(Error::new(
                    Stage::Control,
                    ErrorKind::IllegalState("the crawl has no job directory".into()),
                )));
            }
            return;
        };
        d.next_waiters.extend(waiter);
        if d.writing {
            d.again = true;
            return;
        }
        let force = force || !d.next_waiters.is_empty();
        let Some(delta) = d.take(self.stats.snapshot(), force) else {
            return;
        };
        d.writing = true;
        let waiters = std::mem::take(&mut d.next_waiters);
        write(d.flush.clone(), d.store.clone(), delta)
            .into_actor(self)
            .map(move |(res, unwritten), act, ctx| {
                act.checkpoint_written(res, unwritten, waiters, ctx);
            })
            .spawn(ctx);
    }

    /// A checkpoint write ended: puts back a delta that was not written,
    /// reports the result (stats, log, event, waiters), and writes again
    /// if another checkpoint was asked for or became due meanwhile.
    fn checkpoint_written(
        &mut self,
        res: Result<CheckpointInfo, Error>,
        unwritten: Option<Delta<C>>,
        waiters: Vec<Waiter>,
        ctx: &mut actix::Context<Self>,
    ) {
        let Some(d) = self.checkpoints.as_mut() else {
            return;
        };
        d.writing = false;
        if let Some(delta) = unwritten {
            d.restore(delta);
        }
        match &res {
            Ok(info) => {
                self.stats.add_named("jobdir/checkpoints", 1);
                debug!(self.log, "checkpoint written"; "sequence" => info.sequence,
                    "pending" => info.pending, "completed" => info.completed,
                    "log_bytes" => info.log_bytes);
                let _ = d
                    .events
                    .send(CrawlEvent::Checkpointed { info: info.clone() });
            }
            Err(e) => {
                error!(self.log, "checkpoint failed; retried with the next one"; "error" => %e);
                self.stats.add_named("jobdir/checkpoint_errors", 1);
                let _ = d.events.send(CrawlEvent::error(e));
            }
        }
        answer(waiters, res);
        if std::mem::take(&mut d.again) || d.due() {
            self.checkpoint(ctx, None, false);
        }
    }
}

/// Flushes the pipelines (when there are any), then has the JobStore write
/// `delta`. Gives the delta back when the pipelines could not make their
/// items durable: nothing may be recorded then.
async fn write<C: Callback>(
    flush: Option<Recipient<CheckpointPipelines>>,
    store: Recipient<WriteCheckpoint<C>>,
    delta: Delta<C>,
) -> (Result<CheckpointInfo, Error>, Option<Delta<C>>) {
    if let Some(flush) = flush {
        let flushed = flush.send(CheckpointPipelines).await.unwrap_or_else(|e| {
            Err(Error::new(
                Stage::Pipeline,
                ErrorKind::IllegalState(format!("pipeline stage unreachable: {e}")),
            ))
        });
        if let Err(e) = flushed {
            // Items may not be durable: record nothing now.
            return (Err(e), Some(delta));
        }
    }
    let res = match store.send(WriteCheckpoint { delta }).await {
        Ok(res) => res,
        // A dead store appends nothing more, so the log stays a
        // consistent prefix.
        Err(e) => Err(Error::new(
            Stage::Control,
            ErrorKind::IllegalState(format!("job store unreachable: {e}")),
        )),
    };
    (res, None)
}

/// Gives every waiter the result of a checkpoint write (copies of the error
/// beyond the first).
fn answer(waiters: Vec<Waiter>, res: Result<CheckpointInfo, Error>) {
    let copy = res
        .as_ref()
        .cloned()
        .map_err(|e| (e.stage(), e.to_string()));
    let mut res = Some(res);
    for w in waiters {
        let r = res.take().unwrap_or_else(|| {
            copy.clone()
                .map_err(|(stage, msg)| Error::new(stage, ErrorKind::Backend(msg)))
        });
        let _ = w.send(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::test_support::{req, Cb};
    use actix::Actor;

    struct Sink;
    impl actix::Actor for Sink {
        type Context = actix::Context<Self>;
    }
    impl actix::Handler<WriteCheckpoint<Cb>> for Sink {
        type Result = Result<CheckpointInfo, Error>;
        fn handle(&mut self, _: WriteCheckpoint<Cb>, _: &mut Self::Context) -> Self::Result {
            Ok(CheckpointInfo::default())
        }
    }

    fn checkpoints() -> Checkpoints<Cb> {
        Checkpoints::new(
            Sink.start().recipient(),
            None,
            broadcast::channel(4).0,
            CheckpointPolicy::default(),
            StartsState::default(),
            Arc::default(),
        )
    }

    fn stats(n: u64) -> StatsSnapshot {
        let mut s = StatsSnapshot::default();
        s.counters.insert("x".into(), n);
        s
    }

    #[actix::test]
    async fn a_completion_waits_for_checks_sent_before_it() {
        let mut d = checkpoints();
        let parent = Uuid::new_v4();
        let child = Context::new(req("http://h/child"), Some(parent));
        let first = d.check_sent();
        d.completed(parent);
        let later = d.check_sent();
        let before = d.take(stats(1), false).unwrap();
        assert!(before.done.is_empty(), "recorded before its children");

        // The later check comes back first: the completion still waits.
        d.check_returned(later);
        assert!(d.take(stats(2), false).unwrap().done.is_empty());
        d.added(std::slice::from_ref(&child), true);
        d.check_returned(first);
        let after = d.take(stats(3), false).unwrap();
        assert_eq!(after.done, [parent]);
        assert_eq!(after.added.len(), 1);
        assert_eq!(after.added[0].0.id, child.id);
    }

    #[actix::test]
    async fn an_unwritten_checkpoint_goes_out_with_the_next_one_first() {
        let mut d = checkpoints();
        let (a, b) = (
            Context::new(req("http://h/a"), None),
            Context::new(req("http://h/b"), None),
        );
        d.added(std::slice::from_ref(&a), true);
        d.completed(a.id);
        let failed = d.take(stats(1), false).unwrap();
        d.added(std::slice::from_ref(&b), true);
        d.completed(b.id);
        d.restore(failed);
        let next = d
            .take(stats(1), false)
            .expect("restored changes are written");
        let added: Vec<_> = next.added.iter().map(|(c, _)| c.id).collect();
        assert_eq!(added, [a.id, b.id]);
        assert_eq!(next.done, [a.id, b.id]);
    }

    #[actix::test]
    async fn start_positions_wait_too_and_empty_checkpoints_are_skipped() {
        let mut d = checkpoints();
        let seq = d.check_sent();
        d.starts(256, false);
        assert_eq!(d.take(stats(1), false).unwrap().starts.pulled, 0);
        d.check_returned(seq);
        assert_eq!(d.take(stats(1), false).unwrap().starts.pulled, 256);
        assert!(d.take(stats(1), false).is_none(), "nothing changed");
        assert!(d.take(stats(2), false).is_some(), "the stats changed");
        assert!(d.take(stats(2), true).is_some(), "forced");
        d.completed(Uuid::new_v4());
        assert_eq!(d.take(stats(2), false).unwrap().done.len(), 1);
    }
}
