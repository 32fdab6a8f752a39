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

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;

use lol_html::errors::RewritingError;
use lol_html::html_content::{Element, TextChunk};
use lol_html::{ElementContentHandlers, HtmlRewriter, MemorySettings, Selector as Scan, Settings};
use memchr::memmem;
use regex::Regex;
use scraper::{Html, Selector};
use url::Url;

use crate::error::{Error, ErrorKind, Stage};
use crate::host;
use crate::request::Callback;
use crate::request::Request;
use crate::response::Response;

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
    /// The chosen tags, for the scanner (their attributes are read by the
    /// handler: a selector that also tests attributes costs the scanner
    /// more than reading them); `None` when either list is empty.
    links: Option<Scan>,
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
            .extend(domains.into_iter().map(|d| host::normalise(&d.into())));
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
    /// Fails the same way for a tag or attribute name that is empty or
    /// holds anything but ASCII letters, digits, `-` and `_`.
    pub fn build(self) -> Result<LinkExtractor, Error> {
        let bad = |n: &String| {
            n.is_empty()
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if let Some(name) = self.tags.iter().chain(&self.attrs).find(|n| bad(n)) {
            return Err(Error::new(
                Stage::Setup,
                ErrorKind::Config(format!("link extractor tag or attribute name {name:?}")),
            ));
        }
        let links = (!self.tags.is_empty() && !self.attrs.is_empty())
            .then(|| self.tags.join(", "))
            .map(|list| {
                list.parse::<Scan>().map_err(|e| {
                    Error::new(
                        Stage::Setup,
                        ErrorKind::Config(format!("link extractor tags {list:?}: {e}")),
                    )
                })
            })
            .transpose()?;
        Ok(LinkExtractor {
            allow: compile("allow", &self.allow)?,
            deny: compile("deny", &self.deny)?,
            allow_domains: self.allow_domains,
            same_domain: self.same_domain,
            tags: self.tags,
            attrs: self.attrs,
            links,
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
    /// Scans the body with `lol_html`'s streaming tokenizer, which looks
    /// only at the chosen tags, builds no tree, and reads the text of
    /// `script`, `style`, `title`, `textarea` and the like as text, as a
    /// browser does, so markup inside them is not taken for links. Links
    /// inside `<noscript>` are kept (its content is scanned as markup: a
    /// crawler runs no scripts). Attribute values are decoded as the HTML
    /// standard says (`&amp;` is `&`, `&copy=` stays). On a 2 KB page it
    /// takes about half the time of parsing the page with scraper and
    /// selecting from it (`cargo bench --bench hot`). A callback that
    /// already holds the parsed page can use [`LinkExtractor::extract_from`]
    /// instead.
    pub fn extract(&self, response: &Response) -> Vec<Url> {
        let text = response.text();
        let found = RefCell::new(Found {
            // Room for a typical page's links, to spare a few regrowths.
            hrefs: Vec::with_capacity(16),
            ..Found::default()
        });
        if self.scan(&text, &found, true).is_err() {
            // The scanner fails only past its memory limit (none is set)
            // or when a handler fails (ours do not); the tree parser
            // stands behind it all the same.
            return self.extract_from(&Html::parse_document(&text), &response.url);
        }
        let Found { base, hrefs, .. } = found.into_inner();
        let base = resolve_base(base.as_deref(), &response.url);
        let hrefs = hrefs.iter().map(|href| match href {
            Href::Page(span) => decode(&text[span.clone()]),
            Href::Owned(value) => Cow::Borrowed(value.as_str()),
        });
        self.resolve(hrefs, &base, &response.url)
    }

    /// Adds the link attributes of `html` to `found`, in document order.
    /// The page itself (`page`) also gives its `<base href>` and the links
    /// inside its `<noscript>` elements, scanned in turn (not their base).
    fn scan(&self, html: &str, found: &RefCell<Found>, page: bool) -> Result<(), RewritingError> {
        // The page is written in one go, so the parsing buffer only ever
        // holds what is left unfinished at its end: no need to reserve the
        // default kilobyte for each page.
        let mut settings = Settings::new()
            .with_strict(false)
            .with_memory_settings(MemorySettings::new().with_preallocated_parsing_buffer_size(0));
        if let Some(links) = &self.links {
            settings = settings.append_element_content_handler((
                Cow::Borrowed(links),
                ElementContentHandlers::default().element(|el: &mut Element| {
                    let mut found = found.borrow_mut();
                    for attr in &self.attrs {
                        let Some(span) = attribute_span(el, html, attr) else {
                            continue;
                        };
                        found.hrefs.push(if page {
                            Href::Page(span)
                        } else {
                            // Inside `<noscript>`, the text scanned is not
                            // the page's: the value is kept, decoded.
                            Href::Owned(decode(&html[span]).into_owned())
                        });
                    }
                    Ok(())
                }),
            ));
        }
        // Selectors cost the scanner even where nothing matches (each is
        // compiled for every page, and checked at every tag), so those for
        // `<base>` and `<noscript>` are left out of pages that cannot hold
        // one: a start tag is `<` then its name, in any case, in the text
        // as decoded, so a page without `<base` or `<noscript` has none.
        let (base, noscript) = if page {
            base_and_noscript(html)
        } else {
            (false, false)
        };
        if base {
            settings = settings.append_element_content_handler((
                Cow::Borrowed(&*BASE),
                ElementContentHandlers::default().element(|el: &mut Element| {
                    let mut found = found.borrow_mut();
                    if found.base.is_none() {
                        found.base = attribute_span(el, html, "href")
                            .map(|span| decode(&html[span]).into_owned());
                    }
                    Ok(())
                }),
            ));
        }
        if noscript {
            settings = settings.append_element_content_handler((
                Cow::Borrowed(&*NOSCRIPT),
                ElementContentHandlers::default().text(|chunk: &mut TextChunk| {
                    found.borrow_mut().noscript.push_str(chunk.as_str());
                    if chunk.last_in_text_node() {
                        let inner = std::mem::take(&mut found.borrow_mut().noscript);
                        self.scan(&inner, found, false)?;
                    }
                    Ok(())
                }),
            ));
        }
        let mut rewriter = HtmlRewriter::new(settings, |_: &[u8]| {});
        rewriter.write(html.as_bytes())?;
        rewriter.end()
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
    fn resolve<S: AsRef<str>>(
        &self,
        hrefs: impl Iterator<Item = S>,
        base: &Url,
        page_url: &Url,
    ) -> Vec<Url> {
        // Pages have tens of links: a scan of those kept is cheaper than
        // hashing, until there are many.
        let mut seen: HashSet<Url> = HashSet::new();
        let mut links: Vec<Url> = Vec::with_capacity(hrefs.size_hint().0);
        for href in hrefs {
            // Unparseable hrefs are skipped: a page's typo must not fail
            // the whole callback.
            let Ok(mut url) = base.join(href.as_ref()) else {
                continue;
            };
            // This also drops javascript:, mailto:, tel:, data: and the
            // like; http(s) URLs always have a host.
            if !matches!(url.scheme(), "http" | "https") {
                continue;
            }
            url.set_fragment(None);
            if !self.keeps(&url, page_url) {
                continue;
            }
            if links.len() < 64 {
                if links.contains(&url) {
                    continue;
                }
            } else {
                if seen.is_empty() {
                    seen.extend(links.iter().cloned());
                }
                if !seen.insert(url.clone()) {
                    continue;
                }
            }
            links.push(url);
        }
        links
    }

    /// GET requests for [`LinkExtractor::extract`]'s links, with the
    /// default callback: set another with `Request::callback`.
    pub fn requests<C: Callback>(&self, response: &Response) -> Vec<Request<C>> {
        // Every extracted URL is http(s) with a host, as
        // `Request::try_from_url` requires: one exact allocation.
        self.extract(response)
            .into_iter()
            .map(Request::from_url)
            .collect()
    }

    /// Whether `url` passes the domain and pattern filters.
    fn keeps(&self, url: &Url, page_url: &Url) -> bool {
        let host = url.host_str().unwrap_or_default();
        if self.same_domain && Some(host) != page_url.host_str() {
            return false;
        }
        if !self.allow_domains.is_empty()
            && !self.allow_domains.iter().any(|d| host::within(host, d))
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
fn resolve_base<'a>(base: Option<&str>, page_url: &'a Url) -> Cow<'a, Url> {
    base.and_then(|href| page_url.join(href).ok())
        .filter(|base| matches!(base.scheme(), "http" | "https"))
        .map_or(Cow::Borrowed(page_url), Cow::Owned)
}

/// What a scan found.
#[derive(Default)]
struct Found {
    /// The first `<base href>`.
    base: Option<String>,
    /// The link attributes, in document order.
    hrefs: Vec<Href>,
    /// The text of the `<noscript>` being read.
    noscript: String,
}

/// A link attribute's value, as found.
enum Href {
    /// Where it stands in the page (not yet decoded).
    Page(std::ops::Range<usize>),
    /// Decoded, from text that is not the page's (a `<noscript>`'s).
    Owned(String),
}

static BASE: std::sync::LazyLock<Scan> =
    std::sync::LazyLock::new(|| "base[href]".parse().expect("a valid selector"));
static NOSCRIPT: std::sync::LazyLock<Scan> =
    std::sync::LazyLock::new(|| "noscript".parse().expect("a valid selector"));

/// Whether `html` may hold a `<base>` start tag, and a `<noscript>` one:
/// whether it holds `<` followed by the name in any case (the tokenizer
/// decodes nothing in tag names). Setting bit 5 of every byte lowercases
/// the letters and leaves `<` as it is, so every real match survives (a
/// few other bytes turn into `<` or letters: false positives only, which
/// merely keep a selector).
fn base_and_noscript(html: &str) -> (bool, bool) {
    /// Bytes folded at a time, on the stack.
    const CHUNK: usize = 1024;
    /// Bytes a chunk repeats from the one before, so that a name cut in
    /// two is still found: all of `<noscript` but one.
    const OVERLAP: usize = 8;
    static FINDERS: std::sync::LazyLock<[memmem::Finder<'static>; 2]> =
        std::sync::LazyLock::new(|| {
            [
                memmem::Finder::new(b"<base"),
                memmem::Finder::new(b"<noscript"),
            ]
        });
    let [base_finder, noscript_finder] = &*FINDERS;
    let bytes = html.as_bytes();
    let mut folded = [0u8; CHUNK + OVERLAP];
    let (mut base, mut noscript) = (false, false);
    let mut start = 0;
    while start < bytes.len() && !(base && noscript) {
        let end = (start + CHUNK).min(bytes.len());
        let chunk = &bytes[start.saturating_sub(OVERLAP)..end];
        for (to, from) in folded.iter_mut().zip(chunk) {
            *to = from | 0x20;
        }
        let folded = &folded[..chunk.len()];
        base = base || base_finder.find(folded).is_some();
        noscript = noscript || noscript_finder.find(folded).is_some();
        start = end;
    }
    (base, noscript)
}

/// Where the value of `el`'s first attribute named `name` (ASCII, lower
/// case) stands in `html`, the text the scanner was given: the value as
/// written (character references not decoded, nothing stripped), or an
/// empty range for an attribute without one. The first of a name counts,
/// as browsers read it. `None` when `el` has no such attribute.
///
/// `lol_html`'s own `get_attribute` copies the value, and decodes it as
/// text, which also drops a leading U+FEFF; browsers keep it.
fn attribute_span(el: &Element, html: &str, name: &str) -> Option<std::ops::Range<usize>> {
    // Every attribute the scanner read has its place in the text (only
    // those a handler adds or changes have none, and none is changed here).
    let at = el.attributes().iter().find(|at| {
        at.name_source_location()
            .is_some_and(|n| html[n.bytes()].eq_ignore_ascii_case(name))
    })?;
    Some(at.value_source_location().map_or(0..0, |v| v.bytes()))
}

/// An attribute value with its character references decoded.
fn decode(value: &str) -> Cow<'_, str> {
    if value.contains('&') {
        htmlize::unescape_attribute(value)
    } else {
        Cow::Borrowed(value)
    }
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
            <a href="/q?x=1&amp;y=2&copy=3&lt;4">entity</a>
            <!-- <a href="/in-comment"> --><xmp><a href="/in-xmp"></xmp>
            <A HREF="/upper">case</A>
            <a href='/single'>quotes</a><a href=/bare>unquoted</a>
            <template><a href="/in-template">template</a></template>
            <noscript><a href="/in-noscript">noscript</a></noscript>
            <a href="/after">after</a>
            </body></html>"#;
        let r = page("http://h.test/", body);
        let extractor = LinkExtractor::default();
        let links = strings(extractor.extract(&r));
        assert_eq!(
            links,
            [
                // `&copy` followed by `=` is not a reference in an attribute.
                "http://h.test/q?x=1&y=2&copy=3%3C4",
                "http://h.test/upper",
                "http://h.test/single",
                "http://h.test/bare",
                "http://h.test/in-template",
                "http://h.test/in-noscript",
                "http://h.test/after",
            ]
        );
        // The same links as from the parsed page, but for `<noscript>`,
        // which scraper parses as a browser running scripts would: as text.
        let mut parsed = strings(extractor.extract_from(&r.html(), &r.url));
        parsed.insert(5, "http://h.test/in-noscript".into());
        assert_eq!(links, parsed);
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
        // A base inside <noscript> is not the page's base; its links count.
        let r = page(
            "http://h.test/dir/page",
            r#"<noscript><base href="/ns/"><a href="x">x</a></noscript><a href="y">y</a>"#,
        );
        assert_eq!(
            strings(LinkExtractor::default().extract(&r)),
            ["http://h.test/dir/x", "http://h.test/dir/y"]
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
    fn base_and_noscript_are_found_in_any_case() {
        let r = page(
            "http://h.test/dir/page",
            r#"<HEAD><BaSe HREF="/other/"></HEAD><NoScript><a href="n">n</a></NOSCRIPT><a href="x">x</a>"#,
        );
        assert_eq!(
            strings(LinkExtractor::default().extract(&r)),
            ["http://h.test/other/n", "http://h.test/other/x"]
        );
        assert_eq!(base_and_noscript("<BASE href=x><noSCRIPT>"), (true, true));
        assert_eq!(
            base_and_noscript("<a href=base>noscript</a>"),
            (false, false)
        );
        // Across the chunks the page is folded in.
        for at in 1000..1040 {
            let mut html = " ".repeat(at);
            html.push_str("<NoScript>");
            html.push_str(&" ".repeat(1500));
            html.push_str("<bAsE>");
            assert_eq!(base_and_noscript(&html), (true, true), "at {at}");
            assert_eq!(base_and_noscript(&html[..at + 8]), (false, false));
        }
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
    fn attributes_are_read_where_they_stand() {
        // Text before the links that is several bytes per character, an
        // attribute named twice (the first counts), names that only
        // contain the wanted one, an empty and a missing value, and two
        // wanted attributes on one element (both, in the order asked).
        let body = "<p>héllo ✓ — 漢字</p>\
            <a data-href=\"/no\" href=\"/first\" href=\"/second\">1</a>\
            <a hrefx=\"/no\" HREF='/é?q=a&amp;b'>2</a>\
            <a href>self</a><a name=\"x\">no href</a>\
            <area src=\"/s\" href=\"/h\"><a href=\"/t\" src=\"/u\">3</a>";
        let r = page("http://h.test/dir/page", body);
        let links = strings(LinkExtractor::default().extract(&r));
        assert_eq!(
            links,
            [
                "http://h.test/first",
                "http://h.test/%C3%A9?q=a&b",
                "http://h.test/dir/page",
                "http://h.test/h",
                "http://h.test/t",
            ]
        );
        // The tree parser reads the same attributes.
        assert_eq!(
            links,
            strings(LinkExtractor::default().extract_from(&Html::parse_document(body), &r.url))
        );
        let two = LinkExtractor::builder()
            .tags(["a", "area"])
            .attrs(["src", "href"])
            .build()
            .unwrap();
        let found = strings(two.extract(&r));
        assert_eq!(
            found[3..],
            [
                "http://h.test/s",
                "http://h.test/h",
                "http://h.test/u",
                "http://h.test/t",
            ]
        );
    }

    #[test]
    fn a_value_is_taken_as_written_in_the_page_its_noscript_and_its_base() {
        // A leading U+FEFF is part of the value, as browsers (and the
        // tree parser) read it: the URL parser percent-encodes it.
        let r = page(
            "http://h.test/dir/page",
            "<a href=\"\u{FEFF}/bom\">a</a>\
             <noscript><a href=\"\u{FEFF}/ns\">n</a></noscript>",
        );
        assert_eq!(
            strings(LinkExtractor::default().extract(&r)),
            [
                "http://h.test/dir/%EF%BB%BF/bom",
                "http://h.test/dir/%EF%BB%BF/ns",
            ]
        );
        let r = page(
            "http://h.test/dir/page",
            "<base href=\"\u{FEFF}/b/\"><a href=\"x\">x</a>",
        );
        assert_eq!(
            strings(LinkExtractor::default().extract(&r)),
            ["http://h.test/dir/%EF%BB%BF/b/x"]
        );
    }

    #[test]
    fn bad_tag_or_attribute_names_fail_at_build() {
        let e = LinkExtractor::builder().tags(["a b"]).build().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Config(_)), "{e}");
        assert!(e.to_string().contains("name \"a b\""), "{e}");
        let e = LinkExtractor::builder().attrs([""]).build().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Config(_)), "{e}");
        // No tags: no links, and no failure.
        let none = LinkExtractor::builder().tags(Vec::<String>::new()).build();
        let r = page("http://h.test/", SITE);
        assert!(none.unwrap().extract(&r).is_empty());
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
