//! Joining a page's link values to its base URL, with the joins that do not
//! depend on the page remembered.
//!
//! A site's navigation, header and footer repeat the same links on every
//! page, and joining one with the `url` crate costs about 2,000
//! instructions and a few reallocations. Two kinds of value join to the
//! same URL on every page of one origin: one starting with `/` takes at
//! most the base's scheme, user information, host and port (a
//! path-absolute `/docs/`, or a scheme-relative `//host/`), and an
//! absolute `http://` or `https://` URL takes nothing from the base. Those
//! are kept per thread and origin from their second sighting, keyed by
//! the value as written, so a repeated one costs a hash and a copy (and
//! one seen once, a hash). Every other value (relative paths, queries, fragments, other
//! schemes) is joined each time, as the page's base decides.

use std::cell::RefCell;
use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashMap, HashSet};
use url::{Position, Url};

/// Joins remembered per origin before its table starts again: about 200
/// bytes each.
const PER_ORIGIN: usize = 256;
/// Origins remembered per thread; the oldest goes first.
const ORIGINS: usize = 8;

/// Values met once remembered per origin (as hashes) before that set
/// starts again.
const ONCE: usize = 4096;

/// The remembered joins of one thread, per origin.
#[derive(Default)]
struct Joins {
    origins: Vec<Origin>,
}

/// The joins remembered for one origin.
struct Origin {
    /// The base's text up to its path.
    origin: String,
    /// Values met more than once, and what they joined to.
    urls: HashMap<Box<str>, Url>,
    /// Hashes of values met once: a value is remembered at its second
    /// sighting, so a link seen on one page only costs a hash, not copies.
    once: HashSet<u64>,
    hasher: DefaultHashBuilder,
}

impl Origin {
    fn new(origin: &str) -> Self {
        Origin {
            origin: origin.to_owned(),
            urls: HashMap::new(),
            once: HashSet::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    /// Notes that `href` joined to `url`: remembered if met before.
    fn note(&mut self, href: &str, url: &Url) {
        let hash = self.hasher.hash_one(href);
        if !self.once.remove(&hash) {
            if self.once.len() == ONCE {
                self.once.clear();
            }
            self.once.insert(hash);
            return;
        }
        if self.urls.len() == PER_ORIGIN {
            // Starting again is cheaper than tracking use, and a site's
            // repeated links come back on its next pages.
            self.urls.clear();
        }
        self.urls.insert(href.into(), url.clone());
    }
}

thread_local! {
    static JOINS: RefCell<Joins> = RefCell::new(Joins::default());
}

/// `base.join(href)`, from the thread's table when the result depends on
/// `base`'s origin only.
pub(super) fn join(base: &Url, href: &str) -> Result<Url, url::ParseError> {
    if !depends_on_origin_only(href) {
        return base.join(href);
    }
    let origin = &base[..Position::BeforePath];
    JOINS.with(|joins| {
        let origins = &mut joins.borrow_mut().origins;
        let at = match origins.iter().position(|o| o.origin == origin) {
            Some(at) => at,
            None => {
                if origins.len() == ORIGINS {
                    origins.remove(0);
                }
                origins.push(Origin::new(origin));
                origins.len() - 1
            }
        };
        let known = &mut origins[at];
        if let Some(url) = known.urls.get(href) {
            return Ok(url.clone());
        }
        let url = base.join(href)?;
        known.note(href, &url);
        Ok(url)
    })
}

/// Whether joining `href` takes nothing from a base but its origin: it
/// starts with `/` (whatever follows: the parser drops tabs and newlines
/// and reads a backslash as `/`, but the first `/` stays, and with it the
/// base's path is replaced), or it is an absolute `http://` or `https://`
/// URL.
fn depends_on_origin_only(href: &str) -> bool {
    href.starts_with('/') || href.starts_with("http://") || href.starts_with("https://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_joins_equal_fresh_ones_on_every_base() {
        let bases = [
            "http://h.test/dir/page?q=1#f",
            "http://h.test/other/",
            "https://h.test/dir/page",
            "http://h.test:8080/x",
            "http://user:pw@h.test/x",
            "http://other.test/",
        ];
        let hrefs = [
            "/a/b?x=1#y",
            "/",
            "/a/../c/./d",
            "/%7e/ü",
            "http://elsewhere.test/p",
            "https://h.test/q",
            "//proto.relative/p",
            "/\\backslash",
            "/\t/tab.test/p",
            "/\n",
            "relative",
            "?query",
            "#fragment",
            " /leading-space",
            "http:no-slashes",
            "HTTP://UPPER.test/",
        ];
        // Twice: the second round answers from the table.
        for _ in 0..2 {
            for base in bases {
                let base = Url::parse(base).unwrap();
                for href in hrefs {
                    assert_eq!(join(&base, href), base.join(href), "{base} + {href}");
                }
            }
        }
    }

    #[test]
    fn only_values_that_take_the_origin_alone_are_remembered() {
        for href in [
            "/a",
            "/",
            "//h.test/a",
            "/\\h.test",
            "/\t/h.test",
            "http://h.test/",
            "https://h.test/x",
        ] {
            assert!(depends_on_origin_only(href), "{href}");
        }
        for href in [
            "a/b",
            "../a",
            "?q",
            "#f",
            " /a",
            "\t/a",
            "http:a",
            "HTTP://h.test/",
            "",
        ] {
            assert!(!depends_on_origin_only(href), "{href}");
        }
    }

    #[test]
    fn full_tables_start_again_and_the_oldest_origin_goes_first() {
        // The tables are the thread's: start from none.
        JOINS.with(|j| j.borrow_mut().origins.clear());
        for host in 0..ORIGINS + 3 {
            let base = Url::parse(&format!("http://h{host}.test/")).unwrap();
            // Each value twice: remembered at the second sighting.
            for i in 0..PER_ORIGIN + 10 {
                let href = format!("/p{i}");
                for _ in 0..2 {
                    let url = join(&base, &href).unwrap();
                    assert_eq!((url.host_str(), url.path()), (base.host_str(), &*href));
                }
            }
        }
        JOINS.with(|j| {
            let origins = &j.borrow().origins;
            assert_eq!(origins.len(), ORIGINS);
            assert_eq!(origins[0].origin, "http://h3.test");
            // The table started again at PER_ORIGIN: the last 10 are in it.
            assert!(origins.iter().all(|o| o.urls.len() == 10));
        });
    }

    #[test]
    fn a_value_is_remembered_at_its_second_sighting() {
        JOINS.with(|j| j.borrow_mut().origins.clear());
        let base = Url::parse("http://h.test/a/b").unwrap();
        let remembered = || JOINS.with(|j| j.borrow().origins[0].urls.len());
        join(&base, "/x").unwrap();
        assert_eq!(remembered(), 0);
        join(&base, "/x").unwrap();
        assert_eq!(remembered(), 1);
        assert_eq!(join(&base, "/x").unwrap().as_str(), "http://h.test/x");
        assert_eq!(remembered(), 1);
    }
}
