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
mod spiders;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::registry::SpiderRegistry;

/// Crawl the web from the command line.
#[derive(Parser, Debug)]
#[command(name = "spinneret", version, about)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
enum Command {
    /// Crawl from URLs, following links, one item per page.
    Crawl(crawl::CrawlArgs),
    /// Download one URL and show the answer.
    Fetch(fetch::FetchArgs),
    /// Show what a CSS selector finds on a page.
    Css(css::CssArgs),
    /// Run a registered spider by name.
    Run(spiders::RunArgs),
    /// List the registered spiders.
    List,
}

/// Parses the process's arguments and runs the command on an actix
/// system of its own; the process's exit status: success only when the
/// command did all it was asked (a crawl that failed or lost items fails).
pub fn main(registry: SpiderRegistry) -> ExitCode {
    let cli = Cli::parse();
    actix::System::new().block_on(async move {
        match cli.command {
            Command::Crawl(args) => crawl::run(args).await,
            Command::Fetch(args) => fetch::run(args).await,
            Command::Css(args) => css::run(args).await,
            Command::Run(args) => spiders::run(args, &registry).await,
            Command::List => spiders::list(&registry),
        }
    })
}
