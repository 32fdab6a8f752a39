//! Item pipelines: what happens to every scraped item.
//!
//! Pipelines run in priority order (smaller first) inside the PipelineStage
//! actor, one item at a time, so a pipeline may keep `&mut self` state
//! (a batch, an open file) without locks. Each may transform the item in
//! place, drop it (counted in `item_dropped_count`), or fail on it (the
//! error handler records it, counted in `item_error_count`). `open` runs
//! before the first item and `close` after the last, exactly once each;
//! `flush` runs periodically in between (every second by default), so a
//! pipeline that batches can send a partial batch that has waited too long;
//! `checkpoint` runs before a job directory's checkpoint and before a
//! distributed crawl's acknowledgements, to make every item received so far
//! durable. `close` is bounded by the crawl's finish timeout, so a pipeline
//! that never finishes closing cannot keep the crawl from ending.

use std::sync::Arc;

use async_trait::async_trait;
use slog::Logger;

use crate::error::Error;
use crate::item::{Item, ItemMeta};
use crate::stats::Stats;

/// What a pipeline is told when it opens.
#[derive(Clone)]
pub struct PipelineContext {
    /// The spider's name.
    pub spider: Arc<str>,
    /// The crawl's stats, for the pipeline's own counters.
    pub stats: Arc<Stats>,
    /// The crawl's log.
    pub log: Logger,
    /// The crawl continues earlier runs' work: it resumes a job directory
    /// (its journal held earlier runs' checkpoints), or it is distributed
    /// (a worker restarted, or joining a running crawl, must keep the
    /// items of pages already acknowledged). A file export then continues
    /// the file its earlier runs wrote instead of replacing it.
    pub resumed: bool,
}

/// What a pipeline decided about an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Pass the (possibly transformed) item to the next pipeline.
    Keep,
    /// Stop here; the item is counted as dropped with this reason.
    Drop(String),
}

/// An item pipeline.
///
/// Futures need not be `Send`: the stage runs on one arbiter, so a pipeline
/// may hold an `awc::Client` (create it in `open`).
///
/// A pipeline that drops products without a price and adds how many it
/// dropped to the crawl's stats when it closes (run here on a shop of one
/// page listing two products, one without a price):
///
/// ```
/// use std::sync::Arc;
/// use spinneret::{async_trait, Crawler, Error, Item, ItemMeta, Pipeline, PipelineContext, Stats, Verdict};
/// # use spinneret::{start_urls, Output, Response, Spider, StartRequests};
/// # use std::io::{Read, Write};
/// # struct Shop(String);
/// # impl Shop {
/// #     // A one-page shop on 127.0.0.1, listing one product without a price.
/// #     fn serving_one_page() -> Shop {
/// #         let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// #         let url = format!("http://{}/", listener.local_addr().unwrap());
/// #         std::thread::spawn(move || {
/// #             for mut stream in listener.incoming().flatten() {
/// #                 let mut buf = [0u8; 4096];
/// #                 let _ = stream.read(&mut buf);
/// #                 let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
/// #             }
/// #         });
/// #         Shop(url)
/// #     }
/// # }
/// # impl Spider for Shop {
/// #     type Callback = ();
/// #     fn name(&self) -> &str { "shop" }
/// #     fn start_requests(&self) -> StartRequests<()> {
/// #         start_urls([self.0.as_str()]).expect("valid start URLs")
/// #     }
/// #     fn parse(&self, _: (), _: &Response, out: &mut Output<()>) -> Result<(), Error> {
/// #         out.item(serde_json::json!({ "name": "kettle", "price": 25 }));
/// #         out.item(serde_json::json!({ "name": "teapot" }));
/// #         Ok(())
/// #     }
/// # }
///
/// #[derive(Default)]
/// struct RequirePrice {
///     stats: Option<Arc<Stats>>,
///     dropped: u64,
/// }
///
/// #[async_trait(?Send)]
/// impl Pipeline for RequirePrice {
///     async fn open(&mut self, ctx: &PipelineContext) -> Result<(), Error> {
///         self.stats = Some(ctx.stats.clone());
///         Ok(())
///     }
///
///     async fn process_item(&mut self, item: &mut Item, _: &ItemMeta) -> Result<Verdict, Error> {
///         if item.to_json()?.get("price").is_some_and(|p| !p.is_null()) {
///             return Ok(Verdict::Keep);
///         }
///         self.dropped += 1;
///         Ok(Verdict::Drop("no price".into()))
///     }
///
///     async fn close(&mut self) -> Result<(), Error> {
///         if let Some(stats) = &self.stats {
///             stats.add_named("require_price/dropped", self.dropped);
///         }
///         Ok(())
///     }
/// }
///
/// # #[actix::main]
/// # async fn main() -> Result<(), Error> {
/// # let shop = Shop::serving_one_page();
/// let crawl = Crawler::builder(shop).pipeline(RequirePrice::default()).build()?.start()?;
/// let stats = crawl.join().await?;
/// assert_eq!(stats.get("item_scraped_count"), 1);
/// assert_eq!(stats.get("require_price/dropped"), 1);
/// # Ok(())
/// # }
/// ```
#[async_trait(?Send)]
pub trait Pipeline: Send + 'static {
    /// A name for logs and stats.
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    /// Smaller runs first.
    fn priority(&self) -> i32 {
        0
    }

    /// Called once before the first item.
    async fn open(&mut self, ctx: &PipelineContext) -> Result<(), Error> {
        let _ = ctx;
        Ok(())
    }

    /// Processes one item: transform it in place, keep it, drop it, or fail.
    async fn process_item(&mut self, item: &mut Item, meta: &ItemMeta) -> Result<Verdict, Error>;

    /// Called periodically between items (the crawl's flush interval).
    async fn flush(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// Called before a crawl with a job directory records as completed the
    /// requests whose items this pipeline has received, and before a
    /// distributed crawl acknowledges them to Redis: make every item
    /// received so far durable (send partial batches, sync files), or fail,
    /// and those requests stay pending (fetched again on resume; in a
    /// distributed crawl, acknowledged after a later checkpoint that
    /// succeeds, or fetched again by another worker if this one dies).
    /// Default: [`flush`](Self::flush).
    async fn checkpoint(&mut self) -> Result<(), Error> {
        self.flush().await
    }

    /// Called once after the last item (flush batches, close files). The
    /// pipelines' closes share the crawl's finish timeout
    /// ([`CrawlerBuilder::finish_timeout`](crate::CrawlerBuilder::finish_timeout)),
    /// in order: each may take the time still left divided by the number
    /// of closes still to run (so a hanging close takes its share only,
    /// and a quick one leaves its unused share to those after it). A close
    /// still pending at the end of its share is abandoned (dropped where it
    /// waits), then [`abandon`](Self::abandon) runs, and it is reported,
    /// so the crawl ends. Items that arrive after it are refused and
    /// counted, never passed to a closed pipeline.
    async fn close(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// Called, at once and synchronously, when `close` was abandoned at
    /// its deadline: save what `close` had not finished with, without
    /// waiting on anything (spill a batch not yet sent to a local file),
    /// so an item reaches its sink or a spill file. Keep state the close
    /// is working on in `self` until it is done with it: the close's
    /// future is dropped before this runs. Default: nothing.
    fn abandon(&mut self) {}
}
