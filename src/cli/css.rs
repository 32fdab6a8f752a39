//! `spinneret css`.

use std::process::ExitCode;

use super::Common;

/// `css`'s arguments.
#[derive(clap::Args, Debug)]
pub(super) struct CssArgs {}

/// Runs `css`.
pub(super) async fn run(args: CssArgs, common: &Common) -> ExitCode {
    common.init_logging();
    let _ = (args, common.load_settings());
    eprintln!("spinneret css: not built yet");
    ExitCode::FAILURE
}
