//! [`Settings`]: a crawl's plain settings as data, read from a TOML file,
//! the environment and `KEY=VALUE` pairs, and applied to a builder with
//! [`CrawlerBuilder::settings`]. The keys, their precedence, how values
//! are written and the errors are documented on [`Settings`]; `format`
//! reads and shows each kind of value, `apply` sets them on the builder.

mod apply;
mod format;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use toml::Value;

#[cfg(doc)]
use crate::builder::CrawlerBuilder;
use crate::builder::ThreadLayout;
use crate::dedupe::DupeMode;
use crate::error::Error;
#[cfg(doc)]
use crate::error::ErrorKind;
use crate::http::tls::{TlsRoots, TlsVersion};
use crate::httpcache::CachePolicy;
use format::{Format, Given};

/// The prefix of the environment variables [`Settings::load`] reads.
pub const ENV_PREFIX: &str = "SPINNERET_";

/// Declares [`Settings`] from one line per key (`key: type as format`):
/// its fields, the list of keys, and setting, merging and showing them by
/// key, so that a key is written once.
macro_rules! settings {
    (
        $(#[$smeta:meta])*
        pub struct Settings {
            $( $(#[$doc:meta])* $key:ident: $ty:ty as $format:ident, )*
        }
    ) => {
        $(#[$smeta])*
        pub struct Settings {
            $( $(#[$doc])* pub $key: Option<$ty>, )*
        }

        /// Every key, in the order of [`Settings`]' fields.
        pub(crate) const KEYS: &[&str] = &[$(stringify!($key)),*];

        impl Settings {
            /// Sets every value `over` holds, keeping the others.
            pub fn merge(&mut self, over: &Settings) {
                $( if over.$key.is_some() { self.$key.clone_from(&over.$key); } )*
            }

            /// Sets `key` from `given`.
            fn set(&mut self, key: &str, given: Given<'_>) -> Result<(), Problem> {
                match key {
                    $( stringify!($key) => {
                        let read = <format::$format as Format<$ty>>::read(given);
                        let expected = <format::$format as Format<$ty>>::EXPECTED;
                        self.$key = Some(read.ok_or(Problem::Expected(expected))?);
                    } )*
                    _ => return Err(Problem::Unknown),
                }
                Ok(())
            }

            /// Each key holding a value, with the value as a TOML file
            /// would hold it.
            fn entries(&self) -> Vec<(&'static str, Value)> {
                let mut out = Vec::new();
                $( if let Some(v) = &self.$key {
                    out.push((stringify!($key), <format::$format as Format<$ty>>::show(v)));
                } )*
                out
            }
        }
    };
}

settings! {
    /// A crawl's plain settings; a field left `None` keeps the builder's
    /// value. Its `Debug` prints the fields that hold a value, URLs without
    /// their credentials.
    ///
    /// Every builder setting but the extensions (middlewares, pipelines, queue
    /// and dupe back-ends, logger) has a key, named after its setter in flat
    /// snake_case (`download_delay`, `close_after_pages`); a setter taking
    /// several values has a key per value (`cookie_limit_per_domain`,
    /// `cookie_limit_total`), a setter taking a policy a key per field
    /// (`retry_times`, `autothrottle_max_delay`, `redis_lease_ttl`). Each
    /// field's documentation names its setter and how its value is written.
    ///
    /// # Precedence
    /// Every field is optional, and each source overrides the ones before it:
    ///
    /// 1. the builder's own values: its defaults, and whatever the code (a
    ///    spider's factory) set; a key no source gives keeps that value;
    /// 2. a TOML file ([`Settings::load`]'s `file`);
    /// 3. the environment: `SPINNERET_` and the key in capitals
    ///    (`SPINNERET_DOWNLOAD_DELAY=250ms` sets `download_delay`);
    /// 4. the command line's `KEY=VALUE` pairs (`-s concurrency=8`), a later
    ///    pair over an earlier one.
    ///
    /// [`Settings::merge`] lays one `Settings` over another the same way.
    ///
    /// # Values
    /// In a TOML file (or JSON) values are typed; in the environment and `-s`
    /// they are text. Durations are written `"250ms"`, `"30s"`, `"1m 30s"`;
    /// byte sizes as a number of bytes or with a unit (`"64MiB"`, `"500KB"`:
    /// `KB` is 1,000 bytes, `KiB` 1,024); lists as arrays
    /// (`allowed_domains = ["a.example", "b.example"]`), and as text also
    /// comma-separated (`SPINNERET_ALLOWED_DOMAINS=a.example,b.example`);
    /// choices in lower case (`thread_layout = "single"`); switches as
    /// `true`/`false` (as text also `on`/`off`, `yes`/`no`, `1`/`0`);
    /// `log_stats` as an interval or `"off"`.
    ///
    /// A value outside its key's range is refused as it is read, like a
    /// value of the wrong kind: counts the builder needs at least 1 of
    /// (`concurrency`, `downloaders`, `close_after_*`, `bloom_capacity`…),
    /// positive intervals and timeouts (`timeout`, `flush_interval`,
    /// `checkpoint_every`, `redis_poll`…), positive rates, a
    /// `bloom_false_positive_rate` between 0 and 1 and a `redis_lease_ttl`
    /// of at least 300ms (each field below says its range). What involves
    /// several keys (a `cookie_limit_total` at least `cookie_limit_per_domain`)
    /// is [`CrawlerBuilder::build`]'s to check, as for the setters.
    ///
    /// A key of a group (`retry_*`, `autothrottle_*`, `http_cache_*`,
    /// `cookie_limit_*`, `bloom_*`, `checkpoint_*`, `redis_*`) changes that
    /// value of the builder's current policy and keeps its others.
    /// `retry_*`, `autothrottle_*` and `http_cache_*` turn retries,
    /// AutoThrottle and the HTTP cache on unless `retry`, `autothrottle` or
    /// `http_cache` is `false`; `redis_*` need a Redis URL (the `redis` key
    /// or [`CrawlerBuilder::redis`]), else `build` fails.
    ///
    /// # Errors
    /// An unknown key is refused, wherever it comes from, with an
    /// [`ErrorKind::Config`] error naming it and its source, and the key
    /// meant when one is close: `settings file ./crawl.toml: unknown setting
    /// "concurency" (did you mean "concurrency"?)`. This holds for the
    /// environment too: every `SPINNERET_*` variable must name a setting, so a
    /// misspelt one cannot go unnoticed. A value of the wrong kind names its
    /// key, its source and what was expected: `-s concurrency=many: expected
    /// a whole number, at least 1`; so does a value out of range: `-s
    /// flush_interval=0s: expected a positive duration such as "250ms", "30s"
    /// or "1m 30s"`.
    ///
    /// # Example
    /// ```
    /// use spinneret::{Crawler, Error, Output, Response, Settings, Spider, StartRequests};
    /// # struct Docs;
    /// # impl Spider for Docs {
    /// #     type Callback = ();
    /// #     fn name(&self) -> &str { "docs" }
    /// #     fn start_requests(&self) -> StartRequests<()> { Box::new(std::iter::empty()) }
    /// #     fn parse(&self, _: (), _: &Response, _: &mut Output<()>) -> Result<(), Error> { Ok(()) }
    /// # }
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = dir.path().join("crawl.toml");
    /// std::fs::write(
    ///     &file,
    ///     r#"
    /// concurrency = 32
    /// download_delay = "250ms"
    /// allowed_domains = ["docs.example"]
    /// max_body = "16MiB"
    /// retry_times = 5
    /// log_stats = "off"
    /// "#,
    /// )
    /// .unwrap();
    /// // The environment over the file, the command line over both.
    /// let env = [("SPINNERET_CONCURRENCY".to_string(), "16".to_string())];
    /// let settings = Settings::load_from(Some(&file), env, &["concurrency=8".to_string()])?;
    /// assert_eq!(settings.concurrency, Some(8));
    /// assert_eq!(settings.download_delay, Some(std::time::Duration::from_millis(250)));
    /// assert_eq!(settings.max_body, Some(16 << 20));
    ///
    /// // Applied over what the code set: the user agent stays.
    /// let crawler = Crawler::builder(Docs)
    ///     .user_agent("docsbot/1.0")
    ///     .settings(&settings)
    ///     .build()?;
    /// # drop(crawler);
    /// # Ok::<(), Error>(())
    /// ```
    #[derive(Clone, Default, PartialEq)]
    pub struct Settings {
        /// [`CrawlerBuilder::concurrency`]: a whole number, at least 1.
        concurrency: usize as Count,
        /// [`CrawlerBuilder::per_host_concurrency`]: a whole number, at least 1.
        per_host_concurrency: usize as Count,
        /// [`CrawlerBuilder::download_delay`]: a duration.
        download_delay: Duration as Human,
        /// [`CrawlerBuilder::randomize_delay`]: a switch.
        randomize_delay: bool as Flag,
        /// [`CrawlerBuilder::autothrottle`]: a switch; `false` turns
        /// AutoThrottle off, `true` on (with the builder's AutoThrottle
        /// settings, else the defaults).
        autothrottle: bool as Flag,
        /// [`AutoThrottle::start_delay`](crate::AutoThrottle::start_delay): a
        /// duration.
        autothrottle_start_delay: Duration as Human,
        /// [`AutoThrottle::max_delay`](crate::AutoThrottle::max_delay): a
        /// duration.
        autothrottle_max_delay: Duration as Human,
        /// [`AutoThrottle::target_concurrency`](crate::AutoThrottle::target_concurrency):
        /// a positive number.
        autothrottle_target_concurrency: f64 as Rate,
        /// [`CrawlerBuilder::host_rate_limit`]: requests per second, a positive number.
        host_rate_limit: f64 as Rate,
        /// [`CrawlerBuilder::rate_limit`]: requests per second, a positive number.
        rate_limit: f64 as Rate,
        /// [`CrawlerBuilder::depth_limit`]: a whole number.
        depth_limit: u32 as Whole,
        /// [`CrawlerBuilder::depth_priority`]: a whole number, negative or not.
        depth_priority: i32 as Signed,
        /// [`CrawlerBuilder::allowed_domains`]: a list of domains.
        allowed_domains: Vec<String> as List,
        /// [`CrawlerBuilder::obey_robots_txt`]: a switch.
        obey_robots_txt: bool as Flag,
        /// [`CrawlerBuilder::retry`] and [`CrawlerBuilder::no_retry`]: a
        /// switch; `false` turns retries off, `true` on (with the builder's
        /// policy, else the default one).
        retry: bool as Flag,
        /// [`RetryPolicy::max_retries`](crate::RetryPolicy::max_retries): a
        /// whole number.
        retry_times: u32 as Whole,
        /// [`RetryPolicy::statuses`](crate::RetryPolicy::statuses): a list of
        /// status codes.
        retry_http_codes: Vec<u16> as Codes,
        /// [`RetryPolicy::base_delay`](crate::RetryPolicy::base_delay): a
        /// duration.
        retry_base_delay: Duration as Human,
        /// [`RetryPolicy::max_delay`](crate::RetryPolicy::max_delay): a
        /// duration.
        retry_max_delay: Duration as Human,
        /// [`RetryPolicy::jitter`](crate::RetryPolicy::jitter): a switch.
        retry_jitter: bool as Flag,
        /// [`CrawlerBuilder::follow_redirects`]: a switch.
        follow_redirects: bool as Flag,
        /// [`CrawlerBuilder::cross_origin_headers`]: a list of header names.
        cross_origin_headers: Vec<String> as List,
        /// [`CrawlerBuilder::block_private_addresses`]: a switch.
        block_private_addresses: bool as Flag,
        /// [`CrawlerBuilder::allow_addresses`]: a list of addresses and CIDR
        /// ranges.
        allow_addresses: Vec<String> as List,
        /// [`CrawlerBuilder::tls_root_file`], once per file: a list of PEM
        /// paths, added to the builder's.
        tls_root_files: Vec<PathBuf> as Paths,
        /// [`CrawlerBuilder::tls_roots`]: `builtin`, `system`, `both` or `extra`.
        tls_roots: TlsRoots as Roots,
        /// [`CrawlerBuilder::tls_client_cert_file`]'s certificate: a path;
        /// `tls_client_key` must be given with it.
        tls_client_cert: PathBuf as Path,
        /// [`CrawlerBuilder::tls_client_cert_file`]'s key: a path;
        /// `tls_client_cert` must be given with it.
        tls_client_key: PathBuf as Path,
        /// [`CrawlerBuilder::tls_min_version`]: `1.2` or `1.3`.
        tls_min_version: TlsVersion as MinTls,
        /// [`CrawlerBuilder::danger_accept_invalid_certs`]: a switch.
        danger_accept_invalid_certs: bool as Flag,
        /// [`CrawlerBuilder::http1_only`]: a switch.
        http1_only: bool as Flag,
        /// [`CrawlerBuilder::cookies`]: a switch.
        cookies: bool as Flag,
        /// [`CrawlerBuilder::cookie_limits`]' `per_domain`: a whole number, at least 1.
        cookie_limit_per_domain: usize as Count,
        /// [`CrawlerBuilder::cookie_limits`]' `total`: a whole number, at least 1.
        cookie_limit_total: usize as Count,
        /// [`CrawlerBuilder::drain_timeout`]: a duration.
        drain_timeout: Duration as Human,
        /// [`CrawlerBuilder::finish_timeout`]: a positive duration.
        finish_timeout: Duration as Positive,
        /// [`CrawlerBuilder::close_after_items`]: a whole number, at least 1.
        close_after_items: u64 as Count,
        /// [`CrawlerBuilder::close_after_pages`]: a whole number, at least 1.
        close_after_pages: u64 as Count,
        /// [`CrawlerBuilder::close_after_errors`]: a whole number, at least 1.
        close_after_errors: u64 as Count,
        /// [`CrawlerBuilder::close_after_time`]: a positive duration.
        close_after_time: Duration as Positive,
        /// [`CrawlerBuilder::memory_warning`]: a positive byte size.
        memory_warning: u64 as SomeBytes,
        /// [`CrawlerBuilder::memory_limit`]: a positive byte size.
        memory_limit: u64 as SomeBytes,
        /// [`CrawlerBuilder::memory_check_interval`]: a positive duration.
        memory_check_interval: Duration as Positive,
        /// [`CrawlerBuilder::downloaders`]: a whole number, at least 1.
        downloaders: usize as Count,
        /// [`CrawlerBuilder::log_stats`]: a duration, or `"off"` (also `false`
        /// in a file); held as zero when off.
        log_stats: Duration as Interval,
        /// [`CrawlerBuilder::thread_layout`]: `compact`, `single` or `spread`.
        thread_layout: ThreadLayout as Layout,
        /// [`CrawlerBuilder::dedupe`]: a switch.
        dedupe: bool as Flag,
        /// [`CrawlerBuilder::bloom`]'s capacity: a whole number, at least 1.
        bloom_capacity: usize as Count,
        /// [`CrawlerBuilder::bloom`]'s false-positive rate: a number above 0 and below 1.
        bloom_false_positive_rate: f64 as Fraction,
        /// [`CrawlerBuilder::dupe_mode`]: `exact` or `probabilistic`.
        dupe_mode: DupeMode as Mode,
        /// [`CrawlerBuilder::timeout`]: a positive duration.
        timeout: Duration as Positive,
        /// [`CrawlerBuilder::max_body`]: a byte size.
        max_body: usize as Bytes,
        /// [`CrawlerBuilder::stream_dir`], once per directory: a list of paths,
        /// added to the builder's.
        stream_dir: Vec<PathBuf> as Paths,
        /// [`CrawlerBuilder::warn_body`]: a byte size.
        warn_body: usize as Bytes,
        /// [`CrawlerBuilder::user_agent`]: text.
        user_agent: String as Text,
        /// [`CrawlerBuilder::max_crashes`]: a whole number.
        max_crashes: u32 as Whole,
        /// [`CrawlerBuilder::flush_interval`]: a positive duration.
        flush_interval: Duration as Positive,
        /// [`CrawlerBuilder::proxy_from_env`]: a switch.
        proxy_from_env: bool as Flag,
        /// [`CrawlerBuilder::job_dir`]: a path.
        job_dir: PathBuf as Path,
        /// [`CrawlerBuilder::frontier_memory`]: a whole number of requests.
        frontier_memory: usize as Whole,
        /// [`CrawlerBuilder::frontier_dir`]: a path.
        frontier_dir: PathBuf as Path,
        /// [`CheckpointPolicy::every`](crate::CheckpointPolicy::every): a positive duration.
        checkpoint_every: Duration as Positive,
        /// [`CheckpointPolicy::every_requests`](crate::CheckpointPolicy::every_requests):
        /// a whole number.
        checkpoint_every_requests: usize as Whole,
        /// [`CrawlerBuilder::rerun_start_requests`]: a switch.
        rerun_start_requests: bool as Flag,
        /// [`CrawlerBuilder::recrawl`]: a switch.
        recrawl: bool as Flag,
        /// [`CrawlerBuilder::recrawl_unchanged_items`]: a switch.
        recrawl_unchanged_items: bool as Flag,
        /// [`CrawlerBuilder::recrawl_sitemap_lastmod`]: a switch.
        recrawl_sitemap_lastmod: bool as Flag,
        /// [`CrawlerBuilder::http_cache`] and [`CrawlerBuilder::no_http_cache`]:
        /// a switch; `false` turns the HTTP cache off, `true` on (with the
        /// builder's options, else the defaults).
        http_cache: bool as Flag,
        /// [`HttpCacheOptions::policy`](crate::HttpCacheOptions::policy):
        /// `dummy` or `rfc9111`.
        http_cache_policy: CachePolicy as Policy,
        /// [`HttpCacheOptions::dir`](crate::HttpCacheOptions::dir): a path.
        http_cache_dir: PathBuf as Path,
        /// [`HttpCacheOptions::expiration`](crate::HttpCacheOptions::expiration):
        /// a duration, `"0s"` for none.
        http_cache_expiration: Duration as Human,
        /// [`HttpCacheOptions::max_bytes`](crate::HttpCacheOptions::max_bytes):
        /// a positive byte size.
        http_cache_max_bytes: u64 as SomeBytes,
        /// [`HttpCacheOptions::ignore_statuses`](crate::HttpCacheOptions::ignore_statuses):
        /// a list of status codes.
        http_cache_ignore_statuses: Vec<u16> as Codes,
        /// [`CrawlerBuilder::redis`]: a Redis URL (`redis://host:port/db`); the
        /// builder's other Redis options stay. `Debug` masks its password.
        redis: String as Text,
        /// [`RedisOptions::crawl_id`](crate::RedisOptions::crawl_id): text.
        redis_crawl_id: String as Text,
        /// [`RedisOptions::worker_id`](crate::RedisOptions::worker_id): text.
        redis_worker_id: String as Text,
        /// [`RedisOptions::lease_ttl`](crate::RedisOptions::lease_ttl): a duration of at least
        /// 300ms.
        redis_lease_ttl: Duration as Lease,
        /// [`RedisOptions::poll`](crate::RedisOptions::poll): a positive duration.
        redis_poll: Duration as Positive,
        /// [`RedisOptions::host_rate`](crate::RedisOptions::host_rate):
        /// requests per second, a positive number.
        redis_host_rate: f64 as Rate,
        /// [`RedisOptions::op_timeout`](crate::RedisOptions::op_timeout): a positive duration.
        redis_op_timeout: Duration as Positive,
        /// [`RedisOptions::ack_interval`](crate::RedisOptions::ack_interval): a positive duration.
        redis_ack_interval: Duration as Positive,
    }
}

/// Why a key's value was refused.
#[derive(Clone, Copy)]
enum Problem {
    /// No setting has this key.
    Unknown,
    /// The value is not of the key's kind; what it should look like.
    Expected(&'static str),
}

/// Where a value came from, to name it in an error.
#[derive(Clone, Copy)]
enum Origin<'a> {
    /// TOML text, named so (`settings file ./crawl.toml`).
    File(&'a str),
    /// The environment variable of this name, holding this value.
    Env(&'a str, &'a str),
    /// A `KEY=VALUE` pair of the command line.
    Pair(&'a str),
    /// Deserialised data (JSON): whoever reads it says from where.
    Data,
}

impl Settings {
    /// The settings of `file` (TOML, if given), then the process's
    /// `SPINNERET_*` environment variables, then `overrides`
    /// (`KEY=VALUE`), each over the one before.
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<Settings, Error> {
        let mut env = Vec::new();
        for (name, value) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            if !name.starts_with(ENV_PREFIX) {
                continue;
            }
            let Ok(value) = value.into_string() else {
                return Err(Error::config(format!(
                    "environment variable {name}: not valid UTF-8"
                )));
            };
            env.push((name, value));
        }
        Settings::load_from(file, env, overrides)
    }

    /// As [`load`](Self::load), with the environment given (variables
    /// without the `SPINNERET_` prefix are left out).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[String],
    ) -> Result<Settings, Error> {
        let mut settings = match file {
            Some(path) => {
                let source = format!("settings file {}", path.display());
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::config(format!("{source}: {e}")))?;
                Settings::from_toml_str(&text, &source)?
            }
            None => Settings::default(),
        };
        for (name, value) in env {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let origin = Origin::Env(&name, &value);
            settings.set_from(&key.to_ascii_lowercase(), Given::Text(&value), origin)?;
        }
        for pair in overrides {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(Error::config(format!(
                    "-s {}: expected KEY=VALUE",
                    masked(pair)
                )));
            };
            settings.set_from(key.trim(), Given::Text(value), Origin::Pair(pair))?;
        }
        Ok(settings)
    }

    /// The settings of a TOML text; `source` names it in errors (such as
    /// `settings file ./crawl.toml`, which [`load`](Self::load) uses).
    pub fn from_toml_str(text: &str, source: &str) -> Result<Settings, Error> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(String::new(), |s| {
                format!("line {}: ", line_of(text, s.start))
            });
            let message = e.message().trim().replace('\n', "; ");
            Error::config(masked(&format!("{source}: {line}{message}")))
        })?;
        let mut settings = Settings::default();
        for (key, value) in &table {
            settings.set_from(key, Given::Typed(value), Origin::File(source))?;
        }
        Ok(settings)
    }

    /// Sets `key` from `given`, or the error naming the key and `origin`.
    fn set_from(&mut self, key: &str, given: Given<'_>, origin: Origin<'_>) -> Result<(), Error> {
        self.set(key, given)
            .map_err(|problem| Error::config(message(key, given, origin, problem)))
    }
}

/// The message of `problem` with `key`, given as `given` from `origin`.
fn message(key: &str, given: Given<'_>, origin: Origin<'_>, problem: Problem) -> String {
    let what = match (problem, given) {
        (Problem::Unknown, _) => format!("unknown setting {key:?}{}", suggestion(key)),
        (Problem::Expected(expected), Given::Typed(value)) => {
            format!("{key} = {}: expected {expected}", shown(value))
        }
        (Problem::Expected(expected), Given::Text(_)) => format!("expected {expected}"),
    };
    match (origin, problem) {
        (Origin::File(name), _) => format!("{name}: {what}"),
        (Origin::Env(name, _), Problem::Unknown) => {
            format!("environment variable {name}: {what}")
        }
        (Origin::Env(name, value), Problem::Expected(_)) => {
            format!("environment variable {name}={}: {what}", masked(value))
        }
        (Origin::Pair(pair), _) => format!("-s {}: {what}", masked(pair)),
        (Origin::Data, _) => what,
    }
}

/// ` (did you mean "KEY"?)` for the known key closest to `key`, when it
/// is close (at most two edits, or a quarter of the key for long ones).
fn suggestion(key: &str) -> String {
    let wanted = key.to_ascii_lowercase().replace('-', "_");
    let closest = KEYS
        .iter()
        .map(|k| (strsim::osa_distance(&wanted, k), *k))
        .min();
    match closest {
        Some((edits, k)) if edits <= (k.len() / 4).max(2) => format!(" (did you mean {k:?}?)"),
        _ => String::new(),
    }
}

/// The line (from 1) of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// `text` with any URL credentials in it masked.
fn masked(text: &str) -> String {
    if text.contains("://") {
        crate::redact::text(text)
    } else {
        text.to_string()
    }
}

/// A value as a TOML file would hold it, URL credentials masked.
fn shown(value: &Value) -> String {
    match value {
        Value::String(text) => format!("{:?}", masked(text)),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(shown).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// A value printed as [`shown`] prints it.
        struct Shown(Value);
        impl fmt::Debug for Shown {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&shown(&self.0))
            }
        }
        let mut out = f.debug_struct("Settings");
        for (key, value) in self.entries() {
            out.field(key, &Shown(value));
        }
        out.finish()
    }
}

/// A map of the keys that hold a value, each as a TOML file would hold it
/// (durations as `"1m 30s"`).
impl Serialize for Settings {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let entries = self.entries();
        let mut map = serializer.serialize_map(Some(entries.len()))?;
        for (key, value) in &entries {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// A map of keys to values, written as in a TOML file; a `null` value
/// (JSON) is left out. An unknown key or a wrong value fails with the
/// message [`Settings::load`] gives, without a source.
impl<'de> Deserialize<'de> for Settings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, Option<Value>>::deserialize(deserializer)?;
        let mut settings = Settings::default();
        for (key, value) in &map {
            if let Some(value) = value {
                let given = Given::Typed(value);
                settings
                    .set(key, given)
                    .map_err(|p| D::Error::custom(message(key, given, Origin::Data, p)))?;
            }
        }
        Ok(settings)
    }
}
