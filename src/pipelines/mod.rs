//! Ready-made item pipelines.
//!
//! - [`JsonLinesFile`]: every item as one JSON line in a file (all its
//!   fields, or the chosen ones in a chosen order).
//! - [`CsvFile`]: every item as one row of a CSV file, with the columns
//!   in a chosen order.
//!
//! Both file exports follow one rule for a file that already exists: by
//! default it is continued when the crawl resumes a job directory or is
//! distributed (the earlier runs' items stay: a restarted worker keeps
//! the items of pages it already acknowledged) and replaced otherwise; `append()` always
//! continues it and `overwrite()` always replaces it (Scrapy's `-o` and
//! `-O`). A continued file whose last record was cut short by a crash is
//! first cut back to its last whole record (counted in `feed/torn_tails`
//! and `feed/torn_tail_bytes`, and logged), so the next record starts on
//! a line of its own. Written items are synced to disk on the periodic
//! flush (when any were written since the last sync), before each
//! checkpoint and on close.
//! - [`HttpPersist`]: items POSTed to an HTTP endpoint in batches, retried,
//!   and spilled to a JSON Lines file when the endpoint stays down, so no
//!   item is ever silently lost.

mod csv;
mod feed;
mod http_persist;
mod jsonl;

pub use self::csv::CsvFile;
pub use http_persist::HttpPersist;
pub use jsonl::JsonLinesFile;

/// What the feed-export tests hand their pipelines.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;

    use slog::{o, Logger};
    use url::Url;
    use uuid::Uuid;

    use crate::item::ItemMeta;
    use crate::pipeline::PipelineContext;

    /// A context for `open`, in a new crawl.
    pub(crate) fn context() -> PipelineContext {
        PipelineContext {
            spider: "test".into(),
            stats: Arc::default(),
            log: Logger::root(slog::Discard, o!()),
            resumed: false,
        }
    }

    /// A context for `open`, in a crawl that resumes a job directory.
    pub(crate) fn resumed() -> PipelineContext {
        PipelineContext {
            resumed: true,
            ..context()
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
