//! The Scheduler's tests: admission, dupe-check batching, dispatch under
//! the global credits, pause, stop, requeue and the shared queue's
//! acknowledgements, each over the real CacheQueue with recorders for the
//! pool and the Engine.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::ready;
use tokio::sync::mpsc;

use super::starts::START_BATCH;
use super::*;
use crate::actors::cache_queue::CacheQueue;
use crate::actors::dupefilter::DupeFilter;
use crate::actors::test_support::{expect_event, log, req, Cb, Event, Events, Ping, Recorder};
use crate::dedupe::{DupeMode, MemoryDupe};
use crate::messages::{Ack, Check, Checked, Pop, StartsQueued};
use crate::politeness::SlotReport;
use crate::queue::{BackendFuture, MemoryQueue, QueueBackend, SlotAllowance};
use crate::recrawl::{LASTMOD_SKIPPED, UNCHANGED};
use crate::request::Request;
use crate::sitemap::SITEMAP_LASTMOD;

/// A dupe filter that calls the URLs in `dupes` seen and everything
/// else new, and reports the URLs of every batch it is asked about.
struct FakeDupe {
    dupes: HashSet<String>,
    asked: mpsc::UnboundedSender<Vec<String>>,
}

impl Actor for FakeDupe {
    type Context = actix::Context<Self>;
}

impl Handler<Check<Cb>> for FakeDupe {
    type Result = MessageResult<Check<Cb>>;

    fn handle(&mut self, msg: Check<Cb>, _: &mut Self::Context) -> Self::Result {
        if msg.iter().next().is_some() {
            let urls = msg.iter().map(|c| c.request.url.to_string());
            let _ = self.asked.send(urls.collect());
        }
        let (dupes, accepted): (Vec<_>, Vec<_>) = msg
            .into_flat()
            .into_iter()
            .partition(|c| self.dupes.contains(c.request.url.as_str()));
        MessageResult(Checked {
            accepted,
            duplicates: dupes.len(),
        })
    }
}

/// Starts a [`FakeDupe`]; the receiver yields the URLs of each batch.
fn fake_dupe(dupes: &[&str]) -> (Recipient<Check<Cb>>, mpsc::UnboundedReceiver<Vec<String>>) {
    let (asked, rx) = mpsc::unbounded_channel();
    let dupes = dupes.iter().map(|u| u.to_string()).collect();
    (FakeDupe { dupes, asked }.start().recipient(), rx)
}

/// The real dupe filter over a Bloom filter.
fn real_dupe() -> Recipient<Check<Cb>> {
    let bloom = MemoryDupe::new(1000, 0.001, DupeMode::Exact).unwrap();
    DupeFilter::<Cb>::new(Box::new(bloom), Arc::default(), log())
        .start()
        .recipient()
}

/// A scheduler over the real CacheQueue, with a recorder as the pool
/// and another as the engine (the accounting's `Idle`).
struct Rig {
    sched: Addr<Scheduler<Cb>>,
    queue: Addr<CacheQueue<Cb>>,
    dupe: Option<Recipient<Check<Cb>>>,
    pool: Addr<Recorder<Cb>>,
    dispatched: Events<Cb>,
    engine: Addr<Recorder<Cb>>,
    engine_events: Events<Cb>,
    accounting: Arc<Accounting>,
    stats: Arc<Stats>,
}

fn rig(
    starts: impl IntoIterator<Item = Request<Cb>, IntoIter: Send + 'static>,
    concurrency: usize,
    dupe: Option<Recipient<Check<Cb>>>,
) -> Rig {
    rig_with_queue(starts, concurrency, dupe, Box::new(MemoryQueue::default()))
}

fn rig_with_queue(
    starts: impl IntoIterator<Item = Request<Cb>, IntoIter: Send + 'static>,
    concurrency: usize,
    dupe: Option<Recipient<Check<Cb>>>,
    backend: Box<dyn QueueBackend<Cb>>,
) -> Rig {
    // The fake pool sends no `Released`: give the one host unlimited
    // room so these tests see the global credits alone (per-host
    // limits are tested in `slots`, below, and in tests/it).
    let mut config = SchedulerConfig::with_concurrency(concurrency);
    config.slots.concurrency = usize::MAX;
    rig_with_config(starts, config, dupe, backend)
}

fn rig_with_config(
    starts: impl IntoIterator<Item = Request<Cb>, IntoIter: Send + 'static>,
    config: SchedulerConfig,
    dupe: Option<Recipient<Check<Cb>>>,
    backend: Box<dyn QueueBackend<Cb>>,
) -> Rig {
    rig_shared(starts, config, dupe, backend, None)
}

fn rig_shared(
    starts: impl IntoIterator<Item = Request<Cb>, IntoIter: Send + 'static>,
    config: SchedulerConfig,
    dupe: Option<Recipient<Check<Cb>>>,
    backend: Box<dyn QueueBackend<Cb>>,
    shared: Option<SharedQueue>,
) -> Rig {
    rig_full(starts, config, dupe, backend, shared, (0, Vec::new()))
}

/// Every option: `revisits.0` start requests are a re-crawl's revisits,
/// and `revisits.1` its revisits that wait for their sitemap.
fn rig_full(
    starts: impl IntoIterator<Item = Request<Cb>, IntoIter: Send + 'static>,
    config: SchedulerConfig,
    dupe: Option<Recipient<Check<Cb>>>,
    backend: Box<dyn QueueBackend<Cb>>,
    shared: Option<SharedQueue>,
    revisits: (u64, Vec<WaitingPage>),
) -> Rig {
    let (engine, engine_events) = Recorder::spawn();
    let (pool, dispatched) = Recorder::spawn();
    let accounting = Arc::new(Accounting::new(engine.clone().recipient()));
    let stats = Arc::new(Stats::default());
    let queue = CacheQueue::new(backend, accounting.clone(), stats.clone(), log()).start();
    let outbox = SchedulerOutbox {
        push: queue.clone().recipient(),
        pop: queue.clone().recipient(),
        drain: queue.clone().recipient(),
        dupe: dupe.clone(),
        pool: pool.clone().recipient(),
    };
    let starts: StartRequests<Cb> = Box::new(starts.into_iter());
    let mut sched = Scheduler::new(
        outbox,
        starts,
        config,
        accounting.clone(),
        stats.clone(),
        log(),
    );
    if let Some(shared) = shared {
        sched = sched.with_shared_queue(shared);
    }
    let sched = sched.with_revisits(revisits.0, revisits.1).start();
    Rig {
        sched,
        queue,
        dupe,
        pool,
        dispatched,
        engine,
        engine_events,
        accounting,
        stats,
    }
}

/// A worker of a distributed crawl over `shared`, at `concurrency`, that
/// owns (and so pulls) the start requests.
async fn shared_worker(
    starts: impl IntoIterator<Item = Request<Cb>, IntoIter: Send + 'static>,
    concurrency: usize,
    shared: SharedQueue,
) -> Rig {
    let mut config = SchedulerConfig::with_concurrency(concurrency);
    config.slots.concurrency = usize::MAX;
    let backend = Box::new(MemoryQueue::default());
    let r = rig_shared(starts, config, None, backend, Some(shared));
    r.sched
        .send(SharedStatus {
            owns_starts: true,
            queued: 0,
            finished: false,
        })
        .await
        .unwrap();
    r
}

impl Rig {
    /// The next request dispatched to the pool.
    async fn next_dispatch(&mut self) -> Context<Cb> {
        expect_event!(self.dispatched.next().await, Event::Dispatch(c) => c)
    }

    /// Lets every chain of messages already started run to its end:
    /// no-op round trips through each actor, in data-flow order, a few
    /// times over (a chain scheduler → dupe filter → scheduler → queue
    /// → scheduler → pool needs three rounds).
    async fn settle(&self) {
        for _ in 0..5 {
            self.sched
                .send(Enqueue { batch: Vec::new() })
                .await
                .unwrap();
            if let Some(dupe) = &self.dupe {
                dupe.send(Check::one(Vec::new())).await.unwrap();
            }
            let pop = Pop {
                max: 0,
                allowance: SlotAllowance::uniform(0),
                _callback: PhantomData,
            };
            self.queue.send(pop).await.unwrap().unwrap();
            self.pool.send(Ping).await.unwrap();
            self.engine.send(Ping).await.unwrap();
        }
    }

    /// Dispatches that arrived and were not consumed yet (after a
    /// settle: every dispatch the scheduler will make for now).
    async fn more_dispatches(&mut self) -> Vec<Event<Cb>> {
        self.settle().await;
        self.dispatched.drain()
    }

    async fn complete(&self, c: &Context<Cb>) {
        self.sched.send(Completed { id: c.id }).await.unwrap();
    }

    fn stat(&self, c: Counter) -> u64 {
        self.stats.get(c)
    }
}

fn pages(n: usize) -> Vec<Request<Cb>> {
    (0..n).map(|i| req(&format!("http://h/p{i}"))).collect()
}

fn path(c: &Context<Cb>) -> &str {
    c.request.url.path()
}

#[actix::test]
async fn dispatches_at_most_concurrency_then_one_per_completed() {
    let mut r = rig(pages(5), 2, None);
    let a = r.next_dispatch().await;
    let b = r.next_dispatch().await;
    assert_eq!((path(&a), path(&b)), ("/p0", "/p1"));
    assert_eq!((a.attempt, b.attempt), (1, 1));
    assert!(r.more_dispatches().await.is_empty());
    assert_eq!(r.stat(Counter::Dequeued), 2);
    assert_eq!(r.stat(Counter::InFlight), 2);
    assert_eq!(r.stat(Counter::Queued), 3);

    r.complete(&a).await;
    let c = r.next_dispatch().await;
    assert_eq!(path(&c), "/p2");
    assert!(r.more_dispatches().await.is_empty());
    assert_eq!(r.stat(Counter::Dequeued), 3);
    assert_eq!(r.stat(Counter::InFlight), 2);
    assert_eq!(r.stat(Counter::Queued), 2);
}

#[actix::test]
async fn completing_everything_reaches_zero_and_idles_exactly_once() {
    let (dupe, _asked) = fake_dupe(&["http://h/dup"]);
    let mut starts = pages(4);
    starts.push(req("http://h/dup"));
    starts.push(req("http://h/p4"));
    let mut r = rig(starts, 2, Some(dupe));
    let mut in_flight = vec![r.next_dispatch().await, r.next_dispatch().await];
    let (mut dispatched, mut completed) = (2, 0);
    while let Some(c) = in_flight.pop() {
        r.settle().await;
        assert!(r.engine_events.drain().is_empty(), "Idle before the end");
        assert_eq!(r.accounting.count(), 5 - completed);
        r.complete(&c).await;
        completed += 1;
        if dispatched < 5 {
            in_flight.push(r.next_dispatch().await);
            dispatched += 1;
        }
    }
    assert_eq!(completed, 5);
    expect_event!(r.engine_events.next().await, Event::Idle => ());
    r.settle().await;
    assert!(r.engine_events.drain().is_empty(), "a second Idle");
    assert!(r.dispatched.drain().is_empty());
    assert_eq!(r.accounting.count(), 0);
    assert_eq!(r.stat(Counter::Enqueued), 5);
    assert_eq!(r.stat(Counter::Dequeued), 5);
    assert_eq!(r.stat(Counter::DupeFiltered), 1);
    assert_eq!(r.stat(Counter::InFlight), 0);
    assert_eq!(r.stat(Counter::Queued), 0);
}

/// A dupe filter that reports each batch it is asked about and answers
/// (everything new) only when the gate gives it a permit.
struct GatedDupe {
    gate: Arc<tokio::sync::Semaphore>,
    asked: mpsc::UnboundedSender<Vec<String>>,
}

impl Actor for GatedDupe {
    type Context = actix::Context<Self>;
}

impl Handler<Check<Cb>> for GatedDupe {
    type Result = ResponseFuture<Checked<Cb>>;

    fn handle(&mut self, msg: Check<Cb>, _: &mut Self::Context) -> Self::Result {
        let urls = msg.iter().map(|c| c.request.url.to_string());
        let _ = self.asked.send(urls.collect());
        let gate = self.gate.clone();
        Box::pin(async move {
            gate.acquire().await.unwrap().forget();
            Checked {
                accepted: msg.into_flat(),
                duplicates: 0,
            }
        })
    }
}

/// Starts a [`GatedDupe`]: its gate (closed), its address, and the URLs
/// of each check it is asked.
fn gated_dupe() -> (
    Arc<tokio::sync::Semaphore>,
    Recipient<Check<Cb>>,
    mpsc::UnboundedReceiver<Vec<String>>,
) {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (asked_tx, asked) = mpsc::unbounded_channel();
    let dupe = GatedDupe {
        gate: gate.clone(),
        asked: asked_tx,
    }
    .start()
    .recipient();
    (gate, dupe, asked)
}

#[actix::test]
async fn requests_arriving_during_a_dupe_check_are_checked_together_next() {
    let (gate, dupe, mut asked) = gated_dupe();
    let mut r = rig(Vec::new(), 10, Some(dupe));
    let enqueue = |urls: &[&str]| {
        let batch: Vec<_> = urls.iter().map(|u| Context::new(req(u), None)).collect();
        r.accounting.open(batch.len());
        r.sched.send(Enqueue { batch })
    };
    enqueue(&["http://h/a"]).await.unwrap();
    assert_eq!(asked.recv().await.unwrap(), ["http://h/a"]);
    // While that check is out, two more batches arrive: they wait.
    enqueue(&["http://h/b"]).await.unwrap();
    enqueue(&["http://h/c", "http://h/d"]).await.unwrap();
    assert!(asked.try_recv().is_err(), "a second check went out");
    // The first answer sends them as one check.
    gate.add_permits(1);
    assert_eq!(
        asked.recv().await.unwrap(),
        ["http://h/b", "http://h/c", "http://h/d"]
    );
    gate.add_permits(1);
    let mut got: Vec<String> = Vec::new();
    for _ in 0..4 {
        got.push(r.next_dispatch().await.request.url.to_string());
    }
    got.sort();
    assert_eq!(
        got,
        ["http://h/a", "http://h/b", "http://h/c", "http://h/d"]
    );
    assert!(asked.try_recv().is_err(), "asked about more");
    assert_eq!(r.stat(Counter::Enqueued), 4);
}

#[actix::test]
async fn requests_emitted_while_revisits_are_pulled_are_checked_after_them() {
    let (gate, dupe, mut asked) = gated_dupe();
    // 300 revisits: two batches of start requests.
    let n = START_BATCH + 44;
    let known: Vec<_> = (0..n).map(|i| req(&format!("http://h/k{i}"))).collect();
    let mut config = SchedulerConfig::with_concurrency(4);
    config.slots.concurrency = usize::MAX;
    let backend = Box::new(MemoryQueue::default());
    let revisits = (n as u64, Vec::new());
    let mut r = rig_full(known, config, Some(dupe), backend, None, revisits);
    let first = asked.recv().await.unwrap();
    assert_eq!(first.len(), START_BATCH);
    // While the first batch is at the dupe filter, a response links to a
    // page whose revisit is not pulled yet, and to a new page.
    let links: Vec<_> = ["http://h/k299", "http://h/new"]
        .iter()
        .map(|u| Context::new(req(u), None))
        .collect();
    r.accounting.open(links.len());
    r.sched.send(Enqueue { batch: links }).await.unwrap();
    gate.add_permits(1);
    // The rest of the revisits go first, the links after them.
    let second = asked.recv().await.unwrap();
    let want: Vec<String> = (START_BATCH..n)
        .map(|i| format!("http://h/k{i}"))
        .chain(["http://h/k299".into(), "http://h/new".into()])
        .collect();
    assert_eq!(second, want);
    gate.add_permits(1);
    // Revisits are dispatched as they come, not after the last one.
    let d = r.next_dispatch().await;
    assert!(d.request.url.path().starts_with("/k"), "{}", d.request.url);
    // Settling asks the dupe filter too: let every check through.
    gate.add_permits(100);
    r.settle().await;
    assert_eq!(r.stat(Counter::Enqueued), n as u64 + 2);
}

/// A re-crawl's scheduler whose one start request is a sitemap, with
/// pages `held` waiting for it: each fetched at second 1,000,000 of the
/// epoch and listed with a `<lastmod>` then.
fn held_for_a_sitemap(held: &[&str]) -> Rig {
    use crate::recrawl::PageRecord;
    use crate::request::KnownPage;
    let waiting = |path: &&str| {
        let seen = KnownPage {
            digest: 1,
            fetched: Some(1_000_000),
            etag: Some("\"1\"".into()),
            ..KnownPage::default()
        };
        let request = req(&format!("http://h/{path}")).meta(SITEMAP_LASTMOD, "1970-01-01");
        WaitingPage::of(&PageRecord { request, seen }, true)
    };
    let deferred = held.iter().map(waiting).collect();
    let starts = vec![req("http://h/sitemap.xml")];
    let mut config = SchedulerConfig::with_concurrency(8);
    config.slots.concurrency = usize::MAX;
    let backend = Box::new(MemoryQueue::default());
    let revisits = (0, deferred);
    rig_full(starts, config, Some(real_dupe()), backend, None, revisits)
}

/// The sitemap's request for page `p`, with its `<lastmod>`.
fn listed(p: &str, lastmod: &str) -> Context<Cb> {
    let r = req(&format!("http://h/{p}")).meta(SITEMAP_LASTMOD, lastmod);
    Context::new(r, None)
}

#[actix::test]
async fn revisits_waiting_for_their_sitemap_are_met_skipped_or_sent_last() {
    let mut r = held_for_a_sitemap(&["a", "b", "c", "d"]);
    let sitemap = r.next_dispatch().await;
    assert_eq!(path(&sitemap), "/sitemap.xml");
    // The sitemap lists a unchanged since (the 2nd day of 1970 began
    // before the fetch), b changed after it, and a page it did not list
    // before; a link asks for c with no `<lastmod>`.
    let batch = vec![
        listed("a", "1970-01-02T00:00:00Z"),
        listed("b", "1970-01-12"),
        listed("new", "1970-01-12"),
        Context::new(req("http://h/c"), None),
        listed("a", "1970-01-30"),
    ];
    r.accounting.open(batch.len());
    r.sched.send(Enqueue { batch }).await.unwrap();
    let mut sent = Vec::new();
    for _ in 0..3 {
        sent.push(r.next_dispatch().await);
    }
    sent.sort_by_key(|c| path(c).to_string());
    let seen: Vec<_> = sent
        .iter()
        .map(|c| {
            let lastmod = c.request.meta.get(SITEMAP_LASTMOD).and_then(|l| l.as_str());
            (path(c), c.request.known.is_some(), lastmod)
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("/b", true, Some("1970-01-12")),
            ("/c", true, Some("1970-01-01")),
            ("/new", false, Some("1970-01-12")),
        ],
        "b and c sent as their revisits, the new page as it came"
    );
    assert!(r.more_dispatches().await.is_empty(), "d waits for the rest");
    let snap = r.stats.snapshot();
    assert_eq!((snap.get(UNCHANGED), snap.get(LASTMOD_SKIPPED)), (1, 1));
    assert_eq!(r.stat(Counter::DupeFiltered), 1, "the second request for a");
    // Once everything else is done, d goes; then the crawl ends.
    r.complete(&sitemap).await;
    for c in &sent {
        r.complete(c).await;
    }
    let last = r.next_dispatch().await;
    assert_eq!((path(&last), last.request.known.is_some()), ("/d", true));
    assert!(r.engine_events.drain().is_empty(), "no Idle before d");
    r.complete(&last).await;
    expect_event!(r.engine_events.next().await, Event::Idle => ());
    assert_eq!(r.accounting.count(), 0);
    assert_eq!(r.stat(Counter::Enqueued), 5);
}

#[actix::test]
async fn a_stop_keeps_waiting_revisits_for_the_requests_admitted_while_draining() {
    let mut r = held_for_a_sitemap(&["a", "b"]);
    let sitemap = r.next_dispatch().await;
    r.sched.send(Stop).await.unwrap().unwrap();
    // The sitemap's pages come in while the crawl drains: a is still
    // skipped, b still becomes its revisit (queued for a resumed run).
    let batch = vec![
        listed("a", "1970-01-02T00:00:00Z"),
        listed("b", "1970-01-12"),
    ];
    r.accounting.open(batch.len());
    r.sched.send(Enqueue { batch }).await.unwrap();
    r.complete(&sitemap).await;
    r.settle().await;
    let snap = r.stats.snapshot();
    assert_eq!((snap.get(UNCHANGED), snap.get(LASTMOD_SKIPPED)), (1, 1));
    assert_eq!(r.stat(Counter::Unprocessed), 1, "b, never dispatched");
    expect_event!(r.engine_events.next().await, Event::Idle => ());
    assert_eq!(r.accounting.count(), 0);
}

/// A shared queue that takes acknowledgements and never answers (a
/// Redis that hangs), and reports the ids it was given.
struct SilentQueue(mpsc::UnboundedSender<Vec<Uuid>>);

impl Actor for SilentQueue {
    type Context = actix::Context<Self>;
}

impl Handler<Ack> for SilentQueue {
    type Result = ResponseFuture<Result<(), Error>>;

    fn handle(&mut self, msg: Ack, _: &mut Self::Context) -> Self::Result {
        let _ = self.0.send(msg.ids);
        Box::pin(futures_util::future::pending())
    }
}

impl Handler<StartsQueued> for SilentQueue {
    type Result = Result<(), Error>;

    fn handle(&mut self, _: StartsQueued, _: &mut Self::Context) -> Self::Result {
        Ok(())
    }
}

#[actix::test]
async fn acknowledgements_hold_the_crawl_open_until_answered_or_forced() {
    let (acked_tx, mut acked) = mpsc::unbounded_channel();
    let silent = SilentQueue(acked_tx).start();
    let shared = SharedQueue::new(silent.clone().recipient(), silent.recipient());
    let mut r = shared_worker(vec![req("http://h/a")], 10, shared).await;
    let c = r.next_dispatch().await;
    let before = r.accounting.count();
    r.sched.send(Completed { id: c.id }).await.unwrap();
    assert_eq!(acked.recv().await.unwrap(), [c.id]);
    // The queue has not answered: the request's unit is still open.
    assert_eq!(r.accounting.count(), before);
    // A forced stop does not wait for the queue: with the membership
    // closed by the stop, nothing holds the crawl open.
    r.sched.send(ForceStop).await.unwrap();
    assert_eq!(r.accounting.count(), 0);
}

/// A shared queue that answers every acknowledgement, and reports the ids
/// it was given with how many checkpoints had run by then.
struct AnsweringQueue(mpsc::UnboundedSender<(Vec<Uuid>, usize)>, Arc<AtomicUsize>);

impl Actor for AnsweringQueue {
    type Context = actix::Context<Self>;
}

impl Handler<Ack> for AnsweringQueue {
    type Result = Result<(), Error>;

    fn handle(&mut self, msg: Ack, _: &mut Self::Context) -> Self::Result {
        let _ = self.0.send((msg.ids, self.1.load(Ordering::SeqCst)));
        Ok(())
    }
}

impl Handler<StartsQueued> for AnsweringQueue {
    type Result = Result<(), Error>;

    fn handle(&mut self, _: StartsQueued, _: &mut Self::Context) -> Self::Result {
        Ok(())
    }
}

/// Pipelines whose checkpoint fails the first time (an item sink down),
/// counting checkpoints.
struct FlakyPipelines(Arc<AtomicUsize>);

impl Actor for FlakyPipelines {
    type Context = actix::Context<Self>;
}

impl Handler<CheckpointPipelines> for FlakyPipelines {
    type Result = Result<(), Error>;

    fn handle(&mut self, _: CheckpointPipelines, _: &mut Self::Context) -> Self::Result {
        match self.0.fetch_add(1, Ordering::SeqCst) {
            0 => Err(Error::custom(Stage::Pipeline, "sink down")),
            _ => Ok(()),
        }
    }
}

#[actix::test]
async fn a_request_is_acknowledged_only_after_a_checkpoint_of_its_items_succeeded() {
    let checkpoints = Arc::new(AtomicUsize::new(0));
    let (acked_tx, mut acked) = mpsc::unbounded_channel();
    let queue = AnsweringQueue(acked_tx, checkpoints.clone()).start();
    let pipelines = FlakyPipelines(checkpoints.clone()).start();
    let shared = SharedQueue::new(queue.clone().recipient(), queue.recipient())
        .with_checkpoint(pipelines.recipient(), std::time::Duration::from_millis(10));
    let mut r = shared_worker(vec![req("http://h/a")], 10, shared).await;
    let c = r.next_dispatch().await;
    r.sched.send(Completed { id: c.id }).await.unwrap();
    // The first checkpoint failed: no acknowledgement went with it; the
    // batch went again, after a checkpoint that succeeded.
    let (ids, checkpoints_before) = acked.recv().await.unwrap();
    assert_eq!(ids, [c.id]);
    assert_eq!(checkpoints_before, 2);
    assert_eq!(r.stats.snapshot().get("redis/ack_rounds_failed"), 1);
}

/// Pipelines whose checkpoint fails until `recovered` is set (an item
/// sink that stays down), reporting each checkpoint.
struct DownPipelines {
    recovered: Arc<std::sync::atomic::AtomicBool>,
    calls: mpsc::UnboundedSender<()>,
}

impl Actor for DownPipelines {
    type Context = actix::Context<Self>;
}

impl Handler<CheckpointPipelines> for DownPipelines {
    type Result = Result<(), Error>;

    fn handle(&mut self, _: CheckpointPipelines, _: &mut Self::Context) -> Self::Result {
        let _ = self.calls.send(());
        match self.recovered.load(Ordering::SeqCst) {
            true => Ok(()),
            false => Err(Error::custom(Stage::Pipeline, "sink down")),
        }
    }
}

#[actix::test]
async fn acknowledgements_that_keep_failing_hold_the_pops_until_one_goes_through() {
    use super::shared::FAILED_ROUNDS_BEFORE_HOLD;
    let checkpoints = Arc::new(AtomicUsize::new(0));
    let (acked_tx, mut acked) = mpsc::unbounded_channel();
    let queue = AnsweringQueue(acked_tx, checkpoints).start();
    let recovered = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (calls_tx, mut calls) = mpsc::unbounded_channel();
    let pipelines = DownPipelines {
        recovered: recovered.clone(),
        calls: calls_tx,
    }
    .start();
    let shared = SharedQueue::new(queue.clone().recipient(), queue.recipient())
        .with_checkpoint(pipelines.recipient(), std::time::Duration::from_millis(10));
    let starts = ["http://h/a", "http://h/b", "http://h/c"].map(req);
    let mut r = shared_worker(starts, 1, shared).await;
    let a = r.next_dispatch().await;
    r.complete(&a).await;
    // While the rounds fail, the worker still takes requests...
    let b = r.next_dispatch().await;
    for _ in 0..FAILED_ROUNDS_BEFORE_HOLD {
        calls.recv().await.unwrap();
    }
    r.settle().await;
    assert_eq!(r.stats.snapshot().get("redis/ack_holds"), 1);
    // ... until they have failed too often: then none.
    r.complete(&b).await;
    assert!(r.more_dispatches().await.is_empty(), "popped while held");
    // The sink is back: the next round acknowledges both, and popping
    // goes on.
    recovered.store(true, Ordering::SeqCst);
    let mut ids = Vec::new();
    while ids.len() < 2 {
        ids.extend(acked.recv().await.unwrap().0);
    }
    assert_eq!(ids, [a.id, b.id]);
    let c = r.next_dispatch().await;
    assert_eq!(c.request.url.as_str(), "http://h/c");
    let rounds = r.stats.snapshot().get("redis/ack_rounds_failed");
    assert!(rounds >= u64::from(FAILED_ROUNDS_BEFORE_HOLD), "{rounds}");
    assert_eq!(r.stats.snapshot().get("redis/ack_holds"), 1);
}

#[actix::test]
async fn dont_filter_requests_skip_the_dupe_filter() {
    let (dupe, mut asked) = fake_dupe(&["http://h/a"]);
    let starts = vec![
        req("http://h/a"),
        req("http://h/a").dont_filter(),
        req("http://h/b"),
        req("http://h/c").dont_filter(),
    ];
    let mut r = rig(starts, 10, Some(dupe));
    let mut got = HashSet::new();
    for _ in 0..3 {
        let c = r.next_dispatch().await;
        got.insert((c.request.url.to_string(), c.request.dont_filter));
    }
    let want = HashSet::from([
        ("http://h/a".to_string(), true),
        ("http://h/b".to_string(), false),
        ("http://h/c".to_string(), true),
    ]);
    assert_eq!(got, want);
    assert!(r.more_dispatches().await.is_empty());
    assert_eq!(asked.recv().await.unwrap(), ["http://h/a", "http://h/b"]);
    assert!(asked.try_recv().is_err(), "asked about more");
    assert_eq!(r.stat(Counter::DupeFiltered), 1);
    assert_eq!(r.stat(Counter::Enqueued), 3);
    assert_eq!(r.accounting.count(), 3);
}

#[actix::test]
async fn duplicates_are_counted_closed_and_never_queued() {
    let starts = vec![
        req("http://h/a"),
        req("http://h/b"),
        req("http://h/a#fragment"),
        req("http://h/b"),
    ];
    let mut r = rig(starts, 10, Some(real_dupe()));
    let mut got = vec![r.next_dispatch().await, r.next_dispatch().await];
    assert!(r.more_dispatches().await.is_empty());
    assert_eq!(r.stat(Counter::DupeFiltered), 2);

    // A parse emits a seen URL and a new one (opened first, as the
    // parser does).
    let parent = got[0].id;
    r.accounting.open(2);
    let batch = vec![
        Context::new(req("http://h/a"), Some(parent)),
        Context::new(req("http://h/c"), Some(parent)),
    ];
    r.sched.send(Enqueue { batch }).await.unwrap();
    got.push(r.next_dispatch().await);
    assert!(r.more_dispatches().await.is_empty());
    let mut paths: Vec<_> = got.iter().map(|c| path(c).to_string()).collect();
    paths.sort();
    assert_eq!(paths, ["/a", "/b", "/c"]);
    assert_eq!(r.stat(Counter::DupeFiltered), 3);
    assert_eq!(r.stat(Counter::Enqueued), 3);
    assert_eq!(r.stat(Counter::Queued), 0);
    // Only the three in flight are still open.
    assert_eq!(r.accounting.count(), 3);
}

#[actix::test]
async fn pause_holds_dispatch_until_resume() {
    let mut r = rig(pages(3), 1, None);
    let first = r.next_dispatch().await;
    r.sched.send(Pause).await.unwrap().unwrap();
    r.complete(&first).await;
    // Work arriving while paused is queued, not dispatched.
    r.accounting.open(1);
    let batch = vec![Context::new(req("http://h/late"), Some(first.id))];
    r.sched.send(Enqueue { batch }).await.unwrap();
    assert!(r.more_dispatches().await.is_empty());
    assert_eq!(r.stat(Counter::Dequeued), 1);
    assert_eq!(r.stat(Counter::InFlight), 0);
    assert_eq!(r.stat(Counter::Queued), 3);
    assert_eq!(r.accounting.count(), 3);

    r.sched.send(Resume).await.unwrap().unwrap();
    let next = r.next_dispatch().await;
    assert_eq!(path(&next), "/p1");
    assert!(r.more_dispatches().await.is_empty());
    assert_eq!(r.stat(Counter::Dequeued), 2);
}

#[actix::test]
async fn nothing_is_dispatched_after_pause_returns() {
    let mut r = rig(pages(3), 1, None);
    let first = r.next_dispatch().await;
    // The completion frees a slot, so the scheduler asks the queue for
    // a request; Pause is handled before the queue answers.
    r.sched.do_send(Completed { id: first.id });
    r.sched.send(Pause).await.unwrap().unwrap();
    let late = r.more_dispatches().await;
    assert!(late.is_empty(), "dispatched while paused: {late:?}");
    assert_eq!(r.stat(Counter::Dequeued), 1);
}

#[actix::test]
async fn stop_drains_the_queue_into_unprocessed() {
    let mut r = rig(pages(4), 1, None);
    let first = r.next_dispatch().await;
    r.sched.send(Stop).await.unwrap().unwrap();
    r.settle().await;
    assert_eq!(r.stat(Counter::Unprocessed), 3);
    assert_eq!(r.stat(Counter::Queued), 0);
    assert_eq!(r.accounting.count(), 1);

    // Control is refused once stopping; a second stop is harmless.
    let err = r.sched.send(Pause).await.unwrap().unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::IllegalState(_)), "{err}");
    let err = r.sched.send(Resume).await.unwrap().unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::IllegalState(_)), "{err}");
    r.sched.send(Stop).await.unwrap().unwrap();

    // Requests emitted by the request in flight are accepted but never
    // dispatched.
    r.accounting.open(1);
    let batch = vec![Context::new(req("http://h/child"), Some(first.id))];
    r.sched.send(Enqueue { batch }).await.unwrap();
    assert_eq!(r.stat(Counter::Unprocessed), 4);
    assert_eq!(r.accounting.count(), 1);

    r.complete(&first).await;
    expect_event!(r.engine_events.next().await, Event::Idle => ());
    assert!(r.more_dispatches().await.is_empty());
    assert!(r.engine_events.drain().is_empty());
    assert_eq!(r.accounting.count(), 0);
    assert_eq!(r.stat(Counter::Enqueued), 5);
    assert_eq!(r.stat(Counter::Dequeued), 1);
    assert_eq!(
        r.stat(Counter::Enqueued),
        r.stat(Counter::Dequeued) + r.stat(Counter::Unprocessed)
    );
}

#[actix::test]
async fn stop_closes_a_start_iterator_that_is_not_exhausted() {
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let starts = (0..1000).map(move |i| {
        counter.fetch_add(1, Ordering::Relaxed);
        req(&format!("http://h/s{i}"))
    });
    let mut r = rig(starts, 1, None);
    let first = r.next_dispatch().await;
    r.sched.send(Stop).await.unwrap().unwrap();
    r.settle().await;
    // Pulled lazily: one batch only, and never again after the stop.
    assert_eq!(pulled.load(Ordering::Relaxed), START_BATCH);
    assert_eq!(r.stat(Counter::Unprocessed), START_BATCH as u64 - 1);
    assert_eq!(r.accounting.count(), 1);
    r.complete(&first).await;
    expect_event!(r.engine_events.next().await, Event::Idle => ());
    assert_eq!(r.accounting.count(), 0);
    assert_eq!(pulled.load(Ordering::Relaxed), START_BATCH);
}

#[actix::test]
async fn requeue_skips_the_dupe_check_and_frees_the_slots() {
    let mut r = rig(pages(3), 2, Some(real_dupe()));
    let a = r.next_dispatch().await;
    let b = r.next_dispatch().await;
    assert!(r.more_dispatches().await.is_empty());

    // The pool sends them back as dispatched (a downloader crashed).
    let batch = vec![a.clone(), b.clone()];
    r.sched.send(Requeue { batch, delay: None }).await.unwrap();
    // No Completed was sent, yet two slots are free again.
    let c = r.next_dispatch().await;
    let a2 = r.next_dispatch().await;
    assert_eq!(path(&c), "/p2");
    assert_eq!((a2.id, a2.attempt), (a.id, 2));
    assert!(r.more_dispatches().await.is_empty());
    assert_eq!(r.stat(Counter::DupeFiltered), 0);
    // 3 admitted, then the 2 requeued ones enqueued again.
    assert_eq!(r.stat(Counter::Enqueued), 5);
    assert_eq!(r.stat(Counter::Queued), 1);
    assert_eq!(r.accounting.count(), 3);

    r.complete(&c).await;
    let b2 = r.next_dispatch().await;
    assert_eq!((b2.id, b2.attempt), (b.id, 2));
    r.complete(&a2).await;
    r.complete(&b2).await;
    expect_event!(r.engine_events.next().await, Event::Idle => ());
    assert_eq!(r.accounting.count(), 0);
    assert_eq!(r.stat(Counter::Dequeued), 5);
}

#[actix::test]
async fn requeue_while_stopping_counts_unprocessed() {
    let mut r = rig(pages(2), 1, None);
    let first = r.next_dispatch().await;
    r.sched.send(Stop).await.unwrap().unwrap();
    r.sched
        .send(Requeue {
            batch: vec![first],
            delay: None,
        })
        .await
        .unwrap();
    expect_event!(r.engine_events.next().await, Event::Idle => ());
    assert!(r.more_dispatches().await.is_empty());
    assert_eq!(r.stat(Counter::Unprocessed), 2);
    assert_eq!(r.stat(Counter::InFlight), 0);
    assert_eq!(r.accounting.count(), 0);
}

#[actix::test]
async fn no_start_requests_idles_at_once() {
    let mut r = rig(Vec::new(), 4, None);
    expect_event!(r.engine_events.next().await, Event::Idle => ());
    assert!(r.more_dispatches().await.is_empty());
    assert!(r.engine_events.drain().is_empty());
    assert_eq!(r.accounting.count(), 0);
}

#[actix::test]
async fn a_panicking_start_iterator_counts_an_exception_and_idles() {
    let mut n = 0;
    let starts = std::iter::from_fn(move || {
        n += 1;
        assert!(n < 3, "start_requests exploded");
        Some(req(&format!("http://h/s{n}")))
    });
    let mut r = rig(starts, 4, None);
    expect_event!(r.engine_events.next().await, Event::Idle => ());
    assert!(r.more_dispatches().await.is_empty());
    assert_eq!(r.stat(Counter::SpiderExceptions), 1);
    assert_eq!(r.accounting.count(), 0);
}

/// A queue back-end whose first push fails (a brief outage), then
/// behaves like the memory queue.
struct FlakyQueue {
    inner: MemoryQueue<Cb>,
    fail_next_push: bool,
}

impl QueueBackend<Cb> for FlakyQueue {
    fn push(&mut self, batch: Vec<Context<Cb>>) -> BackendFuture<()> {
        if std::mem::take(&mut self.fail_next_push) {
            let e = Error::new(Stage::Schedule, ErrorKind::Backend("down".into()));
            return Box::pin(ready(Err(e)));
        }
        self.inner.push(batch)
    }
    fn pop(&mut self, max: usize, allowance: &SlotAllowance) -> BackendFuture<Vec<Context<Cb>>> {
        self.inner.pop(max, allowance)
    }
    fn drain(&mut self) -> BackendFuture<usize> {
        self.inner.drain()
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
}

#[actix::test]
async fn a_lost_push_does_not_wedge_the_scheduler() {
    let backend = Box::new(FlakyQueue {
        inner: MemoryQueue::default(),
        fail_next_push: true,
    });
    // The first START_BATCH start requests are lost with the push; the
    // rest must still be pulled, dispatched and finished.
    let rest = 10;
    let mut r = rig_with_queue(pages(START_BATCH + rest), 1, None, backend);
    for _ in 0..rest {
        let c = r.next_dispatch().await;
        r.complete(&c).await;
    }
    expect_event!(r.engine_events.next().await, Event::Idle => ());
    assert_eq!(r.stat(Counter::Queued), 0);
    assert_eq!(r.accounting.count(), 0);
}

#[actix::test]
async fn a_release_during_an_outstanding_pop_is_not_lost() {
    // One host that takes one request at a time, plenty of global room.
    let mut config = SchedulerConfig::with_concurrency(4);
    config.slots.concurrency = 1;
    let mut r = rig_with_config(pages(3), config, None, Box::new(MemoryQueue::default()));
    let first = r.next_dispatch().await;
    assert!(r.more_dispatches().await.is_empty(), "the host is full");
    // The completion frees a global slot, so the scheduler pops while
    // the host is still full (that pop comes back empty); the host's
    // release lands before the queue answers. It must not be lost.
    r.sched.do_send(Completed { id: first.id });
    r.sched.do_send(Released {
        report: SlotReport {
            slot: "h".into(),
            ..SlotReport::default()
        },
    });
    let second = r.next_dispatch().await;
    assert_eq!(path(&second), "/p1");
}

/// A queue whose pops take `slow` to answer (a remote queue far away).
struct SlowQueue {
    inner: MemoryQueue<Cb>,
    slow: Duration,
}

impl QueueBackend<Cb> for SlowQueue {
    fn push(&mut self, batch: Vec<Context<Cb>>) -> BackendFuture<()> {
        self.inner.push(batch)
    }
    fn pop(&mut self, max: usize, allowance: &SlotAllowance) -> BackendFuture<Vec<Context<Cb>>> {
        let popped = self.inner.pop(max, allowance);
        let slow = self.slow;
        Box::pin(async move {
            tokio::time::sleep(slow).await;
            popped.await
        })
    }
    fn drain(&mut self) -> BackendFuture<usize> {
        self.inner.drain()
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
}

#[actix::test]
async fn a_host_that_became_ready_while_a_pop_was_out_is_not_forgotten() {
    // One host, 50 ms between starts, and a queue slower than that. The
    // first page's links arrive while the host rests: the pop asked then
    // answers empty after the rest is over. With nothing in flight, no
    // release or completion will come: the Scheduler must pop again by
    // itself, not stall for ever.
    let mut config = SchedulerConfig::with_concurrency(4);
    config.slots.concurrency = 1;
    config.slots.delay = Duration::from_millis(50);
    let backend = Box::new(SlowQueue {
        inner: MemoryQueue::default(),
        slow: Duration::from_millis(200),
    });
    let mut r = rig_with_config(pages(1), config, None, backend);
    let release = || Released {
        report: SlotReport {
            slot: "h".into(),
            ..SlotReport::default()
        },
    };
    let first = r.next_dispatch().await;
    // As a downloader and the parser do: the slot is released when the
    // download ends; the page's links are opened before it completes.
    r.sched.do_send(release());
    r.accounting.open(2);
    r.complete(&first).await;
    let batch = ["http://h/a", "http://h/b"]
        .iter()
        .map(|u| Context::new(req(u), Some(first.id)))
        .collect();
    r.sched.send(Enqueue { batch }).await.unwrap();
    for want in ["/a", "/b"] {
        let c = r.next_dispatch().await;
        assert_eq!(path(&c), want);
        r.sched.do_send(release());
        r.complete(&c).await;
    }
    expect_event!(r.engine_events.next().await, Event::Idle => ());
}

/// A lazy source of `n` requests (`http://h/lazy{i}`) emitted by the
/// request `parent`, counting how many were made; opened as the Parser
/// opens it.
fn source(r: &Rig, parent: Uuid, n: usize) -> (crate::spider::RequestSource<Cb>, Arc<AtomicUsize>) {
    let made = Arc::new(AtomicUsize::new(0));
    let counter = made.clone();
    let iter = (0..n).map(move |i| {
        counter.fetch_add(1, Ordering::Relaxed);
        req(&format!("http://h/lazy{i}"))
    });
    r.accounting.open(1);
    let origin = crate::spider::Origin {
        parent: Some(parent),
        depth: 1,
        depth_priority: 0,
    };
    let source = crate::spider::RequestSource {
        origin,
        iter: Box::new(iter),
    };
    (source, made)
}

#[actix::test]
async fn a_lazy_source_is_pulled_only_while_the_queue_is_short() {
    let mut r = rig(Vec::new(), 2, Some(real_dupe()));
    // 600: two full batches and a short one.
    let (src, made) = source(&r, Uuid::new_v4(), 600);
    let sources = vec![src];
    r.sched.send(EnqueueSources { sources }).await.unwrap();
    let watermark = 2 * 2;
    let mut fetched = 0;
    loop {
        let dispatched = r.more_dispatches().await;
        // Never more than the watermark plus one batch made and queued.
        let queued = r.stat(Counter::Queued) as usize;
        assert!(queued < watermark + START_BATCH, "{queued} queued");
        assert!(made.load(Ordering::Relaxed) <= fetched + watermark + START_BATCH);
        if dispatched.is_empty() {
            break;
        }
        for e in dispatched {
            let c = expect_event!(e, Event::Dispatch(c) => c);
            assert_eq!(c.request.depth, 1);
            fetched += 1;
            r.complete(&c).await;
        }
        if fetched == 2 {
            // The first batch only, until the queue runs short.
            assert_eq!(made.load(Ordering::Relaxed), START_BATCH);
        }
    }
    assert_eq!(fetched, 600);
    assert_eq!(made.load(Ordering::Relaxed), 600);
    expect_event!(r.engine_events.next().await, Event::Idle => ());
    assert_eq!(r.accounting.count(), 0);
    assert_eq!(r.stat(Counter::Enqueued), 600);
    assert_eq!(r.stat(Counter::Dequeued), 600);
}

#[actix::test]
async fn a_panicking_source_counts_an_exception_and_ends() {
    let mut r = rig(Vec::new(), 4, None);
    let mut n = 0;
    let iter = std::iter::from_fn(move || {
        n += 1;
        assert!(n < 3, "the source exploded");
        Some(req(&format!("http://h/s{n}")))
    });
    r.accounting.open(1);
    let source = crate::spider::RequestSource {
        origin: crate::spider::Origin::default(),
        iter: Box::new(iter),
    };
    let sources = vec![source];
    r.sched.send(EnqueueSources { sources }).await.unwrap();
    expect_event!(r.engine_events.next().await, Event::Idle => ());
    assert!(r.more_dispatches().await.is_empty());
    assert_eq!(r.stat(Counter::SpiderExceptions), 1);
    assert_eq!(r.accounting.count(), 0);
}

#[actix::test]
async fn stop_drops_a_source_unpulled() {
    let mut r = rig(Vec::new(), 1, None);
    let (src, made) = source(&r, Uuid::new_v4(), 1000);
    let sources = vec![src];
    r.sched.send(EnqueueSources { sources }).await.unwrap();
    let first = r.next_dispatch().await;
    r.sched.send(Stop).await.unwrap().unwrap();
    r.settle().await;
    assert_eq!(made.load(Ordering::Relaxed), START_BATCH);
    assert_eq!(r.stat(Counter::Unprocessed), START_BATCH as u64 - 1);
    r.complete(&first).await;
    expect_event!(r.engine_events.next().await, Event::Idle => ());
    assert_eq!(r.accounting.count(), 0);
    assert_eq!(made.load(Ordering::Relaxed), START_BATCH);
    assert_eq!(
        r.stat(Counter::Enqueued),
        r.stat(Counter::Dequeued) + r.stat(Counter::Unprocessed)
    );
    // A source arriving while stopping is dropped at once.
    let (src, made) = source(&r, Uuid::new_v4(), 10);
    let sources = vec![src];
    r.sched.send(EnqueueSources { sources }).await.unwrap();
    assert_eq!(made.load(Ordering::Relaxed), 0);
    assert_eq!(r.accounting.count(), 0);
}

/// A JobStore that answers every write and reports each delta: the URLs
/// accepted and the ids completed.
struct FakeStore(mpsc::UnboundedSender<(Vec<String>, Vec<Uuid>)>);

impl Actor for FakeStore {
    type Context = actix::Context<Self>;
}

impl Handler<WriteCheckpoint<Cb>> for FakeStore {
    type Result = Result<CheckpointInfo, Error>;

    fn handle(&mut self, msg: WriteCheckpoint<Cb>, _: &mut Self::Context) -> Self::Result {
        let added = msg.delta.added.iter();
        let added = added.map(|(c, _)| c.request.url.path().to_string());
        let _ = self.0.send((added.collect(), msg.delta.done.clone()));
        Ok(CheckpointInfo {
            sequence: 0,
            pending: 0,
            completed: 0,
            log_bytes: 0,
            compacted: false,
        })
    }
}

#[actix::test]
async fn a_request_whose_source_is_pulled_is_recorded_done_only_after_it_ran_out() {
    let (engine, _engine_events) = Recorder::<Cb>::spawn();
    let (pool, mut dispatched) = Recorder::<Cb>::spawn();
    let accounting = Arc::new(Accounting::new(engine.clone().recipient()));
    let stats = Arc::new(Stats::default());
    let backend = Box::new(MemoryQueue::default());
    let queue = CacheQueue::new(backend, accounting.clone(), stats.clone(), log()).start();
    let outbox = SchedulerOutbox {
        push: queue.clone().recipient(),
        pop: queue.clone().recipient(),
        drain: queue.clone().recipient(),
        dupe: Some(real_dupe()),
        pool: pool.clone().recipient(),
    };
    let mut config = SchedulerConfig::with_concurrency(1);
    config.slots.concurrency = usize::MAX;
    let (tx, mut deltas) = mpsc::unbounded_channel();
    let (events, _) = tokio::sync::broadcast::channel(16);
    let sitemap = req("http://h/sitemap.xml");
    let starts: StartRequests<Cb> = Box::new(vec![sitemap].into_iter());
    let sched = Scheduler::new(outbox, starts, config, accounting.clone(), stats, log())
        .with_job(
            FakeStore(tx).start().recipient(),
            None,
            events,
            CheckpointPolicy::default(),
            0,
        )
        .start();
    let parent = expect_event!(dispatched.next().await, Event::Dispatch(c) => c);
    // Its callback gave a source of 300 pages, then it completed.
    let made = Arc::new(AtomicUsize::new(0));
    let counter = made.clone();
    let iter = (0..300).map(move |i| {
        counter.fetch_add(1, Ordering::Relaxed);
        req(&format!("http://h/lazy{i}"))
    });
    accounting.open(1);
    let origin = crate::spider::Origin {
        parent: Some(parent.id),
        depth: 1,
        depth_priority: 0,
    };
    let sources = vec![crate::spider::RequestSource {
        origin,
        iter: Box::new(iter),
    }];
    sched.send(EnqueueSources { sources }).await.unwrap();
    sched.send(Completed { id: parent.id }).await.unwrap();
    let checkpoint = || {
        let sched = sched.clone();
        async move { sched.send(Checkpoint).await.unwrap().unwrap() }
    };
    let index = |c: &Context<Cb>| -> usize { c.request.url.path()[5..].parse().unwrap() };
    // A page dispatched: the first batch is accepted.
    let mut next = expect_event!(dispatched.next().await, Event::Dispatch(c) => c);
    checkpoint().await;
    let (added, done) = deltas.recv().await.unwrap();
    assert_eq!(made.load(Ordering::Relaxed), START_BATCH);
    assert_eq!(added.len(), 1 + START_BATCH);
    // The sitemap completed, but its source is not through: not done.
    assert!(done.is_empty(), "{done:?}");
    // Fetch pages until one of the last batch is dispatched (accepted).
    let mut completed = 0;
    while index(&next) < START_BATCH {
        sched.send(Completed { id: next.id }).await.unwrap();
        completed += 1;
        next = expect_event!(dispatched.next().await, Event::Dispatch(c) => c);
    }
    assert_eq!(made.load(Ordering::Relaxed), 300);
    checkpoint().await;
    let (added, done) = deltas.recv().await.unwrap();
    assert_eq!(added.len(), 300 - START_BATCH);
    // Now it is done, with the pages completed meanwhile.
    assert!(done.contains(&parent.id), "{done:?}");
    assert_eq!(done.len(), completed + 1);
}

#[actix::test]
async fn a_distributed_worker_drains_a_source_as_it_comes() {
    let (acked_tx, _acked) = mpsc::unbounded_channel();
    let silent = SilentQueue(acked_tx).start();
    let shared = SharedQueue::new(silent.clone().recipient(), silent.recipient());
    let r = shared_worker(Vec::new(), 2, shared).await;
    let (src, made) = source(&r, Uuid::new_v4(), 600);
    let sources = vec![src];
    r.sched.send(EnqueueSources { sources }).await.unwrap();
    // All of it at once, whatever the queue holds: a shared queue
    // acknowledges the request that gave it as soon as it completes.
    assert_eq!(made.load(Ordering::Relaxed), 600);
    r.settle().await;
    assert_eq!(r.stat(Counter::Enqueued), 600);
}
