//! The page scan behind [`LinkExtractor::extract`](super::LinkExtractor::extract):
//! everything that reads a page's bytes.
//!
//! It runs `lol_html`'s streaming tokenizer over the text once, with a
//! handler on the chosen tags that notes where each wanted attribute's
//! value stands, one on the first `<base href>`, one that scans the
//! text of each `<noscript>` in turn as markup (a crawler runs no scripts),
//! and one that counts the `<template>` elements open: a template's content
//! is inert (a browser puts it in no document, follows none of its links
//! and takes no `<base>` from it), so nothing inside one is kept.
//! It builds no tree, copies no value of the page, and decodes character
//! references only when a value is read ([`Found::hrefs`]). What the values
//! mean (resolving, filtering, de-duplicating) is the parent module's job.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::rc::Rc;
use std::sync::LazyLock;

use lol_html::errors::RewritingError;
use lol_html::html_content::{Element, TextChunk};
use lol_html::{ElementContentHandlers, HtmlRewriter, MemorySettings, Selector, Settings};
use memchr::memmem;

/// What a scan found.
#[derive(Default)]
pub(super) struct Found {
    /// The first `<base href>`, decoded: relative links resolve against it.
    base: Option<String>,
    /// The link attributes, in document order, which is the order the
    /// extractor keeps.
    hrefs: Vec<Href>,
    /// The text of the `<noscript>` being read: it comes in chunks, and is
    /// scanned once whole.
    noscript: String,
}

/// A link attribute's value, as found.
enum Href {
    /// Where it stands in the page (not yet decoded): no copy of the page's
    /// text is made while scanning.
    Page(Range<usize>),
    /// Decoded, from text that is not the page's (a `<noscript>`'s), which
    /// does not outlive its scan.
    Owned(String),
}

impl Found {
    /// The page's first `<base href>`, decoded.
    pub(super) fn base(&self) -> Option<&str> {
        self.base.as_deref()
    }

    /// The link attribute values, decoded, in document order; `html` is the
    /// page text that was scanned.
    pub(super) fn hrefs<'a>(&'a self, html: &'a str) -> impl Iterator<Item = Cow<'a, str>> {
        self.hrefs.iter().map(move |href| match href {
            Href::Page(span) => decode(&html[span.clone()]),
            Href::Owned(value) => Cow::Borrowed(value.as_str()),
        })
    }
}

/// The elements whose attributes a scan reads: compiled for the tokenizer,
/// and by name (lower case).
#[derive(Clone, Copy)]
pub(super) struct Tags<'a> {
    pub(super) selector: &'a Selector,
    pub(super) names: &'a [String],
}

/// Scans the page `html` for the attributes `attrs` of the elements
/// `tags` selects (none when `tags` is `None`), and for its `<base href>`.
///
/// Fails only past the scanner's memory limit (none is set) or when a
/// handler fails (these do not); the caller keeps a fallback all the same.
pub(super) fn scan(
    html: &str,
    tags: Option<Tags<'_>>,
    attrs: &[String],
) -> Result<Found, RewritingError> {
    let found = RefCell::new(Found {
        // Room for a typical page's links, to spare a few regrowths.
        hrefs: Vec::with_capacity(16),
        ..Found::default()
    });
    scan_into(html, tags, attrs, &found, true)?;
    Ok(found.into_inner())
}

/// Adds the link attributes of `html` to `found`, in document order.
/// The page itself (`page`) also gives its `<base href>` and the links
/// inside its `<noscript>` elements, scanned in turn (not their base).
fn scan_into(
    html: &str,
    tags: Option<Tags<'_>>,
    attrs: &[String],
    found: &RefCell<Found>,
    page: bool,
) -> Result<(), RewritingError> {
    // How many `<template>` elements are open where the scan stands.
    let templates = Rc::new(Cell::new(0u32));
    // The page is written in one go, so the parsing buffer only ever
    // holds what is left unfinished at its end: no need to reserve the
    // default kilobyte for each page.
    let mut settings = Settings::new()
        .with_strict(false)
        .with_memory_settings(MemorySettings::new().with_preallocated_parsing_buffer_size(0));
    if let Some(tags) = tags {
        settings = settings.append_element_content_handler((
            Cow::Borrowed(tags.selector),
            ElementContentHandlers::default().element(|el: &mut Element| {
                if templates.get() > 0 {
                    return Ok(());
                }
                let mut found = found.borrow_mut();
                for attr in attrs {
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
    // `<base>`, `<noscript>` and `<template>` are left out of pages that
    // cannot hold one: a start tag is `<` then its name, in any case, in
    // the text as decoded, so a page without `<base` has no `<base>`.
    let Needed {
        base,
        noscript,
        template,
    } = needed(html);
    if template {
        settings = settings.append_element_content_handler((
            Cow::Borrowed(&*TEMPLATE),
            count_templates(templates.clone()),
        ));
    }
    if base && page {
        settings = settings.append_element_content_handler((
            Cow::Borrowed(&*BASE),
            ElementContentHandlers::default().element(|el: &mut Element| {
                let mut found = found.borrow_mut();
                if found.base.is_none() && templates.get() == 0 {
                    found.base = attribute_span(el, html, "href")
                        .map(|span| decode(&html[span]).into_owned());
                }
                Ok(())
            }),
        ));
    }
    if noscript && page {
        settings = settings.append_element_content_handler((
            Cow::Borrowed(&*NOSCRIPT),
            ElementContentHandlers::default().text(|chunk: &mut TextChunk| {
                if templates.get() > 0 {
                    return Ok(());
                }
                found.borrow_mut().noscript.push_str(chunk.as_str());
                if chunk.last_in_text_node() {
                    let inner = std::mem::take(&mut found.borrow_mut().noscript);
                    // Most hold a tracking pixel: a second tokenizer is
                    // built only for one that may hold a wanted tag.
                    if tags.is_some_and(|t| may_hold(&inner, t.names)) {
                        scan_into(&inner, tags, attrs, found, false)?;
                    }
                }
                Ok(())
            }),
        ));
    }
    let mut rewriter = HtmlRewriter::new(settings, |_: &[u8]| {});
    rewriter.write(html.as_bytes())?;
    rewriter.end()
}

/// Counts in `open` the `<template>` elements open where the scan stands.
fn count_templates<'h>(open: Rc<Cell<u32>>) -> ElementContentHandlers<'h> {
    ElementContentHandlers::default().element(move |el: &mut Element| {
        open.set(open.get() + 1);
        let closed = open.clone();
        // A template's end tag closes it; one never closed holds the rest
        // of the page, as the parser reads it.
        el.on_end_tag(Box::new(move |_| {
            closed.set(closed.get().saturating_sub(1));
            Ok(())
        }))
    })
}

static BASE: LazyLock<Selector> = LazyLock::new(|| "base[href]".parse().expect("a valid selector"));
static NOSCRIPT: LazyLock<Selector> =
    LazyLock::new(|| "noscript".parse().expect("a valid selector"));
static TEMPLATE: LazyLock<Selector> =
    LazyLock::new(|| "template".parse().expect("a valid selector"));

/// Which of the optional handlers a text needs: those whose start tag it
/// may hold.
#[derive(Debug, PartialEq, Eq)]
struct Needed {
    base: bool,
    noscript: bool,
    template: bool,
}

/// Which of `<base`, `<noscript` and `<template` `html` holds, in any
/// case (the tokenizer decodes nothing in tag names). Setting bit 5 of
/// every byte lowercases the letters and leaves `<` as it is, so every real
/// match survives (a few other bytes turn into `<` or letters: false
/// positives only, which merely keep a selector). Folding a kilobyte at a
/// time and searching it with `memmem` costs about 1.4 instructions a
/// byte; a look after every `<` costs more, as pages hold hundreds.
fn needed(html: &str) -> Needed {
    /// Bytes folded at a time, on the stack.
    const CHUNK: usize = 1024;
    /// Bytes a chunk repeats from the one before, so that a name cut in
    /// two is still found: all of the longest, `<template`, but one.
    const OVERLAP: usize = 8;
    static FINDERS: LazyLock<[memmem::Finder<'static>; 3]> = LazyLock::new(|| {
        [
            memmem::Finder::new(b"<base"),
            memmem::Finder::new(b"<noscript"),
            memmem::Finder::new(b"<template"),
        ]
    });
    let bytes = html.as_bytes();
    let mut folded = [0u8; CHUNK + OVERLAP];
    let mut found = [false; 3];
    let mut start = 0;
    while start < bytes.len() && !found.iter().all(|&f| f) {
        let end = (start + CHUNK).min(bytes.len());
        let chunk = &bytes[start.saturating_sub(OVERLAP)..end];
        for (to, from) in folded.iter_mut().zip(chunk) {
            *to = from | 0x20;
        }
        let folded = &folded[..chunk.len()];
        for (found, finder) in found.iter_mut().zip(FINDERS.iter()) {
            *found = *found || finder.find(folded).is_some();
        }
        start = end;
    }
    let [base, noscript, template] = found;
    Needed {
        base,
        noscript,
        template,
    }
}

/// Whether `html` may hold a start tag of one of `names` (ASCII, lower
/// case): `<` then the name, in any case. False positives only.
fn may_hold(html: &str, names: &[String]) -> bool {
    let bytes = html.as_bytes();
    memchr::memchr_iter(b'<', bytes).any(|at| {
        let rest = &bytes[at + 1..];
        names.iter().any(|name| {
            rest.get(..name.len())
                .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
        })
    })
}

/// Where the value of `el`'s first attribute named `name` (ASCII, lower
/// case) stands in `html`, the text the scanner was given: the value as
/// written (character references not decoded, nothing stripped), or an
/// empty range for an attribute without one. The first of a name counts,
/// as browsers read it. `None` when `el` has no such attribute.
///
/// `lol_html`'s own `get_attribute` copies the value, and decodes it as
/// text, which also drops a leading U+FEFF; browsers keep it.
#[inline]
fn attribute_span(el: &Element, html: &str, name: &str) -> Option<Range<usize>> {
    // Every attribute the scanner read has its place in the text (only
    // those a handler adds or changes have none, and none is changed here).
    let at = el.attributes().iter().find(|at| {
        at.name_source_location()
            .is_some_and(|n| html[n.bytes()].eq_ignore_ascii_case(name))
    })?;
    Some(at.value_source_location().map_or(0..0, |v| v.bytes()))
}

/// An attribute value with its character references decoded.
#[inline]
fn decode(value: &str) -> Cow<'_, str> {
    if value.contains('&') {
        htmlize::unescape_attribute(value)
    } else {
        Cow::Borrowed(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Needed = Needed {
        base: true,
        noscript: true,
        template: true,
    };
    const NONE: Needed = Needed {
        base: false,
        noscript: false,
        template: false,
    };

    #[test]
    fn needed_tags_are_found_in_any_case() {
        assert_eq!(needed("<BASE href=x><noSCRIPT><TempLate>"), ALL);
        assert_eq!(needed("<a href=base>noscript template</a>"), NONE);
        assert_eq!(needed("<b><n><t>< base <noscrip"), NONE);
        // Across the kilobytes the page is folded in.
        for at in 1000..1040 {
            let mut html = " ".repeat(at);
            html.push_str("<NoScript>");
            html.push_str(&" ".repeat(1500));
            html.push_str("<bAsE>");
            html.push_str(&" ".repeat(at));
            html.push_str("<TEMPLATE>");
            assert_eq!(needed(&html), ALL, "at {at}");
            assert_eq!(needed(&html[..at + 8]), NONE);
        }
        assert_eq!(
            needed("<b>x</b><Template><bAsE"),
            Needed {
                base: true,
                noscript: false,
                template: true,
            }
        );
        // At the very end of the text, and cut short.
        assert!(needed("text <noscript").noscript);
        assert!(!needed("text <noscrip").noscript);
    }

    #[test]
    fn may_hold_looks_for_the_names_after_a_bracket() {
        let names = ["a".to_string(), "area".to_string()];
        assert!(may_hold("<img src=x><A HREF=y>", &names));
        assert!(may_hold("<AREA", &names));
        assert!(!may_hold("<img src=a><p>area</p>", &names));
        assert!(!may_hold("", &names));
    }
}
