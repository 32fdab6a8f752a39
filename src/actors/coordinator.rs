//! Coordinator: this worker's link to the rest of a distributed crawl.
//!
//! On timers, with its own connection (so a busy queue never delays a
//! heartbeat):
//! - every third of the lease time, a heartbeat renews this worker's leases
//!   and reaps the workers whose leases expired (their leases go back to
//!   the queue);
//! - every second, this worker's counters are added to the crawl's totals
//!   (one report at a time: during an outage the next waits);
//! - every poll interval, the crawl's state goes to the Scheduler: whether
//!   this worker owns the start requests, how many requests wait, and
//!   whether the whole crawl is finished.
//!
//! On `Leave` (the Engine, finishing) it starts the leave's deadline (from
//! one lease time on, every Redis operation of this worker gives up) and
//! reports the counters one last time.

use std::sync::Arc;

use actix::prelude::*;
use slog::{info, warn};

use crate::distributed::membership::{crawl_status, heartbeat, report};
use crate::distributed::Shared;
use crate::error::Error;
use crate::messages::{Leave, SharedStatus, Shutdown};
use crate::stats::Stats;

/// The coordinator actor.
pub(crate) struct Coordinator {
    /// Its own Redis connection and the crawl's keys: a busy queue never
    /// delays a heartbeat.
    shared: Shared,
    /// The Scheduler, told the crawl's state.
    status: Recipient<SharedStatus>,
    /// This worker's counters, added to the crawl's totals every second.
    stats: Arc<Stats>,
    /// A status query is under way.
    polling: bool,
    /// A heartbeat is under way.
    beating: bool,
    /// A stats report is under way: the next waits for it, so an outage
    /// never piles reports up.
    reporting: bool,
    /// `Leave` came: no more heartbeats.
    left: bool,
    /// The crawl is finished: no more polling.
    finished: bool,
}

impl Coordinator {
    pub(crate) fn new(shared: Shared, status: Recipient<SharedStatus>, stats: Arc<Stats>) -> Self {
        Coordinator {
            shared,
            status,
            stats,
            polling: false,
            beating: false,
            reporting: false,
            left: false,
            finished: false,
        }
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        if self.beating || self.left {
            // The last one is still waiting for Redis, or this worker is
            // leaving (a heartbeat would register it again).
            return;
        }
        self.beating = true;
        let shared = self.shared.clone();
        async move { heartbeat(&shared).await }
            .into_actor(self)
            .map(|res, act, _| match (std::mem::take(&mut act.beating), res) {
                (_, Ok((true, _, _))) => {}
                (_, Ok((false, _, _))) => {
                    warn!(act.shared.log, "this worker was taken for dead (no heartbeat within the lease time); its leases went back to the queue");
                    act.stats.add_named("redis/taken_for_dead", 1);
                }
                (_, Err(e)) => warn!(act.shared.log, "heartbeat failed"; "error" => %e),
            })
            .spawn(ctx);
    }

    fn report(&mut self, ctx: &mut Context<Self>) {
        if self.reporting || self.left {
            return;
        }
        self.reporting = true;
        let (shared, stats) = (self.shared.clone(), self.stats.clone());
        async move { report(&shared, &stats).await }
            .into_actor(self)
            .map(|res, act, _| {
                act.reporting = false;
                if let Err(e) = res {
                    warn!(act.shared.log, "reporting stats failed"; "error" => %e);
                }
            })
            .spawn(ctx);
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        if self.polling || self.finished {
            return;
        }
        self.polling = true;
        let shared = self.shared.clone();
        async move { crawl_status(&shared).await }
            .into_actor(self)
            .map(|res, act, _| {
                act.polling = false;
                let status = match res {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(act.shared.log, "crawl status failed"; "error" => %e);
                        return;
                    }
                };
                if let Some(reason) = &status.finished {
                    act.finished = true;
                    info!(act.shared.log, "the distributed crawl is finished"; "reason" => reason);
                }
                act.status.do_send(SharedStatus {
                    owns_starts: status.owns_starts,
                    queued: status.queued,
                    finished: status.finished.is_some(),
                });
            })
            .spawn(ctx);
    }
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let opts = &self.shared.opts;
        ctx.run_interval(opts.lease_ttl / 3, |act, ctx| act.heartbeat(ctx));
        ctx.run_interval(std::time::Duration::from_secs(1), |act, ctx| {
            act.report(ctx)
        });
        ctx.run_interval(opts.poll, |act, ctx| act.poll(ctx));
        self.poll(ctx);
    }
}

impl Handler<Leave> for Coordinator {
    type Result = ResponseFuture<Result<(), Error>>;

    fn handle(&mut self, _: Leave, _: &mut Self::Context) -> Self::Result {
        self.finished = true;
        self.left = true;
        let (shared, stats) = (self.shared.clone(), self.stats.clone());
        // From one lease time on, every Redis operation of this worker
        // gives up: an outage cannot hold the finish.
        shared.begin_closing();
        Box::pin(async move { report(&shared, &stats).await })
    }
}

impl Handler<Shutdown> for Coordinator {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
