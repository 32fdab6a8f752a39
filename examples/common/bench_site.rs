//! The generated site the `bench` and `control` examples crawl: page 0 is
//! `/`, page n > 0 is `/page/{n}`, each rendered on request from its number
//! as about 2 KB of HTML with 10 links (its children 10n+1..=10n+10 below
//! the site's size, then pseudo-random pages), optionally answered late,
//! optionally listed in gzip sitemaps (`sitemaps`). The server records
//! which pages were fetched (`GET /_bench/coverage`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde::Serialize;
use url::Url;

use crate::bench_spider::MARK_HEADER;

#[path = "real_page.rs"]
pub mod real_page;

#[path = "editions.rs"]
pub mod editions;
#[path = "bench_sitemaps.rs"]
pub mod sitemaps;

/// What the generated pages look like.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// About 2 KB of plain HTML with 10 links.
    #[default]
    Synthetic,
    /// Shaped like a real documentation site's (`real_page`): 14 KB to
    /// 1 MB, mostly inline script and style, 70 to 135 anchors.
    Real,
}

/// Target size of a generated page, in bytes.
const PAGE_BYTES: usize = 2048;
/// Links on every generated page.
const LINKS_PER_PAGE: u64 = 10;
/// actix-web workers of the benchmark server.
const SERVER_WORKERS: usize = 2;

/// A fixed 64-bit mix of two numbers (splitmix64's finaliser).
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_add(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The path of page `n`.
pub fn page_path(n: u64) -> String {
    if n == 0 {
        "/".to_string()
    } else {
        format!("/page/{n}")
    }
}

/// The pages page `n` links to: its children, then pseudo-random pages.
pub fn page_links(n: u64, pages: u64) -> impl Iterator<Item = u64> {
    let first_child = n.saturating_mul(LINKS_PER_PAGE).saturating_add(1);
    let children =
        (first_child..first_child.saturating_add(LINKS_PER_PAGE)).filter(move |&c| c < pages);
    let others = (0..).map(move |k| mix(n, k) % pages);
    children.chain(others).take(LINKS_PER_PAGE as usize)
}

const WORDS: &[&str] = &[
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "enim",
    "ad",
    "minim",
    "veniam",
    "quis",
    "nostrud",
    "exercitation",
    "ullamco",
    "laboris",
    "nisi",
    "aliquip",
    "ex",
    "ea",
    "commodo",
    "consequat",
    "duis",
    "aute",
    "irure",
    "in",
    "reprehenderit",
    "voluptate",
    "velit",
    "esse",
    "cillum",
    "fugiat",
    "nulla",
    "pariatur",
    "excepteur",
    "sint",
];

/// The HTML of page `n` of a `pages`-page site: the same bytes every time.
pub fn render_page(n: u64, pages: u64) -> String {
    render_page_without(n, pages, &|_| false)
}

/// `render_page`, leaving out the links to the pages `skip` names.
pub fn render_page_without(n: u64, pages: u64, skip: &dyn Fn(u64) -> bool) -> String {
    const TAIL: &str = "</p>\n</body>\n</html>\n";
    let mut html = String::with_capacity(PAGE_BYTES);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html>\n<head><title>page {n}</title></head>\n<body>\n<h1>page {n}</h1>\n<ul>\n"
    );
    for (k, target) in page_links(n, pages).filter(|&t| !skip(t)).enumerate() {
        let _ = writeln!(
            html,
            "<li><a href=\"{}\">link {k}: page {target}</a></li>",
            page_path(target)
        );
    }
    html.push_str("</ul>\n<p>");
    for i in 0.. {
        let word = WORDS[(mix(n, 1_000 + i) % WORDS.len() as u64) as usize];
        if html.len() + 1 + word.len() + TAIL.len() > PAGE_BYTES {
            break;
        }
        if i > 0 {
            html.push(' ');
        }
        html.push_str(word);
    }
    html.push_str(TAIL);
    html
}

/// What the server saw: which pages were fetched, and anything unexpected.
pub struct Site {
    pub pages: u64,
    /// What the pages look like.
    pub shape: Shape,
    /// How late every page is answered.
    pub delay: Duration,
    /// One bit per page: fetched at least once.
    pub seen: Vec<AtomicU64>,
    /// Fetches of a page already fetched.
    pub repeats: AtomicU64,
    /// The first few pages fetched more than once.
    pub repeated: Mutex<Vec<u64>>,
    /// Requests for paths that are not pages.
    pub misses: AtomicU64,
    /// Requests without the middleware's header.
    pub unmarked: AtomicU64,
    /// The editions of a site that changes between runs (`editions`).
    pub changes: Option<editions::Changes>,
    /// Answers `304 Not Modified`, and answers with a page's body.
    pub not_modified: AtomicU64,
    pub bodies: AtomicU64,
    /// Sitemaps served (`sitemaps` module); 0: none, and no robots.txt.
    pub sitemaps: u64,
}

impl Site {
    pub fn new(pages: u64, delay: Duration) -> Self {
        Site {
            pages,
            shape: Shape::Synthetic,
            delay,
            seen: (0..pages.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            repeats: AtomicU64::new(0),
            repeated: Mutex::new(Vec::new()),
            misses: AtomicU64::new(0),
            unmarked: AtomicU64::new(0),
            changes: None,
            not_modified: AtomicU64::new(0),
            bodies: AtomicU64::new(0),
            sitemaps: 0,
        }
    }

    /// The same site, serving `n` gzip sitemaps of its pages, their index,
    /// and a robots.txt naming it (`sitemaps` module).
    pub fn with_sitemaps(mut self, n: u64) -> Self {
        self.sitemaps = n;
        self
    }

    /// The same site, changing `percent` % of its pages in each of its
    /// editions (`editions`); it serves edition 0 first.
    pub fn with_changes(mut self, percent: f64) -> Self {
        let changes = editions::Changes::new(self.pages, percent);
        self.seen = (0..changes.capacity().div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect();
        self.changes = Some(changes);
        self
    }

    /// The same site with pages of this shape.
    pub fn with_shape(mut self, shape: Shape) -> Self {
        self.shape = shape;
        self
    }

    fn record(&self, n: u64) {
        let bit = 1u64 << (n % 64);
        let before = self.seen[(n / 64) as usize].fetch_or(bit, Ordering::Relaxed);
        if before & bit != 0 {
            self.repeats.fetch_add(1, Ordering::Relaxed);
            let mut repeated = self.repeated.lock().expect("repeated lock");
            if repeated.len() < 10 {
                repeated.push(n);
            }
        }
    }

    /// Forgets every fetch, for a second crawl of the same site.
    pub fn reset(&self) {
        for word in &self.seen {
            word.store(0, Ordering::Relaxed);
        }
        self.repeats.store(0, Ordering::Relaxed);
        self.repeated.lock().expect("repeated lock").clear();
        self.misses.store(0, Ordering::Relaxed);
        self.unmarked.store(0, Ordering::Relaxed);
        self.not_modified.store(0, Ordering::Relaxed);
        self.bodies.store(0, Ordering::Relaxed);
    }

    /// Pages fetched at least once, and the first few never fetched.
    pub fn coverage(&self) -> (u64, Vec<u64>) {
        let mut fetched = 0;
        let mut missing = Vec::new();
        for (i, word) in self.seen.iter().enumerate() {
            let word = word.load(Ordering::Relaxed);
            fetched += u64::from(word.count_ones());
            for b in 0..64 {
                let n = i as u64 * 64 + b;
                if n < self.pages && word & (1 << b) == 0 && missing.len() < 10 {
                    missing.push(n);
                }
            }
        }
        (fetched, missing)
    }
}

/// What the server saw, for `GET /_bench/coverage`.
#[derive(Serialize)]
struct Coverage {
    pages: u64,
    fetched: u64,
    repeats: u64,
    never_fetched: Vec<u64>,
    not_pages: u64,
    /// A changing site's edition, what its last step changed, and the
    /// answers without and with a body.
    #[serde(skip_serializing_if = "Option::is_none")]
    edition: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<editions::Step>,
    not_modified: u64,
    bodies: u64,
}

async fn serve_page(site: web::Data<Site>, req: HttpRequest) -> HttpResponse {
    if req.path() == "/_bench/coverage" {
        let (fetched, never_fetched) = site.coverage();
        return HttpResponse::Ok().json(Coverage {
            pages: site.pages,
            fetched,
            repeats: site.repeats.load(Ordering::Relaxed),
            never_fetched,
            not_pages: site.misses.load(Ordering::Relaxed),
            edition: site.changes.as_ref().map(|c| c.edition()),
            step: site.changes.as_ref().map(|c| c.step()),
            not_modified: site.not_modified.load(Ordering::Relaxed),
            bodies: site.bodies.load(Ordering::Relaxed),
        });
    }
    if site.sitemaps > 0 {
        let host = req.connection_info().host().to_string();
        if let Some((kind, body)) = sitemaps::answer(req.path(), &host, &site) {
            let mut response = HttpResponse::Ok();
            if let Some(changes) = &site.changes {
                response.insert_header(("date", changes.date()));
            }
            return response.content_type(kind).body(body);
        }
    }
    if let Some(changes) = &site.changes {
        return serve_edition(&site, changes, &req).await;
    }
    let n = match req.path() {
        "/" => Some(0),
        path => path
            .strip_prefix("/page/")
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|&n| n > 0 && n < site.pages),
    };
    let Some(n) = n else {
        site.misses.fetch_add(1, Ordering::Relaxed);
        return HttpResponse::NotFound().body("no such page");
    };
    if !req.headers().contains_key(MARK_HEADER) {
        site.unmarked.fetch_add(1, Ordering::Relaxed);
    }
    site.record(n);
    if !site.delay.is_zero() {
        actix_web::rt::time::sleep(site.delay).await;
    }
    site.bodies.fetch_add(1, Ordering::Relaxed);
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(site.render(n))
}

impl Site {
    /// The HTML of page `n`, in the site's shape.
    fn render(&self, n: u64) -> String {
        match self.shape {
            Shape::Synthetic => render_page(n, self.pages),
            Shape::Real => real_page::render_real(n, self.pages),
        }
    }

    /// The same, leaving out the links to the pages `skip` names.
    fn render_without(&self, n: u64, skip: &dyn Fn(u64) -> bool) -> String {
        match self.shape {
            Shape::Synthetic => render_page_without(n, self.pages, skip),
            Shape::Real => real_page::render_real_without(n, self.pages, skip),
        }
    }
}

/// A page of a changing site's current edition, answering conditional
/// requests.
async fn serve_edition(
    site: &Site,
    changes: &editions::Changes,
    req: &HttpRequest,
) -> HttpResponse {
    let n = match req.path() {
        "/" => Some(0),
        path => path
            .strip_prefix("/page/")
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|&n| n > 0),
    };
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let answer = n.map(|n| {
        let render = |n, skip: &dyn Fn(u64) -> bool| site.render_without(n, skip);
        (
            n,
            changes.answer(
                n,
                header("if-none-match"),
                header("if-modified-since"),
                render,
            ),
        )
    });
    let (n, answer) = match answer {
        Some((_, editions::Answer::Missing)) | None => {
            site.misses.fetch_add(1, Ordering::Relaxed);
            return HttpResponse::NotFound().body("no such page");
        }
        Some(found) => found,
    };
    if !req.headers().contains_key(MARK_HEADER) {
        site.unmarked.fetch_add(1, Ordering::Relaxed);
    }
    site.record(n);
    if !site.delay.is_zero() {
        actix_web::rt::time::sleep(site.delay).await;
    }
    let editions::Answer::Page {
        etag,
        last_modified,
        body,
    } = answer
    else {
        return HttpResponse::Gone().body("gone");
    };
    let mut response = match &body {
        Some(_) => HttpResponse::Ok(),
        None => HttpResponse::NotModified(),
    };
    response
        .insert_header(("etag", etag))
        .insert_header(("last-modified", last_modified))
        .insert_header(("date", changes.date()));
    match body {
        Some(body) => {
            site.bodies.fetch_add(1, Ordering::Relaxed);
            response.content_type("text/html; charset=utf-8").body(body)
        }
        None => {
            site.not_modified.fetch_add(1, Ordering::Relaxed);
            response.finish()
        }
    }
}

/// A server running on its own thread with its own actix system.
pub struct Server {
    pub url: Url,
    pub handle: ServerHandle,
    pub thread: JoinHandle<std::io::Result<()>>,
}

pub fn start_server(site: Arc<Site>, port: u16) -> std::io::Result<Server> {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("bench-server".into())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let data = web::Data::from(site);
                let bound = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .default_service(web::to(serve_page))
                })
                .workers(SERVER_WORKERS)
                .disable_signals()
                .bind(("127.0.0.1", port));
                let server = match bound {
                    Ok(server) => server,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return Ok(());
                    }
                };
                let addr = server.addrs()[0];
                let server = server.run();
                let _ = tx.send(Ok((addr, server.handle())));
                server.await
            })
        })?;
    let (addr, handle) = rx
        .recv()
        .map_err(|_| std::io::Error::other("the server thread ended before binding"))??;
    let url = Url::parse(&format!("http://{addr}/")).expect("a socket address makes a URL");
    Ok(Server {
        url,
        handle,
        thread,
    })
}
