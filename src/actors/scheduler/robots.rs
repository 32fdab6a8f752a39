//! The Scheduler's side of robots.txt: checking each request just before
//! dispatch, parking those whose origin's robots.txt is not known yet, and
//! releasing them when it is.
//!
//! The rules, the cache and the fetch itself are `crate::politeness::robots`;
//! this file is the actor glue. While an origin's robots.txt is fetched its
//! host's slot is held, so no other request of that host is popped; when
//! the answer (or the failure, which allows everything) is in, its
//! Crawl-delay goes to the host's slot and the parked requests join the
//! held ones, dispatched by the next pump.

use actix::prelude::*;
use slog::{debug, warn};
use url::Url;

use crate::context::Context;
use crate::politeness::robots::{self, Access, Fetched};
use crate::request::{slot_of, Callback};
use crate::state::CrawlState;

use super::Scheduler;

impl<C: Callback> Scheduler<C> {
    /// The request if robots.txt allows it (or is not obeyed); otherwise
    /// it is dropped and counted, or parked until its origin's robots.txt
    /// is known.
    pub(super) fn robots_check(
        &mut self,
        c: Context<C>,
        ctx: &mut actix::Context<Self>,
    ) -> Option<Context<C>> {
        let Some(cache) = self.robots.as_mut() else {
            return Some(c);
        };
        match cache.check(&c.request.url) {
            Access::Allowed => Some(c),
            Access::Forbidden => {
                debug!(self.log, "forbidden by robots.txt"; "url" => %crate::redact::Redacted(&c.request.url));
                self.stats.add_named("robotstxt/forbidden", 1);
                self.done(c.id);
                None
            }
            Access::Pending { fetch } => {
                let origin = robots::origin(&c.request.url);
                self.slots.hold(slot_of(&c.request.url), true);
                if let Some(url) = fetch {
                    self.fetch_robots(origin.clone(), url, ctx);
                }
                self.robots_waiting.entry(origin).or_default().push(c);
                None
            }
        }
    }

    /// Fetches an origin's robots.txt, then releases its waiting requests.
    fn fetch_robots(&mut self, origin: String, url: Url, ctx: &mut actix::Context<Self>) {
        self.stats.add_named("robotstxt/request_count", 1);
        let host = slot_of(&url).to_string();
        let user_agent = self.config.robots_agent.clone().unwrap_or_default();
        robots::fetch(url, user_agent)
            .into_actor(self)
            .map(move |res, act, ctx| act.robots_fetched(&origin, &host, res, ctx))
            .spawn(ctx);
    }

    /// `origin`'s robots.txt came back (or could not be had, which allows
    /// everything): counts the answer, lets its host (`host`) start
    /// requests again under its Crawl-delay, and hands the requests that
    /// waited for it to dispatch (or counts them unprocessed when
    /// stopping).
    fn robots_fetched(
        &mut self,
        origin: &str,
        host: &str,
        res: Result<Fetched, String>,
        ctx: &mut actix::Context<Self>,
    ) {
        let rules = match res {
            Ok(Fetched { status, rules }) => {
                self.stats.add_named("robotstxt/response_count", 1);
                self.stats
                    .add_named(&format!("robotstxt/response_status_count/{status}"), 1);
                rules
            }
            Err(e) => {
                warn!(self.log, "robots.txt unavailable; allowing all"; "origin" => origin, "error" => e);
                self.stats.add_named("robotstxt/exception_count", 1);
                None
            }
        };
        let Some(cache) = self.robots.as_mut() else {
            return;
        };
        let delay = cache.learned(origin, rules);
        self.slots.hold(host, false);
        if let Some(delay) = delay {
            self.slots.set_crawl_delay(host, delay);
        }
        let waiting = self.robots_waiting.remove(origin).unwrap_or_default();
        if self.state == CrawlState::Stopping {
            self.unprocessed(waiting.len());
        } else {
            self.held.extend(waiting);
        }
        self.unstall();
        self.pump(ctx);
    }
}
