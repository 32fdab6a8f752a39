//! Fetching one origin's robots.txt as the robots standard (RFC 9309)
//! says, and sorting the answer into what it means for the crawl.
//!
//! The fetch goes the way the origin's pages would: through the proxy the
//! request that asked for it names (else the environment's, when the crawl
//! reads it), with the crawl's User-Agent and connection settings, its body
//! decoded in bounded pieces. Then:
//! - redirects are followed, up to [`MAX_REDIRECTS`], each `Location`
//!   resolved against the URL that answered it; more, or a redirect without
//!   a usable `Location`, means the file is unavailable;
//! - a 2xx body is parsed, only its first [`MAX_BODY`] bytes (cut back to
//!   the last whole line): the rest is not read;
//! - a 4xx (404 included) means unavailable: everything is allowed;
//! - a 5xx, a failed connection, a timeout or a body that cannot be read
//!   means unreachable: everything is disallowed until it is fetched again
//!   (`robots::RobotsCache::failed` says when);
//! - a connection the address guard refuses (to the origin or to where it
//!   redirects) is no answer a retry could change: the fetch stops there,
//!   and the origin's requests go on to the downloader, whose guard refuses
//!   them as blocked addresses, counted.
//!
//! [`RobotsFetcher`] knows no actor: the Scheduler spawns its futures and
//! hands the [`Fetched`] answer to the cache.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use awc::http::header;
use url::Url;

use crate::http::{body, decoded_here, guard, Clients, DownloadConfig};
use crate::politeness::robots::Rules;
use crate::request::Request;

/// The most redirects followed to a robots.txt (the standard's five).
pub(crate) const MAX_REDIRECTS: u32 = 5;

/// The part of a robots.txt that is parsed (500 KiB, the standard's
/// minimum); the rest is never read.
pub(crate) const MAX_BODY: usize = 500 << 10;

/// The longest a robots.txt fetch may take, redirects and body included
/// (the crawl's own timeout when shorter); past it the origin is
/// unreachable.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// What a robots.txt fetch means for its origin.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// A 2xx: its rules (`None` when they could not be parsed, which
    /// allows everything).
    Rules {
        /// The final status.
        status: u16,
        /// The parsed rules.
        rules: Option<Rules>,
        /// The file was longer than [`MAX_BODY`]: only its start counts.
        truncated: bool,
    },
    /// 4xx, a redirect to nowhere: everything allowed.
    Unavailable {
        /// The final status, when there was one.
        status: Option<u16>,
        /// Why, for the log.
        reason: String,
    },
    /// The address guard refused a connection: not retried; the origin's
    /// requests go on, to be refused by the downloader's guard.
    Blocked {
        /// The refusal, for the log.
        reason: String,
    },
    /// More than [`MAX_REDIRECTS`] redirects: everything allowed.
    TooManyRedirects {
        /// The last redirect's status.
        status: Option<u16>,
    },
    /// 5xx or no answer: everything disallowed until fetched again.
    Unreachable {
        /// The final status, when there was one.
        status: Option<u16>,
        /// Why, for the log.
        reason: String,
    },
}

/// A fetch's answer.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// The URL that gave the final answer.
    pub url: Url,
    /// Redirects followed to get there.
    pub redirects: u32,
    /// What it means.
    pub verdict: Verdict,
}

/// Fetches robots.txt files with a crawl's download settings. One per
/// Scheduler (awc clients are `!Send`, so it stays on its thread).
pub(crate) struct RobotsFetcher {
    /// The crawl's settings, with robots.txt's own limits.
    cfg: Rc<DownloadConfig>,
    /// Direct and per-proxy clients, kept for keep-alive.
    clients: Rc<RefCell<Option<Clients>>>,
    /// The User-Agent whose rules are parsed.
    agent: String,
}

impl RobotsFetcher {
    /// A fetcher with `crawl`'s settings (proxies, User-Agent, timeout at
    /// most [`FETCH_TIMEOUT`]), matching rules for `agent`.
    pub(crate) fn new(crawl: DownloadConfig, agent: String) -> Self {
        let cfg = DownloadConfig {
            timeout: crawl.timeout.min(FETCH_TIMEOUT),
            max_body: MAX_BODY,
            warn_body: 0,
            follow_redirects: false,
            cookies: None,
            ..crawl
        };
        RobotsFetcher {
            cfg: Rc::new(cfg),
            clients: Rc::new(RefCell::new(None)),
            agent,
        }
    }

    /// Fetches `url`, through `proxy` (the asking request's) when given.
    pub(crate) fn fetch(
        &self,
        url: Url,
        proxy: Option<String>,
    ) -> impl std::future::Future<Output = Fetched> + 'static {
        let (cfg, clients, agent) = (self.cfg.clone(), self.clients.clone(), self.agent.clone());
        let timeout = cfg.timeout;
        let start = url.clone();
        async move {
            let hops = Hops {
                cfg,
                clients,
                agent,
                proxy,
            };
            match tokio::time::timeout(timeout, hops.run(url)).await {
                Ok(fetched) => fetched,
                Err(_) => Fetched {
                    url: start,
                    redirects: 0,
                    verdict: Verdict::Unreachable {
                        status: None,
                        reason: format!("timed out after {timeout:?}"),
                    },
                },
            }
        }
    }
}

/// One fetch, hop by hop.
struct Hops {
    cfg: Rc<DownloadConfig>,
    clients: Rc<RefCell<Option<Clients>>>,
    agent: String,
    proxy: Option<String>,
}

impl Hops {
    async fn run(self, mut url: Url) -> Fetched {
        let mut redirects = 0;
        loop {
            let (verdict, next) = self.hop(&url).await;
            let Some(next) = next else {
                return Fetched {
                    url,
                    redirects,
                    verdict,
                };
            };
            if redirects == MAX_REDIRECTS {
                // Only a 3xx names a next URL, with its status.
                let status = match verdict {
                    Verdict::Unavailable { status, .. } => status,
                    _ => None,
                };
                let verdict = Verdict::TooManyRedirects { status };
                return Fetched {
                    url,
                    redirects,
                    verdict,
                };
            }
            redirects += 1;
            url = next;
        }
    }

    /// One request: its verdict, or the URL it redirects to.
    async fn hop(&self, url: &Url) -> (Verdict, Option<Url>) {
        let client = {
            let mut req = Request::<()>::from_url(url.clone());
            req.proxy = self.proxy.clone();
            let mut clients = self.clients.borrow_mut();
            let clients = clients.get_or_insert_with(|| Clients::new(&self.cfg));
            match clients.for_request(&req, &self.cfg) {
                Ok(client) => client,
                Err(e) => return (unreachable(None, e.to_string()), None),
            }
        };
        let sent = decoded_here(client.get(url.as_str())).send().await;
        let mut resp = match sent {
            Ok(resp) => resp,
            Err(e) if guard::refusal(&e).is_some() => {
                return (
                    Verdict::Blocked {
                        reason: e.to_string(),
                    },
                    None,
                )
            }
            Err(e) => return (unreachable(None, format!("connection failed: {e}")), None),
        };
        let status = resp.status().as_u16();
        match status {
            200..=299 => {
                let headers = resp.headers().clone();
                let verdict = match body::read_prefix(&mut resp, &headers, MAX_BODY).await {
                    Ok((text, truncated)) => {
                        let text = if truncated { whole_lines(&text) } else { &text };
                        Verdict::Rules {
                            status,
                            rules: Rules::parse(&self.agent, text),
                            truncated,
                        }
                    }
                    Err(e) => unreachable(Some(status), e.to_string()),
                };
                (verdict, None)
            }
            300..=399 => {
                let next = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|loc| url.join(loc).ok())
                    .filter(|u| matches!(u.scheme(), "http" | "https"));
                match next {
                    Some(next) => (unavailable(Some(status), String::new()), Some(next)),
                    None => {
                        let reason = "a redirect without a usable Location".to_string();
                        (unavailable(Some(status), reason), None)
                    }
                }
            }
            500..=599 => (unreachable(Some(status), format!("status {status}")), None),
            _ => (unavailable(Some(status), format!("status {status}")), None),
        }
    }
}

/// `text` up to its last line break (all of it when it has none): a line
/// cut by the limit could say less than the file does.
fn whole_lines(text: &[u8]) -> &[u8] {
    match text.iter().rposition(|&b| b == b'\n' || b == b'\r') {
        Some(end) => &text[..=end],
        None => text,
    }
}

fn unavailable(status: Option<u16>, reason: String) -> Verdict {
    Verdict::Unavailable { status, reason }
}

fn unreachable(status: Option<u16>, reason: String) -> Verdict {
    Verdict::Unreachable { status, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_file_keeps_its_whole_lines() {
        assert_eq!(
            whole_lines(b"Disallow: /a\nDisallow: /sec"),
            b"Disallow: /a\n"
        );
        assert_eq!(
            whole_lines(b"Disallow: /a\r\nAllow: /"),
            b"Disallow: /a\r\n"
        );
        assert_eq!(whole_lines(b"no break"), b"no break");
    }
}
