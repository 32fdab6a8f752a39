//! Downloader: fetches requests on its own arbiter with its own awc client.
//!
//! The pool runs N of these, each on its own arbiter (awc clients are
//! `!Send`), each under an actix `Supervisor`. A downloader runs many
//! exchanges at once: every `Download` becomes a future on the actor's
//! context that runs the middlewares' `process_request` (priority order),
//! the exchange, the middlewares' `process_response` (reverse order), checks
//! the status against the request, and reports a `Downloaded` to the pool.
//!
//! A panic in any of that (user middleware code, most likely) is caught: the
//! downloader reports `WorkerCrashed` and stops itself, and the supervisor
//! restarts it (`restarting`, then `started` with a fresh client). In actix
//! 0.13 an uncaught panic would kill the actor for good. Stopping drops every
//! exchange the downloader was running; the pool re-queues all of them. The
//! downloader's epoch grows on each restart so that `Download` messages sent
//! to the old incarnation, already re-queued by the pool, are skipped.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use actix::prelude::*;
use futures_util::FutureExt;
use slog::{debug, error, Logger};

use crate::context::Context;
use crate::error::{panic_message, Error, ErrorKind, Stage};
use crate::http::{build_client, exchange, DownloadConfig};
use crate::messages::{deliver, Download, Downloaded, Outcome, WorkerCrashed};
use crate::middleware::{Middlewares, RequestAction, ResponseAction};
use crate::spider::Callback;
use crate::stats::Stats;

/// Where a downloader reports.
pub struct DownloaderLinks<C: Callback> {
    /// Finished downloads.
    pub results: Recipient<Downloaded<C>>,
    /// Crash reports.
    pub crashes: Recipient<WorkerCrashed>,
}

/// A downloader actor.
pub struct Downloader<C: Callback> {
    /// Its index in the pool, echoed in every report.
    index: usize,
    /// Incarnation number; grows on every restart.
    epoch: u64,
    /// Built in `started` on this downloader's arbiter.
    client: Option<awc::Client>,
    /// The crawl's middlewares, shared by every downloader.
    middlewares: Arc<Middlewares<C>>,
    /// Timeouts, limits, User-Agent.
    config: Arc<DownloadConfig>,
    /// Where it reports.
    links: DownloaderLinks<C>,
    /// Counters.
    stats: Arc<Stats>,
    /// Structured log.
    log: Logger,
}

impl<C: Callback> Downloader<C> {
    pub(crate) fn new(
        index: usize,
        middlewares: Arc<Middlewares<C>>,
        config: Arc<DownloadConfig>,
        links: DownloaderLinks<C>,
        stats: Arc<Stats>,
        log: Logger,
    ) -> Self {
        Downloader {
            index,
            epoch: 0,
            client: None,
            middlewares,
            config,
            links,
            stats,
            log,
        }
    }
}

impl<C: Callback> Actor for Downloader<C> {
    type Context = actix::Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        self.client = Some(build_client(&self.config));
    }
}

impl<C: Callback> Supervised for Downloader<C> {
    fn restarting(&mut self, _: &mut Self::Context) {
        self.epoch += 1;
        self.client = None;
        error!(self.log, "downloader restarting"; "worker" => self.index, "epoch" => self.epoch);
    }
}

impl<C: Callback> Handler<Download<C>> for Downloader<C> {
    type Result = ();

    fn handle(&mut self, msg: Download<C>, ctx: &mut Self::Context) {
        if msg.epoch < self.epoch {
            debug!(self.log, "skipping a download addressed to a crashed incarnation";
                "request_id" => %msg.ctx.id);
            return;
        }
        let client = self
            .client
            .get_or_insert_with(|| build_client(&self.config))
            .clone();
        let id = msg.ctx.id;
        let job = download(
            client,
            self.middlewares.clone(),
            self.config.clone(),
            self.stats.clone(),
            msg.ctx,
            self.index,
        );
        AssertUnwindSafe(job)
            .catch_unwind()
            .into_actor(self)
            .map(move |res, act, ctx| match res {
                Ok(done) => deliver(&act.links.results, done, &act.stats),
                Err(panic) => {
                    let panic = panic_message(&*panic);
                    error!(act.log, "download panicked"; "worker" => act.index,
                        "request_id" => %id, "panic" => &panic);
                    let crash = WorkerCrashed {
                        worker: act.index,
                        epoch: act.epoch,
                        id,
                        panic,
                    };
                    deliver(&act.links.crashes, crash, &act.stats);
                    ctx.stop();
                }
            })
            .spawn(ctx);
    }
}

/// Steps 5–7 for one request.
async fn download<C: Callback>(
    client: awc::Client,
    middlewares: Arc<Middlewares<C>>,
    config: Arc<DownloadConfig>,
    stats: Arc<Stats>,
    mut ctx: Context<C>,
    worker: usize,
) -> Downloaded<C> {
    let id = ctx.id;
    let mut emitted = Vec::new();
    let done = |outcome, emitted| Downloaded {
        worker,
        id,
        outcome,
        emitted,
    };
    let fail = |ctx: &Context<C>, e: Error, stage: Stage| {
        e.at(stage)
            .with_url(&ctx.request.url)
            .with_attempt(ctx.attempt)
    };
    for mw in middlewares.outbound() {
        match mw.process_request(&mut ctx.request, &mut emitted) {
            Ok(RequestAction::Continue) => {}
            Ok(RequestAction::Drop(reason)) => {
                return done(Outcome::Dropped(ctx, reason), emitted);
            }
            Err(e) => {
                let e = fail(&ctx, e, Stage::ProcessRequest);
                return done(Outcome::Failed(ctx, e), emitted);
            }
        }
    }
    let mut response = match exchange(&client, &ctx.request, &config, &stats).await {
        Ok(r) => r,
        Err(e) => {
            let e = e.with_attempt(ctx.attempt);
            return done(Outcome::Failed(ctx, e), emitted);
        }
    };
    response.meta.attempt = ctx.attempt;
    for mw in middlewares.inbound() {
        match mw.process_response(&ctx.request, &mut response, &mut emitted) {
            Ok(ResponseAction::Continue) => {}
            Ok(ResponseAction::Drop(reason)) => {
                return done(Outcome::Dropped(ctx, reason), emitted);
            }
            Err(e) => {
                let e = fail(&ctx, e, Stage::ProcessResponse);
                return done(Outcome::Failed(ctx, e), emitted);
            }
        }
    }
    if !ctx.request.status_allowed(response.status) {
        stats.inc(crate::stats::Counter::HttpErrorIgnored);
        let e = fail(
            &ctx,
            Error::new(Stage::Download, ErrorKind::HttpStatus(response.status)),
            Stage::Download,
        );
        return done(Outcome::Failed(ctx, e), emitted);
    }
    done(Outcome::Response(ctx, Box::new(response)), emitted)
}
