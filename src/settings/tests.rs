use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::error::ErrorKind;

/// The message of a configuration error.
fn config_message(e: Error) -> String {
    match e.kind() {
        ErrorKind::Config(m) => m.clone(),
        other => panic!("not a configuration error: {other:?}"),
    }
}

/// `Settings::load_from` with text sources only.
fn load(env: &[(&str, &str)], pairs: &[&str]) -> Result<Settings, Error> {
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let pairs: Vec<String> = pairs.iter().map(|p| p.to_string()).collect();
    Settings::load_from(None, env, &pairs)
}

#[test]
fn merge_keeps_what_the_settings_laid_over_leave_out() {
    let mut base = load(&[], &["concurrency=4", "user_agent=base", "timeout=5s"]).unwrap();
    let over = load(&[], &["concurrency=8", "dedupe=false"]).unwrap();
    base.merge(&over);
    let expected = load(
        &[],
        &[
            "concurrency=8",
            "user_agent=base",
            "timeout=5s",
            "dedupe=false",
        ],
    )
    .unwrap();
    assert_eq!(base, expected);
}

#[test]
fn an_unknown_key_is_named_with_its_source_and_the_key_meant() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crawl.toml");
    std::fs::write(&file, "concurency = 8\n").unwrap();
    let e = Settings::load_from(Some(&file), Vec::new(), &[]).unwrap_err();
    assert_eq!(
        config_message(e),
        format!(
            "settings file {}: unknown setting \"concurency\" (did you mean \"concurrency\"?)",
            file.display()
        )
    );
    let e = load(&[("SPINNERET_CONCURENCY", "8")], &[]).unwrap_err();
    assert_eq!(
        config_message(e),
        "environment variable SPINNERET_CONCURENCY: unknown setting \"concurency\" \
         (did you mean \"concurrency\"?)"
    );
    let e = load(&[], &["concurency=8"]).unwrap_err();
    assert_eq!(
        config_message(e),
        "-s concurency=8: unknown setting \"concurency\" (did you mean \"concurrency\"?)"
    );
    let e = serde_json::from_str::<Settings>(r#"{"concurency": 8}"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown setting \"concurency\" (did you mean \"concurrency\"?)"
    );
    // Nothing close: no suggestion; a hyphenated key is pointed to its name.
    let e = load(&[], &["colour=red"]).unwrap_err();
    assert_eq!(
        config_message(e),
        "-s colour=red: unknown setting \"colour\""
    );
    let e = load(&[], &["per-host-concurrency=2"]).unwrap_err();
    assert_eq!(
        config_message(e),
        "-s per-host-concurrency=2: unknown setting \"per-host-concurrency\" \
         (did you mean \"per_host_concurrency\"?)"
    );
    // Variables without the prefix are not settings.
    assert_eq!(
        load(&[("CONCURENCY", "8")], &[]).unwrap(),
        Settings::default()
    );
}

#[test]
fn a_wrong_value_names_its_key_its_source_and_what_was_expected() {
    let e = |pairs: &[&str]| config_message(load(&[], pairs).unwrap_err());
    assert_eq!(
        e(&["concurrency=many"]),
        "-s concurrency=many: expected a whole number, at least 1"
    );
    assert_eq!(
        e(&["concurrency=-1"]),
        "-s concurrency=-1: expected a whole number, at least 1"
    );
    assert_eq!(e(&["concurrency"]), "-s concurrency: expected KEY=VALUE");
    assert_eq!(
        e(&["thread_layout=wide"]),
        "-s thread_layout=wide: expected one of compact, single, spread"
    );
    assert_eq!(
        e(&["max_body=lots"]),
        "-s max_body=lots: expected a size such as 1048576, \"64MiB\" or \"500KB\""
    );
    assert_eq!(
        e(&["retry_http_codes=503,42"]),
        "-s retry_http_codes=503,42: expected a list of HTTP status codes such as \
         [503, 429] (as text: 503,429)"
    );
    assert_eq!(
        e(&["dedupe=maybe"]),
        "-s dedupe=maybe: expected true or false"
    );
    let env = load(&[("SPINNERET_DOWNLOAD_DELAY", "soon")], &[]).unwrap_err();
    assert_eq!(
        config_message(env),
        "environment variable SPINNERET_DOWNLOAD_DELAY=soon: expected a duration \
         such as \"250ms\", \"30s\" or \"1m 30s\""
    );
    let file =
        |text: &str| config_message(Settings::from_toml_str(text, "crawl.toml").unwrap_err());
    assert_eq!(
        file("concurrency = \"8\""),
        "crawl.toml: concurrency = \"8\": expected a whole number, at least 1"
    );
    assert_eq!(
        file("timeout = 30"),
        "crawl.toml: timeout = 30: expected a positive duration such as \"250ms\", \"30s\" or \
         \"1m 30s\""
    );
    assert_eq!(
        file("allowed_domains = \"a.example\""),
        "crawl.toml: allowed_domains = \"a.example\": expected a list such as \
         [\"a.example\", \"b.example\"] (as text: a.example,b.example)"
    );
    assert_eq!(
        file("retry = { times = 3 }"),
        "crawl.toml: retry = { times = 3 }: expected true or false"
    );
    let syntax = file("concurrency = 8\nuser_agent = \"unclosed\n");
    assert!(syntax.starts_with("crawl.toml: line 2: "), "{syntax}");
    let json = serde_json::from_str::<Settings>(r#"{"log_stats": true}"#).unwrap_err();
    assert!(
        json.to_string()
            .starts_with("log_stats = true: expected a duration such as \"60s\", or off"),
        "{json}"
    );
}

#[test]
fn lists_are_arrays_or_comma_separated_text() {
    let s = load(
        &[("SPINNERET_ALLOWED_DOMAINS", " a.example, b.example,,")],
        &[
            "retry_http_codes=503, 429",
            "stream_dir=/a,/b",
            "cross_origin_headers=[\"Accept\"]",
        ],
    )
    .unwrap();
    assert_eq!(s.allowed_domains.unwrap(), ["a.example", "b.example"]);
    assert_eq!(s.retry_http_codes.unwrap(), [503, 429]);
    assert_eq!(
        s.stream_dir.unwrap(),
        [PathBuf::from("/a"), PathBuf::from("/b")]
    );
    assert_eq!(s.cross_origin_headers.unwrap(), ["Accept"]);
    let t = Settings::from_toml_str("allow_addresses = []", "t").unwrap();
    assert_eq!(t.allow_addresses.unwrap(), Vec::<String>::new());
}

#[test]
fn durations_sizes_switches_and_choices_as_people_write_them() {
    let delay = |text: &str| {
        load(&[], &[&format!("download_delay={text}")])
            .unwrap()
            .download_delay
    };
    assert_eq!(delay("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(delay("30s"), Some(Duration::from_secs(30)));
    assert_eq!(delay("1m 30s"), Some(Duration::from_secs(90)));
    assert_eq!(delay("2h"), Some(Duration::from_secs(7200)));
    let size = |text: &str| load(&[], &[&format!("max_body={text}")]).unwrap().max_body;
    assert_eq!(size("64MiB"), Some(64 << 20));
    assert_eq!(size("64 mib"), Some(64 << 20));
    assert_eq!(size("500KB"), Some(500_000));
    assert_eq!(size("1.5KiB"), Some(1536));
    assert_eq!(size("1048576"), Some(1_048_576));
    let typed = Settings::from_toml_str("memory_limit = 4096\nwarn_body = \"2MB\"", "t").unwrap();
    assert_eq!(
        (typed.memory_limit, typed.warn_body),
        (Some(4096), Some(2_000_000))
    );
    let log = |text: &str| {
        Settings::from_toml_str(&format!("log_stats = {text}"), "t")
            .unwrap()
            .log_stats
    };
    assert_eq!(log("\"off\""), Some(Duration::ZERO));
    assert_eq!(log("false"), Some(Duration::ZERO));
    assert_eq!(log("\"30s\""), Some(Duration::from_secs(30)));
    for (text, on) in [
        ("on", true),
        ("TRUE", true),
        ("1", true),
        ("yes", true),
        ("off", false),
        ("no", false),
        ("0", false),
    ] {
        assert_eq!(
            load(&[], &[&format!("cookies={text}")]).unwrap().cookies,
            Some(on),
            "{text}"
        );
    }
    let s = load(
        &[],
        &[
            "dupe_mode=Exact",
            "thread_layout=spread",
            "frontier_memory=10_000",
        ],
    )
    .unwrap();
    assert_eq!(s.dupe_mode, Some(DupeMode::Exact));
    assert_eq!(s.thread_layout, Some(ThreadLayout::Spread));
    assert_eq!(s.frontier_memory, Some(10_000));
    // Text is taken as given, whatever TOML would make of it.
    assert_eq!(
        load(&[], &["user_agent=1.0"])
            .unwrap()
            .user_agent
            .as_deref(),
        Some("1.0")
    );
    assert_eq!(
        load(&[], &["redis_crawl_id=42"])
            .unwrap()
            .redis_crawl_id
            .as_deref(),
        Some("42")
    );
}

#[test]
fn json_null_leaves_a_key_out() {
    let s: Settings =
        serde_json::from_str(r#"{"concurrency": 4, "download_delay": "250ms", "timeout": null}"#)
            .unwrap();
    let expected = load(&[], &["concurrency=4", "download_delay=250ms"]).unwrap();
    assert_eq!(s, expected);
}

#[test]
fn debug_and_errors_keep_url_credentials_out() {
    let s = load(
        &[],
        &["concurrency=8", "redis=redis://:hunter2@127.0.0.1:6379/0"],
    )
    .unwrap();
    assert_eq!(
        format!("{s:?}"),
        "Settings { concurrency: 8, redis: \"redis://***:***@127.0.0.1:6379/0\" }"
    );
    let e = load(&[], &["redis_url=redis://user:hunter2@127.0.0.1/0"]).unwrap_err();
    assert_eq!(
        config_message(e),
        "-s redis_url=redis://***@127.0.0.1/0: unknown setting \"redis_url\""
    );
    let e = Settings::from_toml_str("redis = [\"redis://u:hunter2@h/0\"]", "t").unwrap_err();
    assert_eq!(
        config_message(e),
        "t: redis = [\"redis://***:***@h/0\"]: expected text"
    );
    assert_eq!(format!("{:?}", Settings::default()), "Settings");
}

#[test]
fn a_value_out_of_its_keys_range_names_the_key_and_its_source() {
    let e = |pairs: &[&str]| config_message(load(&[], pairs).unwrap_err());
    assert_eq!(
        e(&["flush_interval=0s"]),
        "-s flush_interval=0s: expected a positive duration such as \"250ms\", \"30s\" or \
         \"1m 30s\""
    );
    assert_eq!(
        e(&["bloom_false_positive_rate=2"]),
        "-s bloom_false_positive_rate=2: expected a number above 0 and below 1"
    );
    assert_eq!(
        e(&["bloom_false_positive_rate=0"]),
        "-s bloom_false_positive_rate=0: expected a number above 0 and below 1"
    );
    // Named as out of range before any Redis URL is asked for.
    assert_eq!(
        e(&["redis_lease_ttl=0s"]),
        "-s redis_lease_ttl=0s: expected a duration of at least 300ms"
    );
    assert_eq!(
        e(&["rate_limit=0"]),
        "-s rate_limit=0: expected a positive number"
    );
    assert_eq!(
        e(&["host_rate_limit=inf"]),
        "-s host_rate_limit=inf: expected a positive number"
    );
    assert_eq!(
        e(&["close_after_pages=0"]),
        "-s close_after_pages=0: expected a whole number, at least 1"
    );
    assert_eq!(
        e(&["memory_limit=0"]),
        "-s memory_limit=0: expected a positive size such as 1048576, \"64MiB\" or \"500KB\""
    );
    let env = load(&[("SPINNERET_CONCURRENCY", "0")], &[]).unwrap_err();
    assert_eq!(
        config_message(env),
        "environment variable SPINNERET_CONCURRENCY=0: expected a whole number, at least 1"
    );
    let file = Settings::from_toml_str("timeout = \"0s\"", "crawl.toml").unwrap_err();
    assert_eq!(
        config_message(file),
        "crawl.toml: timeout = \"0s\": expected a positive duration such as \"250ms\", \
         \"30s\" or \"1m 30s\""
    );
    // The bounds themselves are in range.
    let ok = load(
        &[],
        &[
            "redis_lease_ttl=300ms",
            "bloom_false_positive_rate=0.5",
            "concurrency=1",
        ],
    )
    .unwrap();
    assert_eq!(ok.redis_lease_ttl, Some(Duration::from_millis(300)));
    assert_eq!(ok.bloom_false_positive_rate, Some(0.5));
    assert_eq!(ok.concurrency, Some(1));
}

#[test]
fn tls_keys_as_people_write_them() {
    let text = "tls_root_files = [\"/etc/ca.pem\", \"own.pem\"]\ntls_roots = \"both\"\n\
                tls_min_version = \"1.3\"\ndanger_accept_invalid_certs = true\nhttp1_only = true\n\
                tls_client_cert = \"me.pem\"\ntls_client_key = \"me.key\"";
    let s = Settings::from_toml_str(text, "t").unwrap();
    let files = ["/etc/ca.pem", "own.pem"].map(PathBuf::from).to_vec();
    assert_eq!(s.tls_root_files, Some(files));
    assert_eq!(s.tls_roots, Some(TlsRoots::Both));
    assert_eq!(s.tls_min_version, Some(TlsVersion::Tls13));
    assert_eq!(
        (s.danger_accept_invalid_certs, s.http1_only),
        (Some(true), Some(true))
    );
    assert_eq!(s.tls_client_cert, Some(PathBuf::from("me.pem")));
    assert_eq!(s.tls_client_key, Some(PathBuf::from("me.key")));
    let env = load(
        &[("SPINNERET_TLS_ROOTS", "extra")],
        &["tls_min_version=1.2"],
    )
    .unwrap();
    assert_eq!(env.tls_roots, Some(TlsRoots::Extra));
    assert_eq!(env.tls_min_version, Some(TlsVersion::Tls12));
    let e = load(&[], &["tls_min_version=1.1"]).unwrap_err();
    assert_eq!(
        config_message(e),
        "-s tls_min_version=1.1: expected \"1.2\" or \"1.3\""
    );
    let e = load(&[], &["tls_roots=mine"]).unwrap_err();
    assert!(
        config_message(e).ends_with("expected one of builtin, system, both, extra"),
        "roots"
    );
}
