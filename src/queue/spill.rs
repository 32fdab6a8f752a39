//! The frontier's disk overflow: requests past the in-memory bound wait in
//! segment files, one first-in-first-out run of segments per priority.
//!
//! A segment is a file of records, each a little-endian `u32` length and
//! the request's [`Context`] as JSON (the same form a job directory's
//! journal uses), written through a buffer and read back in order once
//! sealed. A segment holds at most [`SEGMENT_RECORDS`] records; a segment
//! read to its end is deleted, so the disk used follows the frontier down
//! as well as up. The files are a cache, never the only copy that
//! matters: with a job directory the journal holds every pending request,
//! and a resumed job re-queues them from it (stale segments are removed
//! when the frontier opens); without one, the directory is temporary and
//! removed when the queue is dropped.
//!
//! A record that cannot be read back (a failing disk, a file changed under
//! the crawl) is counted lost, with the rest of its segment, so the crawl
//! still ends; the queue reports it and the CacheQueue logs and counts it.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use crate::context::Context;
use crate::request::Callback;

/// Records per segment file.
pub(crate) const SEGMENT_RECORDS: usize = 4096;

/// Where the segments go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpillDir {
    /// A fresh directory made inside this one (the system's temporary
    /// directory, say), removed when the queue is dropped.
    Inside(PathBuf),
    /// This directory (a job directory's `frontier/`): made if missing,
    /// emptied of earlier segments when the queue first spills, and of its
    /// own when the queue is dropped.
    At(PathBuf),
}

/// Requests on disk, by priority.
pub(crate) struct Spill<C> {
    /// The directory of the segments.
    dir: PathBuf,
    /// Remove the directory itself when dropped (a temporary one).
    owned: bool,
    /// One run of segments per priority.
    levels: BTreeMap<i32, Level>,
    /// Requests on disk.
    len: usize,
    /// Bytes of the segment files on disk.
    bytes: u64,
    /// Names the next segment file.
    next_file: u64,
    /// Requests written over the queue's life.
    pub(crate) written: u64,
    /// Requests that could not be read back.
    pub(crate) lost: u64,
    /// The callback type of the contexts.
    _callback: PhantomData<fn() -> C>,
}

/// One priority's segments, oldest first.
#[derive(Default)]
struct Level {
    /// Being read.
    reading: Option<Reader>,
    /// Sealed, waiting to be read: path, records, bytes.
    sealed: VecDeque<(PathBuf, usize, u64)>,
    /// Being written.
    writing: Option<Writer>,
}

struct Reader {
    path: PathBuf,
    file: BufReader<File>,
    /// Records not read yet.
    left: usize,
    /// The file's size, given back when it is deleted.
    bytes: u64,
}

struct Writer {
    path: PathBuf,
    file: BufWriter<File>,
    records: usize,
    bytes: u64,
}

impl<C: Callback> Spill<C> {
    /// Opens the directory (making it, or a temporary one) and removes
    /// segments an earlier run left there.
    pub(crate) fn open(dir: &SpillDir) -> io::Result<Self> {
        let (dir, owned) = match dir {
            SpillDir::Inside(parent) => {
                let name = format!(
                    "spinneret-frontier-{}-{}",
                    std::process::id(),
                    uuid::Uuid::new_v4()
                );
                (parent.join(name), true)
            }
            SpillDir::At(path) => (path.clone(), false),
        };
        remove_segments(&dir)?;
        Ok(Spill {
            dir,
            owned,
            levels: BTreeMap::new(),
            len: 0,
            bytes: 0,
            next_file: 0,
            written: 0,
            lost: 0,
            _callback: PhantomData,
        })
    }

    /// Requests on disk.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes of segment files on disk.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether requests of priority `p` wait on disk (a new one of that
    /// priority must then go behind them).
    pub(crate) fn holds(&self, p: i32) -> bool {
        self.levels.contains_key(&p)
    }

    /// The best priority on disk.
    pub(crate) fn best(&self) -> Option<i32> {
        self.levels.last_key_value().map(|(p, _)| *p)
    }

    /// Appends one request behind the others of its priority.
    pub(crate) fn write(&mut self, ctx: &Context<C>) -> io::Result<()> {
        let json = serde_json::to_vec(ctx).map_err(io::Error::other)?;
        let len = u32::try_from(json.len()).map_err(io::Error::other)?;
        let p = ctx.request.priority;
        let level = self.levels.entry(p).or_default();
        if level.writing.is_none() {
            let path = self.dir.join(format!("seg-{:08}.bin", self.next_file));
            let file = BufWriter::with_capacity(64 << 10, File::create(&path)?);
            self.next_file += 1;
            level.writing = Some(Writer {
                path,
                file,
                records: 0,
                bytes: 0,
            });
        }
        let w = level.writing.as_mut().expect("opened above");
        w.file.write_all(&len.to_le_bytes())?;
        w.file.write_all(&json)?;
        w.records += 1;
        w.bytes += 4 + u64::from(len);
        self.bytes += 4 + u64::from(len);
        self.len += 1;
        self.written += 1;
        if w.records >= SEGMENT_RECORDS {
            seal(level)?;
        }
        Ok(())
    }

    /// Reads up to `max` requests, best priority first, each priority in
    /// the order written. A segment that cannot be read is dropped and its
    /// unread requests counted in `lost`.
    pub(crate) fn read(&mut self, max: usize) -> Vec<Context<C>> {
        let mut out = Vec::with_capacity(max.min(self.len));
        while out.len() < max {
            let Some(mut entry) = self.levels.last_entry() else {
                break;
            };
            let level = entry.get_mut();
            match next_record::<C>(level) {
                Ok(Some(Step::Record(ctx))) => {
                    self.len -= 1;
                    out.push(*ctx);
                }
                Ok(Some(Step::Finished(bytes))) => self.bytes -= bytes,
                Ok(None) => {
                    entry.remove();
                }
                Err((unread, bytes)) => {
                    self.len -= unread;
                    self.lost += unread as u64;
                    self.bytes -= bytes;
                }
            }
        }
        out
    }

    /// Deletes every segment, answering how many requests they held.
    pub(crate) fn clear(&mut self) -> usize {
        let n = self.len;
        for level in std::mem::take(&mut self.levels).into_values() {
            remove_level(level);
        }
        self.len = 0;
        self.bytes = 0;
        n
    }
}

impl<C> Drop for Spill<C> {
    fn drop(&mut self) {
        for level in std::mem::take(&mut self.levels).into_values() {
            remove_level(level);
        }
        if self.owned {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn remove_level(level: Level) {
    if let Some(r) = level.reading {
        let _ = fs::remove_file(r.path);
    }
    for (path, _, _) in level.sealed {
        let _ = fs::remove_file(path);
    }
    if let Some(w) = level.writing {
        drop(w.file);
        let _ = fs::remove_file(w.path);
    }
}

/// Makes `dir` if missing and removes the segments an earlier run left in
/// it.
pub(crate) fn remove_segments(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if is_segment(&path) {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn is_segment(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("seg-") && n.ends_with(".bin"))
}

/// Flushes the segment being written and queues it for reading.
fn seal(level: &mut Level) -> io::Result<()> {
    if let Some(w) = level.writing.take() {
        let (path, records, bytes) = (w.path.clone(), w.records, w.bytes);
        w.file.into_inner().map_err(|e| e.into_error())?;
        level.sealed.push_back((path, records, bytes));
    }
    Ok(())
}

enum Step<C> {
    /// The next request.
    Record(Box<Context<C>>),
    /// A segment was read to its end and deleted (its bytes).
    Finished(u64),
}

/// One step of reading a level: `None` when it is empty; an error gives
/// the requests lost with the segment that failed, and its bytes.
fn next_record<C: Callback>(level: &mut Level) -> Result<Option<Step<C>>, (usize, u64)> {
    if level.reading.is_none() {
        if level.sealed.is_empty() {
            if level.writing.is_none() {
                return Ok(None);
            }
            let records = level.writing.as_ref().map_or(0, |w| w.records);
            let bytes = level.writing.as_ref().map_or(0, |w| w.bytes);
            if seal(level).is_err() {
                return Err((records, bytes));
            }
        }
        let (path, left, bytes) = level.sealed.pop_front().expect("sealed above");
        match File::open(&path) {
            Ok(f) => {
                level.reading = Some(Reader {
                    path,
                    file: BufReader::with_capacity(64 << 10, f),
                    left,
                    bytes,
                })
            }
            Err(_) => {
                let _ = fs::remove_file(&path);
                return Err((left, bytes));
            }
        }
    }
    let r = level.reading.as_mut().expect("opened above");
    if r.left == 0 {
        let r = level.reading.take().expect("checked");
        let _ = fs::remove_file(&r.path);
        return Ok(Some(Step::Finished(r.bytes)));
    }
    match read_record(&mut r.file) {
        Ok(ctx) => {
            r.left -= 1;
            Ok(Some(Step::Record(Box::new(ctx))))
        }
        Err(_) => {
            let r = level.reading.take().expect("checked");
            let _ = fs::remove_file(&r.path);
            Err((r.left, r.bytes))
        }
    }
}

fn read_record<C: Callback>(file: &mut impl Read) -> io::Result<Context<C>> {
    let mut len = [0u8; 4];
    file.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    // Read through `take`: a damaged length cannot make a huge buffer.
    let mut json = Vec::new();
    file.take(u64::from(len)).read_to_end(&mut json)?;
    if json.len() != len as usize {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    serde_json::from_slice(&json).map_err(io::Error::other)
}
