//! `/metrics`: every registered crawl's stats in the Prometheus text format
//! (version 0.0.4).
//!
//! Each stat of a crawl's [`StatsSnapshot`] becomes one metric family named
//! by [`metric_name`], labelled `crawl="<id>"`: counters end in `_total`;
//! the gauges are the ones that go down or hold a maximum
//! (`scheduler/in_flight`, `scheduler/queued`, names ending in `max`).
//! Per-status counts share one family with a `code` label. Per host, three
//! gauges show the download slot: requests in flight, the delay between
//! starts, and whether it is resting after a `Retry-After`; only for the
//! busiest [`MAX_HOSTS`] hosts of each crawl (most in flight, then longest
//! delay), so a crawl over many hosts keeps its metrics small. A family's
//! samples are written together, as the format requires, whatever the
//! number of crawls.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use crate::politeness::HostSlot;
use crate::state::CrawlState;
use crate::stats::{Counter, StatsSnapshot};

/// The prefix of every metric.
const PREFIX: &str = "spinneret_";

/// The most hosts per crawl whose gauges are written: a scrape of a crawl
/// over thousands of hosts stays small, and the hosts it shows are the
/// ones pressing on the crawl.
pub(crate) const MAX_HOSTS: usize = 50;

/// The busiest `MAX_HOSTS` of `hosts`: most in flight, then longest delay,
/// then by name.
fn busiest(hosts: &[HostSlot]) -> Vec<&HostSlot> {
    let mut by_load: Vec<&HostSlot> = hosts.iter().collect();
    by_load.sort_by(|a, b| {
        b.in_flight
            .cmp(&a.in_flight)
            .then(b.delay_seconds.total_cmp(&a.delay_seconds))
            .then(a.host.cmp(&b.host))
    });
    by_load.truncate(MAX_HOSTS);
    by_load
}

/// What per-status counts end with, before the status code:
/// `downloader/response_status_count/200`,
/// `robotstxt/response_status_count/404`.
const STATUS_INFIX: &str = "/response_status_count/";

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

/// A per-status count's family stat and code: `("downloader", "200")` for
/// `downloader/response_status_count/200`.
fn status_stat(stat: &str) -> Option<(&str, &str)> {
    let (family, code) = stat.rsplit_once(STATUS_INFIX)?;
    (!code.is_empty() && code.bytes().all(|b| b.is_ascii_digit())).then_some((family, code))
}

/// The Prometheus name of the stat `stat` (a snapshot key): `spinneret_`,
/// then the key with every character outside `[A-Za-z0-9_]` as `_`, then
/// `_total` for a counter. `downloader/request_count` is
/// `spinneret_downloader_request_count_total`; `scheduler/queued` is the
/// gauge `spinneret_scheduler_queued`. Per-status counts
/// (`X/response_status_count/CODE`) share one family per `X`, such as
/// `spinneret_downloader_response_status_count_total`, with a `code` label.
/// The gauges are `scheduler/in_flight`, `scheduler/queued` and the stats
/// holding a maximum (named `..._max` or `.../max`); every other stat only
/// grows and is a counter.
pub fn metric_name(stat: &str) -> String {
    let base = match status_stat(stat) {
        Some((family, _)) => format!("{family}/response_status_count"),
        None => stat.to_string(),
    };
    let mut name = String::with_capacity(PREFIX.len() + base.len() + 6);
    name.push_str(PREFIX);
    name.extend(base.chars().map(|c| {
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
    stat == Counter::InFlight.name()
        || stat == Counter::Queued.name()
        || stat.ends_with("_max")
        || stat.ends_with("/max")
}

/// A sample's value as the format writes it.
enum Number {
    /// A count, written exactly.
    Count(u64),
    /// A measure (`+Inf`, `-Inf` and `NaN` spelled as the format wants).
    Measure(f64),
}

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Number::Count(n) => write!(f, "{n}"),
            Number::Measure(x) if x.is_nan() => f.write_str("NaN"),
            Number::Measure(x) if x == f64::INFINITY => f.write_str("+Inf"),
            Number::Measure(x) if x == f64::NEG_INFINITY => f.write_str("-Inf"),
            Number::Measure(x) => write!(f, "{x}"),
        }
    }
}

/// One metric family: its help, its type and its sample lines.
struct Family {
    /// The `# HELP` text.
    help: String,
    /// `counter` or `gauge`.
    kind: &'static str,
    /// Its sample lines, in the order written.
    samples: String,
}

/// All families, sorted by name, and the series already written.
#[derive(Default)]
struct Families {
    /// By metric name.
    by_name: BTreeMap<String, Family>,
    /// Name and labels of every sample written: a series is written once
    /// (two stats whose names differ only in punctuation map to one name;
    /// the first wins).
    series: HashSet<String>,
}

impl Families {
    fn sample(
        &mut self,
        name: String,
        help: &str,
        kind: &'static str,
        labels: &[(&str, &str)],
        value: Number,
    ) {
        let mut series = name.clone();
        series.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                series.push(',');
            }
            let _ = write!(series, "{k}=\"{}\"", escape(v));
        }
        series.push('}');
        let family = self.by_name.entry(name).or_insert_with(|| Family {
            help: help.to_string(),
            kind,
            samples: String::new(),
        });
        if family.kind != kind || !self.series.insert(series.clone()) {
            return;
        }
        let _ = writeln!(family.samples, "{series} {value}");
    }

    fn render(self) -> String {
        let mut out = String::new();
        for (name, f) in self.by_name {
            let help = f.help.replace('\\', "\\\\").replace('\n', "\\n");
            let _ = writeln!(out, "# HELP {name} {help}");
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
        None => match status_stat(stat) {
            Some((family, _)) => format!("{family}: responses by HTTP status."),
            None => stat.to_string(),
        },
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
            Number::Count(1),
        );
        f.sample(
            format!("{PREFIX}crawl_elapsed_seconds"),
            "Seconds since the crawl started (to its finish once finished).",
            "gauge",
            &[("crawl", id)],
            Number::Measure(c.stats.elapsed_time_seconds),
        );
        for (stat, &value) in &c.stats.counters {
            let kind = if is_gauge(stat) { "gauge" } else { "counter" };
            let value = Number::Count(value);
            match status_stat(stat) {
                Some((_, code)) => f.sample(
                    metric_name(stat),
                    &help(stat),
                    kind,
                    &[("crawl", id), ("code", code)],
                    value,
                ),
                None => f.sample(
                    metric_name(stat),
                    &help(stat),
                    kind,
                    &[("crawl", id)],
                    value,
                ),
            }
        }
        for h in busiest(&c.hosts) {
            let labels = [("crawl", id), ("host", h.host.as_str())];
            f.sample(
                format!("{PREFIX}host_in_flight"),
                "Requests of the host downloading now.",
                "gauge",
                &labels,
                Number::Count(h.in_flight as u64),
            );
            f.sample(
                format!("{PREFIX}host_delay_seconds"),
                "The host's delay between starts now.",
                "gauge",
                &labels,
                Number::Measure(h.delay_seconds),
            );
            f.sample(
                format!("{PREFIX}host_resting"),
                "1 while the host rests after a Retry-After.",
                "gauge",
                &labels,
                Number::Count(u64::from(h.resting)),
            );
        }
    }
    f.render()
}

/// The metrics text of the API itself: how many finished crawls the
/// retention has removed (`spinneret_control_removed_finished_total`).
pub(crate) fn render_api(removed_finished: u64) -> String {
    let name = format!("{PREFIX}control_removed_finished_total");
    format!(
        "# HELP {name} Finished crawls the control API's retention removed.\n\
         # TYPE {name} counter\n\
         {name} {removed_finished}\n"
    )
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
            metric_name("robotstxt/response_status_count/200"),
            "spinneret_robotstxt_response_status_count_total"
        );
        assert_eq!(
            metric_name("retry/reason_count/timeout-x"),
            "spinneret_retry_reason_count_timeout_x_total"
        );
    }

    fn crawl(id: &str, pages: u64) -> CrawlMetrics {
        let mut stats = StatsSnapshot::default();
        stats
            .counters
            .insert("downloader/response_count".into(), pages);
        stats
            .counters
            .insert("downloader/response_status_count/200".into(), pages);
        stats
            .counters
            .insert("downloader/response_status_count/404".into(), 1);
        stats
            .counters
            .insert("robotstxt/response_status_count/200".into(), 1);
        stats.counters.insert("scheduler/queued".into(), 7);
        // Two names that differ only in punctuation: one series.
        stats.counters.insert("custom/a.b".into(), 1);
        stats.counters.insert("custom/a_b".into(), 2);
        stats.elapsed_time_seconds = f64::NAN;
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
    }

    #[test]
    fn families_are_grouped_across_crawls_with_each_series_once() {
        let text = render(&[crawl("one", 3), crawl("two", 5)]);
        // Every sample follows its own family's TYPE line, each family is
        // declared once, and no series repeats.
        let mut declared = HashSet::new();
        let mut series = HashSet::new();
        let mut current = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(kind == "counter" || kind == "gauge", "{line}");
                assert!(declared.insert(name.to_string()), "declared twice: {name}");
                current = Some(name.to_string());
            } else if !line.starts_with('#') {
                let name = &line[..line.find('{').unwrap()];
                assert_eq!(Some(name), current.as_deref(), "{line}");
                let (key, value) = line.rsplit_once(' ').unwrap();
                assert!(series.insert(key.to_string()), "series twice: {line}");
                assert!(value == "NaN" || value.parse::<f64>().is_ok(), "{line}");
            }
        }
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
        for line in [
            "# TYPE spinneret_scheduler_queued gauge",
            "spinneret_downloader_response_status_count_total{crawl=\"two\",code=\"200\"} 5",
            "spinneret_downloader_response_status_count_total{crawl=\"two\",code=\"404\"} 1",
            "spinneret_robotstxt_response_status_count_total{crawl=\"one\",code=\"200\"} 1",
            "spinneret_crawl_info{crawl=\"one\",name=\"a \\\"quoted\\\" name\",state=\"running\"} 1",
            "spinneret_crawl_elapsed_seconds{crawl=\"one\"} NaN",
            "spinneret_host_delay_seconds{crawl=\"one\",host=\"127.0.0.1\"} 0.5",
            "spinneret_custom_a_b_total{crawl=\"one\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn only_the_busiest_hosts_get_gauges() {
        let mut c = crawl("many", 1);
        c.hosts = (0..200)
            .map(|i| HostSlot {
                host: format!("h{i}"),
                in_flight: usize::from(i == 7),
                delay_seconds: if i == 150 { 2.0 } else { 0.0 },
                resting: false,
            })
            .collect();
        let text = render(&[c]);
        let shown: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("spinneret_host_in_flight{"))
            .collect();
        assert_eq!(shown.len(), MAX_HOSTS);
        assert_eq!(
            shown[..2],
            [
                "spinneret_host_in_flight{crawl=\"many\",host=\"h7\"} 1",
                "spinneret_host_in_flight{crawl=\"many\",host=\"h150\"} 0",
            ]
        );
    }

    #[test]
    fn large_counts_are_written_exactly() {
        let mut c = crawl("big", 1);
        c.stats
            .counters
            .insert("downloader/response_bytes".into(), u64::MAX);
        let text = render(&[c]);
        assert!(text.contains(&format!(
            "spinneret_downloader_response_bytes_total{{crawl=\"big\"}} {}\n",
            u64::MAX
        )));
    }
}
