//! End-to-end tests of the `spinneret` command (and of a project's own
//! binary, `examples/project.rs`): the built binaries run against fixture
//! sites on 127.0.0.1, with every `SPINNERET_*` variable of the test's
//! environment removed (settings refuse keys they do not know).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use super::cli_support::clean_command;
use super::fixture::{serve, serve_on, spawn_app, Site};
use super::proxy::{proxy_logged_connect_to, proxy_var};

/// A guard against a hung process, not a wait for work.
const PATIENCE: Duration = Duration::from_secs(120);

/// A finished run of a binary.
struct Run {
    /// The exit status (`None`: killed by a signal).
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// The `spinneret` binary.
fn spinneret() -> Command {
    clean_command(Path::new(env!("CARGO_BIN_EXE_spinneret")))
}

/// The project example's binary, which `cargo test` builds beside the
/// test binaries.
fn project() -> Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    let debug = exe.parent().and_then(Path::parent).expect("target/debug");
    let path = debug.join("examples").join("project");
    assert!(
        path.exists(),
        "{} is missing: `cargo test --all-features` builds it \
         (or `cargo build --all-features --example project`)",
        path.display()
    );
    clean_command(&path)
}

/// Runs `command` to its exit (killed and failed after [`PATIENCE`]).
fn run(mut command: Command) -> Run {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = command.spawn().expect("the binary starts");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(out) => {
            let out = out.expect("the binary's output");
            Run {
                code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{command:?} still running after {PATIENCE:?}");
        }
    }
}

/// `spinneret ARGS…`, run to its exit.
fn crawl(args: &[&str]) -> Run {
    let mut command = spinneret();
    command.args(args);
    run(command)
}

/// Every line of `text` as JSON.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// The items' `url`s.
fn urls(items: &[Value]) -> BTreeSet<String> {
    items
        .iter()
        .map(|i| i["url"].as_str().expect("a url").to_string())
        .collect()
}

/// The URLs of tree pages `pages` of `site`.
fn pages(site: &Site, pages: impl IntoIterator<Item = usize>) -> BTreeSet<String> {
    pages
        .into_iter()
        .map(|n| site.url(&format!("/p/{n}")))
        .collect()
}

/// Tree page `n`'s depth: hops from `/p/0`.
fn depth(n: usize) -> u64 {
    u64::from((n + 1).ilog2())
}

/// `name` in a new temporary directory (kept while the guard lives).
fn temp(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join(name);
    (dir, path)
}

/// `path` as a `&str` argument.
fn arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

#[test]
fn crawl_writes_exactly_one_json_line_per_page() {
    let site = serve(15);
    let (_dir, out) = temp("items.jsonl");
    let start = site.url("/p/0");
    let args = [
        "crawl",
        &start,
        "-o",
        arg(&out),
        "--field",
        "h1=h1",
        "--field",
        "first=a@href",
        "--field",
        "price=.price",
    ];
    let done = crawl(&args);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let text = std::fs::read_to_string(&out).unwrap();
    let items = json_lines(&text);
    assert_eq!(items.len(), 15, "{text}");
    assert_eq!(urls(&items), pages(&site, 0..15));
    for item in &items {
        let url = item["url"].as_str().unwrap();
        let n: usize = url.rsplit('/').next().unwrap().parse().unwrap();
        assert_eq!(item["status"], 200, "{item}");
        assert_eq!(item["depth"], depth(n), "{item}");
        assert_eq!(item["title"], format!("page {n}"), "{item}");
        assert_eq!(item["h1"], format!("page {n}"), "{item}");
        let first = if n < 7 {
            format!("/p/{}", 2 * n + 1)
        } else {
            "/p/0".into()
        };
        assert_eq!(item["first"], first, "{item}");
        assert_eq!(item["price"], Value::Null, "{item}");
    }
    // The fields in a fixed order: the built-in ones, then the --fields.
    let first_line = text.lines().next().unwrap();
    let order = [
        "\"url\"",
        "\"status\"",
        "\"depth\"",
        "\"title\"",
        "\"h1\"",
        "\"first\"",
        "\"price\"",
    ];
    let at: Vec<usize> = order.iter().map(|k| first_line.find(k).unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{first_line}");
    for n in 0..15 {
        assert_eq!(site.seen.hits(&format!("/p/{n}")), 1, "page {n}");
    }
    // The summary: pages by status (the 404 is an error, not an item).
    assert!(
        done.stderr.contains("crawl done (finish reason: finished)"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("pages    16 (200: 15, 404: 1)"),
        "{}",
        done.stderr
    );
    assert!(done.stderr.contains("items    15 to"), "{}", done.stderr);
    assert!(done.stderr.contains("(JSON Lines)"), "{}", done.stderr);
}

#[test]
fn the_csv_and_stdout_hold_the_same_rows_as_the_json_lines() {
    let site = serve(15);
    let (dir, jsonl) = temp("items.jsonl");
    let csv_path = dir.path().join("items.csv");
    let start = site.url("/p/0");
    let fields = ["--field", "h1=h1", "--field", "price=.price"];
    let with = |out: &str| {
        let mut args = vec!["crawl", start.as_str(), "-o", out];
        args.extend(fields);
        let done = crawl(&args);
        assert_eq!(done.code, Some(0), "{}", done.stderr);
        done
    };
    with(arg(&jsonl));
    with(arg(&csv_path));
    let stdout = with("-");
    let items = json_lines(&std::fs::read_to_string(&jsonl).unwrap());
    let by_url = |mut items: Vec<Value>| {
        items.sort_by_key(|i| i["url"].as_str().unwrap().to_string());
        items
    };
    let items = by_url(items);
    assert_eq!(by_url(json_lines(&stdout.stdout)), items);
    let columns = ["url", "status", "depth", "title", "h1", "price"];
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    assert_eq!(
        reader.headers().unwrap(),
        &csv::StringRecord::from(columns.to_vec())
    );
    let rows: BTreeSet<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    let as_cell = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let expected: BTreeSet<Vec<String>> = items
        .iter()
        .map(|i| columns.iter().map(|c| as_cell(&i[c])).collect())
        .collect();
    assert_eq!(rows.len(), 15);
    assert_eq!(rows, expected);
    assert_eq!(urls(&items), pages(&site, 0..15));
}

#[test]
fn links_stay_on_the_start_urls_hosts_unless_told_otherwise() {
    let crawl_from = |args: &[&str]| {
        let (a, b) = (
            serve_on("127.0.0.1", 3, None),
            serve_on("127.0.0.2", 3, None),
        );
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("u", &b.url("/p/0"))
            .append_pair("u", &a.url("/p/1"))
            .finish();
        let start = a.url(&format!("/linkto?{query}"));
        let mut all = vec!["crawl", start.as_str(), "-o", "-"];
        all.extend(args);
        let done = crawl(&all);
        assert_eq!(done.code, Some(0), "{args:?}: {}", done.stderr);
        let (on_a, on_b) = (pages(&a, 0..3), pages(&b, 0..3));
        let got = urls(&json_lines(&done.stdout));
        assert!(
            got.contains(&start),
            "{args:?}: the start is always fetched"
        );
        let count = |site: &BTreeSet<String>| got.intersection(site).count();
        (count(&on_a), count(&on_b), got.len())
    };
    assert_eq!(crawl_from(&[]), (3, 0, 4));
    assert_eq!(crawl_from(&["--same-domain"]), (3, 0, 4));
    assert_eq!(crawl_from(&["--any-domain"]), (3, 3, 7));
    assert_eq!(crawl_from(&["--allow-domain", "127.0.0.2"]), (0, 3, 4));
    // The allowed_domains setting is the default list; the flags win.
    let setting = ["-s", "allowed_domains=127.0.0.2"];
    assert_eq!(crawl_from(&setting), (0, 3, 4));
    let over = |flags: &[&'static str]| [&setting[..], flags].concat();
    assert_eq!(crawl_from(&over(&["--any-domain"])), (3, 3, 7));
    assert_eq!(crawl_from(&over(&["--same-domain"])), (3, 0, 4));
    assert_eq!(
        crawl_from(&over(&["--allow-domain", "127.0.0.1"])),
        (3, 0, 4)
    );
}

#[test]
fn depth_and_deny_change_the_set_of_pages() {
    let site = serve(15);
    let start = site.url("/p/0");
    let shallow = crawl(&["crawl", &start, "--depth", "1", "-o", "-"]);
    assert_eq!(shallow.code, Some(0), "{}", shallow.stderr);
    assert_eq!(urls(&json_lines(&shallow.stdout)), pages(&site, [0, 1, 2]));

    let site = serve(15);
    let start = site.url("/p/0");
    let denied = crawl(&["crawl", &start, "--deny", "/p/2$", "-o", "-"]);
    assert_eq!(denied.code, Some(0), "{}", denied.stderr);
    // Page 2's subtree (2, 5, 6, 11..=14) is never reached.
    let expected = pages(&site, [0, 1, 3, 4, 7, 8, 9, 10]);
    assert_eq!(urls(&json_lines(&denied.stdout)), expected);
    assert_eq!(site.seen.hits("/p/2"), 0);
}

/// A page whose title is the User-Agent it was asked with.
async fn user_agent_page(req: HttpRequest) -> HttpResponse {
    let ua = req
        .headers()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_string();
    HttpResponse::Ok()
        .content_type("text/html")
        .body(format!("<html><head><title>{ua}</title></head></html>"))
}

#[test]
fn settings_come_from_the_file_the_environment_then_s_then_the_flags() {
    let server = spawn_app("127.0.0.1", 1, |cfg| {
        cfg.route("/", web::get().to(user_agent_page));
    });
    let url = format!("http://{}/", server.addr);
    let (_dir, file) = temp("spinneret.toml");
    std::fs::write(&file, "user_agent = \"from-file\"\n").unwrap();
    let title = |env: bool, set: bool, flag: bool| {
        let mut command = spinneret();
        command.args(["--settings", arg(&file), "crawl", &url, "-o", "-"]);
        if env {
            command.env("SPINNERET_USER_AGENT", "from-env");
        }
        if set {
            command.args(["-s", "user_agent=from-set"]);
        }
        if flag {
            command.args(["--user-agent", "from-flag"]);
        }
        let done = run(command);
        assert_eq!(done.code, Some(0), "{}", done.stderr);
        let items = json_lines(&done.stdout);
        assert_eq!(items.len(), 1, "{}", done.stdout);
        items[0]["title"].as_str().unwrap().to_string()
    };
    assert_eq!(title(false, false, false), "from-file");
    assert_eq!(title(true, false, false), "from-env");
    assert_eq!(title(true, true, false), "from-set");
    assert_eq!(title(true, true, true), "from-flag");
}

#[test]
fn an_unknown_setting_is_refused_naming_it_before_anything_is_fetched() {
    let site = serve(3);
    let start = site.url("/p/0");
    let done = crawl(&["-s", "no_such_setting=1", "crawl", &start]);
    assert_eq!(done.code, Some(2), "{}", done.stderr);
    assert!(done.stderr.contains("no_such_setting"), "{}", done.stderr);
    let mut command = spinneret();
    command
        .env("SPINNERET_NO_SUCH_VARIABLE", "1")
        .args(["crawl", &start]);
    let done = run(command);
    assert_eq!(done.code, Some(2), "{}", done.stderr);
    assert!(done.stderr.contains("no_such_variable"), "{}", done.stderr);
    assert_eq!(site.seen.total(), 0);
}

#[test]
fn bad_input_exits_2_naming_it_before_anything_is_fetched() {
    let site = serve(3);
    let start = site.url("/p/0");
    let (dir, json) = temp("items.json");
    let nowhere = dir.path().join("no/such/dir/items.jsonl");
    let cases: [(Vec<&str>, &str); 11] = [
        (vec!["crawl", &start, "--allow-domain", &start], &start),
        (
            vec!["crawl", &start, "--allow-domain", "127.0.0.1:8080"],
            "127.0.0.1:8080",
        ),
        (
            vec!["crawl", &start, "--allow-domain", "a.example/x"],
            "a.example/x",
        ),
        (
            vec!["crawl", &start, "--allow-domain", ""],
            "--allow-domain \"\"",
        ),
        (
            vec!["crawl", &start, "-s", "allowed_domains=127.0.0.1:80"],
            "127.0.0.1:80",
        ),
        (vec!["crawl", "not-a-url"], "not-a-url"),
        (vec!["crawl", &start, "ht!tp://x"], "ht!tp://x"),
        (vec!["crawl", &start, "--deny", "(unclosed"], "(unclosed"),
        (vec!["crawl", &start, "--field", "t=h1["], "h1["),
        (vec!["crawl", &start, "-o", arg(&json)], "items.json"),
        (
            vec!["crawl", &start, "-o", arg(&nowhere)],
            "no/such/dir/items.jsonl",
        ),
    ];
    for (args, named) in cases {
        let done = crawl(&args);
        assert_eq!(done.code, Some(2), "{args:?}: {}", done.stderr);
        assert!(done.stderr.contains(named), "{args:?}: {}", done.stderr);
    }
    assert!(!json.exists());
    assert_eq!(site.seen.total(), 0);
}

#[test]
fn items_that_cannot_be_written_fail_the_crawl_with_exit_1() {
    // The output is /dev/full, where every write fails as on a full disk.
    let site = serve(3);
    let start = site.url("/p/0");
    let (_dir, out) = temp("items.jsonl");
    std::os::unix::fs::symlink("/dev/full", &out).unwrap();
    let done = crawl(&["crawl", &start, "-o", arg(&out)]);
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    assert!(
        done.stderr
            .contains("crawl FAILED: items lost (finish reason: finished)"),
        "{}",
        done.stderr
    );
    assert!(done.stderr.contains("items    3 to"), "{}", done.stderr);
    assert!(done.stderr.contains("LOST"), "{}", done.stderr);
    assert!(
        done.stderr.contains("No space left on device"),
        "{}",
        done.stderr
    );
}

#[test]
fn every_request_goes_through_the_proxy() {
    // A proxy that is not there: every request fails, none goes direct.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let site = serve(7);
    let start = site.url("/p/0");
    let done = crawl(&["crawl", &start, "--proxy", &nowhere, "-o", "-"]);
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    assert!(
        done.stderr.contains("crawl FAILED: every request failed"),
        "{}",
        done.stderr
    );
    assert_eq!((done.stdout.as_str(), site.seen.total()), ("", 0));

    let Some(proxy) = proxy_var("CI_TEST_PROXY") else {
        return;
    };
    let done = crawl(&["crawl", &start, "--proxy", &proxy, "-o", "-"]);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert_eq!(urls(&json_lines(&done.stdout)), pages(&site, 0..7));
    if let Some(logged) = proxy_logged_connect_to(site.addr.port()) {
        assert!(logged, "the proxy's log has no CONNECT to {}", site.addr);
    }
}

#[test]
fn stats_json_replaces_the_summary_and_a_close_after_limit_exits_0() {
    let site = serve(255);
    let start = site.url("/p/0");
    // One request at a time, 5 ms (randomised) apart: the limit is seen
    // long before the 255 pages are through.
    let args = [
        "crawl",
        &start,
        "--concurrency",
        "1",
        "--delay",
        "5",
        "--close-after-pages",
        "5",
        "--stats-json",
    ];
    let done = crawl(&args);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let stats: Value = serde_json::from_str(&done.stdout).expect("the stats as JSON");
    assert_eq!(stats["finish_reason"], "closespider_pagecount");
    let pages = stats["downloader/response_count"].as_u64().unwrap();
    assert!((5..255).contains(&pages), "{pages}");
    assert!(!done.stderr.contains("crawl done"), "{}", done.stderr);
}

#[test]
fn a_project_runs_its_spiders_by_name_with_their_arguments() {
    let site = serve(15);
    let (_dir, out) = temp("titles.jsonl");
    let start = format!("start={}", site.url("/p/0"));
    let mut command = project();
    command.args([
        "run",
        "titles",
        "-a",
        &start,
        "-a",
        "depth=1",
        "-o",
        arg(&out),
    ]);
    let done = run(command);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let items = json_lines(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(urls(&items), pages(&site, [0, 1, 2]));
    assert_eq!(items.len(), 3);

    let mut command = project();
    let url = format!("url={}", site.url("/p/3"));
    command.args(["run", "status", "-a", &url, "-o", "-"]);
    let done = run(command);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let items = json_lines(&done.stdout);
    assert_eq!(items.len(), 1);
    assert_eq!(
        (&items[0]["url"], &items[0]["status"]),
        (&Value::from(site.url("/p/3")), &Value::from(200))
    );

    let mut command = project();
    command.arg("list");
    let listed = run(command);
    assert_eq!(listed.code, Some(0));
    let names: Vec<&str> = listed
        .stdout
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(names, ["status", "titles"]);

    let mut command = project();
    command.args(["run", "nope"]);
    let unknown = run(command);
    assert_eq!(unknown.code, Some(2));
    assert!(unknown.stderr.contains("\"nope\""), "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("status, titles"),
        "{}",
        unknown.stderr
    );

    let mut command = project();
    command.args(["run", "titles"]);
    let missing = run(command);
    assert_eq!(missing.code, Some(2));
    assert!(missing.stderr.contains("\"start\""), "{}", missing.stderr);

    let mut command = spinneret();
    command.arg("list");
    let none = run(command);
    assert_eq!((none.code, none.stdout.as_str()), (Some(0), ""));
}

#[test]
fn s_before_and_after_the_command_name_both_reach_the_crawl() {
    let server = spawn_app("127.0.0.1", 1, |cfg| {
        cfg.route("/", web::get().to(user_agent_page));
    });
    let url = format!("http://{}/", server.addr);
    let args = [
        "-s",
        "user_agent=before",
        "crawl",
        &url,
        "-o",
        "-",
        "-s",
        "timeout=30s",
    ];
    let done = crawl(&args);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let items = json_lines(&done.stdout);
    assert_eq!(items.len(), 1, "{}", done.stdout);
    assert_eq!(items[0]["title"], "before");
    // Both lists apply, in order: the later pair wins.
    let args = [
        "-s",
        "user_agent=before",
        "crawl",
        &url,
        "-o",
        "-",
        "-s",
        "user_agent=after",
    ];
    let done = crawl(&args);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert_eq!(json_lines(&done.stdout)[0]["title"], "after");
    // A refused value before the name is not lost to one after it.
    let done = crawl(&["-s", "concurrency=0", "crawl", &url, "-s", "user_agent=x"]);
    assert_eq!(done.code, Some(2), "{}", done.stderr);
    assert!(done.stderr.contains("concurrency"), "{}", done.stderr);
    // Two settings files are refused, naming both.
    let (dir, first) = temp("a.toml");
    let second = dir.path().join("b.toml");
    std::fs::write(&first, "user_agent = \"a\"\n").unwrap();
    std::fs::write(&second, "user_agent = \"b\"\n").unwrap();
    let args = ["--settings", arg(&first), "crawl", &url];
    let done = crawl(&[&args[..], &["--settings", arg(&second)]].concat());
    assert_eq!(done.code, Some(2), "{}", done.stderr);
    assert!(done.stderr.contains("a.toml and"), "{}", done.stderr);
    assert!(done.stderr.contains("b.toml"), "{}", done.stderr);
}

#[cfg(feature = "distributed")]
#[test]
fn the_redis_flag_keeps_the_redis_settings() {
    let Some(redis) = super::redis_server::RedisServer::start() else {
        return;
    };
    let site = serve(3);
    let start = site.url("/p/0");
    let args = [
        "crawl",
        &start,
        "--redis",
        &redis.url(),
        "-s",
        "redis_crawl_id=mine",
        "-s",
        "redis_worker_id=w1",
        "-o",
        "-",
    ];
    let done = crawl(&args);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    assert_eq!(urls(&json_lines(&done.stdout)), pages(&site, 0..3));
    let keys = redis.cmd(&["KEYS", "spinneret:{mine}:*"]);
    assert!(!keys.is_empty(), "no key of the crawl named mine");
    assert_eq!(redis.cmd(&["KEYS", "spinneret:{crawl}:*"]), "");
}

#[test]
fn a_crawl_whose_only_page_is_an_http_error_fails() {
    let site = serve(3);
    for path in ["/status/404", "/status/500"] {
        let done = crawl(&["crawl", &site.url(path)]);
        assert_eq!(done.code, Some(1), "{path}: {}", done.stderr);
        assert!(
            done.stderr.contains("crawl FAILED: every request failed"),
            "{path}: {}",
            done.stderr
        );
    }
    let mut command = project();
    let url = format!("url={}", site.url("/status/404"));
    command.args(["run", "status", "-a", &url]);
    let done = run(command);
    assert_eq!(done.code, Some(1), "{}", done.stderr);
    assert!(
        done.stderr.contains("every request failed"),
        "{}",
        done.stderr
    );
}

#[test]
fn the_close_after_limits_combine_the_first_reached_stops() {
    let site = serve(255);
    let start = site.url("/p/0");
    let args = [
        "crawl",
        &start,
        "--concurrency",
        "1",
        "--close-after-pages",
        "5",
        "--close-after-items",
        "1000",
        "--close-after",
        "3600",
        "--stats-json",
    ];
    let done = crawl(&args);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let stats: Value = serde_json::from_str(&done.stdout).expect("the stats as JSON");
    assert_eq!(stats["finish_reason"], "closespider_pagecount");
}

/// Pages of a chain: page N links to page N+1, up to [`CHAIN`]; from
/// page 2 on they answer once the gate is open; every request counted.
#[derive(Clone)]
struct Chain {
    gate: tokio::sync::watch::Receiver<bool>,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// The length of the chain.
const CHAIN: usize = 1000;

async fn chain_page(chain: web::Data<Chain>, n: web::Path<usize>) -> HttpResponse {
    chain.hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let n = n.into_inner();
    if n >= 2 {
        let _ = chain.gate.clone().wait_for(|open| *open).await;
    }
    let next = if n + 1 < CHAIN {
        format!("<a href=\"/c/{}\">next</a>", n + 1)
    } else {
        String::new()
    };
    HttpResponse::Ok().content_type("text/html").body(format!(
        "<html><head><title>{n}</title></head><body>{next}</body></html>"
    ))
}

#[test]
fn a_closed_stdout_stops_the_crawl_with_one_line() {
    use std::io::BufRead as _;
    let (open, gate) = tokio::sync::watch::channel(false);
    let chain = Chain {
        gate,
        hits: Default::default(),
    };
    let hits = chain.hits.clone();
    let server = spawn_app("127.0.0.1", 1, move |cfg| {
        cfg.app_data(web::Data::new(chain.clone()))
            .route("/c/{n}", web::get().to(chain_page));
    });
    let start = format!("http://{}/c/0", server.addr);
    let mut command = spinneret();
    command.args(["crawl", &start, "-o", "-"]);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("the binary starts");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        let line = lines.next().expect("an item").expect("a line");
        serde_json::from_str::<Value>(&line).expect("a JSON line");
    }
    // As `| head -2` does: the reader goes away; then the pages come.
    drop(lines);
    open.send_replace(true);
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(PATIENCE) {
        Ok(out) => out.expect("the binary's output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("the crawl still runs {PATIENCE:?} after its reader went away");
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.matches("stdout was closed").count(), 1, "{stderr}");
    assert!(!stderr.contains("ERROR"), "{stderr}");
    let hits = hits.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        hits < CHAIN,
        "{hits} pages fetched after the reader went away"
    );
}

#[test]
fn usage_errors_show_what_is_required_and_errors_name_the_binary() {
    let done = crawl(&["crawl"]);
    assert_eq!(done.code, Some(2), "{}", done.stderr);
    assert!(
        done.stderr.contains("Usage: spinneret crawl <URL>..."),
        "{}",
        done.stderr
    );
    assert!(!done.stderr.contains("--log-level"), "{}", done.stderr);
    let help = crawl(&["crawl", "--help"]);
    assert_eq!(help.code, Some(0), "{}", help.stderr);
    let global = help.stdout.find("Global options:").expect("the heading");
    for option in ["--settings <FILE>", "--set <KEY=VALUE>", "--log-level"] {
        let at = help.stdout.find(option).expect(option);
        assert!(at > global, "{option} is not under Global options");
    }
    // A project's binary names itself.
    let mut command = project();
    command.args(["run", "nope"]);
    let unknown = run(command);
    assert_eq!(unknown.code, Some(2), "{}", unknown.stderr);
    assert!(
        unknown.stderr.starts_with("project: "),
        "{}",
        unknown.stderr
    );
}

#[test]
fn crawl_recrawl_parses_only_what_changed_since_the_job_finished() {
    use crate::bench_site::{start_server, Site as ChangingSite};
    use std::sync::atomic::Ordering;
    let site = std::sync::Arc::new(ChangingSite::new(150, Duration::ZERO).with_changes(10.0));
    let server = start_server(site.clone(), 0).expect("the site starts");
    let (_dir, job) = temp("job");
    let (_out_dir, out) = temp("items.jsonl");
    let start = server.url.to_string();
    let args = |recrawl: bool| {
        let mut args = vec![
            "crawl",
            &start,
            "--job-dir",
            arg(&job),
            "-o",
            arg(&out),
            "--stats-json",
        ];
        if recrawl {
            args.push("--recrawl");
        }
        let done = crawl(&args);
        assert_eq!(done.code, Some(0), "{}", done.stderr);
        let stats: Value = serde_json::from_str(&done.stdout).expect("the stats as JSON");
        stats
    };
    let first = args(false);
    assert_eq!(first["downloader/response_status_count/200"], 150);

    let changes = site.changes.as_ref().unwrap();
    changes.set_edition(1);
    site.reset();
    let step = changes.step();
    let stats = args(true);
    let got = |k: &str| stats[format!("recrawl/{k}")].as_u64().unwrap_or(0);
    assert_eq!(
        [
            got("known"),
            got("unchanged"),
            got("changed"),
            got("new"),
            got("gone")
        ],
        [
            150,
            150 - step.changed - step.gone,
            step.changed,
            step.new,
            step.gone
        ]
    );
    // The feed holds this run's items: the changed and new pages.
    let items = json_lines(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(items.len() as u64, step.changed + step.new);
    assert_eq!(site.bodies.load(Ordering::SeqCst), step.changed + step.new);
}
