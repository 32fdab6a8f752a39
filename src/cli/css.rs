//! `spinneret css`: what a CSS selector finds on a page, fetched as
//! `spinneret fetch` fetches it. One match per line on stdout (its text
//! with whitespace collapsed, an attribute, or its outer HTML) and a count
//! on stderr; like grep, the exit status says whether anything matched.

use std::process::ExitCode;

use scraper::ElementRef;

use super::one::{self, write_stdout, Problem, RequestArgs};
use super::Common;
use crate::response::{element_text, parse_selector};

/// `css`'s arguments.
#[derive(clap::Args, Debug)]
#[command(after_help = concat!("\
Exit status: 0 when something matched; 1 when nothing did, the page \
answered 400 or more, or the download failed (one line names the error \
kind and the URL); 2 for bad input (selector, URL, header, setting), \
found before anything is requested.\n\n\
",
    one::one_request_settings!()))]
pub(super) struct CssArgs {
    /// The request.
    #[command(flatten)]
    request: RequestArgs,
    /// The CSS selector, such as `h1`, `a.next`, `ul > li:nth-child(2)`.
    selector: String,
    /// Print this attribute of each match instead of its text (matches
    /// without it are left out).
    #[arg(long, value_name = "NAME", conflicts_with = "html")]
    attr: Option<String>,
    /// Print each match's outer HTML instead of its text.
    #[arg(long)]
    html: bool,
    /// Print the first match only.
    #[arg(long)]
    first: bool,
}

/// Runs `css`.
pub(super) async fn run(args: CssArgs, common: &Common) -> ExitCode {
    common.init_logging();
    match select(&args, common).await {
        Ok(0) => ExitCode::FAILURE,
        Ok(_) => ExitCode::SUCCESS,
        Err(problem) => problem.report("css"),
    }
}

/// Checks the selector and the request, downloads the page and prints
/// the matches; returns how many were printed.
async fn select(args: &CssArgs, common: &Common) -> Result<usize, Problem> {
    let selector =
        parse_selector(&args.selector).map_err(|kind| Problem::Usage(kind.to_string()))?;
    let prepared = one::prepare(&args.request, common)?;
    let response = one::download(prepared).await?.response;
    if response.status >= 400 {
        return Err(Problem::Failed(format!(
            "http_status: the page answered {} {}; nothing selected ({})",
            response.status,
            one::reason(response.status),
            one::shown(&response.url)
        )));
    }
    let page = response.html();
    let mut found = 0;
    let mut lacking = 0;
    let mut lines = String::new();
    for element in page.select(&selector) {
        match shown(args, element) {
            Some(line) => {
                found += 1;
                if found == 1 || !args.first {
                    lines.push_str(&line);
                    lines.push('\n');
                }
            }
            None => lacking += 1,
        }
    }
    write_stdout(lines.as_bytes())?;
    let printed = if args.first { found.min(1) } else { found };
    eprintln!("{}", count_line(args, printed, found, lacking));
    Ok(printed)
}

/// What is printed for one match, or `None` when it lacks the attribute.
fn shown(args: &CssArgs, element: ElementRef<'_>) -> Option<String> {
    if let Some(name) = &args.attr {
        return element.value().attr(name).map(str::to_string);
    }
    if args.html {
        return Some(element.html());
    }
    Some(element_text(element))
}

/// `3 matches`, `1 of 3 matches` (with `--first`), and how many matches
/// lacked the attribute asked for.
fn count_line(args: &CssArgs, printed: usize, found: usize, lacking: usize) -> String {
    let plural = |n: usize| if n == 1 { "match" } else { "matches" };
    let mut line = if printed == found {
        format!("{found} {}", plural(found))
    } else {
        format!("{printed} of {found} {}", plural(found))
    };
    if let (Some(name), true) = (&args.attr, lacking > 0) {
        line.push_str(&format!(" ({lacking} more without {name})"));
    }
    line
}
