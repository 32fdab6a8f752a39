//! The records of a job directory's journal, and replaying them into the
//! crawl's state.
//!
//! This module owns what a record holds and what it means; it knows
//! nothing of files (the [journal](crate::journal) stores records as opaque
//! payloads and makes each one durable) or of when records are written
//! (the parent module's [`JobDir`](super::JobDir)).
//!
//! # Format
//!
//! Each payload starts with a one-byte tag:
//!
//! ```text
//! delta: b'D' [JSON {added: [{ctx, bloom?}], done: [id], seen?: [fingerprint], pages?: [update], starts, stats}]
//! base:  b'B' [JSON length u64 LE] [JSON {pending: [ctx], completed, starts, stats, pages?: [page], generation?}] [dupe store]
//! ```
//!
//! `bloom` is left out when false; `pages` (the page index: a delta's
//! changes to it, a base's whole of it) when empty, and `generation` (how
//! many re-crawls began) when 0: directories written before they existed
//! read as having none. The dupe store's bytes are
//! [`MemoryDupe::to_bytes`]' versioned format (a base written by an earlier
//! release, in its version 1, still reads), or empty when the crawl does
//! not use the built-in store. The JSON field names are part
//! of the format: renaming one makes earlier job directories unreadable.
//!
//! # Replay rules
//!
//! - Records apply in the order written. A base replaces every state
//!   before it (it is only ever written first, by compaction); deltas apply
//!   on top of it.
//! - A request recorded again (re-queued) replaces its earlier copy and
//!   keeps its first arrival position, so the newest retry count and meta
//!   win and the queue order survives.
//! - A completed id counts only while its request is pending, so a
//!   completion recorded twice is counted once.
//! - The dupe store (Bloom filter and exact set) gets the fingerprint of
//!   every request recorded with `bloom`; a base's store replaces it.
//! - The page index is keyed by URL: a page seen replaces its record, a
//!   page gone removes it; a base's index replaces it.
//! - A record that cannot be read fails the whole replay, naming its
//!   place (a dupe store that cannot be read fails it with its own
//!   [`DupeStoreCorrupt`](crate::ErrorKind::DupeStoreCorrupt) or
//!   [`DupeStoreVersion`](crate::ErrorKind::DupeStoreVersion)):
//!   skipping it would lose accepted requests or bring back completed
//!   ones, and starting afresh would lose the whole job. (A torn last record never gets here: the journal cuts
//!   it off on open.)

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{journal_error, BloomSizing, StartsState};
use crate::context::Context;
use crate::dedupe::MemoryDupe;
use crate::error::Error;
use crate::events::ResumeInfo;
use crate::fingerprint::{fingerprint, Fingerprint};
use crate::recrawl::{PageRecord, PageUpdate};
use crate::request::Callback;
use crate::stats::StatsSnapshot;

/// Tag of a delta record.
pub(super) const DELTA: u8 = b'D';
/// Tag of a base record.
pub(super) const BASE: u8 = b'B';

/// The changes since the previous checkpoint (built by the Scheduler).
#[derive(Debug)]
pub(crate) struct Delta<C> {
    /// Requests accepted, with whether their fingerprint is in the Bloom
    /// filter (a re-queued request is recorded again, with `false`).
    pub added: Vec<(Context<C>, bool)>,
    /// Requests completed.
    pub done: Vec<Uuid>,
    /// Fingerprints put in the Bloom filter by requests that ended at
    /// admission (a re-crawl's pages its sitemaps said were unchanged):
    /// never pending, they only need to be seen on replay.
    pub seen: Vec<Fingerprint>,
    /// The page index's changes of the requests completed.
    pub pages: Vec<PageUpdate<C>>,
    /// Start-request position.
    pub starts: StartsState,
    /// The stats when the checkpoint was taken.
    pub stats: StatsSnapshot,
}

impl<C> Default for Delta<C> {
    fn default() -> Self {
        Delta {
            added: Vec::new(),
            done: Vec::new(),
            seen: Vec::new(),
            pages: Vec::new(),
            starts: StartsState::default(),
            stats: StatsSnapshot::default(),
        }
    }
}

impl<C: Callback> Delta<C> {
    /// The delta record's payload. Fails only when a context cannot be
    /// written as JSON (a callback's or meta's `Serialize` failing).
    pub(super) fn encode(self) -> Result<Vec<u8>, serde_json::Error> {
        let record = DeltaRecord {
            added: self
                .added
                .into_iter()
                .map(|(ctx, bloom)| Added { ctx, bloom })
                .collect(),
            done: self.done,
            seen: self.seen,
            pages: self.pages,
            starts: self.starts,
            stats: self.stats,
        };
        let mut payload = vec![DELTA];
        serde_json::to_writer(&mut payload, &record)?;
        Ok(payload)
    }
}

/// One accepted request of a delta record.
#[derive(Serialize, Deserialize)]
#[serde(bound = "C: Callback")]
struct Added<C> {
    /// The whole request context, callback included: replay rebuilds the
    /// request from it alone.
    ctx: Context<C>,
    /// Its fingerprint went into the Bloom filter, so replay puts it back;
    /// left out of the record when false, as most re-queued requests are.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    bloom: bool,
}

/// A delta record's JSON.
#[derive(Serialize, Deserialize)]
#[serde(bound = "C: Callback")]
struct DeltaRecord<C> {
    /// Requests accepted since the previous checkpoint, in order.
    added: Vec<Added<C>>,
    /// Ids of requests completed since.
    done: Vec<Uuid>,
    /// Fingerprints seen without a request left pending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    seen: Vec<Fingerprint>,
    /// The page index's changes since, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pages: Vec<PageUpdate<C>>,
    /// The start-request position, replacing the previous one.
    starts: StartsState,
    /// The stats, replacing the previous ones.
    stats: StatsSnapshot,
}

/// A base record's JSON (the Bloom filter follows it, outside the JSON).
#[derive(Serialize, Deserialize)]
#[serde(bound = "C: Callback")]
struct BaseRecord<C> {
    /// Requests pending, in their first arrival order.
    pending: Vec<Context<C>>,
    /// Requests completed over all runs so far: the deltas folded in are
    /// gone, so the count is kept here.
    completed: u64,
    /// The start-request position.
    starts: StartsState,
    /// The stats of the last checkpoint folded in; `None` when there was
    /// none.
    stats: Option<StatsSnapshot>,
    /// The page index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pages: Vec<PageRecord<C>>,
    /// Re-crawls begun in this directory.
    #[serde(default, skip_serializing_if = "is_zero")]
    generation: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Why a record cannot be applied.
enum Unreadable {
    /// The record itself (its tag, length or JSON), as said: replay names
    /// its place.
    Record(String),
    /// The dupe store a base record holds: its own error, naming the file.
    Store(Error),
}

/// A journal replayed: the crawl's state at its last checkpoint.
pub(super) struct Replayed<C> {
    /// Pending requests by id, with their first arrival order.
    pending: HashMap<Uuid, (u64, Context<C>)>,
    /// The last arrival number given, for the next new request.
    arrival: u64,
    /// The fingerprints recorded in the filter, when the crawl uses the
    /// built-in one.
    bloom: Option<MemoryDupe>,
    /// The newest stats recorded.
    stats: Option<StatsSnapshot>,
    /// The newest start-request position recorded.
    starts: StartsState,
    /// Requests completed over all runs.
    completed: u64,
    /// The page index, by URL.
    pages: HashMap<String, PageRecord<C>>,
    /// Re-crawls begun.
    generation: u32,
}

impl<C: Callback> Replayed<C> {
    fn update_page(&mut self, update: PageUpdate<C>) {
        match update {
            PageUpdate::Seen(record) => {
                self.pages.insert(record.request.url.to_string(), *record);
            }
            PageUpdate::Gone(url) => {
                self.pages.remove(url.as_str());
            }
        }
    }

    fn new(sizing: Option<BloomSizing>) -> Result<Self, Error> {
        Ok(Replayed {
            pending: HashMap::new(),
            arrival: 0,
            bloom: sizing
                .map(|s| MemoryDupe::new(s.capacity, s.rate, s.mode))
                .transpose()?,
            stats: None,
            starts: StartsState::default(),
            completed: 0,
            pages: HashMap::new(),
            generation: 0,
        })
    }

    fn insert(&mut self, ctx: Context<C>) {
        match self.pending.get_mut(&ctx.id) {
            Some(slot) => slot.1 = ctx,
            None => {
                self.arrival += 1;
                self.pending.insert(ctx.id, (self.arrival, ctx));
            }
        }
    }

    /// Applies one record read from the journal `path`.
    fn apply(&mut self, payload: &[u8], path: &Path) -> Result<(), Unreadable> {
        match payload.split_first() {
            Some((&DELTA, json)) => {
                let delta: DeltaRecord<C> = serde_json::from_slice(json)
                    .map_err(|e| Unreadable::Record(format!("delta record: {e}")))?;
                for a in delta.added {
                    if a.bloom {
                        if let Some(bloom) = self.bloom.as_mut() {
                            bloom.insert_new(fingerprint(&a.ctx.request));
                        }
                    }
                    self.insert(a.ctx);
                }
                for id in delta.done {
                    if self.pending.remove(&id).is_some() {
                        self.completed += 1;
                    }
                }
                if let Some(bloom) = self.bloom.as_mut() {
                    for fp in delta.seen {
                        bloom.insert_new(fp);
                    }
                }
                for update in delta.pages {
                    self.update_page(update);
                }
                self.starts = delta.starts;
                self.stats = Some(delta.stats);
                Ok(())
            }
            Some((&BASE, rest)) => {
                let (len, rest) = rest
                    .split_first_chunk::<8>()
                    .ok_or(Unreadable::Record("base record cut short".into()))?;
                let len = usize::try_from(u64::from_le_bytes(*len))
                    .ok()
                    .filter(|&n| n <= rest.len())
                    .ok_or(Unreadable::Record("base record length out of range".into()))?;
                let (json, bloom) = rest.split_at(len);
                let base: BaseRecord<C> = serde_json::from_slice(json)
                    .map_err(|e| Unreadable::Record(format!("base record: {e}")))?;
                self.pending.clear();
                self.arrival = 0;
                for ctx in base.pending {
                    self.insert(ctx);
                }
                self.completed = base.completed;
                self.starts = base.starts;
                self.stats = base.stats;
                self.pages = base
                    .pages
                    .into_iter()
                    .map(|p| (p.request.url.to_string(), p))
                    .collect();
                self.generation = base.generation;
                if self.bloom.is_some() && !bloom.is_empty() {
                    let store = MemoryDupe::from_saved(bloom, path).map_err(Unreadable::Store)?;
                    self.bloom = Some(store);
                }
                Ok(())
            }
            _ => Err(Unreadable::Record("unknown record type".into())),
        }
    }

    /// The base record for this state.
    pub(super) fn encode_base(&self) -> Result<Vec<u8>, String> {
        let mut pending: Vec<_> = self.pending.values().collect();
        pending.sort_by_key(|(arrival, _)| *arrival);
        #[derive(Serialize)]
        #[serde(bound = "C: Callback")]
        /// `BaseRecord`'s fields, borrowed: the same JSON without copying
        /// the pending requests.
        struct BaseRef<'a, C> {
            /// As `BaseRecord::pending`.
            pending: Vec<&'a Context<C>>,
            /// As `BaseRecord::completed`.
            completed: u64,
            /// As `BaseRecord::starts`.
            starts: StartsState,
            /// As `BaseRecord::stats`.
            stats: &'a Option<StatsSnapshot>,
            /// As `BaseRecord::pages`, in URL order (a stable file).
            #[serde(skip_serializing_if = "Vec::is_empty")]
            pages: Vec<&'a PageRecord<C>>,
            /// As `BaseRecord::generation`.
            #[serde(skip_serializing_if = "is_zero")]
            generation: u32,
        }
        let mut pages: Vec<_> = self.pages.iter().collect();
        pages.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let json = serde_json::to_vec(&BaseRef {
            pending: pending.into_iter().map(|(_, c)| c).collect(),
            completed: self.completed,
            starts: self.starts,
            stats: &self.stats,
            pages: pages.into_iter().map(|(_, p)| p).collect(),
            generation: self.generation,
        })
        .map_err(|e| e.to_string())?;
        frame_base(&json, self.bloom.as_ref())
    }

    /// Replays every record of a journal.
    pub(super) fn replay(
        records: &[Vec<u8>],
        sizing: Option<BloomSizing>,
        path: &Path,
    ) -> Result<Self, Error> {
        let mut state = Replayed::new(sizing)?;
        for (i, r) in records.iter().enumerate() {
            state
                .apply(r, path)
                .map_err(|unreadable| match unreadable {
                    Unreadable::Record(reason) => journal_error(
                        path,
                        format!(
                            "record {} of {} cannot be read ({reason}); was the job directory \
                         written by another spider or version?",
                            i + 1,
                            records.len()
                        ),
                    ),
                    Unreadable::Store(e) => e,
                })?;
        }
        Ok(state)
    }

    /// What the crawl resumes from: the pending requests in their first
    /// arrival order. `records` and `dropped_bytes` are what the journal
    /// read and cut off, for [`ResumeInfo`].
    pub(super) fn restore(self, records: usize, dropped_bytes: u64) -> Restored<C> {
        let mut pending: Vec<_> = self.pending.into_values().collect();
        pending.sort_by_key(|(arrival, _)| *arrival);
        let info = ResumeInfo {
            pending: pending.len() as u64,
            completed: self.completed,
            starts_pulled: self.starts.pulled,
            starts_exhausted: self.starts.exhausted,
            records,
            dropped_bytes,
        };
        Restored {
            pending: pending.into_iter().map(|(_, c)| c).collect(),
            bloom: self.bloom,
            stats: self.stats,
            info,
            generation: self.generation,
        }
    }
}

/// The base record a re-crawl starts from: nothing pending, a fresh dupe
/// store (sized by `sizing`) and start position, no stats, and the page
/// index `pages` (records as their JSON, in URL order), copied as they are.
pub(super) fn encode_fresh_base<C: Callback>(
    sizing: Option<BloomSizing>,
    pages: &[Box<serde_json::value::RawValue>],
    generation: u32,
) -> Result<Vec<u8>, String> {
    /// `BaseRecord`'s JSON for a re-crawl's start.
    #[derive(Serialize)]
    struct FreshBase<'a> {
        /// None.
        pending: [(); 0],
        /// None yet.
        completed: u64,
        /// From the first.
        starts: StartsState,
        /// None yet.
        stats: Option<()>,
        /// As `BaseRecord::pages`.
        pages: &'a [Box<serde_json::value::RawValue>],
        /// As `BaseRecord::generation`.
        generation: u32,
    }
    let json = serde_json::to_vec(&FreshBase {
        pending: [],
        completed: 0,
        starts: StartsState::default(),
        stats: None,
        pages,
        generation,
    })
    .map_err(|e| e.to_string())?;
    let fresh = Replayed::<C>::new(sizing).map_err(|e| e.to_string())?;
    frame_base(&json, fresh.bloom.as_ref())
}

/// A base record's payload: its tag, the JSON's length and the JSON, then
/// the dupe store's bytes (none without a built-in store).
fn frame_base(json: &[u8], bloom: Option<&MemoryDupe>) -> Result<Vec<u8>, String> {
    let bloom = match bloom {
        Some(b) => b.to_bytes().map_err(|e| e.kind().to_string())?,
        None => Vec::new(),
    };
    let mut out = Vec::with_capacity(9 + json.len() + bloom.len());
    out.push(BASE);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(json);
    out.extend_from_slice(&bloom);
    Ok(out)
}

/// The state a resumed crawl starts from.
pub(crate) struct Restored<C> {
    /// Pending requests, in their first arrival order.
    pub pending: Vec<Context<C>>,
    /// The dupe store, when the crawl uses the built-in one.
    pub bloom: Option<MemoryDupe>,
    /// The stats of the last checkpoint.
    pub stats: Option<StatsSnapshot>,
    /// What was found.
    pub info: ResumeInfo,
    /// Re-crawls begun (0: none).
    pub generation: u32,
}
