//! Job directories: a crawl's durable state, written as it runs so that a
//! stop, a crash or `kill -9` loses no accepted request.
//!
//! The state lives in the [journal](crate::journal) of the directory as a
//! write-ahead log, replayed in order on the next start:
//!
//! - a **delta** record per checkpoint: the requests accepted since the
//!   previous one (their full [`Context`], callback included, and whether
//!   their fingerprint went into the Bloom filter), the ids of requests
//!   completed since, how far the spider's start requests were consumed,
//!   and the stats;
//! - now and then a **base** record (compaction) that replaces the log: the
//!   requests still pending, the Bloom filter (bincode), the start-request
//!   position, the stats and how many requests completed in all.
//!
//! Replaying gives the pending requests (accepted, not completed: queued,
//! held, waiting out a backoff, or in flight when the process died), the
//! Bloom filter (the base's, plus every accepted fingerprint since), the
//! newest stats and the start-request position. A request is recorded
//! *completed* only once its response was parsed, its items went through
//! the pipelines (flushed before the checkpoint is written) and every
//! request it emitted is recorded accepted, so replay never drops work:
//! after a crash, at most the requests in flight or completed after the
//! last checkpoint are fetched again.
//!
//! Records are JSON (the contexts) plus bincode for the Bloom filter, one
//! checksummed journal record each, written on the [`JobDir`]'s own
//! thread with `fsync`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use slog::{info, warn, Logger};
use uuid::Uuid;

use crate::context::Context;
use crate::dedupe::BloomDupe;
use crate::error::{Error, ErrorKind, Stage};
use crate::events::{CheckpointInfo, ResumeInfo};
use crate::fingerprint::fingerprint;
use crate::journal::Journal;
use crate::request::Callback;
use crate::stats::StatsSnapshot;

/// Compact once the log is past this size and twice its last base.
const COMPACT_MIN_BYTES: u64 = 64 << 20;

/// Tag of a delta record.
const DELTA: u8 = b'D';
/// Tag of a base record.
const BASE: u8 = b'B';

/// How far the spider's start requests were consumed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartsState {
    /// Start requests pulled from the iterator (and recorded accepted, or
    /// filtered).
    pub pulled: u64,
    /// The iterator ran out.
    pub exhausted: bool,
}

/// How often a crawl with a job directory checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// At least this often (default 10 s).
    pub every: Duration,
    /// And whenever this many requests completed since the last one
    /// (default 1,000).
    pub every_requests: usize,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy {
            every: Duration::from_secs(10),
            every_requests: 1000,
        }
    }
}

/// The changes since the previous checkpoint (built by the Scheduler).
#[derive(Debug)]
pub(crate) struct Delta<C> {
    /// Requests accepted, with whether their fingerprint is in the Bloom
    /// filter (a re-queued request is recorded again, with `false`).
    pub added: Vec<(Context<C>, bool)>,
    /// Requests completed.
    pub done: Vec<Uuid>,
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
            starts: StartsState::default(),
            stats: StatsSnapshot::default(),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(bound = "C: Callback")]
struct Added<C> {
    ctx: Context<C>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    bloom: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(bound = "C: Callback")]
struct DeltaRecord<C> {
    added: Vec<Added<C>>,
    done: Vec<Uuid>,
    starts: StartsState,
    stats: StatsSnapshot,
}

#[derive(Serialize, Deserialize)]
#[serde(bound = "C: Callback")]
struct BaseRecord<C> {
    pending: Vec<Context<C>>,
    completed: u64,
    starts: StartsState,
    stats: Option<StatsSnapshot>,
}

/// Bloom-filter sizing for replay (when the crawl uses the built-in one).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BloomSizing {
    pub capacity: usize,
    pub rate: f64,
}

/// A journal replayed: the crawl's state at its last checkpoint.
pub(crate) struct Replayed<C> {
    /// Pending requests by id, with their first arrival order.
    pending: HashMap<Uuid, (u64, Context<C>)>,
    arrival: u64,
    bloom: Option<BloomDupe>,
    stats: Option<StatsSnapshot>,
    starts: StartsState,
    completed: u64,
}

impl<C: Callback> Replayed<C> {
    fn new(sizing: Option<BloomSizing>) -> Result<Self, Error> {
        Ok(Replayed {
            pending: HashMap::new(),
            arrival: 0,
            bloom: sizing
                .map(|s| BloomDupe::new(s.capacity, s.rate))
                .transpose()?,
            stats: None,
            starts: StartsState::default(),
            completed: 0,
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

    /// Applies one record.
    fn apply(&mut self, payload: &[u8]) -> Result<(), String> {
        match payload.split_first() {
            Some((&DELTA, json)) => {
                let delta: DeltaRecord<C> =
                    serde_json::from_slice(json).map_err(|e| format!("delta record: {e}"))?;
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
                self.starts = delta.starts;
                self.stats = Some(delta.stats);
                Ok(())
            }
            Some((&BASE, rest)) => {
                let (len, rest) = rest
                    .split_first_chunk::<8>()
                    .ok_or("base record cut short")?;
                let len = usize::try_from(u64::from_le_bytes(*len))
                    .ok()
                    .filter(|&n| n <= rest.len())
                    .ok_or("base record length out of range")?;
                let (json, bloom) = rest.split_at(len);
                let base: BaseRecord<C> =
                    serde_json::from_slice(json).map_err(|e| format!("base record: {e}"))?;
                self.pending.clear();
                self.arrival = 0;
                for ctx in base.pending {
                    self.insert(ctx);
                }
                self.completed = base.completed;
                self.starts = base.starts;
                self.stats = base.stats;
                if self.bloom.is_some() && !bloom.is_empty() {
                    self.bloom = Some(
                        BloomDupe::from_bytes(bloom).map_err(|e| format!("bloom filter: {e}"))?,
                    );
                }
                Ok(())
            }
            _ => Err("unknown record type".into()),
        }
    }

    /// The base record for this state.
    fn encode_base(&self) -> Result<Vec<u8>, String> {
        let mut pending: Vec<_> = self.pending.values().collect();
        pending.sort_by_key(|(arrival, _)| *arrival);
        #[derive(Serialize)]
        #[serde(bound = "C: Callback")]
        struct BaseRef<'a, C> {
            pending: Vec<&'a Context<C>>,
            completed: u64,
            starts: StartsState,
            stats: &'a Option<StatsSnapshot>,
        }
        let json = serde_json::to_vec(&BaseRef {
            pending: pending.into_iter().map(|(_, c)| c).collect(),
            completed: self.completed,
            starts: self.starts,
            stats: &self.stats,
        })
        .map_err(|e| e.to_string())?;
        let bloom = match &self.bloom {
            Some(b) => b.to_bytes().map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        let mut out = Vec::with_capacity(9 + json.len() + bloom.len());
        out.push(BASE);
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&bloom);
        Ok(out)
    }

    /// Replays every record of a journal.
    fn replay(
        records: &[Vec<u8>],
        sizing: Option<BloomSizing>,
        path: &Path,
    ) -> Result<Self, Error> {
        let mut state = Replayed::new(sizing)?;
        for (i, r) in records.iter().enumerate() {
            state.apply(r).map_err(|reason| {
                journal_error(
                    path,
                    format!(
                        "record {} of {} cannot be read ({reason}); was the job directory \
                         written by another spider or version?",
                        i + 1,
                        records.len()
                    ),
                )
            })?;
        }
        Ok(state)
    }
}

/// The state a resumed crawl starts from.
pub(crate) struct Restored<C> {
    /// Pending requests, in their first arrival order.
    pub pending: Vec<Context<C>>,
    /// The Bloom filter, when the crawl uses the built-in one.
    pub bloom: Option<BloomDupe>,
    /// The stats of the last checkpoint.
    pub stats: Option<StatsSnapshot>,
    /// What was found.
    pub info: ResumeInfo,
}

/// A job directory open for writing: replays it on open, then appends each
/// checkpoint's delta (appends end with `fsync`) and compacts the journal
/// when it grows. The JobDir actor owns one.
pub(crate) struct JobDir<C> {
    dir: PathBuf,
    journal: Journal,
    sizing: Option<BloomSizing>,
    /// Ids accepted and not completed, per what was written.
    pending: HashSet<Uuid>,
    /// Requests completed over all runs.
    completed: u64,
    /// Encoded records not yet durable (an append failed): written first,
    /// in order, by the next checkpoint.
    backlog: VecDeque<Vec<u8>>,
    /// Log size right after the last compaction.
    base_len: u64,
    /// Compaction threshold (a field so tests can lower it).
    compact_min: u64,
    /// Checkpoints written by this run.
    sequence: u64,
    /// Set when a delta could not be encoded: it can never be written, so
    /// nothing after it may be either (the log must stay a prefix of what
    /// happened); every later checkpoint fails with this reason.
    poisoned: Option<String>,
    log: Logger,
    _callback: PhantomData<fn() -> C>,
}

impl<C: Callback> JobDir<C> {
    /// Opens (creating) the job directory `dir` and replays its journal:
    /// `None` for a new directory.
    pub(crate) fn open(
        dir: &Path,
        sizing: Option<BloomSizing>,
        log: Logger,
    ) -> Result<(Self, Option<Restored<C>>), Error> {
        let (journal, records) = Journal::open(dir)?;
        let recovered = journal.recovered();
        if recovered.dropped_bytes > 0 {
            warn!(log, "job directory: cut a torn or corrupt tail off the journal";
                "bytes" => recovered.dropped_bytes, "records_kept" => recovered.records);
        }
        let mut store = JobDir {
            dir: dir.to_path_buf(),
            base_len: journal.len_bytes(),
            journal,
            sizing,
            pending: HashSet::new(),
            completed: 0,
            backlog: VecDeque::new(),
            compact_min: COMPACT_MIN_BYTES,
            sequence: 0,
            poisoned: None,
            log,
            _callback: PhantomData,
        };
        if records.is_empty() {
            return Ok((store, None));
        }
        let state = Replayed::<C>::replay(&records, sizing, store.journal.path())?;
        store.pending = state.pending.keys().copied().collect();
        store.completed = state.completed;
        let mut pending: Vec<_> = state.pending.into_values().collect();
        pending.sort_by_key(|(arrival, _)| *arrival);
        let info = ResumeInfo {
            pending: pending.len() as u64,
            completed: state.completed,
            starts_pulled: state.starts.pulled,
            starts_exhausted: state.starts.exhausted,
            records: records.len(),
            dropped_bytes: recovered.dropped_bytes,
        };
        info!(store.log, "job directory: resuming";
            "pending" => info.pending, "completed" => info.completed,
            "starts_pulled" => info.starts_pulled, "records" => info.records);
        let restored = Restored {
            pending: pending.into_iter().map(|(_, c)| c).collect(),
            bloom: state.bloom,
            stats: state.stats,
            info,
        };
        Ok((store, Some(restored)))
    }

    /// Encodes, appends and syncs one delta; compacts when the log is due.
    pub(crate) fn write(&mut self, delta: Delta<C>) -> Result<CheckpointInfo, Error> {
        if let Some(reason) = &self.poisoned {
            return Err(journal_error(self.journal.path(), reason.clone()));
        }
        for (ctx, _) in &delta.added {
            self.pending.insert(ctx.id);
        }
        for id in &delta.done {
            if self.pending.remove(id) {
                self.completed += 1;
            }
        }
        let record = DeltaRecord {
            added: delta
                .added
                .into_iter()
                .map(|(ctx, bloom)| Added { ctx, bloom })
                .collect(),
            done: delta.done,
            starts: delta.starts,
            stats: delta.stats,
        };
        let mut payload = vec![DELTA];
        if let Err(e) = serde_json::to_writer(&mut payload, &record) {
            let reason = format!(
                "a checkpoint cannot be encoded ({e}); no later checkpoint is written, \
                 the job resumes from the last one"
            );
            self.poisoned = Some(reason.clone());
            return Err(journal_error(self.journal.path(), reason));
        }
        self.backlog.push_back(payload);
        while let Some(next) = self.backlog.front() {
            self.journal.append(next)?;
            self.backlog.pop_front();
        }
        let compacted = self.journal.len_bytes() >= self.compact_min
            && self.journal.len_bytes() >= 2 * self.base_len
            && self.compact();
        self.sequence += 1;
        Ok(CheckpointInfo {
            sequence: self.sequence,
            pending: self.pending.len() as u64,
            completed: self.completed,
            log_bytes: self.journal.len_bytes(),
            compacted,
        })
    }

    /// Replaces the log by one base record of its replayed state. A failure
    /// leaves the log as it was (and is only logged).
    fn compact(&mut self) -> bool {
        let result = (|| {
            // A second handle only reads the records; the replace goes
            // through the journal in use, so its own failure handling
            // applies.
            let records = Journal::open(&self.dir)?.1;
            let path = self.journal.path().to_path_buf();
            let state = Replayed::<C>::replay(&records, self.sizing, &path)?;
            let base = state
                .encode_base()
                .map_err(|e| journal_error(&path, format!("encoding: {e}")))?;
            self.journal.replace(&base)
        })();
        match result {
            Ok(()) => {
                self.base_len = self.journal.len_bytes();
                info!(self.log, "job directory compacted"; "bytes" => self.base_len);
                true
            }
            Err(e) => {
                warn!(self.log, "job directory compaction failed; the log keeps growing"; "error" => %e);
                // Not again before the log doubles once more.
                self.base_len = self.journal.len_bytes();
                false
            }
        }
    }
}

fn journal_error(path: &Path, reason: String) -> Error {
    Error::new(
        Stage::Control,
        ErrorKind::Journal {
            path: path.to_path_buf(),
            reason,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::test_support::{log, req, Cb};

    fn ctx(url: &str) -> Context<Cb> {
        Context::new(req(url), None)
    }

    fn sizing() -> Option<BloomSizing> {
        Some(BloomSizing {
            capacity: 1000,
            rate: 0.001,
        })
    }

    fn delta(added: Vec<(Context<Cb>, bool)>, done: Vec<Uuid>, pulled: u64) -> Delta<Cb> {
        Delta {
            added,
            done,
            starts: StartsState {
                pulled,
                exhausted: false,
            },
            stats: StatsSnapshot::default(),
        }
    }

    fn urls(r: &Restored<Cb>) -> Vec<String> {
        r.pending
            .iter()
            .map(|c| c.request.url.to_string())
            .collect()
    }

    #[test]
    fn a_new_directory_has_nothing_to_resume() {
        let dir = tempfile::tempdir().unwrap();
        let (_, restored) = JobDir::<Cb>::open(dir.path(), sizing(), log()).unwrap();
        assert!(restored.is_none());
    }

    #[test]
    fn replay_gives_pending_in_order_bloom_and_starts() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (ctx("http://h/a"), ctx("http://h/b"), ctx("http://h/c"));
        {
            let (mut store, _) = JobDir::<Cb>::open(dir.path(), sizing(), log()).unwrap();
            let info = store
                .write(delta(
                    vec![(a.clone(), true), (b.clone(), true)],
                    Vec::new(),
                    2,
                ))
                .unwrap();
            assert_eq!((info.sequence, info.pending, info.completed), (1, 2, 0));
            let mut b2 = b.clone();
            b2.retries = 1;
            let info = store
                .write(delta(vec![(c.clone(), false), (b2, false)], vec![a.id], 3))
                .unwrap();
            assert_eq!((info.sequence, info.pending, info.completed), (2, 2, 1));
        }
        let (_, restored) = JobDir::<Cb>::open(dir.path(), sizing(), log()).unwrap();
        let mut r = restored.unwrap();
        assert_eq!(urls(&r), ["http://h/b", "http://h/c"]);
        assert_eq!(r.pending[0].retries, 1, "the newest copy of a request wins");
        assert_eq!(r.info.pending, 2);
        assert_eq!(r.info.completed, 1);
        assert_eq!(r.info.starts_pulled, 3);
        assert_eq!(r.info.records, 2);
        let bloom = r.bloom.as_mut().unwrap();
        assert!(!bloom.insert_new(fingerprint(&a.request)), "a was seen");
        assert!(!bloom.insert_new(fingerprint(&b.request)), "b was seen");
        assert!(
            bloom.insert_new(fingerprint(&c.request)),
            "c skipped the filter (dont_filter), so it is not in it"
        );
    }

    #[test]
    fn compaction_keeps_the_state_and_later_deltas_follow_it() {
        let dir = tempfile::tempdir().unwrap();
        let all: Vec<_> = (0..50).map(|i| ctx(&format!("http://h/{i}"))).collect();
        {
            let (mut store, _) = JobDir::<Cb>::open(dir.path(), sizing(), log()).unwrap();
            let first = all[..30].iter().map(|c| (c.clone(), true)).collect();
            let info = store.write(delta(first, Vec::new(), 30)).unwrap();
            assert!(!info.compacted, "under the size threshold");
            store.compact_min = 1;
            let done = all[..20].iter().map(|c| c.id).collect();
            let info = store.write(delta(Vec::new(), done, 30)).unwrap();
            assert!(info.compacted);
            assert_eq!(store.journal.records(), 1);
            let rest = all[30..].iter().map(|c| (c.clone(), true)).collect();
            let info = store.write(delta(rest, vec![all[25].id], 50)).unwrap();
            assert_eq!((info.pending, info.completed), (29, 21));
        }
        let (_, restored) = JobDir::<Cb>::open(dir.path(), sizing(), log()).unwrap();
        let mut r = restored.unwrap();
        let want: Vec<String> = all[20..]
            .iter()
            .filter(|c| c.id != all[25].id)
            .map(|c| c.request.url.to_string())
            .collect();
        assert_eq!(urls(&r), want);
        assert_eq!((r.info.completed, r.info.starts_pulled), (21, 50));
        let bloom = r.bloom.as_mut().unwrap();
        for c in &all {
            assert!(
                !bloom.insert_new(fingerprint(&c.request)),
                "{}",
                c.request.url
            );
        }
    }

    #[test]
    fn a_torn_last_record_resumes_from_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (ctx("http://h/a"), ctx("http://h/b"));
        {
            let (mut store, _) = JobDir::<Cb>::open(dir.path(), sizing(), log()).unwrap();
            store
                .write(delta(vec![(a.clone(), true)], Vec::new(), 1))
                .unwrap();
            store
                .write(delta(vec![(b.clone(), true)], vec![a.id], 2))
                .unwrap();
        }
        let path = dir.path().join("checkpoints.log");
        let len = std::fs::metadata(&path).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - 10).unwrap();
        let (_, restored) = JobDir::<Cb>::open(dir.path(), sizing(), log()).unwrap();
        let r = restored.unwrap();
        assert_eq!(urls(&r), ["http://h/a"]);
        assert_eq!((r.info.records, r.info.completed), (1, 0));
        assert!(r.info.dropped_bytes > 0);
    }

    #[test]
    fn a_record_of_another_spider_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut journal, _) = Journal::open(dir.path()).unwrap();
            journal.append(b"D{\"added\": 3}").unwrap();
        }
        let err = JobDir::<Cb>::open(dir.path(), sizing(), log())
            .err()
            .expect("a bad record must fail the open");
        assert!(matches!(err.kind(), ErrorKind::Journal { .. }), "{err}");
        assert!(err.to_string().contains("record 1 of 1"), "{err}");
    }
}
