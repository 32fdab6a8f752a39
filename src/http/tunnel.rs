//! The CONNECT tunnel: the TCP stage of a proxied client's connector.
//!
//! A proxied client is an ordinary awc client (built by `http::client_with`,
//! with the same settings as the direct one) whose connector's TCP stage is
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
//! The proxy's answer is read up to the end of its header and not one byte
//! further: what follows belongs to the tunnel. Errors name the proxy by
//! its address, never its credentials.
//!
//! With the address guard on, the tunnel resolves and checks the target
//! before it connects to the proxy, and asks for a tunnel to a checked
//! address (`CONNECT 203.0.113.7:443`), not the name: a refused target
//! never reaches the proxy, and the proxy's DNS cannot lead elsewhere. When
//! the name has several addresses the guard allows, each is tried in turn
//! until a tunnel to one is open. TLS still verifies the certificate
//! against the URL's host name. A proxy named by the request itself (not
//! the environment's) is resolved and checked by the guard too, and only
//! its checked addresses are connected to.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use actix_rt::net::TcpStream;
use actix_service::Service;
use actix_tls::connect::{ConnectError as TcpConnectError, ConnectInfo, Connection};
use awc::http::header::HeaderValue;
use awc::http::Uri;
use futures_util::future::LocalBoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::http::guard::AddressGuard;
use crate::http::proxy::{authority, ProxyTarget};
use crate::http::{client_with, DownloadConfig};

/// The most bytes of a proxy's answer to CONNECT read before giving up.
const MAX_ANSWER: usize = 16 * 1024;

/// An awc client whose every connection is a CONNECT tunnel through `proxy`;
/// otherwise configured like the direct client, speaking TLS over the
/// tunnel with `tls`. With `check_proxy`, the guard (when on) checks the
/// proxy's own address too.
pub(crate) fn proxied_client(
    proxy: &ProxyTarget,
    cfg: &DownloadConfig,
    check_proxy: bool,
    tls: &Arc<rustls::ClientConfig>,
) -> awc::Client {
    let tunnel = Tunnel {
        check_proxy,
        proxy: Rc::new(proxy.clone()),
        user_agent: HeaderValue::from_str(&cfg.user_agent)
            .ok()
            .map(|_| cfg.user_agent.clone()),
        guard: cfg.guard.clone(),
    };
    client_with(cfg, tls, awc::Connector::new().connector(tunnel))
}

/// The TCP stage of a proxied client's connector: a connection to the proxy
/// turned into a tunnel to the target (awc bounds it with its connect
/// timeout).
#[derive(Clone)]
struct Tunnel {
    /// Where to connect; an `Rc`, as each connection's future holds it.
    proxy: Rc<ProxyTarget>,
    /// Sent with CONNECT, so the proxy sees the crawler's User-Agent; `None`
    /// when it is not a valid header value, which would spoil the request.
    user_agent: Option<String>,
    /// Checks the target before anything is sent; `None` when the guard is
    /// off.
    guard: Option<Arc<AddressGuard>>,
    /// Whether the guard checks the proxy's address too (a proxy the
    /// request named, not the environment's).
    check_proxy: bool,
}

impl Service<ConnectInfo<Uri>> for Tunnel {
    type Response = Connection<Uri, TcpStream>;
    type Error = TcpConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_service::always_ready!();

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let proxy = self.proxy.clone();
        let user_agent = self.user_agent.clone();
        let guard = self.guard.clone();
        let check_proxy = self.check_proxy;
        let (host, port) = (req.hostname().to_string(), req.port());
        let known: Vec<SocketAddr> = req.addrs().collect();
        let uri = req.request().clone();
        Box::pin(async move {
            let io = TcpConnectError::Io;
            let (via, targets) = match guard {
                None => (None, vec![authority(&host, port)]),
                Some(guard) => {
                    let via = match check_proxy {
                        true => Some(guard.resolve(&proxy.host, proxy.port).await.map_err(io)?),
                        false => None,
                    };
                    let targets = guard.check(&host, port, known).await.map_err(io)?;
                    (via, targets.iter().map(|a| a.to_string()).collect())
                }
            };
            // Each allowed address in turn (there is one, or `resolve`
            // failed), until a tunnel to one is open.
            let mut failed = None;
            for target in &targets {
                match open_tunnel(&proxy, via.as_deref(), target, user_agent.as_deref()).await {
                    Ok(stream) => return Ok(Connection::new(uri, stream)),
                    Err(e) => failed = Some(e),
                }
            }
            Err(io(failed.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no address for {host}"))
            })))
        })
    }
}

/// Connects to `proxy` (at `via`, its checked addresses, when given) and
/// asks it for a tunnel to `target` (`host:port`).
async fn open_tunnel(
    proxy: &ProxyTarget,
    via: Option<&[SocketAddr]>,
    target: &str,
    user_agent: Option<&str>,
) -> io::Result<TcpStream> {
    let fail = |kind: io::ErrorKind, msg: String| io::Error::new(kind, msg);
    let connected = match via {
        Some(addrs) => TcpStream::connect(addrs).await,
        None => TcpStream::connect((proxy.host.as_str(), proxy.port)).await,
    };
    let mut stream = connected.map_err(|e| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Request;
    use base64::Engine as _;
    use tokio::net::TcpListener;

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
        let mut stream = open_tunnel(&proxy, None, "example.com:443", Some("ua/1"))
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
        let mut stream = open_tunnel(&proxy, None, "h:80", None).await.unwrap();
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
            let e = open_tunnel(&proxy, None, "h:1", None).await.unwrap_err();
            assert!(e.to_string().contains(expected), "{e} lacks {expected:?}");
            assert!(e.to_string().contains("127.0.0.1:"), "{e}");
        }
        // Nobody listening.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let proxy = ProxyTarget::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let e = open_tunnel(&proxy, None, "h:1", None).await.unwrap_err();
        assert!(e.to_string().contains("cannot connect to proxy"), "{e}");
    }

    /// A fake proxy on 127.0.0.1:0 that tunnels only to `open` (a
    /// `host:port` answering one small page itself) and refuses every
    /// other CONNECT with a 403; returns its URL and the CONNECT lines it
    /// got.
    async fn picky_proxy(open: String) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = lines.clone();
        actix_rt::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let Ok(head) = read_answer(&mut s).await else {
                    continue;
                };
                let line = head.lines().next().unwrap_or_default().to_string();
                seen.lock().unwrap().push(line.clone());
                if line != format!("CONNECT {open} HTTP/1.1") {
                    let _ = s.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
                    continue;
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
                let _ = read_answer(&mut s).await;
                let page = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                let _ = s.write_all(page.as_bytes()).await;
                let _ = s.shutdown().await;
            }
        });
        (port, lines)
    }

    fn guarded(allow: &[&str], env: Option<crate::http::env_proxy::EnvProxies>) -> DownloadConfig {
        let allow: Vec<String> = allow.iter().map(|a| a.to_string()).collect();
        DownloadConfig {
            timeout: std::time::Duration::from_secs(10),
            guard: Some(Arc::new(AddressGuard::new(&allow).unwrap())),
            env_proxy: env,
            ..DownloadConfig::default()
        }
    }

    #[actix_rt::test]
    async fn with_the_guard_on_each_allowed_address_is_tried_in_turn() {
        // The proxy refuses a tunnel to the first address and opens one to
        // the second: the request goes through the second.
        let (port, lines) = picky_proxy("127.0.0.3:8080".into()).await;
        let proxy = ProxyTarget::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let tunnel = Tunnel {
            proxy: Rc::new(proxy),
            user_agent: None,
            guard: guarded(&["127.0.0.0/8"], None).guard,
            check_proxy: true,
        };
        let uri: Uri = "http://two.example:8080/".parse().unwrap();
        let addrs: Vec<SocketAddr> = ["127.0.0.2:8080", "127.0.0.3:8080"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let info = ConnectInfo::new(uri).set_addrs(addrs);
        let mut conn = tunnel.call(info).await.expect("the second address");
        conn.io_mut()
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut page = String::new();
        conn.io_mut().read_to_string(&mut page).await.unwrap();
        assert!(page.ends_with("\r\n\r\nok"), "{page}");
        assert_eq!(
            *lines.lock().unwrap(),
            [
                "CONNECT 127.0.0.2:8080 HTTP/1.1",
                "CONNECT 127.0.0.3:8080 HTTP/1.1"
            ]
        );
    }

    #[actix_rt::test]
    async fn the_guard_checks_a_requests_own_proxy_but_not_the_environments() {
        // The proxy listens on 127.0.0.1, which the guard refuses; the
        // target, 127.0.0.2, it allows.
        let (port, lines) = picky_proxy("127.0.0.2:8080".into()).await;
        let env_url = format!("http://127.0.0.1:{port}");
        let vars = |k: &str| (k == "http_proxy").then(|| env_url.clone());
        let env = crate::http::env_proxy::EnvProxies::from_vars(vars).unwrap();
        let cfg = guarded(&["127.0.0.2"], Some(env));
        let mut clients = crate::http::Clients::new(&cfg);
        let target = "http://127.0.0.2:8080/";
        let send = |req: Request<()>, clients: &mut crate::http::Clients| {
            let client = clients.for_request(&req, &cfg).unwrap();
            async move { client.get(req.url.as_str()).send().await }
        };
        // The environment's proxy, whether the request names it or not.
        for req in [
            Request::get(target).unwrap(),
            Request::get(target).unwrap().proxy(&env_url),
        ] {
            let resp = send(req, &mut clients)
                .await
                .expect("through the env's proxy");
            assert_eq!(resp.status(), 200);
        }
        // The same proxy under another name, named by the request: checked,
        // refused, never connected to.
        let own = Request::get(target)
            .unwrap()
            .proxy(format!("http://localhost:{port}"));
        let e = send(own, &mut clients).await.expect_err("refused");
        match crate::http::guard::refusal(&e) {
            Some(crate::error::ErrorKind::BlockedAddress { host, range, .. }) => {
                assert_eq!((host.as_str(), range.as_str()), ("localhost", "loopback"))
            }
            other => panic!("{other:?}: {e}"),
        }
        assert_eq!(
            lines.lock().unwrap().len(),
            2,
            "the refused one never reached it"
        );
    }
}
