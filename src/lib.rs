//! spinneret: a web-crawling framework built as a system of actix actors.
//!
//! A [`Spider`] yields start requests and parses responses; the crawl runs
//! them through separate actors — Engine, Scheduler, CacheQueue, a
//! Downloader pool, DupeFilter, Parser, PipelineStage, ErrorHandler — that
//! exchange typed messages carrying a [`Context`]. `actors.md` at the
//! repository root is the design document: the numbered data flow, what
//! each actor handles and sends, the supervision tree, and what happens on
//! restart, pause, stop and finish.
//!
//! ```no_run
//! use spinneret::{start_urls, Crawler, Error, Output, Response, Spider, StartRequests};
//!
//! struct Quotes;
//!
//! impl Spider for Quotes {
//!     type Callback = ();
//!     fn name(&self) -> &str { "quotes" }
//!     fn start_requests(&self) -> StartRequests<()> {
//!         start_urls(["http://127.0.0.1:8080/"]).expect("valid start URLs")
//!     }
//!     fn parse(&self, _: (), response: &Response, out: &mut Output<()>) -> Result<(), Error> {
//!         out.item(serde_json::json!({"url": response.url.as_str(), "bytes": response.body.len()}));
//!         for href in response.css_attr("a[rel=next]", "href")? {
//!             out.request(response.follow(&href)?);
//!         }
//!         Ok(())
//!     }
//! }
//!
//! #[actix::main]
//! async fn main() -> Result<(), Error> {
//!     let crawl = Crawler::builder(Quotes).concurrency(32).build()?.start()?;
//!     let stats = crawl.join().await?;
//!     println!("{}", serde_json::to_string(&stats).unwrap());
//!     Ok(())
//! }
//! ```
//!
//! # Layout
//! The crate is layered: each module imports only from its own layer or the
//! ones above it in this list (`.ci/layers.py` checks it).
//!
//! 1. Plain data. `error` (the one [`Error`] type), `request` ([`Request`],
//!    the [`Callback`] trait, the host slot key), `response` ([`Response`]:
//!    charset decoding, CSS selectors), `item`, `context`, `stats` (atomic
//!    counters and their snapshot), `state` ([`CrawlState`]), `events`
//!    ([`CrawlEvent`], checkpoint and resume info), `host` (whether a host
//!    is within a domain), `redact` (credentials kept out of what is
//!    printed), `logging` (the default logger: slog lines forwarded to the
//!    `log` facade).
//! 2. Policies and back-ends, with no actor addresses. `spider` (the
//!    [`Spider`] trait, [`Output`]), `fingerprint`, `retry`, `backoff`,
//!    `redirect`, `politeness` (host slots, AutoThrottle, robots.txt and its fetch),
//!    `admission` (depth and offsite), `limits` (when an unattended crawl
//!    stops early: items, pages, errors, time, memory), [`queue`] and
//!    [`dedupe`] (back-end traits and the in-memory back-ends), `links` (the
//!    [`LinkExtractor`]: its configuration, and the page scanner), `sitemap`
//!    ([`SitemapRules`]: sitemaps, indexes and robots.txt `Sitemap:` lines
//!    read as a stream into requests), `http`
//!    (one exchange under the crawler's limits; bodies under a size limit,
//!    decoded in bounded pieces, proxy URLs, CONNECT tunnels, the
//!    environment's proxies, the address guard refusing private
//!    destinations, TLS settings and certificate checks, why a
//!    connection failed), `httpcache` (the HTTP cache: its policies and its
//!    checksummed, size-bounded directory),
//!    `middleware`, `pipeline`, [`pipelines`] (JSON Lines, CSV, batched
//!    HTTP persistence), `json_sender`, `journal` (the checksummed log of a
//!    job directory), `jobdir` (its record format and replay), `recrawl`
//!    (the page index and how a re-crawl judges each answer),
//!    [`distributed`] (feature `distributed`: the Redis queue, dupe filter
//!    and membership).
//! 3. The protocol. `messages` (every message the actors exchange) and
//!    `accounting` (how the crawl knows it is finished).
//! 4. The actors, one file each under `actors/`: engine, scheduler (a
//!    folder: one file per job), cache_queue, pool, downloader, dupefilter,
//!    parser, pipeline_stage, error_handler, job_store, coordinator (feature
//!    `distributed`).
//! 5. Assembly and API. `builder` ([`CrawlerBuilder`]: configuration and
//!    its defaults), `settings` ([`Settings`]: the builder's settings as
//!    data, read from a TOML file, the environment and `KEY=VALUE` pairs),
//!    `launch` (starting a crawl: the actors wired in a few named steps),
//!    `arbiter` (starting one on another arbiter), `handle`
//!    ([`CrawlHandle`]: pause, resume, stop, stats, events, join), `registry` ([`SpiderRegistry`]: spiders by name, each
//!    a factory of a configured crawl), [`control`] (feature `control`, on
//!    by default: the HTTP control API a host application mounts), `cli`
//!    (feature `cli`: the `spinneret` command line), `assertions`
//!    (compile-time checks that the handle, settings, registry, control
//!    API, builder and crawler are thread-safe).
//!
//! A spider or pipeline author needs only the names re-exported here; the
//! modules [`pipelines`], [`queue`], [`dedupe`], [`distributed`] (feature
//! `distributed`), [`control`] and `cli` (feature `cli`) are public for
//! what they hold.

#![deny(missing_docs)]
// docs.rs (`--cfg docsrs`) marks what each feature adds.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod accounting;
mod actors;
mod admission;
mod arbiter;
mod assertions;
mod backoff;
mod builder;
#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod cli;
mod context;
#[cfg(feature = "control")]
#[cfg_attr(docsrs, doc(cfg(feature = "control")))]
pub mod control;
pub mod dedupe;
#[cfg(feature = "distributed")]
#[cfg_attr(docsrs, doc(cfg(feature = "distributed")))]
pub mod distributed;
mod error;
mod events;
mod fingerprint;
mod handle;
mod host;
mod http;
mod httpcache;
mod item;
mod jobdir;
mod journal;
mod json_sender;
mod launch;
mod limits;
mod links;
mod logging;
mod messages;
mod middleware;
mod pipeline;
pub mod pipelines;
mod politeness;
pub mod queue;
mod recrawl;
mod redact;
mod redirect;
mod registry;
mod request;
mod response;
mod retry;
mod settings;
mod sitemap;
mod spider;
mod state;
mod stats;

pub use async_trait::async_trait;
// Re-exported so users name the versions `Response` returns.
pub use awc::http::header::HeaderMap;
pub use awc::http::Method;
pub use encoding_rs;
// The parsed page `Response::html` returns and what selecting on it needs;
// only these, so that the rest of scraper stays out of our API.
pub use scraper::{ElementRef, Html, Selector};

pub use backoff::Backoff;
pub use builder::{Crawler, CrawlerBuilder, ThreadLayout};
pub use context::Context;
#[cfg(feature = "distributed")]
#[cfg_attr(docsrs, doc(cfg(feature = "distributed")))]
pub use distributed::RedisOptions;
pub use error::{ConnectCause, Error, ErrorKind, Stage};
pub use events::{CheckpointInfo, CrawlEvent, ResumeInfo};
pub use handle::CrawlHandle;
pub use http::tls::{TlsRoots, TlsVersion};
pub use http::DEFAULT_USER_AGENT;
pub use httpcache::{CachePolicy, HttpCacheOptions};
pub use item::{Item, ItemMeta};
pub use jobdir::CheckpointPolicy;
pub use json_sender::{JsonSender, Sent};
pub use links::{LinkExtractor, LinkExtractorBuilder};
pub use middleware::{DownloadMiddleware, RequestAction, ResponseAction};
pub use pipeline::{Pipeline, PipelineContext, Verdict};
pub use politeness::{AutoThrottle, HostSlot};
pub use redirect::{REDIRECT_REASONS, REDIRECT_URLS};
pub use registry::{PreparedCrawl, SpiderArgs, SpiderRegistry};
pub use request::{Callback, Request};
pub use response::{Response, ResponseMeta};
pub use retry::RetryPolicy;
pub use settings::Settings;
pub use sitemap::{SitemapRules, SITEMAP_LASTMOD};
pub use spider::{start_urls, Failure, Output, Spider, StartRequests};
pub use state::CrawlState;
pub use stats::{Counter, Stats, StatsSnapshot};

/// The README's example, compiled with the doctests so it cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
