//! Download slots: the Scheduler's per-host politeness state.
//!
//! Each host has a slot: how many of its requests are downloading, the
//! delay between two request starts (the configured download delay, raised
//! by AutoThrottle, robots.txt's Crawl-delay or a rate limit), and how long
//! it must rest after a `Retry-After`. From these the Scheduler derives, at
//! each pop, how many more requests each host may take now
//! ([`SlotAllowance`]), and when to wake up if every host with waiting work
//! is resting.
//!
//! A crawl over many hosts must not keep a slot per host forever, nor look
//! at every one at each pop. A slot is *idle* once it holds nothing a fresh
//! slot would not: no request in flight, not held for robots.txt, no rest
//! or spacing still running, no cap set by a request. Idle slots are kept
//! in least-recently-idle order and only the newest
//! [`SlotConfig::idle_slots`] of them survive, so a host's learned delay
//! (AutoThrottle, Crawl-delay) outlives a short gap while an evicted host
//! starts fresh. Each pop looks only at the *listed* hosts, those whose
//! allowance may differ from a fresh host's (busy, held, resting, spacing,
//! capped, or idle with a learned delay that changes it); every slot is
//! listed or idle, or both.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::{HashMap, HashSet};

use crate::queue::SlotAllowance;

/// Per-host politeness settings.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SlotConfig {
    /// Requests downloading at once per host. Default 8.
    pub concurrency: usize,
    /// Time between two request starts to one host. Default 0.
    pub delay: Duration,
    /// Multiply each delay by a random factor in [0.5, 1.5). Default on
    /// (as Scrapy's `RANDOMIZE_DOWNLOAD_DELAY`); it only matters with a
    /// delay.
    pub randomize_delay: bool,
    /// Adjust each host's delay to its latency. Default off.
    pub autothrottle: Option<AutoThrottle>,
    /// Most requests per second per host. Default unlimited.
    pub host_rate: Option<f64>,
    /// Most requests per second over all hosts. Default unlimited.
    pub global_rate: Option<f64>,
    /// Idle slots kept, the most recently idle ones, so a host's learned
    /// delay survives a short gap; older idle slots are dropped and their
    /// hosts start fresh. Default [`IDLE_SLOTS`].
    pub idle_slots: usize,
}

/// The default number of idle slots kept: enough to remember every host of
/// a crawl over a few hundred sites, small enough (a slot is about 100
/// bytes) that a crawl over millions of hosts stays flat.
pub(crate) const IDLE_SLOTS: usize = 1024;

impl Default for SlotConfig {
    fn default() -> Self {
        SlotConfig {
            concurrency: 8,
            delay: Duration::ZERO,
            randomize_delay: true,
            autothrottle: None,
            host_rate: None,
            global_rate: None,
            idle_slots: IDLE_SLOTS,
        }
    }
}

/// AutoThrottle, as Scrapy documents it: each response moves its host's
/// delay halfway toward `latency / target_concurrency`, never below the
/// download delay nor above `max_delay`; a non-200 response may raise the
/// delay but never lower it.
#[derive(Clone, Debug, PartialEq)]
pub struct AutoThrottle {
    /// A host's delay before its first response. Default 5 s.
    pub start_delay: Duration,
    /// The highest delay. Default 60 s.
    pub max_delay: Duration,
    /// Requests each host should be handling in parallel. Default 1.0.
    pub target_concurrency: f64,
}

impl Default for AutoThrottle {
    fn default() -> Self {
        AutoThrottle {
            start_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(60),
            target_concurrency: 1.0,
        }
    }
}

#[derive(Debug)]
struct Slot {
    /// Requests of this host downloading now.
    active: usize,
    /// A lower concurrency for this host, set by a request's
    /// `max_conns_per_host` (the lowest seen wins).
    cap: Option<usize>,
    /// Current delay between starts (AutoThrottle moves it).
    delay: Duration,
    /// A floor for `delay` set by robots.txt's Crawl-delay.
    crawl_delay: Duration,
    /// No start before this (spacing by delay or rate).
    next_start: Instant,
    /// Resting after a `Retry-After` until then.
    resting_until: Option<Instant>,
    /// Held while its robots.txt is being fetched.
    held: bool,
    /// Whether its host is in `Slots::listed`, so that a pop looks at it.
    listed: bool,
    /// While idle, its number in `Slots::idle`: the entry with this number
    /// is the current one, any other entry of its host is stale.
    idle_since: Option<u64>,
}

impl Slot {
    /// A new host's slot, with delay `initial`.
    fn fresh(initial: Duration) -> Slot {
        Slot {
            active: 0,
            cap: None,
            delay: initial,
            crawl_delay: Duration::ZERO,
            // May start at once, whatever `now` the caller holds.
            next_start: far_past(),
            resting_until: None,
            held: false,
            listed: false,
            idle_since: None,
        }
    }

    /// Whether it holds nothing a fresh slot would not, apart from a
    /// learned delay: dropping it then changes nothing until its host is
    /// seen again.
    fn idle_at(&self, now: Instant) -> bool {
        self.active == 0
            && !self.held
            && self.cap.is_none()
            && self.resting_until.is_none_or(|t| t <= now)
            && self.next_start <= now
    }
}

/// The minimum time between starts, under `cfg`, for a slot with `delay`.
fn spacing(cfg: &SlotConfig, delay: Duration) -> Duration {
    let rate = cfg
        .host_rate
        .map(|r| Duration::from_secs_f64(1.0 / r))
        .unwrap_or_default();
    delay.max(rate)
}

/// How many requests `slot` may start now under `cfg`.
fn allowed(cfg: &SlotConfig, slot: &Slot, now: Instant) -> usize {
    let limit = slot.cap.map_or(cfg.concurrency, |c| c.min(cfg.concurrency));
    let free = limit.saturating_sub(slot.active);
    let resting = slot.resting_until.is_some_and(|t| now < t);
    if slot.held || resting || free == 0 || now < slot.next_start {
        return 0;
    }
    if spacing(cfg, slot.delay.max(slot.crawl_delay)).is_zero() {
        free
    } else {
        1
    }
}

/// Every slot of a crawl.
#[derive(Debug)]
pub(crate) struct Slots {
    /// Settings.
    cfg: SlotConfig,
    /// By host: the busy slots and the idle ones still kept. The key is
    /// shared with `listed` and `idle`, so moving a host between them
    /// copies no name. Looked up twice per request (its start and its
    /// end), so hashed with hashbrown's default (foldhash), not SipHash.
    slots: HashMap<Arc<str>, Slot>,
    /// The hosts whose allowance may differ from a fresh host's: the only
    /// ones a pop looks at.
    listed: HashSet<Arc<str>>,
    /// Idle slots, least recently idle first, each with its number; an
    /// entry whose number is not its slot's `idle_since` is stale.
    idle: VecDeque<(Arc<str>, u64)>,
    /// The current entries of `idle` (idle slots held).
    idle_count: usize,
    /// The next idle number.
    idle_seq: u64,
    /// The most slots held at once (the `scheduler/host_slots_max` stat).
    peak: usize,
    /// No start at all before this (the global rate limit).
    global_next: Instant,
}

impl Slots {
    pub(crate) fn new(cfg: SlotConfig) -> Self {
        Slots {
            cfg,
            slots: HashMap::new(),
            listed: HashSet::new(),
            idle: VecDeque::new(),
            idle_count: 0,
            idle_seq: 0,
            peak: 0,
            global_next: far_past(),
        }
    }

    /// Slots held now: the busy ones and the idle ones kept.
    #[cfg(test)]
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The most slots held at once.
    pub(crate) fn peak(&self) -> usize {
        self.peak
    }

    fn initial_delay(&self) -> Duration {
        match &self.cfg.autothrottle {
            Some(at) => at.start_delay.max(self.cfg.delay),
            None => self.cfg.delay,
        }
    }

    /// `host`'s slot, made if it has none, about to change: no longer
    /// idle, and listed.
    fn slot(&mut self, host: &str) -> &mut Slot {
        if !self.slots.contains_key(host) {
            let initial = self.initial_delay();
            self.slots.insert(Arc::from(host), Slot::fresh(initial));
            self.peak = self.peak.max(self.slots.len());
        }
        let (key, slot) = self.slots.get_key_value_mut(host).expect("inserted");
        if slot.idle_since.take().is_some() {
            self.idle_count -= 1;
        }
        if !slot.listed {
            slot.listed = true;
            self.listed.insert(key.clone());
        }
        slot
    }

    /// The allowance of a host with no slot.
    fn fresh(&self) -> usize {
        if spacing(&self.cfg, self.initial_delay()).is_zero() {
            self.cfg.concurrency
        } else {
            1
        }
    }

    /// Drops the oldest idle slots beyond the bound.
    fn evict(&mut self) {
        while self.idle_count > self.cfg.idle_slots {
            let Some((host, seq)) = self.idle.pop_front() else {
                break;
            };
            if self
                .slots
                .get(&host)
                .is_some_and(|s| s.idle_since == Some(seq))
            {
                let slot = self.slots.remove(&host).expect("held");
                if slot.listed {
                    self.listed.remove(&host);
                }
                self.idle_count -= 1;
            }
        }
        // Hosts that go idle and busy again leave stale entries behind.
        if self.idle.len() > 2 * self.idle_count + 64 {
            let slots = &self.slots;
            self.idle
                .retain(|(h, seq)| slots.get(h).is_some_and(|s| s.idle_since == Some(*seq)));
        }
    }

    /// How many requests the crawl may start now over all hosts (the
    /// global rate limit), and how many per host. On the way, the listed
    /// slots that went idle are marked so, and the idle slots beyond the
    /// bound are dropped.
    pub(crate) fn allowance(&mut self, now: Instant) -> (usize, SlotAllowance) {
        let global = match self.cfg.global_rate {
            Some(_) if now < self.global_next => 0,
            Some(_) => 1,
            None => usize::MAX,
        };
        let fresh = self.fresh();
        let mut allowance = SlotAllowance::uniform(fresh);
        let Slots {
            cfg,
            slots,
            listed,
            idle,
            idle_count,
            idle_seq,
            ..
        } = self;
        listed.retain(|host| {
            let slot = slots.get_mut(host).expect("a listed host has a slot");
            let n = allowed(cfg, slot, now);
            if n != fresh {
                allowance.per_slot.insert(host.to_string(), n);
            }
            if slot.idle_since.is_none() && slot.idle_at(now) {
                slot.idle_since = Some(*idle_seq);
                idle.push_back((host.clone(), *idle_seq));
                *idle_seq += 1;
                *idle_count += 1;
            }
            // An idle slot's allowance stays `n` until it is touched.
            slot.listed = slot.idle_since.is_none() || n != fresh;
            slot.listed
        });
        self.evict();
        (global, allowance)
    }

    /// Whether the global rate limit lets one more request start now.
    pub(crate) fn global_ready(&self, now: Instant) -> bool {
        self.cfg.global_rate.is_none() || now >= self.global_next
    }

    /// Whether `host` may start one more request now.
    pub(crate) fn can_start(&mut self, host: &str, now: Instant) -> bool {
        if let Some(slot) = self.slots.get(host) {
            return allowed(&self.cfg, slot, now) > 0;
        }
        self.slot(host);
        allowed(&self.cfg, &self.slots[host], now) > 0
    }

    /// Caps `host`'s concurrency (a request's `max_conns_per_host`).
    pub(crate) fn cap(&mut self, host: &str, max: usize) {
        let slot = self.slot(host);
        slot.cap = Some(slot.cap.map_or(max, |c| c.min(max)).max(1));
    }

    /// A request of `host` starts downloading.
    pub(crate) fn started(&mut self, host: &str, now: Instant) {
        self.slot(host);
        let cfg = &self.cfg;
        let slot = self.slots.get_mut(host).expect("made");
        let mut spacing = spacing(cfg, slot.delay.max(slot.crawl_delay));
        if cfg.randomize_delay && !spacing.is_zero() && cfg.host_rate.is_none() {
            spacing = spacing.mul_f64(0.5 + fastrand::f64());
        }
        slot.active += 1;
        slot.next_start = now + spacing;
        if let Some(rate) = self.cfg.global_rate {
            self.global_next = now + Duration::from_secs_f64(1.0 / rate);
        }
    }

    /// A download of `report.slot` ended.
    pub(crate) fn released(&mut self, report: &SlotReport, now: Instant) {
        let throttle = self.cfg.autothrottle.clone();
        let floor = self.cfg.delay;
        let slot = self.slot(&report.slot);
        slot.active = slot.active.saturating_sub(1);
        if let Some(wait) = report.retry_after {
            let until = now + wait;
            slot.resting_until = Some(slot.resting_until.map_or(until, |t| t.max(until)));
        }
        if let (Some(at), Some(latency)) = (throttle, report.latency) {
            let target = latency.div_f64(at.target_concurrency.max(0.01));
            let proposed = ((slot.delay + target) / 2).max(target);
            let proposed = proposed.max(floor).min(at.max_delay);
            let ok = report.status == Some(200);
            if ok || proposed > slot.delay {
                slot.delay = proposed;
            }
        }
    }

    /// Holds or releases a host (while its robots.txt is fetched).
    pub(crate) fn hold(&mut self, host: &str, held: bool) {
        self.slot(host).held = held;
    }

    /// Raises a host's delay floor (robots.txt's Crawl-delay).
    pub(crate) fn set_crawl_delay(&mut self, host: &str, delay: Duration) {
        self.slot(host).crawl_delay = delay;
    }

    /// A host's current delay.
    #[cfg(test)]
    pub(crate) fn delay_of(&self, host: &str) -> Option<Duration> {
        self.slots.get(host).map(|s| s.delay.max(s.crawl_delay))
    }

    /// Every slot held now (the busy ones and the idle ones kept), sorted
    /// by host.
    pub(crate) fn snapshot(&self, now: Instant) -> Vec<HostSlot> {
        let mut hosts: Vec<HostSlot> = self
            .slots
            .iter()
            .map(|(host, s)| HostSlot {
                host: host.to_string(),
                in_flight: s.active,
                delay_seconds: s.delay.max(s.crawl_delay).as_secs_f64(),
                resting: s.resting_until.is_some_and(|t| t > now),
            })
            .collect();
        hosts.sort_by(|a, b| a.host.cmp(&b.host));
        hosts
    }

    /// When the next host that is only resting or spacing becomes ready
    /// (the Scheduler's wake-up), if any.
    pub(crate) fn next_ready(&self, now: Instant) -> Option<Instant> {
        let mut next = (self.global_next > now).then_some(self.global_next);
        // An unlisted slot is idle: ready since it went idle.
        for slot in self.listed.iter().map(|h| &self.slots[h]) {
            if slot.held || slot.active >= self.cfg.concurrency {
                continue; // a release or the robots answer wakes it
            }
            let mut at = slot.next_start;
            if let Some(r) = slot.resting_until {
                at = at.max(r);
            }
            if at > now {
                next = Some(next.map_or(at, |n: Instant| n.min(at)));
            }
        }
        next
    }
}

/// One host's download slot as the Scheduler sees it now: what a status
/// page or `/metrics` shows per host.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct HostSlot {
    /// The slot's host.
    pub host: String,
    /// Its requests downloading now.
    pub in_flight: usize,
    /// The delay between starts now (the configured delay, AutoThrottle's
    /// or robots.txt's Crawl-delay, whichever is largest).
    pub delay_seconds: f64,
    /// Whether the host is resting after a `Retry-After`.
    pub resting: bool,
}

/// An instant before any `now` a caller may hold.
fn far_past() -> Instant {
    let now = Instant::now();
    now.checked_sub(Duration::from_secs(86_400)).unwrap_or(now)
}

/// What one exchange tells the Scheduler about its host.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct SlotReport {
    /// The download slot (the URL's host).
    pub slot: String,
    /// Time to the whole response, when there was one (AutoThrottle).
    pub latency: Option<std::time::Duration>,
    /// The response status, when there was one.
    pub status: Option<u16>,
    /// How long the host asked us to wait (`Retry-After` on 429 or 503).
    pub retry_after: Option<std::time::Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(host: &str, latency_ms: u64, status: u16) -> SlotReport {
        SlotReport {
            slot: host.into(),
            latency: Some(Duration::from_millis(latency_ms)),
            status: Some(status),
            retry_after: None,
        }
    }

    #[test]
    fn a_snapshot_shows_each_hosts_in_flight_delay_and_rest() {
        let mut s = Slots::new(SlotConfig {
            delay: Duration::from_millis(250),
            ..SlotConfig::default()
        });
        let now = Instant::now();
        s.started("b.example", now);
        s.started("a.example", now);
        s.started("a.example", now);
        s.set_crawl_delay("b.example", Duration::from_secs(2));
        s.released(
            &SlotReport {
                slot: "a.example".into(),
                latency: None,
                status: Some(429),
                retry_after: Some(Duration::from_secs(30)),
            },
            now,
        );
        let snap = s.snapshot(now);
        assert_eq!(
            snap,
            vec![
                HostSlot {
                    host: "a.example".into(),
                    in_flight: 1,
                    delay_seconds: 0.25,
                    resting: true,
                },
                HostSlot {
                    host: "b.example".into(),
                    in_flight: 1,
                    delay_seconds: 2.0,
                    resting: false,
                },
            ]
        );
    }

    #[test]
    fn concurrency_per_host_limits_the_allowance() {
        let mut s = Slots::new(SlotConfig {
            concurrency: 2,
            ..SlotConfig::default()
        });
        let now = Instant::now();
        s.started("a", now);
        s.started("a", now);
        let (global, allowance) = s.allowance(now);
        assert_eq!(global, usize::MAX);
        assert_eq!(allowance.of("a"), 0);
        assert_eq!(allowance.of("b"), 2);
        s.released(&report("a", 10, 200), now);
        assert_eq!(s.allowance(now).1.of("a"), 1);
    }

    #[test]
    fn a_request_cap_lowers_its_hosts_concurrency() {
        let mut s = Slots::new(SlotConfig::default());
        let now = Instant::now();
        s.cap("a", 2);
        s.cap("a", 5);
        assert_eq!(s.allowance(now).1.of("a"), 2);
        s.started("a", now);
        s.started("a", now);
        assert_eq!(s.allowance(now).1.of("a"), 0);
        assert_eq!(s.allowance(now).1.of("b"), 8);
    }

    #[test]
    fn a_delay_spaces_starts_one_at_a_time() {
        let mut s = Slots::new(SlotConfig {
            delay: Duration::from_millis(100),
            randomize_delay: false,
            ..SlotConfig::default()
        });
        let now = Instant::now();
        assert_eq!(s.allowance(now).1.of("a"), 1);
        s.started("a", now);
        assert_eq!(s.allowance(now).1.of("a"), 0);
        assert_eq!(s.next_ready(now), Some(now + Duration::from_millis(100)));
        assert_eq!(s.allowance(now + Duration::from_millis(100)).1.of("a"), 1);
    }

    #[test]
    fn retry_after_rests_that_host_only() {
        let mut s = Slots::new(SlotConfig::default());
        let now = Instant::now();
        s.started("a", now);
        let mut r = report("a", 10, 429);
        r.retry_after = Some(Duration::from_secs(1));
        s.released(&r, now);
        let (_, allowance) = s.allowance(now);
        assert_eq!(allowance.of("a"), 0);
        assert_eq!(allowance.of("b"), 8);
        assert_eq!(s.next_ready(now), Some(now + Duration::from_secs(1)));
        assert_eq!(s.allowance(now + Duration::from_secs(1)).1.of("a"), 8);
    }

    #[test]
    fn autothrottle_moves_toward_latency_over_target() {
        let mut s = Slots::new(SlotConfig {
            autothrottle: Some(AutoThrottle {
                start_delay: Duration::from_millis(1000),
                max_delay: Duration::from_secs(10),
                target_concurrency: 2.0,
            }),
            ..SlotConfig::default()
        });
        let now = Instant::now();
        s.started("a", now);
        assert_eq!(s.delay_of("a"), Some(Duration::from_millis(1000)));
        // latency 400 ms / target 2 = 200 ms; halfway from 1000 → 600.
        s.released(&report("a", 400, 200), now);
        assert_eq!(s.delay_of("a"), Some(Duration::from_millis(600)));
        // A 500 that would lower the delay does not.
        s.released(&report("a", 0, 500), now);
        assert_eq!(s.delay_of("a"), Some(Duration::from_millis(600)));
        // A slow error raises it: (600 + 4000) / 2 = 2300, at least 4000.
        s.released(&report("a", 8000, 500), now);
        assert_eq!(s.delay_of("a"), Some(Duration::from_millis(4000)));
    }

    #[test]
    fn rates_space_hosts_and_the_whole_crawl() {
        let mut s = Slots::new(SlotConfig {
            host_rate: Some(10.0),
            global_rate: Some(20.0),
            ..SlotConfig::default()
        });
        let now = Instant::now();
        s.started("a", now);
        let (global, allowance) = s.allowance(now);
        assert_eq!((global, allowance.of("a")), (0, 0));
        let later = now + Duration::from_millis(50);
        let (global, allowance) = s.allowance(later);
        assert_eq!((global, allowance.of("a"), allowance.of("b")), (1, 0, 1));
        assert_eq!(s.allowance(now + Duration::from_millis(100)).1.of("a"), 1);
    }

    fn bounded(idle_slots: usize) -> Slots {
        Slots::new(SlotConfig {
            idle_slots,
            ..SlotConfig::default()
        })
    }

    /// One request of `host`, started and answered at `now`.
    fn visit(s: &mut Slots, host: &str, now: Instant) {
        s.started(host, now);
        s.released(&report(host, 10, 200), now);
    }

    #[test]
    fn idle_slots_beyond_the_bound_are_dropped() {
        let mut s = bounded(16);
        let now = Instant::now();
        for i in 0..1000 {
            visit(&mut s, &format!("h{i}"), now);
            s.allowance(now);
            assert!(s.slot_count() <= 16 + 1, "{} slots", s.slot_count());
        }
        assert_eq!(s.slot_count(), 16);
        assert!(s.peak() <= 17);
        // The most recent hosts are the ones kept.
        assert!(s.delay_of("h999").is_some());
        assert!(s.delay_of("h0").is_none());
        // Nothing differs from a fresh host: a pop lists none.
        assert!(s.allowance(now).1.per_slot.is_empty());
    }

    #[test]
    fn a_resting_host_is_kept_until_its_rest_ends() {
        let mut s = bounded(2);
        let now = Instant::now();
        s.started("a", now);
        let mut r = report("a", 10, 429);
        r.retry_after = Some(Duration::from_secs(30));
        s.released(&r, now);
        for i in 0..50 {
            visit(&mut s, &format!("h{i}"), now);
            assert_eq!(s.allowance(now).1.of("a"), 0);
        }
        assert!(s.delay_of("a").is_some());
        let later = now + Duration::from_secs(30);
        assert_eq!(s.allowance(later).1.of("a"), 8);
        for i in 50..60 {
            visit(&mut s, &format!("h{i}"), later);
            s.allowance(later);
        }
        assert!(s.delay_of("a").is_none());
        assert_eq!(s.slot_count(), 2);
    }

    #[test]
    fn a_spacing_host_is_kept_until_its_delay_runs_out() {
        let mut s = Slots::new(SlotConfig {
            delay: Duration::from_millis(100),
            randomize_delay: false,
            idle_slots: 1,
            ..SlotConfig::default()
        });
        let now = Instant::now();
        visit(&mut s, "a", now);
        visit(&mut s, "b", now);
        visit(&mut s, "c", now);
        assert_eq!(s.allowance(now).1.of("a"), 0);
        assert_eq!(s.slot_count(), 3);
        let later = now + Duration::from_millis(100);
        assert_eq!(s.allowance(later).1.of("a"), 1);
        assert_eq!(s.slot_count(), 1);
    }

    #[test]
    fn an_evicted_host_starts_fresh() {
        let mut s = Slots::new(SlotConfig {
            autothrottle: Some(AutoThrottle {
                start_delay: Duration::ZERO,
                max_delay: Duration::from_secs(10),
                target_concurrency: 1.0,
            }),
            idle_slots: 4,
            ..SlotConfig::default()
        });
        let now = Instant::now();
        s.set_crawl_delay("a", Duration::from_secs(2));
        s.started("a", now);
        s.released(&report("a", 400, 200), now);
        let later = now + Duration::from_secs(5);
        // Idle but kept: its learned delay still holds it to one at a time.
        assert_eq!(s.allowance(later).1.of("a"), 1);
        assert_eq!(s.delay_of("a"), Some(Duration::from_secs(2)));
        for i in 0..4 {
            visit(&mut s, &format!("h{i}"), later);
        }
        // Their AutoThrottle spacing has run out: five idle slots.
        let later = later + Duration::from_secs(1);
        s.allowance(later);
        assert_eq!(s.delay_of("a"), None);
        assert_eq!(s.allowance(later).1.of("a"), 8);
        assert!(s.can_start("a", later));
        s.started("a", later);
        assert_eq!(s.delay_of("a"), Some(Duration::ZERO));
    }
}
