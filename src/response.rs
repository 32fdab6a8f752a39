//! What the downloader hands back for a request.
//!
//! A [`Response`] is the final URL, status, headers and body of an exchange,
//! plus [`ResponseMeta`]: the facts Scrapy keeps per response
//! (`download_latency`, `download_slot`, `download_timeout`, `depth`) and the
//! request's own meta, so a callback sees what its request carried.
//!
//! It also owns reading a page: decoding the body by its declared charset
//! ([`Response::text`]) and CSS selection over it ([`Response::css`]).
//! Following links is the link extractor's job ([`LinkExtractor`](crate::LinkExtractor)).

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use awc::http::header::HeaderMap;
use bytes::Bytes;
use encoding_rs::Encoding;
use scraper::{Html, Selector};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use url::Url;

use crate::error::{Error, Stage};
use crate::redact;

mod selector;
// element_text serves the command line only.
#[cfg_attr(not(feature = "cli"), allow(unused_imports))]
pub(crate) use selector::{element_text, parse_selector};

/// A downloaded answer.
///
/// Its `Debug` keeps credentials out: URLs print with user and password as
/// `***`, the values of credential headers (`Set-Cookie`, ...) as
/// `[redacted]`, and the body as its length.
#[derive(Clone)]
pub struct Response {
    /// The URL the body came from (after any redirect).
    pub url: Url,
    /// The HTTP status code.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The (decompressed) body; empty when the request streamed it to a
    /// file (see [`ResponseMeta::body_path`]).
    pub body: Bytes,
    /// Crawl facts about this exchange.
    pub meta: ResponseMeta,
}

/// Crawl facts about one exchange, named as in Scrapy. Its `Debug` masks
/// credentials in the URLs.
#[derive(Clone, Default)]
pub struct ResponseMeta {
    /// Time from sending the request to having the whole body.
    pub download_latency: Duration,
    /// The download slot (the host) the request went through.
    pub download_slot: String,
    /// The timeout that applied to the exchange.
    pub download_timeout: Duration,
    /// Hops from a start request.
    pub depth: u32,
    /// Which attempt this was (1 for the first).
    pub attempt: u32,
    /// The URL that was requested, before any redirect.
    pub request_url: Option<Url>,
    /// URLs redirected through on the way to `Response::url`, in order.
    pub redirect_urls: Vec<Url>,
    /// The request's meta, carried over.
    pub request_meta: Map<String, Value>,
    /// How many body bytes were received, after decompression: the length
    /// of `Response::body`, or of the file at `body_path`.
    pub body_len: u64,
    /// The file the body was streamed to when the request asked for it
    /// (`Request::stream_to`); `Response::body` is then empty.
    pub body_path: Option<PathBuf>,
    /// The most body bytes the exchange accepted, decoded: the request's
    /// `max_body`, else the crawl's. A callback that decodes the body
    /// further (a gzip sitemap, `SitemapRules`) holds what it decodes to
    /// the same limit. `None` for a response not downloaded (made by hand).
    pub body_limit: Option<usize>,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let shown = match value.to_str() {
                    _ if redact::is_secret_header(name.as_str()) => redact::REDACTED,
                    Ok(text) => text,
                    Err(_) => "[not text]",
                };
                (name.as_str(), shown)
            })
            .collect();
        f.debug_struct("Response")
            .field("url", &redact::Redacted(&self.url))
            .field("status", &self.status)
            .field("headers", &headers)
            .field("body", &format_args!("[{} bytes]", self.body.len()))
            .field("meta", &self.meta)
            .finish()
    }
}

impl fmt::Debug for ResponseMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redirects: Vec<_> = self.redirect_urls.iter().map(redact::Redacted).collect();
        f.debug_struct("ResponseMeta")
            .field("download_latency", &self.download_latency)
            .field("download_slot", &self.download_slot)
            .field("download_timeout", &self.download_timeout)
            .field("depth", &self.depth)
            .field("attempt", &self.attempt)
            .field(
                "request_url",
                &self.request_url.as_ref().map(redact::Redacted),
            )
            .field("redirect_urls", &redirects)
            .field("request_meta", &crate::redact::Meta(&self.request_meta))
            .field("body_len", &self.body_len)
            .field("body_path", &self.body_path)
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}

impl Response {
    /// The body as text, decoded by [`Response::encoding`]; malformed
    /// sequences become U+FFFD and a byte order mark is dropped.
    ///
    /// Borrows the body when it is already valid UTF-8 in a UTF-8 page.
    pub fn text(&self) -> Cow<'_, str> {
        // `decode` sniffs the BOM itself, which agrees with `encoding()`.
        let (text, _, _) = self.encoding().decode(&self.body);
        text
    }

    /// The body's character encoding, decided as a browser does: a byte
    /// order mark first, then the `charset` of the `Content-Type` header,
    /// then a `<meta charset>` or `<meta http-equiv="Content-Type">` within
    /// the first 1024 bytes (HTML bodies only), else UTF-8.
    ///
    /// Labels resolve as in the WHATWG Encoding Standard, so `iso-8859-1`
    /// and `latin1` name windows-1252 (its superset); `.name()` gives the
    /// canonical name.
    pub fn encoding(&self) -> &'static Encoding {
        if let Some((encoding, _)) = Encoding::for_bom(&self.body) {
            return encoding;
        }
        let content_type = self.header("content-type");
        if let Some(encoding) = content_type
            .and_then(charset_in)
            .and_then(Encoding::for_label)
        {
            return encoding;
        }
        // A JSON or plain-text body that happens to contain `<meta` must
        // not be reinterpreted; an undeclared type may well be HTML.
        let html = content_type.is_none_or(|t| t.to_ascii_lowercase().contains("html"));
        let head = &self.body[..self.body.len().min(PRESCAN_BYTES)];
        html.then(|| prescan(head))
            .flatten()
            .unwrap_or(encoding_rs::UTF_8)
    }

    /// The body parsed as an HTML document (from [`Response::text`]).
    ///
    /// Parse once and select many times when a callback needs several
    /// selectors; [`Response::css`] parses on every call. The document,
    /// its selectors and the elements they find are scraper's types,
    /// re-exported as [`Html`], [`Selector`] and [`ElementRef`](crate::ElementRef):
    ///
    /// ```
    /// use spinneret::{ElementRef, Html, Response, Selector};
    /// # let response = Response {
    /// #     url: "http://127.0.0.1/".parse().unwrap(),
    /// #     status: 200,
    /// #     headers: Default::default(),
    /// #     body: "<h1>Shop</h1><ul><li>tea</li><li>cups</li></ul>".into(),
    /// #     meta: Default::default(),
    /// # };
    ///
    /// let page: Html = response.html();
    /// let text = |element: ElementRef<'_>| element.text().collect::<String>();
    /// let items = Selector::parse("li").expect("a valid selector");
    /// let title = Selector::parse("h1").expect("a valid selector");
    /// assert_eq!(page.select(&items).map(text).collect::<Vec<_>>(), ["tea", "cups"]);
    /// assert_eq!(page.select(&title).map(text).next().as_deref(), Some("Shop"));
    /// ```
    pub fn html(&self) -> Html {
        Html::parse_document(&self.text())
    }

    /// The text content of every element matching the CSS `selector`, in
    /// document order: all descendant text joined, untrimmed (the DOM's
    /// `textContent`).
    ///
    /// Fails with [`ErrorKind::Selector`](crate::ErrorKind::Selector)
    /// (stage `parse`, this response's URL) when `selector` is not valid
    /// CSS.
    pub fn css(&self, selector: &str) -> Result<Vec<String>, Error> {
        let selector = self.selector(selector)?;
        let doc = self.html();
        Ok(doc
            .select(&selector)
            .map(|el| el.text().collect())
            .collect())
    }

    /// The value of attribute `attr` on every element matching the CSS
    /// `selector` that has it, in document order; values are as written
    /// (a link stays relative: see [`Response::urljoin`]).
    ///
    /// Fails like [`Response::css`] for a bad selector.
    pub fn css_attr(&self, selector: &str, attr: &str) -> Result<Vec<String>, Error> {
        let selector = self.selector(selector)?;
        let doc = self.html();
        Ok(doc
            .select(&selector)
            .filter_map(|el| el.value().attr(attr).map(str::to_string))
            .collect())
    }

    /// Parses a CSS selector, with this response as the error's context.
    fn selector(&self, selector: &str) -> Result<Selector, Error> {
        parse_selector(selector).map_err(|kind| Error::new(Stage::Parse, kind).with_url(&self.url))
    }

    /// The body parsed as JSON into `T`.
    ///
    /// Fails with [`ErrorKind::Json`](crate::ErrorKind::Json) (stage
    /// `parse`, this response's URL) when the body is not valid JSON of that
    /// shape; the `serde_json` error, with its line and column, is the
    /// error's `source`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| Error::from(e).with_url(&self.url))
    }

    /// A header's value as text, if present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body length in bytes.
    pub fn content_length(&self) -> usize {
        self.body.len()
    }
}

/// How far into the body the `<meta>` prescan looks, as browsers do.
const PRESCAN_BYTES: usize = 1024;

/// The value of a `charset=` parameter in a `Content-Type` value (header or
/// `<meta content>`), per the WHATWG "extract a character encoding from a
/// meta element" steps: quoted or bare, case-insensitive name.
fn charset_in(value: &str) -> Option<&[u8]> {
    let bytes = value.as_bytes();
    let mut from = 0;
    loop {
        let at = from + find_ci(&bytes[from..], b"charset")?;
        from = at + b"charset".len();
        let rest = skip_ws(bytes, from);
        if bytes.get(rest) != Some(&b'=') {
            continue;
        }
        let start = skip_ws(bytes, rest + 1);
        return match bytes.get(start)? {
            &q @ (b'"' | b'\'') => {
                let len = bytes[start + 1..].iter().position(|&b| b == q)?;
                Some(&bytes[start + 1..start + 1 + len])
            }
            _ => {
                let len = bytes[start..]
                    .iter()
                    .position(|&b| b == b';' || b.is_ascii_whitespace())
                    .unwrap_or(bytes.len() - start);
                Some(&bytes[start..start + len])
            }
        };
    }
}

/// The WHATWG prescan for a `<meta>` charset over `head` (the first 1024
/// bytes): tags are skipped attribute by attribute, so a `<meta` inside a
/// comment or an attribute value is not mistaken for one.
fn prescan(head: &[u8]) -> Option<&'static Encoding> {
    let mut i = 0;
    while i < head.len() {
        let rest = &head[i..];
        if rest.starts_with(b"<!--") {
            // The comment's "-->" may share its dashes with "<!--".
            i += 2 + find_ci(&rest[2..], b"-->")? + 3;
        } else if starts_with_ci(rest, b"<meta")
            && rest
                .get(5)
                .is_some_and(|&b| b == b'/' || b.is_ascii_whitespace())
        {
            let (attrs, end) = attributes(head, i + 5);
            if let Some(encoding) = meta_encoding(&attrs) {
                return Some(encoding);
            }
            i = end;
        } else if rest.len() > 1
            && rest[0] == b'<'
            && (rest[1].is_ascii_alphabetic() || (rest[1] == b'/' && rest.len() > 2))
        {
            let name_end = rest
                .iter()
                .position(|&b| b == b'>' || b.is_ascii_whitespace())
                .unwrap_or(rest.len());
            i = attributes(head, i + name_end).1;
        } else if rest.starts_with(b"<!") || rest.starts_with(b"<?") || rest.starts_with(b"</") {
            i += rest.iter().position(|&b| b == b'>')? + 1;
        } else {
            i += 1;
        }
    }
    None
}

/// A tag attribute seen by the prescan: lower-cased name and value.
type Attribute = (Vec<u8>, Vec<u8>);

/// What a `<meta>` tag's attributes declare, if anything usable.
fn meta_encoding(attrs: &[Attribute]) -> Option<&'static Encoding> {
    // The first occurrence of an attribute wins, as in the prescan.
    let get = |name: &[u8]| attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let label = match get(b"charset") {
        Some(charset) => charset.as_slice(),
        None => {
            let pragma = get(b"http-equiv")?;
            if !pragma.eq_ignore_ascii_case(b"content-type") {
                return None;
            }
            charset_in(std::str::from_utf8(get(b"content")?).ok()?)?
        }
    };
    let encoding = Encoding::for_label(label)?;
    // A document that can declare itself in ASCII is not UTF-16, and
    // x-user-defined from a page means windows-1252 (WHATWG prescan).
    Some(
        if encoding == encoding_rs::UTF_16BE || encoding == encoding_rs::UTF_16LE {
            encoding_rs::UTF_8
        } else if encoding == encoding_rs::X_USER_DEFINED {
            encoding_rs::WINDOWS_1252
        } else {
            encoding
        },
    )
}

/// The attributes of the tag whose name ends at `i`, lower-cased names, and
/// where the tag ends ("get an attribute" of the WHATWG prescan, looped).
fn attributes(head: &[u8], mut i: usize) -> (Vec<Attribute>, usize) {
    let mut attrs = Vec::new();
    loop {
        while head
            .get(i)
            .is_some_and(|&b| b == b'/' || b.is_ascii_whitespace())
        {
            i += 1;
        }
        match head.get(i) {
            None => return (attrs, i),
            Some(b'>') => return (attrs, i + 1),
            Some(_) => {}
        }
        let mut name = Vec::new();
        while let Some(&b) = head.get(i) {
            if (b == b'=' && !name.is_empty()) || b == b'/' || b == b'>' || b.is_ascii_whitespace()
            {
                break;
            }
            name.push(b.to_ascii_lowercase());
            i += 1;
        }
        i = skip_ws(head, i);
        let mut value = Vec::new();
        if head.get(i) == Some(&b'=') {
            i = skip_ws(head, i + 1);
            match head.get(i) {
                Some(&q @ (b'"' | b'\'')) => {
                    i += 1;
                    while let Some(&b) = head.get(i) {
                        i += 1;
                        if b == q {
                            break;
                        }
                        value.push(b.to_ascii_lowercase());
                    }
                }
                _ => {
                    while let Some(&b) = head.get(i) {
                        if b == b'>' || b.is_ascii_whitespace() {
                            break;
                        }
                        value.push(b.to_ascii_lowercase());
                        i += 1;
                    }
                }
            }
        }
        attrs.push((name, value));
    }
}

/// Where `needle` (lower-case ASCII) first occurs in `haystack`, ignoring
/// ASCII case.
fn find_ci(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

fn starts_with_ci(haystack: &[u8], prefix: &[u8]) -> bool {
    haystack
        .get(..prefix.len())
        .is_some_and(|h| h.eq_ignore_ascii_case(prefix))
}

/// The index of the first non-whitespace byte at or after `i`.
fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn response(body: &'static str) -> Response {
        Response {
            url: Url::parse("http://h/a/list").unwrap(),
            status: 200,
            headers: HeaderMap::new(),
            body: Bytes::from_static(body.as_bytes()),
            meta: ResponseMeta::default(),
        }
    }

    /// A response with `body` and, if given, a `Content-Type` header.
    fn typed(content_type: Option<&'static str>, body: &'static [u8]) -> Response {
        let mut r = response("");
        if let Some(t) = content_type {
            r.headers.insert(
                awc::http::header::CONTENT_TYPE,
                awc::http::header::HeaderValue::from_static(t),
            );
        }
        r.body = Bytes::from_static(body);
        r
    }

    #[test]
    fn debug_keeps_credentials_out() {
        use awc::http::header::{HeaderName, HeaderValue};
        let mut r = typed(Some("text/html"), b"token=bodysecret");
        r.url = Url::parse("http://u:urlpw@h/final").unwrap();
        r.headers.insert(
            HeaderName::from_static("set-cookie"),
            HeaderValue::from_static("sid=cookiesecret"),
        );
        r.meta.request_url = Some(Url::parse("http://u:firstpw@h/first").unwrap());
        r.meta.redirect_urls = vec![Url::parse("http://u:hoppw@h/hop").unwrap()];
        let debug = format!("{r:?}");
        for secret in ["urlpw", "cookiesecret", "bodysecret", "firstpw", "hoppw"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert!(
            debug.contains("(\"content-type\", \"text/html\")"),
            "{debug}"
        );
        assert!(debug.contains("http://***:***@h/hop"), "{debug}");
    }

    #[test]
    fn header_charset_latin1_decodes() {
        let r = typed(Some("text/html; charset=ISO-8859-1"), b"caf\xe9");
        assert_eq!(r.text(), "caf\u{e9}");
        // The WHATWG maps latin-1 labels to its superset windows-1252.
        assert_eq!(r.encoding().name(), "windows-1252");
    }

    #[test]
    fn header_charset_may_be_quoted() {
        let r = typed(Some("text/plain; charset=\"latin1\""), b"caf\xe9");
        assert_eq!(r.text(), "caf\u{e9}");
    }

    #[test]
    fn meta_charset_windows_1252_decodes() {
        let r = typed(
            Some("text/html"),
            b"<!doctype html><html><head><meta charset=\"windows-1252\"><title>t</title>\
              </head><body>caf\xe9 \x80</body></html>",
        );
        assert_eq!(r.encoding().name(), "windows-1252");
        // 0x80 is the euro sign in windows-1252 (a C1 control in latin-1).
        assert!(r.text().contains("caf\u{e9} \u{20ac}"), "{}", r.text());
    }

    #[test]
    fn meta_http_equiv_content_type_decodes() {
        let r = typed(
            None,
            b"<html><head><META HTTP-EQUIV=Content-Type \
              CONTENT='text/html; Charset=ISO-8859-1'></head><body>caf\xe9</body></html>",
        );
        assert_eq!(r.encoding().name(), "windows-1252");
        assert!(r.text().contains("caf\u{e9}"));
    }

    #[test]
    fn header_charset_beats_meta() {
        let r = typed(
            Some("text/html; charset=utf-8"),
            b"<meta charset=windows-1252>caf\xc3\xa9",
        );
        assert_eq!(r.encoding().name(), "UTF-8");
        assert!(r.text().ends_with("caf\u{e9}"));
    }

    #[test]
    fn meta_prescan_is_bounded_and_skips_comments_and_attributes() {
        // Past the first 1024 bytes: not seen.
        let mut late = vec![b' '; PRESCAN_BYTES];
        late.extend_from_slice(b"<meta charset=windows-1252>");
        let mut r = typed(None, b"");
        r.body = Bytes::from(late);
        assert_eq!(r.encoding().name(), "UTF-8");
        // Inside a comment or another tag's attribute: not a declaration.
        let r = typed(
            None,
            b"<!-- <meta charset=koi8-r> --><div title='<meta charset=koi8-r>'>\
              </div><meta charset=windows-1252>",
        );
        assert_eq!(r.encoding().name(), "windows-1252");
        // Unknown labels are passed over.
        let r = typed(None, b"<meta charset=no-such><meta charset=koi8-r>");
        assert_eq!(r.encoding().name(), "KOI8-R");
    }

    #[test]
    fn meta_is_ignored_outside_html() {
        let r = typed(
            Some("application/json"),
            b"{\"s\": \"<meta charset=windows-1252>\"}",
        );
        assert_eq!(r.encoding().name(), "UTF-8");
    }

    #[test]
    fn bom_wins_and_is_dropped() {
        let r = typed(
            Some("text/html; charset=iso-8859-1"),
            b"\xef\xbb\xbfcaf\xc3\xa9",
        );
        assert_eq!(r.encoding().name(), "UTF-8");
        assert_eq!(r.text(), "caf\u{e9}");
        let r = typed(None, b"\xff\xfec\x00a\x00f\x00\xe9\x00");
        assert_eq!(r.encoding().name(), "UTF-16LE");
        assert_eq!(r.text(), "caf\u{e9}");
    }

    #[test]
    fn default_is_utf8_and_borrows() {
        let r = typed(Some("text/html"), "caf\u{e9}".as_bytes());
        assert_eq!(r.encoding().name(), "UTF-8");
        assert!(matches!(r.text(), Cow::Borrowed("caf\u{e9}")));
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let r = typed(None, b"caf\xe9!");
        assert_eq!(r.text(), "caf\u{fffd}!");
    }

    #[test]
    fn css_selects_text_and_attributes() {
        let r = response(
            "<html><body><h1>Title <b>one</b></h1><ul>\
             <li><a href='/a'>A</a></li><li><a>no href</a></li>\
             <li><a href='b?x=1'>B</a></li></ul></body></html>",
        );
        assert_eq!(r.css("h1").unwrap(), ["Title one"]);
        assert_eq!(r.css("li a").unwrap(), ["A", "no href", "B"]);
        assert_eq!(r.css_attr("a", "href").unwrap(), ["/a", "b?x=1"]);
        assert!(r.css("h2").unwrap().is_empty());
        assert_eq!(r.html().select(&Selector::parse("li").unwrap()).count(), 3);
    }

    #[test]
    fn bad_selector_is_a_clear_error() {
        let r = response("<p>x</p>");
        let e = r.css("a[").unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Selector { selector, .. } if selector == "a["),
            "{e}"
        );
        assert_eq!(e.stage(), Stage::Parse);
        assert_eq!(e.url().unwrap().as_str(), "http://h/a/list");
        assert_eq!(e.kind_name(), "selector");
        assert!(
            e.to_string().starts_with("invalid CSS selector \"a[\": "),
            "{e}"
        );
        assert!(r.css_attr("<<", "href").is_err());
    }

    #[test]
    fn an_unsupported_selector_is_named_on_one_line() {
        let e = response("<p>x</p>").css("p::before").unwrap_err();
        assert_eq!(
            e.kind().to_string(),
            "invalid CSS selector \"p::before\": unsupported pseudo-element ::before"
        );
    }

    #[test]
    fn json_errors_name_the_url() {
        let e = response("{not json").json::<Value>().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Json(_)));
        assert_eq!(e.url().unwrap().as_str(), "http://h/a/list");
    }
}
