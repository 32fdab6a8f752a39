//! The envelope every message about a request carries.
//!
//! A request's download result, items and errors travel in the typed
//! messages themselves (see `messages.rs`), and the [`Context`] keeps what
//! must follow the request through every actor: its identity, lineage and
//! attempt counters.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::request::Callback;
use crate::request::Request;

/// A request in flight through the crawl, with its bookkeeping.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound = "C: Callback")]
pub struct Context<C> {
    /// Unique per scheduled request; logs and in-flight tables key on it.
    pub id: Uuid,
    /// The request being crawled.
    pub request: Request<C>,
    /// The request whose response or failure emitted this one (none for
    /// start requests): the lineage a log reader follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Uuid>,
    /// How many times this request was handed to a downloader; 1 on its
    /// first download.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: u32,
    /// How many times the retry policy re-queued this request after a
    /// retryable failure.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// How many times a downloader crashed while holding this request; past
    /// the crawl's limit the request fails instead of being re-queued, so a
    /// request that always crashes cannot loop forever.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub crashes: u32,
    /// When the Scheduler last dispatched it (not persisted): items carry
    /// it to the pipelines, so a pipeline can tell how long a page took
    /// from dequeue to its items.
    #[serde(skip)]
    pub dispatched_at: Option<std::time::Instant>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl<C> Context<C> {
    /// A fresh context for `request`, emitted by `parent`.
    pub fn new(request: Request<C>, parent: Option<Uuid>) -> Self {
        Context {
            id: Uuid::new_v4(),
            request,
            parent,
            attempt: 0,
            retries: 0,
            crashes: 0,
            dispatched_at: None,
        }
    }
}
