//! Spiders by name: a [`SpiderRegistry`] maps a name to a factory that
//! makes a configured crawl from the spider's arguments (`-a KEY=VALUE` on
//! the command line, a JSON object over the control API). The command
//! line's `run NAME`, the control API's `POST /crawls` and a task service
//! choosing a spider per task all look spiders up here.
//!
//! ```
//! use spinneret::{Crawler, Error, Output, Request, Response, Spider, SpiderArgs,
//!     SpiderRegistry, StartRequests};
//!
//! struct Quotes { start: Request<()> }
//!
//! impl Spider for Quotes {
//!     type Callback = ();
//!     fn name(&self) -> &str { "quotes" }
//!     fn start_requests(&self) -> StartRequests<()> {
//!         Box::new(std::iter::once(self.start.clone()))
//!     }
//!     fn parse(&self, _: (), _: &Response, _: &mut Output<()>) -> Result<(), Error> {
//!         Ok(())
//!     }
//! }
//!
//! let mut spiders = SpiderRegistry::new();
//! spiders.register("quotes", "Quotes from one start page (-a start=URL)", |args: &SpiderArgs| {
//!     let start = Request::get(args.get("start").unwrap_or("http://127.0.0.1:8080/"))?;
//!     Ok(Crawler::builder(Quotes { start }).concurrency(8))
//! });
//! let names: Vec<_> = spiders.iter().map(|(name, _)| name).collect();
//! assert_eq!(names, ["quotes"]);
//! assert!(spiders.prepare("nope", &SpiderArgs::default()).is_err());
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix::ArbiterHandle;
use slog::Logger;

use crate::builder::CrawlerBuilder;
use crate::error::Error;
#[cfg(doc)]
use crate::error::ErrorKind;
use crate::handle::CrawlHandle;
use crate::pipeline::Pipeline;
use crate::settings::Settings;
use crate::spider::Spider;

/// A spider's arguments: text values by name, as `-a KEY=VALUE` gives them.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct SpiderArgs(BTreeMap<String, String>);

impl SpiderArgs {
    /// No arguments.
    pub fn new() -> Self {
        SpiderArgs::default()
    }

    /// Sets `key` to `value` (a later value replaces an earlier one).
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.0.insert(key.into(), value.into());
        self
    }

    /// Parses `KEY=VALUE` (the value may hold `=`); a
    /// [`ErrorKind::Config`] error naming the text otherwise.
    pub fn parse_pair(&mut self, pair: &str) -> Result<&mut Self, Error> {
        match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok(self.set(k.trim(), v)),
            _ => Err(Error::config(format!(
                "spider argument {pair:?}: expected KEY=VALUE"
            ))),
        }
    }

    /// The value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The value of `key`, or a [`ErrorKind::Config`] error naming it.
    pub fn require(&self, key: &str) -> Result<&str, Error> {
        self.get(key)
            .ok_or_else(|| Error::config(format!("missing spider argument {key:?} (-a {key}=…)")))
    }

    /// The value of `key` parsed as a `T`, `None` when not given, or a
    /// [`ErrorKind::Config`] error naming the key and the value.
    pub fn parse<T>(&self, key: &str) -> Result<Option<T>, Error>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        self.get(key)
            .map(|v| {
                v.parse()
                    .map_err(|e| Error::config(format!("spider argument {key}={v:?}: {e}")))
            })
            .transpose()
    }

    /// Every argument, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// A factory: the spider's arguments to a configured builder.
type Factory = dyn Fn(&SpiderArgs) -> Result<Box<dyn Configurable>, Error> + Send + Sync;

/// One registered spider.
#[derive(Clone)]
struct Entry {
    /// One line for `list`.
    about: String,
    /// Makes the crawl.
    factory: Arc<Factory>,
}

/// Spiders by name; see the module docs. Cheap to clone (the factories are
/// shared).
#[derive(Clone, Default)]
pub struct SpiderRegistry {
    /// By name, in name order.
    spiders: BTreeMap<String, Entry>,
}

impl std::fmt::Debug for SpiderRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.spiders.iter().map(|(k, e)| (k, &e.about)))
            .finish()
    }
}

impl SpiderRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        SpiderRegistry::default()
    }

    /// Registers `name` (replacing an earlier one of that name): `about` is
    /// its one-line description, `factory` makes its crawl from the
    /// arguments, with the spider's own configuration (middlewares,
    /// pipelines, settings that belong to the spider). The caller's
    /// [`Settings`] are applied over what the factory set.
    pub fn register<S, F>(&mut self, name: &str, about: &str, factory: F) -> &mut Self
    where
        S: Spider,
        F: Fn(&SpiderArgs) -> Result<CrawlerBuilder<S>, Error> + Send + Sync + 'static,
    {
        let factory =
            move |args: &SpiderArgs| factory(args).map(|b| Box::new(b) as Box<dyn Configurable>);
        self.spiders.insert(
            name.to_string(),
            Entry {
                about: about.to_string(),
                factory: Arc::new(factory),
            },
        );
        self
    }

    /// Every registered name with its description, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.spiders
            .iter()
            .map(|(k, e)| (k.as_str(), e.about.as_str()))
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.spiders.contains_key(name)
    }

    /// The crawl of `name` made from `args`, not started; a
    /// [`ErrorKind::Config`] error for an unknown name (listing the known
    /// ones) or whatever the factory refused.
    pub fn prepare(&self, name: &str, args: &SpiderArgs) -> Result<PreparedCrawl, Error> {
        let Some(entry) = self.spiders.get(name) else {
            let known: Vec<&str> = self.spiders.keys().map(String::as_str).collect();
            return Err(Error::config(if known.is_empty() {
                format!("unknown spider {name:?}: none is registered")
            } else {
                format!("unknown spider {name:?}; registered: {}", known.join(", "))
            }));
        };
        Ok(PreparedCrawl {
            name: name.to_string(),
            builder: (entry.factory)(args)?,
        })
    }
}

/// A registered spider's crawl, configured by its factory, not started:
/// the caller adds its settings, pipelines and logger, then starts it.
pub struct PreparedCrawl {
    /// The name it was registered under.
    name: String,
    /// The factory's builder, its spider type erased.
    builder: Box<dyn Configurable>,
}

impl std::fmt::Debug for PreparedCrawl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedCrawl")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A started crawl's future, on the caller's arbiter.
pub(crate) type Starting = Pin<Box<dyn Future<Output = Result<CrawlHandle, Error>>>>;

/// What a [`PreparedCrawl`] needs of its builder, whatever its spider.
pub(crate) trait Configurable: Send {
    /// Applies `settings` over the builder's.
    fn settings(self: Box<Self>, settings: &Settings) -> Box<dyn Configurable>;
    /// Adds a pipeline after the builder's.
    fn pipeline(self: Box<Self>, pipeline: Box<dyn Pipeline>) -> Box<dyn Configurable>;
    /// Sets the logger.
    fn logger(self: Box<Self>, log: Logger) -> Box<dyn Configurable>;
    /// Builds and starts (connecting to Redis first when distributed).
    fn start(self: Box<Self>) -> Starting;
    /// Builds here, then starts on `arbiter`.
    fn start_on(self: Box<Self>, arbiter: ArbiterHandle) -> Starting;
}

impl<S: Spider> Configurable for CrawlerBuilder<S> {
    fn settings(self: Box<Self>, settings: &Settings) -> Box<dyn Configurable> {
        Box::new((*self).settings(settings))
    }

    fn pipeline(self: Box<Self>, pipeline: Box<dyn Pipeline>) -> Box<dyn Configurable> {
        Box::new((*self).boxed_pipeline(pipeline))
    }

    fn logger(self: Box<Self>, log: Logger) -> Box<dyn Configurable> {
        Box::new((*self).logger(log))
    }

    fn start(self: Box<Self>) -> Starting {
        Box::pin(async move { (*self).build()?.start_async().await })
    }

    fn start_on(self: Box<Self>, arbiter: ArbiterHandle) -> Starting {
        Box::pin(async move { (*self).build()?.start_on(&arbiter).await })
    }
}

impl PreparedCrawl {
    /// The name it was registered under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Applies `settings` over what the factory configured (only the
    /// settings `settings` holds a value for).
    pub fn settings(mut self, settings: &Settings) -> Self {
        self.builder = self.builder.settings(settings);
        self
    }

    /// Adds `pipeline` after the factory's pipelines (an output feed, say).
    pub fn pipeline(mut self, pipeline: impl Pipeline) -> Self {
        self.builder = self.builder.pipeline(Box::new(pipeline));
        self
    }

    /// Where the crawl logs.
    pub fn logger(mut self, log: Logger) -> Self {
        self.builder = self.builder.logger(log);
        self
    }

    /// Checks the configuration and starts the crawl on the current
    /// arbiter ([`Crawler::start_async`](crate::Crawler::start_async)).
    pub async fn start(self) -> Result<CrawlHandle, Error> {
        self.builder.start().await
    }

    /// Checks the configuration here and starts the crawl on `arbiter`
    /// ([`Crawler::start_on`](crate::Crawler::start_on)), so that it
    /// outlives the caller's arbiter.
    pub async fn start_on(self, arbiter: &ArbiterHandle) -> Result<CrawlHandle, Error> {
        self.builder.start_on(arbiter.clone()).await
    }
}
