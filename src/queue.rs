//! Where accepted requests wait: the queue back-end behind the CacheQueue.
//!
//! The CacheQueue actor owns one [`QueueBackend`]. Requests are kept per
//! download slot (host) so that a pop can skip hosts that may not take more
//! requests now (busy, delayed, backing off) and hand out the best requests
//! of the others: one slow host never starves the rest. The default,
//! [`MemoryQueue`], is a priority queue per slot (higher priority first,
//! first in first out within a priority) plus a heap of slot heads, so a pop
//! follows the global priority order across the hosts it may serve.
//! Back-ends answer with futures so that a networked one
//! (`RedisQueue`, see [`distributed`](crate::distributed)) plugs in behind the same
//! trait; the memory one does its work at once and returns a ready future.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use futures_util::future::{ready, LocalBoxFuture};
use uuid::Uuid;

use crate::context::Context;
use crate::error::Error;
use crate::request::slot_of;

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
    /// Takes every waiting request (used when a crawl stops).
    fn drain(&mut self) -> BackendFuture<Vec<Context<C>>>;
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
}

/// The in-memory priority queue, per slot.
pub struct MemoryQueue<C> {
    /// Each slot's requests: a max-heap on (priority, arrival reversed).
    slots: HashMap<String, BinaryHeap<Entry<C>>>,
    /// One entry per slot for its best request (possibly stale: an entry
    /// whose `seq` is no longer its slot's top is skipped).
    heads: BinaryHeap<Head>,
    /// Arrival counter: keeps equal priorities first in, first out.
    seq: u64,
    /// Requests waiting, over all slots.
    len: usize,
}

impl<C> Default for MemoryQueue<C> {
    fn default() -> Self {
        MemoryQueue {
            slots: HashMap::new(),
            heads: BinaryHeap::new(),
            seq: 0,
            len: 0,
        }
    }
}

struct Entry<C> {
    priority: i32,
    seq: u64,
    /// Boxed: the heap moves its entries up and down at every push and pop
    /// (a `Context` is some 400 bytes).
    ctx: Box<Context<C>>,
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

impl<C: Send + 'static> MemoryQueue<C> {
    /// Adds requests now (the synchronous core of `push`).
    pub fn push_now(&mut self, batch: Vec<Context<C>>) {
        for ctx in batch {
            self.seq += 1;
            self.len += 1;
            let entry = Entry {
                priority: ctx.request.priority,
                seq: self.seq,
                ctx: Box::new(ctx),
            };
            let slot = slot_of(&entry.ctx.request.url);
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
    }

    /// Takes up to `max` requests now (the synchronous core of `pop`).
    pub fn pop_now(&mut self, max: usize, allowance: &SlotAllowance) -> Vec<Context<C>> {
        let mut out = Vec::with_capacity(max.min(self.len));
        let mut taken: HashMap<String, usize> = HashMap::new();
        let mut skipped = Vec::new();
        while out.len() < max {
            let Some(head) = self.heads.pop() else { break };
            let Some(heap) = self.slots.get_mut(&head.slot) else {
                continue;
            };
            if heap.peek().map(|t| t.seq) != Some(head.seq) {
                continue; // stale head
            }
            let used = taken.get(&head.slot).copied().unwrap_or(0);
            if used >= allowance.of(&head.slot) {
                skipped.push(head);
                continue;
            }
            let entry = heap.pop().expect("peeked");
            self.len -= 1;
            out.push(*entry.ctx);
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
        out
    }
}

impl<C: Send + 'static> QueueBackend<C> for MemoryQueue<C> {
    fn push(&mut self, batch: Vec<Context<C>>) -> BackendFuture<()> {
        self.push_now(batch);
        Box::pin(ready(Ok(())))
    }

    fn pop(&mut self, max: usize, allowance: &SlotAllowance) -> BackendFuture<Vec<Context<C>>> {
        Box::pin(ready(Ok(self.pop_now(max, allowance))))
    }

    fn drain(&mut self) -> BackendFuture<Vec<Context<C>>> {
        let all = self.pop_now(self.len, &SlotAllowance::uniform(usize::MAX));
        Box::pin(ready(Ok(all)))
    }

    fn len(&self) -> usize {
        self.len
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
}
