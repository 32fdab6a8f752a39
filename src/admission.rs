//! Admission policy: which requests a crawl takes at all.
//!
//! Two rules, applied to every batch before the dupe filter and the queue:
//! a depth limit (a request deeper than it is dropped) and the allowed
//! domains (a request for a host outside them is dropped, unless it is
//! `dont_filter`; a redirect is dropped even then, as `dont_filter` speaks
//! for the URL its author wrote, not for where a server sends it). Plain
//! functions over the requests: the Scheduler counts what they drop and
//! closes its work.

use slog::{debug, info, Logger};
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
    /// Of `offsite`, the redirects (`redirect/offsite_filtered`).
    pub offsite_redirects: u64,
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
    mut batch: Vec<Context<C>>,
    log: &Logger,
) -> (Vec<Context<C>>, Dropped) {
    let mut dropped = Dropped::default();
    if depth_limit.is_none() && allowed_domains.is_empty() {
        return (batch, dropped);
    }
    // In place: a request is large, and those kept need not move.
    batch.retain(|c| {
        if depth_limit.is_some_and(|max| c.request.depth > max) {
            dropped.too_deep += 1;
            return false;
        }
        let redirect = crate::redirect::is_redirect_hop(&c.request.meta);
        if (redirect || !c.request.dont_filter) && !on_site(allowed_domains, &c.request.url) {
            dropped.offsite += 1;
            if redirect {
                dropped.offsite_redirects += 1;
                let from = crate::redirect::chain_of(&c.request.meta).pop();
                info!(log, "redirect off the allowed domains dropped";
                    "url" => %crate::redact::Redacted(&c.request.url),
                    "from" => from.as_ref().map(|u| crate::redact::Redacted(u).to_string()));
            } else {
                debug!(log, "offsite request dropped"; "url" => %crate::redact::Redacted(&c.request.url));
            }
            return false;
        }
        true
    });
    (batch, dropped)
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
                    offsite: 2,
                    offsite_redirects: 0,
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
                offsite: 0,
                offsite_redirects: 0,
            }
        );
        assert_eq!(dropped.total(), 1);
    }

    #[test]
    fn a_redirect_off_the_allowed_domains_is_dropped_even_when_dont_filter() {
        let start = Request::<()>::get("http://example.com/a")
            .unwrap()
            .dont_filter();
        let answer = crate::response::Response {
            url: start.url.clone(),
            status: 302,
            headers: Default::default(),
            body: Default::default(),
            meta: Default::default(),
        };
        let hop = |to: &str| {
            let next = crate::redirect::follow(&start, &answer, to, &[]).unwrap();
            assert!(next.dont_filter, "kept for the dupe filter");
            Context::new(next, None)
        };
        let requests = vec![
            hop("http://other.org/x"),
            hop("http://www.example.com/y"),
            Context::new(start.clone(), None),
        ];
        let domains = vec![normalise("example.com")];
        let (kept, dropped) = admissible(None, &domains, requests, &log());
        assert_eq!(
            urls(&kept),
            ["http://www.example.com/y", "http://example.com/a"]
        );
        assert_eq!(
            dropped,
            Dropped {
                too_deep: 0,
                offsite: 1,
                offsite_redirects: 1,
            }
        );
    }

    #[test]
    fn no_rule_keeps_the_batch_untouched() {
        let pages = ["http://a.test/", "http://b.test/"];
        let (kept, dropped) = admissible(None, &[], batch(&pages), &log());
        assert_eq!(urls(&kept), pages);
        assert_eq!(dropped.total(), 0);
    }
}
