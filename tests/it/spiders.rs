//! Spiders, middlewares and pipelines the tests crawl with.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use spinneret::{
    async_trait, CrawlHandle, CrawlerBuilder, DownloadMiddleware, Error, Failure, Html, Item,
    ItemMeta, Output, Pipeline, Request, RequestAction, Response, ResponseAction, Selector, Spider,
    StartRequests, StatsSnapshot, Verdict,
};

/// Which parse function a request wants.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub enum Cb {
    /// An HTML page: one item, follow every same-host link.
    #[default]
    Html,
    /// A JSON `{"count": k}` page: k items.
    Items,
}

/// Follows every same-host link; one item per HTML page.
pub struct LinkSpider {
    pub starts: Vec<Request<Cb>>,
    /// Re-issue a failed request once, marked `dont_filter`.
    pub retry_on_error: bool,
}

impl LinkSpider {
    pub fn new(starts: Vec<Request<Cb>>) -> Self {
        LinkSpider {
            starts,
            retry_on_error: false,
        }
    }

    pub fn from_urls(urls: &[String]) -> Self {
        Self::new(urls.iter().map(|u| Request::get(u).unwrap()).collect())
    }
}

impl Spider for LinkSpider {
    type Callback = Cb;

    fn name(&self) -> &str {
        "links"
    }

    fn start_requests(&self) -> StartRequests<Cb> {
        Box::new(self.starts.clone().into_iter())
    }

    fn parse(&self, cb: Cb, response: &Response, out: &mut Output<Cb>) -> Result<(), Error> {
        match cb {
            Cb::Html => {
                let doc = Html::parse_document(&response.text());
                let title = Selector::parse("title").unwrap();
                let title = doc
                    .select(&title)
                    .next()
                    .map(|t| t.text().collect::<String>())
                    .unwrap_or_default();
                out.item(json!({"url": response.url.as_str(), "title": title}));
                let a = Selector::parse("a[href]").unwrap();
                for link in doc.select(&a) {
                    let Ok(url) = response.urljoin(link.value().attr("href").unwrap()) else {
                        continue;
                    };
                    if url.host_str() == response.url.host_str() {
                        out.request(Request::try_from_url(url)?);
                    }
                }
            }
            Cb::Items => {
                let body: Value = response.json()?;
                for i in 0..body["count"].as_u64().unwrap_or(0) {
                    out.item(json!({"i": i}));
                }
            }
        }
        Ok(())
    }

    fn on_error(&self, failure: &Failure<Cb>) -> Vec<Request<Cb>> {
        if !self.retry_on_error || failure.request.meta.contains_key("retried") {
            return Vec::new();
        }
        vec![failure.request.clone().meta("retried", true).dont_filter()]
    }
}

/// Collects every item as JSON, with the time the last one arrived.
#[derive(Clone, Default)]
pub struct Collect {
    pub items: Arc<Mutex<Vec<Value>>>,
    pub last: Arc<Mutex<Option<Instant>>>,
    pub closed: Arc<Mutex<u32>>,
}

#[async_trait(?Send)]
impl Pipeline for Collect {
    fn priority(&self) -> i32 {
        1000
    }

    async fn process_item(&mut self, item: &mut Item, _: &ItemMeta) -> Result<Verdict, Error> {
        self.items.lock().unwrap().push(item.to_json()?);
        *self.last.lock().unwrap() = Some(Instant::now());
        Ok(Verdict::Keep)
    }

    async fn close(&mut self) -> Result<(), Error> {
        *self.closed.lock().unwrap() += 1;
        Ok(())
    }
}

/// Records its name for each item, so tests can check pipeline order; tags
/// the item with its name too (a transformation).
pub struct Tag {
    pub name: &'static str,
    pub priority: i32,
    pub log: Arc<Mutex<Vec<String>>>,
}

#[async_trait(?Send)]
impl Pipeline for Tag {
    fn priority(&self) -> i32 {
        self.priority
    }

    async fn process_item(&mut self, item: &mut Item, _: &ItemMeta) -> Result<Verdict, Error> {
        self.log.lock().unwrap().push(self.name.to_string());
        let mut value = item.to_json()?;
        let tags = value["tags"].as_array().cloned().unwrap_or_default();
        let mut tags = tags;
        tags.push(json!(self.name));
        value["tags"] = Value::Array(tags);
        *item = Item::new(value);
        Ok(Verdict::Keep)
    }
}

/// Drops items whose `i` is odd.
pub struct DropOdd;

#[async_trait(?Send)]
impl Pipeline for DropOdd {
    async fn process_item(&mut self, item: &mut Item, _: &ItemMeta) -> Result<Verdict, Error> {
        let i = item.to_json()?["i"].as_u64().unwrap_or(0);
        Ok(if i % 2 == 1 {
            Verdict::Drop(format!("odd {i}"))
        } else {
            Verdict::Keep
        })
    }
}

/// Fails on every item.
pub struct FailAll;

#[async_trait(?Send)]
impl Pipeline for FailAll {
    async fn process_item(&mut self, _: &mut Item, meta: &ItemMeta) -> Result<Verdict, Error> {
        Err(Error::custom(
            spinneret::Stage::Pipeline,
            format!("refusing items of {}", meta.url),
        ))
    }
}

/// Records `req:<name>` and `resp:<name>` as requests pass.
pub struct Trace {
    pub name: &'static str,
    pub priority: i32,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl DownloadMiddleware<Cb> for Trace {
    fn priority(&self) -> i32 {
        self.priority
    }

    fn process_request(
        &self,
        request: &mut Request<Cb>,
        _: &mut Vec<Request<Cb>>,
    ) -> Result<RequestAction, Error> {
        self.log.lock().unwrap().push(format!("req:{}", self.name));
        request.headers.push(("x-trace".into(), self.name.into()));
        Ok(RequestAction::Continue)
    }

    fn process_response(
        &self,
        _: &Request<Cb>,
        _: &mut Response,
        _: &mut Vec<Request<Cb>>,
    ) -> Result<ResponseAction, Error> {
        self.log.lock().unwrap().push(format!("resp:{}", self.name));
        Ok(ResponseAction::Continue)
    }
}

/// Panics in `process_request` the first time it sees a URL ending in
/// `suffix`.
pub struct PanicOnce {
    pub suffix: String,
    pub fired: AtomicBool,
}

impl DownloadMiddleware<Cb> for PanicOnce {
    fn process_request(
        &self,
        request: &mut Request<Cb>,
        _: &mut Vec<Request<Cb>>,
    ) -> Result<RequestAction, Error> {
        if request.url.path().ends_with(&self.suffix) && !self.fired.swap(true, Ordering::SeqCst) {
            panic!("injected downloader panic for {}", request.url);
        }
        Ok(RequestAction::Continue)
    }
}

/// Builds and starts a crawl, failing the test on a setup error.
pub trait StartCrawl {
    fn started(self) -> CrawlHandle;
}

impl<S: Spider> StartCrawl for CrawlerBuilder<S> {
    fn started(self) -> CrawlHandle {
        self.build().unwrap().start().unwrap()
    }
}

/// Builds and starts the crawl, and waits for its final stats.
pub async fn run<S: Spider>(builder: CrawlerBuilder<S>) -> StatsSnapshot {
    builder.started().join().await.unwrap()
}

/// Waits (bounded) until the crawl's stats satisfy `cond`: the signal is
/// the stats condition itself, checked every few milliseconds.
pub async fn wait_for_stats(handle: &CrawlHandle, cond: impl Fn(&StatsSnapshot) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = handle.stats();
        if cond(&s) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "stats condition not reached: {s:#?}"
        );
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
}
