//! Starting a crawl: a checked [`Crawler`] becomes running actors.
//!
//! [`Crawler::start`] (and [`Crawler::start_async`], which first connects
//! to Redis) runs these steps in order: check that it can start; open the
//! job directory and replay it; open the middlewares and pull the start
//! requests; make the addresses, accounting, stats and events every actor
//! shares; start the ErrorHandler, then the CacheQueue and the DupeFilter
//! on their back-ends (Redis ones for a distributed crawl); start the
//! PipelineStage and the Parser on their arbiter(s); start the downloaders
//! under supervisors; start the JobStore and run the Pool; start the
//! Coordinator and run the Scheduler; run the Engine; build the handle.
//! The Engine, the Scheduler and the Pool get their addresses before any
//! actor runs, so that the actors started first can already send to them.
//!
//! Everything made here (the Redis connection, the stats, the accounting,
//! the arbiters, the cookie jar) belongs to the running crawl; the
//! [`Crawler`] it came from holds configuration only.

use std::sync::Arc;

use actix::prelude::*;
use slog::{o, Logger};
use tokio::sync::{broadcast, watch};

mod replay;

use replay::{start_requests, Replay};

use crate::accounting::Accounting;
use crate::actors::cache_queue::CacheQueue;
#[cfg(feature = "distributed")]
use crate::actors::coordinator::Coordinator;
use crate::actors::downloader::{Downloader, DownloaderOutbox};
use crate::actors::dupefilter::DupeFilter;
use crate::actors::engine::{Engine, EngineOutbox};
use crate::actors::error_handler::{ErrorHandler, ErrorOutbox};
use crate::actors::job_store::JobStore;
use crate::actors::parser::{Parser, ParserOutbox};
use crate::actors::pipeline_stage::{PipelineStage, StageOutbox};
use crate::actors::pool::{PageIndexing, Pool, PoolOutbox};
use crate::actors::scheduler::{Scheduler, SchedulerOutbox, SharedQueue};
use crate::builder::{Config, Crawler, ThreadLayout};
use crate::dedupe::{DupeBackend, MemoryDupe};
#[cfg(feature = "distributed")]
use crate::distributed::membership::{leave, Connected};
#[cfg(feature = "distributed")]
use crate::distributed::{RedisDupe, RedisQueue, Shared};
use crate::error::{Error, ErrorKind, Stage};
use crate::events::{CrawlEvent, ResumeInfo};
use crate::handle::CrawlHandle;
use crate::http::cookies::CookieJar;
use crate::http::env_proxy::EnvProxies;
use crate::http::DownloadConfig;
use crate::messages::{Leave, Shutdown};
use crate::middleware::Middlewares;
use crate::pipeline::Pipeline;
use crate::queue::{remove_segments, MemoryQueue, QueueBackend, SpillDir};
use crate::request::Callback;
use crate::spider::{Spider, StartRequests};
use crate::state::Phase;
use crate::stats::{Stats, StatsSnapshot};

impl<S: Spider> Crawler<S> {
    /// Starts the crawl, first connecting to its Redis when it is
    /// distributed ([`CrawlerBuilder::redis`](crate::CrawlerBuilder::redis)):
    /// this worker registers, and Redis unreachable fails here with a
    /// `Backend` error naming the URL. Otherwise the same as
    /// [`start`](Self::start).
    pub async fn start_async(self) -> Result<CrawlHandle, Error> {
        #[cfg(feature = "distributed")]
        if let Some(opts) = self.settings.redis.clone() {
            let (s, name) = (&self.settings, self.spider.name());
            let bloom = (s.bloom_capacity, s.bloom_rate);
            let connected = Connected::open(opts, name, &s.log, bloom).await?;
            let shared = connected.shared.clone();
            let started = self.launch(Some(connected));
            if started.is_err() {
                leave(&shared).await;
            }
            return started;
        }
        self.launch(None)
    }

    /// Starts the crawl on the current actix system.
    ///
    /// Fails when called outside a running actix system, when the spider's
    /// `start_requests` panics, or for a distributed crawl (which connects
    /// first: [`start_async`](Self::start_async)).
    pub fn start(self) -> Result<CrawlHandle, Error> {
        self.launch(None)
    }

    /// Every step, in order; `connected`: the distributed crawl's Redis.
    fn launch(self, connected: Option<Connected>) -> Result<CrawlHandle, Error> {
        can_start(self.settings.is_distributed(), connected.is_some())?;
        let Crawler {
            spider,
            settings: s,
            middlewares,
            pipelines,
            queue,
            dupe,
            builtin_bloom,
            env_proxy,
        } = self;
        let log = s.log.new(o!("spider" => spider.name().to_string()));
        let stats = connected.as_ref().map(Connected::stats).unwrap_or_default();
        // A job directory is read before anything starts: a bad one fails
        // the start with nothing running.
        let mut job = Replay::open(&s, builtin_bloom, &stats, &log)?;
        let cache = crate::httpcache::open(&s.http_cache, &s.job_dir, &stats, &log)?;
        let middlewares = Arc::new(Middlewares::new(middlewares).with_cache(cache));
        open_middlewares(&middlewares)?;
        let (events, _) = broadcast::channel(crate::events::CAPACITY);
        let starts = start_requests(&*spider, &mut job)?;
        let (contexts, w) = Wiring::new(spider, stats, events, log);
        let errors = w.start_error_handler();
        let saved = job.bloom.take();
        let (queue, dupe) = backends(
            queue,
            dupe,
            saved,
            connected.as_ref(),
            s.dedupe,
            (s.frontier_memory, spill_dir(&s)?),
        );
        let queue = w.start_queue(queue);
        let dupe = dupe.filter(|_| s.dedupe).map(|d| w.start_dupe_filter(d));
        let mut arbiters = Vec::new();
        // A distributed worker continues its file exports: a restarted
        // worker must keep the items of pages already acknowledged.
        let resumed = job.resumed.is_some() || connected.is_some();
        let (stage, parser) = w.start_stages(&s, pipelines, resumed, &errors, &mut arbiters);
        let config = w.download_config(&s, env_proxy);
        let downloaders = w.start_downloaders(&s, config.clone(), &middlewares, &mut arbiters);
        // The order the Engine stops them in when the crawl is over.
        let mut shutdown = vec![
            w.sched.clone().recipient(),
            w.pool.clone().recipient(),
            queue.clone().recipient(),
            errors.clone().recipient(),
            stage.clone().recipient(),
            parser.clone().recipient(),
        ];
        shutdown.extend(dupe.clone().map(Addr::recipient));
        let store = JobStore::start_on_own_arbiter(job.store.take(), &mut arbiters, &mut shutdown);
        let indexing = store.is_some().then_some(job.generation);
        w.run_pool(contexts.pool, downloaders, parser, &errors, &s, indexing);
        let (leave, shared) = w.start_coordinator(connected, &queue, &stage, &mut shutdown);
        let scheduler = w.scheduler(queue, dupe, starts, s.scheduler.clone());
        // robots.txt goes the way the pages do (proxies, User-Agent, guard).
        let mut scheduler = scheduler.with_robots_download(config);
        if let Some(store) = &store {
            scheduler = scheduler
                .with_job(
                    store.clone().recipient(),
                    Some(stage.clone().recipient()),
                    w.events.clone(),
                    s.checkpoints,
                    job.starts_pulled,
                )
                .with_revisits(job.revisits, std::mem::take(&mut job.deferred))
                .with_restored(std::mem::take(&mut job.pending));
        }
        if let Some(shared) = shared {
            scheduler = scheduler.with_shared_queue(shared);
        }
        contexts.sched.run(scheduler);
        let with_job = store.is_some().then(|| job.resumed.take());
        let ends = Ends {
            close: stage.recipient(),
            release: store.map(Addr::recipient),
            shutdown,
            leave,
            arbiters,
        };
        let (finished, phase) = w.run_engine(contexts.engine, ends, &s, middlewares);
        Ok(w.handle(finished, phase, with_job))
    }
}

/// Without the `distributed` feature there is no connection to make: no
/// value of this type exists, so every crawl runs on its own.
#[cfg(not(feature = "distributed"))]
enum Connected {}

#[cfg(not(feature = "distributed"))]
impl Connected {
    /// The crawl's stats, made with the connection.
    fn stats(&self) -> Arc<Stats> {
        match *self {}
    }
}

/// Fails outside a running actix system, and for a distributed crawl that
/// has not connected (started with `start`, not `start_async`).
fn can_start(distributed: bool, connected: bool) -> Result<(), Error> {
    if System::try_current().is_none() {
        return Err(Error::new(
            Stage::Setup,
            ErrorKind::IllegalState("Crawler::start needs a running actix system".into()),
        ));
    }
    if distributed && !connected {
        return Err(Error::new(
            Stage::Setup,
            ErrorKind::IllegalState(
                "a distributed crawl connects to Redis first: use Crawler::start_async".into(),
            ),
        ));
    }
    Ok(())
}

/// The queue and dupe back-ends: Redis ones for a distributed crawl, else
/// the configured queue (in memory by default) and `dupe`, for which a
/// resumed job's `saved` Bloom filter stands in.
#[cfg_attr(not(feature = "distributed"), allow(unused_variables))]
fn backends<C: Callback>(
    queue: Option<Box<dyn QueueBackend<C>>>,
    dupe: Option<Box<dyn DupeBackend>>,
    saved: Option<MemoryDupe>,
    connected: Option<&Connected>,
    dedupe: bool,
    frontier: (usize, SpillDir),
) -> (Box<dyn QueueBackend<C>>, Option<Box<dyn DupeBackend>>) {
    #[cfg(feature = "distributed")]
    if let Some(c) = connected {
        return (
            Box::new(RedisQueue::new(c.shared.clone(), dedupe.then_some(c.shape))),
            Some(Box::new(RedisDupe::new(c.shared.clone(), c.shape))),
        );
    }
    let saved = saved.map(|bloom| Box::new(bloom) as Box<dyn DupeBackend>);
    let queue = queue.unwrap_or_else(|| Box::new(MemoryQueue::bounded(frontier.0, frontier.1)));
    (queue, saved.or(dupe))
}

/// Where the built-in queue spills: the job directory's `frontier/`, else
/// a directory of its own inside the configured one or the system's
/// temporary directory.
///
/// A job directory's segments from an earlier run are removed now: its
/// journal holds every pending request, and the resumed crawl queues them
/// (and spills them) again.
fn spill_dir(s: &Config) -> Result<SpillDir, Error> {
    Ok(match (&s.job_dir, &s.frontier_dir) {
        (Some(job), _) => {
            let dir = job.join("frontier");
            remove_segments(&dir).map_err(|e| {
                Error::new(
                    Stage::Setup,
                    ErrorKind::Config(format!("frontier directory {}: {e}", dir.display())),
                )
            })?;
            SpillDir::At(dir)
        }
        (None, Some(dir)) => SpillDir::Inside(dir.clone()),
        (None, None) => SpillDir::Inside(std::env::temp_dir()),
    })
}

/// The contexts of the actors whose addresses are handed out before they
/// run; each is run by its own step, last.
struct Contexts<C: Callback> {
    /// Runs the Engine.
    engine: actix::Context<Engine>,
    /// Runs the Scheduler.
    sched: actix::Context<Scheduler<C>>,
    /// Runs the Pool.
    pool: actix::Context<Pool<C>>,
}

/// What the Engine needs to end the crawl.
struct Ends {
    /// The PipelineStage: closes the pipelines.
    close: Recipient<crate::messages::ClosePipelines>,
    /// The crawl's JobStore, when it has a job directory: the Engine asks
    /// for checkpoints, and has the directory released last.
    release: Option<Recipient<crate::messages::ReleaseJobDir>>,
    /// Every actor to stop, in order.
    shutdown: Vec<Recipient<Shutdown>>,
    /// Told, in order, that a distributed crawl is leaving.
    leave: Vec<Recipient<Leave>>,
    /// The arbiters to stop.
    arbiters: Vec<Arbiter>,
}

/// What every step wires to: the addresses of the Engine, the Scheduler
/// and the Pool (made before any actor runs), and what all actors share.
struct Wiring<S: Spider> {
    /// Shared with the ErrorHandler and the Parser.
    spider: Arc<S>,
    /// The Engine: pause, resume, stop and checkpoints from the handle.
    engine: Addr<Engine>,
    /// The Scheduler, which most actors report to.
    sched: Addr<Scheduler<S::Callback>>,
    /// The Pool, which the downloaders report to.
    pool: Addr<Pool<S::Callback>>,
    /// The open-work counter that tells the Engine the crawl is over.
    accounting: Arc<Accounting>,
    /// The crawl's counters.
    stats: Arc<Stats>,
    /// Lifecycle events, for subscribers.
    events: broadcast::Sender<CrawlEvent>,
    /// The crawl's log, with the spider's name; each actor logs through a
    /// child of it.
    log: Logger,
}

impl<S: Spider> Wiring<S> {
    /// The Download settings every downloader shares, with the crawl's
    /// cookie jar (made here: a jar is state, not configuration).
    fn download_config(&self, s: &Config, env_proxy: Option<EnvProxies>) -> DownloadConfig {
        let log = self.log.new(o!("actor" => "downloader"));
        let jar = || Arc::new(CookieJar::new(s.cookie_limits, &self.stats, &log));
        DownloadConfig {
            timeout: s.timeout,
            max_body: s.max_body,
            warn_body: s.warn_body,
            user_agent: s.user_agent.clone(),
            env_proxy,
            follow_redirects: s.follow_redirects,
            stream_dirs: crate::http::stream_dir::StreamDirs::new(&s.stream_dirs),
            cookies: s.cookies.then(jar),
            cross_origin_headers: s.cross_origin_headers.clone(),
            guard: s.address_guard.clone(),
            tls: crate::http::tls::shared(s.tls_ready.as_deref(), &self.stats, &log),
            log,
        }
    }

    /// Makes the contexts of the Engine, the Scheduler and the Pool (so
    /// their addresses exist before they run) and the accounting.
    fn new(
        spider: Arc<S>,
        stats: Arc<Stats>,
        events: broadcast::Sender<CrawlEvent>,
        log: Logger,
    ) -> (Contexts<S::Callback>, Self) {
        let engine_ctx = actix::Context::<Engine>::new();
        let engine = engine_ctx.address();
        let accounting = Arc::new(Accounting::new(engine.clone().recipient()));
        let sched_ctx = actix::Context::<Scheduler<S::Callback>>::new();
        let sched = sched_ctx.address();
        let pool_ctx = actix::Context::<Pool<S::Callback>>::new();
        let pool = pool_ctx.address();
        let contexts = Contexts {
            engine: engine_ctx,
            sched: sched_ctx,
            pool: pool_ctx,
        };
        let wiring = Wiring {
            spider,
            engine,
            sched,
            pool,
            accounting,
            stats,
            events,
            log,
        };
        (contexts, wiring)
    }

    /// Starts the ErrorHandler, which hands failures to the spider.
    fn start_error_handler(&self) -> Addr<ErrorHandler<S>> {
        ErrorHandler::new(
            self.spider.clone(),
            ErrorOutbox {
                enqueue: self.sched.clone().recipient(),
                completed: self.sched.clone().recipient(),
            },
            self.accounting.clone(),
            self.stats.clone(),
            self.log.new(o!("actor" => "error_handler")),
        )
        .with_events(self.events.clone())
        .start()
    }

    /// Starts the CacheQueue, which fronts `queue`.
    fn start_queue(
        &self,
        queue: Box<dyn QueueBackend<S::Callback>>,
    ) -> Addr<CacheQueue<S::Callback>> {
        let log = self.log.new(o!("actor" => "cache_queue"));
        CacheQueue::new(queue, self.accounting.clone(), self.stats.clone(), log).start()
    }

    /// Starts the DupeFilter, which fronts `dupe`.
    fn start_dupe_filter(&self, dupe: Box<dyn DupeBackend>) -> Addr<DupeFilter<S::Callback>> {
        let log = self.log.new(o!("actor" => "dupefilter"));
        DupeFilter::new(dupe, self.stats.clone(), log).start()
    }

    /// Starts the PipelineStage (`resumed`: the crawl resumes a job
    /// directory, which its pipelines are told) and the Parser: on a second
    /// arbiter (Compact), the caller's (Single), or one each (Spread). The
    /// new arbiters go to `arbiters`.
    fn start_stages(
        &self,
        s: &Config,
        pipelines: Vec<Box<dyn Pipeline>>,
        resumed: bool,
        errors: &Addr<ErrorHandler<S>>,
        arbiters: &mut Vec<Arbiter>,
    ) -> (Addr<PipelineStage>, Addr<Parser<S>>) {
        let stage_arbiter = (s.layout != ThreadLayout::Single).then(Arbiter::new);
        let stage_handle = stage_arbiter
            .as_ref()
            .map_or_else(Arbiter::current, Arbiter::handle);
        let stage = {
            let outbox = StageOutbox {
                completed: self.sched.clone().recipient(),
                report: errors.clone().recipient(),
            };
            let (stats, log) = (self.stats.clone(), self.log.new(o!("actor" => "pipelines")));
            let (name, every): (Arc<str>, _) = (self.spider.name().into(), s.flush_interval);
            let (finish, resumed) = (s.finish_timeout, resumed);
            PipelineStage::start_in_arbiter(&stage_handle, move |_| {
                PipelineStage::new(pipelines, outbox, name, every, stats, log)
                    .with_close_timeout(finish)
                    .resuming(resumed)
            })
        };
        let parser_arbiter = (s.layout == ThreadLayout::Spread).then(Arbiter::new);
        let parser_handle = parser_arbiter
            .as_ref()
            .map_or(stage_handle, Arbiter::handle);
        arbiters.extend(stage_arbiter);
        arbiters.extend(parser_arbiter);
        let outbox = ParserOutbox {
            enqueue: self.sched.clone().recipient(),
            sources: self.sched.clone().recipient(),
            items: stage.clone().recipient(),
            completed: self.sched.clone().recipient(),
            report: errors.clone().recipient(),
        };
        let (spider, accounting) = (self.spider.clone(), self.accounting.clone());
        let stats = self.stats.clone();
        let depth_priority = s.scheduler.depth_priority;
        let parser = Parser::start_in_arbiter(&parser_handle, move |_| {
            Parser::new(spider, outbox, accounting, stats).with_depth_priority(depth_priority)
        });
        (stage, parser)
    }

    /// Starts the downloaders, each under a supervisor: on the caller's
    /// arbiter, or (Spread) each on a new one, pushed to `arbiters`.
    fn start_downloaders(
        &self,
        s: &Config,
        config: DownloadConfig,
        middlewares: &Arc<Middlewares<S::Callback>>,
        arbiters: &mut Vec<Arbiter>,
    ) -> Downloaders<S::Callback> {
        let config = Arc::new(config);
        let mut started = Downloaders {
            workers: Vec::new(),
            shutdown: Vec::new(),
        };
        for index in 0..s.downloaders {
            let arbiter = match s.layout {
                ThreadLayout::Compact | ThreadLayout::Single => Arbiter::current(),
                ThreadLayout::Spread => {
                    let arbiter = Arbiter::new();
                    let handle = arbiter.handle();
                    arbiters.push(arbiter);
                    handle
                }
            };
            let outbox = DownloaderOutbox {
                results: self.pool.clone().recipient(),
                crashes: self.pool.clone().recipient(),
            };
            let (middlewares, config, stats, log) = (
                middlewares.clone(),
                config.clone(),
                self.stats.clone(),
                self.log.new(o!("actor" => "downloader", "worker" => index)),
            );
            let addr = Supervisor::start_in_arbiter(&arbiter, move |_| {
                Downloader::new(index, middlewares, config, outbox, stats, log)
            });
            started.shutdown.push(addr.clone().recipient());
            started.workers.push(addr.recipient());
        }
        started
    }

    /// Runs the Pool, which dispatches to the downloaders and routes what
    /// they return.
    fn run_pool(
        &self,
        ctx: actix::Context<Pool<S::Callback>>,
        downloaders: Downloaders<S::Callback>,
        parser: Addr<Parser<S>>,
        errors: &Addr<ErrorHandler<S>>,
        s: &Config,
        indexing: Option<u32>,
    ) {
        let sched = &self.sched;
        let pool = Pool::new(
            PoolOutbox {
                workers: downloaders.workers,
                worker_shutdown: downloaders.shutdown,
                parser: parser.recipient(),
                errors: errors.clone().recipient(),
                enqueue: sched.clone().recipient(),
                requeue: sched.clone().recipient(),
                completed: sched.clone().recipient(),
                released: sched.clone().recipient(),
            },
            s.max_crashes,
            s.retry.clone(),
            self.accounting.clone(),
            self.stats.clone(),
            self.log.new(o!("actor" => "pool")),
        );
        // With a job directory, the page index (a re-crawl once one began).
        ctx.run(match indexing {
            Some(generation) => pool.with_pages(PageIndexing {
                to: sched.clone().recipient(),
                recrawl: generation > 0,
                parse_unchanged: s.recrawl_unchanged_items,
            }),
            None => pool,
        });
    }

    /// For a distributed crawl, starts the Coordinator (stopped with the
    /// rest) and returns whom the Engine tells to leave, in order, and the
    /// Scheduler's side of the shared queue.
    #[cfg_attr(not(feature = "distributed"), allow(unused_variables, clippy::ptr_arg))]
    fn start_coordinator(
        &self,
        connected: Option<Connected>,
        queue: &Addr<CacheQueue<S::Callback>>,
        stage: &Addr<PipelineStage>,
        shutdown: &mut Vec<Recipient<Shutdown>>,
    ) -> (Vec<Recipient<Leave>>, Option<SharedQueue>) {
        let Some(connected) = connected else {
            return (Vec::new(), None);
        };
        #[cfg(not(feature = "distributed"))]
        match connected {}
        #[cfg(feature = "distributed")]
        {
            let log = self.log.new(o!("actor" => "coordinator"));
            let shared = Shared {
                log,
                ..connected.shared.clone()
            };
            let coordinator =
                Coordinator::new(shared, self.sched.clone().recipient(), self.stats.clone())
                    .start();
            shutdown.push(coordinator.clone().recipient());
            // The Coordinator stops heartbeating first, so that it cannot
            // register this worker again once the queue has left.
            let leave = vec![coordinator.recipient(), queue.clone().recipient()];
            let shared = SharedQueue::new(queue.clone().recipient(), queue.clone().recipient())
                .with_pipelines(stage.clone().recipient(), connected.shared);
            (leave, Some(shared))
        }
    }

    /// The Scheduler, wired to the queue, the dupe filter and the Pool; the
    /// caller adds the job directory and the shared queue, then runs it.
    fn scheduler(
        &self,
        queue: Addr<CacheQueue<S::Callback>>,
        dupe: Option<Addr<DupeFilter<S::Callback>>>,
        starts: StartRequests<S::Callback>,
        config: crate::actors::scheduler::SchedulerConfig,
    ) -> Scheduler<S::Callback> {
        Scheduler::new(
            SchedulerOutbox {
                push: queue.clone().recipient(),
                pop: queue.clone().recipient(),
                drain: queue.recipient(),
                dupe: dupe.map(Addr::recipient),
                pool: self.pool.clone().recipient(),
            },
            starts,
            config,
            self.accounting.clone(),
            self.stats.clone(),
            self.log.new(o!("actor" => "scheduler")),
        )
    }

    /// Runs the Engine, which ends the crawl (closing the middlewares last
    /// of the hooks); returns where the final stats are published and the
    /// state the handle reads.
    fn run_engine(
        &self,
        ctx: actix::Context<Engine>,
        ends: Ends,
        s: &Config,
        middlewares: Arc<Middlewares<S::Callback>>,
    ) -> (watch::Receiver<Option<StatsSnapshot>>, Arc<Phase>) {
        let (finished_tx, finished_rx) = watch::channel(None);
        let phase = Arc::new(Phase::default());
        let close_log = self.log.new(o!("actor" => "middlewares"));
        let sched = &self.sched;
        let outbox = EngineOutbox {
            pause: sched.clone().recipient(),
            resume: sched.clone().recipient(),
            stop: sched.clone().recipient(),
            force: sched.clone().recipient(),
            close: ends.close,
            checkpoint: ends.release.is_some().then(|| sched.clone().recipient()),
            release: ends.release,
            shutdown: ends.shutdown,
            leave: ends.leave,
        };
        let (accounting, stats) = (self.accounting.clone(), self.stats.clone());
        let log = self.log.new(o!("actor" => "engine"));
        let engine = Engine::new(outbox, ends.arbiters, accounting, stats, finished_tx, log)
            .with_drain_timeout(s.drain_timeout)
            .with_finish_timeout(s.finish_timeout)
            .with_limits(s.limits.clone())
            .with_log_stats(s.log_stats_every)
            .with_events(self.events.clone())
            .with_phase(phase.clone())
            .on_finish(Box::new(move || {
                close_middlewares(&middlewares, &close_log)
            }));
        ctx.run(engine);
        (finished_rx, phase)
    }

    /// The handle; `job`: the crawl has a job directory, and what was
    /// resumed from it.
    fn handle(
        self,
        finished: watch::Receiver<Option<StatsSnapshot>>,
        phase: Arc<Phase>,
        job: Option<Option<ResumeInfo>>,
    ) -> CrawlHandle {
        let engine = self.engine;
        let handle = CrawlHandle::new(
            engine.clone().recipient(),
            engine.clone().recipient(),
            engine.clone().recipient(),
            self.stats,
            finished,
        )
        .with_events(self.events)
        .with_phase(phase, self.sched.recipient());
        match job {
            Some(resumed) => handle.with_job(engine.recipient(), resumed),
            None => handle,
        }
    }
}

/// The downloaders, as the Pool addresses them.
struct Downloaders<C: Callback> {
    /// Where the Pool sends downloads, by index.
    workers: Vec<Recipient<crate::messages::Download<C>>>,
    /// Where the Pool sends the final shutdown, by index.
    shutdown: Vec<Recipient<Shutdown>>,
}

/// Opens every middleware in order; if one fails, closes those opened and
/// fails the start.
fn open_middlewares<C: Callback>(m: &Middlewares<C>) -> Result<(), Error> {
    for (i, mw) in m.all().iter().enumerate() {
        if let Err(e) = mw.open() {
            for opened in &m.all()[..i] {
                let _ = opened.close();
            }
            return Err(e.at(Stage::Setup));
        }
    }
    Ok(())
}

/// Closes every middleware once, logging failures.
fn close_middlewares<C: Callback>(m: &Middlewares<C>, log: &Logger) {
    for mw in m.all() {
        if let Err(e) = mw.close() {
            slog::error!(log, "middleware close failed"; "middleware" => mw.name(), "error" => %e);
        }
    }
}
