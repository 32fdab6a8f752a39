//! What the file exports share: how an existing file is treated (replaced
//! or continued, with a torn last record cut off), and a buffered writer
//! synced to disk on the stage's periodic flush, on checkpoints and on
//! close.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

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

/// Where the last whole record of a file of `len` bytes ends (0 when it
/// holds none): a format's own rule.
pub(crate) type RecordEnd = fn(&mut File, u64) -> io::Result<u64>;

/// Opens `path` for an export: replaced, or (`append`) continued, with
/// anything after its last whole record (by `record_end`) cut off first,
/// synced, counted and logged. A file created here has its directory
/// entry synced, so it outlives a power loss as its contents do.
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
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        crate::journal::sync_dir(parent.unwrap_or(Path::new(".")))?;
    }
    if append {
        let len = file.metadata()?.len();
        let end = record_end(&mut file, len)?;
        if end < len {
            file.set_len(end)?;
            file.sync_data()?;
            ctx.stats.add_named("feed/torn_tails", 1);
            ctx.stats.add_named("feed/torn_tail_bytes", len - end);
            warn!(ctx.log, "feed: cut a torn last record off the file before appending";
                "path" => %path.display(), "bytes_cut" => len - end, "bytes_kept" => end);
        }
    }
    Ok(file)
}

/// Where the last whole line ends: just after the last `\n`. Read
/// backwards in blocks, so a long file costs one block.
pub(crate) fn last_line_end(file: &mut File, len: u64) -> io::Result<u64> {
    const BLOCK: u64 = 64 << 10;
    let mut block = vec![0u8; BLOCK as usize];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block[..n])?;
        if let Some(i) = memchr::memrchr(b'\n', &block[..n]) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
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
