use std::path::PathBuf;
use std::time::Duration;

use toml::Value;

use crate::actors::test_support::TestSpider;
use crate::builder::{Config, Crawler, CrawlerBuilder, ThreadLayout};
use crate::dedupe::DupeMode;
#[cfg(feature = "distributed")]
use crate::distributed::RedisOptions;
use crate::error::{Error, ErrorKind};
use crate::http::tls::{Pem, TlsRoots, TlsVersion};
use crate::httpcache::{CachePolicy, HttpCacheOptions};
use crate::politeness::AutoThrottle;
use crate::retry::RetryPolicy;
use crate::settings::{Settings, KEYS};

/// `Settings::load_from` with `-s` pairs only.
fn pairs(pairs: &[&str]) -> Settings {
    let pairs: Vec<String> = pairs.iter().map(|p| p.to_string()).collect();
    Settings::load_from(None, Vec::new(), &pairs).unwrap()
}

/// The message of a configuration error.
fn config_message(e: Error) -> String {
    match e.kind() {
        ErrorKind::Config(m) => m.clone(),
        other => panic!("not a configuration error: {other:?}"),
    }
}

/// A builder with every default.
fn builder() -> CrawlerBuilder<TestSpider> {
    Crawler::builder(TestSpider::default())
}

/// The plain settings `b` builds to.
fn built(b: CrawlerBuilder<TestSpider>) -> Config {
    b.build().expect("the configuration builds").settings
}

/// One key set to a value other than its default, and what the built
/// configuration then holds.
struct Row {
    key: &'static str,
    /// The value as written in a TOML file.
    value: String,
    /// Other lines the key needs (a Redis URL for the Redis options).
    with: String,
    check: fn(&Config) -> bool,
}

fn row(key: &'static str, value: &str, check: fn(&Config) -> bool) -> Row {
    Row {
        key,
        value: value.to_string(),
        with: String::new(),
        check,
    }
}

impl Row {
    /// The row with `lines` written before the key.
    fn with(mut self, lines: impl Into<String>) -> Row {
        self.with = lines.into();
        self
    }
}

/// The Redis URL the Redis options' rows need.
#[cfg(feature = "distributed")]
const REDIS: &str = "redis = \"redis://127.0.0.1:1/0\"";

/// The Redis options of `c`, with every default if there are none.
#[cfg(feature = "distributed")]
fn redis_of(c: &Config) -> RedisOptions {
    c.redis.clone().unwrap_or_else(|| RedisOptions::new(""))
}

/// The directory the HTTP cache's rows need (a crawl without a job
/// directory must name one).
const CACHE_DIR: &str = "http_cache_dir = \"cache\"";

/// The HTTP cache's options of `c`, with every default if it is off.
fn cache_of(c: &Config) -> HttpCacheOptions {
    c.http_cache.clone().unwrap_or_default()
}

/// TOML text of a path.
fn path_value(p: &std::path::Path) -> String {
    Value::String(p.to_string_lossy().into_owned()).to_string()
}

/// A root certificate, a client certificate and its key, as PEM files in
/// `dir` (`ca.pem`, `me.pem`, `me.key`).
fn tls_files(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["me.example".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let paths = (dir.join("ca.pem"), dir.join("me.pem"), dir.join("me.key"));
    std::fs::write(&paths.0, cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// A row for every key; `dir` is a directory the path keys may use.
fn rows(dir: &std::path::Path) -> Vec<Row> {
    let (ca, cert, key) = tls_files(dir);
    let rows = vec![
        row("concurrency", "7", |c| c.scheduler.concurrency == 7),
        row("per_host_concurrency", "3", |c| {
            c.scheduler.slots.concurrency == 3
        }),
        row("download_delay", "\"250ms\"", |c| {
            c.scheduler.slots.delay == Duration::from_millis(250)
        }),
        row("randomize_delay", "false", |c| {
            !c.scheduler.slots.randomize_delay
        }),
        row("autothrottle", "true", |c| {
            c.scheduler.slots.autothrottle == Some(AutoThrottle::default())
        }),
        row("autothrottle_start_delay", "\"2s\"", |c| {
            c.scheduler
                .slots
                .autothrottle
                .as_ref()
                .is_some_and(|a| a.start_delay == Duration::from_secs(2))
        }),
        row("autothrottle_max_delay", "\"90s\"", |c| {
            c.scheduler
                .slots
                .autothrottle
                .as_ref()
                .is_some_and(|a| a.max_delay == Duration::from_secs(90))
        }),
        row("autothrottle_target_concurrency", "2.5", |c| {
            c.scheduler
                .slots
                .autothrottle
                .as_ref()
                .is_some_and(|a| a.target_concurrency == 2.5)
        }),
        row("host_rate_limit", "4.5", |c| {
            c.scheduler.slots.host_rate == Some(4.5)
        }),
        row("rate_limit", "10", |c| {
            c.scheduler.slots.global_rate == Some(10.0)
        }),
        row("depth_limit", "3", |c| c.scheduler.depth_limit == Some(3)),
        row("depth_priority", "-2", |c| c.scheduler.depth_priority == -2),
        row("allowed_domains", "[\"A.Example\", \"b.example\"]", |c| {
            c.scheduler.allowed_domains == ["a.example", "b.example"]
        }),
        row("obey_robots_txt", "true", |c| {
            c.obey_robots && c.scheduler.robots_agent.as_deref() == Some(crate::DEFAULT_USER_AGENT)
        }),
        row("retry", "false", |c| c.retry.is_none()),
        row("retry_times", "5", |c| {
            c.retry.as_ref().is_some_and(|r| r.max_retries == 5)
        }),
        row("retry_http_codes", "[503, 429]", |c| {
            c.retry.as_ref().is_some_and(|r| r.statuses == [503, 429])
        }),
        row("retry_base_delay", "\"1s\"", |c| {
            c.retry
                .as_ref()
                .is_some_and(|r| r.base_delay == Duration::from_secs(1))
        }),
        row("retry_max_delay", "\"2m\"", |c| {
            c.retry
                .as_ref()
                .is_some_and(|r| r.max_delay == Duration::from_secs(120))
        }),
        row("retry_jitter", "false", |c| {
            c.retry.as_ref().is_some_and(|r| !r.jitter)
        }),
        row("follow_redirects", "false", |c| !c.follow_redirects),
        row("cross_origin_headers", "[\"User-Agent\"]", |c| {
            c.cross_origin_headers == ["user-agent"]
        }),
        row("block_private_addresses", "true", |c| {
            c.block_private && c.address_guard.is_some()
        }),
        row("allow_addresses", "[\"10.0.0.7\", \"10.1.0.0/16\"]", |c| {
            c.address_exceptions == ["10.0.0.7", "10.1.0.0/16"]
        }),
        row("tls_root_files", &format!("[{}]", path_value(&ca)), |c| {
            matches!(&c.tls.extra_roots[..], [Pem::File(p)] if p.ends_with("ca.pem"))
                && c.tls_ready.is_some()
        }),
        row("tls_roots", "\"extra\"", |c| c.tls.roots == TlsRoots::Extra)
            .with(format!("tls_root_files = [{}]", path_value(&ca))),
        row("tls_client_cert", &path_value(&cert), |c| {
            matches!(&c.tls.identity, Some((Pem::File(c), Pem::File(k))) if c.ends_with("me.pem") && k.ends_with("me.key"))
        })
        .with(format!("tls_client_key = {}", path_value(&key))),
        row("tls_client_key", &path_value(&key), |c| {
            matches!(&c.tls.identity, Some((_, Pem::File(k))) if k.ends_with("me.key"))
        })
        .with(format!("tls_client_cert = {}", path_value(&cert))),
        row("tls_min_version", "\"1.3\"", |c| {
            c.tls.min_version == TlsVersion::Tls13
        }),
        row("danger_accept_invalid_certs", "true", |c| {
            c.tls.danger_accept_invalid_certs
        }),
        row("http1_only", "true", |c| c.tls.http1_only),
        row("cookies", "false", |c| !c.cookies),
        row("cookie_limit_per_domain", "20", |c| {
            c.cookie_limits.per_domain == 20 && c.cookie_limits.total == 3000
        }),
        row("cookie_limit_total", "100", |c| {
            c.cookie_limits.total == 100 && c.cookie_limits.per_domain == 50
        }),
        row("drain_timeout", "\"5s\"", |c| {
            c.drain_timeout == Duration::from_secs(5)
        }),
        row("finish_timeout", "\"10s\"", |c| {
            c.finish_timeout == Duration::from_secs(10)
        }),
        row("close_after_items", "10", |c| c.limits.items == Some(10)),
        row("close_after_pages", "20", |c| c.limits.pages == Some(20)),
        row("close_after_errors", "30", |c| c.limits.errors == Some(30)),
        row("close_after_time", "\"1h\"", |c| {
            c.limits.timeout == Some(Duration::from_secs(3600))
        }),
        row("memory_warning", "\"1GiB\"", |c| {
            c.limits.memory_warning == Some(1 << 30)
        }),
        row("memory_limit", "\"2GB\"", |c| {
            c.limits.memory_limit == Some(2_000_000_000)
        }),
        row("memory_check_interval", "\"5s\"", |c| {
            c.limits.memory_every == Duration::from_secs(5)
        }),
        row("downloaders", "3", |c| c.downloaders == 3),
        row("log_stats", "\"off\"", |c| c.log_stats_every.is_none()),
        row("thread_layout", "\"single\"", |c| {
            c.layout == ThreadLayout::Single
        }),
        row("dedupe", "false", |c| !c.dedupe),
        row("bloom_capacity", "1000", |c| c.bloom_capacity == 1000),
        row("bloom_false_positive_rate", "0.01", |c| {
            c.bloom_rate == 0.01
        }),
        row("dupe_mode", "\"probabilistic\"", |c| {
            c.dupe_mode == DupeMode::Probabilistic
        }),
        row("timeout", "\"45s\"", |c| {
            c.timeout == Duration::from_secs(45)
        }),
        row("max_body", "\"16MiB\"", |c| c.max_body == 16 << 20),
        Row {
            key: "stream_dir",
            value: format!("[{}]", path_value(&dir.join("streams"))),
            with: String::new(),
            check: |c| c.stream_dirs.len() == 1 && c.stream_dirs[0].ends_with("streams"),
        },
        row("warn_body", "1000", |c| c.warn_body == 1000),
        row("user_agent", "\"bot/2\"", |c| c.user_agent == "bot/2"),
        row("max_crashes", "5", |c| c.max_crashes == 5),
        row("flush_interval", "\"3s\"", |c| {
            c.flush_interval == Duration::from_secs(3)
        }),
        row("proxy_from_env", "true", |c| c.proxy_from_env),
        Row {
            key: "job_dir",
            value: path_value(&dir.join("job")),
            with: String::new(),
            check: |c| c.job_dir.as_ref().is_some_and(|d| d.ends_with("job")),
        },
        row("frontier_memory", "10", |c| c.frontier_memory == 10),
        Row {
            key: "frontier_dir",
            value: path_value(&dir.join("frontier")),
            with: String::new(),
            check: |c| {
                c.frontier_dir
                    .as_ref()
                    .is_some_and(|d| d.ends_with("frontier"))
            },
        },
        row("checkpoint_every", "\"30s\"", |c| {
            c.checkpoints.every == Duration::from_secs(30)
        }),
        row("checkpoint_every_requests", "50", |c| {
            c.checkpoints.every_requests == 50
        }),
        row("rerun_start_requests", "true", |c| c.rerun_start_requests),
        // Re-crawls keep their pages in a job directory (never opened by
        // a build).
        row("recrawl", "true", |c| c.recrawl).with("job_dir = \"job\""),
        row("recrawl_unchanged_items", "true", |c| {
            c.recrawl_unchanged_items
        })
        .with("job_dir = \"job\""),
        row("recrawl_sitemap_lastmod", "false", |c| {
            !c.recrawl_sitemap_lastmod
        }),
        // In the job directory: the key alone turns the cache on.
        row("http_cache", "true", |c| {
            c.http_cache == Some(HttpCacheOptions::default())
        })
        .with("job_dir = \"job\""),
        row("http_cache_policy", "\"rfc9111\"", |c| {
            cache_of(c).policy == CachePolicy::Rfc9111
        })
        .with(CACHE_DIR),
        row("http_cache_dir", "\"cache\"", |c| {
            cache_of(c).dir == Some("cache".into())
        }),
        row("http_cache_expiration", "\"1h\"", |c| {
            cache_of(c).expiration == Duration::from_secs(3600)
        })
        .with(CACHE_DIR),
        row("http_cache_max_bytes", "\"10MiB\"", |c| {
            cache_of(c).max_bytes == 10 << 20
        })
        .with(CACHE_DIR),
        row("http_cache_ignore_statuses", "[500, 503]", |c| {
            cache_of(c).ignore_statuses == [500, 503]
        })
        .with(CACHE_DIR),
    ];
    #[cfg(feature = "distributed")]
    let rows = rows.into_iter().chain(redis_rows()).collect();
    rows
}

/// The keys a build has: the `redis*` ones only with the `distributed`
/// feature.
fn built_keys() -> Vec<&'static str> {
    let distributed = cfg!(feature = "distributed");
    KEYS.iter()
        .copied()
        .filter(|k| distributed || !k.starts_with("redis"))
        .collect()
}

/// One row per Redis option.
#[cfg(feature = "distributed")]
fn redis_rows() -> Vec<Row> {
    vec![
        row("redis", "\"redis://127.0.0.1:1/0\"", |c| {
            c.redis
                .as_ref()
                .is_some_and(|r| r.url == "redis://127.0.0.1:1/0")
        }),
        row("redis_crawl_id", "\"c1\"", |c| {
            redis_of(c).crawl_id.as_deref() == Some("c1")
        })
        .with(REDIS),
        row("redis_worker_id", "\"w1\"", |c| {
            redis_of(c).worker_id.as_deref() == Some("w1")
        })
        .with(REDIS),
        row("redis_lease_ttl", "\"5s\"", |c| {
            redis_of(c).lease_ttl == Duration::from_secs(5)
        })
        .with(REDIS),
        row("redis_poll", "\"50ms\"", |c| {
            redis_of(c).poll == Duration::from_millis(50)
        })
        .with(REDIS),
        row("redis_host_rate", "2.5", |c| {
            redis_of(c).host_rate == Some(2.5)
        })
        .with(REDIS),
        row("redis_op_timeout", "\"3s\"", |c| {
            redis_of(c).op_timeout == Duration::from_secs(3)
        })
        .with(REDIS),
        row("redis_ack_interval", "\"250ms\"", |c| {
            redis_of(c).ack_interval == Duration::from_millis(250)
        })
        .with(REDIS),
    ]
}

#[test]
fn every_key_reaches_the_built_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let rows = rows(dir.path());
    let keys: Vec<&str> = rows.iter().map(|r| r.key).collect();
    assert_eq!(
        keys,
        built_keys(),
        "one row per key, in the order of the fields"
    );
    let defaults = built(builder());
    for r in &rows {
        assert!(
            !(r.check)(&defaults),
            "{}: the default already passes",
            r.key
        );
        let text = format!("{}\n{} = {}\n", r.with, r.key, r.value);
        let settings =
            Settings::from_toml_str(&text, "test").unwrap_or_else(|e| panic!("{}: {e}", r.key));
        let config = built(builder().settings(&settings));
        assert!((r.check)(&config), "{}: not applied", r.key);
        // Written back, the value reads the same.
        let again = Settings::from_toml_str(&toml::to_string(&settings).unwrap(), "again")
            .unwrap_or_else(|e| panic!("{}: {e}", r.key));
        assert_eq!(again, settings, "{}", r.key);
    }
}

#[test]
fn every_key_at_once_round_trips_through_json_and_toml() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for r in rows(dir.path()) {
        text.push_str(&format!("{} = {}\n", r.key, r.value));
    }
    let settings = Settings::from_toml_str(&text, "test").unwrap();
    assert_eq!(settings.entries().len(), built_keys().len());
    let json = serde_json::to_string(&settings).unwrap();
    assert_eq!(serde_json::from_str::<Settings>(&json).unwrap(), settings);
    let toml_text = toml::to_string(&settings).unwrap();
    assert_eq!(Settings::from_toml_str(&toml_text, "t").unwrap(), settings);
    // Durations are written as people write them.
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["close_after_time"], "1h");
    assert_eq!(value["retry_max_delay"], "2m");
    assert_eq!(value["log_stats"], "off");
    assert_eq!(value["max_body"], 16 << 20);
}

#[test]
fn command_line_over_environment_over_file_over_the_builder() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crawl.toml");
    std::fs::write(
        &file,
        "concurrency = 10\ndownload_delay = \"1s\"\nuser_agent = \"from-file\"\n\
         max_body = \"1MiB\"\n",
    )
    .unwrap();
    let env = [
        ("SPINNERET_CONCURRENCY".to_string(), "20".to_string()),
        ("SPINNERET_DOWNLOAD_DELAY".to_string(), "2s".to_string()),
        ("HOME".to_string(), "/root".to_string()),
    ];
    let pairs = ["concurrency=25".to_string(), "concurrency=30".to_string()];
    let settings = Settings::load_from(Some(&file), env, &pairs).unwrap();
    let config = built(
        builder()
            .concurrency(1)
            .per_host_concurrency(5)
            .timeout(Duration::from_secs(9))
            .settings(&settings),
    );
    assert_eq!(config.scheduler.concurrency, 30, "the last -s pair");
    assert_eq!(
        config.scheduler.slots.delay,
        Duration::from_secs(2),
        "the environment"
    );
    assert_eq!(config.user_agent, "from-file");
    assert_eq!(config.max_body, 1 << 20);
    assert_eq!(config.scheduler.slots.concurrency, 5, "the builder's");
    assert_eq!(config.timeout, Duration::from_secs(9), "the builder's");
    assert_eq!(
        config.warn_body,
        crate::http::DEFAULT_WARN_BODY,
        "the default"
    );
}

#[test]
fn a_groups_values_change_the_builders_policy_and_keep_the_rest() {
    let s = pairs;
    let policy = RetryPolicy {
        max_retries: 7,
        statuses: vec![500],
        ..RetryPolicy::default()
    };
    let c = built(
        builder()
            .retry(policy.clone())
            .settings(&s(&["retry_base_delay=3s"])),
    );
    let expected = RetryPolicy {
        base_delay: Duration::from_secs(3),
        ..policy
    };
    assert_eq!(c.retry, Some(expected));

    // Retries off in code: a retry value turns them on, `retry=false` wins.
    let c = built(builder().no_retry().settings(&s(&["retry_times=4"])));
    let on = RetryPolicy {
        max_retries: 4,
        ..RetryPolicy::default()
    };
    assert_eq!(c.retry, Some(on));
    let c = built(builder().settings(&s(&["retry=false", "retry_times=4"])));
    assert_eq!(c.retry, None);
    let c = built(builder().no_retry().settings(&s(&["retry=true"])));
    assert_eq!(c.retry, Some(RetryPolicy::default()));

    let throttle = AutoThrottle {
        start_delay: Duration::from_secs(1),
        ..AutoThrottle::default()
    };
    let c = built(
        builder()
            .autothrottle(throttle)
            .settings(&s(&["autothrottle_max_delay=9s"])),
    );
    let expected = AutoThrottle {
        start_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(9),
        ..AutoThrottle::default()
    };
    assert_eq!(c.scheduler.slots.autothrottle, Some(expected));
    let c = built(
        builder()
            .autothrottle(AutoThrottle::default())
            .settings(&s(&["autothrottle=off"])),
    );
    assert_eq!(c.scheduler.slots.autothrottle, None);

    let c = built(builder().settings(&s(&["log_stats=15s"])));
    assert_eq!(c.log_stats_every, Some(Duration::from_secs(15)));

    let c = built(
        builder()
            .cookie_limits(10, 100)
            .settings(&s(&["cookie_limit_total=500"])),
    );
    assert_eq!(
        (c.cookie_limits.per_domain, c.cookie_limits.total),
        (10, 500)
    );
    let c = built(
        builder()
            .bloom(5000, 0.05)
            .settings(&s(&["bloom_capacity=6000"])),
    );
    assert_eq!((c.bloom_capacity, c.bloom_rate), (6000, 0.05));

    #[cfg(feature = "distributed")]
    a_redis_setting_changes_the_builders_options();
}

/// The Redis options' part of the test above.
#[cfg(feature = "distributed")]
fn a_redis_setting_changes_the_builders_options() {
    let options = RedisOptions {
        crawl_id: Some("mine".into()),
        ..RedisOptions::new("redis://127.0.0.1:1/0")
    };
    let c = built(
        builder()
            .redis_options(options)
            .settings(&pairs(&["redis=redis://127.0.0.1:2/3"])),
    );
    let r = c.redis.unwrap();
    assert_eq!(
        (r.url.as_str(), r.crawl_id.as_deref()),
        ("redis://127.0.0.1:2/3", Some("mine"))
    );
}

#[cfg(feature = "distributed")]
#[test]
fn redis_options_without_a_redis_url_fail_the_build() {
    let settings = pairs(&["redis_lease_ttl=5s"]);
    let e = builder().settings(&settings).build().err().unwrap();
    assert_eq!(
        config_message(e),
        "setting redis_lease_ttl needs a Redis URL (the redis setting)"
    );
    let c = built(builder().redis("redis://127.0.0.1:1/0").settings(&settings));
    assert_eq!(c.redis.unwrap().lease_ttl, Duration::from_secs(5));
}

#[cfg(not(feature = "distributed"))]
#[test]
fn without_the_distributed_feature_a_redis_setting_fails_the_build_by_name() {
    let redis_keys: Vec<&str> = KEYS
        .iter()
        .copied()
        .filter(|k| k.starts_with("redis"))
        .collect();
    assert_eq!(redis_keys.len(), 8);
    for key in redis_keys {
        let value = match key {
            "redis_host_rate" => "2.5",
            "redis_lease_ttl" | "redis_poll" | "redis_op_timeout" | "redis_ack_interval" => "5s",
            _ => "redis://127.0.0.1:1/0",
        };
        let settings = pairs(&[&format!("{key}={value}")]);
        let e = builder().settings(&settings).build().err().unwrap();
        assert_eq!(
            config_message(e),
            format!("setting {key} needs spinneret's `distributed` feature (a crawl shared through Redis)"),
            "{key}"
        );
    }
    // With no Redis setting, the same build goes through.
    built(builder().settings(&pairs(&["concurrency=3"])));
}

#[test]
fn the_http_cache_settings_keep_the_builders_options_and_refuse_what_cannot_work() {
    let options = HttpCacheOptions {
        dir: Some("mine".into()),
        ignore_statuses: vec![404],
        ..HttpCacheOptions::default()
    };
    let c = built(
        builder()
            .http_cache(options.clone())
            .settings(&pairs(&["http_cache_policy=RFC9111"])),
    );
    let expected = HttpCacheOptions {
        policy: CachePolicy::Rfc9111,
        ..options
    };
    assert_eq!(c.http_cache, Some(expected));
    let off = built(
        builder()
            .http_cache(HttpCacheOptions::default())
            .settings(&pairs(&["http_cache=false", "http_cache_policy=rfc9111"])),
    );
    assert_eq!(off.http_cache, None);
    let load = |pair: &str| Settings::load_from(None, Vec::new(), &[pair.to_string()]);
    assert_eq!(
        config_message(load("http_cache_policy=rfc2616").unwrap_err()),
        "-s http_cache_policy=rfc2616: expected one of dummy, rfc9111"
    );
    let file = Settings::from_toml_str("http_cache_policy = \"lru\"", "crawl.toml").unwrap_err();
    assert_eq!(
        config_message(file),
        "crawl.toml: http_cache_policy = \"lru\": expected one of dummy, rfc9111"
    );
    assert_eq!(
        config_message(load("http_cache_max_bytes=0").unwrap_err()),
        "-s http_cache_max_bytes=0: expected a positive size such as 1048576, \"64MiB\" or \"500KB\""
    );
    // Neither a cache directory nor a job directory.
    let e = builder()
        .settings(&pairs(&["http_cache=true"]))
        .build()
        .err()
        .unwrap();
    assert_eq!(
        config_message(e),
        "the HTTP cache needs a directory: give one (http_cache_dir) or a job directory"
    );
    let with_job = pairs(&["http_cache=true", "job_dir=job"]);
    assert!(built(builder().settings(&with_job)).http_cache.is_some());
    let zero = HttpCacheOptions {
        dir: Some("c".into()),
        max_bytes: 0,
        ..HttpCacheOptions::default()
    };
    let e = builder().http_cache(zero).build().err().unwrap();
    assert_eq!(
        config_message(e),
        "the HTTP cache's size bound (http_cache_max_bytes) must be positive"
    );
}
