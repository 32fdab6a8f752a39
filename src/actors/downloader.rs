//! Downloader: fetches requests with its own awc client.
//!
//! The pool runs N of these (on the caller's arbiter, or one arbiter each
//! with `ThreadLayout::Spread`; awc clients are `!Send`, so each builds its
//! own), each under an actix `Supervisor`. A downloader runs many
//! exchanges at once: every `Download` becomes a future on the actor's
//! context that runs the middlewares' `process_request` (priority order),
//! the HTTP cache's lookup when it is on, the exchange (unless the cache
//! answered), the cache's store or revalidation, the middlewares'
//! `process_response` (reverse order), checks
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
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use futures_util::FutureExt;
use slog::{debug, error, Logger};

use crate::context::Context;
use crate::error::{panic_message, Error, ErrorKind, Stage};
use crate::http::{exchange, Clients, DownloadConfig};
use crate::httpcache::{self, HttpCache, Lookup};
use crate::messages::{deliver, Download, Downloaded, Outcome, Shutdown, WorkerCrashed};
use crate::middleware::{Middlewares, RequestAction, ResponseAction};
use crate::politeness::SlotReport;
use crate::redirect::{follow, is_redirect};
use crate::request::slot_of;
use crate::request::{Callback, Request};
use crate::response::Response;
use crate::stats::Stats;

/// Where a downloader reports.
pub(crate) struct DownloaderOutbox<C: Callback> {
    /// Finished downloads.
    pub results: Recipient<Downloaded<C>>,
    /// Crash reports.
    pub crashes: Recipient<WorkerCrashed>,
}

/// A downloader actor.
pub(crate) struct Downloader<C: Callback> {
    /// Its index in the pool, echoed in every report.
    index: usize,
    /// Incarnation number; grows on every restart.
    epoch: u64,
    /// Built in `started` on this downloader's arbiter.
    clients: Option<Clients>,
    /// The crawl's middlewares, shared by every downloader.
    middlewares: Arc<Middlewares<C>>,
    /// Timeouts, limits, User-Agent.
    config: Arc<DownloadConfig>,
    /// Where it reports.
    outbox: DownloaderOutbox<C>,
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
        outbox: DownloaderOutbox<C>,
        stats: Arc<Stats>,
        log: Logger,
    ) -> Self {
        Downloader {
            index,
            epoch: 0,
            clients: None,
            middlewares,
            config,
            outbox,
            stats,
            log,
        }
    }
}

impl<C: Callback> Actor for Downloader<C> {
    type Context = actix::Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        self.clients = Some(Clients::new(&self.config));
    }
}

impl<C: Callback> Supervised for Downloader<C> {
    fn restarting(&mut self, _: &mut Self::Context) {
        self.epoch += 1;
        self.clients = None;
        error!(self.log, "downloader restarting"; "worker" => self.index, "epoch" => self.epoch);
    }
}

/// The crawl is over: exchanges still running (abandoned by a forced
/// stop) are dropped with their connections, at once. The Pool lets go of
/// its addresses as it sends this, so the supervisor does not restart.
impl<C: Callback> Handler<Shutdown> for Downloader<C> {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.terminate();
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
        let clients = self
            .clients
            .get_or_insert_with(|| Clients::new(&self.config));
        let client = clients.for_request(&msg.ctx.request, &self.config);
        let id = msg.ctx.id;
        // Boxed once here: the wrappers below then move a pointer, not the
        // exchange's whole state.
        let job = Box::pin(download(
            client,
            self.middlewares.clone(),
            self.config.clone(),
            self.stats.clone(),
            msg.ctx,
        ));
        AssertUnwindSafe(job)
            .catch_unwind()
            .into_actor(self)
            .map(move |res, act, ctx| match res {
                Ok(done) => deliver(&act.outbox.results, done, &act.stats),
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
                    deliver(&act.outbox.crashes, crash, &act.stats);
                    ctx.stop();
                }
            })
            .spawn(ctx);
    }
}

/// Steps 5–7 for one request: [`fetch`] it, then say how it ended.
async fn download<C: Callback>(
    client: Result<awc::Client, Error>,
    middlewares: Arc<Middlewares<C>>,
    config: Arc<DownloadConfig>,
    stats: Arc<Stats>,
    mut ctx: Context<C>,
) -> Downloaded<C> {
    let id = ctx.id;
    let mut emitted = Vec::new();
    let mut report = SlotReport {
        slot: slot_of(&ctx.request.url).to_string(),
        ..SlotReport::default()
    };
    let fetched = fetch(
        client,
        &middlewares,
        &config,
        &stats,
        &mut ctx,
        &mut emitted,
        &mut report,
    )
    .await;
    let outcome = match fetched {
        Ok(response) => Outcome::Response(ctx, Box::new(response)),
        Err(Halt::Dropped(reason)) => Outcome::Dropped(ctx, reason),
        Err(Halt::Failed(e)) => Outcome::Failed(ctx, e),
        Err(Halt::Redirected(next)) => Outcome::Redirected(ctx, next),
    };
    Downloaded {
        id,
        outcome,
        emitted,
        report,
    }
}

/// How a download ended short of a response for the parser; [`download`]
/// pairs it with the request's context (which the steps only borrow).
enum Halt<C> {
    /// A middleware dropped the request or its response, for this reason.
    Dropped(String),
    /// A middleware, the exchange, a redirect or the status failed.
    Failed(Error),
    /// The answer redirects to this request.
    Redirected(Box<Request<C>>),
}

/// The middlewares' `process_request`, the HTTP cache (when on: a fresh
/// entry answers instead of the exchange, a stale one makes the exchange
/// conditional), the exchange, what it tells the host's slot (`report`),
/// the middlewares' `process_response`, then the redirect and status
/// checks. Requests the middlewares emit go to
/// `emitted`.
async fn fetch<C: Callback>(
    client: Result<awc::Client, Error>,
    middlewares: &Middlewares<C>,
    config: &DownloadConfig,
    stats: &Stats,
    ctx: &mut Context<C>,
    emitted: &mut Vec<Request<C>>,
    report: &mut SlotReport,
) -> Result<Response, Halt<C>> {
    // A re-crawl's revisit asks whether the page changed; the middlewares
    // see the question.
    crate::recrawl::add_validators(&mut ctx.request);
    process_request(middlewares, ctx, emitted)?;
    let lookup = match middlewares.cache() {
        Some(cache) => cache.lookup(&ctx.request).await,
        None => Lookup::Bypass,
    };
    let mut response = match lookup {
        Lookup::Hit(entry) => {
            httpcache::answer(*entry, &ctx.request, config.timeout, Some(config.max_body))
        }
        lookup => {
            let cache = middlewares.cache();
            send(client, cache, lookup, config, stats, ctx, report).await?
        }
    };
    response.meta.attempt = ctx.attempt;
    process_response(middlewares, ctx, &mut response, emitted)?;
    check_answer(config, stats, ctx, &response)?;
    Ok(response)
}

/// Step 6: the exchange (conditional when the HTTP cache holds a stale
/// entry), what it tells the host's slot (`report`), then the cache's
/// store or revalidation. A failed exchange is answered with the stale
/// entry when the cache allows it.
async fn send<C: Callback>(
    client: Result<awc::Client, Error>,
    cache: Option<&HttpCache>,
    lookup: Lookup,
    config: &DownloadConfig,
    stats: &Stats,
    ctx: &Context<C>,
    report: &mut SlotReport,
) -> Result<Response, Halt<C>> {
    let conditional = HttpCache::conditional(&ctx.request, &lookup);
    let sent = conditional.as_ref().unwrap_or(&ctx.request);
    let exchanged = match client {
        Ok(client) => exchange(&client, sent, config, stats).await,
        Err(e) => Err(e),
    };
    let response = match (exchanged, cache) {
        (Ok(response), _) => response,
        (Err(e), Some(cache)) => {
            match cache.recover(&lookup, &ctx.request, &e, (config.timeout, config.max_body)) {
                Some(stale) => return Ok(stale),
                None => return Err(Halt::Failed(e.with_attempt(ctx.attempt))),
            }
        }
        (Err(e), None) => return Err(Halt::Failed(e.with_attempt(ctx.attempt))),
    };
    tell_slot(report, &response);
    Ok(match cache {
        Some(cache) => cache.settle(lookup, &ctx.request, response).await,
        None => response,
    })
}

/// What an exchange's answer tells its host's slot: latency, status, and
/// the wait a `429` or `503` asks for. An answer from the HTTP cache tells
/// it nothing.
fn tell_slot(report: &mut SlotReport, response: &Response) {
    report.latency = Some(response.meta.download_latency);
    report.status = Some(response.status);
    if matches!(response.status, 429 | 503) {
        report.retry_after = response
            .header("retry-after")
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
    }
}

/// `e`, as failing `ctx`'s request at `stage`.
fn fail<C>(ctx: &Context<C>, e: Error, stage: Stage) -> Halt<C> {
    Halt::Failed(
        e.at(stage)
            .with_url(&ctx.request.url)
            .with_attempt(ctx.attempt),
    )
}

/// Step 5: every middleware's `process_request`, in priority order, until
/// one drops the request or fails.
fn process_request<C: Callback>(
    middlewares: &Middlewares<C>,
    ctx: &mut Context<C>,
    emitted: &mut Vec<Request<C>>,
) -> Result<(), Halt<C>> {
    for mw in middlewares.outbound() {
        match mw.process_request(&mut ctx.request, emitted) {
            Ok(RequestAction::Continue) => {}
            Ok(RequestAction::Drop(reason)) => return Err(Halt::Dropped(reason)),
            Err(e) => return Err(fail(ctx, e, Stage::ProcessRequest)),
        }
    }
    Ok(())
}

/// Every middleware's `process_response`, in reverse priority order, until
/// one drops the response or fails.
fn process_response<C: Callback>(
    middlewares: &Middlewares<C>,
    ctx: &Context<C>,
    response: &mut Response,
    emitted: &mut Vec<Request<C>>,
) -> Result<(), Halt<C>> {
    for mw in middlewares.inbound() {
        match mw.process_response(&ctx.request, response, emitted) {
            Ok(ResponseAction::Continue) => {}
            Ok(ResponseAction::Drop(reason)) => return Err(Halt::Dropped(reason)),
            Err(e) => return Err(fail(ctx, e, Stage::ProcessResponse)),
        }
    }
    Ok(())
}

/// A redirect to follow (when on, for this request) becomes the next
/// request; a status the request does not allow fails it.
fn check_answer<C: Callback>(
    config: &DownloadConfig,
    stats: &Stats,
    ctx: &Context<C>,
    response: &Response,
) -> Result<(), Halt<C>> {
    if config.follow_redirects && ctx.request.allow_redirects && is_redirect(response.status) {
        if let Some(location) = response.header("location").map(str::to_string) {
            return match follow(
                &ctx.request,
                response,
                &location,
                &config.cross_origin_headers,
            ) {
                Ok(next) => {
                    stats.add_named("redirect/count", 1);
                    Err(Halt::Redirected(Box::new(next)))
                }
                Err(e) => Err(fail(ctx, e, Stage::Download)),
            };
        }
    }
    if !ctx.request.status_allowed(response.status) {
        let e = Error::new(Stage::Download, ErrorKind::HttpStatus(response.status));
        return Err(fail(ctx, e, Stage::Download));
    }
    Ok(())
}

/// `Retry-After` as seconds or an HTTP-date, relative to `now`; capped at
/// an hour so a hostile header cannot park a host forever.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(Duration::from_secs(3600)))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use actix_web::{web, App, HttpResponse, HttpServer};
    use tokio::sync::mpsc;

    use super::*;
    use crate::middleware::DownloadMiddleware;
    use crate::request::Request;

    /// A fake pool: forwards what the downloader reports.
    struct FakePool {
        results: mpsc::UnboundedSender<Downloaded<()>>,
        crashes: mpsc::UnboundedSender<WorkerCrashed>,
    }
    impl Actor for FakePool {
        type Context = actix::Context<Self>;
    }
    impl Handler<Downloaded<()>> for FakePool {
        type Result = ();
        fn handle(&mut self, msg: Downloaded<()>, _: &mut Self::Context) {
            let _ = self.results.send(msg);
        }
    }
    impl Handler<WorkerCrashed> for FakePool {
        type Result = ();
        fn handle(&mut self, msg: WorkerCrashed, _: &mut Self::Context) {
            let _ = self.crashes.send(msg);
        }
    }

    /// Records its name on the way out and back; panics once on `/boom`.
    struct Mark {
        name: &'static str,
        priority: i32,
        log: Arc<Mutex<Vec<String>>>,
        panicked: Arc<AtomicBool>,
    }
    impl DownloadMiddleware<()> for Mark {
        fn priority(&self) -> i32 {
            self.priority
        }
        fn process_request(
            &self,
            r: &mut Request<()>,
            _: &mut Vec<Request<()>>,
        ) -> Result<RequestAction, Error> {
            if r.url.path() == "/boom" && !self.panicked.swap(true, Ordering::SeqCst) {
                panic!("boom");
            }
            self.log.lock().unwrap().push(format!("req:{}", self.name));
            Ok(RequestAction::Continue)
        }
        fn process_response(
            &self,
            _: &Request<()>,
            _: &mut crate::response::Response,
            _: &mut Vec<Request<()>>,
        ) -> Result<ResponseAction, Error> {
            self.log.lock().unwrap().push(format!("resp:{}", self.name));
            Ok(ResponseAction::Continue)
        }
    }

    struct Rig {
        base: String,
        worker: Addr<Downloader<()>>,
        results: mpsc::UnboundedReceiver<Downloaded<()>>,
        crashes: mpsc::UnboundedReceiver<WorkerCrashed>,
        log: Arc<Mutex<Vec<String>>>,
    }

    fn rig() -> Rig {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(|| {
                    App::new()
                        .route(
                            "/ok",
                            web::get().to(|| async { HttpResponse::Ok().body("hello") }),
                        )
                        .route(
                            "/boom",
                            web::get().to(|| async { HttpResponse::Ok().body("x") }),
                        )
                        .default_service(web::to(|| async { HttpResponse::NotFound().finish() }))
                })
                .workers(1)
                .disable_signals()
                .bind(("127.0.0.1", 0))
                .unwrap();
                tx.send(server.addrs()[0]).unwrap();
                server.run().await.unwrap();
            });
        });
        let addr = rx.recv().unwrap();
        let (rtx, results) = mpsc::unbounded_channel();
        let (ctx_, crashes) = mpsc::unbounded_channel();
        let pool = FakePool {
            results: rtx,
            crashes: ctx_,
        }
        .start();
        let log = Arc::new(Mutex::new(Vec::new()));
        let panicked = Arc::new(AtomicBool::new(false));
        let mark = |name, priority| -> Arc<dyn DownloadMiddleware<()>> {
            Arc::new(Mark {
                name,
                priority,
                log: log.clone(),
                panicked: panicked.clone(),
            })
        };
        let middlewares = Arc::new(Middlewares::new(vec![mark("b", 2), mark("a", 1)]));
        let config = Arc::new(DownloadConfig {
            timeout: Duration::from_secs(10),
            max_body: 1 << 20,
            user_agent: "test".into(),
            ..DownloadConfig::default()
        });
        let outbox = DownloaderOutbox {
            results: pool.clone().recipient(),
            crashes: pool.recipient(),
        };
        let worker = Supervisor::start(move |_| {
            Downloader::new(
                3,
                middlewares,
                config,
                outbox,
                Arc::default(),
                Logger::root(slog::Discard, slog::o!()),
            )
        });
        Rig {
            base: format!("http://{addr}"),
            worker,
            results,
            crashes,
            log,
        }
    }

    fn download(rig: &Rig, path: &str, epoch: u64) -> Context<()> {
        let mut ctx = Context::new(Request::get(&format!("{}{path}", rig.base)).unwrap(), None);
        ctx.attempt = 1;
        rig.worker.do_send(Download {
            ctx: ctx.clone(),
            epoch,
        });
        ctx
    }

    #[actix::test]
    async fn a_response_runs_the_middlewares_in_order_and_carries_its_meta() {
        let mut rig = rig();
        let sent = download(&rig, "/ok", 0);
        let done = rig.results.recv().await.unwrap();
        assert_eq!(done.id, sent.id);
        assert_eq!(done.report.slot, "127.0.0.1");
        assert_eq!(done.report.status, Some(200));
        assert!(done.report.latency.is_some());
        let Outcome::Response(_, response) = done.outcome else {
            panic!("expected a response, got {:?}", done.outcome);
        };
        assert_eq!(response.status, 200);
        assert_eq!(&response.body[..], b"hello");
        assert_eq!(response.meta.attempt, 1);
        assert_eq!(response.meta.download_slot, "127.0.0.1");
        assert_eq!(response.meta.download_timeout, Duration::from_secs(10));
        assert!(response.meta.download_latency > Duration::ZERO);
        assert_eq!(
            *rig.log.lock().unwrap(),
            ["req:a", "req:b", "resp:b", "resp:a"]
        );
    }

    #[actix::test]
    async fn shutdown_drops_an_exchange_in_flight_and_its_connection() {
        use std::io::Read;
        // A server that reads the request, never answers, and reports when
        // the client closes the connection.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (arrived_tx, arrived) = std::sync::mpsc::channel();
        let (closed_tx, closed) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            arrived_tx.send(()).unwrap();
            while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
            closed_tx.send(()).unwrap();
        });
        let mut rig = rig();
        rig.base = format!("http://{addr}");
        download(&rig, "/hangs", 0);
        actix_rt::task::spawn_blocking(move || arrived.recv().unwrap())
            .await
            .unwrap();
        rig.worker.send(Shutdown).await.unwrap();
        // Without the shutdown the exchange would wait for its 10 s timeout.
        let waited = actix_rt::task::spawn_blocking(move || {
            closed.recv_timeout(Duration::from_secs(5)).is_ok()
        });
        assert!(waited.await.unwrap(), "the connection stayed open");
        assert!(rig.results.try_recv().is_err(), "the exchange reported");
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(
            parse_retry_after("999999", now),
            Some(Duration::from_secs(3600))
        );
    }

    #[actix::test]
    async fn a_disallowed_status_is_a_failure() {
        let mut rig = rig();
        download(&rig, "/missing", 0);
        let done = rig.results.recv().await.unwrap();
        let Outcome::Failed(_, e) = done.outcome else {
            panic!("expected a failure, got {:?}", done.outcome);
        };
        assert!(matches!(e.kind(), ErrorKind::HttpStatus(404)), "{e}");
        assert_eq!(e.attempt(), 1);
    }

    #[actix::test]
    async fn a_request_through_an_unusable_proxy_fails_not_sent_directly() {
        let mut rig = rig();
        for proxy in ["http://127.0.0.1:1", "socks5://127.0.0.1:1"] {
            let ctx = Context::new(
                Request::get(&format!("{}/ok", rig.base))
                    .unwrap()
                    .proxy(proxy),
                None,
            );
            rig.worker.do_send(Download { ctx, epoch: 0 });
            let done = rig.results.recv().await.unwrap();
            let Outcome::Failed(_, e) = done.outcome else {
                panic!("expected a failure, got {:?}", done.outcome);
            };
            if proxy.starts_with("http:") {
                assert!(matches!(e.kind(), ErrorKind::Connect { .. }), "{e}");
                assert!(
                    e.to_string()
                        .contains("cannot connect to proxy 127.0.0.1:1"),
                    "{e}"
                );
            } else {
                assert!(matches!(e.kind(), ErrorKind::InvalidUrl { .. }), "{e}");
            }
        }
    }

    #[actix::test]
    async fn a_panic_reports_a_crash_and_the_restarted_worker_skips_old_epochs() {
        let mut rig = rig();
        let boom = download(&rig, "/boom", 0);
        let crash = rig.crashes.recv().await.unwrap();
        assert_eq!((crash.worker, crash.epoch, crash.id), (3, 0, boom.id));
        assert!(crash.panic.contains("boom"));
        // Restarted under its supervisor as epoch 1: a message addressed to
        // epoch 0 was already re-queued by the pool and is skipped; one for
        // epoch 1 is downloaded.
        download(&rig, "/ok", 0);
        let fresh = download(&rig, "/ok", 1);
        let done = rig.results.recv().await.unwrap();
        assert_eq!(done.id, fresh.id);
        assert!(matches!(done.outcome, Outcome::Response(..)));
        // The skipped one never reports.
        let late = download(&rig, "/ok", 1);
        assert_eq!(rig.results.recv().await.unwrap().id, late.id);
    }
}
