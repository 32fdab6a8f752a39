//! Downloader pool: spreads requests over the downloaders and keeps a copy
//! of every request in flight, so a crashed downloader loses nothing.
//!
//! `Dispatch` from the Scheduler goes to the least-loaded downloader, and the
//! pool records (downloader, request) until the `Downloaded` report comes
//! back; then it routes the outcome: a response to the Parser, a failure to
//! the ErrorHandler, a middleware drop straight to `Completed`. Requests a
//! middleware emitted go to the Scheduler.
//!
//! On `WorkerCrashed` the pool bumps that downloader's epoch and re-queues
//! every request it held (the supervisor restarts the downloader itself).
//! The request whose download panicked counts a crash; past the crawl's
//! limit it fails to the ErrorHandler instead, so a request that always
//! crashes its downloader cannot loop. Reports for requests no longer in the
//! table (from the dead incarnation) are ignored.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use slog::{debug, error, Logger};
use uuid::Uuid;

use crate::accounting::Accounting;
use crate::context::Context;
use crate::error::{Error, ErrorKind, Stage};
use crate::messages::{
    deliver, Completed, Dispatch, Download, Downloaded, Enqueue, Outcome, Parse, RequestFailed,
    Requeue, Shutdown, WorkerCrashed,
};
use crate::spider::Callback;
use crate::stats::{Counter, Stats};

/// Where the pool sends things.
pub struct PoolLinks<C: Callback> {
    /// The downloaders, by index.
    pub workers: Vec<Recipient<Download<C>>>,
    /// Responses to parse.
    pub parser: Recipient<Parse<C>>,
    /// Failures.
    pub errors: Recipient<RequestFailed<C>>,
    /// Requests emitted by middlewares.
    pub enqueue: Recipient<Enqueue<C>>,
    /// Requests of a crashed downloader.
    pub requeue: Recipient<Requeue<C>>,
    /// Requests a middleware dropped.
    pub completed: Recipient<Completed>,
}

/// The pool actor.
pub struct Pool<C: Callback> {
    /// Where it sends things.
    links: PoolLinks<C>,
    /// Requests in flight per downloader, to pick the least loaded.
    load: Vec<usize>,
    /// Each downloader's incarnation as the pool knows it.
    epochs: Vec<u64>,
    /// Every request in flight, as dispatched, with its downloader: what a
    /// crash re-queues.
    in_flight: HashMap<Uuid, (usize, Context<C>)>,
    /// A request may crash its downloader this many times before it fails.
    max_crashes: u32,
    /// Open-work counter (for requests middlewares emit).
    accounting: Arc<Accounting>,
    /// Counters.
    stats: Arc<Stats>,
    /// Structured log.
    log: Logger,
}

impl<C: Callback> Pool<C> {
    /// A pool over `links.workers`.
    pub(crate) fn new(
        links: PoolLinks<C>,
        max_crashes: u32,
        accounting: Arc<Accounting>,
        stats: Arc<Stats>,
        log: Logger,
    ) -> Self {
        let n = links.workers.len();
        Pool {
            links,
            load: vec![0; n],
            epochs: vec![0; n],
            in_flight: HashMap::new(),
            max_crashes,
            accounting,
            stats,
            log,
        }
    }
}

impl<C: Callback> Actor for Pool<C> {
    type Context = actix::Context<Self>;
}

impl<C: Callback> Handler<Dispatch<C>> for Pool<C> {
    type Result = ();

    fn handle(&mut self, msg: Dispatch<C>, _: &mut Self::Context) {
        let worker = (0..self.load.len())
            .min_by_key(|&i| self.load[i])
            .expect("a pool has at least one downloader");
        self.load[worker] += 1;
        self.in_flight.insert(msg.ctx.id, (worker, msg.ctx.clone()));
        let download = Download {
            ctx: msg.ctx,
            epoch: self.epochs[worker],
        };
        deliver(&self.links.workers[worker], download, &self.stats);
    }
}

impl<C: Callback> Handler<Downloaded<C>> for Pool<C> {
    type Result = ();

    fn handle(&mut self, msg: Downloaded<C>, _: &mut Self::Context) {
        let Some((worker, _)) = self.in_flight.remove(&msg.id) else {
            debug!(self.log, "ignoring a report from a crashed downloader"; "request_id" => %msg.id);
            return;
        };
        self.load[worker] = self.load[worker].saturating_sub(1);
        if !msg.emitted.is_empty() {
            let batch: Vec<_> = msg
                .emitted
                .into_iter()
                .map(|r| Context::new(r, Some(msg.id)))
                .collect();
            self.accounting.open(batch.len());
            deliver(&self.links.enqueue, Enqueue { batch }, &self.stats);
        }
        match msg.outcome {
            Outcome::Response(ctx, response) => {
                deliver(&self.links.parser, Parse { ctx, response }, &self.stats);
            }
            Outcome::Failed(ctx, error) => {
                deliver(
                    &self.links.errors,
                    RequestFailed { ctx, error },
                    &self.stats,
                );
            }
            Outcome::Dropped(ctx, reason) => {
                debug!(self.log, "request dropped by a middleware";
                    "request_id" => %ctx.id, "url" => %ctx.request.url, "reason" => reason);
                self.stats.inc(Counter::DownloadDropped);
                deliver(&self.links.completed, Completed { id: ctx.id }, &self.stats);
            }
        }
    }
}

impl<C: Callback> Handler<WorkerCrashed> for Pool<C> {
    type Result = ();

    fn handle(&mut self, msg: WorkerCrashed, _: &mut Self::Context) {
        let w = msg.worker;
        if w >= self.epochs.len() || msg.epoch < self.epochs[w] {
            // A second report from an incarnation already handled.
            return;
        }
        self.epochs[w] = msg.epoch + 1;
        self.load[w] = 0;
        self.stats.inc(Counter::WorkerRestarts);
        let held: Vec<Uuid> = self
            .in_flight
            .iter()
            .filter(|(_, (worker, _))| *worker == w)
            .map(|(id, _)| *id)
            .collect();
        let mut requeue = Vec::with_capacity(held.len());
        for id in held {
            let (_, mut ctx) = self.in_flight.remove(&id).expect("listed above");
            if id == msg.id {
                ctx.crashes += 1;
                if ctx.crashes > self.max_crashes {
                    let error = Error::new(Stage::Download, ErrorKind::Panic(msg.panic.clone()))
                        .with_url(&ctx.request.url)
                        .with_attempt(ctx.attempt);
                    deliver(
                        &self.links.errors,
                        RequestFailed { ctx, error },
                        &self.stats,
                    );
                    continue;
                }
            }
            requeue.push(ctx);
        }
        error!(self.log, "downloader crashed; re-queueing what it held";
            "worker" => w, "requeued" => requeue.len(), "panic" => &msg.panic);
        if !requeue.is_empty() {
            deliver(&self.links.requeue, Requeue { batch: requeue }, &self.stats);
        }
    }
}

impl<C: Callback> Handler<Shutdown> for Pool<C> {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
