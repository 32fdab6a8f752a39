//! [`Settings`]: a crawl's plain settings as data, for configuration read
//! from files, the environment or a command line, applied to a builder
//! with [`CrawlerBuilder::settings`](crate::CrawlerBuilder::settings).
//!
//! Every field is optional: a value given replaces the builder's, one left
//! out keeps it.

use serde::{Deserialize, Serialize};

/// A crawl's plain settings; `None` keeps the builder's value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// [`CrawlerBuilder::concurrency`](crate::CrawlerBuilder::concurrency).
    pub concurrency: Option<usize>,
    /// [`CrawlerBuilder::per_host_concurrency`](crate::CrawlerBuilder::per_host_concurrency).
    pub per_host_concurrency: Option<usize>,
    /// [`CrawlerBuilder::user_agent`](crate::CrawlerBuilder::user_agent).
    pub user_agent: Option<String>,
}
