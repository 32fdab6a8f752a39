//! A pipeline that writes every item as one JSON line.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::error::{Error, ErrorKind, Stage};
use crate::item::{Item, ItemMeta};
use crate::pipeline::{Pipeline, PipelineContext, Verdict};

/// Writes items to a JSON Lines file (buffered; flushed on the stage's
/// periodic flush and on close).
pub struct JsonLinesFile {
    /// Where the lines go.
    path: PathBuf,
    /// Append to an existing file instead of replacing it.
    append: bool,
    /// Open between `open` and `close`.
    out: Option<BufWriter<File>>,
}

impl JsonLinesFile {
    /// Writes to `path`, replacing an existing file.
    pub fn new(path: impl AsRef<Path>) -> Self {
        JsonLinesFile {
            path: path.as_ref().to_path_buf(),
            append: false,
            out: None,
        }
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
        let written = serde_json::to_writer(&mut *out, &json)
            .map_err(std::io::Error::from)
            .and_then(|_| out.write_all(b"\n"));
        written.map_err(|e| self.io_error(e))?;
        Ok(Verdict::Keep)
    }

    async fn flush(&mut self) -> Result<(), Error> {
        if let Some(out) = self.out.as_mut() {
            let flushed = out.flush();
            flushed.map_err(|e| self.io_error(e))?;
        }
        Ok(())
    }

    /// Writes out the buffer and syncs the file, so the lines outlive a
    /// power loss as the checkpoint after them does.
    async fn checkpoint(&mut self) -> Result<(), Error> {
        self.flush().await?;
        if let Some(out) = self.out.as_ref() {
            let synced = out.get_ref().sync_data();
            synced.map_err(|e| self.io_error(e))?;
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), Error> {
        self.flush().await?;
        self.out = None;
        Ok(())
    }
}
