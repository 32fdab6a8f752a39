//! The address guard: an opt-in refusal of connections to loopback,
//! private, link-local, unique-local, multicast and other special
//! addresses, for services that crawl URLs their users supply
//! (`CrawlerBuilder::block_private_addresses`).
//!
//! The check runs where the connection is made, after DNS resolution: the
//! guarded connector ([`Guarded`]) resolves the host itself, drops the
//! addresses the guard refuses and hands only the checked ones to the TCP
//! connector. The address checked is therefore the address connected to;
//! there is no second lookup that a rebinding DNS server could answer
//! differently. A URL whose host is an IP address is checked the same way,
//! and so is every redirect, as each is a request of its own through the
//! same clients.
//!
//! Through a proxy, the CONNECT tunnel resolves and checks the target the
//! same way before it connects to the proxy, and asks the proxy for a
//! tunnel to a checked address rather than the name (each checked address
//! in turn until one is tunnelled to), so the proxy's own DNS cannot lead
//! elsewhere. A proxy the request names itself is data like its URL, and
//! is checked the same way before it is connected to; the environment's
//! proxies (`CrawlerBuilder::proxy_from_env`) are the crawl's configuration
//! and are not, even when a request names one of them.
//!
//! Exceptions (exact addresses or CIDR ranges) let chosen addresses
//! through. An IPv4 address written as IPv6 (`::ffff:127.0.0.1`, or
//! embedded by NAT64 or 6to4) is judged as the IPv4 address it reaches.
//! A refusal is an `io::Error` carrying [`Blocked`] inside awc's connect
//! error; [`refusal`] turns it into `ErrorKind::BlockedAddress`.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use actix_rt::net::TcpStream;
use actix_service::Service;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection, ConnectorService};
use awc::error::SendRequestError;
use awc::http::Uri;
use futures_util::future::LocalBoxFuture;
use ipnet::IpNet;

use crate::error::{Error, ErrorKind, Stage};

/// Which addresses a crawl may connect to: none of the special ranges
/// ([`range_of`]) unless an exception covers them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AddressGuard {
    /// Addresses let through although their range is refused.
    allow: Vec<IpNet>,
}

impl AddressGuard {
    /// A guard with these exceptions, each an IP address or a CIDR range
    /// (`10.1.0.0/16`, `fd00::/8`); anything else fails with
    /// [`ErrorKind::Config`].
    pub(crate) fn new(allow: &[String]) -> Result<Self, Error> {
        let allow = allow
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| match net {
                        // A range of mapped IPv4 addresses is the IPv4 range.
                        IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
                            Some(v4) if v6.prefix_len() >= 96 => {
                                IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96)
                                    .expect("prefix at most 32")
                            }
                            _ => net,
                        },
                        v4 => v4,
                    })
                    .map_err(|_| {
                        Error::new(
                            Stage::Setup,
                            ErrorKind::Config(format!(
                                "address guard exception {entry:?} is neither an IP address \
                                 nor a CIDR range"
                            )),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(AddressGuard { allow })
    }

    /// The range `ip` is refused for, or `None` when it may be connected to.
    pub(crate) fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        let ip = ip.to_canonical();
        if self.allow.iter().any(|net| net.contains(&ip)) {
            return None;
        }
        range_of(ip)
    }

    /// The addresses of `host`:`port` the guard lets through (resolved here
    /// unless `host` is an IP address); an error carrying [`Blocked`] when
    /// it refuses every one.
    pub(crate) async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        self.check(host, port, Vec::new()).await
    }

    /// As [`resolve`](Self::resolve), but `known` addresses (those a
    /// connection request already carries) are checked instead of a new
    /// lookup when there are any.
    pub(crate) async fn check(
        &self,
        host: &str,
        port: u16,
        known: Vec<SocketAddr>,
    ) -> io::Result<Vec<SocketAddr>> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs = match bare.parse::<IpAddr>() {
            _ if !known.is_empty() => known,
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare, port)).await?.collect(),
        };
        self.filter(bare, addrs)
    }

    /// `addrs` less the refused ones; an error naming the first refused
    /// when none is left.
    fn filter(&self, host: &str, addrs: Vec<SocketAddr>) -> io::Result<Vec<SocketAddr>> {
        let mut refused = None;
        let kept: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match self.refusal(a.ip()) {
                None => true,
                Some(range) => {
                    refused.get_or_insert((a.ip(), range));
                    false
                }
            })
            .collect();
        match (kept.is_empty(), refused) {
            (false, _) => Ok(kept),
            (true, Some((addr, range))) => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                Blocked {
                    host: host.to_string(),
                    addr,
                    range,
                },
            )),
            (true, None) => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no address found for {host}"),
            )),
        }
    }
}

/// The special range `ip` falls in (`loopback`, `private`, ...), or `None`
/// for an ordinary public address. IPv4 addresses reached through IPv6
/// (mapped, NAT64, 6to4) are judged as that IPv4 address.
pub(crate) fn range_of(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => range_of_v4(v4),
        IpAddr::V6(v6) => range_of_v6(v6),
    }
}

fn range_of_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "unspecified",
        (127, _, _) => "loopback",
        (10, _, _) | (192, 168, _) => "private",
        (172, _, _) if (16..32).contains(&b) => "private",
        (100, _, _) if (64..128).contains(&b) => "shared",
        (169, 254, _) => "link-local",
        (192, 0, 0) => "reserved",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18 | 19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    })
}

fn range_of_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return range_of_v4(v4);
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    Some(match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => "unspecified",
        [0, 0, 0, 0, 0, 0, 0, 1] => "loopback",
        // NAT64: the IPv4 address it translates to.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => return range_of_v4(embedded(hi, lo)),
        [0x64, 0xff9b, 1, ..] => "private",
        // 6to4: the IPv4 address of the relay's far end.
        [0x2002, hi, lo, ..] => return range_of_v4(embedded(hi, lo)),
        [0x2001, 0xdb8, ..] => "documentation",
        [0x100, 0, 0, 0, ..] => "reserved",
        [x, ..] if x & 0xff00 == 0 => "reserved",
        [x, ..] if x & 0xfe00 == 0xfc00 => "unique-local",
        [x, ..] if x & 0xffc0 == 0xfe80 => "link-local",
        [x, ..] if x & 0xffc0 == 0xfec0 => "site-local",
        [x, ..] if x & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    })
}

/// Why the guard refused a connection: carried inside the `io::Error` of a
/// refused connect.
#[derive(Debug)]
pub(crate) struct Blocked {
    /// The host asked for.
    host: String,
    /// The (first) address refused.
    addr: IpAddr,
    /// Its range.
    range: &'static str,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} resolves to {}, a {} address: refused by the address guard",
            self.host, self.addr, self.range
        )
    }
}

impl std::error::Error for Blocked {}

/// The guard's refusal inside a failed send, as the error kind to report.
pub(crate) fn refusal(e: &SendRequestError) -> Option<ErrorKind> {
    let SendRequestError::Connect(awc::error::ConnectError::Io(io)) = e else {
        return None;
    };
    let blocked = io.get_ref()?.downcast_ref::<Blocked>()?;
    Some(ErrorKind::BlockedAddress {
        host: blocked.host.clone(),
        addr: blocked.addr,
        range: blocked.range.to_string(),
    })
}

/// The TCP stage of a guarded client's connector: resolves, checks, then
/// connects to the checked addresses only.
#[derive(Clone)]
pub(crate) struct Guarded {
    /// What may be connected to.
    guard: Arc<AddressGuard>,
    /// actix-tls's connector, handed resolved addresses (it then skips its
    /// own lookup).
    tcp: ConnectorService,
}

impl Guarded {
    /// The guarded TCP stage for `guard`.
    pub(crate) fn new(guard: Arc<AddressGuard>) -> Self {
        Guarded {
            guard,
            tcp: actix_tls::connect::Connector::default().service(),
        }
    }
}

impl Service<ConnectInfo<Uri>> for Guarded {
    type Response = Connection<Uri, TcpStream>;
    type Error = ConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_service::always_ready!();

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let guard = self.guard.clone();
        let tcp = self.tcp.clone();
        Box::pin(async move {
            let known: Vec<SocketAddr> = req.addrs().collect();
            let addrs = guard.check(req.hostname(), req.port(), known).await;
            let addrs = addrs.map_err(ConnectError::Io)?;
            tcp.call(req.set_addrs(addrs)).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn special_ranges_are_classified() {
        for (addr, range) in [
            ("169.254.169.254", "link-local"),
            ("10.0.0.1", "private"),
            ("10.255.255.255", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "shared"),
            ("100.127.255.255", "shared"),
            ("127.0.0.1", "loopback"),
            ("127.0.0.2", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("192.0.2.7", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::ffff:10.1.2.3", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:7f00:1::", "loopback"),
            ("::127.0.0.1", "reserved"),
        ] {
            assert_eq!(range_of(ip(addr)), Some(range), "{addr}");
        }
    }

    #[test]
    fn public_addresses_and_range_edges_pass() {
        for addr in [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.1.1",
            "11.0.0.1",
            "223.255.255.255",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "fbff::1",
        ] {
            assert_eq!(range_of(ip(addr)), None, "{addr}");
        }
    }

    #[test]
    fn exceptions_let_exact_addresses_and_ranges_through() {
        let guard = AddressGuard::new(&[
            "127.0.0.1".into(),
            "10.1.0.0/16".into(),
            " fd00::/8 ".into(),
            "::ffff:192.168.0.0/112".into(),
        ])
        .unwrap();
        assert_eq!(guard.refusal(ip("127.0.0.1")), None);
        assert_eq!(guard.refusal(ip("::ffff:127.0.0.1")), None);
        assert_eq!(guard.refusal(ip("127.0.0.2")), Some("loopback"));
        assert_eq!(guard.refusal(ip("10.1.200.3")), None);
        assert_eq!(guard.refusal(ip("10.2.0.1")), Some("private"));
        assert_eq!(guard.refusal(ip("fd00::5")), None);
        assert_eq!(guard.refusal(ip("fc00::5")), Some("unique-local"));
        assert_eq!(guard.refusal(ip("192.168.7.7")), None);
        assert_eq!(guard.refusal(ip("8.8.8.8")), None);
        for bad in ["localhost", "10.0.0.0/33", "1.2.3"] {
            let e = AddressGuard::new(&[bad.to_string()]).unwrap_err();
            assert!(matches!(e.kind(), ErrorKind::Config(_)), "{bad}: {e}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[actix_rt::test]
    async fn resolving_keeps_the_allowed_addresses_and_names_a_refused_one() {
        let guard = AddressGuard::new(&["127.0.0.1".into()]).unwrap();
        let kept = guard.resolve("127.0.0.1", 80).await.unwrap();
        assert_eq!(kept, [SocketAddr::from(([127, 0, 0, 1], 80))]);
        let e = guard.resolve("[::1]", 80).await.unwrap_err();
        let blocked = e.get_ref().unwrap().downcast_ref::<Blocked>().unwrap();
        assert_eq!((blocked.addr, blocked.range), (ip("::1"), "loopback"));
        let mixed = vec![
            SocketAddr::from(([10, 0, 0, 1], 80)),
            SocketAddr::from(([127, 0, 0, 1], 80)),
        ];
        assert_eq!(
            guard.filter("h", mixed).unwrap(),
            [SocketAddr::from(([127, 0, 0, 1], 80))]
        );
        let e = AddressGuard::new(&[])
            .unwrap()
            .resolve("localhost", 80)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("localhost resolves to"), "{e}");
    }
}
