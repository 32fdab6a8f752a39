//! The `bench` crawl started from a sitemap (`--sitemap PATH`): pages come
//! from the sitemaps through `SitemapRules` (every URL they list, no link
//! followed, as Scrapy's `SitemapSpider`), one item per page.

use spinneret::{Error, Output, Response, SitemapRules, Spider, Stage, StartRequests};
use url::Url;

use crate::bench_spider::{BenchSpider, PageItem};

/// Whether a response is a sitemap or robots.txt rather than a page.
fn is_sitemap(url: &Url) -> bool {
    let path = url.path();
    path == "/robots.txt" || path.ends_with(".xml") || path.ends_with(".xml.gz")
}

/// Crawls the pages the sitemaps at `starts` list.
pub struct SitemapBenchSpider {
    rules: SitemapRules<()>,
}

impl SitemapBenchSpider {
    /// A spider starting from `starts` (sitemaps or robots.txt files).
    pub fn new(starts: &[Url]) -> Result<Self, Error> {
        let rules = SitemapRules::new((), starts.iter().map(Url::as_str))?.rule("", ())?;
        Ok(SitemapBenchSpider { rules })
    }
}

impl Spider for SitemapBenchSpider {
    type Callback = ();

    fn name(&self) -> &str {
        "bench"
    }

    fn start_requests(&self) -> StartRequests<()> {
        self.rules.start_requests()
    }

    fn parse(&self, _: (), response: &Response, out: &mut Output<()>) -> Result<(), Error> {
        if is_sitemap(&response.url) {
            return self.rules.parse(response, out);
        }
        let page = match response.url.path() {
            "/" => Some(0),
            path => path.strip_prefix("/page/").and_then(|n| n.parse().ok()),
        };
        out.item(PageItem { page, links: 0 });
        Ok(())
    }
}

/// The bench's spider: from one page following links, or from sitemaps.
pub enum AnyBenchSpider {
    /// From one page, following every same-host link.
    Links(Box<BenchSpider>),
    /// From sitemaps.
    Sitemaps(SitemapBenchSpider),
}

impl AnyBenchSpider {
    /// The spider crawling the site at `start`: from `sitemap` (a path or
    /// URL, joined to `start`) when given, else from `start`.
    pub fn new(start: Url, sitemap: Option<&str>) -> Result<Self, Error> {
        let Some(sitemap) = sitemap else {
            return Ok(AnyBenchSpider::Links(Box::new(BenchSpider::new(start)?)));
        };
        let url = start
            .join(sitemap)
            .map_err(|e| Error::custom(Stage::Setup, format!("--sitemap {sitemap:?}: {e}")))?;
        Ok(AnyBenchSpider::Sitemaps(SitemapBenchSpider::new(&[url])?))
    }
}

impl Spider for AnyBenchSpider {
    type Callback = ();

    fn name(&self) -> &str {
        "bench"
    }

    fn start_requests(&self) -> StartRequests<()> {
        match self {
            AnyBenchSpider::Links(s) => s.start_requests(),
            AnyBenchSpider::Sitemaps(s) => s.start_requests(),
        }
    }

    fn parse(&self, cb: (), response: &Response, out: &mut Output<()>) -> Result<(), Error> {
        match self {
            AnyBenchSpider::Links(s) => s.parse(cb, response, out),
            AnyBenchSpider::Sitemaps(s) => s.parse(cb, response, out),
        }
    }
}
