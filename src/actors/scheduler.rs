//! Scheduler: admits requests and hands them out as download slots free.
//!
//! Requests arrive in batches (`Enqueue`) from the parser, the error handler
//! and the downloader pool, and lazily from the spider's start-request
//! iterator. Each goes through the DupeFilter unless it is `dont_filter` or
//! de-duplication is off, then into the CacheQueue. The scheduler holds the
//! crawl's global concurrency as credits: it pops from the queue only while
//! fewer than `concurrency` requests are in flight, and a slot frees only
//! when the request is `Completed` (parsed and its items through the
//! pipelines, or failed, or dropped). That is the back-pressure: at most
//! `concurrency` responses exist at once, and nothing spawns unbounded work.

use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use slog::{error, info, warn, Logger};

use crate::accounting::Accounting;
use crate::context::Context;
use crate::error::{panic_message, Error, ErrorKind, Stage};
use crate::messages::{
    deliver, Check, Completed, Dispatch, Drain, Enqueue, Pause, Pop, Push, Requeue, Resume,
    Shutdown, Stop,
};
use crate::spider::{Callback, StartRequests};
use crate::stats::{Counter, Stats};

/// How many start requests are pulled from the spider at a time.
const START_BATCH: usize = 256;

/// Where the scheduler sends things; recipients so tests can use fakes.
pub struct SchedulerLinks<C: Callback> {
    /// The queue: push.
    pub push: Recipient<Push<C>>,
    /// The queue: pop.
    pub pop: Recipient<Pop<C>>,
    /// The queue: drain on stop.
    pub drain: Recipient<Drain<C>>,
    /// The dupe filter; `None` when de-duplication is off.
    pub dupe: Option<Recipient<Check<C>>>,
    /// The downloader pool.
    pub pool: Recipient<Dispatch<C>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Running,
    Paused,
    Stopping,
}

/// The scheduler actor.
pub struct Scheduler<C: Callback> {
    /// Where it sends things.
    links: SchedulerLinks<C>,
    /// The spider's start requests, until exhausted (their one unit of open
    /// work closes then).
    starts: Option<StartRequests<C>>,
    /// Open-work counter shared with the crawl.
    accounting: Arc<Accounting>,
    /// Counters.
    stats: Arc<Stats>,
    /// Structured log.
    log: Logger,
    /// Global download concurrency: the most requests in flight at once.
    concurrency: usize,
    /// Dispatched and not yet `Completed`.
    in_flight: usize,
    /// Pushed and not yet popped (this scheduler is the queue's only user).
    queued: usize,
    /// Requests at the dupe filter, not yet queued (counted toward the
    /// start-request watermark so starts are not over-pulled).
    checking: usize,
    /// A `Pop` is outstanding; only one at a time, so credits are exact.
    popping: bool,
    /// Running, paused or stopping.
    state: State,
    /// Ties the actor to its callback type.
    _callback: PhantomData<fn() -> C>,
}

impl<C: Callback> Scheduler<C> {
    /// A scheduler that will pull `starts` and dispatch at most
    /// `concurrency` requests at once.
    pub(crate) fn new(
        links: SchedulerLinks<C>,
        starts: StartRequests<C>,
        concurrency: usize,
        accounting: Arc<Accounting>,
        stats: Arc<Stats>,
        log: Logger,
    ) -> Self {
        // The start iterator is one unit of open work until exhausted.
        accounting.open(1);
        Scheduler {
            links,
            starts: Some(starts),
            accounting,
            stats,
            log,
            concurrency: concurrency.max(1),
            in_flight: 0,
            queued: 0,
            checking: 0,
            popping: false,
            state: State::Running,
            _callback: PhantomData,
        }
    }

    /// Runs requests through the dupe filter (when on) and into the queue.
    fn accept(&mut self, batch: Vec<Context<C>>, ctx: &mut actix::Context<Self>) {
        let (free, check): (Vec<_>, Vec<_>) = match &self.links.dupe {
            None => (batch, Vec::new()),
            Some(_) => batch.into_iter().partition(|c| c.request.dont_filter),
        };
        if !free.is_empty() {
            self.admit(free);
        }
        let Some(dupe) = self.links.dupe.clone() else {
            return;
        };
        if check.is_empty() {
            return;
        }
        let n = check.len();
        self.checking += n;
        dupe.send(Check { batch: check })
            .into_actor(self)
            .map(move |res, act, ctx| {
                act.checking -= n;
                match res {
                    Ok(checked) => {
                        act.stats
                            .add(Counter::DupeFiltered, checked.duplicates as u64);
                        act.accounting.close(checked.duplicates);
                        act.admit(checked.accepted);
                    }
                    Err(e) => {
                        error!(act.log, "dupe filter unreachable; requests lost"; "count" => n, "error" => %e);
                        act.stats.add(Counter::LostMessages, n as u64);
                        act.accounting.close(n);
                    }
                }
                act.pump(ctx);
            })
            .spawn(ctx);
    }

    /// Queues accepted requests (when stopping, counts them enqueued and
    /// unprocessed instead, so `enqueued = dequeued + unprocessed` holds).
    fn admit(&mut self, batch: Vec<Context<C>>) {
        let n = batch.len();
        if n == 0 {
            return;
        }
        self.stats.add(Counter::Enqueued, n as u64);
        if let Some(depth) = batch.iter().map(|c| c.request.depth).max() {
            self.stats.max(Counter::DepthMax, u64::from(depth));
        }
        if self.state == State::Stopping {
            // Accepted (and recorded as seen) but never to be dispatched.
            self.stats.add(Counter::Unprocessed, n as u64);
            self.accounting.close(n);
            return;
        }
        self.queued += n;
        deliver(&self.links.push, Push { batch }, &self.stats);
    }

    /// Pulls start requests while the queue is short of work.
    fn pull_starts(&mut self, ctx: &mut actix::Context<Self>) {
        if self.state != State::Running || self.queued + self.checking >= 2 * self.concurrency {
            return;
        }
        let Some(starts) = self.starts.as_mut() else {
            return;
        };
        let pulled = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let batch: Vec<_> = starts.by_ref().take(START_BATCH).collect();
            batch
        }));
        let (batch, exhausted) = match pulled {
            Ok(batch) => {
                let exhausted = batch.len() < START_BATCH;
                (batch, exhausted)
            }
            Err(panic) => {
                let err = Error::new(Stage::Setup, ErrorKind::Panic(panic_message(&*panic)));
                error!(self.log, "start_requests panicked; no more start requests"; "error" => %err);
                self.stats.inc(Counter::SpiderExceptions);
                (Vec::new(), true)
            }
        };
        let batch: Vec<_> = batch.into_iter().map(|r| Context::new(r, None)).collect();
        self.accounting.open(batch.len());
        if exhausted {
            self.starts = None;
            info!(self.log, "start requests exhausted");
            self.accounting.close(1);
        }
        self.accept(batch, ctx);
    }

    /// Hands queued requests to the pool while slots are free.
    fn pump(&mut self, ctx: &mut actix::Context<Self>) {
        self.pull_starts(ctx);
        self.publish_gauges();
        let free = self.concurrency.saturating_sub(self.in_flight);
        if self.state != State::Running || self.popping || free == 0 || self.queued == 0 {
            return;
        }
        self.popping = true;
        let pop = Pop {
            max: free,
            _callback: PhantomData,
        };
        self.links
            .pop
            .send(pop)
            .into_actor(self)
            .map(|res, act, ctx| {
                act.popping = false;
                match res {
                    Ok(Ok(batch)) => act.dispatch(batch),
                    Ok(Err(e)) => {
                        warn!(act.log, "queue pop failed; retrying"; "error" => %e);
                        ctx.run_later(Duration::from_millis(100), |act, ctx| act.pump(ctx));
                        return;
                    }
                    Err(e) => error!(act.log, "queue unreachable"; "error" => %e),
                }
                act.pump(ctx);
            })
            .spawn(ctx);
    }

    fn publish_gauges(&self) {
        self.stats.set(Counter::InFlight, self.in_flight as u64);
        self.stats.set(Counter::Queued, self.queued as u64);
    }

    fn dispatch(&mut self, batch: Vec<Context<C>>) {
        self.queued = self.queued.saturating_sub(batch.len());
        if self.state == State::Stopping {
            // Popped just before a stop: these were never dispatched.
            self.stats.add(Counter::Unprocessed, batch.len() as u64);
            self.accounting.close(batch.len());
            return;
        }
        self.stats.add(Counter::Dequeued, batch.len() as u64);
        for mut c in batch {
            self.in_flight += 1;
            c.attempt += 1;
            deliver(&self.links.pool, Dispatch { ctx: c }, &self.stats);
        }
    }
}

impl<C: Callback> Actor for Scheduler<C> {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.pump(ctx);
    }
}

impl<C: Callback> Handler<Enqueue<C>> for Scheduler<C> {
    type Result = ();

    fn handle(&mut self, msg: Enqueue<C>, ctx: &mut Self::Context) {
        self.accept(msg.batch, ctx);
        self.pump(ctx);
    }
}

impl<C: Callback> Handler<Requeue<C>> for Scheduler<C> {
    type Result = ();

    fn handle(&mut self, msg: Requeue<C>, ctx: &mut Self::Context) {
        let n = msg.batch.len();
        self.in_flight = self.in_flight.saturating_sub(n);
        self.stats.add(Counter::Requeued, n as u64);
        if self.state == State::Stopping {
            self.stats.add(Counter::Unprocessed, n as u64);
            self.accounting.close(n);
        } else {
            self.queued += n;
            deliver(&self.links.push, Push { batch: msg.batch }, &self.stats);
        }
        self.pump(ctx);
    }
}

impl<C: Callback> Handler<Completed> for Scheduler<C> {
    type Result = ();

    fn handle(&mut self, _: Completed, ctx: &mut Self::Context) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.accounting.close(1);
        self.pump(ctx);
    }
}

impl<C: Callback> Handler<Pause> for Scheduler<C> {
    type Result = Result<(), Error>;

    fn handle(&mut self, _: Pause, _: &mut Self::Context) -> Self::Result {
        match self.state {
            State::Stopping => Err(stopping("pause")),
            _ => {
                self.state = State::Paused;
                info!(self.log, "paused"; "in_flight" => self.in_flight, "queued" => self.queued);
                Ok(())
            }
        }
    }
}

impl<C: Callback> Handler<Resume> for Scheduler<C> {
    type Result = Result<(), Error>;

    fn handle(&mut self, _: Resume, ctx: &mut Self::Context) -> Self::Result {
        match self.state {
            State::Stopping => Err(stopping("resume")),
            _ => {
                self.state = State::Running;
                info!(self.log, "resumed"; "queued" => self.queued);
                self.pump(ctx);
                Ok(())
            }
        }
    }
}

impl<C: Callback> Handler<Stop> for Scheduler<C> {
    type Result = Result<(), Error>;

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) -> Self::Result {
        if self.state == State::Stopping {
            return Ok(());
        }
        info!(self.log, "stopping"; "in_flight" => self.in_flight, "queued" => self.queued);
        self.state = State::Stopping;
        if self.starts.take().is_some() {
            self.accounting.close(1);
        }
        let drain = Drain {
            _callback: PhantomData,
        };
        self.links
            .drain
            .send(drain)
            .into_actor(self)
            .map(|res, act, _| match res {
                Ok(Ok(left)) => {
                    act.queued = act.queued.saturating_sub(left.len());
                    act.stats.add(Counter::Unprocessed, left.len() as u64);
                    act.accounting.close(left.len());
                    act.publish_gauges();
                }
                Ok(Err(e)) => error!(act.log, "queue drain failed"; "error" => %e),
                Err(e) => error!(act.log, "queue unreachable"; "error" => %e),
            })
            .spawn(ctx);
        Ok(())
    }
}

impl<C: Callback> Handler<Shutdown> for Scheduler<C> {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

fn stopping(what: &str) -> Error {
    Error::new(
        Stage::Control,
        ErrorKind::IllegalState(format!("cannot {what} a crawl that is stopping")),
    )
}
