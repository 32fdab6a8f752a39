//! `spinneret fetch`.

use std::process::ExitCode;

use super::Common;

/// `fetch`'s arguments.
#[derive(clap::Args, Debug)]
pub(super) struct FetchArgs {}

/// Runs `fetch`.
pub(super) async fn run(args: FetchArgs, common: &Common) -> ExitCode {
    common.init_logging();
    let _ = (args, common.load_settings());
    eprintln!("spinneret fetch: not built yet");
    ExitCode::FAILURE
}
