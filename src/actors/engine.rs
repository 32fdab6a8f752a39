//! Engine: owns a crawl's lifecycle, accounting and stats.
//!
//! The launch step wires every actor and hands the Engine what it needs to
//! end the crawl. The Engine learns the crawl is over from the accounting (an
//! `Idle` when open work reaches zero: start requests exhausted, queue empty,
//! nothing in flight, no item in a pipeline). It then closes the pipelines
//! (flushing batches and files), writes the last checkpoint and releases
//! the job directory (when there is one: a crawl started after `join()`
//! returns can open it), each step under the finish timeout so that a
//! hanging `close` cannot keep the crawl from ending, stamps `finish_time`
//! and `finish_reason` (`"finished"`, `"shutdown"` after a stop, or the
//! reason of the limit that stopped it), publishes the final stats to every
//! `join()`, stops the other actors and their arbiters, and stops. Pause,
//! resume and stop from the handle pass through it to the Scheduler.
//!
//! The crawl's limits (`limits.rs` decides which is reached) are checked
//! here, on timers that exist only while a limit is set: the counters every
//! [`LIMIT_CHECK_EVERY`], the time limit once when it is due, the resident
//! set size at the memory guard's interval. A limit reached stops the crawl
//! as a graceful stop does; only the finish reason differs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use slog::{error, info, warn, Logger};
use tokio::sync::{broadcast, watch};

use crate::accounting::Accounting;
use crate::error::{Error, ErrorKind, Stage};
use crate::events::CheckpointInfo;
use crate::events::CrawlEvent;
use crate::limits::{
    resident_set_size, Limit, Limits, Progress, Reached, MEMUSAGE_LIMIT_REACHED, MEMUSAGE_MAX,
    MEMUSAGE_STARTUP, MEMUSAGE_WARNING_REACHED,
};
use crate::messages::deliver;
use crate::messages::{
    Checkpoint, ClosePipelines, ForceStop, Idle, Leave, Pause, ReleaseJobDir, Resume, Shutdown,
    Stop, StopCrawl, StopMode,
};
use crate::state::Phase;
use crate::stats::{Counter, Stats, StatsSnapshot};

/// How long a stop drains before it forces unless configured otherwise:
/// the one definition, read by the Engine and the builder's defaults.
pub(crate) const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the pipelines' closes may take at the end unless configured
/// otherwise: the one definition, read by the Engine and the builder.
pub(crate) const DEFAULT_FINISH_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the counters are compared with the item, page and error
/// limits while one is set: often enough that a limit overshoots by little
/// more than what is in flight, rarely enough to cost nothing.
pub(crate) const LIMIT_CHECK_EVERY: Duration = Duration::from_millis(10);

/// Where the engine sends things.
pub(crate) struct EngineOutbox {
    /// Scheduler: pause.
    pub pause: Recipient<Pause>,
    /// Scheduler: resume.
    pub resume: Recipient<Resume>,
    /// Scheduler: stop.
    pub stop: Recipient<Stop>,
    /// Scheduler: abandon what is in flight (drain deadline, second stop).
    pub force: Recipient<ForceStop>,
    /// PipelineStage: close the pipelines.
    pub close: Recipient<ClosePipelines>,
    /// Scheduler: checkpoint now; `None` when the crawl has no job
    /// directory.
    pub checkpoint: Option<Recipient<Checkpoint>>,
    /// JobStore: close the job directory and release its lock, last in the
    /// finish sequence, so the directory is free when `join()` returns;
    /// `None` when the crawl has no job directory.
    pub release: Option<Recipient<ReleaseJobDir>>,
    /// Every actor to stop when the crawl is over.
    pub shutdown: Vec<Recipient<Shutdown>>,
    /// In a distributed crawl, told in this order once the pipelines are
    /// closed: the Coordinator (stops heartbeating, reports the last
    /// counters) and the CacheQueue (gives back this worker's leases and
    /// leaves). Empty otherwise.
    pub leave: Vec<Recipient<Leave>>,
}

/// The engine actor.
pub(crate) struct Engine {
    /// Where it sends things.
    outbox: EngineOutbox,
    /// The arbiters the crawl created (parser, pipelines, downloaders),
    /// stopped at the end.
    arbiters: Vec<Arbiter>,
    /// Open-work counter; `Idle` is re-checked against it.
    accounting: Arc<Accounting>,
    /// The crawl's counters.
    stats: Arc<Stats>,
    /// Publishes the final stats to `join()`.
    finished: watch::Sender<Option<StatsSnapshot>>,
    /// Why the crawl is stopping (`"shutdown"`, or a limit's reason), once
    /// it is: the first reason is the finish reason, and no limit fires
    /// after it.
    stop_reason: Option<&'static str>,
    /// A stop came from the handle: a second `stop()` forces. A limit's
    /// stop does not count, so the user's first stop after it still only
    /// drains.
    user_stopped: bool,
    /// The limits that stop an unattended crawl early; none by default.
    limits: Limits,
    /// When the Engine started, for the time limit.
    started_at: Instant,
    /// The memory warning was logged: it is logged once per crawl.
    memory_warned: bool,
    /// The finish sequence has begun; a second `Idle` is ignored.
    finishing: bool,
    /// How long a stop lets in-flight requests finish before forcing.
    drain_timeout: Duration,
    /// How long each step of the finish sequence may take (the pipelines'
    /// closes twice this: the stage bounds them by this itself, and the
    /// rest covers a stage too blocked to answer).
    finish_timeout: Duration,
    /// Lifecycle events for subscribers.
    events: broadcast::Sender<CrawlEvent>,
    /// The state every handle reads.
    phase: Arc<Phase>,
    /// Closes the download middlewares, once, when the crawl finishes.
    close_middlewares: Option<Box<dyn FnOnce() + Send>>,
    /// How often the progress line is logged (`None`: never).
    log_stats_every: Option<Duration>,
    /// Responses and items at the last progress line, and when.
    last_progress: (u64, u64, Instant),
    /// Structured log.
    log: Logger,
}

impl Engine {
    pub(crate) fn new(
        outbox: EngineOutbox,
        arbiters: Vec<Arbiter>,
        accounting: Arc<Accounting>,
        stats: Arc<Stats>,
        finished: watch::Sender<Option<StatsSnapshot>>,
        log: Logger,
    ) -> Self {
        Engine {
            outbox,
            arbiters,
            accounting,
            stats,
            finished,
            stop_reason: None,
            user_stopped: false,
            limits: Limits::default(),
            started_at: Instant::now(),
            memory_warned: false,
            finishing: false,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            finish_timeout: DEFAULT_FINISH_TIMEOUT,
            events: broadcast::channel(crate::events::CAPACITY).0,
            phase: Arc::default(),
            close_middlewares: None,
            log_stats_every: None,
            last_progress: (0, 0, Instant::now()),
            log,
        }
    }

    /// Logs a progress line every `every` (Scrapy's LogStats).
    pub(crate) fn with_log_stats(mut self, every: Option<Duration>) -> Self {
        self.log_stats_every = every.filter(|d| !d.is_zero());
        self
    }

    /// Logs the progress line: pages and items so far and per minute since
    /// the last line, requests in flight and queued.
    fn log_progress(&mut self) {
        let now = Instant::now();
        let pages = self.stats.get(Counter::ResponseCount);
        let items = self.stats.get(Counter::ItemScraped);
        let (last_pages, last_items, at) = self.last_progress;
        let minutes = now.duration_since(at).as_secs_f64() / 60.0;
        let per_min = |n: u64| {
            if minutes > 0.0 {
                (n as f64 / minutes).round() as u64
            } else {
                0
            }
        };
        info!(self.log, "progress";
            "pages" => pages, "pages_per_min" => per_min(pages.saturating_sub(last_pages)),
            "items" => items, "items_per_min" => per_min(items.saturating_sub(last_items)),
            "in_flight" => self.stats.get(Counter::InFlight),
            "queued" => self.stats.get(Counter::Queued));
        self.last_progress = (pages, items, now);
    }

    /// Sets how long a stop drains before it forces (default
    /// [`DEFAULT_DRAIN_TIMEOUT`]).
    pub(crate) fn with_drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Sets how long each finish step may take (default
    /// [`DEFAULT_FINISH_TIMEOUT`]).
    pub(crate) fn with_finish_timeout(mut self, timeout: Duration) -> Self {
        self.finish_timeout = timeout;
        self
    }

    /// Stops the crawl when one of `limits` is reached.
    pub(crate) fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sends lifecycle events on `events`.
    pub(crate) fn with_events(mut self, events: broadcast::Sender<CrawlEvent>) -> Self {
        self.events = events;
        self
    }

    /// Moves `phase` as the crawl pauses, resumes, stops and finishes.
    pub(crate) fn with_phase(mut self, phase: Arc<Phase>) -> Self {
        self.phase = phase;
        self
    }

    /// Runs `close` once when the crawl finishes (the middlewares' hooks).
    pub(crate) fn on_finish(mut self, close: Box<dyn FnOnce() + Send>) -> Self {
        self.close_middlewares = Some(close);
        self
    }

    fn emit(&self, event: CrawlEvent) {
        // No subscriber is fine.
        let _ = self.events.send(event);
    }

    fn finish(&mut self, ctx: &mut actix::Context<Self>) {
        let reason = self.stop_reason.unwrap_or("finished");
        if self.log_stats_every.is_some() {
            self.log_progress();
        }
        self.stats.mark_finished(reason);
        let snapshot = self.stats.snapshot();
        info!(self.log, "crawl finished"; "reason" => reason,
            "elapsed_s" => snapshot.elapsed_time_seconds,
            "stats" => %serde_json::to_string(&snapshot).unwrap_or_default());
        if let Some(close) = self.close_middlewares.take() {
            close();
        }
        self.phase.finished();
        self.emit(CrawlEvent::Finished {
            stats: Box::new(snapshot.clone()),
        });
        for r in &self.outbox.shutdown {
            r.do_send(Shutdown);
        }
        for a in &self.arbiters {
            a.stop();
        }
        self.finished.send_replace(Some(snapshot));
        ctx.stop();
    }
}

impl Actor for Engine {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.stats.mark_started();
        info!(self.log, "crawl started");
        self.last_progress = (0, 0, Instant::now());
        self.started_at = Instant::now();
        if let Some(every) = self.log_stats_every {
            ctx.run_interval(every, |act, _| act.log_progress());
        }
        self.emit(CrawlEvent::Started);
        self.watch_limits(ctx);
    }
}

/// The limits' timers and what they do when one is reached.
impl Engine {
    /// Starts the timers the configured limits need, and none when no
    /// limit is set.
    fn watch_limits(&mut self, ctx: &mut actix::Context<Self>) {
        if self.limits.watches_counts() {
            ctx.run_interval(LIMIT_CHECK_EVERY, |act, ctx| act.check_limits(None, ctx));
        }
        self.watch_time(ctx);
        if !self.limits.watches_memory() {
            return;
        }
        let Some(rss) = resident_set_size() else {
            warn!(self.log, "memory guard off: the resident set size cannot be read here";
                "os" => std::env::consts::OS);
            return;
        };
        self.stats.set_named(MEMUSAGE_STARTUP, rss);
        self.stats.max_named(MEMUSAGE_MAX, rss);
        // The first check now, as Scrapy's: a limit already exceeded stops
        // the crawl before it fetches anything.
        self.check_memory(ctx);
        ctx.run_interval(self.limits.memory_every, |act, ctx| act.check_memory(ctx));
    }

    /// Checks the limits when the time limit is due, if one is set; again
    /// should the timer have fired a hair early.
    fn watch_time(&mut self, ctx: &mut actix::Context<Self>) {
        let Some(timeout) = self.limits.timeout else {
            return;
        };
        let due = timeout.saturating_sub(self.started_at.elapsed());
        ctx.run_later(due, |act, ctx| {
            act.check_limits(None, ctx);
            if act.stop_reason.is_none() && !act.finishing {
                act.watch_time(ctx);
            }
        });
    }

    /// Samples the resident set size: records the peak, warns once, and
    /// checks the limits with it.
    fn check_memory(&mut self, ctx: &mut actix::Context<Self>) {
        let Some(rss) = resident_set_size() else {
            return;
        };
        self.stats.max_named(MEMUSAGE_MAX, rss);
        if let Some(threshold) = self.limits.warning(rss).filter(|_| !self.memory_warned) {
            self.memory_warned = true;
            self.stats.set_named(MEMUSAGE_WARNING_REACHED, 1);
            warn!(self.log, "memory usage reached the warning threshold";
                "rss" => rss, "threshold" => threshold);
        }
        self.check_limits(Some(rss), ctx);
    }

    /// Stops the crawl if a limit is reached, unless it is already stopping
    /// or finishing.
    fn check_limits(&mut self, rss: Option<u64>, ctx: &mut actix::Context<Self>) {
        if self.stop_reason.is_some() || self.finishing {
            return;
        }
        let progress = Progress::read(&self.stats, self.started_at.elapsed(), rss);
        if let Some(reached) = self.limits.reached(&progress) {
            self.stop_at_limit(reached, ctx);
        }
    }

    /// Stops the crawl as a graceful stop does, with the limit's reason.
    fn stop_at_limit(&mut self, reached: Reached, ctx: &mut actix::Context<Self>) {
        let reason = reached.limit.reason();
        let (limit, value, unit) = (reached.threshold, reached.value, reached.limit.unit());
        if reached.limit == Limit::Memory {
            self.stats.set_named(MEMUSAGE_LIMIT_REACHED, 1);
            error!(self.log, "limit reached: stopping the crawl";
                "reason" => reason, "limit" => limit, "value" => value, "unit" => unit);
        } else {
            info!(self.log, "limit reached: stopping the crawl";
                "reason" => reason, "limit" => limit, "value" => value, "unit" => unit);
        }
        self.begin_stop(reason, ctx);
        self.outbox
            .stop
            .send(Stop)
            .into_actor(self)
            .map(|res, act, _| match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => error!(act.log, "the scheduler refused the stop"; "error" => %e),
                Err(e) => error!(act.log, "stopping: scheduler gone"; "error" => %e),
            })
            .spawn(ctx);
    }

    /// What every stop does first, whoever asked: remembers `reason`,
    /// moves the state, tells subscribers, and starts the drain deadline.
    /// The caller sends the Scheduler its `Stop`.
    fn begin_stop(&mut self, reason: &'static str, ctx: &mut actix::Context<Self>) {
        self.stop_reason = Some(reason);
        self.phase.stopping();
        self.emit(CrawlEvent::Stopping);
        ctx.run_later(self.drain_timeout, |act, _| {
            if !act.finishing {
                error!(act.log, "drain deadline passed: forcing the stop";
                    "deadline_s" => act.drain_timeout.as_secs_f64());
                deliver(&act.outbox.force, ForceStop, &act.stats);
            }
        });
    }
}

impl Handler<Idle> for Engine {
    type Result = ();

    fn handle(&mut self, _: Idle, ctx: &mut Self::Context) {
        if self.finishing || self.accounting.count() != 0 {
            return;
        }
        self.finishing = true;
        let close = self.outbox.close.send(ClosePipelines);
        let checkpoint = self.outbox.checkpoint.clone();
        let leave = self.outbox.leave.clone();
        let release = self.outbox.release.clone();
        let log = self.log.clone();
        let late = Late {
            deadline: self.finish_timeout,
            stats: self.stats.clone(),
            log: self.log.clone(),
        };
        async move {
            late.bound("close pipelines", 2, close).await;
            // The last checkpoint: every completion and the final stats
            // (or, after a stop, the requests left to resume).
            if let Some(checkpoint) = checkpoint {
                match late
                    .bound("final checkpoint", 1, checkpoint.send(Checkpoint))
                    .await
                {
                    Some(Ok(Ok(_))) | None => {}
                    Some(Ok(Err(e))) => {
                        error!(log, "final checkpoint failed"; "error" => %e);
                    }
                    Some(Err(e)) => {
                        error!(log, "final checkpoint: scheduler gone"; "error" => %e)
                    }
                }
            }
            for to in leave {
                match to.send(Leave).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        error!(log, "leaving the distributed crawl failed"; "error" => %e)
                    }
                    Err(e) => {
                        error!(log, "leaving the distributed crawl: actor gone"; "error" => %e)
                    }
                }
            }
            if let Some(release) = release {
                late.bound("release the job directory", 1, release.send(ReleaseJobDir))
                    .await;
            }
        }
        .into_actor(self)
        .map(|_, act, ctx| act.finish(ctx))
        .wait(ctx);
    }
}

/// The finish sequence's deadline: a step that does not end in time is
/// counted in `engine/finish_timeouts` and logged, and the sequence goes on
/// without it, so a hanging pipeline or a blocked actor cannot keep
/// `join()` waiting for ever.
struct Late {
    /// How long one step may take.
    deadline: Duration,
    /// Where the timeouts are counted.
    stats: Arc<Stats>,
    /// Where they are logged.
    log: Logger,
}

impl Late {
    /// `step`'s result, or `None` once `times` deadlines have passed.
    async fn bound<F: std::future::Future>(
        &self,
        step: &str,
        times: u32,
        f: F,
    ) -> Option<F::Output> {
        let limit = self.deadline * times;
        let done = tokio::time::timeout(limit, f).await.ok();
        if done.is_none() {
            self.stats.add_named("engine/finish_timeouts", 1);
            error!(self.log, "a finish step did not end in time; the crawl ends without it";
                "step" => step, "deadline_s" => limit.as_secs_f64());
        }
        done
    }
}

/// How a control message that succeeded moves the crawl's state; `true`
/// when it did (the event is published only then).
type PhaseMove = fn(&Phase) -> bool;

/// Passes a control message to the Scheduler. Control that arrives while
/// the Engine finishes waits behind the finish sequence (the `Idle` handler
/// holds the mailbox) and then fails here: the Scheduler is gone.
fn forward<M>(
    engine: &Engine,
    to: &Recipient<M>,
    msg: M,
    what: &str,
    then: Option<(CrawlEvent, PhaseMove)>,
) -> ResponseFuture<Result<(), Error>>
where
    M: Message<Result = Result<(), Error>> + Send + 'static,
{
    let sent = to.send(msg);
    let refused = format!("cannot {what}: the crawl has finished");
    let events = engine.events.clone();
    let phase = engine.phase.clone();
    Box::pin(async move {
        let done = sent
            .await
            .unwrap_or_else(|_| Err(Error::new(Stage::Control, ErrorKind::IllegalState(refused))));
        if let (Ok(()), Some((event, moved))) = (&done, then) {
            if moved(&phase) {
                let _ = events.send(event);
            }
        }
        done
    })
}

impl Handler<Checkpoint> for Engine {
    type Result = ResponseFuture<Result<CheckpointInfo, Error>>;

    fn handle(&mut self, msg: Checkpoint, _: &mut Self::Context) -> Self::Result {
        let Some(to) = self.outbox.checkpoint.clone() else {
            return Box::pin(async {
                Err(Error::new(
                    Stage::Control,
                    ErrorKind::IllegalState("the crawl has no job directory".into()),
                ))
            });
        };
        Box::pin(async move {
            to.send(msg).await.unwrap_or_else(|_| {
                Err(Error::new(
                    Stage::Control,
                    ErrorKind::IllegalState("cannot checkpoint: the crawl has finished".into()),
                ))
            })
        })
    }
}

impl Handler<Pause> for Engine {
    type Result = ResponseFuture<Result<(), Error>>;

    fn handle(&mut self, msg: Pause, _: &mut Self::Context) -> Self::Result {
        forward(
            self,
            &self.outbox.pause,
            msg,
            "pause",
            Some((CrawlEvent::Paused, Phase::paused)),
        )
    }
}

impl Handler<Resume> for Engine {
    type Result = ResponseFuture<Result<(), Error>>;

    fn handle(&mut self, msg: Resume, _: &mut Self::Context) -> Self::Result {
        forward(
            self,
            &self.outbox.resume,
            msg,
            "resume",
            Some((CrawlEvent::Resumed, Phase::resumed)),
        )
    }
}

impl Handler<StopCrawl> for Engine {
    type Result = ResponseFuture<Result<(), Error>>;

    fn handle(&mut self, msg: StopCrawl, ctx: &mut Self::Context) -> Self::Result {
        let force = match msg.0 {
            StopMode::Escalate => self.user_stopped,
            StopMode::Graceful => false,
            StopMode::Force => true,
        };
        self.user_stopped = true;
        let stopped: Self::Result = if self.stop_reason.is_some() {
            Box::pin(async { Ok(()) })
        } else {
            self.begin_stop("shutdown", ctx);
            forward(self, &self.outbox.stop, Stop, "stop", None)
        };
        if force {
            warn!(self.log, "forcing the stop");
            // Sent after the `Stop`, so the Scheduler sees them in order.
            deliver(&self.outbox.force, ForceStop, &self.stats);
        }
        stopped
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::{mpsc, oneshot};

    use super::*;
    use crate::actors::test_support::{kinds, log, Cb, Events, Ping, Recorder};
    use crate::handle::CrawlHandle;

    /// A guard against a hang, not a wait for work.
    const PATIENCE: Duration = Duration::from_secs(10);

    /// A pipeline stage whose `ClosePipelines` answers only once the test
    /// opens the gate; it reports each close it receives.
    struct GatedStage {
        closes: mpsc::UnboundedSender<()>,
        gate: Option<oneshot::Receiver<()>>,
    }

    impl Actor for GatedStage {
        type Context = actix::Context<Self>;
    }

    impl Handler<ClosePipelines> for GatedStage {
        type Result = ResponseFuture<()>;

        fn handle(&mut self, _: ClosePipelines, _: &mut Self::Context) -> Self::Result {
            let _ = self.closes.send(());
            let gate = self.gate.take();
            Box::pin(async move {
                if let Some(gate) = gate {
                    let _ = gate.await;
                }
            })
        }
    }

    /// A scheduler that has already stopped.
    struct Gone;

    impl Actor for Gone {
        type Context = actix::Context<Self>;
    }

    impl Handler<Shutdown> for Gone {
        type Result = ();
        fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
            ctx.stop();
        }
    }

    macro_rules! refuse {
        ($msg:ty) => {
            impl Handler<$msg> for Gone {
                type Result = Result<(), Error>;
                fn handle(&mut self, _: $msg, _: &mut Self::Context) -> Self::Result {
                    unreachable!("the actor has stopped")
                }
            }
        };
    }
    refuse!(Pause);
    refuse!(Resume);
    refuse!(Stop);

    /// An engine whose scheduler and stage are one recorder (`ctrl`,
    /// unless `close` or `control` say otherwise) and which shuts down
    /// `ctrl` and one more recorder (`other`).
    struct Rig {
        engine: Addr<Engine>,
        ctrl: Addr<Recorder<Cb>>,
        ctrl_events: Events<Cb>,
        other: Addr<Recorder<Cb>>,
        other_events: Events<Cb>,
        accounting: Arc<Accounting>,
        stats: Arc<Stats>,
        finished: watch::Receiver<Option<StatsSnapshot>>,
    }

    fn rig(close: Option<Recipient<ClosePipelines>>, control: Option<Addr<Gone>>) -> Rig {
        rig_with(close, control, |engine| engine)
    }

    /// As `rig`, with the engine's options set by `configure`.
    fn rig_with(
        close: Option<Recipient<ClosePipelines>>,
        control: Option<Addr<Gone>>,
        configure: impl FnOnce(Engine) -> Engine,
    ) -> Rig {
        let (ctrl, ctrl_events) = Recorder::spawn();
        let (other, other_events) = Recorder::spawn();
        let outbox = EngineOutbox {
            pause: match &control {
                Some(g) => g.clone().recipient(),
                None => ctrl.clone().recipient(),
            },
            resume: match &control {
                Some(g) => g.clone().recipient(),
                None => ctrl.clone().recipient(),
            },
            stop: match &control {
                Some(g) => g.clone().recipient(),
                None => ctrl.clone().recipient(),
            },
            force: ctrl.clone().recipient(),
            close: close.unwrap_or_else(|| ctrl.clone().recipient()),
            checkpoint: None,
            release: None,
            shutdown: vec![ctrl.clone().recipient(), other.clone().recipient()],
            leave: Vec::new(),
        };
        // The accounting needs the engine's address before the engine
        // exists, as in the launch.
        let context = actix::Context::<Engine>::new();
        let engine = context.address();
        let accounting = Arc::new(Accounting::new(engine.clone().recipient()));
        let stats = Arc::new(Stats::default());
        let (tx, finished) = watch::channel(None);
        context.run(configure(Engine::new(
            outbox,
            Vec::new(),
            accounting.clone(),
            stats.clone(),
            tx,
            log(),
        )));
        Rig {
            engine,
            ctrl,
            ctrl_events,
            other,
            other_events,
            accounting,
            stats,
            finished,
        }
    }

    impl Rig {
        /// The final stats, once published.
        async fn final_stats(&mut self) -> StatsSnapshot {
            let published = self.finished.wait_for(Option::is_some);
            let snapshot = tokio::time::timeout(PATIENCE, published)
                .await
                .expect("no final stats in time")
                .expect("the engine dropped the sender");
            snapshot.clone().unwrap()
        }

        fn is_finished(&self) -> bool {
            self.finished.borrow().is_some()
        }

        /// What the control recorder received so far.
        async fn ctrl(&mut self) -> Vec<&'static str> {
            self.ctrl.send(Ping).await.unwrap();
            kinds(&self.ctrl_events.drain())
        }

        async fn other(&mut self) -> Vec<&'static str> {
            self.other.send(Ping).await.unwrap();
            kinds(&self.other_events.drain())
        }

        fn handle(&self) -> CrawlHandle {
            let e = &self.engine;
            CrawlHandle::new(
                e.clone().recipient(),
                e.clone().recipient(),
                e.clone().recipient(),
                self.stats.clone(),
                self.finished.clone(),
            )
        }

        /// Opens and closes one unit of work: the accounting tells the
        /// engine it is idle.
        fn go_idle(&self) {
            self.accounting.open(1);
            self.accounting.close(1);
        }
    }

    fn gated_stage() -> (
        Recipient<ClosePipelines>,
        mpsc::UnboundedReceiver<()>,
        oneshot::Sender<()>,
    ) {
        let (closes, closes_rx) = mpsc::unbounded_channel();
        let (open, gate) = oneshot::channel();
        let stage = GatedStage {
            closes,
            gate: Some(gate),
        };
        (stage.start().recipient(), closes_rx, open)
    }

    fn assert_illegal_state(res: Result<(), Error>) {
        let err = res.expect_err("control accepted");
        assert!(matches!(err.kind(), ErrorKind::IllegalState(_)), "{err}");
    }

    #[actix::test]
    async fn idle_is_ignored_while_work_is_open() {
        let (close, mut closes, gate) = gated_stage();
        let mut r = rig(Some(close), None);
        r.accounting.open(1);
        r.engine.send(Idle).await.unwrap();
        assert!(closes.try_recv().is_err(), "pipelines closed early");
        assert!(r.ctrl().await.is_empty());
        assert!(r.other().await.is_empty());
        assert!(!r.is_finished());
        assert!(r.engine.connected());
        drop(gate);
        r.accounting.close(1);
        let stats = r.final_stats().await;
        assert_eq!(stats.finish_reason.as_deref(), Some("finished"));
    }

    #[actix::test]
    async fn idle_at_zero_closes_pipelines_then_publishes_and_shuts_down() {
        let (close, mut closes, gate) = gated_stage();
        let mut r = rig(Some(close), None);
        r.go_idle();
        let closed = tokio::time::timeout(PATIENCE, closes.recv()).await;
        closed.expect("no ClosePipelines in time").unwrap();
        // Nothing is published or shut down until the pipelines closed.
        assert!(r.ctrl().await.is_empty());
        assert!(r.other().await.is_empty());
        assert!(!r.is_finished());

        gate.send(()).unwrap();
        let stats = r.final_stats().await;
        assert_eq!(stats.finish_reason.as_deref(), Some("finished"));
        assert!(stats.start_time.is_some());
        assert!(stats.finish_time.is_some());
        assert_eq!(r.ctrl().await, ["Shutdown"]);
        assert_eq!(r.other().await, ["Shutdown"]);
        assert!(closes.try_recv().is_err(), "pipelines closed twice");
        assert!(!r.engine.connected(), "the engine did not stop");
        // The live stats carry the same ending.
        let live = r.stats.snapshot();
        assert_eq!(live.finish_reason.as_deref(), Some("finished"));
    }

    #[actix::test]
    async fn a_stage_that_never_answers_the_close_does_not_keep_the_crawl_from_ending() {
        // The gate stays shut: the stage never answers `ClosePipelines`.
        let (close, mut closes, _gate) = gated_stage();
        let mut r = rig_with(Some(close), None, |e| {
            e.with_finish_timeout(Duration::from_millis(20))
        });
        r.go_idle();
        let closed = tokio::time::timeout(PATIENCE, closes.recv()).await;
        closed.expect("no ClosePipelines in time").unwrap();
        let stats = r.final_stats().await;
        assert_eq!(stats.finish_reason.as_deref(), Some("finished"));
        assert_eq!(stats.get("engine/finish_timeouts"), 1);
        assert_eq!(r.ctrl().await, ["Shutdown"]);
        assert_eq!(r.other().await, ["Shutdown"]);
    }

    #[actix::test]
    async fn a_stop_finishes_with_reason_shutdown() {
        let mut r = rig(None, None);
        r.engine
            .send(StopCrawl(StopMode::Escalate))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.ctrl().await, ["Stop"]);
        assert!(!r.is_finished());
        // Two Idles (say, the last request and a late duplicate report):
        // the crawl finishes once.
        r.go_idle();
        r.engine.do_send(Idle);
        let stats = r.final_stats().await;
        assert_eq!(stats.finish_reason.as_deref(), Some("shutdown"));
        assert_eq!(r.ctrl().await, ["ClosePipelines", "Shutdown"]);
        assert_eq!(r.other().await, ["Shutdown"]);
    }

    #[actix::test]
    async fn pause_and_resume_are_forwarded_to_the_scheduler() {
        let mut r = rig(None, None);
        r.engine.send(Pause).await.unwrap().unwrap();
        r.engine.send(Resume).await.unwrap().unwrap();
        assert_eq!(r.ctrl().await, ["Pause", "Resume"]);
        assert!(!r.is_finished());
        r.go_idle();
        let stats = r.final_stats().await;
        assert_eq!(stats.finish_reason.as_deref(), Some("finished"));
    }

    #[actix::test]
    async fn control_is_illegal_state_when_the_scheduler_is_gone() {
        let gone = Gone.start();
        gone.send(Shutdown).await.unwrap();
        assert!(!gone.connected());
        let r = rig(None, Some(gone));
        assert_illegal_state(r.engine.send(Pause).await.unwrap());
        assert_illegal_state(r.engine.send(Resume).await.unwrap());
        assert_illegal_state(r.engine.send(StopCrawl(StopMode::Escalate)).await.unwrap());
    }

    #[actix::test]
    async fn control_after_finishing_is_illegal_state() {
        let mut r = rig(None, None);
        let handle = r.handle();
        r.go_idle();
        r.final_stats().await;
        assert_illegal_state(handle.pause().await);
        assert_illegal_state(handle.resume().await);
        assert_illegal_state(handle.stop().await);
        assert_eq!(r.ctrl().await, ["ClosePipelines", "Shutdown"]);
    }

    #[actix::test]
    async fn control_sent_while_the_pipelines_close_is_refused() {
        let (close, mut closes, gate) = gated_stage();
        let mut r = rig(Some(close), None);
        let handle = r.handle();
        r.go_idle();
        let closed = tokio::time::timeout(PATIENCE, closes.recv()).await;
        closed.expect("no ClosePipelines in time").unwrap();
        let mut pause = Box::pin(handle.pause());
        assert!(futures_util::poll!(&mut pause).is_pending());
        gate.send(()).unwrap();
        let res = tokio::time::timeout(PATIENCE, pause).await;
        assert_illegal_state(res.expect("no answer in time"));
        let stats = r.final_stats().await;
        assert_eq!(stats.finish_reason.as_deref(), Some("finished"));
        assert_eq!(r.ctrl().await, ["Shutdown"]);
    }

    /// Limits with `items` set and every other one off.
    fn items(n: u64) -> Limits {
        Limits {
            items: Some(n),
            ..Limits::default()
        }
    }

    #[actix::test]
    async fn a_limit_stops_the_crawl_and_finishes_with_its_reason() {
        let mut r = rig_with(None, None, |e| e.with_limits(items(3)));
        r.stats.add(Counter::ItemScraped, 3);
        assert_eq!(r.ctrl_events.next().await.kind(), "Stop");
        assert!(!r.is_finished());
        // The user's first stop after a limit only drains (no second
        // `Stop`); the next one forces, as after a first stop of theirs.
        r.engine
            .send(StopCrawl(StopMode::Escalate))
            .await
            .unwrap()
            .unwrap();
        assert!(r.ctrl().await.is_empty());
        r.engine
            .send(StopCrawl(StopMode::Escalate))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.ctrl().await, ["ForceStop"]);
        r.go_idle();
        let stats = r.final_stats().await;
        assert_eq!(
            stats.finish_reason.as_deref(),
            Some("closespider_itemcount")
        );
        assert_eq!(r.ctrl().await, ["ClosePipelines", "Shutdown"]);
    }

    #[actix::test]
    async fn the_drain_deadline_forces_a_limits_stop() {
        let mut r = rig_with(None, None, |e| {
            e.with_limits(items(1))
                .with_drain_timeout(Duration::from_millis(50))
        });
        r.stats.add(Counter::ItemScraped, 1);
        assert_eq!(r.ctrl_events.next().await.kind(), "Stop");
        assert_eq!(r.ctrl_events.next().await.kind(), "ForceStop");
        r.go_idle();
        let stats = r.final_stats().await;
        assert_eq!(
            stats.finish_reason.as_deref(),
            Some("closespider_itemcount")
        );
    }

    #[actix::test]
    async fn once_stopping_no_limit_fires_and_the_first_reason_wins() {
        // The drain deadline comes after three limit checks.
        let mut r = rig_with(None, None, |e| {
            e.with_limits(items(1))
                .with_drain_timeout(LIMIT_CHECK_EVERY * 3)
        });
        r.engine
            .send(StopCrawl(StopMode::Graceful))
            .await
            .unwrap()
            .unwrap();
        r.stats.add(Counter::ItemScraped, 5);
        assert_eq!(r.ctrl_events.next().await.kind(), "Stop");
        // No check in between sent another `Stop`.
        assert_eq!(r.ctrl_events.next().await.kind(), "ForceStop");
        r.go_idle();
        let stats = r.final_stats().await;
        assert_eq!(stats.finish_reason.as_deref(), Some("shutdown"));
    }

    #[cfg(target_os = "linux")]
    #[actix::test]
    async fn a_memory_limit_already_exceeded_stops_at_the_first_check() {
        // The interval is far off: the check as the crawl starts stops it.
        let memory = Limits {
            memory_limit: Some(1),
            memory_every: Duration::from_secs(3600),
            ..Limits::default()
        };
        let mut r = rig_with(None, None, |e| e.with_limits(memory));
        assert_eq!(r.ctrl_events.next().await.kind(), "Stop");
        r.go_idle();
        let stats = r.final_stats().await;
        assert_eq!(stats.finish_reason.as_deref(), Some("memusage_exceeded"));
        assert_eq!(stats.get(MEMUSAGE_LIMIT_REACHED), 1);
        assert_eq!(stats.get(MEMUSAGE_WARNING_REACHED), 0);
        assert!(stats.get(MEMUSAGE_STARTUP) > 0);
        assert!(stats.get(MEMUSAGE_MAX) > 0);
    }
}
