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
//!   [`ResponseMeta::request_meta`](crate::ResponseMeta::request_meta).
//!
//! A sitemap over the protocol's limits (50,000 URLs, 50 MiB decoded),
//! malformed, or an index nested deeper than allowed, makes `parse` return
//! a [`ErrorKind::Sitemap`] error naming the sitemap and what was refused;
//! the requests made from what was read before it are kept.

mod read;

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
const SITEMAP_DEPTH: &str = "sitemap_depth";

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
    /// sitemaps it lists (robots.txt `Sitemap:` lines, index entries) and
    /// for the pages a rule matches.
    ///
    /// An [`ErrorKind::Sitemap`] error names the sitemap and says what was
    /// refused: malformed XML or gzip, more than 50,000 URLs or 50 MiB, an
    /// index nested deeper than [`max_depth`](Self::max_depth), entries
    /// whose `<loc>` is not an `http(s)` URL. The requests made before are
    /// in `out` all the same.
    pub fn parse(&self, response: &Response, out: &mut Output<C>) -> Result<(), Error> {
        let depth = response
            .meta
            .request_meta
            .get(SITEMAP_DEPTH)
            .and_then(|d| d.as_u64())
            .map_or(0, |d| u32::try_from(d).unwrap_or(u32::MAX));
        if response.url.path() == "/robots.txt" {
            return self.parse_robots(response, depth, out);
        }
        let mut skipped = Skipped::default();
        let read = read::read(&response.body, self.limits, |entry| match entry {
            Entry::Sitemap { loc } if depth >= self.max_depth => skipped.deep(loc),
            Entry::Sitemap { loc } => match absolute(&loc) {
                Some(url) => out.request(self.sitemap_request(url, depth + 1)),
                None => skipped.bad(loc),
            },
            Entry::Page {
                loc,
                lastmod,
                priority,
                alternates,
            } => {
                let alternates = alternates.into_iter().filter(|_| self.alternates);
                let pages = std::iter::once((loc, lastmod)).chain(alternates.map(|a| (a, None)));
                for (loc, lastmod) in pages {
                    match absolute(&loc) {
                        Some(url) => {
                            if let Some(r) = self.page_request(url, lastmod, priority) {
                                out.request(r);
                            }
                        }
                        None => skipped.bad(loc),
                    }
                }
            }
        });
        let reason = read.err().or_else(|| skipped.reason(self.max_depth));
        match reason {
            Some(reason) => Err(sitemap_error(&response.url, reason)),
            None => Ok(()),
        }
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
        let mut skipped = Skipped::default();
        for loc in robot.sitemaps {
            match absolute(&loc) {
                Some(url) => out.request(self.sitemap_request(url, depth)),
                None => skipped.bad(loc),
            }
        }
        match skipped.reason(self.max_depth) {
            Some(reason) => Err(sitemap_error(&response.url, reason)),
            None => Ok(()),
        }
    }

    fn sitemap_request(&self, url: Url, depth: u32) -> Request<C> {
        Request::from_url(url)
            .callback(self.callback.clone())
            .meta(SITEMAP_DEPTH, depth)
    }

    fn page_request(
        &self,
        url: Url,
        lastmod: Option<String>,
        priority: Option<f64>,
    ) -> Option<Request<C>> {
        let (_, callback) = self
            .rules
            .iter()
            .find(|(re, _)| re.is_match(url.as_str()))?;
        let mut request = Request::from_url(url)
            .callback(callback.clone())
            .priority(request_priority(priority));
        if let Some(lastmod) = lastmod {
            request = request.meta(SITEMAP_LASTMOD, lastmod);
        }
        Some(request)
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

fn sitemap_error(url: &Url, reason: String) -> Error {
    let kind = ErrorKind::Sitemap {
        sitemap: crate::redact::Redacted(url).to_string(),
        reason,
    };
    Error::new(Stage::Parse, kind).with_url(url)
}

/// Entries not followed, reported once the sitemap is read.
#[derive(Default)]
struct Skipped {
    /// How many `<loc>`s were not `http(s)` URLs, and the first.
    bad: (usize, Option<String>),
    /// How many sitemaps were listed past the depth limit, and the first.
    deep: (usize, Option<String>),
}

impl Skipped {
    fn bad(&mut self, loc: String) {
        self.bad.0 += 1;
        self.bad.1.get_or_insert(loc);
    }

    fn deep(&mut self, loc: String) {
        self.deep.0 += 1;
        self.deep.1.get_or_insert(loc);
    }

    fn reason(self, max_depth: u32) -> Option<String> {
        let mut parts = Vec::new();
        if let (n, Some(first)) = self.bad {
            parts.push(format!(
                "{n} entries whose <loc> is not an http(s) URL skipped (the first: {first:?})"
            ));
        }
        if let (n, Some(first)) = self.deep {
            parts.push(format!(
                "{n} sitemaps nested deeper than {max_depth} indexes refused (the first: {first})"
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

#[cfg(test)]
mod tests;
