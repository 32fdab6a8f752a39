//! Changes that must wait for the dupe checks sent before them.
//!
//! A parent request may complete while its children are still at the
//! DupeFilter. Anything that declares the parent done to the outside world
//! (a checkpoint's "completed", a shared queue's acknowledgement, the start
//! requests' position) must come after those children are queued, or a
//! crash in between would lose them. So every `Check` batch gets a sequence
//! number, and a change recorded while checks are outstanding is released
//! once every check sent before it has come back. Checks are quick, so the
//! wait is short; it never blocks the crawl, only the bookkeeping.

use std::collections::{BTreeSet, VecDeque};

/// Changes of type `T` held back behind outstanding checks.
pub(crate) struct Watermark<T> {
    /// The sequence number of the next `Check` batch.
    next: u64,
    /// Checks sent and not answered.
    outstanding: BTreeSet<u64>,
    /// Changes waiting for the checks sent before them (the last check
    /// sent at the time, and the change), oldest first.
    waiting: VecDeque<(u64, T)>,
}

impl<T> Default for Watermark<T> {
    fn default() -> Self {
        Watermark {
            next: 0,
            outstanding: BTreeSet::new(),
            waiting: VecDeque::new(),
        }
    }
}

impl<T> Watermark<T> {
    /// A `Check` batch is sent: its sequence number.
    pub(crate) fn check_sent(&mut self) -> u64 {
        let seq = self.next;
        self.next += 1;
        self.outstanding.insert(seq);
        seq
    }

    /// The answer to check `seq` came back and its accepted requests are
    /// queued: the changes released, oldest first.
    pub(crate) fn check_returned(&mut self, seq: u64) -> Vec<T> {
        self.outstanding.remove(&seq);
        let oldest = self.outstanding.first().copied();
        let mut released = Vec::new();
        while let Some((after, _)) = self.waiting.front() {
            if oldest.is_some_and(|o| o <= *after) {
                break;
            }
            let (_, change) = self.waiting.pop_front().expect("front exists");
            released.push(change);
        }
        released
    }

    /// A change: returned if it may be applied now, else held until every
    /// check sent so far has come back.
    pub(crate) fn record(&mut self, change: T) -> Option<T> {
        if self.outstanding.is_empty() {
            return Some(change);
        }
        self.waiting.push_back((self.next - 1, change));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_waits_for_every_earlier_check_only() {
        let mut w = Watermark::default();
        assert_eq!(w.record("free"), Some("free"));
        let a = w.check_sent();
        assert_eq!(w.record("after a"), None);
        let b = w.check_sent();
        assert_eq!(w.record("after b"), None);
        // b returns first: "after a" still waits for a.
        assert!(w.check_returned(b).is_empty());
        assert_eq!(w.check_returned(a), ["after a", "after b"]);
        let c = w.check_sent();
        assert_eq!(w.record("after c"), None);
        let d = w.check_sent();
        // c is back: "after c" goes though d is still out.
        assert_eq!(w.check_returned(c), ["after c"]);
        assert_eq!(w.record("after d"), None);
        assert_eq!(w.check_returned(d), ["after d"]);
    }
}
