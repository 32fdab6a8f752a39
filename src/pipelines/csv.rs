//! CSV feed export.

use std::fs::File;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde_json::Value;

use crate::error::{Error, ErrorKind, Stage};
use crate::item::{Item, ItemMeta};
use crate::pipeline::{Pipeline, PipelineContext, Verdict};
use crate::pipelines::feed::{self, Existing, Records};

/// Writes items to a CSV file: a header row, then one row per item
/// (buffered; written out and synced on the stage's periodic flush, on
/// checkpoints and on close).
///
/// The columns are the fields given to [`CsvFile::fields`], in that order;
/// without them, the first item's fields (in the order its JSON form lists
/// them: alphabetical). A field an item lacks, or holds `null`, is an empty
/// cell; a string is written as it is; numbers, booleans, arrays and
/// objects as their JSON text. Fields that are not columns are left out,
/// as in Scrapy's CSV exporter. An item that is not a JSON object fails
/// (counted in `item_error_count` and reported, like any pipeline error).
///
/// An existing file is continued when the crawl resumes a job directory
/// or is distributed (a restarted worker keeps the items of the pages it
/// already acknowledged) and replaced otherwise ([`append`](Self::append) and
/// [`overwrite`](Self::overwrite) choose one always). A continued file
/// keeps its header (not written again; without [`CsvFile::fields`] it
/// gives the columns). Its last row, when it lacks only its line break
/// (a complete row of as many cells as the first row), is kept and the
/// line break added (counted in `feed/unterminated_tails`); one cut short
/// by a crash is moved to `<path>.torn` and the file cut back to its last
/// whole row (a quoted cell may hold line breaks: the CSV rules decide
/// where a row ends), counted in `feed/torn_tails` and
/// `feed/torn_tail_bytes`.
///
/// ```no_run
/// use spinneret::pipelines::CsvFile;
///
/// let export = CsvFile::new("items.csv").fields(["url", "title", "price"]);
/// ```
pub struct CsvFile {
    /// Where the rows go.
    path: PathBuf,
    /// The columns, once known.
    fields: Option<Vec<String>>,
    /// What happens to an existing file.
    existing: Existing,
    /// Open between `open` and `close`; `None` before the header is
    /// written.
    out: Option<csv::Writer<File>>,
    /// Rows were written since the last sync: the next flush syncs.
    unsynced: bool,
    /// The header row is written.
    header: bool,
}

impl CsvFile {
    /// Writes to `path`: an existing file is continued when the crawl
    /// resumes a job directory or is distributed, replaced otherwise.
    pub fn new(path: impl AsRef<Path>) -> Self {
        CsvFile {
            path: path.as_ref().to_path_buf(),
            fields: None,
            existing: Existing::default(),
            out: None,
            unsynced: false,
            header: false,
        }
    }

    /// Always appends to an existing file, resumed job or not: a file that
    /// already has rows keeps its header, and without [`CsvFile::fields`]
    /// its header gives the columns.
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

    /// The columns, in order (default: the first item's fields); a field
    /// named twice is one column.
    pub fn fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fields = Some(distinct(fields));
        self
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::new(
            Stage::Pipeline,
            ErrorKind::Custom(format!("{}: {e}", self.path.display())),
        )
    }
}

/// Where the last whole row of a CSV file ends, by the CSV rules (a quoted
/// cell may hold line breaks): the file is read from the start by
/// `csv_core`, in blocks, keeping nothing of the cells. What follows is
/// one complete row lacking only its line break when a `\n` after it ends
/// a row of as many cells as the first row has (a header alone is
/// complete when it parses).
fn last_row_end(file: &mut File, _len: u64) -> std::io::Result<Records> {
    use csv_core::ReadRecordResult;
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(0))?;
    // Rows end at `\n` only: a `\r` before it joins the last cell, so a
    // CRLF row counts as whole up to its `\n` (the cells are not kept).
    let mut reader = csv_core::ReaderBuilder::new()
        .terminator(csv_core::Terminator::Any(b'\n'))
        .build();
    let (mut input, mut output, mut ends) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10], [0; 256]);
    let (mut at, mut last_end) = (0u64, 0u64);
    // Cells of the row being read, and of the first row.
    let (mut cells, mut first_cells) = (0usize, None);
    loop {
        let n = file.read(&mut input)?;
        let eof = n == 0;
        // At the end, a line break is offered: the one `open` would add.
        let mut data = if eof { &b"\n"[..] } else { &input[..n] };
        while !data.is_empty() {
            // The cells go to `output` and are overwritten by the next
            // call: only where rows end, and how many cells they have,
            // matter.
            let (result, read, _, n_ends) = reader.read_record(data, &mut output, &mut ends);
            data = &data[read..];
            cells += n_ends;
            if !eof {
                at += read as u64;
            }
            if result == ReadRecordResult::Record {
                let whole = first_cells.is_none_or(|first| first == cells);
                first_cells.get_or_insert(cells);
                cells = 0;
                if eof {
                    let unterminated = at > last_end && whole;
                    return Ok(Records {
                        end: last_end,
                        unterminated,
                    });
                }
                last_end = at;
            }
        }
        if eof {
            return Ok(Records {
                end: last_end,
                unterminated: false,
            });
        }
    }
}

/// `fields` in order, each once.
pub(crate) fn distinct<I, S>(fields: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut out: Vec<String> = Vec::new();
    for f in fields {
        let f = f.into();
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

/// A field's cell: empty for a missing field or `null`, a string as it is,
/// anything else as JSON.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

#[async_trait(?Send)]
impl Pipeline for CsvFile {
    fn name(&self) -> &str {
        "csv_file"
    }

    async fn open(&mut self, ctx: &PipelineContext) -> Result<(), Error> {
        let append = self.existing.appends(ctx.resumed);
        let file = feed::open(&self.path, append, last_row_end, ctx).map_err(|e| self.error(e))?;
        let len = file.metadata().map_err(|e| self.error(e))?.len();
        self.header = append && len > 0;
        if self.header && self.fields.is_none() {
            let read = csv::Reader::from_path(&self.path).and_then(|mut r| r.headers().cloned());
            let header = read.map_err(|e| self.error(e))?;
            self.fields = Some(header.iter().map(str::to_owned).collect());
        }
        self.out = Some(csv::Writer::from_writer(file));
        Ok(())
    }

    async fn process_item(&mut self, item: &mut Item, _: &ItemMeta) -> Result<Verdict, Error> {
        let json = item.to_json()?;
        let Value::Object(object) = json else {
            return Err(Error::new(
                Stage::Pipeline,
                ErrorKind::Custom(format!(
                    "{}: a CSV row needs an item that is a JSON object",
                    self.path.display()
                )),
            ));
        };
        let Some(out) = self.out.as_mut() else {
            return Err(Error::new(
                Stage::Pipeline,
                ErrorKind::IllegalState("CSV file is not open".into()),
            ));
        };
        let fields = self
            .fields
            .get_or_insert_with(|| object.keys().cloned().collect());
        let header = if self.header {
            Ok(())
        } else {
            out.write_record(fields.iter())
        };
        self.header |= header.is_ok();
        let row = fields.iter().map(|f| cell(object.get(f)));
        let written = header.and_then(|()| out.write_record(row));
        self.unsynced = true;
        written.map_err(|e| self.error(e))?;
        Ok(Verdict::Keep)
    }

    /// Writes out the buffer and syncs the file, if a row was written
    /// since the last sync.
    async fn flush(&mut self) -> Result<(), Error> {
        let synced = feed::sync(self.out.as_mut(), &mut self.unsynced);
        synced.map_err(|e| self.error(e))
    }

    /// As `flush`: the rows outlive a power loss as the checkpoint after
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

    async fn export(csv: &mut CsvFile, items: Vec<Value>) -> Vec<Result<Verdict, Error>> {
        csv.open(&context()).await.unwrap();
        let mut results = Vec::new();
        for value in items {
            results.push(csv.process_item(&mut Item::new(value), &meta()).await);
        }
        csv.close().await.unwrap();
        results
    }

    #[actix::test]
    async fn columns_follow_the_given_fields_and_cells_are_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.csv");
        let mut csv = CsvFile::new(&path).fields(["url", "title", "price", "tags"]);
        let results = export(
            &mut csv,
            vec![
                json!({"title": "A, \"quoted\" one", "url": "http://h/a", "price": 3.5,
                       "tags": ["x", "y"], "extra": 1}),
                json!({"url": "http://h/b", "price": null}),
                json!("not an object"),
                json!({"url": "http://h/c", "title": "two\nlines"}),
            ],
        )
        .await;
        assert!(results[..2].iter().all(|r| r.is_ok()));
        let err = results[2].as_ref().unwrap_err();
        assert!(err.to_string().contains("JSON object"), "{err}");
        assert!(results[3].is_ok());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "url,title,price,tags\n\
             http://h/a,\"A, \"\"quoted\"\" one\",3.5,\"[\"\"x\"\",\"\"y\"\"]\"\n\
             http://h/b,,,\n\
             http://h/c,\"two\nlines\",,\n"
        );
    }

    #[actix::test]
    async fn appending_keeps_the_header_and_its_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.csv");
        export(&mut CsvFile::new(&path), vec![json!({"b": 2, "a": "one"})]).await;
        // A resumed job: no header again, the same columns.
        let mut resumed = CsvFile::new(&path).append();
        export(&mut resumed, vec![json!({"a": "two", "b": 3, "c": 4})]).await;
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "a,b\none,2\ntwo,3\n"
        );
        // Appending to a new file writes the header first.
        let fresh = dir.path().join("fresh.csv");
        let mut csv = CsvFile::new(&fresh).append().fields(["a", "a", "b"]);
        export(&mut csv, vec![json!({"a": 1, "b": 2})]).await;
        assert_eq!(std::fs::read_to_string(&fresh).unwrap(), "a,b\n1,2\n");
    }

    #[actix::test]
    async fn a_resumed_crawl_continues_the_file_without_a_second_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.csv");
        export(&mut CsvFile::new(&path), vec![json!({"b": 2, "a": "one"})]).await;
        let mut resumed_csv = CsvFile::new(&path);
        resumed_csv.open(&resumed()).await.unwrap();
        let item = &mut Item::new(json!({"a": "two", "b": 3}));
        resumed_csv.process_item(item, &meta()).await.unwrap();
        resumed_csv.close().await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "a,b\none,2\ntwo,3\n"
        );
        // A new crawl replaces it.
        export(&mut CsvFile::new(&path), vec![json!({"c": 1})]).await;
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "c\n1\n");
    }

    #[actix::test]
    async fn a_torn_last_row_is_cut_back_by_the_csv_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.csv");
        let rows = vec![
            json!({"url": "http://h/a", "title": "one\nline break"}),
            json!({"url": "http://h/b", "title": "plain"}),
        ];
        export(&mut CsvFile::new(&path).fields(["url", "title"]), rows).await;
        let whole = std::fs::read_to_string(&path).unwrap();
        // Torn inside a quoted cell, after a line break in it: the last
        // `\n` is not where the row ends.
        let torn = "http://h/c,\"two\nlines and a ha";
        std::fs::write(&path, format!("{whole}{torn}")).unwrap();
        let ctx = resumed();
        let mut csv = CsvFile::new(&path).fields(["url", "title"]);
        csv.open(&ctx).await.unwrap();
        let item = &mut Item::new(json!({"url": "http://h/d", "title": "after"}));
        csv.process_item(item, &meta()).await.unwrap();
        csv.close().await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{whole}http://h/d,after\n")
        );
        assert_eq!(ctx.stats.snapshot().get("feed/torn_tails"), 1);
        let cut = torn.len() as u64;
        assert_eq!(ctx.stats.snapshot().get("feed/torn_tail_bytes"), cut);
        let mut reader = csv::Reader::from_path(&path).unwrap();
        assert_eq!(reader.records().count(), 3);
        // The torn bytes are kept aside, not thrown away.
        let saved = std::fs::read_to_string(feed::torn_path(&path)).unwrap();
        assert_eq!(saved, torn);
    }

    #[actix::test]
    async fn a_torn_header_is_cut_and_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.csv");
        // Torn inside a quoted cell: no whole row.
        std::fs::write(&path, "url,\"ti").unwrap();
        let mut csv = CsvFile::new(&path).fields(["url", "title"]);
        csv.open(&resumed()).await.unwrap();
        let item = &mut Item::new(json!({"url": "u", "title": "t"}));
        csv.process_item(item, &meta()).await.unwrap();
        csv.close().await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "url,title\nu,t\n");
        let torn = std::fs::read_to_string(feed::torn_path(&path)).unwrap();
        assert_eq!(torn, "url,\"ti");
    }

    #[actix::test]
    async fn appending_keeps_a_last_row_without_a_line_break_and_adds_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.csv");
        // Written by another tool, without a last line break.
        std::fs::write(&path, "a,b\n1,\"x\ny\"").unwrap();
        let ctx = context();
        let mut csv = CsvFile::new(&path).append();
        csv.open(&ctx).await.unwrap();
        let item = &mut Item::new(json!({"a": 2, "b": "z"}));
        csv.process_item(item, &meta()).await.unwrap();
        csv.close().await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "a,b\n1,\"x\ny\"\n2,z\n"
        );
        let stats = ctx.stats.snapshot();
        assert_eq!(stats.get("feed/unterminated_tails"), 1);
        assert_eq!(stats.get("feed/torn_tails"), 0);
        assert!(!feed::torn_path(&path).exists());
        // A last row of fewer cells than the header is torn: moved to
        // `<path>.torn`.
        std::fs::write(&path, "a,b\n1,2\n3").unwrap();
        let ctx = context();
        let mut csv = CsvFile::new(&path).append();
        csv.open(&ctx).await.unwrap();
        csv.close().await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a,b\n1,2\n");
        let torn = std::fs::read_to_string(feed::torn_path(&path)).unwrap();
        assert_eq!(torn, "3");
        assert_eq!(ctx.stats.snapshot().get("feed/torn_tail_bytes"), 1);
    }

    #[test]
    fn a_crlf_file_ends_after_its_last_line_break() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.csv");
        let whole = "a,b\r\n1,\"x\r\ny\"\r\n";
        std::fs::write(&path, whole).unwrap();
        let mut file = File::open(&path).unwrap();
        let records = last_row_end(&mut file, 0).unwrap();
        let (end, unterminated) = (whole.len() as u64, false);
        assert_eq!(records, Records { end, unterminated });
        // Torn between the `\r` and the `\n`: the row lacks only its
        // `\n`.
        std::fs::write(&path, &whole[..whole.len() - 1]).unwrap();
        let mut file = File::open(&path).unwrap();
        let records = last_row_end(&mut file, 0).unwrap();
        let (end, unterminated) = (5, true);
        assert_eq!(records, Records { end, unterminated });
        // Torn inside the quoted cell: no row.
        std::fs::write(&path, &whole[..whole.len() - 4]).unwrap();
        let mut file = File::open(&path).unwrap();
        let records = last_row_end(&mut file, 0).unwrap();
        let (end, unterminated) = (5, false);
        assert_eq!(records, Records { end, unterminated });
    }

    #[actix::test]
    async fn without_fields_the_first_items_fields_are_the_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.csv");
        let mut csv = CsvFile::new(&path);
        export(
            &mut csv,
            vec![json!({"b": 2, "a": "one"}), json!({"a": "two", "c": true})],
        )
        .await;
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "a,b\none,2\ntwo,\n"
        );
    }
}
