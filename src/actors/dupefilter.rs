//! DupeFilter: drops requests the crawl has already seen.
//!
//! For each request of a batch it computes the fingerprint (method, canonical URL, body, sorted headers) and
//! test-and-adds it in its [`DupeBackend`] (a Bloom filter in front of an
//! exact set by default). If the back-end fails, the batch is let through
//! rather than lost: fetching a page twice is better than never. After each
//! answer it copies the back-end's report into the stats
//! (`dupefilter/bloom_false_positives`, and for a Bloom filter with no
//! exact store past its capacity `dupefilter/bloom_unconfirmed` and
//! `dupefilter/bloom_maybe_lost`, with a warning when it passes the
//! capacity and again when it stops).

use std::marker::PhantomData;
use std::sync::Arc;

use actix::prelude::*;
use slog::{error, warn, Logger};

use crate::context::Context;
use crate::dedupe::{DupeBackend, DupeReport};
use crate::error::{Error, ErrorKind, Stage};
use crate::fingerprint::fingerprint;
use crate::messages::{Check, Checked, Shutdown};
use crate::request::Callback;
use crate::stats::Stats;

/// The dupe-filter actor.
pub(crate) struct DupeFilter<C> {
    /// The seen-set.
    backend: Box<dyn DupeBackend>,
    /// For the back-end error counter.
    stats: Arc<Stats>,
    /// Structured log.
    log: Logger,
    /// The callback type of the requests it sees.
    _callback: PhantomData<fn() -> C>,
}

impl<C: Callback> DupeFilter<C> {
    pub(crate) fn new(backend: Box<dyn DupeBackend>, stats: Arc<Stats>, log: Logger) -> Self {
        DupeFilter {
            backend,
            stats,
            log,
            _callback: PhantomData,
        }
    }
}

impl<C: Callback> Actor for DupeFilter<C> {
    type Context = actix::Context<Self>;
}

impl<C: Callback> Handler<Check<C>> for DupeFilter<C> {
    type Result = AtomicResponse<Self, Checked<C>>;

    fn handle(&mut self, msg: Check<C>, _: &mut Self::Context) -> Self::Result {
        let fps = msg.iter().map(|c| fingerprint(&c.request)).collect();
        let fut = self.backend.check_and_add(fps);
        let batches = msg.batches;
        AtomicResponse::new(Box::pin(fut.into_actor(self).map(move |res, act, _| {
            let report = act.backend.take_report();
            act.record(report);
            let total = batches.iter().map(Vec::len).sum();
            match res.and_then(|fresh| complete_answer(fresh, total)) {
                Ok(fresh) => {
                    let accepted = keep_fresh(batches, fresh);
                    Checked {
                        duplicates: total - accepted.len(),
                        accepted,
                    }
                }
                Err(e) => {
                    error!(act.log, "dupe filter failed; letting the batch through";
                        "count" => total, "error" => %e);
                    act.stats.add_named("dupefilter/errors", 1);
                    Checked {
                        accepted: batches.into_iter().flatten().collect(),
                        duplicates: 0,
                    }
                }
            }
        })))
    }
}

/// The requests `fresh` marks new, in order, in one vector. In place: the
/// duplicates (most of a batch) are dropped where they lie, and only those
/// kept from a second batch on move.
fn keep_fresh<C>(batches: Vec<Vec<Context<C>>>, fresh: Vec<bool>) -> Vec<Context<C>> {
    let mut fresh = fresh.into_iter();
    let mut accepted = Vec::new();
    for mut batch in batches {
        batch.retain(|_| fresh.next().unwrap_or(false));
        if accepted.is_empty() {
            accepted = batch;
        } else {
            accepted.append(&mut batch);
        }
    }
    accepted
}

impl<C: Callback> DupeFilter<C> {
    /// Copies a back-end report into the stats.
    fn record(&mut self, r: DupeReport) {
        for (name, n) in [
            ("dupefilter/bloom_false_positives", r.bloom_false_positives),
            ("dupefilter/bloom_unconfirmed", r.unconfirmed),
            ("dupefilter/bloom_maybe_lost", r.maybe_lost),
        ] {
            if n > 0 {
                self.stats.add_named(name, n);
            }
        }
        if let Some(n) = r.fingerprints {
            self.stats.set_named("dupefilter/fingerprints", n);
        }
        if let Some(n) = r.bytes {
            self.stats.set_named("dupefilter/store_bytes", n);
        }
        if let Some(held) = r.passed_capacity {
            warn!(self.log, "the Bloom filter is past the capacity it was sized for, with no exact \
                store behind it: from now on some new URLs are dropped as duplicates \
                (dupefilter/bloom_maybe_lost estimates how many); size it larger or use the exact mode";
                "fingerprints" => held);
        }
    }
}

/// A back-end answer must cover the whole batch; a short one would drop
/// requests as if they were duplicates, so it counts as a failure (and the
/// batch goes through).
fn complete_answer(fresh: Vec<bool>, asked: usize) -> Result<Vec<bool>, Error> {
    if fresh.len() == asked {
        return Ok(fresh);
    }
    Err(Error::new(
        Stage::Schedule,
        ErrorKind::Backend(format!("answered {} of {asked} fingerprints", fresh.len())),
    ))
}

impl<C: Callback> Handler<Shutdown> for DupeFilter<C> {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        let stats = self.stats.snapshot();
        let unconfirmed = stats.get("dupefilter/bloom_unconfirmed");
        if unconfirmed > 0 {
            warn!(self.log, "duplicates answered by the Bloom filter alone past its capacity";
                "unconfirmed" => unconfirmed,
                "maybe_lost" => stats.get("dupefilter/bloom_maybe_lost"));
        }
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedupe::{DupeMode, MemoryDupe};
    use crate::request::Request;

    #[actix::test]
    async fn drops_repeats_within_and_across_batches() {
        let f = DupeFilter::<()>::new(
            Box::new(MemoryDupe::new(1000, 0.001, DupeMode::Exact).unwrap()),
            Arc::default(),
            Logger::root(slog::Discard, slog::o!()),
        )
        .start();
        let ctx = |u: &str| Context::new(Request::get(u).unwrap(), None);
        let first = f
            .send(Check::one(vec![
                ctx("http://h/a"),
                ctx("http://h/b"),
                ctx("http://h/a#x"),
            ]))
            .await
            .unwrap();
        assert_eq!(first.accepted.len(), 2);
        assert_eq!(first.duplicates, 1);
        // Several batches in one check: one answer, in their order, with
        // repeats across the batches dropped too.
        let second = f
            .send(Check {
                batches: vec![
                    vec![ctx("http://h/b")],
                    vec![ctx("http://h/c"), ctx("http://h/d")],
                    vec![],
                    vec![ctx("http://h/c#x"), ctx("http://h/e")],
                ],
            })
            .await
            .unwrap();
        assert_eq!(second.duplicates, 2);
        let paths: Vec<_> = second
            .accepted
            .iter()
            .map(|c| c.request.url.path())
            .collect();
        assert_eq!(paths, ["/c", "/d", "/e"]);
    }
}
