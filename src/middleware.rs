//! Download middlewares: code that runs around every download.
//!
//! Before a request goes out, every middleware's `process_request` runs in
//! priority order (smaller number first); after the answer comes back, every
//! `process_response` runs in the reverse order (larger number first), as in
//! Scrapy. Middlewares run inside the downloader actors, on
//! several threads at once, hence `Send + Sync` and `&self`.

use std::sync::Arc;

use crate::error::Error;
use crate::httpcache::HttpCache;
use crate::request::Callback;
use crate::request::Request;
use crate::response::Response;

/// What `process_request` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestAction {
    /// Go on to the next middleware and the download.
    Continue,
    /// Do not download; the request ends as a counted drop
    /// (`downloader/dropped`) with this reason.
    Drop(String),
}

/// What `process_response` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseAction {
    /// Go on to the next middleware and the parse callback.
    Continue,
    /// Do not parse this response (for example because the middleware
    /// emitted a replacement request); counted in `downloader/dropped`.
    Drop(String),
}

/// A download middleware.
///
/// One middleware that adds a header to every request, and one that asks
/// again (three times at most) when a site answers 503 for maintenance:
/// [`ResponseAction`] has no retry of its own, so it emits a copy of the
/// request and drops the response, which is then never parsed. Run here
/// on an API that wants the key and answers 503 twice:
///
/// ```
/// use spinneret::{Crawler, DownloadMiddleware, Error, Request, RequestAction, Response, ResponseAction};
/// # use spinneret::{start_urls, Output, Spider, StartRequests};
/// # use std::io::{Read, Write};
/// # struct Api(String);
/// # impl Api {
/// #     // An API on 127.0.0.1 that answers 401 without the key, and 503
/// #     // to its first two requests.
/// #     fn serving() -> Api {
/// #         let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// #         let url = format!("http://{}/items", listener.local_addr().unwrap());
/// #         std::thread::spawn(move || {
/// #             for (n, mut stream) in listener.incoming().flatten().enumerate() {
/// #                 let mut buf = [0u8; 4096];
/// #                 let len = stream.read(&mut buf).unwrap_or(0);
/// #                 let head = String::from_utf8_lossy(&buf[..len]).to_lowercase();
/// #                 let status = match () {
/// #                     _ if !head.contains("x-api-key: secret") => "401 Unauthorized",
/// #                     _ if n < 2 => "503 Service Unavailable",
/// #                     _ => "200 OK",
/// #                 };
/// #                 let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
/// #                 let _ = stream.write_all(answer.as_bytes());
/// #             }
/// #         });
/// #         Api(url)
/// #     }
/// # }
/// # impl Spider for Api {
/// #     type Callback = ();
/// #     fn name(&self) -> &str { "api" }
/// #     fn start_requests(&self) -> StartRequests<()> {
/// #         start_urls([self.0.as_str()]).expect("valid start URLs")
/// #     }
/// #     fn parse(&self, _: (), response: &Response, out: &mut Output<()>) -> Result<(), Error> {
/// #         out.item(serde_json::json!({ "status": response.status }));
/// #         Ok(())
/// #     }
/// # }
///
/// struct ApiKey(String);
///
/// impl DownloadMiddleware<()> for ApiKey {
///     fn process_request(&self, request: &mut Request<()>, _: &mut Vec<Request<()>>) -> Result<RequestAction, Error> {
///         request.headers.push(("x-api-key".into(), self.0.clone()));
///         Ok(RequestAction::Continue)
///     }
/// }
///
/// struct Maintenance;
///
/// impl DownloadMiddleware<()> for Maintenance {
///     fn process_response(
///         &self,
///         request: &Request<()>,
///         response: &mut Response,
///         emit: &mut Vec<Request<()>>,
///     ) -> Result<ResponseAction, Error> {
///         if response.status != 503 {
///             return Ok(ResponseAction::Continue);
///         }
///         let tries = request.meta.get("maintenance_tries").and_then(|t| t.as_u64()).unwrap_or(0);
///         if tries < 3 {
///             emit.push(request.clone().meta("maintenance_tries", tries + 1).dont_filter());
///         }
///         Ok(ResponseAction::Drop(format!("503 (try {})", tries + 1)))
///     }
/// }
///
/// # #[actix::main]
/// # async fn main() -> Result<(), Error> {
/// # let api = Api::serving();
/// let crawl = Crawler::builder(api)
///     .middleware(ApiKey("secret".into()))
///     .middleware(Maintenance)
///     .build()?
///     .start()?;
/// let stats = crawl.join().await?;
/// // Two 503s dropped, then the page parsed.
/// assert_eq!(stats.get("downloader/dropped"), 2);
/// assert_eq!(stats.get("item_scraped_count"), 1);
/// # Ok(())
/// # }
/// ```
pub trait DownloadMiddleware<C: Callback>: Send + Sync + 'static {
    /// A name for logs.
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    /// Smaller runs first on the way out, last on the way back.
    fn priority(&self) -> i32 {
        0
    }

    /// Called once when the crawl starts; an error stops the crawl from
    /// starting (the middlewares already opened are closed).
    fn open(&self) -> Result<(), Error> {
        Ok(())
    }

    /// Called once when the crawl finishes (also after a forced stop), to
    /// flush and release what the middleware holds.
    fn close(&self) -> Result<(), Error> {
        Ok(())
    }

    /// Inspects or rewrites `request` before it is sent (proxy, user agent,
    /// headers…), may emit extra requests into `emit`, or fails the request
    /// with an error (which goes to the error handler).
    fn process_request(
        &self,
        request: &mut Request<C>,
        emit: &mut Vec<Request<C>>,
    ) -> Result<RequestAction, Error> {
        let _ = (request, emit);
        Ok(RequestAction::Continue)
    }

    /// Inspects or replaces `response`, may emit new requests into `emit`,
    /// or fails the request.
    fn process_response(
        &self,
        request: &Request<C>,
        response: &mut Response,
        emit: &mut Vec<Request<C>>,
    ) -> Result<ResponseAction, Error> {
        let _ = (request, response, emit);
        Ok(ResponseAction::Continue)
    }
}

/// The crawl's middlewares, sorted once by priority at build time, and
/// the HTTP cache that runs between them and the exchange.
pub(crate) struct Middlewares<C> {
    /// Ascending priority; `process_response` walks it backwards.
    sorted: Vec<Arc<dyn DownloadMiddleware<C>>>,
    /// The HTTP cache, after every `process_request` and before every
    /// `process_response`; `None` when it is off.
    cache: Option<Arc<HttpCache>>,
}

impl<C: Callback> Middlewares<C> {
    pub(crate) fn new(mut list: Vec<Arc<dyn DownloadMiddleware<C>>>) -> Self {
        // Stable: equal priorities keep their registration order.
        list.sort_by_key(|m| m.priority());
        Middlewares {
            sorted: list,
            cache: None,
        }
    }

    /// With `cache` between the middlewares and the exchange.
    pub(crate) fn with_cache(mut self, cache: Option<Arc<HttpCache>>) -> Self {
        self.cache = cache;
        self
    }

    /// The HTTP cache, when it is on.
    pub(crate) fn cache(&self) -> Option<&HttpCache> {
        self.cache.as_deref()
    }

    /// In `process_request` order.
    pub(crate) fn outbound(&self) -> impl Iterator<Item = &Arc<dyn DownloadMiddleware<C>>> {
        self.sorted.iter()
    }

    /// Every middleware, for the open and close hooks.
    pub(crate) fn all(&self) -> &[Arc<dyn DownloadMiddleware<C>>] {
        &self.sorted
    }

    /// In `process_response` order.
    pub(crate) fn inbound(&self) -> impl Iterator<Item = &Arc<dyn DownloadMiddleware<C>>> {
        self.sorted.iter().rev()
    }
}
