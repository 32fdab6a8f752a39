//! The Lua scripts that make every shared operation atomic in Redis.
//!
//! Every script takes the crawl's key prefix and the worker id as `ARGV[1]`
//! and `ARGV[2]` and builds its key names from them (so a crawl's keys
//! share one prefix and can be cleared together; this is why the scripts
//! target a single Redis, not Redis Cluster). The layout and the lease
//! protocol are described in `actors.md` ("Distributed crawls on Redis").
//! Each script is idempotent when run twice with the same arguments, so a
//! call whose reply was lost (the connection dropped after Redis ran it)
//! can simply be retried.

use redis::Script;

/// Bloom membership of one fingerprint, given its bit positions as a
/// comma-separated list; membership of the exact set, given its shard and
/// member.
const DUPE: &str = r#"
local function all_bits(bloom, bits)
  for b in string.gmatch(bits, '%d+') do
    if redis.call('GETBIT', bloom, b) == 0 then return false end
  end
  return true
end

local function held(p, shard, member)
  return redis.call('SISMEMBER', p .. 'seen:' .. shard, member) == 1
end
"#;

/// Test-and-add: `ARGV[3..]` are groups of four (fingerprint hex, bit
/// positions, exact-set shard, member there). A fingerprint is new when
/// the exact set does not hold it (looked up only when all of its bits
/// are set: otherwise the bitmap's "not seen" settles it) and no
/// registered worker reserved it; it is then reserved for this worker
/// until its push commits it. Answers per fingerprint 0 (seen), 1 (new) or
/// 2 (new, though all of its bits were set: a false positive of the
/// bitmap, confirmed). A fingerprint this worker reserved itself answers
/// new again (a retried call); its second push is then skipped. A worker
/// that is not registered (taken for dead) reserves nothing: its push then
/// queues what is not in the exact set yet.
const CHECK: &str = r#"
local p, w = ARGV[1], ARGV[2]
local bloom, reserved, mine = p .. 'bloom', p .. 'reserved', p .. 'reserved:' .. w
local out = {}
local registered = redis.call('ZSCORE', p .. 'workers', w)
for i = 3, #ARGV, 4 do
  local fp, bits, shard, member = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local new = 0
  local maybe = all_bits(bloom, bits)
  if not (maybe and held(p, shard, member)) then
    local owner = redis.call('HGET', reserved, fp)
    if owner and owner ~= w and not redis.call('ZSCORE', p .. 'workers', owner) then
      -- Its owner left or was reaped: the reservation is void.
      redis.call('SREM', p .. 'reserved:' .. owner, fp)
      redis.call('HDEL', reserved, fp)
      owner = false
    end
    if not registered then
      if not owner then new = 1 end
    elseif not owner then
      redis.call('HSET', reserved, fp, w)
      redis.call('SADD', mine, fp)
      new = 1
    elseif owner == w then
      new = 1
    end
    if new == 1 and maybe then new = 2 end
  end
  out[#out + 1] = new
end
return out
"#;

/// Push: `ARGV[3..]` are groups of eight (member, score, payload,
/// fingerprint hex or '', bit positions, exact-set shard and member there
/// or three '', the leased member it replaces or ''). A checked request is
/// queued if this worker holds its reservation, or if the exact set does
/// not hold it (a reservation lost to the reaper, an unregistered worker);
/// its bits are then set and it joins the exact set. Otherwise it was
/// queued already and is skipped. A request that replaces a lease (a
/// retry) is queued only if the lease is still this worker's: a reaped
/// lease is already back in the queue. An empty member is a request
/// dropped by the caller: only the lease it replaces is deleted and its
/// reservation dropped. Answers {queued, skipped as duplicates, skipped
/// as reaped}.
const PUSH: &str = r#"
local p, w = ARGV[1], ARGV[2]
local queue, req, lease = p .. 'queue', p .. 'req', p .. 'lease:' .. w
local bloom, reserved, mine = p .. 'bloom', p .. 'reserved', p .. 'reserved:' .. w
local queued, dupes, reaped = 0, 0, 0
for i = 3, #ARGV, 8 do
  local member, score, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local fp, bits, shard, seen = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  local replaces = ARGV[i + 7]
  local go = true
  if member == '' then
    -- Dropped (its content could not be serialised): its lease and its
    -- reservation go.
    go = false
    if replaces ~= '' and redis.call('HDEL', lease, replaces) == 1 then
      redis.call('HDEL', req, replaces)
    end
    if fp ~= '' then
      redis.call('SREM', mine, fp)
      if redis.call('HGET', reserved, fp) == w then redis.call('HDEL', reserved, fp) end
    end
  elseif replaces ~= '' then
    if redis.call('HDEL', lease, replaces) == 1 then
      redis.call('HDEL', req, replaces)
    else
      go = false
      reaped = reaped + 1
    end
  end
  if go and fp ~= '' then
    redis.call('SREM', mine, fp)
    if redis.call('HGET', reserved, fp) == w then
      redis.call('HDEL', reserved, fp)
    elseif all_bits(bloom, bits) and held(p, shard, seen) then
      go = false
      dupes = dupes + 1
    end
    if go then
      for b in string.gmatch(bits, '%d+') do redis.call('SETBIT', bloom, b, 1) end
      redis.call('SADD', p .. 'seen:' .. shard, seen)
    end
  end
  if go then
    redis.call('ZADD', queue, score, member)
    redis.call('HSET', req, member, payload)
    queued = queued + 1
  end
end
return {queued, dupes, reaped}
"#;

/// Pop: `ARGV[3]` most to take, `ARGV[4]` how many of the queue's best to
/// look at, `ARGV[5]` default per-host allowance, `ARGV[6]` shared rate per
/// host (requests/s, '0' for none), `ARGV[7]` its burst, then pairs (host,
/// allowance). Takes the best requests whose host may take them (and has a
/// token, with a shared rate), moving each to this worker's lease table.
/// Answers {queue length after, payloads missing, member, payload, ...},
/// or {-1} when this worker is not registered (it was reaped): leases are
/// only taken by registered workers, so that completion, which looks at
/// the registered workers' leases, sees every lease.
const POP: &str = r#"
local p, w = ARGV[1], ARGV[2]
local queue, req, lease, rate_key = p .. 'queue', p .. 'req', p .. 'lease:' .. w, p .. 'rate'
if not redis.call('ZSCORE', p .. 'workers', w) then return {-1} end
local max, scan, default = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local rate, burst = tonumber(ARGV[6]), tonumber(ARGV[7])
local allow = {}
for i = 8, #ARGV, 2 do allow[ARGV[i]] = tonumber(ARGV[i + 1]) end
local now = 0
if rate > 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function token(host)
  local state = redis.call('HGET', rate_key, host)
  local tokens, last = burst, now
  if state then
    local a, b = string.match(state, '(%-?[%d%.]+) (%d+)')
    tokens, last = tonumber(a) or 0, tonumber(b) or now
    -- Redis's clock may step back: no refill then, never a negative one.
    tokens = math.max(0, math.min(burst, tokens + math.max(0, now - last) * rate / 1000))
  end
  if tokens < 1 then
    redis.call('HSET', rate_key, host, string.format('%.6f %d', tokens, now))
    return false
  end
  redis.call('HSET', rate_key, host, string.format('%.6f %d', tokens - 1, now))
  return true
end
local out, taken, missing = {}, 0, 0
local cands = redis.call('ZRANGE', queue, 0, scan - 1, 'WITHSCORES')
for i = 1, #cands, 2 do
  if taken >= max then break end
  local m, s = cands[i], cands[i + 1]
  local host = string.sub(m, 49)
  local left = allow[host] or default
  if left > 0 and (rate <= 0 or token(host)) then
    allow[host] = left - 1
    redis.call('ZREM', queue, m)
    local payload = redis.call('HGET', req, m)
    if payload then
      redis.call('HSET', lease, m, s)
      out[#out + 1] = m
      out[#out + 1] = payload
      taken = taken + 1
    else
      missing = missing + 1
    end
  elseif left > 0 then
    allow[host] = 0
  end
end
local head = {redis.call('ZCARD', queue), missing}
for i = 1, #out do head[#head + 1] = out[i] end
return head
"#;

/// Acknowledge: `ARGV[3..]` are leased members whose work is done. The
/// payload goes only with a lease this worker still holds.
const ACK: &str = r#"
local p, w = ARGV[1], ARGV[2]
local req, lease = p .. 'req', p .. 'lease:' .. w
local n = 0
for i = 3, #ARGV do
  if redis.call('HDEL', lease, ARGV[i]) == 1 then
    redis.call('HDEL', req, ARGV[i])
    n = n + 1
  end
end
return n
"#;

/// Gives back leases: `ARGV[3..]` are members, or none for all of this
/// worker's. With `ARGV[3] == '*leave*'`, the worker also leaves: its
/// reservations are dropped, it is no longer a worker of the crawl, and
/// the start requests lose their owner if it was this worker, and the
/// leases given back are added to the crawl's totals
/// (`redis/leases_given_back`). Answers the number of leases given back.
const RELEASE: &str = r#"
local p, w = ARGV[1], ARGV[2]
local queue, lease = p .. 'queue', p .. 'lease:' .. w
local n = 0
local leave = ARGV[3] == '*leave*'
if #ARGV == 2 or leave then
  n = requeue_leases(p, w)
else
  for i = 3, #ARGV do
    local s = redis.call('HGET', lease, ARGV[i])
    if s then
      redis.call('HDEL', lease, ARGV[i])
      redis.call('ZADD', queue, s, ARGV[i])
      n = n + 1
    end
  end
end
if leave then
  if n > 0 then
    -- Counted in the crawl's totals here (and as reported by this
    -- worker): its last report went before.
    redis.call('HINCRBY', p .. 'stats', 'redis/leases_given_back', n)
    redis.call('HINCRBY', p .. 'stats:' .. w, 'redis/leases_given_back', n)
  end
  release_worker(p, w)
end
return n
"#;

/// Gives back leases whose children could not be pushed: `ARGV[3]` is the
/// number of members, then the members, then the fingerprints checked for
/// their children, whose reservations by this worker are dropped (so that
/// any worker redoing a parent finds its links new). Answers the number
/// of leases given back.
const GIVE_BACK: &str = r#"
local p, w = ARGV[1], ARGV[2]
local queue, lease = p .. 'queue', p .. 'lease:' .. w
local reserved, mine = p .. 'reserved', p .. 'reserved:' .. w
local n = tonumber(ARGV[3])
local given = 0
for i = 4, 3 + n do
  local s = redis.call('HGET', lease, ARGV[i])
  if s then
    redis.call('HDEL', lease, ARGV[i])
    redis.call('ZADD', queue, s, ARGV[i])
    given = given + 1
  end
end
for i = 4 + n, #ARGV do
  redis.call('SREM', mine, ARGV[i])
  if redis.call('HGET', reserved, ARGV[i]) == w then redis.call('HDEL', reserved, ARGV[i]) end
end
return given
"#;

/// Gives every lease of a worker back to the queue with its score; drops
/// a worker's reservations, registration and start-request role.
const RELEASE_WORKER: &str = r#"
local function requeue_leases(p, w)
  local lease = p .. 'lease:' .. w
  local all = redis.call('HGETALL', lease)
  for i = 1, #all, 2 do
    redis.call('ZADD', p .. 'queue', all[i + 1], all[i])
  end
  redis.call('DEL', lease)
  return #all / 2
end

local function release_worker(p, w)
  local reserved, mine = p .. 'reserved', p .. 'reserved:' .. w
  for _, fp in ipairs(redis.call('SMEMBERS', mine)) do
    if redis.call('HGET', reserved, fp) == w then redis.call('HDEL', reserved, fp) end
  end
  redis.call('DEL', mine)
  redis.call('ZREM', p .. 'workers', w)
  if redis.call('HGET', p .. 'starts', 'owner') == w then
    redis.call('HDEL', p .. 'starts', 'owner')
  end
end
"#;

/// Heartbeat: `ARGV[3]` lease time in ms, `ARGV[4]` '1' to reap. Renews
/// this worker's deadline (every lease it holds shares it), then, when
/// asked, reaps every worker whose deadline passed: its leases go back to
/// the queue with their priority and its reservations are dropped. When
/// no worker beat for half a lease time (Redis was down, or every worker
/// was cut off), every deadline is pushed back a lease time instead, so
/// live workers get the chance to renew before anyone is reaped. Answers
/// {1 if this worker was registered before, workers reaped, leases
/// requeued}.
const HEARTBEAT: &str = r#"
local p, w = ARGV[1], ARGV[2]
local ttl = tonumber(ARGV[3])
local workers = p .. 'workers'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local known = redis.call('ZSCORE', workers, w) and 1 or 0
local last = tonumber(redis.call('GET', p .. 'beat') or '0')
redis.call('SET', p .. 'beat', now)
local reaped, requeued = 0, 0
local dead = {}
if now - last > ttl / 2 then
  for _, x in ipairs(redis.call('ZRANGE', workers, 0, -1)) do
    redis.call('ZADD', workers, now + ttl, x)
  end
elseif ARGV[4] == '1' then
  dead = redis.call('ZRANGEBYSCORE', workers, '-inf', now)
end
redis.call('ZADD', workers, now + ttl, w)
for _, d in ipairs(dead) do
  requeued = requeued + requeue_leases(p, d)
  release_worker(p, d)
  reaped = reaped + 1
end
if reaped > 0 then
  redis.call('HINCRBY', p .. 'stats', 'redis/workers_reaped', reaped)
  redis.call('HINCRBY', p .. 'stats', 'redis/leases_requeued', requeued)
end
return {known, reaped, requeued}
"#;

/// The crawl's state for one worker. If the crawl is finished, {'finished',
/// reason}. If the start requests are not all queued: {'starts'} when this
/// worker owns them (taking them if nobody does, or if their owner is no
/// longer registered; only a registered worker takes them), else {'wait'}.
/// Once they are, the crawl is finished when the queue is empty and no
/// registered worker holds a lease or a reservation: marked so,
/// {'finished', 'finished'}. Otherwise {'wait'}. The queue length follows
/// in every answer but 'finished'.
const STATUS: &str = r#"
local p, w = ARGV[1], ARGV[2]
local starts, queue = p .. 'starts', p .. 'queue'
local reason = redis.call('GET', p .. 'finished')
if reason then return {'finished', reason} end
local queued = redis.call('ZCARD', queue)
if redis.call('HGET', starts, 'done') ~= '1' then
  local workers = p .. 'workers'
  local owner = redis.call('HGET', starts, 'owner')
  if owner and not redis.call('ZSCORE', workers, owner) then owner = false end
  if not owner and redis.call('ZSCORE', workers, w) then
    redis.call('HSET', starts, 'owner', w)
    owner = w
  end
  if owner == w then return {'starts', queued} end
  return {'wait', queued}
end
if queued > 0 then return {'wait', queued} end
for _, x in ipairs(redis.call('ZRANGE', p .. 'workers', 0, -1)) do
  if redis.call('EXISTS', p .. 'lease:' .. x) == 1 then return {'wait', 0} end
  if redis.call('EXISTS', p .. 'reserved:' .. x) == 1 then return {'wait', 0} end
end
redis.call('SET', p .. 'finished', 'finished')
return {'finished', 'finished'}
"#;

/// The start requests are all queued (`ARGV[3]`: how many were pulled).
const STARTS_DONE: &str = r#"
local p = ARGV[1]
redis.call('HSET', p .. 'starts', 'done', '1', 'pulled', ARGV[3])
return 1
"#;

/// Stats: `ARGV[3..]` are pairs (counter, this worker's value). Each total
/// grows by what this worker's value grew since it last reported (kept in
/// `stats:<worker>`), so a retried report adds nothing twice; a counter
/// whose name ends in `_max` or `/max` (`memusage/max`) is a maximum, and
/// its total is the largest.
const STATS: &str = r#"
local p, w = ARGV[1], ARGV[2]
local total, mine = p .. 'stats', p .. 'stats:' .. w
for i = 3, #ARGV, 2 do
  local name, value = ARGV[i], tonumber(ARGV[i + 1])
  local before = tonumber(redis.call('HGET', mine, name) or '0')
  if value > before then
    local suffix = string.sub(name, -4)
    if suffix == '_max' or suffix == '/max' then
      local top = tonumber(redis.call('HGET', total, name) or '0')
      if value > top then redis.call('HSET', total, name, value) end
    else
      redis.call('HINCRBY', total, name, value - before)
    end
    redis.call('HSET', mine, name, value)
  end
end
return 1
"#;

/// The dupe filter's shape: `ARGV[3..5]` are this worker's bits, hashes
/// and shard bits. The first worker's shape stays, and its bitmap is made
/// at its full size (when `m` is in range); answers the shape as {m, k, s}
/// as stored, or {} when the
/// crawl's shape has no shard bits (it was made by a version without the
/// exact set).
const SHAPE: &str = r#"
local key, bloom = ARGV[1] .. 'bloom:shape', ARGV[1] .. 'bloom'
if redis.call('HEXISTS', key, 'm') == 1 and redis.call('HEXISTS', key, 's') == 0 then
  return {}
end
redis.call('HSETNX', key, 'm', ARGV[3])
redis.call('HSETNX', key, 'k', ARGV[4])
redis.call('HSETNX', key, 's', ARGV[5])
local shape = redis.call('HMGET', key, 'm', 'k', 's')
-- Grown by the pushes' SETBITs instead, the string would keep up to 1 MB
-- of room past its end. A size out of range is left to the worker to
-- refuse.
local m = tonumber(shape[1])
if m and m >= 64 and m <= 4294967295 and redis.call('EXISTS', bloom) == 0 then
  redis.call('SETBIT', bloom, tonumber(shape[1]) - 1, 0)
end
return shape
"#;

/// The scripts, compiled once (each is sent by hash, and loaded again after
/// a Redis restart empties the script cache).
pub(crate) struct Scripts {
    pub check: Script,
    pub push: Script,
    pub pop: Script,
    pub ack: Script,
    pub release: Script,
    pub give_back: Script,
    pub heartbeat: Script,
    pub status: Script,
    pub starts_done: Script,
    pub stats: Script,
    pub shape: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        let with = |prelude: &[&str], body: &str| {
            let mut src = prelude.concat();
            src.push_str(body);
            Script::new(&src)
        };
        Scripts {
            check: with(&[DUPE], CHECK),
            push: with(&[DUPE], PUSH),
            pop: with(&[], POP),
            ack: with(&[], ACK),
            release: with(&[RELEASE_WORKER], RELEASE),
            give_back: with(&[], GIVE_BACK),
            heartbeat: with(&[RELEASE_WORKER], HEARTBEAT),
            status: with(&[], STATUS),
            starts_done: with(&[], STARTS_DONE),
            stats: with(&[], STATS),
            shape: with(&[], SHAPE),
        }
    }
}
