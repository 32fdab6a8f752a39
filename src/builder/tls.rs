//! The builder's TLS setters: which roots the crawl trusts, its client
//! certificates, the lowest TLS version, ALPN, and the switch that turns
//! certificate checks off.

use std::path::Path;

use super::CrawlerBuilder;
use crate::http::tls::{Pem, TlsRoots, TlsVersion};
use crate::spider::Spider;

impl<S: Spider> CrawlerBuilder<S> {
    /// Trusts the root certificates of a PEM file besides those of
    /// [`tls_roots`](Self::tls_roots): an internal authority's, or a
    /// self-signed server's own certificate. Once per file; read by
    /// [`build`](Self::build), which fails naming a file it cannot read or
    /// that holds no certificate. The default is none.
    pub fn tls_root_file(mut self, path: impl AsRef<Path>) -> Self {
        let pem = Pem::File(path.as_ref().to_path_buf());
        self.settings.tls.extra_roots.push(pem);
        self
    }

    /// As [`tls_root_file`](Self::tls_root_file), with the PEM text itself.
    pub fn tls_root_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.settings.tls.extra_roots.push(Pem::Bytes(pem.into()));
        self
    }

    /// Which roots are trusted besides the extra ones: the built-in web
    /// authorities, the operating system's, both, or only the extra ones.
    /// The default is [`TlsRoots::Builtin`].
    pub fn tls_roots(mut self, roots: TlsRoots) -> Self {
        self.settings.tls.roots = roots;
        self
    }

    /// The client certificate (a PEM file with the certificate and its
    /// chain) and its private key (a PEM file), shown to servers that ask
    /// for one (mutual TLS). Read by [`build`](Self::build), which fails
    /// when the key does not fit. The default is none.
    pub fn tls_client_cert_file(mut self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        let (cert, key) = (cert.as_ref().to_path_buf(), key.as_ref().to_path_buf());
        self.settings.tls.identity = Some((Pem::File(cert), Pem::File(key)));
        self
    }

    /// As [`tls_client_cert_file`](Self::tls_client_cert_file), with the
    /// PEM texts themselves.
    pub fn tls_client_cert_pem(
        mut self,
        cert: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Self {
        self.settings.tls.identity = Some((Pem::Bytes(cert.into()), Pem::Bytes(key.into())));
        self
    }

    /// A client certificate for one host (`partner.example`, matched
    /// exactly, any port), shown instead of
    /// [`tls_client_cert_file`](Self::tls_client_cert_file)'s on its HTTPS
    /// connections, direct or through a proxy. Once per host; read by
    /// [`build`](Self::build). The default is none.
    pub fn tls_client_cert_file_for(
        mut self,
        host: impl Into<String>,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Self {
        let (cert, key) = (cert.as_ref().to_path_buf(), key.as_ref().to_path_buf());
        let host = host.into().trim().to_ascii_lowercase();
        let identities = &mut self.settings.tls.host_identities;
        identities.push((host, Pem::File(cert), Pem::File(key)));
        self
    }

    /// As [`tls_client_cert_file_for`](Self::tls_client_cert_file_for),
    /// with the PEM texts themselves.
    pub fn tls_client_cert_pem_for(
        mut self,
        host: impl Into<String>,
        cert: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Self {
        let host = host.into().trim().to_ascii_lowercase();
        let identities = &mut self.settings.tls.host_identities;
        identities.push((host, Pem::Bytes(cert.into()), Pem::Bytes(key.into())));
        self
    }

    /// The oldest TLS version accepted. The default is
    /// [`TlsVersion::Tls12`].
    pub fn tls_min_version(mut self, version: TlsVersion) -> Self {
        self.settings.tls.min_version = version;
        self
    }

    /// Accepts any server certificate, even one that is self-signed,
    /// expired or for another host: the connection is then open to
    /// interception. For staging sites and tests only. Logged as a
    /// warning when the crawl starts; each certificate accepted that
    /// would have been refused counts `tls/invalid_cert_accepted/<host>`.
    /// The default is off.
    pub fn danger_accept_invalid_certs(mut self, on: bool) -> Self {
        self.settings.tls.danger_accept_invalid_certs = on;
        self
    }

    /// Speaks HTTP/1.1 only: TLS offers (ALPN) `http/1.1` alone instead of
    /// `h2` then `http/1.1`, for servers whose HTTP/2 misbehaves. Each
    /// response counts `downloader/response_http_version/<1.1|2>`. The
    /// default is off.
    pub fn http1_only(mut self, on: bool) -> Self {
        self.settings.tls.http1_only = on;
        self
    }
}
