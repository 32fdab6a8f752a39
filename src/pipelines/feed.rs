//! What the file exports share: how an existing file is treated (replaced
//! or continued, with a last record lacking its line break completed and
//! a torn one moved to `<path>.torn`), and a buffered writer
//! synced to disk on the stage's periodic flush, on checkpoints and on
//! close.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use slog::warn;

use crate::pipeline::PipelineContext;

/// What a file export does with a file that exists when it opens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Continues it when the crawl resumes a job directory or is
    /// distributed (its items are the earlier runs'), replaces it
    /// otherwise.
    #[default]
    ContinueOnResume,
    /// Always continues it.
    Append,
    /// Always replaces it.
    Overwrite,
}

impl Existing {
    /// Whether the file is continued, for a crawl that `resumed` (a job
    /// directory, or a distributed crawl) or not.
    pub(crate) fn appends(self, resumed: bool) -> bool {
        match self {
            Existing::ContinueOnResume => resumed,
            Existing::Append => true,
            Existing::Overwrite => false,
        }
    }
}

/// Where a file's whole records end, by a format's own rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Records {
    /// Just after the last record with its terminator (0 when none has
    /// one).
    pub end: u64,
    /// The bytes after `end` are one complete record that lacks only its
    /// terminator (a file another tool wrote without a last line break):
    /// it is kept, and the terminator written.
    pub unterminated: bool,
}

/// Where the records of a file of `len` bytes end: a format's own rule.
pub(crate) type RecordEnd = fn(&mut File, u64) -> io::Result<Records>;

/// Opens `path` for an export: replaced, or (`append`) continued. A
/// continued file whose last record lacks only its terminator gets it
/// (counted in `feed/unterminated_tails`, logged); anything else after
/// its last whole record (by `record_end`) is torn: it is moved to
/// `<path>.torn` (appended there, synced), cut off, counted and logged.
/// A file created here has its directory entry synced, so it outlives a
/// power loss as its contents do.
pub(crate) fn open(
    path: &Path,
    append: bool,
    record_end: RecordEnd,
    ctx: &PipelineContext,
) -> io::Result<File> {
    let existed = path.exists();
    let mut file = if append {
        let mut options = OpenOptions::new();
        options.read(true).append(true).create(true);
        options.open(path)?
    } else {
        File::create(path)?
    };
    if !existed {
        sync_parent(path)?;
    }
    if append {
        let len = file.metadata()?.len();
        let records = record_end(&mut file, len)?;
        if records.end < len && records.unterminated {
            file.write_all(b"\n")?;
            file.sync_data()?;
            ctx.stats.add_named("feed/unterminated_tails", 1);
            warn!(ctx.log, "feed: the file's last record had no line break; added one";
                "path" => %path.display());
        } else if records.end < len {
            let torn = save_torn(path, &mut file, records.end, len)?;
            file.set_len(records.end)?;
            file.sync_data()?;
            let cut = len - records.end;
            ctx.stats.add_named("feed/torn_tails", 1);
            ctx.stats.add_named("feed/torn_tail_bytes", cut);
            warn!(ctx.log, "feed: moved a torn last record off the file before appending";
                "path" => %path.display(), "bytes_cut" => cut, "bytes_kept" => records.end,
                "saved_to" => %torn.display());
        }
    }
    Ok(file)
}

/// Syncs the directory entry of a file just created.
fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    crate::journal::sync_dir(parent.unwrap_or(Path::new(".")))
}

/// Where the torn tail of the file at `path` is saved: `<path>.torn`.
pub(crate) fn torn_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".torn");
    PathBuf::from(name)
}

/// Appends bytes `start..len` of `file` to `<path>.torn` and syncs it,
/// before they are cut off: nothing a file held is thrown away.
fn save_torn(path: &Path, file: &mut File, start: u64, len: u64) -> io::Result<PathBuf> {
    let torn_path = torn_path(path);
    let existed = torn_path.exists();
    let mut torn = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&torn_path)?;
    file.seek(SeekFrom::Start(start))?;
    io::copy(&mut Read::take(&mut *file, len - start), &mut torn)?;
    torn.sync_data()?;
    if !existed {
        sync_parent(&torn_path)?;
    }
    Ok(torn_path)
}

/// Where the last whole line ends: just after the last `\n`, read
/// backwards in blocks (a long file costs one block); and whether what
/// follows is one complete JSON value (read as a stream, never held).
pub(crate) fn last_line_end(file: &mut File, len: u64) -> io::Result<Records> {
    const BLOCK: u64 = 64 << 10;
    let mut block = vec![0u8; BLOCK as usize];
    let mut end = len;
    let mut last = 0;
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block[..n])?;
        if let Some(i) = memchr::memrchr(b'\n', &block[..n]) {
            last = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if last == len {
        return Ok(Records {
            end: last,
            unterminated: false,
        });
    }
    file.seek(SeekFrom::Start(last))?;
    let tail = io::BufReader::new(Read::take(&mut *file, len - last));
    let mut json = serde_json::Deserializer::from_reader(tail);
    let value = serde::de::IgnoredAny::deserialize(&mut json);
    Ok(Records {
        end: last,
        unterminated: value.is_ok() && json.end().is_ok(),
    })
}

/// A buffered writer over a file.
pub(crate) trait Buffered {
    /// Writes out the buffer.
    fn flush_buffer(&mut self) -> io::Result<()>;
    /// The file under it.
    fn file(&self) -> &File;
}

impl Buffered for BufWriter<File> {
    fn flush_buffer(&mut self) -> io::Result<()> {
        self.flush()
    }
    fn file(&self) -> &File {
        self.get_ref()
    }
}

impl Buffered for csv::Writer<File> {
    fn flush_buffer(&mut self) -> io::Result<()> {
        self.flush()
    }
    fn file(&self) -> &File {
        self.get_ref()
    }
}

/// Writes out `out`'s buffer and syncs the file, if it is open and
/// `unsynced` (something was written since the last sync, which this
/// clears), so what was written outlives a crash or a power loss as the
/// checkpoint after it does. An idle export costs no sync.
pub(crate) fn sync(out: Option<&mut impl Buffered>, unsynced: &mut bool) -> io::Result<()> {
    let Some(out) = out.filter(|_| *unsynced) else {
        return Ok(());
    };
    out.flush_buffer()?;
    out.file().sync_data()?;
    *unsynced = false;
    Ok(())
}
