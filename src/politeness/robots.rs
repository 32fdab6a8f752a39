//! robots.txt obedience: one fetch per origin, cached for the crawl.
//!
//! When the crawl obeys robots.txt, a request is checked just before
//! dispatch. The first request of an origin (scheme, host, port) starts a
//! fetch of its `/robots.txt` and waits with the others of that origin until
//! the answer is parsed (`texting_robots`). A missing or unreadable
//! robots.txt allows everything, as in Scrapy; a disallowed request is
//! dropped and counted in `robotstxt/forbidden`. A `Crawl-delay` becomes a
//! floor for the host's delay.

use std::collections::HashMap;
use std::time::Duration;

use texting_robots::Robot;
use url::Url;

/// What robots.txt says about a URL right now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
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
    /// The user-agent token rules are matched against.
    agent: String,
    /// By origin.
    origins: HashMap<String, Entry>,
}

/// The origin key of a URL.
pub(crate) fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

impl RobotsCache {
    /// A cache matching rules for `user_agent`'s product token (the text
    /// before the first `/` or space: `spinneret` for `spinneret/0.1.0`).
    pub(crate) fn new(user_agent: &str) -> Self {
        let token = user_agent
            .split(|c: char| c == '/' || c.is_whitespace())
            .next()
            .unwrap_or(user_agent);
        RobotsCache {
            agent: token.to_string(),
            origins: HashMap::new(),
        }
    }

    /// Checks `url`; the robots.txt itself is always allowed.
    pub(crate) fn check(&mut self, url: &Url) -> Verdict {
        if url.path() == "/robots.txt" {
            return Verdict::Allowed;
        }
        let key = origin(url);
        match self.origins.get(&key) {
            Some(Entry::Known(None)) => Verdict::Allowed,
            Some(Entry::Known(Some(robot))) => {
                if robot.allowed(url.as_str()) {
                    Verdict::Allowed
                } else {
                    Verdict::Forbidden
                }
            }
            Some(Entry::Fetching) => Verdict::Pending { fetch: None },
            None => {
                self.origins.insert(key, Entry::Fetching);
                let mut robots = url.clone();
                robots.set_path("/robots.txt");
                robots.set_query(None);
                robots.set_fragment(None);
                Verdict::Pending {
                    fetch: Some(robots),
                }
            }
        }
    }

    /// Records the answer for `origin`: the body of a 2xx robots.txt, or
    /// `None` (missing, error) to allow everything. Returns the
    /// Crawl-delay, if it sets one.
    pub(crate) fn learned(&mut self, origin: &str, body: Option<&[u8]>) -> Option<Duration> {
        let robot = body.and_then(|b| Robot::new(&self.agent, b).ok());
        let delay = robot
            .as_ref()
            .and_then(|r| r.delay)
            .filter(|d| d.is_finite() && *d > 0.0)
            .map(|d| Duration::from_secs_f32(d.min(3600.0)));
        self.origins.insert(origin.to_string(), Entry::Known(robot));
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_request_fetches_then_rules_apply() {
        let mut cache = RobotsCache::new("spinneret/0.1.0");
        let u = |s: &str| Url::parse(s).unwrap();
        let Verdict::Pending {
            fetch: Some(robots),
        } = cache.check(&u("http://h:8080/a?x#y"))
        else {
            panic!("expected a fetch");
        };
        assert_eq!(robots.as_str(), "http://h:8080/robots.txt");
        assert_eq!(
            cache.check(&u("http://h:8080/b")),
            Verdict::Pending { fetch: None }
        );
        let body = b"User-agent: other\nDisallow: /\n\nUser-agent: spinneret\nDisallow: /private\nCrawl-delay: 2\n";
        let delay = cache.learned(&origin(&u("http://h:8080/")), Some(body));
        assert_eq!(delay, Some(Duration::from_secs(2)));
        assert_eq!(cache.check(&u("http://h:8080/b")), Verdict::Allowed);
        assert_eq!(
            cache.check(&u("http://h:8080/private/x")),
            Verdict::Forbidden
        );
        assert_eq!(
            cache.check(&u("http://h:8080/robots.txt")),
            Verdict::Allowed
        );
    }

    #[test]
    fn a_missing_robots_txt_allows_everything() {
        let mut cache = RobotsCache::new("spinneret");
        let url = Url::parse("http://h/x").unwrap();
        assert!(matches!(cache.check(&url), Verdict::Pending { .. }));
        assert_eq!(cache.learned(&origin(&url), None), None);
        assert_eq!(cache.check(&url), Verdict::Allowed);
    }
}
