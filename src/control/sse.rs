//! `GET /crawls/{id}/events`: a crawl's lifecycle events and periodic
//! stats as Server-Sent Events.
//!
//! The stream opens with a `state` event (the crawl as `GET /crawls/{id}`
//! shows it), then carries every [`CrawlEvent`] under its own name
//! (`started`, `paused`, `resumed`, `stopping`, `checkpointed`, `error`,
//! `finished`) and a `stats` event with the stats snapshot every interval.
//! It ends after `finished`; a client that connects to a finished crawl gets
//! its `finished` event at once. A client that falls more than 1,024 events
//! behind gets a `: lagged N` comment for the events it missed.

use std::time::Duration;

use actix_web::web::Bytes;
use futures_util::stream::{self, Stream};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};

use crate::events::CrawlEvent;
use crate::handle::CrawlHandle;

/// One SSE message: `event: NAME` and one `data:` line of JSON.
fn message(name: &str, data: &impl Serialize) -> Bytes {
    let json = serde_json::to_string(data).unwrap_or_else(|_| "null".into());
    Bytes::from(format!("event: {name}\ndata: {json}\n\n"))
}

/// A lifecycle event as an SSE message named after it.
fn event_message(event: &CrawlEvent) -> Bytes {
    let value = serde_json::to_value(event).unwrap_or(Value::Null);
    let name = value["event"].as_str().unwrap_or("event").to_string();
    message(&name, &value)
}

/// Where the stream is.
enum Step {
    /// The opening `state` event is next.
    Opening(Box<Value>),
    /// Relaying events and ticking stats.
    Live,
    /// The `finished` event has been sent.
    Done,
}

/// The stream's state between messages.
struct Feed {
    /// Where the stream is.
    phase: Step,
    /// Subscribed before the opening event, so nothing is missed.
    events: broadcast::Receiver<CrawlEvent>,
    /// The crawl, for its stats and its final snapshot.
    handle: CrawlHandle,
    /// When the next `stats` event is due.
    tick: Interval,
}

/// The SSE body for `handle`: `opening` first (the crawl's status, taken
/// after `events` subscribed), then events and a `stats` event every
/// `every`.
pub(crate) fn stream(
    handle: CrawlHandle,
    events: broadcast::Receiver<CrawlEvent>,
    opening: Value,
    every: Duration,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> {
    let mut tick = interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let feed = Feed {
        phase: Step::Opening(Box::new(opening)),
        events,
        handle,
        tick,
    };
    stream::unfold(feed, |mut feed| async move {
        let bytes = match std::mem::replace(&mut feed.phase, Step::Live) {
            Step::Done => return None,
            Step::Opening(status) => message("state", &status),
            Step::Live if feed.handle.is_finished() && feed.events.is_empty() => {
                // Finished before we subscribed, or its event was missed:
                // the final stats are published either way.
                feed.phase = Step::Done;
                let stats = feed.handle.join().await.unwrap_or_default();
                event_message(&CrawlEvent::Finished {
                    stats: Box::new(stats),
                })
            }
            Step::Live => {
                tokio::select! {
                    got = feed.events.recv() => match got {
                        Ok(event) => {
                            if matches!(event, CrawlEvent::Finished { .. }) {
                                feed.phase = Step::Done;
                            }
                            event_message(&event)
                        }
                        Err(RecvError::Lagged(n)) => Bytes::from(format!(": lagged {n}\n\n")),
                        Err(RecvError::Closed) => return None,
                    },
                    _ = feed.tick.tick() => message("stats", &feed.handle.stats()),
                }
            }
        };
        Some((Ok(bytes), feed))
    })
}
