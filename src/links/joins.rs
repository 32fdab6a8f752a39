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
//! are kept per thread, keyed by the base's origin and the value as
//! written, so a repeated one costs a hash and a copy. Every other value (relative paths, queries, fragments, other
//! schemes) is joined each time, as the page's base decides.

use std::cell::RefCell;

use hashbrown::HashMap;
use url::{Position, Url};

/// Joins remembered per thread before the table starts again: about 200
/// bytes each.
const CAPACITY: usize = 1024;

/// The remembered joins of one thread, and a buffer for the key.
#[derive(Default)]
struct Joins {
    /// `origin`, a NUL (which no URL holds) and the value → the joined URL.
    urls: HashMap<Box<str>, Url>,
    key: String,
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
    JOINS.with(|joins| {
        let mut joins = joins.borrow_mut();
        let Joins { urls, key } = &mut *joins;
        key.clear();
        key.push_str(&base[..Position::BeforePath]);
        key.push('\0');
        key.push_str(href);
        if let Some(url) = urls.get(key.as_str()) {
            return Ok(url.clone());
        }
        let url = base.join(href)?;
        if urls.len() >= CAPACITY {
            // Starting again is cheaper than tracking use, and a site's
            // repeated links come back on the next page.
            urls.clear();
        }
        urls.insert(key.as_str().into(), url.clone());
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
    fn a_full_table_starts_again() {
        let base = Url::parse("http://h.test/").unwrap();
        for i in 0..CAPACITY + 10 {
            let href = format!("/p{i}");
            assert_eq!(join(&base, &href).unwrap().path(), href);
        }
        JOINS.with(|j| assert!(j.borrow().urls.len() <= CAPACITY));
    }
}
