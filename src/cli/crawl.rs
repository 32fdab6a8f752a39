//! `spinneret crawl`.

use std::process::ExitCode;

use super::Common;

/// `crawl`'s arguments.
#[derive(clap::Args, Debug)]
pub(super) struct CrawlArgs {}

/// Runs `crawl`.
pub(super) async fn run(args: CrawlArgs, common: &Common) -> ExitCode {
    common.init_logging();
    let _ = (args, common.load_settings());
    eprintln!("spinneret crawl: not built yet");
    ExitCode::FAILURE
}
