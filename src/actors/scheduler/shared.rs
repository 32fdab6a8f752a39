//! The Scheduler's side of a distributed crawl: acknowledging the shared
//! queue's leases and this worker's membership of the crawl.
//!
//! A request popped from a shared queue is acknowledged when its work is
//! done, but not before the dupe checks sent before its completion have
//! returned (a `Watermark` of `Mark`s), so the queue never forgets a
//! parent before its children are in it. Released acknowledgements go one
//! batch at a time (`flush_shared`, called by every pump), and
//! each keeps its request's unit of open work until the queue has
//! answered. Without a shared queue, a request's work closes at once.

use actix::prelude::*;
use slog::error;
use uuid::Uuid;

use crate::messages::{Ack, StartsQueued};
use crate::request::Callback;
use crate::stats::Counter;

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
}

impl SharedQueue {
    /// A member of the crawl that does not pull the start requests until
    /// the Coordinator says it owns them.
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
        }
    }
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

    /// Sends the unsent acknowledgements as one batch, then the start
    /// requests' count, unless a batch is already with the queue; closes
    /// their units of open work once the queue has answered (or at a
    /// forced stop), and sends what was released meanwhile.
    pub(super) fn flush_shared(&mut self, ctx: &mut actix::Context<Self>) {
        let Some(s) = self.shared.as_mut() else {
            return;
        };
        if s.sending || (s.unsent.is_empty() && s.unsent_starts.is_none()) {
            return;
        }
        s.sending = true;
        let ids = std::mem::take(&mut s.unsent);
        let n = ids.len();
        let starts = s.unsent_starts.take();
        let (ack, starts_queued) = (s.ack.clone(), s.starts_queued.clone());
        async move {
            if n > 0 {
                ack.send(Ack { ids }).await?;
            }
            if let Some(pulled) = starts {
                starts_queued.send(StartsQueued { pulled }).await?;
            }
            Ok::<_, MailboxError>(())
        }
        .into_actor(self)
        .map(move |res, act, ctx| {
            if let Err(e) = res {
                // Only after shutdown: the leases go back when the queue
                // leaves.
                error!(act.log, "queue unreachable; acknowledgements lost"; "count" => n, "error" => %e);
                act.stats.add(Counter::LostMessages, 1);
            }
            if let Some(s) = act.shared.as_mut() {
                s.sending = false;
                // Nothing, if a forced stop closed them already.
                let units = n.min(s.open_units);
                s.open_units -= units;
                act.accounting.close(units);
            }
            act.flush_shared(ctx);
        })
        .spawn(ctx);
    }

    /// A request's work is over (completed, or forbidden by robots.txt).
    pub(super) fn done(&mut self, id: Uuid) {
        if let Some(d) = self.checkpoints.as_mut() {
            d.completed(id);
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
            let units = std::mem::take(&mut s.open_units);
            self.accounting.close(units);
        }
    }
}
