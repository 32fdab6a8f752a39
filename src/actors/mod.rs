//! The crawl's actors, one file each (the Scheduler is a folder: its
//! `mod.rs` holds the actor and its handlers, one sibling file per job).
//! They talk only through the messages of `messages.rs`, each keeping the
//! addresses it sends to in an outbox of `Recipient`s. `actors.md` at the
//! repository root describes what each handles and sends, and the numbered
//! data flow.

pub(crate) mod cache_queue;
#[cfg(feature = "distributed")]
pub(crate) mod coordinator;
pub(crate) mod downloader;
pub(crate) mod dupefilter;
pub(crate) mod engine;
pub(crate) mod error_handler;
pub(crate) mod job_store;
pub(crate) mod parser;
pub(crate) mod pipeline_stage;
pub(crate) mod pool;
pub(crate) mod scheduler;
#[cfg(test)]
pub(crate) mod test_support;
