//! Configuring and starting a crawl.
//!
//! [`Crawler::builder`] takes the spider; setters document their defaults;
//! [`CrawlerBuilder::build`] checks the configuration and returns an
//! immutable [`Crawler`]; [`Crawler::start`] wires the actors on the current
//! actix arbiter (Engine, Scheduler, CacheQueue, DupeFilter, Pool,
//! ErrorHandler, and the downloaders under supervisors) and the Parser and
//! the PipelineStage on a second arbiter (or, with [`ThreadLayout::Spread`],
//! the Parser, the PipelineStage and each downloader on an arbiter of its
//! own), and returns a [`CrawlHandle`]. With a job directory it first replays the directory's
//! journal and resumes from it, and runs the JobStore on an arbiter of its
//! own.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use slog::{o, Logger};
use tokio::sync::{broadcast, watch};

use crate::accounting::Accounting;
use crate::actors::cache_queue::CacheQueue;
use crate::actors::coordinator::Coordinator;
use crate::actors::downloader::{Downloader, DownloaderOutbox};
use crate::actors::dupefilter::DupeFilter;
use crate::actors::engine::{Engine, EngineOutbox};
use crate::actors::error_handler::{ErrorHandler, ErrorOutbox};
use crate::actors::job_store::JobStore;
use crate::actors::parser::{Parser, ParserOutbox};
use crate::actors::pipeline_stage::{PipelineStage, StageOutbox};
use crate::actors::pool::{Pool, PoolOutbox};
use crate::actors::scheduler::{Scheduler, SchedulerConfig, SchedulerOutbox, SharedQueue};
use crate::dedupe::{BloomDupe, DupeBackend};
use crate::distributed::membership::join;
use crate::distributed::{BloomShape, RedisDupe, RedisOptions, RedisQueue, Shared};
use crate::error::{panic_message, Error, ErrorKind, Stage};
use crate::handle::CrawlHandle;
use crate::http::proxy::EnvProxies;
use crate::http::DownloadConfig;
use crate::http::DEFAULT_USER_AGENT;
use crate::jobdir::CheckpointPolicy;
use crate::jobdir::{BloomSizing, JobDir};
use crate::middleware::{DownloadMiddleware, Middlewares};
use crate::pipeline::Pipeline;
use crate::politeness::slots::AutoThrottle;
use crate::queue::{MemoryQueue, QueueBackend};
use crate::retry::RetryPolicy;
use crate::spider::Spider;
use crate::stats::Stats;

/// Entry point: `Crawler::builder(spider)`.
pub struct Crawler<S: Spider> {
    /// The checked configuration.
    builder: CrawlerBuilder<S>,
}

/// Which threads (actix arbiters) a crawl's actors run on; see
/// [`CrawlerBuilder::thread_layout`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ThreadLayout {
    /// Two threads: the caller's arbiter runs the control actors and the
    /// downloaders (their work is I/O, and a page's download, release and
    /// next dispatch then never cross a thread), a second arbiter runs
    /// the Parser and the PipelineStage. Three messages per page cross
    /// threads. The default: on a busy machine, waking threads costs more
    /// than a page's parsing.
    #[default]
    Compact,
    /// Every actor on the caller's arbiter (a JobStore still gets its own):
    /// the least CPU per page, one core used. For crawls that share a
    /// machine, or embed the crawl in a single-threaded application.
    Single,
    /// The Parser, the PipelineStage and each downloader on an arbiter of
    /// its own: for middlewares or pipelines that do CPU-heavy work inline,
    /// on machines with cores to spare. Five messages per page cross
    /// threads.
    Spread,
}

/// Configuration of a crawl, with documented defaults.
pub struct CrawlerBuilder<S: Spider> {
    spider: Arc<S>,
    scheduler: SchedulerConfig,
    follow_redirects: bool,
    cookies: bool,
    obey_robots: bool,
    drain_timeout: Duration,
    retry: Option<RetryPolicy>,
    downloaders: usize,
    layout: ThreadLayout,
    log_stats_every: Option<Duration>,
    dedupe: bool,
    bloom_capacity: usize,
    bloom_rate: f64,
    timeout: Duration,
    max_body: usize,
    warn_body: usize,
    user_agent: String,
    max_crashes: u32,
    flush_interval: Duration,
    middlewares: Vec<Arc<dyn DownloadMiddleware<S::Callback>>>,
    pipelines: Vec<Box<dyn Pipeline>>,
    queue: Option<Box<dyn QueueBackend<S::Callback>>>,
    dupe: Option<Box<dyn DupeBackend>>,
    log: Logger,
    proxy_from_env: bool,
    /// Read in `build` when `proxy_from_env` is on.
    env_proxy: Option<EnvProxies>,
    job_dir: Option<PathBuf>,
    checkpoints: CheckpointPolicy,
    rerun_start_requests: bool,
    /// Set by `build`: de-duplication uses the built-in Bloom filter (which
    /// a job directory persists).
    builtin_bloom: bool,
    /// A distributed crawl on this Redis.
    redis: Option<RedisOptions>,
    /// Set by `start_async`: the connection to Redis, the shared Bloom
    /// filter's shape, and the stats its retries count in.
    connected: Option<(Shared, BloomShape, Arc<Stats>)>,
}

impl<S: Spider> Crawler<S> {
    /// Starts configuring a crawl of `spider`.
    pub fn builder(spider: S) -> CrawlerBuilder<S> {
        CrawlerBuilder {
            spider: Arc::new(spider),
            scheduler: SchedulerConfig::default(),
            follow_redirects: true,
            cookies: true,
            obey_robots: false,
            drain_timeout: Duration::from_secs(30),
            retry: Some(RetryPolicy::default()),
            downloaders: 1,
            layout: ThreadLayout::Compact,
            log_stats_every: Some(Duration::from_secs(60)),
            dedupe: true,
            bloom_capacity: 1 << 20,
            bloom_rate: 0.001,
            timeout: Duration::from_secs(180),
            max_body: 64 << 20,
            warn_body: 32 << 20,
            user_agent: DEFAULT_USER_AGENT.to_string(),
            max_crashes: 2,
            flush_interval: Duration::from_secs(1),
            middlewares: Vec::new(),
            pipelines: Vec::new(),
            queue: None,
            dupe: None,
            log: Logger::root(slog::Discard, o!()),
            proxy_from_env: false,
            env_proxy: None,
            job_dir: None,
            checkpoints: CheckpointPolicy::default(),
            rerun_start_requests: false,
            builtin_bloom: false,
            redis: None,
            connected: None,
        }
    }
}

impl<S: Spider> CrawlerBuilder<S> {
    /// Most requests in flight at once, across all hosts. Default 16.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.scheduler.concurrency = n;
        self
    }

    /// Most requests downloading at once per host. Default 8.
    pub fn per_host_concurrency(mut self, n: usize) -> Self {
        self.scheduler.slots.concurrency = n;
        self
    }

    /// Time between two request starts to one host. Default 0.
    pub fn download_delay(mut self, delay: Duration) -> Self {
        self.scheduler.slots.delay = delay;
        self
    }

    /// Whether each delay is multiplied by a random factor in [0.5, 1.5).
    /// Default on (it only matters with a delay, and a host rate limit's
    /// spacing is never randomised).
    pub fn randomize_delay(mut self, on: bool) -> Self {
        self.scheduler.slots.randomize_delay = on;
        self
    }

    /// Turns AutoThrottle on: each host's delay follows its latency. Default
    /// off; see [`AutoThrottle`] for its own defaults.
    pub fn autothrottle(mut self, settings: AutoThrottle) -> Self {
        self.scheduler.slots.autothrottle = Some(settings);
        self
    }

    /// Most requests per second to one host. Default unlimited.
    pub fn host_rate_limit(mut self, per_second: f64) -> Self {
        self.scheduler.slots.host_rate = Some(per_second);
        self
    }

    /// Most requests per second over the whole crawl. Default unlimited.
    pub fn rate_limit(mut self, per_second: f64) -> Self {
        self.scheduler.slots.global_rate = Some(per_second);
        self
    }

    /// Drops requests deeper than `depth` hops from a start request
    /// (`depth/filtered`). Default no limit.
    pub fn depth_limit(mut self, depth: u32) -> Self {
        self.scheduler.depth_limit = Some(depth);
        self
    }

    /// Priority lowered by this much per level of depth: positive crawls
    /// breadth-first, negative depth-first. Default 0.
    pub fn depth_priority(mut self, per_level: i32) -> Self {
        self.scheduler.depth_priority = per_level;
        self
    }

    /// Only these domains and their subdomains are crawled; other requests
    /// are dropped (`offsite/filtered`) unless `dont_filter`. Default: all.
    pub fn allowed_domains<I, D>(mut self, domains: I) -> Self
    where
        I: IntoIterator<Item = D>,
        D: Into<String>,
    {
        self.scheduler.allowed_domains = domains
            .into_iter()
            .map(|d| crate::host::normalise(&d.into()))
            .collect();
        self
    }

    /// Obey robots.txt: fetched once per origin with the crawl's
    /// User-Agent (directly, not through a proxy), its rules matched for the
    /// User-Agent's product token (`spinneret` by default); disallowed
    /// requests are dropped and counted in `robotstxt/forbidden`;
    /// `Crawl-delay` is honoured. Default off.
    pub fn obey_robots_txt(mut self, on: bool) -> Self {
        self.obey_robots = on;
        self
    }

    /// The retry policy. Default [`RetryPolicy::default`]: 2 retries of
    /// 500, 502, 503, 504, 522, 524, 408, 429, connection errors and
    /// timeouts, with exponential backoff and jitter.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Follow 301/302/303/307/308 answers (at most a request's
    /// `max_redirects`, default 20; loops are errors; the chain is on the
    /// final response's `meta.redirect_urls`). Default on.
    pub fn follow_redirects(mut self, on: bool) -> Self {
        self.follow_redirects = on;
        self
    }

    /// Keep a cookie jar for the crawl: cookies a response sets are sent on
    /// later requests to that site. Per-request cookies are sent either way.
    /// Default on.
    pub fn cookies(mut self, on: bool) -> Self {
        self.cookies = on;
        self
    }

    /// How long a stop lets the requests in flight finish (parsed, items
    /// through the pipelines) before it forces: the rest are then abandoned
    /// and counted in `scheduler/unprocessed`. A second stop forces at
    /// once. Default 30 s.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Turns retries off.
    pub fn no_retry(mut self) -> Self {
        self.retry = None;
        self
    }

    /// Downloader actors (each with its own HTTP client and connection
    /// pool), on the threads [`CrawlerBuilder::thread_layout`] says.
    /// Default 1: one client keeps thousands of connections busy; more pay
    /// off with [`ThreadLayout::Spread`] on cores to spare, or to keep
    /// crawling while a crashed downloader restarts.
    pub fn downloaders(mut self, n: usize) -> Self {
        self.downloaders = n;
        self
    }

    /// How often the crawl logs a progress line (info, message
    /// `"progress"`): pages and items so far and per minute since the last
    /// line, requests in flight and queued, as Scrapy's LogStats does; and
    /// once more when the crawl finishes. Default every 60 s; `None` (or
    /// zero) turns it off.
    pub fn log_stats(mut self, every: Option<Duration>) -> Self {
        self.log_stats_every = every;
        self
    }

    /// Which threads the actors run on. Default [`ThreadLayout::Compact`].
    pub fn thread_layout(mut self, layout: ThreadLayout) -> Self {
        self.layout = layout;
        self
    }

    /// Whether duplicate requests are dropped. Default on.
    pub fn dedupe(mut self, on: bool) -> Self {
        self.dedupe = on;
        self
    }

    /// Bloom filter sizing: expected distinct requests and false-positive
    /// rate. Default 1,048,576 at 0.001 (1.88 MB, 1.80 bytes per request).
    pub fn bloom(mut self, capacity: usize, false_positive_rate: f64) -> Self {
        self.bloom_capacity = capacity;
        self.bloom_rate = false_positive_rate;
        self
    }

    /// Deadline for a whole exchange — connecting, the TLS handshake,
    /// headers and body — unless a request sets its own. Default 180 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Largest response body accepted, after decompression; larger ones are
    /// counted errors. Default 64 MiB.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// A response body held in memory over this many bytes (after
    /// decompression) logs a warning and counts `downloader/warn_size_count`,
    /// once per response, as Scrapy's `DOWNLOAD_WARNSIZE`; 0 never warns.
    /// Bodies streamed to a file (`Request::stream_to`) do not warn.
    /// Default 32 MiB.
    pub fn warn_body(mut self, bytes: usize) -> Self {
        self.warn_body = bytes;
        self
    }

    /// The User-Agent sent unless a request sets its own. Default
    /// [`DEFAULT_USER_AGENT`].
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = ua.into();
        self
    }

    /// How many times one request may crash its downloader before it fails
    /// instead of being re-queued. Default 2.
    pub fn max_crashes(mut self, n: u32) -> Self {
        self.max_crashes = n;
        self
    }

    /// How often every pipeline's `flush` runs. Default 1 s.
    pub fn flush_interval(mut self, every: Duration) -> Self {
        self.flush_interval = every;
        self
    }

    /// Adds a download middleware.
    pub fn middleware(mut self, m: impl DownloadMiddleware<S::Callback>) -> Self {
        self.middlewares.push(Arc::new(m));
        self
    }

    /// Adds an item pipeline.
    pub fn pipeline(mut self, p: impl Pipeline) -> Self {
        self.pipelines.push(Box::new(p));
        self
    }

    /// Replaces the in-memory queue with another back-end.
    pub fn queue(mut self, backend: impl QueueBackend<S::Callback>) -> Self {
        self.queue = Some(Box::new(backend));
        self
    }

    /// Replaces the in-memory Bloom filter with another back-end.
    pub fn dupe_backend(mut self, backend: impl DupeBackend) -> Self {
        self.dupe = Some(Box::new(backend));
        self
    }

    /// Whether requests without a proxy of their own use the environment's:
    /// `http_proxy`/`HTTP_PROXY` for `http` URLs, `https_proxy`/`HTTPS_PROXY`
    /// for `https` URLs, except hosts in `no_proxy`/`NO_PROXY`. Read once, by
    /// [`build`](Self::build), which fails on an unusable proxy URL; the
    /// environment is never read while this is off. Default off.
    pub fn proxy_from_env(mut self, on: bool) -> Self {
        self.proxy_from_env = on;
        self
    }

    /// Persists the crawl's state in the directory `dir` (created if
    /// missing) and resumes from it when it already holds a job: the
    /// pending requests (queued, waiting, or in flight when the process
    /// stopped or died) are crawled first, requests seen before stay
    /// filtered, the stats continue, and the start requests already
    /// consumed are skipped. One crawl at a time per directory. Default:
    /// none (nothing persisted).
    pub fn job_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.job_dir = Some(dir.into());
        self
    }

    /// How often a crawl with a job directory checkpoints: every
    /// `policy.every` and every `policy.every_requests` completed requests,
    /// plus once when it finishes or stops. Default every 10 s and every
    /// 1,000 requests.
    pub fn checkpoint_policy(mut self, policy: CheckpointPolicy) -> Self {
        self.checkpoints = policy;
        self
    }

    /// When resuming a job, pull the spider's start requests again from the
    /// first (those seen before are filtered as duplicates) instead of
    /// skipping the ones already consumed. Default off.
    pub fn rerun_start_requests(mut self, on: bool) -> Self {
        self.rerun_start_requests = on;
        self
    }

    /// Makes this process one worker of a distributed crawl on the Redis
    /// at `url` (`redis://host:port/db`), with the default
    /// [`RedisOptions`]: the queue and the dupe filter live in Redis and are
    /// shared by every worker running the same spider (the crawl id is the
    /// spider's name). The spider does not change. Start it with
    /// [`Crawler::start_async`]. Not with a job directory (Redis is the
    /// crawl's durable state) nor another queue or dupe back-end. Default:
    /// none (a crawl of this process alone).
    pub fn redis(self, url: impl Into<String>) -> Self {
        self.redis_options(RedisOptions::new(url))
    }

    /// As [`redis`](Self::redis), with every option: crawl id, worker id,
    /// lease time, poll interval, shared per-host rate.
    pub fn redis_options(mut self, options: RedisOptions) -> Self {
        self.redis = Some(options);
        self
    }

    /// Where the crawl logs. Default: discarded.
    pub fn logger(mut self, log: Logger) -> Self {
        self.log = log;
        self
    }

    /// Checks the configuration.
    pub fn build(mut self) -> Result<Crawler<S>, Error> {
        self.scheduler.robots_agent = self.obey_robots.then(|| self.user_agent.clone());
        let bad = |m: String| Err(Error::new(Stage::Setup, ErrorKind::Config(m)));
        if self.scheduler.concurrency == 0 || self.scheduler.slots.concurrency == 0 {
            return bad("concurrency (global and per host) must be at least 1".into());
        }
        let rates = [
            self.scheduler.slots.host_rate,
            self.scheduler.slots.global_rate,
        ];
        if rates.iter().flatten().any(|r| !(r.is_finite() && *r > 0.0)) {
            return bad("rate limits must be positive".into());
        }
        if let Some(at) = &self.scheduler.slots.autothrottle {
            if !(at.target_concurrency.is_finite() && at.target_concurrency > 0.0) {
                return bad("AutoThrottle target concurrency must be positive".into());
            }
        }
        if self.downloaders == 0 {
            return bad("at least one downloader is needed".into());
        }
        if self.timeout.is_zero() {
            return bad("timeout must be positive".into());
        }
        if self.flush_interval.is_zero() {
            return bad("flush interval must be positive".into());
        }
        if self.checkpoints.every.is_zero() {
            return bad("checkpoint interval must be positive".into());
        }
        if let Some(r) = &self.redis {
            if self.job_dir.is_some() {
                return bad(
                    "a distributed crawl keeps its state in Redis: no job directory".into(),
                );
            }
            if self.queue.is_some() || self.dupe.is_some() {
                return bad("a distributed crawl uses the Redis queue and dupe filter".into());
            }
            if r.lease_ttl < Duration::from_millis(300) || r.poll.is_zero() {
                return bad(
                    "Redis lease time must be at least 300 ms and the poll interval positive"
                        .into(),
                );
            }
            if r.host_rate.is_some_and(|x| !(x.is_finite() && x > 0.0)) {
                return bad("rate limits must be positive".into());
            }
            if let Err(e) = redis::Client::open(r.url.as_str()) {
                return bad(format!("bad Redis URL {:?}: {e}", r.url));
            }
        }
        self.builtin_bloom = self.dedupe && self.dupe.is_none() && self.redis.is_none();
        if self.builtin_bloom {
            self.dupe = Some(Box::new(BloomDupe::new(
                self.bloom_capacity,
                self.bloom_rate,
            )?));
        }
        self.env_proxy = if self.proxy_from_env {
            Some(EnvProxies::from_env()?)
        } else {
            None
        };
        Ok(Crawler { builder: self })
    }
}

impl<S: Spider> Crawler<S> {
    /// Starts the crawl, first connecting to its Redis when it is
    /// distributed ([`CrawlerBuilder::redis`]): this worker registers, and
    /// Redis unreachable fails here with a `Backend` error naming the URL.
    /// Otherwise the same as [`start`](Self::start).
    pub async fn start_async(mut self) -> Result<CrawlHandle, Error> {
        let b = &mut self.builder;
        if let (Some(opts), None) = (b.redis.clone(), &b.connected) {
            let name = b.spider.name().to_string();
            let crawl_id = opts.crawl_id.clone().unwrap_or_else(|| name.clone());
            let log = b.log.new(o!("spider" => name, "actor" => "redis"));
            let stats = Arc::new(Stats::default());
            let shared = Shared::connect(opts, &crawl_id, stats.clone(), log).await?;
            join(&shared).await?;
            let shape = BloomShape::sized(b.bloom_capacity, b.bloom_rate)
                .agree(&shared)
                .await?;
            b.connected = Some((shared, shape, stats));
        }
        self.start()
    }

    /// Starts the crawl on the current actix system.
    ///
    /// Fails when called outside a running actix system, when the spider's
    /// `start_requests` panics, or for a distributed crawl (which connects
    /// first: [`start_async`](Self::start_async)).
    pub fn start(self) -> Result<CrawlHandle, Error> {
        if System::try_current().is_none() {
            return Err(Error::new(
                Stage::Setup,
                ErrorKind::IllegalState("Crawler::start needs a running actix system".into()),
            ));
        }
        let mut b = self.builder;
        if b.redis.is_some() && b.connected.is_none() {
            return Err(Error::new(
                Stage::Setup,
                ErrorKind::IllegalState(
                    "a distributed crawl connects to Redis first: use Crawler::start_async".into(),
                ),
            ));
        }
        let spider = b.spider.clone();
        let log = b.log.new(o!("spider" => spider.name().to_string()));
        let connected = b.connected.take();
        let stats = connected
            .as_ref()
            .map(|(_, _, stats)| stats.clone())
            .unwrap_or_default();
        // A job directory is read before anything starts: a bad one fails
        // the start with nothing running.
        let (store, restored) = match &b.job_dir {
            Some(dir) => {
                let sizing = b.builtin_bloom.then_some(BloomSizing {
                    capacity: b.bloom_capacity,
                    rate: b.bloom_rate,
                });
                let log = log.new(o!("actor" => "job_store"));
                let (store, restored) = JobDir::<S::Callback>::open(dir, sizing, log)?;
                (Some(store), restored)
            }
            None => (None, None),
        };
        let mut restored_pending = Vec::new();
        let mut resumed = None;
        if let Some(r) = restored {
            if let Some(saved) = &r.stats {
                stats.restore(saved);
            }
            stats.add_named("jobdir/resumed", 1);
            if let (Some(bloom), true) = (r.bloom, b.builtin_bloom) {
                b.dupe = Some(Box::new(bloom));
            }
            restored_pending = r.pending;
            resumed = Some(r.info);
        }
        // The start requests earlier runs consumed.
        let (starts_pulled, skip_starts) = match &resumed {
            Some(r) if !b.rerun_start_requests => (r.starts_pulled, r.starts_exhausted),
            _ => (0, false),
        };

        let middlewares = Arc::new(Middlewares::new(b.middlewares));
        open_middlewares(&middlewares)?;
        let (events, _) = broadcast::channel(crate::events::CAPACITY);
        let starts =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| spider.start_requests()))
                .map_err(|p| Error::new(Stage::Setup, ErrorKind::Panic(panic_message(&*p))))?;
        let starts: crate::spider::StartRequests<S::Callback> = if skip_starts {
            Box::new(std::iter::empty())
        } else if starts_pulled > 0 {
            Box::new(starts.skip(usize::try_from(starts_pulled).unwrap_or(usize::MAX)))
        } else {
            starts
        };

        let engine_ctx = actix::Context::<Engine>::new();
        let engine = engine_ctx.address();
        let accounting = Arc::new(Accounting::new(engine.clone().recipient()));
        let sched_ctx = actix::Context::<Scheduler<S::Callback>>::new();
        let sched = sched_ctx.address();
        let pool_ctx = actix::Context::<Pool<S::Callback>>::new();
        let pool = pool_ctx.address();

        let errors = ErrorHandler::new(
            spider.clone(),
            ErrorOutbox {
                enqueue: sched.clone().recipient(),
                completed: sched.clone().recipient(),
            },
            accounting.clone(),
            stats.clone(),
            log.new(o!("actor" => "error_handler")),
        )
        .with_events(events.clone())
        .start();
        if let Some((shared, shape, _)) = &connected {
            b.queue = Some(Box::new(RedisQueue::new(
                shared.clone(),
                b.dedupe.then_some(*shape),
            )));
            b.dupe = Some(Box::new(RedisDupe::new(shared.clone(), *shape)));
        }
        let queue = CacheQueue::new(
            b.queue.unwrap_or_else(|| Box::new(MemoryQueue::default())),
            accounting.clone(),
            stats.clone(),
            log.new(o!("actor" => "cache_queue")),
        )
        .start();
        let dupe = b.dupe.filter(|_| b.dedupe).map(|backend| {
            DupeFilter::new(backend, stats.clone(), log.new(o!("actor" => "dupefilter"))).start()
        });

        let mut arbiters = Vec::new();
        let stage_arbiter = (b.layout != ThreadLayout::Single).then(Arbiter::new);
        let stage_handle = stage_arbiter
            .as_ref()
            .map_or_else(Arbiter::current, Arbiter::handle);
        let stage = {
            let outbox = StageOutbox {
                completed: sched.clone().recipient(),
                report: errors.clone().recipient(),
            };
            let (pipelines, stats, log) = (
                b.pipelines,
                stats.clone(),
                log.new(o!("actor" => "pipelines")),
            );
            let (name, every): (Arc<str>, _) = (spider.name().into(), b.flush_interval);
            PipelineStage::start_in_arbiter(&stage_handle, move |_| {
                PipelineStage::new(pipelines, outbox, name, every, stats, log)
            })
        };
        let parser_arbiter = (b.layout == ThreadLayout::Spread).then(Arbiter::new);
        let parser_handle = parser_arbiter
            .as_ref()
            .map_or(stage_handle, Arbiter::handle);
        arbiters.extend(stage_arbiter);
        arbiters.extend(parser_arbiter);
        let parser = {
            let outbox = ParserOutbox {
                enqueue: sched.clone().recipient(),
                items: stage.clone().recipient(),
                completed: sched.clone().recipient(),
                report: errors.clone().recipient(),
            };
            let (spider, accounting, stats) = (spider.clone(), accounting.clone(), stats.clone());
            let depth_priority = b.scheduler.depth_priority;
            Parser::start_in_arbiter(&parser_handle, move |_| {
                Parser::new(spider, outbox, accounting, stats).with_depth_priority(depth_priority)
            })
        };

        let config = Arc::new(DownloadConfig {
            timeout: b.timeout,
            max_body: b.max_body,
            warn_body: b.warn_body,
            log: log.new(o!("actor" => "downloader")),
            user_agent: b.user_agent,
            env_proxy: b.env_proxy,
            follow_redirects: b.follow_redirects,
            cookies: b
                .cookies
                .then(|| Arc::new(std::sync::Mutex::new(cookie_store::CookieStore::default()))),
        });
        let mut workers = Vec::new();
        let mut worker_shutdown = Vec::new();
        for index in 0..b.downloaders {
            let arbiter = match b.layout {
                ThreadLayout::Compact | ThreadLayout::Single => Arbiter::current(),
                ThreadLayout::Spread => {
                    let arbiter = Arbiter::new();
                    let handle = arbiter.handle();
                    arbiters.push(arbiter);
                    handle
                }
            };
            let outbox = DownloaderOutbox {
                results: pool.clone().recipient(),
                crashes: pool.clone().recipient(),
            };
            let (middlewares, config, stats, log) = (
                middlewares.clone(),
                config.clone(),
                stats.clone(),
                log.new(o!("actor" => "downloader", "worker" => index)),
            );
            let addr = Supervisor::start_in_arbiter(&arbiter, move |_| {
                Downloader::new(index, middlewares, config, outbox, stats, log)
            });
            worker_shutdown.push(addr.clone().recipient());
            workers.push(addr.recipient());
        }

        let mut shutdown = vec![
            sched.clone().recipient(),
            pool.clone().recipient(),
            queue.clone().recipient(),
            errors.clone().recipient(),
            stage.clone().recipient(),
            parser.clone().recipient(),
        ];
        if let Some(d) = &dupe {
            shutdown.push(d.clone().recipient());
        }
        // Checkpoints are written (and synced) on a thread of their own.
        let store = store.map(|store| {
            let arbiter = Arbiter::new();
            let addr = JobStore::start_in_arbiter(&arbiter.handle(), move |_| JobStore::new(store));
            arbiters.push(arbiter);
            shutdown.push(addr.clone().recipient());
            addr
        });
        pool_ctx.run(Pool::new(
            PoolOutbox {
                workers,
                worker_shutdown,
                parser: parser.recipient(),
                errors: errors.clone().recipient(),
                enqueue: sched.clone().recipient(),
                requeue: sched.clone().recipient(),
                completed: sched.clone().recipient(),
                released: sched.clone().recipient(),
            },
            b.max_crashes,
            b.retry,
            accounting.clone(),
            stats.clone(),
            log.new(o!("actor" => "pool")),
        ));
        let mut leave = Vec::new();
        let shared_queue = connected.map(|(shared, _, _)| {
            let log = log.new(o!("actor" => "coordinator"));
            let shared = Shared { log, ..shared };
            let coordinator =
                Coordinator::new(shared, sched.clone().recipient(), stats.clone()).start();
            shutdown.push(coordinator.clone().recipient());
            // The Coordinator stops heartbeating first, so that it cannot
            // register this worker again once the queue has left.
            leave = vec![coordinator.recipient(), queue.clone().recipient()];
            SharedQueue::new(queue.clone().recipient(), queue.clone().recipient())
        });
        let mut scheduler = Scheduler::new(
            SchedulerOutbox {
                push: queue.clone().recipient(),
                pop: queue.clone().recipient(),
                drain: queue.recipient(),
                dupe: dupe.map(Addr::recipient),
                pool: pool.recipient(),
            },
            starts,
            b.scheduler,
            accounting.clone(),
            stats.clone(),
            log.new(o!("actor" => "scheduler")),
        );
        if let Some(store) = &store {
            scheduler = scheduler
                .with_job(
                    store.clone().recipient(),
                    Some(stage.clone().recipient()),
                    events.clone(),
                    b.checkpoints,
                    starts_pulled,
                )
                .with_restored(restored_pending);
        }
        if let Some(shared) = shared_queue {
            scheduler = scheduler.with_shared_queue(shared);
        }
        sched_ctx.run(scheduler);
        let (finished_tx, finished_rx) = watch::channel(None);
        let phase = Arc::new(crate::state::Phase::default());
        let closing = middlewares.clone();
        let close_log = log.new(o!("actor" => "middlewares"));
        engine_ctx.run(
            Engine::new(
                EngineOutbox {
                    pause: sched.clone().recipient(),
                    resume: sched.clone().recipient(),
                    stop: sched.clone().recipient(),
                    force: sched.clone().recipient(),
                    close: stage.recipient(),
                    checkpoint: store.is_some().then(|| sched.clone().recipient()),
                    shutdown,
                    leave,
                },
                arbiters,
                accounting,
                stats.clone(),
                finished_tx,
                log.new(o!("actor" => "engine")),
            )
            .with_drain_timeout(b.drain_timeout)
            .with_log_stats(b.log_stats_every)
            .with_events(events.clone())
            .with_phase(phase.clone())
            .on_finish(Box::new(move || close_middlewares(&closing, &close_log))),
        );
        let handle = CrawlHandle::new(
            engine.clone().recipient(),
            engine.clone().recipient(),
            engine.clone().recipient(),
            stats,
            finished_rx,
        )
        .with_events(events)
        .with_phase(phase, sched.recipient());
        Ok(match store {
            Some(_) => handle.with_job(engine.recipient(), resumed),
            None => handle,
        })
    }
}

/// Opens every middleware in order; if one fails, closes those opened and
/// fails the start.
fn open_middlewares<C: crate::request::Callback>(m: &Middlewares<C>) -> Result<(), Error> {
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
fn close_middlewares<C: crate::request::Callback>(m: &Middlewares<C>, log: &Logger) {
    for mw in m.all() {
        if let Err(e) = mw.close() {
            slog::error!(log, "middleware close failed"; "middleware" => mw.name(), "error" => %e);
        }
    }
}
