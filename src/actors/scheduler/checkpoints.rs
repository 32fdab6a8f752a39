//! The Scheduler's side of a job directory: what changed since the last
//! checkpoint, and when a change may be written.
//!
//! A request is recorded *accepted* (with its full content) when it enters
//! the queue, and *completed* when the Scheduler gets its `Completed`. A
//! completion (or a start-request position) waits behind the dupe checks
//! sent before it (`Watermark`), so "parent completed" is never written
//! before "children accepted".

use actix::Recipient;
use tokio::sync::{broadcast, oneshot};
use uuid::Uuid;

use crate::context::Context;
use crate::error::Error;
use crate::events::CheckpointInfo;
use crate::events::CrawlEvent;
use crate::jobdir::{CheckpointPolicy, Delta, StartsState};
use crate::messages::CheckpointPipelines;
use crate::messages::WriteCheckpoint;
use crate::request::Callback;
use crate::stats::StatsSnapshot;

use super::watermark::Watermark;

/// A change that must wait for earlier dupe checks.
enum Waiting {
    Done(Uuid),
    Starts(StartsState),
}

/// Answers for those who asked for a checkpoint.
pub(crate) type Waiter = oneshot::Sender<Result<CheckpointInfo, Error>>;

/// Checkpoint state of a Scheduler whose crawl has a job directory.
pub(crate) struct Durable<C: Callback> {
    /// The JobStore.
    pub store: Recipient<WriteCheckpoint<C>>,
    /// The PipelineStage: its pipelines make their items durable before a
    /// checkpoint records completions.
    pub flush: Option<Recipient<CheckpointPipelines>>,
    /// Lifecycle events (`Checkpointed`).
    pub events: broadcast::Sender<CrawlEvent>,
    /// When to checkpoint.
    pub policy: CheckpointPolicy,
    /// Accepted since the last checkpoint.
    added: Vec<(Context<C>, bool)>,
    /// Completed since the last checkpoint (released by the watermark).
    done: Vec<Uuid>,
    /// Start-request position, as far as it is safe to record.
    starts: StartsState,
    /// Whether `starts` changed since the last checkpoint.
    starts_changed: bool,
    /// Completions and start positions held behind outstanding checks.
    watermark: Watermark<Waiting>,
    /// Counters of the last checkpoint written, to skip empty ones.
    last_stats: Option<StatsSnapshot>,
    /// A write is under way.
    pub writing: bool,
    /// Another checkpoint was asked for while writing.
    pub again: bool,
    /// Waiting for the next write to end.
    pub next_waiters: Vec<Waiter>,
}

impl<C: Callback> Durable<C> {
    pub(crate) fn new(
        store: Recipient<WriteCheckpoint<C>>,
        flush: Option<Recipient<CheckpointPipelines>>,
        events: broadcast::Sender<CrawlEvent>,
        policy: CheckpointPolicy,
        starts: StartsState,
    ) -> Self {
        Durable {
            store,
            flush,
            events,
            policy,
            added: Vec::new(),
            done: Vec::new(),
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

    fn apply(&mut self, change: Waiting) {
        match change {
            Waiting::Done(id) => self.done.push(id),
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
            starts: self.starts,
            stats,
        })
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

    fn durable() -> Durable<Cb> {
        Durable::new(
            Sink.start().recipient(),
            None,
            broadcast::channel(4).0,
            CheckpointPolicy::default(),
            StartsState::default(),
        )
    }

    fn stats(n: u64) -> StatsSnapshot {
        let mut s = StatsSnapshot::default();
        s.counters.insert("x".into(), n);
        s
    }

    #[actix::test]
    async fn a_completion_waits_for_checks_sent_before_it() {
        let mut d = durable();
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
        let mut d = durable();
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
        let mut d = durable();
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
