//! A generated site that changes between runs, so a re-crawl can be
//! measured and checked.
//!
//! Edition 0 is the site as `bench_site` renders it, less the links to
//! pages some edition removes (but their parent's). Each of the editions
//! 1 to [`EDITIONS`] changes `percent` % of the site's pages (their body
//! gains a paragraph naming the edition, with a link to a page new in
//! that edition) and removes a fifth as many leaves of the page tree,
//! answered `410 Gone` from then on; the parent of a removed page changes
//! too (its link goes), so no page still links to a removed one, as on a
//! well-kept site. Page 0 never changes. New pages have numbers from
//! `pages` on and never change. Every page is answered with an
//! `ETag` (its number and version) and a `Last-Modified` (the midnight
//! that began its edition's day), and a conditional request whose
//! validator still holds gets `304 Not Modified`, as a well-behaved server
//! does. The site keeps a clock of its own: every answer's `Date` is noon
//! of the day of the edition it serves, so a page is always fetched after
//! it last changed and before it changes again, as on a site crawled
//! daily. Its sitemaps list the live pages with that `<lastmod>`.
//!
//! The site moves from one edition to the next while it runs
//! (`set_edition`), and tells what the last step changed, so a re-crawl's
//! counts can be checked against it.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{mix, page_path};

/// The editions a changing site has.
pub const EDITIONS: u64 = 4;

/// Midnight (UTC) of the day of edition 0: 2026-01-01.
const DAY_0: u64 = 1_767_225_600;

/// The start of the day of edition `e`.
fn day(e: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(DAY_0 + e * 86_400)
}

/// What one edition changed.
struct Edition {
    /// Pages whose body changed, ascending.
    changed: Vec<u64>,
    /// Pages gone from this edition on, ascending.
    gone: Vec<u64>,
    /// The number of this edition's first new page (one per changed page,
    /// in the order of `changed`).
    first_new: u64,
}

/// The editions of a site, and which one it serves.
pub struct Changes {
    /// The site's pages in edition 0.
    pages: u64,
    /// Editions 1.. (index 0 is edition 1).
    editions: Vec<Edition>,
    /// The edition served.
    current: AtomicU64,
    /// Pages some edition removes, ascending: no page links to them but
    /// their parent, until they go.
    ever_gone: Vec<u64>,
}

/// What the site answers for a page number.
pub enum Answer {
    /// No such page in this edition.
    Missing,
    /// Gone (`410`).
    Gone,
    /// The page: its body unless the request's validator still holds.
    Page {
        etag: String,
        last_modified: String,
        /// `None`: answer `304`.
        body: Option<String>,
    },
}

/// How many of the last step's pages changed, are new and are gone, and
/// how many pages a crawl of the current edition fetches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Step {
    pub changed: u64,
    pub new: u64,
    pub gone: u64,
    /// Pages answered 200 in this edition (the old ones left, and every
    /// new one so far).
    pub live: u64,
}

impl Changes {
    /// The editions of a `pages`-page site, each changing `percent` % of
    /// the pages; edition 0 is served first.
    pub fn new(pages: u64, percent: f64) -> Self {
        let per_million = (percent * 10_000.0).round() as u64;
        let mut editions: Vec<Edition> = Vec::new();
        let mut next_new = pages;
        for e in 1..=EDITIONS {
            let (mut changed, mut gone) = (Vec::new(), Vec::new());
            for n in 1..pages {
                if editions.iter().any(|ed| ed.gone.binary_search(&n).is_ok()) {
                    continue;
                }
                // A leaf below the second level (its parent is no root,
                // and it is none of the real pages' 40 sections).
                let leaf = n.saturating_mul(10) + 1 >= pages && n > 40;
                if mix(n, 0xC4A0_0000 + e) % 1_000_000 < per_million {
                    changed.push(n);
                } else if leaf && mix(n, 0x6011_0000 + e) % 5_000_000 < per_million {
                    gone.push(n);
                }
            }
            // The parents drop their links to the pages gone.
            changed.extend(gone.iter().map(|g| (g - 1) / 10).filter(|&p| p > 0));
            changed.sort_unstable();
            changed.dedup();
            let first_new = next_new;
            next_new += changed.len() as u64;
            editions.push(Edition {
                changed,
                gone,
                first_new,
            });
        }
        let mut ever_gone: Vec<u64> = editions.iter().flat_map(|e| e.gone.clone()).collect();
        ever_gone.sort_unstable();
        Changes {
            pages,
            editions,
            current: AtomicU64::new(0),
            ever_gone,
        }
    }

    /// Page numbers that can ever be answered: for a coverage bitmap.
    pub fn capacity(&self) -> u64 {
        self.editions
            .last()
            .map_or(self.pages, |e| e.first_new + e.changed.len() as u64)
    }

    /// Serves edition `e` from now on (at most the last one made).
    pub fn set_edition(&self, e: u64) {
        assert!(e as usize <= self.editions.len(), "no edition {e}");
        self.current.store(e, Ordering::SeqCst);
    }

    /// The edition served.
    pub fn edition(&self) -> u64 {
        self.current.load(Ordering::SeqCst)
    }

    /// Editions served so far: 1..=current.
    fn served(&self) -> &[Edition] {
        &self.editions[..self.edition() as usize]
    }

    /// The site's clock: noon of the current edition's day, as an HTTP
    /// date (every answer's `Date`).
    pub fn date(&self) -> String {
        httpdate::fmt_http_date(day(self.edition()) + std::time::Duration::from_secs(43_200))
    }

    /// The editions that changed page `n` so far, each with its new
    /// page; `Err` with the answer when it is missing or gone.
    fn versions(&self, n: u64) -> Result<Vec<(u64, u64)>, Answer> {
        let served = self.served();
        let is_new = served
            .iter()
            .any(|e| n >= e.first_new && n < e.first_new + e.changed.len() as u64);
        if n >= self.pages && !is_new {
            return Err(Answer::Missing);
        }
        if served.iter().any(|e| e.gone.binary_search(&n).is_ok()) {
            return Err(Answer::Gone);
        }
        let mut versions = Vec::new();
        for (i, e) in served.iter().enumerate() {
            if let Ok(rank) = e.changed.binary_search(&n) {
                versions.push((i as u64 + 1, e.first_new + rank as u64));
            }
        }
        Ok(versions)
    }

    /// The live pages of the current edition with their sitemap
    /// `<lastmod>` (when they last changed), old ones first.
    pub fn live(&self) -> impl Iterator<Item = (u64, String)> + '_ {
        let newest = self
            .served()
            .last()
            .map_or(self.pages, |e| e.first_new + e.changed.len() as u64);
        (0..newest).filter_map(|n| {
            let version = self.versions(n).ok()?.last().map_or(0, |v| v.0);
            let at = day(version).duration_since(std::time::UNIX_EPOCH).ok()?;
            let at = chrono::DateTime::from_timestamp(i64::try_from(at.as_secs()).ok()?, 0)?;
            Some((n, at.to_rfc3339()))
        })
    }

    /// What the step to the current edition changed.
    pub fn step(&self) -> Step {
        let served = self.served();
        let gone_total: usize = served.iter().map(|e| e.gone.len()).sum();
        let new_total: usize = served.iter().map(|e| e.changed.len()).sum();
        let live = self.pages + new_total as u64 - gone_total as u64;
        match served.last() {
            None => Step {
                live,
                ..Step::default()
            },
            Some(e) => Step {
                changed: e.changed.len() as u64,
                new: e.changed.len() as u64,
                gone: e.gone.len() as u64,
                live,
            },
        }
    }

    /// The answer for page `n` of the current edition to a request with
    /// these validators.
    pub fn answer(
        &self,
        n: u64,
        if_none_match: Option<&str>,
        if_modified_since: Option<&str>,
        render: impl Fn(u64, &dyn Fn(u64) -> bool) -> String,
    ) -> Answer {
        let served = self.served();
        // The editions that changed the page, with its new page in each.
        let versions = match self.versions(n) {
            Ok(versions) => versions,
            Err(answer) => return answer,
        };
        let version = versions.last().map_or(0, |v| v.0);
        let etag = format!("\"{n}-{version}\"");
        let last_modified = httpdate::fmt_http_date(day(version));
        let fresh = match (if_none_match, if_modified_since) {
            (Some(tags), _) => tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"),
            (None, Some(since)) => httpdate::parse_http_date(since)
                .is_ok_and(|since| since >= httpdate::parse_http_date(&last_modified).unwrap()),
            (None, None) => false,
        };
        let body = (!fresh).then(|| {
            // No link to a page some edition removes, but the parent's
            // while it is there.
            let gone_now = |t: u64| served.iter().any(|e| e.gone.binary_search(&t).is_ok());
            let skip = |t: u64| {
                self.ever_gone.binary_search(&t).is_ok()
                    && (t == 0 || (t - 1) / 10 != n || gone_now(t))
            };
            let mut html = render(n, &skip);
            if !versions.is_empty() {
                let mut extra = String::new();
                for (edition, new) in &versions {
                    let _ = writeln!(
                        extra,
                        "<p>edition {edition}: <a href=\"{}\">new page</a></p>",
                        page_path(*new)
                    );
                }
                let at = html.rfind("</body>").unwrap_or(html.len());
                html.insert_str(at, &extra);
            }
            html
        });
        Answer::Page {
            etag,
            last_modified,
            body,
        }
    }
}
