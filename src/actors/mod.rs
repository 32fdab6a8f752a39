//! The crawl's actors, one per file. `actors.md` at the repository root
//! describes what each handles and sends, and the numbered data flow.

pub mod cache_queue;
pub(crate) mod coordinator;
pub mod downloader;
pub mod dupefilter;
pub mod engine;
pub mod error_handler;
pub(crate) mod job_store;
pub mod parser;
pub mod pipeline_stage;
pub mod pool;
pub mod scheduler;
#[cfg(test)]
pub(crate) mod test_support;
