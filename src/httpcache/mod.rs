//! The HTTP cache: answers to requests kept in a directory, so that a
//! spider under development does not fetch the site on every run
//! ([`CachePolicy::Dummy`]) and a re-crawl asks the site only about what
//! may have changed ([`CachePolicy::Rfc9111`]).
//!
//! It is a stage of the download, run by each downloader after every
//! middleware's `process_request` and before the exchange ([`HttpCache::lookup`]);
//! an answer from the cache, like one from the network, then goes through
//! every middleware's `process_response`. After the exchange,
//! [`HttpCache::settle`] stores the answer, or turns a `304` into the
//! stored answer. `policy` decides freshness and what is stored, `storage`
//! owns the files; the file work runs on tokio's blocking pool.
//!
//! Stats: `httpcache/hit` (answered from the cache, nothing sent),
//! `httpcache/miss` (no usable entry), `httpcache/revalidate` (a stale
//! entry confirmed by a `304`), `httpcache/invalidate` (a stale entry
//! replaced by a new answer), `httpcache/errorrecovery` (a stale entry
//! answering for a download that failed on the network),
//! `httpcache/store`, `httpcache/uncacheable`
//! (a request or answer the cache does not keep), `httpcache/evicted`
//! (entries removed to stay within the size bound), `httpcache/corrupt`
//! (a damaged entry, read as a miss and removed) and `httpcache/errors`
//! (the directory could not be read or written: the crawl goes on
//! without the entry).

mod policy;
mod storage;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use awc::http::header::{HeaderMap, HeaderName, HeaderValue};
use awc::http::Method;
use slog::{info, warn, Logger};

use crate::error::{Error, ErrorKind};
use crate::fingerprint::{fingerprint, Fingerprint};
use crate::redact::Redacted;
use crate::request::{Callback, Request};
use crate::response::{Response, ResponseMeta};
use crate::stats::Stats;
use policy::{directives, Directives, Stored};
use storage::{Entry, Loaded, Store};

/// The directory under a job directory that holds the cache when no other
/// is given.
pub(crate) const JOB_DIR_NAME: &str = "httpcache";

/// The request meta key that keeps a request away from the cache: never
/// answered from it, its answer never stored.
pub(crate) const DONT_CACHE: &str = "dont_cache";

/// Request headers that make a request the spider's own conditional or
/// partial request, which the cache passes on untouched and does not store.
const OWN_CONDITIONS: &[&str] = &[
    "if-none-match",
    "if-modified-since",
    "if-match",
    "if-unmodified-since",
    "if-range",
    "range",
];

/// When a stored answer may be used instead of a download.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CachePolicy {
    /// Every request is answered from the cache once its answer is stored
    /// (whatever its headers say), until the entry is older than the
    /// expiration: for developing a spider without fetching the site on
    /// every run. Every answer is stored but those with an ignored status.
    #[default]
    Dummy,
    /// HTTP caching as RFC 9111 describes it for a private cache: an
    /// answer is used while fresh (`Cache-Control: max-age`, else
    /// `Expires`, else a tenth of the time since `Last-Modified`; the
    /// request's `Cache-Control` honoured); a stale one is revalidated
    /// with `If-None-Match`/`If-Modified-Since`, a `304` answered with
    /// the stored body and its headers updated; `no-store` answers and
    /// those with neither freshness nor a validator are not stored.
    Rfc9111,
}

/// The HTTP cache's configuration, for [`CrawlerBuilder::http_cache`].
///
/// ```
/// use spinneret::{CachePolicy, HttpCacheOptions};
///
/// let options = HttpCacheOptions {
///     policy: CachePolicy::Rfc9111,
///     dir: Some("crawl-cache".into()),
///     ignore_statuses: vec![500, 502, 503],
///     ..HttpCacheOptions::default()
/// };
/// assert_eq!(options.max_bytes, 1 << 30);
/// ```
///
/// Only `GET` and `HEAD` requests are cached; a request streamed to a file
/// (`Request::stream_to`), one carrying its own conditional or range
/// headers and one whose meta holds `"dont_cache": true` never are. An
/// answer from the cache is not counted in `downloader/*`; it carries the
/// request's meta like any other, and goes through the middlewares'
/// `process_response`.
///
/// [`CrawlerBuilder::http_cache`]: crate::CrawlerBuilder::http_cache
#[derive(Clone, Debug, PartialEq)]
pub struct HttpCacheOptions {
    /// When a stored answer is used. Default [`CachePolicy::Dummy`].
    pub policy: CachePolicy,
    /// The cache's directory. Default `None`: `httpcache` in the job
    /// directory; a crawl without a job directory must give one (else
    /// `build` fails).
    pub dir: Option<PathBuf>,
    /// Entries older than this are not used (and are replaced when the
    /// request is fetched again). Default zero: never too old.
    pub expiration: Duration,
    /// The most bytes the entries take together; the oldest are removed
    /// to stay within it (`httpcache/evicted`). Default 1 GiB.
    pub max_bytes: u64,
    /// Answers with these statuses are not stored. Default none: with the
    /// dummy policy, a `503` is stored and then answers the retries too;
    /// list the statuses the retry policy retries to have them fetched
    /// again.
    pub ignore_statuses: Vec<u16>,
}

impl Default for HttpCacheOptions {
    fn default() -> Self {
        HttpCacheOptions {
            policy: CachePolicy::default(),
            dir: None,
            expiration: Duration::ZERO,
            max_bytes: 1 << 30,
            ignore_statuses: Vec::new(),
        }
    }
}

/// What [`HttpCache::lookup`] found for a request, for [`HttpCache::settle`].
#[derive(Debug)]
pub(crate) enum Lookup {
    /// Not the cache's business (no cache, or `dont_cache`).
    Bypass,
    /// Neither answered from nor stored in the cache (counted).
    Uncacheable,
    /// No usable entry: the answer is stored under this fingerprint.
    Miss(Fingerprint),
    /// A stale entry: the request goes out with its validators; a `304`
    /// is answered with it.
    Stale(Fingerprint, Box<Entry>),
    /// A usable entry: nothing is sent.
    Hit(Box<Entry>),
}

/// An open HTTP cache, shared by every downloader of a crawl.
pub(crate) struct HttpCache {
    /// The directory.
    store: Arc<Store>,
    /// When an entry is used.
    policy: CachePolicy,
    /// Entries older than this are not used; zero: no limit.
    expiration: Duration,
    /// Statuses whose answers are not stored.
    ignore_statuses: Vec<u16>,
    /// The crawl's counters.
    stats: Arc<Stats>,
    /// Where damage, eviction and I/O failures are logged.
    log: Logger,
}

impl HttpCache {
    /// Opens the cache `options` describe, in `options.dir` or else in
    /// the job directory's `httpcache`; fails when there is neither or
    /// the directory cannot be read.
    pub(crate) fn open(
        options: &HttpCacheOptions,
        job_dir: Option<&Path>,
        stats: Arc<Stats>,
        log: Logger,
    ) -> Result<HttpCache, Error> {
        let dir = match (&options.dir, job_dir) {
            (Some(dir), _) => dir.clone(),
            (None, Some(job)) => job.join(JOB_DIR_NAME),
            (None, None) => return Err(Error::config(NO_DIR)),
        };
        let (store, evicted) = Store::open(&dir, options.max_bytes)
            .map_err(|e| Error::config(format!("HTTP cache directory {}: {e}", dir.display())))?;
        let cache = HttpCache {
            store: Arc::new(store),
            policy: options.policy,
            expiration: options.expiration,
            ignore_statuses: options.ignore_statuses.clone(),
            stats,
            log,
        };
        cache.count_evicted(evicted);
        Ok(cache)
    }

    /// Whether `request` may use the cache at all: counts it
    /// `httpcache/uncacheable` when not.
    fn admits<C: Callback>(&self, request: &Request<C>, asked: &Directives) -> Option<Lookup> {
        if request.meta.get(DONT_CACHE).and_then(|v| v.as_bool()) == Some(true) {
            return Some(Lookup::Bypass);
        }
        let own = request
            .headers
            .iter()
            .any(|(n, _)| OWN_CONDITIONS.iter().any(|c| n.eq_ignore_ascii_case(c)));
        let method = request.method == Method::GET || request.method == Method::HEAD;
        let no_store = self.policy == CachePolicy::Rfc9111 && asked.no_store;
        if own || !method || request.stream_to.is_some() || no_store {
            self.stats.add_named("httpcache/uncacheable", 1);
            return Some(Lookup::Uncacheable);
        }
        None
    }

    /// The entry for `request`, if the cache holds a usable one.
    pub(crate) async fn lookup<C: Callback>(&self, request: &Request<C>) -> Lookup {
        let asked = request_directives(request);
        if let Some(skip) = self.admits(request, &asked) {
            return skip;
        }
        let fp = fingerprint(request);
        if !self.store.contains(fp) {
            // Most misses of a first crawl: no file to read.
            return self.miss(fp);
        }
        let store = self.store.clone();
        let loaded = tokio::task::spawn_blocking(move || store.load(fp)).await;
        let entry = match loaded {
            Ok(Ok(Loaded::Found(entry))) => entry,
            Ok(Ok(Loaded::Missing)) => return self.miss(fp),
            Ok(Ok(Loaded::Corrupt(path, why))) => {
                self.stats.add_named("httpcache/corrupt", 1);
                warn!(self.log, "damaged HTTP cache entry removed, fetching again";
                    "path" => %path.display(), "problem" => why, "url" => %Redacted(&request.url));
                return self.miss(fp);
            }
            Ok(Err(e)) => {
                self.trouble(fp, "read", &e.to_string());
                return self.miss(fp);
            }
            Err(e) => {
                self.trouble(fp, "read", &e.to_string());
                return self.miss(fp);
            }
        };
        let now = SystemTime::now();
        let age = now.duration_since(entry.received).unwrap_or(Duration::ZERO);
        if !self.expiration.is_zero() && age > self.expiration {
            return self.miss(fp);
        }
        let stored = Stored {
            status: entry.status,
            headers: &entry.headers,
            requested: entry.requested,
            received: entry.received,
        };
        if self.policy == CachePolicy::Dummy || policy::is_fresh(&stored, &asked, now) {
            self.stats.add_named("httpcache/hit", 1);
            return Lookup::Hit(entry);
        }
        Lookup::Stale(fp, entry)
    }

    fn miss(&self, fp: Fingerprint) -> Lookup {
        self.stats.add_named("httpcache/miss", 1);
        Lookup::Miss(fp)
    }

    /// The cache directory failed `doing` something to entry `fp`:
    /// logged and counted, and the crawl goes on without the entry
    /// (`false`: nothing stored).
    fn trouble(&self, fp: Fingerprint, doing: &str, e: &str) -> bool {
        self.stats.add_named("httpcache/errors", 1);
        warn!(self.log, "HTTP cache entry unusable"; "doing" => doing,
            "path" => %self.store.path_of(fp).display(), "error" => e);
        false
    }

    /// The request to send for `request` after `lookup`: with the stored
    /// answer's validators when it is stale, else `None` (send it as is).
    pub(crate) fn conditional<C: Callback>(
        request: &Request<C>,
        lookup: &Lookup,
    ) -> Option<Request<C>> {
        let Lookup::Stale(_, entry) = lookup else {
            return None;
        };
        let mut conditional = request.clone();
        conditional
            .headers
            .extend(policy::validators(&entry.headers));
        Some(conditional)
    }

    /// The answer the spider gets for `response` to `request`, after
    /// `lookup`: a `304` to a revalidation becomes the stored answer (its
    /// headers updated, the entry rewritten); another answer is stored
    /// when the policy keeps it.
    pub(crate) async fn settle<C: Callback>(
        &self,
        lookup: Lookup,
        request: &Request<C>,
        response: Response,
    ) -> Response {
        match lookup {
            Lookup::Bypass | Lookup::Uncacheable | Lookup::Hit(_) => response,
            Lookup::Miss(fp) => self.keep(fp, request, response).await.0,
            Lookup::Stale(fp, mut entry) if response.status == 304 => {
                self.stats.add_named("httpcache/revalidate", 1);
                policy::update_headers(&mut entry.headers, &response.headers);
                entry.received = SystemTime::now();
                entry.requested = entry.received - response.meta.download_latency;
                self.save(fp, &entry, false).await;
                let limit = response.meta.body_limit;
                let mut answer = answer(*entry, request, response.meta.download_timeout, limit);
                answer.meta.download_latency = response.meta.download_latency;
                answer
            }
            Lookup::Stale(fp, _) => {
                self.stats.add_named("httpcache/invalidate", 1);
                let (response, stored) = self.keep(fp, request, response).await;
                if !stored {
                    // The new answer is not kept: nor is the outdated one.
                    let store = self.store.clone();
                    match tokio::task::spawn_blocking(move || store.remove(fp)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => _ = self.trouble(fp, "remove", &e.to_string()),
                        Err(e) => _ = self.trouble(fp, "remove", &e.to_string()),
                    }
                }
                response
            }
        }
    }

    /// The stale entry, as the answer to `request`, in place of a download
    /// that failed on the way (`error`: no connection, a timeout, a body
    /// cut short), as RFC 9111 §4.2.4 allows when the entry did not say
    /// `must-revalidate` or `no-cache`; counted `httpcache/errorrecovery`.
    /// The crawl's timeout and body limit go into its meta.
    pub(crate) fn recover<C: Callback>(
        &self,
        lookup: &Lookup,
        request: &Request<C>,
        error: &Error,
        (timeout, max_body): (Duration, usize),
    ) -> Option<Response> {
        let Lookup::Stale(_, entry) = lookup else {
            return None;
        };
        let network = matches!(
            error.kind(),
            ErrorKind::Connect { .. } | ErrorKind::Timeout(_) | ErrorKind::Body(_)
        );
        let cc = directives(&entry.headers);
        if !network || cc.must_revalidate || cc.no_cache {
            return None;
        }
        self.stats.add_named("httpcache/errorrecovery", 1);
        warn!(self.log, "download failed: answered with the stale HTTP cache entry";
            "url" => %Redacted(&request.url), "error" => %error);
        Some(answer((**entry).clone(), request, timeout, Some(max_body)))
    }

    /// Stores `response` as `fp` when the policy keeps it, else counts it
    /// `httpcache/uncacheable`; whether it was stored.
    async fn keep<C: Callback>(
        &self,
        fp: Fingerprint,
        request: &Request<C>,
        response: Response,
    ) -> (Response, bool) {
        let ignored = self.ignore_statuses.contains(&response.status);
        let keeps = match self.policy {
            CachePolicy::Dummy => true,
            CachePolicy::Rfc9111 => {
                let asked = request_directives(request);
                policy::storable(response.status, &response.headers, &asked)
            }
        };
        if ignored || !keeps || response.meta.body_path.is_some() {
            self.stats.add_named("httpcache/uncacheable", 1);
            return (response, false);
        }
        let received = SystemTime::now();
        let entry = Entry {
            status: response.status,
            url: response.url.clone(),
            headers: response.headers.clone(),
            body: response.body.clone(),
            requested: received - response.meta.download_latency,
            received,
        };
        let stored = self.save(fp, &entry, true).await;
        (response, stored)
    }

    /// Writes `entry` as `fp` on the blocking pool; counts it
    /// `httpcache/store` when `count`, and what it evicted; whether it was
    /// stored.
    async fn save(&self, fp: Fingerprint, entry: &Entry, count: bool) -> bool {
        let (store, owned) = (self.store.clone(), entry.clone());
        let saved = tokio::task::spawn_blocking(move || store.save(fp, &owned)).await;
        match saved.map_err(|e| e.to_string()) {
            Ok(Ok(Some(evicted))) => {
                if count {
                    self.stats.add_named("httpcache/store", 1);
                }
                self.count_evicted(evicted);
                true
            }
            Ok(Ok(None)) => {
                self.stats.add_named("httpcache/uncacheable", 1);
                false
            }
            Ok(Err(e)) => self.trouble(fp, "write", &e.to_string()),
            Err(e) => self.trouble(fp, "write", &e),
        }
    }

    fn count_evicted(&self, evicted: storage::Evicted) {
        if evicted.entries == 0 {
            return;
        }
        self.stats.add_named("httpcache/evicted", evicted.entries);
        info!(self.log, "HTTP cache over its size bound: oldest entries removed";
            "entries" => evicted.entries, "bytes" => evicted.bytes,
            "max_bytes" => self.store.max_bytes());
    }
}

/// The cache `options` describe when it is on, opened with its stats in
/// `stats` and its log lines under `log` (see [`HttpCache::open`]).
pub(crate) fn open(
    options: &Option<HttpCacheOptions>,
    job_dir: &Option<PathBuf>,
    stats: &Arc<Stats>,
    log: &Logger,
) -> Result<Option<Arc<HttpCache>>, Error> {
    let Some(options) = options else {
        return Ok(None);
    };
    let log = log.new(slog::o!("actor" => "httpcache"));
    let cache = HttpCache::open(options, job_dir.as_deref(), stats.clone(), log)?;
    Ok(Some(Arc::new(cache)))
}

/// Why a cache cannot open without a directory.
pub(crate) const NO_DIR: &str = "the HTTP cache needs a directory: give one (http_cache_dir) \
                      or a job directory";

/// The request's own `Cache-Control` directives.
fn request_directives<C>(request: &Request<C>) -> Directives {
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        if name.eq_ignore_ascii_case("cache-control") {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.append(HeaderName::from_static("cache-control"), v);
            }
        }
    }
    directives(&headers)
}

/// `entry` as the answer to `request`, with the crawl facts a download
/// would carry (no latency: nothing was sent; the body limit the request
/// would have been fetched under: its own, else `body_limit`).
pub(crate) fn answer<C>(
    entry: Entry,
    request: &Request<C>,
    timeout: Duration,
    body_limit: Option<usize>,
) -> Response {
    let redirect_urls = crate::redirect::chain_of(&request.meta);
    let body_len = entry.body.len() as u64;
    Response {
        url: entry.url,
        status: entry.status,
        headers: entry.headers,
        body: entry.body,
        meta: ResponseMeta {
            download_latency: Duration::ZERO,
            download_slot: request.url.host_str().unwrap_or_default().to_string(),
            download_timeout: request.timeout.unwrap_or(timeout),
            depth: request.depth,
            attempt: 0,
            request_url: Some(redirect_urls.first().unwrap_or(&request.url).clone()),
            redirect_urls,
            request_meta: request.meta.clone(),
            body_len,
            body_path: None,
            body_limit: request.max_body.or(body_limit),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(policy: CachePolicy, dir: &Path, expiration: Duration) -> HttpCache {
        let options = HttpCacheOptions {
            policy,
            dir: Some(dir.to_path_buf()),
            expiration,
            ..HttpCacheOptions::default()
        };
        let log = Logger::root(slog::Discard, slog::o!());
        HttpCache::open(&options, None, Arc::default(), log).unwrap()
    }

    fn get(url: &str) -> Request<()> {
        Request::get(url).unwrap()
    }

    #[actix::test]
    async fn requests_the_cache_does_not_keep_are_counted_and_never_looked_up() {
        let dir = tempfile::tempdir().unwrap();
        let rfc = cache(CachePolicy::Rfc9111, dir.path(), Duration::ZERO);
        let url = "http://a.example/";
        let refused = [
            Request::post(url, "x").unwrap(),
            get(url).stream_to(dir.path().join("body")),
            get(url).header("If-None-Match", "\"v1\""),
            get(url).header("range", "bytes=0-9"),
            get(url).header("cache-control", "no-store"),
        ];
        for request in &refused {
            let lookup = rfc.lookup(request).await;
            assert!(
                matches!(lookup, Lookup::Uncacheable),
                "{request:?}: {lookup:?}"
            );
        }
        let skipped = get(url).meta(DONT_CACHE, true);
        assert!(matches!(rfc.lookup(&skipped).await, Lookup::Bypass));
        assert_eq!(rfc.stats.snapshot().get("httpcache/uncacheable"), 5);
        assert_eq!(rfc.stats.snapshot().get("httpcache/miss"), 0);
        // The dummy policy reads no request header but the conditions.
        let dummy = cache(CachePolicy::Dummy, dir.path(), Duration::ZERO);
        let no_store = get(url).header("cache-control", "no-store");
        assert!(matches!(dummy.lookup(&no_store).await, Lookup::Miss(_)));
    }

    #[actix::test]
    async fn a_changed_answer_that_is_not_stored_removes_the_outdated_one() {
        let dir = tempfile::tempdir().unwrap();
        let rfc = cache(CachePolicy::Rfc9111, dir.path(), Duration::ZERO);
        let request = get("http://a.example/p");
        let fp = fingerprint(&request);
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("etag"),
            HeaderValue::from_static("\"v1\""),
        );
        headers.insert(
            HeaderName::from_static("cache-control"),
            HeaderValue::from_static("max-age=0"),
        );
        let now = SystemTime::now();
        let entry = Entry {
            status: 200,
            url: request.url.clone(),
            headers,
            body: "old".into(),
            requested: now,
            received: now,
        };
        rfc.store.save(fp, &entry).unwrap();
        let lookup = rfc.lookup(&request).await;
        assert!(matches!(lookup, Lookup::Stale(..)), "{lookup:?}");
        let conditional = HttpCache::conditional(&request, &lookup).unwrap();
        assert_eq!(
            conditional.headers,
            [("if-none-match".to_string(), "\"v1\"".to_string())]
        );
        let mut private = HeaderMap::new();
        private.insert(
            HeaderName::from_static("cache-control"),
            HeaderValue::from_static("no-store"),
        );
        let changed = Response {
            url: request.url.clone(),
            status: 200,
            headers: private,
            body: "new".into(),
            meta: ResponseMeta::default(),
        };
        let got = rfc.settle(lookup, &request, changed).await;
        assert_eq!(&got.body[..], b"new");
        assert!(!rfc.store.path_of(fp).exists(), "the outdated entry stayed");
        assert!(matches!(rfc.lookup(&request).await, Lookup::Miss(_)));
        let stats = rfc.stats.snapshot();
        let count = |n: &str| stats.get(&format!("httpcache/{n}"));
        assert_eq!(
            (count("invalidate"), count("uncacheable"), count("store")),
            (1, 1, 0)
        );
    }

    #[actix::test]
    async fn an_entry_older_than_the_expiration_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let request = get("http://a.example/page");
        let received = SystemTime::now() - Duration::from_secs(10);
        let entry = Entry {
            status: 200,
            url: request.url.clone(),
            headers: HeaderMap::new(),
            body: "old".into(),
            requested: received,
            received,
        };
        let week = cache(CachePolicy::Dummy, dir.path(), Duration::from_secs(604_800));
        week.store.save(fingerprint(&request), &entry).unwrap();
        assert!(matches!(week.lookup(&request).await, Lookup::Hit(_)));
        let never = cache(CachePolicy::Dummy, dir.path(), Duration::ZERO);
        assert!(matches!(never.lookup(&request).await, Lookup::Hit(_)));
        let five = cache(CachePolicy::Dummy, dir.path(), Duration::from_secs(5));
        assert!(matches!(five.lookup(&request).await, Lookup::Miss(_)));
        assert_eq!(five.stats.snapshot().get("httpcache/miss"), 1);
    }
}
