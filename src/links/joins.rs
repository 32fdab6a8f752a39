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
//! are kept per thread and origin, keyed by the value as written, so a
//! repeated one costs a hash and a copy. Every other value (relative paths, queries, fragments, other
//! schemes) is joined each time, as the page's base decides.

use std::cell::RefCell;

use hashbrown::HashMap;
use url::{Position, Url};

/// Joins remembered per origin before its table starts again: about 200
/// bytes each.
const PER_ORIGIN: usize = 256;
/// Origins remembered per thread; the oldest goes first.
const ORIGINS: usize = 8;

/// The remembered joins of one thread: per origin (the base's text up to
/// its path), the values as written and what they joined to.
#[derive(Default)]
struct Joins {
    origins: Vec<(String, HashMap<Box<str>, Url>)>,
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
        let at = match origins.iter().position(|(o, _)| o == origin) {
            Some(at) => at,
            None => {
                if origins.len() == ORIGINS {
                    origins.remove(0);
                }
                origins.push((origin.to_owned(), HashMap::new()));
                origins.len() - 1
            }
        };
        let urls = &mut origins[at].1;
        if let Some(url) = urls.get(href) {
            return Ok(url.clone());
        }
        let url = base.join(href)?;
        if urls.len() == PER_ORIGIN {
            // Starting again is cheaper than tracking use, and a site's
            // repeated links come back on its next page.
            urls.clear();
        }
        urls.insert(href.into(), url.clone());
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
            for i in 0..PER_ORIGIN + 10 {
                let href = format!("/p{i}");
                let url = join(&base, &href).unwrap();
                assert_eq!((url.host_str(), url.path()), (base.host_str(), &*href));
            }
        }
        JOINS.with(|j| {
            let origins = &j.borrow().origins;
            assert_eq!(origins.len(), ORIGINS);
            assert_eq!(origins[0].0, "http://h3.test");
            assert!(origins.iter().all(|(_, urls)| urls.len() <= PER_ORIGIN));
        });
    }
}
