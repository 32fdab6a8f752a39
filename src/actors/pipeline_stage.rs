//! PipelineStage: runs every item through the pipelines, in order.
//!
//! It runs on its own arbiter and handles one `ProcessItems` batch at a time
//! (atomically), passing each item through the pipelines in priority order:
//! kept by all → `item_scraped_count`; dropped → `item_dropped_count`;
//! failed → `item_error_count` and a `Report` (with the item as JSON) to the
//! ErrorHandler, and the next item goes on — an error never stalls the
//! stage. When a batch is through it sends `Completed` for the request that
//! produced it, which is what frees that request's download slot: a slow
//! pipeline slows the crawl instead of piling items up in memory. Pipelines
//! are opened when the stage starts and closed once, on `ClosePipelines`.

use std::sync::Arc;

use actix::prelude::*;
use slog::{debug, error, Logger};

use crate::messages::{deliver, ClosePipelines, Completed, ProcessItems, Report, Shutdown};
use crate::pipeline::{Pipeline, Verdict};
use crate::stats::{Counter, Stats};

/// Where the stage sends things.
pub struct StageLinks {
    /// Requests whose items are through.
    pub completed: Recipient<Completed>,
    /// Item failures.
    pub report: Recipient<Report>,
}

/// The pipeline-stage actor.
pub struct PipelineStage {
    /// Sorted by priority. Lent to the running batch's future (the handler
    /// is atomic, so no other message sees it empty).
    pipelines: Vec<Box<dyn Pipeline>>,
    /// `close` has run; it must run once only.
    closed: bool,
    /// Where it sends things.
    links: StageLinks,
    /// Counters.
    stats: Arc<Stats>,
    /// Structured log.
    log: Logger,
}

impl PipelineStage {
    /// A stage over `pipelines` (sorted here by priority, stable).
    pub fn new(
        mut pipelines: Vec<Box<dyn Pipeline>>,
        links: StageLinks,
        stats: Arc<Stats>,
        log: Logger,
    ) -> Self {
        pipelines.sort_by_key(|p| p.priority());
        PipelineStage {
            pipelines,
            closed: false,
            links,
            stats,
            log,
        }
    }
}

impl Actor for PipelineStage {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let mut pipelines = std::mem::take(&mut self.pipelines);
        let report = self.links.report.clone();
        let stats = self.stats.clone();
        let open = async move {
            for p in pipelines.iter_mut() {
                if let Err(error) = p.open().await {
                    deliver(&report, Report { error, item: None }, &stats);
                }
            }
            pipelines
        };
        ctx.wait(open.into_actor(self).map(|pipelines, act, _| {
            act.pipelines = pipelines;
        }));
    }
}

impl Handler<ProcessItems> for PipelineStage {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: ProcessItems, _: &mut Self::Context) -> Self::Result {
        let mut pipelines = std::mem::take(&mut self.pipelines);
        let stats = self.stats.clone();
        let report = self.links.report.clone();
        let log = self.log.clone();
        let ProcessItems { items, meta } = msg;
        let run = async move {
            'items: for mut item in items {
                for p in pipelines.iter_mut() {
                    match p.process_item(&mut item, &meta).await {
                        Ok(Verdict::Keep) => {}
                        Ok(Verdict::Drop(reason)) => {
                            debug!(log, "item dropped"; "pipeline" => p.name(),
                                "url" => %meta.url, "reason" => reason);
                            stats.inc(Counter::ItemDropped);
                            continue 'items;
                        }
                        Err(e) => {
                            stats.inc(Counter::ItemError);
                            let error = e.at(crate::error::Stage::Pipeline).with_url(&meta.url);
                            let item = item.to_json().ok();
                            deliver(&report, Report { error, item }, &stats);
                            continue 'items;
                        }
                    }
                }
                stats.inc(Counter::ItemScraped);
            }
            (pipelines, meta.request_id)
        };
        AtomicResponse::new(Box::pin(run.into_actor(self).map(
            |(pipelines, id), act, _| {
                act.pipelines = pipelines;
                deliver(&act.links.completed, Completed { id }, &act.stats);
            },
        )))
    }
}

impl Handler<ClosePipelines> for PipelineStage {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: ClosePipelines, _: &mut Self::Context) -> Self::Result {
        if self.closed {
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        }
        self.closed = true;
        let mut pipelines = std::mem::take(&mut self.pipelines);
        let report = self.links.report.clone();
        let stats = self.stats.clone();
        let log = self.log.clone();
        let close = async move {
            for p in pipelines.iter_mut() {
                if let Err(e) = p.close().await {
                    error!(log, "pipeline close failed"; "pipeline" => p.name(), "error" => %e);
                    let error = e.at(crate::error::Stage::Pipeline);
                    deliver(&report, Report { error, item: None }, &stats);
                }
            }
            pipelines
        };
        AtomicResponse::new(Box::pin(close.into_actor(self).map(|pipelines, act, _| {
            act.pipelines = pipelines;
        })))
    }
}

impl Handler<Shutdown> for PipelineStage {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
