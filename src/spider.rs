//! The user's side of a crawl: the [`Spider`] trait.
//!
//! A spider names itself, yields its start requests, and parses responses.
//! Each request names its parse callback as a value of the spider's
//! [`Spider::Callback`] type — usually an enum — that `parse` matches on:
//! the compiler checks every callback is handled, and the value serialises
//! with the request, so a queued request can be persisted or shared.

use serde::Serialize;
use uuid::Uuid;

use crate::context::Context;
use crate::error::Error;
use crate::item::Item;
use crate::request::{Callback, Request};
use crate::response::Response;

/// The start requests of a crawl, pulled lazily as the queue has room.
pub type StartRequests<C> = Box<dyn Iterator<Item = Request<C>> + Send>;

/// Start requests for `urls`, GET each with the default callback, in order;
/// or the first malformed URL as an error.
///
/// Every URL is checked before any request is made, so a typo is an
/// [`ErrorKind::InvalidUrl`](crate::ErrorKind::InvalidUrl) (stage `setup`)
/// that names it, never a crawl that silently starts from fewer pages (as
/// `Box::new(Request::get(url).into_iter())` would). A URL must be `http` or
/// `https` with a host.
///
/// In [`Spider::start_requests`], which cannot return an error, `expect` it:
/// a panic there fails the crawl's start with the message (a
/// [`ErrorKind::Panic`](crate::ErrorKind::Panic) naming the URL), before
/// anything is fetched. Check the URLs earlier, where an error can be
/// returned (a spider's constructor, a [`SpiderRegistry`](crate::SpiderRegistry)
/// factory), when they come from the user.
///
/// ```
/// use spinneret::{start_urls, Error, ErrorKind, StartRequests};
///
/// let starts: StartRequests<()> = start_urls(["https://a.example/", "https://b.example/x"])?;
/// let urls: Vec<String> = starts.map(|r| r.url.to_string()).collect();
/// assert_eq!(urls, ["https://a.example/", "https://b.example/x"]);
///
/// let typo = start_urls::<(), _, _>(["https://a.example/", "htps//b.example/"]);
/// let Err(e) = typo else { panic!("a malformed URL was accepted") };
/// assert!(matches!(e.kind(), ErrorKind::InvalidUrl { input, .. } if input == "htps//b.example/"));
/// # Ok::<(), Error>(())
/// ```
pub fn start_urls<C, I, S>(urls: I) -> Result<StartRequests<C>, Error>
where
    C: Callback,
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let requests = urls
        .into_iter()
        .map(|url| Request::get(url.as_ref()))
        .collect::<Result<Vec<Request<C>>, Error>>()?;
    Ok(Box::new(requests.into_iter()))
}

/// A crawl's user code.
///
/// Called from several actors (the scheduler pulls start requests, the
/// parser calls `parse`, the error handler calls `on_error`), hence
/// `Send + Sync`.
pub trait Spider: Send + Sync + 'static {
    /// Which parse callback a request wants; see the module docs.
    ///
    /// It must implement `Default`: a request made from a URL alone
    /// (a start URL, [`Response::follow`], [`Request::get`]) gets the
    /// default callback until [`Request::callback`] sets another. For an
    /// enum, derive `Default` and mark the start pages' variant
    /// `#[default]` (see [`Callback`] for an example); `()` suits a spider
    /// with one parse function.
    type Callback: Callback;

    /// The spider's name, used in logs, stats and item metadata.
    fn name(&self) -> &str;

    /// The requests the crawl starts from. The iterator is pulled lazily,
    /// so it may be long or generated.
    fn start_requests(&self) -> StartRequests<Self::Callback>;

    /// Parses `response` for the request's `callback`, emitting items and
    /// new requests into `out`.
    ///
    /// An `Err` (or a panic) is counted in `spider_exceptions` and reported
    /// with the URL; what was emitted before it is still processed.
    fn parse(
        &self,
        callback: Self::Callback,
        response: &Response,
        out: &mut Output<Self::Callback>,
    ) -> Result<(), Error>;

    /// Called for every request that failed (download error, disallowed
    /// status, middleware failure); returns requests to schedule instead,
    /// for example a retry marked `dont_filter`. The default returns none.
    fn on_error(&self, failure: &Failure<Self::Callback>) -> Vec<Request<Self::Callback>> {
        let _ = failure;
        Vec::new()
    }
}

/// Collects what a parse callback emits.
#[derive(Debug)]
pub struct Output<C> {
    /// New requests, already in the context they are scheduled with after
    /// the callback returns: made as they are emitted, so a request is
    /// moved once more only, not copied again into a batch afterwards.
    pub(crate) requests: Vec<Context<C>>,
    /// Items, sent to the pipelines after the callback returns.
    pub(crate) items: Vec<Item>,
    /// Where the requests come from: what each is stamped with.
    pub(crate) origin: Origin,
    /// Counters to add to the crawl's stats, by name, after the callback
    /// returns (see [`Output::count`]).
    pub(crate) counts: Vec<(String, u64)>,
    /// Where requests go while the callback runs, once enough are held:
    /// a callback emitting tens of thousands (a sitemap) never holds them
    /// all at once. `None` (a bare `Output`) holds them all.
    pub(crate) flush: Option<Flush<C>>,
    /// Requests handed to `flush` so far.
    pub(crate) flushed: usize,
    /// Lazy sources of requests, pulled by the scheduler after the
    /// callback returns (see [`Output::requests_from`]).
    pub(crate) sources: Vec<RequestSource<C>>,
}

/// Requests a callback handed on lazily ([`Output::requests_from`]): the
/// scheduler pulls them a batch at a time, stamped with their origin.
pub(crate) struct RequestSource<C> {
    /// Where the requests come from.
    pub(crate) origin: Origin,
    /// The requests, not made yet.
    pub(crate) iter: Box<dyn Iterator<Item = Request<C>> + Send>,
}

impl<C> RequestSource<C> {
    /// The next `n` requests at most (fewer once it runs out), in the
    /// context they are scheduled with.
    pub(crate) fn take(&mut self, n: usize) -> Vec<Context<C>> {
        let origin = self.origin;
        self.iter
            .by_ref()
            .take(n)
            .map(|r| origin.stamp(r))
            .collect()
    }

    /// The request that emitted this source.
    pub(crate) fn parent(&self) -> Option<Uuid> {
        self.origin.parent
    }
}

impl<C> std::fmt::Debug for RequestSource<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestSource")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// Hands a parse callback's requests on in batches while it runs.
pub(crate) struct Flush<C> {
    /// How many requests are held before they go.
    pub(crate) at: usize,
    /// Where they go: shared, so giving it to each callback's output
    /// costs no allocation.
    pub(crate) send: std::sync::Arc<dyn Fn(Vec<Context<C>>) + Send + Sync>,
}

impl<C> Clone for Flush<C> {
    fn clone(&self) -> Self {
        Flush {
            at: self.at,
            send: self.send.clone(),
        }
    }
}

impl<C> std::fmt::Debug for Flush<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flush")
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

/// What a request emitted from a response is stamped with: the response's
/// context as its parent, one level deeper, its priority lowered per level
/// of depth by the crawl's depth priority.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Origin {
    /// The context id of the response's request.
    pub(crate) parent: Option<Uuid>,
    /// The new requests' depth (the response's + 1).
    pub(crate) depth: u32,
    /// How much a request's priority drops per level of depth.
    pub(crate) depth_priority: i32,
}

impl Origin {
    /// `request`, emitted from here, in the context it is scheduled with.
    fn stamp<C>(self, mut request: Request<C>) -> Context<C> {
        request.depth = self.depth;
        let level = i32::try_from(self.depth).unwrap_or(i32::MAX);
        request.priority = request
            .priority
            .saturating_sub(level.saturating_mul(self.depth_priority));
        Context::new(request, self.parent)
    }
}

impl<C> Default for Output<C> {
    fn default() -> Self {
        Output {
            requests: Vec::new(),
            items: Vec::new(),
            origin: Origin::default(),
            counts: Vec::new(),
            flush: None,
            flushed: 0,
            sources: Vec::new(),
        }
    }
}

impl<C: Callback> Output<C> {
    /// Emits a new request. In a crawl, requests are handed on to the
    /// scheduler in batches while the callback runs, so one that emits
    /// many holds only a batch at a time.
    pub fn request(&mut self, request: Request<C>) {
        self.requests.push(self.origin.stamp(request));
        if let Some(flush) = &mut self.flush {
            if self.requests.len() >= flush.at {
                let batch = std::mem::take(&mut self.requests);
                self.flushed += batch.len();
                (flush.send)(batch);
            }
        }
    }

    /// Emits the requests `requests` yields, made only as the crawl needs
    /// them: the scheduler pulls them a batch at a time after the callback
    /// returns, only while its queue is short of work (as it pulls the
    /// start requests), so a callback that names many requests (a sitemap
    /// of 50,000 pages) never has them all in memory. Each is stamped like
    /// one given to [`request`](Self::request) (this response as its
    /// parent, one level deeper).
    ///
    /// The iterator runs on the scheduler's thread, so each step should be
    /// quick; a panic in it is counted in `spider_exceptions` and ends it.
    /// The crawl is not finished while it has requests left. With a job
    /// directory this response's request is recorded done only once the
    /// iterator has run out and its requests are recorded accepted, so a
    /// crawl stopped (or killed) before fetches this response again on
    /// resume and its requests are emitted again (those already accepted
    /// are dropped as duplicates). A stopping crawl pulls no more.
    /// In a distributed crawl (and outside a crawl: an `Output::default()`
    /// in a spider's test) the iterator is drained at once.
    pub fn requests_from<I>(&mut self, requests: I)
    where
        I: IntoIterator<Item = Request<C>>,
        I::IntoIter: Send + 'static,
    {
        let iter = requests.into_iter();
        if self.flush.is_none() {
            for request in iter {
                self.request(request);
            }
            return;
        }
        self.sources.push(RequestSource {
            origin: self.origin,
            iter: Box::new(iter),
        });
    }

    /// Emits an item: any serialisable value.
    pub fn item<T: Serialize + Send + 'static>(&mut self, value: T) {
        self.items.push(Item::new(value));
    }

    /// Emits an already wrapped item.
    pub fn push_item(&mut self, item: Item) {
        self.items.push(item);
    }

    /// Adds `n` to the crawl's counter `name` (a counter named at run
    /// time, in the stats snapshot beside the fixed ones), once the
    /// callback returns, whether it succeeded or not. Counting 0 does
    /// nothing. `SitemapRules` counts its `sitemap/…` counters this way.
    ///
    /// ```
    /// use spinneret::Output;
    ///
    /// let mut out = Output::<()>::default();
    /// out.count("myspider/products", 2);
    /// out.count("myspider/products", 1);
    /// assert_eq!(out.counted("myspider/products"), 3);
    /// ```
    pub fn count(&mut self, name: &str, n: u64) {
        if n == 0 {
            return;
        }
        match self.counts.iter_mut().find(|(c, _)| c == name) {
            Some((_, total)) => *total += n,
            None => self.counts.push((name.to_string(), n)),
        }
    }

    /// How much was counted under `name` so far (see [`Output::count`]).
    pub fn counted(&self, name: &str) -> u64 {
        self.counts
            .iter()
            .find(|(c, _)| c == name)
            .map_or(0, |(_, n)| *n)
    }

    /// How many requests were emitted so far (in a crawl, not counting
    /// those of [`requests_from`](Self::requests_from), not made yet).
    pub fn request_count(&self) -> usize {
        self.flushed + self.requests.len()
    }

    /// How many items were emitted so far.
    pub fn item_count(&self) -> usize {
        self.items.len()
    }
}

/// A request that failed, as shown to [`Spider::on_error`].
#[derive(Debug)]
pub struct Failure<C> {
    /// The request as it was scheduled.
    pub request: Request<C>,
    /// What went wrong.
    pub error: Error,
    /// Which attempt failed (1 for the first).
    pub attempt: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorKind, Stage};

    #[test]
    fn emitted_requests_are_stamped_with_their_origin() {
        let parent = Uuid::new_v4();
        let mut out = Output::<()> {
            origin: Origin {
                parent: Some(parent),
                depth: 3,
                depth_priority: 2,
            },
            ..Output::default()
        };
        out.request(Request::get("http://h/a").unwrap());
        let mut low = Request::get("http://h/b").unwrap();
        low.priority = i32::MIN + 1;
        low.depth = 40;
        out.request(low);
        out.request(Request::get("http://h/c").unwrap().priority(10));
        assert_eq!(out.request_count(), 3);
        let got: Vec<_> = out
            .requests
            .iter()
            .map(|c| (c.request.url.path(), c.request.depth, c.request.priority))
            .collect();
        // One level deeper than the response; priority down 2 per level
        // (saturating).
        assert_eq!(got, [("/a", 3, -6), ("/b", 3, i32::MIN), ("/c", 3, 4)]);
        for c in &out.requests {
            assert_eq!(c.parent, Some(parent));
            assert_ne!(c.id, parent);
            assert_eq!((c.attempt, c.retries, c.crashes), (0, 0, 0));
        }
        assert_ne!(out.requests[0].id, out.requests[1].id);
    }

    #[test]
    fn start_urls_makes_every_request_or_names_the_bad_url() {
        let starts: Vec<Request<()>> = start_urls(vec![
            String::from("http://a/"),
            String::from("https://b/x?q=1"),
        ])
        .unwrap()
        .collect();
        let urls: Vec<&str> = starts.iter().map(|r| r.url.as_str()).collect();
        assert_eq!(urls, ["http://a/", "https://b/x?q=1"]);
        for bad in ["not a url", "ftp://a/", "http://"] {
            let e = start_urls::<(), _, _>(["http://a/", bad]).err().unwrap();
            assert_eq!(e.stage(), Stage::Setup, "{bad}");
            assert!(
                matches!(e.kind(), ErrorKind::InvalidUrl { input, .. } if input.contains(bad.trim_end_matches('/'))),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains(bad.trim_end_matches('/')), "{e}");
        }
    }
}
