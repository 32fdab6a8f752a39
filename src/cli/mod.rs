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
     Ctrl-C stopped it) and every item reached the output, or the reader
     of -o - went away (the crawl then stops);
  1  it failed or lost items: it could not start, a second Ctrl-C forced
     it, a limit of errors or memory stopped it, every request failed (no
     page answered 2xx: a start URL answering 404 or 500 fails), or
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
    /// The options every command takes, given before its name.
    #[command(flatten)]
    common: Common,
}

/// The options every command takes, before or after its name: both are
/// read, those before first. `-s` pairs from both places are all applied,
/// in the order given (a later pair wins); `--log-level` after the name
/// wins over one before it; `--settings` names one file, so a second one
/// (before and after the name) is refused.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct Common {
    /// Read settings from this TOML file (under the environment's
    /// `SPINNERET_*` variables and the command line's).
    #[arg(long, value_name = "FILE", help_heading = "Global options")]
    pub settings: Option<PathBuf>,
    /// Set a setting, over the file and the environment (repeatable).
    #[arg(
        short = 's',
        long = "set",
        value_name = "KEY=VALUE",
        help_heading = "Global options"
    )]
    pub set: Vec<String>,
    /// The least severe log lines printed to stderr: error, warn, info,
    /// debug or trace [default: info].
    #[arg(
        short = 'L',
        long = "log-level",
        value_name = "LEVEL",
        help_heading = "Global options"
    )]
    pub log_level: Option<log::LevelFilter>,
}

impl Common {
    /// The least severe log lines printed: `--log-level`, else info.
    pub fn log_level(&self) -> log::LevelFilter {
        self.log_level.unwrap_or(log::LevelFilter::Info)
    }

    /// Prints log lines (the library's, through the `log` facade) to
    /// stderr from `--log-level` up, above the progress bar when one is
    /// drawn.
    pub fn init_logging(&self) {
        static STDERR: Stderr = Stderr;
        if log::set_logger(&STDERR).is_ok() {
            log::set_max_level(self.log_level());
        }
    }

    /// The settings of the file, the environment and `-s`, in that order.
    pub fn load_settings(&self) -> Result<Settings, Error> {
        Settings::load(self.settings.as_deref(), &self.set)
    }

    /// These options (given before the command's name) with `after`'s
    /// (given after it) laid over them; an error when both name a
    /// settings file.
    fn then(self, after: Common) -> Result<Common, Error> {
        let settings = match (self.settings, after.settings) {
            (Some(first), Some(second)) => {
                return Err(Error::config(format!(
                    "--settings is given twice ({} and {}): give one file \
                     (and -s for single settings)",
                    first.display(),
                    second.display()
                )))
            }
            (first, second) => second.or(first),
        };
        let mut set = self.set;
        set.extend(after.set);
        Ok(Common {
            settings,
            set,
            log_level: after.log_level.or(self.log_level),
        })
    }
}

/// The subcommands, each with the options every command takes.
#[derive(Subcommand, Debug)]
enum Command {
    /// Crawl from URLs, following links, one item per page (url, status,
    /// depth, title and each --field); a summary at the end.
    #[command(after_help = EXIT_STATUS)]
    Crawl {
        #[command(flatten)]
        args: Box<crawl::CrawlArgs>,
        #[command(flatten)]
        common: Common,
    },
    /// Download one URL and show the answer.
    Fetch {
        #[command(flatten)]
        args: fetch::FetchArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Show what a CSS selector finds on a page.
    Css {
        #[command(flatten)]
        args: css::CssArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Run a registered spider by name, with its -a arguments.
    #[command(after_help = EXIT_STATUS)]
    Run {
        #[command(flatten)]
        args: spiders::RunArgs,
        #[command(flatten)]
        common: Common,
    },
    /// List the registered spiders.
    List {
        #[command(flatten)]
        common: Common,
    },
}

impl Command {
    /// The options given after the command's name.
    fn common(&mut self) -> &mut Common {
        match self {
            Command::Crawl { common, .. }
            | Command::Fetch { common, .. }
            | Command::Css { common, .. }
            | Command::Run { common, .. }
            | Command::List { common } => common,
        }
    }
}

/// Parses the process's arguments and runs the command on an actix
/// system of its own; the process's exit status: success only when the
/// command did all it was asked (a crawl that failed or lost items fails).
pub fn main(registry: SpiderRegistry) -> ExitCode {
    let Cli {
        mut command,
        common: before,
    } = Cli::parse();
    let common = match before.then(std::mem::take(command.common())) {
        Ok(common) => common,
        Err(e) => return session::usage_error(&e),
    };
    actix::System::new().block_on(async move {
        match command {
            Command::Crawl { args, .. } => crawl::run(*args, &common).await,
            Command::Fetch { args, .. } => fetch::run(args, &common).await,
            Command::Css { args, .. } => css::run(args, &common).await,
            Command::Run { args, .. } => spiders::run(args, &common, &registry).await,
            Command::List { .. } => spiders::list(&registry),
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
            progress::print_line(&log_line(record));
        }
    }

    fn flush(&self) {}
}

/// A log record as the command line prints it: the level, the record's
/// target unless it is this crate (a dependency's line says whose it is),
/// and the message.
fn log_line(record: &log::Record<'_>) -> String {
    let target = record.target();
    let ours = target == "spinneret" || target.starts_with("spinneret::");
    if ours {
        format!("{:<5} {}", record.level(), record.args())
    } else {
        format!("{:<5} {target}: {}", record.level(), record.args())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dependencys_log_lines_name_it_and_ours_do_not() {
        let line = |target: &str| {
            log_line(
                &log::Record::builder()
                    .level(log::Level::Debug)
                    .target(target)
                    .args(format_args!("connecting"))
                    .build(),
            )
        };
        assert_eq!(
            line("hyper_util::client"),
            "DEBUG hyper_util::client: connecting"
        );
        assert_eq!(line("spinneret::engine"), "DEBUG connecting");
        assert_eq!(line("spinneret"), "DEBUG connecting");
    }

    #[test]
    fn options_before_and_after_the_command_name_are_merged() {
        let cli = Cli::try_parse_from([
            "spinneret",
            "-s",
            "a=1",
            "-L",
            "warn",
            "crawl",
            "http://x/",
            "-s",
            "b=2",
            "-s",
            "a=3",
        ])
        .unwrap();
        let Cli {
            mut command,
            common,
        } = cli;
        let merged = common.then(std::mem::take(command.common())).unwrap();
        assert_eq!(merged.set, ["a=1", "b=2", "a=3"]);
        assert_eq!(merged.log_level(), log::LevelFilter::Warn);
        assert_eq!(Common::default().log_level(), log::LevelFilter::Info);
        let later = Common {
            log_level: Some(log::LevelFilter::Trace),
            ..Common::default()
        };
        let first = Common {
            log_level: Some(log::LevelFilter::Error),
            ..Common::default()
        };
        assert_eq!(
            first.then(later).unwrap().log_level(),
            log::LevelFilter::Trace
        );
    }
}
