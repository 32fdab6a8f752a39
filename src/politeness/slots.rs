//! Download slots: the Scheduler's per-host politeness state.
//!
//! Each host has a slot: how many of its requests are downloading, the
//! delay between two request starts (the configured download delay, raised
//! by AutoThrottle, robots.txt's Crawl-delay or a rate limit), and how long
//! it must rest after a `Retry-After`. From these the Scheduler derives, at
//! each pop, how many more requests each host may take now
//! ([`SlotAllowance`]), and when to wake up if every host with waiting work
//! is resting.

use std::collections::HashMap;
use std::time::{Duration, Instant};

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
}

impl Default for SlotConfig {
    fn default() -> Self {
        SlotConfig {
            concurrency: 8,
            delay: Duration::ZERO,
            randomize_delay: true,
            autothrottle: None,
            host_rate: None,
            global_rate: None,
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
}

/// `host`'s slot in `slots`, made (with delay `initial`) if it has none.
fn slot_in<'a>(
    slots: &'a mut HashMap<String, Slot>,
    host: &str,
    initial: Duration,
) -> &'a mut Slot {
    if !slots.contains_key(host) {
        let slot = Slot {
            active: 0,
            cap: None,
            delay: initial,
            crawl_delay: Duration::ZERO,
            // May start at once, whatever `now` the caller holds.
            next_start: far_past(),
            resting_until: None,
            held: false,
        };
        slots.insert(host.to_string(), slot);
    }
    slots.get_mut(host).expect("inserted")
}

/// The minimum time between starts, under `cfg`, for a slot with `delay`.
fn spacing(cfg: &SlotConfig, delay: Duration) -> Duration {
    let rate = cfg
        .host_rate
        .map(|r| Duration::from_secs_f64(1.0 / r))
        .unwrap_or_default();
    delay.max(rate)
}

/// Every slot of a crawl.
#[derive(Debug)]
pub(crate) struct Slots {
    /// Settings.
    cfg: SlotConfig,
    /// By host.
    slots: HashMap<String, Slot>,
    /// No start at all before this (the global rate limit).
    global_next: Instant,
}

impl Slots {
    pub(crate) fn new(cfg: SlotConfig) -> Self {
        Slots {
            cfg,
            slots: HashMap::new(),
            global_next: far_past(),
        }
    }

    fn initial_delay(&self) -> Duration {
        match &self.cfg.autothrottle {
            Some(at) => at.start_delay.max(self.cfg.delay),
            None => self.cfg.delay,
        }
    }

    fn slot(&mut self, host: &str) -> &mut Slot {
        let initial = self.initial_delay();
        slot_in(&mut self.slots, host, initial)
    }

    /// The minimum time between starts for a slot with `delay`.
    fn spacing(&self, delay: Duration) -> Duration {
        spacing(&self.cfg, delay)
    }

    fn allowed(&self, slot: &Slot, now: Instant) -> usize {
        let limit = slot
            .cap
            .map_or(self.cfg.concurrency, |c| c.min(self.cfg.concurrency));
        let free = limit.saturating_sub(slot.active);
        let resting = slot.resting_until.is_some_and(|t| now < t);
        if slot.held || resting || free == 0 || now < slot.next_start {
            return 0;
        }
        if self.spacing(slot.delay.max(slot.crawl_delay)).is_zero() {
            free
        } else {
            1
        }
    }

    /// How many requests the crawl may start now over all hosts (the
    /// global rate limit), and how many per host.
    pub(crate) fn allowance(&self, now: Instant) -> (usize, SlotAllowance) {
        let global = match self.cfg.global_rate {
            Some(_) if now < self.global_next => 0,
            Some(_) => 1,
            None => usize::MAX,
        };
        let fresh = if self.spacing(self.initial_delay()).is_zero() {
            self.cfg.concurrency
        } else {
            1
        };
        let mut allowance = SlotAllowance::uniform(fresh);
        for (host, slot) in &self.slots {
            let n = self.allowed(slot, now);
            if n != fresh {
                allowance.per_slot.insert(host.clone(), n);
            }
        }
        (global, allowance)
    }

    /// Whether the global rate limit lets one more request start now.
    pub(crate) fn global_ready(&self, now: Instant) -> bool {
        self.cfg.global_rate.is_none() || now >= self.global_next
    }

    /// Whether `host` may start one more request now.
    pub(crate) fn can_start(&mut self, host: &str, now: Instant) -> bool {
        if let Some(slot) = self.slots.get(host) {
            return self.allowed(slot, now) > 0;
        }
        self.slot(host);
        self.allowed(&self.slots[host], now) > 0
    }

    /// Caps `host`'s concurrency (a request's `max_conns_per_host`).
    pub(crate) fn cap(&mut self, host: &str, max: usize) {
        let slot = self.slot(host);
        slot.cap = Some(slot.cap.map_or(max, |c| c.min(max)).max(1));
    }

    /// A request of `host` starts downloading.
    pub(crate) fn started(&mut self, host: &str, now: Instant) {
        let initial = self.initial_delay();
        let cfg = &self.cfg;
        let slot = slot_in(&mut self.slots, host, initial);
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

    /// Every host's slot now, sorted by host.
    pub(crate) fn snapshot(&self, now: Instant) -> Vec<HostSlot> {
        let mut hosts: Vec<HostSlot> = self
            .slots
            .iter()
            .map(|(host, s)| HostSlot {
                host: host.clone(),
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
        for slot in self.slots.values() {
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
}
