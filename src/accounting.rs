//! In-flight accounting: how the Engine knows a crawl is finished.
//!
//! Every unit of open work — the start-request iterator until it is
//! exhausted, and every request from the moment it is emitted until it ends
//! as a response whose items left the pipelines, a counted drop or a counted
//! error — holds one count. The rule that makes this exact: whoever emits
//! new work opens it *before* closing the work that produced it. So the count
//! reaches zero only when nothing is queued, in flight, in a mailbox or in a
//! pipeline, and the actor that brings it to zero tells the Engine at once
//! (no polling, no idle timer).
//!
//! Work that must wait until everything else is done (a re-crawl's
//! revisits no sitemap called for) holds *reserved* units: when a close
//! leaves only those open, their holder is told (`LastCall`) instead.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use actix::Recipient;

use crate::messages::{Idle, LastCall};

/// The open-work counter, shared by every actor of one crawl.
pub(crate) struct Accounting {
    /// Units of open work.
    open: AtomicUsize,
    /// The Engine, told when `open` drops to zero.
    idle: Recipient<Idle>,
    /// Of the open units, those waiting for every other one to close.
    reserved: AtomicUsize,
    /// Told when only the reserved units are left.
    last_call: OnceLock<Recipient<LastCall>>,
}

impl Accounting {
    pub(crate) fn new(idle: Recipient<Idle>) -> Self {
        Accounting {
            open: AtomicUsize::new(0),
            idle,
            reserved: AtomicUsize::new(0),
            last_call: OnceLock::new(),
        }
    }

    /// Reserves `n` of the units open now (0: none): `to` is told when
    /// a close leaves only those; whether that is already so.
    pub(crate) fn reserve(&self, n: usize, to: Recipient<LastCall>) -> bool {
        let _ = self.last_call.set(to);
        self.reserved.store(n, Ordering::SeqCst);
        n > 0 && self.count() == n
    }

    /// Ends the reservation (before its units close).
    pub(crate) fn unreserve(&self) {
        self.reserved.store(0, Ordering::SeqCst);
    }

    /// Opens `n` units (call before handing the work on).
    pub(crate) fn open(&self, n: usize) {
        self.open.fetch_add(n, Ordering::AcqRel);
    }

    /// Closes `n` units; the call that reaches zero notifies the Engine.
    pub(crate) fn close(&self, n: usize) {
        if n == 0 {
            return;
        }
        // Sequentially consistent with `reserve`: a close and a reservation
        // on two threads cannot both miss the other.
        let before = self.open.fetch_sub(n, Ordering::SeqCst);
        assert!(before >= n, "accounting underflow: closing {n} of {before}");
        if before == n {
            self.idle.do_send(Idle);
        } else if before - n == self.reserved.load(Ordering::SeqCst) {
            if let Some(to) = self.last_call.get() {
                to.do_send(LastCall);
            }
        }
    }

    /// Units open now.
    pub(crate) fn count(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}
