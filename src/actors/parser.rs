//! Parser: calls the spider's parse callback for each response.
//!
//! Unless the crawl's `ThreadLayout` is `Single`, it runs off the caller's
//! arbiter (with the PipelineStage, or alone with `Spread`) so that
//! CPU-bound parsing never delays scheduling. For each `Parse` it calls `Spider::parse` with the callback
//! the request named (a panic is caught), then sends what the callback
//! emitted: new requests (depth + 1, counted open first) to the Scheduler
//! (in batches of [`FLUSH_AT`] while the callback runs, if it emits more),
//! then its lazy sources of requests (`Output::requests_from`, one unit of
//! open work each) for the Scheduler to pull,
//! items to the PipelineStage, which completes the request once they are
//! through. A response with no items completes here. A failed callback is
//! counted in `spider_exceptions` and reported with its URL; what it emitted
//! before failing is still processed, and what it counted
//! (`Output::count`) is added to the stats.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use actix::prelude::*;

use crate::accounting::Accounting;
use crate::error::{panic_message, Error, ErrorKind, Stage};
use crate::item::ItemMeta;
use crate::messages::{
    deliver, Completed, Enqueue, EnqueueSources, Parse, ProcessItems, Report, Shutdown,
};
use crate::request::Callback;
use crate::spider::{Flush, Origin, Output, RequestSource, Spider};
use crate::stats::{Counter, Stats};

/// Where the parser sends things.
pub(crate) struct ParserOutbox<C: Callback> {
    /// New requests.
    pub enqueue: Recipient<Enqueue<C>>,
    /// Lazy sources of new requests.
    pub sources: Recipient<EnqueueSources<C>>,
    /// Items.
    pub items: Recipient<ProcessItems>,
    /// Requests finished here (no items).
    pub completed: Recipient<Completed>,
    /// Parse failures.
    pub report: Recipient<Report>,
}

/// The parser actor.
pub(crate) struct Parser<S: Spider> {
    /// The user's spider.
    spider: Arc<S>,
    /// Its name, shared into every item's metadata.
    spider_name: Arc<str>,
    /// Where it sends things.
    outbox: ParserOutbox<S::Callback>,
    /// Open-work counter (new requests are opened before the parent closes).
    accounting: Arc<Accounting>,
    /// Lowers a new request's priority per level of depth (the crawl's
    /// depth priority; 0 leaves priorities alone).
    depth_priority: i32,
    /// Counters.
    stats: Arc<Stats>,
    /// The most requests a callback emitted so far (up to
    /// [`KEPT_REQUESTS`]): the next one's buffer starts with room for that
    /// many, so it rarely grows (and copies what it holds) on the way. That
    /// buffer goes on as the `Enqueue` batch.
    requests_hint: usize,
    /// Where a callback's requests go while it runs, past [`FLUSH_AT`].
    flush: Flush<S::Callback>,
}

/// The most requests [`Parser::requests_hint`] makes room for up front.
const KEPT_REQUESTS: usize = 256;

/// How many requests a callback holds before they go to the scheduler
/// while it runs: a sitemap's 50,000 pages go in batches of this many, so
/// the scheduler queues (and spills) them as they come instead of all of
/// them sitting in one batch first.
const FLUSH_AT: usize = 1024;

impl<S: Spider> Parser<S> {
    /// A parser for `spider`.
    pub(crate) fn new(
        spider: Arc<S>,
        outbox: ParserOutbox<S::Callback>,
        accounting: Arc<Accounting>,
        stats: Arc<Stats>,
    ) -> Self {
        Parser {
            flush: flush(&outbox, &accounting, &stats),
            spider_name: spider.name().into(),
            spider,
            outbox,
            accounting,
            depth_priority: 0,
            stats,
            requests_hint: 0,
        }
    }
}

impl<S: Spider> Parser<S> {
    /// Sets the depth priority (see `CrawlerBuilder::depth_priority`).
    pub(crate) fn with_depth_priority(mut self, per_level: i32) -> Self {
        self.depth_priority = per_level;
        self
    }
}

/// Hands a batch of a callback's requests to the scheduler while the
/// callback runs (opened first, as the batch after it returns).
fn flush<C: Callback>(
    outbox: &ParserOutbox<C>,
    accounting: &Arc<Accounting>,
    stats: &Arc<Stats>,
) -> Flush<C> {
    let enqueue = outbox.enqueue.clone();
    let accounting = accounting.clone();
    let stats = stats.clone();
    Flush {
        at: FLUSH_AT,
        send: Arc::new(move |batch| {
            accounting.open(batch.len());
            deliver(&enqueue, Enqueue { batch }, &stats);
        }),
    }
}

impl<S: Spider> Actor for Parser<S> {
    type Context = actix::Context<Self>;
}

impl<S: Spider> Handler<Parse<S::Callback>> for Parser<S> {
    type Result = ();

    fn handle(&mut self, msg: Parse<S::Callback>, _: &mut Self::Context) {
        let Parse { ctx, response } = msg;
        let mut out = Output {
            requests: Vec::with_capacity(self.requests_hint),
            items: Vec::new(),
            origin: Origin {
                parent: Some(ctx.id),
                depth: ctx.request.depth + 1,
                depth_priority: self.depth_priority,
            },
            counts: Vec::new(),
            flush: Some(self.flush.clone()),
            flushed: 0,
            sources: Vec::new(),
        };
        let callback = ctx.request.callback.clone();
        let spider = &self.spider;
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            spider.parse(callback, &response, &mut out)
        }));
        let Output {
            requests: batch,
            items,
            counts,
            sources,
            ..
        } = out;
        for (name, n) in counts {
            self.stats.add_named(&name, n);
        }
        self.requests_hint = self.requests_hint.max(batch.len()).min(KEPT_REQUESTS);
        if !batch.is_empty() {
            self.accounting.open(batch.len());
            deliver(&self.outbox.enqueue, Enqueue { batch }, &self.stats);
        }
        self.send_sources(sources);
        let failure = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.at(Stage::Parse)),
            Err(panic) => Some(Error::new(
                Stage::Parse,
                ErrorKind::Panic(panic_message(&*panic)),
            )),
        };
        if let Some(error) = failure {
            self.stats.inc(Counter::SpiderExceptions);
            let error = error.with_url(&response.url).with_attempt(ctx.attempt);
            deliver(
                &self.outbox.report,
                Report { error, item: None },
                &self.stats,
            );
        }
        if items.is_empty() {
            deliver(
                &self.outbox.completed,
                Completed { id: ctx.id },
                &self.stats,
            );
        } else {
            let meta = ItemMeta {
                request_id: ctx.id,
                url: response.url.clone(),
                spider: self.spider_name.clone(),
                depth: ctx.request.depth,
                dispatched_at: ctx.dispatched_at,
            };
            deliver(
                &self.outbox.items,
                ProcessItems { items, meta },
                &self.stats,
            );
        }
    }
}

impl<S: Spider> Parser<S> {
    /// Hands a callback's lazy sources to the scheduler: each holds the
    /// crawl open until it runs out, opened before the response's request
    /// completes.
    fn send_sources(&self, sources: Vec<RequestSource<S::Callback>>) {
        if sources.is_empty() {
            return;
        }
        self.accounting.open(sources.len());
        let msg = EnqueueSources { sources };
        deliver(&self.outbox.sources, msg, &self.stats);
    }
}

impl<S: Spider> Handler<Shutdown> for Parser<S> {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::actors::test_support::{
        ctx, expect_event, kinds, response, Cb, Event, Events, Ping, Recorder, TestSpider,
    };
    use crate::context::Context;

    /// A parser for a [`TestSpider`]; one recorder stands in for the
    /// scheduler, the pipeline stage and the error handler.
    struct Rig {
        parser: Addr<Parser<TestSpider>>,
        spider: Arc<TestSpider>,
        out: Addr<Recorder<Cb>>,
        out_events: Events<Cb>,
        accounting: Arc<Accounting>,
        stats: Arc<Stats>,
    }

    fn rig() -> Rig {
        let (out, out_events) = Recorder::spawn();
        let spider = Arc::new(TestSpider::default());
        let accounting = Arc::new(Accounting::new(out.clone().recipient()));
        let stats = Arc::new(Stats::default());
        let outbox = ParserOutbox {
            enqueue: out.clone().recipient(),
            sources: out.clone().recipient(),
            items: out.clone().recipient(),
            completed: out.clone().recipient(),
            report: out.clone().recipient(),
        };
        let parser = Parser::new(spider.clone(), outbox, accounting.clone(), stats.clone()).start();
        Rig {
            parser,
            spider,
            out,
            out_events,
            accounting,
            stats,
        }
    }

    impl Rig {
        /// Parses a response from `url` for a request with `callback` at
        /// `depth` (first attempt), and returns the request's context and
        /// everything the parser sent.
        async fn parse(
            &mut self,
            url: &str,
            callback: Cb,
            depth: u32,
        ) -> (Context<Cb>, Vec<Event<Cb>>) {
            let mut c = ctx(url);
            c.request = c.request.callback(callback);
            c.request.depth = depth;
            c.attempt = 1;
            let msg = Parse {
                ctx: c.clone(),
                response: response(url),
            };
            self.parser.send(msg).await.unwrap();
            self.out.send(Ping).await.unwrap();
            (c, self.out_events.drain())
        }
    }

    /// The one event of kind `kind` in `events`.
    fn take(events: &mut Vec<Event<Cb>>, kind: &str) -> Event<Cb> {
        let at = events.iter().position(|e| e.kind() == kind);
        let at = at.unwrap_or_else(|| panic!("no {kind} in {events:?}"));
        events.remove(at)
    }

    fn sorted_kinds(events: &[Event<Cb>]) -> Vec<&'static str> {
        let mut k = kinds(events);
        k.sort();
        k
    }

    #[actix::test]
    async fn output_becomes_one_enqueue_and_one_process_items() {
        let mut r = rig();
        let (c, mut out) = r.parse("http://h/list", Cb::Index, 3).await;
        assert_eq!(sorted_kinds(&out), ["Enqueue", "ProcessItems"]);

        let batch = expect_event!(take(&mut out, "Enqueue"), Event::Enqueue(b) => b);
        let got: Vec<_> = batch
            .iter()
            .map(|n| (n.request.url.as_str(), n.request.callback.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("http://h/detail/1", Cb::Detail(1)),
                ("http://h/detail/2", Cb::Detail(2))
            ]
        );
        for n in &batch {
            assert_eq!(n.request.depth, 4);
            assert_eq!(n.parent, Some(c.id));
            assert_ne!(n.id, c.id);
            assert_eq!(n.attempt, 0);
        }

        let items = expect_event!(take(&mut out, "ProcessItems"), Event::ProcessItems(p) => p);
        let json: Vec<_> = items.items.iter().map(|i| i.to_json().unwrap()).collect();
        assert_eq!(json, [json!({"n": 1}), json!({"n": 2}), json!({"n": 3})]);
        assert_eq!(items.meta.request_id, c.id);
        assert_eq!(items.meta.url.as_str(), "http://h/list");
        assert_eq!(&*items.meta.spider, "test");
        assert_eq!(items.meta.depth, 3);

        // The two new requests were opened; nothing was closed here.
        assert_eq!(r.accounting.count(), 2);
        // What the callback counted is in the stats, once per response.
        assert_eq!(r.stats.snapshot().get("test/indexes"), 1);
        r.parse("http://h/list2", Cb::Index, 0).await;
        assert_eq!(r.stats.snapshot().get("test/indexes"), 2);
        assert_eq!(r.stats.get(Counter::SpiderExceptions), 0);
    }

    #[actix::test]
    async fn a_callback_emitting_many_requests_hands_them_on_in_batches() {
        let mut r = rig();
        let n = FLUSH_AT * 2 + 1;
        let (_, out) = r.parse("http://h/sitemap", Cb::Many(n as u32), 0).await;
        // Two full batches while the callback ran, the rest after it.
        let sizes: Vec<usize> = out
            .iter()
            .filter_map(|e| match e {
                Event::Enqueue(b) => Some(b.len()),
                _ => None,
            })
            .collect();
        assert_eq!(sizes, [FLUSH_AT, FLUSH_AT, 1]);
        assert_eq!(kinds(&out).last(), Some(&"Completed"));
        let urls: Vec<String> = out
            .iter()
            .filter_map(|e| match e {
                Event::Enqueue(b) => Some(b.iter().map(|n| n.request.url.to_string())),
                _ => None,
            })
            .flatten()
            .collect();
        let want: Vec<String> = (0..n).map(|i| format!("http://h/many/{i}")).collect();
        assert_eq!(urls, want);
        assert_eq!(r.accounting.count(), n);
    }

    #[actix::test]
    async fn a_lazy_source_goes_to_the_scheduler_unpulled_before_the_completion() {
        let mut r = rig();
        let (c, out) = r.parse("http://h/sitemap", Cb::Lazy(3), 2).await;
        // The eager request, then the source, then the completion: the
        // scheduler holds the source before the request is done.
        assert_eq!(kinds(&out), ["Enqueue", "Sources", "Completed"]);
        let mut out = out.into_iter();
        let batch = expect_event!(out.next().unwrap(), Event::Enqueue(b) => b);
        assert_eq!(batch.len(), 1);
        let mut sources = expect_event!(out.next().unwrap(), Event::Sources(s) => s);
        assert_eq!(sources.len(), 1);
        let id = expect_event!(out.next().unwrap(), Event::Completed(id) => id);
        assert_eq!(id, c.id);
        // The eager request and the source are open; the source is pulled
        // only now, stamped like any request of this response.
        assert_eq!(r.accounting.count(), 2);
        let pulled = sources[0].take(2);
        let got: Vec<_> = pulled
            .iter()
            .map(|n| (n.request.url.path(), n.request.depth, n.parent))
            .collect();
        let parent = Some(c.id);
        assert_eq!(got, [("/lazy/0", 3, parent), ("/lazy/1", 3, parent)]);
        assert_eq!(sources[0].take(2).len(), 1);
        assert_eq!(sources[0].parent(), parent);
    }

    #[actix::test]
    async fn a_response_without_items_completes_here() {
        let mut r = rig();
        let (c, out) = r.parse("http://h/empty", Cb::Empty, 0).await;
        assert_eq!(kinds(&out), ["Completed"]);
        let id = expect_event!(out.into_iter().next().unwrap(), Event::Completed(id) => id);
        assert_eq!(id, c.id);

        let (c, mut out) = r.parse("http://h/links", Cb::Links, 0).await;
        assert_eq!(sorted_kinds(&out), ["Completed", "Enqueue"]);
        let id = expect_event!(take(&mut out, "Completed"), Event::Completed(id) => id);
        assert_eq!(id, c.id);
        assert_eq!(r.accounting.count(), 1);
    }

    #[actix::test]
    async fn a_failing_callback_is_counted_and_reported_and_its_output_kept() {
        let mut r = rig();
        let (c, mut out) = r.parse("http://h/bad", Cb::Fails, 2).await;
        assert_eq!(sorted_kinds(&out), ["Enqueue", "ProcessItems", "Report"]);
        assert_eq!(r.stats.get(Counter::SpiderExceptions), 1);

        let report = expect_event!(take(&mut out, "Report"), Event::Report(rep) => rep);
        let e = &report.error;
        assert!(
            matches!(e.kind(), ErrorKind::Custom(m) if m == "bad page"),
            "{e}"
        );
        assert_eq!(e.stage(), Stage::Parse);
        assert_eq!(e.url().map(|u| u.as_str()), Some("http://h/bad"));
        assert_eq!(e.attempt(), 1);
        assert!(report.item.is_none());
        // What it counted before failing is counted.
        assert_eq!(r.stats.snapshot().get("test/before_the_error"), 2);

        let batch = expect_event!(take(&mut out, "Enqueue"), Event::Enqueue(b) => b);
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].request.url.as_str(), "http://h/before-the-error");
        assert_eq!((batch[0].parent, batch[0].request.depth), (Some(c.id), 3));
        let items = expect_event!(take(&mut out, "ProcessItems"), Event::ProcessItems(p) => p);
        assert_eq!(items.items.len(), 1);
        assert_eq!(items.meta.request_id, c.id);
    }

    #[actix::test]
    async fn a_panicking_callback_is_counted_and_reported_and_its_output_kept() {
        let mut r = rig();
        let (c, mut out) = r.parse("http://h/panic", Cb::Panics, 0).await;
        assert_eq!(sorted_kinds(&out), ["Enqueue", "ProcessItems", "Report"]);
        assert_eq!(r.stats.get(Counter::SpiderExceptions), 1);

        let report = expect_event!(take(&mut out, "Report"), Event::Report(rep) => rep);
        let e = &report.error;
        assert!(
            matches!(e.kind(), ErrorKind::Panic(m) if m == "parse exploded"),
            "{e}"
        );
        assert_eq!(e.stage(), Stage::Parse);
        assert_eq!(e.url().map(|u| u.as_str()), Some("http://h/panic"));

        let batch = expect_event!(take(&mut out, "Enqueue"), Event::Enqueue(b) => b);
        assert_eq!(batch[0].request.url.as_str(), "http://h/before-the-panic");
        assert_eq!(batch[0].parent, Some(c.id));
        let items = expect_event!(take(&mut out, "ProcessItems"), Event::ProcessItems(p) => p);
        assert_eq!(items.items[0].to_json().unwrap(), json!({"partial": true}));

        // The parser survives the panic.
        let (_, out) = r.parse("http://h/after", Cb::Empty, 0).await;
        assert_eq!(kinds(&out), ["Completed"]);
    }

    #[actix::test]
    async fn the_typed_callback_value_reaches_parse() {
        let mut r = rig();
        let (_, mut out) = r.parse("http://h/item/7", Cb::Detail(7), 1).await;
        r.parse("http://h/", Cb::Index, 0).await;
        assert_eq!(*r.spider.parsed.lock().unwrap(), [Cb::Detail(7), Cb::Index]);
        let items = expect_event!(take(&mut out, "ProcessItems"), Event::ProcessItems(p) => p);
        assert_eq!(items.items[0].to_json().unwrap(), json!({"detail": 7}));
    }
}
