//! `POST /crawls`: starts a registered spider's crawl on the API's own
//! thread and registers it.
//!
//! The body (or the query string) holds `spider` (a name in the API's
//! [`SpiderRegistry`](crate::SpiderRegistry)), and optionally `args` (an
//! object of text values: the spider's arguments), `settings` (an object
//! read as [`Settings`], applied over the spider's own) and `id` (the
//! crawl's id; a UUID otherwise). The answer is 201 with the new crawl's
//! summary, its `id` included.
//!
//! Refusals: no spiders configured 405; an unknown spider 404 (the
//! message lists the registered ones); a bad parameter, an unknown or
//! mistyped setting (named), or a configuration the factory or the
//! builder refuses 400; an id already registered 409; a dependency that
//! cannot be reached at the start (Redis) 503; anything else 500.

use actix_web::http::StatusCode;
use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{json, Value};
use slog::info;

use super::crawls::Registered;
use super::envelope::{ApiError, SUCCESS};
use super::routes::{summary, Params};
use super::{check_id, Shared};
use crate::error::{Error, ErrorKind};
use crate::registry::SpiderArgs;
use crate::settings::Settings;

/// What a `POST /crawls` asks for, checked.
struct Order {
    /// The registered spider's name.
    spider: String,
    /// Its arguments.
    args: SpiderArgs,
    /// Settings over the spider's own.
    settings: Settings,
    /// The id asked for, if any.
    id: Option<String>,
}

impl Order {
    /// Reads and checks the parameters; every one not taken is refused.
    fn take(mut params: Params) -> Result<Order, ApiError> {
        let spider = params
            .text("spider")?
            .ok_or_else(|| ApiError::BadParameter("spider is required".into()))?;
        let args = match params.value("args") {
            None => SpiderArgs::new(),
            Some(v) => args(v)?,
        };
        let settings = match params.value("settings") {
            None => Settings::default(),
            Some(v) => settings(v)?,
        };
        let id = params.text("id")?;
        if let Some(id) = &id {
            check_id(id).map_err(ApiError::BadParameter)?;
        }
        params.done()?;
        Ok(Order {
            spider,
            args,
            settings,
            id,
        })
    }
}

/// The spider's arguments from a JSON object: text as is, a number or a
/// boolean as its JSON text; anything else is refused, naming the key.
fn args(value: Value) -> Result<SpiderArgs, ApiError> {
    let Value::Object(map) = value else {
        return Err(ApiError::BadParameter(format!(
            "args must be a JSON object, not {value}"
        )));
    };
    let mut args = SpiderArgs::new();
    for (k, v) in map {
        let text = match v {
            Value::String(s) => s,
            Value::Number(_) | Value::Bool(_) => v.to_string(),
            other => {
                return Err(ApiError::BadParameter(format!(
                    "argument {k:?} must be text, a number or a boolean, not {other}"
                )))
            }
        };
        args.set(k, text);
    }
    Ok(args)
}

/// The settings of a JSON object; an unknown or mistyped key is refused
/// by name (the message [`Settings`]' deserialisation gives).
fn settings(value: Value) -> Result<Settings, ApiError> {
    if !value.is_object() {
        return Err(ApiError::BadParameter(format!(
            "settings must be a JSON object, not {value}"
        )));
    }
    serde_json::from_value(value).map_err(|e| ApiError::BadParameter(format!("settings: {e}")))
}

/// A start's error as the API answers it.
fn refused(e: Error) -> ApiError {
    match e.kind() {
        ErrorKind::Config(_) | ErrorKind::InvalidUrl { .. } | ErrorKind::Selector { .. } => {
            ApiError::BadParameter(e.to_string())
        }
        ErrorKind::Backend(_) | ErrorKind::Connect { .. } | ErrorKind::Timeout(_) => {
            ApiError::Unavailable(e.to_string())
        }
        _ => ApiError::Unknown(e.to_string()),
    }
}

/// The handler; see the module docs.
pub(super) async fn start(
    shared: web::Data<Shared>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let Some(spiders) = &shared.spiders else {
        return Err(ApiError::MethodNotAllowed(
            "POST /crawls starts registered spiders, and this API has none \
             (ControlApiBuilder::spiders)"
                .into(),
        ));
    };
    let order = Order::take(Params::read(&req, payload, shared.body_limit).await?)?;
    let taken = |id: &str| ApiError::IllegalState(format!("crawl id {id:?} is already registered"));
    if let Some(id) = order.id.as_deref().filter(|id| shared.get(id).is_some()) {
        return Err(taken(id));
    }
    let prepared = spiders.prepare(&order.spider, &order.args).map_err(|e| {
        match spiders.contains(&order.spider) {
            false => ApiError::NotFound(e.to_string()),
            true => refused(e),
        }
    })?;
    let handle = prepared
        .settings(&order.settings)
        .start_on(shared.home.arbiter())
        .await
        .map_err(refused)?;
    let id = order.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if shared
        .insert(id.clone(), order.spider.clone(), handle.clone())
        .is_err()
    {
        // Another request took the id while this crawl started.
        let _ = handle.stop_now().await;
        return Err(taken(&id));
    }
    shared.home.started(handle.clone());
    info!(shared.log, "crawl started"; "crawl" => &id, "spider" => &order.spider,
        "args" => order.args.iter().map(|(k, _)| k).collect::<Vec<_>>().join(","));
    // Shown as registered, even if the retention already removed it.
    let r = Registered::new(id, order.spider, handle);
    let body = json!({"status": SUCCESS, "message": "success",
        "data": summary(&r, &r.handle.stats())});
    Ok(HttpResponse::build(StatusCode::CREATED).json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_with(r: Result<impl std::fmt::Debug, ApiError>) -> String {
        match r {
            Err(ApiError::BadParameter(m)) => m,
            other => panic!("not a bad parameter: {other:?}"),
        }
    }

    #[test]
    fn arguments_are_text_numbers_or_booleans() {
        let given = args(json!({"url": "http://a/", "depth": 2, "deep": true})).unwrap();
        let pairs: Vec<_> = given.iter().collect();
        assert_eq!(
            pairs,
            [("deep", "true"), ("depth", "2"), ("url", "http://a/")]
        );
        let m = refused_with(args(json!({"url": null})));
        assert_eq!(
            m,
            "argument \"url\" must be text, a number or a boolean, not null"
        );
        let m = refused_with(args(json!(["url"])));
        assert_eq!(m, "args must be a JSON object, not [\"url\"]");
    }

    #[test]
    fn a_bad_setting_is_named() {
        let s = settings(json!({"concurrency": 4})).unwrap();
        assert_eq!(s.concurrency, Some(4));
        let m = refused_with(settings(json!({"concurrency": 4, "speed": 9})));
        assert_eq!(m, "settings: unknown setting \"speed\"");
        let m = refused_with(settings(json!({"concurency": 4})));
        assert_eq!(
            m,
            "settings: unknown setting \"concurency\" (did you mean \"concurrency\"?)"
        );
        let m = refused_with(settings(json!({"concurrency": -1})));
        assert_eq!(
            m,
            "settings: concurrency = -1: expected a whole number, at least 1"
        );
        let m = refused_with(settings(json!("fast")));
        assert_eq!(m, "settings must be a JSON object, not \"fast\"");
    }

    #[test]
    fn start_errors_map_to_their_status() {
        use crate::error::Stage;
        let e = |k| Error::new(Stage::Setup, k);
        assert_eq!(refused(e(ErrorKind::Config("x".into()))).row().2, 400);
        assert_eq!(refused(e(ErrorKind::Backend("x".into()))).row().2, 503);
        assert_eq!(refused(e(ErrorKind::IllegalState("x".into()))).row().2, 500);
    }
}
