//! The user's side of a crawl: the [`Spider`] trait.
//!
//! A spider names itself, yields its start requests, and parses responses.
//! Each request names its parse callback as a value of the spider's
//! [`Spider::Callback`] type — usually an enum — that `parse` matches on:
//! the compiler checks every callback is handled, and the value serialises
//! with the request, so a queued request can be persisted or shared.

use serde::Serialize;

use crate::error::Error;
use crate::item::Item;
use crate::request::{Callback, Request};
use crate::response::Response;

/// The start requests of a crawl, pulled lazily as the queue has room.
pub type StartRequests<C> = Box<dyn Iterator<Item = Request<C>> + Send>;

/// A crawl's user code.
///
/// Called from several actors (the scheduler pulls start requests, the
/// parser calls `parse`, the error handler calls `on_error`), hence
/// `Send + Sync`.
pub trait Spider: Send + Sync + 'static {
    /// Which parse callback a request wants; see the module docs.
    type Callback: Callback;

    /// The spider's name, used in logs, stats and item metadata.
    fn name(&self) -> &str;

    /// The requests the crawl starts from. The iterator is pulled lazily,
    /// so it may be long or generated.
    fn start_requests(&self) -> StartRequests<Self::Callback>;

    /// Parses `response` for the request's `callback`, emitting items and
    /// new requests into `out`.
    ///
    /// An `Err` (or a panic) is counted in `spider_exceptions` and reported
    /// with the URL; what was emitted before it is still processed.
    fn parse(
        &self,
        callback: Self::Callback,
        response: &Response,
        out: &mut Output<Self::Callback>,
    ) -> Result<(), Error>;

    /// Called for every request that failed (download error, disallowed
    /// status, middleware failure); returns requests to schedule instead,
    /// for example a retry marked `dont_filter`. The default returns none.
    fn on_error(&self, failure: &Failure<Self::Callback>) -> Vec<Request<Self::Callback>> {
        let _ = failure;
        Vec::new()
    }
}

/// Collects what a parse callback emits.
#[derive(Debug)]
pub struct Output<C> {
    /// New requests, scheduled after the callback returns (depth + 1).
    pub(crate) requests: Vec<Request<C>>,
    /// Items, sent to the pipelines after the callback returns.
    pub(crate) items: Vec<Item>,
}

impl<C> Default for Output<C> {
    fn default() -> Self {
        Output {
            requests: Vec::new(),
            items: Vec::new(),
        }
    }
}

impl<C: Callback> Output<C> {
    /// Emits a new request.
    pub fn request(&mut self, request: Request<C>) {
        self.requests.push(request);
    }

    /// Emits an item: any serialisable value.
    pub fn item<T: Serialize + Send + 'static>(&mut self, value: T) {
        self.items.push(Item::new(value));
    }

    /// Emits an already wrapped item.
    pub fn push_item(&mut self, item: Item) {
        self.items.push(item);
    }

    /// How many requests were emitted so far.
    pub fn request_count(&self) -> usize {
        self.requests.len()
    }

    /// How many items were emitted so far.
    pub fn item_count(&self) -> usize {
        self.items.len()
    }
}

/// A request that failed, as shown to [`Spider::on_error`].
#[derive(Debug)]
pub struct Failure<C> {
    /// The request as it was scheduled.
    pub request: Request<C>,
    /// What went wrong.
    pub error: Error,
    /// Which attempt failed (1 for the first).
    pub attempt: u32,
}
