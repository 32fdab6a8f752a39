//! The crawl the `bench` and `distributed` examples share: a spider that
//! follows every same-host link from one start URL and emits one item per
//! page, a download middleware that marks every request, a pipeline that
//! counts items, and the process's peak memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use scraper::{Html, Selector};
use serde::Serialize;
use spinneret::{
    async_trait, DownloadMiddleware, Error, Item, ItemMeta, Output, Pipeline, Request,
    RequestAction, Response, Spider, StartRequests, Verdict,
};
use url::Url;

/// The header the benchmark's download middleware sets.
pub const MARK_HEADER: &str = "x-bench";

/// The item of one page.
#[derive(Serialize)]
pub struct PageItem {
    /// The page's number on the generated site (`/` is 0), if it has one.
    pub page: Option<u64>,
    /// Links on the page.
    pub links: usize,
}

/// Follows every same-host link from one start URL.
pub struct BenchSpider {
    start: Request<()>,
    links: Selector,
}

impl BenchSpider {
    /// A spider crawling from `start`.
    pub fn new(start: Url) -> Result<Self, Error> {
        Ok(BenchSpider {
            start: Request::try_from_url(start)?,
            links: Selector::parse("a[href]").expect("a valid selector"),
        })
    }
}

impl Spider for BenchSpider {
    type Callback = ();

    fn name(&self) -> &str {
        "bench"
    }

    fn start_requests(&self) -> StartRequests<()> {
        Box::new(std::iter::once(self.start.clone()))
    }

    fn parse(&self, _: (), response: &Response, out: &mut Output<()>) -> Result<(), Error> {
        let doc = Html::parse_document(&response.text());
        let mut links = 0;
        for a in doc.select(&self.links) {
            links += 1;
            let Some(href) = a.value().attr("href") else {
                continue;
            };
            let Ok(url) = response.urljoin(href) else {
                continue;
            };
            if matches!(url.scheme(), "http" | "https")
                && url.host_str() == self.start.url.host_str()
            {
                out.request(Request::try_from_url(url)?);
            }
        }
        let page = match response.url.path() {
            "/" => Some(0),
            path => path.strip_prefix("/page/").and_then(|n| n.parse().ok()),
        };
        out.item(PageItem { page, links });
        Ok(())
    }
}

/// The one download middleware: marks every request with a header.
pub struct Mark;

impl DownloadMiddleware<()> for Mark {
    fn process_request(
        &self,
        request: &mut Request<()>,
        _: &mut Vec<Request<()>>,
    ) -> Result<RequestAction, Error> {
        request.headers.push((MARK_HEADER.into(), "1".into()));
        Ok(RequestAction::Continue)
    }
}

/// The one item pipeline: counts items.
pub struct CountItems(pub Arc<AtomicU64>);

#[async_trait(?Send)]
impl Pipeline for CountItems {
    async fn process_item(&mut self, _: &mut Item, _: &ItemMeta) -> Result<Verdict, Error> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(Verdict::Keep)
    }
}

/// The process's peak resident set size (`VmHWM`), in MB.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// `x` rounded to `decimals` places.
pub fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}
