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
//! This module owns the configuration (the builder, the compiled patterns
//! and tag selector) and what happens to each value found: resolving,
//! filtering, de-duplicating, and the [`LinkExtractor::extract`] and
//! [`LinkExtractor::requests`] entry points. Reading the page's bytes (the
//! `lol_html` scan, `<base>` and `<noscript>`, where attribute values stand
//! and their character references) is `scanner`'s.
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

mod follow;
mod joins;
mod scanner;

use std::borrow::Cow;
use std::hash::BuildHasher;

use hashbrown::hash_table::{Entry, HashTable};
use hashbrown::DefaultHashBuilder;

use lol_html::Selector as Scan;
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
    /// Compiled once at build, matched against every link: a link must
    /// match one of them, when there are any.
    allow: Vec<Regex>,
    /// Compiled once at build: a link matching any is dropped (deny wins).
    deny: Vec<Regex>,
    /// Normalised host names a link must be within, when there are any.
    allow_domains: Vec<String>,
    /// Keep only links to the page's own host.
    same_domain: bool,
    /// The element names read, lower case: the tree parser's path
    /// ([`LinkExtractor::extract_from`]) compares them by name.
    tags: Vec<String>,
    /// The attribute names read on those elements, lower case, in the
    /// order their values are taken.
    attrs: Vec<String>,
    /// The chosen tags, compiled once for the scanner (their attributes are
    /// read by the handler: a selector that also tests attributes costs the
    /// scanner more than reading them); `None` when either list is empty.
    tag_selector: Option<Scan>,
}

/// Configures a [`LinkExtractor`]; patterns are checked by
/// [`LinkExtractorBuilder::build`].
#[derive(Clone, Debug)]
pub struct LinkExtractorBuilder {
    /// Patterns as given, checked and compiled by `build` (so a setter
    /// cannot fail).
    allow: Vec<String>,
    /// Patterns as given, checked and compiled by `build`.
    deny: Vec<String>,
    /// Host names, normalised as they are added.
    allow_domains: Vec<String>,
    /// Keep only links to the page's own host.
    same_domain: bool,
    /// Element names, lower case; checked by `build`.
    tags: Vec<String>,
    /// Attribute names, lower case; checked by `build`.
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
        let tag_selector = (!self.tags.is_empty() && !self.attrs.is_empty())
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
            tag_selector,
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
    /// browser does, so markup inside them is not taken for links; nor is
    /// anything inside a `<template>` (inert content). Links
    /// inside `<noscript>` are kept (its content is scanned as markup: a
    /// crawler runs no scripts). Attribute values are decoded as the HTML
    /// standard says (`&amp;` is `&`, `&copy=` stays). On a 2 KB page it
    /// takes about half the time of parsing the page with scraper and
    /// selecting from it (`cargo bench --bench hot`). A callback that
    /// already holds the parsed page can use [`LinkExtractor::extract_from`]
    /// instead.
    pub fn extract(&self, response: &Response) -> Vec<Url> {
        let text = response.text();
        let Ok(found) = scanner::scan(&text, self.scan_tags(), &self.attrs) else {
            // The scanner fails only past its memory limit (none is set)
            // or when a handler fails (ours do not); the tree parser
            // stands behind it all the same.
            return self.extract_from(&Html::parse_document(&text), &response.url);
        };
        let base = resolve_base(found.base(), &response.url);
        self.resolve(found.hrefs(&text), &base, &response.url)
    }

    /// Like [`LinkExtractor::extract`], over an already parsed document
    /// fetched from `page_url`.
    pub fn extract_from(&self, doc: &Html, page_url: &Url) -> Vec<Url> {
        let base = resolve_base(doc_base(doc), page_url);
        let hrefs = doc
            .root_element()
            .descendent_elements()
            .filter(|el| !in_template(el))
            .map(|el| el.value())
            .filter(|el| self.tags.iter().any(|t| t == el.name()))
            .flat_map(|el| self.attrs.iter().filter_map(|attr| el.attr(attr)));
        self.resolve(hrefs, &base, page_url)
    }

    /// The chosen tags, as the scanner reads them.
    fn scan_tags(&self) -> Option<scanner::Tags<'_>> {
        self.tag_selector.as_ref().map(|selector| scanner::Tags {
            selector,
            names: &self.tags,
        })
    }

    /// The links among `hrefs` that pass the filters, resolved against
    /// `base`, in order, each once.
    fn resolve<S: AsRef<str>>(
        &self,
        hrefs: impl Iterator<Item = S>,
        base: &Url,
        page_url: &Url,
    ) -> Vec<Url> {
        // Indexes into `links`, hashed by URL text: a page's links are
        // de-duplicated without copying any of them.
        let state = DefaultHashBuilder::default();
        let mut seen: HashTable<usize> = HashTable::with_capacity(hrefs.size_hint().0);
        let mut links: Vec<Url> = Vec::with_capacity(hrefs.size_hint().0);
        for href in hrefs {
            // Unparseable hrefs are skipped: a page's typo must not fail
            // the whole callback.
            let Ok(mut url) = joins::join(base, href.as_ref()) else {
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
            let hash = state.hash_one(url.as_str());
            let entry = seen.entry(
                hash,
                |&i| links[i] == url,
                |&i| state.hash_one(links[i].as_str()),
            );
            let Entry::Vacant(vacant) = entry else {
                continue;
            };
            vacant.insert(links.len());
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

/// The `href` of a parsed page's first `<base href>` outside templates.
fn doc_base(doc: &Html) -> Option<&str> {
    let selector = Selector::parse("base[href]").expect("a valid selector");
    doc.select(&selector)
        .find(|b| !in_template(b))
        .and_then(|b| b.value().attr("href"))
}

/// Whether `el` is inside a `<template>`, whose content is inert: a
/// browser follows none of its links (the tree parser puts that content
/// under the template element).
fn in_template(el: &scraper::ElementRef<'_>) -> bool {
    el.ancestors()
        .filter_map(|node| node.value().as_element())
        .any(|parent| parent.name() == "template")
}

/// The URL relative links resolve against: the first `<base href>`
/// resolved against the page URL, as browsers do, else the page URL.
fn resolve_base<'a>(base: Option<&str>, page_url: &'a Url) -> Cow<'a, Url> {
    base.and_then(|href| page_url.join(href).ok())
        .filter(|base| matches!(base.scheme(), "http" | "https"))
        .map_or(Cow::Borrowed(page_url), Cow::Owned)
}

#[cfg(test)]
mod tests;
