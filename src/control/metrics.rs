//! `/metrics`: every registered crawl's stats in the Prometheus text format
//! (version 0.0.4).
//!
//! Each stat of a crawl's [`StatsSnapshot`] becomes one metric family named
//! by [`metric_name`], labelled `crawl="<id>"`: counters end in `_total`;
//! the gauges are the ones that go down or hold a maximum
//! (`scheduler/in_flight`, `scheduler/queued`, names ending in `max`).
//! Per-status counts share one family with a `code` label. Per host, three
//! gauges show the download slot: requests in flight, the delay between
//! starts, and whether it is resting after a `Retry-After`. A family's
//! samples are written together, as the format requires, whatever the
//! number of crawls.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::actors::scheduler::slots::HostSlot;
use crate::handle::CrawlState;
use crate::stats::{Counter, StatsSnapshot};

/// The prefix of every metric.
const PREFIX: &str = "spinneret_";

/// Where a snapshot's per-status counts live.
const STATUS_PREFIX: &str = "downloader/response_status_count/";

/// What `/metrics` shows of one crawl.
pub(crate) struct CrawlMetrics {
    /// The id the crawl is registered under (the `crawl` label).
    pub id: String,
    /// Its name (a label of `spinneret_crawl_info`).
    pub name: String,
    /// Its state (a label of `spinneret_crawl_info`).
    pub state: CrawlState,
    /// Its stats.
    pub stats: StatsSnapshot,
    /// Its download slots.
    pub hosts: Vec<HostSlot>,
}

/// The Prometheus name of the stat `stat` (a snapshot key): `spinneret_`,
/// then the key with every character outside `[A-Za-z0-9_]` as `_`, then
/// `_total` for a counter. `downloader/request_count` is
/// `spinneret_downloader_request_count_total`; `scheduler/queued` is the
/// gauge `spinneret_scheduler_queued`. Per-status counts are all
/// `spinneret_downloader_response_status_count_total`, with a `code` label.
pub fn metric_name(stat: &str) -> String {
    if stat.starts_with(STATUS_PREFIX) {
        return format!("{PREFIX}downloader_response_status_count_total");
    }
    let mut name = String::with_capacity(PREFIX.len() + stat.len() + 6);
    name.push_str(PREFIX);
    name.extend(stat.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    if !is_gauge(stat) {
        name.push_str("_total");
    }
    name
}

/// Whether a stat can go down or holds a maximum.
fn is_gauge(stat: &str) -> bool {
    stat == Counter::InFlight.name() || stat == Counter::Queued.name() || stat.ends_with("max")
}

/// One metric family: its help, its type and its sample lines.
struct Family {
    help: String,
    kind: &'static str,
    samples: String,
}

/// All families, sorted by name.
#[derive(Default)]
struct Families(BTreeMap<String, Family>);

impl Families {
    fn sample(
        &mut self,
        name: String,
        help: &str,
        kind: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let family = self.0.entry(name.clone()).or_insert_with(|| Family {
            help: help.to_string(),
            kind,
            samples: String::new(),
        });
        family.samples.push_str(&name);
        family.samples.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                family.samples.push(',');
            }
            let _ = write!(family.samples, "{k}=\"{}\"", escape(v));
        }
        let _ = writeln!(family.samples, "}} {value}");
    }

    fn render(self) -> String {
        let mut out = String::new();
        for (name, f) in self.0 {
            let _ = writeln!(
                out,
                "# HELP {name} {}",
                f.help.replace('\\', "\\\\").replace('\n', "\\n")
            );
            let _ = writeln!(out, "# TYPE {name} {}", f.kind);
            out.push_str(&f.samples);
        }
        out
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The help line of a stat: the fixed counter's description, or its name.
fn help(stat: &str) -> String {
    match Counter::ALL.iter().find(|c| c.name() == stat) {
        Some(c) => format!("{stat}: {}", c.description()),
        None if stat.starts_with(STATUS_PREFIX) => "Responses received, by HTTP status.".into(),
        None => stat.to_string(),
    }
}

/// The metrics text of `crawls`.
pub(crate) fn render(crawls: &[CrawlMetrics]) -> String {
    let mut f = Families::default();
    for c in crawls {
        let id = c.id.as_str();
        f.sample(
            format!("{PREFIX}crawl_info"),
            "A registered crawl: its name and state (always 1).",
            "gauge",
            &[("crawl", id), ("name", &c.name), ("state", c.state.name())],
            1.0,
        );
        f.sample(
            format!("{PREFIX}crawl_elapsed_seconds"),
            "Seconds since the crawl started (to its finish once finished).",
            "gauge",
            &[("crawl", id)],
            c.stats.elapsed_time_seconds,
        );
        for (stat, &value) in &c.stats.counters {
            let kind = if is_gauge(stat) { "gauge" } else { "counter" };
            match stat.strip_prefix(STATUS_PREFIX) {
                Some(code) => f.sample(
                    metric_name(stat),
                    &help(stat),
                    kind,
                    &[("crawl", id), ("code", code)],
                    value as f64,
                ),
                None => f.sample(
                    metric_name(stat),
                    &help(stat),
                    kind,
                    &[("crawl", id)],
                    value as f64,
                ),
            }
        }
        for h in &c.hosts {
            let labels = [("crawl", id), ("host", h.host.as_str())];
            f.sample(
                format!("{PREFIX}host_in_flight"),
                "Requests of the host downloading now.",
                "gauge",
                &labels,
                h.in_flight as f64,
            );
            f.sample(
                format!("{PREFIX}host_delay_seconds"),
                "The host's delay between starts now.",
                "gauge",
                &labels,
                h.delay_seconds,
            );
            f.sample(
                format!("{PREFIX}host_resting"),
                "1 while the host rests after a Retry-After.",
                "gauge",
                &labels,
                if h.resting { 1.0 } else { 0.0 },
            );
        }
    }
    f.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_names_become_prometheus_names() {
        assert_eq!(
            metric_name("downloader/request_count"),
            "spinneret_downloader_request_count_total"
        );
        assert_eq!(
            metric_name("scheduler/queued"),
            "spinneret_scheduler_queued"
        );
        assert_eq!(
            metric_name("request_depth_max"),
            "spinneret_request_depth_max"
        );
        assert_eq!(
            metric_name("downloader/response_status_count/404"),
            "spinneret_downloader_response_status_count_total"
        );
        assert_eq!(
            metric_name("retry/reason_count/timeout-x"),
            "spinneret_retry_reason_count_timeout_x_total"
        );
    }

    #[test]
    fn families_are_grouped_across_crawls_and_labels_escaped() {
        let crawl = |id: &str, pages: u64| {
            let mut stats = StatsSnapshot::default();
            stats
                .counters
                .insert("downloader/response_count".into(), pages);
            stats
                .counters
                .insert("downloader/response_status_count/200".into(), pages);
            CrawlMetrics {
                id: id.into(),
                name: "a \"quoted\" name".into(),
                state: CrawlState::Running,
                stats,
                hosts: vec![HostSlot {
                    host: "127.0.0.1".into(),
                    in_flight: 2,
                    delay_seconds: 0.5,
                    resting: false,
                }],
            }
        };
        let text = render(&[crawl("one", 3), crawl("two", 5)]);
        assert_eq!(
            text.matches("# TYPE spinneret_downloader_response_count_total counter")
                .count(),
            1
        );
        let family: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("spinneret_downloader_response_count_total{"))
            .collect();
        assert_eq!(
            family,
            [
                "spinneret_downloader_response_count_total{crawl=\"one\"} 3",
                "spinneret_downloader_response_count_total{crawl=\"two\"} 5",
            ]
        );
        assert!(text.contains(
            "spinneret_downloader_response_status_count_total{crawl=\"two\",code=\"200\"} 5\n"
        ));
        assert!(text.contains("spinneret_crawl_info{crawl=\"one\",name=\"a \\\"quoted\\\" name\",state=\"running\"} 1\n"));
        assert!(
            text.contains("spinneret_host_delay_seconds{crawl=\"one\",host=\"127.0.0.1\"} 0.5\n")
        );
        // Each family's samples follow its TYPE line, before the next family.
        let types: Vec<usize> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with("# TYPE"))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            types.len(),
            text.lines().filter(|l| l.starts_with("# HELP")).count()
        );
    }
}
