//! The crawl's cookie jar: RFC 6265 storage (the `cookie_store` crate)
//! behind two rules a crawler touching many sites needs.
//!
//! - No cookie for a public suffix. A `Set-Cookie` whose `Domain` is a
//!   public suffix (`co.uk`, `github.io`, ...; the list compiled into the
//!   `psl` crate) would otherwise reach every site under it. As RFC 6265
//!   §5.3 says, it is refused — unless the answering host is that suffix
//!   itself, when it becomes a host-only cookie. Refusals count
//!   `cookies/refused_public_suffix` and are logged at debug.
//! - A cap per registrable domain (`example.co.uk` for `a.example.co.uk`)
//!   and a cap on the whole jar, as browsers keep. A new cookie over either
//!   evicts the oldest held (per domain: of that domain), counting
//!   `cookies/evicted_per_domain` or `cookies/evicted_total`, so a site
//!   setting thousands of cookies costs bounded memory and still has its
//!   latest ones.
//!
//! The jar is shared by every downloader of a crawl behind one mutex, held
//! only for the bookkeeping of one response or request.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use cookie_store::{Cookie, CookieDomain, CookieStore, StoreAction};
use slog::{debug, Logger};
use url::Url;

use crate::stats::Stats;

/// How many cookies the jar holds (defaults as RFC 6265 §6.1 asks at
/// least).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CookieLimits {
    /// Cookies per registrable domain. Default 50.
    pub per_domain: usize,
    /// Cookies in the whole jar. Default 3,000.
    pub total: usize,
}

impl Default for CookieLimits {
    fn default() -> Self {
        CookieLimits {
            per_domain: 50,
            total: 3000,
        }
    }
}

/// Names one stored cookie as the store does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    /// The cookie's domain (host-only or not).
    domain: String,
    /// Its path.
    path: String,
    /// Its name.
    name: String,
}

/// The store and the order its cookies arrived in.
#[derive(Default)]
struct Held {
    /// The cookies, matched to requests by RFC 6265's rules.
    store: CookieStore,
    /// Per registrable domain, its cookies oldest first: the per-domain cap
    /// evicts the front.
    sites: HashMap<String, VecDeque<Key>>,
    /// Every cookie by arrival number, oldest first: the total cap evicts
    /// the first.
    order: BTreeMap<u64, Key>,
    /// Each held cookie's arrival number (its place in `order`).
    arrival: HashMap<Key, u64>,
    /// The next arrival number.
    next: u64,
}

/// The crawl's cookie jar (see the module's doc).
pub(crate) struct CookieJar {
    /// Everything held, behind one lock.
    held: Mutex<Held>,
    /// The caps.
    limits: CookieLimits,
    /// Where refusals and evictions are counted.
    stats: Arc<Stats>,
    /// Where they are logged.
    log: Logger,
}

impl std::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Cookie values are credentials: only the count shows.
        f.debug_struct("CookieJar")
            .field("cookies", &self.lock().arrival.len())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl CookieJar {
    /// An empty jar.
    pub(crate) fn new(limits: CookieLimits, stats: &Arc<Stats>, log: &Logger) -> Self {
        CookieJar {
            held: Mutex::default(),
            limits,
            stats: stats.clone(),
            log: log.clone(),
        }
    }

    /// The name/value pairs to send to `url`.
    pub(crate) fn values_for(&self, url: &Url) -> Vec<(String, String)> {
        self.lock()
            .store
            .get_request_values(url)
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// Takes in the `Set-Cookie` header values of a response from `url`.
    /// A cookie the store refuses (bad domain, expired, unparsable) is
    /// ignored, as browsers do.
    pub(crate) fn store<'a>(&self, set_cookies: impl Iterator<Item = &'a str>, url: &Url) {
        let mut held = self.lock();
        for text in set_cookies {
            let Ok(cookie) = Cookie::parse(text, url) else {
                continue;
            };
            if let Some(cookie) = self.admit(cookie.into_owned(), url) {
                self.insert(&mut held, cookie, url);
            }
        }
    }

    /// `cookie`, unless its `Domain` is a public suffix other than the
    /// answering host (which makes it host-only).
    fn admit(&self, mut cookie: Cookie<'static>, url: &Url) -> Option<Cookie<'static>> {
        let CookieDomain::Suffix(domain) = &cookie.domain else {
            return Some(cookie);
        };
        if !is_public_suffix(domain) {
            return Some(cookie);
        }
        if url.host_str() == Some(domain.as_str()) {
            cookie.domain = CookieDomain::host_only(url).ok()?;
            return Some(cookie);
        }
        self.stats.add_named("cookies/refused_public_suffix", 1);
        debug!(self.log, "cookie for a public suffix refused";
            "domain" => domain.as_str(), "name" => cookie.name(),
            "url" => %crate::redact::Redacted(url));
        None
    }

    fn insert(&self, held: &mut Held, cookie: Cookie<'static>, url: &Url) {
        let key = Key {
            domain: String::from(&cookie.domain),
            path: String::from(&cookie.path),
            name: cookie.name().to_string(),
        };
        match held.store.insert(cookie, url) {
            Ok(StoreAction::Inserted) => {}
            Ok(StoreAction::ExpiredExisting) => {
                // The server deleted it: it no longer takes a place.
                held.remove(&key);
                return;
            }
            Ok(StoreAction::UpdatedExisting) | Err(_) => return,
        }
        let site = site_of(&key.domain).to_string();
        held.arrival.insert(key.clone(), held.next);
        held.order.insert(held.next, key.clone());
        held.next += 1;
        held.sites.entry(site.clone()).or_default().push_back(key);
        while let Some(oldest) = held.oldest_over(&site, self.limits.per_domain) {
            self.evicted("cookies/evicted_per_domain", &oldest);
            held.remove(&oldest);
        }
        while held.arrival.len() > self.limits.total {
            let Some((_, oldest)) = held.order.pop_first() else {
                break;
            };
            self.evicted("cookies/evicted_total", &oldest);
            held.remove(&oldest);
        }
    }

    fn evicted(&self, counter: &str, key: &Key) {
        self.stats.add_named(counter, 1);
        debug!(self.log, "cookie evicted: the jar is at its cap";
            "counter" => counter, "domain" => &key.domain, "name" => &key.name,
            "per_domain" => self.limits.per_domain, "total" => self.limits.total);
    }

    /// The lock; a panic while it was held leaves at worst a cookie
    /// counted and not stored (or the reverse), so a poisoned lock is used
    /// as is.
    fn lock(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Held {
    /// The oldest cookie of `site`, when it holds more than `cap`.
    fn oldest_over(&self, site: &str, cap: usize) -> Option<Key> {
        let queue = self.sites.get(site).filter(|q| q.len() > cap)?;
        queue.front().cloned()
    }

    /// Drops `key` from the store and from the bookkeeping.
    fn remove(&mut self, key: &Key) {
        self.store.remove(&key.domain, &key.path, &key.name);
        if let Some(n) = self.arrival.remove(key) {
            self.order.remove(&n);
        }
        let site = site_of(&key.domain);
        if let Some(queue) = self.sites.get_mut(site) {
            queue.retain(|k| k != key);
            if queue.is_empty() {
                self.sites.remove(site);
            }
        }
    }
}

/// Whether `domain` is itself a public suffix the list knows.
fn is_public_suffix(domain: &str) -> bool {
    psl::suffix(domain.as_bytes())
        .is_some_and(|s| s.is_known() && s.as_bytes() == domain.as_bytes())
}

/// The registrable domain a cookie's domain counts against: its public
/// suffix plus one label, or the domain itself when it has none (an IP
/// address, `localhost`).
fn site_of(domain: &str) -> &str {
    psl::domain_str(domain).unwrap_or(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jar(limits: CookieLimits) -> (CookieJar, Arc<Stats>) {
        let stats = Arc::new(Stats::default());
        let log = Logger::root(slog::Discard, slog::o!());
        (CookieJar::new(limits, &stats, &log), stats)
    }

    fn url(u: &str) -> Url {
        Url::parse(u).unwrap()
    }

    fn names(jar: &CookieJar, u: &str) -> Vec<String> {
        let mut names: Vec<_> = jar
            .values_for(&url(u))
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_cookie_for_a_public_suffix_reaches_no_other_site() {
        let (jar, stats) = jar(CookieLimits::default());
        let from = url("http://a.co.uk/");
        jar.store(
            [
                "wide=1; Domain=co.uk",
                "wider=1; Domain=.uk",
                // Not this site's domain at all: refused as ever, uncounted.
                "pages=1; Domain=github.io",
                "own=1; Domain=a.co.uk",
                "host=1",
            ]
            .into_iter(),
            &from,
        );
        jar.store(
            ["p=1; Domain=github.io"].into_iter(),
            &url("http://x.github.io/"),
        );
        assert_eq!(stats.snapshot().get("cookies/refused_public_suffix"), 3);
        assert_eq!(names(&jar, "http://a.co.uk/"), ["host", "own"]);
        assert!(names(&jar, "http://b.co.uk/").is_empty());
        assert!(names(&jar, "http://y.github.io/").is_empty());
        // The suffix itself answering: kept, for that host alone.
        jar.store(["self=1; Domain=co.uk"].into_iter(), &url("http://co.uk/"));
        assert_eq!(names(&jar, "http://co.uk/"), ["self"]);
        assert!(names(&jar, "http://b.co.uk/").is_empty());
        assert_eq!(stats.snapshot().get("cookies/refused_public_suffix"), 3);
    }

    #[test]
    fn each_registrable_domain_keeps_its_newest_cookies_up_to_the_cap() {
        let limits = CookieLimits {
            per_domain: 50,
            total: 120,
        };
        let (jar, stats) = jar(limits);
        let sets: Vec<String> = (0..200).map(|i| format!("c{i:03}={i}")).collect();
        jar.store(
            sets.iter().map(String::as_str),
            &url("http://www.example.co.uk/"),
        );
        let held = names(&jar, "http://www.example.co.uk/");
        assert_eq!(held.len(), 50);
        assert_eq!(held.first().map(String::as_str), Some("c150"), "the newest");
        assert_eq!(stats.snapshot().get("cookies/evicted_per_domain"), 150);
        // A sibling host of the same registrable domain shares its cap.
        jar.store(
            ["shop=1; Domain=example.co.uk"].into_iter(),
            &url("http://shop.example.co.uk/"),
        );
        assert_eq!(names(&jar, "http://www.example.co.uk/").len(), 50);
        assert!(!names(&jar, "http://www.example.co.uk/").contains(&"c150".to_string()));
        assert_eq!(stats.snapshot().get("cookies/evicted_per_domain"), 151);

        // The total cap: three more sites of 30 each bring 140 > 120.
        for site in ["a.test", "b.test", "c.test"] {
            let sets: Vec<String> = (0..30).map(|i| format!("{site}{i}=1")).collect();
            jar.store(
                sets.iter().map(String::as_str),
                &url(&format!("http://{site}/")),
            );
        }
        assert_eq!(jar.lock().arrival.len(), 120);
        assert_eq!(stats.snapshot().get("cookies/evicted_total"), 20);
        // The oldest went: 20 of example.co.uk's.
        assert_eq!(names(&jar, "http://www.example.co.uk/").len(), 30);
        assert_eq!(names(&jar, "http://c.test/").len(), 30);
    }

    #[test]
    fn a_deleted_cookie_frees_its_place() {
        let (jar, stats) = jar(CookieLimits {
            per_domain: 2,
            total: 10,
        });
        let u = url("http://h.example/");
        jar.store(["a=1", "b=1"].into_iter(), &u);
        jar.store(["a=; Max-Age=0"].into_iter(), &u);
        jar.store(["c=1"].into_iter(), &u);
        assert_eq!(names(&jar, "http://h.example/"), ["b", "c"]);
        assert_eq!(stats.snapshot().get("cookies/evicted_per_domain"), 0);
        // Updating a held cookie takes no new place either.
        jar.store(["b=2"].into_iter(), &u);
        assert_eq!(jar.values_for(&u).len(), 2);
        assert_eq!(stats.snapshot().get("cookies/evicted_per_domain"), 0);
    }
}
