//! Where accepted requests wait: the queue back-end behind the CacheQueue.
//!
//! The CacheQueue actor owns one [`QueueBackend`]. The default,
//! [`MemoryQueue`], is a priority queue (higher priority first, first in
//! first out within a priority). Back-ends answer with futures so that a
//! networked one (Redis, later) plugs in behind the same trait; the memory
//! one does its work at once and returns a ready future.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use futures_util::future::{ready, LocalBoxFuture};

use crate::context::Context;
use crate::error::Error;

/// A back-end operation's result, resolved on the CacheQueue's arbiter.
pub type BackendFuture<T> = LocalBoxFuture<'static, Result<T, Error>>;

/// A store of requests waiting for download.
pub trait QueueBackend<C>: Send + 'static {
    /// Adds requests.
    fn push(&mut self, batch: Vec<Context<C>>) -> BackendFuture<()>;
    /// Takes up to `max` requests, best first.
    fn pop(&mut self, max: usize) -> BackendFuture<Vec<Context<C>>>;
    /// Takes every waiting request (used when a crawl stops).
    fn drain(&mut self) -> BackendFuture<Vec<Context<C>>>;
    /// How many requests wait.
    fn len(&self) -> usize;
    /// Whether none wait.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The in-memory priority queue.
pub struct MemoryQueue<C> {
    /// Max-heap on (priority, arrival order reversed).
    heap: BinaryHeap<Entry<C>>,
    /// Arrival counter: keeps equal priorities first in, first out.
    seq: u64,
}

impl<C> Default for MemoryQueue<C> {
    fn default() -> Self {
        MemoryQueue {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

struct Entry<C> {
    priority: i32,
    seq: u64,
    ctx: Context<C>,
}

impl<C> PartialEq for Entry<C> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
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
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl<C: Send + 'static> MemoryQueue<C> {
    /// Adds requests now (the synchronous core of `push`).
    pub fn push_now(&mut self, batch: Vec<Context<C>>) {
        for ctx in batch {
            self.seq += 1;
            self.heap.push(Entry {
                priority: ctx.request.priority,
                seq: self.seq,
                ctx,
            });
        }
    }

    /// Takes up to `max` requests now (the synchronous core of `pop`).
    pub fn pop_now(&mut self, max: usize) -> Vec<Context<C>> {
        let n = max.min(self.heap.len());
        (0..n)
            .filter_map(|_| self.heap.pop().map(|e| e.ctx))
            .collect()
    }
}

impl<C: Send + 'static> QueueBackend<C> for MemoryQueue<C> {
    fn push(&mut self, batch: Vec<Context<C>>) -> BackendFuture<()> {
        self.push_now(batch);
        Box::pin(ready(Ok(())))
    }

    fn pop(&mut self, max: usize) -> BackendFuture<Vec<Context<C>>> {
        Box::pin(ready(Ok(self.pop_now(max))))
    }

    fn drain(&mut self) -> BackendFuture<Vec<Context<C>>> {
        let all = self.pop_now(self.heap.len());
        Box::pin(ready(Ok(all)))
    }

    fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Request;

    fn ctx(path: &str, priority: i32) -> Context<()> {
        Context::new(
            Request::get(&format!("http://h/{path}"))
                .unwrap()
                .priority(priority),
            None,
        )
    }

    fn paths(batch: &[Context<()>]) -> Vec<String> {
        batch
            .iter()
            .map(|c| c.request.url.path().to_string())
            .collect()
    }

    #[test]
    fn higher_priority_first_then_fifo() {
        let mut q = MemoryQueue::default();
        q.push_now(vec![ctx("a", 0), ctx("b", 5), ctx("c", 0), ctx("d", 5)]);
        q.push_now(vec![ctx("e", -1), ctx("f", 0)]);
        assert_eq!(q.len(), 6);
        assert_eq!(paths(&q.pop_now(3)), ["/b", "/d", "/a"]);
        assert_eq!(paths(&q.pop_now(10)), ["/c", "/f", "/e"]);
        assert!(q.is_empty());
        assert!(q.pop_now(4).is_empty());
    }
}
