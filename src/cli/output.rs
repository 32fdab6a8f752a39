//! Where a command's items go (`-o FILE.jsonl`, `-o FILE.csv`, `-o -`)
//! and whether the final stats are printed as JSON (`--stats-json`): the
//! options `crawl` and `run` share, checked before anything is crawled.
//!
//! The format follows the file's extension: `.jsonl`, `.ndjson` or `.jl`
//! write JSON Lines ([`JsonLinesFile`]), `.csv` writes CSV ([`CsvFile`]),
//! and `-` writes JSON Lines on stdout. Any other name is refused, as is a
//! file that cannot be opened for writing: before the crawl starts, so no
//! page is fetched for items with nowhere to go.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::{Error, ErrorKind, Stage};
use crate::item::{Item, ItemMeta};
use crate::pipeline::{Pipeline, PipelineContext, Verdict};
use crate::pipelines::{CsvFile, JsonLinesFile};

/// The output options of `crawl` and `run`.
#[derive(clap::Args, Debug, Clone)]
pub(super) struct OutputArgs {
    /// Write the items to FILE: JSON Lines for `.jsonl` (`.ndjson`,
    /// `.jl`), CSV for `.csv`, JSON Lines on stdout for `-`. An existing
    /// file is replaced (continued when the crawl resumes earlier runs'
    /// work: a job directory, or a distributed crawl). Without it the
    /// items are counted, not kept. When the reader of stdout goes away
    /// (`-o - | head`), the crawl stops (the requests in flight finish)
    /// and exits 0.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print the final stats as one JSON object on stdout instead of the
    /// summary on stderr.
    #[arg(long)]
    pub stats_json: bool,
}

/// Where the items go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Feed {
    /// Nowhere: counted only.
    Nowhere,
    /// JSON Lines on stdout.
    Stdout,
    /// A JSON Lines file.
    JsonLines(PathBuf),
    /// A CSV file.
    Csv(PathBuf),
}

impl Feed {
    /// The feed `args` ask for, checked: a known extension, a file that
    /// can be opened for writing (created if missing, never truncated
    /// here), and stdout not claimed twice. A [`ErrorKind::Config`] error
    /// naming the file otherwise.
    pub fn from_args(args: &OutputArgs) -> Result<Feed, Error> {
        let Some(path) = &args.output else {
            return Ok(Feed::Nowhere);
        };
        if path.as_os_str() == "-" {
            if args.stats_json {
                return Err(Error::config(
                    "-o - and --stats-json both write to stdout: choose one",
                ));
            }
            return Ok(Feed::Stdout);
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let feed = match ext.as_deref() {
            Some("jsonl" | "ndjson" | "jl") => Feed::JsonLines(path.clone()),
            Some("csv") => Feed::Csv(path.clone()),
            _ => {
                return Err(Error::config(format!(
                "output {}: unknown format; name it .jsonl or .csv (or - for JSON Lines on stdout)",
                path.display()
            )))
            }
        };
        writable(path)?;
        Ok(feed)
    }

    /// The pipeline writing the items, `fields` (when given) in that
    /// order; `None` for [`Feed::Nowhere`].
    pub fn pipeline(&self, fields: Option<&[String]>) -> Option<Sink> {
        let boxed: Box<dyn Pipeline> = match (self, fields) {
            (Feed::Nowhere, _) => return None,
            (Feed::Stdout, _) => Box::new(StdoutLines {
                fields: fields.map(<[String]>::to_vec),
                closed: false,
            }),
            (Feed::JsonLines(p), Some(f)) => Box::new(JsonLinesFile::new(p).fields(f.to_vec())),
            (Feed::JsonLines(p), None) => Box::new(JsonLinesFile::new(p)),
            (Feed::Csv(p), Some(f)) => Box::new(CsvFile::new(p).fields(f.to_vec())),
            (Feed::Csv(p), None) => Box::new(CsvFile::new(p)),
        };
        Some(Sink(boxed))
    }

    /// Where the items went, for the summary: `to FILE (FORMAT)`.
    pub fn describe(&self) -> String {
        match self {
            Feed::Nowhere => "not saved (no -o)".into(),
            Feed::Stdout => "to stdout (JSON Lines)".into(),
            Feed::JsonLines(p) => format!("to {} (JSON Lines)", p.display()),
            Feed::Csv(p) => format!("to {} (CSV)", p.display()),
        }
    }
}

/// Checks that `path` can be written: opened for appending (created if
/// missing), so an existing file is left as it is for the export to
/// replace or continue.
fn writable(path: &Path) -> Result<(), Error> {
    if path.is_dir() {
        return Err(Error::config(format!(
            "output {}: is a directory",
            path.display()
        )));
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map(drop)
        .map_err(|e| Error::config(format!("output {}: cannot write: {e}", path.display())))
}

/// The chosen export, its type erased, so one type serves every feed and
/// both [`CrawlerBuilder::pipeline`](crate::CrawlerBuilder::pipeline) and
/// [`PreparedCrawl::pipeline`](crate::PreparedCrawl::pipeline).
pub(super) struct Sink(Box<dyn Pipeline>);

#[async_trait(?Send)]
impl Pipeline for Sink {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn priority(&self) -> i32 {
        self.0.priority()
    }

    async fn open(&mut self, ctx: &PipelineContext) -> Result<(), Error> {
        self.0.open(ctx).await
    }

    async fn process_item(&mut self, item: &mut Item, meta: &ItemMeta) -> Result<Verdict, Error> {
        self.0.process_item(item, meta).await
    }

    async fn flush(&mut self) -> Result<(), Error> {
        self.0.flush().await
    }

    async fn checkpoint(&mut self) -> Result<(), Error> {
        self.0.checkpoint().await
    }

    async fn close(&mut self) -> Result<(), Error> {
        self.0.close().await
    }

    fn abandon(&mut self) {
        self.0.abandon();
    }
}

/// Set once stdout's reader has gone away (a broken pipe).
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// Woken once stdout's reader has gone away.
fn stdout_gone_signal() -> &'static tokio::sync::Notify {
    static SIGNAL: OnceLock<tokio::sync::Notify> = OnceLock::new();
    SIGNAL.get_or_init(tokio::sync::Notify::new)
}

/// Resolves when the reader of stdout has gone away: an item written
/// there met a broken pipe (`-o - | head`). Only the first call is woken.
pub(super) async fn stdout_gone() {
    stdout_gone_signal().notified().await;
}

/// Whether the reader of stdout has gone away.
pub(super) fn stdout_is_gone() -> bool {
    STDOUT_GONE.load(Ordering::SeqCst)
}

/// Every item as one JSON line on stdout, written and flushed as it
/// comes (a reader at the other end of a pipe sees each page's item at
/// once). When the reader goes away (a broken pipe), [`stdout_gone`]
/// wakes and every later item is dropped without a word: nobody reads
/// them.
struct StdoutLines {
    /// The fields written, in order (the whole item when `None`).
    fields: Option<Vec<String>>,
    /// The reader has gone away.
    closed: bool,
}

#[async_trait(?Send)]
impl Pipeline for StdoutLines {
    fn name(&self) -> &str {
        "stdout_lines"
    }

    async fn process_item(&mut self, item: &mut Item, _: &ItemMeta) -> Result<Verdict, Error> {
        if self.closed {
            return Ok(Verdict::Drop("stdout closed".into()));
        }
        let json = item.to_json()?;
        let mut line = match (&self.fields, json) {
            (Some(fields), Value::Object(mut object)) => {
                // serde_json keeps a `Map`'s keys sorted: the chosen order
                // is written by hand, each value encoded by serde_json.
                let mut text = String::from("{");
                for field in fields {
                    let Some(value) = object.remove(field) else {
                        continue;
                    };
                    if text.len() > 1 {
                        text.push(',');
                    }
                    text.push_str(&encode(&Value::String(field.clone()))?);
                    text.push(':');
                    text.push_str(&encode(&value)?);
                }
                text.push('}');
                text
            }
            (_, json) => encode(&json)?,
        };
        line.push('\n');
        let mut out = std::io::stdout().lock();
        match out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => Ok(Verdict::Keep),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                STDOUT_GONE.store(true, Ordering::SeqCst);
                stdout_gone_signal().notify_one();
                Ok(Verdict::Drop("stdout closed".into()))
            }
            Err(e) => Err(Error::new(
                Stage::Pipeline,
                ErrorKind::Custom(format!("stdout: {e}")),
            )),
        }
    }
}

/// `value` as JSON text.
fn encode(value: &Value) -> Result<String, Error> {
    serde_json::to_string(value)
        .map_err(|e| Error::new(Stage::Pipeline, ErrorKind::Custom(format!("item: {e}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(output: &str, stats_json: bool) -> OutputArgs {
        OutputArgs {
            output: Some(PathBuf::from(output)),
            stats_json,
        }
    }

    #[test]
    fn the_extension_chooses_the_format() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
        let jsonl = Feed::from_args(&args(&at("a.jsonl"), false)).unwrap();
        assert_eq!(jsonl, Feed::JsonLines(dir.path().join("a.jsonl")));
        let csv = Feed::from_args(&args(&at("a.CSV"), false)).unwrap();
        assert_eq!(csv, Feed::Csv(dir.path().join("a.CSV")));
        assert_eq!(Feed::from_args(&args("-", false)).unwrap(), Feed::Stdout);
        let none = OutputArgs {
            output: None,
            stats_json: false,
        };
        assert_eq!(Feed::from_args(&none).unwrap(), Feed::Nowhere);
    }

    #[test]
    fn unknown_formats_unwritable_files_and_two_uses_of_stdout_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("a.json");
        let err = Feed::from_args(&args(json.to_str().unwrap(), false)).unwrap_err();
        assert!(err.to_string().contains("a.json"), "{err}");
        assert!(!json.exists(), "nothing is created for a refused name");
        let missing = dir.path().join("no/such/dir/a.jsonl");
        let err = Feed::from_args(&args(missing.to_str().unwrap(), false)).unwrap_err();
        assert!(err.to_string().contains("no/such/dir/a.jsonl"), "{err}");
        let err = Feed::from_args(&args("-", true)).unwrap_err();
        assert!(err.to_string().contains("--stats-json"), "{err}");
        assert!(matches!(err.kind(), ErrorKind::Config(_)));
    }

    #[test]
    fn an_existing_file_is_left_for_the_export() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, "{\"kept\":1}\n").unwrap();
        Feed::from_args(&args(path.to_str().unwrap(), false)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"kept\":1}\n");
    }
}
