//! The environment's proxies: `http_proxy`/`HTTP_PROXY`,
//! `https_proxy`/`HTTPS_PROXY` and `no_proxy`/`NO_PROXY`.
//!
//! [`EnvProxies`] is an opt-in fallback, read once when the crawl is built
//! (`CrawlerBuilder::proxy_from_env`) and never otherwise: the library
//! does not read the environment unless asked. Each proxy variable is
//! checked then as a [`ProxyTarget`] URL, so a bad one fails the build, not
//! each request; hosts are matched as `crate::host` matches them elsewhere.
//! Credentials in the variables never appear in errors or `Debug` output.

use std::fmt;

use url::Url;

use crate::error::{Error, ErrorKind, Stage};
use crate::http::proxy::{redact, ProxyTarget};

/// The environment's proxies, read once at build time when
/// `CrawlerBuilder::proxy_from_env` is on: a request without a proxy of its
/// own uses the one for its scheme, unless `no_proxy` names its host.
#[derive(Clone, Default, PartialEq)]
pub(crate) struct EnvProxies {
    /// For `http` URLs (`http_proxy`, else `HTTP_PROXY`).
    http: Option<String>,
    /// For `https` URLs (`https_proxy`, else `HTTPS_PROXY`).
    https: Option<String>,
    /// Hosts reached directly (`no_proxy`, else `NO_PROXY`), even when a
    /// proxy is set for their scheme.
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

    /// Whether `proxy` is one of these proxies (as written, after a missing
    /// `http://` was added).
    pub(crate) fn names(&self, proxy: &str) -> bool {
        [&self.http, &self.https]
            .iter()
            .any(|p| p.as_deref() == Some(proxy))
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
    /// `*` was given: every host is reached directly.
    all: bool,
    /// Lower-case host (IPv6 without brackets) and optional port, the form
    /// `crate::host::within` compares.
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
}
