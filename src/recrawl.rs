//! Re-crawls: fetching again only what changed since the last crawl.
//!
//! A crawl with a job directory keeps a *page index* there: for every page
//! it fetched (a GET without a body, answered 2xx), the request that
//! fetched it, the answer's validators (`ETag`, `Last-Modified`) and a
//! digest of its body. A crawl started on the directory of a finished
//! crawl with re-crawling on revisits every page of the index first, each
//! with the validators it was answered with (`If-None-Match`,
//! `If-Modified-Since`), then pulls the spider's start requests as any
//! crawl does. Each answer to a revisit is judged:
//!
//! - `304 Not Modified`, or the same body (a server without validators):
//!   **unchanged**, not parsed, so it yields no items and no links;
//! - another body: **changed**, parsed as any page;
//! - `404`/`410`: **gone**, dropped from the index (not a failure);
//!
//! and any page fetched that the index did not hold is **new**. Links are
//! followed from changed and new pages only; the revisits go through the
//! dupe filter first, so a link to a known page never fetches it twice.
//!
//! Sitemaps' `<lastmod>` spare most of those requests on a site that keeps
//! its sitemaps true. Each page of the index keeps when it was fetched
//! (the answer's `Date`: the server's clock, which its sitemaps follow). A
//! sitemap's revisit asks for the whole body and is always read. A page a
//! sitemap listed with a `<lastmod>` ([`listed`]) is not revisited at the
//! start: its revisit waits in the Scheduler for the first request for
//! the page ([`meet`]). If that is the sitemap's, and its `<lastmod>` ends
//! before the page's fetch ([`unchanged_since`]), the page is **unchanged**
//! without a request (`recrawl/lastmod_skipped`); otherwise the revisit is
//! sent. A page no sitemap lists any more is revisited once everything
//! else is done.
//!
//! This module holds the page index's records and the rules above; the
//! Pool applies them to each answer, the job directory stores the index.

use serde::{Deserialize, Serialize};
use siphasher::sip::SipHasher13;
use std::hash::Hasher;
use url::Url;

use crate::redirect::{REDIRECT_REASONS, REDIRECT_URLS};
use crate::request::{is_validator, Callback, KnownPage, Request};
use crate::response::Response;
use crate::sitemap::{SITEMAP_DEPTH, SITEMAP_LASTMOD};
use awc::http::Method;

/// Revisits answered `304` or with the body they had.
pub(crate) const UNCHANGED: &str = "recrawl/unchanged";
/// Revisits answered with another body.
pub(crate) const CHANGED: &str = "recrawl/changed";
/// Pages fetched during a re-crawl that the index did not hold.
pub(crate) const NEW: &str = "recrawl/new";
/// Revisits answered `404` or `410`.
pub(crate) const GONE: &str = "recrawl/gone";
/// Pages of the index a re-crawl set out to revisit.
pub(crate) const KNOWN: &str = "recrawl/known";
/// Revisits never sent: a sitemap's `<lastmod>` said the page had not
/// changed since it was fetched (counted in `recrawl/unchanged` too).
pub(crate) const LASTMOD_SKIPPED: &str = "recrawl/lastmod_skipped";
/// Revisits that failed (after their retries; not `404`/`410`, which are
/// gone): the page keeps its record and is revisited next time.
pub(crate) const FAILED: &str = "recrawl/failed";
/// Lines of a re-crawl's list that could not be read (the file was
/// damaged): those pages are not revisited.
pub(crate) const LIST_UNREADABLE: &str = "recrawl/list_unreadable";
/// Sitemaps and robots.txt files read during a re-crawl (always fetched
/// whole and read), changed or not: not pages, not counted as pages.
pub(crate) const SITEMAPS: &str = "recrawl/sitemaps";

/// Fixed keys: digests must compare across processes and runs.
const KEYS: (u64, u64) = (0x7370_696e_6e65_7265, 0x7420_7061_6765_7321);

/// One page of the index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "C: Callback")]
pub(crate) struct PageRecord<C> {
    /// The request that fetched it, as the spider made it (no validators).
    pub request: Request<C>,
    /// What the answer was.
    pub seen: KnownPage,
}

/// A change to the index, recorded once its request completed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound = "C: Callback", rename_all = "snake_case")]
pub(crate) enum PageUpdate<C> {
    /// The page was fetched (or confirmed unchanged): this is its record now.
    Seen(Box<PageRecord<C>>),
    /// The page is gone.
    Gone(Url),
}

/// What an answer says of its page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not in the index.
    New,
    /// In the index, with another body now.
    Changed,
    /// In the index, and the same.
    Unchanged,
}

impl Verdict {
    /// The counter of this verdict on what `request` fetched: a sitemap
    /// (or a robots.txt read for its `Sitemap:` lines), read afresh
    /// whatever it says, is counted apart from the pages.
    pub(crate) fn counter<C>(self, request: &Request<C>) -> &'static str {
        if is_sitemap(request) {
            return SITEMAPS;
        }
        match self {
            Verdict::New => NEW,
            Verdict::Changed => CHANGED,
            Verdict::Unchanged => UNCHANGED,
        }
    }
}

/// SipHash-1-3 of a body, with fixed keys.
pub(crate) fn digest(body: &[u8]) -> u64 {
    let mut h = SipHasher13::new_with_keys(KEYS.0, KEYS.1);
    h.write(body);
    h.finish()
}

/// The revisit of an indexed page: its request, carrying what was seen,
/// sent with the validators unless `conditional` is off (the spider wants
/// every page's items, so every body).
/// A sitemap's revisit is sent without them and always parsed: the
/// re-crawl needs its `<lastmod>`s, and a `304` has no body to read.
pub(crate) fn revisit<C>(page: PageRecord<C>, conditional: bool) -> Request<C> {
    let PageRecord { mut request, seen } = page;
    let sitemap = is_sitemap(&request);
    let conditional =
        conditional && !sitemap && (seen.etag.is_some() || seen.last_modified.is_some());
    request.known = Some(Box::new(KnownPage {
        conditional,
        parse: sitemap,
        skip: false,
        ..seen
    }));
    request
}

/// Whether `request` fetched a sitemap, or a robots.txt for its `Sitemap:`
/// lines, for [`SitemapRules`](crate::SitemapRules).
fn is_sitemap<C>(request: &Request<C>) -> bool {
    request.meta.contains_key(SITEMAP_DEPTH)
}

/// The `<lastmod>` a sitemap gave with a page's request.
fn lastmod_of<C>(request: &Request<C>) -> Option<&str> {
    request.meta.get(SITEMAP_LASTMOD)?.as_str()
}

/// Whether a revisit waits for its sitemap: the page was listed in one
/// with a `<lastmod>`, which the re-crawl reads afresh to learn whether
/// the page changed before asking the page itself.
pub(crate) fn listed<C>(revisit: &Request<C>) -> bool {
    lastmod_of(revisit).is_some()
}

/// Whether `incoming`, a request for a page fetched at `fetched` whose
/// revisit waited for its sitemap, says the page has not changed since:
/// it is the sitemap's, with a `<lastmod>` before that fetch. The page is
/// then not asked at all ([`skip`]).
pub(crate) fn lastmod_skips<C>(incoming: &Request<C>, fetched: Option<i64>) -> bool {
    match (lastmod_of(incoming), fetched) {
        (Some(lastmod), Some(fetched)) => unchanged_since(lastmod, fetched),
        _ => false,
    }
}

/// Marks `request` as a known page left unchanged without being asked:
/// counted at admission, never sent.
pub(crate) fn skip<C>(request: &mut Request<C>) {
    request.known = Some(Box::new(KnownPage {
        skip: true,
        ..KnownPage::default()
    }));
}

/// The revisit of a page that waited for its sitemap, sent in the place of
/// `incoming` (the sitemap's request for the page, or a link to it): as
/// the index holds it, with the sitemap's `<lastmod>` now if `incoming`
/// carries one.
pub(crate) fn meet<C>(mut revisit: Request<C>, incoming: &Request<C>) -> Request<C> {
    if let Some(lastmod) = lastmod_of(incoming) {
        let lastmod = serde_json::Value::from(lastmod);
        revisit.meta.insert(SITEMAP_LASTMOD.into(), lastmod);
    }
    revisit
}

/// Whether a page whose sitemap gives `lastmod` cannot have changed since
/// `fetched` (seconds since the epoch): every instant `lastmod` may mean
/// is before the second `fetched` names. A date alone has no time zone:
/// it means any time of that day anywhere (its end is noon UTC of the
/// next day, midnight at UTC−12); a time means its whole second (minute,
/// without seconds). A `<lastmod>` that is no W3C date-time says nothing,
/// and the page is asked.
pub(crate) fn unchanged_since(lastmod: &str, fetched: i64) -> bool {
    lastmod_ends(lastmod).is_some_and(|end| end <= fetched)
}

/// The end of the span a W3C date-time names, in seconds since the
/// epoch: the next second after a time, the last midnight on Earth that
/// ends a date.
fn lastmod_ends(lastmod: &str) -> Option<i64> {
    let text = lastmod.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp() + 1);
    }
    // The W3C profile also allows a time without seconds, with an offset
    // ("T10:00+02:00") or in UTC ("T10:00Z").
    if let Ok(t) = chrono::DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M%#z") {
        return Some(t.timestamp() + 60);
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%MZ") {
        return Some(t.and_utc().timestamp() + 60);
    }
    let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(day.succ_opt()?.and_hms_opt(12, 0, 0)?.and_utc().timestamp())
}

/// When the body of `response` was current: its `Date` (else now), less
/// its `Age` (a cache that answered with a copy it held that long).
fn fetched_at(response: &Response) -> i64 {
    let date = response
        .header("date")
        .and_then(|d| httpdate::parse_http_date(d).ok());
    let at = date.unwrap_or_else(std::time::SystemTime::now);
    let at = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let age = response
        .header("age")
        .and_then(|a| a.trim().parse::<i64>().ok());
    at.saturating_sub(age.unwrap_or(0).max(0))
}

/// Adds a revisit's validators to its headers, once (a retry already has
/// them). Nothing for any other request.
pub(crate) fn add_validators<C>(request: &mut Request<C>) {
    let Some(known) = request.known.as_deref().filter(|k| k.conditional) else {
        return;
    };
    if request.headers.iter().any(|(n, _)| is_validator(n)) {
        return;
    }
    if let Some(etag) = &known.etag {
        request
            .headers
            .push(("If-None-Match".to_string(), etag.clone()));
    }
    if let Some(date) = &known.last_modified {
        request
            .headers
            .push(("If-Modified-Since".to_string(), date.clone()));
    }
}

/// Whether the index keeps pages fetched by `request`: a GET without a
/// body whose answer is held in memory.
fn indexed<C>(request: &Request<C>) -> bool {
    request.method == Method::GET && request.body.is_empty() && request.stream_to.is_none()
}

/// What `response` says of the page `request` fetched, and its record
/// for the index (`None` when it is the one the index holds: a revisit
/// answered as before); `None` for what the index does not keep (another
/// method, a streamed body, a status other than 2xx or a revisit's 304).
pub(crate) fn judge<C: Callback>(
    request: &Request<C>,
    response: &Response,
) -> Option<(Verdict, Option<PageRecord<C>>)> {
    if !indexed(request) {
        return None;
    }
    let known = request.known.as_deref();
    let (verdict, mut seen) = match (response.status, known) {
        (304, Some(k)) => {
            // A 304 may update the validators (RFC 9110, 15.4.5).
            let mut seen = KnownPage {
                conditional: false,
                parse: false,
                skip: false,
                ..k.clone()
            };
            if let Some(etag) = response.header("etag") {
                seen.etag = Some(etag.to_string());
            }
            (Verdict::Unchanged, seen)
        }
        (200..=299, _) => {
            let seen = KnownPage {
                etag: response.header("etag").map(str::to_string),
                last_modified: response.header("last-modified").map(str::to_string),
                digest: digest(&response.body),
                fetched: Some(fetched_at(response)),
                ..KnownPage::default()
            };
            let verdict = match known {
                None => Verdict::New,
                Some(k) if k.digest == seen.digest => Verdict::Unchanged,
                Some(_) => Verdict::Changed,
            };
            (verdict, seen)
        }
        _ => return None,
    };
    let same = |k: &KnownPage| {
        (&k.etag, &k.last_modified, k.digest) == (&seen.etag, &seen.last_modified, seen.digest)
    };
    // A page asked because its sitemap's `<lastmod>` passed the fetch the
    // index holds is recorded again, with this fetch's time, or its
    // sitemap would have it asked at every re-crawl.
    let outdated = |k: &KnownPage| {
        lastmod_of(request).is_some()
            && k.fetched
                .is_none_or(|f| lastmod_of(request).is_some_and(|l| !unchanged_since(l, f)))
    };
    if known.is_some_and(|k| same(k) && !outdated(k)) {
        return Some((verdict, None));
    }
    if verdict == Verdict::Unchanged && response.status == 304 {
        seen.fetched = Some(fetched_at(response));
    }
    let mut request = request.clone();
    request.known = None;
    request.headers.retain(|(n, _)| !is_validator(n));
    // A revisit starts afresh: a redirect chain that led here once must not
    // count against (or loop with) the redirects of the next visit.
    request.meta.remove(REDIRECT_URLS);
    request.meta.remove(REDIRECT_REASONS);
    Some((verdict, Some(PageRecord { request, seen })))
}

/// Whether a failed status means an indexed page is gone.
pub(crate) fn is_gone<C>(request: &Request<C>, status: u16) -> bool {
    request.known.is_some() && matches!(status, 404 | 410)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::test_support::{req, response, Cb};

    fn answer(status: u16, body: &str, headers: &[(&str, &str)]) -> Response {
        let mut r = *response("http://h/a");
        r.status = status;
        r.body = bytes::Bytes::copy_from_slice(body.as_bytes());
        for (name, value) in headers {
            r.headers.insert(
                awc::http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                awc::http::header::HeaderValue::from_str(value).unwrap(),
            );
        }
        r
    }

    fn first_fetch(body: &str, headers: &[(&str, &str)]) -> PageRecord<Cb> {
        let (verdict, record) = judge(&req("http://h/a"), &answer(200, body, headers)).unwrap();
        assert_eq!(verdict, Verdict::New);
        record.unwrap()
    }

    #[test]
    fn a_revisit_carries_the_validators_once_and_they_are_never_stored() {
        let record = first_fetch(
            "v1",
            &[
                ("etag", "\"a1\""),
                ("last-modified", "Tue, 01 Dec 2026 10:00:00 GMT"),
            ],
        );
        assert_eq!(record.seen.etag.as_deref(), Some("\"a1\""));
        assert!(record.request.headers.is_empty());
        let mut again = revisit(record.clone(), true);
        add_validators(&mut again);
        add_validators(&mut again);
        assert_eq!(
            again.headers,
            [
                ("If-None-Match".to_string(), "\"a1\"".to_string()),
                (
                    "If-Modified-Since".to_string(),
                    "Tue, 01 Dec 2026 10:00:00 GMT".to_string()
                ),
            ]
        );
        // A 304 with the same validators leaves the index's record as it
        // is; one with a new ETag gives a record without the validators.
        assert_eq!(
            judge(&again, &answer(304, "", &[])),
            Some((Verdict::Unchanged, None))
        );
        let (verdict, stored) = judge(&again, &answer(304, "", &[("etag", "\"a2\"")])).unwrap();
        assert_eq!(verdict, Verdict::Unchanged);
        let stored = stored.unwrap();
        assert_eq!(stored.request, record.request);
        assert_eq!(stored.seen.etag.as_deref(), Some("\"a2\""));
        // Without `conditional`, or without validators, none are sent.
        let mut plain = revisit(record.clone(), false);
        add_validators(&mut plain);
        assert!(plain.headers.is_empty());
        let mut bare = revisit(first_fetch("v1", &[]), true);
        add_validators(&mut bare);
        assert!(bare.headers.is_empty());
    }

    #[test]
    fn answers_are_judged_by_status_validators_and_body() {
        let record = first_fetch("v1", &[("etag", "\"a1\"")]);
        let known = revisit(record, true);
        let judged = |status, body, headers: &[(&str, &str)]| {
            judge(&known, &answer(status, body, headers)).map(|(v, r)| (v, r.unwrap().seen.etag))
        };
        assert_eq!(
            judged(304, "", &[("etag", "\"a2\"")]),
            Some((Verdict::Unchanged, Some("\"a2\"".into()))),
            "a 304 keeps the page and takes its new validator"
        );
        assert_eq!(
            judged(200, "v1", &[]),
            Some((Verdict::Unchanged, None)),
            "the same body is unchanged, whatever the validators"
        );
        assert_eq!(
            judged(200, "v2", &[("etag", "\"b\"")]),
            Some((Verdict::Changed, Some("\"b\"".into())))
        );
        assert_eq!(judged(500, "", &[]), None);
        assert_eq!(
            judge(&req("http://h/a"), &answer(304, "", &[])).map(|(v, _)| v),
            None,
            "a 304 to a request that was no revisit says nothing"
        );
        assert!(is_gone(&known, 404) && is_gone(&known, 410) && !is_gone(&known, 500));
        assert!(
            !is_gone(&req("http://h/a"), 404),
            "only an indexed page can be gone"
        );
        let mut redirected = req("http://h/a").meta("spider_key", 1);
        redirected
            .meta
            .insert(REDIRECT_URLS.into(), serde_json::json!(["http://h/old"]));
        redirected
            .meta
            .insert(REDIRECT_REASONS.into(), serde_json::json!([301]));
        let (_, stored) = judge(&redirected, &answer(200, "x", &[])).unwrap();
        assert_eq!(
            stored.unwrap().request.meta.keys().collect::<Vec<_>>(),
            ["spider_key"],
            "the spider's meta is kept, a redirect chain is not"
        );
        let post = req("http://h/a").method(Method::POST);
        assert_eq!(judge(&post, &answer(200, "x", &[])).map(|(v, _)| v), None);
    }

    #[test]
    fn a_lastmod_skips_a_page_only_when_all_of_it_is_before_the_fetch() {
        // 2024-05-01T10:00:00Z
        let at = 1_714_557_600;
        let cases = [
            ("2024-05-01T09:59:59Z", at, true),
            ("2024-05-01T10:00:00Z", at, false),
            ("2024-05-01T10:00:00+00:00", at + 1, true),
            ("2024-05-01T12:00:00+02:00", at + 1, true),
            ("2024-05-01T09:59:59.5Z", at, true),
            ("2024-05-01T09:59Z", at, true),
            ("2024-05-01T10:00+00:00", at + 59, false),
            // A date alone: any time of that day, in any time zone.
            ("2024-05-01", at, false),
            ("2024-04-30", at, false),
            ("2024-04-30", at + 7_200, true),
            (" 2024-04-29 ", at, true),
            ("2024-05", at, false),
            ("yesterday", at, false),
        ];
        for (lastmod, fetched, skips) in cases {
            assert_eq!(unchanged_since(lastmod, fetched), skips, "{lastmod}");
        }
    }

    #[test]
    fn a_waiting_revisit_meets_its_sitemap_and_a_sitemap_is_always_read() {
        let fetched = Some(1_714_557_600);
        let request = req("http://h/a").meta(SITEMAP_LASTMOD, "2024-04-01");
        let seen = KnownPage {
            etag: Some("\"1\"".into()),
            fetched,
            ..KnownPage::default()
        };
        let waiting = revisit(PageRecord { request, seen }, true);
        assert!(listed(&waiting));
        let listing = |lastmod: &str| req("http://h/a").meta(SITEMAP_LASTMOD, lastmod);
        assert!(lastmod_skips(&listing("2024-04-29"), fetched));
        assert!(
            !lastmod_skips(&listing("2024-04-30"), None),
            "fetched when?"
        );
        assert!(!lastmod_skips(&listing("2024-05-02"), fetched));
        assert!(
            !lastmod_skips(&req("http://h/a"), fetched),
            "a link says nothing"
        );
        let met = meet(waiting.clone(), &listing("2024-05-02"));
        let known = met.known.as_deref().unwrap();
        assert!(!known.skip && known.conditional);
        assert_eq!(met.meta[SITEMAP_LASTMOD], "2024-05-02", "the sitemap's now");
        let met = meet(waiting.clone(), &req("http://h/a"));
        assert_eq!(met, waiting, "a link sends the revisit as it was");
        let mut skipped = listing("2024-04-30");
        skip(&mut skipped);
        assert!(skipped.known.unwrap().skip);

        // A sitemap's revisit asks for the whole body and is parsed.
        let sitemap = req("http://h/s.xml").meta(SITEMAP_DEPTH, 0);
        let seen = KnownPage {
            etag: Some("\"s\"".into()),
            ..KnownPage::default()
        };
        let known = revisit(
            PageRecord {
                request: sitemap,
                seen,
            },
            true,
        )
        .known
        .unwrap();
        assert!(known.parse && !known.conditional);
    }

    #[test]
    fn a_page_keeps_when_it_was_fetched_and_is_recorded_again_when_its_lastmod_passed_it() {
        let date = "Wed, 01 May 2024 10:00:00 GMT";
        let record = first_fetch("v1", &[("etag", "\"a1\""), ("date", date)]);
        assert_eq!(record.seen.fetched, Some(1_714_557_600));
        let cached = first_fetch("v1", &[("date", date), ("age", "600")]);
        assert_eq!(
            cached.seen.fetched,
            Some(1_714_557_000),
            "a cached copy is older"
        );
        let known = revisit(record.clone(), true);
        let later = "Thu, 02 May 2024 10:00:00 GMT";
        assert_eq!(
            judge(&known, &answer(304, "", &[("date", later)])),
            Some((Verdict::Unchanged, None)),
            "nothing new to keep"
        );
        // Asked because the sitemap's `<lastmod>` passed the fetch: kept
        // with this fetch's time, so it is not asked again for it.
        let mut asked = known.clone();
        asked
            .meta
            .insert(SITEMAP_LASTMOD.into(), "2024-05-01T12:00:00Z".into());
        let (verdict, stored) = judge(&asked, &answer(304, "", &[("date", later)])).unwrap();
        assert_eq!(verdict, Verdict::Unchanged);
        let stored = stored.unwrap();
        assert_eq!(stored.seen.fetched, Some(1_714_644_000));
        assert_eq!(stored.request.meta[SITEMAP_LASTMOD], "2024-05-01T12:00:00Z");
        assert!(!stored.seen.skip && !stored.seen.parse);
    }

    #[test]
    fn digests_are_fixed_across_runs() {
        // Stored in job directories: a new release must compute the same.
        assert_eq!(digest(b""), 0x8a46_7cab_feb5_37c7);
        assert_ne!(digest(b"a"), digest(b"b"));
    }
}
