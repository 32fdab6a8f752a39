//! Where accepted requests wait: the queue back-end behind the CacheQueue.
//!
//! The CacheQueue actor owns one [`QueueBackend`]. Requests are kept per
//! download slot (host) so that a pop can skip hosts that may not take more
//! requests now (busy, delayed, backing off) and hand out the best requests
//! of the others: one slow host never starves the rest. The default,
//! [`MemoryQueue`], is a priority queue per slot (higher priority first,
//! first in first out within a priority) plus a heap of slot heads, so a pop
//! follows the global priority order across the hosts it may serve.
//!
//! A bounded [`MemoryQueue`] (the crawl's default, `frontier_memory`
//! requests) keeps at most that many requests in memory; the rest wait on
//! disk (see [`SpillDir`]), one first-in-first-out run of segment files
//! per priority. What comes back from disk is read best priority first,
//! in the order it was written, and joins its host's queue in memory, so
//! the per-host pop works as before:
//!
//! - a request goes to disk when memory is full, or when requests of its
//!   priority already wait there (it must come out after them);
//! - a pop first brings requests back while memory is below three
//!   quarters of the bound (at most 4,096 at a time), and brings the best
//!   on disk in at once when they outrank everything in memory;
//! - a pop that comes back short while requests wait on disk (the hosts in
//!   memory may take no more now) brings more in, up to twice the bound.
//!
//! The spill is per priority, not per host: when the requests in memory,
//! up to twice the bound, all belong to hosts that may take no more (a
//! host with a long crawl delay, say), the other hosts' requests behind
//! them on disk wait until those hosts take theirs. Raise the bound for a
//! crawl that mixes one very slow host with many fast ones.
//!
//! Back-ends answer with futures so that a networked one
//! (`RedisQueue`, see [`distributed`](crate::distributed)) plugs in behind the same
//! trait; the memory one does its work at once and returns a ready future.

mod compact;
mod spill;

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use futures_util::future::{ready, LocalBoxFuture};
use uuid::Uuid;

use crate::context::Context;
use crate::error::Error;
use crate::request::{slot_of, Callback};
use compact::Queued;
use spill::Spill;

pub(crate) use spill::remove_segments;
pub use spill::SpillDir;

/// At most this many requests come back from disk in one pop.
const REFILL_CHUNK: usize = 4096;

/// A back-end operation's result, resolved on the CacheQueue's arbiter.
pub type BackendFuture<T> = LocalBoxFuture<'static, Result<T, Error>>;

/// How many requests each slot may take in one pop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotAllowance {
    /// For slots not listed.
    pub default: usize,
    /// Per slot, where it differs from `default` (0: skip that host now).
    pub per_slot: HashMap<String, usize>,
}

impl SlotAllowance {
    /// Any slot may take up to `n`.
    pub fn uniform(n: usize) -> Self {
        SlotAllowance {
            default: n,
            per_slot: HashMap::new(),
        }
    }

    /// How many `slot` may take.
    pub fn of(&self, slot: &str) -> usize {
        self.per_slot.get(slot).copied().unwrap_or(self.default)
    }
}

/// A store of requests waiting for download.
pub trait QueueBackend<C>: Send + 'static {
    /// Adds requests.
    fn push(&mut self, batch: Vec<Context<C>>) -> BackendFuture<()>;
    /// Takes up to `max` requests, best first, no more per slot than
    /// `allowance` says.
    fn pop(&mut self, max: usize, allowance: &SlotAllowance) -> BackendFuture<Vec<Context<C>>>;
    /// Drops every waiting request (the crawl is stopping), answering how
    /// many there were.
    fn drain(&mut self) -> BackendFuture<usize>;
    /// How many requests wait.
    fn len(&self) -> usize;
    /// Whether none wait.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether other processes share this queue (a distributed crawl): a
    /// request pushed leaves this worker's hands, a request popped is
    /// leased until acknowledged, and `len` counts every worker's
    /// requests. Default: no.
    fn shared(&self) -> bool {
        false
    }
    /// The work of these popped requests is done and their children are
    /// pushed: a shared queue deletes their leases. Default: nothing to do.
    fn ack(&mut self, ids: Vec<Uuid>) -> BackendFuture<()> {
        let _ = ids;
        Box::pin(ready(Ok(())))
    }
    /// How long to wait before calling `ack` with no ids, when the queue
    /// holds work only an acknowledgement settles and none may come (a
    /// shared queue's leases whose retry could not be pushed go back to
    /// the queue with the next `ack`); `None` when nothing waits.
    /// Default: `None`.
    fn settle_after(&self) -> Option<Duration> {
        None
    }
    /// Every start request (`pulled` of them) is queued. Default: nothing
    /// to do.
    fn starts_done(&mut self, pulled: u64) -> BackendFuture<()> {
        let _ = pulled;
        Box::pin(ready(Ok(())))
    }
    /// The crawl is over for this process: a shared queue gives back what
    /// it still holds. Default: nothing to do.
    fn close(&mut self) -> BackendFuture<()> {
        Box::pin(ready(Ok(())))
    }
    /// What a queue that spills to disk did so far, for the stats; `None`
    /// for one that never spills. Default: `None`.
    fn spill_report(&self) -> Option<SpillReport> {
        None
    }
}

/// A spilling queue's totals (see [`QueueBackend::spill_report`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpillReport {
    /// Requests on disk now.
    pub on_disk: u64,
    /// Bytes of segment files on disk now.
    pub bytes: u64,
    /// Requests written to disk over the queue's life.
    pub written: u64,
    /// Requests that could not be read back (counted lost).
    pub lost: u64,
    /// Requests that could not be written (kept in memory instead).
    pub write_errors: u64,
}

/// The priority queue per slot, in memory up to a bound and on disk past
/// it (see the module docs).
pub struct MemoryQueue<C> {
    /// Each slot's requests: a max-heap on (priority, arrival reversed).
    slots: HashMap<String, BinaryHeap<Entry<C>>>,
    /// One entry per slot for its best request (possibly stale: an entry
    /// whose `seq` is no longer its slot's top is skipped).
    heads: BinaryHeap<Head>,
    /// Arrival counter: keeps equal priorities first in, first out.
    seq: u64,
    /// Requests in memory, over all slots.
    len: usize,
    /// Requests kept in memory before new ones go to disk.
    bound: usize,
    /// Where they go.
    spill_dir: SpillDir,
    /// The disk part, opened at the first spill.
    spill: Option<Spill<C>>,
    /// Requests that could not be written to disk (kept in memory).
    write_errors: u64,
}

/// Unbounded: every request stays in memory.
impl<C> Default for MemoryQueue<C> {
    fn default() -> Self {
        MemoryQueue {
            slots: HashMap::new(),
            heads: BinaryHeap::new(),
            seq: 0,
            len: 0,
            bound: usize::MAX,
            spill_dir: SpillDir::Inside(std::env::temp_dir()),
            spill: None,
            write_errors: 0,
        }
    }
}

struct Entry<C> {
    priority: i32,
    seq: u64,
    /// Boxed (the heap moves its entries up and down at every push and
    /// pop), and a plain GET in its compact form (`compact`): a large
    /// frontier is mostly those.
    ctx: Queued<C>,
}

/// A slot's best request, for the heap of heads.
#[derive(PartialEq, Eq)]
struct Head {
    priority: i32,
    seq: u64,
    slot: String,
}

fn rank(a: (i32, u64), b: (i32, u64)) -> Ordering {
    a.0.cmp(&b.0).then_with(|| b.1.cmp(&a.1))
}

impl<C> PartialEq for Entry<C> {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}
impl<C> Eq for Entry<C> {}
impl<C> PartialOrd for Entry<C> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<C> Ord for Entry<C> {
    fn cmp(&self, other: &Self) -> Ordering {
        rank((self.priority, self.seq), (other.priority, other.seq))
    }
}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        rank((self.priority, self.seq), (other.priority, other.seq))
    }
}

impl<C: Callback> MemoryQueue<C> {
    /// A queue that keeps at most `bound` requests in memory (at least 1)
    /// and spills the rest to `dir`.
    pub fn bounded(bound: usize, dir: SpillDir) -> Self {
        MemoryQueue {
            bound: bound.max(1),
            spill_dir: dir,
            ..MemoryQueue::default()
        }
    }

    /// Adds requests now (the synchronous core of `push`).
    pub fn push_now(&mut self, batch: Vec<Context<C>>) {
        for ctx in batch {
            if self.goes_to_disk(ctx.request.priority) {
                match self.write_to_disk(&ctx) {
                    Ok(()) => continue,
                    // A full or failing disk: memory takes it, counted.
                    Err(_) => self.write_errors += 1,
                }
            }
            self.push_memory(ctx);
        }
    }

    /// Requests on disk.
    fn on_disk(&self) -> usize {
        self.spill.as_ref().map_or(0, Spill::len)
    }

    fn goes_to_disk(&self, priority: i32) -> bool {
        match &self.spill {
            Some(s) if s.holds(priority) => true,
            _ => self.len >= self.bound,
        }
    }

    fn write_to_disk(&mut self, ctx: &Context<C>) -> std::io::Result<()> {
        if self.spill.is_none() {
            self.spill = Some(Spill::open(&self.spill_dir)?);
        }
        self.spill.as_mut().expect("opened above").write(ctx)
    }

    /// Brings up to `n` requests back from disk into memory.
    fn load(&mut self, n: usize) {
        let Some(spill) = self.spill.as_mut() else {
            return;
        };
        for ctx in spill.read(n) {
            self.push_memory(ctx);
        }
    }

    /// The best priority in memory (dropping stale heads on the way).
    fn best_in_memory(&mut self) -> Option<i32> {
        loop {
            let head = self.heads.peek()?;
            let top = self.slots.get(&head.slot).and_then(|h| h.peek());
            if top.map(|t| t.seq) == Some(head.seq) {
                return Some(head.priority);
            }
            self.heads.pop();
        }
    }

    /// Before a pop: memory is topped up from disk while it is below three
    /// quarters of the bound.
    fn top_up(&mut self) {
        let low = self.bound - self.bound / 4;
        if self.on_disk() > 0 && self.len < low {
            self.load((self.bound - self.len).min(REFILL_CHUNK));
        }
    }

    /// Adds one request to memory.
    fn push_memory(&mut self, ctx: Context<C>) {
        self.seq += 1;
        self.len += 1;
        let entry = Entry {
            priority: ctx.request.priority,
            seq: self.seq,
            ctx: Queued::new(ctx),
        };
        let slot = slot_of(entry.ctx.url());
        // Look up by `&str`; a host's key is copied once, when it first
        // has work.
        if !self.slots.contains_key(slot) {
            self.slots.insert(slot.to_string(), BinaryHeap::new());
        }
        let heap = self.slots.get_mut(slot).expect("inserted above");
        let new_top = heap
            .peek()
            .is_none_or(|top| entry.cmp(top) == Ordering::Greater);
        if new_top {
            self.heads.push(Head {
                priority: entry.priority,
                seq: entry.seq,
                slot: slot.to_string(),
            });
        }
        heap.push(entry);
    }

    /// Takes up to `max` requests now (the synchronous core of `pop`).
    ///
    /// A request leaves memory only while nothing on disk outranks it
    /// (requests on disk of its own priority are newer), so the order is
    /// the one an unbounded queue gives.
    pub fn pop_now(&mut self, max: usize, allowance: &SlotAllowance) -> Vec<Context<C>> {
        self.top_up();
        let mut taken: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::with_capacity(max.min(self.len));
        // Bounded: each round brings requests in or stops.
        for _ in 0..8 {
            let floor = self.spill.as_ref().and_then(Spill::best);
            self.pop_memory(&mut out, max, allowance, &mut taken, floor);
            if out.len() >= max || self.on_disk() == 0 {
                break;
            }
            let wanted = max - out.len();
            let outranked = floor.is_some_and(|f| self.best_in_memory().is_none_or(|m| m < f));
            let room = self.bound.saturating_mul(2).saturating_sub(self.len);
            if outranked {
                // The best requests are on disk.
                self.load(wanted);
            } else if room > 0 {
                // The hosts in memory may take no more now: bring others
                // in, up to twice the bound.
                self.load((wanted * 4).max(256).min(room));
            } else {
                break;
            }
        }
        out
    }

    /// Moves up to `max` requests from memory to `out`, no slot past its
    /// allowance (`taken` counts what each slot got in this pop), none
    /// below priority `floor`.
    fn pop_memory(
        &mut self,
        out: &mut Vec<Context<C>>,
        max: usize,
        allowance: &SlotAllowance,
        taken: &mut HashMap<String, usize>,
        floor: Option<i32>,
    ) {
        let mut skipped = Vec::new();
        while out.len() < max {
            let Some(head) = self.heads.pop() else { break };
            let Some(heap) = self.slots.get_mut(&head.slot) else {
                continue;
            };
            if heap.peek().map(|t| t.seq) != Some(head.seq) {
                continue; // stale head
            }
            if floor.is_some_and(|f| head.priority < f) {
                self.heads.push(head);
                break;
            }
            let used = taken.get(&head.slot).copied().unwrap_or(0);
            if used >= allowance.of(&head.slot) {
                skipped.push(head);
                continue;
            }
            let entry = heap.pop().expect("peeked");
            self.len -= 1;
            out.push(entry.ctx.into_context());
            match taken.get_mut(head.slot.as_str()) {
                Some(n) => *n += 1,
                None => {
                    taken.insert(head.slot.clone(), 1);
                }
            }
            match heap.peek() {
                Some(next) => self.heads.push(Head {
                    priority: next.priority,
                    seq: next.seq,
                    slot: head.slot,
                }),
                None => {
                    self.slots.remove(&head.slot);
                }
            }
        }
        self.heads.extend(skipped);
    }
}

impl<C: Callback> QueueBackend<C> for MemoryQueue<C> {
    fn push(&mut self, batch: Vec<Context<C>>) -> BackendFuture<()> {
        self.push_now(batch);
        Box::pin(ready(Ok(())))
    }

    fn pop(&mut self, max: usize, allowance: &SlotAllowance) -> BackendFuture<Vec<Context<C>>> {
        Box::pin(ready(Ok(self.pop_now(max, allowance))))
    }

    fn drain(&mut self) -> BackendFuture<usize> {
        let n = self.len + self.spill.as_mut().map_or(0, Spill::clear);
        self.slots.clear();
        self.heads.clear();
        self.len = 0;
        Box::pin(ready(Ok(n)))
    }

    fn len(&self) -> usize {
        self.len + self.on_disk()
    }

    fn spill_report(&self) -> Option<SpillReport> {
        let spill = self.spill.as_ref();
        (self.bound != usize::MAX).then(|| SpillReport {
            on_disk: self.on_disk() as u64,
            bytes: spill.map_or(0, Spill::bytes),
            written: spill.map_or(0, |s| s.written),
            lost: spill.map_or(0, |s| s.lost),
            write_errors: self.write_errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Request;

    fn ctx(url: &str, priority: i32) -> Context<()> {
        Context::new(Request::get(url).unwrap().priority(priority), None)
    }

    fn urls(batch: &[Context<()>]) -> Vec<String> {
        batch.iter().map(|c| c.request.url.to_string()).collect()
    }

    fn all() -> SlotAllowance {
        SlotAllowance::uniform(usize::MAX)
    }

    #[test]
    fn higher_priority_first_then_fifo() {
        let mut q = MemoryQueue::default();
        q.push_now(vec![
            ctx("http://h/a", 0),
            ctx("http://h/b", 5),
            ctx("http://h/c", 0),
            ctx("http://h/d", 5),
        ]);
        q.push_now(vec![ctx("http://h/e", -1), ctx("http://h/f", 0)]);
        assert_eq!(q.len(), 6);
        assert_eq!(
            urls(&q.pop_now(3, &all())),
            ["http://h/b", "http://h/d", "http://h/a"]
        );
        assert_eq!(
            urls(&q.pop_now(10, &all())),
            ["http://h/c", "http://h/f", "http://h/e"]
        );
        assert!(q.is_empty());
        assert!(q.pop_now(4, &all()).is_empty());
    }

    #[test]
    fn priority_order_holds_across_hosts() {
        let mut q = MemoryQueue::default();
        q.push_now(vec![
            ctx("http://a/1", 1),
            ctx("http://b/1", 3),
            ctx("http://a/2", 2),
            ctx("http://b/2", 0),
        ]);
        assert_eq!(
            urls(&q.pop_now(4, &all())),
            ["http://b/1", "http://a/2", "http://a/1", "http://b/2"]
        );
    }

    #[test]
    fn a_blocked_or_busy_host_is_skipped_not_waited_for() {
        let mut q = MemoryQueue::default();
        q.push_now(
            (0..5)
                .map(|i| ctx(&format!("http://slow/{i}"), 9))
                .collect(),
        );
        q.push_now(vec![ctx("http://fast/1", 0), ctx("http://fast/2", 0)]);
        let mut allowance = SlotAllowance::uniform(8);
        allowance.per_slot.insert("slow".into(), 1);
        assert_eq!(
            urls(&q.pop_now(4, &allowance)),
            ["http://slow/0", "http://fast/1", "http://fast/2"]
        );
        allowance.per_slot.insert("slow".into(), 0);
        assert!(q.pop_now(4, &allowance).is_empty());
        assert_eq!(q.len(), 4);
        assert_eq!(q.pop_now(10, &all()).len(), 4);
    }

    /// Requests `/0`, `/1`, ... of `host`, at priority 0.
    fn host_batch(host: &str, n: usize) -> Vec<Context<()>> {
        (0..n)
            .map(|i| ctx(&format!("http://{host}/{i}"), 0))
            .collect()
    }

    /// The directory a queue made for itself inside `dir`.
    fn own_dir(dir: &tempfile::TempDir) -> std::path::PathBuf {
        let mut entries = std::fs::read_dir(dir.path()).unwrap();
        entries.next().unwrap().unwrap().path()
    }

    /// A bounded queue spilling into a fresh temporary directory.
    fn bounded(bound: usize) -> (MemoryQueue<()>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let q = MemoryQueue::bounded(bound, SpillDir::Inside(dir.path().to_path_buf()));
        (q, dir)
    }

    /// A fixed pseudo-random sequence.
    fn mix(i: u64) -> u64 {
        let z = (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z ^ (z >> 29)
    }

    #[test]
    fn a_spilling_queue_gives_the_order_an_unbounded_one_gives() {
        let (mut spilling, dir) = bounded(10);
        let mut unbounded = MemoryQueue::default();
        let (mut from_spilling, mut from_unbounded) = (Vec::new(), Vec::new());
        let mut n = 0;
        for round in 0..400u64 {
            let batch = mix(round) % 12;
            for _ in 0..batch {
                let host = ["a", "b", "c"][(mix(n + 7) % 3) as usize];
                let priority = (mix(n + 11) % 4) as i32 - 1;
                let url = format!("http://{host}/{n}");
                spilling.push_now(vec![ctx(&url, priority)]);
                unbounded.push_now(vec![ctx(&url, priority)]);
                n += 1;
            }
            let take = (mix(round + 1_000) % 10) as usize;
            from_spilling.extend(urls(&spilling.pop_now(take, &all())));
            from_unbounded.extend(urls(&unbounded.pop_now(take, &all())));
            assert!(spilling.len <= 2 * 10 + 10, "{} in memory", spilling.len);
        }
        let left = spilling.len();
        assert_eq!(left, unbounded.len());
        from_spilling.extend(urls(&spilling.pop_now(left, &all())));
        from_unbounded.extend(urls(&unbounded.pop_now(left, &all())));
        assert_eq!(from_spilling.len() as u64, n);
        assert_eq!(from_spilling, from_unbounded);
        let report = spilling.spill_report().unwrap();
        assert!(report.written > 500, "{report:?}");
        assert_eq!((report.on_disk, report.bytes, report.lost), (0, 0, 0));
        // Segments read to their end are deleted.
        let segments = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(segments, 1, "only the queue's own (empty) directory");
        drop(spilling);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_host_that_may_take_nothing_fills_memory_to_twice_the_bound_and_no_further() {
        let (mut q, _dir) = bounded(10);
        q.push_now(host_batch("slow", 100));
        q.push_now(host_batch("fast", 100));
        assert_eq!(q.len(), 200);
        let mut allowance = SlotAllowance::uniform(8);
        allowance.per_slot.insert("slow".into(), 0);
        // Memory holds ten slow requests; the fast ones are on disk behind
        // 90 more slow ones: the pop brings requests in (up to twice the
        // bound) and none of them can be the fast host's yet.
        assert!(q.pop_now(8, &allowance).is_empty());
        assert!(q.len <= 20);
        assert_eq!(q.len(), 200);
        // Once the slow host may take requests again, everything comes out
        // once, in order.
        let got = urls(&q.pop_now(200, &all()));
        assert_eq!(got.len(), 200);
        assert_eq!(got[0], "http://slow/0");
        assert_eq!(got[199], "http://fast/99");
    }

    #[test]
    fn an_unreadable_segment_is_counted_lost_and_the_rest_still_comes_out() {
        let (mut q, dir) = bounded(5);
        q.push_now(host_batch("h", 5_000));
        // 4,995 on disk in two segments: damage the first one's second record.
        let frontier = own_dir(&dir);
        let mut segments: Vec<_> = std::fs::read_dir(&frontier)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        segments.sort();
        q.pop_now(0, &all()); // seals nothing yet: the first segment is full
        let mut bytes = std::fs::read(&segments[0]).unwrap();
        let first = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        bytes[4 + first + 6] = b'!';
        std::fs::write(&segments[0], bytes).unwrap();
        let mut got = 0;
        loop {
            let batch = q.pop_now(100, &all());
            if batch.is_empty() {
                break;
            }
            got += batch.len();
        }
        let report = q.spill_report().unwrap();
        // The first segment gave its first record, then lost the rest.
        assert_eq!(report.lost, (spill::SEGMENT_RECORDS - 1) as u64);
        assert_eq!(got as u64 + report.lost, 5_000);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn drain_counts_memory_and_disk_and_deletes_the_segments() {
        let (mut q, dir) = bounded(10);
        q.push_now(
            (0..1_000)
                .map(|i| ctx(&format!("http://h/{i}"), i % 3))
                .collect(),
        );
        assert_eq!(q.len(), 1_000);
        let n = futures_util::FutureExt::now_or_never(q.drain())
            .unwrap()
            .unwrap();
        assert_eq!(n, 1_000);
        assert_eq!(q.len(), 0);
        let frontier = own_dir(&dir);
        assert_eq!(std::fs::read_dir(frontier).unwrap().count(), 0);
    }
}
