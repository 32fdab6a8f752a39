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
//! | `GET /` , `GET /ping` | health checks, open to all (`/` lists the routes and `removed_finished`) |
//! | `GET /crawls[?state=S]` | every registered crawl: id, name, state, times, pages, items |
//! | `POST /crawls` | starts a registered spider ([`ControlApiBuilder::spiders`]): body `{"spider": NAME, "args": {...}, "settings": {...}, "id": ID}` (all but `spider` optional); 201 with the new crawl's summary, its `id` included |
//! | `GET /crawls/{id}` | one crawl: the above, its stats snapshot and its per-host slots |
//! | `DELETE /crawls/{id}` | removes a finished crawl; its last summary |
//! | `POST /crawls/{id}/pause`, `/resume` | the crawl's new state |
//! | `POST /crawls/{id}/stop[?force=true]` | stops, draining what is in flight (asking again changes nothing), or at once with `force` |
//! | `GET /crawls/{id}/events` | Server-Sent Events: a `state` event, then every lifecycle event and a `stats` event every interval; it ends after `finished` |
//! | `GET /metrics` | every crawl's stats and host slots in the Prometheus text format ([`metric_name`]), and `spinneret_control_removed_finished_total` |
//!
//! Crawls started by `POST /crawls` run on the API's own thread (an actix
//! system of its own), never on the HTTP worker that took the request:
//! a server stopping or restarting its workers leaves them running. The
//! arguments are the spider's (`-a KEY=VALUE` on the command line; text,
//! numbers or booleans), the settings are [`Settings`](crate::Settings)
//! as JSON, applied over the spider's own. Finished crawls stay listed
//! until `DELETE`d, up to [`ControlApiBuilder::retain_finished`] of them
//! (100 by default): beyond that, the one that finished first is removed.
//! A crawl that has not finished is never removed.
//!
//! Parameters (`state`, `force`, and `POST /crawls`'s) are read alike from
//! the query string, a form body or a JSON object body; an unknown or
//! malformed one is a 400. Every answer but `/metrics` and the event
//! stream is the JSON envelope ([`ok`], [`ApiError`]), errors included: a
//! missing or wrong bearer token is 401, an unknown crawl, spider or route
//! 404, a wrong method 405 (and `POST /crawls` on an API without spiders),
//! pausing a finished crawl or deleting one that has not finished 409, a
//! bad parameter, setting or spider argument or a malformed JSON body 400
//! (the message names it), a dependency unreachable when a crawl starts
//! (Redis) 503, a body over the limit 413 (refused unread when its
//! `Content-Length` says so, else as soon as the limit is passed), and any
//! other error, such as a refused CORS preflight, keeps its status with
//! the envelope as its body ([`ApiLayer`]). Every request gets a `request`
//! line in the log (method, URL, status, milliseconds); every crawl
//! started a `crawl started` line, every crawl deleted or removed by the
//! retention a `removed finished crawl` line. CORS headers are sent only
//! for the origins the builder allows. Nothing listens unless the host
//! mounts the scope in a server of its own.

mod crawls;
mod envelope;
mod home;
mod layer;
mod metrics;
mod routes;
mod sse;
mod start;
mod token;

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;

use actix_web::dev::HttpServiceFactory;
use slog::{info, Logger};

use crate::error::{Error, ErrorKind, Stage};
use crate::handle::CrawlHandle;
use crate::registry::SpiderRegistry;
use crawls::{Crawls, Registered};

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
    /// The spiders `POST /crawls` may start; `None`: starting is off.
    spiders: Option<SpiderRegistry>,
    /// How many finished crawls stay registered.
    retain_finished: usize,
}

/// The default of [`ControlApiBuilder::retain_finished`].
pub const RETAIN_FINISHED: usize = 100;

/// The token is a secret: `Debug` leaves it out.
impl std::fmt::Debug for ControlApiBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlApiBuilder")
            .field("token", &"[redacted]")
            .field("body_limit", &self.body_limit)
            .field("cors", &self.cors)
            .field("stats_every", &self.stats_every)
            .field("spiders", &self.spiders)
            .field("retain_finished", &self.retain_finished)
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

    /// The spiders `POST /crawls` may start, by name. Default: none, and
    /// `POST /crawls` answers 405, saying that the API has no spiders.
    pub fn spiders(mut self, spiders: SpiderRegistry) -> Self {
        self.spiders = Some(spiders);
        self
    }

    /// How many finished crawls stay registered (default
    /// [`RETAIN_FINISHED`], 100): when one more finishes, the one that
    /// finished first is removed, with a `removed finished crawl` log line
    /// and the counter `spinneret_control_removed_finished_total` of
    /// `/metrics` (`removed_finished` in `GET /`). A crawl that has not
    /// finished is never removed; 0 removes each crawl as it finishes.
    pub fn retain_finished(mut self, crawls: usize) -> Self {
        self.retain_finished = crawls;
        self
    }

    /// The API, or a [`ErrorKind::Config`] error for a token shorter than
    /// 16 bytes (after trimming), a zero body limit, a zero stats interval
    /// or an origin that is not one. Starts the API's own thread (see
    /// [`ControlApi`]); an [`ErrorKind::Custom`] error if it cannot.
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
        let home = home::Home::new().map_err(|e| {
            Error::new(
                Stage::Setup,
                ErrorKind::Custom(format!("starting the control API's thread: {e}")),
            )
        })?;
        Ok(ControlApi {
            shared: Arc::new(Shared {
                crawls: RwLock::new(Crawls::new(self.retain_finished)),
                token,
                body_limit: self.body_limit,
                cors: self.cors,
                stats_every: self.stats_every,
                log: self.log,
                spiders: self.spiders,
                home,
            }),
        })
    }
}

/// What every worker's copy of the scope shares.
pub(crate) struct Shared {
    /// The registered crawls and the retention of finished ones.
    crawls: RwLock<Crawls>,
    /// Checks the bearer token every guarded route requires.
    token: token::TokenCheck,
    /// The largest body accepted.
    body_limit: usize,
    /// Which origins get CORS headers.
    cors: CorsPolicy,
    /// The event stream's stats interval.
    stats_every: Duration,
    /// Timing lines, and a line per crawl started, deleted or removed.
    log: Logger,
    /// The spiders `POST /crawls` may start.
    spiders: Option<SpiderRegistry>,
    /// The API's own thread, where started crawls run and watchers wait.
    home: home::Home,
}

/// The control API: a registry of crawls and the actix-web scope serving
/// them. Cheap to clone; clones share the registry.
///
/// The API has a thread of its own (an actix system of its own, made by
/// [`build`](ControlApiBuilder::build)): the crawls `POST /crawls` starts
/// run there, never on the HTTP worker that took the request, so they
/// outlive the server's workers; a watcher there applies the retention as
/// each registered crawl finishes. The thread stops when the API is
/// dropped (every clone, and every scope mounted from it), once the
/// crawls it started have finished.
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
            spiders: None,
            retain_finished: RETAIN_FINISHED,
        }
    }

    /// Serves `handle` under a new id (a UUID), which it returns. A
    /// finished crawl stays listed until [`remove`](Self::remove)d or
    /// `DELETE`d, or until the retention removes it
    /// ([`ControlApiBuilder::retain_finished`]).
    pub fn register(&self, name: impl Into<String>, handle: CrawlHandle) -> String {
        let name = name.into();
        loop {
            // A UUID never repeats in practice; a repeat draws another.
            let id = uuid::Uuid::new_v4().to_string();
            if self
                .shared
                .insert(id.clone(), name.clone(), handle.clone())
                .is_ok()
            {
                return id;
            }
        }
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
        check_id(&id).map_err(Error::config)?;
        self.shared
            .insert(id, name.into(), handle)
            .map_err(Error::config)
    }

    /// Stops serving a crawl (it goes on running); its handle, if it was
    /// registered.
    pub fn remove(&self, id: &str) -> Option<CrawlHandle> {
        self.shared.write().remove(id).map(|r| r.handle)
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
    /// it half-changed (each change is one push, stamp or remove), so a
    /// poisoned lock is used as is.
    fn read(&self) -> RwLockReadGuard<'_, Crawls> {
        self.crawls.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Crawls> {
        self.crawls.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The crawl `id`, the retention applied first.
    fn get(&self, id: &str) -> Option<Registered> {
        self.sweep();
        self.read().get(id).cloned()
    }

    /// Every crawl in registration order, the retention applied first.
    fn all(&self) -> Vec<Registered> {
        self.sweep();
        self.read().all().to_vec()
    }

    /// How many finished crawls the retention has removed.
    fn removed(&self) -> u64 {
        self.sweep();
        self.read().removed()
    }

    /// Applies the retention to the crawls finished by now, logging each
    /// one it removes.
    fn sweep(&self) {
        let gone = self.write().sweep();
        for r in gone {
            info!(self.log, "removed finished crawl"; "crawl" => &r.id, "name" => &r.name,
                "reason" => "retention");
        }
    }

    /// Serves `handle` under `id` (a valid id); the message when `id` is
    /// taken. A watcher applies the retention as soon as it finishes.
    fn insert(
        self: &Arc<Self>,
        id: String,
        name: String,
        handle: CrawlHandle,
    ) -> Result<(), String> {
        {
            let mut crawls = self.write();
            if crawls.get(&id).is_some() {
                return Err(format!("crawl id {id:?} is already registered"));
            }
            crawls.push(Registered::new(id, name, handle.clone()));
        }
        let shared: Weak<Shared> = Arc::downgrade(self);
        self.home.watch(handle, move || {
            if let Some(shared) = shared.upgrade() {
                shared.sweep();
            }
        });
        Ok(())
    }
}

/// Whether `id` can be a crawl's id: ASCII letters, digits, `-`, `_` and
/// `.` (it appears in URLs); the message if not.
fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "crawl id {id:?}: use ASCII letters, digits, '-', '_', '.'"
        ));
    }
    Ok(())
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
