//! Lazy sources of requests a parse callback emitted
//! (`Output::requests_from`: a sitemap's pages), pulled like the start
//! requests: a batch at a time, only while the queue (and the dupe filter)
//! holds less than twice the crawl's concurrency, one source at a time,
//! oldest first.
//!
//! Each source is one unit of open work until it runs out (or panics, or a
//! stop drops it). With a job directory, the request whose callback gave a
//! source is recorded completed only once all its sources ran out, behind
//! the dupe check of their last batch: a crash before that finds the
//! request pending, fetches it again, and its requests are emitted again
//! (those already accepted dropped as duplicates). Its `Completed` still
//! frees its concurrency slot and closes its own unit at once, so sources
//! never hold download slots. A distributed crawl drains each source as it
//! comes: a shared queue acknowledges a request as soon as it completes.

use std::collections::{HashMap, VecDeque};

use uuid::Uuid;

use crate::error::Stage;
use crate::request::Callback;
use crate::spider::RequestSource;
use crate::state::CrawlState;

use super::starts::{take_batch, START_BATCH};
use super::Scheduler;

/// The sources being pulled, and the requests that wait for theirs.
pub(super) struct Sources<C> {
    /// Sources not run out, oldest first; only the first is pulled, so at
    /// most one is partly read.
    live: VecDeque<RequestSource<C>>,
    /// With a job directory: per request that gave sources, how many are
    /// left, and whether its `Completed` came (recorded once none is
    /// left). A stop leaves its entries here: never recorded, the request
    /// is fetched again on resume.
    parents: HashMap<Uuid, Parent>,
}

/// A request whose sources have not all run out.
#[derive(Default)]
struct Parent {
    /// Its sources not run out yet.
    left: usize,
    /// Its `Completed` came and waits for them.
    completed: bool,
}

impl<C> Default for Sources<C> {
    fn default() -> Self {
        Sources {
            live: VecDeque::new(),
            parents: HashMap::new(),
        }
    }
}

impl<C> Sources<C> {
    /// Whether request `id`'s completion must wait for its sources (it is
    /// then recorded when they run out).
    pub(super) fn defers_completion(&mut self, id: Uuid) -> bool {
        match self.parents.get_mut(&id) {
            Some(p) => {
                p.completed = true;
                true
            }
            None => false,
        }
    }

    /// A source of `parent` ran out: whether `parent` is now to be
    /// recorded completed.
    fn ran_out(&mut self, parent: Uuid) -> bool {
        let Some(p) = self.parents.get_mut(&parent) else {
            return false;
        };
        p.left -= 1;
        if p.left > 0 {
            return false;
        }
        self.parents.remove(&parent).is_some_and(|p| p.completed)
    }
}

impl<C: Callback> Scheduler<C> {
    /// Takes sources a callback emitted (each already counted open).
    pub(super) fn add_sources(
        &mut self,
        sources: Vec<RequestSource<C>>,
        ctx: &mut actix::Context<Self>,
    ) {
        if self.checkpoints.is_some() {
            for parent in sources.iter().filter_map(RequestSource::parent) {
                self.sources.parents.entry(parent).or_default().left += 1;
            }
        }
        if self.state == CrawlState::Stopping {
            // Nothing pulled, nothing accepted: nothing to count.
            self.accounting.close(sources.len());
            return;
        }
        if self.shared.is_some() {
            for mut source in sources {
                while self.pull_from(&mut source, ctx) {}
            }
            return;
        }
        self.sources.live.extend(sources);
    }

    /// Pulls one batch from the oldest source if the queue is short of
    /// work and no re-crawl's revisits are left to pull; `false` when
    /// there was nothing to pull.
    pub(super) fn pull_source_batch(&mut self, ctx: &mut actix::Context<Self>) -> bool {
        // A re-crawl's revisits go first: a source's request for a known
        // page must not beat its revisit to the dupe filter.
        if self.state != CrawlState::Running
            || self.queued + self.checking >= 2 * self.config.concurrency
            || self.revisiting()
        {
            return false;
        }
        let Some(mut source) = self.sources.live.pop_front() else {
            return false;
        };
        if self.pull_from(&mut source, ctx) {
            self.sources.live.push_front(source);
        }
        true
    }

    /// Pulls one batch from `source` and admits it; `false` once it ran
    /// out (or panicked): its unit of open work is closed then, and the
    /// request that gave it recorded completed if it waited for it.
    fn pull_from(&mut self, source: &mut RequestSource<C>, ctx: &mut actix::Context<Self>) -> bool {
        let take = || source.take(START_BATCH);
        let what = (Stage::Parse, "a lazy request source");
        let (batch, exhausted) = take_batch(&self.log, &self.stats, take, what);
        self.accounting.open(batch.len());
        self.accept(batch, ctx);
        if !exhausted {
            return true;
        }
        self.accounting.close(1);
        let parent = source.parent();
        if let Some(parent) = parent.filter(|p| self.sources.ran_out(*p)) {
            // Behind the dupe check of the last batch, just sent.
            if let Some(d) = self.checkpoints.as_mut() {
                d.completed(parent);
            }
        }
        false
    }

    /// A stop: the sources are dropped unpulled, their units closed; the
    /// requests that gave them are never recorded completed.
    pub(super) fn drop_sources(&mut self) {
        let n = self.sources.live.len();
        self.sources.live.clear();
        self.accounting.close(n);
    }
}
