//! The control API: an actix-web scope a host application mounts in its
//! own `App` to inspect and steer the crawls it registers (feature
//! `control`, on by default).
//!
//! ```no_run
//! use actix_web::{App, HttpServer};
//! use spinneret::control::ControlApi;
//! # async fn run(crawl: spinneret::CrawlHandle) -> std::io::Result<()> {
//! let api = ControlApi::builder("0f6c1e9a2b7d4c58a3e1f0b9d2c7a6e4").build().expect("a token");
//! let id = api.register("quotes", crawl);
//! HttpServer::new(move || App::new().service(api.scope("/api")))
//!     .bind(("127.0.0.1", 8080))?
//!     .run()
//!     .await
//! # }
//! ```
//!
//! Routes, under the mount path:
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /` , `GET /ping` | health checks, open to all |
//! | `GET /crawls[?state=S]` | every registered crawl: id, name, state, times, pages, items |
//! | `GET /crawls/{id}` | one crawl: the above, its stats snapshot and its per-host slots |
//! | `POST /crawls/{id}/pause`, `/resume` | the crawl's new state |
//! | `POST /crawls/{id}/stop[?force=true]` | stops, draining what is in flight (asking again changes nothing), or at once with `force` |
//! | `GET /crawls/{id}/events` | Server-Sent Events: a `state` event, then every lifecycle event and a `stats` event every interval; it ends after `finished` |
//! | `GET /metrics` | every crawl's stats and host slots in the Prometheus text format ([`metric_name`]) |
//!
//! Parameters (`state`, `force`) are read alike from the query string, a
//! form body or a JSON object body; an unknown or malformed one is a 400.
//! Every answer but `/metrics` and the event stream is the JSON envelope
//! ([`ok`], [`ApiError`]), errors included: a missing or wrong bearer token
//! is 401, an unknown crawl or route 404, a wrong method 405, pausing a
//! finished crawl 409, a bad parameter or malformed JSON body 400, a body
//! over the limit 413 (refused unread when its `Content-Length` says so,
//! else as soon as the limit is passed), and any other error, such as a
//! refused CORS preflight, keeps its status with the envelope as its body
//! ([`ApiLayer`]). Every request gets a `request` line in the log (method,
//! URL, status, milliseconds). CORS headers are sent only for the origins
//! the builder allows. Nothing listens unless the host mounts the scope in
//! a server of its own.

mod envelope;
mod layer;
mod metrics;
mod routes;
mod sse;
mod token;

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use actix_web::dev::HttpServiceFactory;
use slog::Logger;

use crate::error::{Error, ErrorKind, Stage};
use crate::handle::CrawlHandle;

pub use envelope::{ok, ApiError, SUCCESS};
pub use layer::{json_resource, method_not_allowed, not_found, ApiLayer, ApiLayerService};
pub use metrics::metric_name;

/// Which browser origins may call the API.
#[derive(Clone, Debug, PartialEq, Eq)]
enum CorsPolicy {
    /// No CORS headers (the default): browsers on other origins are refused.
    Off,
    /// These origins.
    Origins(Vec<String>),
    /// Any origin.
    Any,
}

/// Configures a [`ControlApi`].
pub struct ControlApiBuilder {
    /// The bearer token (trimmed at `build`).
    token: String,
    /// The largest body accepted.
    body_limit: usize,
    /// Which browser origins get CORS headers.
    cors: CorsPolicy,
    /// The event stream's stats interval.
    stats_every: Duration,
    /// Where request lines go.
    log: Logger,
}

/// The token is a secret: `Debug` leaves it out.
impl std::fmt::Debug for ControlApiBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlApiBuilder")
            .field("token", &"[redacted]")
            .field("body_limit", &self.body_limit)
            .field("cors", &self.cors)
            .field("stats_every", &self.stats_every)
            .finish_non_exhaustive()
    }
}

impl ControlApiBuilder {
    /// The largest request body accepted (default 64 KiB); a larger one is
    /// answered 413 (unread when its `Content-Length` says so).
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Lets a browser on `origin` (such as `https://ops.example.com`: a
    /// scheme, a host and an optional port, nothing else) call the API; may
    /// be called several times. Default: no origin.
    pub fn cors_allow_origin(mut self, origin: impl Into<String>) -> Self {
        match &mut self.cors {
            CorsPolicy::Origins(list) => list.push(origin.into()),
            CorsPolicy::Off => self.cors = CorsPolicy::Origins(vec![origin.into()]),
            CorsPolicy::Any => {}
        }
        self
    }

    /// Lets a browser on any origin call the API (the token still guards
    /// it). Default: no origin.
    pub fn cors_allow_any_origin(mut self) -> Self {
        self.cors = CorsPolicy::Any;
        self
    }

    /// How often the event stream sends a `stats` event (default 1 s).
    pub fn stats_every(mut self, every: Duration) -> Self {
        self.stats_every = every;
        self
    }

    /// Where the per-request timing lines go (default: the `log` facade).
    pub fn logger(mut self, log: Logger) -> Self {
        self.log = log;
        self
    }

    /// The API, or a [`ErrorKind::Config`] error for a token shorter than
    /// 16 bytes (after trimming), a zero body limit, a zero stats interval
    /// or an origin that is not one.
    pub fn build(self) -> Result<ControlApi, Error> {
        let bad = |m: &str| Err(Error::new(Stage::Setup, ErrorKind::Config(m.into())));
        let token = self.token.trim();
        let token = match token::TokenCheck::new(token) {
            Ok(check) => check,
            Err(why) => return bad(&why),
        };
        if let CorsPolicy::Origins(origins) = &self.cors {
            for o in origins {
                if let Err(e) = check_origin(o) {
                    return bad(&format!("CORS origin {o:?}: {e}"));
                }
            }
        }
        if self.body_limit == 0 {
            return bad("the control API's body limit must be above 0");
        }
        if self.stats_every.is_zero() {
            return bad("the control API's stats interval must be above 0");
        }
        Ok(ControlApi {
            shared: Arc::new(Shared {
                crawls: RwLock::new(Vec::new()),
                token,
                body_limit: self.body_limit,
                cors: self.cors,
                stats_every: self.stats_every,
                log: self.log,
            }),
        })
    }
}

/// A crawl the API serves.
#[derive(Clone)]
pub(crate) struct Registered {
    /// Its id in the routes.
    id: String,
    /// A name for people (the spider's, say).
    name: String,
    /// Its handle.
    handle: CrawlHandle,
}

/// What every worker's copy of the scope shares.
pub(crate) struct Shared {
    /// The registered crawls, in registration order (a few at most: a
    /// scan finds one).
    crawls: RwLock<Vec<Registered>>,
    /// Checks the bearer token every guarded route requires.
    token: token::TokenCheck,
    /// The largest body accepted.
    body_limit: usize,
    /// Which origins get CORS headers.
    cors: CorsPolicy,
    /// The event stream's stats interval.
    stats_every: Duration,
    /// Timing lines.
    log: Logger,
}

/// The control API: a registry of crawls and the actix-web scope serving
/// them. Cheap to clone; clones share the registry.
#[derive(Clone)]
pub struct ControlApi {
    /// The registry and settings every mounted scope serves.
    shared: Arc<Shared>,
}

impl ControlApi {
    /// Starts configuring an API guarded by the bearer `token`.
    pub fn builder(token: impl Into<String>) -> ControlApiBuilder {
        ControlApiBuilder {
            token: token.into(),
            body_limit: 64 * 1024,
            cors: CorsPolicy::Off,
            stats_every: Duration::from_secs(1),
            log: crate::logging::default_logger(),
        }
    }

    /// Serves `handle` under a new id (a UUID), which it returns. A
    /// finished crawl stays listed until [`remove`](Self::remove)d.
    pub fn register(&self, name: impl Into<String>, handle: CrawlHandle) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.insert(id.clone(), name.into(), handle);
        id
    }

    /// Serves `handle` under `id`, which must be new and made of ASCII
    /// letters, digits, `-`, `_` and `.` (it appears in URLs); a
    /// [`ErrorKind::Config`] error otherwise.
    pub fn register_as(
        &self,
        id: impl Into<String>,
        name: impl Into<String>,
        handle: CrawlHandle,
    ) -> Result<(), Error> {
        let id = id.into();
        let bad = |m: String| Err(Error::new(Stage::Setup, ErrorKind::Config(m)));
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return bad(format!(
                "crawl id {id:?}: use ASCII letters, digits, '-', '_', '.'"
            ));
        }
        if self.get(&id).is_some() {
            return bad(format!("crawl id {id:?} is already registered"));
        }
        self.insert(id, name.into(), handle);
        Ok(())
    }

    fn insert(&self, id: String, name: String, handle: CrawlHandle) {
        let entry = Registered { id, name, handle };
        self.shared
            .crawls
            .write()
            .expect("registry lock")
            .push(entry);
    }

    /// Stops serving a crawl (it goes on running); its handle, if it was
    /// registered.
    pub fn remove(&self, id: &str) -> Option<CrawlHandle> {
        let mut crawls = self.shared.write();
        let at = crawls.iter().position(|r| r.id == id)?;
        Some(crawls.remove(at).handle)
    }

    /// The handle registered under `id`.
    pub fn get(&self, id: &str) -> Option<CrawlHandle> {
        self.shared.get(id).map(|r| r.handle)
    }

    /// The scope serving the API under `path` (such as `"/api"`), to mount
    /// with `App::service`. Call it inside the `HttpServer::new` factory:
    /// each worker gets its own scope over the shared registry.
    pub fn scope(&self, path: &str) -> impl HttpServiceFactory + 'static {
        routes::scope(path, self.shared.clone())
    }
}

impl Shared {
    /// The registry to read. A panic while it was held cannot have left
    /// it half-changed (each change is one push or remove), so a poisoned
    /// lock is used as is.
    fn read(&self) -> RwLockReadGuard<'_, Vec<Registered>> {
        self.crawls.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Vec<Registered>> {
        self.crawls.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, id: &str) -> Option<Registered> {
        self.read().iter().find(|r| r.id == id).cloned()
    }

    /// Every crawl in registration order.
    fn all(&self) -> Vec<Registered> {
        self.read().clone()
    }
}

/// Whether `origin` is an origin: a scheme, a host and an optional port.
fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Err("use cors_allow_any_origin() for any origin".into());
    }
    let url = url::Url::parse(origin).map_err(|e| e.to_string())?;
    if url.host().is_none() || url.origin().ascii_serialization() != origin {
        return Err(format!(
            "an origin is a scheme, a host and an optional port, such as {:?}",
            url.origin().ascii_serialization()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_checks_the_token_and_the_origins() {
        const T: &str = "0123456789abcdef";
        let config = |b: ControlApiBuilder| match b.build() {
            Err(e) => matches!(e.kind(), ErrorKind::Config(_)),
            Ok(_) => false,
        };
        assert!(config(ControlApi::builder(" \n")));
        let shown = format!("{:?}", ControlApi::builder("the-secret-token-value"));
        assert!(!shown.contains("the-secret-token-value"), "{shown}");
        // Shorter than 16 bytes once trimmed.
        assert!(config(ControlApi::builder("0123456789abcde")));
        assert!(config(ControlApi::builder(" 0123456789abcde\n")));
        assert!(config(ControlApi::builder(T).body_limit(0)));
        assert!(config(ControlApi::builder(T).stats_every(Duration::ZERO)));
        assert!(config(ControlApi::builder(T).cors_allow_origin("*")));
        assert!(config(
            ControlApi::builder(T).cors_allow_origin("ops.example")
        ));
        assert!(config(
            ControlApi::builder(T).cors_allow_origin("https://ops.example/path")
        ));
        assert!(ControlApi::builder(T)
            .cors_allow_origin("https://ops.example")
            .cors_allow_origin("http://127.0.0.1:8080")
            .build()
            .is_ok());
        // The token is trimmed: a trailing newline from a file still works.
        let api = ControlApi::builder(format!("{T}\n")).build().unwrap();
        assert!(api.shared.token.accepts(T));
    }
}
