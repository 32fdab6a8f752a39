//! `spinneret fetch`.

use std::process::ExitCode;

/// `fetch`'s arguments.
#[derive(clap::Args, Debug)]
pub(super) struct FetchArgs {}

/// Runs `fetch`.
pub(super) async fn run(args: FetchArgs) -> ExitCode {
    let _ = args;
    eprintln!("spinneret fetch: not built yet");
    ExitCode::FAILURE
}
