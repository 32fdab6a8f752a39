//! A project of one's own: its spiders registered by name, and the whole
//! `spinneret` command line for them in a `main` of a few lines, as
//! `scrapy crawl` is for a Scrapy project.
//!
//! ```text
//! cargo run --features cli --example project -- list
//! cargo run --features cli --example project -- run titles -a start=http://127.0.0.1:18080/ -a depth=1 -o titles.jsonl
//! cargo run --features cli --example project -- run status -a url=http://127.0.0.1:18080/ --stats-json
//! cargo run --features cli --example project -- -s concurrency=4 run titles -a start=http://127.0.0.1:18080/
//! ```
//!
//! (`cargo run --release --example bench -- --serve-only --port 18080`
//! serves a site to try them on.) The other commands (`crawl`, `fetch`,
//! `css`) come with it.

use std::process::ExitCode;

use spinneret::{
    Crawler, Error, LinkExtractor, Output, Request, Response, Spider, SpiderArgs, SpiderRegistry,
    StartRequests,
};

fn main() -> ExitCode {
    let mut spiders = SpiderRegistry::new();
    spiders.register(
        "titles",
        "Every page's title within the start's host (-a start=URL [-a depth=N])",
        |args: &SpiderArgs| {
            let start = Request::get(args.require("start")?)?;
            let links = LinkExtractor::builder().same_domain(true).build()?;
            let mut crawl = Crawler::builder(Titles { start, links });
            if let Some(depth) = args.parse("depth")? {
                crawl = crawl.depth_limit(depth);
            }
            Ok(crawl)
        },
    );
    spiders.register(
        "status",
        "One page's status and size (-a url=URL)",
        |args: &SpiderArgs| {
            Ok(Crawler::builder(Status {
                page: Request::get(args.require("url")?)?,
            }))
        },
    );
    spinneret::cli::main(spiders)
}

/// Follows the links within its start page's host; one `{url, title}`
/// item per page.
struct Titles {
    start: Request<()>,
    links: LinkExtractor,
}

impl Spider for Titles {
    type Callback = ();

    fn name(&self) -> &str {
        "titles"
    }

    fn start_requests(&self) -> StartRequests<()> {
        Box::new(std::iter::once(self.start.clone()))
    }

    fn parse(&self, _: (), response: &Response, out: &mut Output<()>) -> Result<(), Error> {
        let title = response.css("title")?.into_iter().next();
        out.item(serde_json::json!({"url": response.url.as_str(), "title": title}));
        for request in self.links.requests(response) {
            out.request(request);
        }
        Ok(())
    }
}

/// Fetches one page; one `{url, status, bytes}` item.
struct Status {
    page: Request<()>,
}

impl Spider for Status {
    type Callback = ();

    fn name(&self) -> &str {
        "status"
    }

    fn start_requests(&self) -> StartRequests<()> {
        Box::new(std::iter::once(self.page.clone()))
    }

    fn parse(&self, _: (), response: &Response, out: &mut Output<()>) -> Result<(), Error> {
        out.item(serde_json::json!({
            "url": response.url.as_str(),
            "status": response.status,
            "bytes": response.body.len(),
        }));
        Ok(())
    }
}
