//! The Scheduler's side of robots.txt: checking each request just before
//! dispatch, parking those whose origin's robots.txt is not known yet,
//! fetching it (at most [`MAX_FETCHES`] at once, the rest in turn), and
//! releasing or dropping the parked requests when the answer is in.
//!
//! The rules, the cache and the fetch itself are `crate::politeness`; this
//! file is the actor glue. While an origin's robots.txt is fetched (or
//! waits to be fetched again after it was unreachable) its host's slot is
//! held, so no other request of that host is popped. When the rules are in
//! (or the file is unavailable, which allows everything), its Crawl-delay
//! goes to the host's slot and the parked requests join the held ones,
//! dispatched by the next pump. When it stays unreachable, the parked
//! requests are dropped and counted (`robotstxt/forbidden`, of them
//! `robotstxt/forbidden_unreachable`). Every outcome has its counter:
//! `robotstxt/request_count` (fetches started), `response_count` and
//! `response_status_count/{status}`, `redirect_count`, `truncated`,
//! `parse_error`, `unavailable` (of them `too_many_redirects`),
//! `unreachable`, `exception_count` (no answer at all), `retry_count`,
//! `gave_up`, `fetch_waited` (a fetch waited for a free place) and
//! `blocked_address` (the address guard refused the fetch: it is not
//! retried, and the origin's requests go on to the downloader, whose guard
//! refuses them, each counted as a `blocked_address` exception).

use std::collections::VecDeque;
use std::time::Instant;

use actix::prelude::*;
use slog::{debug, info, warn};
use url::Url;

use crate::context::Context;
use crate::http::DownloadConfig;
use crate::politeness::robots::{self, Access, Failed, Rules};
use crate::politeness::robots_fetch::{Fetched, RobotsFetcher, Verdict};
use crate::request::{slot_of, Callback};
use crate::state::CrawlState;

use super::Scheduler;

/// The most robots.txt fetches in flight at once: a crawl that meets
/// thousands of new origins at once fetches their robots.txt a few at a
/// time, not thousands of connections at once.
pub(crate) const MAX_FETCHES: usize = 8;

/// One robots.txt to fetch: its origin, URL and the asking request's proxy.
struct Fetch {
    origin: String,
    url: Url,
    proxy: Option<String>,
}

/// The robots.txt fetches of one Scheduler.
#[derive(Default)]
pub(super) struct RobotsFetches {
    /// The crawl's download settings, for the fetcher made on first use
    /// (it holds awc clients, which stay on the Scheduler's thread).
    download: Option<DownloadConfig>,
    /// Made on the first fetch.
    fetcher: Option<RobotsFetcher>,
    /// Fetches under way.
    in_flight: usize,
    /// Fetches waiting for a free place, in order.
    waiting: VecDeque<Fetch>,
}

impl RobotsFetches {
    /// Fetches with `download`'s settings (proxies, User-Agent, timeout).
    pub(super) fn new(download: DownloadConfig) -> Self {
        RobotsFetches {
            download: Some(download),
            ..RobotsFetches::default()
        }
    }
}

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
        match cache.check(&c.request.url, Instant::now()) {
            Access::Allowed => Some(c),
            Access::Forbidden => {
                self.robots_drop(c, false);
                None
            }
            Access::Unreachable => {
                self.robots_drop(c, true);
                None
            }
            Access::Pending { fetch } => {
                let origin = robots::origin(&c.request.url);
                self.slots.hold(slot_of(&c.request.url), true);
                if let Some(url) = fetch {
                    let proxy = c.request.proxy.clone();
                    let origin = origin.clone();
                    self.queue_robots(Fetch { origin, url, proxy }, ctx);
                }
                self.robots_waiting.entry(origin).or_default().push(c);
                None
            }
        }
    }

    /// Drops a request robots.txt disallows (by its rules, or because it
    /// is unreachable), counted.
    fn robots_drop(&mut self, c: Context<C>, unreachable: bool) {
        debug!(self.log, "forbidden by robots.txt"; "url" => %crate::redact::Redacted(&c.request.url), "unreachable" => unreachable);
        self.stats.add_named("robotstxt/forbidden", 1);
        if unreachable {
            self.stats.add_named("robotstxt/forbidden_unreachable", 1);
        }
        self.done(c.id);
    }

    /// Starts a fetch now, or queues it behind the ones in flight.
    fn queue_robots(&mut self, fetch: Fetch, ctx: &mut actix::Context<Self>) {
        if self.robots_fetches.in_flight >= MAX_FETCHES {
            self.stats.add_named("robotstxt/fetch_waited", 1);
            self.robots_fetches.waiting.push_back(fetch);
            return;
        }
        self.fetch_robots(fetch, ctx);
    }

    /// Fetches an origin's robots.txt, then settles its waiting requests.
    fn fetch_robots(&mut self, fetch: Fetch, ctx: &mut actix::Context<Self>) {
        self.stats.add_named("robotstxt/request_count", 1);
        let f = &mut self.robots_fetches;
        f.in_flight += 1;
        let fetcher = f.fetcher.get_or_insert_with(|| {
            let agent = self.config.robots_agent.clone().unwrap_or_default();
            let download = f
                .download
                .take()
                .unwrap_or_else(|| DownloadConfig::new(agent.clone(), self.log.clone()));
            RobotsFetcher::new(download, agent)
        });
        fetcher
            .fetch(fetch.url.clone(), fetch.proxy.clone())
            .into_actor(self)
            .map(move |fetched, act, ctx| {
                act.robots_fetches.in_flight -= 1;
                if act.state == CrawlState::Stopping {
                    // Their requests were counted unprocessed at the stop.
                    act.robots_fetches.waiting.clear();
                } else if let Some(next) = act.robots_fetches.waiting.pop_front() {
                    act.fetch_robots(next, ctx);
                }
                act.robots_fetched(fetch, fetched, ctx);
            })
            .spawn(ctx);
    }

    /// `fetch` came back: counts and logs the answer, then releases the
    /// origin's requests (rules or none), waits to fetch again, or drops
    /// them (unreachable through every try).
    fn robots_fetched(&mut self, fetch: Fetch, fetched: Fetched, ctx: &mut actix::Context<Self>) {
        let origin = fetch.origin.as_str();
        self.stats
            .add_named("robotstxt/redirect_count", u64::from(fetched.redirects));
        let rules = match fetched.verdict {
            Verdict::Rules {
                status,
                rules,
                truncated,
            } => {
                self.count_robots_status(Some(status));
                if truncated {
                    info!(self.log, "robots.txt over the size read; its start is obeyed"; "url" => %crate::redact::Redacted(&fetched.url));
                    self.stats.add_named("robotstxt/truncated", 1);
                }
                if rules.is_none() {
                    warn!(self.log, "robots.txt could not be parsed; allowing all"; "url" => %crate::redact::Redacted(&fetched.url));
                    self.stats.add_named("robotstxt/parse_error", 1);
                }
                rules
            }
            Verdict::Unavailable { status, reason } => {
                self.count_robots_status(status);
                info!(self.log, "robots.txt unavailable; allowing all"; "url" => %crate::redact::Redacted(&fetched.url), "reason" => reason);
                self.stats.add_named("robotstxt/unavailable", 1);
                None
            }
            Verdict::TooManyRedirects { status } => {
                self.count_robots_status(status);
                info!(self.log, "robots.txt redirected too often; allowing all"; "url" => %crate::redact::Redacted(&fetched.url), "redirects" => fetched.redirects);
                self.stats.add_named("robotstxt/too_many_redirects", 1);
                self.stats.add_named("robotstxt/unavailable", 1);
                None
            }
            Verdict::Blocked { reason } => {
                // No fetch can change the guard's answer: the requests go
                // on, and the downloader's guard refuses each, counted as
                // `downloader/exception_type_count/blocked_address`.
                warn!(self.log, "robots.txt refused by the address guard; the origin's requests go on to be refused too"; "url" => %crate::redact::Redacted(&fetched.url), "reason" => reason);
                self.stats.add_named("robotstxt/blocked_address", 1);
                None
            }
            Verdict::Unreachable { status, reason } => {
                self.count_robots_status(status);
                warn!(self.log, "robots.txt unreachable; disallowing all"; "url" => %crate::redact::Redacted(&fetched.url), "reason" => reason);
                self.stats.add_named("robotstxt/unreachable", 1);
                return self.robots_unreachable(fetch, ctx);
            }
        };
        self.robots_known(origin, slot_of(&fetch.url), rules, ctx);
    }

    /// Counts an answer's status (`None`: there was no answer).
    fn count_robots_status(&self, status: Option<u16>) {
        match status {
            Some(status) => {
                self.stats.add_named("robotstxt/response_count", 1);
                self.stats
                    .add_named(&format!("robotstxt/response_status_count/{status}"), 1);
            }
            None => self.stats.add_named("robotstxt/exception_count", 1),
        }
    }

    /// `origin`'s rules are known (`None` allows everything): lets its host
    /// (`host`) start requests again under its Crawl-delay, and hands the
    /// requests that waited to dispatch (or counts them unprocessed when
    /// stopping).
    fn robots_known(
        &mut self,
        origin: &str,
        host: &str,
        rules: Option<Rules>,
        ctx: &mut actix::Context<Self>,
    ) {
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

    /// `fetch`'s origin is unreachable: fetch again after a wait (its
    /// requests wait too), or give up for a while and drop them, counted.
    fn robots_unreachable(&mut self, fetch: Fetch, ctx: &mut actix::Context<Self>) {
        let Some(cache) = self.robots.as_mut() else {
            return;
        };
        match cache.failed(&fetch.origin, Instant::now()) {
            Failed::RetryAfter(wait) => {
                self.stats.add_named("robotstxt/retry_count", 1);
                ctx.run_later(wait, move |act, ctx| {
                    if act.state != CrawlState::Stopping {
                        act.queue_robots(fetch, ctx);
                    }
                });
            }
            Failed::GaveUp => {
                let waiting = self
                    .robots_waiting
                    .remove(&fetch.origin)
                    .unwrap_or_default();
                warn!(self.log, "robots.txt stayed unreachable; dropping the origin's requests for a while";
                    "origin" => &fetch.origin, "dropped" => waiting.len());
                self.stats.add_named("robotstxt/gave_up", 1);
                for c in waiting {
                    self.robots_drop(c, true);
                }
                self.slots.hold(slot_of(&fetch.url), false);
                self.unstall();
                self.pump(ctx);
            }
        }
    }
}
