//! The control API's routes, their guard and their parameters.
//!
//! The scope has two layers: the health checks (`/`, `/ping`) open to all,
//! and a nested scope for everything else behind the bearer-token guard,
//! so an unknown route without a token is 401 like a known one. Around
//! both sit CORS (when origins are allowed) and, outermost, the
//! [`ApiLayer`] (the timing log, and the envelope for any error answer
//! that is not JSON yet).

use std::sync::Arc;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{HttpServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{from_fn, Condition, Next};
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt as _;
use serde_json::{json, Map, Value};
use slog::{info, warn};

use super::crawls::Registered;
use super::envelope::{ok, ApiError};
use super::layer::{json_resource, not_found, ApiLayer};
use super::metrics::{self, CrawlMetrics};
use super::{sse, start, CorsPolicy, Shared};
use crate::politeness::HostSlot;
use crate::state::CrawlState;
use crate::stats::{Counter, StatsSnapshot};

/// The scope under `path`.
pub(super) fn scope(path: &str, shared: Arc<Shared>) -> impl HttpServiceFactory + 'static {
    let layer = ApiLayer::new(shared.log.clone());
    let cors = cors(&shared.cors);
    let guarded = web::scope("")
        .wrap(from_fn(authorize))
        .service(json_resource("/crawls", web::get().to(list)).route(web::post().to(start::start)))
        .service(json_resource("/crawls/{id}", web::get().to(show)).route(web::delete().to(delete)))
        .service(json_resource("/crawls/{id}/pause", post(Action::Pause)))
        .service(json_resource("/crawls/{id}/resume", post(Action::Resume)))
        .service(json_resource("/crawls/{id}/stop", post(Action::Stop)))
        .service(json_resource("/crawls/{id}/events", web::get().to(events)))
        .service(json_resource("/metrics", web::get().to(metrics)))
        .default_service(web::to(not_found));
    web::scope(path)
        .app_data(web::Data::from(shared))
        .service(json_resource("", web::get().to(root)).route(web::head().to(root)))
        .service(json_resource("/", web::get().to(root)).route(web::head().to(root)))
        .service(json_resource("/ping", web::get().to(ping)).route(web::head().to(ping)))
        .service(guarded)
        .wrap(Condition::new(cors.is_some(), cors.unwrap_or_default()))
        .wrap(layer)
}

/// CORS as configured; `None` when no origin is allowed.
fn cors(policy: &CorsPolicy) -> Option<Cors> {
    let base = || {
        Cors::default()
            .allowed_methods(["GET", "POST", "DELETE"])
            .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
            .max_age(3600)
    };
    match policy {
        CorsPolicy::Off => None,
        CorsPolicy::Any => Some(base().allow_any_origin()),
        CorsPolicy::Origins(list) => Some(
            list.iter()
                .fold(base(), |cors, origin| cors.allowed_origin(origin)),
        ),
    }
}

/// The bearer-token guard of every route but the health checks.
async fn authorize(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let shared = req
        .app_data::<web::Data<Shared>>()
        .ok_or_else(|| ApiError::Unknown("the control API's state is missing".into()))?;
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        // The scheme is case-insensitive (RFC 7235).
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token);
    match given {
        None => Err(ApiError::Unauthorized("missing bearer token".into()).into()),
        Some(t) if !shared.token.accepts(t.trim()) => {
            Err(ApiError::Unauthorized("wrong bearer token".into()).into())
        }
        Some(_) => next.call(req).await,
    }
}

/// Parameters read alike from the query string and the body (a JSON
/// object, or a form), checked by name: an unknown one is a bad parameter.
pub(super) struct Params(Map<String, Value>);

impl Params {
    /// Reads the query string, then the body (at most `limit` bytes).
    pub(super) async fn read(
        req: &HttpRequest,
        mut payload: web::Payload,
        limit: usize,
    ) -> Result<Params, ApiError> {
        let too_large = || ApiError::PayloadTooLarge(format!("the body is over {limit} bytes"));
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::BadParameter(format!("reading the body: {e}")))?;
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let mut params = Params(Map::new());
        params.merge_form(req.query_string(), "query string")?;
        params.merge_body(req, &body.freeze())?;
        Ok(params)
    }

    fn merge_form(&mut self, text: &str, what: &str) -> Result<(), ApiError> {
        let pairs = web::Query::<Vec<(String, String)>>::from_query(text)
            .map_err(|e| ApiError::BadParameter(format!("malformed {what}: {e}")))?;
        for (k, v) in pairs.into_inner() {
            self.0.insert(k, Value::String(v));
        }
        Ok(())
    }

    fn merge_body(&mut self, req: &HttpRequest, body: &Bytes) -> Result<(), ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if form {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::BadParameter("the form is not UTF-8".into()))?;
            return self.merge_form(text, "form");
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => {
                self.0.extend(map);
                Ok(())
            }
            Ok(_) => Err(ApiError::BadParameter(
                "the JSON body must be an object".into(),
            )),
            Err(e) => Err(ApiError::BadParameter(format!("malformed JSON body: {e}"))),
        }
    }

    /// Takes the flag `name`: `true`/`false` (JSON or text), `1`/`0`;
    /// absent is false.
    fn flag(&mut self, name: &str) -> Result<bool, ApiError> {
        match self.0.remove(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(b),
            Some(Value::String(s)) if s == "true" || s == "1" => Ok(true),
            Some(Value::String(s)) if s == "false" || s == "0" => Ok(false),
            Some(other) => Err(ApiError::BadParameter(format!(
                "{name} must be true or false, not {other}"
            ))),
        }
    }

    /// Takes the parameter `name`, whatever its type.
    pub(super) fn value(&mut self, name: &str) -> Option<Value> {
        self.0.remove(name)
    }

    /// Takes the text parameter `name`.
    pub(super) fn text(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        match self.0.remove(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(ApiError::BadParameter(format!(
                "{name} must be a string, not {other}"
            ))),
        }
    }

    /// Fails on any parameter the route did not take.
    pub(super) fn done(self) -> Result<(), ApiError> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(k) => Err(ApiError::BadParameter(format!("unknown parameter {k:?}"))),
        }
    }
}

/// The crawl the path names.
fn crawl(shared: &Shared, req: &HttpRequest) -> Result<Registered, ApiError> {
    let id = req.match_info().get("id").unwrap_or_default();
    shared
        .get(id)
        .ok_or_else(|| ApiError::NotFound(format!("no crawl {id:?}")))
}

/// What the list shows of a crawl, from `stats`.
pub(super) fn summary(r: &Registered, stats: &StatsSnapshot) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "state": r.handle.state(),
        "start_time": stats.start_time,
        "finish_time": stats.finish_time,
        "elapsed_seconds": stats.elapsed_time_seconds,
        "finish_reason": stats.finish_reason,
        "pages": stats.counter(Counter::ResponseCount),
        "items": stats.counter(Counter::ItemScraped),
        "in_flight": stats.counter(Counter::InFlight),
        "queued": stats.counter(Counter::Queued),
    })
}

/// What `GET /crawls/{id}` shows: the summary, the stats (one snapshot
/// for both) and the hosts (`null` when the Scheduler is too busy to say).
async fn detail(shared: &Shared, r: &Registered) -> Value {
    let hosts = hosts(shared, r).await;
    let stats = r.handle.stats();
    let mut v = summary(r, &stats);
    v["stats"] = serde_json::to_value(&stats).unwrap_or(Value::Null);
    v["hosts"] = serde_json::to_value(hosts).unwrap_or(Value::Null);
    v
}

/// How long a status waits for the Scheduler's host slots before it
/// answers without them.
const HOSTS_PATIENCE: Duration = Duration::from_secs(2);

/// The crawl's host slots, or `None` (logged) when the Scheduler does not
/// answer in time: the status degrades instead of failing.
async fn hosts(shared: &Shared, r: &Registered) -> Option<Vec<HostSlot>> {
    match tokio::time::timeout(HOSTS_PATIENCE, r.handle.hosts()).await {
        Ok(hosts) => Some(hosts),
        Err(_) => {
            warn!(shared.log, "host slots not answered in time"; "crawl" => &r.id,
                "waited_ms" => HOSTS_PATIENCE.as_millis() as u64);
            None
        }
    }
}

async fn root(shared: web::Data<Shared>) -> HttpResponse {
    ok(json!({
        "service": "spinneret control API",
        "routes": ["GET /ping", "GET /crawls", "POST /crawls", "GET /crawls/{id}",
                   "DELETE /crawls/{id}", "POST /crawls/{id}/pause",
                   "POST /crawls/{id}/resume", "POST /crawls/{id}/stop",
                   "GET /crawls/{id}/events", "GET /metrics"],
        "removed_finished": shared.removed(),
    }))
}

async fn ping() -> HttpResponse {
    ok(json!("pong"))
}

async fn list(
    shared: web::Data<Shared>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let mut params = Params::read(&req, payload, shared.body_limit).await?;
    let state = params.text("state")?;
    params.done()?;
    let wanted = match state.as_deref() {
        None => None,
        Some(s) => Some(
            CrawlState::ALL
                .into_iter()
                .find(|c| c.name() == s)
                .ok_or_else(|| {
                    ApiError::BadParameter(format!(
                        "state must be running, paused, stopping or finished, not {s:?}"
                    ))
                })?,
        ),
    };
    let crawls: Vec<Value> = shared
        .all()
        .iter()
        .filter(|r| wanted.is_none_or(|w| r.handle.state() == w))
        .map(|r| summary(r, &r.handle.stats()))
        .collect();
    Ok(ok(Value::Array(crawls)))
}

/// The crawl the path names and the request's parameters.
async fn target(
    shared: &Shared,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<(Registered, Params), ApiError> {
    let r = crawl(shared, req)?;
    let params = Params::read(req, payload, shared.body_limit).await?;
    Ok((r, params))
}

async fn show(
    shared: web::Data<Shared>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (r, params) = target(&shared, &req, payload).await?;
    params.done()?;
    Ok(ok(detail(&shared, &r).await))
}

/// What a `POST` on a crawl does.
#[derive(Clone, Copy)]
enum Action {
    Pause,
    Resume,
    Stop,
}

/// The `POST` route that does `action` (see [`act`]).
fn post(action: Action) -> actix_web::Route {
    web::post().to(
        move |shared: web::Data<Shared>, req: HttpRequest, payload: web::Payload| async move {
            act(&shared, &req, payload, action).await
        },
    )
}

/// Pauses, resumes or stops the crawl; answers its summary. A stop drains
/// what is in flight (asking again while it drains changes nothing); with
/// `force`, it abandons it at once.
async fn act(
    shared: &Shared,
    req: &HttpRequest,
    payload: web::Payload,
    action: Action,
) -> Result<HttpResponse, ApiError> {
    let (r, mut params) = target(shared, req, payload).await?;
    let force = match action {
        Action::Stop => params.flag("force")?,
        Action::Pause | Action::Resume => false,
    };
    params.done()?;
    match action {
        Action::Pause => r.handle.pause().await?,
        Action::Resume => r.handle.resume().await?,
        Action::Stop if force => r.handle.stop_now().await?,
        Action::Stop => r.handle.stop_gracefully().await?,
    }
    Ok(ok(summary(&r, &r.handle.stats())))
}

/// Removes a finished crawl; answers its summary. A crawl that has not
/// finished is an illegal state: stop it first.
async fn delete(
    shared: web::Data<Shared>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = req.match_info().get("id").unwrap_or_default().to_string();
    Params::read(&req, payload, shared.body_limit)
        .await?
        .done()?;
    shared.sweep();
    let removed = {
        let mut crawls = shared.write();
        let r = crawls
            .get(&id)
            .ok_or_else(|| ApiError::NotFound(format!("no crawl {id:?}")))?;
        if !r.handle.is_finished() {
            return Err(ApiError::IllegalState(format!(
                "crawl {id:?} is {}: stop it first",
                r.handle.state().name()
            )));
        }
        crawls.remove(&id)
    };
    let r = removed.ok_or_else(|| ApiError::NotFound(format!("no crawl {id:?}")))?;
    info!(shared.log, "removed finished crawl"; "crawl" => &r.id, "name" => &r.name,
        "reason" => "deleted");
    Ok(ok(summary(&r, &r.handle.stats())))
}

async fn events(
    shared: web::Data<Shared>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (r, params) = target(&shared, &req, payload).await?;
    params.done()?;
    // Subscribed before the opening status is taken: no event falls
    // between the two.
    let events = r.handle.subscribe();
    let opening = detail(&shared, &r).await;
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(sse::stream(r.handle, events, opening, shared.stats_every)))
}

async fn metrics(
    shared: web::Data<Shared>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    Params::read(&req, payload, shared.body_limit)
        .await?
        .done()?;
    let mut crawls = Vec::new();
    for r in shared.all() {
        crawls.push(CrawlMetrics {
            hosts: hosts(&shared, &r).await.unwrap_or_default(),
            state: r.handle.state(),
            stats: r.handle.stats(),
            id: r.id,
            name: r.name,
        });
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics::render(&crawls) + &metrics::render_api(shared.removed())))
}
