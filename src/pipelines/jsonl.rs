//! A pipeline that writes every item as one JSON line.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};
use slog::{error, Logger};

use crate::error::{Error, ErrorKind, Stage};
use crate::item::{Item, ItemMeta};
use crate::pipeline::{Pipeline, PipelineContext, Verdict};
use crate::pipelines::feed::{self, Existing};
use crate::stats::Stats;

/// Writes items to a JSON Lines file (buffered; written out and synced on
/// the stage's periodic flush, on checkpoints and on close).
///
/// Each line is the item's JSON; with [`JsonLinesFile::fields`], an object
/// of those fields only, in that order (a field the item lacks is left out,
/// as in Scrapy's exporters; an item that is not an object is written
/// whole).
///
/// An existing file is continued when the crawl resumes a job directory
/// or is distributed (a restarted worker keeps the items of the pages it
/// already acknowledged) and replaced otherwise ([`append`](Self::append) and
/// [`overwrite`](Self::overwrite) choose one always). A continued file
/// whose last line is a complete JSON value without its line break gets
/// the line break (counted in `feed/unterminated_tails`); one whose last
/// line was cut short by a crash has it moved to `<path>.torn` and is cut
/// back to its last whole line (counted in `feed/torn_tails` and
/// `feed/torn_tail_bytes`), so every line stays valid JSON. A line whose
/// write fails part-way (the disk full) is cut off the file again, counted
/// in `feed/lines_rolled_back` and logged, so the next line starts on a
/// line of its own. A resumed job may write an item again:
/// the items of the requests its last checkpoint did not record completed.
///
/// ```no_run
/// use spinneret::pipelines::JsonLinesFile;
///
/// // Continued on resume, replaced on a new crawl.
/// let items = JsonLinesFile::new("items.jsonl");
/// // Always a new file (Scrapy's `-O`).
/// let fresh = JsonLinesFile::new("fresh.jsonl").overwrite();
/// ```
pub struct JsonLinesFile {
    /// Where the lines go.
    path: PathBuf,
    /// The fields written, in order (all, in the JSON's order, if `None`).
    fields: Option<Vec<String>>,
    /// What happens to an existing file.
    existing: Existing,
    /// Open between `open` and `close`.
    out: Option<BufWriter<File>>,
    /// Lines were written since the last sync: the next flush syncs.
    unsynced: bool,
    /// Where the last whole line ends (the file's bytes plus the
    /// buffered ones): a line whose write fails is cut back to here, so
    /// no half line stays for the next one to be appended to.
    end: u64,
    /// The crawl's stats, from `open`.
    stats: Option<Arc<Stats>>,
    /// The crawl's log, from `open`.
    log: Option<Logger>,
    /// The line being encoded.
    line: Vec<u8>,
}

impl JsonLinesFile {
    /// Writes to `path`: an existing file is continued when the crawl
    /// resumes a job directory or is distributed, replaced otherwise.
    pub fn new(path: impl AsRef<Path>) -> Self {
        JsonLinesFile {
            path: path.as_ref().to_path_buf(),
            fields: None,
            existing: Existing::default(),
            out: None,
            unsynced: false,
            end: 0,
            stats: None,
            log: None,
            line: Vec::new(),
        }
    }

    /// Writes only these fields of each item, in this order (a field named
    /// twice is written once).
    pub fn fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fields = Some(crate::pipelines::csv::distinct(fields));
        self
    }

    /// Always appends to an existing file, resumed job or not.
    pub fn append(mut self) -> Self {
        self.existing = Existing::Append;
        self
    }

    /// Always replaces an existing file, even when the crawl resumes a job
    /// directory.
    pub fn overwrite(mut self) -> Self {
        self.existing = Existing::Overwrite;
        self
    }

    fn io_error(&self, e: std::io::Error) -> Error {
        Error::new(
            Stage::Pipeline,
            ErrorKind::Custom(format!("{}: {e}", self.path.display())),
        )
    }
}

impl JsonLinesFile {
    /// After a failed write of a line: cuts the file back to where the
    /// last whole line ends (a line larger than the buffer goes straight
    /// to the file, and a write that fails part-way, out of space, leaves
    /// part of it there), keeping the buffered lines not yet written out.
    /// Counted in `feed/lines_rolled_back` and logged; should the cut fail
    /// too, the file is closed (later items fail) and that is logged.
    fn roll_back(&mut self) {
        let Some(out) = self.out.take() else {
            return;
        };
        let capacity = out.capacity();
        let (file, buffered) = out.into_parts();
        let buffered = buffered.unwrap_or_else(|panicked| panicked.into_inner());
        // Everything before the failed line is on disk or in the buffer.
        let on_disk = self.end - buffered.len() as u64;
        let cut = file
            .metadata()
            .and_then(|m| match m.len() > on_disk {
                true => file.set_len(on_disk).map(|()| m.len() - on_disk),
                false => Ok(0),
            })
            // A replaced file is not in append mode: its next write goes
            // where this one stopped.
            .and_then(|bytes| (&file).seek(SeekFrom::Start(on_disk)).map(|_| bytes));
        if let Some(stats) = &self.stats {
            stats.add_named("feed/lines_rolled_back", 1);
        }
        let restored = cut.and_then(move |bytes| {
            // Room for the buffered bytes, so writing them back is a copy
            // into the buffer, never a write to the file.
            let mut out = BufWriter::with_capacity(capacity.max(buffered.len() + 1), file);
            out.write_all(&buffered)?;
            Ok((out, bytes))
        });
        match restored {
            Ok((out, bytes)) => {
                self.out = Some(out);
                if let Some(log) = &self.log {
                    error!(log, "feed: a line's write failed; the file is cut back to its last whole line";
                        "path" => %self.path.display(), "bytes_cut" => bytes);
                }
            }
            Err(e) => {
                if let Some(log) = &self.log {
                    error!(log, "feed: a line's write failed and the file could not be cut back; closed";
                        "path" => %self.path.display(), "error" => %e);
                }
            }
        }
    }
}

/// Appends `lines` (already JSON) to `path`, one per line, and flushes.
pub(crate) fn append_lines(path: &Path, lines: &[serde_json::Value]) -> std::io::Result<()> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let mut out = BufWriter::new(file);
    for line in lines {
        serde_json::to_writer(&mut out, line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    out.get_ref().sync_data()
}

/// Writes the object made of `fields` of `object`, in that order (the
/// JSON itself is serde_json's: a `Map` keeps its keys sorted).
fn write_fields(
    out: &mut impl Write,
    object: &Map<String, Value>,
    fields: &[String],
) -> std::io::Result<()> {
    out.write_all(b"{")?;
    let present = fields.iter().filter_map(|f| object.get(f).map(|v| (f, v)));
    for (i, (field, value)) in present.enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *out, field)?;
        out.write_all(b":")?;
        serde_json::to_writer(&mut *out, value)?;
    }
    out.write_all(b"}")
}

#[async_trait(?Send)]
impl Pipeline for JsonLinesFile {
    fn name(&self) -> &str {
        "jsonl_file"
    }

    async fn open(&mut self, ctx: &PipelineContext) -> Result<(), Error> {
        let append = self.existing.appends(ctx.resumed);
        let file = feed::open(&self.path, append, feed::last_line_end, ctx)
            .map_err(|e| self.io_error(e))?;
        self.end = file.metadata().map_err(|e| self.io_error(e))?.len();
        self.out = Some(BufWriter::new(file));
        self.stats = Some(ctx.stats.clone());
        self.log = Some(ctx.log.clone());
        Ok(())
    }

    async fn process_item(&mut self, item: &mut Item, _: &ItemMeta) -> Result<Verdict, Error> {
        let json = item.to_json()?;
        let Some(out) = self.out.as_mut() else {
            return Err(Error::new(
                Stage::Pipeline,
                ErrorKind::IllegalState("JSON Lines file is not open".into()),
            ));
        };
        // The whole line is built first (in a buffer kept across items)
        // and written in one call, so a failed encoding never leaves half
        // a line behind.
        let line = &mut self.line;
        line.clear();
        let encoded = match (&self.fields, &json) {
            (Some(fields), Value::Object(object)) => write_fields(line, object, fields),
            _ => serde_json::to_writer(&mut *line, &json).map_err(std::io::Error::from),
        };
        line.push(b'\n');
        let written = encoded.and_then(|_| out.write_all(line));
        self.unsynced = true;
        match written {
            Ok(()) => {
                self.end += line.len() as u64;
                Ok(Verdict::Keep)
            }
            Err(e) => {
                self.roll_back();
                Err(self.io_error(e))
            }
        }
    }

    /// Writes out the buffer and syncs the file, if a line was written
    /// since the last sync.
    async fn flush(&mut self) -> Result<(), Error> {
        let synced = feed::sync(self.out.as_mut(), &mut self.unsynced);
        synced.map_err(|e| self.io_error(e))
    }

    /// As `flush`: the lines outlive a power loss as the checkpoint after
    /// them does.
    async fn checkpoint(&mut self) -> Result<(), Error> {
        self.flush().await
    }

    /// Writes out the buffer, syncs the file and closes it.
    async fn close(&mut self) -> Result<(), Error> {
        self.flush().await?;
        self.out = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::pipelines::test_support::{context, meta, resumed};

    /// Opens `file` with `ctx`, writes `items` as `{"i": n}`, closes it.
    async fn export(mut file: JsonLinesFile, ctx: &PipelineContext, items: std::ops::Range<u32>) {
        file.open(ctx).await.unwrap();
        for i in items {
            let item = &mut Item::new(json!({ "i": i }));
            assert_eq!(
                file.process_item(item, &meta()).await.unwrap(),
                Verdict::Keep
            );
        }
        file.close().await.unwrap();
    }

    /// The file's lines, each parsed as JSON (failing on a line that is
    /// not), as their `i`.
    fn lines(path: &Path) -> Vec<u64> {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "{text:?}");
        text.lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["i"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }

    #[actix::test]
    async fn a_resumed_crawl_continues_the_file_and_a_new_one_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.jsonl");
        export(JsonLinesFile::new(&path), &context(), 0..3).await;
        assert_eq!(lines(&path), [0, 1, 2]);
        // Resuming a job directory: the first run's items stay.
        export(JsonLinesFile::new(&path), &resumed(), 3..5).await;
        assert_eq!(lines(&path), [0, 1, 2, 3, 4]);
        // A new crawl replaces the file.
        export(JsonLinesFile::new(&path), &context(), 5..6).await;
        assert_eq!(lines(&path), [5]);
        // Asked to, a new crawl appends and a resumed one replaces.
        export(JsonLinesFile::new(&path).append(), &context(), 6..7).await;
        assert_eq!(lines(&path), [5, 6]);
        export(JsonLinesFile::new(&path).overwrite(), &resumed(), 7..8).await;
        assert_eq!(lines(&path), [7]);
    }

    #[actix::test]
    async fn a_torn_last_line_is_cut_back_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.jsonl");
        export(JsonLinesFile::new(&path), &context(), 0..3).await;
        // A crash in the middle of writing the fourth line.
        let torn = b"{\"i\":3,\"title\":\"half a";
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(torn).unwrap();
        drop(file);
        let ctx = resumed();
        export(JsonLinesFile::new(&path), &ctx, 3..5).await;
        assert_eq!(lines(&path), [0, 1, 2, 3, 4]);
        assert_eq!(ctx.stats.snapshot().get("feed/torn_tails"), 1);
        let cut = torn.len() as u64;
        assert_eq!(ctx.stats.snapshot().get("feed/torn_tail_bytes"), cut);
        let saved = std::fs::read(feed::torn_path(&path)).unwrap();
        assert_eq!(saved, torn);
        // A whole file is not cut.
        let ctx = resumed();
        export(JsonLinesFile::new(&path), &ctx, 5..6).await;
        assert_eq!(lines(&path), [0, 1, 2, 3, 4, 5]);
        assert_eq!(ctx.stats.snapshot().get("feed/torn_tails"), 0);
    }

    #[actix::test]
    async fn a_file_of_one_torn_line_is_emptied_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.jsonl");
        // Longer than the block the end is searched in, with no line break.
        let torn = format!("{{\"i\":0,\"pad\":\"{}", "x".repeat(100_000));
        std::fs::write(&path, &torn).unwrap();
        let ctx = resumed();
        export(JsonLinesFile::new(&path), &ctx, 1..3).await;
        assert_eq!(lines(&path), [1, 2]);
        let cut = torn.len() as u64;
        assert_eq!(ctx.stats.snapshot().get("feed/torn_tail_bytes"), cut);
    }

    #[actix::test]
    async fn appending_keeps_a_last_line_without_a_line_break_and_adds_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.jsonl");
        // Written by another tool, without a last line break.
        std::fs::write(&path, "{\"i\":0}\n{\"i\":1}").unwrap();
        let ctx = context();
        export(JsonLinesFile::new(&path).append(), &ctx, 2..4).await;
        assert_eq!(lines(&path), [0, 1, 2, 3]);
        let stats = ctx.stats.snapshot();
        assert_eq!(stats.get("feed/unterminated_tails"), 1);
        assert_eq!(stats.get("feed/torn_tails"), 0);
        assert!(!feed::torn_path(&path).exists());
        // A file of one value without a line break.
        std::fs::write(&path, "{\"i\":7} ").unwrap();
        export(JsonLinesFile::new(&path).append(), &context(), 8..9).await;
        assert_eq!(lines(&path), [7, 8]);
    }

    /// The file [`a_line_whose_write_fails_is_cut_back`] has its child
    /// write.
    const ENV_FULL: &str = "SPINNERET_TEST_FEED_FULL";

    /// In a child process whose files may not grow past 8 KiB: four small
    /// lines, a line too big for the buffer and the limit (it fails after
    /// part of it is written), then one more small line.
    #[actix::test]
    #[ignore = "the child process of a_line_whose_write_fails_is_cut_back"]
    async fn full_disk_child() {
        let path = std::env::var(ENV_FULL).expect("run by its parent test only");
        let ctx = context();
        let mut file = JsonLinesFile::new(&path);
        file.open(&ctx).await.unwrap();
        for i in 0..4 {
            let item = &mut Item::new(json!({ "i": i }));
            file.process_item(item, &meta()).await.unwrap();
        }
        let big = &mut Item::new(json!({"i": 99, "pad": "x".repeat(64 << 10)}));
        let err = file.process_item(big, &meta()).await.unwrap_err();
        println!("the big line failed: {err}");
        let item = &mut Item::new(json!({ "i": 4 }));
        file.process_item(item, &meta()).await.unwrap();
        file.close().await.unwrap();
        assert_eq!(ctx.stats.snapshot().get("feed/lines_rolled_back"), 1);
    }

    #[test]
    fn a_line_whose_write_fails_is_cut_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.jsonl");
        // SIGXFSZ ignored: a write past the limit fails with EFBIG, as
        // one on a full disk does with ENOSPC. `ulimit -f` counts 512-byte
        // blocks in sh.
        let out = std::process::Command::new("sh")
            .args(["-c", "trap '' XFSZ; ulimit -f 16; exec \"$0\" \"$@\""])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", "pipelines::jsonl::tests::full_disk_child"])
            .args(["--ignored", "--nocapture", "--test-threads=1"])
            .env(ENV_FULL, &path)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(log.contains("the big line failed"), "{log}");
        assert!(out.status.success(), "{log}");
        // Whole lines only: the big line's written part was cut off, and
        // the next line is a line of its own.
        assert_eq!(lines(&path), [0, 1, 2, 3, 4]);
    }

    #[actix::test]
    async fn the_periodic_flush_writes_the_lines_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.jsonl");
        let mut file = JsonLinesFile::new(&path);
        file.open(&context()).await.unwrap();
        let item = &mut Item::new(json!({"i": 0}));
        assert_eq!(
            file.process_item(item, &meta()).await.unwrap(),
            Verdict::Keep
        );
        assert_eq!(lines(&path), Vec::<u64>::new(), "buffered");
        file.flush().await.unwrap();
        assert!(!file.unsynced, "the flush synced the file");
        assert_eq!(lines(&path), [0]);
        file.close().await.unwrap();
    }

    #[actix::test]
    async fn chosen_fields_are_written_in_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.jsonl");
        let mut file = JsonLinesFile::new(&path).fields(["url", "title", "price"]);
        file.open(&context()).await.unwrap();
        for value in [
            json!({"title": "A \"q\"", "url": "http://h/a", "price": 3.5, "extra": 1}),
            json!({"price": [1, 2], "url": "http://h/b"}),
            json!({"other": true}),
            json!("not an object"),
        ] {
            let verdict = file.process_item(&mut Item::new(value), &meta()).await;
            assert_eq!(verdict.unwrap(), Verdict::Keep);
        }
        file.close().await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"url\":\"http://h/a\",\"title\":\"A \\\"q\\\"\",\"price\":3.5}\n\
             {\"url\":\"http://h/b\",\"price\":[1,2]}\n\
             {}\n\
             \"not an object\"\n"
        );
    }
}
