//! The target and task service, embedded (actix-web).
//!
//! It answers the same routes as `app.py` (list, detail, tasks, feedback,
//! persist) and behaves as every HTTP API of ours does: one JSON envelope `{"status", "message", "data"}` for every
//! answer, errors from one table of codes (the library's
//! [`ApiError`], shared with its control API) turned into the envelope in
//! one place (404, 405 and 500 included), `/ping` and `/`,
//! CORS, a timing log line per request, and checked parameters
//! (`count=abc` → a 400 envelope). It also records what it was sent, shown
//! at `GET /crawler/data/stats`, and can inject faults for tests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_cors::Cors;
use actix_web::dev::ServerHandle;
use actix_web::http::Method;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde::Deserialize;
use serde_json::{json, Value};
use slog::Logger;
// The error table and envelope are the library's (its control API answers
// the same way).
use spinneret::control::{json_resource, not_found, ok, ApiError, ApiLayer};

/// Faults to inject (all off by default).
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// The first N persist calls answer 503.
    pub persist_fail_first: usize,
    /// Every persist call answers 503.
    pub persist_down: bool,
    /// This detail id answers 500.
    pub detail_500: Option<String>,
    /// The list page answers malformed JSON.
    pub list_malformed: bool,
    /// Hand out at most this many tasks in all.
    pub tasks_available: Option<usize>,
    /// The first N feedback calls answer 503.
    pub feedback_fail_first: usize,
    /// The Nth task handed out names the Nth of these spiders instead of
    /// the one asked for (tasks past the list name the one asked for).
    pub task_spiders: Vec<String>,
}

/// What the service was sent.
#[derive(Default)]
pub struct Record {
    /// Task ids handed out and not yet fed back.
    pub open_tasks: Mutex<std::collections::HashSet<String>>,
    /// Items received by `/crawler/data/persist`.
    pub items: Mutex<Vec<Value>>,
    /// Bodies received by `/crawler/task/feedback`.
    pub feedbacks: Mutex<Vec<Value>>,
    /// Persist calls, failed ones included.
    pub persist_calls: AtomicUsize,
    /// Feedback calls, failed ones included.
    pub feedback_calls: AtomicUsize,
    /// Tasks handed out.
    pub tasks: AtomicUsize,
}

struct State {
    faults: Faults,
    record: Arc<Record>,
}

/// A running service.
pub struct Service {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it was sent (read by the tests).
    #[allow(dead_code)]
    pub record: Arc<Record>,
    /// Stops it.
    handle: ServerHandle,
}

impl Service {
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

/// Starts the service on 127.0.0.1 (an ephemeral port) on its own thread.
pub fn start(faults: Faults, log: Logger) -> std::io::Result<Service> {
    let record = Arc::new(Record::default());
    let state = web::Data::new(State {
        faults,
        record: record.clone(),
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || app(state.clone(), log.clone()))
                .workers(2)
                .disable_signals()
                .bind(("127.0.0.1", 0));
            let server = match server {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let addr = server.addrs()[0];
            let server = server.run();
            let _ = tx.send(Ok((addr, server.handle())));
            let _ = server.await;
        });
    });
    let (addr, handle) = rx
        .recv()
        .map_err(|_| std::io::Error::other("service thread died"))??;
    Ok(Service {
        addr,
        record,
        handle,
    })
}

fn app(
    state: web::Data<State>,
    log: Logger,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let json_cfg = web::JsonConfig::default()
        .limit(4 << 20)
        .error_handler(|e, _| ApiError::BadParameter(e.to_string()).into());
    let query_cfg = web::QueryConfig::default()
        .error_handler(|e, _| ApiError::BadParameter(e.to_string()).into());
    let cors = Cors::default()
        .allow_any_origin()
        .allowed_methods(vec![
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::OPTIONS,
        ])
        .allow_any_header()
        .max_age(3600);
    App::new()
        .app_data(state)
        .app_data(json_cfg)
        .app_data(query_cfg)
        .wrap(cors)
        .wrap(ApiLayer::new(log))
        .service(json_resource("/", web::get().to(root)))
        .service(json_resource("/ping", web::get().to(ping)))
        .service(json_resource(
            "/crawler/crawl_dst/list",
            web::get().to(list),
        ))
        .service(json_resource(
            "/crawler/crawl_dst/detail",
            web::get().to(detail),
        ))
        .service(json_resource("/crawler/tasks", web::get().to(tasks)))
        .service(json_resource(
            "/crawler/task/feedback",
            web::put().to(feedback),
        ))
        .service(json_resource(
            "/crawler/data/persist",
            web::post().to(persist),
        ))
        .service(json_resource(
            "/crawler/data/stats",
            web::get().to(data_stats),
        ))
        .default_service(web::to(not_found))
}

async fn root() -> HttpResponse {
    ok(json!({
        "service": "flask_target",
        "routes": ["/ping", "/crawler/crawl_dst/list", "/crawler/crawl_dst/detail?id=N",
                   "/crawler/tasks?spider_name=S&count=C", "/crawler/task/feedback",
                   "/crawler/data/persist", "/crawler/data/stats"],
    }))
}

async fn ping() -> HttpResponse {
    ok(json!("pong"))
}

async fn list(state: web::Data<State>) -> HttpResponse {
    if state.faults.list_malformed {
        return HttpResponse::Ok()
            .content_type("application/json")
            .body("{\"status\": 1, \"data\": [\"./detail?id=1\"");
    }
    HttpResponse::Ok().json(json!({
        "status": 1,
        "data": ["./detail?id=1", "./detail?id=2", "./detail?id=3"],
        "message": "success",
    }))
}

#[derive(Deserialize)]
struct DetailQuery {
    id: Option<String>,
}

async fn detail(
    state: web::Data<State>,
    q: web::Query<DetailQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = q.into_inner().id.unwrap_or_else(|| "1".into());
    if state.faults.detail_500.as_deref() == Some(id.as_str()) {
        return Err(ApiError::Unknown(format!("detail {id} failed (injected)")));
    }
    Ok(HttpResponse::Ok().json(json!({
        "status": 1,
        "data": {
            "id": id,
            "url": format!("./detail?id={id}"),
            "title": format!("title: {id}"),
            "content": format!("content: {id}"),
        }
    })))
}

#[derive(Deserialize)]
struct TasksQuery {
    spider_name: Option<String>,
    count: Option<String>,
}

async fn tasks(
    state: web::Data<State>,
    req: HttpRequest,
    q: web::Query<TasksQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let spider = q.spider_name.unwrap_or_else(|| "test".into());
    let count = match q.count.as_deref() {
        None => 1,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                return Err(ApiError::BadParameter(format!(
                    "count must be an integer from 1 to 100, got {text:?}"
                )))
            }
        },
    };
    let handed = &state.record.tasks;
    let count = match state.faults.tasks_available {
        Some(limit) => count.min(limit.saturating_sub(handed.load(Ordering::SeqCst))),
        None => count,
    };
    let first = handed.fetch_add(count, Ordering::SeqCst);
    let info = req.connection_info();
    let base = format!("{}://{}", info.scheme(), info.host());
    let ids: Vec<String> = (0..count)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    state
        .record
        .open_tasks
        .lock()
        .unwrap()
        .extend(ids.iter().cloned());
    let data: Vec<Value> = ids
        .into_iter()
        .enumerate()
        .map(|(i, id)| {
            let named = state.faults.task_spiders.get(first + i);
            json!({
                "id": id,
                "spiderName": named.unwrap_or(&spider),
                "seed": {"startUrl": format!("{base}/crawler/crawl_dst/list")},
            })
        })
        .collect();
    Ok(ok(Value::Array(data)))
}

#[derive(Deserialize)]
struct Feedback {
    tid: Option<String>,
    stats: Option<Value>,
}

async fn feedback(
    state: web::Data<State>,
    body: web::Json<Feedback>,
) -> Result<HttpResponse, ApiError> {
    let call = state.record.feedback_calls.fetch_add(1, Ordering::SeqCst) + 1;
    if call <= state.faults.feedback_fail_first {
        return Err(ApiError::Unavailable(format!(
            "feedback unavailable (call {call}, injected)"
        )));
    }
    let body = body.into_inner();
    let tid = body
        .tid
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::BadParameter("tid is required".into()))?;
    let stats = body
        .stats
        .filter(Value::is_object)
        .ok_or_else(|| ApiError::BadParameter("stats must be an object".into()))?;
    if !state.record.open_tasks.lock().unwrap().remove(&tid) {
        let fed_back = state
            .record
            .feedbacks
            .lock()
            .unwrap()
            .iter()
            .any(|f| f["tid"] == tid);
        return Err(if fed_back {
            ApiError::IllegalState(format!("task {tid} was already fed back"))
        } else {
            ApiError::NotFound(format!("no task {tid} was handed out"))
        });
    }
    state
        .record
        .feedbacks
        .lock()
        .unwrap()
        .push(json!({"tid": tid, "stats": stats}));
    Ok(ok(json!({"tid": tid})))
}

async fn persist(
    state: web::Data<State>,
    body: web::Json<Vec<Value>>,
) -> Result<HttpResponse, ApiError> {
    let call = state.record.persist_calls.fetch_add(1, Ordering::SeqCst) + 1;
    if state.faults.persist_down || call <= state.faults.persist_fail_first {
        return Err(ApiError::Unavailable(format!(
            "persistence unavailable (call {call}, injected)"
        )));
    }
    let items = body.into_inner();
    let n = items.len();
    state.record.items.lock().unwrap().extend(items);
    Ok(ok(json!({"persisted": n})))
}

async fn data_stats(state: web::Data<State>) -> HttpResponse {
    let r = &state.record;
    ok(json!({
        "items_persisted": r.items.lock().unwrap().len(),
        "feedbacks": r.feedbacks.lock().unwrap().len(),
        "persist_calls": r.persist_calls.load(Ordering::SeqCst),
    }))
}
