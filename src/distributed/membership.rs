//! A worker's membership of a distributed crawl: joining it, the heartbeat
//! that renews its leases and reaps dead workers, and adding its counters to
//! the crawl's totals. The Coordinator actor runs these on its timers.

use std::sync::Arc;

use slog::{o, warn, Logger};

use super::dupe::BloomShape;
use super::{invoke, RedisOptions, Shared};
use crate::error::Error;
use crate::stats::{Counter, Stats};

/// A distributed crawl's connection, made before any actor starts.
pub(crate) struct Connected {
    /// The connection to Redis, with the crawl's key prefix.
    pub(crate) shared: Shared,
    /// The shared Bloom filter's shape, as the workers agreed on it.
    pub(crate) shape: BloomShape,
    /// The crawl's stats, made with the connection so that its retries
    /// count in them.
    stats: Arc<Stats>,
}

impl Connected {
    /// Connects to Redis, agrees on the shared Bloom filter's shape (this
    /// worker proposes `bloom`: capacity and false-positive rate) and
    /// registers this worker. The crawl id defaults to the spider's `name`.
    pub(crate) async fn open(
        opts: RedisOptions,
        name: &str,
        log: &Logger,
        bloom: (usize, f64),
    ) -> Result<Connected, Error> {
        let crawl_id = opts.crawl_id.clone().unwrap_or_else(|| name.to_string());
        let log = log.new(o!("spider" => name.to_string(), "actor" => "redis"));
        let stats = Arc::new(Stats::default());
        let shared = Shared::connect(opts, &crawl_id, stats.clone(), log).await?;
        let shape = enter(&shared, BloomShape::sized(bloom.0, bloom.1)).await?;
        Ok(Connected {
            shared,
            shape,
            stats,
        })
    }

    /// The crawl's stats, made with the connection.
    pub(crate) fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }
}

/// Joins the crawl: gives back whatever an earlier process with this
/// worker id left behind (its leases and reservations; its stats baseline,
/// so this run's counters add to the totals in full), then registers.
pub(crate) async fn join(shared: &Shared) -> Result<(), Error> {
    let mut args = shared.args();
    args.push("*leave*".into());
    let stats_key = format!("{}stats:{}", shared.prefix, shared.worker);
    let given: u64 = shared
        .retry("join", |mut con| {
            let (args, stats_key) = (args.clone(), stats_key.clone());
            async move {
                let given: u64 = invoke(&shared.scripts.release, &args, con.clone()).await?;
                let _: u64 = redis::AsyncCommands::del(&mut con, &stats_key).await?;
                Ok(given)
            }
        })
        .await?;
    if given > 0 {
        warn!(shared.log, "an earlier run of this worker left leases; they went back to the queue"; "leases" => given);
    }
    heartbeat(shared).await.map(|_| ())
}

/// Agrees on the shared Bloom filter's shape, then joins the crawl: a
/// worker refused for its shape never registers.
pub(crate) async fn enter(shared: &Shared, shape: BloomShape) -> Result<BloomShape, Error> {
    let shape = shape.agree(shared).await?;
    join(shared).await?;
    Ok(shape)
}

/// Leaves the crawl at once (a start that failed after joining: the crawl
/// must not wait for this worker): gives back any lease, drops its
/// reservations and its registration. A failure is logged.
pub(crate) async fn leave(shared: &Shared) {
    let mut args = shared.args();
    args.push("*leave*".into());
    let left = shared
        .retry("leave", |con| {
            invoke::<u64>(&shared.scripts.release, &args, con)
        })
        .await;
    if let Err(e) = left {
        warn!(shared.log, "leaving the crawl after a failed start failed"; "error" => %e);
    }
}

/// Renews this worker's registration and reaps dead workers: (whether it
/// was registered, workers reaped, leases requeued). A heartbeat that had
/// to wait for Redis reaps nobody: every worker was cut off as long, and
/// the others must get the chance to renew first (the next heartbeat
/// reaps those that did not).
pub(crate) async fn heartbeat(shared: &Shared) -> Result<(bool, u64, u64), Error> {
    let mut reap = true;
    let (known, reaped, requeued): (u64, u64, u64) = shared
        .retry("heartbeat", |con| {
            let args = shared.heartbeat_args(reap);
            // After a failure: renew, do not reap.
            reap = false;
            async move { invoke(&shared.scripts.heartbeat, &args, con).await }
        })
        .await?;
    if reaped > 0 {
        warn!(shared.log, "workers taken for dead; their leases went back to the queue";
            "workers" => reaped, "leases" => requeued);
    }
    Ok((known == 1, reaped, requeued))
}

/// Adds what this worker's counters grew by to the crawl's totals.
pub(crate) async fn report(shared: &Shared, stats: &Stats) -> Result<(), Error> {
    let gauges = [Counter::InFlight.name(), Counter::Queued.name()];
    let mut args = shared.args();
    for (name, value) in stats.snapshot().counters {
        if value > 0 && !gauges.contains(&name.as_str()) {
            args.push(name);
            args.push(value.to_string());
        }
    }
    let _: u64 = shared
        .retry("stats", |con| invoke(&shared.scripts.stats, &args, con))
        .await?;
    Ok(())
}

/// The whole crawl's state, as one worker sees it.
pub(crate) struct CrawlStatus {
    /// This worker owns the start requests.
    pub owns_starts: bool,
    /// Requests waiting in the shared queue.
    pub queued: u64,
    /// The crawl's finish reason, once it is finished.
    pub finished: Option<String>,
}

/// Reads the crawl's state (one script).
pub(crate) async fn crawl_status(shared: &Shared) -> Result<CrawlStatus, Error> {
    let args = shared.args();
    let (state, detail) = shared
        .retry("status", |con| {
            invoke::<(String, redis::Value)>(&shared.scripts.status, &args, con)
        })
        .await?;
    let queued = redis::from_redis_value::<u64>(detail.clone()).unwrap_or(0);
    let finished = (state == "finished")
        .then(|| redis::from_redis_value::<String>(detail).unwrap_or_default());
    Ok(CrawlStatus {
        owns_starts: state == "starts",
        queued,
        finished,
    })
}
