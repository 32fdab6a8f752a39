//! `spinneret css`.

use std::process::ExitCode;

/// `css`'s arguments.
#[derive(clap::Args, Debug)]
pub(super) struct CssArgs {}

/// Runs `css`.
pub(super) async fn run(args: CssArgs) -> ExitCode {
    let _ = args;
    eprintln!("spinneret css: not built yet");
    ExitCode::FAILURE
}
