//! HTTP proxies: parsing a proxy URL, the CONNECT tunnel, and the
//! environment's proxies.
//!
//! awc has no proxy support of its own, so this module owns it. A proxied
//! client is an ordinary awc client (built by `http::client_with`, with the
//! same settings as the direct one) whose connector's TCP stage is
//! [`Tunnel`]: it opens a TCP connection to the proxy, asks for
//! `CONNECT host:port`, and hands the tunnelled stream back to awc, which then
//! speaks TLS over it for `https` targets and plain HTTP for `http` targets.
//! A proxy that cannot be reached or refuses (407, 403, 5xx, garbage) is a
//! connection error of the request (`SendRequestError::Connect`); nothing
//! ever falls back to a direct connection.
//!
//! Plain `http` targets go through the tunnel too (no absolute-form
//! forwarding), so a proxy must allow CONNECT to their ports: a proxy that
//! only allows CONNECT to 443 refuses them, with a clear error.
//!
//! [`EnvProxies`] is the opt-in fallback to `http_proxy`/`HTTP_PROXY`,
//! `https_proxy`/`HTTPS_PROXY` and `no_proxy`/`NO_PROXY`, read once when the
//! crawl is built (`CrawlerBuilder::proxy_from_env`) and never otherwise.
//!
//! Proxy credentials never appear in errors or `Debug` output.

use std::fmt;
use std::io;
use std::rc::Rc;

use actix_rt::net::TcpStream;
use actix_service::Service;
use actix_tls::connect::{ConnectError as TcpConnectError, ConnectInfo, Connection};
use awc::http::header::HeaderValue;
use awc::http::Uri;
use base64::Engine as _;
use futures_util::future::LocalBoxFuture;
use percent_encoding::percent_decode_str;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

use crate::error::{Error, ErrorKind, Stage};
use crate::http::{client_with, DownloadConfig};

/// The most bytes of a proxy's answer to CONNECT read before giving up.
const MAX_ANSWER: usize = 16 * 1024;

/// A parsed `http://[user:pass@]host[:port]` proxy.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ProxyTarget {
    /// Host name or IP address (IPv6 without brackets).
    host: String,
    /// Port; 80 when the URL names none, as for any `http` URL.
    port: u16,
    /// `Basic …` credentials for `Proxy-Authorization`, when the URL has any.
    authorization: Option<String>,
}

impl ProxyTarget {
    /// Parses a proxy URL; fails with [`ErrorKind::InvalidUrl`] (credentials
    /// redacted) for anything but an `http` URL with a host and no path,
    /// query or fragment.
    pub(crate) fn parse(input: &str) -> Result<Self, Error> {
        let bad = |reason: &str| {
            Error::new(
                Stage::Setup,
                ErrorKind::InvalidUrl {
                    input: redact(input),
                    reason: format!("not a usable proxy URL: {reason}"),
                },
            )
        };
        let url = Url::parse(input).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "http" {
            return Err(bad(&format!(
                "unsupported scheme {:?} (only http:// proxies are supported)",
                url.scheme()
            )));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err(bad("no host")),
        };
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(bad("a proxy URL has no path, query or fragment"));
        }
        let authorization = match (url.username(), url.password()) {
            ("", None) => None,
            (user, pass) => {
                let user = percent_decode_str(user).collect::<Vec<u8>>();
                if user.contains(&b':') {
                    return Err(bad("the user name contains ':'"));
                }
                let mut pair = user;
                pair.push(b':');
                pair.extend(percent_decode_str(pass.unwrap_or_default()));
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                Some(format!("Basic {encoded}"))
            }
        };
        Ok(ProxyTarget {
            host,
            port: url.port_or_known_default().unwrap_or(80),
            authorization,
        })
    }

    /// `host:port` of the proxy, for messages.
    fn addr(&self) -> String {
        authority(&self.host, self.port)
    }
}

impl fmt::Debug for ProxyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyTarget")
            .field("addr", &self.addr())
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// `input` with whatever sits between `scheme://` and the last `@` (the
/// credentials) replaced by `***`.
pub(crate) fn redact(input: &str) -> String {
    let start = input.find("://").map_or(0, |i| i + 3);
    match input.rfind('@') {
        Some(at) if at >= start => format!("{}***{}", &input[..start], &input[at..]),
        _ => input.to_string(),
    }
}

/// `host:port`, with brackets around an IPv6 address.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// An awc client whose every connection is a CONNECT tunnel through `proxy`;
/// otherwise configured like the direct client.
pub(crate) fn proxied_client(proxy: &ProxyTarget, cfg: &DownloadConfig) -> awc::Client {
    let tunnel = Tunnel {
        proxy: Rc::new(proxy.clone()),
        user_agent: HeaderValue::from_str(&cfg.user_agent)
            .ok()
            .map(|_| cfg.user_agent.clone()),
    };
    client_with(cfg, awc::Connector::new().connector(tunnel))
}

/// The TCP stage of a proxied client's connector: a connection to the proxy
/// turned into a tunnel to the target (awc bounds it with its connect
/// timeout).
#[derive(Clone)]
struct Tunnel {
    /// Where to connect.
    proxy: Rc<ProxyTarget>,
    /// Sent with CONNECT, when it is a valid header value.
    user_agent: Option<String>,
}

impl Service<ConnectInfo<Uri>> for Tunnel {
    type Response = Connection<Uri, TcpStream>;
    type Error = TcpConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_service::always_ready!();

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let proxy = self.proxy.clone();
        let user_agent = self.user_agent.clone();
        let target = authority(req.hostname(), req.port());
        let uri = req.request().clone();
        Box::pin(async move {
            let stream = open_tunnel(&proxy, &target, user_agent.as_deref())
                .await
                .map_err(TcpConnectError::Io)?;
            Ok(Connection::new(uri, stream))
        })
    }
}

/// Connects to `proxy` and asks it for a tunnel to `target` (`host:port`).
async fn open_tunnel(
    proxy: &ProxyTarget,
    target: &str,
    user_agent: Option<&str>,
) -> io::Result<TcpStream> {
    let fail = |kind: io::ErrorKind, msg: String| io::Error::new(kind, msg);
    let mut stream = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|e| {
            fail(
                e.kind(),
                format!("cannot connect to proxy {}: {e}", proxy.addr()),
            )
        })?;
    let _ = stream.set_nodelay(true);
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = &proxy.authorization {
        head.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    if let Some(ua) = user_agent {
        head.push_str(&format!("User-Agent: {ua}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.map_err(|e| {
        fail(
            e.kind(),
            format!(
                "proxy {}: sending CONNECT {target} failed: {e}",
                proxy.addr()
            ),
        )
    })?;
    let answer = read_answer(&mut stream).await.map_err(|e| {
        fail(
            e.kind(),
            format!("proxy {} answering CONNECT {target}: {e}", proxy.addr()),
        )
    })?;
    let line = answer.lines().next().unwrap_or_default().trim_end();
    match status_of(line) {
        Some(200..=299) => Ok(stream),
        Some(_) => Err(fail(
            io::ErrorKind::ConnectionRefused,
            format!("proxy {} refused CONNECT {target}: {line}", proxy.addr()),
        )),
        None => Err(fail(
            io::ErrorKind::InvalidData,
            format!(
                "proxy {} sent a malformed answer to CONNECT {target}: {:?}",
                proxy.addr(),
                line.chars().take(200).collect::<String>()
            ),
        )),
    }
}

/// Reads the proxy's answer up to and including the empty line that ends
/// its header, and not one byte further (what follows belongs to the
/// tunnel); refuses answers over [`MAX_ANSWER`].
async fn read_answer<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> io::Result<String> {
    let mut head = Vec::with_capacity(128);
    while !(head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n")) {
        // The fewest bytes that could complete the header: never more than
        // that, so the read cannot run past its end.
        let want = if head.ends_with(b"\n") || head.ends_with(b"\n\r") {
            1
        } else {
            2
        };
        if head.len() + want > MAX_ANSWER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("answer header over {MAX_ANSWER} bytes"),
            ));
        }
        let start = head.len();
        head.resize(start + want, 0);
        let n = stream.read(&mut head[start..]).await?;
        head.truncate(start + n);
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the answer's header ended",
            ));
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The status code of an `HTTP/1.x NNN reason` line.
fn status_of(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    let code = parts.next()?;
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// The environment's proxies, read once at build time when
/// `CrawlerBuilder::proxy_from_env` is on: a request without a proxy of its
/// own uses the one for its scheme, unless `no_proxy` names its host.
#[derive(Clone, Default, PartialEq)]
pub(crate) struct EnvProxies {
    /// For `http` URLs (`http_proxy`, else `HTTP_PROXY`).
    http: Option<String>,
    /// For `https` URLs (`https_proxy`, else `HTTPS_PROXY`).
    https: Option<String>,
    /// Hosts reached directly (`no_proxy`, else `NO_PROXY`).
    no_proxy: NoProxy,
}

impl EnvProxies {
    /// Reads the process environment. Fails with [`ErrorKind::InvalidUrl`]
    /// when a proxy variable is set but unusable.
    pub(crate) fn from_env() -> Result<Self, Error> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `var`.
    ///
    /// The lower-case name wins, as in curl. `HTTP_PROXY` is ignored when
    /// `REQUEST_METHOD` is set: under CGI a client controls it through a
    /// `Proxy:` header ("httpoxy"). A value without `scheme://` is taken as
    /// `http://` (`proxy:3128`), as curl and Go do.
    pub(crate) fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let get = |names: &[&str]| {
            names
                .iter()
                .filter_map(|name| var(name))
                .map(|v| v.trim().to_string())
                .find(|v| !v.is_empty())
        };
        let proxy = |lower: &str, upper: &str| -> Result<Option<String>, Error> {
            let cgi = upper == "HTTP_PROXY" && var("REQUEST_METHOD").is_some();
            let names: &[&str] = if cgi { &[lower] } else { &[lower, upper] };
            let Some(value) = get(names) else {
                return Ok(None);
            };
            let value = if value.contains("://") {
                value
            } else {
                format!("http://{value}")
            };
            ProxyTarget::parse(&value).map_err(|e| match e.kind() {
                ErrorKind::InvalidUrl { input, reason } => Error::new(
                    Stage::Setup,
                    ErrorKind::InvalidUrl {
                        input: input.clone(),
                        reason: format!("{upper}/{lower}: {reason}"),
                    },
                ),
                _ => e,
            })?;
            Ok(Some(value))
        };
        Ok(EnvProxies {
            http: proxy("http_proxy", "HTTP_PROXY")?,
            https: proxy("https_proxy", "HTTPS_PROXY")?,
            no_proxy: NoProxy::parse(&get(&["no_proxy", "NO_PROXY"]).unwrap_or_default()),
        })
    }

    /// The proxy URL for `url`, if any.
    pub(crate) fn for_url(&self, url: &Url) -> Option<&str> {
        let proxy = match url.scheme() {
            "http" => self.http.as_deref(),
            "https" => self.https.as_deref(),
            _ => None,
        }?;
        (!self.no_proxy.matches(url)).then_some(proxy)
    }
}

impl fmt::Debug for EnvProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvProxies")
            .field("http", &self.http.as_deref().map(redact))
            .field("https", &self.https.as_deref().map(redact))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// A `no_proxy` list: comma- or space-separated entries, each `*` (every
/// host), a host name (matching itself and its subdomains; a leading `.` or
/// `*.` is ignored), or an IP address, optionally with `:port` (`[v6]:port`
/// for IPv6). CIDR ranges are not supported.
#[derive(Clone, Debug, Default, PartialEq)]
struct NoProxy {
    /// `*` was given.
    all: bool,
    /// Lower-case host (IPv6 without brackets) and optional port.
    entries: Vec<(String, Option<u16>)>,
}

impl NoProxy {
    fn parse(list: &str) -> Self {
        let mut out = NoProxy::default();
        for entry in list.split([',', ' ', '\t']).map(str::trim) {
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                out.all = true;
                continue;
            }
            let (host, port) = split_port(entry);
            let host = crate::host::normalise(host);
            if !host.is_empty() {
                out.entries.push((host, port));
            }
        }
        out
    }

    fn matches(&self, url: &Url) -> bool {
        if self.all {
            return true;
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return false,
        };
        let port = url.port_or_known_default();
        self.entries.iter().any(|(name, want)| {
            want.is_none_or(|p| Some(p) == port) && crate::host::within(&host, name)
        })
    }
}

/// Splits `host:port`, `[v6]:port`, `[v6]`, a bare IPv6 address or a bare
/// host into host and port.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (rest, None),
        };
    }
    match entry.split_once(':') {
        Some((host, port)) if !port.contains(':') => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tokio::net::TcpListener;

    #[test]
    fn parses_credentials_percent_decoded() {
        let p = ProxyTarget::parse("http://us%40er:p%3Ass@proxy.example:3128").unwrap();
        assert_eq!(p.host, "proxy.example");
        assert_eq!(p.port, 3128);
        let expected = base64::engine::general_purpose::STANDARD.encode("us@er:p:ss");
        assert_eq!(p.authorization, Some(format!("Basic {expected}")));
        let p = ProxyTarget::parse("http://[::1]/").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.authorization),
            ("::1", 80, None)
        );
        assert_eq!(
            ProxyTarget::parse("http://[::1]:8").unwrap().addr(),
            "[::1]:8"
        );
    }

    #[test]
    fn refuses_unusable_proxy_urls_without_leaking_credentials() {
        for bad in [
            "https://u:secret@proxy:3128",
            "socks5://u:secret@proxy:1080",
            "http://u:secret@proxy:3128/path",
            "http://u:secret@proxy:3128/?q",
            "u:secret@proxy:3128",
            "not a url",
        ] {
            let e = ProxyTarget::parse(bad).unwrap_err();
            assert!(
                matches!(e.kind(), ErrorKind::InvalidUrl { .. }),
                "{bad}: {e}"
            );
            assert!(!e.to_string().contains("secret"), "{e}");
            assert!(e.to_string().contains("proxy URL"), "{e}");
        }
        assert_eq!(redact("http://u:p@h:1"), "http://***@h:1");
        assert_eq!(redact("http://h:1"), "http://h:1");
        let debug = format!("{:?}", ProxyTarget::parse("http://u:secret@h:1").unwrap());
        assert!(
            !debug.contains("secret") && debug.contains("h:1"),
            "{debug}"
        );
    }

    #[test]
    fn env_proxies_by_scheme_with_no_proxy() {
        let vars: HashMap<&str, &str> = [
            ("HTTP_PROXY", "http://upper:1"),
            ("http_proxy", "lower:2"),
            ("HTTPS_PROXY", "http://u:secret@s:3"),
            (
                "NO_PROXY",
                "internal.example, .corp, 10.0.0.1, localhost:8080, [::1]",
            ),
        ]
        .into();
        let env = EnvProxies::from_vars(|k| vars.get(k).map(|v| v.to_string())).unwrap();
        let at = |u: &str| env.for_url(&Url::parse(u).unwrap()).map(str::to_string);
        assert_eq!(at("http://a.example/").as_deref(), Some("http://lower:2"));
        assert_eq!(
            at("https://a.example/").as_deref(),
            Some("http://u:secret@s:3")
        );
        assert_eq!(at("http://internal.example/"), None);
        assert_eq!(at("https://x.internal.example/"), None);
        assert_eq!(
            at("http://notinternal.example/").as_deref(),
            Some("http://lower:2")
        );
        assert_eq!(at("http://a.corp/"), None);
        assert_eq!(at("http://10.0.0.1/"), None);
        assert_eq!(at("http://localhost:8080/"), None);
        assert!(at("http://localhost:8081/").is_some());
        assert_eq!(at("http://[::1]:9/"), None);
        assert!(!format!("{env:?}").contains("secret"));

        // Under CGI, HTTP_PROXY is the client's: ignored.
        let cgi = |k: &str| match k {
            "HTTP_PROXY" => Some("http://evil:1".to_string()),
            "REQUEST_METHOD" => Some("GET".to_string()),
            _ => None,
        };
        assert_eq!(EnvProxies::from_vars(cgi).unwrap(), EnvProxies::default());
        let star = |k: &str| match k {
            "http_proxy" => Some("http://p:1".to_string()),
            "no_proxy" => Some("*".to_string()),
            _ => None,
        };
        let env = EnvProxies::from_vars(star).unwrap();
        assert_eq!(env.for_url(&Url::parse("http://a/").unwrap()), None);
        let bad = |k: &str| (k == "HTTPS_PROXY").then(|| "socks5://u:secret@p:1".to_string());
        let e = EnvProxies::from_vars(bad).unwrap_err();
        assert!(e.to_string().contains("HTTPS_PROXY"), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    /// A one-shot fake proxy: reads the CONNECT request, writes `answer`,
    /// then `after` (bytes of the tunnel); returns what it read.
    async fn fake_proxy(
        answer: Vec<u8>,
        after: &'static [u8],
    ) -> (ProxyTarget, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = actix_rt::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let got = read_answer(&mut s).await.unwrap();
            let _ = s.write_all(&answer).await;
            let _ = s.write_all(after).await;
            let _ = s.shutdown().await;
            got
        });
        let target = ProxyTarget::parse(&format!("http://us:pw@127.0.0.1:{port}")).unwrap();
        (target, handle)
    }

    #[actix_rt::test]
    async fn tunnel_sends_connect_with_credentials_and_reads_no_further() {
        let answer = b"HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\n".to_vec();
        let (proxy, seen) = fake_proxy(answer, b"tunnel bytes").await;
        let mut stream = open_tunnel(&proxy, "example.com:443", Some("ua/1"))
            .await
            .unwrap();
        let mut rest = String::new();
        stream.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "tunnel bytes");
        let basic = base64::engine::general_purpose::STANDARD.encode("us:pw");
        assert_eq!(
            seen.await.unwrap(),
            format!(
                "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\
                 Proxy-Authorization: Basic {basic}\r\nUser-Agent: ua/1\r\n\r\n"
            )
        );
        // A bare-LF answer ends at its empty line too.
        let (proxy, _) = fake_proxy(b"HTTP/1.0 200 OK\n\n".to_vec(), b"x").await;
        let mut stream = open_tunnel(&proxy, "h:80", None).await.unwrap();
        let mut rest = String::new();
        stream.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "x");
    }

    #[actix_rt::test]
    async fn refusals_and_garbage_are_clear_errors() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                b"HTTP/1.0 407 Proxy Authentication Required\r\n\r\n".to_vec(),
                "refused CONNECT h:1: HTTP/1.0 407 Proxy Authentication Required",
            ),
            (
                b"HTTP/1.1 403 Forbidden\r\n\r\nbody".to_vec(),
                "refused CONNECT h:1: HTTP/1.1 403",
            ),
            (b"SSH-2.0-OpenSSH\r\n\r\n".to_vec(), "malformed answer"),
            (b"HTTP/1.1 200 OK\r\n".to_vec(), "connection closed before"),
            (vec![b'a'; MAX_ANSWER + 10], "over 16384 bytes"),
        ];
        for (answer, expected) in cases {
            let (proxy, _) = fake_proxy(answer, b"").await;
            let e = open_tunnel(&proxy, "h:1", None).await.unwrap_err();
            assert!(e.to_string().contains(expected), "{e} lacks {expected:?}");
            assert!(e.to_string().contains("127.0.0.1:"), "{e}");
        }
        // Nobody listening.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let proxy = ProxyTarget::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let e = open_tunnel(&proxy, "h:1", None).await.unwrap_err();
        assert!(e.to_string().contains("cannot connect to proxy"), "{e}");
    }
}
