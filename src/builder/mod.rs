//! Configuring a crawl.
//!
//! [`Crawler::builder`] takes the spider and starts from the defaults, each
//! defined once: in `Config`'s `Default`, or in the `Default` of the part
//! it configures (the Scheduler's, the host slots', AutoThrottle's, the
//! checkpoint and retry policies', the limits'), or as a constant of the
//! module that applies it (the download timeout and body limits in `http`,
//! the drain timeout in the Engine, the memory check interval in
//! `limits`). Each setter of [`CrawlerBuilder`] says its
//! default; [`CrawlerBuilder::build`] checks the
//! configuration and returns an immutable [`Crawler`]. Nothing here runs:
//! `launch.rs` turns a [`Crawler`] into running actors
//! ([`Crawler::start`], [`Crawler::start_async`]) and owns everything made
//! at start (the Redis connection, the stats, the arbiters, the cookie jar).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use slog::Logger;

mod tls;

use crate::actors::engine::{DEFAULT_DRAIN_TIMEOUT, DEFAULT_FINISH_TIMEOUT};
use crate::actors::scheduler::SchedulerConfig;
use crate::dedupe::{DupeBackend, DupeMode, MemoryDupe};
#[cfg(feature = "distributed")]
use crate::distributed::RedisOptions;
use crate::error::{Error, ErrorKind, Stage};
use crate::http::cookies::CookieLimits;
use crate::http::env_proxy::EnvProxies;
use crate::http::guard::AddressGuard;
use crate::http::tls::{Tls, TlsSettings};
use crate::http::{
    DEFAULT_FOLLOW_REDIRECTS, DEFAULT_MAX_BODY, DEFAULT_TIMEOUT, DEFAULT_USER_AGENT,
    DEFAULT_WARN_BODY,
};
use crate::httpcache::HttpCacheOptions;
use crate::jobdir::CheckpointPolicy;
use crate::limits::Limits;
use crate::middleware::DownloadMiddleware;
use crate::pipeline::Pipeline;
use crate::politeness::slots::AutoThrottle;
use crate::queue::QueueBackend;
use crate::retry::RetryPolicy;
use crate::settings::Settings;
use crate::spider::Spider;

/// A checked configuration, ready to start: `Crawler::builder(spider)`
/// makes one, [`Crawler::start`] runs it.
pub struct Crawler<S: Spider> {
    /// Shared with the ErrorHandler and the Parser, which call into it.
    pub(crate) spider: Arc<S>,
    /// The plain settings, as the builder left them.
    pub(crate) settings: Config,
    /// The user's download middlewares, in registration order (sorted by
    /// priority at start).
    pub(crate) middlewares: Vec<Arc<dyn DownloadMiddleware<S::Callback>>>,
    /// The user's item pipelines, handed to the PipelineStage.
    pub(crate) pipelines: Vec<Box<dyn Pipeline>>,
    /// A queue back-end replacing the in-memory one, if the user set one.
    pub(crate) queue: Option<Box<dyn QueueBackend<S::Callback>>>,
    /// The dupe back-end: the user's, or the built-in Bloom filter made by
    /// `build` (so that a bad sizing fails there), or `None` when
    /// de-duplication is off or Redis provides it.
    pub(crate) dupe: Option<Box<dyn DupeBackend>>,
    /// `dupe` is the built-in Bloom filter: a job directory then persists it
    /// and may replace it with the saved one.
    pub(crate) builtin_bloom: bool,
    /// The environment's proxies, read once by `build` (which fails on a
    /// bad one) when `proxy_from_env` is on.
    pub(crate) env_proxy: Option<EnvProxies>,
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

/// The plain (spider-independent) settings of a crawl. Its `Default`
/// gathers the defaults (from the parts' own `Default`s and constants, see
/// the module's doc); the setters' documentation repeats them for the
/// reader.
pub(crate) struct Config {
    /// Concurrency, politeness, depth, domains, robots.txt: handed to the
    /// Scheduler whole (its own `Default` holds those defaults).
    pub scheduler: SchedulerConfig,
    /// Whether 3xx answers become new requests.
    pub follow_redirects: bool,
    /// Whether the crawl keeps a cookie jar.
    pub cookies: bool,
    /// How many cookies the jar holds.
    pub cookie_limits: CookieLimits,
    /// Whether robots.txt is obeyed; `build` turns it into the Scheduler's
    /// robots User-Agent.
    pub obey_robots: bool,
    /// How long a stop drains before it forces.
    pub drain_timeout: Duration,
    /// How long the pipelines' closes may take, together, at the end.
    pub finish_timeout: Duration,
    /// Which failures are retried; `None`: none.
    pub retry: Option<RetryPolicy>,
    /// How many downloader actors run.
    pub downloaders: usize,
    /// Which threads the actors run on.
    pub layout: ThreadLayout,
    /// How often the progress line is logged; `None`: never.
    pub log_stats_every: Option<Duration>,
    /// Whether duplicate requests are dropped.
    pub dedupe: bool,
    /// Expected distinct requests, to size the Bloom filter.
    pub bloom_capacity: usize,
    /// The Bloom filter's false-positive rate.
    pub bloom_rate: f64,
    /// Whether the built-in store confirms the filter's "maybe seen".
    pub dupe_mode: DupeMode,
    /// Deadline of one exchange unless the request sets its own.
    pub timeout: Duration,
    /// Largest body accepted, after decompression.
    pub max_body: usize,
    /// Body size over which a warning is logged; 0 never warns.
    pub warn_body: usize,
    /// Directories a request's `stream_to` may lead into (resolved by
    /// `build`); empty: none.
    pub stream_dirs: Vec<PathBuf>,
    /// Sent unless the request sets its own.
    pub user_agent: String,
    /// Crashes one request may cause before it fails instead of being
    /// re-queued.
    pub max_crashes: u32,
    /// How often the pipelines flush.
    pub flush_interval: Duration,
    /// Where the crawl logs; each actor logs through a child of it.
    pub log: Logger,
    /// Whether `build` reads the environment's proxies.
    pub proxy_from_env: bool,
    /// Where the crawl's state persists; `None`: nowhere.
    pub job_dir: Option<PathBuf>,
    /// Requests the frontier keeps in memory before it spills to disk.
    pub frontier_memory: usize,
    /// Where the frontier spills without a job directory; `None`: a
    /// temporary directory.
    pub frontier_dir: Option<PathBuf>,
    /// When a crawl with a job directory checkpoints.
    pub checkpoints: CheckpointPolicy,
    /// Whether a resumed job pulls its start requests again from the first.
    pub rerun_start_requests: bool,
    /// Whether a finished job is re-crawled.
    pub recrawl: bool,
    /// Whether a re-crawl parses unchanged pages too.
    pub recrawl_unchanged_items: bool,
    /// Whether a re-crawl trusts sitemaps' `<lastmod>` to skip pages.
    pub recrawl_sitemap_lastmod: bool,
    /// The Redis of a distributed crawl; `None`: this process alone.
    #[cfg(feature = "distributed")]
    pub redis: Option<RedisOptions>,
    /// When the crawl stops early (items, pages, errors, time, memory);
    /// handed to the Engine whole (its own `Default` holds those defaults).
    pub limits: Limits,
    /// The headers (lower-case names) a redirect carries to another origin.
    pub cross_origin_headers: Vec<String>,
    /// Whether connections to private and special addresses are refused.
    pub block_private: bool,
    /// Addresses and ranges let through although private, as written.
    pub address_exceptions: Vec<String>,
    /// The address guard `build` makes when `block_private` is on.
    pub address_guard: Option<Arc<AddressGuard>>,
    /// The HTTP cache; `None`: off.
    pub http_cache: Option<HttpCacheOptions>,
    /// TLS as configured: roots, client certificate, versions, ALPN.
    pub tls: TlsSettings,
    /// `tls` read and checked by `build` (its files read once).
    pub tls_ready: Option<Arc<Tls>>,
    /// Why settings applied by [`CrawlerBuilder::settings`] cannot hold
    /// (Redis options without a Redis URL): `build` fails with it, as a
    /// setter cannot.
    pub settings_error: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            scheduler: SchedulerConfig::default(),
            follow_redirects: DEFAULT_FOLLOW_REDIRECTS,
            cookies: true,
            cookie_limits: CookieLimits::default(),
            obey_robots: false,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            finish_timeout: DEFAULT_FINISH_TIMEOUT,
            retry: Some(RetryPolicy::default()),
            downloaders: 1,
            layout: ThreadLayout::default(),
            log_stats_every: Some(Duration::from_secs(60)),
            dedupe: true,
            bloom_capacity: 1 << 20,
            bloom_rate: 0.001,
            dupe_mode: DupeMode::Exact,
            timeout: DEFAULT_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            warn_body: DEFAULT_WARN_BODY,
            stream_dirs: Vec::new(),
            user_agent: DEFAULT_USER_AGENT.to_string(),
            max_crashes: 2,
            flush_interval: Duration::from_secs(1),
            log: crate::logging::default_logger(),
            proxy_from_env: false,
            job_dir: None,
            frontier_memory: 50_000,
            frontier_dir: None,
            checkpoints: CheckpointPolicy::default(),
            rerun_start_requests: false,
            recrawl: false,
            recrawl_unchanged_items: false,
            recrawl_sitemap_lastmod: true,
            #[cfg(feature = "distributed")]
            redis: None,
            limits: Limits::default(),
            cross_origin_headers: crate::redirect::DEFAULT_CROSS_ORIGIN_HEADERS
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            block_private: false,
            address_exceptions: Vec::new(),
            address_guard: None,
            http_cache: None,
            tls: TlsSettings::default(),
            tls_ready: None,
            settings_error: None,
        }
    }
}

impl Config {
    /// Whether this process is one worker of a crawl shared through Redis.
    pub(crate) fn is_distributed(&self) -> bool {
        #[cfg(feature = "distributed")]
        return self.redis.is_some();
        #[cfg(not(feature = "distributed"))]
        false
    }
}

/// Configuration of a crawl: the spider, settings with documented defaults,
/// and the user's extensions. [`build`](Self::build) checks it.
///
/// A typical configuration, polite to one site:
///
/// ```
/// use std::time::Duration;
/// use spinneret::{start_urls, Crawler, Error, Output, Response, Spider, StartRequests};
///
/// struct Docs;
///
/// impl Spider for Docs {
///     type Callback = ();
///     fn name(&self) -> &str { "docs" }
///     fn start_requests(&self) -> StartRequests<()> {
///         start_urls(["https://docs.example/"]).expect("valid start URLs")
///     }
///     fn parse(&self, _: (), _: &Response, _: &mut Output<()>) -> Result<(), Error> {
///         Ok(())
///     }
/// }
///
/// let crawler = Crawler::builder(Docs)
///     .concurrency(32)
///     .per_host_concurrency(4)
///     .download_delay(Duration::from_millis(250))
///     .allowed_domains(["docs.example"])
///     .obey_robots_txt(true)
///     .user_agent("docsbot/1.0 (+https://docs.example/bot)")
///     .timeout(Duration::from_secs(30))
///     .build()?;
/// # drop(crawler);
/// # Ok::<(), Error>(())
/// ```
pub struct CrawlerBuilder<S: Spider> {
    /// The spider to crawl with.
    spider: Arc<S>,
    /// Every plain setting.
    settings: Config,
    /// Download middlewares, in registration order.
    middlewares: Vec<Arc<dyn DownloadMiddleware<S::Callback>>>,
    /// Item pipelines, in registration order.
    pipelines: Vec<Box<dyn Pipeline>>,
    /// A queue back-end replacing the in-memory one.
    queue: Option<Box<dyn QueueBackend<S::Callback>>>,
    /// A dupe back-end replacing the built-in Bloom filter.
    dupe: Option<Box<dyn DupeBackend>>,
}

impl<S: Spider> Crawler<S> {
    /// Starts configuring a crawl of `spider`, with every default.
    pub fn builder(spider: S) -> CrawlerBuilder<S> {
        CrawlerBuilder {
            spider: Arc::new(spider),
            settings: Config::default(),
            middlewares: Vec::new(),
            pipelines: Vec::new(),
            queue: None,
            dupe: None,
        }
    }
}

impl<S: Spider> CrawlerBuilder<S> {
    /// Most requests in flight at once, across all hosts. The default is 16.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.settings.scheduler.concurrency = n;
        self
    }

    /// Most requests downloading at once per host. The default is 8.
    pub fn per_host_concurrency(mut self, n: usize) -> Self {
        self.settings.scheduler.slots.concurrency = n;
        self
    }

    /// Time between two request starts to one host. The default is 0.
    pub fn download_delay(mut self, delay: Duration) -> Self {
        self.settings.scheduler.slots.delay = delay;
        self
    }

    /// Whether each delay is multiplied by a random factor in [0.5, 1.5)
    /// (it only matters with a delay, and a host rate limit's spacing is
    /// never randomised). The default is on.
    pub fn randomize_delay(mut self, on: bool) -> Self {
        self.settings.scheduler.slots.randomize_delay = on;
        self
    }

    /// Turns AutoThrottle on: each host's delay follows its latency; see
    /// [`AutoThrottle`] for its own defaults. The default is off.
    pub fn autothrottle(mut self, settings: AutoThrottle) -> Self {
        self.settings.scheduler.slots.autothrottle = Some(settings);
        self
    }

    /// Most requests per second to one host. The default is unlimited.
    pub fn host_rate_limit(mut self, per_second: f64) -> Self {
        self.settings.scheduler.slots.host_rate = Some(per_second);
        self
    }

    /// Most requests per second over the whole crawl. The default is
    /// unlimited.
    pub fn rate_limit(mut self, per_second: f64) -> Self {
        self.settings.scheduler.slots.global_rate = Some(per_second);
        self
    }

    /// Drops requests deeper than `depth` hops from a start request
    /// (`depth/filtered`). The default is no limit.
    pub fn depth_limit(mut self, depth: u32) -> Self {
        self.settings.scheduler.depth_limit = Some(depth);
        self
    }

    /// Priority lowered by this much per level of depth: positive crawls
    /// breadth-first, negative depth-first. The default is 0.
    pub fn depth_priority(mut self, per_level: i32) -> Self {
        self.settings.scheduler.depth_priority = per_level;
        self
    }

    /// Only these domains and their subdomains are crawled; other requests
    /// are dropped (`offsite/filtered`) unless `dont_filter`. A redirect to
    /// another domain is dropped even when `dont_filter` (also counted in
    /// `redirect/offsite_filtered`, and logged). The default is every
    /// domain.
    pub fn allowed_domains<I, D>(mut self, domains: I) -> Self
    where
        I: IntoIterator<Item = D>,
        D: Into<String>,
    {
        self.settings.scheduler.allowed_domains = domains
            .into_iter()
            .map(|d| crate::host::normalise(&d.into()))
            .collect();
        self
    }

    /// Obey robots.txt, as the robots standard (RFC 9309) says: fetched
    /// once per origin with the crawl's User-Agent, through the proxy the
    /// first request of the origin uses, following up to 5 redirects, its
    /// first 500 KiB parsed, its rules matched for the User-Agent's product
    /// token (`spinneret` by default); a 4xx allows everything; a 5xx or no
    /// answer disallows everything: fetched again after 2 s and 8 s (the
    /// origin's requests waiting), then the origin is disallowed for 10
    /// minutes. Disallowed requests are dropped and counted in
    /// `robotstxt/forbidden`; `Crawl-delay` is honoured; at most 8 fetches
    /// run at once. The default is off.
    pub fn obey_robots_txt(mut self, on: bool) -> Self {
        self.settings.obey_robots = on;
        self
    }

    /// The retry policy. The default is [`RetryPolicy::default`]: 2 retries
    /// of 500, 502, 503, 504, 522, 524, 408, 429, connection errors and
    /// timeouts, with exponential backoff and jitter.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.settings.retry = Some(policy);
        self
    }

    /// Follow 301/302/303/307/308 answers (at most a request's
    /// `max_redirects`, default 20; loops are errors; the chain is on the
    /// final response's `meta.redirect_urls`). The default is on.
    pub fn follow_redirects(mut self, on: bool) -> Self {
        self.settings.follow_redirects = on;
        self
    }

    /// The headers a redirect to another origin (scheme, host or port)
    /// carries, by name, case-insensitively; every other header stays
    /// behind (`Authorization`, `Proxy-Authorization`, `Cookie`, API keys),
    /// and so do the request's own cookies. A `Referer` that crosses is cut
    /// to its origin, and dropped from https to http. A redirect within one
    /// origin keeps every header. The default is `Accept`,
    /// `Accept-Encoding`, `Accept-Language`, `Cache-Control`,
    /// `Content-Language`, `Content-Type`, `Pragma`, `Referer` and
    /// `User-Agent`; `build` fails on a name that is no header name.
    ///
    /// ```
    /// # use spinneret::{Crawler, Request, StartRequests, Spider, Output, Response, Error};
    /// # struct S;
    /// # impl Spider for S {
    /// #     type Callback = ();
    /// #     fn name(&self) -> &str { "s" }
    /// #     fn start_requests(&self) -> StartRequests<()> { Box::new(std::iter::empty()) }
    /// #     fn parse(&self, _: (), _: &Response, _: &mut Output<()>) -> Result<(), Error> { Ok(()) }
    /// # }
    /// // Only the User-Agent and Accept follow a redirect to another site.
    /// let crawler = Crawler::builder(S)
    ///     .cross_origin_headers(["User-Agent", "Accept"])
    ///     .build()?;
    /// # drop(crawler);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn cross_origin_headers<I, H>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = H>,
        H: Into<String>,
    {
        self.settings.cross_origin_headers = names
            .into_iter()
            .map(|h| h.into().trim().to_ascii_lowercase())
            .collect();
        self
    }

    /// Refuse to connect to loopback, private (`10/8`, `172.16/12`,
    /// `192.168/16`), shared (`100.64/10`), link-local (`169.254/16`, where
    /// cloud metadata services answer, and `fe80::/10`), unique-local
    /// (`fc00::/7`), multicast, unspecified and reserved addresses, for
    /// crawls of URLs that users supply. The address is checked after DNS
    /// resolution and is the one connected to (a name resolving to
    /// `127.0.0.1` is refused too); every request and every redirect is
    /// checked, and through a proxy the target is resolved and checked
    /// before the proxy is asked for a tunnel to a checked address. A proxy
    /// a request names itself ([`Request::proxy`](crate::Request::proxy()))
    /// is checked like a target too, unless it is one of the environment's
    /// ([`proxy_from_env`](Self::proxy_from_env)): a request's proxy may
    /// come from a job directory or a shared queue, so a proxy of your own
    /// on a private address must be in
    /// [`allow_addresses`](Self::allow_addresses). A refused request fails, without retry, with
    /// [`ErrorKind::BlockedAddress`], counted in
    /// `downloader/exception_type_count/blocked_address` and logged. The
    /// default is off.
    pub fn block_private_addresses(mut self, on: bool) -> Self {
        self.settings.block_private = on;
        self
    }

    /// Exceptions to [`block_private_addresses`](Self::block_private_addresses):
    /// IP addresses (`10.0.0.7`) or CIDR ranges (`10.1.0.0/16`, `fd00::/8`)
    /// that may be connected to; `build` fails on one that is neither. The
    /// default is none.
    pub fn allow_addresses<I, A>(mut self, addresses: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: Into<String>,
    {
        self.settings.address_exceptions = addresses.into_iter().map(Into::into).collect();
        self
    }

    /// Keep a cookie jar for the crawl: cookies a response sets are sent on
    /// later requests to that site. Per-request cookies are sent either way.
    /// The default is on.
    pub fn cookies(mut self, on: bool) -> Self {
        self.settings.cookies = on;
        self
    }

    /// Caps the cookie jar: at most `per_domain` cookies per registrable
    /// domain (`example.co.uk` for `a.example.co.uk`) and `total` in all; a
    /// new cookie over either cap evicts the oldest (counted
    /// `cookies/evicted_per_domain`, `cookies/evicted_total`). The defaults
    /// are 50 and 3,000. Whatever the caps, a cookie whose `Domain` is a
    /// public suffix (`co.uk`) is refused (`cookies/refused_public_suffix`).
    pub fn cookie_limits(mut self, per_domain: usize, total: usize) -> Self {
        self.settings.cookie_limits = CookieLimits { per_domain, total };
        self
    }

    /// How long a stop lets the requests in flight finish (parsed, items
    /// through the pipelines) before it forces: the rest are then abandoned
    /// and counted in `scheduler/unprocessed`. A second stop forces at
    /// once. The default is 30 s.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.settings.drain_timeout = timeout;
        self
    }

    /// How long the pipelines' `close` hooks may take, together, when the
    /// crawl ends. A pipeline whose `close` has not finished by then is
    /// abandoned: counted in `pipeline/close_timeouts`, reported as an
    /// [`ErrorKind::PipelineCloseTimeout`](crate::ErrorKind::PipelineCloseTimeout)
    /// naming it, logged, and the crawl still ends (its last items may be
    /// lost; the final checkpoint then fails, so a job directory fetches
    /// their requests again on resume). `build` rejects zero. The default
    /// is 30 s.
    pub fn finish_timeout(mut self, timeout: Duration) -> Self {
        self.settings.finish_timeout = timeout;
        self
    }

    /// Stops the crawl once `n` items have passed every pipeline
    /// (`item_scraped_count`), as a graceful stop does
    /// ([`CrawlHandle::stop_gracefully`](crate::CrawlHandle::stop_gracefully):
    /// requests in flight finish, the queue is counted in
    /// `scheduler/unprocessed`), with `finish_reason`
    /// `"closespider_itemcount"`, as Scrapy's `CLOSESPIDER_ITEMCOUNT`. The
    /// count is checked every 10 ms, so it overshoots by what was scraped
    /// since the last check plus the items of the requests in flight when
    /// the limit is seen (which finish). `build` rejects 0. The default is
    /// no limit.
    ///
    /// ```
    /// # use spinneret::{Crawler, Error, Output, Request, Response, Spider, StartRequests};
    /// # struct Docs;
    /// # impl Spider for Docs {
    /// #     type Callback = ();
    /// #     fn name(&self) -> &str { "docs" }
    /// #     fn start_requests(&self) -> StartRequests<()> { Box::new(std::iter::empty()) }
    /// #     fn parse(&self, _: (), _: &Response, _: &mut Output<()>) -> Result<(), Error> { Ok(()) }
    /// # }
    /// use std::time::Duration;
    ///
    /// // An unattended crawl: at most about 10,000 items, 50,000 pages,
    /// // 100 errors, one hour and 2 GiB.
    /// let crawler = Crawler::builder(Docs)
    ///     .close_after_items(10_000)
    ///     .close_after_pages(50_000)
    ///     .close_after_errors(100)
    ///     .close_after_time(Duration::from_secs(3600))
    ///     .memory_warning(1u64 << 30)
    ///     .memory_limit(2u64 << 30)
    ///     .build()?;
    /// # drop(crawler);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn close_after_items(mut self, n: u64) -> Self {
        self.settings.limits.items = Some(n);
        self
    }

    /// Stops the crawl once `n` responses (any status) have arrived
    /// (`downloader/response_count`), as a graceful stop does, with
    /// `finish_reason` `"closespider_pagecount"`, as Scrapy's
    /// `CLOSESPIDER_PAGECOUNT`. Checked every 10 ms, so the count
    /// overshoots by what arrived since the last check plus the requests in
    /// flight when the limit is seen (at most the concurrency), which
    /// finish. `build` rejects 0. The default is no limit.
    pub fn close_after_pages(mut self, n: u64) -> Self {
        self.settings.limits.pages = Some(n);
        self
    }

    /// Stops the crawl once `n` final failures have been counted, as a
    /// graceful stop does, with `finish_reason` `"closespider_errorcount"`
    /// (Scrapy's `CLOSESPIDER_ERRORCOUNT`). The count is
    /// [`StatsSnapshot::error_count`](crate::StatsSnapshot::error_count):
    /// `request_failure_count` (requests that ended in the error handler,
    /// after any retries) plus `spider_exceptions` (failed or panicked parse
    /// callbacks) plus `item_error_count` (items a pipeline failed on); an
    /// exchange that is retried does not count. Checked every 10 ms, so the
    /// count overshoots by what failed since the last check plus what the
    /// requests in flight when the limit is seen (which finish) add. `build`
    /// rejects 0. The default is no limit.
    pub fn close_after_errors(mut self, n: u64) -> Self {
        self.settings.limits.errors = Some(n);
        self
    }

    /// Stops the crawl once it has run for `timeout`, as a graceful stop
    /// does, with `finish_reason` `"closespider_timeout"` (Scrapy's
    /// `CLOSESPIDER_TIMEOUT`); the requests in flight then finish within
    /// the [`drain_timeout`](Self::drain_timeout). `build` rejects zero. The
    /// default is no limit.
    pub fn close_after_time(mut self, timeout: Duration) -> Self {
        self.settings.limits.timeout = Some(timeout);
        self
    }

    /// Logs a warning, once, when the process's resident set size reaches
    /// `bytes` (with the size and the threshold), and sets the stat
    /// `memusage/warning_reached` to 1, as Scrapy's `MEMUSAGE_WARNING_MB`.
    /// Turns the memory guard on: every
    /// [`memory_check_interval`](Self::memory_check_interval) it samples
    /// the resident set size (from `/proc/self/status`: Linux only;
    /// elsewhere it logs once that it cannot and stays off), recording
    /// `memusage/startup` and `memusage/max` (the peak seen), in bytes.
    /// `build` rejects 0. The default is no warning.
    pub fn memory_warning(mut self, bytes: u64) -> Self {
        self.settings.limits.memory_warning = Some(bytes);
        self
    }

    /// Stops the crawl, as a graceful stop does, when the process's
    /// resident set size reaches `bytes`, with `finish_reason`
    /// `"memusage_exceeded"`, the stat `memusage/limit_reached` set to 1 and
    /// an error logged, as Scrapy's `MEMUSAGE_LIMIT_MB`. The guard checks
    /// when the crawl starts and then every
    /// [`memory_check_interval`](Self::memory_check_interval); see
    /// [`memory_warning`](Self::memory_warning) for what it records and
    /// where it works. The size is the whole process's, other crawls in it
    /// included. `build` rejects 0. The default is no limit.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.settings.limits.memory_limit = Some(bytes);
        self
    }

    /// How often the memory guard samples the resident set size (only
    /// while [`memory_warning`](Self::memory_warning) or
    /// [`memory_limit`](Self::memory_limit) is set). `build` rejects zero.
    /// The default is 60 s.
    pub fn memory_check_interval(mut self, every: Duration) -> Self {
        self.settings.limits.memory_every = every;
        self
    }

    /// Turns retries off. The default is to retry (see
    /// [`retry`](Self::retry)).
    pub fn no_retry(mut self) -> Self {
        self.settings.retry = None;
        self
    }

    /// Turns the HTTP cache on: answers kept in a directory (by default
    /// `httpcache` in the job directory), used instead of a download as
    /// `options.policy` says; see [`HttpCacheOptions`]. It runs in each
    /// downloader after every middleware's `process_request` and before
    /// the exchange, and its answers go through every `process_response`.
    /// `build` fails without a directory (neither `options.dir` nor a job
    /// directory) or with a `max_bytes` of 0. The default is off.
    ///
    /// ```no_run
    /// # use spinneret::{start_urls, Output, Response, Spider, StartRequests};
    /// use spinneret::{CachePolicy, Crawler, Error, HttpCacheOptions};
    /// # struct Blog;
    /// # impl Spider for Blog {
    /// #     type Callback = ();
    /// #     fn name(&self) -> &str { "blog" }
    /// #     fn start_requests(&self) -> StartRequests<()> { start_urls(["http://127.0.0.1:8080/"]).unwrap() }
    /// #     fn parse(&self, _: (), _: &Response, _: &mut Output<()>) -> Result<(), Error> { Ok(()) }
    /// # }
    /// # #[actix::main]
    /// # async fn main() -> Result<(), Error> {
    /// // A second run answers every page from `dev-cache/`, sending nothing.
    /// let stats = Crawler::builder(Blog)
    ///     .http_cache(HttpCacheOptions {
    ///         dir: Some("dev-cache".into()),
    ///         ..HttpCacheOptions::default()
    ///     })
    ///     .build()?
    ///     .start()?
    ///     .join()
    ///     .await?;
    /// println!("{} pages from the cache", stats.get("httpcache/hit"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn http_cache(mut self, options: HttpCacheOptions) -> Self {
        self.settings.http_cache = Some(options);
        self
    }

    /// Turns the HTTP cache off (the default; see
    /// [`http_cache`](Self::http_cache)).
    pub fn no_http_cache(mut self) -> Self {
        self.settings.http_cache = None;
        self
    }

    /// Downloader actors (each with its own HTTP client and connection
    /// pool), on the threads [`CrawlerBuilder::thread_layout`] says. One
    /// client keeps thousands of connections busy; more pay off with
    /// [`ThreadLayout::Spread`] on cores to spare, or to keep crawling while
    /// a crashed downloader restarts. The default is 1.
    pub fn downloaders(mut self, n: usize) -> Self {
        self.settings.downloaders = n;
        self
    }

    /// How often the crawl logs a progress line (info, message
    /// `"progress"`): pages and items so far and per minute since the last
    /// line, requests in flight and queued, as Scrapy's LogStats does; and
    /// once more when the crawl finishes. `None` (or zero) turns it off.
    /// The default is every 60 s.
    pub fn log_stats(mut self, every: Option<Duration>) -> Self {
        self.settings.log_stats_every = every;
        self
    }

    /// Which threads the actors run on. The default is
    /// [`ThreadLayout::Compact`].
    pub fn thread_layout(mut self, layout: ThreadLayout) -> Self {
        self.settings.layout = layout;
        self
    }

    /// Whether duplicate requests are dropped. The default is on.
    pub fn dedupe(mut self, on: bool) -> Self {
        self.settings.dedupe = on;
        self
    }

    /// Bloom filter sizing: expected distinct requests and false-positive
    /// rate. The default is 1,048,576 at 0.001 (1.88 MB, 1.80 bytes per
    /// request). In [`DupeMode::Exact`] (the default) this sizes the first
    /// stage only: the filter grows in stages and an exact set confirms
    /// its answers, so a crawl past the capacity loses nothing. In a
    /// distributed crawl it sizes the shared filter in Redis and the shards
    /// of the exact set behind it (the first worker's sizing is kept).
    pub fn bloom(mut self, capacity: usize, false_positive_rate: f64) -> Self {
        self.settings.bloom_capacity = capacity;
        self.settings.bloom_rate = false_positive_rate;
        self
    }

    /// Whether the built-in dupe store keeps an exact set of fingerprints
    /// behind its Bloom filter ([`DupeMode::Exact`], the default: about 19
    /// bytes per URL, never drops a new one) or the filter alone
    /// ([`DupeMode::Probabilistic`]: 1.8 bytes per URL; past
    /// [`bloom`](Self::bloom)'s capacity it drops new URLs, counted in
    /// `dupefilter/bloom_unconfirmed` and `dupefilter/bloom_maybe_lost`
    /// with a warning). A distributed crawl's dupe filter in Redis is
    /// always exact.
    pub fn dupe_mode(mut self, mode: DupeMode) -> Self {
        self.settings.dupe_mode = mode;
        self
    }

    /// Deadline for a whole exchange — connecting, the TLS handshake,
    /// headers and body — unless a request sets its own. The default is
    /// 180 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Largest response body accepted, after decompression; larger ones are
    /// counted errors (`body_too_large`), and decoding stops at the limit,
    /// so a compression bomb costs no more. The default is 64 MiB.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.settings.max_body = bytes;
        self
    }

    /// Lets requests stream their bodies into files under `dir`
    /// ([`Request::stream_to`](crate::Request::stream_to)); may be called
    /// several times. The directory is created if missing by `build` (a
    /// [`ErrorKind::Config`] error if it cannot be). A request whose
    /// `stream_to` leads anywhere else — after `..` and symlinks are
    /// resolved, or to a file that is a symlink — is not
    /// sent: it fails with [`ErrorKind::StreamToRefused`] and counts
    /// `downloader/stream_to_refused`, whether the spider made it or it was
    /// read back from a job directory or Redis (whoever can write those
    /// could otherwise make the crawl write any file it can). The default
    /// is no directory: every `stream_to` is refused.
    pub fn stream_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.settings.stream_dirs.push(dir.into());
        self
    }

    /// A response body held in memory over this many bytes (after
    /// decompression) logs a warning and counts `downloader/warn_size_count`,
    /// once per response, as Scrapy's `DOWNLOAD_WARNSIZE`; 0 never warns.
    /// Bodies streamed to a file (`Request::stream_to`) do not warn.
    /// The default is 32 MiB.
    pub fn warn_body(mut self, bytes: usize) -> Self {
        self.settings.warn_body = bytes;
        self
    }

    /// The User-Agent sent unless a request sets its own. The default is
    /// [`DEFAULT_USER_AGENT`].
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.settings.user_agent = ua.into();
        self
    }

    /// How many times one request may crash its downloader before it fails
    /// instead of being re-queued. The default is 2.
    pub fn max_crashes(mut self, n: u32) -> Self {
        self.settings.max_crashes = n;
        self
    }

    /// How often every pipeline's `flush` runs. The default is 1 s.
    pub fn flush_interval(mut self, every: Duration) -> Self {
        self.settings.flush_interval = every;
        self
    }

    /// Adds a download middleware. The default is none.
    pub fn middleware(mut self, m: impl DownloadMiddleware<S::Callback>) -> Self {
        self.middlewares.push(Arc::new(m));
        self
    }

    /// Adds an item pipeline. The default is none.
    pub fn pipeline(mut self, p: impl Pipeline) -> Self {
        self.pipelines.push(Box::new(p));
        self
    }

    /// As [`pipeline`](Self::pipeline), already boxed.
    pub(crate) fn boxed_pipeline(mut self, p: Box<dyn Pipeline>) -> Self {
        self.pipelines.push(p);
        self
    }

    /// Replaces the in-memory queue with another back-end. The default is
    /// the in-memory [`MemoryQueue`](crate::queue::MemoryQueue).
    pub fn queue(mut self, backend: impl QueueBackend<S::Callback>) -> Self {
        self.queue = Some(Box::new(backend));
        self
    }

    /// Replaces the in-memory Bloom filter with another back-end. The
    /// default is the in-memory [`MemoryDupe`] sized by
    /// [`bloom`](Self::bloom).
    pub fn dupe_backend(mut self, backend: impl DupeBackend) -> Self {
        self.dupe = Some(Box::new(backend));
        self
    }

    /// Whether requests without a proxy of their own use the environment's:
    /// `http_proxy`/`HTTP_PROXY` for `http` URLs, `https_proxy`/`HTTPS_PROXY`
    /// for `https` URLs, except hosts in `no_proxy`/`NO_PROXY`. Read once, by
    /// [`build`](Self::build), which fails on an unusable proxy URL; the
    /// environment is never read while this is off. The default is off.
    pub fn proxy_from_env(mut self, on: bool) -> Self {
        self.settings.proxy_from_env = on;
        self
    }

    /// Persists the crawl's state in the directory `dir` (created if
    /// missing) and resumes from it when it already holds a job: the
    /// pending requests (queued, waiting, or in flight when the process
    /// stopped or died) are crawled first, requests seen before stay
    /// filtered, the stats continue, and the start requests already
    /// consumed are skipped. One crawl at a time per directory. The default
    /// is none (nothing persisted).
    ///
    /// A crawl that survives being stopped: run again, the same program
    /// carries on where it stopped (run here on a local site of 201 pages,
    /// each linking to the next). Once it has finished, a run finds
    /// nothing left to do; remove the directory to crawl afresh.
    ///
    /// ```
    /// use spinneret::{Crawler, Error};
    /// # use spinneret::{start_urls, Output, Response, Spider, StartRequests};
    /// # use std::io::{Read, Write};
    /// # use std::sync::{atomic::{AtomicUsize, Ordering}, Arc};
    /// # #[derive(Clone)]
    /// # struct Archive(String);
    /// # impl Archive {
    /// #     // Pages /0 to /200 on 127.0.0.1, each linking to the next.
    /// #     fn serving() -> (Archive, Arc<AtomicUsize>) {
    /// #         let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// #         let url = format!("http://{}/0", listener.local_addr().unwrap());
    /// #         let hits = Arc::new(AtomicUsize::new(0));
    /// #         let counted = hits.clone();
    /// #         std::thread::spawn(move || {
    /// #             for mut stream in listener.incoming().flatten() {
    /// #                 counted.fetch_add(1, Ordering::SeqCst);
    /// #                 let mut buf = [0u8; 4096];
    /// #                 let len = stream.read(&mut buf).unwrap_or(0);
    /// #                 let head = String::from_utf8_lossy(&buf[..len]).into_owned();
    /// #                 let n: u32 = head.split(' ').nth(1).unwrap_or("/0")[1..].parse().unwrap_or(0);
    /// #                 let body = if n < 200 { format!("<a href=\"/{}\">next</a>", n + 1) } else { String::new() };
    /// #                 let answer = format!("HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
    /// #                 let _ = stream.write_all(answer.as_bytes());
    /// #             }
    /// #         });
    /// #         (Archive(url), hits)
    /// #     }
    /// # }
    /// # impl Spider for Archive {
    /// #     type Callback = ();
    /// #     fn name(&self) -> &str { "archive" }
    /// #     fn start_requests(&self) -> StartRequests<()> {
    /// #         start_urls([self.0.as_str()]).expect("valid start URLs")
    /// #     }
    /// #     fn parse(&self, _: (), response: &Response, out: &mut Output<()>) -> Result<(), Error> {
    /// #         for href in response.css_attr("a", "href")? {
    /// #             out.request(response.follow(&href)?);
    /// #         }
    /// #         Ok(())
    /// #     }
    /// # }
    /// # #[actix::main]
    /// # async fn main() -> Result<(), Error> {
    /// # let (archive, hits) = Archive::serving();
    /// let dir = std::env::temp_dir().join("archive-job");
    /// # let dir = std::env::temp_dir().join(format!("archive-job-{}", std::process::id()));
    /// // The first run stops early (as a Ctrl-C, or `stop_on_signals`, would stop it)...
    /// let first = Crawler::builder(archive.clone())
    ///     .job_dir(&dir)
    ///     .close_after_pages(3)
    ///     .build()?
    ///     .start()?
    ///     .join()
    ///     .await?;
    /// assert!(first.get("downloader/response_count") < 201);
    /// // ...the next run fetches only what is left; the counters continue.
    /// let second = Crawler::builder(archive).job_dir(&dir).build()?.start()?.join().await?;
    /// assert_eq!(second.get("downloader/response_count"), 201);
    /// # assert_eq!(hits.load(Ordering::SeqCst), 201, "no page fetched twice");
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn job_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.settings.job_dir = Some(dir.into());
        self
    }

    /// How many waiting requests the built-in queue keeps in memory; past
    /// that, new ones wait on disk in segment files (in the job
    /// directory's `frontier/` when there is one, else in
    /// [`frontier_dir`](Self::frontier_dir) or a temporary directory,
    /// removed at the end) and come back in priority order, first in first
    /// out within a priority. Memory then stays flat however large the
    /// frontier grows. The default is 50,000 (some 30 to 60 MB, depending
    /// on the requests' URLs, headers and meta); `usize::MAX` never spills.
    /// `scheduler/frontier_spilled` counts the requests written to disk.
    pub fn frontier_memory(mut self, requests: usize) -> Self {
        self.settings.frontier_memory = requests;
        self
    }

    /// Where the built-in queue spills without a job directory (see
    /// [`frontier_memory`](Self::frontier_memory)): a directory of its own
    /// is made inside `dir` and removed at the end. The default is the
    /// system's temporary directory (`TMPDIR`); if that is a RAM disk
    /// (`tmpfs`), point this at a real disk.
    pub fn frontier_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.settings.frontier_dir = Some(dir.into());
        self
    }

    /// How often a crawl with a job directory checkpoints: every
    /// `policy.every` and every `policy.every_requests` completed requests,
    /// plus once when it finishes or stops. The default is every 10 s and
    /// every 1,000 requests ([`CheckpointPolicy::default`]).
    pub fn checkpoint_policy(mut self, policy: CheckpointPolicy) -> Self {
        self.settings.checkpoints = policy;
        self
    }

    /// When resuming a job, pull the spider's start requests again from the
    /// first (those seen before are filtered as duplicates) instead of
    /// skipping the ones already consumed. The default is off.
    pub fn rerun_start_requests(mut self, on: bool) -> Self {
        self.settings.rerun_start_requests = on;
        self
    }

    /// Re-crawls a finished job: started on the job directory of a crawl
    /// that finished, the crawl revisits every page that crawl fetched,
    /// asking the server whether it changed (`If-None-Match` with its
    /// `ETag`, `If-Modified-Since` with its `Last-Modified`), before pulling
    /// the spider's start requests again. Only pages that changed or are
    /// new are parsed, so only they yield items and links; an unchanged
    /// page (`304`, or the same body from a server without validators) and
    /// a gone one (`404`/`410`, then left out of the next re-crawl) end
    /// there. Counted in `recrawl/known` (pages set out to revisit),
    /// `recrawl/unchanged`, `recrawl/changed`, `recrawl/new`,
    /// `recrawl/gone`, `recrawl/failed` (revisits that failed: their pages
    /// are kept for the next re-crawl) and `recrawl/sitemaps` (sitemaps and
    /// robots.txt files read through [`SitemapRules`](crate::SitemapRules),
    /// always fetched whole and read again; see
    /// [`recrawl_sitemap_lastmod`](Self::recrawl_sitemap_lastmod)). A
    /// revisit that is redirected asks its target without validators and
    /// is judged by the target's body.
    ///
    /// Every crawl with a job directory keeps the index of the pages it
    /// fetched (GET requests without a body, answered 2xx, not streamed
    /// to a file), so any finished job can be re-crawled, and a re-crawl
    /// can be re-crawled in turn. A re-crawl stopped halfway resumes as
    /// any job does, with or without this switch; on a job that has not
    /// finished, the switch does nothing until it has. The stats start
    /// from zero. Needs [`job_dir`](Self::job_dir). The default is off.
    pub fn recrawl(mut self, on: bool) -> Self {
        self.settings.recrawl = on;
        self
    }

    /// During a re-crawl, parses unchanged pages too, for a spider that
    /// wants every page's items on every run: the revisits are then sent
    /// without validators (every body is fetched), and a page is judged
    /// unchanged by its body alone. The default is off.
    pub fn recrawl_unchanged_items(mut self, on: bool) -> Self {
        self.settings.recrawl_unchanged_items = on;
        self
    }

    /// During a re-crawl, trusts the `<lastmod>` of sitemaps read through
    /// [`SitemapRules`](crate::SitemapRules): a page an earlier crawl
    /// fetched from a sitemap that gave it a `<lastmod>` is not revisited
    /// at once but when the sitemap lists it again, and not at all when
    /// its `<lastmod>` is before the time it was last fetched (the
    /// answer's `Date` less its `Age`; a date alone counts as that whole
    /// day in any time zone): counted in `recrawl/unchanged` and
    /// `recrawl/lastmod_skipped`. Sitemaps are fetched afresh and always
    /// read in a re-crawl. A page no sitemap lists any more is revisited
    /// once everything else is done. Off for a site whose sitemaps do not
    /// keep `<lastmod>` up to date: every page is then asked. The default
    /// is on.
    pub fn recrawl_sitemap_lastmod(mut self, on: bool) -> Self {
        self.settings.recrawl_sitemap_lastmod = on;
        self
    }

    /// Makes this process one worker of a distributed crawl on the Redis
    /// at `url` (`redis://host:port/db`), with the default
    /// [`RedisOptions`]: the queue and the dupe filter live in Redis and are
    /// shared by every worker running the same spider (the crawl id is the
    /// spider's name). The spider does not change. Start it with
    /// [`Crawler::start_async`]. Not with a job directory (Redis is the
    /// crawl's durable state) nor another queue or dupe back-end. The
    /// default is none (a crawl of this process alone).
    ///
    /// A worker: run the same program on as many machines as the crawl
    /// needs; each takes requests from the shared queue until the whole
    /// crawl is done, and a worker that dies leaves its requests to the
    /// others.
    ///
    /// ```no_run
    /// use spinneret::{Crawler, Error};
    /// # use spinneret::{start_urls, Output, Response, Spider, StartRequests};
    /// # struct Archive;
    /// # impl Spider for Archive {
    /// #     type Callback = ();
    /// #     fn name(&self) -> &str { "archive" }
    /// #     fn start_requests(&self) -> StartRequests<()> {
    /// #         start_urls(["https://archive.example/"]).expect("valid start URLs")
    /// #     }
    /// #     fn parse(&self, _: (), response: &Response, out: &mut Output<()>) -> Result<(), Error> {
    /// #         out.item(serde_json::json!({ "url": response.url.as_str() }));
    /// #         for href in response.css_attr("a", "href")? {
    /// #             out.request(response.follow(&href)?);
    /// #         }
    /// #         Ok(())
    /// #     }
    /// # }
    ///
    /// #[actix::main]
    /// async fn main() -> Result<(), Error> {
    ///     let crawl = Crawler::builder(Archive)
    ///         .redis("redis://redis.internal:6379/0")
    ///         .build()?
    ///         .start_async()
    ///         .await?;
    ///     crawl.stop_on_signals()?;
    ///     let mine = crawl.join().await?;
    ///     println!("this worker fetched {} pages", mine.get("downloader/response_count"));
    ///     Ok(())
    /// }
    /// ```
    #[cfg(feature = "distributed")]
    #[cfg_attr(docsrs, doc(cfg(feature = "distributed")))]
    pub fn redis(self, url: impl Into<String>) -> Self {
        self.redis_options(RedisOptions::new(url))
    }

    /// As [`redis`](Self::redis), with every option: crawl id, worker id,
    /// lease time, poll interval, shared per-host rate. The default is none.
    #[cfg(feature = "distributed")]
    #[cfg_attr(docsrs, doc(cfg(feature = "distributed")))]
    pub fn redis_options(mut self, options: RedisOptions) -> Self {
        self.settings.redis = Some(options);
        self
    }

    /// Applies every setting `settings` holds a value for, as the setter
    /// of that name would; the others keep their values, and a value of a
    /// policy (`retry_times`) changes only that value of the builder's
    /// current policy. See [`Settings`] for the keys.
    pub fn settings(self, settings: &Settings) -> Self {
        settings.apply(self)
    }

    /// The plain settings, for [`Settings`] to change a policy's values in
    /// place.
    pub(crate) fn config(&mut self) -> &mut Config {
        &mut self.settings
    }

    /// Where the crawl logs. The default forwards every line to the `log`
    /// facade (target: the module path, such as `spinneret::actors::engine`),
    /// so the host's `env_logger` or `tracing` subscriber shows it.
    pub fn logger(mut self, log: Logger) -> Self {
        self.settings.log = log;
        self
    }

    /// Checks the configuration; reads the environment's proxies (when
    /// [`proxy_from_env`](Self::proxy_from_env) is on) and sizes the
    /// built-in Bloom filter, so that either failing fails here.
    pub fn build(mut self) -> Result<Crawler<S>, Error> {
        let s = &mut self.settings;
        s.scheduler.robots_agent = s.obey_robots.then(|| s.user_agent.clone());
        check(s, self.queue.is_some() || self.dupe.is_some())?;
        let guard = AddressGuard::new(&s.address_exceptions)?;
        s.address_guard = s.block_private.then(|| Arc::new(guard));
        s.tls_ready = Some(Arc::new(Tls::load(&s.tls)?));
        s.stream_dirs = crate::http::stream_dir::resolve(&s.stream_dirs)?;
        let builtin_bloom = s.dedupe && self.dupe.is_none() && !s.is_distributed();
        let dupe = if builtin_bloom {
            Some(Box::new(MemoryDupe::new(
                s.bloom_capacity,
                s.bloom_rate,
                s.dupe_mode,
            )?) as Box<dyn DupeBackend>)
        } else {
            self.dupe
        };
        let env_proxy = if s.proxy_from_env {
            Some(EnvProxies::from_env()?)
        } else {
            None
        };
        Ok(Crawler {
            spider: self.spider,
            settings: self.settings,
            middlewares: self.middlewares,
            pipelines: self.pipelines,
            queue: self.queue,
            dupe,
            builtin_bloom,
            env_proxy,
        })
    }
}

/// The checks of `build`, in its order; `own_backends`: the user replaced
/// the queue or the dupe back-end.
fn check(s: &Config, own_backends: bool) -> Result<(), Error> {
    let bad = |m: String| Err(Error::new(Stage::Setup, ErrorKind::Config(m)));
    if let Some(m) = &s.settings_error {
        return bad(m.clone());
    }
    if s.scheduler.concurrency == 0 || s.scheduler.slots.concurrency == 0 {
        return bad("concurrency (global and per host) must be at least 1".into());
    }
    let rates = [s.scheduler.slots.host_rate, s.scheduler.slots.global_rate];
    if rates.iter().flatten().any(|r| !(r.is_finite() && *r > 0.0)) {
        return bad("rate limits must be positive".into());
    }
    if let Some(at) = &s.scheduler.slots.autothrottle {
        if !(at.target_concurrency.is_finite() && at.target_concurrency > 0.0) {
            return bad("AutoThrottle target concurrency must be positive".into());
        }
    }
    if s.downloaders == 0 {
        return bad("at least one downloader is needed".into());
    }
    if (s.recrawl || s.recrawl_unchanged_items) && s.job_dir.is_none() {
        return bad(
            "re-crawling needs a job directory (job_dir): the pages it revisits are kept there"
                .into(),
        );
    }
    if s.timeout.is_zero() {
        return bad("timeout must be positive".into());
    }
    if s.flush_interval.is_zero() {
        return bad("flush interval must be positive".into());
    }
    if s.finish_timeout.is_zero() {
        return bad("finish timeout must be positive".into());
    }
    let jar = s.cookie_limits;
    if jar.per_domain == 0 || jar.total < jar.per_domain {
        return bad("cookie limits: at least 1 per domain, and a total at least that".into());
    }
    if s.checkpoints.every.is_zero() {
        return bad("checkpoint interval must be positive".into());
    }
    s.limits.check().or_else(bad)?;
    if let Some(cache) = &s.http_cache {
        if cache.dir.is_none() && s.job_dir.is_none() {
            return bad(crate::httpcache::NO_DIR.into());
        }
        if cache.max_bytes == 0 {
            return bad(
                "the HTTP cache's size bound (http_cache_max_bytes) must be positive".into(),
            );
        }
    }
    if let Some(h) = s
        .cross_origin_headers
        .iter()
        .find(|h| awc::http::header::HeaderName::from_bytes(h.as_bytes()).is_err())
    {
        return bad(format!("{h:?} is no header name (cross-origin headers)"));
    }
    #[cfg(feature = "distributed")]
    check_redis(s, own_backends).or_else(bad)?;
    #[cfg(not(feature = "distributed"))]
    let _ = own_backends;
    Ok(())
}

/// The checks of a distributed crawl's options, when it has them.
#[cfg(feature = "distributed")]
fn check_redis(s: &Config, own_backends: bool) -> Result<(), String> {
    let Some(r) = &s.redis else {
        return Ok(());
    };
    if s.job_dir.is_some() {
        return Err("a distributed crawl keeps its state in Redis: no job directory".into());
    }
    if own_backends {
        return Err("a distributed crawl uses the Redis queue and dupe filter".into());
    }
    if r.lease_ttl < Duration::from_millis(300) || r.poll.is_zero() {
        return Err(
            "Redis lease time must be at least 300 ms and the poll interval positive".into(),
        );
    }
    if r.op_timeout.is_zero() || r.ack_interval.is_zero() {
        return Err("Redis operation timeout and acknowledgement interval must be positive".into());
    }
    if r.host_rate.is_some_and(|x| !(x.is_finite() && x > 0.0)) {
        return Err("rate limits must be positive".into());
    }
    if let Err(e) = redis::Client::open(r.url.as_str()) {
        return Err(format!(
            "bad Redis URL {:?}: {e}",
            crate::redact::text(&r.url)
        ));
    }
    Ok(())
}
