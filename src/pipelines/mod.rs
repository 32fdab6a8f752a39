//! Ready-made item pipelines.
//!
//! - [`JsonLinesFile`]: every item as one JSON line in a file.
//! - [`HttpPersist`]: items POSTed to an HTTP endpoint in batches, retried,
//!   and spilled to a JSON Lines file when the endpoint stays down, so no
//!   item is ever silently lost.

mod http_persist;
mod jsonl;

pub use http_persist::HttpPersist;
pub use jsonl::JsonLinesFile;
