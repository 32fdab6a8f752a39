//! Reading one sitemap body as a stream of entries, under its limits.
//!
//! The forms, told apart by the bytes themselves:
//! - gzip (the magic bytes `1f 8b`, whatever the URL or headers say): the
//!   body is inflated a bounded piece at a time and read as one of the
//!   forms below;
//! - XML (the first byte past a byte-order mark and white space is `<`):
//!   a `<urlset>` of `<url>` entries (`<loc>`, `<lastmod>`, `<priority>`)
//!   or a `<sitemapindex>` of `<sitemap>` entries (`<loc>`), read as a
//!   stream of events by quick-xml; a `<url>`'s alternate-language pages
//!   (`<xhtml:link rel="alternate" href="…">`) are kept with it, other
//!   elements (images, news) skipped;
//! - plain text otherwise: one URL a line, blank lines skipped.
//!
//! Limits: at most `max_bytes` decoded bytes are read (a gzip bomb costs
//! that much and no more: the text is never whole in memory, only the
//! reader's buffer of [`PIECE`] bytes and the entry being read); past it,
//! reading stops with an error naming the limit. At most `max_urls`
//! entries are handed on; those past it are read and counted
//! ([`Reading::over_limit`]), not handed on. Every entry read before an error
//! has been handed on already: nothing accepted is lost.

use std::io::{self, BufRead, BufReader, Read};

use bytes::Bytes;

use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use crate::http::decode::{Decoder, PIECE};

/// The protocol's cap on the entries of one sitemap.
pub(crate) const MAX_URLS: usize = 50_000;

/// The protocol's cap on one sitemap's (uncompressed) size: 50 MiB.
pub(crate) const MAX_BYTES: usize = 50 << 20;

/// One entry of a sitemap.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Entry {
    /// A page (`<url>` of a `<urlset>`, or a line of a text sitemap).
    Page {
        /// Its `<loc>`, trimmed.
        loc: String,
        /// Its `<lastmod>` as written (a W3C date-time), trimmed.
        lastmod: Option<String>,
        /// Its `<priority>`, if it is a number; clamped to 0.0–1.0.
        priority: Option<f64>,
        /// The `href`s of its alternate-language versions, trimmed.
        alternates: Vec<String>,
    },
    /// Another sitemap (`<sitemap>` of a `<sitemapindex>`).
    Sitemap {
        /// Its `<loc>`, trimmed.
        loc: String,
    },
}

/// How much one sitemap may hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Entries handed on at most.
    pub max_urls: usize,
    /// Decoded bytes read at most.
    pub max_bytes: usize,
    /// Which limit `max_bytes` is, for the message.
    pub bytes_limit: &'static str,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_urls: MAX_URLS,
            max_bytes: MAX_BYTES,
            bytes_limit: "the limit of one sitemap",
        }
    }
}

impl Limits {
    /// These limits, with the bytes held to `body_limit` too when that is
    /// lower (the body limit of the exchange the sitemap came with).
    pub(crate) fn within(self, body_limit: Option<usize>) -> Self {
        match body_limit {
            Some(max) if max < self.max_bytes => Limits {
                max_bytes: max,
                bytes_limit: "the crawl's body limit",
                ..self
            },
            _ => self,
        }
    }
}

/// How the reading of one sitemap went.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Reading {
    /// Entries read past `max_urls`, not handed on.
    pub over_limit: usize,
    /// Why reading stopped early, if it did: what was handed on before is
    /// kept.
    pub stopped: Option<String>,
    /// Whether `stopped` is the byte limit.
    pub too_large: bool,
}

/// Reads `body`, handing each entry to `each` as it is read.
pub(crate) fn read(body: Bytes, limits: Limits, mut each: impl FnMut(Entry)) -> Reading {
    let mut entries = Entries::new(body, limits);
    while let Some(entry) = entries.next_entry() {
        each(entry);
    }
    entries.reading()
}

/// The entries of one sitemap, read as they are asked for: the reader
/// (and the gzip decoder) keeps its place between calls, so a caller can
/// take a few entries at a time and hold only those.
pub(crate) struct Entries {
    /// The reader, once the form is known; `None` once reading ended.
    form: Option<Form>,
    /// Entries handed on so far.
    n: usize,
    /// The most that may be.
    max: usize,
    /// Entries read past the limit.
    over: usize,
    /// Why reading stopped early, if it did.
    stopped: Option<String>,
    /// Whether `stopped` is the byte limit.
    too_large: bool,
}

/// The reader of an XML or a text sitemap, with its place.
enum Form {
    Xml(Box<Xml>),
    Text {
        input: BufReader<Limited>,
        /// The number of the line read last.
        line: usize,
    },
}

/// An XML sitemap's reader and its place.
struct Xml {
    reader: Reader<BufReader<Limited>>,
    /// The buffer of the event being read.
    buf: Vec<u8>,
    /// Which kind of sitemap the root element said.
    root: Option<Root>,
    /// The entry being read.
    record: Option<Record>,
    /// Open elements: 1 inside the root, 2 inside an entry, 3 in a field.
    depth: usize,
}

impl Entries {
    /// Entries of `body` (a sitemap in any form) under `limits`.
    pub(crate) fn new(body: Bytes, limits: Limits) -> Self {
        let source = if body.starts_with(&[0x1f, 0x8b]) {
            Source::Gzip {
                decoder: Decoder::gzip(),
                rest: body,
            }
        } else {
            Source::Plain(body)
        };
        let mut input = BufReader::with_capacity(
            PIECE,
            Limited {
                source,
                left: limits.max_bytes,
                limits,
                stop: None,
                too_large: false,
            },
        );
        let mut entries = Entries {
            form: None,
            n: 0,
            max: limits.max_urls,
            over: 0,
            stopped: None,
            too_large: false,
        };
        match peek_form(&mut input) {
            Err(e) => entries.end(input.get_ref(), e.to_string()),
            Ok(true) => {
                entries.form = Some(Form::Xml(Box::new(Xml {
                    reader: Reader::from_reader(input),
                    buf: Vec::new(),
                    root: None,
                    record: None,
                    depth: 0,
                })))
            }
            Ok(false) => entries.form = Some(Form::Text { input, line: 0 }),
        }
        entries
    }

    /// The next entry within the URL limit (those past it are read and
    /// counted); `None` at the end, or once an error stopped the reading
    /// ([`reading`](Self::reading) says why).
    pub(crate) fn next_entry(&mut self) -> Option<Entry> {
        loop {
            let form = self.form.as_mut()?;
            let next = match form {
                Form::Xml(x) => next_xml(x),
                Form::Text { input, line } => next_text(input, line),
            };
            match next {
                Ok(Some(_)) if self.n == self.max => self.over += 1,
                Ok(Some(entry)) => {
                    self.n += 1;
                    return Some(entry);
                }
                Ok(None) => {
                    self.form = None;
                    return None;
                }
                Err(reason) => {
                    let form = self.form.take()?;
                    let limited = match &form {
                        Form::Xml(x) => x.reader.get_ref().get_ref(),
                        Form::Text { input, .. } => input.get_ref(),
                    };
                    self.end(limited, reason);
                    return None;
                }
            }
        }
    }

    /// Records why reading stopped: the input's own reason (a limit, bad
    /// gzip) over the reader's.
    fn end(&mut self, input: &Limited, reason: String) {
        self.stopped = Some(input.stop.clone().unwrap_or(reason));
        self.too_large = input.too_large;
    }

    /// How the reading went so far.
    pub(crate) fn reading(&self) -> Reading {
        Reading {
            over_limit: self.over,
            stopped: self.stopped.clone(),
            too_large: self.too_large,
        }
    }
}

/// Where the decoded bytes come from.
enum Source {
    Plain(Bytes),
    /// Gzip, fed to the decoder a [`PIECE`] at a time as it asks: the
    /// body is never copied whole.
    Gzip {
        decoder: Decoder,
        /// The body not fed yet.
        rest: Bytes,
    },
}

/// The decoded bytes, refused past the limit.
struct Limited {
    source: Source,
    /// Bytes that may still be read.
    left: usize,
    /// The limits, for the message.
    limits: Limits,
    /// Why reading stopped, when the input (not the reader) stopped it.
    stop: Option<String>,
    /// Whether the byte limit stopped it.
    too_large: bool,
}

impl Limited {
    fn pull(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match &mut self.source {
            Source::Plain(rest) => {
                let n = rest.len().min(out.len());
                out[..n].copy_from_slice(&rest.split_to(n));
                Ok(n)
            }
            Source::Gzip { decoder, rest } => loop {
                let n = decoder.read(out).map_err(|e| {
                    self.stop = Some(e.to_string());
                    io::Error::other(e.to_string())
                })?;
                // 0: what was fed is used up (or, once ended, all is read).
                if n > 0 || rest.is_empty() {
                    return Ok(n);
                }
                let piece = rest.split_to(rest.len().min(PIECE));
                decoder.feed(&piece);
                if rest.is_empty() {
                    decoder.end();
                }
            },
        }
    }
}

impl Read for Limited {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            // One more byte says whether there was more than the limit.
            let mut probe = [0u8; 1];
            if self.pull(&mut probe)? == 0 {
                return Ok(0);
            }
            let reason = format!(
                "more than {} bytes (decoded; {}); the rest is refused",
                self.limits.max_bytes, self.limits.bytes_limit
            );
            self.stop = Some(reason.clone());
            self.too_large = true;
            return Err(io::Error::other(reason));
        }
        let want = out.len().min(self.left).min(PIECE);
        let n = self.pull(&mut out[..want])?;
        self.left -= n;
        Ok(n)
    }
}

/// Whether the input is XML (its first byte past a byte-order mark and
/// white space is `<`); consumes neither.
fn peek_form(input: &mut BufReader<Limited>) -> io::Result<bool> {
    let head = input.fill_buf()?;
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    Ok(head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<'))
}

/// The next line's URL of a text sitemap (one URL a line, blank lines
/// skipped); `None` at the end.
fn next_text(input: &mut BufReader<Limited>, number: &mut usize) -> Result<Option<Entry>, String> {
    let mut line = Vec::new();
    loop {
        line.clear();
        *number += 1;
        if input
            .read_until(b'\n', &mut line)
            .map_err(|e| e.to_string())?
            == 0
        {
            return Ok(None);
        }
        let text = std::str::from_utf8(&line)
            .map_err(|_| format!("line {number} is not UTF-8"))?
            .trim_start_matches('\u{feff}')
            .trim();
        if !text.is_empty() {
            return Ok(Some(Entry::Page {
                loc: text.to_string(),
                lastmod: None,
                priority: None,
                alternates: Vec::new(),
            }));
        }
    }
}

/// Which kind of XML sitemap the root element says.
#[derive(Clone, Copy, PartialEq)]
enum Root {
    Urlset,
    Index,
}

/// The entry being read, and the field its text goes to.
#[derive(Default)]
struct Record {
    loc: String,
    lastmod: Option<String>,
    priority: Option<String>,
    alternates: Vec<String>,
    /// The field (`loc`, `lastmod`, `priority`) now open, if any.
    field: Option<&'static str>,
}

impl Record {
    fn text(&mut self, text: &str) {
        match self.field {
            Some("loc") => self.loc.push_str(text),
            Some("lastmod") => self.lastmod.get_or_insert_default().push_str(text),
            Some("priority") => self.priority.get_or_insert_default().push_str(text),
            _ => {}
        }
    }

    fn into_entry(self, root: Root) -> Option<Entry> {
        let loc = self.loc.trim().to_string();
        if loc.is_empty() {
            return None;
        }
        Some(match root {
            Root::Index => Entry::Sitemap { loc },
            Root::Urlset => Entry::Page {
                loc,
                lastmod: self
                    .lastmod
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty()),
                priority: self
                    .priority
                    .and_then(|p| p.trim().parse::<f64>().ok())
                    .filter(|p| p.is_finite())
                    .map(|p| p.clamp(0.0, 1.0)),
                alternates: self.alternates,
            },
        })
    }
}

/// The next entry of a `<urlset>` or `<sitemapindex>`, read as a stream
/// of events; `None` at the end.
fn next_xml(xml: &mut Xml) -> Result<Option<Entry>, String> {
    let Xml {
        reader,
        buf,
        root,
        record,
        depth,
    } = xml;
    loop {
        buf.clear();
        let event = reader
            .read_event_into(buf)
            .map_err(|e| format!("malformed XML at byte {}: {e}", reader.error_position()))?;
        match event {
            Event::Start(e) => {
                *depth += 1;
                start(&e, *depth, root, record)?;
            }
            Event::Empty(e) if *depth == 0 => *root = Some(root_of(e.local_name().as_ref())?),
            Event::Empty(e) if *depth == 2 => {
                if let Some(r) = record {
                    r.alternates.extend(alternate_of(&e)?);
                }
            }
            Event::End(_) => {
                let closed = *depth;
                *depth = depth.saturating_sub(1);
                match closed {
                    2 => {
                        let done = record.take().zip(*root);
                        if let Some(entry) = done.and_then(|(r, root)| r.into_entry(root)) {
                            return Ok(Some(entry));
                        }
                    }
                    3 => {
                        if let Some(r) = record {
                            r.field = None;
                        }
                    }
                    _ => {}
                }
            }
            Event::Text(t) if *depth == 3 => {
                if let Some(r) = record {
                    r.text(&t.xml10_content());
                }
            }
            Event::CData(t) if *depth == 3 => {
                if let Some(r) = record {
                    r.text(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) if *depth == 3 => {
                let text = resolve(&r)?;
                if let Some(rec) = record {
                    rec.text(&text);
                }
            }
            Event::Eof if root.is_none() => return Err("malformed XML: no root element".into()),
            Event::Eof if *depth > 0 => {
                return Err(format!(
                    "malformed XML: the document ends at byte {} inside an open element",
                    reader.buffer_position()
                ));
            }
            Event::Eof => return Ok(None),
            _ => {}
        }
    }
}

/// An element opens at `depth` (1 for the root).
fn start(
    e: &BytesStart<'_>,
    depth: usize,
    root: &mut Option<Root>,
    record: &mut Option<Record>,
) -> Result<(), String> {
    let name = e.local_name();
    match depth {
        1 => *root = Some(root_of(name.as_ref())?),
        2 if matches!(name.as_ref(), "url" | "sitemap") => *record = Some(Record::default()),
        3 => {
            if let Some(r) = record {
                r.field = field_of(name.as_ref());
                r.alternates.extend(alternate_of(e)?);
            }
        }
        _ => {}
    }
    Ok(())
}

fn root_of(name: &str) -> Result<Root, String> {
    match name {
        "urlset" => Ok(Root::Urlset),
        "sitemapindex" => Ok(Root::Index),
        other => Err(format!(
            "the root element <{other}> is neither <urlset> nor <sitemapindex>"
        )),
    }
}

/// The `href` of an alternate-language link (`<xhtml:link
/// rel="alternate" hreflang="…" href="…"/>`), if `e` is one.
fn alternate_of(e: &BytesStart<'_>) -> Result<Option<String>, String> {
    if e.local_name().as_ref() != "link" {
        return Ok(None);
    }
    let attr = |name: &str| -> Result<Option<String>, String> {
        let malformed = |err: &dyn std::fmt::Display| format!("malformed XML: {err}");
        let Some(a) = e.try_get_attribute(name).map_err(|err| malformed(&err))? else {
            return Ok(None);
        };
        let value = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|err| malformed(&err))?;
        Ok(Some(value.trim().to_string()))
    };
    if attr("rel")?.as_deref() != Some("alternate") {
        return Ok(None);
    }
    Ok(attr("href")?.filter(|h| !h.is_empty()))
}

fn field_of(name: &str) -> Option<&'static str> {
    match name {
        "loc" => Some("loc"),
        "lastmod" => Some("lastmod"),
        "priority" => Some("priority"),
        _ => None,
    }
}

/// The text of a character or predefined entity reference (`&amp;`,
/// `&#38;`); any other is an error (a sitemap declares no entities).
fn resolve(r: &quick_xml::events::BytesRef<'_>) -> Result<String, String> {
    if let Some(c) = r
        .resolve_char_ref()
        .map_err(|e| format!("malformed XML: {e}"))?
    {
        return Ok(c.to_string());
    }
    let name = r.xml10_content();
    quick_xml::escape::resolve_predefined_entity(&name)
        .map(str::to_string)
        .ok_or_else(|| format!("malformed XML: unknown entity &{name};"))
}
