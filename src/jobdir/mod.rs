//! Job directories: a crawl's durable state, written as it runs so that a
//! stop, a crash or `kill -9` loses no accepted request.
//!
//! This module owns the `JobDir` writer (open and replay, write a
//! checkpoint, compact) and the checkpoint settings: it decides when
//! records are written and keeps the writer's promises. What a record holds
//! and how replay reads it is `record`'s; the bytes on disk and their
//! checksums are the [journal](crate::journal)'s.
//!
//! # Crash safety
//!
//! - One crawl per directory: `open` takes the directory's lock (`lock`)
//!   before reading anything, and a second crawl fails to start with
//!   [`ErrorKind::JobDirLocked`]. The lock is held until the crawl's finish
//!   sequence releases the JobStore's writer, before `join()` returns.
//! - A torn last record (a crash mid-append) is cut off and the job resumes
//!   from the record before it; damage followed by valid records fails the
//!   start with [`ErrorKind::JournalCorrupt`] and cuts nothing.
//! - `JobDir::write` returns only once its record is appended and synced
//!   (`fsync`, on the JobStore actor's own arbiter, so the Scheduler does
//!   not wait for the disk).
//! - A record whose append failed is kept and written first, in order, by
//!   the next checkpoint, so the log never skips one.
//! - A delta that cannot be encoded can never be written, so nothing after
//!   it is either (the log must stay a prefix of what happened): every
//!   later checkpoint fails, and the job resumes from the last good one.
//! - Compaction replays the log as written and swaps it for one base
//!   record through [`Journal::replace`], which is atomic; if it fails the
//!   log stays as it was and keeps growing.
//!
//! # What the journal holds
//!
//! The state lives in the journal of the directory as a write-ahead log,
//! replayed in order on the next start:
//!
//! - a **delta** record per checkpoint: the requests accepted since the
//!   previous one (their full [`Context`](crate::context::Context),
//!   callback included, and whether their fingerprint went into the Bloom
//!   filter), the ids of requests completed since, how far the spider's
//!   start requests were consumed, and the stats;
//! - now and then a **base** record (compaction) that replaces the log: the
//!   requests still pending, the dupe store (its Bloom filter stages and
//!   exact fingerprint set, in the store's own versioned format), the start-request
//!   position, the stats and how many requests completed in all.
//!
//! Replaying gives the pending requests (accepted, not completed: queued,
//! held, waiting out a backoff, or in flight when the process died), the
//! dupe store (the base's, plus every accepted fingerprint since), the
//! newest stats and the start-request position. A request is recorded
//! *completed* only once its response was parsed, its items went through
//! the pipelines (flushed before the checkpoint is written) and every
//! request it emitted is recorded accepted, so replay never drops work:
//! after a crash, at most the requests in flight or completed after the
//! last checkpoint are fetched again.
//!
//! Records are JSON (the contexts) plus the dupe store's versioned bytes
//! ([`MemoryDupe::to_bytes`](crate::dedupe::MemoryDupe::to_bytes)), one
//! checksummed journal record each. A job directory whose dupe store is in
//! a format this build does not read, or damaged, fails to open with
//! [`ErrorKind::DupeStoreVersion`] or [`ErrorKind::DupeStoreCorrupt`]: the
//! crawl never starts afresh over an old job's state.

mod index;
mod lock;
mod pages;
mod record;

use std::collections::{HashSet, VecDeque};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use slog::{info, warn, Logger};
use uuid::Uuid;

use crate::dedupe::DupeMode;
use crate::error::{Error, ErrorKind, Stage};
use crate::events::CheckpointInfo;
use crate::journal::Journal;
use crate::request::Callback;

use lock::JobLock;
pub(crate) use pages::{KnownPages, WaitingPage};
pub(crate) use record::Delta;
use record::{Replayed, Restored};

/// Compact once the log is past this size and twice its last base.
const COMPACT_MIN_BYTES: u64 = 64 << 20;

/// How far the spider's start requests were consumed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StartsState {
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

/// Dupe store sizing for replay (when the crawl uses the built-in one):
/// the filter a replay starts from must match the crawl's, as a base
/// record's filter replaces it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BloomSizing {
    /// Items the filter is sized for.
    pub capacity: usize,
    /// The false-positive rate it is sized for.
    pub rate: f64,
    /// Whether an exact set stands behind it.
    pub mode: DupeMode,
}

/// What opening a job directory found.
pub(crate) enum Opened<C> {
    /// Nothing: a new job.
    New,
    /// A job to resume.
    Resumed(Box<Restored<C>>),
    /// A finished job, whose re-crawl began: its `generation`, over
    /// `pages` pages.
    Recrawl {
        /// The re-crawl's generation.
        generation: u32,
        /// Pages its list holds.
        pages: u64,
    },
}

/// A job directory open for writing: replays it on open, then appends each
/// checkpoint's delta (appends end with `fsync`) and compacts the journal
/// when it grows. The JobStore actor owns one.
pub(crate) struct JobDir<C> {
    /// The directory, for the second journal handle compaction reads with.
    dir: PathBuf,
    /// The log every record goes to.
    journal: Journal,
    /// The dupe store compaction rebuilds, sized as the crawl's.
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
    /// Where resuming, compaction and a cut-off tail are reported.
    log: Logger,
    /// The records hold `Context<C>`: one directory, one callback type.
    _callback: PhantomData<fn() -> C>,
    /// The directory's lock, held as long as this writer lives (declared
    /// last: dropped after the journal's file is closed).
    _lock: JobLock,
}

impl<C: Callback> JobDir<C> {
    /// Locks and opens (creating) the job directory `dir` and replays its
    /// journal: `None` for a new directory. Fails with
    /// [`ErrorKind::JobDirLocked`] when another crawl holds it and with
    /// [`ErrorKind::JournalCorrupt`] when its journal is damaged before
    /// its end.
    #[cfg(test)]
    pub(crate) fn open(
        dir: &Path,
        sizing: Option<BloomSizing>,
        log: Logger,
    ) -> Result<(Self, Option<Restored<C>>), Error> {
        let (store, opened) = Self::open_with(dir, sizing, log, None)?;
        match opened {
            Opened::Resumed(restored) => Ok((store, Some(*restored))),
            _ => Ok((store, None)),
        }
    }

    /// `open`; with `recrawl` (`Some(hold)`), a journal whose crawl
    /// finished begins a re-crawl instead
    /// ([`begin_recrawl`](Self::begin_recrawl)), read for its page index
    /// alone; `hold`: the revisits of pages a sitemap listed with a
    /// `<lastmod>` wait for the sitemap (the list keeps the choice, so a
    /// resumed re-crawl reads it as it began).
    pub(crate) fn open_with(
        dir: &Path,
        sizing: Option<BloomSizing>,
        log: Logger,
        recrawl: Option<bool>,
    ) -> Result<(Self, Opened<C>), Error> {
        // Before anything in the directory is read: a second crawl must not
        // see (or cut) what the first is writing.
        let lock = JobLock::acquire(dir)?;
        let (journal, records) = Journal::open(dir)?;
        let recovered = journal.recovered();
        if recovered.dropped_bytes > 0 {
            warn!(log, "job directory: cut a torn last write off the journal";
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
            _lock: lock,
        };
        if records.is_empty() {
            return Ok((store, Opened::New));
        }
        if let Some(hold) = recrawl {
            if let Some(finished) = index::finished_index(&records, store.journal.path())? {
                let generation = finished.generation + 1;
                let pages = finished.pages.len() as u64;
                store.begin_recrawl(&finished.pages, generation, hold)?;
                return Ok((store, Opened::Recrawl { generation, pages }));
            }
        }
        let state = Replayed::<C>::replay(&records, sizing, store.journal.path())?;
        let restored = state.restore(records.len(), recovered.dropped_bytes);
        store.pending = restored.pending.iter().map(|ctx| ctx.id).collect();
        store.completed = restored.info.completed;
        let info = &restored.info;
        info!(store.log, "job directory: resuming";
            "pending" => info.pending, "completed" => info.completed,
            "starts_pulled" => info.starts_pulled, "records" => info.records);
        Ok((store, Opened::Resumed(Box::new(restored))))
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
        let payload = match delta.encode() {
            Ok(payload) => payload,
            Err(e) => {
                let reason = format!(
                    "a checkpoint cannot be encoded ({e}); no later checkpoint is written, \
                     the job resumes from the last one"
                );
                self.poisoned = Some(reason.clone());
                return Err(journal_error(self.journal.path(), reason));
            }
        };
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

    /// Begins re-crawl `generation` over the page index `pages` (a finished
    /// crawl's): writes the list of pages to revisit, then replaces the log
    /// by a base record of a new crawl (nothing pending, a fresh dupe store
    /// and start position, no stats) that keeps the index. A crash before
    /// the replace leaves the finished crawl as it was.
    fn begin_recrawl(
        &mut self,
        pages: &[index::RawPage],
        generation: u32,
        hold: bool,
    ) -> Result<(), Error> {
        pages::write_list::<C>(&self.dir, generation, pages, hold)?;
        let path = self.journal.path().to_path_buf();
        let base = record::encode_fresh_base::<C>(self.sizing, pages, generation)
            .map_err(|e| journal_error(&path, format!("encoding: {e}")))?;
        self.journal.replace(&base)?;
        self.base_len = self.journal.len_bytes();
        self.pending.clear();
        self.completed = 0;
        info!(self.log, "job directory: re-crawl begun"; "generation" => generation);
        Ok(())
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

/// The error for a journal that cannot be read or written as this crawl
/// needs: the open or the checkpoint fails with it.
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
    use crate::context::Context;
    use crate::fingerprint::fingerprint;
    use crate::stats::StatsSnapshot;

    fn ctx(url: &str) -> Context<Cb> {
        Context::new(req(url), None)
    }

    fn sizing() -> Option<BloomSizing> {
        Some(BloomSizing {
            capacity: 1000,
            rate: 0.001,
            mode: DupeMode::Exact,
        })
    }

    fn delta(added: Vec<(Context<Cb>, bool)>, done: Vec<Uuid>, pulled: u64) -> Delta<Cb> {
        Delta {
            added,
            done,
            seen: Vec::new(),
            pages: Vec::new(),
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
            // d ended at admission: seen, never pending.
            let mut second = delta(vec![(c.clone(), false), (b2, false)], vec![a.id], 3);
            second.seen.push(fingerprint(&ctx("http://h/d").request));
            let info = store.write(second).unwrap();
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
        let d = fingerprint(&ctx("http://h/d").request);
        assert!(!bloom.insert_new(d), "d was seen");
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

    /// A job directory as earlier releases left it, its dupe store in
    /// format version 1: 30 requests (`http://h/0` to `/29`) accepted into
    /// a store sized for 16 at 1 %, the first 20 completed, the start
    /// requests exhausted, then compacted into one base record.
    const V1_JOURNAL: &[u8] = include_bytes!("../../tests/fixtures/jobdir_v1/checkpoints.log");

    fn v1_sizing() -> Option<BloomSizing> {
        Some(BloomSizing {
            capacity: 16,
            rate: 0.01,
            mode: DupeMode::Exact,
        })
    }

    #[test]
    fn a_job_directory_of_an_earlier_release_resumes_and_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("checkpoints.log"), V1_JOURNAL).unwrap();
        let all: Vec<_> = (0..31).map(|i| ctx(&format!("http://h/{i}"))).collect();
        let want: Vec<String> = (20..30).map(|i| format!("http://h/{i}")).collect();
        {
            let (mut store, restored) = JobDir::<Cb>::open(dir.path(), v1_sizing(), log()).unwrap();
            let mut r = restored.unwrap();
            assert_eq!(urls(&r), want);
            assert_eq!((r.info.completed, r.info.starts_pulled), (20, 30));
            assert!(r.info.starts_exhausted);
            let bloom = r.bloom.as_mut().unwrap();
            assert_eq!(bloom.added(), 30);
            assert!(all[..30]
                .iter()
                .all(|c| !bloom.insert_new(fingerprint(&c.request))));
            assert!(bloom.insert_new(fingerprint(&all[30].request)));
            store
                .write(delta(vec![(all[30].clone(), true)], Vec::new(), 30))
                .unwrap();
            // Compaction writes the store in today's format.
            assert!(store.compact());
        }
        let journal = std::fs::read(dir.path().join("checkpoints.log")).unwrap();
        assert!(journal.windows(4).any(|w| w == b"SPDS"), "version 2 now");
        let (_, restored) = JobDir::<Cb>::open(dir.path(), v1_sizing(), log()).unwrap();
        let mut r = restored.unwrap();
        assert_eq!(r.info.pending, 11);
        let bloom = r.bloom.as_mut().unwrap();
        assert_eq!(bloom.added(), 31);
        assert!(all
            .iter()
            .all(|c| !bloom.insert_new(fingerprint(&c.request))));
    }

    #[test]
    fn a_dupe_store_of_an_unknown_version_refuses_the_start_and_keeps_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("checkpoints.log");
        {
            let (mut store, _) = JobDir::<Cb>::open(dir.path(), v1_sizing(), log()).unwrap();
            store.compact_min = 1;
            let added = vec![(ctx("http://h/a"), true)];
            assert!(store.write(delta(added, Vec::new(), 1)).unwrap().compacted);
        }
        // The store follows the base record's JSON; its version field
        // follows the "SPDS" magic. The journal's checksum is redone so
        // the record itself is sound.
        let (mut j, records) = Journal::open(dir.path()).unwrap();
        let mut base = records[0].clone();
        let at = base.windows(4).position(|w| w == b"SPDS").unwrap() + 4;
        base[at..at + 4].copy_from_slice(&9u32.to_le_bytes());
        j.replace(&base).unwrap();
        drop(j);
        let before = std::fs::read(&journal).unwrap();
        let err = JobDir::<Cb>::open(dir.path(), v1_sizing(), log())
            .err()
            .expect("an unknown store version must fail the open");
        match err.kind() {
            ErrorKind::DupeStoreVersion {
                path,
                found,
                expected,
            } => {
                assert_eq!(path.as_deref(), Some(journal.as_path()));
                assert_eq!((*found, *expected), (9, 2));
            }
            other => panic!("{other}"),
        }
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "saved dupe store in {} is in format version 9; this build reads versions 1 to 2",
                journal.display()
            )),
            "{text}"
        );
        assert!(text.contains("start a fresh job directory"), "{text}");
        assert_eq!(
            std::fs::read(&journal).unwrap(),
            before,
            "nothing discarded"
        );
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
