//! A re-crawl's revisits that wait for their sitemap.
//!
//! A page an earlier crawl fetched from a sitemap that gave it a
//! `<lastmod>` is not revisited with the others at the start: the sitemap
//! (fetched afresh, and always read) will say whether it changed. Its
//! revisit waits here, by fingerprint (its record kept as JSON until it
//! is sent), for the first request for the same page that comes in — the
//! sitemap's, or a link's. When that is the sitemap's and its `<lastmod>`
//! is before the page was last fetched, the request is marked `skip` and
//! counted unchanged at admission without being sent; otherwise the
//! revisit takes its place before admission (`recrawl::meet`).
//! Either way it passes the dupe filter, so any later request for the
//! page is a duplicate, and a skip's fingerprint is recorded in the job
//! directory's dupe store (`Delta::seen`), so a resumed re-crawl knows it.
//!
//! The revisits no request met (pages no sitemap lists any more) are
//! released once everything else is done: when the start requests run
//! out, their unit of open work stays open, reserved, and the Accounting
//! says when it is the only one left (`LastCall`). They are then pulled a
//! batch at a time, like start requests, while the queue is short (still
//! met by requests for their pages meanwhile). Only once the last is
//! pulled are the start requests recorded exhausted, so a re-crawl
//! stopped before resumes with its revisits waiting again (those already
//! met are duplicates then). A stop ends the reservation but keeps them:
//! requests admitted while the crawl drains are still met.

use actix::prelude::*;
use slog::{debug, error, info};

use crate::context::Context;
use crate::fingerprint::{fingerprint, Fingerprint};
use crate::jobdir::WaitingPage;
use crate::messages::LastCall;
use crate::recrawl::{self, LASTMOD_SKIPPED, LIST_UNREADABLE, UNCHANGED};
use crate::request::{Callback, Request};

use super::starts::START_BATCH;
use super::Scheduler;
use crate::state::CrawlState;

/// The revisits waiting for a request for their page.
pub(super) struct Deferred {
    /// By their page's fingerprint.
    pages: hashbrown::HashMap<Fingerprint, WaitingPage>,
    /// Where they stand.
    phase: Phase,
}

/// Where the waiting revisits stand.
enum Phase {
    /// The start requests are being pulled.
    Holding,
    /// The start requests ran out; their unit of open work is held,
    /// reserved, until only it is left.
    Reserved,
    /// Everything else was done: the rest are pulled a batch at a time, in
    /// this order (the last first), holding the unit until the last.
    Releasing(Vec<Fingerprint>),
    /// All pulled, or a stop came: the unit is closed.
    Over,
}

impl Deferred {
    /// Revisits that wait for their sitemap.
    pub(super) fn new(revisits: Vec<WaitingPage>) -> Self {
        let pages = revisits.into_iter().map(|w| (w.fingerprint, w)).collect();
        Deferred {
            pages,
            phase: Phase::Holding,
        }
    }
}

impl<C: Callback> Scheduler<C> {
    /// Puts the waiting revisit of a page in the place of a request for
    /// it (the revisit, or its skip).
    pub(super) fn meet_deferred(&mut self, batch: &mut [Context<C>]) {
        if self.deferred.pages.is_empty() {
            return;
        }
        for c in batch.iter_mut().filter(|c| c.request.known.is_none()) {
            let Some(waiting) = self.deferred.pages.remove(&fingerprint(&c.request)) else {
                continue;
            };
            if recrawl::lastmod_skips(&c.request, waiting.fetched) {
                recrawl::skip(&mut c.request);
            } else if let Some(revisit) = self.revisit_of(&waiting) {
                c.request = recrawl::meet(revisit, &c.request);
            }
        }
    }

    /// The revisit of a waiting page; `None`, counted and logged, when its
    /// record cannot be read (a request for it goes as it came).
    fn revisit_of(&self, waiting: &WaitingPage) -> Option<Request<C>> {
        match waiting.revisit() {
            Ok(revisit) => Some(revisit),
            Err(e) => {
                self.stats.add_named(LIST_UNREADABLE, 1);
                error!(self.log, "re-crawl list: a page's record cannot be read; it is not revisited"; "error" => %e);
                None
            }
        }
    }

    /// The start requests ran out: whether their unit of open work stays
    /// open, reserved for the revisits still waiting.
    pub(super) fn defer_end_of_starts(&mut self, ctx: &mut actix::Context<Self>) -> bool {
        if self.deferred.pages.is_empty() || self.shared.is_some() {
            return false;
        }
        self.deferred.phase = Phase::Reserved;
        info!(self.log, "start requests exhausted; revisits of pages no sitemap listed again wait for the rest";
            "waiting" => self.deferred.pages.len());
        if self.accounting.reserve(1, ctx.address().recipient()) {
            ctx.notify(LastCall);
        }
        true
    }

    /// Everything else is done: the revisits no request met are to be
    /// pulled (`pull_deferred_batch`).
    fn release_deferred(&mut self) {
        if !matches!(self.deferred.phase, Phase::Reserved) || self.accounting.count() != 1 {
            return;
        }
        self.accounting.unreserve();
        let order: Vec<_> = self.deferred.pages.keys().copied().collect();
        info!(self.log, "revisiting the pages no sitemap listed again"; "count" => order.len());
        self.deferred.phase = Phase::Releasing(order);
    }

    /// Pulls a batch of the released revisits if the queue is short of
    /// work; after the last, the start requests are recorded exhausted
    /// and their unit closes. `false` when there was nothing to pull.
    pub(super) fn pull_deferred_batch(&mut self, ctx: &mut actix::Context<Self>) -> bool {
        let Phase::Releasing(order) = &mut self.deferred.phase else {
            return false;
        };
        if self.state != CrawlState::Running
            || self.queued + self.checking >= 2 * self.config.concurrency
        {
            return false;
        }
        let mut waiting = Vec::new();
        while waiting.len() < START_BATCH {
            let Some(fp) = order.pop() else { break };
            // Gone from the map: met by a request meanwhile.
            waiting.extend(self.deferred.pages.remove(&fp));
        }
        let last = order.is_empty();
        let batch: Vec<_> = waiting
            .iter()
            .filter_map(|w| self.revisit_of(w))
            .map(|r| Context::new(r, None))
            .collect();
        self.accounting.open(batch.len());
        self.accept(batch, ctx);
        if last {
            self.deferred.phase = Phase::Over;
            // Behind the last batch's dupe check, just sent.
            if let Some(d) = self.checkpoints.as_mut() {
                d.starts(self.starts_pulled, true);
            }
            self.accounting.close(1);
        }
        true
    }

    /// A stop: the reservation ends and the unit closes; the revisits
    /// still waiting are kept, so requests admitted while the crawl
    /// drains still meet them, and a resumed run holds them again.
    pub(super) fn drop_deferred(&mut self) {
        match std::mem::replace(&mut self.deferred.phase, Phase::Over) {
            Phase::Reserved => {
                self.accounting.unreserve();
                self.accounting.close(1);
            }
            Phase::Releasing(_) => self.accounting.close(1),
            Phase::Holding | Phase::Over => {}
        }
    }

    /// Of admitted requests, those whose sitemap said their page had not
    /// changed: counted unchanged, their fingerprints recorded for the job
    /// directory's dupe store, their work closed; the others are returned.
    pub(super) fn skip_unchanged(
        &mut self,
        batch: Vec<Context<C>>,
        bloom: bool,
    ) -> Vec<Context<C>> {
        let skip = |c: &Context<C>| c.request.known.as_deref().is_some_and(|k| k.skip);
        if !batch.iter().any(skip) {
            return batch;
        }
        let (skipped, batch): (Vec<_>, Vec<_>) = batch.into_iter().partition(skip);
        let n = skipped.len();
        if let (Some(d), true) = (self.checkpoints.as_mut(), bloom) {
            d.seen(skipped.iter().map(|c| fingerprint(&c.request)));
        }
        self.stats.add_named(UNCHANGED, n as u64);
        self.stats.add_named(LASTMOD_SKIPPED, n as u64);
        debug!(self.log, "not revisited: their sitemap says they have not changed"; "count" => n);
        self.accounting.close(n);
        batch
    }
}

impl<C: Callback> Handler<LastCall> for Scheduler<C> {
    type Result = ();

    fn handle(&mut self, _: LastCall, ctx: &mut Self::Context) {
        self.release_deferred();
        self.pump(ctx);
    }
}
