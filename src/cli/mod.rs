//! The `spinneret` command line (feature `cli`): `crawl` (the generic
//! follow-links spider), `fetch`, `css`, and `run`/`list` for the spiders
//! of a [`SpiderRegistry`]. A user's own binary gets the whole command
//! line with their spiders from [`main`]:
//!
//! ```no_run
//! use spinneret::SpiderRegistry;
//!
//! fn main() -> std::process::ExitCode {
//!     let mut spiders = SpiderRegistry::new();
//!     // spiders.register("quotes", "…", |args| Ok(Crawler::builder(Quotes::new(args)?)));
//!     spinneret::cli::main(spiders)
//! }
//! ```

mod crawl;
mod css;
mod fetch;
mod follow;
mod one;
mod outcome;
mod output;
mod progress;
mod session;
mod spiders;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::Error;
use crate::registry::SpiderRegistry;
use crate::settings::Settings;

/// What `--help` says of the exit status.
const EXIT_STATUS: &str = "\
Exit status of crawl and run:
  0  the crawl finished (its queue ran dry, a --close-after limit or one
     Ctrl-C stopped it) and every item reached the output;
  1  it failed or lost items: it could not start, a second Ctrl-C forced
     it, a limit of errors or memory stopped it, every request failed, or
     an item did not reach the output (a pipeline failed on it, the
     output could not be written, an export spilled it);
  2  usage or configuration error, before anything is crawled: a bad
     option, setting, start URL, pattern, selector, spider name or output.";

/// Crawl the web from the command line.
#[derive(Parser, Debug)]
#[command(name = "spinneret", version, about, after_help = EXIT_STATUS)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
    /// The options every command takes.
    #[command(flatten)]
    common: Common,
}

/// The options every command takes (before or after its name).
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Common {
    /// Read settings from this TOML file (under the environment's
    /// `SPINNERET_*` variables and the command line's).
    #[arg(long, value_name = "FILE", global = true)]
    pub settings: Option<PathBuf>,
    /// Set a setting, over the file and the environment (repeatable).
    #[arg(short = 's', long = "set", value_name = "KEY=VALUE", global = true)]
    pub set: Vec<String>,
    /// The least severe log lines printed to stderr: error, warn, info,
    /// debug or trace.
    #[arg(
        short = 'L',
        long = "log-level",
        value_name = "LEVEL",
        default_value = "info",
        global = true
    )]
    pub log_level: log::LevelFilter,
}

impl Common {
    /// Prints log lines (the library's, through the `log` facade) to
    /// stderr from `--log-level` up, above the progress bar when one is
    /// drawn.
    pub fn init_logging(&self) {
        static STDERR: Stderr = Stderr;
        if log::set_logger(&STDERR).is_ok() {
            log::set_max_level(self.log_level);
        }
    }

    /// The settings of the file, the environment and `-s`, in that order.
    pub fn load_settings(&self) -> Result<Settings, Error> {
        Settings::load(self.settings.as_deref(), &self.set)
    }
}

/// The subcommands.
#[derive(Subcommand, Debug)]
enum Command {
    /// Crawl from URLs, following links, one item per page (url, status,
    /// depth, title and each --field); a summary at the end.
    #[command(after_help = EXIT_STATUS)]
    Crawl(Box<crawl::CrawlArgs>),
    /// Download one URL and show the answer.
    Fetch(fetch::FetchArgs),
    /// Show what a CSS selector finds on a page.
    Css(css::CssArgs),
    /// Run a registered spider by name, with its -a arguments.
    #[command(after_help = EXIT_STATUS)]
    Run(spiders::RunArgs),
    /// List the registered spiders.
    List,
}

/// Parses the process's arguments and runs the command on an actix
/// system of its own; the process's exit status: success only when the
/// command did all it was asked (a crawl that failed or lost items fails).
pub fn main(registry: SpiderRegistry) -> ExitCode {
    let Cli { command, common } = Cli::parse();
    actix::System::new().block_on(async move {
        match command {
            Command::Crawl(args) => crawl::run(*args, &common).await,
            Command::Fetch(args) => fetch::run(args, &common).await,
            Command::Css(args) => css::run(args, &common).await,
            Command::Run(args) => spiders::run(args, &common, &registry).await,
            Command::List => spiders::list(&registry),
        }
    })
}

/// The command line's logger: one line per record on stderr.
struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            progress::print_line(&format!("{:<5} {}", record.level(), record.args()));
        }
    }

    fn flush(&self) {}
}

/// A configuration error with `message` (what `crawl` calls).
fn config(message: String) -> Error {
    Error::config(message)
}
