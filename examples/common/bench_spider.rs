//! The crawl the `bench` and `distributed` examples share: a spider that
//! follows every same-host link from one start URL and emits one item per
//! page, a download middleware that marks every request, a pipeline that
//! counts items, and the process's peak memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use spinneret::{
    async_trait, DownloadMiddleware, Error, Item, ItemMeta, LinkExtractor, Output, Pipeline,
    Request, RequestAction, Response, Spider, StartRequests, Verdict,
};
use url::Url;

/// The header the benchmark's download middleware sets.
pub const MARK_HEADER: &str = "x-bench";

/// The item of one page.
#[derive(Serialize)]
pub struct PageItem {
    /// The page's number on the generated site (`/` is 0), if it has one.
    pub page: Option<u64>,
    /// Same-host links on the page (each once).
    pub links: usize,
}

/// Follows every same-host link from one start URL, with the library's
/// link extractor.
pub struct BenchSpider {
    start: Request<()>,
    links: LinkExtractor,
}

impl BenchSpider {
    /// A spider crawling from `start`.
    pub fn new(start: Url) -> Result<Self, Error> {
        Ok(BenchSpider {
            start: Request::try_from_url(start)?,
            links: LinkExtractor::builder().same_domain(true).build()?,
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
        let links = self.links.requests(response);
        let count = links.len();
        for request in links {
            out.request(request);
        }
        let page = match response.url.path() {
            "/" => Some(0),
            path => path.strip_prefix("/page/").and_then(|n| n.parse().ok()),
        };
        out.item(PageItem { page, links: count });
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

/// The one item pipeline: counts items, and records each page's time
/// from dequeue to here.
#[derive(Clone, Default)]
pub struct CountItems {
    /// Items seen.
    pub items: Arc<AtomicU64>,
    /// Microseconds from the request's dispatch to its item here.
    pub latencies: Arc<Mutex<Vec<u32>>>,
}

impl CountItems {
    /// The `q` quantile (0 to 1) of the recorded latencies, in ms.
    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        let mut l = self.latencies.lock().expect("latencies lock").clone();
        if l.is_empty() {
            return None;
        }
        l.sort_unstable();
        let i = ((l.len() - 1) as f64 * q).round() as usize;
        Some(f64::from(l[i]) / 1000.0)
    }
}

#[async_trait(?Send)]
impl Pipeline for CountItems {
    async fn process_item(&mut self, _: &mut Item, meta: &ItemMeta) -> Result<Verdict, Error> {
        self.items.fetch_add(1, Ordering::Relaxed);
        if let Some(at) = meta.dispatched_at {
            let micros = u32::try_from(at.elapsed().as_micros()).unwrap_or(u32::MAX);
            self.latencies.lock().expect("latencies lock").push(micros);
        }
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
