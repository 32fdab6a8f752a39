//! What a spider asks the crawler to fetch.
//!
//! A [`Request`] carries the URL, method, headers, body, query parameters,
//! proxy, cookies, meta, redirect settings, its parse callback, per-host
//! connection limit, allowed statuses, timeout and `dont_filter`, plus a
//! priority and a depth. It is plain, serialisable data — its parse callback
//! included, as a value of the spider's own [`Callback`] type — so that later
//! back-ends can persist queued requests to disk or share them through Redis.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use awc::http::Method;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use crate::error::{Error, ErrorKind, Stage};
use crate::redact;

/// What a callback value must be: plain serialisable data with a default
/// (the callback of a request that names none).
///
/// Implemented for every type that qualifies; `()` is the callback type of a
/// spider with a single parse function.
///
/// # Why `Default`
///
/// Every constructor that is given only a URL ([`Request::get`],
/// [`Request::post`], [`Request::try_from_url`],
/// [`Response::follow`](crate::Response::follow) and `follow_all`,
/// [`start_urls`](crate::start_urls),
/// [`LinkExtractor::requests`](crate::LinkExtractor::requests)) gives its
/// request the callback type's default; [`Request::callback`] then picks
/// another. So the type must have one: for an enum, derive `Default` and
/// mark the variant that start requests and unnamed links go to with
/// `#[default]`:
///
/// ```
/// use spinneret::{Error, Request};
///
/// #[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
/// enum Cb {
///     /// Where a request that names no callback goes (start pages).
///     #[default]
///     List,
///     Detail { id: u32 },
/// }
///
/// let start: Request<Cb> = Request::get("https://shop.example/list")?;
/// assert!(matches!(start.callback, Cb::List));
/// let detail = Request::get("https://shop.example/item/7")?.callback(Cb::Detail { id: 7 });
/// assert!(matches!(detail.callback, Cb::Detail { id: 7 }));
/// # Ok::<(), Error>(())
/// ```
pub trait Callback:
    Serialize + DeserializeOwned + Clone + Default + fmt::Debug + Send + Sync + Unpin + 'static
{
}

impl<T> Callback for T where
    T: Serialize + DeserializeOwned + Clone + Default + fmt::Debug + Send + Sync + Unpin + 'static
{
}

/// A request to fetch, and how to handle its answer.
///
/// Fields are public so download middlewares can rewrite them; the
/// constructors check the URL, so a `Request` always holds an absolute
/// `http` or `https` URL.
///
/// Serialised (in job directories, say), fields left at their defaults are
/// omitted and read back as those defaults.
///
/// Its `Debug` and `Display` keep credentials out: the URL's and the
/// proxy's user name and password print as `***`, the values of credential
/// headers (`Authorization`, `Proxy-Authorization`, `Cookie`, `X-Api-Key`,
/// ...) and of its cookies as `[redacted]`, and the body as its length.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(bound = "C: Callback")]
pub struct Request<C> {
    /// The absolute URL, query parameters included.
    pub url: Url,
    /// The HTTP method.
    #[serde(
        with = "method_serde",
        default = "method_serde::get",
        skip_serializing_if = "method_serde::is_get"
    )]
    pub method: Method,
    /// Headers in the order given; a name may repeat. Part of the
    /// fingerprint, sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// The body, sent as is (the fingerprint reads it without consuming it).
    #[serde(default, skip_serializing_if = "Bytes::is_empty")]
    pub body: Bytes,
    /// An HTTP proxy to send this request through
    /// (`http://user:pass@host:port`, credentials percent-encoded; port 80
    /// if omitted), for `http` and `https` URLs alike, through a CONNECT
    /// tunnel. A malformed proxy URL, an unreachable proxy or one that
    /// refuses the tunnel fails the request with a clear error; it is never
    /// sent directly. `None` connects directly, or through the environment's
    /// proxy when `CrawlerBuilder::proxy_from_env` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Cookies sent with this request only, as name/value pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cookies: Vec<(String, String)>,
    /// Free-form data that travels with the request to its response.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub meta: Map<String, Value>,
    /// Whether a 3xx answer may be followed (when the crawl follows
    /// redirects); if not, the 3xx response reaches the parse callback.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub allow_redirects: bool,
    /// The most redirects followed for this request (see `allow_redirects`).
    #[serde(
        default = "default_max_redirects",
        skip_serializing_if = "is_default_max_redirects"
    )]
    pub max_redirects: u32,
    /// Which parse callback handles the response: a value of the spider's
    /// callback type, matched in `Spider::parse`.
    pub callback: C,
    /// A cap on concurrent downloads from this request's host, when it
    /// must be lower than the crawl's per-host concurrency (it then holds
    /// for the host's later requests too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_conns_per_host: Option<usize>,
    /// Statuses >= 400 that still go to the parse callback instead of the
    /// error handler.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_status: Vec<u16>,
    /// A timeout for this request's whole exchange, overriding the crawl's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// The largest body accepted for this request, after decompression,
    /// overriding the crawl's (`CrawlerBuilder::max_body`, default 64 MiB).
    /// `None` (the default) uses the crawl's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body: Option<usize>,
    /// A file to stream the body to, instead of holding it in memory: each
    /// (decoded) chunk is written as it arrives, the file is created or
    /// truncated, and removed again if the download fails. The response then
    /// has an empty `body`, and its meta names the file (`body_path`) and
    /// the byte count (`body_len`). The size limit still applies (see
    /// `max_body`); a failure to write fails the request with
    /// `ErrorKind::BodyWrite`. `None` (the default) keeps the body in memory.
    ///
    /// The file must lie in a directory the crawl allows
    /// (`CrawlerBuilder::stream_dir`, none by default); any other path fails
    /// the request with `ErrorKind::StreamToRefused` before it is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_to: Option<PathBuf>,
    /// Skip the dupe filter for this request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dont_filter: bool,
    /// Higher runs earlier; equal priorities keep their arrival order.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub priority: i32,
    /// Hops from a start request (start requests have depth 0).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub depth: u32,
    /// Set on a re-crawl's revisit of a page an earlier crawl of the job
    /// directory fetched: what that crawl saw, to ask whether it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) known: Option<Box<KnownPage>>,
}

/// What an earlier crawl saw of a page: its validators and a digest of its
/// body. A re-crawl asks the server with the validators (`If-None-Match`,
/// `If-Modified-Since`) and compares the digest when it answers with the
/// whole body anyway.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KnownPage {
    /// The `ETag` the page was answered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Its `Last-Modified`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// SipHash-1-3 of its body, with fixed keys.
    pub digest: u64,
    /// Whether the revisit is sent with the validators (off when the
    /// spider wants every page's items, which needs every body).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub conditional: bool,
    /// When the page was fetched, in seconds since the Unix epoch: the
    /// answer's `Date` (the server's clock, which its sitemaps' `<lastmod>`
    /// follow), else the crawler's. `None` in indexes written before it
    /// was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetched: Option<i64>,
    /// The revisit is parsed even when its page is unchanged: a sitemap,
    /// whose `<lastmod>`s the re-crawl reads afresh.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub parse: bool,
    /// Not fetched at all: its sitemap's `<lastmod>` says the page has not
    /// changed since it was fetched. Counted unchanged at admission.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip: bool,
}

/// The request headers that carry a revisit's validators: never stored
/// with a page, added afresh to each revisit, and dropped when a revisit
/// is redirected (they are its own page's).
const VALIDATORS: [&str; 2] = ["if-none-match", "if-modified-since"];

/// Whether header `name` carries a revisit's validator.
pub(crate) fn is_validator(name: &str) -> bool {
    VALIDATORS.iter().any(|v| name.eq_ignore_ascii_case(v))
}

impl<C: Callback> Request<C> {
    /// A GET request for `url`, handled by the default callback.
    ///
    /// Fails with [`ErrorKind::InvalidUrl`] for text that is not an absolute
    /// `http`/`https` URL.
    pub fn get(url: &str) -> Result<Self, Error> {
        Ok(Self::from_url(parse_url(url)?))
    }

    /// A POST request for `url` with `body`.
    pub fn post(url: &str, body: impl Into<Bytes>) -> Result<Self, Error> {
        Ok(Self::get(url)?.method(Method::POST).body(body))
    }

    /// A GET request for an already parsed URL.
    ///
    /// Fails like [`Request::get`] for schemes other than `http` and `https`.
    pub fn try_from_url(url: Url) -> Result<Self, Error> {
        check_scheme(&url)?;
        Ok(Self::from_url(url))
    }

    /// A GET request for `url`, which must already be `http` or `https`
    /// (unchecked).
    pub(crate) fn from_url(url: Url) -> Self {
        Request {
            url,
            method: Method::GET,
            headers: Vec::new(),
            body: Bytes::new(),
            proxy: None,
            cookies: Vec::new(),
            meta: Map::new(),
            allow_redirects: true,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            callback: C::default(),
            max_conns_per_host: None,
            allowed_status: Vec::new(),
            timeout: None,
            max_body: None,
            stream_to: None,
            dont_filter: false,
            priority: 0,
            depth: 0,
            known: None,
        }
    }

    /// Sets the parse callback.
    pub fn callback(mut self, callback: C) -> Self {
        self.callback = callback;
        self
    }

    /// Sets the method.
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and its `Content-Type`.
    pub fn json<T: Serialize>(self, value: &T) -> Result<Self, Error> {
        let body = serde_json::to_vec(value)
            .map_err(|e| Error::new(Stage::Setup, ErrorKind::Json(e.to_string())))?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// Adds a header (names may repeat).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Appends a query parameter to the URL's own query string (it never
    /// replaces what the URL already has).
    pub fn param(mut self, key: &str, value: &str) -> Self {
        self.url.query_pairs_mut().append_pair(key, value);
        self
    }

    /// Adds a cookie sent with this request.
    pub fn cookie(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.cookies.push((name.into(), value.into()));
        self
    }

    /// Sets a meta value that travels to the response.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.meta.insert(key.into(), value.into());
        self
    }

    /// Sends this request through an HTTP proxy.
    pub fn proxy(mut self, proxy: impl Into<String>) -> Self {
        self.proxy = Some(proxy.into());
        self
    }

    /// Lets a status >= 400 reach the parse callback.
    pub fn allow_status(mut self, status: u16) -> Self {
        self.allowed_status.push(status);
        self
    }

    /// Sets this request's timeout for the whole exchange.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the largest body accepted for this request, after
    /// decompression (see the `max_body` field).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = Some(bytes);
        self
    }

    /// Streams the body to the file at `path` instead of memory (see the
    /// `stream_to` field); `path` must lie in one of the crawl's stream
    /// directories (`CrawlerBuilder::stream_dir`).
    pub fn stream_to(mut self, path: impl Into<PathBuf>) -> Self {
        self.stream_to = Some(path.into());
        self
    }

    /// Marks the request so the dupe filter lets it through.
    pub fn dont_filter(mut self) -> Self {
        self.dont_filter = true;
        self
    }

    /// Sets the priority (higher runs earlier).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Turns redirect following on or off for this request.
    pub fn allow_redirects(mut self, allow: bool) -> Self {
        self.allow_redirects = allow;
        self
    }

    /// Whether `status` goes to the parse callback (below 400, or allowed).
    pub fn status_allowed(&self, status: u16) -> bool {
        status < 400 || self.allowed_status.contains(&status)
    }
}

impl<C: fmt::Debug> fmt::Debug for Request<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let secret = redact::is_secret_header(name);
                (name.as_str(), if secret { redact::REDACTED } else { value })
            })
            .collect();
        let cookies: Vec<(&str, &str)> = self
            .cookies
            .iter()
            .map(|(name, _)| (name.as_str(), redact::REDACTED))
            .collect();
        f.debug_struct("Request")
            .field("url", &redact::Redacted(&self.url))
            .field("method", &self.method)
            .field("headers", &headers)
            .field("body", &format_args!("[{} bytes]", self.body.len()))
            .field("proxy", &self.proxy.as_deref().map(redact::text))
            .field("cookies", &cookies)
            .field("meta", &crate::redact::Meta(&self.meta))
            .field("allow_redirects", &self.allow_redirects)
            .field("max_redirects", &self.max_redirects)
            .field("callback", &self.callback)
            .field("max_conns_per_host", &self.max_conns_per_host)
            .field("allowed_status", &self.allowed_status)
            .field("timeout", &self.timeout)
            .field("max_body", &self.max_body)
            .field("stream_to", &self.stream_to)
            .field("dont_filter", &self.dont_filter)
            .field("priority", &self.priority)
            .field("depth", &self.depth)
            .field("known", &self.known)
            .finish()
    }
}

/// `GET http://host/path`, credentials in the URL masked.
impl<C> fmt::Display for Request<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, redact::Redacted(&self.url))
    }
}

/// Parses an absolute `http`/`https` URL with a clear error otherwise.
pub(crate) fn parse_url(input: &str) -> Result<Url, Error> {
    let url = Url::parse(input).map_err(|e| {
        Error::new(
            Stage::Setup,
            ErrorKind::InvalidUrl {
                input: redact::text(input),
                reason: e.to_string(),
            },
        )
    })?;
    check_scheme(&url)?;
    Ok(url)
}

fn check_scheme(url: &Url) -> Result<(), Error> {
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(()),
        "http" | "https" => Err(invalid(url, "no host")),
        other => Err(invalid(url, &format!("unsupported scheme {other:?}"))),
    }
}

fn invalid(url: &Url, reason: &str) -> Error {
    Error::new(
        Stage::Setup,
        ErrorKind::InvalidUrl {
            input: redact::Redacted(url).to_string(),
            reason: reason.to_string(),
        },
    )
}

/// Serde for `http::Method` as its upper-case name.
/// Redirects followed per request unless set otherwise.
pub(crate) const DEFAULT_MAX_REDIRECTS: u32 = 20;

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn default_max_redirects() -> u32 {
    DEFAULT_MAX_REDIRECTS
}

fn is_default_max_redirects(n: &u32) -> bool {
    *n == DEFAULT_MAX_REDIRECTS
}

fn is_zero_i32(n: &i32) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

mod method_serde {
    use awc::http::Method;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn get() -> Method {
        Method::GET
    }

    pub fn is_get(m: &Method) -> bool {
        m == Method::GET
    }

    pub fn serialize<S: Serializer>(m: &Method, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(m.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Method, D::Error> {
        let s = String::deserialize(d)?;
        Method::from_bytes(s.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// A request's download slot: its host, as in Scrapy. Borrowed, so the
/// per-request lookups allocate nothing; owners copy it.
pub(crate) fn slot_of(url: &url::Url) -> &str {
    url.host_str().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_merged_into_the_query() {
        let r = Request::<()>::get("http://h/p?a=1")
            .unwrap()
            .param("b", "2 3");
        assert_eq!(r.url.as_str(), "http://h/p?a=1&b=2+3");
    }

    #[test]
    fn debug_and_display_keep_credentials_out() {
        let r = Request::<()>::get("http://urluser:urlpw@127.0.0.1:8080/p?q=1")
            .unwrap()
            .header("Authorization", "Bearer authsecret")
            .header("Proxy-Authorization", "Basic proxyauthsecret")
            .header("Cookie", "sid=cookieheadersecret")
            .header("Set-Cookie", "sid=setcookiesecret")
            .header("X-Api-Key", "apikeysecret")
            .header("Accept", "text/html")
            .cookie("session", "cookiesecret")
            .proxy("http://proxyuser:proxypw@127.0.0.1:3128")
            .body("password=bodysecret")
            .meta(
                crate::redirect::REDIRECT_URLS,
                serde_json::json!(["http://chainuser:chainpw@127.0.0.1/a"]),
            );
        let debug = format!("{r:?}");
        let display = r.to_string();
        for secret in [
            "urluser",
            "urlpw",
            "authsecret",
            "proxyauthsecret",
            "cookieheadersecret",
            "setcookiesecret",
            "apikeysecret",
            "cookiesecret",
            "proxyuser",
            "proxypw",
            "bodysecret",
            "chainpw",
        ] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
            assert!(!display.contains(secret), "{secret} in {display}");
        }
        // What is not secret still shows.
        assert!(
            debug.contains("http://***:***@127.0.0.1:8080/p?q=1"),
            "{debug}"
        );
        assert!(debug.contains("\"Accept\", \"text/html\""), "{debug}");
        assert!(debug.contains("\"X-Api-Key\", \"[redacted]\""), "{debug}");
        assert!(debug.contains("http://***:***@127.0.0.1:3128"), "{debug}");
        assert!(debug.contains("[19 bytes]"), "{debug}");
        assert_eq!(display, "GET http://***:***@127.0.0.1:8080/p?q=1");
        // The request itself still carries them.
        assert_eq!(r.url.password(), Some("urlpw"));
    }

    #[test]
    fn bad_urls_are_clear_errors() {
        let e = Request::<()>::get("not a url").unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::InvalidUrl { .. }), "{e}");
        let e = Request::<()>::get("ftp://h/x").unwrap_err();
        assert!(e.to_string().contains("unsupported scheme"), "{e}");
        // The text given is kept with its credentials masked.
        for bad in ["ftp://u:hunter2@h/x", "http://u:hunter2@[::1/x"] {
            let e = Request::<()>::get(bad).unwrap_err();
            let ErrorKind::InvalidUrl { input, .. } = e.kind() else {
                panic!("{e}");
            };
            assert!(!input.contains("hunter2"), "{input}");
            assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
        }
    }

    #[test]
    fn round_trips_through_json_with_its_callback() {
        #[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
        enum Cb {
            #[default]
            List,
            Detail {
                id: u32,
            },
        }
        let r = Request::post("http://h/p", "body")
            .unwrap()
            .callback(Cb::Detail { id: 7 })
            .header("x-a", "1")
            .meta("k", 3)
            .priority(5);
        let text = serde_json::to_string(&r).unwrap();
        let back: Request<Cb> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.method, Method::POST);
        assert_eq!(&back.body[..], b"body");
    }

    #[test]
    fn defaults_are_left_out_and_read_back() {
        let r = Request::<()>::get("http://h/p").unwrap();
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"url":"http://h/p","callback":null}"#);
        let back: Request<()> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);

        let mut r = r.dont_filter().priority(-2);
        r.allow_redirects = false;
        r.max_redirects = 3;
        r.depth = 4;
        r.timeout = Some(Duration::from_millis(1500));
        let text = serde_json::to_string(&r).unwrap();
        let back: Request<()> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn status_allowed_rules() {
        let r = Request::<()>::get("http://h/").unwrap().allow_status(404);
        assert!(r.status_allowed(200));
        assert!(r.status_allowed(301));
        assert!(r.status_allowed(404));
        assert!(!r.status_allowed(500));
    }
}
