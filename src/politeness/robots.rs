//! robots.txt obedience: one fetch per origin, cached for the crawl.
//!
//! When the crawl obeys robots.txt, a request is checked just before
//! dispatch. The first request of an origin (scheme, host, port) starts a
//! fetch of its `/robots.txt` ([`fetch`]) and waits with the others of that
//! origin until the answer is parsed (`texting_robots`). A missing or
//! unreadable robots.txt allows everything, as in Scrapy; a disallowed
//! request is dropped and counted in `robotstxt/forbidden`. A `Crawl-delay`
//! becomes a floor for the host's delay. The cache and the fetch know no
//! actor: the Scheduler parks the waiting requests, spawns the fetch and
//! hands its answer to [`RobotsCache::learned`].
//!
//! The cache is bounded ([`MAX_ORIGINS`]): past it, the least recently
//! used known origins are dropped, and fetched again when next needed. An
//! origin whose fetch is under way is never dropped: requests wait for it.

use std::collections::HashMap;
use std::time::Duration;

use texting_robots::Robot;
use url::Url;

use crate::http::thread_client;

/// The largest robots.txt read; the rest is cut off, so a huge or endless
/// one cannot hold the crawl.
const MAX_BODY: usize = 512 << 10;

/// How long a robots.txt fetch may take, body included, before its origin
/// is crawled as if it had none.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The most origins the cache knows (apart from those being fetched): a
/// crawl over millions of sites keeps a flat memory (a parsed robots.txt is
/// a few kilobytes), while a crawl over fewer sites fetches each once.
pub(crate) const MAX_ORIGINS: usize = 10_000;

/// What robots.txt says about a URL right now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Fetch it.
    Allowed,
    /// Do not.
    Forbidden,
    /// Its origin's robots.txt is not known yet; `fetch` is the robots URL
    /// to fetch when this is the origin's first request.
    Pending {
        /// The robots.txt to fetch, the first time.
        fetch: Option<Url>,
    },
}

enum Entry {
    /// Being fetched.
    Fetching,
    /// Parsed; `None` allows everything.
    Known(Option<Robot>),
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

/// What an origin's server answered for its robots.txt.
pub(crate) struct Fetched {
    /// The response status.
    pub status: u16,
    /// The rules, when the status is 2xx and the body parses; `None`
    /// allows everything.
    pub rules: Option<Rules>,
}

/// Fetches the robots.txt at `url` with `user_agent` and parses it for
/// that agent; the error says why there is no answer (unreachable, timed
/// out, unreadable body), which allows everything too.
pub(crate) async fn fetch(url: Url, user_agent: String) -> Result<Fetched, String> {
    let get = async {
        let mut resp = thread_client()
            .get(url.as_str())
            .insert_header(("user-agent", user_agent.as_str()))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body = resp
            .body()
            .limit(MAX_BODY)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((resp.status().as_u16(), body))
    };
    let (status, body) = tokio::time::timeout(FETCH_TIMEOUT, get)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))?;
    let rules = if (200..300).contains(&status) {
        Rules::parse(&user_agent, &body)
    } else {
        None
    };
    Ok(Fetched { status, rules })
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
            .filter(|(e, _)| matches!(e, Entry::Known(_)))
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
            .retain(|_, (e, t)| matches!(e, Entry::Fetching) || *t > cut);
    }

    /// Checks `url`; the robots.txt itself is always allowed.
    pub(crate) fn check(&mut self, url: &Url) -> Access {
        if url.path() == "/robots.txt" {
            return Access::Allowed;
        }
        let key = origin(url);
        self.tick += 1;
        let tick = self.tick;
        match self.origins.get_mut(&key).map(|(e, t)| {
            *t = tick;
            &*e
        }) {
            Some(Entry::Known(None)) => Access::Allowed,
            Some(Entry::Known(Some(robot))) => {
                if robot.allowed(url.as_str()) {
                    Access::Allowed
                } else {
                    Access::Forbidden
                }
            }
            Some(Entry::Fetching) => Access::Pending { fetch: None },
            None => {
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
        } = cache.check(&u("http://h:8080/a?x#y"))
        else {
            panic!("expected a fetch");
        };
        assert_eq!(robots.as_str(), "http://h:8080/robots.txt");
        assert_eq!(
            cache.check(&u("http://h:8080/b")),
            Access::Pending { fetch: None }
        );
        let body = b"User-agent: other\nDisallow: /\n\nUser-agent: spinneret\nDisallow: /private\nCrawl-delay: 2\n";
        let rules = Rules::parse("spinneret/0.1.0", body);
        let delay = cache.learned(&origin(&u("http://h:8080/")), rules);
        assert_eq!(delay, Some(Duration::from_secs(2)));
        assert_eq!(cache.check(&u("http://h:8080/b")), Access::Allowed);
        assert_eq!(
            cache.check(&u("http://h:8080/private/x")),
            Access::Forbidden
        );
        assert_eq!(cache.check(&u("http://h:8080/robots.txt")), Access::Allowed);
    }

    #[test]
    fn the_cache_keeps_its_bound_and_every_origin_being_fetched() {
        let mut cache = RobotsCache::new(10);
        let u = |i: usize| Url::parse(&format!("http://h{i}/x")).unwrap();
        // Five origins wait for their fetch all along.
        for i in 0..5 {
            assert!(matches!(
                cache.check(&u(i)),
                Access::Pending { fetch: Some(_) }
            ));
        }
        for i in 5..100 {
            assert!(matches!(
                cache.check(&u(i)),
                Access::Pending { fetch: Some(_) }
            ));
            cache.learned(&origin(&u(i)), None);
            assert!(cache.len() <= 10, "{} origins held", cache.len());
        }
        for i in 0..5 {
            assert_eq!(cache.check(&u(i)), Access::Pending { fetch: None });
        }
        // The latest known origin is kept; an early one was dropped and is
        // fetched again.
        assert_eq!(cache.check(&u(99)), Access::Allowed);
        assert!(matches!(
            cache.check(&u(5)),
            Access::Pending { fetch: Some(_) }
        ));
    }

    #[test]
    fn a_missing_robots_txt_allows_everything() {
        let mut cache = RobotsCache::default();
        let url = Url::parse("http://h/x").unwrap();
        assert!(matches!(cache.check(&url), Access::Pending { .. }));
        assert_eq!(cache.learned(&origin(&url), None), None);
        assert_eq!(cache.check(&url), Access::Allowed);
    }
}
