//! The shared queue: a reliable priority queue in Redis.
//!
//! Waiting requests are members of a sorted set (score: minus the priority;
//! member: a push timestamp, the request id and its host, so equal
//! priorities come out first in, first out and a pop can apply per-host
//! allowances without reading the request). Their content is in a hash
//! beside it. A pop moves members atomically into this worker's lease
//! table; an acknowledgement deletes them with their content; a retry
//! replaces its lease with a new member; leaving gives every lease back.
//! A push that fails until its deadline is not lost: the acknowledgement
//! of each parent of its requests gives that parent back to the queue
//! instead, with its children's reservations dropped, so that the parent
//! is fetched again (by any worker) and its links pushed then.

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::{ready, FutureExt};
use redis::AsyncCommands;
use slog::{error, warn};
use uuid::Uuid;

use super::dupe::BloomShape;
use super::{any_failure, invoke, Shared};
use crate::context::Context;
use crate::error::Error;
use crate::fingerprint::fingerprint;
use crate::queue::{BackendFuture, QueueBackend, SlotAllowance};
use crate::request::slot_of;
use crate::request::Callback;
use crate::stats::Counter;

/// What this worker knows it holds.
#[derive(Default)]
struct Leases {
    /// Leased member per request id.
    by_id: HashMap<Uuid, String>,
    /// Parents some of whose children a push could not queue (it failed
    /// until its deadline), with the fingerprints checked for those
    /// children: their acknowledgement gives them back to the queue
    /// instead, and drops the reservations, so that the parent is fetched
    /// again and its links found new.
    unpushed: HashMap<Uuid, Vec<String>>,
    /// Leased requests whose retry could not be pushed: given back with
    /// the next acknowledgement (CacheQueue sends an empty one after an
    /// interval while any wait, see `settle_after`).
    give_back: Vec<Uuid>,
}

/// The Redis queue (see the module docs).
pub struct RedisQueue<C> {
    shared: Shared,
    /// The dupe filter's shape, when pushed requests went through it
    /// (their reservations become bits and exact-set members in the push).
    checked: Option<BloomShape>,
    leases: Arc<Mutex<Leases>>,
    /// The queue's length at the last pop.
    len: Arc<AtomicUsize>,
    /// The last push time used in a member (µs).
    last_push: AtomicU64,
    /// `Shared::failures` when the leases were last checked.
    checked_at: Arc<AtomicU64>,
    _callback: PhantomData<fn() -> C>,
}

impl<C> RedisQueue<C> {
    pub(crate) fn new(shared: Shared, checked: Option<BloomShape>) -> Self {
        RedisQueue {
            shared,
            checked,
            leases: Arc::default(),
            len: Arc::default(),
            last_push: AtomicU64::new(0),
            checked_at: Arc::default(),
            _callback: PhantomData,
        }
    }
}

/// The member naming a request in the queue and the lease tables: 16 hex
/// digits of push time (µs, made strictly increasing per worker so that
/// requests pushed within one microsecond keep their order), the id's 32,
/// then the host.
fn member<C>(ctx: &Context<C>, last: &AtomicU64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let prev = last
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
            Some(now.max(l + 1))
        })
        .unwrap_or(0);
    let micros = now.max(prev + 1);
    format!(
        "{micros:016x}{}{}",
        ctx.id.simple(),
        slot_of(&ctx.request.url)
    )
}

fn lock(leases: &Mutex<Leases>) -> std::sync::MutexGuard<'_, Leases> {
    leases.lock().unwrap_or_else(|p| p.into_inner())
}

impl<C: Callback> QueueBackend<C> for RedisQueue<C> {
    fn push(&mut self, batch: Vec<Context<C>>) -> BackendFuture<()> {
        let mut args = self.shared.args();
        // Leases replaced by this push: known again if it fails.
        let mut replaced = Vec::new();
        // Each new request's parent and reserved fingerprint: if the push
        // fails, the parents are fetched again.
        let mut lineage = Vec::new();
        // Requests whose content could not be serialised: dropped,
        // counted and logged; the push only drops their reservations (and
        // acknowledges the lease a retry replaces).
        let mut unserializable = 0u64;
        {
            let mut leases = lock(&self.leases);
            for c in &batch {
                // A request this worker leased comes back as a retry: it
                // replaces its lease and skips the dupe check it passed.
                let replaces = leases.by_id.remove(&c.id);
                let (member, payload) = match serde_json::to_string(c) {
                    Ok(p) => (member(c, &self.last_push), p),
                    Err(e) => {
                        error!(self.shared.log, "request cannot be serialised for the shared queue; dropped";
                            "url" => c.request.url.as_str(), "error" => %e);
                        unserializable += 1;
                        (String::new(), String::new())
                    }
                };
                if let (Some(m), false) = (&replaces, member.is_empty()) {
                    replaced.push((c.id, m.clone()));
                }
                args.extend([
                    member,
                    (-i64::from(c.request.priority)).to_string(),
                    payload,
                ]);
                // Its fingerprint's hex, bits, shard and member, when it
                // went through the dupe filter.
                let mut reserved = None;
                match (&self.checked, &replaces) {
                    (Some(shape), None) if !c.request.dont_filter => {
                        let fp = shape.args(fingerprint(&c.request));
                        reserved = Some(fp[0].clone());
                        args.extend(fp);
                    }
                    _ => args.extend(std::iter::repeat_n(String::new(), 4)),
                }
                if replaces.is_none() {
                    lineage.push((c.parent, reserved));
                }
                args.push(replaces.unwrap_or_default());
            }
        }
        if unserializable > 0 {
            self.shared
                .stats
                .add_named("scheduler/unserializable", unserializable);
        }
        let (shared, leases, len) = (self.shared.clone(), self.leases.clone(), self.len.clone());
        async move {
            // Every failure is retried until the deadline: Redis out of
            // memory or a script error may be cured meanwhile.
            let pushed = shared
                .retry_when("push", any_failure, |con| {
                    invoke(&shared.scripts.push, &args, con)
                })
                .await;
            let (queued, dupes, reaped): (usize, u64, u64) = match pushed {
                Ok(r) => r,
                Err(e) => {
                    unpushed(&shared, &mut lock(&leases), replaced, &lineage);
                    return Err(e);
                }
            };
            len.fetch_add(queued, Ordering::Relaxed);
            shared.stats.add(Counter::DupeFiltered, dupes);
            if reaped > 0 {
                shared
                    .stats
                    .add_named("redis/requeues_without_lease", reaped);
            }
            Ok(())
        }
        .boxed_local()
    }

    fn pop(&mut self, max: usize, allowance: &SlotAllowance) -> BackendFuture<Vec<Context<C>>> {
        let mut args = self.shared.args();
        let rate = self.shared.opts.host_rate.unwrap_or(0.0);
        args.extend([
            max.to_string(),
            (max * 8).clamp(64, 1024).to_string(),
            allowance.default.to_string(),
            rate.to_string(),
            rate.max(1.0).to_string(),
        ]);
        for (slot, n) in &allowance.per_slot {
            args.push(slot.clone());
            args.push(n.to_string());
        }
        let (shared, leases, len) = (self.shared.clone(), self.leases.clone(), self.len.clone());
        let checked_at = self.checked_at.clone();
        async move {
            let reply: Vec<redis::Value> = shared
                .retry("pop", |con| {
                    let (shared, leases, args) = (shared.clone(), leases.clone(), args.clone());
                    let checked_at = checked_at.clone();
                    async move {
                        let failures = shared.failures.load(Ordering::Relaxed);
                        if checked_at.load(Ordering::Relaxed) != failures {
                            // A call failed since the last check (this
                            // pop's last attempt, or an ack whose effect a
                            // restarted Redis lost): give back the leases
                            // this worker holds but does not know of.
                            reconcile(&shared, &leases, con.clone()).await?;
                            checked_at.store(failures, Ordering::Relaxed);
                        }
                        let reply: Vec<redis::Value> =
                            invoke(&shared.scripts.pop, &args, con.clone()).await?;
                        if reply.len() == 1 {
                            // Not registered (reaped while alive): register
                            // and take again.
                            register(&shared, con.clone()).await?;
                            return invoke(&shared.scripts.pop, &args, con).await;
                        }
                        Ok(reply)
                    }
                })
                .await?;
            decode_popped(&shared, &leases, &len, reply).await
        }
        .boxed_local()
    }

    fn drain(&mut self) -> BackendFuture<usize> {
        // The shared queue belongs to the whole crawl: a worker that stops
        // takes nothing from it (its leases go back when it leaves).
        ready(Ok(0)).boxed_local()
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    fn shared(&self) -> bool {
        true
    }

    fn ack(&mut self, ids: Vec<Uuid>) -> BackendFuture<()> {
        let (held, back) = {
            let mut leases = lock(&self.leases);
            let leases = &mut *leases;
            let mut back: Vec<Returned> = std::mem::take(&mut leases.give_back)
                .into_iter()
                .filter_map(|id| Some((id, leases.by_id.remove(&id)?, None)))
                .collect();
            let mut held = Vec::new();
            for id in ids {
                let Some(m) = leases.by_id.remove(&id) else {
                    continue;
                };
                match leases.unpushed.remove(&id) {
                    Some(fps) => back.push((id, m, Some(fps))),
                    None => held.push((id, m)),
                }
            }
            (held, back)
        };
        if held.is_empty() && back.is_empty() {
            return ready(Ok(())).boxed_local();
        }
        let mut args = self.shared.args();
        args.extend(held.iter().map(|(_, m)| m.clone()));
        let (shared, leases) = (self.shared.clone(), self.leases.clone());
        async move {
            if !back.is_empty() {
                if let Err(e) = give_back(&shared, &back).await {
                    // Still leased: given back with a later acknowledgement.
                    let mut leases = lock(&leases);
                    leases.by_id.extend(held);
                    restore(&mut leases, back);
                    return Err(e);
                }
            }
            if held.is_empty() {
                return Ok(());
            }
            let acked = shared
                .retry("ack", |con| invoke::<u64>(&shared.scripts.ack, &args, con))
                .await;
            if acked.is_err() {
                // Still leased: known again, so a later ack or the leave
                // settles them.
                lock(&leases).by_id.extend(held);
            }
            acked.map(|_| ())
        }
        .boxed_local()
    }

    fn starts_done(&mut self, pulled: u64) -> BackendFuture<()> {
        let mut args = self.shared.args();
        args.push(pulled.to_string());
        let shared = self.shared.clone();
        async move {
            let _: u64 = shared
                .retry("starts done", |con| {
                    invoke(&shared.scripts.starts_done, &args, con)
                })
                .await?;
            Ok(())
        }
        .boxed_local()
    }

    fn settle_after(&self) -> Option<Duration> {
        let owed = !lock(&self.leases).give_back.is_empty();
        owed.then_some(self.shared.opts.ack_interval)
    }

    fn close(&mut self) -> BackendFuture<()> {
        let mut args = self.shared.args();
        args.push("*leave*".into());
        let (shared, leases) = (self.shared.clone(), self.leases.clone());
        async move {
            shared.begin_closing();
            let given: u64 = shared
                .retry_leaving("leave", |con| invoke(&shared.scripts.release, &args, con))
                .await?;
            {
                // Every lease went back: nothing is owed any more.
                let mut leases = lock(&leases);
                leases.by_id.clear();
                leases.unpushed.clear();
                leases.give_back.clear();
            }
            if given > 0 {
                shared.stats.add_named("redis/leases_given_back", given);
            }
            Ok(())
        }
        .boxed_local()
    }
}

/// A lease to give back: the request, its member, and the fingerprints
/// reserved for its children (`None` for a retry that could not be pushed).
type Returned = (Uuid, String, Option<Vec<String>>);

/// A push failed until its deadline: its new requests' parents are given
/// back with their acknowledgement (each fetched again, its links checked
/// anew), the leases its retries replaced with the next acknowledgement.
/// A start request has no parent: it is lost, counted in
/// `scheduler/lost_on_push_error`.
fn unpushed(
    shared: &Shared,
    leases: &mut Leases,
    replaced: Vec<(Uuid, String)>,
    lineage: &[(Option<Uuid>, Option<String>)],
) {
    leases.give_back.extend(replaced.iter().map(|(id, _)| *id));
    leases.by_id.extend(replaced);
    let mut orphans = 0;
    for (parent, fp) in lineage {
        match parent {
            Some(p) => leases.unpushed.entry(*p).or_default().extend(fp.clone()),
            None => orphans += 1,
        }
    }
    shared.stats.add_named("redis/pushes_given_up", 1);
    if orphans > 0 {
        error!(shared.log, "start requests could not be pushed; lost"; "count" => orphans);
        shared
            .stats
            .add_named("scheduler/lost_on_push_error", orphans);
    }
}

/// Puts back leases a give-back could not return.
fn restore(leases: &mut Leases, back: Vec<Returned>) {
    for (id, m, fps) in back {
        leases.by_id.insert(id, m);
        match fps {
            Some(fps) => {
                leases.unpushed.insert(id, fps);
            }
            None => leases.give_back.push(id),
        }
    }
}

/// Gives `back` to the queue and drops the reservations made for their
/// children (`redis/parents_given_back`).
async fn give_back(shared: &Shared, back: &[Returned]) -> Result<(), Error> {
    let mut args = shared.args();
    args.push(back.len().to_string());
    args.extend(back.iter().map(|(_, m, _)| m.clone()));
    args.extend(
        back.iter()
            .flat_map(|(_, _, fps)| fps.iter().flatten().cloned()),
    );
    let given: u64 = shared
        .retry_when("give back", any_failure, |con| {
            invoke(&shared.scripts.give_back, &args, con)
        })
        .await?;
    warn!(shared.log, "requests whose children could not be pushed went back to the queue";
        "count" => given);
    shared.stats.add_named("redis/parents_given_back", given);
    Ok(())
}

/// Registers this worker (a heartbeat).
async fn register(shared: &Shared, con: redis::aio::ConnectionManager) -> redis::RedisResult<()> {
    let args = shared.heartbeat_args(false);
    let _: Vec<u64> = invoke(&shared.scripts.heartbeat, &args, con).await?;
    Ok(())
}

/// Gives back the leases this worker holds in Redis but does not know of.
async fn reconcile(
    shared: &Shared,
    leases: &Mutex<Leases>,
    mut con: redis::aio::ConnectionManager,
) -> redis::RedisResult<()> {
    let held: Vec<String> = con
        .hkeys(format!("{}lease:{}", shared.prefix, shared.worker))
        .await?;
    let unknown: Vec<String> = {
        let guard = lock(leases);
        let known: HashSet<&String> = guard.by_id.values().collect();
        held.into_iter().filter(|m| !known.contains(m)).collect()
    };
    if unknown.is_empty() {
        return Ok(());
    }
    let mut args = shared.args();
    args.extend(unknown);
    let _: u64 = invoke(&shared.scripts.release, &args, con).await?;
    Ok(())
}

/// The popped requests; records their leases. A payload that cannot be read
/// is logged, counted and acknowledged (dropped), so it cannot hold the
/// crawl open.
async fn decode_popped<C: Callback>(
    shared: &Shared,
    leases: &Mutex<Leases>,
    len: &AtomicUsize,
    reply: Vec<redis::Value>,
) -> Result<Vec<Context<C>>, Error> {
    let mut it = reply.into_iter();
    let int = |v: Option<redis::Value>| match v {
        Some(redis::Value::Int(n)) => n.max(0) as u64,
        _ => 0,
    };
    len.store(int(it.next()) as usize, Ordering::Relaxed);
    let missing = int(it.next());
    if missing > 0 {
        error!(shared.log, "queued requests without content; dropped"; "count" => missing);
        shared.stats.add_named("redis/missing_payloads", missing);
    }
    let mut batch = Vec::new();
    let mut bad = Vec::new();
    while let (Some(m), Some(p)) = (it.next(), it.next()) {
        let (Ok(m), Ok(p)) = (
            redis::from_redis_value::<String>(m),
            redis::from_redis_value::<String>(p),
        ) else {
            continue;
        };
        match serde_json::from_str::<Context<C>>(&p) {
            Ok(ctx) => {
                lock(leases).by_id.insert(ctx.id, m);
                batch.push(ctx);
            }
            Err(e) => {
                error!(shared.log, "unreadable request in the queue; dropped"; "member" => &m, "error" => %e);
                shared.stats.add_named("redis/bad_payloads", 1);
                bad.push(m);
            }
        }
    }
    if !bad.is_empty() {
        let mut args = shared.args();
        args.extend(bad);
        let _: u64 = shared
            .retry("ack", |con| invoke(&shared.scripts.ack, &args, con))
            .await?;
    }
    Ok(batch)
}
