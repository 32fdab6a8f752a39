//! TLS for the crawl's connections: which certificates it trusts, the
//! client certificate it shows, the oldest protocol version it accepts,
//! the HTTP versions it offers (ALPN), and the loudly named switch that
//! turns certificate checks off.
//!
//! The settings ([`TlsSettings`], plain data on the builder) are read and
//! checked once, when the crawl is built ([`Tls::load`]: a PEM file that
//! cannot be read or holds no certificate, a key that does not match its
//! certificate, fail the build with a message naming the file). The crawl
//! then makes one `rustls::ClientConfig` ([`Tls::client_config`]) that
//! every downloader's client shares, direct or through a proxy's CONNECT
//! tunnel (TLS runs over the tunnel with the same configuration).
//!
//! A certificate given as an extra root is also trusted as the server's own
//! certificate, as `curl --cacert` does: a self-signed certificate made
//! with `openssl req -x509` is marked as an authority, which the standard
//! checks refuse as a server's certificate whoever trusts it
//! (`verifier`).
//!
//! Offered by ALPN: `h2` then `http/1.1`, or only `http/1.1` when HTTP/1.1
//! is forced. The server picks; the response's version is counted in
//! `downloader/response_http_version/<version>`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, ErrorKind};
use crate::http::verifier::Verifier;
use crate::stats::Stats;

/// Which root certificates a crawl trusts, besides the extra ones it is
/// given ([`CrawlerBuilder::tls_root_file`](crate::CrawlerBuilder::tls_root_file)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsRoots {
    /// The web's public authorities, compiled in (Mozilla's list): the same
    /// on every machine. The default.
    #[default]
    Builtin,
    /// The operating system's trust store, read when the crawl is built.
    System,
    /// Both the built-in and the system's.
    Both,
    /// Only the extra roots given.
    Extra,
}

/// The oldest TLS version a crawl accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsVersion {
    /// TLS 1.2 (and 1.3). The default.
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// PEM text, in a file or given as bytes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Pem {
    /// Read when the crawl is built.
    File(PathBuf),
    /// Given by the caller.
    Bytes(Vec<u8>),
}

impl Pem {
    /// How errors name it.
    fn name(&self) -> String {
        match self {
            Pem::File(path) => format!("file {}", path.display()),
            Pem::Bytes(_) => "PEM bytes".to_string(),
        }
    }

    /// Its text (the file read now).
    fn bytes(&self) -> Result<std::borrow::Cow<'_, [u8]>, Error> {
        match self {
            Pem::Bytes(b) => Ok(b.into()),
            Pem::File(path) => std::fs::read(path)
                .map(Into::into)
                .map_err(|e| Error::config(format!("TLS: cannot read {}: {e}", path.display()))),
        }
    }

    /// Every certificate it holds; an error when there is none.
    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, Error> {
        let bytes = self.bytes()?;
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::config(format!("TLS: {} is not valid PEM: {e}", self.name())))?;
        if certs.is_empty() {
            return Err(Error::config(format!(
                "TLS: {} holds no certificate (-----BEGIN CERTIFICATE-----)",
                self.name()
            )));
        }
        Ok(certs)
    }

    /// The private key it holds (PKCS#8, PKCS#1 or SEC1).
    fn key(&self) -> Result<PrivateKeyDer<'static>, Error> {
        PrivateKeyDer::from_pem_slice(&self.bytes()?)
            .map_err(|e| Error::config(format!("TLS: no private key in {}: {e}", self.name())))
    }
}

/// A crawl's TLS settings as given to the builder: plain data, read by
/// [`Tls::load`].
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct TlsSettings {
    /// Root certificates trusted besides `roots`.
    pub extra_roots: Vec<Pem>,
    /// Which other roots are trusted.
    pub roots: TlsRoots,
    /// The client certificate (chain) and its key, for servers that ask.
    pub identity: Option<(Pem, Pem)>,
    /// A client certificate and key for one host (lower case), instead of
    /// `identity`.
    pub host_identities: Vec<(String, Pem, Pem)>,
    /// The oldest version accepted.
    pub min_version: TlsVersion,
    /// Accept any certificate (counted per host); off unless asked.
    pub danger_accept_invalid_certs: bool,
    /// Offer only HTTP/1.1.
    pub http1_only: bool,
}

/// A client certificate chain and its private key.
type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The TLS configurations of a crawl's clients: one for every host but
/// those with a client certificate of their own, which have theirs.
#[derive(Clone, Debug)]
pub(crate) struct TlsConfigs {
    /// For every other host.
    pub default: Arc<ClientConfig>,
    /// Per host (lower case); shared by every downloader.
    pub hosts: Arc<HashMap<String, Arc<ClientConfig>>>,
}

impl TlsConfigs {
    /// The host of `url` and its own configuration, when it has one (an
    /// `https` URL only: a plain one never speaks TLS).
    pub(crate) fn for_url<'a>(
        &'a self,
        url: &'a url::Url,
    ) -> Option<(&'a str, &'a Arc<ClientConfig>)> {
        let host = url.host_str().filter(|_| url.scheme() == "https")?;
        self.hosts.get(host).map(|config| (host, config))
    }
}

/// [`TlsSettings`] read and checked: what a `ClientConfig` is made of.
#[derive(Debug)]
pub(crate) struct Tls {
    /// Every root trusted.
    roots: Arc<RootCertStore>,
    /// The extra roots, each also trusted as the server's own certificate
    /// (a self-signed one).
    pinned: Arc<[CertificateDer<'static>]>,
    /// The client certificate chain and its key.
    identity: Option<Identity>,
    /// Per host (lower case), its own client certificate chain and key.
    host_identities: Vec<(String, Identity)>,
    /// The settings, for what needs no reading.
    settings: TlsSettings,
}

impl Tls {
    /// Reads `s`'s certificates and keys, and checks that a configuration
    /// can be made of them.
    pub(crate) fn load(s: &TlsSettings) -> Result<Tls, Error> {
        let mut roots = RootCertStore::empty();
        if matches!(s.roots, TlsRoots::Builtin | TlsRoots::Both) {
            roots.extend(webpki_roots());
        }
        if matches!(s.roots, TlsRoots::System | TlsRoots::Both) {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                let why = found.errors.first().map(ToString::to_string);
                return Err(Error::config(format!(
                    "TLS: no root certificate found in the system's trust store ({})",
                    why.as_deref().unwrap_or("it is empty")
                )));
            }
            roots.add_parsable_certificates(found.certs);
        }
        let mut pinned = Vec::new();
        for pem in &s.extra_roots {
            for cert in pem.certificates()? {
                roots.add(cert.clone()).map_err(|e| {
                    Error::config(format!("TLS: a root certificate in {}: {e}", pem.name()))
                })?;
                pinned.push(cert);
            }
        }
        if roots.is_empty() && !s.danger_accept_invalid_certs {
            return Err(Error::config(
                "TLS: no root certificate to trust: tls_roots = extra needs at least one \
                 extra root (tls_root_file)",
            ));
        }
        let identity = match &s.identity {
            None => None,
            Some((cert, key)) => Some((cert.certificates()?, key.key()?)),
        };
        let mut host_identities = Vec::new();
        for (host, cert, key) in &s.host_identities {
            host_identities.push((host.clone(), (cert.certificates()?, key.key()?)));
        }
        let tls = Tls {
            roots: Arc::new(roots),
            pinned: pinned.into(),
            identity,
            host_identities,
            settings: s.clone(),
        };
        tls.try_config(None, tls.identity.as_ref())?;
        for (host, identity) in &tls.host_identities {
            tls.try_config(None, Some(identity))
                .map_err(|e| match e.kind() {
                    ErrorKind::Config(m) => Error::config(format!("{m} (for host {host})")),
                    _ => e,
                })?;
        }
        Ok(tls)
    }

    /// Whether certificates are not checked.
    pub(crate) fn accepts_invalid_certs(&self) -> bool {
        self.settings.danger_accept_invalid_certs
    }

    /// The configurations a crawl's clients share; certificates accepted
    /// although invalid are counted in `stats`.
    pub(crate) fn configs(&self, stats: &Arc<Stats>) -> TlsConfigs {
        let config = |identity| {
            Arc::new(
                self.try_config(Some(stats), identity)
                    .expect("checked by Tls::load"),
            )
        };
        let hosts = (self.host_identities.iter())
            .map(|(host, identity)| (host.clone(), config(Some(identity))))
            .collect();
        TlsConfigs {
            default: config(self.identity.as_ref()),
            hosts: Arc::new(hosts),
        }
    }

    /// The configuration showing `identity`, or why it cannot be made (a
    /// key that does not fit its certificate).
    fn try_config(
        &self,
        stats: Option<&Arc<Stats>>,
        identity: Option<&Identity>,
    ) -> Result<ClientConfig, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = match self.settings.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| Error::config(format!("TLS: {e}")))?;
        let verifier = Verifier {
            checked: (!self.roots.is_empty()).then(|| self.verifier(&provider)),
            pinned: self.pinned.clone(),
            provider,
            accept_invalid: (self.settings.danger_accept_invalid_certs)
                .then(|| stats.cloned().unwrap_or_default()),
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some((certs, key)) => builder
                .with_client_auth_cert(certs.clone(), key.clone_key())
                .map_err(|e| Error::config(format!("TLS: client certificate: {e}")))?,
        };
        config.alpn_protocols = if self.settings.http1_only {
            vec![b"http/1.1".to_vec()]
        } else {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        };
        Ok(config)
    }

    /// The standard verifier over this crawl's roots.
    fn verifier(&self, provider: &Arc<CryptoProvider>) -> Arc<WebPkiServerVerifier> {
        WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider.clone())
            .build()
            .expect("a non-empty root store")
    }
}

/// The configurations a crawl's clients share: `tls`'s (the default's
/// when the crawl was not built through the builder's checks), with a
/// warning logged when certificates are not checked.
pub(crate) fn shared(tls: Option<&Tls>, stats: &Arc<Stats>, log: &slog::Logger) -> TlsConfigs {
    let Some(tls) = tls else {
        return default_configs();
    };
    if tls.accepts_invalid_certs() {
        slog::warn!(
            log,
            "danger_accept_invalid_certs is on: server certificates are not checked, \
            connections can be intercepted; each accepted invalid certificate counts \
            tls/invalid_cert_accepted/<host>"
        );
    }
    tls.configs(stats)
}

/// The configurations of a crawl without TLS settings of its own (the
/// built-in roots, HTTP/2 offered).
pub(crate) fn default_configs() -> TlsConfigs {
    let tls = Tls::load(&TlsSettings::default()).expect("the built-in roots");
    tls.configs(&Arc::default())
}

/// The compiled-in roots awc uses by default.
fn webpki_roots() -> Vec<rustls_pki_types::TrustAnchor<'static>> {
    actix_tls::connect::rustls_0_23::webpki_roots_cert_store().roots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> Pem {
        Pem::File(PathBuf::from(path))
    }

    #[test]
    fn unreadable_or_empty_pem_fails_naming_the_file() {
        let missing = TlsSettings {
            extra_roots: vec![file("/nonexistent/ca.pem")],
            ..TlsSettings::default()
        };
        let e = Tls::load(&missing).unwrap_err();
        assert_eq!(e.kind_name(), "config");
        assert!(
            e.to_string()
                .contains("TLS: cannot read /nonexistent/ca.pem"),
            "{e}"
        );
        let empty = TlsSettings {
            extra_roots: vec![Pem::Bytes(b"not pem".to_vec())],
            ..TlsSettings::default()
        };
        let e = Tls::load(&empty).unwrap_err();
        assert!(
            e.to_string().contains("PEM bytes holds no certificate"),
            "{e}"
        );
        let nothing = TlsSettings {
            roots: TlsRoots::Extra,
            ..TlsSettings::default()
        };
        let e = Tls::load(&nothing).unwrap_err();
        assert!(
            e.to_string().contains("no root certificate to trust"),
            "{e}"
        );
    }

    #[test]
    fn alpn_offers_h2_unless_http1_is_forced() {
        let config = |http1_only| {
            let s = TlsSettings {
                http1_only,
                ..TlsSettings::default()
            };
            Tls::load(&s).unwrap().configs(&Arc::default()).default
        };
        assert_eq!(
            config(false).alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert_eq!(config(true).alpn_protocols, [b"http/1.1".to_vec()]);
    }
}
