//! Parser: calls the spider's parse callback for each response.
//!
//! It runs on its own arbiter so that CPU-bound parsing never delays
//! scheduling. For each `Parse` it calls `Spider::parse` with the callback
//! the request named (a panic is caught), then sends what the callback
//! emitted: new requests (depth + 1, counted open first) to the Scheduler,
//! items to the PipelineStage, which completes the request once they are
//! through. A response with no items completes here. A failed callback is
//! counted in `spider_exceptions` and reported with its URL; what it emitted
//! before failing is still processed.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use actix::prelude::*;
use slog::Logger;

use crate::accounting::Accounting;
use crate::context::Context;
use crate::error::{panic_message, Error, ErrorKind, Stage};
use crate::item::ItemMeta;
use crate::messages::{deliver, Completed, Enqueue, Parse, ProcessItems, Report, Shutdown};
use crate::spider::{Callback, Output, Spider};
use crate::stats::{Counter, Stats};

/// Where the parser sends things.
pub struct ParserLinks<C: Callback> {
    /// New requests.
    pub enqueue: Recipient<Enqueue<C>>,
    /// Items.
    pub items: Recipient<ProcessItems>,
    /// Requests finished here (no items).
    pub completed: Recipient<Completed>,
    /// Parse failures.
    pub report: Recipient<Report>,
}

/// The parser actor.
pub struct Parser<S: Spider> {
    /// The user's spider.
    spider: Arc<S>,
    /// Its name, shared into every item's metadata.
    spider_name: Arc<str>,
    /// Where it sends things.
    links: ParserLinks<S::Callback>,
    /// Open-work counter (new requests are opened before the parent closes).
    accounting: Arc<Accounting>,
    /// Counters.
    stats: Arc<Stats>,
}

impl<S: Spider> Parser<S> {
    /// A parser for `spider`.
    pub(crate) fn new(
        spider: Arc<S>,
        links: ParserLinks<S::Callback>,
        accounting: Arc<Accounting>,
        stats: Arc<Stats>,
        _log: Logger,
    ) -> Self {
        Parser {
            spider_name: spider.name().into(),
            spider,
            links,
            accounting,
            stats,
        }
    }
}

impl<S: Spider> Actor for Parser<S> {
    type Context = actix::Context<Self>;
}

impl<S: Spider> Handler<Parse<S::Callback>> for Parser<S> {
    type Result = ();

    fn handle(&mut self, msg: Parse<S::Callback>, _: &mut Self::Context) {
        let Parse { ctx, response } = msg;
        let mut out = Output::default();
        let callback = ctx.request.callback.clone();
        let spider = &self.spider;
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            spider.parse(callback, &response, &mut out)
        }));
        let Output { requests, items } = out;
        if !requests.is_empty() {
            let depth = ctx.request.depth + 1;
            let batch: Vec<Context<S::Callback>> = requests
                .into_iter()
                .map(|mut r| {
                    r.depth = depth;
                    Context::new(r, Some(ctx.id))
                })
                .collect();
            self.accounting.open(batch.len());
            deliver(&self.links.enqueue, Enqueue { batch }, &self.stats);
        }
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
                &self.links.report,
                Report { error, item: None },
                &self.stats,
            );
        }
        if items.is_empty() {
            deliver(&self.links.completed, Completed { id: ctx.id }, &self.stats);
        } else {
            let meta = ItemMeta {
                request_id: ctx.id,
                url: response.url.clone(),
                spider: self.spider_name.clone(),
                depth: ctx.request.depth,
            };
            deliver(&self.links.items, ProcessItems { items, meta }, &self.stats);
        }
    }
}

impl<S: Spider> Handler<Shutdown> for Parser<S> {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
