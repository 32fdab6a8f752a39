//! How a crawl ended, read from its final stats: the exit status and the
//! summary the command line prints.
//!
//! Exit status 0: the crawl finished (its queue ran dry, a close-after
//! limit of pages, items or time stopped it, or one Ctrl-C stopped it
//! gracefully) and lost nothing. 1: it failed or lost items (see
//! [`LOSSES`]): it was forced (a second Ctrl-C), a limit of errors or
//! memory stopped it, every request failed and not a page succeeded (no
//! 2xx answer: a start URL answering 404 or 500 fails), or an item did
//! not reach the output. 2 (usage, decided before any crawl):
//! the command line, a setting, a start URL, a pattern, a selector or the
//! output was wrong.

use std::fmt::Write as _;
use std::process::ExitCode;

use crate::stats::{Counter, StatsSnapshot};

/// The stats that count items (or the requests that carry them) that did
/// not reach their pipelines' end, with what each means in the summary.
pub(super) const LOSSES: [(&str, &str); 8] = [
    ("item_error_count", "items a pipeline failed on"),
    ("persist/lost_items", "items an HTTP export lost"),
    (
        "persist/spilled_items",
        "items an HTTP export spilled to its file",
    ),
    ("pipeline/close_timeouts", "pipeline closes that timed out"),
    (
        "pipeline/close_failures",
        "pipeline closes that failed (their last items)",
    ),
    ("scheduler/lost_on_push_error", "requests lost by the queue"),
    (
        "scheduler/lost_on_spill_read",
        "requests lost by the queue's spill",
    ),
    ("engine/lost_messages", "messages lost between actors"),
];

/// The finish reasons of a crawl that failed.
const FAILED_REASONS: [&str; 2] = ["closespider_errorcount", "memusage_exceeded"];

/// How the crawl ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Finished and lost nothing: exit 0.
    Done,
    /// Failed, forced, or lost items (why): exit 1.
    Failed(&'static str),
}

impl Outcome {
    /// The outcome of a crawl with final `stats`; `forced`: a second
    /// Ctrl-C stopped it at once.
    pub fn of(stats: &StatsSnapshot, forced: bool) -> Outcome {
        let reason = stats.finish_reason.as_deref().unwrap_or("");
        if forced {
            Outcome::Failed("forced to stop")
        } else if FAILED_REASONS.contains(&reason) {
            Outcome::Failed("stopped by a limit of errors or memory")
        } else if successes(stats) == 0 && stats.counter(Counter::RequestFailures) > 0 {
            Outcome::Failed("every request failed")
        } else if LOSSES.iter().any(|(name, _)| stats.get(name) > 0) {
            Outcome::Failed("items lost")
        } else {
            Outcome::Done
        }
    }

    /// The process's exit status.
    pub fn exit_code(self) -> ExitCode {
        match self {
            Outcome::Done => ExitCode::SUCCESS,
            Outcome::Failed(_) => ExitCode::FAILURE,
        }
    }
}

/// The pages that succeeded: answers with a status below 300.
fn successes(stats: &StatsSnapshot) -> u64 {
    by_prefix(stats, STATUS_PREFIX)
        .iter()
        .filter(|(status, _)| status.parse::<u16>().is_ok_and(|s| s < 300))
        .map(|(_, n)| n)
        .sum()
}

/// The prefix of the counters of answers by status.
const STATUS_PREFIX: &str = "downloader/response_status_count/";

/// The human summary of a crawl with final `stats` whose items went
/// where `items_to` says (`to FILE`, or that they were not saved).
pub(super) fn summary(stats: &StatsSnapshot, forced: bool, items_to: &str) -> String {
    let pages = stats.counter(Counter::ResponseCount);
    let secs = stats.elapsed_time_seconds;
    let rate = if secs > 0.0 { pages as f64 / secs } else { 0.0 };
    let reason = stats.finish_reason.as_deref().unwrap_or("unknown");
    let mut s = String::new();
    let _ = match Outcome::of(stats, forced) {
        Outcome::Done => writeln!(s, "crawl done (finish reason: {reason})"),
        Outcome::Failed(why) => writeln!(s, "crawl FAILED: {why} (finish reason: {reason})"),
    };
    let statuses = by_prefix(stats, STATUS_PREFIX);
    let _ = writeln!(s, "  pages    {pages}{}", listed(&statuses));
    let items = stats.counter(Counter::ItemScraped);
    let _ = writeln!(s, "  items    {items} {items_to}");
    let _ = writeln!(s, "  errors   {}", stats.error_count());
    let kinds = [
        (
            "failed requests",
            Counter::RequestFailures,
            "request_failure_count/",
        ),
        ("spider errors", Counter::SpiderExceptions, ""),
        ("item errors", Counter::ItemError, ""),
        (
            "download errors",
            Counter::ExceptionCount,
            "downloader/exception_type_count/",
        ),
    ];
    for (label, counter, prefix) in kinds {
        let n = stats.counter(counter);
        let by_kind = if prefix.is_empty() {
            Vec::new()
        } else {
            by_prefix(stats, prefix)
        };
        let retried = if counter == Counter::ExceptionCount {
            ", retries included"
        } else {
            ""
        };
        if n > 0 {
            let _ = writeln!(s, "    {label:<16} {n}{}{retried}", listed(&by_kind));
        }
    }
    for (name, what) in LOSSES {
        let n = stats.get(name);
        if n > 0 {
            let _ = writeln!(s, "  LOST     {n} {what} ({name})");
        }
    }
    // A finished crawl left nothing; the counter may still hold what an
    // earlier run of a resumed job directory left.
    let unprocessed = stats.counter(Counter::Unprocessed);
    if unprocessed > 0 && reason != "finished" {
        let _ = writeln!(s, "  left     {unprocessed} requests not crawled (stopped)");
    }
    let _ = write!(s, "  elapsed  {secs:.1} s, {rate:.1} pages/s");
    s
}

/// The counters named `prefix` + something, as (something, value), in
/// name order, non-zero only.
fn by_prefix(stats: &StatsSnapshot, prefix: &str) -> Vec<(String, u64)> {
    stats
        .counters
        .iter()
        .filter_map(|(k, &v)| Some((k.strip_prefix(prefix)?.to_string(), v)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// ` (a: 1, b: 2)`, or nothing for an empty list.
fn listed(pairs: &[(String, u64)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!(" ({})", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(reason: &str, counters: &[(&str, u64)]) -> StatsSnapshot {
        StatsSnapshot {
            counters: counters.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            finish_reason: Some(reason.to_string()),
            elapsed_time_seconds: 2.0,
            ..StatsSnapshot::default()
        }
    }

    const PAGES: (&str, u64) = ("downloader/response_count", 10);
    const OK: (&str, u64) = ("downloader/response_status_count/200", 10);

    #[test]
    fn a_finished_crawl_or_one_stopped_by_a_limit_succeeds() {
        for reason in [
            "finished",
            "closespider_pagecount",
            "closespider_itemcount",
            "closespider_timeout",
            "shutdown",
        ] {
            let s = stats(reason, &[PAGES, OK, ("request_failure_count", 3)]);
            assert_eq!(Outcome::of(&s, false), Outcome::Done, "{reason}");
        }
    }

    #[test]
    fn forced_failed_or_lossy_crawls_fail() {
        let s = stats("shutdown", &[PAGES]);
        assert_eq!(Outcome::of(&s, true), Outcome::Failed("forced to stop"));
        for reason in FAILED_REASONS {
            let failed = Outcome::Failed("stopped by a limit of errors or memory");
            assert_eq!(Outcome::of(&stats(reason, &[PAGES]), false), failed);
        }
        for (name, _) in LOSSES {
            let s = stats("finished", &[PAGES, (name, 1)]);
            assert_eq!(
                Outcome::of(&s, false),
                Outcome::Failed("items lost"),
                "{name}"
            );
        }
        let nothing = stats("finished", &[("request_failure_count", 1)]);
        let failed = Outcome::Failed("every request failed");
        assert_eq!(Outcome::of(&nothing, false), failed);
        let empty = stats("finished", &[]);
        assert_eq!(Outcome::of(&empty, false), Outcome::Done);
    }

    #[test]
    fn a_crawl_whose_every_answer_is_an_http_error_fails() {
        let failed = Outcome::Failed("every request failed");
        for status in ["404", "500", "301"] {
            let key = format!("downloader/response_status_count/{status}");
            let counters = [
                ("downloader/response_count", 1),
                (key.as_str(), 1),
                ("request_failure_count", 1),
            ];
            assert_eq!(Outcome::of(&stats("finished", &counters), false), failed);
        }
        // One page that succeeded is enough.
        let counters = [
            ("downloader/response_count", 2),
            ("downloader/response_status_count/200", 1),
            ("downloader/response_status_count/404", 1),
            ("request_failure_count", 1),
        ];
        assert_eq!(
            Outcome::of(&stats("finished", &counters), false),
            Outcome::Done
        );
    }

    #[test]
    fn requests_left_are_named_only_when_the_crawl_did_not_finish() {
        let left = [PAGES, OK, ("scheduler/unprocessed", 227)];
        let text = summary(&stats("finished", &left), false, "not saved");
        assert!(!text.contains("left"), "{text}");
        let text = summary(&stats("closespider_pagecount", &left), false, "not saved");
        assert!(
            text.contains("left     227 requests not crawled (stopped)"),
            "{text}"
        );
    }

    #[test]
    fn the_summary_names_pages_items_errors_by_kind_and_losses() {
        let s = stats(
            "finished",
            &[
                PAGES,
                ("downloader/response_status_count/200", 9),
                ("downloader/response_status_count/404", 1),
                ("item_scraped_count", 9),
                ("request_failure_count", 1),
                ("request_failure_count/http_status", 1),
                ("item_error_count", 2),
            ],
        );
        let text = summary(&s, false, "to out.jsonl (JSON Lines)");
        let first = "crawl FAILED: items lost (finish reason: finished)\n";
        assert!(text.starts_with(first), "{text}");
        assert!(text.contains("pages    10 (200: 9, 404: 1)"), "{text}");
        assert!(
            text.contains("items    9 to out.jsonl (JSON Lines)"),
            "{text}"
        );
        assert!(text.contains("errors   3\n"), "{text}");
        assert!(
            text.contains("failed requests  1 (http_status: 1)\n"),
            "{text}"
        );
        assert!(text.contains("item errors      2\n"), "{text}");
        assert!(
            text.contains("LOST     2 items a pipeline failed on"),
            "{text}"
        );
        assert!(text.contains("5.0 pages/s"), "{text}");
    }
}
