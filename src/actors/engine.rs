//! Engine: owns a crawl's lifecycle, accounting and stats.
//!
//! The builder wires every actor and hands the Engine what it needs to end
//! the crawl. The Engine learns the crawl is over from the accounting (an
//! `Idle` when open work reaches zero: start requests exhausted, queue empty,
//! nothing in flight, no item in a pipeline). It then closes the pipelines
//! (flushing batches and files), stamps `finish_time` and `finish_reason`
//! (`"finished"`, or `"shutdown"` after a stop), publishes the final stats to
//! every `join()`, stops the other actors and their arbiters, and stops.
//! Pause, resume and stop from the handle pass through it to the Scheduler.

use std::sync::Arc;

use actix::prelude::*;
use slog::{info, Logger};
use tokio::sync::watch;

use crate::accounting::Accounting;
use crate::error::{Error, ErrorKind, Stage};
use crate::messages::{ClosePipelines, Idle, Pause, Resume, Shutdown, Stop};
use crate::stats::{Stats, StatsSnapshot};

/// Where the engine sends things.
pub struct EngineLinks {
    /// Scheduler: pause.
    pub pause: Recipient<Pause>,
    /// Scheduler: resume.
    pub resume: Recipient<Resume>,
    /// Scheduler: stop.
    pub stop: Recipient<Stop>,
    /// PipelineStage: close the pipelines.
    pub close: Recipient<ClosePipelines>,
    /// Every actor to stop when the crawl is over.
    pub shutdown: Vec<Recipient<Shutdown>>,
}

/// The engine actor.
pub struct Engine {
    /// Where it sends things.
    links: EngineLinks,
    /// The arbiters the crawl created (parser, pipelines, downloaders),
    /// stopped at the end.
    arbiters: Vec<Arbiter>,
    /// Open-work counter; `Idle` is re-checked against it.
    accounting: Arc<Accounting>,
    /// The crawl's counters.
    stats: Arc<Stats>,
    /// Publishes the final stats to `join()`.
    finished: watch::Sender<Option<StatsSnapshot>>,
    /// A stop was asked for: the finish reason is `"shutdown"`.
    stop_requested: bool,
    /// The finish sequence has begun; control messages are refused.
    finishing: bool,
    /// Structured log.
    log: Logger,
}

impl Engine {
    pub(crate) fn new(
        links: EngineLinks,
        arbiters: Vec<Arbiter>,
        accounting: Arc<Accounting>,
        stats: Arc<Stats>,
        finished: watch::Sender<Option<StatsSnapshot>>,
        log: Logger,
    ) -> Self {
        Engine {
            links,
            arbiters,
            accounting,
            stats,
            finished,
            stop_requested: false,
            finishing: false,
            log,
        }
    }

    fn finish(&mut self, ctx: &mut actix::Context<Self>) {
        let reason = if self.stop_requested {
            "shutdown"
        } else {
            "finished"
        };
        self.stats.mark_finished(reason);
        let snapshot = self.stats.snapshot();
        info!(self.log, "crawl finished"; "reason" => reason,
            "elapsed_s" => snapshot.elapsed_time_seconds,
            "stats" => %serde_json::to_string(&snapshot).unwrap_or_default());
        for r in &self.links.shutdown {
            r.do_send(Shutdown);
        }
        for a in &self.arbiters {
            a.stop();
        }
        self.finished.send_replace(Some(snapshot));
        ctx.stop();
    }

    fn refuse_if_finishing(&self, what: &str) -> Result<(), Error> {
        if self.finishing {
            return Err(Error::new(
                Stage::Control,
                ErrorKind::IllegalState(format!("cannot {what}: the crawl has finished")),
            ));
        }
        Ok(())
    }
}

impl Actor for Engine {
    type Context = actix::Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        self.stats.mark_started();
        info!(self.log, "crawl started");
    }
}

impl Handler<Idle> for Engine {
    type Result = ();

    fn handle(&mut self, _: Idle, ctx: &mut Self::Context) {
        if self.finishing || self.accounting.count() != 0 {
            return;
        }
        self.finishing = true;
        self.links
            .close
            .send(ClosePipelines)
            .into_actor(self)
            .map(|_, act, ctx| act.finish(ctx))
            .wait(ctx);
    }
}

fn forward<M>(
    engine: &Engine,
    to: &Recipient<M>,
    msg: M,
    what: &str,
) -> ResponseFuture<Result<(), Error>>
where
    M: Message<Result = Result<(), Error>> + Send + 'static,
{
    if let Err(e) = engine.refuse_if_finishing(what) {
        return Box::pin(async move { Err(e) });
    }
    let sent = to.send(msg);
    Box::pin(async move {
        sent.await.unwrap_or_else(|_| {
            Err(Error::new(
                Stage::Control,
                ErrorKind::IllegalState("the crawl has finished".into()),
            ))
        })
    })
}

impl Handler<Pause> for Engine {
    type Result = ResponseFuture<Result<(), Error>>;

    fn handle(&mut self, msg: Pause, _: &mut Self::Context) -> Self::Result {
        forward(self, &self.links.pause, msg, "pause")
    }
}

impl Handler<Resume> for Engine {
    type Result = ResponseFuture<Result<(), Error>>;

    fn handle(&mut self, msg: Resume, _: &mut Self::Context) -> Self::Result {
        forward(self, &self.links.resume, msg, "resume")
    }
}

impl Handler<Stop> for Engine {
    type Result = ResponseFuture<Result<(), Error>>;

    fn handle(&mut self, msg: Stop, _: &mut Self::Context) -> Self::Result {
        if !self.finishing {
            self.stop_requested = true;
        }
        forward(self, &self.links.stop, msg, "stop")
    }
}
