//! robots.txt obedience: one fetch per origin, cached for the crawl.
//!
//! When the crawl obeys robots.txt, a request is checked just before
//! dispatch. The first request of an origin (scheme, host, port) starts a
//! fetch of its `/robots.txt` (`robots_fetch`) and waits with the others of
//! that origin until the answer is in. As the robots standard (RFC 9309)
//! says: a 2xx gives the rules (`texting_robots`), a 4xx (404 included)
//! allows everything, and an unreachable file (5xx, no answer) disallows
//! everything. A disallowed request is dropped and counted in
//! `robotstxt/forbidden`. A `Crawl-delay` becomes a floor for the host's
//! delay. The cache and the fetch know no actor: the Scheduler parks the
//! waiting requests, spawns the fetch and hands its answer to
//! [`RobotsCache::learned`] or [`RobotsCache::failed`].
//!
//! An unreachable robots.txt is fetched again after each of
//! [`RETRY_DELAYS`], its origin's requests waiting meanwhile (nothing of
//! the origin is fetched); after the last, the origin is disallowed for
//! [`UNREACHABLE_FOR`]: its waiting requests and those that come in that
//! time are dropped and counted (`robotstxt/forbidden`, of them
//! `robotstxt/forbidden_unreachable`). The next request after that fetches
//! it again.
//!
//! The cache is bounded ([`MAX_ORIGINS`]): past it, the least recently
//! used known origins are dropped, and fetched again when next needed. An
//! origin whose fetch is under way (or due again) is never dropped:
//! requests wait for it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use texting_robots::Robot;
use url::Url;

/// The most origins the cache knows (apart from those being fetched): a
/// crawl over millions of sites keeps a flat memory (a parsed robots.txt is
/// a few kilobytes), while a crawl over fewer sites fetches each once.
pub(crate) const MAX_ORIGINS: usize = 10_000;

/// The waits before fetching an unreachable robots.txt again, one per new
/// try: a server briefly overloaded gets two more chances, 2 s and then
/// 8 s later, before its origin is given up on for a while.
pub(crate) const RETRY_DELAYS: [Duration; 2] = [Duration::from_secs(2), Duration::from_secs(8)];

/// How long an origin whose robots.txt stayed unreachable through every
/// retry is disallowed before it is fetched again (10 minutes).
pub(crate) const UNREACHABLE_FOR: Duration = Duration::from_secs(600);

/// What robots.txt says about a URL right now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Fetch it.
    Allowed,
    /// Do not: its rules forbid it.
    Forbidden,
    /// Do not: its origin's robots.txt stayed unreachable, which disallows
    /// everything for a while.
    Unreachable,
    /// Its origin's robots.txt is not known yet; `fetch` is the robots URL
    /// to fetch when this is the origin's first request.
    Pending {
        /// The robots.txt to fetch, the first time.
        fetch: Option<Url>,
    },
}

/// What the cache does after a failed fetch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failed {
    /// Fetch again after this wait; the origin's requests keep waiting.
    RetryAfter(Duration),
    /// Given up for [`UNREACHABLE_FOR`]: drop the waiting requests.
    GaveUp,
}

enum Entry {
    /// Being fetched.
    Fetching,
    /// Parsed; `None` allows everything.
    Known(Option<Robot>),
    /// Unreachable `failures` times in a row; fetched again soon, requests
    /// waiting.
    Retrying { failures: usize },
    /// Unreachable through every retry: everything disallowed until then.
    Unreachable { until: Instant },
}

/// The crawl's robots.txt cache.
pub(crate) struct RobotsCache {
    /// By origin, with the tick of its last use (which origins to drop).
    origins: HashMap<String, (Entry, u64)>,
    /// Counts the uses, for the ticks.
    tick: u64,
    /// The most known origins kept.
    bound: usize,
}

impl Default for RobotsCache {
    fn default() -> Self {
        RobotsCache::new(MAX_ORIGINS)
    }
}

/// An origin's robots.txt, parsed for the crawl's User-Agent.
pub(crate) struct Rules(Robot);

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rules")
    }
}

impl Rules {
    /// `body` parsed for `user_agent`'s product token (the text before the
    /// first `/` or space: `spinneret` for `spinneret/0.1.0`); `None` when
    /// it cannot be parsed, which allows everything.
    pub(crate) fn parse(user_agent: &str, body: &[u8]) -> Option<Rules> {
        let token = user_agent
            .split(|c: char| c == '/' || c.is_whitespace())
            .next()
            .unwrap_or(user_agent);
        Robot::new(token, body).ok().map(Rules)
    }
}

/// The origin key of a URL.
pub(crate) fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

impl RobotsCache {
    /// A cache keeping at most `bound` known origins (at least one).
    pub(crate) fn new(bound: usize) -> Self {
        RobotsCache {
            origins: HashMap::new(),
            tick: 0,
            bound: bound.max(1),
        }
    }

    /// [`check`](Self::check) now.
    #[cfg(test)]
    fn check_now(&mut self, url: &Url) -> Access {
        self.check(url, Instant::now())
    }

    /// Origins held now (known or being fetched).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.origins.len()
    }

    /// Drops the least recently used known origins while there are more
    /// than the bound, down to nine tenths of it, so the sort is paid once
    /// per many new origins.
    fn shrink(&mut self) {
        if self.origins.len() <= self.bound {
            return;
        }
        let mut known: Vec<u64> = self
            .origins
            .values()
            .filter(|(e, _)| matches!(e, Entry::Known(_) | Entry::Unreachable { .. }))
            .map(|(_, t)| *t)
            .collect();
        let keep = self.bound - self.bound / 10;
        let drop = self.origins.len().saturating_sub(keep).min(known.len());
        if drop == 0 {
            return;
        }
        let (_, cut, _) = known.select_nth_unstable(drop - 1);
        let cut = *cut;
        // Ticks are unique, so exactly `drop` origins go.
        self.origins
            .retain(|_, (e, t)| matches!(e, Entry::Fetching | Entry::Retrying { .. }) || *t > cut);
    }

    /// Checks `url` at `now`; the robots.txt itself is always allowed.
    pub(crate) fn check(&mut self, url: &Url, now: Instant) -> Access {
        if url.path() == "/robots.txt" {
            return Access::Allowed;
        }
        let key = origin(url);
        self.tick += 1;
        let tick = self.tick;
        let entry = self.origins.get_mut(&key).map(|(e, t)| {
            *t = tick;
            &*e
        });
        match entry {
            Some(Entry::Known(None)) => Access::Allowed,
            Some(Entry::Known(Some(robot))) => {
                if robot.allowed(url.as_str()) {
                    Access::Allowed
                } else {
                    Access::Forbidden
                }
            }
            Some(Entry::Fetching | Entry::Retrying { .. }) => Access::Pending { fetch: None },
            Some(Entry::Unreachable { until }) if now < *until => Access::Unreachable,
            Some(Entry::Unreachable { .. }) | None => {
                self.origins.insert(key, (Entry::Fetching, tick));
                let mut robots = url.clone();
                robots.set_path("/robots.txt");
                robots.set_query(None);
                robots.set_fragment(None);
                Access::Pending {
                    fetch: Some(robots),
                }
            }
        }
    }

    /// Records that `origin`'s robots.txt could not be reached at `now`:
    /// fetch it again after a wait, or give up on it for a while.
    pub(crate) fn failed(&mut self, origin: &str, now: Instant) -> Failed {
        self.tick += 1;
        let failures = match self.origins.get(origin) {
            Some((Entry::Retrying { failures }, _)) => failures + 1,
            _ => 1,
        };
        let (entry, failed) = match RETRY_DELAYS.get(failures - 1) {
            Some(&wait) => (Entry::Retrying { failures }, Failed::RetryAfter(wait)),
            None => {
                let until = now + UNREACHABLE_FOR;
                (Entry::Unreachable { until }, Failed::GaveUp)
            }
        };
        self.origins.insert(origin.to_string(), (entry, self.tick));
        self.shrink();
        failed
    }

    /// Records the answer for `origin`: its rules, or `None` (missing,
    /// error) to allow everything. Returns the Crawl-delay, if it sets one.
    pub(crate) fn learned(&mut self, origin: &str, rules: Option<Rules>) -> Option<Duration> {
        let robot = rules.map(|Rules(robot)| robot);
        let delay = robot
            .as_ref()
            .and_then(|r| r.delay)
            .filter(|d| d.is_finite() && *d > 0.0)
            .map(|d| Duration::from_secs_f32(d.min(3600.0)));
        self.tick += 1;
        let entry = (Entry::Known(robot), self.tick);
        self.origins.insert(origin.to_string(), entry);
        self.shrink();
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_request_fetches_then_rules_apply() {
        let mut cache = RobotsCache::default();
        let u = |s: &str| Url::parse(s).unwrap();
        let Access::Pending {
            fetch: Some(robots),
        } = cache.check_now(&u("http://h:8080/a?x#y"))
        else {
            panic!("expected a fetch");
        };
        assert_eq!(robots.as_str(), "http://h:8080/robots.txt");
        assert_eq!(
            cache.check_now(&u("http://h:8080/b")),
            Access::Pending { fetch: None }
        );
        let body = b"User-agent: other\nDisallow: /\n\nUser-agent: spinneret\nDisallow: /private\nCrawl-delay: 2\n";
        let rules = Rules::parse("spinneret/0.1.0", body);
        let delay = cache.learned(&origin(&u("http://h:8080/")), rules);
        assert_eq!(delay, Some(Duration::from_secs(2)));
        assert_eq!(cache.check_now(&u("http://h:8080/b")), Access::Allowed);
        assert_eq!(
            cache.check_now(&u("http://h:8080/private/x")),
            Access::Forbidden
        );
        assert_eq!(
            cache.check_now(&u("http://h:8080/robots.txt")),
            Access::Allowed
        );
    }

    #[test]
    fn the_cache_keeps_its_bound_and_every_origin_being_fetched() {
        let mut cache = RobotsCache::new(10);
        let u = |i: usize| Url::parse(&format!("http://h{i}/x")).unwrap();
        // Five origins wait for their fetch all along.
        for i in 0..5 {
            assert!(matches!(
                cache.check_now(&u(i)),
                Access::Pending { fetch: Some(_) }
            ));
        }
        for i in 5..100 {
            assert!(matches!(
                cache.check_now(&u(i)),
                Access::Pending { fetch: Some(_) }
            ));
            cache.learned(&origin(&u(i)), None);
            assert!(cache.len() <= 10, "{} origins held", cache.len());
        }
        for i in 0..5 {
            assert_eq!(cache.check_now(&u(i)), Access::Pending { fetch: None });
        }
        // The latest known origin is kept; an early one was dropped and is
        // fetched again.
        assert_eq!(cache.check_now(&u(99)), Access::Allowed);
        assert!(matches!(
            cache.check_now(&u(5)),
            Access::Pending { fetch: Some(_) }
        ));
    }

    #[test]
    fn a_missing_robots_txt_allows_everything() {
        let mut cache = RobotsCache::default();
        let url = Url::parse("http://h/x").unwrap();
        assert!(matches!(cache.check_now(&url), Access::Pending { .. }));
        assert_eq!(cache.learned(&origin(&url), None), None);
        assert_eq!(cache.check_now(&url), Access::Allowed);
    }

    #[test]
    fn an_unreachable_robots_txt_is_retried_then_disallows_for_a_while() {
        let mut cache = RobotsCache::default();
        let url = Url::parse("http://h/x").unwrap();
        let key = origin(&url);
        let t0 = Instant::now();
        assert!(matches!(
            cache.check(&url, t0),
            Access::Pending { fetch: Some(_) }
        ));
        // Each failure but the last asks for another try; requests wait.
        for wait in RETRY_DELAYS {
            assert_eq!(cache.failed(&key, t0), Failed::RetryAfter(wait));
            assert_eq!(cache.check(&url, t0), Access::Pending { fetch: None });
        }
        assert_eq!(cache.failed(&key, t0), Failed::GaveUp);
        assert_eq!(cache.check(&url, t0), Access::Unreachable);
        let later = t0 + UNREACHABLE_FOR - Duration::from_secs(1);
        assert_eq!(cache.check(&url, later), Access::Unreachable);
        // Then it is fetched again, and a success ends it.
        let Access::Pending {
            fetch: Some(robots),
        } = cache.check(&url, t0 + UNREACHABLE_FOR)
        else {
            panic!("not fetched again");
        };
        assert_eq!(robots.as_str(), "http://h/robots.txt");
        cache.learned(&key, None);
        assert_eq!(cache.check(&url, t0 + UNREACHABLE_FOR), Access::Allowed);
        // A new failure starts the count again.
        assert_eq!(cache.failed(&key, t0), Failed::RetryAfter(RETRY_DELAYS[0]));
    }
}
