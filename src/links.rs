//! Finding the links a spider follows in an HTML page.
//!
//! A [`LinkExtractor`] is built once (usually a field of the spider) and
//! applied to each response: it reads the URL attributes of the chosen tags
//! (`a[href]` and `area[href]` by default), resolves them against the page
//! (its `<base href>` included), drops fragments and anything that is not
//! `http`/`https`, filters by pattern and domain, and de-duplicates within
//! the page keeping document order. De-duplication across pages is the
//! crawl's dupe filter's job, not this one's.
//!
//! ```
//! use spinneret::{LinkExtractor, Output, Response};
//!
//! # fn demo(response: &Response, out: &mut Output<()>) -> Result<(), spinneret::Error> {
//! let links = LinkExtractor::builder()
//!     .same_domain(true)
//!     .deny([r"/logout\b", r"\?sort="])
//!     .build()?;
//! for request in links.requests(response) {
//!     out.request(request);
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::HashSet;

use regex::Regex;
use scraper::{Html, Selector};
use url::Url;

use crate::error::{Error, ErrorKind, Stage};
use crate::request::Request;
use crate::response::Response;
use crate::spider::Callback;

/// Extracts followable links from HTML responses; see the module docs.
///
/// The default extractor (`LinkExtractor::default()`) keeps every `http`
/// and `https` link of `a[href]` and `area[href]`.
#[derive(Clone, Debug)]
pub struct LinkExtractor {
    allow: Vec<Regex>,
    deny: Vec<Regex>,
    allow_domains: Vec<String>,
    same_domain: bool,
    tags: Vec<String>,
    attrs: Vec<String>,
}

/// Configures a [`LinkExtractor`]; patterns are checked by
/// [`LinkExtractorBuilder::build`].
#[derive(Clone, Debug)]
pub struct LinkExtractorBuilder {
    allow: Vec<String>,
    deny: Vec<String>,
    allow_domains: Vec<String>,
    same_domain: bool,
    tags: Vec<String>,
    attrs: Vec<String>,
}

impl Default for LinkExtractorBuilder {
    fn default() -> Self {
        LinkExtractorBuilder {
            allow: Vec::new(),
            deny: Vec::new(),
            allow_domains: Vec::new(),
            same_domain: false,
            tags: vec!["a".into(), "area".into()],
            attrs: vec!["href".into()],
        }
    }
}

impl Default for LinkExtractor {
    fn default() -> Self {
        LinkExtractorBuilder::default()
            .build()
            .expect("the default extractor has no patterns to reject")
    }
}

impl LinkExtractorBuilder {
    /// Keeps only links whose absolute URL matches at least one of these
    /// regular expressions (searched anywhere in the URL, as in Scrapy).
    /// Adds to patterns given before; none means every link is allowed.
    pub fn allow<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allow.extend(patterns.into_iter().map(Into::into));
        self
    }

    /// Drops links whose absolute URL matches any of these regular
    /// expressions; deny wins over allow. Adds to patterns given before.
    pub fn deny<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.deny.extend(patterns.into_iter().map(Into::into));
        self
    }

    /// Keeps only links to these hosts or their subdomains (`example.com`
    /// allows `www.example.com`). Adds to domains given before; none means
    /// any host.
    pub fn allow_domains<I, S>(mut self, domains: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allow_domains
            .extend(domains.into_iter().map(|d| d.into().to_ascii_lowercase()));
        self
    }

    /// Keeps only links to the response's own host (scheme and port are not
    /// compared). Off by default.
    pub fn same_domain(mut self, on: bool) -> Self {
        self.same_domain = on;
        self
    }

    /// The element names whose attributes are read (default `a`, `area`);
    /// replaces the previous list.
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags
            .into_iter()
            .map(|t| t.into().to_ascii_lowercase())
            .collect();
        self
    }

    /// The attributes read on those elements (default `href`); replaces
    /// the previous list.
    pub fn attrs<I, S>(mut self, attrs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.attrs = attrs
            .into_iter()
            .map(|a| a.into().to_ascii_lowercase())
            .collect();
        self
    }

    /// Compiles the patterns.
    ///
    /// Fails with [`ErrorKind::Config`] (stage `setup`) naming the first
    /// pattern that is not a valid regular expression.
    pub fn build(self) -> Result<LinkExtractor, Error> {
        Ok(LinkExtractor {
            allow: compile("allow", &self.allow)?,
            deny: compile("deny", &self.deny)?,
            allow_domains: self.allow_domains,
            same_domain: self.same_domain,
            tags: self.tags,
            attrs: self.attrs,
        })
    }
}

fn compile(which: &str, patterns: &[String]) -> Result<Vec<Regex>, Error> {
    patterns
        .iter()
        .map(|p| {
            Regex::new(p).map_err(|e| {
                Error::new(
                    Stage::Setup,
                    ErrorKind::Config(format!("link extractor {which} pattern {p:?}: {e}")),
                )
            })
        })
        .collect()
}

impl LinkExtractor {
    /// A builder with the defaults (every `http`/`https` link of `a[href]`
    /// and `area[href]`).
    pub fn builder() -> LinkExtractorBuilder {
        LinkExtractorBuilder::default()
    }

    /// The links of `response` that pass the filters: absolute, without
    /// fragment, each once, in document order.
    ///
    /// Parses the body; a callback that already holds the parsed page can
    /// use [`LinkExtractor::extract_from`] instead.
    pub fn extract(&self, response: &Response) -> Vec<Url> {
        self.extract_from(&response.html(), &response.url)
    }

    /// Like [`LinkExtractor::extract`], over an already parsed document
    /// fetched from `page_url`.
    pub fn extract_from(&self, doc: &Html, page_url: &Url) -> Vec<Url> {
        let base = base_url(doc, page_url);
        let mut seen = HashSet::new();
        let mut links = Vec::new();
        for el in doc.root_element().descendent_elements() {
            let el = el.value();
            if !self.tags.iter().any(|t| t == el.name()) {
                continue;
            }
            for attr in &self.attrs {
                let Some(href) = el.attr(attr) else { continue };
                // Unparseable hrefs are skipped: a page's typo must not
                // fail the whole callback.
                let Ok(mut url) = base.join(href) else {
                    continue;
                };
                // This also drops javascript:, mailto:, tel:, data: and
                // the like; http(s) URLs always have a host.
                if !matches!(url.scheme(), "http" | "https") {
                    continue;
                }
                url.set_fragment(None);
                if self.keeps(&url, page_url) && seen.insert(url.clone()) {
                    links.push(url);
                }
            }
        }
        links
    }

    /// GET requests for [`LinkExtractor::extract`]'s links, with the
    /// default callback: set another with `Request::callback`.
    pub fn requests<C: Callback>(&self, response: &Response) -> Vec<Request<C>> {
        self.extract(response)
            .into_iter()
            // Cannot fail: every extracted URL is http(s) with a host.
            .filter_map(|url| Request::try_from_url(url).ok())
            .collect()
    }

    /// Whether `url` passes the domain and pattern filters.
    fn keeps(&self, url: &Url, page_url: &Url) -> bool {
        let host = url.host_str().unwrap_or_default();
        if self.same_domain && Some(host) != page_url.host_str() {
            return false;
        }
        if !self.allow_domains.is_empty()
            && !self.allow_domains.iter().any(|d| {
                host == d
                    || host
                        .strip_suffix(d.as_str())
                        .is_some_and(|sub| sub.ends_with('.'))
            })
        {
            return false;
        }
        let text = url.as_str();
        (self.allow.is_empty() || self.allow.iter().any(|r| r.is_match(text)))
            && !self.deny.iter().any(|r| r.is_match(text))
    }
}

/// The URL relative links resolve against: the first `<base href>`
/// resolved against the page URL, as browsers do, else the page URL.
fn base_url(doc: &Html, page_url: &Url) -> Url {
    let selector = Selector::parse("base[href]").expect("a valid selector");
    doc.select(&selector)
        .next()
        .and_then(|base| page_url.join(base.value().attr("href")?).ok())
        .filter(|base| matches!(base.scheme(), "http" | "https"))
        .unwrap_or_else(|| page_url.clone())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::response::ResponseMeta;

    fn page(url: &str, body: &str) -> Response {
        Response {
            url: Url::parse(url).unwrap(),
            status: 200,
            headers: Default::default(),
            body: Bytes::from(body.to_string()),
            meta: ResponseMeta::default(),
        }
    }

    fn strings(urls: Vec<Url>) -> Vec<String> {
        urls.into_iter().map(String::from).collect()
    }

    const SITE: &str = r#"<html><body>
        <a href="/a">a</a>
        <a href="b/c?x=1">relative</a>
        <a href="../up">up</a>
        <a href="http://h.test/a#top">a again, with a fragment</a>
        <a href="https://other.test/x">other host</a>
        <a href="http://sub.h.test/s">subdomain</a>
        <a href="javascript:void(0)">js</a>
        <a href="mailto:me@h.test">mail</a>
        <a href="tel:+123">tel</a>
        <a href="data:text/plain,hi">data</a>
        <a href="http://[::1">unparseable</a>
        <a>no href</a>
        <map><area href="/area" alt="area"></map>
        <link href="/style.css" rel="stylesheet">
        <a href="/logout">logout</a>
    </body></html>"#;

    #[test]
    fn defaults_resolve_dedupe_and_keep_order() {
        let r = page("http://h.test/dir/page", SITE);
        assert_eq!(
            strings(LinkExtractor::default().extract(&r)),
            [
                "http://h.test/a",
                "http://h.test/dir/b/c?x=1",
                "http://h.test/up",
                "https://other.test/x",
                "http://sub.h.test/s",
                "http://h.test/area",
                "http://h.test/logout",
            ]
        );
    }

    #[test]
    fn allow_and_deny_patterns() {
        let r = page("http://h.test/dir/page", SITE);
        let links = LinkExtractor::builder()
            .allow([r"h\.test/"])
            .deny(["/logout$", r"\?x="])
            .build()
            .unwrap();
        assert_eq!(
            strings(links.extract(&r)),
            [
                "http://h.test/a",
                "http://h.test/up",
                "http://sub.h.test/s",
                "http://h.test/area",
            ]
        );
    }

    #[test]
    fn same_domain_and_allow_domains() {
        let r = page("http://h.test:8080/dir/page", SITE);
        let same = LinkExtractor::builder().same_domain(true).build().unwrap();
        assert_eq!(
            strings(same.extract(&r)),
            [
                "http://h.test:8080/a",
                "http://h.test:8080/dir/b/c?x=1",
                "http://h.test:8080/up",
                "http://h.test/a",
                "http://h.test:8080/area",
                "http://h.test:8080/logout",
            ]
        );
        let domains = LinkExtractor::builder()
            .allow_domains(["H.test"])
            .deny(["h.test:8080"])
            .build()
            .unwrap();
        assert_eq!(
            strings(domains.extract(&r)),
            ["http://h.test/a", "http://sub.h.test/s"]
        );
    }

    #[test]
    fn base_href_is_respected() {
        let r = page(
            "http://h.test/dir/page",
            r#"<html><head><base href="/other/"><base href="/ignored/"></head>
               <body><a href="x">x</a><a href="/abs">abs</a><a href="">self</a></body></html>"#,
        );
        assert_eq!(
            strings(LinkExtractor::default().extract(&r)),
            [
                "http://h.test/other/x",
                "http://h.test/abs",
                "http://h.test/other/"
            ]
        );
        // A base that is not http(s) is not used.
        let r = page(
            "http://h.test/dir/page",
            r#"<base href="javascript:x"><a href="y">y</a>"#,
        );
        assert_eq!(
            strings(LinkExtractor::default().extract(&r)),
            ["http://h.test/dir/y"]
        );
    }

    #[test]
    fn tags_and_attrs_are_configurable() {
        let r = page("http://h.test/", SITE);
        let links = LinkExtractor::builder()
            .tags(["LINK"])
            .attrs(["href"])
            .build()
            .unwrap();
        assert_eq!(strings(links.extract(&r)), ["http://h.test/style.css"]);
    }

    #[test]
    fn bad_patterns_fail_at_build() {
        let e = LinkExtractor::builder()
            .allow(["ok"])
            .deny(["(unclosed"])
            .build()
            .unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Config(_)), "{e}");
        assert_eq!(e.stage(), Stage::Setup);
        assert!(e.to_string().contains("deny pattern \"(unclosed\""), "{e}");
    }

    #[test]
    fn requests_carry_the_links() {
        let r = page(
            "http://h.test/",
            r#"<a href="/a#x">a</a><a href="/a">a</a>"#,
        );
        let requests: Vec<Request<()>> = LinkExtractor::default().requests(&r);
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].url.as_str(), "http://h.test/a");
        assert_eq!(requests[0].method, awc::http::Method::GET);
    }
}
