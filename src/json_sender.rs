//! Sending JSON to an HTTP endpoint, retried until it sticks.
//!
//! Used by the HTTP persistence pipeline and for task feedback: a
//! [`JsonSender`] sends a body with one deadline per attempt, and retries
//! 5xx, 429 (after its `Retry-After`, when given in seconds), timeouts and
//! connection failures with [`Backoff`]. Other statuses fail at once: a 4xx
//! will not improve by waiting. It runs on the calling arbiter's shared awc
//! client, and reads each answer as a download's body is read: decoded in
//! bounded pieces, at most 16 MiB of it.

use std::time::Duration;

use awc::http::{header, Method, StatusCode};
use bytes::Bytes;
use serde::Serialize;
use url::Url;

use crate::backoff::Backoff;
use crate::error::{Error, ErrorKind, Stage};
use crate::http::{body, decoded_here, thread_client};
use crate::request::parse_url;

/// The largest answer read (16 MiB, decoded): a larger one fails the
/// attempt with `ErrorKind::BodyTooLarge`.
const MAX_ANSWER: usize = 16 << 20;

/// Where and how to send.
#[derive(Clone, Debug)]
pub struct JsonSender {
    /// The endpoint.
    url: Url,
    /// POST, PUT…
    method: Method,
    /// Retry policy.
    backoff: Backoff,
    /// Deadline for one attempt, body included.
    timeout: Duration,
}

/// One attempt's answer.
struct Answer {
    status: u16,
    /// `Retry-After` in seconds, capped at a minute.
    retry_after: Option<Duration>,
    body: Bytes,
}

/// What a successful send took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// Attempts made (1 when the first one succeeded).
    pub attempts: u32,
    /// The final status.
    pub status: u16,
    /// The answer's body.
    pub body: Bytes,
}

impl JsonSender {
    /// Sends to `url` with `method`, default backoff, 30 s per attempt.
    pub fn new(method: Method, url: &str) -> Result<Self, Error> {
        Ok(JsonSender {
            url: parse_url(url)?,
            method,
            backoff: Backoff::default(),
            timeout: Duration::from_secs(30),
        })
    }

    /// Sets the retry policy.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the deadline for one attempt.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The endpoint.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Serialises `value` and sends it until it succeeds or the retries run
    /// out; the error then names the last failure and the attempts made.
    pub async fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<Sent, Error> {
        let body = serde_json::to_vec(value)
            .map_err(|e| Error::new(Stage::Pipeline, ErrorKind::Json(e.to_string())))?;
        let body = Bytes::from(body);
        let mut retry = 0;
        loop {
            let attempts = retry + 1;
            let (failure, wait) = match self.attempt(body.clone()).await {
                Ok(answer) if answer.status < 300 => {
                    return Ok(Sent {
                        attempts,
                        status: answer.status,
                        body: answer.body,
                    })
                }
                Ok(answer) if retryable(answer.status) => {
                    (ErrorKind::HttpStatus(answer.status), answer.retry_after)
                }
                Ok(answer) => {
                    return Err(self.error(ErrorKind::HttpStatus(answer.status), attempts));
                }
                Err(kind) => (kind, None),
            };
            if retry >= self.backoff.max_retries {
                return Err(self.error(failure, attempts));
            }
            let delay = wait.unwrap_or_else(|| self.backoff.delay(retry));
            actix_rt::time::sleep(delay).await;
            retry += 1;
        }
    }

    async fn attempt(&self, body: Bytes) -> Result<Answer, ErrorKind> {
        let request = decoded_here(thread_client().request(self.method.clone(), self.url.as_str()))
            .insert_header((header::CONTENT_TYPE, "application/json"));
        let exchange = async {
            let mut resp = request
                .send_body(body)
                .await
                .map_err(|e| crate::http::cause::connect_error(&e))?;
            let retry_after = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|secs| Duration::from_secs(secs.min(60)));
            let headers = resp.headers().clone();
            let body = body::read(&mut resp, &headers, false, MAX_ANSWER, None).await?;
            Ok(Answer {
                status: resp.status().as_u16(),
                retry_after,
                body: body.bytes,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(ErrorKind::Timeout(self.timeout)))
    }

    fn error(&self, kind: ErrorKind, attempts: u32) -> Error {
        Error::new(Stage::Pipeline, kind)
            .with_url(&self.url)
            .with_attempt(attempts)
    }
}

fn retryable(status: u16) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS.as_u16() || (500..600).contains(&status)
}
