//! `spinneret fetch`: downloads one URL as a crawl would and shows the
//! answer: the status, final URL and redirect chain, latency and headers
//! on stderr, the body's bytes on stdout (or in a file); or all of it as
//! one JSON object on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{json, Map, Value};

use super::one::{self, write_stdout, Fetched, Problem, RequestArgs};
use super::Common;
use crate::redirect::REDIRECT_REASONS;
use crate::response::Response;

/// `fetch`'s arguments.
#[derive(clap::Args, Debug)]
#[command(after_help = concat!("\
Exit status: 0 when the server answered with a status below 400; 1 when it \
answered 400 or more (the answer is still shown), or gave no answer (one \
line names the error kind and the URL); 2 for bad input (URL, header, \
setting).\n\n\
",
    one::one_request_settings!()))]
pub(super) struct FetchArgs {
    /// The request.
    #[command(flatten)]
    request: RequestArgs,
    /// Write the body to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Print the response headers on stdout instead of the body.
    #[arg(long)]
    headers: bool,
    /// Print one JSON object on stdout: status, URLs, redirect chain,
    /// latency, headers and the body as text (unless `-o` or `--headers`).
    #[arg(long)]
    json: bool,
}

/// Runs `fetch`.
pub(super) async fn run(args: FetchArgs, common: &Common) -> ExitCode {
    common.init_logging();
    let fetched = match one::prepare(&args.request, common) {
        Ok(prepared) => one::download(prepared).await,
        Err(problem) => Err(problem),
    };
    match fetched.and_then(|fetched| show(&args, &fetched).map(|()| fetched)) {
        Ok(fetched) if fetched.response.status < 400 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(problem) => problem.report("fetch"),
    }
}

/// Prints the answer as `args` asks.
fn show(args: &FetchArgs, fetched: &Fetched) -> Result<(), Problem> {
    let response = &fetched.response;
    if let Some(path) = &args.output {
        std::fs::write(path, &response.body)
            .map_err(|e| Problem::Failed(format!("writing {}: {e}", path.display())))?;
    }
    if args.json {
        let mut object = summary(fetched);
        if let Some(path) = &args.output {
            object.insert("body_file".into(), path.display().to_string().into());
        } else if !args.headers {
            object.insert("body".into(), response.text().into_owned().into());
        }
        let mut line = Value::Object(object).to_string();
        line.push('\n');
        return write_stdout(line.as_bytes());
    }
    eprint!("{}", human(fetched));
    if args.headers {
        write_stdout(header_lines(response, "").as_bytes())
    } else if args.output.is_none() {
        write_stdout(&response.body)
    } else {
        Ok(())
    }
}

/// The answer for a reader: status and final URL, the chain, latency and
/// size, then the headers marked `< `.
fn human(fetched: &Fetched) -> String {
    let response = &fetched.response;
    let mut text = format!(
        "{} {} {}\n",
        response.status,
        one::reason(response.status),
        one::shown(&response.url)
    );
    for (status, url) in chain(response) {
        text.push_str(&format!("redirect: {status} {url}\n"));
    }
    text.push_str(&format!(
        "latency: {:.1} ms (total {:.1} ms), {} bytes\n",
        millis(response.meta.download_latency),
        millis(fetched.total),
        response.body.len()
    ));
    text.push_str(&header_lines(response, "< "));
    text
}

/// The answer as JSON, without the body.
fn summary(fetched: &Fetched) -> Map<String, Value> {
    let response = &fetched.response;
    let redirects: Vec<Value> = chain(response)
        .into_iter()
        .map(|(status, url)| json!({"status": status, "url": url}))
        .collect();
    let mut headers = Map::new();
    for (name, value) in &response.headers {
        let values = headers
            .entry(name.as_str())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(values) = values {
            values.push(String::from_utf8_lossy(value.as_bytes()).into());
        }
    }
    let requested = response.meta.request_url.as_ref().unwrap_or(&response.url);
    let object = json!({
        "status": response.status,
        "reason": one::reason(response.status),
        "url": one::shown(&response.url),
        "request_url": one::shown(requested),
        "redirects": redirects,
        "latency_ms": millis(response.meta.download_latency),
        "total_ms": millis(fetched.total),
        "headers": headers,
        "body_bytes": response.body.len(),
    });
    match object {
        Value::Object(map) => map,
        _ => unreachable!("json! of an object literal"),
    }
}

/// The redirects followed, in order: each one's status and the URL that
/// answered it.
fn chain(response: &Response) -> Vec<(u16, String)> {
    let statuses = response
        .meta
        .request_meta
        .get(REDIRECT_REASONS)
        .and_then(Value::as_array);
    response
        .meta
        .redirect_urls
        .iter()
        .enumerate()
        .map(|(i, url)| {
            let status = statuses
                .and_then(|s| s.get(i))
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(0);
            (status, one::shown(url))
        })
        .collect()
}

/// One `name: value` line per header value, each after `prefix`.
fn header_lines(response: &Response, prefix: &str) -> String {
    let mut text = String::new();
    for (name, value) in &response.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        text.push_str(&format!("{prefix}{name}: {value}\n"));
    }
    text
}

fn millis(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
