//! The checkpoint journal of a job directory: an append-only log of
//! checksummed records whose newest valid record is the crawl's state.
//!
//! This module owns `<dir>/checkpoints.log` (and, briefly during
//! compaction, `<dir>/checkpoints.log.tmp`). It knows nothing about what a
//! checkpoint contains: payloads are opaque bytes, and only the newest one
//! matters.
//!
//! # On-disk format
//!
//! The log is a sequence of records, each a 12-byte header followed by its
//! payload, all integers little-endian:
//!
//! ```text
//! [magic u32 = "SPJ1"][len u32][crc32 u32 of payload][payload: len bytes]
//! ```
//!
//! # Crash safety
//!
//! - An append writes one record at the end and calls `sync_data` before
//!   returning, so an acknowledged record survives the process being killed
//!   or the machine losing power.
//! - A crash during an append leaves at most one incomplete record at the
//!   end. [`Journal::open`] stops at the first record that is cut short,
//!   has the wrong magic, claims an impossible length or fails its
//!   checksum, and truncates the file back to the end of the last valid
//!   record, so nothing a torn write left behind is ever read or built on.
//! - Compaction writes the newest record alone to the `.tmp` file, syncs
//!   it, renames it over the log and syncs the directory. A crash before
//!   the rename leaves the old log (the stale `.tmp` is removed on the next
//!   open); after it, the new one.
//!
//! One process at a time: the journal takes no lock, so two crawls must not
//! share a job directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Stage};

/// The log's file name inside the job directory.
const LOG_NAME: &str = "checkpoints.log";
/// Where compaction writes the new log before renaming it into place.
const TMP_NAME: &str = "checkpoints.log.tmp";
/// Marks the start of every record, so a scan that lands on garbage (or on
/// a file that is not a journal at all) stops instead of trusting a length.
const MAGIC: u32 = u32::from_le_bytes(*b"SPJ1");
/// Magic, length and checksum.
const HEADER_LEN: u64 = 12;
/// The largest payload accepted. A length field above it is corruption, so
/// a flipped bit cannot make `open` allocate gigabytes.
pub const MAX_PAYLOAD: u32 = 1 << 30;
/// Compact once the log holds this many records: only the newest is ever
/// read, so older ones are kept only until rewriting is cheap to justify.
const COMPACT_RECORDS: usize = 4;
/// Compact once the log would grow past this many bytes, whatever the
/// record count, so large checkpoints do not pile up on disk.
const COMPACT_BYTES: u64 = 64 << 20;

/// What [`Journal::open`] found in an existing log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Valid records read (the last one is the checkpoint returned).
    pub records: usize,
    /// Bytes after the last valid record — a torn write or corruption —
    /// that were cut off the end of the file.
    pub dropped_bytes: u64,
}

/// An append-only file of checksummed records in a job directory
/// (`<dir>/checkpoints.log`); see the [module documentation](self) for the
/// format and what survives a crash.
#[derive(Debug)]
pub struct Journal {
    /// The job directory.
    dir: PathBuf,
    /// `<dir>/checkpoints.log`.
    path: PathBuf,
    /// The open log; appends go at `len`.
    file: File,
    /// Bytes of valid records in the log: where the next record starts.
    len: u64,
    /// Valid records in the log.
    records: usize,
    /// Set when an append failed part-way: the log may end in a partial
    /// record, or (after a failed `sync_data`) in pages whose state on disk
    /// is unknown, so the next append rewrites the log from scratch instead
    /// of building on it.
    rewrite_next: bool,
    /// What `open` found.
    recovered: Recovered,
    /// Record-count threshold for compaction (a field so tests can lower it).
    compact_records: usize,
    /// Size threshold for compaction (a field so tests can lower it).
    compact_bytes: u64,
}

impl Journal {
    /// Opens (creating if missing) the journal in the job directory `dir`
    /// and returns it with the payload of its last valid record, or `None`
    /// for a new or empty journal.
    ///
    /// Anything after the last valid record is cut off the file, so the
    /// next [`append`](Self::append) starts clean;
    /// [`recovered`](Self::recovered) says how many records were read and
    /// how many bytes were dropped.
    pub fn open(dir: &Path) -> Result<(Journal, Option<Vec<u8>>), Error> {
        // Every directory created here needs its entry synced in its
        // parent, or the first checkpoint could vanish with it after a
        // power loss.
        let missing: Vec<&Path> = dir.ancestors().take_while(|p| !p.is_dir()).collect();
        fs::create_dir_all(dir).map_err(|e| journal_error(dir, e))?;
        for created in missing {
            let parent = match created.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            sync_dir(parent).map_err(|e| journal_error(parent, e))?;
        }
        // Left over from a compaction that crashed before its rename: the
        // log itself is still the old, complete one.
        let tmp = dir.join(TMP_NAME);
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(journal_error(&tmp, e)),
        }

        let path = dir.join(LOG_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| journal_error(&path, e))?;
        // Makes a newly created log's directory entry durable.
        sync_dir(dir).map_err(|e| journal_error(dir, e))?;

        let file_len = file.metadata().map_err(|e| journal_error(&path, e))?.len();
        let scan = scan(&mut file, file_len).map_err(|e| journal_error(&path, e))?;
        if scan.end < file_len {
            // Cut the tail now rather than appending after it: a record
            // written behind garbage would be unreachable on the next open.
            file.set_len(scan.end)
                .and_then(|()| file.sync_all())
                .map_err(|e| journal_error(&path, e))?;
        }

        let journal = Journal {
            dir: dir.to_path_buf(),
            path,
            file,
            len: scan.end,
            records: scan.records,
            rewrite_next: false,
            recovered: Recovered {
                records: scan.records,
                dropped_bytes: file_len - scan.end,
            },
            compact_records: COMPACT_RECORDS,
            compact_bytes: COMPACT_BYTES,
        };
        Ok((journal, scan.last))
    }

    /// Appends one record holding `payload` and syncs it to disk; once this
    /// returns `Ok` the record survives a crash.
    ///
    /// When the log has reached its compaction threshold the record is
    /// instead written to a fresh log that replaces the old one, leaving it
    /// the only record. An `Err` does not prove the record is absent — it
    /// may have reached the disk before the failure — only that it is not
    /// guaranteed durable.
    pub fn append(&mut self, payload: &[u8]) -> Result<(), Error> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&len| len <= MAX_PAYLOAD)
            .ok_or_else(|| {
                Error::new(
                    Stage::Control,
                    ErrorKind::Journal {
                        path: self.path.clone(),
                        reason: format!(
                            "checkpoint of {} bytes is over the limit of {MAX_PAYLOAD} bytes",
                            payload.len()
                        ),
                    },
                )
            })?;
        let header = encode_header(len, payload);
        let size = HEADER_LEN + u64::from(len);

        let compact = self.rewrite_next
            || (self.records > 0
                && (self.records >= self.compact_records || self.len + size > self.compact_bytes));
        let result = if compact {
            self.rewrite(&header, payload)
        } else {
            self.append_in_place(&header, payload)
        };
        match result {
            Ok(()) => {
                if compact {
                    self.len = size;
                    self.records = 1;
                } else {
                    self.len += size;
                    self.records += 1;
                }
                self.rewrite_next = false;
                Ok(())
            }
            Err((path, e)) => {
                self.rewrite_next = true;
                Err(journal_error(&path, e).at(Stage::Control))
            }
        }
    }

    /// What [`open`](Self::open) found: records read and bytes dropped.
    pub fn recovered(&self) -> Recovered {
        self.recovered
    }

    /// The log file, `<dir>/checkpoints.log`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the record at the end of the valid records and syncs it.
    fn append_in_place(
        &mut self,
        header: &[u8],
        payload: &[u8],
    ) -> Result<(), (PathBuf, io::Error)> {
        // Seek explicitly rather than trusting the cursor, which an earlier
        // scan or failed write may have left elsewhere.
        (|| {
            self.file.seek(SeekFrom::Start(self.len))?;
            self.file.write_all(header)?;
            self.file.write_all(payload)?;
            self.file.sync_data()
        })()
        .map_err(|e| (self.path.clone(), e))
    }

    /// Replaces the log with one holding only this record: write the
    /// temporary file, sync it, rename it over the log, sync the directory
    /// so the rename itself is durable, then reopen the new log.
    fn rewrite(&mut self, header: &[u8], payload: &[u8]) -> Result<(), (PathBuf, io::Error)> {
        let tmp = self.dir.join(TMP_NAME);
        (|| {
            let mut file = File::create(&tmp)?;
            file.write_all(header)?;
            file.write_all(payload)?;
            file.sync_all()
        })()
        .map_err(|e| (tmp.clone(), e))?;
        fs::rename(&tmp, &self.path).map_err(|e| (self.path.clone(), e))?;
        sync_dir(&self.dir).map_err(|e| (self.dir.clone(), e))?;
        // The handle we hold now names the replaced, unlinked file.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| (self.path.clone(), e))?;
        file.seek(SeekFrom::End(0))
            .map_err(|e| (self.path.clone(), e))?;
        self.file = file;
        Ok(())
    }
}

/// The result of reading a log from the start.
struct Scan {
    /// Offset just past the last valid record.
    end: u64,
    /// Valid records read.
    records: usize,
    /// The last valid record's payload.
    last: Option<Vec<u8>>,
}

/// Reads records from the start of `file` until the first one that is
/// short, has the wrong magic, claims an impossible length or fails its
/// checksum. Nothing after that point is trusted, even if it would parse:
/// a record's place in the log is what makes it the newest.
fn scan(file: &mut File, file_len: u64) -> io::Result<Scan> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::new(&*file);
    let mut scan = Scan {
        end: 0,
        records: 0,
        last: None,
    };
    loop {
        let remaining = file_len - scan.end;
        if remaining < HEADER_LEN {
            break;
        }
        let mut header = [0u8; HEADER_LEN as usize];
        reader.read_exact(&mut header)?;
        let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        // Checked before allocating: a torn or corrupt length must not
        // size the buffer.
        if magic != MAGIC || len > MAX_PAYLOAD || u64::from(len) > remaining - HEADER_LEN {
            break;
        }
        let mut payload = vec![0u8; len as usize];
        reader.read_exact(&mut payload)?;
        if crc32fast::hash(&payload) != crc {
            break;
        }
        scan.end += HEADER_LEN + u64::from(len);
        scan.records += 1;
        scan.last = Some(payload);
    }
    Ok(scan)
}

/// The 12-byte header of a record holding `payload` (of length `len`).
fn encode_header(len: u32, payload: &[u8]) -> [u8; HEADER_LEN as usize] {
    let mut header = [0u8; HEADER_LEN as usize];
    header[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    header[4..8].copy_from_slice(&len.to_le_bytes());
    header[8..12].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    header
}

/// Makes entries created, renamed or removed in `dir` durable. Only Unix
/// lets a directory be opened and synced; elsewhere this is a no-op.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes entries created, renamed or removed in `dir` durable. Only Unix
/// lets a directory be opened and synced; elsewhere this is a no-op.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// A journal I/O failure on `path`, at setup (the stage of `open`; `append`
/// moves it to `Control`).
fn journal_error(path: &Path, e: io::Error) -> Error {
    Error::new(
        Stage::Setup,
        ErrorKind::Journal {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens the journal in `dir`, asserting `open` succeeds.
    fn open(dir: &Path) -> (Journal, Option<Vec<u8>>) {
        Journal::open(dir).unwrap()
    }

    fn log_len(dir: &Path) -> u64 {
        fs::metadata(dir.join(LOG_NAME)).unwrap().len()
    }

    fn record_len(payload: &[u8]) -> u64 {
        HEADER_LEN + payload.len() as u64
    }

    /// Writes `first`, `second` and `third`, returning the directory and the
    /// offset where `third`'s record starts.
    fn three_records() -> (tempfile::TempDir, u64) {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = open(tmp.path());
        j.append(b"first").unwrap();
        j.append(b"second").unwrap();
        j.append(b"third").unwrap();
        drop(j);
        let third_at = record_len(b"first") + record_len(b"second");
        assert_eq!(log_len(tmp.path()), third_at + record_len(b"third"));
        (tmp, third_at)
    }

    fn truncate_log(dir: &Path, len: u64) {
        let f = OpenOptions::new()
            .write(true)
            .open(dir.join(LOG_NAME))
            .unwrap();
        f.set_len(len).unwrap();
    }

    /// After a damaged third record: reopening yields the second, cuts the
    /// file back, and a new append is the one read next time.
    fn assert_resumes_from_second(dir: &Path, third_at: u64, dropped: u64) {
        let (mut j, last) = open(dir);
        assert_eq!(last.as_deref(), Some(&b"second"[..]));
        assert_eq!(
            j.recovered(),
            Recovered {
                records: 2,
                dropped_bytes: dropped
            }
        );
        assert_eq!(log_len(dir), third_at);
        j.append(b"fourth").unwrap();
        drop(j);
        let (j, last) = open(dir);
        assert_eq!(last.as_deref(), Some(&b"fourth"[..]));
        assert_eq!(
            j.recovered(),
            Recovered {
                records: 3,
                dropped_bytes: 0
            }
        );
    }

    #[test]
    fn new_directory_has_no_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("job").join("nested");
        let (j, last) = open(&dir);
        assert_eq!(last, None);
        assert_eq!(j.recovered(), Recovered::default());
        assert_eq!(j.path(), dir.join(LOG_NAME));
        assert_eq!(log_len(&dir), 0);
        drop(j);
        let (_, last) = open(&dir);
        assert_eq!(last, None);
    }

    #[test]
    fn reopen_returns_the_last_of_three() {
        let (tmp, _) = three_records();
        let (j, last) = open(tmp.path());
        assert_eq!(last.as_deref(), Some(&b"third"[..]));
        assert_eq!(
            j.recovered(),
            Recovered {
                records: 3,
                dropped_bytes: 0
            }
        );
    }

    #[test]
    fn empty_payload_is_a_record() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = open(tmp.path());
        j.append(b"before").unwrap();
        j.append(b"").unwrap();
        drop(j);
        let (j, last) = open(tmp.path());
        assert_eq!(last.as_deref(), Some(&b""[..]));
        assert_eq!(j.recovered().records, 2);
    }

    #[test]
    fn torn_payload_resumes_from_the_previous_record() {
        let (tmp, third_at) = three_records();
        // Header and two of the five payload bytes made it to disk.
        let cut = third_at + HEADER_LEN + 2;
        truncate_log(tmp.path(), cut);
        assert_resumes_from_second(tmp.path(), third_at, HEADER_LEN + 2);
    }

    #[test]
    fn torn_header_resumes_from_the_previous_record() {
        let (tmp, third_at) = three_records();
        // Only magic and half the length field made it to disk.
        truncate_log(tmp.path(), third_at + 6);
        assert_resumes_from_second(tmp.path(), third_at, 6);
    }

    #[test]
    fn flipped_payload_byte_falls_back_to_the_previous_record() {
        let (tmp, third_at) = three_records();
        let path = tmp.path().join(LOG_NAME);
        let mut bytes = fs::read(&path).unwrap();
        let at = (third_at + HEADER_LEN + 1) as usize;
        bytes[at] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        assert_resumes_from_second(tmp.path(), third_at, record_len(b"third"));
    }

    #[test]
    fn garbage_after_valid_records_is_ignored() {
        let (tmp, third_at) = three_records();
        let end = third_at + record_len(b"third");
        let garbage = b"\x00\xffnot a record at all, but long enough for a header";
        let mut f = OpenOptions::new()
            .append(true)
            .open(tmp.path().join(LOG_NAME))
            .unwrap();
        f.write_all(garbage).unwrap();
        drop(f);

        let (mut j, last) = open(tmp.path());
        assert_eq!(last.as_deref(), Some(&b"third"[..]));
        assert_eq!(
            j.recovered(),
            Recovered {
                records: 3,
                dropped_bytes: garbage.len() as u64
            }
        );
        assert_eq!(log_len(tmp.path()), end);
        j.append(b"fourth").unwrap();
        drop(j);
        let (_, last) = open(tmp.path());
        assert_eq!(last.as_deref(), Some(&b"fourth"[..]));
    }

    #[test]
    fn absurd_length_is_treated_as_torn() {
        let (tmp, third_at) = three_records();
        let end = third_at + record_len(b"third");
        // A header claiming a payload of 4 GiB - 1 (and one claiming just
        // over the limit) with a few bytes behind it: rejected before any
        // buffer is sized from it.
        for len in [u32::MAX, MAX_PAYLOAD + 1] {
            let mut f = OpenOptions::new()
                .append(true)
                .open(tmp.path().join(LOG_NAME))
                .unwrap();
            let mut header = Vec::new();
            header.extend_from_slice(&MAGIC.to_le_bytes());
            header.extend_from_slice(&len.to_le_bytes());
            header.extend_from_slice(&0u32.to_le_bytes());
            header.extend_from_slice(b"tail");
            f.write_all(&header).unwrap();
            drop(f);

            let (j, last) = open(tmp.path());
            assert_eq!(last.as_deref(), Some(&b"third"[..]));
            assert_eq!(
                j.recovered(),
                Recovered {
                    records: 3,
                    dropped_bytes: HEADER_LEN + 4
                }
            );
            assert_eq!(log_len(tmp.path()), end);
        }
    }

    #[test]
    fn compaction_keeps_only_the_newest_record() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = open(tmp.path());
        for p in [&b"one"[..], b"two", b"three", b"four"] {
            j.append(p).unwrap();
        }
        assert_eq!(
            log_len(tmp.path()),
            [3u64, 3, 5, 4].iter().map(|n| HEADER_LEN + n).sum::<u64>()
        );
        // The fifth append finds four records and rewrites the log.
        j.append(b"five").unwrap();
        assert_eq!(log_len(tmp.path()), record_len(b"five"));
        assert!(!tmp.path().join(TMP_NAME).exists());
        // Appending continues in the new file.
        j.append(b"six").unwrap();
        assert_eq!(
            log_len(tmp.path()),
            record_len(b"five") + record_len(b"six")
        );
        drop(j);

        let (mut j, last) = open(tmp.path());
        assert_eq!(last.as_deref(), Some(&b"six"[..]));
        assert_eq!(
            j.recovered(),
            Recovered {
                records: 2,
                dropped_bytes: 0
            }
        );
        j.append(b"seven").unwrap();
        drop(j);
        let (_, last) = open(tmp.path());
        assert_eq!(last.as_deref(), Some(&b"seven"[..]));
    }

    #[test]
    fn size_threshold_compacts() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = open(tmp.path());
        j.compact_bytes = 2 * record_len(b"aaaa");
        j.append(b"aaaa").unwrap();
        j.append(b"bbbb").unwrap();
        assert_eq!(log_len(tmp.path()), 2 * record_len(b"aaaa"));
        // A third would pass the limit, so it replaces the log.
        j.append(b"cccc").unwrap();
        assert_eq!(log_len(tmp.path()), record_len(b"cccc"));
        drop(j);
        let (j, last) = open(tmp.path());
        assert_eq!(last.as_deref(), Some(&b"cccc"[..]));
        assert_eq!(j.recovered().records, 1);
    }

    #[test]
    fn crash_before_compaction_rename_keeps_the_old_log() {
        let (tmp, _) = three_records();
        // A compaction that died after writing part of its temporary file.
        fs::write(tmp.path().join(TMP_NAME), b"SPJ1 half a record").unwrap();
        let (j, last) = open(tmp.path());
        assert_eq!(last.as_deref(), Some(&b"third"[..]));
        assert_eq!(j.recovered().records, 3);
        assert!(!tmp.path().join(TMP_NAME).exists());
    }

    #[test]
    fn failed_append_makes_the_next_one_rewrite() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = open(tmp.path());
        j.append(b"good").unwrap();
        // Simulate what a failed append leaves: a partial record at the end
        // and the flag it sets.
        j.file.seek(SeekFrom::End(0)).unwrap();
        j.file.write_all(b"SPJ1\x40").unwrap();
        j.rewrite_next = true;
        j.append(b"after").unwrap();
        assert_eq!(log_len(tmp.path()), record_len(b"after"));
        drop(j);
        let (j, last) = open(tmp.path());
        assert_eq!(last.as_deref(), Some(&b"after"[..]));
        assert_eq!(
            j.recovered(),
            Recovered {
                records: 1,
                dropped_bytes: 0
            }
        );
    }

    #[test]
    fn a_file_that_is_not_a_journal_yields_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(LOG_NAME), b"{\"some\": \"json\"}\n").unwrap();
        let (mut j, last) = open(tmp.path());
        assert_eq!(last, None);
        assert_eq!(
            j.recovered(),
            Recovered {
                records: 0,
                dropped_bytes: 17
            }
        );
        j.append(b"fresh").unwrap();
        drop(j);
        let (_, last) = open(tmp.path());
        assert_eq!(last.as_deref(), Some(&b"fresh"[..]));
    }
}
