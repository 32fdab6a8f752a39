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

use crate::accounting::Accounting;
use crate::context::Context;
use crate::error::panic_message;
use crate::messages::{deliver, Completed, Enqueue, Report, RequestFailed, Shutdown};
use crate::spider::{Failure, Spider};
use crate::stats::{Counter, Stats};

/// Where the error handler sends things.
pub struct ErrorLinks<C: crate::spider::Callback> {
    /// Requests from `on_error`.
    pub enqueue: Recipient<Enqueue<C>>,
    /// Failed requests, once handled.
    pub completed: Recipient<Completed>,
}

/// The error-handler actor.
pub struct ErrorHandler<S: Spider> {
    /// The user's spider, for `on_error`.
    spider: Arc<S>,
    /// Where it sends things.
    links: ErrorLinks<S::Callback>,
    /// Open-work counter (requests from `on_error` open before the failed
    /// one closes).
    accounting: Arc<Accounting>,
    /// Counters.
    stats: Arc<Stats>,
    /// Structured log.
    log: Logger,
}

impl<S: Spider> ErrorHandler<S> {
    /// An error handler for `spider`.
    pub(crate) fn new(
        spider: Arc<S>,
        links: ErrorLinks<S::Callback>,
        accounting: Arc<Accounting>,
        stats: Arc<Stats>,
        log: Logger,
    ) -> Self {
        ErrorHandler {
            spider,
            links,
            accounting,
            stats,
            log,
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
        self.stats
            .add_named(&format!("request_failure_count/{}", error.kind_name()), 1);
        warn!(self.log, "request failed";
            "request_id" => %ctx.id, "url" => %ctx.request.url, "stage" => %error.stage(),
            "attempt" => ctx.attempt, "error" => %error);
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
            deliver(&self.links.enqueue, Enqueue { batch }, &self.stats);
        }
        deliver(&self.links.completed, Completed { id }, &self.stats);
    }
}

impl<S: Spider> Handler<Report> for ErrorHandler<S> {
    type Result = ();

    fn handle(&mut self, msg: Report, _: &mut Self::Context) {
        let url = msg.error.url().map(|u| u.to_string()).unwrap_or_default();
        match msg.item {
            Some(item) => error!(self.log, "item failed";
                "stage" => %msg.error.stage(), "url" => url, "error" => %msg.error,
                "item" => %item),
            None => error!(self.log, "failure";
                "stage" => %msg.error.stage(), "url" => url, "error" => %msg.error),
        }
    }
}

impl<S: Spider> Handler<Shutdown> for ErrorHandler<S> {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
