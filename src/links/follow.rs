//! Following one link of a page: [`Response::follow`] and
//! [`Response::follow_all`], which resolve hrefs as a browser does (against
//! the page's `<base href>` when it has one) and make the requests.
//!
//! They live beside the link extractor because finding a page's `<base>`
//! is the extractor's page scan (`scanner`), and a response does not know
//! about links.

use std::borrow::Cow;

use scraper::Html;
use url::Url;

use super::{doc_base, resolve_base, scanner};
use crate::error::{Error, ErrorKind, Stage};
use crate::redact;
use crate::request::{Callback, Request};
use crate::response::Response;

impl Response {
    /// A GET request for `href`, a link found in this page, with the
    /// default callback (set another with [`Request::callback`]).
    ///
    /// `href` is resolved as a browser resolves a link: against the page's
    /// first `<base href>` when an HTML page has one (itself resolved
    /// against the page URL), else against [`Response::url`]. An absolute
    /// `href` stands as it is. The fragment (`#...`) is dropped: it is never
    /// sent, and two links differing only there are one page.
    ///
    /// Fails with [`ErrorKind::InvalidUrl`] (stage `parse`, this response's
    /// URL) when `href` does not resolve to a URL, or resolves to anything
    /// but `http`/`https` with a host (`mailto:`, `javascript:`, ...).
    ///
    /// ```
    /// use spinneret::{Output, Response};
    ///
    /// # fn demo(response: &Response, out: &mut Output<()>) -> Result<(), spinneret::Error> {
    /// for href in response.css_attr("a.next", "href")? {
    ///     out.request(response.follow(&href)?);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Each call scans the page for its `<base>`: for many links at once,
    /// [`Response::follow_all`] scans it once.
    pub fn follow<C: Callback>(&self, href: &str) -> Result<Request<C>, Error> {
        self.follow_from(&self.base_url(), href)
    }

    /// GET requests for the `hrefs` of this page that can be followed, in
    /// order, resolved as [`Response::follow`] resolves one.
    ///
    /// An href that [`Response::follow`] refuses (one that does not resolve,
    /// or is not `http`/`https`: `mailto:`, `tel:`, `javascript:`) is
    /// skipped, so that one odd link does not cost the page's others (as
    /// the link extractor skips them); call [`Response::follow`] per href to
    /// have each refusal as an error. Duplicates are kept (the crawl's
    /// dupe filter drops them); for filtering and de-duplicating within the
    /// page, use a [`LinkExtractor`](crate::LinkExtractor).
    pub fn follow_all<C, I, S>(&self, hrefs: I) -> Vec<Request<C>>
    where
        C: Callback,
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let base = self.base_url();
        hrefs
            .into_iter()
            .filter_map(|href| self.follow_from(&base, href.as_ref()).ok())
            .collect()
    }

    /// Resolves `link` (relative or absolute) against this response's URL,
    /// [`Response::url`], as it stands.
    ///
    /// It does not look at the page's `<base href>`: it is the join for
    /// URLs from headers (a `Location`), JSON bodies and the like. To follow
    /// a link of an HTML page as a browser would, use [`Response::follow`]
    /// (the resolved URL is the request's `url`).
    pub fn urljoin(&self, link: &str) -> Result<Url, Error> {
        self.url
            .join(link)
            .map_err(|e| self.invalid(link, e.to_string()))
    }

    /// The request for `href` resolved against `base`.
    fn follow_from<C: Callback>(&self, base: &Url, href: &str) -> Result<Request<C>, Error> {
        let mut url = base
            .join(href)
            .map_err(|e| self.invalid(href, e.to_string()))?;
        url.set_fragment(None);
        match url.scheme() {
            "http" | "https" if url.host().is_some() => Ok(Request::try_from_url(url)?),
            "http" | "https" => Err(self.invalid(href, "no host".into())),
            other => Err(self.invalid(href, format!("unsupported scheme {other:?}"))),
        }
    }

    /// An [`ErrorKind::InvalidUrl`] for `input`, in this page's parse.
    fn invalid(&self, input: &str, reason: String) -> Error {
        Error::new(
            Stage::Parse,
            ErrorKind::InvalidUrl {
                input: redact::text(input),
                reason,
            },
        )
        .with_url(&self.url)
    }

    /// The URL this page's links resolve against: its first `<base href>`
    /// (an `http`/`https` one) when the page is HTML, else its URL. A
    /// response without a `Content-Type` is taken for HTML, as browsers do
    /// when sniffing finds markup.
    fn base_url(&self) -> Cow<'_, Url> {
        let html = self.header("content-type").is_none_or(|t| {
            let t = t.to_ascii_lowercase();
            t.contains("html")
        });
        if !html {
            return Cow::Borrowed(&self.url);
        }
        let text = self.text();
        match scanner::scan(&text, None, &[]) {
            Ok(found) => resolve_base(found.base(), &self.url),
            // The scanner fails only past a memory limit (none is set);
            // the tree parser stands behind it all the same.
            Err(_) => {
                let doc = Html::parse_document(&text);
                Cow::Owned(resolve_base(doc_base(&doc), &self.url).into_owned())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use awc::http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
    use bytes::Bytes;

    use super::*;
    use crate::response::ResponseMeta;

    /// An HTML page at `http://h/a/list?p=1` with `body`.
    fn page(body: &'static str) -> Response {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
        Response {
            url: Url::parse("http://h/a/list?p=1").unwrap(),
            status: 200,
            headers,
            body: Bytes::from_static(body.as_bytes()),
            meta: ResponseMeta::default(),
        }
    }

    fn url(r: &Response, href: &str) -> String {
        r.follow::<()>(href).unwrap().url.to_string()
    }

    #[test]
    fn follow_resolves_against_the_page() {
        let r = page("<a href=x>x</a>");
        assert_eq!(url(&r, "./detail?id=1"), "http://h/a/detail?id=1");
        assert_eq!(url(&r, "../up"), "http://h/up");
        assert_eq!(url(&r, "/root"), "http://h/root");
        assert_eq!(url(&r, "?p=2"), "http://h/a/list?p=2");
        assert_eq!(url(&r, "https://other/b"), "https://other/b");
        assert_eq!(url(&r, "//cdn/c"), "http://cdn/c");
        assert_eq!(url(&r, "item#reviews"), "http://h/a/item");
        let request: Request<()> = r.follow("x").unwrap();
        assert_eq!(request.method, awc::http::Method::GET);
    }

    #[test]
    fn follow_honours_the_pages_base_href() {
        let relative = page(r#"<head><base href="/b/c/"></head><a href="d">"#);
        assert_eq!(url(&relative, "d"), "http://h/b/c/d");
        assert_eq!(url(&relative, "/e"), "http://h/e");
        let absolute = page(r#"<BASE HREF="https://mirror/m/"><base href="/ignored/">"#);
        assert_eq!(url(&absolute, "d?q=1#f"), "https://mirror/m/d?q=1");
        assert_eq!(url(&absolute, "http://h/z"), "http://h/z");
        // A base that is not http(s) is no base: the page URL stands.
        let odd = page(r#"<base href="javascript:void(0)">"#);
        assert_eq!(url(&odd, "d"), "http://h/a/d");
        // Only HTML has a base: a JSON body quoting one does not.
        let mut json = page(r#"{"html": "<base href='/b/'>"}"#);
        json.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert_eq!(url(&json, "d"), "http://h/a/d");
    }

    #[test]
    fn follow_refuses_what_cannot_be_fetched() {
        let r = page("");
        for (href, reason) in [
            ("http://[::1", "invalid IPv6 address"),
            ("mailto:a@h", "unsupported scheme \"mailto\""),
            ("javascript:go()", "unsupported scheme \"javascript\""),
            ("http://", "empty host"),
        ] {
            let e = r.follow::<()>(href).unwrap_err();
            assert_eq!(e.stage(), Stage::Parse, "{href}");
            assert_eq!(e.url().unwrap().as_str(), "http://h/a/list?p=1");
            match e.kind() {
                ErrorKind::InvalidUrl { input, reason: why } => {
                    assert_eq!(input, href);
                    assert_eq!(why, reason, "{href}");
                }
                other => panic!("{href}: {other:?}"),
            }
        }
    }

    #[test]
    fn follow_all_keeps_the_good_links_in_order() {
        let r = page(r#"<base href="/b/">"#);
        let hrefs = ["one", "mailto:a@h", "http://[::1", "/two#x", "one"];
        let urls: Vec<String> = r
            .follow_all::<(), _, _>(hrefs)
            .into_iter()
            .map(|request| request.url.to_string())
            .collect();
        assert_eq!(urls, ["http://h/b/one", "http://h/two", "http://h/b/one"]);
        let owned: Vec<Request<()>> = r.follow_all(vec![String::from("x")]);
        assert_eq!(owned.len(), 1);
    }

    #[test]
    fn urljoin_ignores_the_base_and_says_so() {
        let r = page(r#"<base href="/b/">"#);
        assert_eq!(
            r.urljoin("./detail?id=1").unwrap().as_str(),
            "http://h/a/detail?id=1"
        );
        let e = r.urljoin("http://[::1").unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::InvalidUrl { .. }), "{e:?}");
    }
}
