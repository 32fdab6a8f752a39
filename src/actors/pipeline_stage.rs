//! PipelineStage: runs every item through the pipelines, in order.
//!
//! It runs with the Parser (see `ThreadLayout`) and handles one `ProcessItems` batch at a time
//! (atomically), passing each item through the pipelines in priority order:
//! kept by all → `item_scraped_count`; dropped → `item_dropped_count`;
//! failed → `item_error_count` and a `Report` (with the item as JSON) to the
//! ErrorHandler, and the next item goes on — an error never stalls the
//! stage. A panicking pipeline (item or hook) is caught and counted the
//! same way, so the stage never dies mid-crawl. When a batch is through it sends `Completed` for the request that
//! produced it, which is what frees that request's download slot: a slow
//! pipeline slows the crawl instead of piling items up in memory. Pipelines
//! are opened when the stage starts, flushed on a timer (`FlushPipelines`
//! to itself), and closed once, on `ClosePipelines`; a hook that fails is
//! reported and counted in `pipeline/{open,flush,checkpoint,close}_failures`.
//!
//! The closes share one deadline (the crawl's finish timeout), in order:
//! each may take the time left divided by the number of closes still to
//! run, so a hanging pipeline takes its share only and the ones after it
//! still get theirs (a close that finishes when first polled always
//! does). A pipeline whose `close` is still pending at the end of its
//! share is abandoned (its `abandon` runs, to spill what it held),
//! counted in `pipeline/close_timeouts`, reported with its name and
//! logged, and the next one closes, so a hanging pipeline cannot keep
//! the crawl from ending. Items
//! that arrive after the close are refused: each is counted in
//! `item_error_count` and `pipeline/items_after_close` and reported with
//! the item, and its request completes.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::FutureExt;
use slog::{debug, error, Logger};

use crate::error::{panic_message, Error, ErrorKind, Stage};
use crate::messages::{
    deliver, CheckpointPipelines, ClosePipelines, Completed, FlushPipelines, ProcessItems, Report,
    Shutdown,
};
use crate::pipeline::{Pipeline, PipelineContext, Verdict};
use crate::stats::{Counter, Stats};

/// Where the stage sends things.
pub(crate) struct StageOutbox {
    /// Requests whose items are through.
    pub completed: Recipient<Completed>,
    /// Item failures.
    pub report: Recipient<Report>,
}

/// The pipeline-stage actor.
pub(crate) struct PipelineStage {
    /// Sorted by priority. Lent to the running batch's future (the handler
    /// is atomic, so no other message sees it empty).
    pipelines: Vec<Box<dyn Pipeline>>,
    /// `close` has run; it must run once only.
    closed: bool,
    /// Pipelines whose `close` failed or timed out (their last items may
    /// be lost).
    close_failures: usize,
    /// How long the closes may take, together.
    close_timeout: Duration,
    /// Handed to every pipeline's `open`.
    context: PipelineContext,
    /// How often `flush` runs.
    flush_interval: Duration,
    /// Where it sends things.
    outbox: StageOutbox,
    /// Counters.
    stats: Arc<Stats>,
    /// Structured log.
    log: Logger,
}

impl PipelineStage {
    /// A stage over `pipelines` (sorted here by priority, stable).
    pub fn new(
        mut pipelines: Vec<Box<dyn Pipeline>>,
        outbox: StageOutbox,
        spider: Arc<str>,
        flush_interval: Duration,
        stats: Arc<Stats>,
        log: Logger,
    ) -> Self {
        pipelines.sort_by_key(|p| p.priority());
        PipelineStage {
            pipelines,
            closed: false,
            close_failures: 0,
            close_timeout: crate::actors::engine::DEFAULT_FINISH_TIMEOUT,
            context: PipelineContext {
                spider,
                stats: stats.clone(),
                log: log.clone(),
                resumed: false,
            },
            flush_interval,
            outbox,
            stats,
            log,
        }
    }
}

impl PipelineStage {
    /// Sets how long the closes may take, together (default: the
    /// crawl's default finish timeout).
    pub fn with_close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Tells the pipelines, as they open, that the crawl continues earlier
    /// runs' work (a resumed job directory, or a distributed crawl).
    pub fn resuming(mut self, resumed: bool) -> Self {
        self.context.resumed = resumed;
        self
    }
}

/// A pipeline's panic as an error: the stage must outlive it, or the
/// crawl would wait for ever for its `Completed`.
fn panicked(payload: &(dyn std::any::Any + Send)) -> Error {
    Error::new(Stage::Pipeline, ErrorKind::Panic(panic_message(payload)))
}

/// The pipelines' lifecycle hooks.
#[derive(Clone, Copy, Debug)]
enum Hook {
    Open,
    Flush,
    Checkpoint,
    Close,
}

impl Hook {
    /// The stat counting this hook's failures (a failed close may have
    /// lost the pipeline's last items).
    fn failures(self) -> &'static str {
        match self {
            Hook::Open => "pipeline/open_failures",
            Hook::Flush => "pipeline/flush_failures",
            Hook::Checkpoint => "pipeline/checkpoint_failures",
            Hook::Close => "pipeline/close_failures",
        }
    }
}

impl PipelineStage {
    /// Runs `hook` on every pipeline in order (lending them to the future;
    /// run it atomically), reporting each failure to the ErrorHandler;
    /// resolves to how many failed.
    fn run_hook(&mut self, hook: Hook) -> ResponseActFuture<Self, usize> {
        let mut pipelines = std::mem::take(&mut self.pipelines);
        let report = self.outbox.report.clone();
        let stats = self.stats.clone();
        let context = self.context.clone();
        let log = self.log.clone();
        let timeout = self.close_timeout;
        let deadline = matches!(hook, Hook::Close).then(|| tokio::time::Instant::now() + timeout);
        let run = async move {
            let mut failed = 0;
            let count = pipelines.len();
            for (i, p) in pipelines.iter_mut().enumerate() {
                let hook_run = async {
                    match hook {
                        Hook::Open => p.open(&context).await,
                        Hook::Flush => p.flush().await,
                        Hook::Checkpoint => p.checkpoint().await,
                        Hook::Close => p.close().await,
                    }
                };
                let caught = AssertUnwindSafe(hook_run).catch_unwind();
                let outcome = match deadline {
                    // The pipeline's future is dropped on the timeout,
                    // which gives the pipeline back.
                    Some(at) => {
                        let at = share_of(at, count - i);
                        tokio::time::timeout_at(at, caught).await.ok()
                    }
                    None => Some(caught.await),
                };
                let result = match outcome {
                    Some(done) => done.unwrap_or_else(|panic| Err(panicked(&*panic))),
                    None => {
                        // What the dropped close held is saved now.
                        let abandoned = AssertUnwindSafe(|| p.abandon());
                        if let Err(panic) = std::panic::catch_unwind(abandoned) {
                            let e = panicked(&*panic).at(Stage::Pipeline);
                            deliver(
                                &report,
                                Report {
                                    error: e,
                                    item: None,
                                },
                                &stats,
                            );
                        }
                        stats.add_named("pipeline/close_timeouts", 1);
                        let (pipeline, after) = (p.name().to_string(), timeout);
                        let kind = ErrorKind::PipelineCloseTimeout { pipeline, after };
                        Err(Error::new(Stage::Pipeline, kind))
                    }
                };
                if let Err(e) = result {
                    failed += 1;
                    stats.add_named(hook.failures(), 1);
                    error!(log, "pipeline hook failed"; "pipeline" => p.name(),
                        "hook" => ?hook, "error" => %e);
                    let error = e.at(crate::error::Stage::Pipeline);
                    deliver(&report, Report { error, item: None }, &stats);
                }
            }
            (pipelines, failed)
        };
        Box::pin(run.into_actor(self).map(|(pipelines, failed), act, _| {
            act.pipelines = pipelines;
            failed
        }))
    }
}

/// When the next of `left` closes must be done by, for all of them to be
/// done by `deadline`: an equal share of the time left.
fn share_of(deadline: tokio::time::Instant, left: usize) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    let remaining = deadline.saturating_duration_since(now);
    now + remaining / (left.max(1) as u32)
}

impl Actor for PipelineStage {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.wait(self.run_hook(Hook::Open).map(|_, _, _| ()));
        ctx.run_interval(self.flush_interval, |_, ctx| {
            ctx.notify(FlushPipelines);
        });
    }
}

impl Handler<ProcessItems> for PipelineStage {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: ProcessItems, _: &mut Self::Context) -> Self::Result {
        if self.closed {
            self.refuse(msg);
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        }
        let mut pipelines = std::mem::take(&mut self.pipelines);
        let stats = self.stats.clone();
        let report = self.outbox.report.clone();
        let log = self.log.clone();
        let ProcessItems { items, meta } = msg;
        let run = async move {
            'items: for mut item in items {
                for p in pipelines.iter_mut() {
                    let outcome = AssertUnwindSafe(p.process_item(&mut item, &meta))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|panic| Err(panicked(&*panic)));
                    match outcome {
                        Ok(Verdict::Keep) => {}
                        Ok(Verdict::Drop(reason)) => {
                            debug!(log, "item dropped"; "pipeline" => p.name(),
                                "url" => %crate::redact::Redacted(&meta.url), "reason" => reason);
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
                deliver(&act.outbox.completed, Completed { id }, &act.stats);
            },
        )))
    }
}

impl PipelineStage {
    /// Refuses a batch that arrived after the pipelines closed: no
    /// pipeline may see it, and none of it is dropped silently. Each item
    /// is counted (`item_error_count`, `pipeline/items_after_close`) and
    /// reported with its JSON (the ErrorHandler logs it and publishes the
    /// error); the request completes.
    fn refuse(&mut self, msg: ProcessItems) {
        let ProcessItems { items, meta } = msg;
        if !items.is_empty() {
            error!(self.log, "items arrived after the pipelines closed; refused";
                "items" => items.len(), "url" => %crate::redact::Redacted(&meta.url));
        }
        for item in items {
            self.stats.inc(Counter::ItemError);
            self.stats.add_named("pipeline/items_after_close", 1);
            let refused = ErrorKind::IllegalState("item refused: the pipelines are closed".into());
            let error = Error::new(Stage::Pipeline, refused).with_url(&meta.url);
            let item = item.to_json().ok();
            deliver(&self.outbox.report, Report { error, item }, &self.stats);
        }
        let id = meta.request_id;
        deliver(&self.outbox.completed, Completed { id }, &self.stats);
    }
}

impl Handler<FlushPipelines> for PipelineStage {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: FlushPipelines, _: &mut Self::Context) -> Self::Result {
        if self.closed {
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        }
        AtomicResponse::new(Box::pin(self.run_hook(Hook::Flush).map(|_, _, _| ())))
    }
}

impl Handler<CheckpointPipelines> for PipelineStage {
    type Result = AtomicResponse<Self, Result<(), Error>>;

    fn handle(&mut self, _: CheckpointPipelines, _: &mut Self::Context) -> Self::Result {
        if self.closed {
            let closed_ok = self.close_failures == 0;
            return AtomicResponse::new(Box::pin(actix::fut::ready(if closed_ok {
                Ok(())
            } else {
                Err(hooks_failed("close", self.close_failures))
            })));
        }
        AtomicResponse::new(Box::pin(self.run_hook(Hook::Checkpoint).map(
            |failed, _, _| match failed {
                0 => Ok(()),
                n => Err(hooks_failed("checkpoint", n)),
            },
        )))
    }
}

/// The error of `n` failed pipeline hooks (each already reported).
fn hooks_failed(hook: &str, n: usize) -> Error {
    Error::new(
        crate::error::Stage::Pipeline,
        ErrorKind::Custom(format!("{n} pipeline {hook} hook(s) failed")),
    )
}

impl Handler<ClosePipelines> for PipelineStage {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: ClosePipelines, _: &mut Self::Context) -> Self::Result {
        if self.closed {
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        }
        self.closed = true;
        AtomicResponse::new(Box::pin(self.run_hook(Hook::Close).map(
            |failed, act, _| {
                act.close_failures = failed;
            },
        )))
    }
}

impl Handler<Shutdown> for PipelineStage {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use serde_json::{json, Value};
    use url::Url;
    use uuid::Uuid;

    use super::*;
    use crate::actors::test_support::{
        expect_event, kinds, log, Cb, Event, Events, Ping, Recorder,
    };
    use crate::error::{Error, ErrorKind, Stage};
    use crate::item::{Item, ItemMeta};

    /// What the fake pipelines did, in order, across both of them.
    type Journal = Arc<Mutex<Vec<String>>>;

    /// Decides each item by its `"verdict"` field: `"keep"`, `"drop"` or
    /// `"error"`. Its `open` yields first, so a stage that did not wait
    /// for it would let items in before it finished.
    struct Judge {
        journal: Journal,
        fail_open: bool,
    }

    #[async_trait(?Send)]
    impl Pipeline for Judge {
        fn name(&self) -> &str {
            "judge"
        }
        fn priority(&self) -> i32 {
            0
        }
        async fn open(&mut self, ctx: &PipelineContext) -> Result<(), Error> {
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            self.journal
                .lock()
                .unwrap()
                .push(format!("judge:open:{}", ctx.spider));
            if self.fail_open {
                return Err(Error::custom(Stage::Pipeline, "no database"));
            }
            Ok(())
        }
        async fn process_item(&mut self, item: &mut Item, _: &ItemMeta) -> Result<Verdict, Error> {
            let value = item.to_json()?;
            self.journal
                .lock()
                .unwrap()
                .push(format!("judge:{}", value["n"]));
            match value["verdict"].as_str() {
                Some("drop") => Ok(Verdict::Drop("unwanted".into())),
                Some("error") => Err(Error::custom(Stage::Pipeline, "bad item")),
                _ => Ok(Verdict::Keep),
            }
        }
        async fn close(&mut self) -> Result<(), Error> {
            self.journal.lock().unwrap().push("judge:close".into());
            Ok(())
        }
    }

    /// Keeps everything; runs after the judge.
    struct Tail {
        journal: Journal,
    }

    #[async_trait(?Send)]
    impl Pipeline for Tail {
        fn priority(&self) -> i32 {
            10
        }
        async fn open(&mut self, _: &PipelineContext) -> Result<(), Error> {
            self.journal.lock().unwrap().push("tail:open".into());
            Ok(())
        }
        async fn process_item(&mut self, item: &mut Item, _: &ItemMeta) -> Result<Verdict, Error> {
            let value = item.to_json()?;
            self.journal
                .lock()
                .unwrap()
                .push(format!("tail:{}", value["n"]));
            Ok(Verdict::Keep)
        }
        async fn flush(&mut self) -> Result<(), Error> {
            self.journal.lock().unwrap().push("tail:flush".into());
            Ok(())
        }
        async fn close(&mut self) -> Result<(), Error> {
            self.journal.lock().unwrap().push("tail:close".into());
            Err(Error::custom(Stage::Pipeline, "flush failed"))
        }
    }

    /// Its `close` never returns: a future that stays pending.
    struct Hangs;

    #[async_trait(?Send)]
    impl Pipeline for Hangs {
        fn name(&self) -> &str {
            "hangs"
        }
        fn priority(&self) -> i32 {
            -1
        }
        async fn process_item(&mut self, _: &mut Item, _: &ItemMeta) -> Result<Verdict, Error> {
            Ok(Verdict::Keep)
        }
        async fn close(&mut self) -> Result<(), Error> {
            std::future::pending().await
        }
    }

    struct Rig {
        stage: Addr<PipelineStage>,
        journal: Journal,
        out: Addr<Recorder<Cb>>,
        out_events: Events<Cb>,
        stats: Arc<Stats>,
    }

    /// A started stage over `pipelines`, its outbox recorded, its closes
    /// bounded by `close_timeout`; the flush timer never fires here.
    fn start_stage(
        pipelines: Vec<Box<dyn Pipeline>>,
        close_timeout: Duration,
    ) -> (
        Addr<PipelineStage>,
        Addr<Recorder<Cb>>,
        Events<Cb>,
        Arc<Stats>,
    ) {
        let (out, out_events) = Recorder::spawn();
        let stats = Arc::new(Stats::default());
        let outbox = StageOutbox {
            completed: out.clone().recipient(),
            report: out.clone().recipient(),
        };
        let hour = Duration::from_secs(3600);
        let stage =
            PipelineStage::new(pipelines, outbox, "test".into(), hour, stats.clone(), log())
                .with_close_timeout(close_timeout)
                .start();
        (stage, out, out_events, stats)
    }

    /// A stage over a `Tail` and a `Judge`, given in the wrong order (the
    /// stage sorts them by priority). The flush timer never fires here.
    fn rig(fail_open: bool) -> Rig {
        rig_with(fail_open, None, Duration::from_secs(3600))
    }

    /// As `rig`, with `extra` among the pipelines and the closes bounded
    /// by `close_timeout`.
    fn rig_with(fail_open: bool, extra: Option<Box<dyn Pipeline>>, close_timeout: Duration) -> Rig {
        let journal = Journal::default();
        let mut pipelines: Vec<Box<dyn Pipeline>> = vec![
            Box::new(Tail {
                journal: journal.clone(),
            }),
            Box::new(Judge {
                journal: journal.clone(),
                fail_open,
            }),
        ];
        pipelines.extend(extra);
        let (stage, out, out_events, stats) = start_stage(pipelines, close_timeout);
        Rig {
            stage,
            journal,
            out,
            out_events,
            stats,
        }
    }

    fn batch(verdicts: &[(u32, &str)]) -> (Uuid, ProcessItems) {
        let items = verdicts
            .iter()
            .map(|(n, v)| Item::new(json!({"n": n, "verdict": v})))
            .collect();
        let id = Uuid::new_v4();
        let meta = ItemMeta {
            request_id: id,
            url: Url::parse("http://h/page").unwrap(),
            spider: "test".into(),
            depth: 0,
            dispatched_at: None,
        };
        (id, ProcessItems { items, meta })
    }

    impl Rig {
        async fn out(&mut self) -> Vec<Event<Cb>> {
            self.out.send(Ping).await.unwrap();
            self.out_events.drain()
        }

        fn journal(&self) -> Vec<String> {
            self.journal.lock().unwrap().clone()
        }
    }

    #[actix::test]
    async fn items_are_kept_dropped_or_failed_and_counted() {
        let mut r = rig(false);
        let verdicts = [
            (1, "keep"),
            (2, "drop"),
            (3, "error"),
            (4, "keep"),
            (5, "error"),
        ];
        let (id, msg) = batch(&verdicts);
        r.stage.send(msg).await.unwrap();
        assert_eq!(r.stats.get(Counter::ItemScraped), 2);
        assert_eq!(r.stats.get(Counter::ItemDropped), 1);
        assert_eq!(r.stats.get(Counter::ItemError), 2);

        let out = r.out().await;
        assert_eq!(kinds(&out), ["Report", "Report", "Completed"]);
        let mut out = out.into_iter();
        for n in [3, 5] {
            let report = expect_event!(out.next().unwrap(), Event::Report(rep) => rep);
            assert_eq!(report.item, Some(json!({"n": n, "verdict": "error"})));
            let e = report.error;
            assert!(
                matches!(e.kind(), ErrorKind::Custom(m) if m == "bad item"),
                "{e}"
            );
            assert_eq!(e.stage(), Stage::Pipeline);
            assert_eq!(e.url().map(Url::as_str), Some("http://h/page"));
        }
        assert_eq!(
            expect_event!(out.next().unwrap(), Event::Completed(id) => id),
            id
        );
        // Sorted by priority; a dropped or failed item goes no further.
        let items: Vec<_> = r.journal().into_iter().skip(2).collect();
        assert_eq!(
            items,
            ["judge:1", "tail:1", "judge:2", "judge:3", "judge:4", "tail:4", "judge:5"]
        );
    }

    #[actix::test]
    async fn every_batch_completes_exactly_once() {
        let mut r = rig(false);
        let mut ids = Vec::new();
        for verdicts in [&[(1, "keep"), (2, "error")][..], &[], &[(3, "drop")]] {
            let (id, msg) = batch(verdicts);
            ids.push(id);
            r.stage.do_send(msg);
        }
        let (last, msg) = batch(&[(4, "keep")]);
        ids.push(last);
        r.stage.send(msg).await.unwrap();
        let completed: Vec<_> = r
            .out()
            .await
            .into_iter()
            .filter_map(|e| match e {
                Event::Completed(id) => Some(id),
                Event::Report(_) => None,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(completed, ids);
        assert_eq!(r.stats.get(Counter::ItemScraped), 2);
    }

    #[actix::test]
    async fn open_runs_once_before_the_first_item_and_close_runs_once() {
        let mut r = rig(false);
        let (_, first) = batch(&[(1, "keep")]);
        r.stage.do_send(first);
        let (_, second) = batch(&[(2, "keep")]);
        r.stage.send(second).await.unwrap();
        r.stage.send(ClosePipelines).await.unwrap();
        r.stage.send(ClosePipelines).await.unwrap();
        assert_eq!(
            r.journal(),
            [
                "judge:open:test",
                "tail:open",
                "judge:1",
                "tail:1",
                "judge:2",
                "tail:2",
                "judge:close",
                "tail:close"
            ]
        );
        // The tail's failing close is reported, once.
        let out = r.out().await;
        assert_eq!(kinds(&out), ["Completed", "Completed", "Report"]);
        let report = expect_event!(out.into_iter().last().unwrap(), Event::Report(rep) => rep);
        assert!(matches!(report.error.kind(), ErrorKind::Custom(m) if m == "flush failed"));
        assert_eq!(report.error.stage(), Stage::Pipeline);
    }

    #[actix::test]
    async fn a_checkpoint_fails_when_a_pipeline_cannot_make_its_items_durable() {
        let r = rig(false);
        // Tail's checkpoint is its flush (the default) and succeeds;
        // Judge's checkpoint (default too) succeeds.
        r.stage.send(CheckpointPipelines).await.unwrap().unwrap();
        assert!(r.journal().contains(&"tail:flush".to_string()));
        // Tail's close fails: a checkpoint after it must not claim the
        // items are durable.
        r.stage.send(ClosePipelines).await.unwrap();
        let err = r
            .stage
            .send(CheckpointPipelines)
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            err.to_string().contains("1 pipeline close hook(s) failed"),
            "{err}"
        );
        assert_eq!(r.stats.snapshot().get("pipeline/close_failures"), 1);
    }

    #[actix::test]
    async fn a_failing_open_is_reported_and_items_still_flow() {
        let mut r = rig(true);
        let (id, msg) = batch(&[(1, "keep")]);
        r.stage.send(msg).await.unwrap();
        let out = r.out().await;
        assert_eq!(kinds(&out), ["Report", "Completed"]);
        let mut out = out.into_iter();
        let report = expect_event!(out.next().unwrap(), Event::Report(rep) => rep);
        assert!(matches!(report.error.kind(), ErrorKind::Custom(m) if m == "no database"));
        assert_eq!(report.item, None::<Value>);
        assert_eq!(
            expect_event!(out.next().unwrap(), Event::Completed(id) => id),
            id
        );
        assert_eq!(r.stats.get(Counter::ItemScraped), 1);
        assert_eq!(r.stats.snapshot().get("pipeline/open_failures"), 1);
    }

    /// A guard against a hang, not a wait for work.
    const PATIENCE: Duration = Duration::from_secs(10);

    #[actix::test]
    async fn a_close_that_never_returns_is_abandoned_and_the_others_still_close() {
        let after = Duration::from_millis(50);
        let mut r = rig_with(false, Some(Box::new(Hangs)), after);
        let closed = tokio::time::timeout(PATIENCE, r.stage.send(ClosePipelines)).await;
        closed.expect("the stage is still closing").unwrap();
        let closes: Vec<_> = r.journal().into_iter().skip(2).collect();
        assert_eq!(closes, ["judge:close", "tail:close"]);
        assert_eq!(r.stats.snapshot().get("pipeline/close_timeouts"), 1);
        let out = r.out().await;
        assert_eq!(kinds(&out), ["Report", "Report"]);
        let report = expect_event!(out.into_iter().next().unwrap(), Event::Report(rep) => rep);
        match report.error.kind() {
            ErrorKind::PipelineCloseTimeout { pipeline, after: a } => {
                assert_eq!((pipeline.as_str(), *a), ("hangs", after));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(report.error.stage(), Stage::Pipeline);
        // The last checkpoint must not claim the hanging pipeline's items
        // are durable.
        let checkpoint = r.stage.send(CheckpointPipelines).await.unwrap();
        let err = checkpoint.unwrap_err().to_string();
        assert!(err.contains("2 pipeline close hook(s) failed"), "{err}");
        assert_eq!(r.stats.snapshot().get("pipeline/close_failures"), 2);
    }

    /// Its `close` takes a little time (a quick round trip).
    struct Quick(Journal);

    #[async_trait(?Send)]
    impl Pipeline for Quick {
        fn name(&self) -> &str {
            "quick"
        }
        async fn process_item(&mut self, _: &mut Item, _: &ItemMeta) -> Result<Verdict, Error> {
            Ok(Verdict::Keep)
        }
        async fn close(&mut self) -> Result<(), Error> {
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.0.lock().unwrap().push("quick:close".into());
            Ok(())
        }
    }

    #[actix::test]
    async fn a_hanging_close_takes_only_its_share_of_the_deadline() {
        let journal = Journal::default();
        let pipelines: Vec<Box<dyn Pipeline>> =
            vec![Box::new(Hangs), Box::new(Quick(journal.clone()))];
        let (stage, _out, _events, stats) = start_stage(pipelines, Duration::from_secs(2));
        let closed = tokio::time::timeout(PATIENCE, stage.send(ClosePipelines)).await;
        closed.expect("the stage is still closing").unwrap();
        // The hanging close was abandoned after its half; the next one had
        // the other half, and closed.
        assert_eq!(*journal.lock().unwrap(), ["quick:close"]);
        assert_eq!(stats.snapshot().get("pipeline/close_timeouts"), 1);
    }

    #[actix::test]
    async fn an_abandoned_close_spills_http_persists_batch_and_counts_it() {
        // An endpoint that takes the connection and never answers, behind
        // a pipeline whose close hangs: both closes are abandoned.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/persist", silent.local_addr().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let spill = dir.path().join("spill.jsonl");
        let persist = crate::pipelines::HttpPersist::new(&url, &spill)
            .unwrap()
            .batch_size(100)
            .timeout(Duration::from_secs(3600));
        let pipelines: Vec<Box<dyn Pipeline>> = vec![Box::new(Hangs), Box::new(persist)];
        let (stage, _out, _events, stats) = start_stage(pipelines, Duration::from_millis(200));
        let (_, msg) = batch(&[(1, "keep"), (2, "keep"), (3, "keep")]);
        stage.send(msg).await.unwrap();
        let closed = tokio::time::timeout(PATIENCE, stage.send(ClosePipelines)).await;
        closed.expect("the stage is still closing").unwrap();
        let text = std::fs::read_to_string(&spill).expect("the batch was spilled");
        let spilled: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let expected: Vec<Value> = (1..=3)
            .map(|n| json!({"n": n, "verdict": "keep"}))
            .collect();
        assert_eq!(spilled, expected);
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.get("persist/spilled_items"), 3);
        assert_eq!(snapshot.get("persist/abandoned_batches"), 1);
        assert_eq!(snapshot.get("persist/lost_items"), 0);
        assert_eq!(snapshot.get("pipeline/close_timeouts"), 2);
    }

    #[actix::test]
    async fn items_after_close_are_refused_counted_and_reported() {
        let mut r = rig(false);
        r.stage.send(ClosePipelines).await.unwrap();
        let (id, msg) = batch(&[(1, "keep"), (2, "keep")]);
        r.stage.send(msg).await.unwrap();
        // No pipeline saw them.
        assert!(
            !r.journal().iter().any(|e| e.ends_with(":1")),
            "{:?}",
            r.journal()
        );
        assert_eq!(r.stats.get(Counter::ItemScraped), 0);
        assert_eq!(r.stats.get(Counter::ItemError), 2);
        assert_eq!(r.stats.snapshot().get("pipeline/items_after_close"), 2);
        let out = r.out().await;
        // The tail's failing close, then one report per item, then the
        // request completes.
        assert_eq!(kinds(&out), ["Report", "Report", "Report", "Completed"]);
        let mut out = out.into_iter().skip(1);
        for n in [1, 2] {
            let report = expect_event!(out.next().unwrap(), Event::Report(rep) => rep);
            assert_eq!(report.item, Some(json!({"n": n, "verdict": "keep"})));
            assert!(
                matches!(report.error.kind(), ErrorKind::IllegalState(m) if m.contains("closed")),
                "{}",
                report.error
            );
            assert_eq!(report.error.url().map(Url::as_str), Some("http://h/page"));
        }
        assert_eq!(
            expect_event!(out.next().unwrap(), Event::Completed(id) => id),
            id
        );
    }
}
