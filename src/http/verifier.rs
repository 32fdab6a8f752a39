//! How a server's certificate is checked: the standard checks (webpki,
//! over the crawl's roots), plus two things they do not do.
//!
//! - A certificate that is exactly one of the extra roots the crawl was
//!   given is trusted as itself, for the names it holds: a self-signed
//!   certificate made with `openssl req -x509` is marked as an authority,
//!   and the standard checks refuse an authority's certificate as a
//!   server's, whoever trusts it. Its dates are not checked then: the
//!   certificate itself is what the crawl trusts.
//! - With `danger_accept_invalid_certs`, a certificate the checks refuse
//!   is accepted, and counted in `tls/invalid_cert_accepted/<host>`.
//!
//! Either way the handshake's signatures are checked with the
//! certificate's key, so the server must hold that key.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::stats::Stats;

/// The crawl's certificate checks.
pub(crate) struct Verifier {
    /// The standard checks; `None` when no root is trusted at all (only
    /// with `danger_accept_invalid_certs`).
    pub checked: Option<Arc<WebPkiServerVerifier>>,
    /// The extra roots, each trusted as a server's own certificate.
    pub pinned: Arc<[CertificateDer<'static>]>,
    /// For the signature checks.
    pub provider: Arc<CryptoProvider>,
    /// Where certificates accepted although refused are counted; `None`
    /// unless `danger_accept_invalid_certs` is on.
    pub accept_invalid: Option<Arc<Stats>>,
}

/// rustls wants verifiers to be `Debug`; the stats are left out.
impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("pinned", &self.pinned.len())
            .field("accept_invalid", &self.accept_invalid.is_some())
            .finish()
    }
}

impl Verifier {
    /// The standard checks, then the pinned certificates.
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(checked) = &self.checked else {
            return Err(CertificateError::UnknownIssuer.into());
        };
        let refused =
            match checked.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
                Ok(verified) => return Ok(verified),
                Err(e) => e,
            };
        if !self
            .pinned
            .iter()
            .any(|pin| pin.as_ref() == end_entity.as_ref())
        {
            return Err(refused);
        }
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::from(CertificateError::BadEncoding))?;
        cert.verify_is_valid_for_subject_name(server_name)
            .map_err(|_| CertificateError::NotValidForName)?;
        Ok(ServerCertVerified::assertion())
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = self.check(end_entity, intermediates, server_name, ocsp, now);
        match (&self.accept_invalid, result) {
            (Some(stats), Err(_)) => {
                let host = server_name.to_str();
                stats.add_named(&format!("tls/invalid_cert_accepted/{host}"), 1);
                Ok(ServerCertVerified::assertion())
            }
            (_, result) => result,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
