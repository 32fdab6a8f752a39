//! A pipeline that writes every item as one JSON line.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind, Stage};
use crate::item::{Item, ItemMeta};
use crate::pipeline::{Pipeline, PipelineContext, Verdict};
use crate::pipelines::feed;

/// Writes items to a JSON Lines file (buffered; flushed on the stage's
/// periodic flush and on close).
///
/// Each line is the item's JSON; with [`JsonLinesFile::fields`], an object
/// of those fields only, in that order (a field the item lacks is left out,
/// as in Scrapy's exporters; an item that is not an object is written
/// whole).
pub struct JsonLinesFile {
    /// Where the lines go.
    path: PathBuf,
    /// The fields written, in order (all, in the JSON's order, if `None`).
    fields: Option<Vec<String>>,
    /// Append to an existing file instead of replacing it.
    append: bool,
    /// Open between `open` and `close`.
    out: Option<BufWriter<File>>,
    /// The line being encoded.
    line: Vec<u8>,
}

impl JsonLinesFile {
    /// Writes to `path`, replacing an existing file.
    pub fn new(path: impl AsRef<Path>) -> Self {
        JsonLinesFile {
            path: path.as_ref().to_path_buf(),
            fields: None,
            append: false,
            out: None,
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

    /// Appends to an existing file instead of replacing it.
    pub fn append(mut self) -> Self {
        self.append = true;
        self
    }

    fn io_error(&self, e: std::io::Error) -> Error {
        Error::new(
            Stage::Pipeline,
            ErrorKind::Custom(format!("{}: {e}", self.path.display())),
        )
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

    async fn open(&mut self, _: &PipelineContext) -> Result<(), Error> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(self.append)
            .truncate(!self.append)
            .open(&self.path)
            .map_err(|e| self.io_error(e))?;
        self.out = Some(BufWriter::new(file));
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
        written.map_err(|e| self.io_error(e))?;
        Ok(Verdict::Keep)
    }

    async fn flush(&mut self) -> Result<(), Error> {
        let flushed = feed::flush(self.out.as_mut());
        flushed.map_err(|e| self.io_error(e))
    }

    /// Writes out the buffer and syncs the file, so the lines outlive a
    /// power loss as the checkpoint after them does.
    async fn checkpoint(&mut self) -> Result<(), Error> {
        let synced = feed::sync(self.out.as_mut());
        synced.map_err(|e| self.io_error(e))
    }

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
    use crate::pipelines::test_support::{context, meta};

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
