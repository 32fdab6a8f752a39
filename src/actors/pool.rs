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

use std::sync::Arc;

use actix::prelude::*;
use slog::{debug, error, info, Logger};
use uuid::Uuid;

use crate::accounting::Accounting;
use crate::context::Context;
use crate::error::{Error, ErrorKind, Stage};
use crate::messages::Released;
use crate::messages::{
    deliver, Completed, Dispatch, Download, Downloaded, Enqueue, Outcome, PageFetched, Parse,
    RequestFailed, Requeue, Shutdown, WorkerCrashed,
};
use crate::politeness::SlotReport;
use crate::recrawl::{self, PageUpdate, Verdict};
use crate::request::slot_of;
use crate::request::Callback;
use crate::response::Response;
use crate::retry::RetryPolicy;
use crate::stats::{Counter, Stats};

/// Where the pool sends things.
pub(crate) struct PoolOutbox<C: Callback> {
    /// The downloaders, by index.
    pub workers: Vec<Recipient<Download<C>>>,
    /// The same downloaders, told when the crawl is over.
    pub worker_shutdown: Vec<Recipient<Shutdown>>,
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
    /// Host slots freed by finished downloads.
    pub released: Recipient<Released>,
}

/// The pool actor.
pub(crate) struct Pool<C: Callback> {
    /// Where it sends things.
    outbox: PoolOutbox<C>,
    /// Requests in flight per downloader, to pick the least loaded.
    load: Vec<usize>,
    /// Each downloader's incarnation as the pool knows it.
    epochs: Vec<u64>,
    /// Every request in flight, as dispatched, with its downloader: what a
    /// crash re-queues. Touched twice per page, so hashed with foldhash
    /// (hashbrown's default), not SipHash: the ids are random anyway.
    in_flight: hashbrown::HashMap<Uuid, (usize, Context<C>)>,
    /// A request may crash its downloader this many times before it fails.
    max_crashes: u32,
    /// Which failures are re-queued for another try; `None` turns retries
    /// off.
    retry: Option<RetryPolicy>,
    /// Open-work counter (for requests middlewares emit).
    accounting: Arc<Accounting>,
    /// Counters.
    stats: Arc<Stats>,
    /// Structured log.
    log: Logger,
    /// The page index, with a job directory.
    pages: Option<PageIndexing<C>>,
}

/// How the Pool feeds the page index of a crawl with a job directory.
pub(crate) struct PageIndexing<C: Callback> {
    /// The Scheduler, which records each change with its request's
    /// completion.
    pub to: Recipient<PageFetched<C>>,
    /// A re-crawl is under way: answers are counted by verdict, and
    /// unchanged pages are not parsed...
    pub recrawl: bool,
    /// ...unless the spider wants every page's items.
    pub parse_unchanged: bool,
}

impl<C: Callback> Pool<C> {
    /// A pool over `outbox.workers`.
    pub(crate) fn new(
        outbox: PoolOutbox<C>,
        max_crashes: u32,
        retry: Option<RetryPolicy>,
        accounting: Arc<Accounting>,
        stats: Arc<Stats>,
        log: Logger,
    ) -> Self {
        let n = outbox.workers.len();
        Pool {
            outbox,
            load: vec![0; n],
            epochs: vec![0; n],
            in_flight: hashbrown::HashMap::new(),
            max_crashes,
            retry,
            accounting,
            stats,
            log,
            pages: None,
        }
    }

    /// Feeds the page index.
    pub(crate) fn with_pages(mut self, pages: PageIndexing<C>) -> Self {
        self.pages = Some(pages);
        self
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
        deliver(&self.outbox.workers[worker], download, &self.stats);
    }
}

impl<C: Callback> Handler<Downloaded<C>> for Pool<C> {
    type Result = ();

    fn handle(&mut self, msg: Downloaded<C>, _: &mut Self::Context) {
        let Some((worker, dispatched)) = self.in_flight.remove(&msg.id) else {
            debug!(self.log, "ignoring a report from a crashed downloader"; "request_id" => %msg.id);
            return;
        };
        self.load[worker] = self.load[worker].saturating_sub(1);
        deliver(
            &self.outbox.released,
            Released { report: msg.report },
            &self.stats,
        );
        if !msg.emitted.is_empty() {
            let batch: Vec<_> = msg
                .emitted
                .into_iter()
                .map(|r| Context::new(r, Some(msg.id)))
                .collect();
            self.accounting.open(batch.len());
            deliver(&self.outbox.enqueue, Enqueue { batch }, &self.stats);
        }
        match msg.outcome {
            Outcome::Response(ctx, response) => {
                if self.index_page(&dispatched, &response) {
                    let id = ctx.id;
                    deliver(&self.outbox.completed, Completed { id }, &self.stats);
                } else {
                    deliver(&self.outbox.parser, Parse { ctx, response }, &self.stats);
                }
            }
            Outcome::Failed(ctx, error) => {
                let status = match error.kind() {
                    ErrorKind::HttpStatus(status) => Some(*status),
                    _ => None,
                };
                if status.is_some_and(|s| self.index_gone(&dispatched, s)) {
                    let id = ctx.id;
                    deliver(&self.outbox.completed, Completed { id }, &self.stats);
                } else {
                    self.failed(ctx, error);
                }
            }
            Outcome::Redirected(ctx, next) => {
                let batch = vec![Context::new(*next, Some(ctx.id))];
                self.accounting.open(1);
                deliver(&self.outbox.enqueue, Enqueue { batch }, &self.stats);
                deliver(
                    &self.outbox.completed,
                    Completed { id: ctx.id },
                    &self.stats,
                );
            }
            Outcome::Dropped(ctx, reason) => {
                debug!(self.log, "request dropped by a middleware";
                    "request_id" => %ctx.id, "url" => %crate::redact::Redacted(&ctx.request.url), "reason" => reason);
                self.stats.inc(Counter::DownloadDropped);
                deliver(
                    &self.outbox.completed,
                    Completed { id: ctx.id },
                    &self.stats,
                );
            }
        }
    }
}

impl<C: Callback> Pool<C> {
    /// Records what a page's answer changes in the page index (with a job
    /// directory) and, during a re-crawl, counts its verdict. `ctx` is the
    /// request as dispatched, before the middlewares changed it: what a
    /// revisit sends again. True when the response is not to be parsed: an
    /// unchanged page of a re-crawl.
    fn index_page(&self, ctx: &Context<C>, response: &Response) -> bool {
        let Some(pages) = &self.pages else {
            return false;
        };
        if self.index_gone(ctx, response.status) {
            // A status the request allows: parsed all the same.
            return false;
        }
        let Some((verdict, record)) = recrawl::judge(&ctx.request, response) else {
            return false;
        };
        // Nothing to record when the page answered as the index holds it.
        // The verdict is counted when the request's completion is
        // recorded.
        let update = record.map(|r| PageUpdate::Seen(Box::new(r)));
        let counter = pages.recrawl.then(|| verdict.counter(&ctx.request));
        if update.is_some() || counter.is_some() {
            let fetched = PageFetched {
                id: ctx.id,
                update,
                counter,
            };
            deliver(&pages.to, fetched, &self.stats);
        }
        if !pages.recrawl {
            return false;
        }
        // A sitemap is read all the same: its `<lastmod>`s are news.
        let parse = ctx.request.known.as_deref().is_some_and(|k| k.parse);
        let skip = verdict == Verdict::Unchanged && !pages.parse_unchanged && !parse;
        if skip {
            debug!(self.log, "unchanged since the last crawl: not parsed";
                "request_id" => %ctx.id, "url" => %crate::redact::Redacted(&ctx.request.url), "status" => response.status);
        }
        skip
    }

    /// Whether `status` says an indexed page is gone; if so, it leaves the
    /// page index (`recrawl/gone`): an expected end of a re-crawl's
    /// revisit, not a failure.
    fn index_gone(&self, ctx: &Context<C>, status: u16) -> bool {
        let Some(pages) = &self.pages else {
            return false;
        };
        if !recrawl::is_gone(&ctx.request, status) {
            return false;
        }
        info!(self.log, "page gone since the last crawl";
            "url" => %crate::redact::Redacted(&ctx.request.url), "status" => status);
        let fetched = PageFetched {
            id: ctx.id,
            update: Some(PageUpdate::Gone(ctx.request.url.clone())),
            counter: Some(recrawl::GONE),
        };
        deliver(&pages.to, fetched, &self.stats);
        true
    }

    /// Retries a retryable failure after a backoff, or hands it to the
    /// error handler.
    fn failed(&mut self, mut ctx: Context<C>, error: Error) {
        let reason = self.retry.as_ref().and_then(|p| p.reason(&error));
        if let (Some(policy), Some(reason)) = (&self.retry, reason) {
            if ctx.retries < policy.max_retries {
                let delay = policy.delay(ctx.retries);
                ctx.retries += 1;
                self.stats.add_named("retry/count", 1);
                self.stats
                    .add_named(&format!("retry/reason_count/{reason}"), 1);
                debug!(self.log, "retrying"; "request_id" => %ctx.id, "url" => %crate::redact::Redacted(&ctx.request.url),
                    "reason" => &reason, "retry" => ctx.retries, "delay_ms" => delay.as_millis());
                let requeue = Requeue {
                    batch: vec![ctx],
                    delay: Some(delay),
                };
                deliver(&self.outbox.requeue, requeue, &self.stats);
                return;
            }
            self.stats.add_named("retry/max_reached", 1);
        }
        if matches!(error.kind(), ErrorKind::HttpStatus(_)) {
            // Counted once the failure is final, as Scrapy's HttpError
            // middleware sees only what retries gave up on.
            self.stats.inc(Counter::HttpErrorIgnored);
        }
        deliver(
            &self.outbox.errors,
            RequestFailed { ctx, error },
            &self.stats,
        );
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
            let report = SlotReport {
                slot: slot_of(&ctx.request.url).to_string(),
                ..SlotReport::default()
            };
            deliver(&self.outbox.released, Released { report }, &self.stats);
            if id == msg.id {
                ctx.crashes += 1;
                if ctx.crashes > self.max_crashes {
                    let error = Error::new(Stage::Download, ErrorKind::Panic(msg.panic.clone()))
                        .with_url(&ctx.request.url)
                        .with_attempt(ctx.attempt);
                    deliver(
                        &self.outbox.errors,
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
            self.stats.add(Counter::Requeued, requeue.len() as u64);
            let requeue = Requeue {
                batch: requeue,
                delay: None,
            };
            deliver(&self.outbox.requeue, requeue, &self.stats);
        }
    }
}

impl<C: Callback> Handler<Shutdown> for Pool<C> {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        // The downloaders share the caller's arbiter (unless the layout is
        // Spread), which outlives the crawl: they stop now, dropping what
        // a forced stop abandoned, and nothing holds their addresses after
        // this, so their supervisors do not restart them.
        for worker in self.outbox.worker_shutdown.drain(..) {
            worker.do_send(Shutdown);
        }
        self.outbox.workers.clear();
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::actors::test_support::{
        ctx, expect_event, kinds, log, req, response, Cb, Event, Events, Ping, Recorder,
    };
    use crate::request::Request;

    /// A pool over two recorder downloaders; one more recorder stands in
    /// for every other link (parser, error handler, scheduler).
    struct Rig {
        pool: Addr<Pool<Cb>>,
        workers: Vec<(Addr<Recorder<Cb>>, Events<Cb>)>,
        out: Addr<Recorder<Cb>>,
        out_events: Events<Cb>,
        released: Addr<Recorder<Cb>>,
        released_events: Events<Cb>,
        accounting: Arc<Accounting>,
        stats: Arc<Stats>,
    }

    fn rig(max_crashes: u32) -> Rig {
        rig_with(max_crashes, None)
    }

    fn rig_with(max_crashes: u32, retry: Option<RetryPolicy>) -> Rig {
        let workers: Vec<_> = (0..2).map(|_| Recorder::spawn()).collect();
        let (out, out_events) = Recorder::spawn();
        let (released, released_events) = Recorder::spawn();
        let accounting = Arc::new(Accounting::new(out.clone().recipient()));
        let stats = Arc::new(Stats::default());
        let outbox = PoolOutbox {
            workers: workers.iter().map(|(w, _)| w.clone().recipient()).collect(),
            worker_shutdown: workers.iter().map(|(w, _)| w.clone().recipient()).collect(),
            parser: out.clone().recipient(),
            errors: out.clone().recipient(),
            enqueue: out.clone().recipient(),
            requeue: out.clone().recipient(),
            completed: out.clone().recipient(),
            released: released.clone().recipient(),
        };
        let pool = Pool::new(
            outbox,
            max_crashes,
            retry,
            accounting.clone(),
            stats.clone(),
            log(),
        )
        .start();
        Rig {
            pool,
            workers,
            out,
            out_events,
            released,
            released_events,
            accounting,
            stats,
        }
    }

    impl Rig {
        /// Dispatches a request for `url` as the scheduler would
        /// (attempt 1) and returns it.
        async fn dispatch(&self, url: &str) -> Context<Cb> {
            let mut c = ctx(url);
            c.attempt = 1;
            self.redispatch(&c).await;
            c
        }

        /// Dispatches `c` as it is.
        async fn redispatch(&self, c: &Context<Cb>) {
            let msg = Dispatch { ctx: c.clone() };
            self.pool.send(msg).await.unwrap();
        }

        /// Every `Download` worker `w` has received, as (id, epoch).
        async fn downloads(&mut self, w: usize) -> Vec<(Uuid, u64)> {
            let (addr, events) = &mut self.workers[w];
            addr.send(Ping).await.unwrap();
            let got = events.drain().into_iter();
            got.map(|e| expect_event!(e, Event::Download { ctx, epoch } => (ctx.id, epoch)))
                .collect()
        }

        /// Everything the pool sent on its other links so far.
        async fn out(&mut self) -> Vec<Event<Cb>> {
            self.out.send(Ping).await.unwrap();
            self.out_events.drain()
        }

        async fn downloaded(&self, outcome: Outcome<Cb>, emitted: Vec<Request<Cb>>) {
            let id = match &outcome {
                Outcome::Response(c, _)
                | Outcome::Failed(c, _)
                | Outcome::Dropped(c, _)
                | Outcome::Redirected(c, _) => c.id,
            };
            let msg = Downloaded {
                id,
                outcome,
                emitted,
                report: SlotReport {
                    slot: "h".into(),
                    ..SlotReport::default()
                },
            };
            self.pool.send(msg).await.unwrap();
        }

        async fn crash(&self, worker: usize, epoch: u64, id: Uuid, panic: &str) {
            let msg = WorkerCrashed {
                worker,
                epoch,
                id,
                panic: panic.into(),
            };
            self.pool.send(msg).await.unwrap();
        }
    }

    fn ok(c: &Context<Cb>) -> Outcome<Cb> {
        Outcome::Response(c.clone(), response(c.request.url.as_str()))
    }

    #[actix::test]
    async fn dispatch_goes_to_the_least_loaded_worker() {
        let mut r = rig(2);
        let a = r.dispatch("http://h/a").await;
        let b = r.dispatch("http://h/b").await;
        let c = r.dispatch("http://h/c").await;
        let d = r.dispatch("http://h/d").await;
        assert_eq!(r.downloads(0).await, [(a.id, 0), (c.id, 0)]);
        assert_eq!(r.downloads(1).await, [(b.id, 0), (d.id, 0)]);

        // Worker 0 finishes one: it is now the less loaded.
        let dropped = Outcome::Dropped(a.clone(), "robots".into());
        r.downloaded(dropped, Vec::new()).await;
        let e = r.dispatch("http://h/e").await;
        assert_eq!(r.downloads(0).await, [(e.id, 0)]);
        assert!(r.downloads(1).await.is_empty());

        // Worker 1 finishes both of its own.
        r.downloaded(ok(&b), Vec::new()).await;
        r.downloaded(ok(&d), Vec::new()).await;
        let f = r.dispatch("http://h/f").await;
        let g = r.dispatch("http://h/g").await;
        assert_eq!(r.downloads(1).await, [(f.id, 0), (g.id, 0)]);
        assert!(r.downloads(0).await.is_empty());
    }

    #[actix::test]
    async fn shutdown_is_passed_to_every_downloader() {
        let mut r = rig(2);
        r.pool.send(Shutdown).await.unwrap();
        for (addr, events) in &mut r.workers {
            addr.send(Ping).await.unwrap();
            assert_eq!(kinds(&events.drain()), ["Shutdown"]);
        }
    }

    #[actix::test]
    async fn outcomes_are_routed_to_parser_error_handler_or_completed() {
        let mut r = rig(2);
        let a = r.dispatch("http://h/a").await;
        let b = r.dispatch("http://h/b").await;
        let c = r.dispatch("http://h/c").await;
        r.downloaded(ok(&a), Vec::new()).await;
        let timeout = Error::new(Stage::Download, ErrorKind::Timeout(Default::default()));
        r.downloaded(Outcome::Failed(b.clone(), timeout), Vec::new())
            .await;
        r.downloaded(Outcome::Dropped(c.clone(), "robots".into()), Vec::new())
            .await;

        let out = r.out().await;
        assert_eq!(kinds(&out), ["Parse", "RequestFailed", "Completed"]);
        let mut out = out.into_iter();
        let (pctx, presp) = expect_event!(out.next().unwrap(),
            Event::Parse { ctx, response } => (ctx, response));
        assert_eq!((pctx.id, presp.url.as_str()), (a.id, "http://h/a"));
        let (fctx, error) = expect_event!(out.next().unwrap(),
            Event::RequestFailed { ctx, error } => (ctx, error));
        assert_eq!(fctx.id, b.id);
        assert!(matches!(error.kind(), ErrorKind::Timeout(_)), "{error}");
        assert_eq!(
            expect_event!(out.next().unwrap(), Event::Completed(id) => id),
            c.id
        );
        assert_eq!(r.stats.get(Counter::DownloadDropped), 1);
        assert_eq!(r.stats.get(Counter::LostMessages), 0);
        assert_eq!(r.accounting.count(), 0);
    }

    #[actix::test]
    async fn requests_emitted_by_middlewares_are_enqueued_with_their_parent() {
        let mut r = rig(2);
        let a = r.dispatch("http://h/a").await;
        let b = r.dispatch("http://h/b").await;
        let emitted = vec![req("http://h/x"), req("http://h/y")];
        r.downloaded(ok(&a), emitted).await;
        let emitted = vec![req("http://h/z")];
        let dropped = Outcome::Dropped(b.clone(), "redirected".into());
        r.downloaded(dropped, emitted).await;

        let out = r.out().await;
        assert_eq!(kinds(&out), ["Enqueue", "Parse", "Enqueue", "Completed"]);
        let mut out = out.into_iter();
        let batch = expect_event!(out.next().unwrap(), Event::Enqueue(batch) => batch);
        let urls: Vec<_> = batch.iter().map(|c| c.request.url.as_str()).collect();
        assert_eq!(urls, ["http://h/x", "http://h/y"]);
        assert!(batch.iter().all(|c| c.parent == Some(a.id)));
        out.next();
        let batch = expect_event!(out.next().unwrap(), Event::Enqueue(batch) => batch);
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].parent, Some(b.id));
        // Opened before they were handed on.
        assert_eq!(r.accounting.count(), 3);
    }

    #[actix::test]
    async fn a_crash_requeues_only_what_that_worker_held() {
        let mut r = rig(2);
        let a = r.dispatch("http://h/a").await;
        let b = r.dispatch("http://h/b").await;
        let c = r.dispatch("http://h/c").await;
        let d = r.dispatch("http://h/d").await;
        r.downloads(0).await;
        r.downloads(1).await;

        r.crash(0, 0, a.id, "boom").await;
        let out = r.out().await;
        assert_eq!(kinds(&out), ["Requeue"]);
        let batch = expect_event!(out.into_iter().next().unwrap(), Event::Requeue(b) => b);
        let ids: HashSet<_> = batch.iter().map(|c| c.id).collect();
        assert_eq!(ids, HashSet::from([a.id, c.id]));
        for requeued in &batch {
            let crashes = if requeued.id == a.id { 1 } else { 0 };
            assert_eq!(requeued.crashes, crashes, "{}", requeued.request.url);
            assert_eq!(requeued.attempt, 1);
        }
        assert_eq!(r.stats.get(Counter::WorkerRestarts), 1);

        // The restarted worker is empty, so it gets the next request, at
        // its new epoch.
        let e = r.dispatch("http://h/e").await;
        assert_eq!(r.downloads(0).await, [(e.id, 1)]);

        // A late report from the dead incarnation is ignored…
        r.downloaded(ok(&c), Vec::new()).await;
        assert!(r.out().await.is_empty());
        // …while the other worker's requests are still routed.
        r.downloaded(ok(&b), Vec::new()).await;
        r.downloaded(ok(&d), Vec::new()).await;
        assert_eq!(kinds(&r.out().await), ["Parse", "Parse"]);
    }

    #[actix::test]
    async fn a_second_report_of_the_same_crash_is_ignored() {
        let mut r = rig(2);
        let a = r.dispatch("http://h/a").await;
        let _b = r.dispatch("http://h/b").await;
        let c = r.dispatch("http://h/c").await;
        r.crash(0, 0, a.id, "boom").await;
        assert_eq!(kinds(&r.out().await), ["Requeue"]);

        // Two downloads of the same incarnation panicked.
        r.crash(0, 0, c.id, "boom too").await;
        // A report about a worker the pool does not have.
        r.crash(7, 0, c.id, "nonsense").await;
        assert!(r.out().await.is_empty());
        assert_eq!(r.stats.get(Counter::WorkerRestarts), 1);

        // The re-dispatched request runs at the new epoch; an old-epoch
        // report does not take it away again.
        let mut again = a.clone();
        again.attempt = 2;
        r.redispatch(&again).await;
        assert_eq!(r.downloads(0).await, [(a.id, 0), (c.id, 0), (a.id, 1)]);
        r.crash(0, 0, a.id, "stale").await;
        assert!(r.out().await.is_empty());
        r.downloaded(ok(&again), Vec::new()).await;
        assert_eq!(kinds(&r.out().await), ["Parse"]);
        assert_eq!(r.stats.get(Counter::WorkerRestarts), 1);
    }

    #[actix::test]
    async fn a_request_that_keeps_crashing_fails_with_a_panic_error() {
        let mut r = rig(1);
        let a = r.dispatch("http://h/a").await;
        r.crash(0, 0, a.id, "boom").await;
        let out = r.out().await;
        let batch = expect_event!(out.into_iter().next().unwrap(), Event::Requeue(b) => b);
        let mut again = batch.into_iter().next().unwrap();
        assert_eq!(again.crashes, 1);

        // Re-dispatched by the scheduler (attempt 2), it lands on the
        // restarted worker 0 with another request behind it.
        again.attempt = 2;
        r.redispatch(&again).await;
        let b = r.dispatch("http://h/b").await;
        let c = r.dispatch("http://h/c").await;
        r.downloads(0).await;
        assert_eq!(r.downloads(1).await, [(b.id, 0)]);
        r.crash(0, 1, a.id, "boom again").await;

        let out = r.out().await;
        assert_eq!(kinds(&out), ["RequestFailed", "Requeue"]);
        let mut out = out.into_iter();
        let (failed, error) = expect_event!(out.next().unwrap(),
            Event::RequestFailed { ctx, error } => (ctx, error));
        assert_eq!((failed.id, failed.crashes), (a.id, 2));
        assert!(
            matches!(error.kind(), ErrorKind::Panic(m) if m == "boom again"),
            "{error}"
        );
        assert_eq!(error.stage(), Stage::Download);
        assert_eq!(error.url().map(|u| u.as_str()), Some("http://h/a"));
        assert_eq!(error.attempt(), 2);
        let batch = expect_event!(out.next().unwrap(), Event::Requeue(b) => b);
        let ids: Vec<_> = batch.iter().map(|c| c.id).collect();
        assert_eq!(ids, [c.id]);
        assert_eq!(r.stats.get(Counter::WorkerRestarts), 2);
    }

    #[actix::test]
    async fn every_finished_download_releases_its_host_slot() {
        let mut r = rig(2);
        let a = r.dispatch("http://h/a").await;
        r.downloaded(Outcome::Dropped(a, "no".into()), Vec::new())
            .await;
        let _ = r.out().await;
        r.released.send(Ping).await.unwrap();
        let released = r.released_events.drain();
        assert_eq!(kinds(&released), ["Released"]);
        let report = expect_event!(&released[0], Event::Released(rep) => rep);
        assert_eq!(report.slot, "h");
    }

    #[actix::test]
    async fn retryable_failures_are_requeued_with_a_backoff_then_given_up() {
        let policy = RetryPolicy {
            max_retries: 1,
            ..RetryPolicy::default()
        };
        let mut r = rig_with(2, Some(policy));
        let a = r.dispatch("http://h/a").await;
        let failure = || Error::new(Stage::Download, ErrorKind::HttpStatus(503));
        r.downloaded(Outcome::Failed(a, failure()), Vec::new())
            .await;
        let events = r.out().await;
        assert_eq!(kinds(&events), ["Requeue"]);
        let again = expect_event!(&events[0], Event::Requeue(batch) => batch[0].clone());
        assert_eq!(again.retries, 1);
        assert_eq!(r.stats.snapshot().get("retry/count"), 1);
        assert_eq!(r.stats.snapshot().get("retry/reason_count/http_503"), 1);
        // The retry fails too: no retries left, so the error handler.
        r.redispatch(&again).await;
        r.downloaded(Outcome::Failed(again, failure()), Vec::new())
            .await;
        let events = r.out().await;
        assert_eq!(kinds(&events), ["RequestFailed"]);
        assert_eq!(r.stats.snapshot().get("retry/max_reached"), 1);
        // Not retryable at all: straight to the error handler.
        let b = r.dispatch("http://h/b").await;
        let not_found = Error::new(Stage::Download, ErrorKind::HttpStatus(404));
        r.downloaded(Outcome::Failed(b, not_found), Vec::new())
            .await;
        assert_eq!(kinds(&r.out().await), ["RequestFailed"]);
        assert_eq!(r.stats.snapshot().get("retry/count"), 1);
    }
}
