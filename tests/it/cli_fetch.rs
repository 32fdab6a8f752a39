//! `spinneret fetch` and `spinneret css`, run as the built binary against
//! a site the test serves on 127.0.0.1.
//!
//! Routes: `/bytes` (binary body, `X-Probe: yes`), `/r/a` → 301 → `/r/b`
//! → 302 → `/final`, `/loop/a` ⇄ `/loop/b` (302s), `/missing` (404 with a body), `/ua` (answers the
//! `User-Agent` and `X-Custom` headers it got), `/list` (an HTML list).
//! Every hit is counted by path.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};

use actix_web::{web, HttpRequest, HttpResponse};

use crate::cli_support::clean_command;
use crate::fixture::{self, spawn_app, Server};

/// A body that is not UTF-8 and holds a NUL and line breaks: stdout must
/// carry it byte for byte.
const BYTES: &[u8] = b"\x00\xffbinary\r\nbody\x80 end\n";

/// The list page `css` is tried on.
const LIST: &str = r#"<html><head><title>List</title></head><body>
<ul id="items">
  <li><a href="/one" class="x">First
      item</a></li>
  <li><a href="/two">  Second   <b>bold</b> item </a></li>
  <li><a>no link</a></li>
</ul>
<p class="note">A note</p>
</body></html>"#;

/// The test site and what it saw.
struct Site {
    hits: Arc<Mutex<HashMap<String, usize>>>,
    server: Server,
}

impl Site {
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.server.addr, path)
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }
}

fn serve() -> Site {
    let hits = Arc::new(Mutex::new(HashMap::new()));
    let seen = web::Data::new(hits.clone());
    let server = spawn_app("127.0.0.1", 1, move |cfg| {
        cfg.app_data(seen.clone()).default_service(web::to(answer));
    });
    Site { hits, server }
}

async fn answer(
    req: HttpRequest,
    hits: web::Data<Arc<Mutex<HashMap<String, usize>>>>,
) -> HttpResponse {
    *hits
        .lock()
        .unwrap()
        .entry(req.path().to_string())
        .or_default() += 1;
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    let redirect = |status: u16, to: &str| {
        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
            .insert_header(("Location", to))
            .finish()
    };
    match req.path() {
        "/bytes" => HttpResponse::Ok()
            .insert_header(("X-Probe", "yes"))
            .content_type("application/octet-stream")
            .body(BYTES),
        "/r/a" => redirect(301, "/r/b"),
        "/r/b" => redirect(302, "/final"),
        "/final" => HttpResponse::Ok().body("arrived"),
        "/loop/a" => redirect(302, "/loop/b"),
        "/loop/b" => redirect(302, "/loop/a"),
        "/ua" => {
            HttpResponse::Ok().body(format!("{}|{}", header("user-agent"), header("x-custom")))
        }
        "/list" => HttpResponse::Ok().content_type("text/html").body(LIST),
        _ => HttpResponse::NotFound().body("no such page"),
    }
}

/// Runs the binary with `args`, without the environment's `SPINNERET_*`
/// settings and proxies (they would change what is tested), to its exit.
fn spinneret(args: &[&str]) -> Output {
    spinneret_with(args, &[])
}

/// As [`spinneret`], with the environment variables `env` set.
fn spinneret_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = clean_command(Path::new(env!("CARGO_BIN_EXE_spinneret")));
    command.args(args).envs(env.iter().copied());
    command.output().expect("run the spinneret binary")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn fetch_prints_the_body_bytes_on_stdout_and_the_answer_on_stderr() {
    let site = serve();
    let out = spinneret(&["fetch", &site.url("/bytes")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(out.stdout, BYTES);
    let err_lines = lines(&err);
    assert_eq!(
        err_lines[0],
        format!("200 OK {}", site.url("/bytes")),
        "{err}"
    );
    assert!(err_lines[1].starts_with("latency: "), "{err}");
    assert!(
        err_lines[1].ends_with(&format!(", {} bytes", BYTES.len())),
        "{err}"
    );
    assert!(err_lines.contains(&"< x-probe: yes"), "{err}");
    assert!(
        err_lines.contains(&"< content-type: application/octet-stream"),
        "{err}"
    );
    assert_eq!(site.hits("/bytes"), 1);
}

#[test]
fn fetch_follows_a_redirect_chain_and_shows_it() {
    let site = serve();
    let out = spinneret(&["fetch", &site.url("/r/a")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(stdout(&out), "arrived");
    let err_lines = lines(&err);
    assert_eq!(
        err_lines[..3],
        [
            format!("200 OK {}", site.url("/final")),
            format!("redirect: 301 {}", site.url("/r/a")),
            format!("redirect: 302 {}", site.url("/r/b")),
        ],
        "{err}"
    );
    for path in ["/r/a", "/r/b", "/final"] {
        assert_eq!(site.hits(path), 1, "{path}");
    }
}

#[test]
fn fetch_json_holds_the_final_url_the_chain_and_the_body() {
    let site = serve();
    let out = spinneret(&["fetch", "--json", &site.url("/r/a")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["status"], 200);
    assert_eq!(answer["url"], site.url("/final"));
    assert_eq!(answer["request_url"], site.url("/r/a"));
    assert_eq!(
        answer["redirects"],
        serde_json::json!([
            {"status": 301, "url": site.url("/r/a")},
            {"status": 302, "url": site.url("/r/b")},
        ])
    );
    assert_eq!(answer["body"], "arrived");
    assert_eq!(answer["body_bytes"], 7);
    assert_eq!(
        answer["headers"]["content-length"],
        serde_json::json!(["7"])
    );
}

#[test]
fn fetch_no_redirect_shows_the_redirect_itself() {
    let site = serve();
    let out = spinneret(&["fetch", "--no-redirect", &site.url("/r/b")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(out.stdout, b"");
    let err_lines = lines(&err);
    assert_eq!(
        err_lines[0],
        format!("302 Found {}", site.url("/r/b")),
        "{err}"
    );
    assert!(err_lines.contains(&"< location: /final"), "{err}");
    assert!(!err.contains("redirect:"), "{err}");
    assert_eq!(site.hits("/final"), 0);
}

/// A status of 400 or more is shown with its body, and exits 1.
#[test]
fn fetch_shows_a_404_and_exits_1() {
    let site = serve();
    let out = spinneret(&["fetch", &site.url("/missing")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(stdout(&out), "no such page");
    assert_eq!(
        lines(&err)[0],
        format!("404 Not Found {}", site.url("/missing")),
        "{err}"
    );
    assert_eq!(site.hits("/missing"), 1, "fetched once, not retried");
}

#[test]
fn fetch_of_a_refused_connection_names_the_kind_and_exits_1() {
    // A port that was just free: nothing listens on it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/x");
    let out = spinneret(&["fetch", &url]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(out.stdout, b"");
    let err_lines = lines(&err);
    assert_eq!(err_lines.len(), 1, "one line: {err}");
    assert!(
        err_lines[0].starts_with(
            "spinneret fetch: refused: connection failed: the connection was refused [refused]"
        ),
        "{err}"
    );
    assert!(err_lines[0].ends_with(&format!("(GET {url})")), "{err}");
}

#[test]
fn fetch_of_a_redirect_loop_names_the_kind_and_exits_1() {
    let site = serve();
    let out = spinneret(&["fetch", &site.url("/loop/a")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(out.stdout, b"");
    assert_eq!(
        err,
        format!(
            "spinneret fetch: redirect_loop: redirect loop back to {} (GET {})\n",
            site.url("/loop/a"),
            site.url("/loop/b")
        )
    );
    assert_eq!((site.hits("/loop/a"), site.hits("/loop/b")), (1, 1));
}

#[test]
fn fetch_of_a_malformed_url_exits_2() {
    let out = spinneret(&["fetch", "http//no-scheme"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("spinneret fetch: invalid URL \"http//no-scheme\""),
        "{err}"
    );
}

#[test]
fn fetch_writes_the_exact_body_to_the_output_file() {
    let site = serve();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.bin");
    let out = spinneret(&["fetch", &site.url("/bytes"), "-o", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout, b"", "the body goes to the file only");
    assert_eq!(std::fs::read(&file).unwrap(), BYTES);
}

#[test]
fn fetch_sends_the_user_agent_setting_and_request_headers() {
    let site = serve();
    let url = site.url("/ua");
    let out = spinneret(&[
        "fetch",
        &url,
        "-s",
        "user_agent=probe/1.0",
        "-H",
        "X-Custom: hello there",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "probe/1.0|hello there");
}

#[test]
fn fetch_headers_prints_the_headers_instead_of_the_body() {
    let site = serve();
    let out = spinneret(&["fetch", "--headers", &site.url("/bytes")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(lines(&text).contains(&"x-probe: yes"), "{text}");
    assert!(!text.contains("binary"), "{text}");
}

#[test]
fn css_prints_the_text_of_each_match_in_order() {
    let site = serve();
    let out = spinneret(&["css", &site.url("/list"), "#items a"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "First item\nSecond bold item\nno link\n");
    assert_eq!(stderr(&out), "3 matches\n");

    let out = spinneret(&["css", &site.url("/list"), "#items a", "--first"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "First item\n");
    assert_eq!(stderr(&out), "1 of 3 matches\n");
}

#[test]
fn css_prints_an_attribute_of_the_matches_that_have_it() {
    let site = serve();
    let out = spinneret(&["css", &site.url("/list"), "li a", "--attr", "href"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "/one\n/two\n");
    assert_eq!(stderr(&out), "2 matches (1 more without href)\n");
}

#[test]
fn css_prints_outer_html() {
    let site = serve();
    let out = spinneret(&["css", &site.url("/list"), "p.note", "--html"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "<p class=\"note\">A note</p>\n");
}

#[test]
fn css_refuses_an_invalid_selector_before_any_request() {
    let site = serve();
    let out = spinneret(&["css", &site.url("/list"), "li a["]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("spinneret css: invalid CSS selector \"li a[\""),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(out.stdout, b"");
    assert_eq!(site.total(), 0, "nothing was requested");
}

#[test]
fn css_names_what_is_wrong_with_a_selector_on_one_line() {
    let site = serve();
    for (selector, reason) in [
        ("", "empty selector"),
        ("::before", "unsupported pseudo-element ::before"),
        ("li a[", "unexpected end of selector"),
    ] {
        let out = spinneret(&["css", &site.url("/list"), selector]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert_eq!(
            stderr(&out),
            format!("spinneret css: invalid CSS selector {selector:?}: {reason}\n")
        );
    }
    assert_eq!(site.total(), 0, "nothing was requested");
}

#[test]
fn css_without_a_match_exits_1() {
    let site = serve();
    let out = spinneret(&["css", &site.url("/list"), "table td"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(out.stdout, b"");
    assert_eq!(stderr(&out), "0 matches\n");
    assert_eq!(site.hits("/list"), 1);
}

#[test]
fn css_on_an_error_page_exits_1_and_says_so() {
    let site = serve();
    let out = spinneret(&["css", &site.url("/missing"), "body"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(out.stdout, b"");
    assert_eq!(
        err,
        format!(
            "spinneret css: http_status: the page answered 404 Not Found; nothing selected ({})\n",
            site.url("/missing")
        )
    );
}

#[test]
fn fetch_with_an_unknown_setting_exits_2_before_any_request() {
    let site = serve();
    let out = spinneret(&["fetch", &site.url("/bytes"), "-s", "no_such_key=1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.starts_with("spinneret fetch: "), "{err}");
    assert!(err.contains("no_such_key"), "{err}");
    assert_eq!(site.total(), 0, "nothing was requested");
}

/// A job directory left by `crawl --close-after-pages`, holding requests
/// still to crawl, is neither resumed nor touched by `fetch`: with
/// `job_dir` from the environment (as a settings file shared with `crawl`
/// would give it) the setting is left out with a notice and only the URL
/// asked for is fetched; with `-s job_dir=` it is refused before any
/// request. A later `crawl` on the directory still crawls the rest.
#[test]
fn fetch_neither_resumes_nor_touches_a_crawls_job_directory() {
    let site = fixture::serve(31);
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job");
    let job = job.to_str().unwrap();
    let start = site.url("/p/0");
    let first_items = dir.path().join("first.jsonl");
    let crawl = |items: &Path, more: &[&str]| {
        let mut args = vec!["crawl", &start, "--job-dir", job, "--concurrency", "1"];
        args.extend(["-o", items.to_str().unwrap()]);
        args.extend(more);
        spinneret(&args)
    };
    let out = crawl(&first_items, &["--close-after-pages", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let crawled = |site: &fixture::Site| {
        (0..31)
            .filter(|n| site.seen.hits(&format!("/p/{n}")) > 0)
            .count()
    };
    let before = crawled(&site);
    assert!(before < 31, "the first run left pages to crawl: {before}");
    let hits = site.seen.total();

    let asked_before = site.seen.hits("/p/30");
    let asked = site.url("/p/30");
    // The crawl's HTTP cache (in its job directory) is left out too: the
    // command shows what the server answers now.
    let env = [("SPINNERET_JOB_DIR", job), ("SPINNERET_HTTP_CACHE", "true")];
    let out = spinneret_with(&["fetch", &asked], &env);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        stdout(&out).contains("<title>page 30</title>"),
        "{}",
        stdout(&out)
    );
    assert!(
        err.starts_with(
            "INFO  left out setting job_dir, http_cache of the settings file or \
             environment: one request never resumes, joins or records a crawl\n"
        ),
        "{err}"
    );
    assert!(!Path::new(job).join("httpcache").exists());
    assert_eq!(site.seen.total(), hits + 1, "only the URL asked for");
    assert_eq!(site.seen.hits("/p/30"), asked_before + 1);

    let pairs = [
        ("job_dir", format!("job_dir={job}")),
        ("redis", "redis=redis://127.0.0.1:1/0".to_string()),
        ("checkpoint_every", "checkpoint_every=5s".to_string()),
        ("http_cache_policy", "http_cache_policy=dummy".to_string()),
    ];
    for (key, pair) in &pairs {
        let out = spinneret(&["fetch", &asked, "-s", pair]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert_eq!(
            stderr(&out),
            format!(
                "spinneret fetch: setting {key} (-s) does not apply to one request: fetch \
                 and css never resume, join or record a crawl; give it to crawl or run\n"
            )
        );
        assert_eq!(out.stdout, b"");
    }
    assert_eq!(site.seen.total(), hits + 1, "nothing was requested");

    let out = crawl(&dir.path().join("rest.jsonl"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(crawled(&site), 31, "the resumed crawl crawled the rest");
}
