//! One HTTP exchange with awc, with the limits a crawler needs.
//!
//! awc's defaults do not fit a crawler: its timeout
//! does not cover the body, bodies stop at 2 MiB, redirects are followed
//! silently (losing the final URL), a whole network chunk is inflated
//! before any limit sees it and there is no User-Agent. This module
//! builds a client per downloader with redirects off, and runs each exchange
//! under one deadline covering headers and body, with an explicit body
//! limit applied after decompression, which `body` and `decode` do in
//! bounded pieces (awc's own is off on every request, `decoded_here`).

pub(crate) mod body;
pub(crate) mod cause;
pub(crate) mod cookies;
pub(crate) mod decode;
pub(crate) mod env_proxy;
pub(crate) mod guard;
pub(crate) mod proxy;
pub(crate) mod stream_dir;
pub(crate) mod tls;
pub(crate) mod tunnel;
pub(crate) mod verifier;

use std::sync::Arc;
use std::time::{Duration, Instant};

use awc::http::{header, Method};

use crate::error::{Error, ErrorKind, Stage};
use crate::http::body::Body;
use crate::http::cookies::CookieJar;
use crate::http::env_proxy::EnvProxies;
use crate::http::proxy::ProxyTarget;
use crate::http::stream_dir::StreamDirs;
use crate::http::tunnel::proxied_client;
use crate::request::Request;
use crate::response::{Response, ResponseMeta};
use crate::stats::{Counter, Stats};

/// The User-Agent sent unless configured otherwise.
pub const DEFAULT_USER_AGENT: &str = concat!("spinneret/", env!("CARGO_PKG_VERSION"));

/// Deadline of a whole exchange unless configured otherwise: the one
/// definition, read by `DownloadConfig`'s and the builder's defaults.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);

/// Largest body accepted unless configured otherwise (64 MiB).
pub(crate) const DEFAULT_MAX_BODY: usize = 64 << 20;

/// Body size over which a warning is logged unless configured otherwise
/// (32 MiB).
pub(crate) const DEFAULT_WARN_BODY: usize = 32 << 20;

/// Whether 3xx answers are followed unless configured otherwise.
pub(crate) const DEFAULT_FOLLOW_REDIRECTS: bool = true;

/// Download settings shared by every downloader of a crawl.
#[derive(Clone, Debug)]
pub(crate) struct DownloadConfig {
    /// Deadline for a whole exchange unless the request sets its own.
    pub timeout: Duration,
    /// Largest body accepted, after decompression.
    pub max_body: usize,
    /// A body held in memory over this many bytes logs a warning and counts
    /// `downloader/warn_size_count`; 0 never warns.
    pub warn_body: usize,
    /// Where the size warning is logged.
    pub log: slog::Logger,
    /// Sent unless the request sets its own.
    pub user_agent: String,
    /// The environment's proxies, for requests without their own; `None`
    /// unless `CrawlerBuilder::proxy_from_env` is on.
    pub env_proxy: Option<EnvProxies>,
    /// Follow 3xx answers (as new requests through the Scheduler).
    pub follow_redirects: bool,
    /// Where requests may stream their bodies (`Request::stream_to`).
    pub stream_dirs: StreamDirs,
    /// The crawl's cookie jar, shared by every downloader; `None` when
    /// cookies are off.
    pub cookies: Option<Arc<CookieJar>>,
    /// The headers (lower-case names) a redirect carries to another origin.
    pub cross_origin_headers: Vec<String>,
    /// Refuses connections to private and special addresses; `None` when
    /// the guard is off.
    pub guard: Option<Arc<guard::AddressGuard>>,
    /// The TLS configurations every client of the crawl shares (roots,
    /// client certificates, versions, ALPN): made once, as `ClientConfig`s
    /// are `Send` and awc clients are not.
    pub tls: tls::TlsConfigs,
}

impl DownloadConfig {
    /// The defaults with `user_agent`, logging to `log`, without cookies
    /// or a proxy (the crawl builds its own from the builder's settings).
    pub(crate) fn new(user_agent: String, log: slog::Logger) -> Self {
        DownloadConfig {
            timeout: DEFAULT_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            warn_body: DEFAULT_WARN_BODY,
            log,
            user_agent,
            env_proxy: None,
            follow_redirects: DEFAULT_FOLLOW_REDIRECTS,
            stream_dirs: StreamDirs::default(),
            cookies: None,
            cross_origin_headers: crate::redirect::DEFAULT_CROSS_ORIGIN_HEADERS
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            guard: None,
            tls: tls::default_configs(),
        }
    }
}

/// The tests' starting point: the crawl's limits, without cookies, a
/// proxy or a log.
#[cfg(test)]
impl Default for DownloadConfig {
    fn default() -> Self {
        let log = slog::Logger::root(slog::Discard, slog::o!());
        DownloadConfig::new(DEFAULT_USER_AGENT.to_string(), log)
    }
}

/// The clients of one downloader: a direct one, one per proxy it has
/// been asked to use, and one per host with a TLS configuration of its own
/// (and proxy), each built on first use and kept for keep-alive.
pub(crate) struct Clients {
    /// For requests without a proxy.
    direct: awc::Client,
    /// Per proxy URL.
    proxied: std::collections::HashMap<String, awc::Client>,
    /// Per host with a client certificate of its own, and proxy URL.
    by_host: std::collections::HashMap<(String, Option<String>), awc::Client>,
}

impl Clients {
    /// Clients for one downloader's arbiter (awc clients are `!Send`).
    pub(crate) fn new(cfg: &DownloadConfig) -> Self {
        Clients {
            direct: build_client(cfg, &cfg.tls.default),
            proxied: std::collections::HashMap::new(),
            by_host: std::collections::HashMap::new(),
        }
    }

    /// The client `req` must go through: its own proxy, else the
    /// environment's for its scheme (when enabled), else the direct one;
    /// with its host's own TLS configuration when it has one. A
    /// malformed proxy URL fails this request with
    /// [`ErrorKind::InvalidUrl`]; it never falls back to a direct connection.
    ///
    /// With the address guard on, a proxy the request names itself is
    /// checked like a target (a request's proxy is data, which can come
    /// from a job directory or a shared queue), unless it is one of the
    /// environment's proxies: those the crawl's configuration chose. A
    /// proxy on a private address must then be in the guard's exceptions.
    pub(crate) fn for_request<C>(
        &mut self,
        req: &Request<C>,
        cfg: &DownloadConfig,
    ) -> Result<awc::Client, Error> {
        let env = || cfg.env_proxy.as_ref()?.for_url(&req.url);
        let own = req.proxy.as_deref();
        let proxy = own.or_else(env);
        let host_tls = cfg.tls.for_url(&req.url);
        let key = host_tls.map(|(host, _)| (host.to_string(), proxy.map(str::to_string)));
        let cached = match (&key, proxy) {
            (Some(key), _) => self.by_host.get(key),
            (None, Some(proxy)) => self.proxied.get(proxy),
            (None, None) => Some(&self.direct),
        };
        if let Some(client) = cached {
            return Ok(client.clone());
        }
        let tls = host_tls.map_or(&cfg.tls.default, |(_, tls)| tls);
        let client = match proxy {
            None => build_client(cfg, tls),
            Some(proxy) => {
                let target = ProxyTarget::parse(proxy)
                    .map_err(|e| e.at(Stage::Download).with_url(&req.url))?;
                let configured = cfg.env_proxy.as_ref().is_some_and(|e| e.names(proxy));
                // Whether it is checked depends on the URL alone (the
                // environment's never are), so one client per URL serves
                // every request naming it.
                proxied_client(&target, cfg, own.is_some() && !configured, tls)
            }
        };
        if let Some(key) = key {
            self.by_host.insert(key, client.clone());
        } else if let Some(proxy) = proxy {
            self.proxied.insert(proxy.to_string(), client.clone());
        }
        Ok(client)
    }
}

/// A direct client for one downloader's arbiter; its connections go
/// through the address guard when it is on.
pub(crate) fn build_client(cfg: &DownloadConfig, tls: &Arc<rustls::ClientConfig>) -> awc::Client {
    match &cfg.guard {
        None => client_with(cfg, tls, awc::Connector::new()),
        Some(guard) => client_with(
            cfg,
            tls,
            awc::Connector::new().connector(guard::Guarded::new(guard.clone())),
        ),
    }
}

/// A client with the crawler's settings (redirects off, no awc timeout, the
/// configured User-Agent, no connection limit, the crawl's TLS) over
/// `connector`.
///
/// Response headers are bounded whatever the version: awc's HTTP/1.1
/// decoder refuses a head over 128 KiB or with more than 96 fields, and
/// HTTP/2's header list is bounded by the h2 library's 16 MiB default.
pub(crate) fn client_with<S, Io>(
    cfg: &DownloadConfig,
    tls: &Arc<rustls::ClientConfig>,
    connector: awc::Connector<S>,
) -> awc::Client
where
    S: actix_service::Service<
            actix_tls::connect::ConnectInfo<awc::http::Uri>,
            Response = actix_tls::connect::Connection<awc::http::Uri, Io>,
            Error = actix_tls::connect::ConnectError,
        > + Clone
        + 'static,
    Io: actix_rt::net::ActixStream + std::fmt::Debug + 'static,
{
    awc::Client::builder()
        .disable_redirects()
        .disable_timeout()
        .no_default_headers()
        .add_default_header((header::USER_AGENT, cfg.user_agent.clone()))
        .connector(
            // awc's own connect and TLS handshake limits default to 5 s
            // whatever the crawl's timeout: bound them by it instead (the
            // whole exchange still runs under that one deadline).
            connector
                .rustls_0_23(tls.clone())
                .limit(0)
                .timeout(cfg.timeout)
                .handshake_timeout(cfg.timeout),
        )
        .finish()
}

/// Sends `req` and reads its whole body, counting the exchange in `stats`.
pub(crate) async fn exchange<C>(
    client: &awc::Client,
    req: &Request<C>,
    cfg: &DownloadConfig,
    stats: &Stats,
) -> Result<Response, Error> {
    let timeout = req.timeout.unwrap_or(cfg.timeout);
    check_stream_to(req, cfg, stats).await?;
    stats.inc(Counter::RequestCount);
    let started = Instant::now();
    let max_body = req.max_body.unwrap_or(cfg.max_body);
    let result = tokio::time::timeout(timeout, send(client, req, max_body, cfg)).await;
    let latency = started.elapsed();
    let (status, version, headers, body) = match result {
        Ok(Ok(parts)) => parts,
        Ok(Err(kind)) => {
            if let ErrorKind::BlockedAddress { host, addr, range } = &kind {
                slog::warn!(cfg.log, "request refused by the address guard";
                    "url" => %crate::redact::Redacted(&req.url), "host" => host, "addr" => %addr, "range" => range);
            }
            if matches!(kind, ErrorKind::StreamToRefused { .. }) {
                // Refused when the file was opened: the path changed
                // since it was checked.
                stats.add_named("downloader/stream_to_refused", 1);
                slog::warn!(cfg.log, "stream_to refused"; "url" => %crate::redact::Redacted(&req.url), "error" => %kind);
            }
            return Err(count_failure(stats, req, kind));
        }
        Err(_) => return Err(count_failure(stats, req, ErrorKind::Timeout(timeout))),
    };
    stats.inc(Counter::ResponseCount);
    stats.inc_status(status);
    stats.add_named(&format!("downloader/response_http_version/{version}"), 1);
    stats.add(Counter::ResponseBytes, body.len);
    warn_size(cfg, stats, req, &body);
    let redirect_urls = crate::redirect::chain_of(&req.meta);
    Ok(Response {
        url: req.url.clone(),
        status,
        headers,
        body: body.bytes,
        meta: ResponseMeta {
            download_latency: latency,
            download_slot: req.url.host_str().unwrap_or_default().to_string(),
            download_timeout: timeout,
            depth: req.depth,
            attempt: 0,
            request_url: Some(redirect_urls.first().unwrap_or(&req.url).clone()),
            redirect_urls,
            request_meta: req.meta.clone(),
            body_len: body.len,
            body_path: body.path,
            body_limit: Some(max_body),
        },
    })
}

/// Refuses (before anything is sent) a request whose `stream_to` leads
/// outside the crawl's stream directories, counting
/// `downloader/stream_to_refused`: the request may have been read back
/// from a job directory or Redis, which are not trusted with the files
/// this process can write.
/// The check touches the file system, so it runs on a blocking thread.
async fn check_stream_to<C>(
    req: &Request<C>,
    cfg: &DownloadConfig,
    stats: &Stats,
) -> Result<(), Error> {
    let Some(path) = &req.stream_to else {
        return Ok(());
    };
    let (dirs, owned) = (cfg.stream_dirs.clone(), path.clone());
    let checked = tokio::task::spawn_blocking(move || dirs.check(&owned))
        .await
        .unwrap_or_else(|e| {
            Err(ErrorKind::StreamToRefused {
                path: path.clone(),
                reason: format!("the check failed: {e}"),
            })
        });
    checked.map_err(|kind| {
        stats.add_named("downloader/stream_to_refused", 1);
        slog::warn!(cfg.log, "stream_to refused";
            "url" => %crate::redact::Redacted(&req.url), "path" => %path.display(), "error" => %kind);
        Error::new(Stage::Download, kind).with_url(&req.url)
    })
}

/// Logs and counts (`downloader/warn_size_count`) a body held in memory
/// that is over the warning size, once per response; streamed bodies are
/// not held in memory and never warn.
fn warn_size<C>(cfg: &DownloadConfig, stats: &Stats, req: &Request<C>, body: &Body) {
    if cfg.warn_body == 0 || body.path.is_some() || body.len <= cfg.warn_body as u64 {
        return;
    }
    stats.add_named("downloader/warn_size_count", 1);
    slog::warn!(cfg.log, "response body larger than the warning size";
        "url" => %crate::redact::Redacted(&req.url), "bytes" => body.len, "warn_size" => cfg.warn_body);
}

fn count_failure<C>(stats: &Stats, req: &Request<C>, kind: ErrorKind) -> Error {
    let err = Error::new(Stage::Download, kind).with_url(&req.url);
    stats.inc(Counter::ExceptionCount);
    stats.add_named(
        &format!("downloader/exception_type_count/{}", err.kind_name()),
        1,
    );
    err
}

async fn send<C>(
    client: &awc::Client,
    req: &Request<C>,
    max_body: usize,
    cfg: &DownloadConfig,
) -> Result<(u16, &'static str, header::HeaderMap, Body), ErrorKind> {
    let jar = cfg.cookies.as_deref();
    let mut out = client.request(req.method.clone(), req.url.as_str());
    for (name, value) in &req.headers {
        out = out.append_header((name.as_str(), value.as_str()));
    }
    let own_accept = req
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("accept-encoding"));
    out = if own_accept {
        out.no_decompress()
    } else {
        decoded_here(out)
    };
    if let Some(cookie) = cookie_header(req, jar) {
        out = out.append_header((header::COOKIE, cookie));
    }
    let sent = if req.body.is_empty() {
        out.send().await
    } else {
        out.send_body(req.body.clone()).await
    };
    let resp = sent.map_err(|e| guard::refusal(&e).unwrap_or_else(|| cause::connect_error(&e)))?;
    let status = resp.status().as_u16();
    let version = version_name(resp.version());
    // The headers move out of awc's response (the response keeps only its
    // body stream): no copy of the map per page.
    let mut headers = header::HeaderMap::new();
    let mut resp = resp.map_body(|head, payload| {
        headers = std::mem::take(&mut head.headers);
        payload
    });
    if let Some(jar) = jar {
        let set = headers.get_all(header::SET_COOKIE);
        jar.store(set.filter_map(|v| v.to_str().ok()), &req.url);
    }
    let bodyless = req.method == Method::HEAD || matches!(status, 100..=199 | 204 | 304);
    let to = req.stream_to.as_deref().map(|p| (p, &cfg.stream_dirs));
    let body = crate::http::body::read(&mut resp, &headers, bodyless, max_body, to).await?;
    Ok((status, version, headers, body))
}

/// How `downloader/response_http_version/` names a response's version.
fn version_name(version: awc::http::Version) -> &'static str {
    match version {
        awc::http::Version::HTTP_2 => "2",
        awc::http::Version::HTTP_10 => "1.0",
        awc::http::Version::HTTP_09 => "0.9",
        _ => "1.1",
    }
}

/// `out` with awc's decompression off and asking for the codings
/// `body::read` decodes itself, in bounded pieces: every request the crate
/// sends goes through this (awc would inflate a whole network chunk before
/// a limit could see it).
pub(crate) fn decoded_here(out: awc::ClientRequest) -> awc::ClientRequest {
    out.no_decompress().insert_header((
        header::ACCEPT_ENCODING,
        header::HeaderValue::from_static(decode::ACCEPT_ENCODING),
    ))
}

/// The `Cookie` header for `req`: the jar's cookies for its URL, then the
/// request's own (which win over the jar's of the same name).
fn cookie_header<C>(req: &Request<C>, jar: Option<&CookieJar>) -> Option<String> {
    let mut pairs: Vec<(String, String)> =
        jar.map(|jar| jar.values_for(&req.url)).unwrap_or_default();
    pairs.retain(|(name, _)| !req.cookies.iter().any(|(own, _)| own == name));
    pairs.extend(req.cookies.iter().cloned());
    (!pairs.is_empty()).then(|| {
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

thread_local! {
    /// One client per arbiter thread for the library's own calls
    /// (persistence, feedback): awc clients are `!Send`, and a pipeline must
    /// be `Send` to move to its arbiter, so it cannot own one.
    static CLIENT: awc::Client = awc::Client::builder()
        .disable_redirects()
        .disable_timeout()
        .add_default_header((header::USER_AGENT, crate::http::DEFAULT_USER_AGENT))
        .finish();
}

/// This thread's shared client (cheap to clone).
pub(crate) fn thread_client() -> awc::Client {
    CLIENT.with(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(env_proxy: Option<EnvProxies>) -> DownloadConfig {
        DownloadConfig {
            timeout: Duration::from_secs(5),
            max_body: 1 << 20,
            user_agent: "test".into(),
            env_proxy,
            ..DownloadConfig::default()
        }
    }

    #[actix_rt::test]
    async fn a_request_uses_its_proxy_else_the_environments_else_none() {
        let get = |u: &str| Request::<()>::get(u).unwrap();
        let vars = |k: &str| match k {
            "http_proxy" => Some("http://env:1".to_string()),
            "no_proxy" => Some("skip.example".to_string()),
            _ => None,
        };
        let cfg = config(Some(EnvProxies::from_vars(vars).unwrap()));
        let mut clients = Clients::new(&cfg);
        for req in [
            get("http://a.example/"),
            get("http://a.example/x"),
            get("https://a.example/"),   // no https proxy: direct
            get("http://skip.example/"), // in no_proxy: direct
            get("http://a.example/").proxy("http://own:2"),
        ] {
            clients.for_request(&req, &cfg).unwrap();
        }
        let mut used: Vec<_> = clients.proxied.keys().cloned().collect();
        used.sort();
        assert_eq!(used, ["http://env:1", "http://own:2"]);

        // Off: the environment plays no part.
        let off = config(None);
        let mut clients = Clients::new(&off);
        clients
            .for_request(&get("http://a.example/"), &off)
            .unwrap();
        assert!(clients.proxied.is_empty());

        // A malformed proxy is this request's error, never a direct client.
        let req = get("http://a.example/").proxy("ftp://u:secret@p:21");
        let Err(e) = clients.for_request(&req, &off) else {
            panic!("a malformed proxy was accepted");
        };
        assert!(matches!(e.kind(), ErrorKind::InvalidUrl { .. }), "{e}");
        assert_eq!(e.stage(), Stage::Download);
        assert_eq!(e.url(), Some(&req.url));
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(clients.proxied.is_empty());
    }
}
