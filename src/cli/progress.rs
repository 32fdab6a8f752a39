//! The progress bar of a crawl on a terminal, and the log lines printed
//! above it.
//!
//! When stderr is a terminal, a spinner shows the pages, pages per
//! second, items, errors, and the requests in flight and queued, from the
//! crawl's live stats five times a second. The command line's logger
//! prints every line through [`print_line`], which lifts the bar while
//! the line is written, so the two never garble each other. When stderr
//! is not a terminal there is no bar and the lines are plain.

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::handle::CrawlHandle;
use crate::state::CrawlState;
use crate::stats::Counter;

/// The bar being drawn, if any: the logger reaches it here (the `log`
/// facade's logger is a static).
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Prints `line` on stderr, above the bar when one is drawn.
pub(super) fn print_line(line: &str) {
    let bar = BAR.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match bar {
        Some(bar) => bar.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}

/// A crawl's bar; [`Progress::finish`] clears it.
pub(super) struct Progress {
    /// `None` when stderr is not a terminal.
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Draws a bar following `crawl` when stderr is a terminal. Call it
    /// inside the actix system running the crawl.
    pub fn follow(crawl: &CrawlHandle) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(100));
        *BAR.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
        let (ticking, crawl) = (bar.clone(), crawl.clone());
        actix_rt::spawn(async move {
            let mut tick = actix_rt::time::interval(Duration::from_millis(200));
            while !crawl.is_finished() && !ticking.is_finished() {
                tick.tick().await;
                ticking.set_message(line(&crawl));
            }
        });
        Progress { bar: Some(bar) }
    }

    /// Clears the bar; log lines are plain again.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            *BAR.lock().unwrap_or_else(|e| e.into_inner()) = None;
            bar.finish_and_clear();
        }
    }
}

/// What the bar says of `crawl` now: pages and their rate, items, errors,
/// requests in flight and queued, and the state unless running.
fn line(crawl: &CrawlHandle) -> String {
    let s = crawl.stats();
    let pages = s.counter(Counter::ResponseCount);
    let secs = s.elapsed_time_seconds;
    let rate = if secs > 0.0 { pages as f64 / secs } else { 0.0 };
    let state = match crawl.state() {
        CrawlState::Running => String::new(),
        other => format!(" · {}", other.name()),
    };
    format!(
        "{pages} pages ({rate:.1}/s) · {} items · {} errors · {} in flight · {} queued{state}",
        s.counter(Counter::ItemScraped),
        s.error_count(),
        s.counter(Counter::InFlight),
        s.counter(Counter::Queued),
    )
}
