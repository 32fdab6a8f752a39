//! A progress bar for the examples' long crawls (`indicatif`), drawn on
//! stderr five times a second from the crawl's live stats, and only when
//! stdout is a terminal: piped or redirected runs (CI, scripts reading the
//! JSON line) stay quiet. [`logger`] prints log lines above the bar
//! instead of through it.

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use slog::{o, Drain, Logger};
use spinneret::{Counter, CrawlHandle};

/// A bar towards `total` pages (a spinner without one), hidden unless
/// stdout is a terminal.
pub fn bar(total: Option<u64>) -> ProgressBar {
    if !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    let template = if total.is_some() {
        "{elapsed_precise} [{bar:30}] {pos}/{len} pages ({per_sec}) {msg}"
    } else {
        "{elapsed_precise} {spinner} {pos} pages ({per_sec}) {msg}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Moves `bar` with `crawl`'s stats until the crawl finishes. Call it
/// inside the actix system running the crawl.
pub fn follow(bar: ProgressBar, crawl: &CrawlHandle) {
    if bar.is_hidden() {
        return;
    }
    let crawl = crawl.clone();
    actix_rt::spawn(async move {
        let mut tick = actix_rt::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            let s = crawl.stats();
            bar.set_position(s.counter(Counter::ResponseCount));
            bar.set_message(format!(
                "{} · items {} · in flight {} · queued {} · errors {}",
                crawl.state().name(),
                s.counter(Counter::ItemScraped),
                s.counter(Counter::InFlight),
                s.counter(Counter::Queued),
                s.error_count(),
            ));
            if crawl.is_finished() {
                bar.finish();
                return;
            }
        }
    });
}

/// Log lines, each printed above `bar` while it is drawn (on stderr when it
/// is hidden), so the two never garble each other.
pub fn logger(bar: &ProgressBar) -> Logger {
    let decorator = slog_term::PlainSyncDecorator::new(AboveBar {
        bar: bar.clone(),
        line: Mutex::new(Vec::new()),
    });
    let drain = slog_term::CompactFormat::new(decorator).build().fuse();
    let drain = slog_async::Async::new(drain).build().fuse();
    Logger::root(drain, o!())
}

/// Writes whole lines above the bar.
struct AboveBar {
    /// The bar to print above.
    bar: ProgressBar,
    /// The line being written.
    line: Mutex<Vec<u8>>,
}

impl std::io::Write for AboveBar {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut line = self.line.lock().unwrap_or_else(|e| e.into_inner());
        for &b in buf {
            if b == b'\n' {
                let text = String::from_utf8_lossy(&line).into_owned();
                if self.bar.is_hidden() {
                    eprintln!("{text}");
                } else {
                    self.bar.println(text);
                }
                line.clear();
            } else {
                line.push(b);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
