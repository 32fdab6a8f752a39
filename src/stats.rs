//! Crawl statistics: atomic counters, read as a serialisable snapshot.
//!
//! The Engine owns one [`Stats`] per crawl and hands an `Arc` of it to every
//! actor; actors bump counters without messages or locks (fixed counters and
//! per-status counts are plain atomics; the few dynamic names, such as
//! per-kind error counts, sit behind a read-mostly lock). Names follow
//! Scrapy's, so existing dashboards and habits carry over. Nothing is
//! process-wide: two crawls in one process never mix.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

macro_rules! counters {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// The fixed counters of a crawl.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum Counter {
            $(#[doc = $doc] $variant,)*
        }

        impl Counter {
            /// Every fixed counter, in snapshot order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];

            /// The counter's name in a snapshot (Scrapy's where it has one).
            pub fn name(self) -> &'static str {
                match self {
                    $(Counter::$variant => $name,)*
                }
            }

            /// What the counter counts (its documentation).
            pub fn description(self) -> &'static str {
                match self {
                    $(Counter::$variant => $doc,)*
                }
            }
        }
    };
}

counters! {
    RequestCount => "downloader/request_count", "Requests sent to the network.";
    ResponseCount => "downloader/response_count", "Responses received, any status.";
    ResponseBytes => "downloader/response_bytes", "Body bytes received.";
    ExceptionCount => "downloader/exception_count", "Exchanges that failed without a response (connect, timeout, body).";
    WorkerRestarts => "downloader/worker_restarts", "Downloader actors restarted by their supervisor after a crash.";
    DownloadDropped => "downloader/dropped", "Requests a download middleware chose to drop.";
    HttpErrorIgnored => "httperror/response_ignored_count", "Responses whose status the request does not allow (sent to the error handler).";
    ItemScraped => "item_scraped_count", "Items that passed every pipeline.";
    ItemDropped => "item_dropped_count", "Items a pipeline dropped.";
    ItemError => "item_error_count", "Items a pipeline failed on.";
    DupeFiltered => "dupefilter/filtered", "Requests dropped as duplicates.";
    Enqueued => "scheduler/enqueued", "Requests accepted into the queue.";
    Dequeued => "scheduler/dequeued", "Requests taken from the queue for download.";
    Requeued => "scheduler/requeued", "Requests put back in the queue because their downloader crashed.";
    Unprocessed => "scheduler/unprocessed", "Accepted requests left undownloaded because the crawl was stopped.";
    SpiderExceptions => "spider_exceptions", "Parse callbacks that failed or panicked.";
    RequestFailures => "request_failure_count", "Requests that ended in the error handler.";
    LostMessages => "engine/lost_messages", "Messages addressed to an actor that was gone (should stay 0).";
    DepthMax => "request_depth_max", "The deepest request scheduled.";
    InFlight => "scheduler/in_flight", "Gauge: requests dispatched and not yet completed.";
    Queued => "scheduler/queued", "Gauge: requests waiting in the queue.";
}

/// The counters of the final failures: what `error_count` sums, on the live
/// stats (for the error limit) and on a snapshot.
const ERRORS: [Counter; 3] = [
    Counter::RequestFailures,
    Counter::SpiderExceptions,
    Counter::ItemError,
];

/// A crawl's live counters.
pub struct Stats {
    /// One atomic per fixed counter, indexed by `Counter as usize`.
    fixed: Vec<AtomicU64>,
    /// One atomic per HTTP status 0..=999 so any code (429, 599…) counts
    /// without a lock or a crash.
    status: Box<[AtomicU64]>,
    /// Counters named at run time (per-kind errors, user counters).
    named: RwLock<HashMap<String, Arc<AtomicU64>>>,
    /// When the crawl started, for `elapsed_time_seconds`.
    started: Mutex<Option<(SystemTime, Instant)>>,
    /// When and why it finished, set once.
    finished: Mutex<Option<(SystemTime, f64, String)>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            fixed: Counter::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            status: (0..1000).map(|_| AtomicU64::new(0)).collect(),
            named: RwLock::new(HashMap::new()),
            started: Mutex::new(None),
            finished: Mutex::new(None),
        }
    }
}

impl Stats {
    /// Adds `n` to a fixed counter.
    pub fn add(&self, counter: Counter, n: u64) {
        self.fixed[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one to a fixed counter.
    pub fn inc(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// Raises a counter to `value` if it is lower (for maxima).
    pub fn max(&self, counter: Counter, value: u64) {
        self.fixed[counter as usize].fetch_max(value, Ordering::Relaxed);
    }

    /// Sets a gauge (a fixed counter that goes up and down).
    pub fn set(&self, counter: Counter, value: u64) {
        self.fixed[counter as usize].store(value, Ordering::Relaxed);
    }

    /// A fixed counter's value.
    pub fn get(&self, counter: Counter) -> u64 {
        self.fixed[counter as usize].load(Ordering::Relaxed)
    }

    /// Counts one response with `status`.
    pub fn inc_status(&self, status: u16) {
        let slot = usize::from(status).min(self.status.len() - 1);
        self.status[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to a counter named at run time.
    pub fn add_named(&self, name: &str, n: u64) {
        self.with_named(name, |c| {
            c.fetch_add(n, Ordering::Relaxed);
        });
    }

    /// Sets a counter named at run time to `value` (a measure, such as
    /// `memusage/startup`, that belongs to this run even when the counters
    /// continue an earlier one).
    pub(crate) fn set_named(&self, name: &str, value: u64) {
        self.with_named(name, |c| c.store(value, Ordering::Relaxed));
    }

    /// Raises a counter named at run time to `value` if it is lower (for
    /// maxima such as `memusage/max`).
    pub(crate) fn max_named(&self, name: &str, value: u64) {
        self.with_named(name, |c| {
            c.fetch_max(value, Ordering::Relaxed);
        });
    }

    /// Runs `f` on the counter named `name`, made at zero if missing.
    fn with_named(&self, name: &str, f: impl Fn(&AtomicU64)) {
        if let Some(c) = self.named.read().expect("stats lock").get(name) {
            return f(c);
        }
        let mut map = self.named.write().expect("stats lock");
        f(map.entry(name.to_string()).or_default());
    }

    /// Every final failure so far (see [`StatsSnapshot::error_count`]).
    pub(crate) fn error_count(&self) -> u64 {
        ERRORS.iter().map(|&c| self.get(c)).sum()
    }

    /// Continues the counters of an earlier run of the same job (its last
    /// checkpoint's stats): every counter takes its saved value, the gauges
    /// start at zero, and `scheduler/enqueued` is set to what the earlier
    /// runs dequeued, left unprocessed or saw forbidden by robots.txt: the
    /// requests resumed now count as enqueued again (as re-queued ones do),
    /// so `enqueued = dequeued + unprocessed (+ forbidden)` holds at the end
    /// over all runs. Start and finish times are this run's.
    pub(crate) fn restore(&self, saved: &StatsSnapshot) {
        const STATUS: &str = "downloader/response_status_count/";
        for (name, &value) in &saved.counters {
            if let Some(c) = Counter::ALL.iter().find(|c| c.name() == name) {
                self.set(*c, value);
            } else if let Some(code) = name.strip_prefix(STATUS) {
                if let Some(slot) = code.parse::<usize>().ok().and_then(|c| self.status.get(c)) {
                    slot.store(value, Ordering::Relaxed);
                }
            } else {
                self.named
                    .write()
                    .expect("stats lock")
                    .insert(name.clone(), Arc::new(AtomicU64::new(value)));
            }
        }
        self.set(Counter::InFlight, 0);
        self.set(Counter::Queued, 0);
        let settled = saved.counter(Counter::Dequeued)
            + saved.counter(Counter::Unprocessed)
            + saved.get("robotstxt/forbidden");
        self.set(Counter::Enqueued, settled);
    }

    /// Marks the crawl started (idempotent).
    pub(crate) fn mark_started(&self) {
        let mut started = self.started.lock().expect("stats lock");
        if started.is_none() {
            *started = Some((SystemTime::now(), Instant::now()));
        }
    }

    /// Marks the crawl finished with `reason` (the first call wins).
    pub(crate) fn mark_finished(&self, reason: &str) {
        let elapsed = self.elapsed_seconds();
        let mut finished = self.finished.lock().expect("stats lock");
        if finished.is_none() {
            *finished = Some((SystemTime::now(), elapsed, reason.to_string()));
        }
    }

    fn elapsed_seconds(&self) -> f64 {
        if let Some((_, elapsed, _)) = &*self.finished.lock().expect("stats lock") {
            return *elapsed;
        }
        self.started
            .lock()
            .expect("stats lock")
            .map(|(_, at)| at.elapsed().as_secs_f64())
            .unwrap_or(0.0)
    }

    /// A consistent-enough copy of every counter (each read atomically).
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut counters = BTreeMap::new();
        for &c in Counter::ALL {
            counters.insert(c.name().to_string(), self.get(c));
        }
        for (code, n) in self.status.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                counters.insert(format!("downloader/response_status_count/{code}"), n);
            }
        }
        for (name, n) in self.named.read().expect("stats lock").iter() {
            counters.insert(name.clone(), n.load(Ordering::Relaxed));
        }
        let start_time = self
            .started
            .lock()
            .expect("stats lock")
            .map(|(t, _)| humantime::format_rfc3339_millis(t).to_string());
        let finished = self.finished.lock().expect("stats lock").clone();
        StatsSnapshot {
            counters,
            start_time,
            finish_time: finished
                .as_ref()
                .map(|(t, _, _)| humantime::format_rfc3339_millis(*t).to_string()),
            elapsed_time_seconds: self.elapsed_seconds(),
            finish_reason: finished.map(|(_, _, r)| r),
        }
    }
}

/// A copy of a crawl's stats, serialised with Scrapy's names.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StatsSnapshot {
    /// Every counter by name: the fixed ones always, per-status and named
    /// ones once non-zero.
    #[serde(flatten)]
    pub counters: BTreeMap<String, u64>,
    /// When the crawl started (RFC 3339).
    pub start_time: Option<String>,
    /// When it finished (RFC 3339), once it has.
    pub finish_time: Option<String>,
    /// Seconds from start to finish (or to now while running).
    pub elapsed_time_seconds: f64,
    /// Why it finished: `"finished"`, `"shutdown"` after a stop, or the
    /// limit that stopped it (`"closespider_itemcount"`,
    /// `"closespider_pagecount"`, `"closespider_errorcount"`,
    /// `"closespider_timeout"`, `"memusage_exceeded"`); none while running.
    pub finish_reason: Option<String>,
}

impl StatsSnapshot {
    /// A counter by name; 0 when absent.
    pub fn get(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// A fixed counter.
    pub fn counter(&self, counter: Counter) -> u64 {
        self.get(counter.name())
    }

    /// Responses received with `status`.
    pub fn status_count(&self, status: u16) -> u64 {
        self.get(&format!("downloader/response_status_count/{status}"))
    }

    /// Every final failure: requests that ended in the error handler (after
    /// any retries: download errors, disallowed statuses, redirect loops,
    /// middleware failures), failed parse callbacks, and item errors.
    pub fn error_count(&self) -> u64 {
        ERRORS.iter().map(|&c| self.counter(c)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_status_counts() {
        let s = Stats::default();
        for code in [200, 429, 599, 999] {
            s.inc_status(code);
        }
        s.inc_status(200);
        let snap = s.snapshot();
        assert_eq!(snap.status_count(200), 2);
        assert_eq!(snap.status_count(429), 1);
        assert_eq!(snap.status_count(599), 1);
        assert_eq!(snap.status_count(999), 1);
    }

    #[test]
    fn restore_continues_counters_and_resets_gauges() {
        let s = Stats::default();
        s.add(Counter::Enqueued, 10);
        s.add(Counter::Dequeued, 6);
        s.add(Counter::Unprocessed, 1);
        s.set(Counter::InFlight, 2);
        s.set(Counter::Queued, 1);
        s.add(Counter::ItemScraped, 5);
        s.inc_status(200);
        s.inc_status(404);
        s.add_named("robotstxt/forbidden", 1);
        s.add_named("retry/count", 3);
        let saved = s.snapshot();

        let back = Stats::default();
        back.restore(&saved);
        let snap = back.snapshot();
        assert_eq!(snap.counter(Counter::ItemScraped), 5);
        assert_eq!(snap.status_count(200), 1);
        assert_eq!(snap.status_count(404), 1);
        assert_eq!(snap.get("retry/count"), 3);
        assert_eq!(snap.counter(Counter::InFlight), 0);
        assert_eq!(snap.counter(Counter::Queued), 0);
        // 6 dequeued + 1 unprocessed + 1 forbidden; the 2 queued and 2 in
        // flight are counted again when the resumed run enqueues them.
        assert_eq!(snap.counter(Counter::Enqueued), 8);
        assert_eq!(snap.finish_reason, None);
    }

    #[test]
    fn named_measures_are_set_and_raised() {
        let s = Stats::default();
        s.set_named("memusage/startup", 7);
        s.set_named("memusage/startup", 5);
        s.max_named("memusage/max", 9);
        s.max_named("memusage/max", 4);
        s.add_named("memusage/max", 1);
        let snap = s.snapshot();
        assert_eq!(snap.get("memusage/startup"), 5);
        assert_eq!(snap.get("memusage/max"), 10);
    }

    #[test]
    fn the_live_error_count_is_the_snapshots() {
        let s = Stats::default();
        s.add(Counter::RequestFailures, 1);
        s.add(Counter::SpiderExceptions, 2);
        s.add(Counter::ItemError, 4);
        s.add(Counter::ExceptionCount, 8);
        assert_eq!(s.error_count(), 7);
        assert_eq!(s.snapshot().error_count(), 7);
    }

    #[test]
    fn snapshot_uses_scrapy_names_and_round_trips() {
        let s = Stats::default();
        s.mark_started();
        s.add(Counter::ItemScraped, 3);
        s.max(Counter::DepthMax, 4);
        s.max(Counter::DepthMax, 2);
        s.add_named("retry/reason_count/timeout", 2);
        s.mark_finished("finished");
        s.mark_finished("shutdown");
        let snap = s.snapshot();
        let json = serde_json::to_value(&snap).unwrap();
        assert_eq!(json["item_scraped_count"], 3);
        assert_eq!(json["request_depth_max"], 4);
        assert_eq!(json["retry/reason_count/timeout"], 2);
        assert_eq!(json["finish_reason"], "finished");
        let back: StatsSnapshot = serde_json::from_value(json).unwrap();
        assert_eq!(back, snap);
    }
}
