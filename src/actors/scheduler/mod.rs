//! Scheduler: admits requests and hands them out as download slots free.
//!
//! Requests arrive in batches (`Enqueue`) from the parser, the error handler
//! and the downloader pool, and lazily from the spider's start-request
//! iterator and from the lazy sources parse callbacks emitted
//! (`EnqueueSources`). Admission first applies the crawl's policies — depth limit and
//! depth priority, offsite filtering (`offsite/filtered`) — then the
//! DupeFilter (unless the request is `dont_filter` or de-duplication is
//! off), then the CacheQueue.
//!
//! Dispatch holds two limits. The crawl's global concurrency is a credit:
//! a slot frees only when the request is `Completed` (parsed and its items
//! through the pipelines, or failed, or dropped), so at most `concurrency`
//! responses exist at once. Per host, the politeness slots say how many
//! more requests each host may start now (its concurrency, delay,
//! AutoThrottle, `Retry-After`, rate limits); each pop asks the queue for
//! the best requests of the hosts that may take them, so a slow host never
//! starves the others. When every host with work is resting, a timer wakes
//! the Scheduler when the first becomes ready; `Released` (a download ended)
//! wakes it too. With robots.txt obedience on, a request is checked just
//! before dispatch.
//!
//! This file holds the actor and its handlers; each job is a sibling file:
//! - `config`: [`SchedulerConfig`] and [`SchedulerOutbox`];
//! - `starts`: pulling the start requests lazily;
//! - `sources`: pulling the lazy sources of requests callbacks emitted;
//! - `deferred`: a re-crawl's revisits that wait for their sitemap;
//! - `admission`: admission policies, dupe checks batched one at a time;
//! - `dispatch`: pops, held requests, the wake-up timer, gauges, the pool;
//! - `robots`: robots.txt checks and fetches (the actor glue);
//! - `checkpoints`: what changed for the job directory, and its writes;
//! - `shared`: a shared queue's acknowledgements and membership;
//! - `watermark`: changes held behind the dupe checks sent before them.

mod admission;
mod checkpoints;
mod config;
mod deferred;
mod dispatch;
mod robots;
mod shared;
mod sources;
mod starts;
mod watermark;

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use slog::{error, info, warn, Logger};
use uuid::Uuid;

use crate::accounting::Accounting;
use crate::context::Context;
use crate::error::{Error, ErrorKind, Stage};
use crate::events::{CheckpointInfo, CrawlEvent};
use crate::jobdir::CheckpointPolicy;
use crate::jobdir::WaitingPage;
use crate::messages::{
    Checkpoint, CheckpointPipelines, Completed, Drain, Enqueue, EnqueueSources, ForceStop,
    HostSlots, PageFetched, Pause, Released, Requeue, Resume, SharedStatus, Shutdown, Stop,
    WriteCheckpoint,
};
use crate::politeness::robots::RobotsCache;
use crate::politeness::slots::Slots;
use crate::request::Callback;
use crate::spider::StartRequests;
use crate::state::CrawlState;
use crate::stats::{Counter, Stats};
use admission::CheckSeqs;
use checkpoints::Checkpoints;
pub(crate) use config::{SchedulerConfig, SchedulerOutbox};
pub(crate) use shared::SharedQueue;

/// The scheduler actor.
pub(crate) struct Scheduler<C: Callback> {
    /// Where it sends things: recipients, so tests can put fakes in place
    /// of the queue, the dupe filter and the pool.
    outbox: SchedulerOutbox<C>,
    /// The spider's start requests, pulled a batch at a time so millions of
    /// them are never all in memory; `None` once exhausted (their one unit
    /// of open work closes then) or stopped.
    starts: Option<StartRequests<C>>,
    /// Lazy sources of requests from parse callbacks, pulled like the
    /// start requests.
    sources: sources::Sources<C>,
    /// Admission and dispatch policies.
    config: SchedulerConfig,
    /// Per-host politeness state: how many more requests each host may
    /// start now, so a pop asks only for what the hosts can take.
    slots: Slots,
    /// The most host slots published in `scheduler/host_slots_max`: the
    /// stat is written only when the slots' peak passes it.
    host_slots_published: usize,
    /// robots.txt rules per origin, when obeyed (`None`: no check at all).
    robots: Option<RobotsCache>,
    /// Requests waiting for their origin's robots.txt, by origin: released
    /// together when it is known, and counted in the queued gauge meanwhile.
    robots_waiting: HashMap<String, Vec<Context<C>>>,
    /// robots.txt fetches under way and waiting for a place.
    robots_fetches: robots::RobotsFetches,
    /// Open-work counter shared with the crawl: how the Engine learns the
    /// crawl is finished.
    accounting: Arc<Accounting>,
    /// Counters and gauges the crawl reports.
    stats: Arc<Stats>,
    /// Structured log.
    log: Logger,
    /// Dispatched and not yet `Completed` (or re-queued): their ids, so a
    /// forced stop can abandon them once and ignore their late completion.
    /// Hashed with foldhash (hashbrown's default): random ids, two
    /// lookups per page.
    in_flight: hashbrown::HashSet<Uuid>,
    /// Pushed and not yet popped (this scheduler is the queue's only user);
    /// re-synced from the queue's own count on every pop.
    queued: usize,
    /// Pushed since the outstanding `Pop` was sent: the queue answers that
    /// pop before it sees these, so they add to its `remaining`.
    pushed_since_pop: usize,
    /// Popped but not dispatched: popped while paused (dispatched first on
    /// resume, never while paused), or cleared by robots.txt and waiting for
    /// a free slot.
    held: Vec<Context<C>>,
    /// Requests waiting out a retry backoff before going back to the queue:
    /// each timer and how many requests it holds (a stop cancels them and
    /// counts those requests unprocessed instead of waiting).
    delayed: HashMap<u64, (SpawnHandle, usize)>,
    /// Names the next retry timer, so a timer that fires can remove its
    /// own entry from `delayed`.
    next_delay: u64,
    /// Requests at the dupe filter, not yet queued (counted toward the
    /// start-request watermark so starts are not over-pulled).
    checking: usize,
    /// Of those, the ones waiting for the `Check` out to return, batch by
    /// batch as they came (joined when sent: each request is copied once,
    /// instead of again at every doubling of one growing vector), each with
    /// its watermark positions (job directory, shared queue).
    to_check: Vec<(Vec<Context<C>>, CheckSeqs)>,
    /// Emitted batches held while a re-crawl's revisits are pulled
    /// (`accept_emitted`), their watermark positions taken.
    held_checks: Vec<(Vec<Context<C>>, CheckSeqs)>,
    /// A `Check` is with the dupe filter: the next waits for its answer, so
    /// a backlog goes in one call.
    check_in_flight: bool,
    /// A `Pop` is outstanding; only one at a time, so credits are exact.
    popping: bool,
    /// The last pop found nothing any host may take now: wait for a
    /// release, new work or the wake-up timer before popping again.
    stalled: bool,
    /// Something that could let a host take work happened since the
    /// outstanding `Pop` was sent (a release, a completion, new work, a
    /// timer): an empty answer to that pop is then stale and must not
    /// stall the Scheduler, or that wake-up would be lost.
    changed: bool,
    /// The pending wake-up, if any: kept so an earlier one can replace it.
    wake: Option<(Instant, SpawnHandle)>,
    /// Running, paused or stopping (the Engine, not the Scheduler, makes a
    /// crawl finished): paused holds popped requests, stopping counts new
    /// ones unprocessed and refuses pause and resume.
    state: CrawlState,
    /// Checkpoint bookkeeping, when the crawl has a job directory.
    checkpoints: Option<Checkpoints<C>>,
    /// Start requests pulled so far (over every run of a job): the position
    /// a job directory records and a shared queue is told once they are
    /// all queued.
    starts_pulled: u64,
    /// Start requests before this position are a re-crawl's revisits
    /// (`with_revisits`).
    revisits_until: u64,
    /// A re-crawl's revisits that wait for their sitemap.
    deferred: deferred::Deferred,
    /// Requests restored from the job directory, queued when the actor
    /// starts: already recorded and through the dupe filter, they skip
    /// admission.
    restored: Vec<Context<C>>,
    /// In a distributed crawl: acknowledgements and membership.
    shared: Option<SharedQueue>,
}

impl<C: Callback> Scheduler<C> {
    /// A scheduler that will pull `starts` and dispatch under `config`.
    pub(crate) fn new(
        outbox: SchedulerOutbox<C>,
        starts: StartRequests<C>,
        config: SchedulerConfig,
        accounting: Arc<Accounting>,
        stats: Arc<Stats>,
        log: Logger,
    ) -> Self {
        // The start iterator is one unit of open work until exhausted.
        accounting.open(1);
        let mut config = config;
        config.concurrency = config.concurrency.max(1);
        config.slots.concurrency = config.slots.concurrency.max(1);
        Scheduler {
            outbox,
            starts: Some(starts),
            sources: sources::Sources::default(),
            slots: Slots::new(config.slots.clone()),
            host_slots_published: 0,
            robots: config.robots_agent.is_some().then(RobotsCache::default),
            robots_waiting: HashMap::new(),
            robots_fetches: robots::RobotsFetches::default(),
            config,
            accounting,
            stats,
            log,
            in_flight: hashbrown::HashSet::new(),
            queued: 0,
            pushed_since_pop: 0,
            held: Vec::new(),
            delayed: HashMap::new(),
            next_delay: 0,
            checking: 0,
            to_check: Vec::new(),
            held_checks: Vec::new(),
            check_in_flight: false,
            popping: false,
            stalled: false,
            changed: false,
            wake: None,
            state: CrawlState::Running,
            checkpoints: None,
            starts_pulled: 0,
            revisits_until: 0,
            deferred: deferred::Deferred::new(Vec::new()),
            restored: Vec::new(),
            shared: None,
        }
    }

    /// Checkpoints to a job directory through `store`, flushing the
    /// pipelines first; `starts_pulled` start requests were consumed by
    /// earlier runs (the iterator given to `new` already skips them).
    pub(crate) fn with_job(
        mut self,
        store: Recipient<WriteCheckpoint<C>>,
        flush: Option<Recipient<CheckpointPipelines>>,
        events: tokio::sync::broadcast::Sender<CrawlEvent>,
        policy: CheckpointPolicy,
        starts_pulled: u64,
    ) -> Self {
        let starts = crate::jobdir::StartsState {
            pulled: starts_pulled,
            exhausted: false,
        };
        let stats = self.stats.clone();
        let checkpoints = Checkpoints::new(store, flush, events, policy, starts, stats);
        self.checkpoints = Some(checkpoints);
        self.starts_pulled = starts_pulled;
        self
    }

    /// Shares the queue with other workers of a distributed crawl: popped
    /// requests are acknowledged when done, and the crawl is over for this
    /// worker when the Coordinator says the whole crawl is. The start
    /// requests are pulled only while the Coordinator says this worker
    /// owns them; the open-work unit they hold stays open until then.
    pub(crate) fn with_shared_queue(mut self, shared: SharedQueue) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Fetches robots.txt (when obeyed) with the crawl's download settings:
    /// its proxies, User-Agent and timeout. Without this, a direct
    /// connection with the defaults.
    pub(crate) fn with_robots_download(mut self, download: crate::http::DownloadConfig) -> Self {
        self.robots_fetches = robots::RobotsFetches::new(download);
        self
    }

    /// The first `until` start requests are a re-crawl's revisits of known
    /// pages: they are pulled whatever the queue holds, and requests
    /// emitted before they all are wait for them, so each passes the dupe
    /// filter before any link to its page can (a page is then fetched
    /// once, as a revisit). The `deferred` revisits wait for a request for
    /// their page (`deferred`).
    pub(crate) fn with_revisits(mut self, until: u64, deferred: Vec<WaitingPage>) -> Self {
        self.revisits_until = until;
        self.deferred = deferred::Deferred::new(deferred);
        self
    }

    /// Queues these requests (pending in the job directory) on start.
    pub(crate) fn with_restored(mut self, pending: Vec<Context<C>>) -> Self {
        self.restored = pending;
        self
    }
}

impl<C: Callback> Actor for Scheduler<C> {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let restored = std::mem::take(&mut self.restored);
        if !restored.is_empty() {
            // Pending in the job directory: already recorded and through
            // the dupe filter; enqueued again in this run.
            info!(self.log, "resuming requests from the job directory"; "count" => restored.len());
            self.accounting.open(restored.len());
            self.stats.add(Counter::Enqueued, restored.len() as u64);
            self.push(restored);
        }
        if let Some(d) = &self.checkpoints {
            ctx.run_interval(d.policy.every, |act, ctx| act.checkpoint(ctx, None, false));
        }
        self.pump(ctx);
    }
}

impl<C: Callback> Handler<Enqueue<C>> for Scheduler<C> {
    type Result = ();

    fn handle(&mut self, msg: Enqueue<C>, ctx: &mut Self::Context) {
        self.accept_emitted(msg.batch, ctx);
        self.pump(ctx);
    }
}

impl<C: Callback> Handler<EnqueueSources<C>> for Scheduler<C> {
    type Result = ();

    fn handle(&mut self, msg: EnqueueSources<C>, ctx: &mut Self::Context) {
        self.add_sources(msg.sources, ctx);
        self.pump(ctx);
    }
}

impl<C: Callback> Handler<Requeue<C>> for Scheduler<C> {
    type Result = ();

    fn handle(&mut self, msg: Requeue<C>, ctx: &mut Self::Context) {
        // Requests a forced stop abandoned are already counted and closed.
        let mut msg = msg;
        msg.batch.retain(|c| self.in_flight.remove(&c.id));
        let n = msg.batch.len();
        // Back in the scheduler's hands: enqueued again, as in Scrapy, so
        // `enqueued = dequeued + unprocessed` (+ robots-forbidden) holds.
        self.stats.add(Counter::Enqueued, n as u64);
        if let Some(d) = self.checkpoints.as_mut() {
            // Their attempt and retry counts changed.
            d.added(&msg.batch, false);
        }
        if self.state == CrawlState::Stopping {
            self.unprocessed(n);
        } else if let Some(delay) = msg.delay {
            let key = self.next_delay;
            self.next_delay += 1;
            let batch = msg.batch;
            let handle = ctx.run_later(delay, move |act, ctx| {
                act.delayed.remove(&key);
                act.push(batch);
                act.pump(ctx);
            });
            self.delayed.insert(key, (handle, n));
        } else {
            self.push(msg.batch);
        }
        self.pump(ctx);
    }
}

impl<C: Callback> Handler<PageFetched<C>> for Scheduler<C> {
    type Result = ();

    fn handle(&mut self, msg: PageFetched<C>, _: &mut Self::Context) {
        // Sent before the request's `Completed`, which records it.
        if let Some(checkpoints) = self.checkpoints.as_mut() {
            checkpoints.page(msg.id, msg.update, msg.counter);
        }
    }
}

impl<C: Callback> Handler<Released> for Scheduler<C> {
    type Result = ();

    fn handle(&mut self, msg: Released, ctx: &mut Self::Context) {
        self.slots.released(&msg.report, Instant::now());
        self.unstall();
        self.pump(ctx);
    }
}

impl<C: Callback> Handler<Completed> for Scheduler<C> {
    type Result = ();

    fn handle(&mut self, msg: Completed, ctx: &mut Self::Context) {
        if !self.in_flight.remove(&msg.id) {
            // Abandoned by a forced stop: already counted and closed (and
            // still pending in the job directory).
            return;
        }
        self.done(msg.id);
        if self.checkpoints.as_ref().is_some_and(Checkpoints::due) {
            self.checkpoint(ctx, None, false);
        }
        self.unstall();
        self.pump(ctx);
    }
}

impl<C: Callback> Handler<SharedStatus> for Scheduler<C> {
    type Result = ();

    fn handle(&mut self, msg: SharedStatus, ctx: &mut Self::Context) {
        let Some(s) = self.shared.as_mut() else {
            return;
        };
        if msg.owns_starts && !s.owns_starts && self.starts.is_some() {
            info!(self.log, "this worker pulls the start requests");
            s.owns_starts = true;
        }
        if msg.finished {
            self.leave_crawl();
            return;
        }
        if msg.queued > 0 && self.queued == 0 {
            // Other workers queued requests.
            self.queued = usize::try_from(msg.queued).unwrap_or(usize::MAX);
        }
        // Looks again at hosts the last pop found busy, too.
        self.unstall();
        self.pump(ctx);
    }
}

impl<C: Callback> Handler<HostSlots> for Scheduler<C> {
    type Result = MessageResult<HostSlots>;

    fn handle(&mut self, _: HostSlots, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.slots.snapshot(Instant::now()))
    }
}

impl<C: Callback> Handler<Pause> for Scheduler<C> {
    type Result = Result<(), Error>;

    fn handle(&mut self, _: Pause, _: &mut Self::Context) -> Self::Result {
        match self.state {
            CrawlState::Stopping => Err(stopping("pause")),
            _ => {
                self.state = CrawlState::Paused;
                info!(self.log, "paused"; "in_flight" => self.in_flight.len(), "queued" => self.queued);
                Ok(())
            }
        }
    }
}

impl<C: Callback> Handler<Resume> for Scheduler<C> {
    type Result = Result<(), Error>;

    fn handle(&mut self, _: Resume, ctx: &mut Self::Context) -> Self::Result {
        match self.state {
            CrawlState::Stopping => Err(stopping("resume")),
            _ => {
                self.state = CrawlState::Running;
                self.unstall();
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
        if self.state == CrawlState::Stopping {
            return Ok(());
        }
        info!(self.log, "stopping"; "in_flight" => self.in_flight.len(), "queued" => self.queued);
        self.state = CrawlState::Stopping;
        if self.starts.take().is_some() && self.shared.is_none() {
            self.accounting.close(1);
        }
        self.drop_sources();
        self.drop_deferred();
        // No more revisits are pulled: held batches are checked now.
        self.send_checks(ctx);
        // This worker leaves; a distributed crawl goes on without it.
        self.leave_crawl();
        let held = std::mem::take(&mut self.held).len();
        let waiting: usize = self.robots_waiting.drain().map(|(_, w)| w.len()).sum();
        let mut delayed = 0;
        for (_, (timer, n)) in self.delayed.drain() {
            ctx.cancel_future(timer);
            delayed += n;
        }
        self.unprocessed(held + waiting + delayed);
        let drain = Drain {
            _callback: PhantomData,
        };
        self.outbox
            .drain
            .send(drain)
            .into_actor(self)
            .map(|res, act, _| match res {
                Ok(Ok(left)) => {
                    act.queued = act.queued.saturating_sub(left);
                    act.unprocessed(left);
                    act.publish_gauges();
                }
                Ok(Err(e)) => {
                    // What the queue held can no longer be dispatched: count
                    // it unprocessed so the crawl still ends.
                    error!(act.log, "queue drain failed"; "error" => %e, "lost" => act.queued);
                    let left = std::mem::take(&mut act.queued);
                    act.unprocessed(left);
                }
                Err(e) => {
                    error!(act.log, "queue unreachable"; "error" => %e, "lost" => act.queued);
                    let left = std::mem::take(&mut act.queued);
                    act.unprocessed(left);
                }
            })
            .spawn(ctx);
        Ok(())
    }
}

impl<C: Callback> Handler<ForceStop> for Scheduler<C> {
    type Result = ();

    /// The drain deadline passed (or a second stop came): requests still in
    /// flight are abandoned — counted unprocessed, their work closed — so
    /// the crawl finishes now; their late completions are ignored.
    fn handle(&mut self, _: ForceStop, ctx: &mut Self::Context) {
        if self.state != CrawlState::Stopping {
            let _ = <Self as Handler<Stop>>::handle(self, Stop, ctx);
        }
        let abandoned = self.in_flight.len();
        if abandoned > 0 {
            warn!(self.log, "forced stop: abandoning requests in flight"; "count" => abandoned);
            self.in_flight.clear();
            self.unprocessed(abandoned);
            self.publish_gauges();
        }
        self.stop_waiting_for_acks();
    }
}

impl<C: Callback> Handler<Checkpoint> for Scheduler<C> {
    type Result = ResponseFuture<Result<CheckpointInfo, Error>>;

    fn handle(&mut self, _: Checkpoint, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.checkpoint(ctx, Some(tx), true);
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                Err(Error::new(
                    Stage::Control,
                    ErrorKind::IllegalState("the crawl has finished".into()),
                ))
            })
        })
    }
}

impl<C: Callback> Handler<Shutdown> for Scheduler<C> {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Why a pause or resume is refused once the crawl is stopping.
fn stopping(what: &str) -> Error {
    Error::new(
        Stage::Control,
        ErrorKind::IllegalState(format!("cannot {what} a crawl that is stopping")),
    )
}

#[cfg(test)]
mod tests;
