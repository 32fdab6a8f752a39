//! Coordinator: this worker's link to the rest of a distributed crawl.
//!
//! On timers, with its own connection (so a busy queue never delays a
//! heartbeat):
//! - every third of the lease time, a heartbeat renews this worker's leases
//!   and reaps the workers whose leases expired (their leases go back to
//!   the queue);
//! - every second, this worker's counters are added to the crawl's totals;
//! - every poll interval, the crawl's state goes to the Scheduler: whether
//!   this worker owns the start requests, how many requests wait, and
//!   whether the whole crawl is finished.
//!
//! On `Leave` (the Engine, finishing) it reports the counters one last
//! time.

use std::sync::Arc;

use actix::prelude::*;
use slog::{info, warn};

use super::{invoke, Shared};
use crate::error::Error;
use crate::messages::{Leave, SharedStatus, Shutdown};
use crate::stats::{Counter, Stats};

/// The coordinator actor.
pub(crate) struct Coordinator {
    shared: Shared,
    /// The Scheduler, told the crawl's state.
    status: Recipient<SharedStatus>,
    stats: Arc<Stats>,
    /// A status query is under way.
    polling: bool,
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
            finished: false,
        }
    }

    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let shared = self.shared.clone();
        async move { heartbeat(&shared).await }
            .into_actor(self)
            .map(|res, act, _| match res {
                Ok((true, _, _)) => {}
                Ok((false, _, _)) => {
                    warn!(act.shared.log, "this worker was taken for dead (no heartbeat within the lease time); its leases went back to the queue");
                    act.stats.add_named("redis/taken_for_dead", 1);
                }
                Err(e) => warn!(act.shared.log, "heartbeat failed"; "error" => %e),
            })
            .spawn(ctx);
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        if self.polling || self.finished {
            return;
        }
        self.polling = true;
        let shared = self.shared.clone();
        async move {
            let args = shared.args();
            shared
                .retry("status", |con| {
                    invoke::<(String, redis::Value)>(&shared.scripts.status, &args, con)
                })
                .await
        }
        .into_actor(self)
        .map(|res, act, _| {
            act.polling = false;
            let (state, detail) = match res {
                Ok(r) => r,
                Err(e) => {
                    warn!(act.shared.log, "crawl status failed"; "error" => %e);
                    return;
                }
            };
            let queued = redis::from_redis_value::<u64>(detail.clone()).unwrap_or(0);
            let finished = state == "finished";
            if finished {
                act.finished = true;
                let reason = redis::from_redis_value::<String>(detail).unwrap_or_default();
                info!(act.shared.log, "the distributed crawl is finished"; "reason" => reason);
            }
            act.status.do_send(SharedStatus {
                owns_starts: state == "starts",
                queued,
                finished,
            });
        })
        .spawn(ctx);
    }
}

/// Renews this worker's registration and reaps dead workers: (whether it
/// was registered, workers reaped, leases requeued).
pub(crate) async fn heartbeat(shared: &Shared) -> Result<(bool, u64, u64), Error> {
    let mut args = shared.args();
    args.push(shared.opts.lease_ttl.as_millis().to_string());
    let (known, reaped, requeued): (u64, u64, u64) = shared
        .retry("heartbeat", |con| {
            invoke(&shared.scripts.heartbeat, &args, con)
        })
        .await?;
    if reaped > 0 {
        warn!(shared.log, "workers taken for dead; their leases went back to the queue";
            "workers" => reaped, "leases" => requeued);
    }
    Ok((known == 1, reaped, requeued))
}

/// Adds what this worker's counters grew by to the crawl's totals.
async fn report(shared: &Shared, stats: &Stats) -> Result<(), Error> {
    let gauges = [Counter::InFlight.name(), Counter::Queued.name()];
    let mut args = shared.args();
    for (name, value) in stats.snapshot().counters {
        if value > 0 && !gauges.contains(&name.as_str()) {
            args.push(name);
            args.push(value.to_string());
        }
    }
    let _: u64 = shared
        .retry("stats", |con| invoke(&shared.scripts.stats, &args, con))
        .await?;
    Ok(())
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let opts = &self.shared.opts;
        ctx.run_interval(opts.lease_ttl / 3, |act, ctx| act.heartbeat(ctx));
        ctx.run_interval(std::time::Duration::from_secs(1), |act, ctx| {
            let (shared, stats) = (act.shared.clone(), act.stats.clone());
            async move { report(&shared, &stats).await }
                .into_actor(act)
                .map(|res, act, _| {
                    if let Err(e) = res {
                        warn!(act.shared.log, "reporting stats failed"; "error" => %e);
                    }
                })
                .spawn(ctx);
        });
        ctx.run_interval(opts.poll, |act, ctx| act.poll(ctx));
        self.poll(ctx);
    }
}

impl Handler<Leave> for Coordinator {
    type Result = ResponseFuture<Result<(), Error>>;

    fn handle(&mut self, _: Leave, _: &mut Self::Context) -> Self::Result {
        self.finished = true;
        let (shared, stats) = (self.shared.clone(), self.stats.clone());
        Box::pin(async move { report(&shared, &stats).await })
    }
}

impl Handler<Shutdown> for Coordinator {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
