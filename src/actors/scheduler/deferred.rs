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
//! says when it is the only one left (`LastCall`). Only then are the start
//! requests recorded exhausted, so a re-crawl stopped before resumes with
//! its revisits waiting again (those already met are duplicates then).

use actix::prelude::*;
use slog::{debug, error, info};

use crate::context::Context;
use crate::fingerprint::{fingerprint, Fingerprint};
use crate::jobdir::WaitingPage;
use crate::messages::LastCall;
use crate::recrawl::{self, LASTMOD_SKIPPED, LIST_UNREADABLE, UNCHANGED};
use crate::request::{Callback, Request};

use super::Scheduler;

/// The revisits waiting for a request for their page.
pub(super) struct Deferred {
    /// By their page's fingerprint.
    pages: hashbrown::HashMap<Fingerprint, WaitingPage>,
    /// The start requests ran out and their unit of open work is held,
    /// reserved, until only it is left.
    waiting: bool,
}

impl Deferred {
    /// Revisits that wait for their sitemap.
    pub(super) fn new(revisits: Vec<WaitingPage>) -> Self {
        let pages = revisits.into_iter().map(|w| (w.fingerprint, w)).collect();
        Deferred {
            pages,
            waiting: false,
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
        self.deferred.waiting = true;
        info!(self.log, "start requests exhausted; revisits of pages no sitemap listed again wait for the rest";
            "waiting" => self.deferred.pages.len());
        if self.accounting.reserve(1, ctx.address().recipient()) {
            ctx.notify(LastCall);
        }
        true
    }

    /// Everything else is done: the revisits no request met go through
    /// admission, then the start requests are recorded exhausted and
    /// their unit closes.
    fn release_deferred(&mut self, ctx: &mut actix::Context<Self>) {
        if !self.deferred.waiting || self.accounting.count() != 1 {
            return;
        }
        self.deferred.waiting = false;
        self.accounting.unreserve();
        let waiting: Vec<_> = self.deferred.pages.drain().map(|(_, w)| w).collect();
        let batch: Vec<_> = waiting
            .iter()
            .filter_map(|w| self.revisit_of(w))
            .map(|r| Context::new(r, None))
            .collect();
        info!(self.log, "revisiting the pages no sitemap listed again"; "count" => batch.len());
        self.accounting.open(batch.len());
        self.accept(batch, ctx);
        if let Some(d) = self.checkpoints.as_mut() {
            d.starts(self.starts_pulled, true);
        }
        self.accounting.close(1);
    }

    /// A stop: the revisits still waiting are left for a resumed run.
    pub(super) fn drop_deferred(&mut self) {
        if std::mem::take(&mut self.deferred.waiting) {
            self.accounting.unreserve();
            self.accounting.close(1);
        }
        self.deferred.pages.clear();
    }

    /// Of admitted requests, those whose sitemap said their page had not
    /// changed: counted unchanged, recorded accepted and completed, their
    /// work closed; the others are returned.
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
        self.release_deferred(ctx);
        self.pump(ctx);
    }
}
