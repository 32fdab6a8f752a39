//! A progress bar for the examples' long crawls (`indicatif`), drawn on
//! stderr five times a second from the crawl's live stats, and only when
//! stdout is a terminal: piped or redirected runs (CI, scripts reading the
//! JSON line) stay quiet.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use spinneret::{Counter, CrawlHandle};

/// Shows `crawl`'s progress towards `total` pages (a spinner without one)
/// until it finishes. Call it inside the actix system running the crawl.
pub fn show(crawl: &CrawlHandle, total: Option<u64>) {
    if !std::io::stdout().is_terminal() {
        return;
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
