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
//! - `/slow/{n}`: a page answered after 50 ms; the server tracks how many
//!   requests it is answering at once.
//! - `/once429/{key}`: 429 with `Retry-After: 1` on the first hit of each key,
//!   then a page.
//! - `/linkto?u=URL&u=URL`: a page linking to the given URLs.
//! - `/robots.txt`: the site's robots.txt when one is set, else 404.
//! - `/chain/a` → 301 → `/chain/b` → 302 → `/items/1`; `/loop/a` ⇄
//!   `/loop/b` (302s); `/form` (POST) → 303 → `/method`, which names the
//!   method and body length it got in its title.
//! - `/login` sets a `session` cookie and links to `/whoami`, whose title is
//!   the `Cookie` header it received.
//!
//! Every hit is recorded by path and query, with its time, so tests can
//! assert that each page was fetched exactly once and how hits were spaced.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Every hit with its time, in arrival order.
    pub log: Mutex<Vec<(String, Instant)>>,
    /// `/slow/` requests being answered now, and the most at once.
    pub active: AtomicUsize,
    pub max_active: AtomicUsize,
}

impl Seen {
    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }

    /// When each hit of paths starting with `prefix` arrived, in order.
    pub fn times(&self, prefix: &str) -> Vec<Instant> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(_, t)| *t)
            .collect()
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
    robots: Option<String>,
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
    /// Stops the server when the site is dropped.
    _server: Server,
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

/// An actix-web server on its own thread and actix system (so the crawl's
/// arbiters never share its thread), stopped when dropped.
pub struct Server {
    pub addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for Server {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(handle.stop(false));
        });
    }
}

/// Serves the app `configure` builds on `host`:0 (a loopback address) with
/// `workers` workers.
pub fn spawn_app<F>(host: &str, workers: usize, configure: F) -> Server
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let host = host.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || App::new().configure(configure.clone()))
                .workers(workers)
                .disable_signals()
                .bind((host.as_str(), 0))
                .expect("bind a loopback port");
            let addr = server.addrs()[0];
            let server = server.run();
            tx.send((addr, server.handle())).unwrap();
            server.await.unwrap();
        });
    });
    let (addr, handle) = rx.recv().expect("server started");
    Server { addr, handle }
}

/// Starts a site of `pages` tree pages on 127.0.0.1.
pub fn serve(pages: usize) -> Site {
    serve_on("127.0.0.1", pages, None)
}

/// Starts a site of `pages` tree pages on `host` (a loopback address),
/// with `robots` as its robots.txt.
pub fn serve_on(host: &str, pages: usize, robots: Option<&str>) -> Site {
    let seen = Arc::new(Seen::default());
    let (gate_tx, gate_rx) = watch::channel(false);
    let (arr_tx, arr_rx) = mpsc::unbounded_channel();
    let host = host.to_string();
    let state = web::Data::new(State {
        pages,
        robots: robots.map(str::to_string),
        seen: seen.clone(),
        gate: gate_rx,
        arrivals: arr_tx,
    });
    let server = spawn_app(&host, 2, move |cfg| {
        cfg.app_data(state.clone())
            .route("/p/{n}", web::get().to(page))
            .route("/gated/{n}", web::get().to(gated))
            .route("/status/{code}", web::get().to(status))
            .route("/flaky/{key}", web::get().to(flaky))
            .route("/gated_flaky/{key}", web::get().to(gated_flaky))
            .route("/echo", web::post().to(echo))
            .route("/items/{k}", web::get().to(items))
            .route("/persist", web::post().to(persist))
            .route("/slow/{n}", web::get().to(slow))
            .route("/once429/{key}", web::get().to(once429))
            .route("/linkto", web::get().to(linkto))
            .route("/robots.txt", web::get().to(robots_txt))
            .route("/chain/a", web::get().to(|| redirect(301, "/chain/b")))
            .route("/chain/b", web::get().to(|| redirect(302, "/items/1")))
            .route("/loop/a", web::get().to(|| redirect(302, "/loop/b")))
            .route("/loop/b", web::get().to(|| redirect(302, "/loop/a")))
            .route("/form", web::post().to(|| redirect(303, "/method")))
            .route("/method", web::to(method))
            .route("/login", web::get().to(login))
            .route("/whoami", web::get().to(whoami))
            .default_service(web::to(not_found));
    });
    Site {
        addr: server.addr,
        seen,
        gate: gate_tx,
        arrivals: arr_rx,
        _server: server,
    }
}

fn record(state: &State, req: &HttpRequest) {
    let key = match req.query_string() {
        "" => req.path().to_string(),
        q => format!("{}?{}", req.path(), q),
    };
    *state
        .seen
        .hits
        .lock()
        .unwrap()
        .entry(key.clone())
        .or_default() += 1;
    state.seen.log.lock().unwrap().push((key, Instant::now()));
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

/// `flaky` (503 the first time) answering once the gate is open.
async fn gated_flaky(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    let _ = state.arrivals.send(req.path().to_string());
    let mut gate = state.gate.clone();
    let _ = gate.wait_for(|open| *open).await;
    flaky(state, req).await
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

async fn slow(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    record(&state, &req);
    let now = state.seen.active.fetch_add(1, Ordering::SeqCst) + 1;
    state.seen.max_active.fetch_max(now, Ordering::SeqCst);
    actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    state.seen.active.fetch_sub(1, Ordering::SeqCst);
    HttpResponse::Ok()
        .content_type("text/html")
        .body("<html><body>slow</body></html>")
}

async fn once429(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    record(&state, &req);
    if state.seen.hits(req.path()) == 1 {
        return HttpResponse::TooManyRequests()
            .insert_header(("retry-after", "1"))
            .body("slow down");
    }
    HttpResponse::Ok()
        .content_type("text/html")
        .body("<html><body>ok</body></html>")
}

async fn linkto(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    record(&state, &req);
    let links: String = url::form_urlencoded::parse(req.query_string().as_bytes())
        .filter(|(k, _)| k == "u")
        .map(|(_, v)| format!("<a href=\"{v}\">x</a>\n"))
        .collect();
    HttpResponse::Ok()
        .content_type("text/html")
        .body(format!("<html><body>{links}</body></html>"))
}

async fn robots_txt(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    record(&state, &req);
    match &state.robots {
        Some(text) => HttpResponse::Ok()
            .content_type("text/plain")
            .body(text.clone()),
        None => HttpResponse::NotFound().finish(),
    }
}

async fn redirect(status: u16, to: &'static str) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status).unwrap();
    HttpResponse::build(status)
        .insert_header(("location", to))
        .finish()
}

fn titled(title: &str) -> HttpResponse {
    HttpResponse::Ok().content_type("text/html").body(format!(
        "<html><head><title>{title}</title></head><body></body></html>"
    ))
}

async fn method(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    record(&state, &req);
    titled(&format!("{} {}", req.method(), body.len()))
}

async fn login(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    record(&state, &req);
    HttpResponse::Ok()
        .content_type("text/html")
        .insert_header(("set-cookie", "session=abc123; Path=/"))
        .body(
            "<html><head><title>login</title></head><body><a href=\"/whoami\">me</a></body></html>",
        )
}

async fn whoami(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    record(&state, &req);
    let cookie = req
        .headers()
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_string();
    titled(&cookie)
}

async fn not_found(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    record(&state, &req);
    HttpResponse::NotFound().body("no such page")
}
