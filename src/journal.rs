//! The journal of a job directory: a crash-safe, append-only log of
//! checksummed records, all of which are replayed, in order, on open.
//!
//! This module owns `<dir>/checkpoints.log` (and, briefly during
//! [`Journal::replace`], `<dir>/checkpoints.log.tmp`). It knows nothing
//! about what a record contains: payloads are opaque bytes.
//! [`Journal::open`] returns every valid record in the order it was
//! written, and the caller's format gives them meaning — for example a
//! base snapshot followed by deltas to apply to it, as in a write-ahead
//! log.
//!
//! The journal never drops a record on its own. Compaction is the
//! caller's choice: [`Journal::replace`] swaps the whole log for a single
//! record (say, a new base that folds in the deltas so far).
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
//! - A crash during an append loses at most the record being written: it
//!   leaves at most one incomplete record at the end. [`Journal::open`]
//!   stops at the first record that is cut short, has the wrong magic,
//!   claims an impossible length or fails its checksum, and truncates the
//!   file back to the end of the last valid record, so nothing a torn write
//!   left behind is ever read or built on, and every record before it is
//!   kept.
//! - Damage that is not a torn last write is never cut: when a valid
//!   record follows the first bad one (bit rot, an edit, a second writer),
//!   [`Journal::open`] fails with [`ErrorKind::JournalCorrupt`], naming the
//!   file and the byte offsets, and leaves the file as it is. Cutting there
//!   would silently drop every record after the damage.
//! - An append that fails with an I/O error (rather than a crash) may
//!   likewise leave a partial record. The journal remembers this, and the
//!   next [`append`](Journal::append) or [`replace`](Journal::replace)
//!   first cuts the file back to the end of the last valid record and syncs
//!   it, so the earlier records are kept and nothing is written behind
//!   garbage.
//! - [`Journal::replace`] writes its record alone to the `.tmp` file, syncs
//!   it, renames it over the log and syncs the directory. A crash before
//!   the rename leaves the old log, every record intact (the stale `.tmp`
//!   is removed on the next open); after it, the new one-record log.
//!
//! One writer at a time: the journal itself takes no lock; the job
//! directory's lock (taken before the journal is opened) keeps a second
//! crawl out.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Stage};

/// The log's file name inside the job directory.
const LOG_NAME: &str = "checkpoints.log";
/// Where [`Journal::replace`] writes the new log before renaming it into
/// place.
const TMP_NAME: &str = "checkpoints.log.tmp";
/// Marks the start of every record, so a scan that lands on garbage (or on
/// a file that is not a journal at all) stops instead of trusting a length.
const MAGIC: u32 = u32::from_le_bytes(*b"SPJ1");
/// Magic, length and checksum.
const HEADER_LEN: u64 = 12;
/// The largest payload accepted. A length field above it is corruption, so
/// a flipped bit cannot make `open` allocate gigabytes.
pub const MAX_PAYLOAD: u32 = 1 << 30;

/// What [`Journal::open`] found in an existing log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Valid records read (all of them are returned by `open`, in order).
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
    /// Valid records in the log (kept for the tests, which check that
    /// appends, cuts and replaces count what the file holds).
    #[cfg(test)]
    records: usize,
    /// Set when an append failed part-way: the log may end in a partial
    /// record, or (after a failed `sync_data`) in pages whose state on disk
    /// is unknown, so the next append or replace first cuts the file back
    /// to `len` and syncs it.
    cut_next: bool,
    /// Set when a replace renamed its file into place but could not sync
    /// the directory: the rename may not survive a crash, so the next
    /// append or replace syncs the directory before acknowledging anything
    /// written to the new log.
    sync_dir_next: bool,
    /// What `open` found.
    recovered: Recovered,
}

impl Journal {
    /// Opens (creating if missing) the journal in the job directory `dir`
    /// and returns it with the payloads of all its valid records, oldest
    /// first (empty for a new or empty journal).
    ///
    /// Anything after the last valid record is cut off the file, so the
    /// next [`append`](Self::append) lands right after it;
    /// [`recovered`](Self::recovered) says how many records were read and
    /// how many bytes were dropped.
    pub fn open(dir: &Path) -> Result<(Journal, Vec<Vec<u8>>), Error> {
        create_dir(dir)?;
        // Left over from a replace that crashed (or failed) before its
        // rename: the log itself is still the old, complete one.
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
            // A torn write leaves garbage at the end only: a valid record
            // after the damage means something else broke the log.
            let after = next_valid_record(&mut file, scan.end + 1, file_len);
            if let Some(next_valid) = after.map_err(|e| journal_error(&path, e))? {
                return Err(Error::new(
                    Stage::Setup,
                    ErrorKind::JournalCorrupt {
                        path,
                        offset: scan.end,
                        next_valid,
                    },
                ));
            }
            // Cut the tail now rather than appending after it: a record
            // written behind garbage would be unreachable on the next open.
            file.set_len(scan.end)
                .and_then(|()| file.sync_all())
                .map_err(|e| journal_error(&path, e))?;
        }

        let records = scan.payloads.len();
        let journal = Journal {
            dir: dir.to_path_buf(),
            path,
            file,
            len: scan.end,
            #[cfg(test)]
            records,
            cut_next: false,
            sync_dir_next: false,
            recovered: Recovered {
                records,
                dropped_bytes: file_len - scan.end,
            },
        };
        Ok((journal, scan.payloads))
    }

    /// Appends one record holding `payload` after the existing ones and
    /// syncs it to disk; once this returns `Ok` the record survives a
    /// crash. Payloads over [`MAX_PAYLOAD`] bytes are refused.
    ///
    /// The log is never compacted here; see [`replace`](Self::replace). An
    /// `Err` does not prove the record is absent — it may have reached the
    /// disk before the failure — only that it is not guaranteed durable. If
    /// the failed write left part of a record behind, the next append (or
    /// replace) first cuts the file back to the last valid record, keeping
    /// every earlier one.
    pub fn append(&mut self, payload: &[u8]) -> Result<(), Error> {
        let header = self.header(payload)?;
        self.prepare()?;
        let result = (|| {
            // Seek explicitly rather than trusting the cursor, which an
            // earlier scan or failed write may have left elsewhere.
            self.file.seek(SeekFrom::Start(self.len))?;
            self.file.write_all(&header)?;
            self.file.write_all(payload)?;
            self.file.sync_data()
        })();
        match result {
            Ok(()) => {
                self.len += HEADER_LEN + payload.len() as u64;
                #[cfg(test)]
                {
                    self.records += 1;
                }
                Ok(())
            }
            Err(e) => {
                self.cut_next = true;
                Err(journal_error(&self.path, e).at(Stage::Control))
            }
        }
    }

    /// Compacts the log: replaces it with one holding exactly one record,
    /// `payload` (for example a new base snapshot folding in everything
    /// recorded so far), and syncs it to disk. Later appends follow that
    /// record. Payloads over [`MAX_PAYLOAD`] bytes are refused.
    ///
    /// The new log is written to a temporary file, synced, renamed over the
    /// old one and the directory synced, so a crash leaves either the old
    /// log with all its records or the new one. If this fails before the
    /// rename, the old log is untouched and stays in use: the next
    /// [`append`](Self::append) adds to it. If only the final directory
    /// sync fails, the new log is already in place and stays in use, and
    /// the next append or replace retries that sync before writing; the
    /// `Err` then means the replacement may not survive a crash.
    pub fn replace(&mut self, payload: &[u8]) -> Result<(), Error> {
        let header = self.header(payload)?;
        self.prepare()?;
        let tmp = self.dir.join(TMP_NAME);
        // The handle on the temporary file becomes the handle on the log
        // once renamed, so there is nothing to reopen (and no way to be
        // left holding the replaced, unlinked file).
        let written = (|| {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            file.write_all(&header)?;
            file.write_all(payload)?;
            file.sync_all()?;
            Ok(file)
        })();
        let file = match written {
            Ok(file) => file,
            Err(e) => {
                // Best effort: `open` removes a stale temporary file too.
                let _ = fs::remove_file(&tmp);
                return Err(journal_error(&tmp, e).at(Stage::Control));
            }
        };
        if let Err(e) = fs::rename(&tmp, &self.path) {
            let _ = fs::remove_file(&tmp);
            return Err(journal_error(&self.path, e).at(Stage::Control));
        }
        // The rename is done: the log on disk is the new one, whatever
        // happens next.
        self.file = file;
        self.len = HEADER_LEN + payload.len() as u64;
        #[cfg(test)]
        {
            self.records = 1;
        }
        if let Err(e) = sync_dir(&self.dir) {
            self.sync_dir_next = true;
            return Err(journal_error(&self.dir, e).at(Stage::Control));
        }
        Ok(())
    }

    /// What [`open`](Self::open) found: records read and bytes dropped.
    pub fn recovered(&self) -> Recovered {
        self.recovered
    }

    /// Bytes of valid records in the log: where the next record will start.
    /// Useful for deciding when to [`replace`](Self::replace).
    pub fn len_bytes(&self) -> u64 {
        self.len
    }

    /// Valid records in the log: those returned by [`open`](Self::open)
    /// plus those appended since, or 1 after a [`replace`](Self::replace).
    #[cfg(test)]
    pub fn records(&self) -> usize {
        self.records
    }

    /// The log file, `<dir>/checkpoints.log`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks `payload`'s size and returns its record header.
    fn header(&self, payload: &[u8]) -> Result<[u8; HEADER_LEN as usize], Error> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&len| len <= MAX_PAYLOAD)
            .ok_or_else(|| {
                Error::new(
                    Stage::Control,
                    ErrorKind::Journal {
                        path: self.path.clone(),
                        reason: format!(
                            "record of {} bytes is over the limit of {MAX_PAYLOAD} bytes",
                            payload.len()
                        ),
                    },
                )
            })?;
        Ok(encode_header(len, payload))
    }

    /// Repairs what an earlier failure left before anything new is written:
    /// retries a directory sync that a replace could not complete, and cuts
    /// a possibly partial record off the end of the log. A flag is cleared
    /// only once its repair succeeds.
    fn prepare(&mut self) -> Result<(), Error> {
        if self.sync_dir_next {
            sync_dir(&self.dir).map_err(|e| journal_error(&self.dir, e).at(Stage::Control))?;
            self.sync_dir_next = false;
        }
        if self.cut_next {
            self.file
                .set_len(self.len)
                .and_then(|()| self.file.sync_all())
                .map_err(|e| journal_error(&self.path, e).at(Stage::Control))?;
            self.cut_next = false;
        }
        Ok(())
    }

    /// Simulates what a failed append can leave behind: `partial` (part of
    /// a record) written after the valid records, and the flag set.
    #[cfg(test)]
    fn simulate_failed_append(&mut self, partial: &[u8]) {
        self.file.seek(SeekFrom::Start(self.len)).unwrap();
        self.file.write_all(partial).unwrap();
        self.file.sync_data().unwrap();
        self.cut_next = true;
    }
}

/// The result of reading a log from the start.
struct Scan {
    /// Offset just past the last valid record.
    end: u64,
    /// The valid records' payloads, in order.
    payloads: Vec<Vec<u8>>,
}

/// Reads records from the start of `file` until the first one that is
/// short, has the wrong magic, claims an impossible length or fails its
/// checksum. Nothing after that point is trusted, even if it would parse:
/// a record after a damaged one would be replayed out of sequence.
fn scan(file: &mut File, file_len: u64) -> io::Result<Scan> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::new(&*file);
    let mut scan = Scan {
        end: 0,
        payloads: Vec::new(),
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
        scan.payloads.push(payload);
    }
    Ok(scan)
}

/// Whether a whole, valid record (magic, a possible length, the payload
/// inside the file, its checksum) starts at byte `at`.
fn record_at(file: &mut File, at: u64, file_len: u64) -> io::Result<bool> {
    if file_len - at < HEADER_LEN {
        return Ok(false);
    }
    let mut header = [0u8; HEADER_LEN as usize];
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(&mut header)?;
    let field =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let (magic, len, crc) = (field(0), field(4), field(8));
    if magic != MAGIC || len > MAX_PAYLOAD || u64::from(len) > file_len - at - HEADER_LEN {
        return Ok(false);
    }
    let mut payload = vec![0u8; len as usize];
    file.read_exact(&mut payload)?;
    Ok(crc32fast::hash(&payload) == crc)
}

/// The offset of the first valid record starting at or after `from`, if
/// any: every place the magic appears is checked as a record. Read in
/// windows, so a long log costs little memory.
fn next_valid_record(file: &mut File, from: u64, file_len: u64) -> io::Result<Option<u64>> {
    const WINDOW: usize = 1 << 20;
    let magic = MAGIC.to_le_bytes();
    let mut window = vec![0u8; WINDOW];
    let mut at = from;
    while file_len.saturating_sub(at) >= HEADER_LEN {
        let n = usize::try_from(file_len - at).map_or(WINDOW, |left| left.min(WINDOW));
        file.seek(SeekFrom::Start(at))?;
        file.read_exact(&mut window[..n])?;
        for hit in memchr::memmem::find_iter(&window[..n], &magic) {
            let start = at + hit as u64;
            if record_at(file, start, file_len)? {
                return Ok(Some(start));
            }
        }
        if n < WINDOW {
            break;
        }
        // The windows overlap by three bytes, so a magic split across two
        // is found in the second (and none is found twice).
        at += (n - (magic.len() - 1)) as u64;
    }
    Ok(None)
}

/// The 12-byte header of a record holding `payload` (of length `len`).
fn encode_header(len: u32, payload: &[u8]) -> [u8; HEADER_LEN as usize] {
    let mut header = [0u8; HEADER_LEN as usize];
    header[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    header[4..8].copy_from_slice(&len.to_le_bytes());
    header[8..12].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    header
}

/// Creates `dir` and its missing ancestors, each made durable in its
/// parent: without that, a file created in it (the first record, the lock)
/// could vanish with the directory after a power loss.
pub(crate) fn create_dir(dir: &Path) -> Result<(), Error> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|p| !p.is_dir()).collect();
    fs::create_dir_all(dir).map_err(|e| journal_error(dir, e))?;
    for created in missing {
        let parent = match created.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        sync_dir(parent).map_err(|e| journal_error(parent, e))?;
    }
    Ok(())
}

/// Makes entries created, renamed or removed in `dir` durable. Only Unix
/// lets a directory be opened and synced; elsewhere this is a no-op.
#[cfg(unix)]
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes entries created, renamed or removed in `dir` durable. Only Unix
/// lets a directory be opened and synced; elsewhere this is a no-op.
#[cfg(not(unix))]
pub(crate) fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// A journal I/O failure on `path`, at setup (the stage of `open`; `append`
/// and `replace` move it to `Control`).
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
    fn open(dir: &Path) -> (Journal, Vec<Vec<u8>>) {
        Journal::open(dir).unwrap()
    }

    fn log_len(dir: &Path) -> u64 {
        fs::metadata(dir.join(LOG_NAME)).unwrap().len()
    }

    fn record_len(payload: &[u8]) -> u64 {
        HEADER_LEN + payload.len() as u64
    }

    fn records_len(payloads: &[&[u8]]) -> u64 {
        payloads.iter().map(|p| record_len(p)).sum()
    }

    fn owned(payloads: &[&[u8]]) -> Vec<Vec<u8>> {
        payloads.iter().map(|p| p.to_vec()).collect()
    }

    /// Reopens `dir` and asserts the log holds exactly `expected`, in
    /// order, with nothing to drop; returns the reopened journal.
    fn assert_log(dir: &Path, expected: &[&[u8]]) -> Journal {
        let (j, payloads) = open(dir);
        assert_eq!(payloads, owned(expected));
        assert_eq!(
            j.recovered(),
            Recovered {
                records: expected.len(),
                dropped_bytes: 0
            }
        );
        assert_eq!(j.records(), expected.len());
        assert_eq!(j.len_bytes(), records_len(expected));
        assert_eq!(log_len(dir), records_len(expected));
        j
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

    fn append_raw(dir: &Path, bytes: &[u8]) {
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join(LOG_NAME))
            .unwrap();
        f.write_all(bytes).unwrap();
    }

    /// After a damaged third record: reopening yields the first two, cuts
    /// the file back, and a new append lands right after them.
    fn assert_resumes_after_second(dir: &Path, third_at: u64, dropped: u64) {
        let (mut j, payloads) = open(dir);
        assert_eq!(payloads, owned(&[b"first", b"second"]));
        assert_eq!(
            j.recovered(),
            Recovered {
                records: 2,
                dropped_bytes: dropped
            }
        );
        assert_eq!(log_len(dir), third_at);
        assert_eq!(j.len_bytes(), third_at);
        assert_eq!(j.records(), 2);
        j.append(b"fourth").unwrap();
        assert_eq!(log_len(dir), third_at + record_len(b"fourth"));
        drop(j);
        assert_log(dir, &[b"first", b"second", b"fourth"]);
    }

    #[test]
    fn new_directory_has_no_records() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("job").join("nested");
        let (j, payloads) = open(&dir);
        assert!(payloads.is_empty());
        assert_eq!(j.recovered(), Recovered::default());
        assert_eq!(j.records(), 0);
        assert_eq!(j.len_bytes(), 0);
        assert_eq!(j.path(), dir.join(LOG_NAME));
        assert_eq!(log_len(&dir), 0);
        drop(j);
        assert_log(&dir, &[]);
    }

    #[test]
    fn reopen_returns_all_records_in_order() {
        let (tmp, _) = three_records();
        assert_log(tmp.path(), &[b"first", b"second", b"third"]);
    }

    #[test]
    fn appends_never_compact() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = open(tmp.path());
        let payloads: Vec<Vec<u8>> = (0..50)
            .map(|i| format!("record {i}").repeat(i + 1).into_bytes())
            .collect();
        let mut expected_len = 0;
        for (i, p) in payloads.iter().enumerate() {
            j.append(p).unwrap();
            expected_len += record_len(p);
            assert_eq!(j.records(), i + 1);
            assert_eq!(j.len_bytes(), expected_len);
            assert_eq!(log_len(tmp.path()), expected_len);
        }
        drop(j);
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let mut j = assert_log(tmp.path(), &refs);
        // Appending after a reopen continues the same log.
        j.append(b"one more").unwrap();
        drop(j);
        let mut refs = refs;
        refs.push(b"one more");
        assert_log(tmp.path(), &refs);
    }

    #[test]
    fn empty_payload_is_a_record() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = open(tmp.path());
        j.append(b"before").unwrap();
        j.append(b"").unwrap();
        j.append(b"after").unwrap();
        drop(j);
        assert_log(tmp.path(), &[b"before", b"", b"after"]);
    }

    #[test]
    fn torn_payload_keeps_the_earlier_records() {
        let (tmp, third_at) = three_records();
        // Header and two of the five payload bytes made it to disk.
        truncate_log(tmp.path(), third_at + HEADER_LEN + 2);
        assert_resumes_after_second(tmp.path(), third_at, HEADER_LEN + 2);
    }

    #[test]
    fn torn_header_keeps_the_earlier_records() {
        let (tmp, third_at) = three_records();
        // Only magic and half the length field made it to disk.
        truncate_log(tmp.path(), third_at + 6);
        assert_resumes_after_second(tmp.path(), third_at, 6);
    }

    #[test]
    fn flipped_payload_byte_keeps_the_earlier_records() {
        let (tmp, third_at) = three_records();
        let path = tmp.path().join(LOG_NAME);
        let mut bytes = fs::read(&path).unwrap();
        let at = (third_at + HEADER_LEN + 1) as usize;
        bytes[at] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        assert_resumes_after_second(tmp.path(), third_at, record_len(b"third"));
    }

    #[test]
    fn a_damaged_record_followed_by_a_valid_one_fails_and_cuts_nothing() {
        let (tmp, third_at) = three_records();
        let path = tmp.path().join(LOG_NAME);
        let mut bytes = fs::read(&path).unwrap();
        bytes[(third_at + HEADER_LEN) as usize] ^= 0x80;
        fs::write(&path, &bytes).unwrap();
        // A well-formed record behind the damaged one: not a torn write,
        // and cutting at the damage would drop it.
        let fourth_at = third_at + record_len(b"third");
        let mut fourth = encode_header(6, b"fourth").to_vec();
        fourth.extend_from_slice(b"fourth");
        append_raw(tmp.path(), &fourth);
        let len = log_len(tmp.path());
        let err = Journal::open(tmp.path()).unwrap_err();
        match err.kind() {
            ErrorKind::JournalCorrupt {
                path: p,
                offset,
                next_valid,
            } => {
                assert_eq!(p, &path);
                assert_eq!((*offset, *next_valid), (third_at, fourth_at));
            }
            other => panic!("{other:?}"),
        }
        let message = err.to_string();
        let names = format!("{} is corrupt at byte {third_at}", path.display());
        assert!(message.contains(&names), "{message}");
        assert_eq!(log_len(tmp.path()), len);
        bytes.extend_from_slice(&fourth);
        assert_eq!(fs::read(&path).unwrap(), bytes, "nothing was cut");
    }

    #[test]
    fn a_damaged_header_followed_by_a_valid_record_fails() {
        // The second record's magic is gone: the scan cannot know its
        // length, and still finds the third record behind it.
        let (tmp, third_at) = three_records();
        let second_at = record_len(b"first");
        let path = tmp.path().join(LOG_NAME);
        let mut bytes = fs::read(&path).unwrap();
        bytes[second_at as usize] = b'X';
        fs::write(&path, &bytes).unwrap();
        let err = Journal::open(tmp.path()).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::JournalCorrupt { offset, next_valid, .. }
                if (*offset, *next_valid) == (second_at, third_at)),
            "{err}"
        );
        assert_eq!(fs::read(&path).unwrap(), bytes, "nothing was cut");
    }

    #[test]
    fn a_valid_record_is_found_across_the_search_windows() {
        // Garbage longer than one search window, with the next record's
        // magic split across the windows' boundary.
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = open(tmp.path());
        j.append(b"first").unwrap();
        drop(j);
        let garbage_len = (1 << 20) - 2;
        append_raw(tmp.path(), &vec![0xAA; garbage_len]);
        let mut second = encode_header(6, b"second").to_vec();
        second.extend_from_slice(b"second");
        append_raw(tmp.path(), &second);
        let err = Journal::open(tmp.path()).unwrap_err();
        let first_end = record_len(b"first");
        assert!(
            matches!(err.kind(), ErrorKind::JournalCorrupt { offset, next_valid, .. }
                if (*offset, *next_valid) == (first_end, first_end + garbage_len as u64)),
            "{err}"
        );
    }

    #[test]
    fn garbage_after_valid_records_is_cut() {
        let (tmp, third_at) = three_records();
        let end = third_at + record_len(b"third");
        let garbage = b"\x00\xffnot a record at all, but long enough for a header";
        append_raw(tmp.path(), garbage);

        let (mut j, payloads) = open(tmp.path());
        assert_eq!(payloads, owned(&[b"first", b"second", b"third"]));
        assert_eq!(
            j.recovered(),
            Recovered {
                records: 3,
                dropped_bytes: garbage.len() as u64
            }
        );
        assert_eq!(log_len(tmp.path()), end);
        j.append(b"fourth").unwrap();
        assert_eq!(log_len(tmp.path()), end + record_len(b"fourth"));
        drop(j);
        assert_log(tmp.path(), &[b"first", b"second", b"third", b"fourth"]);
    }

    #[test]
    fn absurd_length_is_treated_as_torn() {
        let (tmp, third_at) = three_records();
        let end = third_at + record_len(b"third");
        // A header claiming a payload of 4 GiB - 1 (and one claiming just
        // over the limit) with a few bytes behind it: rejected before any
        // buffer is sized from it.
        for len in [u32::MAX, MAX_PAYLOAD + 1] {
            let mut header = Vec::new();
            header.extend_from_slice(&MAGIC.to_le_bytes());
            header.extend_from_slice(&len.to_le_bytes());
            header.extend_from_slice(&0u32.to_le_bytes());
            header.extend_from_slice(b"tail");
            append_raw(tmp.path(), &header);

            let (j, payloads) = open(tmp.path());
            assert_eq!(payloads, owned(&[b"first", b"second", b"third"]));
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
    fn replace_leaves_one_record_and_appends_follow_it() {
        let (tmp, _) = three_records();
        let (mut j, payloads) = open(tmp.path());
        assert_eq!(payloads.len(), 3);
        j.replace(b"base").unwrap();
        assert_eq!(j.records(), 1);
        assert_eq!(j.len_bytes(), record_len(b"base"));
        assert_eq!(log_len(tmp.path()), record_len(b"base"));
        assert!(!tmp.path().join(TMP_NAME).exists());
        j.append(b"delta 1").unwrap();
        j.append(b"delta 2").unwrap();
        assert_eq!(j.records(), 3);
        drop(j);
        let mut j = assert_log(tmp.path(), &[b"base", b"delta 1", b"delta 2"]);

        // Replacing again, on a reopened journal, and appending after it.
        j.replace(b"base 2").unwrap();
        j.append(b"delta 3").unwrap();
        drop(j);
        assert_log(tmp.path(), &[b"base 2", b"delta 3"]);
    }

    #[test]
    fn replace_of_an_empty_journal() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = open(tmp.path());
        j.replace(b"").unwrap();
        j.append(b"x").unwrap();
        drop(j);
        assert_log(tmp.path(), &[b"", b"x"]);
    }

    #[test]
    fn stale_tmp_is_removed_and_the_old_log_kept() {
        let (tmp, _) = three_records();
        // A replace that died after writing part of its temporary file.
        fs::write(tmp.path().join(TMP_NAME), b"SPJ1 half a record").unwrap();
        let mut j = assert_log(tmp.path(), &[b"first", b"second", b"third"]);
        assert!(!tmp.path().join(TMP_NAME).exists());
        j.append(b"fourth").unwrap();
        drop(j);
        assert_log(tmp.path(), &[b"first", b"second", b"third", b"fourth"]);
    }

    #[test]
    fn failed_append_is_cut_back_before_the_next_append() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = open(tmp.path());
        j.append(b"base").unwrap();
        j.append(b"delta").unwrap();
        let good = records_len(&[b"base", b"delta"]);
        // A header and part of a payload, as a failed write could leave.
        let mut partial = encode_header(40, &[7; 40]).to_vec();
        partial.extend_from_slice(&[7; 10]);
        j.simulate_failed_append(&partial);
        assert_eq!(log_len(tmp.path()), good + partial.len() as u64);
        assert_eq!(j.len_bytes(), good);
        assert_eq!(j.records(), 2);

        j.append(b"after").unwrap();
        assert_eq!(log_len(tmp.path()), good + record_len(b"after"));
        assert_eq!(j.records(), 3);
        assert!(!j.cut_next);
        j.append(b"and more").unwrap();
        drop(j);
        assert_log(tmp.path(), &[b"base", b"delta", b"after", b"and more"]);
    }

    #[test]
    fn failed_append_is_cut_back_before_a_replace() {
        let (tmp, _) = three_records();
        let (mut j, _) = open(tmp.path());
        j.simulate_failed_append(b"SPJ1\x40");
        j.replace(b"base").unwrap();
        assert!(!j.cut_next);
        j.append(b"delta").unwrap();
        drop(j);
        assert_log(tmp.path(), &[b"base", b"delta"]);
    }

    #[test]
    fn failed_replace_keeps_the_old_log_in_use() {
        let (tmp, _) = three_records();
        let (mut j, _) = open(tmp.path());
        j.simulate_failed_append(b"SPJ1\x40\x00");
        // A directory where the temporary file should go makes the replace
        // fail before its rename.
        let tmp_path = tmp.path().join(TMP_NAME);
        fs::create_dir(&tmp_path).unwrap();
        let err = j.replace(b"base").unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Journal { .. }));
        assert_eq!(j.records(), 3);
        assert_eq!(j.len_bytes(), records_len(&[b"first", b"second", b"third"]));
        // The partial record was cut before the replace was tried.
        assert_eq!(log_len(tmp.path()), j.len_bytes());

        j.append(b"fourth").unwrap();
        drop(j);
        fs::remove_dir(&tmp_path).unwrap();
        assert_log(tmp.path(), &[b"first", b"second", b"third", b"fourth"]);
    }

    #[test]
    fn a_file_that_is_not_a_journal_yields_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(LOG_NAME), b"{\"some\": \"json\"}\n").unwrap();
        let (mut j, payloads) = open(tmp.path());
        assert!(payloads.is_empty());
        assert_eq!(
            j.recovered(),
            Recovered {
                records: 0,
                dropped_bytes: 17
            }
        );
        j.append(b"fresh").unwrap();
        drop(j);
        assert_log(tmp.path(), &[b"fresh"]);
    }
}
