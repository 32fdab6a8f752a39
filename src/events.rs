//! Lifecycle events a host application can subscribe to.
//!
//! [`CrawlHandle::subscribe`](crate::CrawlHandle::subscribe) gives a
//! broadcast receiver: the Engine sends `Started`, `Paused`, `Resumed`,
//! `Stopping` and `Finished` (with the final stats), the ErrorHandler an
//! `Error` for every failure it records, and the Scheduler `Checkpointed`
//! for every checkpoint made durable in the job directory (or an `Error`
//! when one fails). A receiver that falls more than
//! 1,024 events behind skips the oldest (it sees `Lagged`), so a slow
//! subscriber never slows the crawl.

use serde::Serialize;

use crate::stats::StatsSnapshot;

/// How many events a slow subscriber may fall behind.
pub(crate) const CAPACITY: usize = 1024;

/// Something that happened to a crawl.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CrawlEvent {
    /// The crawl started.
    Started,
    /// Dequeuing stopped until resumed.
    Paused,
    /// Dequeuing goes on.
    Resumed,
    /// A stop was asked for: in-flight requests are draining.
    Stopping,
    /// A checkpoint is durable in the job directory.
    Checkpointed {
        /// What was written.
        info: CheckpointInfo,
    },
    /// A failure was recorded.
    Error {
        /// The crawl stage that failed.
        stage: String,
        /// The URL concerned, if any.
        url: Option<String>,
        /// What went wrong.
        message: String,
    },
    /// The crawl finished; its final stats.
    Finished {
        /// The final stats, with `finish_reason`.
        stats: Box<StatsSnapshot>,
    },
}

impl CrawlEvent {
    /// The event for a recorded failure.
    pub(crate) fn error(error: &crate::error::Error) -> Self {
        CrawlEvent::Error {
            stage: error.stage().to_string(),
            // Credentials in the URL stay out of what subscribers stream on.
            url: error.url().map(|u| crate::redact::Redacted(u).to_string()),
            message: error.to_string(),
        }
    }
}

/// What a crawl found in its job directory when it resumed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ResumeInfo {
    /// Requests accepted and not completed: crawled first on resume.
    pub pending: u64,
    /// Requests completed by earlier runs.
    pub completed: u64,
    /// Start requests already consumed (skipped unless
    /// [`rerun_start_requests`](crate::CrawlerBuilder::rerun_start_requests)).
    pub starts_pulled: u64,
    /// Whether the start requests had run out.
    pub starts_exhausted: bool,
    /// Journal records replayed.
    pub records: usize,
    /// Bytes of a torn or corrupt tail that were cut off the journal.
    pub dropped_bytes: u64,
}

/// A checkpoint made durable in the job directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CheckpointInfo {
    /// Counts the checkpoints written by this run, from 1.
    pub sequence: u64,
    /// Requests accepted and not completed, per the journal.
    pub pending: u64,
    /// Requests completed over all runs.
    pub completed: u64,
    /// Size of the journal after the write.
    pub log_bytes: u64,
    /// Whether the journal was compacted into one base record.
    pub compacted: bool,
}
