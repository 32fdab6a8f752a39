//! What a job directory gives a crawl's start: the store to write to, the
//! requests earlier runs left pending, their dupe store and stats, where
//! the start requests resume, and a re-crawl's revisits.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use slog::{info, o, Logger};

use crate::builder::Config;
use crate::context::Context;
use crate::dedupe::MemoryDupe;
use crate::error::{panic_message, Error, ErrorKind, Stage};
use crate::events::ResumeInfo;
use crate::jobdir::{BloomSizing, JobDir, KnownPages, Opened, WaitingPage};
use crate::request::Callback;
use crate::spider::{Spider, StartRequests};
use crate::stats::Stats;

/// What the job directory gives the start: the store to write to, and what
/// earlier runs left. Empty without a job directory or on a new job.
pub(super) struct Replay<C> {
    /// The open job directory, for the JobStore.
    pub(super) store: Option<JobDir<C>>,
    /// Requests accepted and not completed: crawled first.
    pub(super) pending: Vec<Context<C>>,
    /// The saved Bloom filter, replacing the empty built-in one.
    pub(super) bloom: Option<MemoryDupe>,
    /// Start requests earlier runs consumed, skipped now (0 when they are
    /// pulled again from the first).
    pub(super) starts_pulled: u64,
    /// Earlier runs exhausted the start requests: none are pulled.
    pub(super) skip_starts: bool,
    /// What was found, for the handle; `None` on a new job.
    pub(super) resumed: Option<ResumeInfo>,
    /// A re-crawl's revisits, pulled before the spider's start requests.
    pub(super) known: Option<KnownPages<C>>,
    /// Re-crawls begun in the job directory (0: none, or none there).
    pub(super) generation: u32,
    /// How many of the start requests are the re-crawl's revisits.
    pub(super) revisits: u64,
    /// A re-crawl's revisits that wait for their sitemap, for the
    /// Scheduler.
    pub(super) deferred: Vec<WaitingPage>,
}

impl<C: Callback> Replay<C> {
    /// Opens and replays the job directory, if any; a resumed job's stats
    /// continue in `stats`.
    pub(super) fn open(
        s: &Config,
        builtin_bloom: bool,
        stats: &Arc<Stats>,
        log: &Logger,
    ) -> Result<Self, Error> {
        let mut replay = Replay {
            store: None,
            pending: Vec::new(),
            bloom: None,
            starts_pulled: 0,
            skip_starts: false,
            resumed: None,
            known: None,
            generation: 0,
            revisits: 0,
            deferred: Vec::new(),
        };
        let Some(dir) = &s.job_dir else {
            return Ok(replay);
        };
        let sizing = builtin_bloom.then_some(BloomSizing {
            capacity: s.bloom_capacity,
            rate: s.bloom_rate,
            mode: s.dupe_mode,
        });
        let log = log.new(o!("actor" => "job_store"));
        let recrawl = s.recrawl.then(|| holds(s));
        let (store, opened) = JobDir::<C>::open_with(dir, sizing, log.clone(), recrawl)?;
        replay.store = Some(store);
        let list = !s.recrawl_unchanged_items;
        let r = match opened {
            Opened::New => return Ok(replay),
            Opened::Recrawl { generation, pages } => {
                replay.generation = generation;
                let mut known =
                    KnownPages::open(dir, generation, list, stats.clone(), log.clone())?;
                replay.deferred = known.take_deferred();
                replay.known = Some(known);
                stats.add_named(crate::recrawl::KNOWN, pages);
                info!(log, "re-crawling a finished job"; "generation" => generation, "known_pages" => pages);
                return Ok(replay);
            }
            Opened::Resumed(r) => *r,
        };
        let finished = r.info.pending == 0 && r.info.starts_exhausted;
        if r.generation > 0 && !finished {
            // A re-crawl stopped halfway: its list, at the position the
            // start requests reached.
            replay.generation = r.generation;
            let mut known = KnownPages::open(dir, r.generation, list, stats.clone(), log.clone())?;
            // Once the start requests ran out, the deferred revisits were
            // released: they are pending, or done.
            if !r.info.starts_exhausted {
                replay.deferred = known.take_deferred();
            }
            replay.known = Some(known);
        }
        if let Some(saved) = &r.stats {
            stats.restore(saved);
        }
        stats.add_named("jobdir/resumed", 1);
        replay.bloom = r.bloom.filter(|_| builtin_bloom);
        if !s.rerun_start_requests {
            replay.starts_pulled = r.info.starts_pulled;
            replay.skip_starts = r.info.starts_exhausted;
        }
        replay.pending = r.pending;
        replay.resumed = Some(r.info);
        Ok(replay)
    }
}

/// Whether a re-crawl begun now holds the revisits of pages a sitemap
/// listed with a `<lastmod>` until the sitemap says whether they changed
/// (the list keeps the choice for the whole re-crawl). Not when the spider
/// wants every page's items (every body is fetched then), nor in a
/// distributed crawl (the workers do not share them).
fn holds(s: &Config) -> bool {
    #[cfg(feature = "distributed")]
    if s.redis.is_some() {
        return false;
    }
    s.recrawl_sitemap_lastmod && !s.recrawl_unchanged_items
}

/// The spider's start requests, less those earlier runs consumed; a panic
/// in `start_requests` fails the start.
pub(super) fn start_requests<S: Spider>(
    spider: &S,
    job: &mut Replay<S::Callback>,
) -> Result<StartRequests<S::Callback>, Error> {
    let starts = std::panic::catch_unwind(AssertUnwindSafe(|| spider.start_requests()))
        .map_err(|p| Error::new(Stage::Setup, ErrorKind::Panic(panic_message(&*p))))?;
    // A re-crawl revisits the pages it knows first: through the dupe
    // filter before any link to them, so none is fetched twice.
    let starts = match job.known.take() {
        Some(known) => {
            job.revisits = known.len();
            Box::new(known.chain(starts))
        }
        None => starts,
    };
    Ok(if job.skip_starts {
        Box::new(std::iter::empty())
    } else if job.starts_pulled > 0 {
        Box::new(starts.skip(usize::try_from(job.starts_pulled).unwrap_or(usize::MAX)))
    } else {
        starts
    })
}
