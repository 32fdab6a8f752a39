//! `spinneret run NAME` and `spinneret list`: the registry's spiders.

use std::process::ExitCode;

use super::Common;
use crate::registry::SpiderRegistry;

/// `run`'s arguments.
#[derive(clap::Args, Debug)]
pub(super) struct RunArgs {}

/// Runs `run`.
pub(super) async fn run(args: RunArgs, common: &Common, registry: &SpiderRegistry) -> ExitCode {
    let _ = (args, common, registry);
    eprintln!("spinneret run: not built yet");
    ExitCode::FAILURE
}

/// Prints every registered spider, one per line: its name and description.
pub(super) fn list(registry: &SpiderRegistry) -> ExitCode {
    for (name, about) in registry.iter() {
        println!("{name}\t{about}");
    }
    ExitCode::SUCCESS
}
