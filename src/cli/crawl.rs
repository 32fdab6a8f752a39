//! `spinneret crawl`.

use std::process::ExitCode;

/// `crawl`'s arguments.
#[derive(clap::Args, Debug)]
pub(super) struct CrawlArgs {}

/// Runs `crawl`.
pub(super) async fn run(args: CrawlArgs) -> ExitCode {
    let _ = args;
    eprintln!("spinneret crawl: not built yet");
    ExitCode::FAILURE
}
