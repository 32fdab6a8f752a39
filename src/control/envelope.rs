//! The JSON envelope every answer of ours is wrapped in, and the table of
//! error codes.
//!
//! Success is `{"status": 1, "message": "success", "data": ...}`; a failure
//! is `{"status": <code>, "message": "<name>: <detail>", "data": null}` with
//! the HTTP status of its row. Handlers return [`ApiError`]; actix-web turns
//! it into the envelope here, in one place, so 401, 404, 405, 413 and 500
//! are JSON like everything else.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};

use crate::error::{Error, ErrorKind};

/// The envelope's `status` for a success.
pub const SUCCESS: i64 = 1;

/// Our error codes. Each variant carries the detail shown after its name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiError {
    /// Anything unexpected (code 1000, HTTP 500).
    Unknown(String),
    /// Authenticated but not allowed (1001, 403).
    Forbidden(String),
    /// No such route or resource, such as an unknown crawl id (1002, 404).
    NotFound(String),
    /// The route exists but not for this method (1003, 405).
    MethodNotAllowed(String),
    /// The request does not fit the current state, such as pausing a
    /// finished crawl (1004, 409).
    IllegalState(String),
    /// A missing or malformed parameter or body (1005, 400).
    BadParameter(String),
    /// A dependency is unavailable (1006, 503).
    Unavailable(String),
    /// No bearer token, or a wrong one (1007, 401).
    Unauthorized(String),
    /// The body is larger than the limit (1008, 413).
    PayloadTooLarge(String),
}

impl ApiError {
    /// The row of the table: (name, code, HTTP status).
    pub fn row(&self) -> (&'static str, i64, StatusCode) {
        match self {
            ApiError::Unknown(_) => ("unknown_error", 1000, StatusCode::INTERNAL_SERVER_ERROR),
            ApiError::Forbidden(_) => ("access_forbidden", 1001, StatusCode::FORBIDDEN),
            ApiError::NotFound(_) => ("not_found", 1002, StatusCode::NOT_FOUND),
            ApiError::MethodNotAllowed(_) => {
                ("method_not_allowed", 1003, StatusCode::METHOD_NOT_ALLOWED)
            }
            ApiError::IllegalState(_) => ("illegal_state", 1004, StatusCode::CONFLICT),
            ApiError::BadParameter(_) => ("bad_parameter", 1005, StatusCode::BAD_REQUEST),
            ApiError::Unavailable(_) => ("unavailable", 1006, StatusCode::SERVICE_UNAVAILABLE),
            ApiError::Unauthorized(_) => ("unauthorized", 1007, StatusCode::UNAUTHORIZED),
            ApiError::PayloadTooLarge(_) => {
                ("payload_too_large", 1008, StatusCode::PAYLOAD_TOO_LARGE)
            }
        }
    }

    /// What went wrong, in words.
    pub fn detail(&self) -> &str {
        match self {
            ApiError::Unknown(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::MethodNotAllowed(m)
            | ApiError::IllegalState(m)
            | ApiError::BadParameter(m)
            | ApiError::Unavailable(m)
            | ApiError::Unauthorized(m)
            | ApiError::PayloadTooLarge(m) => m,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.row().0, self.detail())
    }
}

impl std::error::Error for ApiError {}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.row().2
    }

    fn error_response(&self) -> HttpResponse {
        let (_, code, status) = self.row();
        let mut answer = HttpResponse::build(status);
        if status == StatusCode::UNAUTHORIZED {
            answer.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        answer.json(json!({"status": code, "message": self.to_string(), "data": null}))
    }
}

/// A crawl's refusal (pausing a finished crawl, resuming a stopping one) is
/// an illegal state; anything else is unexpected.
impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e.kind() {
            ErrorKind::IllegalState(m) => ApiError::IllegalState(m.clone()),
            _ => ApiError::Unknown(e.to_string()),
        }
    }
}

/// A success envelope around `data`.
pub fn ok(data: Value) -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": SUCCESS, "message": "success", "data": data}))
}

#[cfg(test)]
mod tests {
    use actix_web::body::to_bytes;

    use super::*;
    use crate::error::Stage;

    async fn body(r: HttpResponse) -> Value {
        serde_json::from_slice(&to_bytes(r.into_body()).await.unwrap()).unwrap()
    }

    #[actix::test]
    async fn errors_become_the_envelope_with_their_rows_status() {
        let e = ApiError::NotFound("no crawl abc".into());
        let r = e.error_response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            body(r).await,
            json!({"status": 1002, "message": "not_found: no crawl abc", "data": null})
        );
        let r = ApiError::Unauthorized("missing bearer token".into()).error_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers().get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
        assert_eq!(body(r).await["status"], 1007);
    }

    #[actix::test]
    async fn a_crawls_refusal_is_an_illegal_state_and_the_rest_unknown() {
        let refused = Error::new(
            Stage::Control,
            ErrorKind::IllegalState("cannot pause: the crawl has finished".into()),
        );
        assert_eq!(
            ApiError::from(refused),
            ApiError::IllegalState("cannot pause: the crawl has finished".into())
        );
        let other = Error::new(Stage::Control, ErrorKind::Custom("boom".into()));
        assert_eq!(ApiError::from(other).row().1, 1000);
        assert_eq!(
            body(ok(json!({"a": 1}))).await,
            json!({"status": 1, "message": "success", "data": {"a": 1}})
        );
    }
}
