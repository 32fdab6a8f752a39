//! Proxy URLs: parsing `http://[user:pass@]host[:port]` into a
//! [`ProxyTarget`], and keeping its credentials out of every message.
//!
//! awc has no proxy support of its own, so the crate brings it in three
//! parts: this module (what a proxy is, and how it is named in errors), the
//! CONNECT [tunnel](super::tunnel) (how a request goes through one) and the
//! [environment's proxies](super::env_proxy) (which one a request uses when
//! it names none). A proxied request never falls back to a direct
//! connection.
//!
//! Proxy credentials never appear in errors or `Debug` output: every
//! message names a proxy by [`ProxyTarget::addr`] or by [`redact`]ed URL.

use std::fmt;

use base64::Engine as _;
use percent_encoding::percent_decode_str;
use url::Url;

use crate::error::{Error, ErrorKind, Stage};

/// A parsed `http://[user:pass@]host[:port]` proxy.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ProxyTarget {
    /// Host name or IP address (IPv6 without brackets), what the tunnel
    /// connects to.
    pub(super) host: String,
    /// Port; 80 when the URL names none, as for any `http` URL.
    pub(super) port: u16,
    /// `Basic …` credentials for `Proxy-Authorization`, when the URL has any:
    /// the header value, encoded once and sent with each CONNECT.
    pub(super) authorization: Option<String>,
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
    pub(super) fn addr(&self) -> String {
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
pub(super) fn authority(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
