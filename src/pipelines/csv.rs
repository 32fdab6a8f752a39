//! CSV feed export.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde_json::Value;

use crate::error::{Error, ErrorKind, Stage};
use crate::item::{Item, ItemMeta};
use crate::pipeline::{Pipeline, PipelineContext, Verdict};
use crate::pipelines::feed;

/// Writes items to a CSV file: a header row, then one row per item
/// (buffered; flushed on the stage's periodic flush, synced on checkpoints
/// and on close).
///
/// The columns are the fields given to [`CsvFile::fields`], in that order;
/// without them, the first item's fields (in the order its JSON form lists
/// them: alphabetical). A field an item lacks, or holds `null`, is an empty
/// cell; a string is written as it is; numbers, booleans, arrays and
/// objects as their JSON text. Fields that are not columns are left out,
/// as in Scrapy's CSV exporter. An item that is not a JSON object fails
/// (counted in `item_error_count` and reported, like any pipeline error).
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
    /// Append to an existing file (a resumed job) instead of replacing it.
    append: bool,
    /// Open between `open` and `close`; `None` before the header is
    /// written.
    out: Option<csv::Writer<File>>,
    /// The header row is written.
    header: bool,
}

impl CsvFile {
    /// Writes to `path`, replacing an existing file.
    pub fn new(path: impl AsRef<Path>) -> Self {
        CsvFile {
            path: path.as_ref().to_path_buf(),
            fields: None,
            append: false,
            out: None,
            header: false,
        }
    }

    /// Appends to an existing file instead of replacing it, as a resumed
    /// job wants: a file that already has rows keeps its header, and
    /// without [`CsvFile::fields`] its header gives the columns.
    pub fn append(mut self) -> Self {
        self.append = true;
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

    async fn open(&mut self, _: &PipelineContext) -> Result<(), Error> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(self.append)
            .truncate(!self.append)
            .open(&self.path)
            .map_err(|e| self.error(e))?;
        let len = file.metadata().map_err(|e| self.error(e))?.len();
        self.header = self.append && len > 0;
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
        written.map_err(|e| self.error(e))?;
        Ok(Verdict::Keep)
    }

    async fn flush(&mut self) -> Result<(), Error> {
        let flushed = feed::flush(self.out.as_mut());
        flushed.map_err(|e| self.error(e))
    }

    /// Writes out the buffer and syncs the file, so the rows outlive a
    /// power loss as the checkpoint after them does.
    async fn checkpoint(&mut self) -> Result<(), Error> {
        let synced = feed::sync(self.out.as_mut());
        synced.map_err(|e| self.error(e))
    }

    async fn close(&mut self) -> Result<(), Error> {
        self.checkpoint().await?;
        self.out = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::pipelines::test_support::{context, meta};

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
