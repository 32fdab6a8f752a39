//! Limits on an unattended crawl: stop after so many items, pages or
//! errors, after so long, or when the process holds too much memory (as
//! Scrapy's `CLOSESPIDER_*` and `MEMUSAGE_*` settings do).
//!
//! This module is the plain part: the configuration ([`Limits`]), what the
//! limits are compared against ([`Progress`], read from the stats and the
//! process), and the decision — which limit, if any, is reached. It knows
//! nothing of actors or timers: the Engine, which owns the crawl's
//! lifecycle, samples [`Progress`] on its timers and, when a limit is
//! reached, stops the crawl as a graceful stop does, with the limit's
//! [`Limit::reason`] as the finish reason.

use std::time::Duration;

use crate::stats::{Counter, Stats};

/// How often the memory guard samples the resident set size unless
/// configured otherwise (Scrapy's `MEMUSAGE_CHECK_INTERVAL_SECONDS`): the one
/// definition, read by the builder's defaults.
pub(crate) const DEFAULT_MEMORY_CHECK: Duration = Duration::from_secs(60);

/// Stat: the resident set size when the crawl started, in bytes.
pub(crate) const MEMUSAGE_STARTUP: &str = "memusage/startup";
/// Stat: the largest resident set size sampled, in bytes.
pub(crate) const MEMUSAGE_MAX: &str = "memusage/max";
/// Stat: 1 once the memory warning was logged.
pub(crate) const MEMUSAGE_WARNING_REACHED: &str = "memusage/warning_reached";
/// Stat: 1 once the memory limit stopped the crawl.
pub(crate) const MEMUSAGE_LIMIT_REACHED: &str = "memusage/limit_reached";

/// The limits of one crawl; each is off (`None`) unless the builder set it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Limits {
    /// Stop once this many items passed every pipeline
    /// (`item_scraped_count`).
    pub items: Option<u64>,
    /// Stop once this many responses arrived, any status
    /// (`downloader/response_count`).
    pub pages: Option<u64>,
    /// Stop once this many final failures were counted
    /// ([`Stats::error_count`]).
    pub errors: Option<u64>,
    /// Stop once the crawl has run this long.
    pub timeout: Option<Duration>,
    /// Log a warning, once, when the resident set size reaches this many
    /// bytes.
    pub memory_warning: Option<u64>,
    /// Stop once the resident set size reaches this many bytes.
    pub memory_limit: Option<u64>,
    /// How often the resident set size is sampled while either memory
    /// threshold is set.
    pub memory_every: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            items: None,
            pages: None,
            errors: None,
            timeout: None,
            memory_warning: None,
            memory_limit: None,
            memory_every: DEFAULT_MEMORY_CHECK,
        }
    }
}

/// Which limit ended a crawl.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Limit {
    /// Items scraped.
    Items,
    /// Responses downloaded.
    Pages,
    /// Final failures.
    Errors,
    /// Time since the start.
    Timeout,
    /// Resident set size.
    Memory,
}

impl Limit {
    /// The crawl's `finish_reason` when this limit ends it (Scrapy's names).
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Limit::Items => "closespider_itemcount",
            Limit::Pages => "closespider_pagecount",
            Limit::Errors => "closespider_errorcount",
            Limit::Timeout => "closespider_timeout",
            Limit::Memory => "memusage_exceeded",
        }
    }

    /// The unit of [`Reached`]'s threshold and value, for the log line.
    pub(crate) fn unit(self) -> &'static str {
        match self {
            Limit::Items => "items",
            Limit::Pages => "pages",
            Limit::Errors => "errors",
            Limit::Timeout => "ms",
            Limit::Memory => "bytes",
        }
    }
}

/// A limit that was reached, with what was seen, both in the limit's unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reached {
    /// Which limit.
    pub limit: Limit,
    /// Its configured threshold.
    pub threshold: u64,
    /// The value that reached it (at least the threshold).
    pub value: u64,
}

/// What the limits are compared against at one check.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Progress {
    /// `item_scraped_count`.
    pub items: u64,
    /// `downloader/response_count`.
    pub pages: u64,
    /// [`Stats::error_count`].
    pub errors: u64,
    /// Time since the crawl started.
    pub elapsed: Duration,
    /// The resident set size in bytes, when this check sampled it (the
    /// memory guard's checks); `None` leaves the memory limit unchecked.
    pub rss: Option<u64>,
}

impl Progress {
    /// The counts from `stats`, with `elapsed` and `rss` as given.
    pub(crate) fn read(stats: &Stats, elapsed: Duration, rss: Option<u64>) -> Self {
        Progress {
            items: stats.get(Counter::ItemScraped),
            pages: stats.get(Counter::ResponseCount),
            errors: stats.error_count(),
            elapsed,
            rss,
        }
    }
}

impl Limits {
    /// Whether a count limit (items, pages, errors) is set: only then is
    /// there anything to poll the counters for.
    pub(crate) fn watches_counts(&self) -> bool {
        self.items.is_some() || self.pages.is_some() || self.errors.is_some()
    }

    /// Whether either memory threshold is set: only then is the resident
    /// set size sampled.
    pub(crate) fn watches_memory(&self) -> bool {
        self.memory_warning.is_some() || self.memory_limit.is_some()
    }

    /// The memory warning's threshold, when `rss` reaches it.
    pub(crate) fn warning(&self, rss: u64) -> Option<u64> {
        self.memory_warning.filter(|&w| rss >= w)
    }

    /// The first limit `p` reaches, in the order items, pages, errors,
    /// timeout, memory; `None` when none is. A limit is reached at its
    /// threshold exactly (a limit of 10 items is reached by the tenth).
    pub(crate) fn reached(&self, p: &Progress) -> Option<Reached> {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let checks = [
            (Limit::Items, self.items, Some(p.items)),
            (Limit::Pages, self.pages, Some(p.pages)),
            (Limit::Errors, self.errors, Some(p.errors)),
            (
                Limit::Timeout,
                self.timeout.map(millis),
                Some(millis(p.elapsed)),
            ),
            (Limit::Memory, self.memory_limit, p.rss),
        ];
        checks.into_iter().find_map(|(limit, threshold, value)| {
            let (threshold, value) = (threshold?, value?);
            (value >= threshold).then_some(Reached {
                limit,
                threshold,
                value,
            })
        })
    }

    /// What `build` rejects: a limit of zero (a crawl that would stop
    /// before it starts; leave the limit unset instead) and a zero memory
    /// check interval.
    pub(crate) fn check(&self) -> Result<(), String> {
        let counts = [self.items, self.pages, self.errors];
        if counts.contains(&Some(0)) || self.timeout.is_some_and(|t| t.is_zero()) {
            return Err("item, page, error and time limits must be positive".into());
        }
        if self.memory_warning == Some(0) || self.memory_limit == Some(0) {
            return Err("memory thresholds must be positive".into());
        }
        if self.memory_every.is_zero() {
            return Err("the memory check interval must be positive".into());
        }
        Ok(())
    }
}

/// The process's resident set size in bytes, from `/proc/self/status`;
/// `None` when it cannot be read.
#[cfg(target_os = "linux")]
pub(crate) fn resident_set_size() -> Option<u64> {
    vm_rss(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// The resident set size is read from `/proc`, which only Linux has: the
/// memory guard is off elsewhere.
#[cfg(not(target_os = "linux"))]
pub(crate) fn resident_set_size() -> Option<u64> {
    None
}

/// The `VmRSS` line of a `/proc/<pid>/status` text, in bytes (the kernel
/// writes it in kB).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let kb: u64 = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then(|| kb.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(items: u64, pages: u64, errors: u64, elapsed_ms: u64) -> Progress {
        Progress {
            items,
            pages,
            errors,
            elapsed: Duration::from_millis(elapsed_ms),
            rss: None,
        }
    }

    fn reached(limit: Limit, threshold: u64, value: u64) -> Option<Reached> {
        Some(Reached {
            limit,
            threshold,
            value,
        })
    }

    #[test]
    fn nothing_is_reached_when_no_limit_is_set() {
        let none = Limits::default();
        assert!(!none.watches_counts());
        assert!(!none.watches_memory());
        let huge = Progress {
            rss: Some(u64::MAX),
            ..progress(u64::MAX, u64::MAX, u64::MAX, u64::MAX)
        };
        assert_eq!(none.reached(&huge), None);
        assert_eq!(none.warning(u64::MAX), None);
    }

    #[test]
    fn each_count_limit_is_reached_at_exactly_its_threshold() {
        let items = Limits {
            items: Some(10),
            ..Limits::default()
        };
        assert!(items.watches_counts());
        assert_eq!(items.reached(&progress(9, 100, 100, 0)), None);
        assert_eq!(
            items.reached(&progress(10, 0, 0, 0)),
            reached(Limit::Items, 10, 10)
        );
        assert_eq!(
            items.reached(&progress(13, 0, 0, 0)),
            reached(Limit::Items, 10, 13)
        );

        let pages = Limits {
            pages: Some(5),
            ..Limits::default()
        };
        assert_eq!(pages.reached(&progress(100, 4, 100, 0)), None);
        assert_eq!(
            pages.reached(&progress(0, 5, 0, 0)),
            reached(Limit::Pages, 5, 5)
        );

        let errors = Limits {
            errors: Some(3),
            ..Limits::default()
        };
        assert_eq!(errors.reached(&progress(100, 100, 2, 0)), None);
        assert_eq!(
            errors.reached(&progress(0, 0, 3, 0)),
            reached(Limit::Errors, 3, 3)
        );
    }

    #[test]
    fn the_timeout_is_reached_once_that_long_has_passed() {
        let timeout = Limits {
            timeout: Some(Duration::from_millis(1500)),
            ..Limits::default()
        };
        // Time alone needs no polling of the counters.
        assert!(!timeout.watches_counts());
        assert_eq!(timeout.reached(&progress(9, 9, 9, 1499)), None);
        assert_eq!(
            timeout.reached(&progress(0, 0, 0, 1500)),
            reached(Limit::Timeout, 1500, 1500)
        );
    }

    #[test]
    fn memory_is_checked_only_when_sampled() {
        let memory = Limits {
            memory_warning: Some(100),
            memory_limit: Some(200),
            ..Limits::default()
        };
        assert!(memory.watches_memory());
        assert!(!memory.watches_counts());
        assert_eq!(memory.reached(&progress(0, 0, 0, 0)), None);
        let at = |rss| Progress {
            rss: Some(rss),
            ..progress(0, 0, 0, 0)
        };
        assert_eq!(memory.reached(&at(199)), None);
        assert_eq!(memory.reached(&at(200)), reached(Limit::Memory, 200, 200));
        assert_eq!(memory.warning(99), None);
        assert_eq!(memory.warning(100), Some(100));

        // A warning alone never stops the crawl.
        let warning = Limits {
            memory_warning: Some(1),
            ..Limits::default()
        };
        assert!(warning.watches_memory());
        assert_eq!(warning.reached(&at(u64::MAX)), None);
    }

    #[test]
    fn the_first_limit_in_order_wins_when_several_are_reached() {
        let all = Limits {
            items: Some(1),
            pages: Some(1),
            errors: Some(1),
            timeout: Some(Duration::from_millis(1)),
            memory_limit: Some(1),
            ..Limits::default()
        };
        let mut p = Progress {
            rss: Some(1),
            ..progress(1, 1, 1, 1)
        };
        assert_eq!(all.reached(&p).unwrap().limit, Limit::Items);
        p.items = 0;
        assert_eq!(all.reached(&p).unwrap().limit, Limit::Pages);
        p.pages = 0;
        assert_eq!(all.reached(&p).unwrap().limit, Limit::Errors);
        p.errors = 0;
        assert_eq!(all.reached(&p).unwrap().limit, Limit::Timeout);
        p.elapsed = Duration::ZERO;
        assert_eq!(all.reached(&p).unwrap().limit, Limit::Memory);
        p.rss = Some(0);
        assert_eq!(all.reached(&p), None);
    }

    #[test]
    fn reasons_are_scrapys() {
        let reasons: Vec<_> = [
            Limit::Items,
            Limit::Pages,
            Limit::Errors,
            Limit::Timeout,
            Limit::Memory,
        ]
        .into_iter()
        .map(Limit::reason)
        .collect();
        assert_eq!(
            reasons,
            [
                "closespider_itemcount",
                "closespider_pagecount",
                "closespider_errorcount",
                "closespider_timeout",
                "memusage_exceeded"
            ]
        );
    }

    #[test]
    fn zero_limits_are_rejected() {
        assert_eq!(Limits::default().check(), Ok(()));
        for bad in [
            Limits {
                items: Some(0),
                ..Limits::default()
            },
            Limits {
                timeout: Some(Duration::ZERO),
                ..Limits::default()
            },
            Limits {
                memory_limit: Some(0),
                ..Limits::default()
            },
            Limits {
                memory_every: Duration::ZERO,
                ..Limits::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn progress_reads_the_counters_the_limits_name() {
        let stats = Stats::default();
        stats.add(Counter::ItemScraped, 4);
        stats.add(Counter::ResponseCount, 7);
        stats.add(Counter::RequestFailures, 1);
        stats.add(Counter::SpiderExceptions, 2);
        stats.add(Counter::ItemError, 3);
        // Steps on the way, not final failures: a failed exchange or an
        // ignored status that ends a request counts as a request failure.
        stats.add(Counter::ExceptionCount, 50);
        stats.add(Counter::HttpErrorIgnored, 50);
        let p = Progress::read(&stats, Duration::from_secs(2), Some(9));
        assert_eq!(p, {
            let mut want = progress(4, 7, 6, 2000);
            want.rss = Some(9);
            want
        });
    }

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tcrawl\nVmPeak:\t  20000 kB\nVmRSS:\t    1234 kB\nThreads:\t4\n";
        assert_eq!(vm_rss(status), Some(1234 * 1024));
        assert_eq!(vm_rss("Name:\tcrawl\n"), None);
        assert_eq!(vm_rss("VmRSS:\tlots kB\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_a_resident_set() {
        assert!(resident_set_size().is_some_and(|rss| rss > 0));
    }
}
