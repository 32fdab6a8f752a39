//! The crate's one error type.
//!
//! Every failure anywhere in a crawl is an [`Error`]: a boxed [`ErrorKind`]
//! saying what went wrong plus the context a user needs to act on it (the
//! URL, the [`Stage`] of the crawl, the attempt number). Expected outcomes —
//! a duplicate request, a dropped item — are values elsewhere, never errors.

use std::fmt;
use std::time::Duration;

use url::Url;

/// Where in the crawl an error happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Stage {
    /// Building the crawl or a request.
    Setup,
    /// Queueing, de-duplicating or dispatching a request.
    Schedule,
    /// A download middleware's `process_request`.
    ProcessRequest,
    /// The network exchange itself.
    Download,
    /// A download middleware's `process_response`.
    ProcessResponse,
    /// The spider's parse callback.
    Parse,
    /// An item pipeline.
    Pipeline,
    /// The spider's error callback.
    ErrorCallback,
    /// Controlling the crawl (pause, resume, stop).
    Control,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self).ok();
        let name = s.as_ref().and_then(|v| v.as_str()).unwrap_or("unknown");
        f.write_str(name)
    }
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A URL could not be parsed or has a scheme the crawler cannot fetch.
    #[error("invalid URL{}: {reason}", quoted_input(input))]
    InvalidUrl {
        /// The text that was given, user name and password masked.
        input: String,
        /// Why it was refused.
        reason: String,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The whole exchange (headers and body) took longer than allowed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Connecting or sending failed, for the reason `cause` names (a
    /// refused connection, a certificate the crawl does not trust...).
    #[error("connection failed: {} [{}]: {message}", cause.describe(), cause.name())]
    Connect {
        /// Why, as a kind to match on.
        cause: ConnectCause,
        /// The lower-level error's text.
        message: String,
    },
    /// Reading the body failed.
    #[error("reading the body failed: {0}")]
    Body(String),
    /// The body was larger than the configured maximum.
    #[error("response body over the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A body's `Content-Encoding` could not be undone: a coding the
    /// crawler does not decode, too many stacked, or a stream that is
    /// corrupt or cut short. The bytes are not handed on as the body.
    #[error("content coding {coding:?} refused: {reason}")]
    ContentEncoding {
        /// The coding (or codings) named by the response.
        coding: String,
        /// What was wrong.
        reason: String,
    },
    /// Writing a body to the file its request streams to
    /// (`Request::stream_to`) failed.
    #[error("writing the body to {} failed: {reason}", path.display())]
    BodyWrite {
        /// The file.
        path: std::path::PathBuf,
        /// The operating system's message.
        reason: String,
    },
    /// A request's `stream_to` leads outside every directory the crawl lets
    /// bodies be streamed into (`CrawlerBuilder::stream_dir`); the request
    /// is not sent.
    #[error("streaming the body to {} is refused: {reason}", path.display())]
    StreamToRefused {
        /// The path the request named.
        path: std::path::PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// A sitemap (or a robots.txt read for its `Sitemap:` lines) could not
    /// be read to its end, or held more than its limits allow; the entries
    /// read before are kept.
    #[error("sitemap {sitemap}: {reason}")]
    Sitemap {
        /// The sitemap's URL.
        sitemap: String,
        /// What was wrong, and what was refused.
        reason: String,
    },
    /// The server answered with a status the request does not allow.
    #[error("HTTP status {0} is not allowed for this request")]
    HttpStatus(u16),
    /// A body was not the JSON the caller expected. Made by `?` from a
    /// `serde_json::Error`, it holds the kind of failure (`syntax error`,
    /// `data of the wrong shape`, ...) and the error itself is the
    /// [`source`](std::error::Error::source), with the line and column.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// Reading or writing a file (or another I/O resource) failed in user
    /// code: what `?` makes of a [`std::io::Error`], which stays the
    /// error's [`source`](std::error::Error::source).
    #[error("I/O failed: {0}")]
    Io(std::io::ErrorKind),
    /// A CSS selector given to a response helper could not be parsed.
    #[error("invalid CSS selector {selector:?}: {reason}")]
    Selector {
        /// The selector as given.
        selector: String,
        /// The parser's message.
        reason: String,
    },
    /// A spider, middleware or pipeline reported a failure.
    #[error("{0}")]
    Custom(String),
    /// User code panicked; the panic was caught.
    #[error("panicked: {0}")]
    Panic(String),
    /// The operation does not fit the crawl's state (for example pausing a
    /// finished crawl).
    #[error("illegal state: {0}")]
    IllegalState(String),
    /// A queue or dupe-filter back-end failed.
    #[error("back-end failure: {0}")]
    Backend(String),
    /// A redirect chain was longer than the request allows.
    #[error("more than {max} redirects")]
    TooManyRedirects {
        /// The request's `max_redirects`.
        max: u32,
    },
    /// A redirect led back to a URL of its own chain.
    #[error("redirect loop back to {}", crate::redact::text(url))]
    RedirectLoop {
        /// The URL visited twice.
        url: String,
    },
    /// Reading or writing a job directory's checkpoint journal failed.
    #[error("checkpoint journal {} failed: {reason}", path.display())]
    Journal {
        /// The journal file (or the job directory).
        path: std::path::PathBuf,
        /// The operating system's message, or what was wrong.
        reason: String,
    },
    /// The address guard (`CrawlerBuilder::block_private_addresses`)
    /// refused every address the request's host resolved to.
    #[error("{host} resolves to {addr}, a {range} address: refused by the address guard")]
    BlockedAddress {
        /// The host of the request's URL.
        host: String,
        /// The (first) address refused.
        addr: std::net::IpAddr,
        /// The range it falls in (`loopback`, `private`, `link-local`, ...).
        range: String,
    },
    /// A job directory's checkpoint journal is damaged before its end: a
    /// record that fails its checks is followed by valid ones, so the
    /// damage is not a torn last write. Resuming would drop the records
    /// after it; nothing is cut, and the crawl does not start.
    #[error(
        "checkpoint journal {} is corrupt at byte {offset}: a valid record follows at \
         byte {next_valid}, so this is not a torn last write; nothing was cut. Move the \
         job directory aside to start over, or truncate the file to {offset} bytes to \
         resume from the records before the damage (losing those after it)",
        path.display()
    )]
    JournalCorrupt {
        /// The journal file.
        path: std::path::PathBuf,
        /// Where the damaged record starts (the bytes before it are valid
        /// records).
        offset: u64,
        /// Where the first valid record after the damage starts.
        next_valid: u64,
    },
    /// A pipeline's `close` did not finish within the crawl's finish
    /// timeout: it was abandoned so the crawl could end, and the items it
    /// still held may be lost.
    #[error("pipeline {pipeline:?} did not close within {after:?}; abandoned")]
    PipelineCloseTimeout {
        /// The pipeline's name.
        pipeline: String,
        /// The finish timeout.
        after: Duration,
    },
    /// A job directory's saved dupe store (the Bloom filter and exact
    /// fingerprint set its compacted checkpoint holds) is in a format
    /// version this build does not read. The crawl does not start, and
    /// nothing in the directory is changed.
    #[error(
        "saved dupe store{} is in format version {found}; this build reads versions 1 to \
         {expected}. Resume the job with the release that wrote it, or start a fresh job \
         directory",
        in_file(path)
    )]
    DupeStoreVersion {
        /// The job directory's journal it was read from (`None` when read
        /// from bytes alone, `MemoryDupe::from_bytes`).
        path: Option<std::path::PathBuf>,
        /// The version the store's header names.
        found: u32,
        /// The newest version this build reads, the one it writes.
        expected: u32,
    },
    /// A saved dupe store is cut short or inconsistent (what its format
    /// checks: lengths, the filter's parameters, the exact set's order).
    /// The crawl does not start, and nothing in the directory is changed.
    #[error(
        "saved dupe store{} cannot be read: {reason}. The job cannot resume from it; move \
         the job directory aside to start a fresh one",
        in_file(path)
    )]
    DupeStoreCorrupt {
        /// The job directory's journal it was read from (`None` when read
        /// from bytes alone).
        path: Option<std::path::PathBuf>,
        /// What was wrong, and where.
        reason: String,
    },
    /// Another crawl (in this process or another one) holds the job
    /// directory's lock: two crawls writing one directory would corrupt it.
    #[error(
        "job directory {} is in use by another crawl ({}); wait for it to finish or use \
         another directory",
        dir.display(),
        holder.map_or_else(|| "its process id is unknown".to_string(), |p| format!("process {p}"))
    )]
    JobDirLocked {
        /// The job directory.
        dir: std::path::PathBuf,
        /// The process id the holder wrote in the lock file, if readable.
        holder: Option<u32>,
    },
}

/// Why a connection failed ([`ErrorKind::Connect`]), read from the
/// lower-level error's types: the operating system's error kind for the
/// network, the TLS library's certificate error for a certificate.
/// [`name`](Self::name) is the suffix of its stats
/// (`downloader/exception_type_count/tls_unknown_issuer`).
///
/// The `Tls*` causes come from the server's certificate or from what the
/// two sides support: trying again gives the same answer, so they are not
/// retried ([`is_retryable`](Self::is_retryable)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectCause {
    /// The host name could not be resolved (`dns`).
    Dns,
    /// The server (or the proxy) refused the connection (`refused`).
    Refused,
    /// Connecting or the TLS handshake took longer than allowed (`timeout`).
    Timeout,
    /// The connection was reset or closed early (`reset`).
    Reset,
    /// The server's certificate is not signed by a trusted authority,
    /// such as a self-signed one (`tls_unknown_issuer`).
    TlsUnknownIssuer,
    /// The server's certificate has expired or is not valid yet
    /// (`tls_expired`).
    TlsExpired,
    /// The server's certificate is not valid for the URL's host name
    /// (`tls_hostname_mismatch`).
    TlsHostnameMismatch,
    /// The server's certificate is refused for another reason: revoked,
    /// malformed, a bad signature (`tls_certificate`).
    TlsCertificate,
    /// The server asks for a client certificate and none was sent, or it
    /// refused the one sent (`tls_client_cert_required`).
    TlsClientCertRequired,
    /// The TLS handshake failed otherwise: no protocol version or cipher
    /// in common, an alert from the server (`tls_handshake`).
    TlsHandshake,
    /// Anything else (`connect`).
    Other,
}

impl ConnectCause {
    /// Its stable snake_case name, the suffix of its stats keys.
    pub fn name(self) -> &'static str {
        match self {
            ConnectCause::Dns => "dns",
            ConnectCause::Refused => "refused",
            ConnectCause::Timeout => "timeout",
            ConnectCause::Reset => "reset",
            ConnectCause::TlsUnknownIssuer => "tls_unknown_issuer",
            ConnectCause::TlsExpired => "tls_expired",
            ConnectCause::TlsHostnameMismatch => "tls_hostname_mismatch",
            ConnectCause::TlsCertificate => "tls_certificate",
            ConnectCause::TlsClientCertRequired => "tls_client_cert_required",
            ConnectCause::TlsHandshake => "tls_handshake",
            ConnectCause::Other => "connect",
        }
    }

    /// Whether another attempt may succeed: not for the TLS causes.
    pub fn is_retryable(self) -> bool {
        !self.name().starts_with("tls_")
    }

    /// What it means, for the error's message.
    fn describe(self) -> &'static str {
        match self {
            ConnectCause::Dns => "the host name could not be resolved",
            ConnectCause::Refused => "the connection was refused",
            ConnectCause::Timeout => "connecting timed out",
            ConnectCause::Reset => "the connection was reset or closed",
            ConnectCause::TlsUnknownIssuer => {
                "no root the crawl trusts vouches for the server's certificate (trust \
                 its authority's certificate, or a self-signed server's own, with \
                 tls_root_file)"
            }
            ConnectCause::TlsExpired => "the server's certificate has expired or is not yet valid",
            ConnectCause::TlsHostnameMismatch => {
                "the server's certificate is not valid for this host name"
            }
            ConnectCause::TlsCertificate => "the server's certificate is refused",
            ConnectCause::TlsClientCertRequired => {
                "the server requires a client certificate (none was sent, or it was refused)"
            }
            ConnectCause::TlsHandshake => "the TLS handshake failed",
            ConnectCause::Other => "connecting or sending failed",
        }
    }
}

/// The crate's error: a kind plus where it happened.
///
/// `Display` shows the kind and the context; an error made from a
/// lower-level one (`?` on a `serde_json`, `url` or `std::io` error) keeps
/// it as its [`source`](std::error::Error::source), typed, for
/// `downcast_ref`. The alternate form (`{:#}`) adds each source's text, as
/// `anyhow` does; the crawl's log lines use it.
///
/// Boxed so that `Result<T, Error>` stays one word wide on the hot path.
pub struct Error(Box<Inner>);

struct Inner {
    /// What went wrong.
    kind: ErrorKind,
    /// The URL of the request concerned, when there is one.
    url: Option<Url>,
    /// The crawl stage that failed, so stats and logs can group errors.
    stage: Stage,
    /// Which attempt of the request failed (1 for the first), 0 if unknown.
    attempt: u32,
    /// The lower-level error this one wraps, kept typed so it can be
    /// downcast; its text is not part of this error's `Display`.
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    /// A setup error ([`Stage::Setup`]) of kind [`ErrorKind::Config`]: a
    /// setting, argument or option that cannot be used, as `message` says.
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::new(Stage::Setup, ErrorKind::Config(message.into()))
    }

    /// An error of `kind` at `stage`, with no URL yet.
    pub fn new(stage: Stage, kind: ErrorKind) -> Self {
        Error(Box::new(Inner {
            kind,
            url: None,
            stage,
            attempt: 0,
            source: None,
        }))
    }

    /// An error of `kind` at `stage` caused by `source`, kept as this
    /// error's [`source`](std::error::Error::source).
    fn caused(
        stage: Stage,
        kind: ErrorKind,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        let mut e = Self::new(stage, kind);
        e.0.source = Some(Box::new(source));
        e
    }

    /// A free-form failure reported by user code (spider, middleware,
    /// pipeline) at `stage`.
    pub fn custom(stage: Stage, message: impl Into<String>) -> Self {
        Self::new(stage, ErrorKind::Custom(message.into()))
    }

    /// Attaches the URL of the request concerned.
    pub fn with_url(mut self, url: &Url) -> Self {
        self.0.url = Some(url.clone());
        self
    }

    /// Attaches the attempt number.
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.0.attempt = attempt;
        self
    }

    /// Moves the error to another stage (used when an inner helper does not
    /// know which stage called it).
    pub fn at(mut self, stage: Stage) -> Self {
        self.0.stage = stage;
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }

    /// The URL concerned, if known.
    pub fn url(&self) -> Option<&Url> {
        self.0.url.as_ref()
    }

    /// The stage that failed.
    pub fn stage(&self) -> Stage {
        self.0.stage
    }

    /// The attempt that failed (1 for the first), 0 if unknown.
    pub fn attempt(&self) -> u32 {
        self.0.attempt
    }

    /// A short stable name for the kind, used as a stats key suffix. A
    /// connection error's is its cause's ([`ConnectCause::name`]).
    pub fn kind_name(&self) -> &'static str {
        match self.0.kind {
            ErrorKind::InvalidUrl { .. } => "invalid_url",
            ErrorKind::Config(_) => "config",
            ErrorKind::Timeout(_) => "timeout",
            ErrorKind::Connect { cause, .. } => cause.name(),
            ErrorKind::Body(_) => "body",
            ErrorKind::BodyTooLarge { .. } => "body_too_large",
            ErrorKind::BodyWrite { .. } => "body_write",
            ErrorKind::ContentEncoding { .. } => "content_encoding",
            ErrorKind::HttpStatus(_) => "http_status",
            ErrorKind::Json(_) => "json",
            ErrorKind::Io(_) => "io",
            ErrorKind::Selector { .. } => "selector",
            ErrorKind::Custom(_) => "custom",
            ErrorKind::Panic(_) => "panic",
            ErrorKind::IllegalState(_) => "illegal_state",
            ErrorKind::Backend(_) => "backend",
            ErrorKind::TooManyRedirects { .. } => "too_many_redirects",
            ErrorKind::RedirectLoop { .. } => "redirect_loop",
            ErrorKind::Journal { .. } => "journal",
            ErrorKind::BlockedAddress { .. } => "blocked_address",
            ErrorKind::JournalCorrupt { .. } => "journal_corrupt",
            ErrorKind::JobDirLocked { .. } => "job_dir_locked",
            ErrorKind::DupeStoreVersion { .. } => "dupe_store_version",
            ErrorKind::DupeStoreCorrupt { .. } => "dupe_store_corrupt",
            ErrorKind::PipelineCloseTimeout { .. } => "pipeline_close_timeout",
            ErrorKind::StreamToRefused { .. } => "stream_to_refused",
            ErrorKind::Sitemap { .. } => "sitemap",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (stage {}", self.0.kind, self.0.stage)?;
        if let Some(url) = &self.0.url {
            write!(f, ", url {}", crate::redact::Redacted(url))?;
        }
        if self.0.attempt > 0 {
            write!(f, ", attempt {}", self.0.attempt)?;
        }
        f.write_str(")")?;
        if f.alternate() {
            let mut source = std::error::Error::source(self);
            while let Some(cause) = source {
                write!(f, ": {cause}")?;
                source = cause.source();
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.0.kind)
            .field("stage", &self.0.stage)
            .field("url", &self.0.url.as_ref().map(crate::redact::Redacted))
            .field("attempt", &self.0.attempt)
            .finish()
    }
}

/// The wrapped error, if any: never the [`ErrorKind`], whose text
/// `Display` already shows (`anyhow` and `eyre` print each source after the
/// error, so nothing is printed twice).
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0.source {
            Some(source) => Some(&**source),
            None => std::error::Error::source(&self.0.kind),
        }
    }
}

/// `?` on a `serde_json` error in a callback: [`ErrorKind::Json`] at
/// [`Stage::Parse`], the JSON error as the source. Change the stage with
/// [`Error::at`] where it happened elsewhere (a pipeline's).
impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        use serde_json::error::Category;
        let what = match e.classify() {
            Category::Syntax => "syntax error",
            Category::Data => "data of the wrong shape",
            Category::Eof => "unexpected end of input",
            Category::Io => "reading failed",
        };
        Error::caused(Stage::Parse, ErrorKind::Json(what.into()), e)
    }
}

/// `?` on a `url` parse error in a callback: [`ErrorKind::InvalidUrl`] at
/// [`Stage::Parse`] (its `input` empty: the parser does not say which text
/// it refused), the parse error as the source.
impl From<url::ParseError> for Error {
    fn from(e: url::ParseError) -> Self {
        let kind = ErrorKind::InvalidUrl {
            input: String::new(),
            reason: "not a URL".into(),
        };
        Error::caused(Stage::Parse, kind, e)
    }
}

/// `?` on an I/O error in a callback: [`ErrorKind::Io`] at [`Stage::Parse`],
/// the I/O error as the source.
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::caused(Stage::Parse, ErrorKind::Io(e.kind()), e)
    }
}

/// ` "input"` for an [`ErrorKind::InvalidUrl`]'s message, credentials
/// masked; nothing when the input is not known.
fn quoted_input(input: &str) -> String {
    if input.is_empty() {
        String::new()
    } else {
        format!(" {:?}", crate::redact::text(input))
    }
}

/// ` in FILE` for an error about something read from a file, when known.
fn in_file(path: &Option<std::path::PathBuf>) -> String {
    path.as_ref()
        .map_or_else(String::new, |p| format!(" in {}", p.display()))
}

/// Turns a caught panic payload into a message.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_a_setup_error_with_its_message() {
        let e = Error::config(format!("-s {}: expected a whole number", "concurrency=x"));
        assert_eq!(e.stage(), Stage::Setup);
        assert_eq!(e.kind_name(), "config");
        assert!(
            matches!(e.kind(), ErrorKind::Config(m) if m == "-s concurrency=x: expected a whole number")
        );
        assert!(matches!(Error::config("plain").kind(), ErrorKind::Config(m) if m == "plain"));
    }

    #[test]
    fn display_carries_context() {
        let url = Url::parse("http://example.com/a").unwrap();
        let e = Error::new(Stage::Download, ErrorKind::HttpStatus(429))
            .with_url(&url)
            .with_attempt(2);
        assert_eq!(
            e.to_string(),
            "HTTP status 429 is not allowed for this request (stage download, url http://example.com/a, attempt 2)"
        );
        assert_eq!(e.kind_name(), "http_status");
        assert_eq!(e.stage(), Stage::Download);
    }

    /// The error's text followed by each source's, as `anyhow` prints a
    /// chain; fails if a source's text was already printed.
    fn chain_without_repeats(e: &Error) -> String {
        let mut printed = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            let text = cause.to_string();
            assert!(!printed.contains(&text), "{text:?} repeats {printed:?}");
            printed = format!("{printed}: {text}");
            source = cause.source();
        }
        printed
    }

    #[test]
    fn a_plain_error_has_no_source_repeating_its_kind() {
        let e = Error::new(Stage::Download, ErrorKind::HttpStatus(429));
        assert!(std::error::Error::source(&e).is_none());
        assert_eq!(
            chain_without_repeats(&e),
            "HTTP status 429 is not allowed for this request (stage download)"
        );
    }

    #[test]
    fn question_mark_keeps_a_json_error_typed_as_the_source() {
        let cause = serde_json::from_str::<serde_json::Value>("{oops").unwrap_err();
        let e = Error::from(cause);
        assert_eq!((e.stage(), e.kind_name()), (Stage::Parse, "json"));
        assert!(matches!(e.kind(), ErrorKind::Json(m) if m == "syntax error"));
        let source = std::error::Error::source(&e).unwrap();
        assert_eq!(
            source.downcast_ref::<serde_json::Error>().unwrap().line(),
            1
        );
        assert_eq!(
            chain_without_repeats(&e),
            "invalid JSON: syntax error (stage parse): key must be a string at line 1 column 2"
        );
        assert_eq!(format!("{e:#}"), chain_without_repeats(&e));
    }

    #[test]
    fn question_mark_keeps_a_url_error_typed_as_the_source() {
        let e = Error::from(Url::parse("/relative").unwrap_err());
        assert_eq!((e.stage(), e.kind_name()), (Stage::Parse, "invalid_url"));
        let source = std::error::Error::source(&e).unwrap();
        assert_eq!(
            source.downcast_ref::<url::ParseError>(),
            Some(&url::ParseError::RelativeUrlWithoutBase)
        );
        assert_eq!(
            chain_without_repeats(&e),
            "invalid URL: not a URL (stage parse): relative URL without a base"
        );
    }

    #[test]
    fn question_mark_keeps_an_io_error_typed_as_the_source() {
        let cause = std::io::Error::new(std::io::ErrorKind::NotFound, "no file /x/y");
        let e = Error::from(cause);
        assert_eq!((e.stage(), e.kind_name()), (Stage::Parse, "io"));
        assert!(matches!(
            e.kind(),
            ErrorKind::Io(std::io::ErrorKind::NotFound)
        ));
        let source = std::error::Error::source(&e).unwrap();
        assert_eq!(
            source.downcast_ref::<std::io::Error>().unwrap().kind(),
            std::io::ErrorKind::NotFound
        );
        assert_eq!(
            format!("{e:#}"),
            "I/O failed: entity not found (stage parse): no file /x/y"
        );
        chain_without_repeats(&e);
    }
}
