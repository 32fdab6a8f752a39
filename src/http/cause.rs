//! Why a connection failed: awc's error turned into an
//! [`ErrorKind::Connect`] whose [`ConnectCause`] a user can match on.
//!
//! The cause is read from types, never from text: awc's own variants
//! (a resolver failure, its connect timeout), the TLS library's error found
//! inside an I/O error (`tokio-rustls` wraps a failed handshake, or an
//! alert the server sends after it, in an `io::Error`), and otherwise the
//! operating system's `io::ErrorKind`. The lower-level text stays in the
//! message.

use std::error::Error as StdError;
use std::io;

use awc::error::{ConnectError, SendRequestError};
use rustls::{AlertDescription, CertificateError};

use crate::error::{ConnectCause, ErrorKind};

/// `e` as an [`ErrorKind::Connect`] with its cause.
pub(crate) fn connect_error(e: &SendRequestError) -> ErrorKind {
    ErrorKind::Connect {
        cause: cause_of(e),
        message: e.to_string(),
    }
}

/// The cause of a failed exchange.
fn cause_of(e: &SendRequestError) -> ConnectCause {
    match e {
        SendRequestError::Timeout | SendRequestError::Connect(ConnectError::Timeout) => {
            ConnectCause::Timeout
        }
        SendRequestError::Connect(
            ConnectError::Resolver(_) | ConnectError::NoRecords | ConnectError::Unresolved,
        ) => ConnectCause::Dns,
        SendRequestError::Connect(ConnectError::Io(io)) | SendRequestError::Send(io) => of_io(io),
        SendRequestError::Connect(ConnectError::H2(h2)) | SendRequestError::H2(h2) => {
            h2.get_io().map_or(ConnectCause::Other, of_h2_io)
        }
        // A response cut by the server's alert (a TLS 1.3 server asks for
        // the client's certificate after the handshake) is a parse error
        // holding the I/O error.
        SendRequestError::Response(parse) => first_io(parse).map_or(ConnectCause::Other, of_io),
        _ => ConnectCause::Other,
    }
}

/// The first `io::Error` in `e`'s chain of sources, `e` included.
fn first_io<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a io::Error> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io);
        }
        next = err.source();
    }
    None
}

/// The cause of an I/O error: the TLS error it wraps (at any depth), else
/// its kind.
fn of_io(e: &io::Error) -> ConnectCause {
    // `io::Error::source` skips the error it wraps: `get_ref` reaches it.
    let mut next: Option<&(dyn StdError + 'static)> = e.get_ref().map(|inner| inner as _);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return of_tls(tls);
        }
        next = match err.downcast_ref::<io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as _),
            None => err.source(),
        };
    }
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ConnectCause::Refused,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::NotConnected
        | io::ErrorKind::UnexpectedEof => ConnectCause::Reset,
        io::ErrorKind::TimedOut => ConnectCause::Timeout,
        // A name that resolved to no address (the tunnel's lookups).
        io::ErrorKind::NotFound => ConnectCause::Dns,
        _ => ConnectCause::Other,
    }
}

/// The cause of an I/O error the h2 library reports. It keeps only the
/// kind and text of the I/O errors under it, so a TLS alert the server
/// sends after the handshake (a TLS 1.3 server refusing the client's
/// certificate) has lost its type: its text, as rustls writes an
/// `AlertReceived` (`received fatal alert: CertificateRequired`), is read
/// instead, for the alerts [`of_tls`] knows.
fn of_h2_io(e: &io::Error) -> ConnectCause {
    let text = e.to_string();
    match text.strip_prefix("received fatal alert: ") {
        Some(alert) if CLIENT_CERT_ALERTS.iter().any(|a| format!("{a:?}") == alert) => {
            ConnectCause::TlsClientCertRequired
        }
        Some(_) => ConnectCause::TlsHandshake,
        None => of_io(e),
    }
}

/// The alerts a server sends about the client's certificate: missing,
/// refused, expired, or from an authority it does not trust.
const CLIENT_CERT_ALERTS: [AlertDescription; 8] = [
    AlertDescription::CertificateRequired,
    AlertDescription::BadCertificate,
    AlertDescription::UnknownCA,
    AlertDescription::CertificateUnknown,
    AlertDescription::CertificateExpired,
    AlertDescription::CertificateRevoked,
    AlertDescription::UnsupportedCertificate,
    AlertDescription::AccessDenied,
];

/// The cause of a TLS error: the server's certificate refused here, or an
/// alert from the server about ours.
fn of_tls(e: &rustls::Error) -> ConnectCause {
    use CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer => ConnectCause::TlsUnknownIssuer,
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => ConnectCause::TlsExpired,
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                ConnectCause::TlsHostnameMismatch
            }
            // A self-signed certificate marked as an authority (what
            // `openssl req -x509` makes) that is not one of the crawl's
            // extra roots: nobody the crawl trusts vouches for it.
            C::Other(other)
                if matches!(
                    other.0.downcast_ref::<webpki::Error>(),
                    Some(webpki::Error::CaUsedAsEndEntity)
                ) =>
            {
                ConnectCause::TlsUnknownIssuer
            }
            _ => ConnectCause::TlsCertificate,
        },
        rustls::Error::AlertReceived(alert) if CLIENT_CERT_ALERTS.contains(alert) => {
            ConnectCause::TlsClientCertRequired
        }
        _ => ConnectCause::TlsHandshake,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TLS error as tokio-rustls reports it: inside an `io::Error`.
    fn tls(e: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    fn connect(io: io::Error) -> ConnectCause {
        cause_of(&SendRequestError::Connect(ConnectError::Io(io)))
    }

    #[test]
    fn certificate_errors_name_what_is_wrong_with_the_certificate() {
        let cert = |c| connect(tls(rustls::Error::InvalidCertificate(c)));
        assert_eq!(cert(C::UnknownIssuer), ConnectCause::TlsUnknownIssuer);
        assert_eq!(cert(C::Expired), ConnectCause::TlsExpired);
        assert_eq!(cert(C::NotValidYet), ConnectCause::TlsExpired);
        assert_eq!(cert(C::NotValidForName), ConnectCause::TlsHostnameMismatch);
        assert_eq!(cert(C::Revoked), ConnectCause::TlsCertificate);
        let self_signed_ca =
            rustls::OtherError(std::sync::Arc::new(webpki::Error::CaUsedAsEndEntity));
        assert_eq!(
            cert(C::Other(self_signed_ca)),
            ConnectCause::TlsUnknownIssuer
        );
        let other = rustls::OtherError(std::sync::Arc::new(webpki::Error::EndEntityUsedAsCa));
        assert_eq!(cert(C::Other(other)), ConnectCause::TlsCertificate);
        assert_eq!(cert(C::BadSignature), ConnectCause::TlsCertificate);
    }

    use CertificateError as C;

    #[test]
    fn an_alert_about_the_client_certificate_and_other_handshake_failures() {
        let alert = |a| connect(tls(rustls::Error::AlertReceived(a)));
        assert_eq!(
            alert(AlertDescription::CertificateRequired),
            ConnectCause::TlsClientCertRequired
        );
        assert_eq!(
            alert(AlertDescription::BadCertificate),
            ConnectCause::TlsClientCertRequired
        );
        assert_eq!(
            alert(AlertDescription::ProtocolVersion),
            ConnectCause::TlsHandshake
        );
        assert_eq!(
            connect(tls(rustls::Error::NoApplicationProtocol)),
            ConnectCause::TlsHandshake
        );
    }

    #[test]
    fn a_tls_error_is_found_however_deep_it_is_wrapped() {
        let twice = io::Error::other(tls(rustls::Error::InvalidCertificate(C::UnknownIssuer)));
        assert_eq!(connect(twice), ConnectCause::TlsUnknownIssuer);
        // After the handshake: the alert ends the response being read.
        let io = tls(rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired,
        ));
        assert_eq!(
            cause_of(&SendRequestError::Send(io)),
            ConnectCause::TlsClientCertRequired
        );
    }

    #[test]
    fn through_http2_an_alert_is_known_by_its_text() {
        // What h2 keeps of tokio-rustls' error (awc's `H2` variant holds
        // it; h2 offers no way to make one here): its kind and text.
        let h2 =
            |e: rustls::Error| of_h2_io(&io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
        assert_eq!(
            h2(rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired
            )),
            ConnectCause::TlsClientCertRequired
        );
        assert_eq!(
            h2(rustls::Error::AlertReceived(AlertDescription::UnknownCA)),
            ConnectCause::TlsClientCertRequired
        );
        assert_eq!(
            h2(rustls::Error::AlertReceived(AlertDescription::DecodeError)),
            ConnectCause::TlsHandshake
        );
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(of_h2_io(&reset), ConnectCause::Reset);
    }

    #[test]
    fn network_errors_by_their_kind() {
        let kind = |k: io::ErrorKind| connect(io::Error::from(k));
        assert_eq!(
            kind(io::ErrorKind::ConnectionRefused),
            ConnectCause::Refused
        );
        assert_eq!(kind(io::ErrorKind::ConnectionReset), ConnectCause::Reset);
        assert_eq!(kind(io::ErrorKind::UnexpectedEof), ConnectCause::Reset);
        assert_eq!(kind(io::ErrorKind::TimedOut), ConnectCause::Timeout);
        assert_eq!(kind(io::ErrorKind::PermissionDenied), ConnectCause::Other);
        // The kind, not the text, decides.
        let worded = io::Error::new(io::ErrorKind::ConnectionRefused, "certificate expired");
        assert_eq!(connect(worded), ConnectCause::Refused);
    }

    #[test]
    fn awcs_own_errors() {
        let resolver: Box<dyn StdError> = Box::new(io::Error::other("no such host"));
        let of = |e| cause_of(&e);
        assert_eq!(
            of(SendRequestError::Connect(ConnectError::Resolver(resolver))),
            ConnectCause::Dns
        );
        assert_eq!(
            of(SendRequestError::Connect(ConnectError::NoRecords)),
            ConnectCause::Dns
        );
        assert_eq!(
            of(SendRequestError::Connect(ConnectError::Timeout)),
            ConnectCause::Timeout
        );
        assert_eq!(of(SendRequestError::Timeout), ConnectCause::Timeout);
        assert_eq!(
            of(SendRequestError::TunnelNotSupported),
            ConnectCause::Other
        );
        let kind = connect_error(&SendRequestError::Connect(ConnectError::NoRecords));
        let ErrorKind::Connect { cause, message } = &kind else {
            panic!("{kind:?}");
        };
        assert_eq!(
            (*cause, message.as_str()),
            (
                ConnectCause::Dns,
                "Failed to connect to host: No DNS records found for the input"
            )
        );
        assert_eq!(
            kind.to_string(),
            "connection failed: the host name could not be resolved [dns]: \
             Failed to connect to host: No DNS records found for the input"
        );
    }
}
