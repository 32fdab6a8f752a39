//! The middleware and helpers every HTTP API of ours shares:
//! [`ApiLayer`] logs each request's method, URL, status and time, and turns
//! every error answer that is not already JSON (an error raised by
//! actix-web itself or by another middleware, such as a refused CORS
//! preflight) into the envelope, keeping its status and headers;
//! [`json_resource`], [`not_found`] and [`method_not_allowed`] make
//! unknown routes and wrong methods envelope answers too.

use std::future::{ready, Ready};
use std::rc::Rc;
use std::time::Instant;

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::future::LocalBoxFuture;
use serde_json::json;
use slog::{info, Logger};

use super::envelope::ApiError;

/// Logs every request and makes every error answer the JSON envelope.
/// Wrap it outermost (the last `.wrap`), so it sees the final answer.
#[derive(Clone)]
pub struct ApiLayer {
    /// Where the `request` lines go.
    log: Logger,
}

impl ApiLayer {
    /// A layer logging to `log`, one info line `request` per request with
    /// `method`, `url`, `status` and `ms`.
    pub fn new(log: Logger) -> Self {
        ApiLayer { log }
    }
}

impl<S, B> Transform<S, ServiceRequest> for ApiLayer
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = ApiLayerService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ApiLayerService {
            service: Rc::new(service),
            log: self.log.clone(),
        }))
    }
}

/// [`ApiLayer`] around one service.
pub struct ApiLayerService<S> {
    /// The wrapped service.
    service: Rc<S>,
    /// Where the `request` lines go.
    log: Logger,
}

impl<S, B> Service<ServiceRequest> for ApiLayerService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let (method, url) = (req.method().to_string(), req.uri().to_string());
        let answer = self.service.call(req);
        let log = self.log.clone();
        Box::pin(async move {
            let res = match answer.await {
                Ok(res) if needs_envelope(res.response()) => {
                    let detail = res.response().error().map(|e| e.to_string());
                    let (request, response) = res.into_parts();
                    let response = enveloped(response.map_into_boxed_body(), detail);
                    ServiceResponse::new(request, response).map_into_right_body()
                }
                Ok(res) => res.map_into_left_body(),
                Err(mut e) => {
                    // Rendered later, by actix-web, through its mappers.
                    if e.as_error::<ApiError>().is_none() {
                        let detail = e.to_string();
                        e.add_response_mapper(move |res| enveloped(res, Some(detail.clone())));
                    }
                    timed(
                        &log,
                        method,
                        url,
                        e.as_response_error().status_code(),
                        started,
                    );
                    return Err(e);
                }
            };
            timed(&log, method, url, res.status(), started);
            Ok(res)
        })
    }
}

/// The `request` line.
fn timed(log: &Logger, method: String, url: String, status: StatusCode, started: Instant) {
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    info!(log, "request"; "method" => method, "url" => url,
        "status" => status.as_u16(), "ms" => (ms * 100.0).round() / 100.0);
}

/// An error answer that is not JSON.
fn needs_envelope<B>(res: &HttpResponse<B>) -> bool {
    let json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    (res.status().is_client_error() || res.status().is_server_error()) && !json
}

/// `res` with the envelope of the error row closest to its status as its
/// body; its status and headers stay.
fn enveloped(res: HttpResponse, detail: Option<String>) -> HttpResponse {
    let status = res.status();
    let detail = detail.unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    let row = ApiError::for_status(status, detail);
    let body = json!({"status": row.row().1, "message": row.to_string(), "data": null});
    let mut res = res.set_body(BoxBody::new(body.to_string()));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    res
}

impl ApiError {
    /// The row for an answer of HTTP `status` (the unknown error for
    /// statuses the table has no row for).
    pub fn for_status(status: StatusCode, detail: String) -> ApiError {
        match status {
            StatusCode::BAD_REQUEST => ApiError::BadParameter(detail),
            StatusCode::UNAUTHORIZED => ApiError::Unauthorized(detail),
            StatusCode::FORBIDDEN => ApiError::Forbidden(detail),
            StatusCode::NOT_FOUND => ApiError::NotFound(detail),
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed(detail),
            StatusCode::CONFLICT => ApiError::IllegalState(detail),
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(detail),
            StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable(detail),
            _ => ApiError::Unknown(detail),
        }
    }
}

/// A resource answering `route` at `path`; any other method is the 405
/// envelope.
pub fn json_resource(path: &str, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(method_not_allowed))
}

/// The 404 envelope, for a scope's or an app's `default_service`.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("no route for {}", req.path())))
}

/// The 405 envelope.
pub async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(format!(
        "{} is not allowed on {}",
        req.method(),
        req.path()
    )))
}
