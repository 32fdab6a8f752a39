//! The retry policy: which failures are worth another try, and when.
//!
//! On by default, as in Scrapy: a request that failed with a status in
//! [`RetryPolicy::statuses`] (500, 502, 503, 504, 522, 524, 408, 429), a
//! connection error, a timeout or a body cut short is re-queued up to
//! [`RetryPolicy::max_retries`] times (2), each after an exponential backoff
//! with jitter measured on a timer — the download slot is freed meanwhile,
//! so no downloader waits. A connection error is retried when its cause
//! may change ([`ConnectCause::is_retryable`](crate::ConnectCause::is_retryable):
//! DNS, refused, reset, timeout and the others), never for a TLS cause
//! (an untrusted, expired or misnamed certificate, a handshake the two
//! sides cannot agree on): those give the same answer every time. Its
//! reason is the cause's name (`retry/reason_count/refused`). Stats: `retry/count`,
//! `retry/reason_count/<reason>`, and `retry/max_reached` for a request that
//! still failed after its last retry (it then goes to the error handler).

use std::time::Duration;

use crate::backoff::Backoff;
use crate::error::{Error, ErrorKind};

/// Which failures are retried, how often, and how far apart.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt. Default 2.
    pub max_retries: u32,
    /// Statuses retried. Default 500, 502, 503, 504, 522, 524, 408, 429.
    pub statuses: Vec<u16>,
    /// The delay before the first retry, before jitter. Default 500 ms.
    pub base_delay: Duration,
    /// The longest delay, before jitter. Default 30 s.
    pub max_delay: Duration,
    /// Multiply each delay by a random factor in [0.5, 1.5), so clients
    /// failing together do not retry together. Default on.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 2,
            statuses: vec![500, 502, 503, 504, 522, 524, 408, 429],
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// Why `error` is worth a retry (the stats key suffix), or `None`.
    pub fn reason(&self, error: &Error) -> Option<String> {
        match error.kind() {
            ErrorKind::HttpStatus(code) if self.statuses.contains(code) => {
                Some(format!("http_{code}"))
            }
            ErrorKind::Timeout(_) => Some("timeout".into()),
            ErrorKind::Connect { cause, .. } if cause.is_retryable() => Some(cause.name().into()),
            ErrorKind::Body(_) => Some("body".into()),
            _ => None,
        }
    }

    /// The wait before retry number `retry` (0 for the first).
    pub fn delay(&self, retry: u32) -> Duration {
        let backoff = Backoff {
            max_retries: self.max_retries,
            base: self.base_delay,
            max: self.max_delay,
        };
        if self.jitter {
            backoff.delay(retry)
        } else {
            backoff.nominal(retry)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ConnectCause, Stage};

    #[test]
    fn retryable_failures() {
        let p = RetryPolicy::default();
        let e = |k| Error::new(Stage::Download, k);
        assert_eq!(
            p.reason(&e(ErrorKind::HttpStatus(503))).as_deref(),
            Some("http_503")
        );
        assert_eq!(
            p.reason(&e(ErrorKind::HttpStatus(429))).as_deref(),
            Some("http_429")
        );
        assert_eq!(p.reason(&e(ErrorKind::HttpStatus(404))), None);
        assert_eq!(
            p.reason(&e(ErrorKind::Timeout(Duration::from_secs(1))))
                .as_deref(),
            Some("timeout")
        );
        let connect = |cause| ErrorKind::Connect {
            cause,
            message: "x".into(),
        };
        assert_eq!(
            p.reason(&e(connect(ConnectCause::Refused))).as_deref(),
            Some("refused")
        );
        for cause in [
            ConnectCause::Dns,
            ConnectCause::Reset,
            ConnectCause::Timeout,
        ] {
            assert_eq!(p.reason(&e(connect(cause))).as_deref(), Some(cause.name()));
        }
        assert_eq!(
            p.reason(&e(connect(ConnectCause::Other))).as_deref(),
            Some("connect")
        );
        // A certificate or handshake gives the same answer every time.
        for cause in [
            ConnectCause::TlsUnknownIssuer,
            ConnectCause::TlsExpired,
            ConnectCause::TlsHostnameMismatch,
            ConnectCause::TlsCertificate,
            ConnectCause::TlsClientCertRequired,
            ConnectCause::TlsHandshake,
        ] {
            assert_eq!(p.reason(&e(connect(cause))), None, "{cause:?}");
        }
        assert_eq!(p.reason(&e(ErrorKind::BodyTooLarge { limit: 1 })), None);
    }
}
