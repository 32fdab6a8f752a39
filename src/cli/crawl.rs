//! `spinneret crawl URL…`: the follow-links spider ([`FollowLinks`]) from
//! the command line.
//!
//! Everything given is checked before the crawl starts (start URLs,
//! patterns, selectors, the proxy, the output, the settings), each error
//! naming what it refused, with exit status 2. The configuration is built
//! in layers, each over the one before: the builder's defaults, then the
//! settings (file, then `SPINNERET_*` variables, then `-s`), then this
//! command's own flags. The flags that have a setting (`--concurrency` is
//! `concurrency`, `--redis` is `redis`, and so on) are folded into the
//! settings, which are then applied once: so `--redis URL -s
//! redis_crawl_id=ID` is one Redis configuration.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::ArgGroup;

use super::follow::{Field, FollowLinks};
use super::output::{Feed, OutputArgs};
use super::session::{run_to_end, usage_error};
use super::Common;
use crate::builder::{Crawler, CrawlerBuilder};
use crate::error::Error;
use crate::links::LinkExtractor;
use crate::request::Request;
use crate::settings::Settings;

/// `crawl`'s arguments.
#[derive(clap::Args, Debug)]
#[command(group(ArgGroup::new("domains").args(["same_domain", "allow_domain", "any_domain"])))]
pub(super) struct CrawlArgs {
    /// Where the crawl starts (http or https URLs).
    #[arg(required = true, value_name = "URL")]
    urls: Vec<String>,
    /// Where the items go, and the stats as JSON.
    #[command(flatten)]
    output: OutputArgs,
    /// Follow only links to the host of the page they are on. Without a
    /// domain option, only links to the `allowed_domains` setting's
    /// domains, else to the start URLs' hosts (and their subdomains), are
    /// followed, redirects included.
    #[arg(long)]
    same_domain: bool,
    /// Follow only links to this domain (a host name, without scheme,
    /// port or path) and its subdomains, instead of the start URLs' or the
    /// `allowed_domains` setting's (repeatable; the start URLs are fetched
    /// all the same).
    #[arg(long, value_name = "DOMAIN")]
    allow_domain: Vec<String>,
    /// Follow links to any domain (also over an `allowed_domains`
    /// setting).
    #[arg(long)]
    any_domain: bool,
    /// Follow links at most N hops from a start URL (0: the start pages
    /// only). Default: no limit.
    #[arg(long, value_name = "N")]
    depth: Option<u32>,
    /// Follow only links matching one of these regular expressions
    /// (repeatable).
    #[arg(long, value_name = "RE")]
    allow: Vec<String>,
    /// Never follow links matching any of these regular expressions
    /// (repeatable; wins over --allow).
    #[arg(long, value_name = "RE")]
    deny: Vec<String>,
    /// Most requests in flight at once (default 16).
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// Most requests in flight at once per host (default 8).
    #[arg(long, value_name = "N")]
    per_host: Option<usize>,
    /// Milliseconds between two requests to one host (default 0).
    #[arg(long, value_name = "MS")]
    delay: Option<u64>,
    /// Obey each site's robots.txt.
    #[arg(long)]
    obey_robots: bool,
    /// The User-Agent header (default spinneret/VERSION).
    #[arg(long, value_name = "S")]
    user_agent: Option<String>,
    /// Send every request through this HTTP proxy (http://[user:pass@]host:port).
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// Keep the crawl's state in DIR: run the same command again to resume.
    #[arg(long, value_name = "DIR")]
    job_dir: Option<PathBuf>,
    /// With --job-dir of a crawl that finished: revisit the pages it
    /// fetched, asking the site whether each changed, and parse only
    /// what changed or is new (the `recrawl/*` stats count them).
    #[arg(long)]
    recrawl: bool,
    /// Be one worker of a distributed crawl on this Redis
    /// (redis://host:port/db); workers run the same command. The crawl is
    /// named `crawl` there (the `redis_crawl_id` setting names it
    /// otherwise; the other `redis_*` settings apply too), and its keys
    /// stay once it has finished (a worker started on a finished crawl
    /// finishes at once): one such crawl per Redis database.
    #[cfg(feature = "distributed")]
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Stop gracefully after about N pages (the --close-after limits
    /// combine: the first reached stops the crawl).
    #[arg(long, value_name = "N")]
    close_after_pages: Option<u64>,
    /// Stop gracefully after about N items.
    #[arg(long, value_name = "N")]
    close_after_items: Option<u64>,
    /// Stop gracefully after SECS seconds.
    #[arg(long, value_name = "SECS")]
    close_after: Option<u64>,
    /// Add a field to every item: the text of the CSS selector's first
    /// match (NAME=CSS@attr: its attribute), null when nothing matches
    /// (repeatable).
    #[arg(long, value_name = "NAME=CSS")]
    field: Vec<String>,
}

/// Runs `crawl`.
pub(super) async fn run(args: CrawlArgs, common: &Common) -> ExitCode {
    common.init_logging();
    let (builder, feed) = match configure(&args, common) {
        Ok(configured) => configured,
        Err(e) => return usage_error(&e),
    };
    let start = async move { builder.build()?.start_async().await };
    run_to_end(start, &feed, args.output.stats_json).await
}

/// The crawl `args` describe, not started, and where its items go.
fn configure(
    args: &CrawlArgs,
    common: &Common,
) -> Result<(CrawlerBuilder<FollowLinks>, Feed), Error> {
    let starts = args
        .urls
        .iter()
        .map(|u| Request::get(u))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(proxy) = &args.proxy {
        crate::http::proxy::ProxyTarget::parse(proxy)?;
    }
    let fields = args
        .field
        .iter()
        .map(|f| Field::parse(f))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(twice) =
        (1..fields.len()).find(|&i| fields[..i].iter().any(|f| f.name() == fields[i].name()))
    {
        return Err(Error::config(format!(
            "--field {:?} is given twice",
            fields[twice].name()
        )));
    }
    let hosts: Vec<String> = starts
        .iter()
        .filter_map(|r| r.url.host_str().map(str::to_string))
        .collect();
    let mut settings = common.load_settings()?;
    let domains = followed_domains(args, settings.allowed_domains.take(), &hosts)?;
    let links = LinkExtractor::builder()
        .allow(args.allow.iter().cloned())
        .deny(args.deny.iter().cloned())
        .allow_domains(domains.iter().cloned())
        .same_domain(args.same_domain)
        .build()?;
    // The crawl itself also admits the start URLs' hosts, so the start
    // URLs are always fetched.
    if !domains.is_empty() {
        settings.allowed_domains = Some(domains.into_iter().chain(hosts).collect());
    }
    flags(&mut settings, args);
    let feed = Feed::from_args(&args.output)?;
    let spider = FollowLinks {
        starts: starts
            .into_iter()
            .map(|r| match &args.proxy {
                Some(p) => r.proxy(p.clone()),
                None => r,
            })
            .collect(),
        links,
        fields,
        proxy: args.proxy.clone(),
    };
    let columns = spider.columns();
    let mut builder = Crawler::builder(spider).settings(&settings);
    if let Some(sink) = feed.pipeline(Some(&columns)) {
        builder = builder.pipeline(sink);
    }
    Ok((builder, feed))
}

/// The domains whose links are followed (none: any, or the page's own
/// with --same-domain): --allow-domain's, else none with --any-domain or
/// --same-domain, else the `allowed_domains` setting's (`setting`), else
/// the start URLs' `hosts`. Each given domain is checked.
fn followed_domains(
    args: &CrawlArgs,
    setting: Option<Vec<String>>,
    hosts: &[String],
) -> Result<Vec<String>, Error> {
    if !args.allow_domain.is_empty() {
        return args
            .allow_domain
            .iter()
            .map(|d| domain(d, "--allow-domain"))
            .collect();
    }
    if args.any_domain || args.same_domain {
        return Ok(Vec::new());
    }
    match setting {
        Some(given) if !given.is_empty() => given
            .iter()
            .map(|d| domain(d, "setting allowed_domains:"))
            .collect(),
        _ => Ok(hosts.to_vec()),
    }
}

/// `value` when it is a domain or an IP address (`example.com`,
/// `127.0.0.1`); else an error naming it and `source`: a URL, a
/// `host:port`, a path or nothing would match no link.
fn domain(value: &str, source: &str) -> Result<String, Error> {
    if !value.is_empty() && url::Host::parse(value).is_ok() {
        return Ok(value.to_string());
    }
    Err(Error::config(format!(
        "{source} {value:?} is not a domain: give a host name such as \
         example.com, without scheme, port or path"
    )))
}

/// The command's own flags, laid over `settings` (the flags win).
fn flags(settings: &mut Settings, args: &CrawlArgs) {
    settings.merge(&Settings {
        depth_limit: args.depth,
        concurrency: args.concurrency,
        per_host_concurrency: args.per_host,
        download_delay: args.delay.map(Duration::from_millis),
        obey_robots_txt: args.obey_robots.then_some(true),
        user_agent: args.user_agent.clone(),
        job_dir: args.job_dir.clone(),
        recrawl: args.recrawl.then_some(true),
        #[cfg(feature = "distributed")]
        redis: args.redis.clone(),
        close_after_pages: args.close_after_pages,
        close_after_items: args.close_after_items,
        close_after_time: args.close_after.map(Duration::from_secs),
        ..Settings::default()
    });
}
