//! One HTTP exchange with awc, with the limits a crawler needs.
//!
//! awc's defaults do not fit a crawler (see DEVELOPERS facts): its timeout
//! does not cover the body, bodies stop at 2 MiB, redirects are followed
//! silently (losing the final URL) and there is no User-Agent. This module
//! builds a client per downloader with redirects off, and runs each exchange
//! under one deadline covering headers and body, with an explicit body
//! limit applied after decompression.

use std::time::{Duration, Instant};

use awc::error::{PayloadError, SendRequestError};
use awc::http::header;
use bytes::Bytes;

use crate::error::{Error, ErrorKind, Stage};
use crate::request::Request;
use crate::response::{Response, ResponseMeta};
use crate::stats::{Counter, Stats};

/// Download settings shared by every downloader of a crawl.
#[derive(Clone, Debug)]
pub(crate) struct DownloadConfig {
    /// Deadline for a whole exchange unless the request sets its own.
    pub timeout: Duration,
    /// Largest body accepted, after decompression.
    pub max_body: usize,
    /// Sent unless the request sets its own.
    pub user_agent: String,
}

/// The clients of one downloader: a direct one, and one per proxy it has
/// been asked to use (built on first use, kept for keep-alive).
pub(crate) struct Clients {
    /// For requests without a proxy.
    direct: awc::Client,
    /// Per proxy URL.
    proxied: std::collections::HashMap<String, awc::Client>,
}

impl Clients {
    /// Clients for one downloader's arbiter (awc clients are `!Send`).
    pub(crate) fn new(cfg: &DownloadConfig) -> Self {
        Clients {
            direct: build_client(cfg),
            proxied: std::collections::HashMap::new(),
        }
    }

    /// The client `req` must go through.
    pub(crate) fn for_request<C>(
        &mut self,
        req: &Request<C>,
        _cfg: &DownloadConfig,
    ) -> Result<awc::Client, Error> {
        let Some(proxy) = &req.proxy else {
            return Ok(self.direct.clone());
        };
        if let Some(client) = self.proxied.get(proxy) {
            return Ok(client.clone());
        }
        // Connecting directly would silently bypass the proxy the user
        // asked for: refuse instead, until proxies are supported.
        Err(Error::new(
            Stage::Download,
            ErrorKind::Config(format!(
                "request names proxy {proxy:?}, but this version cannot use proxies; not connecting directly"
            )),
        )
        .with_url(&req.url))
    }
}

/// A direct client for one downloader's arbiter.
pub(crate) fn build_client(cfg: &DownloadConfig) -> awc::Client {
    awc::Client::builder()
        .disable_redirects()
        .disable_timeout()
        .no_default_headers()
        .add_default_header((header::USER_AGENT, cfg.user_agent.clone()))
        .connector(awc::Connector::new().limit(0))
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
    stats.inc(Counter::RequestCount);
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, send(client, req, cfg.max_body)).await;
    let latency = started.elapsed();
    let (status, headers, body) = match result {
        Ok(Ok(parts)) => parts,
        Ok(Err(kind)) => return Err(count_failure(stats, req, kind)),
        Err(_) => return Err(count_failure(stats, req, ErrorKind::Timeout(timeout))),
    };
    stats.inc(Counter::ResponseCount);
    stats.inc_status(status);
    stats.add(Counter::ResponseBytes, body.len() as u64);
    Ok(Response {
        url: req.url.clone(),
        status,
        headers,
        body,
        meta: ResponseMeta {
            download_latency: latency,
            download_slot: req.url.host_str().unwrap_or_default().to_string(),
            download_timeout: timeout,
            depth: req.depth,
            attempt: 0,
            request_url: Some(req.url.clone()),
            redirect_urls: Vec::new(),
            request_meta: req.meta.clone(),
        },
    })
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
) -> Result<(u16, header::HeaderMap, Bytes), ErrorKind> {
    let mut out = client.request(req.method.clone(), req.url.as_str());
    for (name, value) in &req.headers {
        out = out.append_header((name.as_str(), value.as_str()));
    }
    if !req.cookies.is_empty() {
        let cookie = req
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        out = out.append_header((header::COOKIE, cookie));
    }
    let sent = if req.body.is_empty() {
        out.send().await
    } else {
        out.send_body(req.body.clone()).await
    };
    let mut resp = sent.map_err(|e| match e {
        SendRequestError::Timeout => ErrorKind::Connect("timed out connecting".into()),
        other => ErrorKind::Connect(other.to_string()),
    })?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.body().limit(max_body).await.map_err(|e| match e {
        PayloadError::Overflow => ErrorKind::BodyTooLarge { limit: max_body },
        other => ErrorKind::Body(other.to_string()),
    })?;
    Ok((status, headers, body))
}

thread_local! {
    /// One client per arbiter thread for the library's own calls
    /// (persistence, feedback): awc clients are `!Send`, and a pipeline must
    /// be `Send` to move to its arbiter, so it cannot own one.
    static CLIENT: awc::Client = awc::Client::builder()
        .disable_redirects()
        .disable_timeout()
        .add_default_header((header::USER_AGENT, crate::builder::DEFAULT_USER_AGENT))
        .finish();
}

/// This thread's shared client (cheap to clone).
pub(crate) fn thread_client() -> awc::Client {
    CLIENT.with(Clone::clone)
}
