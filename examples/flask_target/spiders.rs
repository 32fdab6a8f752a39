//! The job's spiders, by name: a task's `spiderName` picks one from
//! [`registry`], and the task's fields reach it as [`SpiderArgs`]: `id`
//! (the task id) and each field of the task's `seed` (`startUrl`, …).
//!
//! The service hands out one kind of task (a list envelope of relative
//! detail links, each detail one item), and names it after the
//! `spider_name` the job asked for, `test` unless told otherwise: so one
//! spider, [`LIST_DETAIL`].

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use spinneret::{
    Crawler, Error, Output, Request, Response, Spider, SpiderArgs, SpiderRegistry, StartRequests,
};

use super::envelope;

/// The list-then-details spider's name (the service's default
/// `spiderName`).
pub const LIST_DETAIL: &str = "test";

/// Every spider the job knows.
pub fn registry() -> SpiderRegistry {
    let mut spiders = SpiderRegistry::new();
    spiders.register(
        LIST_DETAIL,
        "A list envelope of relative detail links, one item per detail (args: id, startUrl)",
        |args: &SpiderArgs| Ok(Crawler::builder(TaskSpider::new(LIST_DETAIL, args)?)),
    );
    spiders
}

/// Which parse function a request wants.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub enum Page {
    /// The list envelope: relative detail links.
    #[default]
    List,
    /// A detail envelope: one item.
    Detail,
}

/// One task's list-then-details crawl.
pub struct TaskSpider {
    /// The name it was registered under, so its log lines say which.
    name: &'static str,
    /// The task id, copied into every item.
    task_id: String,
    /// The task's seed, checked when the task arrives (a bad one fails the
    /// task, not the crawl).
    start: Request<Page>,
}

impl TaskSpider {
    /// The spider of the task whose arguments are `args` (`id` and
    /// `startUrl` required).
    pub fn new(name: &'static str, args: &SpiderArgs) -> Result<Self, Error> {
        Ok(TaskSpider {
            name,
            task_id: args.require("id")?.to_string(),
            start: Request::get(args.require("startUrl")?)?,
        })
    }
}

/// `{"id", "url", "title", "content"}` of a detail envelope.
#[derive(Deserialize)]
struct Detail {
    id: Value,
    url: String,
    title: String,
    content: String,
}

impl Spider for TaskSpider {
    type Callback = Page;

    fn name(&self) -> &str {
        self.name
    }

    fn start_requests(&self) -> StartRequests<Page> {
        Box::new(std::iter::once(self.start.clone()))
    }

    fn parse(&self, page: Page, response: &Response, out: &mut Output<Page>) -> Result<(), Error> {
        match page {
            Page::List => {
                let links: Vec<String> = envelope::data(response)?;
                for link in links {
                    let url = response.urljoin(&link)?;
                    out.request(Request::try_from_url(url)?.callback(Page::Detail));
                }
            }
            Page::Detail => {
                let d: Detail = envelope::data(response)?;
                let id = match d.id {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                out.item(json!({
                    "id": id,
                    "url": response.urljoin(&d.url)?.as_str(),
                    "title": d.title,
                    "content": d.content,
                    "task_id": self.task_id,
                    "download_latency": response.meta.download_latency.as_secs_f64(),
                    "depth": response.meta.depth,
                }));
            }
        }
        Ok(())
    }
}
