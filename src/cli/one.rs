//! One download through the crawl's own machinery, shared by `fetch` and
//! `css`: a spider with a single start request, run by a crawl built from
//! the loaded [`Settings`], so the user agent, the environment's proxies,
//! timeouts, the body limit, robots.txt and the address guard act exactly
//! as they would in a crawl.
//!
//! Two choices differ from a crawl's defaults, and settings given still
//! override them: no retries (a check shows what the server answers
//! once) and no progress line. Every status reaches the command, 4xx and
//! 5xx included (the request allows them all), so an error page can be
//! shown rather than dropped. The crawl's own log lines (started,
//! finished with its stats, a failed request's warning) would bury or
//! repeat what the command prints: below `--log-level debug` only its
//! errors are printed.
//!
//! # Settings that belong to a crawl, not to one request
//!
//! The one request never resumes, joins or records a crawl: the keys that
//! keep or share a crawl's frontier (`job_dir`,
//! `frontier_dir`, `frontier_memory`, `rerun_start_requests`, `recrawl*`,
//! `checkpoint_*`, `redis` and `redis_*`) and its HTTP cache (`http_cache`
//! and `http_cache_*`: the command shows what the server answers now)
//! are not applied. Given with
//! `-s`, such a key is refused (exit status 2, naming it) before anything
//! is requested; set by the settings file or the environment, which
//! `crawl` shares, it is left out with one info line naming it, so a
//! file made for crawls does not make `fetch` unusable. The other keys
//! apply as in a crawl (`close_after_*` and `dedupe` are harmless: the
//! one request is the crawl's only one and is never filtered).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use awc::http::header::{HeaderName, HeaderValue};
use awc::http::Method;
use slog::Drain as _;
use url::Url;

use super::Common;
use crate::builder::Crawler;
use crate::error::Error;
use crate::logging::LogFacade;
use crate::request::Request;
use crate::response::Response;
use crate::settings::Settings;
use crate::spider::{Failure, Output, Spider, StartRequests};

/// The end of `fetch`'s and `css`'s help: which settings one request
/// leaves out.
macro_rules! one_request_settings {
    () => {
        "Settings come from --settings, the environment and -s, as for crawl; \
the ones that keep or share a crawl (job_dir, frontier_dir, frontier_memory, \
rerun_start_requests, recrawl*, checkpoint_*, redis, redis_*, http_cache, http_cache_*) \
never apply to one request: refused with -s, left out (with an info line) when the file or \
the environment sets them."
    };
}
pub(super) use one_request_settings;

/// How to make the request: the options `fetch` and `css` share.
#[derive(clap::Args, Debug)]
pub(super) struct RequestArgs {
    /// The URL to download (http or https).
    pub url: String,
    /// Send this request header (repeatable), as `Name: value`.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub header: Vec<(String, String)>,
    /// The request method.
    #[arg(short = 'X', long, value_name = "METHOD", default_value = "GET", value_parser = parse_method)]
    pub method: Method,
    /// Show a 3xx answer itself instead of following it.
    #[arg(long)]
    pub no_redirect: bool,
}

/// Why a command could not do its job, and the exit status that says so.
#[derive(Debug)]
pub(super) enum Problem {
    /// Bad input (a URL, a selector, a setting): exit status 2, nothing
    /// was requested.
    Usage(String),
    /// The download (or writing its result) failed: exit status 1.
    Failed(String),
}

impl Problem {
    /// Prints the problem as one line on stderr, prefixed with the
    /// command's name, and returns its exit status.
    pub fn report(&self, command: &str) -> std::process::ExitCode {
        let (message, status) = match self {
            Problem::Usage(message) => (message, 2),
            Problem::Failed(message) => (message, 1),
        };
        eprintln!("spinneret {command}: {message}");
        std::process::ExitCode::from(status)
    }
}

/// A download's answer.
pub(super) struct Fetched {
    /// The final response (after any redirects).
    pub response: Response,
    /// From starting the crawl to its end: redirects, robots.txt and the
    /// crawl's own start included.
    pub total: Duration,
}

/// Loads the settings and checks the request's options: everything that
/// can be wrong with the command line, found before anything is sent.
pub(super) fn prepare(args: &RequestArgs, common: &Common) -> Result<Prepared, Problem> {
    let mut settings = common
        .load_settings()
        .map_err(|e| Problem::Usage(e.kind().to_string()))?;
    let mut given = Settings::load_from(None, Vec::new(), &common.set)
        .map_err(|e| Problem::Usage(e.kind().to_string()))?;
    if let Some(key) = take_job_keys(&mut given).first() {
        return Err(Problem::Usage(format!(
            "setting {key} (-s) does not apply to one request: fetch and css never \
             resume, join or record a crawl; give it to crawl or run"
        )));
    }
    let left_out = take_job_keys(&mut settings);
    if !left_out.is_empty() {
        log::info!(
            "left out setting {} of the settings file or environment: one request \
             never resumes, joins or records a crawl",
            left_out.join(", ")
        );
    }
    let mut request =
        Request::<()>::get(&args.url).map_err(|e| Problem::Usage(e.kind().to_string()))?;
    request = request
        .method(args.method.clone())
        .allow_redirects(!args.no_redirect)
        .dont_filter();
    for (name, value) in &args.header {
        request = request.header(name, value);
    }
    // Every status an HTTP server can send reaches the command.
    request.allowed_status = (400..1000).collect();
    Ok(Prepared {
        request,
        settings,
        verbose: common.log_level() >= log::LevelFilter::Debug,
    })
}

/// Clears the keys of a crawl's frontier kept or shared (a job directory,
/// checkpoints, Redis) and of its HTTP cache that `settings` holds, which one request never
/// uses; their names, in the order of [`Settings`]' fields.
fn take_job_keys(settings: &mut Settings) -> Vec<&'static str> {
    let mut taken = Vec::new();
    macro_rules! take {
        ($($key:ident),*) => {
            $( if settings.$key.take().is_some() { taken.push(stringify!($key)); } )*
        };
    }
    take!(
        job_dir,
        frontier_dir,
        frontier_memory,
        rerun_start_requests,
        recrawl,
        recrawl_unchanged_items,
        recrawl_sitemap_lastmod,
        checkpoint_every,
        checkpoint_every_requests,
        http_cache,
        http_cache_policy,
        http_cache_dir,
        http_cache_expiration,
        http_cache_max_bytes,
        http_cache_ignore_statuses,
        redis,
        redis_crawl_id,
        redis_worker_id,
        redis_lease_ttl,
        redis_poll,
        redis_host_rate,
        redis_op_timeout,
        redis_ack_interval
    );
    taken
}

/// A checked request and the settings to download it with.
pub(super) struct Prepared {
    /// The one request.
    request: Request<()>,
    /// The file's, the environment's and the command line's settings.
    settings: Settings,
    /// Whether all the crawl's log lines are printed, not only its errors.
    verbose: bool,
}

/// Downloads the prepared request through a crawl of its own.
pub(super) async fn download(prepared: Prepared) -> Result<Fetched, Problem> {
    let Prepared {
        request,
        settings,
        verbose,
    } = prepared;
    let shown = format!("{request}");
    let answer = Arc::new(Mutex::new(None));
    let spider = One {
        request: Mutex::new(Some(request)),
        answer: answer.clone(),
    };
    let mut builder = Crawler::builder(spider);
    if !verbose {
        let quiet = slog::LevelFilter::new(LogFacade, slog::Level::Error);
        builder = builder.logger(slog::Logger::root(quiet.fuse(), slog::o!()));
    }
    let crawler = builder
        .no_retry()
        .log_stats(None)
        .settings(&settings)
        .build()
        .map_err(|e| Problem::Usage(e.kind().to_string()))?;
    let started = Instant::now();
    let handle = crawler
        .start()
        .map_err(|e| Problem::Failed(format!("{}: {} ({shown})", e.kind_name(), e.kind())))?;
    let stats = handle
        .join()
        .await
        .map_err(|e| Problem::Failed(format!("{}: {} ({shown})", e.kind_name(), e.kind())))?;
    let total = started.elapsed();
    let answer = answer.lock().expect("answer lock").take();
    match answer {
        Some(Answer::Page(response)) => Ok(Fetched {
            response: *response,
            total,
        }),
        Some(Answer::Failed(failed)) => Err(Problem::Failed(failed.to_string())),
        None if stats.get("robotstxt/forbidden") > 0 => Err(Problem::Failed(format!(
            "robots_forbidden: robots.txt forbids this URL ({shown})"
        ))),
        None if stats.get("offsite/filtered") > 0 => Err(Problem::Failed(format!(
            "offsite: a redirect left the allowed domains ({shown})"
        ))),
        None => Err(Problem::Failed(format!(
            "no_answer: the crawl ended ({}) without an answer ({shown})",
            stats.finish_reason.as_deref().unwrap_or("unknown")
        ))),
    }
}

/// What the one request came to.
enum Answer {
    /// A response, of any status (boxed: it is large, a failure small).
    Page(Box<Response>),
    /// The request failed.
    Failed(Failed),
}

/// A failed request, as the spider's error callback saw it (an [`Error`]
/// is not `Clone`, so its parts are kept).
struct Failed {
    /// The error's kind name (`connect`, `timeout`, `too_many_redirects`…).
    kind: &'static str,
    /// The kind's message.
    message: String,
    /// The request that failed, as `METHOD URL` (credentials masked).
    request: String,
}

impl Failed {
    fn of(error: &Error, request: &Request<()>) -> Self {
        Failed {
            kind: error.kind_name(),
            message: error.kind().to_string(),
            request: request.to_string(),
        }
    }
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.kind, self.message, self.request)
    }
}

/// The spider: one start request; keeps what it came to.
struct One {
    /// Taken by `start_requests`.
    request: Mutex<Option<Request<()>>>,
    /// Shared with `download`, which reads it once the crawl is over.
    answer: Arc<Mutex<Option<Answer>>>,
}

impl Spider for One {
    type Callback = ();

    fn name(&self) -> &str {
        "spinneret"
    }

    fn start_requests(&self) -> StartRequests<()> {
        Box::new(
            self.request
                .lock()
                .expect("request lock")
                .take()
                .into_iter(),
        )
    }

    // The first answer is the one request's: the spider emits nothing
    // else, and the crawl resumes no job (the job keys are left out), so
    // no other request can reach it; a later one never replaces it.
    fn parse(&self, _: (), response: &Response, _: &mut Output<()>) -> Result<(), Error> {
        self.answer
            .lock()
            .expect("answer lock")
            .get_or_insert_with(|| Answer::Page(Box::new(response.clone())));
        Ok(())
    }

    fn on_error(&self, failure: &Failure<()>) -> Vec<Request<()>> {
        self.answer
            .lock()
            .expect("answer lock")
            .get_or_insert_with(|| Answer::Failed(Failed::of(&failure.error, &failure.request)));
        Vec::new()
    }
}

/// The request's URL with credentials masked, for what is printed.
pub(super) fn shown(url: &Url) -> String {
    crate::redact::Redacted(url).to_string()
}

/// `Name: value` as a header, both checked.
fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not `Name: value`"))?;
    let (name, value) = (name.trim(), value.trim());
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a header name"))?;
    HeaderValue::from_str(value).map_err(|_| format!("{value:?} is not a header value"))?;
    Ok((name.to_string(), value.to_string()))
}

/// A method name (`GET`, `HEAD`, `POST`, …).
fn parse_method(text: &str) -> Result<Method, String> {
    Method::from_bytes(text.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("{text:?} is not a method"))
}

/// Writes `bytes` to stdout; a reader that went away (`| head`) is not an
/// error.
pub(super) fn write_stdout(bytes: &[u8]) -> Result<(), Problem> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Problem::Failed(format!("writing to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

/// The status's reason phrase, if it has one.
pub(super) fn reason(status: u16) -> &'static str {
    awc::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}
