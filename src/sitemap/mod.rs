//! Crawling from sitemaps: [`SitemapRules`], a spider's helper that turns
//! sitemap and robots.txt responses into requests.
//!
//! A spider gives its start requests from [`SitemapRules::start_requests`]
//! (the sitemaps, or robots.txt files whose `Sitemap:` lines name them),
//! and hands every response that comes back with the sitemap callback to
//! [`SitemapRules::parse`]. That reads the body as a stream (`read`: XML
//! `<urlset>` and `<sitemapindex>`, gzip, plain text), follows nested
//! indexes down to a bounded depth, and requests each page whose URL
//! matches a rule, with the rule's callback:
//! - `<priority>` (0.0–1.0, 0.5 when absent) becomes the request priority
//!   `round(10 × p) − 5`: −5 to 5, 0 for the default, so pages a sitemap
//!   rates higher are fetched earlier and unrated pages keep the priority
//!   of any other request;
//! - `<lastmod>`, as written, goes into the request's `meta` under
//!   [`SITEMAP_LASTMOD`], where the page's callback reads it from
//!   [`ResponseMeta::request_meta`](crate::ResponseMeta::request_meta); a
//!   re-crawl reads it there to leave out pages that have not changed
//!   since they were fetched
//!   ([`CrawlerBuilder::recrawl_sitemap_lastmod`](crate::CrawlerBuilder::recrawl_sitemap_lastmod)).
//!
//! The body is read as a stream, gzip inflated a piece at a time into the
//! XML reader, so a sitemap's text is never whole in memory. Nor are its
//! pages all requests at once: `parse` reads the sitemap through once for
//! its counts, its errors and an index's sitemaps (requested at once: few),
//! and hands the pages on as a lazy source ([`Output::requests_from`]) that
//! reads the same body again, making each page's request only as the
//! crawl's scheduler pulls it (while its queue is short of work). The body
//! (compressed, as it came) is held until then. Its decoded
//! size is held to the protocol's 50 MiB and to the body limit the response
//! was fetched under ([`ResponseMeta::body_limit`](crate::ResponseMeta::body_limit):
//! the request's `max_body`, else the crawl's), whichever is lower: a gzip
//! bomb costs that much and no more. Of a sitemap listing more than the
//! protocol's 50,000 URLs, the first 50,000 are requested and the rest
//! counted. A sitemap past a limit, malformed, or an index nested deeper
//! than allowed, makes `parse` return a [`ErrorKind::Sitemap`] error naming
//! the sitemap and what was refused (the crawl logs it once and counts it
//! in `spider_exceptions`); the requests made from what was read before it
//! are kept.
//!
//! `parse` counts what it did in the crawl's stats
//! ([`Output::count`]): `sitemap/read` (sitemaps read),
//! `sitemap/robots_txt` (robots.txt files read), `sitemap/failed`
//! (sitemaps and robots.txt files refused in whole or part),
//! `sitemap/too_large` (refused at the byte limit), `sitemap/urls` (page
//! requests made), `sitemap/sitemaps` (sitemap requests made),
//! `sitemap/urls_over_limit` (entries past the first 50,000), and the
//! entries skipped: `sitemap/skipped/bad_url`, `sitemap/skipped/too_deep`,
//! `sitemap/skipped/no_rule`, `sitemap/skipped/not_followed`.

mod read;

use std::collections::VecDeque;

use regex::Regex;
use url::Url;

use crate::error::{Error, ErrorKind, Stage};
use crate::request::{Callback, Request};
use crate::response::Response;
use crate::spider::{Output, StartRequests};

use read::{Entry, Limits};

/// The `meta` key of a page request that holds the sitemap's `<lastmod>`
/// for the page, as written (a W3C date-time such as `2024-05-01` or
/// `2024-05-01T10:00:00+00:00`); absent when the sitemap gave none.
pub const SITEMAP_LASTMOD: &str = "sitemap_lastmod";

/// The `meta` key of a sitemap request that holds how deep in nested
/// indexes it is (0 for a start request).
pub(crate) const SITEMAP_DEPTH: &str = "sitemap_depth";

/// The names of the counters [`SitemapRules::parse`] adds to the crawl's
/// stats.
mod stat {
    /// Sitemaps read (robots.txt files are not counted), whatever came of
    /// them.
    pub(super) const READ: &str = "sitemap/read";
    /// robots.txt files read for their `Sitemap:` lines.
    pub(super) const ROBOTS_TXT: &str = "sitemap/robots_txt";
    /// Sitemaps and robots.txt files whose `parse` returned an error.
    pub(super) const FAILED: &str = "sitemap/failed";
    /// Sitemaps refused at the byte limit (50 MiB or the body limit).
    pub(super) const TOO_LARGE: &str = "sitemap/too_large";
    /// Page requests made.
    pub(super) const URLS: &str = "sitemap/urls";
    /// Sitemap requests made (index entries, robots.txt lines).
    pub(super) const SITEMAPS: &str = "sitemap/sitemaps";
    /// Entries past the first 50,000 of a sitemap.
    pub(super) const URLS_OVER_LIMIT: &str = "sitemap/urls_over_limit";
    /// Entries whose `<loc>` is not an `http(s)` URL.
    pub(super) const SKIPPED_BAD_URL: &str = "sitemap/skipped/bad_url";
    /// Sitemaps listed past the depth limit.
    pub(super) const SKIPPED_TOO_DEEP: &str = "sitemap/skipped/too_deep";
    /// Pages no rule matched.
    pub(super) const SKIPPED_NO_RULE: &str = "sitemap/skipped/no_rule";
    /// Sitemaps of an index no `follow` pattern matched.
    pub(super) const SKIPPED_NOT_FOLLOWED: &str = "sitemap/skipped/not_followed";
}

/// How many levels of sitemap indexes are followed by default: an index of
/// indexes of indexes.
const DEFAULT_MAX_DEPTH: u32 = 3;

/// Sitemaps to start from and which pages they list to fetch, as Scrapy's
/// `SitemapSpider` has them.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use spinneret::{Error, Output, Response, SitemapRules, StartRequests, SITEMAP_LASTMOD};
///
/// #[derive(Clone, Debug, Default, Serialize, Deserialize)]
/// enum Cb {
///     #[default]
///     Sitemap,
///     Product,
/// }
///
/// struct Shop {
///     sitemaps: SitemapRules<Cb>,
/// }
///
/// impl spinneret::Spider for Shop {
///     type Callback = Cb;
///     fn name(&self) -> &str { "shop" }
///     fn start_requests(&self) -> StartRequests<Cb> {
///         self.sitemaps.start_requests()
///     }
///     fn parse(&self, cb: Cb, response: &Response, out: &mut Output<Cb>) -> Result<(), Error> {
///         match cb {
///             Cb::Sitemap => self.sitemaps.parse(response, out),
///             Cb::Product => {
///                 let lastmod = response.meta.request_meta.get(SITEMAP_LASTMOD);
///                 out.item(serde_json::json!({"url": response.url.as_str(), "lastmod": lastmod}));
///                 Ok(())
///             }
///         }
///     }
/// }
///
/// let sitemaps = SitemapRules::new(Cb::Sitemap, ["https://shop.example/robots.txt"])?
///     .rule("/product/", Cb::Product)?;
/// let shop = Shop { sitemaps };
/// # let _ = shop;
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SitemapRules<C> {
    /// What sitemap and robots.txt requests are made with, so the spider's
    /// `parse` sends their responses back here.
    callback: C,
    /// The sitemaps (or robots.txt files) the crawl starts from.
    starts: Vec<Url>,
    /// Page URL patterns and their callbacks, the first match winning.
    rules: Vec<(Regex, C)>,
    /// Which sitemaps of an index are followed: those matching any; all
    /// when empty.
    follow: Vec<Regex>,
    /// How many levels of nested indexes are followed.
    max_depth: u32,
    /// Whether a page's alternate-language versions are requested too.
    alternates: bool,
    /// What one sitemap may hold.
    limits: Limits,
}

impl<C: Callback> SitemapRules<C> {
    /// Rules starting from `urls`, each a sitemap (XML, gzip or text) or a
    /// robots.txt (a URL whose path is `/robots.txt`), whose responses come
    /// back with `callback`. A malformed URL is an
    /// [`ErrorKind::InvalidUrl`] naming it.
    ///
    /// With no [`rule`](Self::rule), no page is requested.
    pub fn new<I, S>(callback: C, urls: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let starts = urls
            .into_iter()
            .map(|u| Request::<C>::get(u.as_ref()).map(|r| r.url))
            .collect::<Result<_, _>>()?;
        Ok(SitemapRules {
            callback,
            starts,
            rules: Vec::new(),
            follow: Vec::new(),
            max_depth: DEFAULT_MAX_DEPTH,
            alternates: false,
            limits: Limits::default(),
        })
    }

    /// Requests the pages whose URL matches `pattern` (a regular
    /// expression, searched anywhere in the URL: `""` matches all) with
    /// `callback`. Rules are tried in the order they were added; a page
    /// no rule matches is not requested. A bad pattern is an
    /// [`ErrorKind::Config`] naming it.
    pub fn rule(mut self, pattern: &str, callback: C) -> Result<Self, Error> {
        let regex = Regex::new(pattern)
            .map_err(|e| Error::config(format!("sitemap rule {pattern:?}: {e}")))?;
        self.rules.push((regex, callback));
        Ok(self)
    }

    /// Follows only the sitemaps of an index whose URL matches `pattern`
    /// (a regular expression, searched anywhere in the URL) or the pattern
    /// of another `follow` call, as Scrapy's `sitemap_follow`; the default
    /// (no call) follows all. Sitemaps named by robots.txt or given to
    /// [`new`](Self::new) are always read. An index entry left out is
    /// counted (`sitemap/skipped/not_followed`), not an error. A bad
    /// pattern is an [`ErrorKind::Config`] naming it.
    pub fn follow(mut self, pattern: &str) -> Result<Self, Error> {
        let regex = Regex::new(pattern)
            .map_err(|e| Error::config(format!("sitemap follow pattern {pattern:?}: {e}")))?;
        self.follow.push(regex);
        Ok(self)
    }

    /// How many levels of nested sitemap indexes are followed (default 3).
    /// A sitemap listed by an index that deep is refused: `parse` returns
    /// an error naming the index.
    pub fn max_depth(mut self, depth: u32) -> Self {
        self.max_depth = depth;
        self
    }

    /// Whether the alternate-language versions a sitemap lists for a page
    /// (`<xhtml:link rel="alternate" href="…"/>` in its `<url>`) are
    /// requested too, each as a page of its own: by the first rule its URL
    /// matches, with the page's priority and no lastmod (default `false`,
    /// as Scrapy's `sitemap_alternate_links`).
    pub fn alternate_links(mut self, on: bool) -> Self {
        self.alternates = on;
        self
    }

    /// The start requests: one for each sitemap or robots.txt given.
    pub fn start_requests(&self) -> StartRequests<C> {
        let requests: Vec<Request<C>> = self
            .starts
            .iter()
            .map(|url| self.sitemap_request(url.clone(), 0))
            .collect();
        Box::new(requests.into_iter())
    }

    /// Turns a sitemap or robots.txt response into requests: for the other
    /// sitemaps it lists (robots.txt `Sitemap:` lines, index entries that
    /// [`follow`](Self::follow) allows) and for the pages a rule matches
    /// (in a crawl, as a lazy source: [`Output::requests_from`]; the
    /// counts and the error are known when `parse` returns).
    /// What it did is counted in the crawl's `sitemap/…` stats (see the
    /// module docs).
    ///
    /// An [`ErrorKind::Sitemap`] error names the sitemap and says what was
    /// refused: malformed XML or gzip, more than 50 MiB decoded or more
    /// than the response's body limit (the crawl's `max_body`, or the
    /// request's), more than 50,000 URLs (the first 50,000 are requested,
    /// the rest counted), an index nested deeper than
    /// [`max_depth`](Self::max_depth), entries whose `<loc>` is not an
    /// `http(s)` URL. The requests made before are in `out` all the same.
    pub fn parse(&self, response: &Response, out: &mut Output<C>) -> Result<(), Error> {
        let depth = response
            .meta
            .request_meta
            .get(SITEMAP_DEPTH)
            .and_then(|d| d.as_u64())
            .map_or(0, |d| u32::try_from(d).unwrap_or(u32::MAX));
        let result = if response.url.path() == "/robots.txt" {
            out.count(stat::ROBOTS_TXT, 1);
            self.parse_robots(response, depth, out)
        } else {
            out.count(stat::READ, 1);
            self.parse_sitemap(response, depth, out)
        };
        if result.is_err() {
            out.count(stat::FAILED, 1);
        }
        result
    }

    /// The sitemaps and pages a sitemap lists. The sitemap is read once
    /// here, whole, for its counts and errors and its index entries (few:
    /// requested now); its pages are requested lazily (`requests_from`),
    /// by a second reading of the same body as the crawl needs them.
    fn parse_sitemap(
        &self,
        response: &Response,
        depth: u32,
        out: &mut Output<C>,
    ) -> Result<(), Error> {
        let mut tally = Tally::default();
        let limits = self.limits.within(response.meta.body_limit);
        let read = read::read(response.body.clone(), limits, |entry| match entry {
            Entry::Sitemap { loc } => match absolute(&loc) {
                None => tally.bad(loc),
                Some(url) if !self.follows(&url) => tally.not_followed += 1,
                Some(_) if depth >= self.max_depth => tally.deep(loc),
                Some(url) => {
                    tally.sitemaps += 1;
                    out.request(self.sitemap_request(url, depth + 1));
                }
            },
            Entry::Page {
                loc, alternates, ..
            } => {
                let alternates = alternates.into_iter().filter(|_| self.alternates);
                for loc in std::iter::once(loc).chain(alternates) {
                    match absolute(&loc) {
                        None => tally.bad(loc),
                        Some(url) if rule_for(&self.rules, &url).is_some() => tally.urls += 1,
                        Some(_) => tally.no_rule += 1,
                    }
                }
            }
        });
        if tally.urls > 0 {
            out.requests_from(PageRequests {
                entries: read::Entries::new(response.body.clone(), limits),
                rules: self.rules.clone(),
                alternates: self.alternates,
                pending: VecDeque::new(),
            });
        }
        tally.over_limit = read.over_limit;
        if read.too_large {
            out.count(stat::TOO_LARGE, 1);
        }
        tally.count(out);
        let reasons = read.stopped.into_iter();
        outcome(
            &response.url,
            reasons.chain(tally.reasons(self.max_depth, limits.max_urls)),
        )
    }

    /// The sitemaps a robots.txt names.
    fn parse_robots(
        &self,
        response: &Response,
        depth: u32,
        out: &mut Output<C>,
    ) -> Result<(), Error> {
        let robot = texting_robots::Robot::new("*", &response.body)
            .map_err(|e| sitemap_error(&response.url, format!("unreadable robots.txt: {e}")))?;
        let mut tally = Tally::default();
        for loc in robot.sitemaps {
            match absolute(&loc) {
                Some(url) => {
                    tally.sitemaps += 1;
                    out.request(self.sitemap_request(url, depth));
                }
                None => tally.bad(loc),
            }
        }
        tally.count(out);
        outcome(
            &response.url,
            tally.reasons(self.max_depth, self.limits.max_urls),
        )
    }

    /// Whether a sitemap an index lists is followed.
    fn follows(&self, url: &Url) -> bool {
        self.follow.is_empty() || self.follow.iter().any(|re| re.is_match(url.as_str()))
    }

    fn sitemap_request(&self, url: Url, depth: u32) -> Request<C> {
        Request::from_url(url)
            .callback(self.callback.clone())
            .meta(SITEMAP_DEPTH, depth)
    }
}

/// The callback of the first rule `url` matches.
fn rule_for<'r, C>(rules: &'r [(Regex, C)], url: &Url) -> Option<&'r C> {
    rules
        .iter()
        .find(|(re, _)| re.is_match(url.as_str()))
        .map(|(_, callback)| callback)
}

/// The request for a page, if a rule matches it.
fn page_request<C: Callback>(
    rules: &[(Regex, C)],
    url: Url,
    lastmod: Option<String>,
    priority: Option<f64>,
) -> Option<Request<C>> {
    let callback = rule_for(rules, &url)?.clone();
    let mut request = Request::from_url(url)
        .callback(callback)
        .priority(request_priority(priority));
    if let Some(lastmod) = lastmod {
        request = request.meta(SITEMAP_LASTMOD, lastmod);
    }
    Some(request)
}

/// The page requests of one sitemap, made as they are pulled: it owns the
/// body (shared, not copied) and the reader's place in it, so a sitemap's
/// 50,000 pages are never all requests at once. It yields exactly the
/// pages `parse` counted in `sitemap/urls`: the same body read under the
/// same limits, ending where that reading ended.
struct PageRequests<C> {
    /// The reader, keeping its place between pulls.
    entries: read::Entries,
    /// The rules, cloned (a few compiled patterns, shared).
    rules: Vec<(Regex, C)>,
    /// Whether alternate-language versions are requested too.
    alternates: bool,
    /// Requests of the last entry not yet yielded (its alternates).
    pending: VecDeque<Request<C>>,
}

impl<C: Callback> Iterator for PageRequests<C> {
    type Item = Request<C>;

    fn next(&mut self) -> Option<Request<C>> {
        loop {
            if let Some(request) = self.pending.pop_front() {
                return Some(request);
            }
            let Entry::Page {
                loc,
                lastmod,
                priority,
                alternates,
            } = self.entries.next_entry()?
            else {
                continue;
            };
            let alternates = alternates.into_iter().filter(|_| self.alternates);
            let pages = std::iter::once((loc, lastmod)).chain(alternates.map(|a| (a, None)));
            for (loc, lastmod) in pages {
                let request = absolute(&loc)
                    .and_then(|url| page_request(&self.rules, url, lastmod, priority));
                self.pending.extend(request);
            }
        }
    }
}

/// The request priority for a sitemap `<priority>`: `round(10 × p) − 5`,
/// the protocol's default 0.5 when absent.
fn request_priority(priority: Option<f64>) -> i32 {
    (priority.unwrap_or(0.5) * 10.0).round() as i32 - 5
}

/// `loc` as an `http(s)` URL, if it is one.
fn absolute(loc: &str) -> Option<Url> {
    Url::parse(loc)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
}

/// Ok, or the error of `url` giving every reason.
fn outcome(url: &Url, reasons: impl Iterator<Item = String>) -> Result<(), Error> {
    let reasons: Vec<String> = reasons.collect();
    if reasons.is_empty() {
        return Ok(());
    }
    Err(sitemap_error(url, reasons.join("; ")))
}

fn sitemap_error(url: &Url, reason: String) -> Error {
    let kind = ErrorKind::Sitemap {
        sitemap: crate::redact::Redacted(url).to_string(),
        reason,
    };
    Error::new(Stage::Parse, kind).with_url(url)
}

/// What one sitemap (or robots.txt) gave, counted in the crawl's stats
/// and reported once it is read.
#[derive(Default)]
struct Tally {
    /// Page requests made.
    urls: u64,
    /// Sitemap requests made.
    sitemaps: u64,
    /// Pages no rule matched.
    no_rule: u64,
    /// Sitemaps of an index that `follow` left out.
    not_followed: u64,
    /// Entries past the URL limit.
    over_limit: usize,
    /// How many `<loc>`s were not `http(s)` URLs, and the first.
    bad: (usize, Option<String>),
    /// How many sitemaps were listed past the depth limit, and the first.
    deep: (usize, Option<String>),
}

impl Tally {
    fn bad(&mut self, loc: String) {
        self.bad.0 += 1;
        self.bad.1.get_or_insert(loc);
    }

    fn deep(&mut self, loc: String) {
        self.deep.0 += 1;
        self.deep.1.get_or_insert(loc);
    }

    /// Adds the counts to the crawl's stats.
    fn count<C: Callback>(&self, out: &mut Output<C>) {
        out.count(stat::URLS, self.urls);
        out.count(stat::SITEMAPS, self.sitemaps);
        out.count(stat::SKIPPED_NO_RULE, self.no_rule);
        out.count(stat::SKIPPED_NOT_FOLLOWED, self.not_followed);
        out.count(stat::URLS_OVER_LIMIT, self.over_limit as u64);
        out.count(stat::SKIPPED_BAD_URL, self.bad.0 as u64);
        out.count(stat::SKIPPED_TOO_DEEP, self.deep.0 as u64);
    }

    /// What was refused, for the error.
    fn reasons(self, max_depth: u32, max_urls: usize) -> impl Iterator<Item = String> {
        let over = (self.over_limit > 0).then(|| {
            format!(
                "{} URLs past the first {max_urls} (the limit of one sitemap) skipped",
                self.over_limit
            )
        });
        let bad = self.bad.1.map(|first| {
            format!(
                "{} entries whose <loc> is not an http(s) URL skipped (the first: {first:?})",
                self.bad.0
            )
        });
        let deep = self.deep.1.map(|first| {
            format!(
                "{} sitemaps nested deeper than {max_depth} indexes refused (the first: {first})",
                self.deep.0
            )
        });
        over.into_iter().chain(bad).chain(deep)
    }
}

#[cfg(test)]
mod tests;
