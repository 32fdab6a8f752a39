//! A fixture site served by actix-web on 127.0.0.1:0, on its own thread.
//!
//! Routes:
//! - `/p/{n}`: page n of a binary-tree site of `pages` pages; links to its
//!   children 2n+1 and 2n+2 (when they exist), back to `/p/0` and to
//!   `/missing` (a 404).
//! - `/status/{code}`: answers that status.
//! - `/flaky/{key}`: 503 on the first hit of each key, then 200.
//! - `/echo`: records the request body.
//! - `/items/{k}`: a page whose spider emits k items.
//! - `/persist`: records the JSON array of items posted to it.
//! - `/gated/{n}`: like `/p/{n}` (its links lead into the `/p/` tree) but
//!   answers only once the test opens the gate; reports its arrival first.
//!
//! Every hit is recorded by path and query, so tests can assert that each
//! page was fetched exactly once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use tokio::sync::{mpsc, watch};

/// What the server saw, shared with the test.
#[derive(Default)]
pub struct Seen {
    /// Hits per path (with query).
    pub hits: Mutex<HashMap<String, usize>>,
    /// Bodies posted to `/echo`, in arrival order.
    pub bodies: Mutex<Vec<String>>,
    /// Items posted (as JSON arrays) to `/persist`.
    pub persisted: Mutex<Vec<serde_json::Value>>,
}

impl Seen {
    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }

    pub fn max_hits(&self) -> usize {
        self.hits
            .lock()
            .unwrap()
            .values()
            .copied()
            .max()
            .unwrap_or(0)
    }
}

struct State {
    pages: usize,
    seen: Arc<Seen>,
    gate: watch::Receiver<bool>,
    arrivals: mpsc::UnboundedSender<String>,
}

/// A running fixture server.
pub struct Site {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    gate: watch::Sender<bool>,
    pub arrivals: mpsc::UnboundedReceiver<String>,
    handle: actix_web::dev::ServerHandle,
}

impl Site {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Lets gated pages answer.
    pub fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    /// Waits until a gated page has been requested; returns its path.
    pub async fn arrival(&mut self) -> String {
        self.arrivals.recv().await.expect("fixture server alive")
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(handle.stop(false));
        });
    }
}

/// Starts a site of `pages` tree pages.
pub fn serve(pages: usize) -> Site {
    let seen = Arc::new(Seen::default());
    let (gate_tx, gate_rx) = watch::channel(false);
    let (arr_tx, arr_rx) = mpsc::unbounded_channel();
    let (tx, rx) = std::sync::mpsc::channel();
    let state = web::Data::new(State {
        pages,
        seen: seen.clone(),
        gate: gate_rx,
        arrivals: arr_tx,
    });
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(state.clone())
                    .route("/p/{n}", web::get().to(page))
                    .route("/gated/{n}", web::get().to(gated))
                    .route("/status/{code}", web::get().to(status))
                    .route("/flaky/{key}", web::get().to(flaky))
                    .route("/echo", web::post().to(echo))
                    .route("/items/{k}", web::get().to(items))
                    .route("/persist", web::post().to(persist))
                    .default_service(web::to(not_found))
            })
            .workers(2)
            .disable_signals()
            .bind(("127.0.0.1", 0))
            .expect("bind 127.0.0.1:0");
            let addr = server.addrs()[0];
            let server = server.run();
            tx.send((addr, server.handle())).unwrap();
            server.await.unwrap();
        });
    });
    let (addr, handle) = rx.recv().expect("server started");
    Site {
        addr,
        seen,
        gate: gate_tx,
        arrivals: arr_rx,
        handle,
    }
}

fn record(state: &State, req: &HttpRequest) {
    let key = match req.query_string() {
        "" => req.path().to_string(),
        q => format!("{}?{}", req.path(), q),
    };
    *state.seen.hits.lock().unwrap().entry(key).or_default() += 1;
}

/// The HTML of tree page `n`.
pub fn page_html(n: usize, pages: usize, prefix: &str) -> String {
    let mut links = String::new();
    for child in [2 * n + 1, 2 * n + 2] {
        if child < pages {
            links.push_str(&format!("<a href=\"{prefix}{child}\">child {child}</a>\n"));
        }
    }
    links.push_str("<a href=\"/p/0\">home</a>\n<a href=\"/missing\">missing</a>\n");
    format!(
        "<html><head><title>page {n}</title></head><body><h1>page {n}</h1>\n{links}</body></html>"
    )
}

async fn page(state: web::Data<State>, req: HttpRequest, n: web::Path<usize>) -> HttpResponse {
    record(&state, &req);
    let n = n.into_inner();
    if n >= state.pages {
        return HttpResponse::NotFound().finish();
    }
    HttpResponse::Ok()
        .content_type("text/html")
        .body(page_html(n, state.pages, "/p/"))
}

async fn gated(state: web::Data<State>, req: HttpRequest, n: web::Path<usize>) -> HttpResponse {
    record(&state, &req);
    let _ = state.arrivals.send(req.path().to_string());
    let mut gate = state.gate.clone();
    let _ = gate.wait_for(|open| *open).await;
    HttpResponse::Ok()
        .content_type("text/html")
        .body(page_html(n.into_inner(), state.pages, "/p/"))
}

async fn status(state: web::Data<State>, req: HttpRequest, code: web::Path<u16>) -> HttpResponse {
    record(&state, &req);
    let code = actix_web::http::StatusCode::from_u16(code.into_inner()).unwrap();
    HttpResponse::build(code).body("status page")
}

async fn flaky(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    record(&state, &req);
    let first = state.seen.hits(req.path()) == 1;
    if first {
        HttpResponse::ServiceUnavailable().body("try again")
    } else {
        HttpResponse::Ok().body("<html><body>ok</body></html>")
    }
}

async fn echo(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    record(&state, &req);
    let text = String::from_utf8_lossy(&body).into_owned();
    state.seen.bodies.lock().unwrap().push(text.clone());
    HttpResponse::Ok().body(text)
}

async fn items(state: web::Data<State>, req: HttpRequest, k: web::Path<usize>) -> HttpResponse {
    record(&state, &req);
    HttpResponse::Ok().json(serde_json::json!({ "count": k.into_inner() }))
}

async fn persist(
    state: web::Data<State>,
    req: HttpRequest,
    body: web::Json<Vec<serde_json::Value>>,
) -> HttpResponse {
    record(&state, &req);
    state
        .seen
        .persisted
        .lock()
        .unwrap()
        .extend(body.into_inner());
    HttpResponse::Ok().json(serde_json::json!({"status": 1}))
}

async fn not_found(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    record(&state, &req);
    HttpResponse::NotFound().body("no such page")
}
