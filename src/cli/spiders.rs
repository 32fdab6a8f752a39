//! `spinneret run NAME` and `spinneret list`: the registry's spiders.

use std::process::ExitCode;

use super::output::{Feed, OutputArgs};
use super::session::{run_to_end, usage_error};
use super::Common;
use crate::error::Error;
use crate::registry::{PreparedCrawl, SpiderArgs, SpiderRegistry};

/// `run`'s arguments.
#[derive(clap::Args, Debug)]
pub(super) struct RunArgs {
    /// The spider's name (`list` shows them).
    #[arg(value_name = "NAME")]
    name: String,
    /// An argument for the spider (repeatable).
    #[arg(short = 'a', value_name = "KEY=VALUE")]
    arg: Vec<String>,
    /// Where the items go, and the stats as JSON.
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs `run`: the spider made from its arguments, the settings applied
/// over what its factory configured, the `-o` export added after its own
/// pipelines.
pub(super) async fn run(args: RunArgs, common: &Common, registry: &SpiderRegistry) -> ExitCode {
    common.init_logging();
    let (prepared, feed) = match prepare(&args, common, registry) {
        Ok(prepared) => prepared,
        Err(e) => return usage_error(&e),
    };
    run_to_end(prepared.start(), &feed, args.output.stats_json).await
}

/// The crawl `args` name, configured, and where its items go.
fn prepare(
    args: &RunArgs,
    common: &Common,
    registry: &SpiderRegistry,
) -> Result<(PreparedCrawl, Feed), Error> {
    let mut spider_args = SpiderArgs::new();
    for pair in &args.arg {
        spider_args.parse_pair(pair)?;
    }
    let settings = common.load_settings()?;
    let feed = Feed::from_args(&args.output)?;
    let mut prepared = registry
        .prepare(&args.name, &spider_args)?
        .settings(&settings);
    if let Some(sink) = feed.pipeline(None) {
        prepared = prepared.pipeline(sink);
    }
    Ok((prepared, feed))
}

/// Prints every registered spider, one per line: its name and description.
pub(super) fn list(registry: &SpiderRegistry) -> ExitCode {
    for (name, about) in registry.iter() {
        println!("{name}\t{about}");
    }
    ExitCode::SUCCESS
}
