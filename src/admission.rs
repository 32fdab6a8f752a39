//! Admission policy: which requests a crawl takes at all.
//!
//! Two rules, applied to every batch before the dupe filter and the queue:
//! a depth limit (a request deeper than it is dropped) and the allowed
//! domains (a request for a host outside them is dropped, unless it is
//! `dont_filter`). Plain functions over the requests: the Scheduler counts
//! what they drop and closes its work.

use slog::{debug, Logger};
use url::Url;

use crate::context::Context;
use crate::request::Callback;

/// How many requests of a batch the policies dropped, by rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Dropped {
    /// Deeper than the depth limit (`depth/filtered`).
    pub too_deep: u64,
    /// Off the allowed domains (`offsite/filtered`).
    pub offsite: u64,
}

impl Dropped {
    /// Every request dropped.
    pub(crate) fn total(self) -> usize {
        (self.too_deep + self.offsite) as usize
    }
}

/// The requests of `batch` within `depth_limit` and on `allowed_domains`
/// (the batch itself, untouched, when neither rule is set), and how many
/// each rule dropped. Depth priority is not applied here: the Parser
/// applies it once, when a request gets its depth.
pub(crate) fn admissible<C: Callback>(
    depth_limit: Option<u32>,
    allowed_domains: &[String],
    batch: Vec<Context<C>>,
    log: &Logger,
) -> (Vec<Context<C>>, Dropped) {
    let mut dropped = Dropped::default();
    if depth_limit.is_none() && allowed_domains.is_empty() {
        return (batch, dropped);
    }
    let mut kept = Vec::with_capacity(batch.len());
    for c in batch {
        if depth_limit.is_some_and(|max| c.request.depth > max) {
            dropped.too_deep += 1;
            continue;
        }
        if !c.request.dont_filter && !on_site(allowed_domains, &c.request.url) {
            debug!(log, "offsite request dropped"; "url" => %crate::redact::Redacted(&c.request.url));
            dropped.offsite += 1;
            continue;
        }
        kept.push(c);
    }
    (kept, dropped)
}

/// Whether `url`'s host is one of `domains` (normalised) or a subdomain of
/// one (all hosts when `domains` is empty).
fn on_site(domains: &[String], url: &Url) -> bool {
    domains.is_empty()
        || url
            .host_str()
            .is_some_and(|host| domains.iter().any(|d| crate::host::within(host, d)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::normalise;
    use crate::request::Request;

    fn batch(urls: &[&str]) -> Vec<Context<()>> {
        urls.iter()
            .map(|u| Context::new(Request::get(u).unwrap(), None))
            .collect()
    }

    fn urls(kept: &[Context<()>]) -> Vec<&str> {
        kept.iter().map(|c| c.request.url.as_str()).collect()
    }

    fn log() -> Logger {
        Logger::root(slog::Discard, slog::o!())
    }

    #[test]
    fn allowed_domains_keep_the_domain_and_its_subdomains_however_written() {
        let pages = [
            "http://example.com/",
            "http://www.example.com/",
            "http://badexample.com/",
            "http://other.org/",
        ];
        for written in [
            "example.com",
            ".Example.com",
            "*.example.com",
            "example.com.",
        ] {
            let domains = vec![normalise(written)];
            let (kept, dropped) = admissible(None, &domains, batch(&pages), &log());
            assert_eq!(
                urls(&kept),
                ["http://example.com/", "http://www.example.com/"],
                "{written:?}"
            );
            assert_eq!(
                dropped,
                Dropped {
                    too_deep: 0,
                    offsite: 2
                }
            );
        }
    }

    #[test]
    fn dont_filter_passes_offsite_but_not_the_depth_limit() {
        let mut requests = batch(&["http://other.org/a", "http://other.org/b"]);
        requests[0].request.dont_filter = true;
        requests[1].request.dont_filter = true;
        requests[1].request.depth = 3;
        let domains = vec![normalise("example.com")];
        let (kept, dropped) = admissible(Some(2), &domains, requests, &log());
        assert_eq!(urls(&kept), ["http://other.org/a"]);
        assert_eq!(
            dropped,
            Dropped {
                too_deep: 1,
                offsite: 0
            }
        );
        assert_eq!(dropped.total(), 1);
    }

    #[test]
    fn no_rule_keeps_the_batch_untouched() {
        let pages = ["http://a.test/", "http://b.test/"];
        let (kept, dropped) = admissible(None, &[], batch(&pages), &log());
        assert_eq!(urls(&kept), pages);
        assert_eq!(dropped.total(), 0);
    }
}
