//! CacheQueue: the actor in front of the queue back-end.
//!
//! It owns a [`QueueBackend`] (in memory by default) and serialises every
//! operation on it, so a push is always visible to the pop that follows it
//! even when a back-end answers asynchronously. Only the Scheduler talks to
//! it. After each push and pop it copies what a spilling back-end reports
//! into the stats (`scheduler/frontier_spilled`, `scheduler/frontier_on_disk`
//! and its maximum, `scheduler/frontier_disk_bytes_max`), logs the first
//! spill, and counts and closes requests a segment could not give back
//! (`scheduler/lost_on_spill_read`) so the crawl still ends. When the
//! back-end holds work only an acknowledgement settles (a shared queue's
//! leases whose retry could not be pushed), it sends the back-end an empty
//! acknowledgement every interval until none is owed, since the Scheduler
//! may have nothing more to acknowledge.

use std::sync::Arc;

use actix::prelude::*;
use slog::{error, info, warn, Logger};

use crate::accounting::Accounting;
use crate::error::Error;
use crate::messages::{Ack, Drain, Leave, Pop, Popped, Push, Shutdown, StartsQueued};
use crate::queue::{QueueBackend, SpillReport};
use crate::request::Callback;
use crate::stats::Stats;

/// The queue actor.
pub(crate) struct CacheQueue<C> {
    /// Where requests wait.
    backend: Box<dyn QueueBackend<C>>,
    /// A failed push loses its batch: the lost requests are counted and
    /// their work closed so the crawl still ends.
    accounting: Arc<Accounting>,
    /// For the lost-request counter.
    stats: Arc<Stats>,
    /// Structured log.
    log: Logger,
    /// The back-end's spill totals when last published.
    spilled: SpillReport,
    /// An empty acknowledgement is due (see the module docs).
    settling: bool,
}

/// Sends the back-end an empty acknowledgement (see the module docs).
#[derive(Message)]
#[rtype(result = "()")]
struct Settle;

impl<C: Callback> CacheQueue<C> {
    pub(crate) fn new(
        backend: Box<dyn QueueBackend<C>>,
        accounting: Arc<Accounting>,
        stats: Arc<Stats>,
        log: Logger,
    ) -> Self {
        CacheQueue {
            backend,
            accounting,
            stats,
            log,
            spilled: SpillReport::default(),
            settling: false,
        }
    }

    /// Sends an empty acknowledgement after the back-end's interval, if it
    /// owes one and none is due yet.
    fn settle_later(&mut self, ctx: &mut actix::Context<Self>) {
        if self.settling {
            return;
        }
        let Some(after) = self.backend.settle_after() else {
            return;
        };
        self.settling = true;
        ctx.notify_later(Settle, after);
    }

    /// Publishes what the back-end spilled since the last call.
    fn publish_spill(&mut self) {
        let Some(now) = self.backend.spill_report() else {
            return;
        };
        let was = std::mem::replace(&mut self.spilled, now);
        if was == now {
            return;
        }
        if was.written == 0 && now.written > 0 {
            info!(self.log, "the frontier is past its memory bound: new requests wait on disk";
                "in_memory" => self.backend.len() as u64 - now.on_disk);
        }
        let s = &self.stats;
        s.add_named("scheduler/frontier_spilled", now.written - was.written);
        s.set_named("scheduler/frontier_on_disk", now.on_disk);
        s.max_named("scheduler/frontier_on_disk_max", now.on_disk);
        s.max_named("scheduler/frontier_disk_bytes_max", now.bytes);
        if now.write_errors > was.write_errors {
            let n = now.write_errors - was.write_errors;
            warn!(self.log, "frontier spill failed: requests kept in memory"; "count" => n);
            s.add_named("scheduler/frontier_spill_errors", n);
        }
        if now.lost > was.lost {
            let n = now.lost - was.lost;
            error!(self.log, "frontier segment unreadable; its requests are lost"; "count" => n);
            s.add_named("scheduler/lost_on_spill_read", n);
            self.accounting.close(n as usize);
        }
    }
}

impl<C: Callback> Actor for CacheQueue<C> {
    type Context = actix::Context<Self>;
}

impl<C: Callback> Handler<Push<C>> for CacheQueue<C> {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: Push<C>, _: &mut Self::Context) -> Self::Result {
        let n = msg.batch.len();
        let fut = self.backend.push(msg.batch);
        AtomicResponse::new(Box::pin(fut.into_actor(self).map(move |res, act, ctx| {
            act.publish_spill();
            act.settle_later(ctx);
            match res {
                // In a shared queue the requests are the whole crawl's now.
                Ok(()) if act.backend.shared() => act.accounting.close(n),
                Ok(()) => {}
                Err(e) if act.backend.shared() => {
                    // The back-end gives their parents back to be fetched
                    // again (a start request it counts lost).
                    error!(act.log, "shared queue push failed; the parents go back to the queue"; "count" => n, "error" => %e);
                    act.accounting.close(n);
                }
                Err(e) => {
                    error!(act.log, "queue push failed; requests lost"; "count" => n, "error" => %e);
                    act.stats
                        .add_named("scheduler/lost_on_push_error", n as u64);
                    act.accounting.close(n);
                }
            }
        })))
    }
}

impl<C: Callback> Handler<Pop<C>> for CacheQueue<C> {
    type Result = AtomicResponse<Self, Result<Popped<C>, Error>>;

    fn handle(&mut self, msg: Pop<C>, _: &mut Self::Context) -> Self::Result {
        let fut = self.backend.pop(msg.max, &msg.allowance);
        AtomicResponse::new(Box::pin(fut.into_actor(self).map(|res, act, _| {
            act.publish_spill();
            res.map(|batch| {
                if act.backend.shared() {
                    // Leased to this worker: its work until acknowledged.
                    act.accounting.open(batch.len());
                }
                Popped {
                    batch,
                    remaining: act.backend.len(),
                }
            })
        })))
    }
}

impl<C: Callback> Handler<Drain<C>> for CacheQueue<C> {
    type Result = AtomicResponse<Self, Result<usize, Error>>;

    fn handle(&mut self, _: Drain<C>, _: &mut Self::Context) -> Self::Result {
        let fut = self.backend.drain();
        AtomicResponse::new(Box::pin(fut.into_actor(self)))
    }
}

impl<C: Callback> Handler<Ack> for CacheQueue<C> {
    type Result = AtomicResponse<Self, Result<(), Error>>;

    fn handle(&mut self, msg: Ack, _: &mut Self::Context) -> Self::Result {
        let n = msg.ids.len();
        let fut = self.backend.ack(msg.ids);
        AtomicResponse::new(Box::pin(fut.into_actor(self).map(move |res, act, ctx| {
            act.settle_later(ctx);
            if let Err(e) = &res {
                // The leases stay: the Scheduler sends them again.
                error!(act.log, "queue acknowledgement failed"; "count" => n, "error" => %e);
                act.stats.add_named("scheduler/ack_errors", 1);
            }
            res
        })))
    }
}

impl<C: Callback> Handler<Settle> for CacheQueue<C> {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: Settle, _: &mut Self::Context) -> Self::Result {
        self.settling = false;
        let fut = self.backend.ack(Vec::new());
        AtomicResponse::new(Box::pin(fut.into_actor(self).map(|res, act, ctx| {
            if let Err(e) = res {
                // Still owed: tried again after the interval.
                warn!(act.log, "giving back leases failed; trying again"; "error" => %e);
                act.stats.add_named("scheduler/ack_errors", 1);
            }
            act.settle_later(ctx);
        })))
    }
}

impl<C: Callback> Handler<StartsQueued> for CacheQueue<C> {
    type Result = AtomicResponse<Self, Result<(), Error>>;

    fn handle(&mut self, msg: StartsQueued, _: &mut Self::Context) -> Self::Result {
        let fut = self.backend.starts_done(msg.pulled);
        AtomicResponse::new(Box::pin(fut.into_actor(self).map(|res, act, _| {
            if let Err(e) = &res {
                error!(act.log, "recording the start requests queued failed"; "error" => %e);
            }
            res
        })))
    }
}

impl<C: Callback> Handler<Leave> for CacheQueue<C> {
    type Result = AtomicResponse<Self, Result<(), Error>>;

    fn handle(&mut self, _: Leave, _: &mut Self::Context) -> Self::Result {
        AtomicResponse::new(Box::pin(self.backend.close().into_actor(self)))
    }
}

impl<C: Callback> Handler<Shutdown> for CacheQueue<C> {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Context;
    use crate::messages::Idle;
    use crate::queue::MemoryQueue;
    use crate::request::Request;

    struct Sink;
    impl Actor for Sink {
        type Context = actix::Context<Self>;
    }
    impl Handler<Idle> for Sink {
        type Result = ();
        fn handle(&mut self, _: Idle, _: &mut Self::Context) {}
    }

    #[actix::test]
    async fn push_then_pop_in_priority_order() {
        let accounting = Arc::new(Accounting::new(Sink.start().recipient()));
        let q = CacheQueue::<()>::new(
            Box::new(MemoryQueue::default()),
            accounting,
            Arc::default(),
            Logger::root(slog::Discard, slog::o!()),
        )
        .start();
        let batch = ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let r = Request::get(&format!("http://h/{p}"))
                    .unwrap()
                    .priority(i as i32);
                Context::new(r, None)
            })
            .collect();
        q.do_send(Push { batch });
        let got = q
            .send(Pop {
                max: 2,
                allowance: crate::queue::SlotAllowance::uniform(8),
                _callback: Default::default(),
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.remaining, 1);
        let paths: Vec<_> = got.batch.iter().map(|c| c.request.url.path()).collect();
        assert_eq!(paths, ["/c", "/b"]);
        let rest = q
            .send(Drain {
                _callback: Default::default(),
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rest, 1);
    }
}
