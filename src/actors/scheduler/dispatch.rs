//! Dispatch: from the queue to the downloader pool, under two limits.
//!
//! The crawl's global concurrency is a credit: a slot frees only when the
//! request is `Completed`, so at most `concurrency` responses exist at
//! once. Per host, `Slots` says how many more requests each host may start
//! now; each `Pop` asks the queue for the best requests of the hosts that
//! may take them, one pop at a time so the credits stay exact. When every
//! host with work is resting, the Scheduler stalls until a release, new
//! work or the wake-up timer (`wake_at`). Popped requests that cannot go
//! yet (popped while paused, their host full, or just cleared by
//! robots.txt) are held and go first. Whatever may let work move (new
//! work, a completion, a release, a resume, a timer) ends in `pump`, which
//! pulls start requests, dispatches what it can, publishes the gauges and
//! flushes the shared queue's acknowledgements.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use actix::prelude::*;
use slog::{error, warn};

use crate::context::Context;
use crate::messages::{deliver, Dispatch, Pop, Push};
use crate::request::{slot_of, Callback};
use crate::state::CrawlState;
use crate::stats::Counter;

use super::Scheduler;

/// The stat of the most host slots the Scheduler held at once (busy ones
/// and the idle ones kept): it stays near the idle-slot bound however many
/// hosts the crawl meets.
const HOST_SLOTS_MAX: &str = "scheduler/host_slots_max";

impl<C: Callback> Scheduler<C> {
    /// Hands requests to the pool while slots are free, and sends the
    /// shared queue what is ready for it.
    pub(super) fn pump(&mut self, ctx: &mut actix::Context<Self>) {
        self.dispatch_free(ctx);
        // Whatever that released for the shared queue, too.
        self.flush_shared(ctx);
    }

    /// Hands requests to the pool while slots are free.
    fn dispatch_free(&mut self, ctx: &mut actix::Context<Self>) {
        self.pull_starts(ctx);
        if self.state == CrawlState::Running && !self.held.is_empty() {
            self.dispatch_held(ctx);
        }
        self.publish_gauges();
        let peak = self.slots.peak();
        if peak > self.host_slots_published {
            self.host_slots_published = peak;
            self.stats.max_named(HOST_SLOTS_MAX, peak as u64);
        }
        let free = self.config.concurrency.saturating_sub(self.in_flight.len());
        if self.state != CrawlState::Running
            || self.popping
            || self.stalled
            || self.shared.as_ref().is_some_and(|s| s.holds_pops())
            || free == 0
            || self.queued == 0
        {
            return;
        }
        let now = Instant::now();
        let (global, allowance) = self.slots.allowance(now);
        if global == 0 {
            self.stalled = true;
            self.wake_at(self.slots.next_ready(now), ctx);
            return;
        }
        self.popping = true;
        self.pushed_since_pop = 0;
        self.changed = false;
        let pop = Pop {
            max: free.min(global),
            allowance,
            _callback: PhantomData,
        };
        self.outbox
            .pop
            .send(pop)
            .into_actor(self)
            .map(move |res, act, ctx| {
                act.popping = false;
                match res {
                    Ok(Ok(popped)) => {
                        act.queued = popped.remaining + act.pushed_since_pop;
                        if popped.batch.is_empty() && !act.changed {
                            // Every host with work must wait: sleep until
                            // the first is ready (or a release wakes us).
                            // Ready counted from when the allowance was
                            // made: a host whose rest ended while the pop
                            // was out is due now, not forgotten.
                            act.stalled = true;
                            let next = act.slots.next_ready(now);
                            act.wake_at(next, ctx);
                        }
                        act.dispatch(popped.batch, ctx);
                    }
                    Ok(Err(e)) => {
                        warn!(act.log, "queue pop failed; retrying"; "error" => %e);
                        ctx.run_later(Duration::from_millis(100), |act, ctx| act.pump(ctx));
                        return;
                    }
                    Err(e) => {
                        // The queue is gone (only after shutdown): nothing
                        // to retry.
                        error!(act.log, "queue unreachable"; "error" => %e);
                        return;
                    }
                }
                act.pump(ctx);
            })
            .spawn(ctx);
    }

    /// Lets the next pump pop again.
    pub(super) fn unstall(&mut self) {
        self.stalled = false;
        self.changed = true;
    }

    /// Schedules one wake-up at `at` (keeping an earlier one).
    fn wake_at(&mut self, at: Option<Instant>, ctx: &mut actix::Context<Self>) {
        let Some(at) = at else { return };
        if let Some((current, handle)) = self.wake {
            if current <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let wait = at.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(wait, |act, ctx| {
            act.wake = None;
            act.unstall();
            act.pump(ctx);
        });
        self.wake = Some((at, handle));
    }

    /// Publishes the in-flight and queued gauges; queued counts every
    /// request this Scheduler holds that is not in flight (in the queue,
    /// held, waiting out a retry backoff or for its robots.txt).
    pub(super) fn publish_gauges(&self) {
        self.stats
            .set(Counter::InFlight, self.in_flight.len() as u64);
        let waiting: usize = self.robots_waiting.values().map(Vec::len).sum();
        let delayed: usize = self.delayed.values().map(|(_, n)| n).sum();
        let queued = self.queued + self.held.len() + delayed + waiting;
        self.stats.set(Counter::Queued, queued as u64);
    }

    /// Sends popped requests on: held while paused, counted unprocessed
    /// while stopping, checked against robots.txt when obeyed.
    fn dispatch(&mut self, batch: Vec<Context<C>>, ctx: &mut actix::Context<Self>) {
        if self.state == CrawlState::Paused {
            self.held.extend(batch);
            return;
        }
        if self.state == CrawlState::Stopping {
            // Popped just before a stop: these were never dispatched.
            self.unprocessed(batch.len());
            return;
        }
        let now = Instant::now();
        for c in batch {
            if self.already_held(&c) {
                continue;
            }
            let Some(c) = self.robots_check(c, ctx) else {
                continue;
            };
            let host = slot_of(&c.request.url);
            if let Some(max) = c.request.max_conns_per_host {
                self.slots.cap(host, max);
            }
            // The queue honoured the allowance it was given; a request's
            // own cap may be lower, so what its host cannot take waits.
            if self.slots.can_start(host, now) {
                self.send_to_pool(c, now);
            } else {
                self.held.push(c);
            }
        }
    }

    /// In a shared queue, a request this worker still holds can come back:
    /// its lease was taken for dead and requeued, and this worker popped it
    /// again. The copy it holds goes on (and settles the new lease); the
    /// new one is dropped here, its unit of work closed.
    fn already_held(&self, c: &Context<C>) -> bool {
        if self.shared.is_none()
            || !(self.in_flight.contains(&c.id) || self.held.iter().any(|h| h.id == c.id))
        {
            return false;
        }
        warn!(self.log, "popped a request this worker still holds; dropping the copy"; "url" => %crate::redact::Redacted(&c.request.url));
        self.stats.add_named("redis/duplicate_leases", 1);
        self.accounting.close(1);
        true
    }

    /// Dispatches held requests whose host may start one now.
    fn dispatch_held(&mut self, ctx: &mut actix::Context<Self>) {
        let now = Instant::now();
        let mut keep = Vec::new();
        for c in std::mem::take(&mut self.held) {
            let Some(c) = self.robots_check(c, ctx) else {
                continue;
            };
            let room =
                self.in_flight.len() < self.config.concurrency && self.slots.global_ready(now);
            if room && self.slots.can_start(slot_of(&c.request.url), now) {
                self.send_to_pool(c, now);
            } else {
                keep.push(c);
            }
        }
        self.held = keep;
        if !self.held.is_empty() {
            let next = self.slots.next_ready(now);
            self.wake_at(next, ctx);
        }
    }

    /// Starts a request on its host's slot and hands it to the pool.
    fn send_to_pool(&mut self, mut c: Context<C>, now: Instant) {
        self.slots.started(slot_of(&c.request.url), now);
        self.in_flight.insert(c.id);
        self.stats.inc(Counter::Dequeued);
        c.attempt += 1;
        c.dispatched_at = Some(now);
        deliver(&self.outbox.pool, Dispatch { ctx: c }, &self.stats);
    }

    /// Hands requests to the queue; they add to the outstanding pop's
    /// `remaining`, and may give a stalled host work.
    pub(super) fn push(&mut self, batch: Vec<Context<C>>) {
        self.queued += batch.len();
        self.pushed_since_pop += batch.len();
        self.unstall();
        deliver(&self.outbox.push, Push { batch }, &self.stats);
    }

    /// Counts `n` accepted requests that will never be dispatched, and
    /// closes their work.
    pub(super) fn unprocessed(&mut self, n: usize) {
        self.stats.add(Counter::Unprocessed, n as u64);
        self.accounting.close(n);
    }
}
