//! Distributed crawls: many processes, one crawl, on Redis.
//!
//! Selected with [`CrawlerBuilder::redis`](crate::CrawlerBuilder::redis)
//! (whose documentation shows a worker's program):
//! the crawl's queue becomes a `RedisQueue` (a reliable queue: a worker
//! takes requests under a lease and acknowledges them once their response
//! is parsed, their children pushed and their items made durable by the
//! pipelines' checkpoint), its dupe filter a
//! `RedisDupe` (an atomic test-and-add over a Bloom filter in a plain
//! Redis bitmap, whose "maybe seen" is confirmed against an exact set of
//! fingerprints in small integer sets), and a coordinator keeps this
//! worker's leases alive, gives back the leases of workers that died, adds
//! this worker's counters to the crawl's totals and tells the Scheduler
//! when the whole crawl is finished.
//! Every shared operation is one Lua script (see `scripts.rs`); the key
//! layout and the lease protocol are in `actors.md`.
//!
//! Redis unreachable when the crawl starts fails
//! [`Crawler::start_async`](crate::Crawler::start_async); an outage later
//! makes every operation wait and retry with backoff (up to 5 s apart)
//! until its deadline ([`RedisOptions::op_timeout`]), and what failed is
//! done again (a pop, an acknowledgement) or given back to the queue (a
//! parent whose children could not be pushed), so a crawl carries on once
//! Redis is back. Once this worker is leaving, every operation gives up one
//! lease time after the leave began, so a stop during an outage ends. For
//! a restart of Redis itself to lose nothing, Redis must persist its data
//! (`appendonly yes`).

mod dupe;
pub(crate) mod membership;
mod queue;
mod scripts;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, RedisError, RetryMethod};
use slog::{warn, Logger};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::{Error, ErrorKind, Stage};
use crate::stats::Stats;
#[cfg(test)]
use dupe::BloomShape;
pub(crate) use dupe::RedisDupe;
pub(crate) use queue::RedisQueue;
use scripts::Scripts;

/// How a crawl uses Redis (set through the builder). Its `Debug` masks the
/// URL's password.
#[derive(Clone)]
pub struct RedisOptions {
    /// `redis://host:port/db`.
    pub url: String,
    /// Names the crawl: workers with the same id share one crawl. Default:
    /// the spider's name.
    pub crawl_id: Option<String>,
    /// Names this worker in Redis; unique among the crawl's running
    /// workers. A worker started again with the id of one that died gives
    /// back what that one left. Default: a fresh UUID per run.
    pub worker_id: Option<String>,
    /// How long a worker's leases outlive its last heartbeat (sent every
    /// third of it): a worker silent that long is taken for dead and its
    /// leases return to the queue. Default 30 s.
    pub lease_ttl: Duration,
    /// How often an idle worker looks for new work and for the end of the
    /// crawl. Default 100 ms.
    pub poll: Duration,
    /// A request rate per host shared by every worker (requests per second,
    /// bursts of up to one second's worth). Default none.
    pub host_rate: Option<f64>,
    /// How long one Redis operation may take, its retries included, before
    /// it fails (`redis/timeouts`): a pop or an acknowledgement is then
    /// tried again later, a parent whose children could not be pushed goes
    /// back to the queue. Default 30 s.
    pub op_timeout: Duration,
    /// How often acknowledgements go to Redis: each batch goes after the
    /// pipelines' `checkpoint` made the items of its requests durable, so
    /// a worker killed at any moment loses no acknowledged page's items.
    /// Longer means fewer checkpoints (fewer partial batches, fewer
    /// fsyncs) and longer-held leases. Default 100 ms.
    pub ack_interval: Duration,
}

impl RedisOptions {
    /// Options for the Redis at `url`, with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        RedisOptions {
            url: url.into(),
            crawl_id: None,
            worker_id: None,
            lease_ttl: Duration::from_secs(30),
            poll: Duration::from_millis(100),
            host_rate: None,
            op_timeout: Duration::from_secs(30),
            ack_interval: Duration::from_millis(100),
        }
    }
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &shown(&self.url))
            .field("crawl_id", &self.crawl_id)
            .field("worker_id", &self.worker_id)
            .field("lease_ttl", &self.lease_ttl)
            .field("poll", &self.poll)
            .field("host_rate", &self.host_rate)
            .finish_non_exhaustive()
    }
}

/// The crawl's key prefix: `spinneret:{<crawl id>}:`.
pub fn key_prefix(crawl_id: &str) -> String {
    format!("spinneret:{{{crawl_id}}}:")
}

/// A connection to one crawl's keys, shared by the Redis actors of a
/// worker.
#[derive(Clone)]
pub(crate) struct Shared {
    /// Reconnects by itself after a failure.
    pub con: ConnectionManager,
    /// The crawl's key prefix.
    pub prefix: String,
    /// This worker's id.
    pub worker: String,
    /// The scripts.
    pub scripts: Arc<Scripts>,
    /// The options it was made with.
    pub opts: RedisOptions,
    /// Counters (`redis/retries`).
    pub stats: Arc<Stats>,
    /// Failures a retry could cure, ever: after one, a reply may have been
    /// lost, so the queue checks its leases before its next pop.
    pub failures: Arc<AtomicU64>,
    /// When this worker's operations give up, once it is leaving (one lease
    /// time after the leave or the forced stop began): shared by every
    /// clone, so an operation waiting in one actor ends when another
    /// begins leaving.
    pub closing: Arc<watch::Sender<Option<Instant>>>,
    /// Structured log.
    pub log: Logger,
}

/// Opens a connection that retries its connect at most briefly (the caller
/// retries operations itself).
async fn open(url: &str) -> Result<ConnectionManager, Error> {
    let client = redis::Client::open(url)
        .map_err(|e| setup(format!("bad Redis URL {:?}: {e}", shown(url))))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(3)))
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|e| setup(format!("Redis unreachable at {}: {e}", shown(url))))
}

/// A Redis URL as errors show it: its password (and user) masked.
fn shown(url: &str) -> String {
    crate::redact::text(url)
}

fn setup(msg: String) -> Error {
    Error::new(Stage::Setup, ErrorKind::Backend(msg))
}

impl Shared {
    /// Connects and checks that Redis answers (the launch step then agrees
    /// on the dupe filter's shape: the first worker's sizing wins, later
    /// ones adopt it).
    pub(crate) async fn connect(
        opts: RedisOptions,
        crawl_id: &str,
        stats: Arc<Stats>,
        log: Logger,
    ) -> Result<Shared, Error> {
        let mut con = open(&opts.url).await?;
        let pong: String = redis::cmd("PING")
            .query_async(&mut con)
            .await
            .map_err(|e| {
                setup(format!(
                    "Redis at {} does not answer: {e}",
                    shown(&opts.url)
                ))
            })?;
        if pong != "PONG" {
            return Err(setup(format!(
                "Redis at {} answered PING with {pong:?}",
                shown(&opts.url)
            )));
        }
        let worker = opts
            .worker_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        Ok(Shared {
            con,
            prefix: key_prefix(crawl_id),
            worker,
            scripts: Arc::new(Scripts::new()),
            opts,
            stats,
            failures: Arc::default(),
            closing: Arc::new(watch::Sender::new(None)),
            log,
        })
    }

    /// Runs `op` until it succeeds, waiting after each failure that a
    /// retry can cure (connection lost, timeout, Redis loading its data):
    /// 50 ms, doubling up to 5 s. Other failures (a script error) are
    /// returned, and so is the deadline: the operation's
    /// ([`RedisOptions::op_timeout`]) or, once this worker is leaving, the
    /// leave's.
    pub(crate) async fn retry<T, F, Fut>(&self, what: &str, op: F) -> Result<T, Error>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        self.retry_when(what, transient, op).await
    }

    /// As [`retry`](Self::retry), retrying every failure `curable` says a
    /// later try may cure.
    pub(crate) async fn retry_when<T, F, Fut>(
        &self,
        what: &str,
        curable: fn(&RedisError) -> bool,
        op: F,
    ) -> Result<T, Error>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        self.retry_with(what, curable, Duration::ZERO, op).await
    }

    /// As [`retry`](Self::retry), for the leave itself: begun after the
    /// leave's deadline, it still gets one try of up to a second, so that
    /// a worker whose finish took long still gives back what it holds
    /// when Redis answers.
    pub(crate) async fn retry_leaving<T, F, Fut>(&self, what: &str, op: F) -> Result<T, Error>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        self.retry_with(what, transient, LAST_TRY, op).await
    }

    /// The retry loop: `grace` is how long an attempt begun after the
    /// leave's deadline may take.
    async fn retry_with<T, F, Fut>(
        &self,
        what: &str,
        curable: fn(&RedisError) -> bool,
        grace: Duration,
        mut op: F,
    ) -> Result<T, Error>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let started = Instant::now();
        let deadline = started + self.opts.op_timeout;
        let mut closing = self.closing.subscribe();
        let mut wait = Duration::from_millis(50);
        let mut failures = 0u32;
        loop {
            let attempt = op(self.con.clone());
            let e = match bounded(attempt, deadline, &mut closing, grace).await {
                Some(Ok(v)) => return Ok(v),
                Some(Err(e)) if curable(&e) => e,
                Some(Err(e)) => {
                    return Err(Error::new(
                        Stage::Schedule,
                        ErrorKind::Backend(format!("Redis {what}: {e}")),
                    ))
                }
                None => return Err(self.gave_up(what, started, failures)),
            };
            failures += 1;
            self.failures.fetch_add(1, Ordering::Relaxed);
            self.stats.add_named("redis/retries", 1);
            if failures == 1 || failures.is_multiple_of(20) {
                warn!(self.log, "Redis unavailable; waiting and retrying";
                    "operation" => what, "failures" => failures, "error" => %e);
            }
            let pause = tokio::time::sleep(wait);
            if bounded(pause, deadline, &mut closing, Duration::ZERO)
                .await
                .is_none()
            {
                return Err(self.gave_up(what, started, failures));
            }
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    /// The error of an operation that met its deadline (counted in
    /// `redis/timeouts`).
    fn gave_up(&self, what: &str, started: Instant, failures: u32) -> Error {
        // A call cut short may have run without its reply: the queue
        // checks its leases before its next pop.
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.stats.add_named("redis/timeouts", 1);
        let waited = started.elapsed();
        warn!(self.log, "Redis operation given up at its deadline";
            "operation" => what, "waited_ms" => waited.as_millis() as u64, "failures" => failures);
        Error::new(
            Stage::Schedule,
            ErrorKind::Backend(format!(
                "Redis {what}: given up after {waited:?} ({failures} failed tries)"
            )),
        )
    }

    /// This worker is leaving: from one lease time on, every operation
    /// gives up (what it did not give back returns to the queue when its
    /// lease runs out). The earliest start counts.
    pub(crate) fn begin_closing(&self) {
        let at = Instant::now() + self.opts.lease_ttl;
        self.closing.send_if_modified(|c| match c {
            Some(earlier) if *earlier <= at => false,
            _ => {
                *c = Some(at);
                true
            }
        });
    }

    /// A script invocation with the prefix and worker id as its first two
    /// arguments.
    pub(crate) fn args(&self) -> Vec<String> {
        vec![self.prefix.clone(), self.worker.clone()]
    }

    /// The heartbeat script's arguments: renew this worker for a lease
    /// time, and reap the dead ones if `reap`.
    pub(crate) fn heartbeat_args(&self, reap: bool) -> Vec<String> {
        let mut args = self.args();
        args.push(self.opts.lease_ttl.as_millis().to_string());
        args.push(if reap { "1" } else { "0" }.into());
        args
    }
}

/// How long the leave, begun after the leave's deadline, may try once: it
/// must get its chance when Redis answers.
const LAST_TRY: Duration = Duration::from_secs(1);

/// Runs `fut` until `deadline`, or until the leave's deadline once one is
/// set (an attempt begun after it gets `grace`): `None` when either came
/// first.
async fn bounded<F: Future>(
    fut: F,
    deadline: Instant,
    closing: &mut watch::Receiver<Option<Instant>>,
    grace: Duration,
) -> Option<F::Output> {
    let began = Instant::now();
    tokio::pin!(fut);
    loop {
        let until = match *closing.borrow_and_update() {
            Some(at) => deadline.min(at.max(began + grace)),
            None => deadline,
        };
        tokio::select! {
            out = &mut fut => return Some(out),
            _ = tokio::time::sleep_until(until) => return None,
            Ok(()) = closing.changed() => {}
        }
    }
}

/// Any failure: a push retries even a script error or Redis out of
/// memory, which an operator may cure, before giving its parent back.
pub(crate) fn any_failure(_: &RedisError) -> bool {
    true
}

/// Whether waiting and retrying can cure `e`.
fn transient(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || !matches!(e.retry_method(), RetryMethod::NoRetry)
}

/// Runs `script` with `args` (all strings) on `con`.
pub(crate) async fn invoke<T: redis::FromRedisValue>(
    script: &redis::Script,
    args: &[String],
    mut con: ConnectionManager,
) -> Result<T, RedisError> {
    let mut call = script.prepare_invoke();
    for a in args {
        call.arg(a);
    }
    call.invoke_async(&mut con).await
}

/// A crawl's state as Redis holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrawlTotals {
    /// The sum of every worker's counters, as last reported (each worker
    /// reports every second and when it leaves).
    pub counters: BTreeMap<String, u64>,
    /// Workers registered now.
    pub workers: usize,
    /// Requests waiting in the shared queue.
    pub queued: u64,
    /// Requests leased by workers.
    pub leased: u64,
    /// Why the crawl finished, once it has.
    pub finished: Option<String>,
}

/// Reads the crawl `crawl_id`'s totals from the Redis at `url`.
///
/// The counters, the workers, the queue and the finish are read in one
/// transaction, so they belong together: since a worker reports its
/// counters before it leaves, `workers == 0` comes with every worker's
/// final counts. (Read one after the other, the counters could predate a
/// last report whose worker had left by the time the workers were read.)
pub async fn totals(url: &str, crawl_id: &str) -> Result<CrawlTotals, Error> {
    let mut con = open(url).await?;
    let p = key_prefix(crawl_id);
    let failed = |e: RedisError| setup(format!("reading the crawl's totals: {e}"));
    type Snapshot = (BTreeMap<String, u64>, Vec<String>, u64, Option<String>);
    let (counters, workers, queued, finished): Snapshot = redis::pipe()
        .atomic()
        .hgetall(format!("{p}stats"))
        .zrange(format!("{p}workers"), 0, -1)
        .zcard(format!("{p}queue"))
        .get(format!("{p}finished"))
        .query_async(&mut con)
        .await
        .map_err(failed)?;
    let mut leased = 0;
    for w in &workers {
        let n: u64 = con.hlen(format!("{p}lease:{w}")).await.map_err(failed)?;
        leased += n;
    }
    Ok(CrawlTotals {
        counters,
        workers: workers.len(),
        queued,
        leased,
        finished,
    })
}

/// Deletes every key of the crawl `crawl_id` from the Redis at `url`, so
/// the next run with that id starts afresh; returns how many keys went.
/// Only while no worker of that crawl runs.
pub async fn clear(url: &str, crawl_id: &str) -> Result<usize, Error> {
    let mut con = open(url).await?;
    let pattern = format!(
        "{}*",
        key_prefix(crawl_id)
            .replace('\\', "\\\\")
            .replace('[', "\\[")
            .replace('*', "\\*")
            .replace('?', "\\?")
    );
    let failed = |e: RedisError| setup(format!("clearing the crawl's keys: {e}"));
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut con)
            .await
            .map_err(failed)?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    for chunk in keys.chunks(500) {
        let _: usize = con.del(chunk).await.map_err(failed)?;
    }
    Ok(keys.len())
}

#[cfg(test)]
mod tests;
