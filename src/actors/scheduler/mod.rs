//! Scheduler: admits requests and hands them out as download slots free.
//!
//! Requests arrive in batches (`Enqueue`) from the parser, the error handler
//! and the downloader pool, and lazily from the spider's start-request
//! iterator. Admission first applies the crawl's policies — depth limit and
//! depth priority, offsite filtering (`offsite/filtered`) — then the
//! DupeFilter (unless the request is `dont_filter` or de-duplication is
//! off), then the CacheQueue.
//!
//! Dispatch holds two limits. The crawl's global concurrency is a credit:
//! a slot frees only when the request is `Completed` (parsed and its items
//! through the pipelines, or failed, or dropped), so at most `concurrency`
//! responses exist at once. Per host, the [`slots`] state says how many
//! more requests each host may start now (its concurrency, delay,
//! AutoThrottle, `Retry-After`, rate limits); each pop asks the queue for
//! the best requests of the hosts that may take them, so a slow host never
//! starves the others. When every host with work is resting, a timer wakes
//! the Scheduler when the first becomes ready; `Released` (a download ended)
//! wakes it too. With robots.txt obedience on, a request is checked just
//! before dispatch ([`robots`]).

mod checkpoints;
pub(crate) mod watermark;

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use slog::{debug, error, info, warn, Logger};
use uuid::Uuid;

use crate::accounting::Accounting;
use crate::context::Context;
use crate::error::{panic_message, Error, ErrorKind, Stage};
use crate::events::CheckpointInfo;
use crate::events::CrawlEvent;
use crate::http::thread_client;
use crate::jobdir::CheckpointPolicy;
use crate::messages::WriteCheckpoint;
use crate::messages::{
    deliver, Ack, Check, Checkpoint, CheckpointPipelines, Completed, Dispatch, Drain, Enqueue,
    ForceStop, HostSlots, Pause, Pop, Push, Released, Requeue, Resume, SharedStatus, Shutdown,
    StartsQueued, Stop,
};
use crate::politeness::robots::{self, RobotsCache, Verdict};
use crate::politeness::slots::{SlotConfig, Slots};
use crate::request::slot_of;
use crate::request::Callback;
use crate::spider::StartRequests;
use crate::stats::{Counter, Stats};
use checkpoints::{Durable, Waiter};
use watermark::Watermark;

/// How many start requests are pulled from the spider at a time.
const START_BATCH: usize = 256;

/// Where the scheduler sends things; recipients so tests can use fakes.
pub struct SchedulerOutbox<C: Callback> {
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

/// The scheduling policies of a crawl (set through the builder).
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Most requests in flight at once, over all hosts. Default 16.
    pub concurrency: usize,
    /// Per-host politeness.
    pub slots: SlotConfig,
    /// Drop requests deeper than this (`depth/filtered`). Default none.
    pub depth_limit: Option<u32>,
    /// Subtracted from a request's priority per level of depth (by the
    /// Parser, when it gives a new request its depth): positive crawls
    /// breadth-first, negative depth-first. Default 0.
    pub depth_priority: i32,
    /// When not empty, only these domains (and their subdomains) are
    /// crawled; others are dropped (`offsite/filtered`) unless
    /// `dont_filter`. Default empty.
    pub allowed_domains: Vec<String>,
    /// Obey robots.txt: fetch it with this User-Agent and match its rules
    /// for the User-Agent's product token. Default off.
    pub robots_agent: Option<String>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            concurrency: 16,
            slots: SlotConfig::default(),
            depth_limit: None,
            depth_priority: 0,
            allowed_domains: Vec::new(),
            robots_agent: None,
        }
    }
}

impl SchedulerConfig {
    /// The defaults with a global concurrency of `n`.
    pub fn with_concurrency(n: usize) -> Self {
        SchedulerConfig {
            concurrency: n,
            ..SchedulerConfig::default()
        }
    }
}

/// A change a shared queue learns after the dupe checks sent before it.
enum Mark {
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
    owns_starts: bool,
    /// This worker's one unit of open work for its membership of the
    /// crawl, closed when the whole crawl is finished (or this worker
    /// stops): the Engine cannot see the crawl idle before.
    member: bool,
    /// Acknowledgements held behind outstanding dupe checks.
    marks: Watermark<Mark>,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Running,
    Paused,
    Stopping,
}

/// Where a batch sent to the dupe filter stands in the job directory's
/// and the shared queue's watermarks, when they are on.
type CheckSeqs = (Option<u64>, Option<u64>);

/// The scheduler actor.
pub struct Scheduler<C: Callback> {
    /// Where it sends things.
    outbox: SchedulerOutbox<C>,
    /// The spider's start requests, until exhausted (their one unit of open
    /// work closes then).
    starts: Option<StartRequests<C>>,
    /// Admission and dispatch policies.
    config: SchedulerConfig,
    /// Per-host politeness state.
    slots: Slots,
    /// robots.txt rules per origin, when obeyed.
    robots: Option<RobotsCache>,
    /// Requests waiting for their origin's robots.txt, by origin.
    robots_waiting: HashMap<String, Vec<Context<C>>>,
    /// Open-work counter shared with the crawl.
    accounting: Arc<Accounting>,
    /// Counters.
    stats: Arc<Stats>,
    /// Structured log.
    log: Logger,
    /// Dispatched and not yet `Completed` (or re-queued): their ids, so a
    /// forced stop can abandon them once and ignore their late completion.
    in_flight: HashSet<Uuid>,
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
    /// Names the next retry timer.
    next_delay: u64,
    /// Requests at the dupe filter, not yet queued (counted toward the
    /// start-request watermark so starts are not over-pulled).
    checking: usize,
    /// Of those, the ones waiting for the `Check` out to return, batch by
    /// batch as they came (joined when sent: each request is copied once,
    /// instead of again at every doubling of one growing vector), each with
    /// its watermark positions (job directory, shared queue).
    to_check: Vec<(Vec<Context<C>>, CheckSeqs)>,
    /// A `Check` is with the dupe filter.
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
    /// The pending wake-up, if any.
    wake: Option<(Instant, SpawnHandle)>,
    /// Running, paused or stopping.
    state: State,
    /// Checkpoint bookkeeping, when the crawl has a job directory.
    durable: Option<Durable<C>>,
    /// Start requests pulled so far (over every run of a job).
    starts_pulled: u64,
    /// Requests restored from the job directory, queued when the actor
    /// starts.
    restored: Vec<Context<C>>,
    /// In a distributed crawl: acknowledgements and membership.
    shared: Option<SharedQueue>,
    /// Ties the actor to its callback type.
    _callback: PhantomData<fn() -> C>,
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
            slots: Slots::new(config.slots.clone()),
            robots: config.robots_agent.as_deref().map(RobotsCache::new),
            robots_waiting: HashMap::new(),
            config,
            accounting,
            stats,
            log,
            in_flight: HashSet::new(),
            queued: 0,
            pushed_since_pop: 0,
            held: Vec::new(),
            delayed: HashMap::new(),
            next_delay: 0,
            checking: 0,
            to_check: Vec::new(),
            check_in_flight: false,
            popping: false,
            stalled: false,
            changed: false,
            wake: None,
            state: State::Running,
            durable: None,
            starts_pulled: 0,
            restored: Vec::new(),
            shared: None,
            _callback: PhantomData,
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
        self.durable = Some(Durable::new(store, flush, events, policy, starts));
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

    /// Records a change for the shared queue, sent once the dupe checks
    /// before it have returned.
    fn mark(&mut self, change: Mark) {
        let Some(s) = self.shared.as_mut() else {
            return;
        };
        if let Some(change) = s.marks.record(change) {
            self.send_marks(vec![change]);
        }
    }

    /// Queues released marks for the shared queue; `flush_shared` sends
    /// them.
    fn send_marks(&mut self, marks: Vec<Mark>) {
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
    fn flush_shared(&mut self, ctx: &mut actix::Context<Self>) {
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
    fn done(&mut self, id: Uuid) {
        if let Some(d) = self.durable.as_mut() {
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
    fn leave_crawl(&mut self) {
        if let Some(s) = self.shared.as_mut() {
            if std::mem::take(&mut s.member) {
                self.accounting.close(1);
            }
        }
    }

    /// Queues these requests (pending in the job directory) on start.
    pub(crate) fn with_restored(mut self, pending: Vec<Context<C>>) -> Self {
        self.restored = pending;
        self
    }

    /// Applies the admission policies, then runs requests through the dupe
    /// filter (when on) and into the queue.
    fn accept(&mut self, batch: Vec<Context<C>>, ctx: &mut actix::Context<Self>) {
        let batch = self.admissible(batch);
        let (free, check): (Vec<_>, Vec<_>) = match &self.outbox.dupe {
            None => (batch, Vec::new()),
            Some(_) if batch.iter().all(|c| !c.request.dont_filter) => (Vec::new(), batch),
            Some(_) => batch.into_iter().partition(|c| c.request.dont_filter),
        };
        if !free.is_empty() {
            self.admit(free, false);
        }
        if check.is_empty() {
            return;
        }
        self.checking += check.len();
        // The watermarks' positions are taken now, so a completion that
        // follows is held until these are checked.
        let seq = self.durable.as_mut().map(Durable::check_sent);
        let mark_seq = self.shared.as_mut().map(|s| s.marks.check_sent());
        self.to_check.push((check, (seq, mark_seq)));
        self.send_checks(ctx);
    }

    /// Sends every request waiting for the dupe filter as one `Check`,
    /// unless one is already out: what arrives meanwhile goes together
    /// next, so a slow dupe filter (Redis) answers a backlog in one call.
    fn send_checks(&mut self, ctx: &mut actix::Context<Self>) {
        let Some(dupe) = self.outbox.dupe.clone() else {
            return;
        };
        if self.check_in_flight || self.to_check.is_empty() {
            return;
        }
        self.check_in_flight = true;
        let waiting = std::mem::take(&mut self.to_check);
        let total: usize = waiting.iter().map(|(requests, _)| requests.len()).sum();
        let mut seqs = Vec::with_capacity(waiting.len());
        let mut batch = Vec::new();
        for (requests, seq) in waiting {
            if batch.is_empty() {
                // Most often the only one: the batch itself, not a copy.
                batch = requests;
                batch.reserve_exact(total - batch.len());
            } else {
                batch.extend(requests);
            }
            seqs.push(seq);
        }
        let n = batch.len();
        dupe.send(Check { batch })
            .into_actor(self)
            .map(move |res, act, ctx| {
                act.check_in_flight = false;
                act.checking -= n;
                match res {
                    Ok(checked) => {
                        act.stats
                            .add(Counter::DupeFiltered, checked.duplicates as u64);
                        act.accounting.close(checked.duplicates);
                        act.admit(checked.accepted, true);
                    }
                    Err(e) => {
                        error!(act.log, "dupe filter unreachable; requests lost"; "count" => n, "error" => %e);
                        act.stats.add(Counter::LostMessages, n as u64);
                        act.accounting.close(n);
                    }
                }
                for (seq, mark_seq) in seqs {
                    if let (Some(d), Some(seq)) = (act.durable.as_mut(), seq) {
                        d.check_returned(seq);
                    }
                    if let (Some(s), Some(seq)) = (act.shared.as_mut(), mark_seq) {
                        let released = s.marks.check_returned(seq);
                        act.send_marks(released);
                    }
                }
                act.send_checks(ctx);
                act.pump(ctx);
            })
            .spawn(ctx);
    }

    /// Depth limit and offsite filtering; dropped requests are counted and
    /// their work closed. (Depth priority is applied once, by the Parser,
    /// when a request gets its depth.)
    fn admissible(&mut self, batch: Vec<Context<C>>) -> Vec<Context<C>> {
        let cfg = &self.config;
        if cfg.depth_limit.is_none() && cfg.allowed_domains.is_empty() {
            return batch;
        }
        let mut kept = Vec::with_capacity(batch.len());
        let (mut too_deep, mut offsite) = (0, 0);
        for c in batch {
            if cfg.depth_limit.is_some_and(|max| c.request.depth > max) {
                too_deep += 1;
                continue;
            }
            if !c.request.dont_filter && !on_site(&cfg.allowed_domains, &c.request.url) {
                debug!(self.log, "offsite request dropped"; "url" => %c.request.url);
                offsite += 1;
                continue;
            }
            kept.push(c);
        }
        if too_deep > 0 {
            self.stats.add_named("depth/filtered", too_deep);
        }
        if offsite > 0 {
            self.stats.add_named("offsite/filtered", offsite);
        }
        self.accounting.close((too_deep + offsite) as usize);
        kept
    }

    /// Queues accepted requests (when stopping, counts them enqueued and
    /// unprocessed instead, so `enqueued = dequeued + unprocessed` holds).
    /// With a job directory they are recorded first (`bloom`: their
    /// fingerprints went into the Bloom filter), so a stopped crawl resumes
    /// them.
    fn admit(&mut self, batch: Vec<Context<C>>, bloom: bool) {
        let n = batch.len();
        if n == 0 {
            return;
        }
        if let Some(d) = self.durable.as_mut() {
            d.added(&batch, bloom);
        }
        self.stats.add(Counter::Enqueued, n as u64);
        if let Some(depth) = batch.iter().map(|c| c.request.depth).max() {
            self.stats.max(Counter::DepthMax, u64::from(depth));
        }
        if self.state == State::Stopping && self.shared.is_none() {
            // Accepted (and recorded as seen) but never to be dispatched.
            // (A shared queue takes them: the crawl goes on elsewhere.)
            self.stats.add(Counter::Unprocessed, n as u64);
            self.accounting.close(n);
            return;
        }
        self.push(batch);
    }

    fn push(&mut self, batch: Vec<Context<C>>) {
        self.queued += batch.len();
        self.pushed_since_pop += batch.len();
        self.unstall();
        deliver(&self.outbox.push, Push { batch }, &self.stats);
    }

    /// Pulls start requests while the queue is short of work.
    fn pull_starts(&mut self, ctx: &mut actix::Context<Self>) {
        // A batch the admission policies drop whole (all offsite, say)
        // leaves the queue empty and nothing in flight to pump again:
        // pull on until something is admitted, the watermark is reached or
        // the starts run out. Bounded per call; the rest continues on the
        // next turn of the event loop.
        for _ in 0..64 {
            let before = (self.queued, self.checking);
            if !self.pull_start_batch(ctx) || (self.queued, self.checking) != before {
                return;
            }
        }
        ctx.run_later(Duration::ZERO, |act, ctx| act.pump(ctx));
    }

    /// Pulls one batch of start requests if the queue is short of work;
    /// `false` when there was nothing to pull.
    fn pull_start_batch(&mut self, ctx: &mut actix::Context<Self>) -> bool {
        if self.state != State::Running
            || self.queued + self.checking >= 2 * self.config.concurrency
            || self.shared.as_ref().is_some_and(|s| !s.owns_starts)
        {
            return false;
        }
        let Some(starts) = self.starts.as_mut() else {
            return false;
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
        self.starts_pulled += batch.len() as u64;
        self.accounting.open(batch.len());
        if exhausted {
            self.starts = None;
            info!(self.log, "start requests exhausted");
            if self.shared.is_none() {
                self.accounting.close(1);
            }
        }
        self.accept(batch, ctx);
        if exhausted {
            // After the last batch's dupe check is sent.
            self.mark(Mark::StartsDone(self.starts_pulled));
        }
        // After the batch's dupe check is sent: the position is recorded
        // once the accepted ones are.
        if let Some(d) = self.durable.as_mut() {
            d.starts(self.starts_pulled, exhausted);
        }
        true
    }

    /// Hands requests to the pool while slots are free, and sends the
    /// shared queue what is ready for it.
    fn pump(&mut self, ctx: &mut actix::Context<Self>) {
        self.dispatch_free(ctx);
        // Whatever that released for the shared queue, too.
        self.flush_shared(ctx);
    }

    /// Hands requests to the pool while slots are free.
    fn dispatch_free(&mut self, ctx: &mut actix::Context<Self>) {
        self.pull_starts(ctx);
        if self.state == State::Running && !self.held.is_empty() {
            self.dispatch_held(ctx);
        }
        self.publish_gauges();
        let free = self.config.concurrency.saturating_sub(self.in_flight.len());
        if self.state != State::Running
            || self.popping
            || self.stalled
            || free == 0
            || self.queued == 0
        {
            return;
        }
        let now = Instant::now();
        let (global, allowance) = self.slots.allowance(now);
        if global == 0 {
            self.stalled = true;
            self.wake_at(self.slots.next_ready(now), ctx);
            return;
        }
        self.popping = true;
        self.pushed_since_pop = 0;
        self.changed = false;
        let pop = Pop {
            max: free.min(global),
            allowance,
            _callback: PhantomData,
        };
        self.outbox
            .pop
            .send(pop)
            .into_actor(self)
            .map(|res, act, ctx| {
                act.popping = false;
                match res {
                    Ok(Ok(popped)) => {
                        act.queued = popped.remaining + act.pushed_since_pop;
                        if popped.batch.is_empty() && !act.changed {
                            // Every host with work must wait: sleep until
                            // the first is ready (or a release wakes us).
                            act.stalled = true;
                            let next = act.slots.next_ready(Instant::now());
                            act.wake_at(next, ctx);
                        }
                        act.dispatch(popped.batch, ctx);
                    }
                    Ok(Err(e)) => {
                        warn!(act.log, "queue pop failed; retrying"; "error" => %e);
                        ctx.run_later(Duration::from_millis(100), |act, ctx| act.pump(ctx));
                        return;
                    }
                    Err(e) => {
                        // The queue is gone (only after shutdown): nothing
                        // to retry.
                        error!(act.log, "queue unreachable"; "error" => %e);
                        return;
                    }
                }
                act.pump(ctx);
            })
            .spawn(ctx);
    }

    /// Lets the next pump pop again.
    fn unstall(&mut self) {
        self.stalled = false;
        self.changed = true;
    }

    /// Schedules one wake-up at `at` (keeping an earlier one).
    fn wake_at(&mut self, at: Option<Instant>, ctx: &mut actix::Context<Self>) {
        let Some(at) = at else { return };
        if let Some((current, handle)) = self.wake {
            if current <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let wait = at.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(wait, |act, ctx| {
            act.wake = None;
            act.unstall();
            act.pump(ctx);
        });
        self.wake = Some((at, handle));
    }

    fn publish_gauges(&self) {
        self.stats
            .set(Counter::InFlight, self.in_flight.len() as u64);
        let waiting: usize = self.robots_waiting.values().map(Vec::len).sum();
        let delayed: usize = self.delayed.values().map(|(_, n)| n).sum();
        let queued = self.queued + self.held.len() + delayed + waiting;
        self.stats.set(Counter::Queued, queued as u64);
    }

    /// Sends popped requests on: held while paused, counted unprocessed
    /// while stopping, checked against robots.txt when obeyed.
    fn dispatch(&mut self, batch: Vec<Context<C>>, ctx: &mut actix::Context<Self>) {
        if self.state == State::Paused {
            self.held.extend(batch);
            return;
        }
        if self.state == State::Stopping {
            // Popped just before a stop: these were never dispatched.
            self.unprocessed(batch.len());
            return;
        }
        let now = Instant::now();
        for c in batch {
            if self.already_held(&c) {
                continue;
            }
            let Some(c) = self.robots_check(c, ctx) else {
                continue;
            };
            let host = slot_of(&c.request.url);
            if let Some(max) = c.request.max_conns_per_host {
                self.slots.cap(host, max);
            }
            // The queue honoured the allowance it was given; a request's
            // own cap may be lower, so what its host cannot take waits.
            if self.slots.can_start(host, now) {
                self.send_to_pool(c, now);
            } else {
                self.held.push(c);
            }
        }
    }

    /// In a shared queue, a request this worker still holds can come back:
    /// its lease was taken for dead and requeued, and this worker popped it
    /// again. The copy it holds goes on (and settles the new lease); the
    /// new one is dropped here, its unit of work closed.
    fn already_held(&self, c: &Context<C>) -> bool {
        if self.shared.is_none()
            || !(self.in_flight.contains(&c.id) || self.held.iter().any(|h| h.id == c.id))
        {
            return false;
        }
        warn!(self.log, "popped a request this worker still holds; dropping the copy"; "url" => %c.request.url);
        self.stats.add_named("redis/duplicate_leases", 1);
        self.accounting.close(1);
        true
    }

    /// Dispatches held requests whose host may start one now.
    fn dispatch_held(&mut self, ctx: &mut actix::Context<Self>) {
        let now = Instant::now();
        let mut keep = Vec::new();
        for c in std::mem::take(&mut self.held) {
            let Some(c) = self.robots_check(c, ctx) else {
                continue;
            };
            let room =
                self.in_flight.len() < self.config.concurrency && self.slots.global_ready(now);
            if room && self.slots.can_start(slot_of(&c.request.url), now) {
                self.send_to_pool(c, now);
            } else {
                keep.push(c);
            }
        }
        self.held = keep;
        if !self.held.is_empty() {
            let next = self.slots.next_ready(now);
            self.wake_at(next, ctx);
        }
    }

    fn send_to_pool(&mut self, mut c: Context<C>, now: Instant) {
        self.slots.started(slot_of(&c.request.url), now);
        self.in_flight.insert(c.id);
        self.stats.inc(Counter::Dequeued);
        c.attempt += 1;
        c.dispatched_at = Some(now);
        deliver(&self.outbox.pool, Dispatch { ctx: c }, &self.stats);
    }

    /// The request if robots.txt allows it (or is not obeyed); otherwise
    /// it is dropped and counted, or parked until its origin's robots.txt
    /// is known.
    fn robots_check(
        &mut self,
        c: Context<C>,
        ctx: &mut actix::Context<Self>,
    ) -> Option<Context<C>> {
        let Some(cache) = self.robots.as_mut() else {
            return Some(c);
        };
        match cache.check(&c.request.url) {
            Verdict::Allowed => Some(c),
            Verdict::Forbidden => {
                debug!(self.log, "forbidden by robots.txt"; "url" => %c.request.url);
                self.stats.add_named("robotstxt/forbidden", 1);
                self.done(c.id);
                None
            }
            Verdict::Pending { fetch } => {
                let origin = robots::origin(&c.request.url);
                self.slots.hold(slot_of(&c.request.url), true);
                if let Some(url) = fetch {
                    self.fetch_robots(origin.clone(), url, ctx);
                }
                self.robots_waiting.entry(origin).or_default().push(c);
                None
            }
        }
    }

    /// Fetches an origin's robots.txt, then releases its waiting requests.
    fn fetch_robots(&mut self, origin: String, url: url::Url, ctx: &mut actix::Context<Self>) {
        self.stats.add_named("robotstxt/request_count", 1);
        let host = slot_of(&url).to_string();
        let user_agent = self.config.robots_agent.clone().unwrap_or_default();
        let fetch = async move {
            let get = async {
                let mut resp = thread_client()
                    .get(url.as_str())
                    .insert_header(("user-agent", user_agent.as_str()))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let body = resp
                    .body()
                    .limit(512 << 10)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>((resp.status().as_u16(), body))
            };
            tokio::time::timeout(Duration::from_secs(30), get)
                .await
                .unwrap_or_else(|_| Err("timed out".into()))
        };
        fetch
            .into_actor(self)
            .map(move |res, act, ctx| {
                let body = match res {
                    Ok((status, body)) => {
                        act.stats.add_named("robotstxt/response_count", 1);
                        act.stats.add_named(
                            &format!("robotstxt/response_status_count/{status}"),
                            1,
                        );
                        (200..300).contains(&status).then_some(body)
                    }
                    Err(e) => {
                        warn!(act.log, "robots.txt unavailable; allowing all"; "origin" => &origin, "error" => e);
                        act.stats.add_named("robotstxt/exception_count", 1);
                        None
                    }
                };
                let Some(cache) = act.robots.as_mut() else { return };
                let delay = cache.learned(&origin, body.as_deref());
                act.slots.hold(&host, false);
                if let Some(delay) = delay {
                    act.slots.set_crawl_delay(&host, delay);
                }
                let waiting = act.robots_waiting.remove(&origin).unwrap_or_default();
                if act.state == State::Stopping {
                    act.unprocessed(waiting.len());
                } else {
                    act.held.extend(waiting);
                }
                act.unstall();
                act.pump(ctx);
            })
            .spawn(ctx);
    }

    /// Writes a checkpoint of what changed (flushing the pipelines first,
    /// so no completed request's items are only in memory). One write at a
    /// time: a checkpoint asked for during a write follows it. `waiter`
    /// gets the result of the write that covers everything up to now.
    fn checkpoint(&mut self, ctx: &mut actix::Context<Self>, waiter: Option<Waiter>, force: bool) {
        let Some(d) = self.durable.as_mut() else {
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
        let (flush, store) = (d.flush.clone(), d.store.clone());
        let write = async move {
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
        };
        write
            .into_actor(self)
            .map(move |(res, unwritten), act, ctx| {
                let Some(d) = act.durable.as_mut() else { return };
                d.writing = false;
                if let Some(delta) = unwritten {
                    d.restore(delta);
                }
                match &res {
                    Ok(info) => {
                        act.stats.add_named("jobdir/checkpoints", 1);
                        debug!(act.log, "checkpoint written"; "sequence" => info.sequence,
                            "pending" => info.pending, "completed" => info.completed,
                            "log_bytes" => info.log_bytes);
                        let _ = d.events.send(CrawlEvent::Checkpointed { info: info.clone() });
                    }
                    Err(e) => {
                        error!(act.log, "checkpoint failed; retried with the next one"; "error" => %e);
                        act.stats.add_named("jobdir/checkpoint_errors", 1);
                        let _ = d.events.send(CrawlEvent::error(e));
                    }
                }
                answer(waiters, res);
                if std::mem::take(&mut d.again) || d.due() {
                    act.checkpoint(ctx, None, false);
                }
            })
            .spawn(ctx);
    }

    /// Counts `n` accepted requests that will never be dispatched, and
    /// closes their work.
    fn unprocessed(&mut self, n: usize) {
        self.stats.add(Counter::Unprocessed, n as u64);
        self.accounting.close(n);
    }
}

/// Whether `url`'s host is one of `domains` (normalised) or a subdomain of
/// one (all hosts when `domains` is empty).
fn on_site(domains: &[String], url: &url::Url) -> bool {
    domains.is_empty()
        || url
            .host_str()
            .is_some_and(|host| domains.iter().any(|d| crate::host::within(host, d)))
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
        if let Some(d) = &self.durable {
            ctx.run_interval(d.policy.every, |act, ctx| act.checkpoint(ctx, None, false));
        }
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
        // Requests a forced stop abandoned are already counted and closed.
        let mut msg = msg;
        msg.batch.retain(|c| self.in_flight.remove(&c.id));
        let n = msg.batch.len();
        // Back in the scheduler's hands: enqueued again, as in Scrapy, so
        // `enqueued = dequeued + unprocessed` (+ robots-forbidden) holds.
        self.stats.add(Counter::Enqueued, n as u64);
        if let Some(d) = self.durable.as_mut() {
            // Their attempt and retry counts changed.
            d.added(&msg.batch, false);
        }
        if self.state == State::Stopping {
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
        if self.durable.as_ref().is_some_and(Durable::due) {
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
            State::Stopping => Err(stopping("pause")),
            _ => {
                self.state = State::Paused;
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
            State::Stopping => Err(stopping("resume")),
            _ => {
                self.state = State::Running;
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
        if self.state == State::Stopping {
            return Ok(());
        }
        info!(self.log, "stopping"; "in_flight" => self.in_flight.len(), "queued" => self.queued);
        self.state = State::Stopping;
        if self.starts.take().is_some() && self.shared.is_none() {
            self.accounting.close(1);
        }
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
                    act.queued = act.queued.saturating_sub(left.len());
                    act.unprocessed(left.len());
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
        if self.state != State::Stopping {
            let _ = <Self as Handler<Stop>>::handle(self, Stop, ctx);
        }
        let abandoned = self.in_flight.len();
        if abandoned > 0 {
            warn!(self.log, "forced stop: abandoning requests in flight"; "count" => abandoned);
            self.in_flight.clear();
            self.unprocessed(abandoned);
            self.publish_gauges();
        }
        // Acknowledgements still go, but no longer hold the crawl open:
        // a shared queue that does not answer cannot delay the finish.
        if let Some(s) = self.shared.as_mut() {
            s.forced = true;
            let units = std::mem::take(&mut s.open_units);
            self.accounting.close(units);
        }
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::future::ready;
    use tokio::sync::mpsc;

    use super::*;
    use crate::actors::cache_queue::CacheQueue;
    use crate::actors::dupefilter::DupeFilter;
    use crate::actors::test_support::{expect_event, log, req, Cb, Event, Events, Ping, Recorder};
    use crate::dedupe::BloomDupe;
    use crate::messages::Checked;
    use crate::politeness::SlotReport;
    use crate::queue::{BackendFuture, MemoryQueue, QueueBackend, SlotAllowance};
    use crate::request::Request;

    /// A dupe filter that calls the URLs in `dupes` seen and everything
    /// else new, and reports the URLs of every batch it is asked about.
    struct FakeDupe {
        dupes: HashSet<String>,
        asked: mpsc::UnboundedSender<Vec<String>>,
    }

    impl Actor for FakeDupe {
        type Context = actix::Context<Self>;
    }

    impl Handler<Check<Cb>> for FakeDupe {
        type Result = MessageResult<Check<Cb>>;

        fn handle(&mut self, msg: Check<Cb>, _: &mut Self::Context) -> Self::Result {
            if !msg.batch.is_empty() {
                let urls = msg.batch.iter().map(|c| c.request.url.to_string());
                let _ = self.asked.send(urls.collect());
            }
            let (dupes, accepted): (Vec<_>, Vec<_>) = msg
                .batch
                .into_iter()
                .partition(|c| self.dupes.contains(c.request.url.as_str()));
            MessageResult(Checked {
                accepted,
                duplicates: dupes.len(),
            })
        }
    }

    /// Starts a [`FakeDupe`]; the receiver yields the URLs of each batch.
    fn fake_dupe(dupes: &[&str]) -> (Recipient<Check<Cb>>, mpsc::UnboundedReceiver<Vec<String>>) {
        let (asked, rx) = mpsc::unbounded_channel();
        let dupes = dupes.iter().map(|u| u.to_string()).collect();
        (FakeDupe { dupes, asked }.start().recipient(), rx)
    }

    /// The real dupe filter over a Bloom filter.
    fn real_dupe() -> Recipient<Check<Cb>> {
        let bloom = BloomDupe::new(1000, 0.001).unwrap();
        DupeFilter::<Cb>::new(Box::new(bloom), Arc::default(), log())
            .start()
            .recipient()
    }

    /// A scheduler over the real CacheQueue, with a recorder as the pool
    /// and another as the engine (the accounting's `Idle`).
    struct Rig {
        sched: Addr<Scheduler<Cb>>,
        queue: Addr<CacheQueue<Cb>>,
        dupe: Option<Recipient<Check<Cb>>>,
        pool: Addr<Recorder<Cb>>,
        dispatched: Events<Cb>,
        engine: Addr<Recorder<Cb>>,
        engine_events: Events<Cb>,
        accounting: Arc<Accounting>,
        stats: Arc<Stats>,
    }

    fn rig(
        starts: impl IntoIterator<Item = Request<Cb>, IntoIter: Send + 'static>,
        concurrency: usize,
        dupe: Option<Recipient<Check<Cb>>>,
    ) -> Rig {
        rig_with_queue(starts, concurrency, dupe, Box::new(MemoryQueue::default()))
    }

    fn rig_with_queue(
        starts: impl IntoIterator<Item = Request<Cb>, IntoIter: Send + 'static>,
        concurrency: usize,
        dupe: Option<Recipient<Check<Cb>>>,
        backend: Box<dyn QueueBackend<Cb>>,
    ) -> Rig {
        // The fake pool sends no `Released`: give the one host unlimited
        // room so these tests see the global credits alone (per-host
        // limits are tested in `slots`, below, and in tests/it).
        let mut config = SchedulerConfig::with_concurrency(concurrency);
        config.slots.concurrency = usize::MAX;
        rig_with_config(starts, config, dupe, backend)
    }

    fn rig_with_config(
        starts: impl IntoIterator<Item = Request<Cb>, IntoIter: Send + 'static>,
        config: SchedulerConfig,
        dupe: Option<Recipient<Check<Cb>>>,
        backend: Box<dyn QueueBackend<Cb>>,
    ) -> Rig {
        rig_shared(starts, config, dupe, backend, None)
    }

    fn rig_shared(
        starts: impl IntoIterator<Item = Request<Cb>, IntoIter: Send + 'static>,
        config: SchedulerConfig,
        dupe: Option<Recipient<Check<Cb>>>,
        backend: Box<dyn QueueBackend<Cb>>,
        shared: Option<SharedQueue>,
    ) -> Rig {
        let (engine, engine_events) = Recorder::spawn();
        let (pool, dispatched) = Recorder::spawn();
        let accounting = Arc::new(Accounting::new(engine.clone().recipient()));
        let stats = Arc::new(Stats::default());
        let queue = CacheQueue::new(backend, accounting.clone(), stats.clone(), log()).start();
        let outbox = SchedulerOutbox {
            push: queue.clone().recipient(),
            pop: queue.clone().recipient(),
            drain: queue.clone().recipient(),
            dupe: dupe.clone(),
            pool: pool.clone().recipient(),
        };
        let starts: StartRequests<Cb> = Box::new(starts.into_iter());
        let mut sched = Scheduler::new(
            outbox,
            starts,
            config,
            accounting.clone(),
            stats.clone(),
            log(),
        );
        if let Some(shared) = shared {
            sched = sched.with_shared_queue(shared);
        }
        let sched = sched.start();
        Rig {
            sched,
            queue,
            dupe,
            pool,
            dispatched,
            engine,
            engine_events,
            accounting,
            stats,
        }
    }

    impl Rig {
        /// The next request dispatched to the pool.
        async fn next_dispatch(&mut self) -> Context<Cb> {
            expect_event!(self.dispatched.next().await, Event::Dispatch(c) => c)
        }

        /// Lets every chain of messages already started run to its end:
        /// no-op round trips through each actor, in data-flow order, a few
        /// times over (a chain scheduler → dupe filter → scheduler → queue
        /// → scheduler → pool needs three rounds).
        async fn settle(&self) {
            for _ in 0..5 {
                self.sched
                    .send(Enqueue { batch: Vec::new() })
                    .await
                    .unwrap();
                if let Some(dupe) = &self.dupe {
                    dupe.send(Check { batch: Vec::new() }).await.unwrap();
                }
                let pop = Pop {
                    max: 0,
                    allowance: SlotAllowance::uniform(0),
                    _callback: PhantomData,
                };
                self.queue.send(pop).await.unwrap().unwrap();
                self.pool.send(Ping).await.unwrap();
                self.engine.send(Ping).await.unwrap();
            }
        }

        /// Dispatches that arrived and were not consumed yet (after a
        /// settle: every dispatch the scheduler will make for now).
        async fn more_dispatches(&mut self) -> Vec<Event<Cb>> {
            self.settle().await;
            self.dispatched.drain()
        }

        async fn complete(&self, c: &Context<Cb>) {
            self.sched.send(Completed { id: c.id }).await.unwrap();
        }

        fn stat(&self, c: Counter) -> u64 {
            self.stats.get(c)
        }
    }

    fn pages(n: usize) -> Vec<Request<Cb>> {
        (0..n).map(|i| req(&format!("http://h/p{i}"))).collect()
    }

    fn path(c: &Context<Cb>) -> &str {
        c.request.url.path()
    }

    #[actix::test]
    async fn dispatches_at_most_concurrency_then_one_per_completed() {
        let mut r = rig(pages(5), 2, None);
        let a = r.next_dispatch().await;
        let b = r.next_dispatch().await;
        assert_eq!((path(&a), path(&b)), ("/p0", "/p1"));
        assert_eq!((a.attempt, b.attempt), (1, 1));
        assert!(r.more_dispatches().await.is_empty());
        assert_eq!(r.stat(Counter::Dequeued), 2);
        assert_eq!(r.stat(Counter::InFlight), 2);
        assert_eq!(r.stat(Counter::Queued), 3);

        r.complete(&a).await;
        let c = r.next_dispatch().await;
        assert_eq!(path(&c), "/p2");
        assert!(r.more_dispatches().await.is_empty());
        assert_eq!(r.stat(Counter::Dequeued), 3);
        assert_eq!(r.stat(Counter::InFlight), 2);
        assert_eq!(r.stat(Counter::Queued), 2);
    }

    #[actix::test]
    async fn completing_everything_reaches_zero_and_idles_exactly_once() {
        let (dupe, _asked) = fake_dupe(&["http://h/dup"]);
        let mut starts = pages(4);
        starts.push(req("http://h/dup"));
        starts.push(req("http://h/p4"));
        let mut r = rig(starts, 2, Some(dupe));
        let mut in_flight = vec![r.next_dispatch().await, r.next_dispatch().await];
        let (mut dispatched, mut completed) = (2, 0);
        while let Some(c) = in_flight.pop() {
            r.settle().await;
            assert!(r.engine_events.drain().is_empty(), "Idle before the end");
            assert_eq!(r.accounting.count(), 5 - completed);
            r.complete(&c).await;
            completed += 1;
            if dispatched < 5 {
                in_flight.push(r.next_dispatch().await);
                dispatched += 1;
            }
        }
        assert_eq!(completed, 5);
        expect_event!(r.engine_events.next().await, Event::Idle => ());
        r.settle().await;
        assert!(r.engine_events.drain().is_empty(), "a second Idle");
        assert!(r.dispatched.drain().is_empty());
        assert_eq!(r.accounting.count(), 0);
        assert_eq!(r.stat(Counter::Enqueued), 5);
        assert_eq!(r.stat(Counter::Dequeued), 5);
        assert_eq!(r.stat(Counter::DupeFiltered), 1);
        assert_eq!(r.stat(Counter::InFlight), 0);
        assert_eq!(r.stat(Counter::Queued), 0);
    }

    /// A dupe filter that reports each batch it is asked about and answers
    /// (everything new) only when the gate gives it a permit.
    struct GatedDupe {
        gate: Arc<tokio::sync::Semaphore>,
        asked: mpsc::UnboundedSender<Vec<String>>,
    }

    impl Actor for GatedDupe {
        type Context = actix::Context<Self>;
    }

    impl Handler<Check<Cb>> for GatedDupe {
        type Result = ResponseFuture<Checked<Cb>>;

        fn handle(&mut self, msg: Check<Cb>, _: &mut Self::Context) -> Self::Result {
            let urls = msg.batch.iter().map(|c| c.request.url.to_string());
            let _ = self.asked.send(urls.collect());
            let gate = self.gate.clone();
            Box::pin(async move {
                gate.acquire().await.unwrap().forget();
                Checked {
                    accepted: msg.batch,
                    duplicates: 0,
                }
            })
        }
    }

    #[actix::test]
    async fn requests_arriving_during_a_dupe_check_are_checked_together_next() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (asked_tx, mut asked) = mpsc::unbounded_channel();
        let dupe = GatedDupe {
            gate: gate.clone(),
            asked: asked_tx,
        }
        .start()
        .recipient();
        let mut r = rig(Vec::new(), 10, Some(dupe));
        let enqueue = |urls: &[&str]| {
            let batch: Vec<_> = urls.iter().map(|u| Context::new(req(u), None)).collect();
            r.accounting.open(batch.len());
            r.sched.send(Enqueue { batch })
        };
        enqueue(&["http://h/a"]).await.unwrap();
        assert_eq!(asked.recv().await.unwrap(), ["http://h/a"]);
        // While that check is out, two more batches arrive: they wait.
        enqueue(&["http://h/b"]).await.unwrap();
        enqueue(&["http://h/c", "http://h/d"]).await.unwrap();
        assert!(asked.try_recv().is_err(), "a second check went out");
        // The first answer sends them as one check.
        gate.add_permits(1);
        assert_eq!(
            asked.recv().await.unwrap(),
            ["http://h/b", "http://h/c", "http://h/d"]
        );
        gate.add_permits(1);
        let mut got: Vec<String> = Vec::new();
        for _ in 0..4 {
            got.push(r.next_dispatch().await.request.url.to_string());
        }
        got.sort();
        assert_eq!(
            got,
            ["http://h/a", "http://h/b", "http://h/c", "http://h/d"]
        );
        assert!(asked.try_recv().is_err(), "asked about more");
        assert_eq!(r.stat(Counter::Enqueued), 4);
    }

    /// A shared queue that takes acknowledgements and never answers (a
    /// Redis that hangs), and reports the ids it was given.
    struct SilentQueue(mpsc::UnboundedSender<Vec<Uuid>>);

    impl Actor for SilentQueue {
        type Context = actix::Context<Self>;
    }

    impl Handler<Ack> for SilentQueue {
        type Result = ResponseFuture<()>;

        fn handle(&mut self, msg: Ack, _: &mut Self::Context) -> Self::Result {
            let _ = self.0.send(msg.ids);
            Box::pin(futures_util::future::pending())
        }
    }

    impl Handler<StartsQueued> for SilentQueue {
        type Result = ();

        fn handle(&mut self, _: StartsQueued, _: &mut Self::Context) {}
    }

    #[actix::test]
    async fn acknowledgements_hold_the_crawl_open_until_answered_or_forced() {
        let (acked_tx, mut acked) = mpsc::unbounded_channel();
        let silent = SilentQueue(acked_tx).start();
        let shared = SharedQueue::new(silent.clone().recipient(), silent.recipient());
        let mut config = SchedulerConfig::with_concurrency(10);
        config.slots.concurrency = usize::MAX;
        let backend = Box::new(MemoryQueue::default());
        let mut r = rig_shared(vec![req("http://h/a")], config, None, backend, Some(shared));
        // This worker pulls the start requests.
        r.sched
            .send(SharedStatus {
                owns_starts: true,
                queued: 0,
                finished: false,
            })
            .await
            .unwrap();
        let c = r.next_dispatch().await;
        let before = r.accounting.count();
        r.sched.send(Completed { id: c.id }).await.unwrap();
        assert_eq!(acked.recv().await.unwrap(), [c.id]);
        // The queue has not answered: the request's unit is still open.
        assert_eq!(r.accounting.count(), before);
        // A forced stop does not wait for the queue: with the membership
        // closed by the stop, nothing holds the crawl open.
        r.sched.send(ForceStop).await.unwrap();
        assert_eq!(r.accounting.count(), 0);
    }

    #[actix::test]
    async fn dont_filter_requests_skip_the_dupe_filter() {
        let (dupe, mut asked) = fake_dupe(&["http://h/a"]);
        let starts = vec![
            req("http://h/a"),
            req("http://h/a").dont_filter(),
            req("http://h/b"),
            req("http://h/c").dont_filter(),
        ];
        let mut r = rig(starts, 10, Some(dupe));
        let mut got = HashSet::new();
        for _ in 0..3 {
            let c = r.next_dispatch().await;
            got.insert((c.request.url.to_string(), c.request.dont_filter));
        }
        let want = HashSet::from([
            ("http://h/a".to_string(), true),
            ("http://h/b".to_string(), false),
            ("http://h/c".to_string(), true),
        ]);
        assert_eq!(got, want);
        assert!(r.more_dispatches().await.is_empty());
        assert_eq!(asked.recv().await.unwrap(), ["http://h/a", "http://h/b"]);
        assert!(asked.try_recv().is_err(), "asked about more");
        assert_eq!(r.stat(Counter::DupeFiltered), 1);
        assert_eq!(r.stat(Counter::Enqueued), 3);
        assert_eq!(r.accounting.count(), 3);
    }

    #[actix::test]
    async fn duplicates_are_counted_closed_and_never_queued() {
        let starts = vec![
            req("http://h/a"),
            req("http://h/b"),
            req("http://h/a#fragment"),
            req("http://h/b"),
        ];
        let mut r = rig(starts, 10, Some(real_dupe()));
        let mut got = vec![r.next_dispatch().await, r.next_dispatch().await];
        assert!(r.more_dispatches().await.is_empty());
        assert_eq!(r.stat(Counter::DupeFiltered), 2);

        // A parse emits a seen URL and a new one (opened first, as the
        // parser does).
        let parent = got[0].id;
        r.accounting.open(2);
        let batch = vec![
            Context::new(req("http://h/a"), Some(parent)),
            Context::new(req("http://h/c"), Some(parent)),
        ];
        r.sched.send(Enqueue { batch }).await.unwrap();
        got.push(r.next_dispatch().await);
        assert!(r.more_dispatches().await.is_empty());
        let mut paths: Vec<_> = got.iter().map(|c| path(c).to_string()).collect();
        paths.sort();
        assert_eq!(paths, ["/a", "/b", "/c"]);
        assert_eq!(r.stat(Counter::DupeFiltered), 3);
        assert_eq!(r.stat(Counter::Enqueued), 3);
        assert_eq!(r.stat(Counter::Queued), 0);
        // Only the three in flight are still open.
        assert_eq!(r.accounting.count(), 3);
    }

    #[actix::test]
    async fn pause_holds_dispatch_until_resume() {
        let mut r = rig(pages(3), 1, None);
        let first = r.next_dispatch().await;
        r.sched.send(Pause).await.unwrap().unwrap();
        r.complete(&first).await;
        // Work arriving while paused is queued, not dispatched.
        r.accounting.open(1);
        let batch = vec![Context::new(req("http://h/late"), Some(first.id))];
        r.sched.send(Enqueue { batch }).await.unwrap();
        assert!(r.more_dispatches().await.is_empty());
        assert_eq!(r.stat(Counter::Dequeued), 1);
        assert_eq!(r.stat(Counter::InFlight), 0);
        assert_eq!(r.stat(Counter::Queued), 3);
        assert_eq!(r.accounting.count(), 3);

        r.sched.send(Resume).await.unwrap().unwrap();
        let next = r.next_dispatch().await;
        assert_eq!(path(&next), "/p1");
        assert!(r.more_dispatches().await.is_empty());
        assert_eq!(r.stat(Counter::Dequeued), 2);
    }

    #[actix::test]
    async fn nothing_is_dispatched_after_pause_returns() {
        let mut r = rig(pages(3), 1, None);
        let first = r.next_dispatch().await;
        // The completion frees a slot, so the scheduler asks the queue for
        // a request; Pause is handled before the queue answers.
        r.sched.do_send(Completed { id: first.id });
        r.sched.send(Pause).await.unwrap().unwrap();
        let late = r.more_dispatches().await;
        assert!(late.is_empty(), "dispatched while paused: {late:?}");
        assert_eq!(r.stat(Counter::Dequeued), 1);
    }

    #[actix::test]
    async fn stop_drains_the_queue_into_unprocessed() {
        let mut r = rig(pages(4), 1, None);
        let first = r.next_dispatch().await;
        r.sched.send(Stop).await.unwrap().unwrap();
        r.settle().await;
        assert_eq!(r.stat(Counter::Unprocessed), 3);
        assert_eq!(r.stat(Counter::Queued), 0);
        assert_eq!(r.accounting.count(), 1);

        // Control is refused once stopping; a second stop is harmless.
        let err = r.sched.send(Pause).await.unwrap().unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::IllegalState(_)), "{err}");
        let err = r.sched.send(Resume).await.unwrap().unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::IllegalState(_)), "{err}");
        r.sched.send(Stop).await.unwrap().unwrap();

        // Requests emitted by the request in flight are accepted but never
        // dispatched.
        r.accounting.open(1);
        let batch = vec![Context::new(req("http://h/child"), Some(first.id))];
        r.sched.send(Enqueue { batch }).await.unwrap();
        assert_eq!(r.stat(Counter::Unprocessed), 4);
        assert_eq!(r.accounting.count(), 1);

        r.complete(&first).await;
        expect_event!(r.engine_events.next().await, Event::Idle => ());
        assert!(r.more_dispatches().await.is_empty());
        assert!(r.engine_events.drain().is_empty());
        assert_eq!(r.accounting.count(), 0);
        assert_eq!(r.stat(Counter::Enqueued), 5);
        assert_eq!(r.stat(Counter::Dequeued), 1);
        assert_eq!(
            r.stat(Counter::Enqueued),
            r.stat(Counter::Dequeued) + r.stat(Counter::Unprocessed)
        );
    }

    #[actix::test]
    async fn stop_closes_a_start_iterator_that_is_not_exhausted() {
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let starts = (0..1000).map(move |i| {
            counter.fetch_add(1, Ordering::Relaxed);
            req(&format!("http://h/s{i}"))
        });
        let mut r = rig(starts, 1, None);
        let first = r.next_dispatch().await;
        r.sched.send(Stop).await.unwrap().unwrap();
        r.settle().await;
        // Pulled lazily: one batch only, and never again after the stop.
        assert_eq!(pulled.load(Ordering::Relaxed), START_BATCH);
        assert_eq!(r.stat(Counter::Unprocessed), START_BATCH as u64 - 1);
        assert_eq!(r.accounting.count(), 1);
        r.complete(&first).await;
        expect_event!(r.engine_events.next().await, Event::Idle => ());
        assert_eq!(r.accounting.count(), 0);
        assert_eq!(pulled.load(Ordering::Relaxed), START_BATCH);
    }

    #[actix::test]
    async fn requeue_skips_the_dupe_check_and_frees_the_slots() {
        let mut r = rig(pages(3), 2, Some(real_dupe()));
        let a = r.next_dispatch().await;
        let b = r.next_dispatch().await;
        assert!(r.more_dispatches().await.is_empty());

        // The pool sends them back as dispatched (a downloader crashed).
        let batch = vec![a.clone(), b.clone()];
        r.sched.send(Requeue { batch, delay: None }).await.unwrap();
        // No Completed was sent, yet two slots are free again.
        let c = r.next_dispatch().await;
        let a2 = r.next_dispatch().await;
        assert_eq!(path(&c), "/p2");
        assert_eq!((a2.id, a2.attempt), (a.id, 2));
        assert!(r.more_dispatches().await.is_empty());
        assert_eq!(r.stat(Counter::DupeFiltered), 0);
        // 3 admitted, then the 2 requeued ones enqueued again.
        assert_eq!(r.stat(Counter::Enqueued), 5);
        assert_eq!(r.stat(Counter::Queued), 1);
        assert_eq!(r.accounting.count(), 3);

        r.complete(&c).await;
        let b2 = r.next_dispatch().await;
        assert_eq!((b2.id, b2.attempt), (b.id, 2));
        r.complete(&a2).await;
        r.complete(&b2).await;
        expect_event!(r.engine_events.next().await, Event::Idle => ());
        assert_eq!(r.accounting.count(), 0);
        assert_eq!(r.stat(Counter::Dequeued), 5);
    }

    #[actix::test]
    async fn requeue_while_stopping_counts_unprocessed() {
        let mut r = rig(pages(2), 1, None);
        let first = r.next_dispatch().await;
        r.sched.send(Stop).await.unwrap().unwrap();
        r.sched
            .send(Requeue {
                batch: vec![first],
                delay: None,
            })
            .await
            .unwrap();
        expect_event!(r.engine_events.next().await, Event::Idle => ());
        assert!(r.more_dispatches().await.is_empty());
        assert_eq!(r.stat(Counter::Unprocessed), 2);
        assert_eq!(r.stat(Counter::InFlight), 0);
        assert_eq!(r.accounting.count(), 0);
    }

    #[actix::test]
    async fn no_start_requests_idles_at_once() {
        let mut r = rig(Vec::new(), 4, None);
        expect_event!(r.engine_events.next().await, Event::Idle => ());
        assert!(r.more_dispatches().await.is_empty());
        assert!(r.engine_events.drain().is_empty());
        assert_eq!(r.accounting.count(), 0);
    }

    #[actix::test]
    async fn a_panicking_start_iterator_counts_an_exception_and_idles() {
        let mut n = 0;
        let starts = std::iter::from_fn(move || {
            n += 1;
            assert!(n < 3, "start_requests exploded");
            Some(req(&format!("http://h/s{n}")))
        });
        let mut r = rig(starts, 4, None);
        expect_event!(r.engine_events.next().await, Event::Idle => ());
        assert!(r.more_dispatches().await.is_empty());
        assert_eq!(r.stat(Counter::SpiderExceptions), 1);
        assert_eq!(r.accounting.count(), 0);
    }

    /// A queue back-end whose first push fails (a brief outage), then
    /// behaves like the memory queue.
    struct FlakyQueue {
        inner: MemoryQueue<Cb>,
        fail_next_push: bool,
    }

    impl QueueBackend<Cb> for FlakyQueue {
        fn push(&mut self, batch: Vec<Context<Cb>>) -> BackendFuture<()> {
            if std::mem::take(&mut self.fail_next_push) {
                let e = Error::new(Stage::Schedule, ErrorKind::Backend("down".into()));
                return Box::pin(ready(Err(e)));
            }
            self.inner.push(batch)
        }
        fn pop(
            &mut self,
            max: usize,
            allowance: &SlotAllowance,
        ) -> BackendFuture<Vec<Context<Cb>>> {
            self.inner.pop(max, allowance)
        }
        fn drain(&mut self) -> BackendFuture<Vec<Context<Cb>>> {
            self.inner.drain()
        }
        fn len(&self) -> usize {
            self.inner.len()
        }
    }

    #[actix::test]
    async fn a_lost_push_does_not_wedge_the_scheduler() {
        let backend = Box::new(FlakyQueue {
            inner: MemoryQueue::default(),
            fail_next_push: true,
        });
        // The first START_BATCH start requests are lost with the push; the
        // rest must still be pulled, dispatched and finished.
        let rest = 10;
        let mut r = rig_with_queue(pages(START_BATCH + rest), 1, None, backend);
        for _ in 0..rest {
            let c = r.next_dispatch().await;
            r.complete(&c).await;
        }
        expect_event!(r.engine_events.next().await, Event::Idle => ());
        assert_eq!(r.stat(Counter::Queued), 0);
        assert_eq!(r.accounting.count(), 0);
    }

    #[actix::test]
    async fn a_release_during_an_outstanding_pop_is_not_lost() {
        // One host that takes one request at a time, plenty of global room.
        let mut config = SchedulerConfig::with_concurrency(4);
        config.slots.concurrency = 1;
        let mut r = rig_with_config(pages(3), config, None, Box::new(MemoryQueue::default()));
        let first = r.next_dispatch().await;
        assert!(r.more_dispatches().await.is_empty(), "the host is full");
        // The completion frees a global slot, so the scheduler pops while
        // the host is still full (that pop comes back empty); the host's
        // release lands before the queue answers. It must not be lost.
        r.sched.do_send(Completed { id: first.id });
        r.sched.do_send(Released {
            report: SlotReport {
                slot: "h".into(),
                ..SlotReport::default()
            },
        });
        let second = r.next_dispatch().await;
        assert_eq!(path(&second), "/p1");
    }
}
