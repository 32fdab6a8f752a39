//! Unit tests of the Redis back-ends and scripts against a real
//! `redis-server` (skipped loudly when none is installed), without actors.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slog::Logger;

use super::{
    clear, invoke, key_prefix, membership, totals, BloomShape, CrawlTotals, RedisDupe,
    RedisOptions, RedisQueue, Shared,
};
use crate::context::Context;
use crate::dedupe::DupeBackend;
use crate::fingerprint::fingerprint;
use crate::queue::{QueueBackend, SlotAllowance};
use crate::request::Request;
use crate::stats::{Counter, Stats};

#[allow(dead_code)]
#[path = "../../tests/it/redis_server.rs"]
mod redis_server;

use redis_server::RedisServer;

/// The crawl every test's workers share.
const CRAWL: &str = "unit";

/// The default lease time of a test worker.
const TTL: Duration = Duration::from_secs(30);

fn shape() -> BloomShape {
    BloomShape::sized(10_000, 0.001)
}

/// The crawl's key `suffix` (`queue`, `lease:<worker>`...).
fn key(suffix: &str) -> String {
    format!("{}{suffix}", key_prefix(CRAWL))
}

/// A connection for worker `id` of the crawl, registered with a heartbeat.
async fn worker(
    redis: &RedisServer,
    id: &str,
    lease_ttl: Duration,
    host_rate: Option<f64>,
) -> (Shared, Arc<Stats>) {
    let opts = RedisOptions {
        crawl_id: Some(CRAWL.into()),
        worker_id: Some(id.into()),
        lease_ttl,
        host_rate,
        ..RedisOptions::new(redis.url())
    };
    let stats = Arc::new(Stats::default());
    let shared = Shared::connect(
        opts,
        CRAWL,
        stats.clone(),
        Logger::root(slog::Discard, slog::o!()),
    )
    .await
    .expect("connect");
    assert_eq!(shared.worker, id);
    assert_eq!(
        membership::heartbeat(&shared).await.unwrap(),
        (false, 0, 0),
        "a new worker was not registered before"
    );
    (shared, stats)
}

fn ctx(url: &str, priority: i32) -> Context<()> {
    Context::new(Request::get(url).unwrap().priority(priority), None)
}

fn urls(batch: &[Context<()>]) -> Vec<&str> {
    batch.iter().map(|c| c.request.url.as_str()).collect()
}

async fn push(q: &mut RedisQueue<()>, batch: Vec<Context<()>>) {
    q.push(batch).await.expect("push");
}

async fn pop(q: &mut RedisQueue<()>, max: usize, allowance: &SlotAllowance) -> Vec<Context<()>> {
    q.pop(max, allowance).await.expect("pop")
}

/// The status script's answer for `shared`'s worker.
async fn status(shared: &Shared) -> (String, String) {
    invoke(&shared.scripts.status, &shared.args(), shared.con.clone())
        .await
        .expect("status")
}

/// The push script's arguments for one request (fingerprint and bits when
/// `checked`), as `RedisQueue::push` builds them, pushed at `micros`.
fn push_args(
    shared: &Shared,
    c: &Context<()>,
    micros: u64,
    checked: bool,
    replaces: &str,
) -> Vec<String> {
    let host = c.request.url.host_str().unwrap().to_string();
    let mut args = shared.args();
    args.extend([
        format!("{micros:016x}{}{host}", c.id.simple()),
        (-i64::from(c.request.priority)).to_string(),
        serde_json::to_string(c).unwrap(),
    ]);
    if checked {
        args.extend(shape().args(fingerprint(&c.request)));
    } else {
        args.extend(std::iter::repeat_n(String::new(), 4));
    }
    args.push(replaces.to_string());
    args
}

/// The check script's answers (0 seen, 1 new, 2 new behind a false
/// positive of the bitmap) for `fps`, as `RedisDupe` asks.
async fn check(shared: &Shared, fps: &[u128]) -> Vec<u8> {
    let mut args = shared.args();
    for fp in fps {
        args.extend(shape().args(*fp));
    }
    invoke(&shared.scripts.check, &args, shared.con.clone())
        .await
        .expect("check")
}

/// Sets every bit of `fp` in the bitmap, as other fingerprints would: a
/// false positive of the bitmap for `fp`.
fn fill_bits(redis: &RedisServer, fp: u128) {
    for bit in shape().bits(fp).split(',') {
        redis.cmd(&["SETBIT", &key("bloom"), bit, "1"]);
    }
}

/// Whether the exact set holds `fp`.
fn held(redis: &RedisServer, fp: u128) -> bool {
    let (shard, member) = shape().exact(fp);
    redis.cmd(&["SISMEMBER", &key(&format!("seen:{shard}")), &member]) == "1"
}

#[actix::test]
async fn pop_follows_priority_then_arrival() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, _) = worker(&redis, "a", TTL, None).await;
    let mut q = RedisQueue::<()>::new(a, Some(shape()));
    push(&mut q, vec![ctx("http://h/a", 0), ctx("http://h/b", 1)]).await;
    push(
        &mut q,
        vec![
            ctx("http://h/c", 0),
            ctx("http://h/d", 2),
            ctx("http://h/e", 1),
        ],
    )
    .await;
    assert_eq!(q.len(), 5);
    assert_eq!(redis.cmd(&["ZCARD", &key("queue")]), "5");

    let first = pop(&mut q, 2, &SlotAllowance::uniform(10)).await;
    assert_eq!(urls(&first), ["http://h/d", "http://h/b"]);
    assert_eq!(q.len(), 3);
    let rest = pop(&mut q, 10, &SlotAllowance::uniform(10)).await;
    assert_eq!(urls(&rest), ["http://h/e", "http://h/a", "http://h/c"]);
    assert_eq!(q.len(), 0);
    assert!(pop(&mut q, 10, &SlotAllowance::uniform(10))
        .await
        .is_empty());
    assert_eq!(redis.cmd(&["HLEN", &key("lease:a")]), "5");
}

#[actix::test]
async fn pop_keeps_arrival_order_within_one_batch() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, _) = worker(&redis, "a", TTL, None).await;
    let mut q = RedisQueue::<()>::new(a, None);
    let sent: Vec<String> = (0..200).map(|i| format!("http://h/{i}")).collect();
    push(&mut q, sent.iter().map(|u| ctx(u, 0)).collect()).await;
    let got = pop(&mut q, 200, &SlotAllowance::uniform(200)).await;
    assert_eq!(got.len(), 200);
    let misplaced: Vec<(usize, &str)> = urls(&got)
        .into_iter()
        .enumerate()
        .filter(|&(i, u)| u != sent[i])
        .collect();
    assert!(misplaced.is_empty(), "out of arrival order: {misplaced:?}");
}

#[actix::test]
async fn pop_applies_the_per_host_allowance() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, _) = worker(&redis, "a", TTL, None).await;
    let mut q = RedisQueue::<()>::new(a, Some(shape()));
    push(
        &mut q,
        vec![
            ctx("http://b/1", 5),
            ctx("http://a/1", 1),
            ctx("http://b/2", 4),
            ctx("http://a/2", 0),
        ],
    )
    .await;

    let allowance = SlotAllowance {
        default: 1,
        per_slot: [("b".to_string(), 0)].into(),
    };
    let got = pop(&mut q, 10, &allowance).await;
    assert_eq!(urls(&got), ["http://a/1"]);
    assert_eq!(q.len(), 3);

    // One per host: the best of each.
    let got = pop(&mut q, 10, &SlotAllowance::uniform(1)).await;
    assert_eq!(urls(&got), ["http://b/1", "http://a/2"]);
    assert_eq!(q.len(), 1);
}

#[actix::test]
async fn ack_deletes_leases_and_a_retry_replaces_its_lease() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, stats) = worker(&redis, "a", TTL, None).await;
    let mut q = RedisQueue::<()>::new(a, Some(shape()));
    let (lease, req, queue) = (key("lease:a"), key("req"), key("queue"));

    push(&mut q, vec![ctx("http://h/1", 0), ctx("http://h/2", 0)]).await;
    let got = pop(&mut q, 10, &SlotAllowance::uniform(10)).await;
    assert_eq!(got.len(), 2);
    assert_eq!(redis.cmd(&["HLEN", &lease]), "2");
    assert_eq!(redis.cmd(&["HLEN", &req]), "2");
    q.ack(vec![got[0].id]).await.unwrap();
    assert_eq!(redis.cmd(&["HLEN", &lease]), "1");
    assert_eq!(redis.cmd(&["HLEN", &req]), "1");
    // Acknowledging again (or an unknown id) changes nothing.
    q.ack(vec![got[0].id, uuid::Uuid::new_v4()]).await.unwrap();
    assert_eq!(redis.cmd(&["HLEN", &lease]), "1");
    q.ack(vec![got[1].id]).await.unwrap();
    assert_eq!(redis.cmd(&["EXISTS", &lease]), "0");
    assert_eq!(redis.cmd(&["HLEN", &req]), "0");
    assert_eq!(redis.cmd(&["ZCARD", &queue]), "0");

    // A retry: the popped request comes back with the same id.
    push(&mut q, vec![ctx("http://h/3", 7)]).await;
    let mut got = pop(&mut q, 10, &SlotAllowance::uniform(10)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(redis.cmd(&["HLEN", &lease]), "1");
    let mut retry = got.pop().unwrap();
    retry.retries += 1;
    let id = retry.id;
    push(&mut q, vec![retry]).await;
    assert_eq!(redis.cmd(&["HLEN", &lease]), "0");
    assert_eq!(redis.cmd(&["ZCARD", &queue]), "1");
    assert_eq!(redis.cmd(&["HLEN", &req]), "1");
    assert_eq!(
        stats.get(Counter::DupeFiltered),
        0,
        "a retry skips the dupe check"
    );
    let again = pop(&mut q, 10, &SlotAllowance::uniform(10)).await;
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].retries), (id, 1));
    assert_eq!(again[0].request.priority, 7);
    q.ack(vec![id]).await.unwrap();
    assert_eq!(redis.cmd(&["EXISTS", &lease]), "0");
    assert_eq!(redis.cmd(&["HLEN", &req]), "0");
}

#[actix::test]
async fn dupe_reservations_and_bits() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, stats_a) = worker(&redis, "a", TTL, None).await;
    let (b, _) = worker(&redis, "b", TTL, None).await;
    let mut dupe_a = RedisDupe::new(a.clone(), shape());
    let mut dupe_b = RedisDupe::new(b, shape());
    let mut q = RedisQueue::<()>::new(a, Some(shape()));
    let url = "http://h/page?x=1";
    let fp1 = fingerprint(&Request::<()>::get(url).unwrap());
    let fp2 = fingerprint(&Request::<()>::get("http://h/other").unwrap());

    assert_eq!(dupe_a.check_and_add(vec![fp1]).await.unwrap(), [true]);
    // Its own reservation, asked again (a retried call): still new.
    assert_eq!(dupe_a.check_and_add(vec![fp1]).await.unwrap(), [true]);
    assert_eq!(
        redis.cmd(&["HGET", &key("reserved"), &format!("{fp1:032x}")]),
        "a"
    );
    // Reserved by another worker: seen.
    assert_eq!(
        dupe_b.check_and_add(vec![fp1, fp2]).await.unwrap(),
        [false, true]
    );

    push(&mut q, vec![ctx(url, 0), ctx(url, 0)]).await;
    assert_eq!(redis.cmd(&["ZCARD", &key("queue")]), "1");
    assert_eq!(q.len(), 1);
    assert_eq!(stats_a.get(Counter::DupeFiltered), 1);
    assert_eq!(
        redis.cmd(&["HEXISTS", &key("reserved"), &format!("{fp1:032x}")]),
        "0"
    );
    assert_eq!(redis.cmd(&["SCARD", &key("reserved:a")]), "0");

    // Its bits are set and the exact set holds it now: seen by everyone.
    assert!(held(&redis, fp1));
    assert!(!held(&redis, fp2));
    assert_eq!(dupe_b.check_and_add(vec![fp1]).await.unwrap(), [false]);
    assert_eq!(dupe_a.check_and_add(vec![fp1]).await.unwrap(), [false]);
    // Pushed again later (say, found on another page): skipped.
    push(&mut q, vec![ctx(url, 3)]).await;
    assert_eq!(redis.cmd(&["ZCARD", &key("queue")]), "1");
    assert_eq!(stats_a.get(Counter::DupeFiltered), 2);
}

#[actix::test]
async fn a_retried_push_queues_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, _) = worker(&redis, "a", TTL, None).await;
    let mut dupe = RedisDupe::new(a.clone(), shape());
    let push_twice = |args: Vec<String>| {
        let a = a.clone();
        async move {
            let first: (u64, u64, u64) =
                invoke(&a.scripts.push, &args, a.con.clone()).await.unwrap();
            let second: (u64, u64, u64) =
                invoke(&a.scripts.push, &args, a.con.clone()).await.unwrap();
            (first, second)
        }
    };

    // Checked (its reservation becomes the bits on the first run).
    let checked = ctx("http://h/checked", 0);
    let fp = fingerprint(&checked.request);
    assert_eq!(dupe.check_and_add(vec![fp]).await.unwrap(), [true]);
    let (first, second) = push_twice(push_args(&a, &checked, 1, true, "")).await;
    assert_eq!(first, (1, 0, 0));
    assert_eq!(second, (0, 1, 0));
    assert_eq!(redis.cmd(&["ZCARD", &key("queue")]), "1");
    assert_eq!(redis.cmd(&["HLEN", &key("req")]), "1");

    // Unchecked (`dont_filter`): the same member twice is one member.
    let unchecked = ctx("http://h/unchecked", 0);
    let (first, second) = push_twice(push_args(&a, &unchecked, 1, false, "")).await;
    assert_eq!((first.0, second.0), (1, 1));
    assert_eq!(redis.cmd(&["ZCARD", &key("queue")]), "2");
    assert_eq!(redis.cmd(&["HLEN", &key("req")]), "2");

    // A retry replacing a lease: the second run finds the lease gone.
    let mut q = RedisQueue::<()>::new(a.clone(), Some(shape()));
    let popped = pop(&mut q, 10, &SlotAllowance::uniform(10)).await;
    assert_eq!(popped.len(), 2);
    let leased = redis.cmd(&["HKEYS", &key("lease:a")]);
    let leased: Vec<&str> = leased.lines().collect();
    assert_eq!(leased.len(), 2);
    let old = leased
        .iter()
        .find(|m| m.contains(&popped[0].id.simple().to_string()))
        .unwrap();
    let (first, second) = push_twice(push_args(&a, &popped[0], 2, false, old)).await;
    assert_eq!(first, (1, 0, 0));
    assert_eq!(second, (0, 0, 1));
    assert_eq!(redis.cmd(&["ZCARD", &key("queue")]), "1");
    assert_eq!(redis.cmd(&["HLEN", &key("lease:a")]), "1");
    assert_eq!(redis.cmd(&["HLEN", &key("req")]), "2");
}

#[actix::test]
async fn a_bitmap_far_past_its_capacity_drops_no_new_url() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, stats) = worker(&redis, "a", TTL, None).await;
    // 1,000 fingerprints' worth of bitmap (9,586 bits), given 20 times that.
    let small = BloomShape::sized(1000, 0.01);
    let mut dupe = RedisDupe::new(a.clone(), small);
    let mut q = RedisQueue::<()>::new(a, Some(small));
    const N: usize = 20_000;
    let sent: Vec<String> = (0..N).map(|i| format!("http://h/{i}")).collect();
    let batch = |urls: &[String]| -> Vec<Context<()>> { urls.iter().map(|u| ctx(u, 0)).collect() };
    let fps = |batch: &[Context<()>]| batch.iter().map(|c| fingerprint(&c.request)).collect();

    let mut false_positives = 0;
    for (i, urls) in sent.chunks(500).enumerate() {
        let batch = batch(urls);
        let fresh = dupe.check_and_add(fps(&batch)).await.unwrap();
        let seen = fresh.iter().filter(|&&f| !f).count();
        assert_eq!(seen, 0, "new URLs taken for seen in batch {i}");
        false_positives += dupe.take_report().bloom_false_positives;
        push(&mut q, batch).await;
    }
    assert_eq!(redis.cmd(&["ZCARD", &key("queue")]), N.to_string());
    assert_eq!(stats.get(Counter::DupeFiltered), 0);
    assert_eq!(redis.cmd(&["HLEN", &key("reserved")]), "0");
    // Once the bitmap is full, nearly every new URL is a false positive.
    assert!(false_positives > N as u64 / 2, "{false_positives}");
    let members: usize = (0..1u32 << small.s)
        .map(|shard| {
            let n = redis.cmd(&["SCARD", &key(&format!("seen:{shard:x}"))]);
            n.parse::<usize>().unwrap()
        })
        .sum();
    assert_eq!(members, N);

    // Again: every one seen, by the check and by a push.
    for (i, urls) in sent.chunks(500).enumerate() {
        let batch = batch(urls);
        let fresh = dupe.check_and_add(fps(&batch)).await.unwrap();
        let new = fresh.iter().filter(|&&f| f).count();
        assert_eq!(new, 0, "seen URLs taken for new in batch {i}");
        push(&mut q, batch).await;
    }
    assert_eq!(dupe.take_report().bloom_false_positives, 0);
    assert_eq!(redis.cmd(&["ZCARD", &key("queue")]), N.to_string());
    assert_eq!(stats.get(Counter::DupeFiltered), N as u64);
}

#[actix::test]
async fn a_retried_check_or_push_behind_a_false_positive_counts_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, _) = worker(&redis, "a", TTL, None).await;
    let push_once = |args: &Vec<String>| {
        let (a, args) = (a.clone(), args.clone());
        async move {
            let pushed: (u64, u64, u64) =
                invoke(&a.scripts.push, &args, a.con.clone()).await.unwrap();
            pushed
        }
    };

    // Checked: the bitmap says maybe, the exact set says new, twice.
    let checked = ctx("http://h/checked", 0);
    let fp = fingerprint(&checked.request);
    fill_bits(&redis, fp);
    assert_eq!(check(&a, &[fp]).await, [2]);
    assert_eq!(check(&a, &[fp]).await, [2]);
    assert_eq!(
        redis.cmd(&["HGET", &key("reserved"), &format!("{fp:032x}")]),
        "a"
    );
    let args = push_args(&a, &checked, 1, true, "");
    assert_eq!(push_once(&args).await, (1, 0, 0));
    assert!(held(&redis, fp));
    assert_eq!(push_once(&args).await, (0, 1, 0));
    assert_eq!(redis.cmd(&["ZCARD", &key("queue")]), "1");
    assert_eq!(redis.cmd(&["HLEN", &key("reserved")]), "0");
    let (shard, _) = shape().exact(fp);
    assert_eq!(redis.cmd(&["SCARD", &key(&format!("seen:{shard}"))]), "1");
    assert_eq!(check(&a, &[fp]).await, [0]);
    assert_eq!(check(&a, &[fp]).await, [0]);

    // Pushed unreserved (its reservation was lost, say): the bitmap alone
    // does not make it a duplicate, the exact set does.
    let unreserved = ctx("http://h/unreserved", 0);
    let fp = fingerprint(&unreserved.request);
    fill_bits(&redis, fp);
    let args = push_args(&a, &unreserved, 2, true, "");
    assert_eq!(push_once(&args).await, (1, 0, 0));
    assert!(held(&redis, fp));
    assert_eq!(push_once(&args).await, (0, 1, 0));
    assert_eq!(redis.cmd(&["ZCARD", &key("queue")]), "2");
    assert_eq!(check(&a, &[fp]).await, [0]);
}

#[actix::test]
async fn a_reaped_workers_reservation_is_void_behind_a_false_positive() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (b, _) = worker(&redis, "b", TTL, None).await;
    let (a, _) = worker(&redis, "a", Duration::from_millis(300), None).await;
    let mut dupe_a = RedisDupe::new(a.clone(), shape());
    let mut dupe_b = RedisDupe::new(b.clone(), shape());
    let url = "http://h/reserved";
    let fp = fingerprint(&Request::<()>::get(url).unwrap());
    let hex = format!("{fp:032x}");
    fill_bits(&redis, fp);

    assert_eq!(dupe_a.check_and_add(vec![fp]).await.unwrap(), [true]);
    assert_eq!(dupe_a.take_report().bloom_false_positives, 1);
    // Reserved by A: seen by B, and no page lost to the bitmap.
    assert_eq!(dupe_b.check_and_add(vec![fp]).await.unwrap(), [false]);
    assert_eq!(dupe_b.take_report().bloom_false_positives, 0);

    until_deadline_passed(&redis, "a").await;
    assert_eq!(membership::heartbeat(&b).await.unwrap(), (true, 1, 0));
    assert_eq!(redis.cmd(&["HEXISTS", &key("reserved"), &hex]), "0");
    assert_eq!(redis.cmd(&["EXISTS", &key("reserved:a")]), "0");
    // B takes it over, and its push commits it.
    assert_eq!(dupe_b.check_and_add(vec![fp]).await.unwrap(), [true]);
    assert_eq!(dupe_b.take_report().bloom_false_positives, 1);
    assert_eq!(redis.cmd(&["HGET", &key("reserved"), &hex]), "b");
    let mut qb = RedisQueue::<()>::new(b, Some(shape()));
    push(&mut qb, vec![ctx(url, 0)]).await;
    assert_eq!(redis.cmd(&["ZCARD", &key("queue")]), "1");
    assert!(held(&redis, fp));
    // A, unregistered, finds it seen.
    assert_eq!(dupe_a.check_and_add(vec![fp]).await.unwrap(), [false]);
}

#[actix::test]
async fn a_dead_worker_is_reaped() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (b, _) = worker(&redis, "b", TTL, None).await;
    let ttl = Duration::from_millis(300);
    let (a, _) = worker(&redis, "a", ttl, None).await;
    assert_eq!(status(&a).await, ("starts".to_string(), "0".to_string()));
    assert_eq!(redis.cmd(&["HGET", &key("starts"), "owner"]), "a");

    let mut qa = RedisQueue::<()>::new(a.clone(), Some(shape()));
    push(
        &mut qa,
        vec![
            ctx("http://h/5", 5),
            ctx("http://h/3", 3),
            ctx("http://h/1", 1),
        ],
    )
    .await;
    let popped = pop(&mut qa, 2, &SlotAllowance::uniform(10)).await;
    assert_eq!(urls(&popped), ["http://h/5", "http://h/3"]);
    let fp = fingerprint(&Request::<()>::get("http://h/new").unwrap());
    let mut dupe_a = RedisDupe::new(a.clone(), shape());
    assert_eq!(dupe_a.check_and_add(vec![fp]).await.unwrap(), [true]);
    let mut dupe_b = RedisDupe::new(b.clone(), shape());
    assert_eq!(dupe_b.check_and_add(vec![fp]).await.unwrap(), [false]);

    // A stops heartbeating until its deadline has passed.
    until_deadline_passed(&redis, "a").await;

    assert_eq!(membership::heartbeat(&b).await.unwrap(), (true, 1, 2));
    assert_eq!(redis.cmd(&["ZSCORE", &key("workers"), "a"]), "(nil)");
    assert_eq!(redis.cmd(&["ZRANGE", &key("workers"), "0", "-1"]), "b");
    assert_eq!(redis.cmd(&["EXISTS", &key("lease:a")]), "0");
    assert_eq!(redis.cmd(&["EXISTS", &key("reserved:a")]), "0");
    assert_eq!(redis.cmd(&["HEXISTS", &key("starts"), "owner"]), "0");
    assert_eq!(
        redis.cmd(&["HGET", &key("stats"), "redis/workers_reaped"]),
        "1"
    );
    assert_eq!(
        redis.cmd(&["HGET", &key("stats"), "redis/leases_requeued"]),
        "2"
    );
    // The leases are back with their priorities.
    let queued = redis.cmd(&["ZRANGE", &key("queue"), "0", "-1", "WITHSCORES"]);
    let scores: Vec<&str> = queued.lines().skip(1).step_by(2).collect();
    assert_eq!(scores, ["-5", "-3", "-1"]);
    // A's reservation is gone: B may take the fingerprint.
    assert_eq!(dupe_b.check_and_add(vec![fp]).await.unwrap(), [true]);
    assert_eq!(status(&b).await, ("starts".to_string(), "3".to_string()));

    let mut qb = RedisQueue::<()>::new(b, Some(shape()));
    let got = pop(&mut qb, 10, &SlotAllowance::uniform(10)).await;
    assert_eq!(urls(&got), ["http://h/5", "http://h/3", "http://h/1"]);
    assert_eq!(got[0].id, popped[0].id);
    assert_eq!(got[1].id, popped[1].id);

    // A learns it was taken for dead at its next heartbeat.
    assert_eq!(membership::heartbeat(&a).await.unwrap(), (false, 0, 0));
}

#[actix::test]
async fn status_hands_out_the_starts_then_finishes() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, _) = worker(&redis, "a", TTL, None).await;
    let (b, _) = worker(&redis, "b", TTL, None).await;
    let s = |state: &str, detail: &str| (state.to_string(), detail.to_string());
    let mut q = RedisQueue::<()>::new(a.clone(), Some(shape()));
    push(&mut q, vec![ctx("http://h/1", 0)]).await;

    assert_eq!(status(&a).await, s("starts", "1"));
    assert_eq!(status(&b).await, s("wait", "1"));
    assert_eq!(status(&a).await, s("starts", "1"));
    assert_eq!(redis.cmd(&["HGET", &key("starts"), "owner"]), "a");

    q.starts_done(1).await.unwrap();
    assert_eq!(redis.cmd(&["HGET", &key("starts"), "done"]), "1");
    assert_eq!(redis.cmd(&["HGET", &key("starts"), "pulled"]), "1");
    assert_eq!(status(&b).await, s("wait", "1"));
    let got = pop(&mut q, 10, &SlotAllowance::uniform(10)).await;
    assert_eq!(got.len(), 1);
    // Empty queue, but a lease is held.
    assert_eq!(status(&b).await, s("wait", "0"));
    assert_eq!(redis.cmd(&["GET", &key("finished")]), "(nil)");
    q.ack(vec![got[0].id]).await.unwrap();

    assert_eq!(status(&b).await, s("finished", "finished"));
    assert_eq!(redis.cmd(&["GET", &key("finished")]), "finished");
    assert_eq!(status(&a).await, s("finished", "finished"));
}

#[actix::test]
async fn the_shared_host_rate_limits_pops() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, _) = worker(&redis, "a", TTL, Some(2.0)).await;
    let mut q = RedisQueue::<()>::new(a, Some(shape()));
    push(
        &mut q,
        (0..5).map(|i| ctx(&format!("http://h/{i}"), 0)).collect(),
    )
    .await;
    push(&mut q, vec![ctx("http://other/0", 0)]).await;

    let got = pop(&mut q, 10, &SlotAllowance::uniform(10)).await;
    assert_eq!(urls(&got), ["http://h/0", "http://h/1", "http://other/0"]);
    assert_eq!(q.len(), 3);
    let got = pop(&mut q, 10, &SlotAllowance::uniform(10)).await;
    assert!(got.is_empty(), "popped {:?}", urls(&got));
    assert_eq!(q.len(), 3);
}

#[actix::test]
async fn a_failed_pop_gives_back_leases_it_does_not_know_of() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (a, stats) = worker(&redis, "a", TTL, None).await;
    let mut q = RedisQueue::<()>::new(a.clone(), Some(shape()));
    push(
        &mut q,
        vec![
            ctx("http://h/3", 3),
            ctx("http://h/2", 2),
            ctx("http://h/1", 1),
        ],
    )
    .await;

    // A pop whose reply was lost: Redis leased two, the backend knows
    // nothing of them.
    let mut args = a.args();
    args.extend(["2", "64", "10", "0", "1"].map(String::from));
    let lost: Vec<redis::Value> = invoke(&a.scripts.pop, &args, a.con.clone()).await.unwrap();
    assert_eq!(lost.len(), 2 + 2 * 2);
    assert_eq!(redis.cmd(&["HLEN", &key("lease:a")]), "2");

    // The next pop's first attempt fails (Redis is down until restarted).
    redis.kill();
    let restarter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        redis.restart();
        redis
    });
    let got = pop(&mut q, 10, &SlotAllowance::uniform(10)).await;
    let redis = restarter.join().unwrap();
    assert!(stats.snapshot().get("redis/retries") >= 1);

    assert_eq!(urls(&got), ["http://h/3", "http://h/2", "http://h/1"]);
    assert_eq!(redis.cmd(&["HLEN", &key("lease:a")]), "3");
    assert_eq!(redis.cmd(&["ZCARD", &key("queue")]), "0");
    q.ack(got.iter().map(|c| c.id).collect()).await.unwrap();
    assert_eq!(redis.cmd(&["EXISTS", &key("lease:a")]), "0");
    assert_eq!(redis.cmd(&["HLEN", &key("req")]), "0");
}

#[actix::test]
async fn close_gives_everything_back_and_leaves() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, stats) = worker(&redis, "a", TTL, None).await;
    let (b, _) = worker(&redis, "b", TTL, None).await;
    assert_eq!(status(&a).await.0, "starts");
    let mut q = RedisQueue::<()>::new(a.clone(), Some(shape()));
    push(&mut q, vec![ctx("http://h/2", 2), ctx("http://h/1", 1)]).await;
    let popped = pop(&mut q, 10, &SlotAllowance::uniform(10)).await;
    assert_eq!(popped.len(), 2);
    let fp = fingerprint(&Request::<()>::get("http://h/new").unwrap());
    let mut dupe_a = RedisDupe::new(a, shape());
    assert_eq!(dupe_a.check_and_add(vec![fp]).await.unwrap(), [true]);

    q.close().await.unwrap();
    assert_eq!(stats.snapshot().get("redis/leases_given_back"), 2);
    assert_eq!(redis.cmd(&["EXISTS", &key("lease:a")]), "0");
    assert_eq!(redis.cmd(&["ZRANGE", &key("workers"), "0", "-1"]), "b");
    assert_eq!(redis.cmd(&["EXISTS", &key("reserved:a")]), "0");
    assert_eq!(redis.cmd(&["HLEN", &key("reserved")]), "0");
    assert_eq!(redis.cmd(&["HEXISTS", &key("starts"), "owner"]), "0");
    let queued = redis.cmd(&["ZRANGE", &key("queue"), "0", "-1", "WITHSCORES"]);
    let scores: Vec<&str> = queued.lines().skip(1).step_by(2).collect();
    assert_eq!(scores, ["-2", "-1"]);

    let mut dupe_b = RedisDupe::new(b.clone(), shape());
    assert_eq!(dupe_b.check_and_add(vec![fp]).await.unwrap(), [true]);
    let mut qb = RedisQueue::<()>::new(b, Some(shape()));
    let got = pop(&mut qb, 10, &SlotAllowance::uniform(10)).await;
    assert_eq!(urls(&got), ["http://h/2", "http://h/1"]);
    assert_eq!(got[0].id, popped[0].id);
}

#[actix::test]
async fn the_first_bloom_shape_wins() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, _) = worker(&redis, "a", TTL, None).await;
    let (b, _) = worker(&redis, "b", TTL, None).await;
    let first = shape();
    assert_eq!(first.agree(&a).await.unwrap(), first);
    let other = BloomShape::sized(1_000_000, 0.01);
    assert_ne!(other.m, first.m);
    assert_ne!(other.s, first.s);
    assert_eq!(other.agree(&b).await.unwrap(), first);
    assert_eq!(
        redis.cmd(&["HMGET", &key("bloom:shape"), "m", "k", "s"]),
        format!("{}\n{}\n{}", first.m, first.k, first.s)
    );
    // The bitmap is there at its full size.
    assert_eq!(
        redis.cmd(&["STRLEN", &key("bloom")]),
        first.m.div_ceil(8).to_string()
    );
}

#[actix::test]
async fn a_crawl_begun_without_the_exact_set_is_refused() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, _) = worker(&redis, "a", TTL, None).await;
    // The shape an earlier version wrote: no shard bits.
    redis.cmd(&["HSET", &key("bloom:shape"), "m", "9586", "k", "7"]);
    let err = shape().agree(&a).await.unwrap_err();
    assert!(err.to_string().contains("without the exact set"), "{err}");
    assert_eq!(redis.cmd(&["HEXISTS", &key("bloom:shape"), "s"]), "0");
}

#[actix::test]
async fn a_retried_stats_report_adds_nothing_twice() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, _) = worker(&redis, "a", TTL, None).await;
    let (b, _) = worker(&redis, "b", TTL, None).await;
    let report = |shared: &Shared, pairs: &[(&str, u64)]| {
        let mut args = shared.args();
        for (name, value) in pairs {
            args.push(name.to_string());
            args.push(value.to_string());
        }
        let shared = shared.clone();
        async move {
            let _: u64 = invoke(&shared.scripts.stats, &args, shared.con.clone())
                .await
                .unwrap();
        }
    };
    let total = |name: &str| redis.cmd(&["HGET", &key("stats"), name]);
    report(&a, &[("x", 5), ("y", 1)]).await;
    report(&a, &[("x", 5), ("y", 1)]).await;
    assert_eq!((total("x"), total("y")), ("5".into(), "1".into()));
    report(&a, &[("x", 8)]).await;
    report(&b, &[("x", 2)]).await;
    // A lower value (a stale report) takes nothing away.
    report(&a, &[("x", 6)]).await;
    assert_eq!(total("x"), "10");
    // Maxima, by either spelling of the suffix, total the largest.
    report(&a, &[("request_depth_max", 4), ("memusage/max", 300)]).await;
    report(&b, &[("request_depth_max", 3), ("memusage/max", 500)]).await;
    report(&a, &[("memusage/max", 400)]).await;
    assert_eq!(total("request_depth_max"), "4");
    assert_eq!(total("memusage/max"), "500");
}

#[actix::test]
async fn totals_and_clear() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, _) = worker(&redis, "a", TTL, None).await;
    let (_b, _) = worker(&redis, "b", TTL, None).await;
    let mut q = RedisQueue::<()>::new(a.clone(), Some(shape()));
    push(
        &mut q,
        (0..4).map(|i| ctx(&format!("http://h/{i}"), 0)).collect(),
    )
    .await;
    let got = pop(&mut q, 1, &SlotAllowance::uniform(10)).await;
    assert_eq!(got.len(), 1);
    let mut args = a.args();
    args.extend(["pages".to_string(), "7".to_string()]);
    let _: u64 = invoke(&a.scripts.stats, &args, a.con.clone())
        .await
        .unwrap();

    let t = totals(&redis.url(), CRAWL).await.unwrap();
    assert_eq!(
        t,
        CrawlTotals {
            counters: [("pages".to_string(), 7)].into(),
            workers: 2,
            queued: 3,
            leased: 1,
            finished: None,
        }
    );
    // Another crawl, whose id is a glob pattern matching this one's.
    redis.cmd(&["SET", &format!("{}x", key_prefix("u*")), "1"]);
    redis.cmd(&["SET", &format!("{}x", key_prefix("u?it")), "1"]);
    let keys = redis.cmd(&["KEYS", &format!("{}*", key_prefix(CRAWL))]);
    let n = keys.lines().count();
    // lease:a, queue, req, bloom, workers, beat, stats, stats:a, and the
    // exact set's shards of the four fingerprints.
    let shards: BTreeSet<String> = (0..4)
        .map(|i| {
            let fp = fingerprint(&Request::<()>::get(&format!("http://h/{i}")).unwrap());
            shape().exact(fp).0
        })
        .collect();
    assert_eq!(n, 8 + shards.len(), "{keys}");
    for shard in &shards {
        assert!(keys.contains(&key(&format!("seen:{shard}"))), "{keys}");
    }
    assert_eq!(clear(&redis.url(), "u*").await.unwrap(), 1);
    assert_eq!(clear(&redis.url(), "u?it").await.unwrap(), 1);
    assert_eq!(clear(&redis.url(), CRAWL).await.unwrap(), n);
    assert_eq!(redis.cmd(&["DBSIZE"]), "0");
    assert_eq!(
        totals(&redis.url(), CRAWL).await.unwrap(),
        CrawlTotals::default()
    );
}

#[actix::test]
async fn clear_escapes_a_backslash() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    redis.cmd(&["SET", &format!("{}x", key_prefix(r"a\b")), "1"]);
    redis.cmd(&["SET", &format!("{}x", key_prefix("ab")), "1"]);
    assert_eq!(clear(&redis.url(), r"a\b").await.unwrap(), 1);
    assert_eq!(
        redis.cmd(&["EXISTS", &format!("{}x", key_prefix("ab"))]),
        "1"
    );
}

/// Waits (bounded) until Redis's clock passes `worker`'s deadline.
async fn until_deadline_passed(redis: &RedisServer, worker: &str) {
    let deadline: u64 = redis
        .cmd(&["ZSCORE", &key("workers"), worker])
        .parse()
        .unwrap();
    let give_up = Instant::now() + Duration::from_secs(5);
    loop {
        let time = redis.cmd(&["TIME"]);
        let (secs, micros) = time.split_once('\n').unwrap();
        let now = secs.parse::<u64>().unwrap() * 1000 + micros.parse::<u64>().unwrap() / 1000;
        if now > deadline {
            return;
        }
        assert!(
            Instant::now() < give_up,
            "Redis's clock never passed {deadline}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix::test]
async fn after_a_silence_a_heartbeat_renews_everyone_instead_of_reaping() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let ttl = Duration::from_millis(300);
    let (a, _) = worker(&redis, "a", ttl, None).await;
    let (b, _) = worker(&redis, "b", ttl, None).await;
    let mut qa = RedisQueue::<()>::new(a.clone(), None);
    push(&mut qa, vec![ctx("http://h/1", 0)]).await;
    assert_eq!(pop(&mut qa, 1, &SlotAllowance::uniform(1)).await.len(), 1);
    // Nobody beats for longer than half a lease (as in a Redis outage):
    // both deadlines pass.
    until_deadline_passed(&redis, "a").await;
    until_deadline_passed(&redis, "b").await;
    assert_eq!(membership::heartbeat(&b).await.unwrap(), (true, 0, 0));
    assert_ne!(redis.cmd(&["ZSCORE", &key("workers"), "a"]), "(nil)");
    assert_eq!(redis.cmd(&["HLEN", &key("lease:a")]), "1");
    // A renews in time and keeps its lease.
    assert_eq!(membership::heartbeat(&a).await.unwrap(), (true, 0, 0));
    assert_eq!(membership::heartbeat(&b).await.unwrap(), (true, 0, 0));
    assert_eq!(redis.cmd(&["HLEN", &key("lease:a")]), "1");
}

#[actix::test]
async fn a_reservation_of_a_worker_no_longer_registered_is_taken_over() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, _) = worker(&redis, "a", TTL, None).await;
    let (b, _) = worker(&redis, "b", TTL, None).await;
    let fp = fingerprint(&Request::<()>::get("http://h/x").unwrap());
    let hex = format!("{fp:032x}");
    let mut dupe_a = RedisDupe::new(a.clone(), shape());
    let mut dupe_b = RedisDupe::new(b.clone(), shape());
    assert_eq!(dupe_a.check_and_add(vec![fp]).await.unwrap(), [true]);
    assert_eq!(dupe_b.check_and_add(vec![fp]).await.unwrap(), [false]);
    // A is gone from the crawl but its reservation is still there.
    redis.cmd(&["ZREM", &key("workers"), "a"]);
    assert_eq!(dupe_b.check_and_add(vec![fp]).await.unwrap(), [true]);
    assert_eq!(redis.cmd(&["HGET", &key("reserved"), &hex]), "b");
    assert_eq!(redis.cmd(&["SISMEMBER", &key("reserved:a"), &hex]), "0");
    // An unregistered worker reserves nothing, and gets no start requests.
    let other = fingerprint(&Request::<()>::get("http://h/y").unwrap());
    assert_eq!(dupe_a.check_and_add(vec![other]).await.unwrap(), [true]);
    assert_eq!(redis.cmd(&["HLEN", &key("reserved")]), "1");
    assert_eq!(status(&a).await.0, "wait");
    assert_eq!(redis.cmd(&["HGET", &key("starts"), "owner"]), "(nil)");
    assert_eq!(status(&b).await.0, "starts");
}

#[actix::test]
async fn joining_with_the_id_of_a_dead_worker_gives_back_what_it_held() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, _) = worker(&redis, "a", TTL, None).await;
    let mut qa = RedisQueue::<()>::new(a.clone(), None);
    push(
        &mut qa,
        (0..3).map(|i| ctx(&format!("http://h/{i}"), 0)).collect(),
    )
    .await;
    assert_eq!(pop(&mut qa, 2, &SlotAllowance::uniform(2)).await.len(), 2);
    let mut args = a.args();
    args.extend(["pages".to_string(), "5".to_string()]);
    let _: u64 = invoke(&a.scripts.stats, &args, a.con.clone())
        .await
        .unwrap();
    // A dies; a new process joins as "a".
    drop(qa);
    let opts = RedisOptions {
        crawl_id: Some(CRAWL.into()),
        worker_id: Some("a".into()),
        ..RedisOptions::new(redis.url())
    };
    let again = Shared::connect(
        opts,
        CRAWL,
        Arc::default(),
        Logger::root(slog::Discard, slog::o!()),
    )
    .await
    .unwrap();
    membership::join(&again).await.unwrap();
    assert_eq!(redis.cmd(&["EXISTS", &key("lease:a")]), "0");
    assert_eq!(redis.cmd(&["ZCARD", &key("queue")]), "3");
    assert_eq!(redis.cmd(&["EXISTS", &key("stats:a")]), "0");
    assert_eq!(redis.cmd(&["HGET", &key("stats"), "pages"]), "5");
    assert_ne!(redis.cmd(&["ZSCORE", &key("workers"), "a"]), "(nil)");
}

/// Redis memory per URL of the dupe filter (bitmap and exact set) at the
/// default sizing, through the real scripts: `cargo test --lib
/// exact_set_memory_per_url -- --ignored --nocapture`. The figure is in
/// `dupe.rs`'s module docs.
#[actix::test]
#[ignore = "a measurement (three minutes in a debug build), not a test"]
async fn exact_set_memory_per_url() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, _) = worker(&redis, "a", TTL, None).await;
    let used_memory = || -> u64 {
        let info = redis.cmd(&["INFO", "memory"]);
        let line = info.lines().find_map(|l| l.strip_prefix("used_memory:"));
        line.unwrap().trim().parse().unwrap()
    };
    let usage = |k: &str| -> u64 { redis.cmd(&["MEMORY", "USAGE", k]).parse().unwrap() };
    const N: u64 = 1_000_000;
    const BATCH: u64 = 1000;
    // Fingerprints are hashes: uniform 128-bit values (splitmix64) stand
    // in for them.
    let mut state = 0x5eed_u64;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };

    let before = used_memory();
    let sizing = BloomShape::sized(1 << 20, 0.001);
    assert_eq!(sizing.agree(&a).await.unwrap(), sizing);
    let mut dupe = RedisDupe::new(a.clone(), sizing);
    for b in 0..N / BATCH {
        let fps: Vec<u128> = (0..BATCH)
            .map(|_| (u128::from(next()) << 64) | u128::from(next()))
            .collect();
        let fresh = dupe.check_and_add(fps.clone()).await.unwrap();
        assert!(fresh.iter().all(|&f| f));
        let mut args = a.args();
        for (i, fp) in fps.iter().enumerate() {
            args.extend([format!("{b}-{i}"), "0".into(), String::new()]);
            args.extend(sizing.args(*fp));
            args.push(String::new());
        }
        let pushed: (u64, u64, u64) = invoke(&a.scripts.push, &args, a.con.clone()).await.unwrap();
        assert_eq!(pushed.0, BATCH);
        // Only the dupe filter's keys stay.
        redis.cmd(&["DEL", &key("queue"), &key("req")]);
    }
    let after = used_memory();

    let bitmap = usage(&key("bloom"));
    let (mut shards, mut intsets, mut members) = (0, 0, 0);
    for s in 0..1u64 << sizing.s {
        let shard = key(&format!("seen:{s:x}"));
        shards += usage(&shard);
        intsets += u64::from(redis.cmd(&["OBJECT", "ENCODING", &shard]) == "intset");
        members += redis.cmd(&["SCARD", &shard]).parse::<u64>().unwrap();
    }
    assert_eq!(members, N);
    let per_url = |bytes: u64| bytes as f64 / N as f64;
    println!(
        "{N} URLs: used_memory {before} -> {after}, {:.2} bytes per URL; \
         MEMORY USAGE: bitmap {:.2}, exact set {:.2} per URL ({intsets} of {} shards intsets)",
        per_url(after - before),
        per_url(bitmap),
        per_url(shards),
        1u64 << sizing.s,
    );
}
