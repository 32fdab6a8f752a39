//! ErrorHandler: where every failure ends up.
//!
//! `RequestFailed` (from the pool: a download error, a disallowed status, a
//! middleware failure, a request that kept crashing its downloader) is
//! counted in `request_failure_count`, logged with its URL, stage and
//! attempt, and shown to the spider's `on_error`, whose requests (a retry,
//! say) are scheduled; then the failed request is completed. `Report` (a
//! parse error, an item error, a pipeline `open`/`close` failure, already
//! counted by the reporter) is logged, the item included as JSON.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use actix::prelude::*;
use slog::{error, warn, Logger};
use tokio::sync::broadcast;

use crate::accounting::Accounting;
use crate::context::Context;
use crate::error::panic_message;
use crate::events::CrawlEvent;
use crate::messages::{deliver, Completed, Enqueue, Report, RequestFailed, Shutdown};
use crate::spider::{Failure, Spider};
use crate::stats::{Counter, Stats};

/// Where the error handler sends things.
pub(crate) struct ErrorOutbox<C: crate::request::Callback> {
    /// Requests from `on_error`.
    pub enqueue: Recipient<Enqueue<C>>,
    /// Failed requests, once handled.
    pub completed: Recipient<Completed>,
}

/// The error-handler actor.
pub(crate) struct ErrorHandler<S: Spider> {
    /// The user's spider, for `on_error`.
    spider: Arc<S>,
    /// Where it sends things.
    outbox: ErrorOutbox<S::Callback>,
    /// Open-work counter (requests from `on_error` open before the failed
    /// one closes).
    accounting: Arc<Accounting>,
    /// Counters.
    stats: Arc<Stats>,
    /// Structured log.
    log: Logger,
    /// Lifecycle events: every recorded failure is published.
    events: Option<broadcast::Sender<CrawlEvent>>,
}

impl<S: Spider> ErrorHandler<S> {
    /// An error handler for `spider`.
    pub(crate) fn new(
        spider: Arc<S>,
        outbox: ErrorOutbox<S::Callback>,
        accounting: Arc<Accounting>,
        stats: Arc<Stats>,
        log: Logger,
    ) -> Self {
        ErrorHandler {
            spider,
            outbox,
            accounting,
            stats,
            log,
            events: None,
        }
    }

    /// Publishes every recorded failure on `events`.
    pub(crate) fn with_events(mut self, events: broadcast::Sender<CrawlEvent>) -> Self {
        self.events = Some(events);
        self
    }

    fn publish(&self, error: &crate::error::Error) {
        if let Some(events) = &self.events {
            let _ = events.send(CrawlEvent::error(error));
        }
    }
}

impl<S: Spider> Actor for ErrorHandler<S> {
    type Context = actix::Context<Self>;
}

impl<S: Spider> Handler<RequestFailed<S::Callback>> for ErrorHandler<S> {
    type Result = ();

    fn handle(&mut self, msg: RequestFailed<S::Callback>, _: &mut Self::Context) {
        let RequestFailed { ctx, error } = msg;
        self.stats.inc(Counter::RequestFailures);
        if ctx.request.known.is_some() {
            // A re-crawl's revisit: its page keeps its record, unjudged.
            self.stats.add_named(crate::recrawl::FAILED, 1);
        }
        self.stats
            .add_named(&format!("request_failure_count/{}", error.kind_name()), 1);
        warn!(self.log, "request failed";
            "request_id" => %ctx.id, "url" => %crate::redact::Redacted(&ctx.request.url), "stage" => %error.stage(),
            "attempt" => ctx.attempt, "error" => format!("{error:#}"));
        self.publish(&error);
        let id = ctx.id;
        let failure = Failure {
            request: ctx.request,
            error,
            attempt: ctx.attempt,
        };
        let spider = &self.spider;
        let emitted = match std::panic::catch_unwind(AssertUnwindSafe(|| spider.on_error(&failure)))
        {
            Ok(requests) => requests,
            Err(panic) => {
                self.stats.inc(Counter::SpiderExceptions);
                error!(self.log, "on_error panicked"; "request_id" => %id,
                    "panic" => panic_message(&*panic));
                Vec::new()
            }
        };
        if !emitted.is_empty() {
            let batch: Vec<_> = emitted
                .into_iter()
                .map(|r| Context::new(r, Some(id)))
                .collect();
            self.accounting.open(batch.len());
            deliver(&self.outbox.enqueue, Enqueue { batch }, &self.stats);
        }
        deliver(&self.outbox.completed, Completed { id }, &self.stats);
    }
}

impl<S: Spider> Handler<Report> for ErrorHandler<S> {
    type Result = ();

    fn handle(&mut self, msg: Report, _: &mut Self::Context) {
        self.publish(&msg.error);
        let url = msg
            .error
            .url()
            .map(|u| crate::redact::Redacted(u).to_string())
            .unwrap_or_default();
        match msg.item {
            Some(item) => error!(self.log, "item failed";
                "stage" => %msg.error.stage(), "url" => url, "error" => format!("{:#}", msg.error),
                "item" => %item),
            None => error!(self.log, "failure";
                "stage" => %msg.error.stage(), "url" => url, "error" => format!("{:#}", msg.error)),
        }
    }
}

impl<S: Spider> Handler<Shutdown> for ErrorHandler<S> {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::sync::Mutex;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::actors::test_support::{
        ctx, expect_event, kinds, Cb, Event, Events, Ping, Recorder, SeenFailure, TestSpider,
    };
    use crate::error::{Error, ErrorKind, Stage};

    /// A log drain that keeps each record as `message key=value…`.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<String>>>);

    impl slog::Drain for Capture {
        type Ok = ();
        type Err = slog::Never;

        fn log(&self, record: &slog::Record, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
            struct Line<'a>(&'a mut String);
            impl slog::Serializer for Line<'_> {
                fn emit_arguments(
                    &mut self,
                    key: slog::Key,
                    val: &std::fmt::Arguments,
                ) -> slog::Result {
                    let _ = write!(self.0, " {key}={val}");
                    Ok(())
                }
            }
            let mut line = record.msg().to_string();
            let _ = slog::KV::serialize(&record.kv(), record, &mut Line(&mut line));
            self.0.lock().unwrap().push(line);
            Ok(())
        }
    }

    /// An error handler for a [`TestSpider`]; one recorder stands in for
    /// the scheduler (both links, as in a crawl, so their order shows).
    struct Rig {
        handler: Addr<ErrorHandler<TestSpider>>,
        spider: Arc<TestSpider>,
        sched: Addr<Recorder<Cb>>,
        sched_events: Events<Cb>,
        accounting: Arc<Accounting>,
        stats: Arc<Stats>,
        logged: Capture,
    }

    fn rig() -> Rig {
        let (sched, sched_events) = Recorder::spawn();
        let spider = Arc::new(TestSpider::default());
        let accounting = Arc::new(Accounting::new(sched.clone().recipient()));
        let stats = Arc::new(Stats::default());
        let logged = Capture::default();
        let outbox = ErrorOutbox {
            enqueue: sched.clone().recipient(),
            completed: sched.clone().recipient(),
        };
        let log = Logger::root(logged.clone(), slog::o!());
        let handler = ErrorHandler::new(
            spider.clone(),
            outbox,
            accounting.clone(),
            stats.clone(),
            log,
        )
        .start();
        Rig {
            handler,
            spider,
            sched,
            sched_events,
            accounting,
            stats,
            logged,
        }
    }

    impl Rig {
        /// Fails a request for `url` with `callback` on its `attempt`,
        /// and returns its context and what reached the scheduler.
        async fn fail(
            &mut self,
            url: &str,
            callback: Cb,
            attempt: u32,
            kind: ErrorKind,
        ) -> (Context<Cb>, Vec<Event<Cb>>) {
            let mut c = ctx(url);
            c.request = c.request.callback(callback);
            c.attempt = attempt;
            self.fail_ctx(c, kind).await
        }

        async fn fail_ctx(
            &mut self,
            c: Context<Cb>,
            kind: ErrorKind,
        ) -> (Context<Cb>, Vec<Event<Cb>>) {
            let attempt = c.attempt;
            let error = Error::new(Stage::Download, kind)
                .with_url(&c.request.url)
                .with_attempt(attempt);
            let msg = RequestFailed {
                ctx: c.clone(),
                error,
            };
            self.handler.send(msg).await.unwrap();
            self.sched.send(Ping).await.unwrap();
            (c, self.sched_events.drain())
        }

        fn named(&self, name: &str) -> u64 {
            self.stats.snapshot().get(name)
        }

        fn logged(&self) -> Vec<String> {
            self.logged.0.lock().unwrap().clone()
        }
    }

    #[actix::test]
    async fn on_error_requests_are_enqueued_before_the_failure_completes() {
        let mut r = rig();
        let (c, out) = r
            .fail("http://h/a", Cb::Retry, 2, ErrorKind::HttpStatus(503))
            .await;
        assert_eq!(kinds(&out), ["Enqueue", "Completed"]);
        let mut out = out.into_iter();
        let batch = expect_event!(out.next().unwrap(), Event::Enqueue(b) => b);
        assert_eq!(batch.len(), 1);
        let retry = &batch[0];
        assert_eq!(retry.parent, Some(c.id));
        assert_ne!(retry.id, c.id);
        assert_eq!(retry.request.url.as_str(), "http://h/a");
        assert!(retry.request.dont_filter);
        assert_eq!(
            expect_event!(out.next().unwrap(), Event::Completed(id) => id),
            c.id
        );

        let seen = r.spider.failures.lock().unwrap().clone();
        let want = SeenFailure {
            url: "http://h/a".into(),
            kind: "http_status",
            stage: Stage::Download,
            attempt: 2,
        };
        assert_eq!(seen, [want]);
        assert_eq!(r.stats.get(Counter::RequestFailures), 1);
        assert_eq!(r.named("request_failure_count/http_status"), 1);
        assert_eq!(r.stats.get(Counter::SpiderExceptions), 0);
        // The retry was opened; the failed request is closed by whoever
        // handles the Completed.
        assert_eq!(r.accounting.count(), 1);
        let logged = r.logged();
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert!(logged[0].starts_with("request failed"), "{logged:?}");
        for part in ["url=http://h/a", "stage=download", "attempt=2"] {
            assert!(logged[0].contains(part), "{part} not in {logged:?}");
        }
    }

    #[actix::test]
    async fn failures_are_counted_in_total_and_per_kind() {
        let mut r = rig();
        let timeout = ErrorKind::Timeout(Duration::from_secs(1));
        let (a, out_a) = r.fail("http://h/a", Cb::Index, 1, timeout).await;
        let refused = ErrorKind::Connect {
            cause: crate::error::ConnectCause::Other,
            message: "refused".into(),
        };
        let (b, out_b) = r.fail("http://h/b", Cb::Index, 1, refused).await;
        let timeout = ErrorKind::Timeout(Duration::from_secs(1));
        let (c, out_c) = r.fail("http://h/c", Cb::Index, 3, timeout).await;
        for (ctx, out) in [(a, out_a), (b, out_b), (c, out_c)] {
            let mut out = out.into_iter();
            let id = expect_event!(out.next().unwrap(), Event::Completed(id) => id);
            assert_eq!(id, ctx.id);
            assert!(out.next().is_none());
        }
        assert_eq!(r.stats.get(Counter::RequestFailures), 3);
        assert_eq!(r.named("request_failure_count/timeout"), 2);
        assert_eq!(r.named("request_failure_count/connect"), 1);
        assert_eq!(r.spider.failures.lock().unwrap().len(), 3);
        assert_eq!(r.accounting.count(), 0);
        assert_eq!(r.named(crate::recrawl::FAILED), 0, "no revisit among them");

        // A re-crawl's revisit that fails is counted with the re-crawl's.
        let record = crate::recrawl::PageRecord {
            request: crate::actors::test_support::req("http://h/known"),
            seen: crate::request::KnownPage::default(),
        };
        let revisit = Context::new(crate::recrawl::revisit(record, true), None);
        let timeout = ErrorKind::Timeout(Duration::from_secs(1));
        r.fail_ctx(revisit, timeout).await;
        assert_eq!(r.named(crate::recrawl::FAILED), 1);
        assert_eq!(r.stats.get(Counter::RequestFailures), 4);
    }

    #[actix::test]
    async fn a_panicking_on_error_counts_an_exception_and_still_completes() {
        let mut r = rig();
        let refused = ErrorKind::Connect {
            cause: crate::error::ConnectCause::Other,
            message: "refused".into(),
        };
        let (c, out) = r.fail("http://h/a", Cb::ErrorPanics, 1, refused).await;
        assert_eq!(kinds(&out), ["Completed"]);
        let id = expect_event!(out.into_iter().next().unwrap(), Event::Completed(id) => id);
        assert_eq!(id, c.id);
        assert_eq!(r.stats.get(Counter::SpiderExceptions), 1);
        assert_eq!(r.stats.get(Counter::RequestFailures), 1);
        assert_eq!(r.named("request_failure_count/connect"), 1);
        assert_eq!(r.accounting.count(), 0);

        // The handler survives the panic.
        let refused = ErrorKind::Connect {
            cause: crate::error::ConnectCause::Other,
            message: "refused".into(),
        };
        let (_, out) = r.fail("http://h/b", Cb::Index, 1, refused).await;
        assert_eq!(kinds(&out), ["Completed"]);
    }

    #[actix::test]
    async fn reports_are_logged_with_url_and_item_and_complete_nothing() {
        let mut r = rig();
        let url = url::Url::parse("http://h/page").unwrap();
        let item_error = Report {
            error: Error::custom(Stage::Pipeline, "bad item").with_url(&url),
            item: Some(json!({"n": 3})),
        };
        r.handler.send(item_error).await.unwrap();
        let parse_error = Report {
            error: Error::custom(Stage::Parse, "bad page").with_url(&url),
            item: None,
        };
        r.handler.send(parse_error).await.unwrap();
        r.sched.send(Ping).await.unwrap();
        assert!(r.sched_events.drain().is_empty());
        assert_eq!(r.stats.get(Counter::RequestFailures), 0);

        let logged = r.logged();
        assert_eq!(logged.len(), 2, "{logged:?}");
        assert!(logged[0].starts_with("item failed"), "{logged:?}");
        for part in ["stage=pipeline", "url=http://h/page", r#"item={"n":3}"#] {
            assert!(logged[0].contains(part), "{part} not in {logged:?}");
        }
        assert!(logged[1].starts_with("failure"), "{logged:?}");
        for part in ["stage=parse", "url=http://h/page", "bad page"] {
            assert!(logged[1].contains(part), "{part} not in {logged:?}");
        }
    }
}
