//! Ready-made item pipelines.
//!
//! - [`JsonLinesFile`]: every item as one JSON line in a file (all its
//!   fields, or the chosen ones in a chosen order).
//! - [`CsvFile`]: every item as one row of a CSV file, with the columns
//!   in a chosen order.
//! - [`HttpPersist`]: items POSTed to an HTTP endpoint in batches, retried,
//!   and spilled to a JSON Lines file when the endpoint stays down, so no
//!   item is ever silently lost.

mod csv;
mod http_persist;
mod jsonl;

pub use self::csv::CsvFile;
pub use http_persist::HttpPersist;
pub use jsonl::JsonLinesFile;

/// What the file exports share: a buffered writer over a file, flushed on
/// the stage's periodic flush and synced on checkpoints and on close.
pub(crate) mod feed {
    use std::fs::File;
    use std::io::{self, BufWriter, Write};

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

    /// Writes out `out`'s buffer, if it is open.
    pub(crate) fn flush(out: Option<&mut impl Buffered>) -> io::Result<()> {
        out.map_or(Ok(()), Buffered::flush_buffer)
    }

    /// Writes out `out`'s buffer and syncs the file, so what was written
    /// outlives a power loss as the checkpoint after it does.
    pub(crate) fn sync(out: Option<&mut impl Buffered>) -> io::Result<()> {
        let Some(out) = out else {
            return Ok(());
        };
        out.flush_buffer()?;
        out.file().sync_data()
    }
}

/// What the feed-export tests hand their pipelines.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;

    use slog::{o, Logger};
    use url::Url;
    use uuid::Uuid;

    use crate::item::ItemMeta;
    use crate::pipeline::PipelineContext;

    /// A context for `open`.
    pub(crate) fn context() -> PipelineContext {
        PipelineContext {
            spider: "test".into(),
            stats: Arc::default(),
            log: Logger::root(slog::Discard, o!()),
        }
    }

    /// An item's metadata.
    pub(crate) fn meta() -> ItemMeta {
        ItemMeta {
            request_id: Uuid::new_v4(),
            url: Url::parse("http://h/").unwrap(),
            spider: "test".into(),
            depth: 0,
            dispatched_at: None,
        }
    }
}
