//! Admission: what the Scheduler does with a batch of new requests before
//! the queue. The crawl's policies first (depth limit, allowed domains:
//! `crate::admission`), then the dupe filter, unless a request is
//! `dont_filter` or de-duplication is off. Redirects arrive here as any
//! new request does (`crate::redirect` says how each rule treats them).
//!
//! Only one `Check` is with the dupe filter at a time; batches arriving
//! meanwhile wait in `to_check` and go together next, so a slow dupe filter
//! (Redis) answers a backlog in one call. Each batch carries its positions
//! in the job directory's and the shared queue's watermarks, released when
//! its answer is back, so a completion is never recorded or acknowledged
//! before the children emitted with it are queued. Accepted requests are
//! recorded for the job directory, counted enqueued and pushed.

use actix::prelude::*;
use slog::error;

use crate::admission;
use crate::context::Context;
use crate::messages::Check;
use crate::request::Callback;
use crate::state::CrawlState;
use crate::stats::Counter;

use super::checkpoints::Checkpoints;
use super::Scheduler;

/// Where a batch sent to the dupe filter stands in the job directory's
/// and the shared queue's watermarks, when they are on.
pub(super) type CheckSeqs = (Option<u64>, Option<u64>);

impl<C: Callback> Scheduler<C> {
    /// Applies the admission policies, then runs requests through the dupe
    /// filter (when on) and into the queue.
    pub(super) fn accept(&mut self, batch: Vec<Context<C>>, ctx: &mut actix::Context<Self>) {
        self.accept_as(batch, ctx, false);
    }

    /// `accept` for requests a response or a failure emitted: while a
    /// re-crawl's revisits are still being pulled, they wait (their
    /// watermark positions taken) and are checked after every revisit, so
    /// a link to a known page never beats its revisit to the dupe filter.
    pub(super) fn accept_emitted(
        &mut self,
        batch: Vec<Context<C>>,
        ctx: &mut actix::Context<Self>,
    ) {
        let hold = self.revisiting();
        self.accept_as(batch, ctx, hold);
    }

    fn accept_as(&mut self, batch: Vec<Context<C>>, ctx: &mut actix::Context<Self>, hold: bool) {
        let mut batch = batch;
        self.meet_deferred(&mut batch);
        let batch = self.admissible(batch);
        let (free, check): (Vec<_>, Vec<_>) = match &self.outbox.dupe {
            None => (batch, Vec::new()),
            Some(_) if batch.iter().all(|c| !c.request.dont_filter) => (Vec::new(), batch),
            Some(_) => batch.into_iter().partition(|c| c.request.dont_filter),
        };
        if !free.is_empty() {
            self.admit(free, false);
        }
        if check.is_empty() {
            return;
        }
        self.checking += check.len();
        // The watermarks' positions are taken now, so a completion that
        // follows is held until these are checked.
        let seq = self.checkpoints.as_mut().map(Checkpoints::check_sent);
        let mark_seq = self.shared.as_mut().map(|s| s.marks.check_sent());
        if hold {
            self.held_checks.push((check, (seq, mark_seq)));
        } else {
            self.to_check.push((check, (seq, mark_seq)));
        }
        self.send_checks(ctx);
    }

    /// Sends every batch waiting for the dupe filter in one `Check`,
    /// unless one is already out: what arrives meanwhile goes together
    /// next, so a slow dupe filter (Redis) answers a backlog in one call.
    pub(super) fn send_checks(&mut self, ctx: &mut actix::Context<Self>) {
        if !self.held_checks.is_empty() && !self.revisiting() {
            // The revisits are all in: what waited for them goes next.
            self.to_check.append(&mut self.held_checks);
        }
        let Some(dupe) = self.outbox.dupe.clone() else {
            return;
        };
        if self.check_in_flight || self.to_check.is_empty() {
            return;
        }
        self.check_in_flight = true;
        // The batches go as they are: concatenating them would copy every
        // request, and most are duplicates the dupe filter drops in place.
        let (batches, seqs): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.to_check).into_iter().unzip();
        let n = batches.iter().map(Vec::len).sum::<usize>();
        dupe.send(Check { batches })
            .into_actor(self)
            .map(move |res, act, ctx| {
                act.check_in_flight = false;
                act.checking -= n;
                match res {
                    Ok(checked) => {
                        act.stats
                            .add(Counter::DupeFiltered, checked.duplicates as u64);
                        act.accounting.close(checked.duplicates);
                        act.admit(checked.accepted, true);
                    }
                    Err(e) => {
                        error!(act.log, "dupe filter unreachable; requests lost"; "count" => n, "error" => %e);
                        act.stats.add(Counter::LostMessages, n as u64);
                        act.accounting.close(n);
                    }
                }
                for (seq, mark_seq) in seqs {
                    if let (Some(d), Some(seq)) = (act.checkpoints.as_mut(), seq) {
                        d.check_returned(seq);
                    }
                    if let (Some(s), Some(seq)) = (act.shared.as_mut(), mark_seq) {
                        let released = s.marks.check_returned(seq);
                        act.send_marks(released);
                    }
                }
                act.send_checks(ctx);
                // Requests accepted with no completion in sight (a
                // re-crawl's revisits, pulled before anything runs) are
                // written out as they pile up, not held until the first.
                if act.checkpoints.as_ref().is_some_and(Checkpoints::due) {
                    act.checkpoint(ctx, None, false);
                }
                act.pump(ctx);
            })
            .spawn(ctx);
    }

    /// Depth limit and offsite filtering (`crate::admission`); dropped
    /// requests are counted and their work closed.
    fn admissible(&mut self, batch: Vec<Context<C>>) -> Vec<Context<C>> {
        let cfg = &self.config;
        let (kept, dropped) =
            admission::admissible(cfg.depth_limit, &cfg.allowed_domains, batch, &self.log);
        if dropped.too_deep > 0 {
            self.stats.add_named("depth/filtered", dropped.too_deep);
        }
        if dropped.offsite > 0 {
            self.stats.add_named("offsite/filtered", dropped.offsite);
        }
        if dropped.offsite_redirects > 0 {
            self.stats
                .add_named("redirect/offsite_filtered", dropped.offsite_redirects);
        }
        self.accounting.close(dropped.total());
        kept
    }

    /// Queues accepted requests (when stopping, counts them enqueued and
    /// unprocessed instead, so `enqueued = dequeued + unprocessed` holds).
    /// With a job directory they are recorded first (`bloom`: their
    /// fingerprints went into the Bloom filter), so a stopped crawl resumes
    /// them.
    fn admit(&mut self, batch: Vec<Context<C>>, bloom: bool) {
        let batch = self.skip_unchanged(batch, bloom);
        let n = batch.len();
        if n == 0 {
            return;
        }
        if let Some(d) = self.checkpoints.as_mut() {
            d.added(&batch, bloom);
        }
        self.stats.add(Counter::Enqueued, n as u64);
        if let Some(depth) = batch.iter().map(|c| c.request.depth).max() {
            self.stats.max(Counter::DepthMax, u64::from(depth));
        }
        if self.state == CrawlState::Stopping && self.shared.is_none() {
            // Accepted (and recorded as seen) but never to be dispatched.
            // (A shared queue takes them: the crawl goes on elsewhere.)
            self.stats.add(Counter::Unprocessed, n as u64);
            self.accounting.close(n);
            return;
        }
        self.push(batch);
    }
}
