//! A started crawl, run to its end for `crawl` and `run`: Ctrl-C stops it
//! (the first gracefully, the second at once), a progress bar follows it
//! on a terminal, and at the end the summary (or `--stats-json`'s JSON)
//! is printed and the exit status chosen ([`Outcome`]). When the reader of
//! `-o -` goes away, the crawl stops (the requests in flight finish, no
//! other starts), one line says so, and the exit status is 0 with no
//! summary, as for `fetch`.

use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::outcome::{summary, Outcome};
use super::output::{stdout_gone, stdout_is_gone, Feed};
use super::progress::Progress;
use crate::error::{Error, ErrorKind};
use crate::handle::CrawlHandle;

/// The exit status of a usage or configuration error.
pub(super) const USAGE: u8 = 2;

/// Prints `error` and returns the usage error's exit status.
pub(super) fn usage_error(error: &Error) -> ExitCode {
    eprintln!("{}: {error}", program());
    ExitCode::from(USAGE)
}

/// The name of the running binary, which starts its error lines
/// (`spinneret`, or a project's own binary's name).
pub(super) fn program() -> String {
    std::env::args_os()
        .next()
        .as_deref()
        .map(std::path::Path::new)
        .and_then(std::path::Path::file_name)
        .map_or_else(|| "spinneret".into(), |n| n.to_string_lossy().into_owned())
}

/// Starts the crawl `start` makes and runs it to its end; the exit status
/// as [`Outcome`] says (2 when the crawl's configuration was refused).
pub(super) async fn run_to_end(
    start: impl Future<Output = Result<CrawlHandle, Error>>,
    feed: &Feed,
    stats_json: bool,
) -> ExitCode {
    let handle = match start.await {
        Ok(handle) => handle,
        Err(e) if matches!(e.kind(), ErrorKind::Config(_)) => return usage_error(&e),
        Err(e) => {
            eprintln!("{}: the crawl could not start: {e}", program());
            return ExitCode::FAILURE;
        }
    };
    let forced = match stop_on_signals(&handle) {
        Ok(forced) => forced,
        Err(e) => {
            log::warn!("Ctrl-C will not stop the crawl gracefully: {e}");
            Arc::default()
        }
    };
    stop_when_stdout_is_gone(&handle);
    let progress = Progress::follow(&handle);
    let joined = handle.join().await;
    progress.finish();
    if stdout_is_gone() {
        // As a Unix tool whose reader stopped reading: no summary, and
        // success (the reader took what it wanted).
        return ExitCode::SUCCESS;
    }
    let stats = match joined {
        Ok(stats) => stats,
        Err(e) => {
            eprintln!("{}: the crawl ended without its stats: {e}", program());
            return ExitCode::FAILURE;
        }
    };
    let forced = forced.load(Ordering::SeqCst);
    if stats_json {
        match serde_json::to_string_pretty(&stats) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("{}: the stats as JSON: {e}", program()),
        }
    } else {
        eprintln!("{}", summary(&stats, forced, &feed.describe()));
    }
    Outcome::of(&stats, forced).exit_code()
}

/// Stops `crawl` when the reader of its items on stdout goes away (`-o -
/// | head`), saying so in one line: no new request starts, the ones in
/// flight finish and their items are dropped quietly. (Stopping at once
/// would have the items of the requests in flight refused by the closed
/// pipelines, an error line each.)
fn stop_when_stdout_is_gone(crawl: &CrawlHandle) {
    let crawl = crawl.clone();
    actix_rt::spawn(async move {
        stdout_gone().await;
        if crawl.is_finished() {
            return;
        }
        log::warn!("stdout was closed: stopping the crawl");
        let _ = crawl.stop_gracefully().await;
    });
}

/// Stops `crawl` on SIGINT or SIGTERM (on Windows, Ctrl-C): the first gracefully (the requests
/// in flight finish, their items are written), the second at once. The
/// flag turns true on the second.
fn stop_on_signals(crawl: &CrawlHandle) -> Result<Arc<AtomicBool>, Error> {
    let mut signals = crate::handle::StopSignals::new()?;
    let forced = Arc::new(AtomicBool::new(false));
    let (crawl, flag) = (crawl.clone(), forced.clone());
    actix_rt::spawn(async move {
        let mut first = true;
        loop {
            if !signals.next().await || crawl.is_finished() {
                return;
            }
            if first {
                first = false;
                log::warn!(
                    "stopping: the requests in flight finish first (Ctrl-C again to stop at once)"
                );
                let _ = crawl.stop_gracefully().await;
            } else {
                flag.store(true, Ordering::SeqCst);
                log::warn!("stopping at once: the requests in flight are abandoned");
                let _ = crawl.stop_now().await;
                return;
            }
        }
    });
    Ok(forced)
}
