//! The Scheduler's side of a distributed crawl: acknowledging the shared
//! queue's leases and this worker's membership of the crawl.
//!
//! A request popped from a shared queue is acknowledged when its work is
//! done, but not before the dupe checks sent before its completion have
//! returned (a `Watermark` of `Mark`s), so the queue never forgets a
//! parent before its children are in it, and not before the pipelines
//! have made its items durable (their `checkpoint`, run before each batch
//! of acknowledgements), so a worker killed at any moment loses no
//! acknowledged page's items: they are in its sinks, and every page not
//! acknowledged is fetched again (at least once, never lost).
//!
//! Released acknowledgements go one batch at a time, at most one batch per
//! acknowledgement interval (`flush_shared`, called by every pump), and
//! each keeps its request's unit of open work until the queue has
//! answered. A batch whose checkpoint or acknowledgement failed is sent
//! again after the interval (counted in `redis/ack_rounds_failed`), its
//! requests still leased. After [`FAILED_ROUNDS_BEFORE_HOLD`] rounds in a
//! row failed, the worker takes no more requests from the queue (counted
//! in `redis/ack_holds`, logged as an error) until a round goes through:
//! a sink that stays down must not have it fetch, and lease, the whole
//! crawl. Without a shared queue, a request's work closes at once.

use std::time::{Duration, Instant};

use actix::prelude::*;
use slog::{error, warn};
use uuid::Uuid;

#[cfg(feature = "distributed")]
use crate::distributed::Shared;
use crate::error::{Error, ErrorKind, Stage};
use crate::messages::{Ack, CheckpointPipelines, StartsQueued};
use crate::request::Callback;

use super::watermark::Watermark;
use super::Scheduler;

/// A change a shared queue learns after the dupe checks sent before it.
pub(super) enum Mark {
    /// A request's work is done: acknowledge its lease.
    Done(Uuid),
    /// Every start request is queued.
    StartsDone(u64),
}

/// The Scheduler's side of a distributed crawl (a shared queue).
pub(crate) struct SharedQueue {
    /// The queue: acknowledgements.
    ack: Recipient<Ack>,
    /// The queue: the start requests are all queued.
    starts_queued: Recipient<StartsQueued>,
    /// This worker pulls the start requests (the Coordinator says so).
    pub(super) owns_starts: bool,
    /// This worker's one unit of open work for its membership of the
    /// crawl, closed when the whole crawl is finished (or this worker
    /// stops): the Engine cannot see the crawl idle before.
    member: bool,
    /// Acknowledgements held behind outstanding dupe checks.
    pub(super) marks: Watermark<Mark>,
    /// Acknowledgements released and not yet sent: they go one batch at a
    /// time, the next when the queue has answered the last, so a backlog
    /// costs one Redis call, not one per page. Each keeps its request's
    /// unit of open work until the queue has answered.
    unsent: Vec<Uuid>,
    /// The start requests' count, once they are all queued, not yet sent
    /// (after the acknowledgements released with it).
    unsent_starts: Option<u64>,
    /// A batch is with the queue.
    sending: bool,
    /// Units of open work the unsent and sending acknowledgements hold.
    open_units: usize,
    /// A forced stop came: acknowledgements hold the crawl open no longer.
    forced: bool,
    /// The PipelineStage: its pipelines make the items of the requests of
    /// a batch durable before the batch is acknowledged.
    checkpoint: Option<Recipient<CheckpointPipelines>>,
    /// The least time between two batches: each costs a checkpoint (a
    /// partial batch sent, a file synced).
    interval: Duration,
    /// When the last batch went.
    last_batch: Option<Instant>,
    /// A timer will send the next batch.
    timer: bool,
    /// Batches in a row whose checkpoint or acknowledgement failed: at
    /// [`FAILED_ROUNDS_BEFORE_HOLD`], no more requests are popped.
    failed_rounds: u32,
    /// The worker's Redis: a forced stop starts its leave's deadline, so
    /// no operation waiting for an unreachable Redis holds the stop.
    #[cfg(feature = "distributed")]
    redis: Option<Shared>,
}

impl SharedQueue {
    /// A member of the crawl that does not pull the start requests until
    /// the Coordinator says it owns them.
    // Made only for a distributed crawl (and by the tests).
    #[cfg_attr(not(feature = "distributed"), allow(dead_code))]
    pub(crate) fn new(ack: Recipient<Ack>, starts_queued: Recipient<StartsQueued>) -> Self {
        SharedQueue {
            ack,
            starts_queued,
            owns_starts: false,
            member: true,
            marks: Watermark::default(),
            unsent: Vec::new(),
            unsent_starts: None,
            sending: false,
            open_units: 0,
            forced: false,
            checkpoint: None,
            interval: Duration::ZERO,
            last_batch: None,
            timer: false,
            failed_rounds: 0,
            #[cfg(feature = "distributed")]
            redis: None,
        }
    }

    /// Checkpoints the pipelines through `checkpoint` before each batch of
    /// acknowledgements, sending at most one batch per `redis`'s
    /// acknowledgement interval; a forced stop starts `redis`'s leave
    /// deadline.
    #[cfg(feature = "distributed")]
    pub(crate) fn with_pipelines(
        self,
        checkpoint: Recipient<CheckpointPipelines>,
        redis: Shared,
    ) -> Self {
        let interval = redis.opts.ack_interval;
        let mut s = self.with_checkpoint(checkpoint, interval);
        s.redis = Some(redis);
        s
    }

    /// Checkpoints the pipelines through `checkpoint` before each batch of
    /// acknowledgements, sending at most one batch per `interval`.
    // Made only for a distributed crawl (and by the tests).
    #[cfg_attr(not(feature = "distributed"), allow(dead_code))]
    pub(crate) fn with_checkpoint(
        mut self,
        checkpoint: Recipient<CheckpointPipelines>,
        interval: Duration,
    ) -> Self {
        self.checkpoint = Some(checkpoint);
        self.interval = interval;
        self
    }
}

/// The least wait before a failed batch goes again.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Batches of acknowledgements failed in a row after which the worker
/// takes no more requests until one goes through.
pub(crate) const FAILED_ROUNDS_BEFORE_HOLD: u32 = 5;

impl SharedQueue {
    /// Acknowledgements keep failing: take no more requests.
    pub(super) fn holds_pops(&self) -> bool {
        self.failed_rounds >= FAILED_ROUNDS_BEFORE_HOLD
    }
}

/// How far a batch of acknowledgements went.
enum Sent {
    /// Checkpointed and acknowledged, and the start requests' count sent.
    All,
    /// Not acknowledged (the checkpoint or the acknowledgement failed).
    Nothing(Error),
    /// Acknowledged; the start requests' count failed.
    AckedOnly(Error),
}

impl<C: Callback> Scheduler<C> {
    /// Records a change for the shared queue, sent once the dupe checks
    /// before it have returned.
    pub(super) fn mark(&mut self, change: Mark) {
        let Some(s) = self.shared.as_mut() else {
            return;
        };
        if let Some(change) = s.marks.record(change) {
            self.send_marks(vec![change]);
        }
    }

    /// Queues released marks for the shared queue; `flush_shared` sends
    /// them.
    pub(super) fn send_marks(&mut self, marks: Vec<Mark>) {
        let Some(s) = self.shared.as_mut() else {
            return;
        };
        let mut done = 0;
        for m in marks {
            match m {
                Mark::Done(id) => {
                    s.unsent.push(id);
                    done += 1;
                }
                Mark::StartsDone(pulled) => s.unsent_starts = Some(pulled),
            }
        }
        if s.forced {
            self.accounting.close(done);
        } else {
            s.open_units += done;
        }
    }

    /// Sends the unsent acknowledgements as one batch (after a checkpoint of
    /// the pipelines), then the start requests' count, unless a batch is
    /// already with the queue or the last went less than an interval ago
    /// (a timer sends it then); closes their units of open work once the
    /// queue has answered (or at a forced stop), and sends what was
    /// released meanwhile.
    pub(super) fn flush_shared(&mut self, ctx: &mut actix::Context<Self>) {
        let Some(s) = self.shared.as_mut() else {
            return;
        };
        if s.sending || s.timer || (s.unsent.is_empty() && s.unsent_starts.is_none()) {
            return;
        }
        let now = Instant::now();
        if let Some(next) = s.last_batch.map(|t| t + s.interval).filter(|&t| t > now) {
            s.timer = true;
            ctx.run_later(next - now, |act, ctx| {
                if let Some(s) = act.shared.as_mut() {
                    s.timer = false;
                }
                act.flush_shared(ctx);
            });
            return;
        }
        s.sending = true;
        s.last_batch = Some(now);
        let ids = std::mem::take(&mut s.unsent);
        let n = ids.len();
        let starts = s.unsent_starts.take();
        let (ack, starts_queued) = (s.ack.clone(), s.starts_queued.clone());
        let checkpoint = s.checkpoint.clone().filter(|_| n > 0);
        let batch = ids.clone();
        async move {
            if let Some(checkpoint) = checkpoint {
                if let Err(e) = answer(checkpoint.send(CheckpointPipelines).await) {
                    return Sent::Nothing(e);
                }
            }
            if n > 0 {
                if let Err(e) = answer(ack.send(Ack { ids: batch }).await) {
                    return Sent::Nothing(e);
                }
            }
            if let Some(pulled) = starts {
                if let Err(e) = answer(starts_queued.send(StartsQueued { pulled }).await) {
                    return Sent::AckedOnly(e);
                }
            }
            Sent::All
        }
        .into_actor(self)
        .map(move |sent, act, ctx| act.batch_sent(sent, ids, starts, ctx))
        .spawn(ctx);
    }

    /// A batch of acknowledgements ended: closes the units of those that
    /// went, and keeps what did not go for the next batch (unless a forced
    /// stop came: the leave gives those leases back).
    fn batch_sent(
        &mut self,
        sent: Sent,
        ids: Vec<Uuid>,
        starts: Option<u64>,
        ctx: &mut actix::Context<Self>,
    ) {
        let Some(s) = self.shared.as_mut() else {
            return;
        };
        s.sending = false;
        let n = ids.len();
        let (acked, failed) = match sent {
            Sent::All => (true, None),
            Sent::AckedOnly(e) => (true, Some(e)),
            Sent::Nothing(e) => (false, Some(e)),
        };
        if acked || s.forced {
            // Nothing, if a forced stop closed them already.
            let units = n.min(s.open_units);
            s.open_units -= units;
            self.accounting.close(units);
        }
        let held = s.holds_pops();
        if acked {
            s.failed_rounds = 0;
        } else if failed.is_some() {
            s.failed_rounds = s.failed_rounds.saturating_add(1);
        }
        if held && !s.holds_pops() {
            warn!(
                self.log,
                "acknowledgements go through again; taking requests again"
            );
        } else if !held && s.holds_pops() {
            self.stats.add_named("redis/ack_holds", 1);
            error!(self.log, "acknowledgements keep failing; taking no more requests until one goes through";
                "failed_rounds" => s.failed_rounds);
        }
        if let Some(e) = failed {
            self.stats.add_named("redis/ack_rounds_failed", 1);
            if s.forced {
                // Nothing holds the crawl open any more; what was not
                // acknowledged goes back when this worker leaves.
                error!(self.log, "acknowledgements not sent; the leave gives the leases back";
                    "count" => n, "error" => %e);
            } else {
                warn!(self.log, "acknowledgements not sent; sent again after the interval";
                    "count" => n, "error" => %e);
                if !acked {
                    let mut again = ids;
                    again.append(&mut s.unsent);
                    s.unsent = again;
                }
                s.unsent_starts = s.unsent_starts.or(starts);
                s.timer = true;
                ctx.run_later(s.interval.max(RETRY_PAUSE), |act, ctx| {
                    if let Some(s) = act.shared.as_mut() {
                        s.timer = false;
                    }
                    act.flush_shared(ctx);
                });
                return;
            }
        }
        // Popping again, if it was held; and what was released meanwhile.
        self.pump(ctx);
    }

    /// A request's work is over (completed, or forbidden by robots.txt).
    pub(super) fn done(&mut self, id: Uuid) {
        if let Some(d) = self.checkpoints.as_mut() {
            // Unless its lazy sources are still being pulled: recorded
            // when they run out.
            if !self.sources.defers_completion(id) {
                d.completed(id);
            }
        }
        if self.shared.is_some() {
            // Closed once the acknowledgement is through (flush_shared).
            self.mark(Mark::Done(id));
        } else {
            self.accounting.close(1);
        }
    }

    /// Closes this worker's membership of a distributed crawl (once).
    pub(super) fn leave_crawl(&mut self) {
        if let Some(s) = self.shared.as_mut() {
            if std::mem::take(&mut s.member) {
                self.accounting.close(1);
            }
        }
    }

    /// A forced stop came: acknowledgements still go, but no longer hold
    /// the crawl open, so a shared queue that does not answer cannot delay
    /// the finish.
    pub(super) fn stop_waiting_for_acks(&mut self) {
        if let Some(s) = self.shared.as_mut() {
            s.forced = true;
            #[cfg(feature = "distributed")]
            if let Some(redis) = &s.redis {
                redis.begin_closing();
            }
            let units = std::mem::take(&mut s.open_units);
            self.accounting.close(units);
        }
    }
}

/// A message's answer, a dead recipient as an error (only after shutdown).
fn answer(res: Result<Result<(), Error>, MailboxError>) -> Result<(), Error> {
    res.unwrap_or_else(|e| {
        Err(Error::new(
            Stage::Schedule,
            ErrorKind::IllegalState(format!("unreachable: {e}")),
        ))
    })
}
