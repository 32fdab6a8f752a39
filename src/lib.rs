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
//! use spinneret::{Crawler, Error, Output, Request, Response, Spider, StartRequests};
//!
//! struct Quotes;
//!
//! impl Spider for Quotes {
//!     type Callback = ();
//!     fn name(&self) -> &str { "quotes" }
//!     fn start_requests(&self) -> StartRequests<()> {
//!         Box::new(Request::get("http://127.0.0.1:8080/").into_iter())
//!     }
//!     fn parse(&self, _: (), response: &Response, out: &mut Output<()>) -> Result<(), Error> {
//!         out.item(serde_json::json!({"url": response.url.as_str(), "bytes": response.body.len()}));
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
//! - [`spider`]: the `Spider` trait, callbacks, `Output`, `Failure`.
//! - [`request`], [`response`], [`item`], [`context`]: the data that flows;
//!   a response decodes its charset and answers CSS selectors.
//! - [`links`]: the link extractor a spider follows pages with.
//! - [`middleware`], [`pipeline`]: user extension points; [`pipelines`]:
//!   ready-made ones (JSON Lines file, batched HTTP persistence with a
//!   spill file).
//! - [`json_sender`], [`backoff`]: sending JSON with retries; [`retry`]:
//!   which failed requests are retried, and when.
//! - [`builder`]: configuration with defaults, and starting a crawl.
//! - [`handle`]: pause, resume, stop, stats, join; [`events`]: lifecycle
//!   events to subscribe to.
//! - [`stats`]: atomic counters and their snapshot (Scrapy's names).
//! - [`fingerprint`], [`dedupe`], [`queue`]: dedupe and queue back-ends.
//! - [`jobdir`]: a crawl's durable state in a job directory (checkpoints,
//!   resume); [`journal`]: the checksummed append-only log it is written
//!   to.
//! - [`actors`]: one file per actor; [`messages`]: every message.
//! - `accounting`: how the crawl knows it is finished; `http`: one awc
//!   exchange with the limits a crawler needs; `body`: reading a body
//!   under its size limit, into memory or streamed to a file; `proxy`: HTTP
//!   proxies through CONNECT tunnels.
//! - [`error`]: the one error type.
//! - [`control`] (feature `control`, on by default): the HTTP control API
//!   a host application mounts: status, pause, resume, stop, events and
//!   Prometheus metrics, behind a bearer token.

#![deny(missing_docs)]

mod accounting;
pub mod actors;
pub mod backoff;
pub mod builder;
pub mod context;
#[cfg(feature = "control")]
pub mod control;
pub mod dedupe;
pub mod distributed;
pub mod error;
pub mod events;
pub mod fingerprint;
pub mod handle;
mod host;
mod http;
pub mod item;
pub mod jobdir;
pub mod journal;
pub mod json_sender;
mod launch;
pub mod links;
pub mod messages;
pub mod middleware;
pub mod pipeline;
pub mod pipelines;
mod politeness;
pub mod queue;
pub mod redirect;
pub mod request;
pub mod response;
pub mod retry;
pub mod spider;
mod state;
pub mod stats;

pub use async_trait::async_trait;
// Re-exported so users name the versions `Response` returns.
pub use awc::http::header::HeaderMap;
pub use awc::http::Method;
pub use builder::{Crawler, CrawlerBuilder, ThreadLayout};
pub use context::Context;
pub use distributed::RedisOptions;
pub use encoding_rs;
pub use error::{Error, ErrorKind, Stage};
pub use events::CrawlEvent;
pub use events::{CheckpointInfo, ResumeInfo};
pub use handle::CrawlHandle;
pub use http::DEFAULT_USER_AGENT;
pub use item::{Item, ItemMeta};
pub use jobdir::CheckpointPolicy;
pub use links::{LinkExtractor, LinkExtractorBuilder};
pub use middleware::{DownloadMiddleware, RequestAction, ResponseAction};
pub use pipeline::{Pipeline, PipelineContext, Verdict};
pub use politeness::{AutoThrottle, HostSlot};
pub use request::{Callback, Request};
pub use response::{Response, ResponseMeta};
pub use retry::RetryPolicy;
pub use scraper;
pub use spider::{Failure, Output, Spider, StartRequests};
pub use state::CrawlState;
pub use stats::{Counter, StatsSnapshot};

/// The README's example, compiled with the doctests so it cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
