//! Every message the actors exchange, in one place.
//!
//! Each message about a request carries its [`Context`]. The numbers in the
//! comments are the steps of the data flow in `actors.md`. Work-carrying
//! messages follow the accounting rule of `accounting.rs`: the sender has
//! already opened the work it sends.
//!
//! Each derives `Message` with its reply type, except the three whose reply
//! names the callback type (`Check`, `Pop`, `Drain`): a reply must be
//! `'static`, a bound the derive cannot add, so they implement `Message`
//! by hand.

use actix::{Message, Recipient};
use serde_json::Value;
use uuid::Uuid;

use crate::context::Context;
use crate::error::Error;
use crate::item::{Item, ItemMeta};
use crate::jobdir::Delta;
use crate::politeness::SlotReport;
use crate::recrawl::PageUpdate;
use crate::request::Request;
use crate::response::Response;
use crate::spider::RequestSource;
use crate::stats::{Counter, Stats};

/// Accounting → Engine: open work reached zero (step 11).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Idle;
/// Accounting → Scheduler: only the units it reserved are open (a
/// re-crawl's deferred revisits are due).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct LastCall;
/// Handle → Engine → Scheduler: stop dequeuing until resumed.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), Error>")]
pub struct Pause;
/// Handle → Engine → Scheduler: dequeue again.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), Error>")]
pub struct Resume;
/// Handle → Scheduler: every host's download slot now (for status pages
/// and `/metrics`).
#[derive(Debug, Message)]
#[rtype(result = "Vec<crate::politeness::HostSlot>")]
pub struct HostSlots;
/// Handle → Engine → Scheduler, and Engine → Scheduler as the crawl
/// finishes: write a checkpoint to the job directory now (after the one
/// under way, if any) and answer when it is durable. Fails when the crawl
/// has no job directory.
#[derive(Debug, Message)]
#[rtype(result = "Result<crate::events::CheckpointInfo, Error>")]
pub struct Checkpoint;
/// Engine → Scheduler: stop taking requests from the queue, let
/// in-flight requests finish, then finish with reason `"shutdown"`.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), Error>")]
pub struct Stop;
/// How a stop asked through the handle treats a crawl already stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// The first stop drains; a second one forces (Ctrl-C twice).
    Escalate,
    /// Drains; asking again changes nothing.
    Graceful,
    /// Abandons what is in flight at once.
    Force,
}

/// Handle → Engine: stop the crawl. The Engine sends the Scheduler one
/// `Stop` (the first time) and a `ForceStop` when the mode says so.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), Error>")]
pub struct StopCrawl(pub StopMode);
/// Engine → Scheduler: the drain deadline passed, or a second stop came:
/// abandon what is still in flight (counted unprocessed) and finish.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ForceStop;
/// Engine → every actor: the crawl is over, stop.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;
/// Parser, ErrorHandler, Pool → Scheduler: new requests (step 2).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Enqueue<C> {
    /// The requests, each already counted open.
    pub batch: Vec<Context<C>>,
}
/// Parser → Scheduler: lazy sources of requests a callback emitted
/// (`Output::requests_from`), pulled like the start requests; each already
/// counted open as one unit of work until it runs out.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct EnqueueSources<C> {
    /// The sources, in the order the callback gave them.
    pub sources: Vec<RequestSource<C>>,
}
/// Pool → Scheduler: requests back to the queue without a dupe check —
/// those a crashed downloader held, or a failed request to retry after a
/// backoff; their download slots are free again.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Requeue<C> {
    /// The requests as they were dispatched.
    pub batch: Vec<Context<C>>,
    /// Wait this long before queueing them again (a retry's backoff).
    pub delay: Option<std::time::Duration>,
}
/// Parser, PipelineStage, ErrorHandler, Pool → Scheduler: a dispatched
/// request is finished (parsed and its items through the pipelines, failed,
/// or dropped); its slot is free and its work closed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Completed {
    /// The request's context id.
    pub id: Uuid,
}
/// Scheduler → DupeFilter: test-and-add these requests' fingerprints
/// (step 2).
#[derive(Debug)]
pub struct Check<C> {
    /// Requests to test, in the batches they arrived in (in order): a
    /// backlog is never copied into one vector, since most of it is
    /// duplicates, dropped where they lie.
    pub batches: Vec<Vec<Context<C>>>,
}
impl<C> Check<C> {
    /// A check of one batch.
    #[cfg(test)]
    pub fn one(batch: Vec<Context<C>>) -> Self {
        Check {
            batches: vec![batch],
        }
    }

    /// Every request, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Context<C>> {
        self.batches.iter().flatten()
    }

    /// Every request, in order, in one vector.
    #[cfg(test)]
    pub fn into_flat(self) -> Vec<Context<C>> {
        self.batches.into_iter().flatten().collect()
    }
}
impl<C: Send + 'static> Message for Check<C> {
    type Result = Checked<C>;
}

/// DupeFilter → Scheduler: the new requests and how many were duplicates.
#[derive(Debug)]
pub struct Checked<C> {
    /// Requests seen for the first time, in their original order.
    pub accepted: Vec<Context<C>>,
    /// Requests dropped as duplicates.
    pub duplicates: usize,
}

/// Scheduler → CacheQueue: store accepted requests (step 3).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Push<C> {
    /// The requests.
    pub batch: Vec<Context<C>>,
}
/// Scheduler → CacheQueue: take up to `max` requests, best first (step 4).
#[derive(Debug)]
pub struct Pop<C> {
    /// How many download slots are free.
    pub max: usize,
    /// How many requests each host may take now.
    pub allowance: crate::queue::SlotAllowance,
    /// Ties the reply type to the callback type.
    pub _callback: std::marker::PhantomData<fn() -> C>,
}
impl<C: Send + 'static> Message for Pop<C> {
    type Result = Result<Popped<C>, Error>;
}

/// CacheQueue → Scheduler: the popped requests, and how many remain, so
/// the Scheduler's count of queued requests corrects itself (a back-end may
/// have lost a push).
#[derive(Debug)]
pub struct Popped<C> {
    /// Best first.
    pub batch: Vec<Context<C>>,
    /// Requests left in the queue right after this pop.
    pub remaining: usize,
}

/// Scheduler → CacheQueue: drop everything waiting (on stop); the reply
/// says how many requests that was.
#[derive(Debug)]
pub struct Drain<C> {
    /// Ties the reply type to the callback type.
    pub _callback: std::marker::PhantomData<fn() -> C>,
}
impl<C: Send + 'static> Message for Drain<C> {
    type Result = Result<usize, Error>;
}

/// Scheduler → CacheQueue: these requests' work is done (their response
/// parsed and items handed on, or dropped, or failed) and their children
/// are pushed: a shared queue deletes their leases (or gives back those
/// whose children it could not push). An error leaves them leased: the
/// Scheduler sends them again.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), Error>")]
pub struct Ack {
    /// The requests' ids.
    pub ids: Vec<uuid::Uuid>,
}
/// Scheduler → CacheQueue: every start request is pulled and queued (a
/// shared queue records it for every worker). An error: the Scheduler
/// sends it again.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), Error>")]
pub struct StartsQueued {
    /// How many were pulled.
    pub pulled: u64,
}
/// Coordinator → Scheduler: the distributed crawl's state (every poll
/// interval).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SharedStatus {
    /// This worker owns the start requests: it pulls them.
    pub owns_starts: bool,
    /// Requests waiting in the shared queue.
    pub queued: u64,
    /// The whole crawl is finished.
    pub finished: bool,
}
/// Engine → CacheQueue, Coordinator: the crawl is finishing; give back what
/// this worker holds in a shared back-end and report the last counters.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), Error>")]
pub struct Leave;
/// Scheduler → Pool: download this request (step 4).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Dispatch<C> {
    /// The request; it holds one download slot until `Completed`.
    pub ctx: Context<C>,
}
/// Pool → Downloader: download this request (steps 5–7).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Download<C> {
    /// The request.
    pub ctx: Context<C>,
    /// The downloader incarnation the pool addressed; a restarted downloader
    /// drops older messages, whose requests the pool has already re-queued.
    pub epoch: u64,
}
/// How a download ended.
#[derive(Debug)]
pub enum Outcome<C> {
    /// A response the parse callback should see.
    Response(Context<C>, Box<Response>),
    /// A failure for the error handler.
    Failed(Context<C>, Error),
    /// A middleware dropped the request or its response.
    Dropped(Context<C>, String),
    /// The answer redirects to this request (it goes back to the
    /// Scheduler, through the dupe filter).
    Redirected(Context<C>, Box<Request<C>>),
}

/// Downloader → Pool: a download ended (step 6).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Downloaded<C> {
    /// The request's context id.
    pub id: Uuid,
    /// The result.
    pub outcome: Outcome<C>,
    /// Requests middlewares emitted (step 7), not yet counted open.
    pub emitted: Vec<Request<C>>,
    /// What the exchange tells the host's download slot.
    pub report: SlotReport,
}

/// Pool → Scheduler (crawls with a job directory): what a page's answer
/// changes in the page index, recorded once the request completes, and
/// during a re-crawl its verdict's counter, counted then too (so a
/// request fetched again after a stop, its completion never recorded, is
/// counted once).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct PageFetched<C> {
    /// The request's context id.
    pub id: Uuid,
    /// The change, if any.
    pub update: Option<PageUpdate<C>>,
    /// The re-crawl counter of its verdict (`recrawl/changed`, …), if any.
    pub counter: Option<&'static str>,
}

/// Pool → Scheduler: a download ended and its host slot is free (with what
/// the exchange said about the host).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Released {
    /// The report.
    pub report: SlotReport,
}
/// Downloader → Pool: a download panicked; the downloader stops and its
/// supervisor restarts it. Everything it held must be re-queued.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WorkerCrashed {
    /// Which downloader.
    pub worker: usize,
    /// Its incarnation when it crashed.
    pub epoch: u64,
    /// The request whose download panicked.
    pub id: Uuid,
    /// The panic message.
    pub panic: String,
}
/// Pool → Parser: parse this response (step 8).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Parse<C> {
    /// The request.
    pub ctx: Context<C>,
    /// Its response.
    pub response: Box<Response>,
}
/// Parser → PipelineStage: one response's items (step 9). When they are
/// through, the stage sends `Completed` for the request.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ProcessItems {
    /// The items, in emission order.
    pub items: Vec<Item>,
    /// Where they came from.
    pub meta: ItemMeta,
}
/// PipelineStage → itself, on a timer: run every pipeline's `flush`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct FlushPipelines;
/// Scheduler → PipelineStage, before a job directory's checkpoint: run
/// every pipeline's `checkpoint`; fails if one failed (or if the pipelines
/// were closed and a `close` failed), so the checkpoint does not record
/// completions whose items may not be durable.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), Error>")]
pub struct CheckpointPipelines;
/// Engine → PipelineStage: run every pipeline's `close` (once).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ClosePipelines;
/// Pool → ErrorHandler: a request failed; the handler records it, calls the
/// spider's `on_error`, and completes the request (step 10).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RequestFailed<C> {
    /// The request.
    pub ctx: Context<C>,
    /// What went wrong.
    pub error: Error,
}
/// Parser, PipelineStage → ErrorHandler: record a failure that does not end
/// a request by itself (a parse error, an item error) (step 10).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Report {
    /// What went wrong.
    pub error: Error,
    /// The item concerned, as JSON, when an item failed.
    pub item: Option<Value>,
}
/// Sends `msg`, or counts it as lost when the actor is gone, so that no
/// message disappears silently at an actor boundary.
pub(crate) fn deliver<M>(to: &Recipient<M>, msg: M, stats: &Stats)
where
    M: Message + Send + 'static,
    M::Result: Send,
{
    if to.connected() {
        to.do_send(msg);
    } else {
        stats.inc(Counter::LostMessages);
    }
}

/// Engine → JobStore, at the end of the finish sequence (after the last
/// checkpoint): close the job directory and release its lock, so a crawl
/// started after `join()` returns can open it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct ReleaseJobDir;
/// Scheduler → JobStore: make this delta durable.
#[derive(Message)]
#[rtype(result = "Result<crate::events::CheckpointInfo, Error>")]
pub(crate) struct WriteCheckpoint<C> {
    /// The changes since the previous checkpoint.
    pub delta: Delta<C>,
}
