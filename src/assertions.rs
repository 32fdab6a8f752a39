//! Compile-time checks that the types a host application moves or shares
//! between threads stay `Send` (and `Sync`): an actix-web handler holds a
//! [`CrawlHandle`] or the [`ControlApi`](crate::control::ControlApi) on
//! every worker thread, a registry and settings are read from many, and a
//! builder or crawler is made on one thread and started on another
//! arbiter. A field added to one of them that is not thread-safe (an `Rc`,
//! a `RefCell`) fails the build here, naming the type, instead of in a
//! user's code.

use crate::{CrawlHandle, Crawler, CrawlerBuilder, Settings, Spider, SpiderRegistry};

fn send<T: Send>() {}
fn send_sync<T: Send + Sync>() {}

const _: fn() = || {
    send_sync::<CrawlHandle>();
    send_sync::<Settings>();
    send_sync::<SpiderRegistry>();
    #[cfg(feature = "control")]
    send_sync::<crate::control::ControlApi>();
};

/// For every spider, not one chosen for the check: a builder and a crawler
/// are `Send` whatever the spider (a [`Spider`] is `Send + Sync` itself).
#[allow(dead_code)]
fn builder_and_crawler_are_send<S: Spider>() {
    send::<CrawlerBuilder<S>>();
    send::<Crawler<S>>();
}
