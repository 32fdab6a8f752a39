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

use crate::jobdir::CheckpointInfo;
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
            url: error.url().map(|u| u.to_string()),
            message: error.to_string(),
        }
    }
}
