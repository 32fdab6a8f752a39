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

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};
use html5ever::Attribute;
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
    /// Runs html5ever's tokenizer over the body (no tree is built: about
    /// half the cost of parsing the page), switching it into raw text for
    /// `script`, `style`, `title`, `textarea` and the like as the tree
    /// builder would, so markup inside them is not taken for links. Links
    /// inside `<noscript>` are kept: a crawler runs no scripts. A callback
    /// that already holds the parsed page can use
    /// [`LinkExtractor::extract_from`] instead.
    pub fn extract(&self, response: &Response) -> Vec<Url> {
        let mut sink = HrefSink {
            tags: &self.tags,
            attrs: &self.attrs,
            base: None,
            hrefs: Vec::new(),
        };
        let mut tokenizer = Tokenizer::new(&mut sink, TokenizerOpts::default());
        let mut input = BufferQueue::default();
        input.push_back(StrTendril::from_slice(&response.text()));
        let _ = tokenizer.feed(&mut input);
        tokenizer.end();
        let base = resolve_base(sink.base.as_deref(), &response.url);
        self.resolve(sink.hrefs.iter().map(String::as_str), &base, &response.url)
    }

    /// Like [`LinkExtractor::extract`], over an already parsed document
    /// fetched from `page_url`.
    pub fn extract_from(&self, doc: &Html, page_url: &Url) -> Vec<Url> {
        let selector = Selector::parse("base[href]").expect("a valid selector");
        let base = doc
            .select(&selector)
            .next()
            .and_then(|b| b.value().attr("href"));
        let base = resolve_base(base, page_url);
        let hrefs = doc
            .root_element()
            .descendent_elements()
            .map(|el| el.value())
            .filter(|el| self.tags.iter().any(|t| t == el.name()))
            .flat_map(|el| self.attrs.iter().filter_map(|attr| el.attr(attr)));
        self.resolve(hrefs, &base, page_url)
    }

    /// The links among `hrefs` that pass the filters, resolved against
    /// `base`, in order, each once.
    fn resolve<'a>(
        &self,
        hrefs: impl Iterator<Item = &'a str>,
        base: &Url,
        page_url: &Url,
    ) -> Vec<Url> {
        let mut seen = HashSet::new();
        let mut links = Vec::new();
        for href in hrefs {
            // Unparseable hrefs are skipped: a page's typo must not fail
            // the whole callback.
            let Ok(mut url) = base.join(href) else {
                continue;
            };
            // This also drops javascript:, mailto:, tel:, data: and the
            // like; http(s) URLs always have a host.
            if !matches!(url.scheme(), "http" | "https") {
                continue;
            }
            url.set_fragment(None);
            if self.keeps(&url, page_url) && seen.insert(url.clone()) {
                links.push(url);
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
fn resolve_base(base: Option<&str>, page_url: &Url) -> Url {
    base.and_then(|href| page_url.join(href).ok())
        .filter(|base| matches!(base.scheme(), "http" | "https"))
        .unwrap_or_else(|| page_url.clone())
}

/// Collects the first `<base href>` and the link attributes of the chosen
/// tags from html5ever's tokens.
struct HrefSink<'a> {
    tags: &'a [String],
    attrs: &'a [String],
    base: Option<String>,
    hrefs: Vec<String>,
}

impl TokenSink for &mut HrefSink<'_> {
    type Handle = ();

    fn process_token(&mut self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let Token::TagToken(tag) = token else {
            return TokenSinkResult::Continue;
        };
        if tag.kind != TagKind::StartTag {
            return TokenSinkResult::Continue;
        }
        let name: &str = &tag.name;
        if name == "base" && self.base.is_none() {
            self.base = attr(&tag.attrs, "href").map(str::to_owned);
        }
        if self.tags.iter().any(|t| t == name) {
            for wanted in self.attrs {
                if let Some(value) = attr(&tag.attrs, wanted) {
                    self.hrefs.push(value.to_owned());
                }
            }
        }
        // What the tree builder tells the tokenizer after these start
        // tags (HTML, "parsing HTML documents": the text of these
        // elements is not markup).
        match name {
            "script" => TokenSinkResult::RawData(RawKind::ScriptData),
            "style" | "xmp" | "iframe" | "noembed" | "noframes" => {
                TokenSinkResult::RawData(RawKind::Rawtext)
            }
            "title" | "textarea" => TokenSinkResult::RawData(RawKind::Rcdata),
            "plaintext" => TokenSinkResult::Plaintext,
            _ => TokenSinkResult::Continue,
        }
    }
}

/// The value of attribute `name` of a tag.
fn attr<'t>(attrs: &'t [Attribute], name: &str) -> Option<&'t str> {
    attrs
        .iter()
        .find(|a| &*a.name.local == name)
        .map(|a| &*a.value)
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
    fn markup_in_raw_text_is_not_a_link_and_entities_are_decoded() {
        let body = r#"<html><head><title><a href="/in-title"></title>
            <script>var s = '<a href="/in-script">';</script>
            <style>a[href="/in-style"] { color: red }</style></head>
            <body><textarea><a href="/in-textarea"></textarea>
            <a href="/q?x=1&amp;y=2">entity</a>
            <A HREF="/upper">case</A>
            <a href='/single'>quotes</a><a href=/bare>unquoted</a>
            <template><a href="/in-template">template</a></template>
            <noscript><a href="/in-noscript">noscript</a></noscript>
            </body></html>"#;
        let r = page("http://h.test/", body);
        let extractor = LinkExtractor::default();
        let links = strings(extractor.extract(&r));
        assert_eq!(
            links,
            [
                "http://h.test/q?x=1&y=2",
                "http://h.test/upper",
                "http://h.test/single",
                "http://h.test/bare",
                "http://h.test/in-template",
                "http://h.test/in-noscript",
            ]
        );
        // The same links as from the parsed page, but for `<noscript>`,
        // which scraper parses as a browser running scripts would: as text.
        let parsed = strings(extractor.extract_from(&r.html(), &r.url));
        assert_eq!(links[..links.len() - 1], parsed[..]);
        let site = page("http://h.test/dir/page", SITE);
        assert_eq!(
            extractor.extract(&site),
            extractor.extract_from(&site.html(), &site.url)
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
