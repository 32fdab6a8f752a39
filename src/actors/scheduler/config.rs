//! What a Scheduler is built from: the policies it admits and dispatches
//! under ([`SchedulerConfig`], set through the builder) and where it sends
//! things ([`SchedulerOutbox`]: recipients, so tests can put fakes in the
//! queue's, the dupe filter's and the pool's place).

use actix::Recipient;

use crate::messages::{Check, Dispatch, Drain, Pop, Push};
use crate::politeness::slots::SlotConfig;
use crate::request::Callback;

/// Where the scheduler sends things; recipients so tests can use fakes.
pub(crate) struct SchedulerOutbox<C: Callback> {
    /// The queue: push.
    pub push: Recipient<Push<C>>,
    /// The queue: pop.
    pub pop: Recipient<Pop<C>>,
    /// The queue: drain on stop.
    pub drain: Recipient<Drain<C>>,
    /// The dupe filter; `None` when de-duplication is off.
    pub dupe: Option<Recipient<Check<C>>>,
    /// The downloader pool.
    pub pool: Recipient<Dispatch<C>>,
}

/// The scheduling policies of a crawl (set through the builder).
#[derive(Clone, Debug)]
pub(crate) struct SchedulerConfig {
    /// Most requests in flight at once, over all hosts. Default 16.
    pub concurrency: usize,
    /// Per-host politeness.
    pub slots: SlotConfig,
    /// Drop requests deeper than this (`depth/filtered`). Default none.
    pub depth_limit: Option<u32>,
    /// Subtracted from a request's priority per level of depth (by the
    /// Parser, when it gives a new request its depth): positive crawls
    /// breadth-first, negative depth-first. Default 0.
    pub depth_priority: i32,
    /// When not empty, only these domains (and their subdomains) are
    /// crawled; others are dropped (`offsite/filtered`) unless
    /// `dont_filter`. Default empty.
    pub allowed_domains: Vec<String>,
    /// Obey robots.txt: fetch it with this User-Agent and match its rules
    /// for the User-Agent's product token. Default off.
    pub robots_agent: Option<String>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            concurrency: 16,
            slots: SlotConfig::default(),
            depth_limit: None,
            depth_priority: 0,
            allowed_domains: Vec::new(),
            robots_agent: None,
        }
    }
}

#[cfg(test)]
impl SchedulerConfig {
    /// The defaults with a global concurrency of `n`.
    pub fn with_concurrency(n: usize) -> Self {
        SchedulerConfig {
            concurrency: n,
            ..SchedulerConfig::default()
        }
    }
}
