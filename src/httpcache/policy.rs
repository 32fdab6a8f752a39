//! When a stored answer may be used: the `dummy` and `rfc9111` policies as
//! pure functions of headers and times, with no file system or actor.
//!
//! The `rfc9111` rules are those of a private cache (RFC 9111): freshness
//! from `Cache-Control: max-age` (`s-maxage` is for shared caches and is
//! ignored), else `Expires` minus `Date`, else, for a status that is
//! cacheable by default, 10 % of the time since `Last-Modified` (the
//! heuristic §4.2.2 allows); the age from `Date`, `Age` and the times of
//! the exchange (§4.2.3); the request's own `Cache-Control` (`no-cache`,
//! `no-store`, `max-age`, `max-stale`, `min-fresh`) honoured. Dates are
//! read with `httpdate`; the only hand-written parsing is splitting
//! `Cache-Control` into its comma-separated directives.

use std::time::{Duration, SystemTime};

use awc::http::header::{HeaderMap, HeaderName, HeaderValue};

/// Statuses a cache may store and give a heuristic freshness without
/// explicit freshness information (RFC 9110 §15.1).
const HEURISTIC_STATUSES: &[u16] = &[200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// Headers a `304` never changes in the stored answer (RFC 9111 §3.2): the
/// connection's own, and those describing the stored body as it is.
const NOT_UPDATED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-encoding",
    "content-range",
];

/// The `Cache-Control` directives this cache acts on.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Directives {
    /// Never store (request or response).
    pub no_store: bool,
    /// Never use without revalidating (request or response).
    pub no_cache: bool,
    /// A stale answer must be revalidated, whatever the request accepts.
    pub must_revalidate: bool,
    /// Freshness (response) or the oldest answer accepted (request); an
    /// unreadable value counts as 0, which RFC 9111 §4.2.1 asks for.
    pub max_age: Option<Duration>,
    /// Staleness the request accepts: `Some(None)` for any.
    pub max_stale: Option<Option<Duration>>,
    /// Freshness the request wants left.
    pub min_fresh: Option<Duration>,
}

/// The `Cache-Control` directives of `headers`, every value of the header
/// together; unknown directives are ignored.
pub(crate) fn directives(headers: &HeaderMap) -> Directives {
    let mut d = Directives::default();
    let values = headers
        .get_all("cache-control")
        .filter_map(|v| v.to_str().ok());
    for part in values.flat_map(|v| v.split(',')) {
        let (name, arg) = match part.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
            None => (part.trim(), None),
        };
        let secs = || Duration::from_secs(arg.and_then(|a| a.parse().ok()).unwrap_or(0));
        match name.to_ascii_lowercase().as_str() {
            "no-store" => d.no_store = true,
            "no-cache" => d.no_cache = true,
            "must-revalidate" => d.must_revalidate = true,
            "max-age" => d.max_age = Some(secs()),
            "max-stale" => d.max_stale = Some(arg.map(|_| secs())),
            "min-fresh" => d.min_fresh = Some(secs()),
            _ => {}
        }
    }
    d
}

/// A header read as an HTTP date; `None` when absent or malformed.
fn date(headers: &HeaderMap, name: &str) -> Option<SystemTime> {
    let text = headers.get(name)?.to_str().ok()?;
    httpdate::parse_http_date(text).ok()
}

/// How long a stored answer stays fresh from its origin date (RFC 9111
/// §4.2.1): `max-age`, else `Expires` minus `Date`, else the heuristic
/// (a tenth of the time since `Last-Modified`) for a status cacheable by
/// default, else zero. `no-cache` makes it zero: stored, but revalidated
/// on every use. `received` stands in for a missing `Date`.
pub(crate) fn freshness_lifetime(
    status: u16,
    headers: &HeaderMap,
    received: SystemTime,
) -> Duration {
    let cc = directives(headers);
    if cc.no_cache {
        return Duration::ZERO;
    }
    if let Some(age) = cc.max_age {
        return age;
    }
    let origin = date(headers, "date").unwrap_or(received);
    if headers.contains_key("expires") {
        // An unreadable `Expires` ("0") means already expired.
        return date(headers, "expires")
            .and_then(|e| e.duration_since(origin).ok())
            .unwrap_or(Duration::ZERO);
    }
    match date(headers, "last-modified") {
        Some(modified) if HEURISTIC_STATUSES.contains(&status) => {
            origin.duration_since(modified).unwrap_or(Duration::ZERO) / 10
        }
        _ => Duration::ZERO,
    }
}

/// The current age of a stored answer (RFC 9111 §4.2.3): the larger of
/// the age its `Date` shows and its `Age` plus the exchange's delay, plus
/// the time it has been stored.
pub(crate) fn current_age(
    headers: &HeaderMap,
    requested: SystemTime,
    received: SystemTime,
    now: SystemTime,
) -> Duration {
    let apparent = date(headers, "date")
        .and_then(|d| received.duration_since(d).ok())
        .unwrap_or(Duration::ZERO);
    let age_value = headers
        .get("age")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    let delay = received.duration_since(requested).unwrap_or(Duration::ZERO);
    let initial = apparent.max(age_value + delay);
    initial + now.duration_since(received).unwrap_or(Duration::ZERO)
}

/// The stored answer's times and headers, as the freshness check reads them.
pub(crate) struct Stored<'a> {
    /// Its status.
    pub status: u16,
    /// Its headers.
    pub headers: &'a HeaderMap,
    /// When its request was sent.
    pub requested: SystemTime,
    /// When it was received.
    pub received: SystemTime,
}

/// Whether `stored` may answer a request with `request` directives at
/// `now` without asking the server (RFC 9111 §4.2, §5.2.1).
pub(crate) fn is_fresh(stored: &Stored<'_>, request: &Directives, now: SystemTime) -> bool {
    if request.no_cache {
        return false;
    }
    let mut lifetime = freshness_lifetime(stored.status, stored.headers, stored.received);
    let mut age = current_age(stored.headers, stored.requested, stored.received, now);
    if let Some(max) = request.max_age {
        lifetime = lifetime.min(max);
    }
    if let Some(wanted) = request.min_fresh {
        age += wanted;
    }
    if age < lifetime {
        return true;
    }
    let response = directives(stored.headers);
    if response.must_revalidate || response.no_cache {
        return false;
    }
    match request.max_stale {
        Some(None) => true,
        Some(Some(stale)) => age < lifetime + stale,
        None => false,
    }
}

/// Whether the `rfc9111` policy stores an answer: a final status other
/// than `206` and `304`, no `no-store` on the request or the answer, no
/// `Vary: *`, explicit freshness or a status cacheable by default, and
/// something to gain: some freshness or a validator to revalidate with.
pub(crate) fn storable(status: u16, headers: &HeaderMap, request: &Directives) -> bool {
    let cc = directives(headers);
    let vary_all = headers
        .get_all("vary")
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|f| f.trim() == "*"));
    if request.no_store || cc.no_store || vary_all || status < 200 || matches!(status, 206 | 304) {
        return false;
    }
    let explicit = cc.max_age.is_some() || headers.contains_key("expires");
    if !explicit && !HEURISTIC_STATUSES.contains(&status) {
        return false;
    }
    let fresh = !freshness_lifetime(status, headers, SystemTime::now()).is_zero();
    fresh || validators(headers).next().is_some()
}

/// The conditional headers that revalidate an answer with these headers:
/// `If-None-Match` from `ETag`, `If-Modified-Since` from `Last-Modified`.
pub(crate) fn validators(headers: &HeaderMap) -> impl Iterator<Item = (String, String)> + '_ {
    let pairs = [
        ("etag", "if-none-match"),
        ("last-modified", "if-modified-since"),
    ];
    pairs.into_iter().filter_map(|(from, to)| {
        let value = headers.get(from)?.to_str().ok()?;
        Some((to.to_string(), value.to_string()))
    })
}

/// The stored headers updated by a `304`'s (RFC 9111 §3.2, §4.3.4): each
/// header the `304` carries replaces the stored values of that name, but
/// for the connection's headers and those describing the stored body.
pub(crate) fn update_headers(stored: &mut HeaderMap, not_modified: &HeaderMap) {
    let names: Vec<&HeaderName> = not_modified
        .keys()
        .filter(|n| !NOT_UPDATED.contains(&n.as_str()))
        .collect();
    for name in names {
        let values: Vec<HeaderValue> = not_modified.get_all(name).cloned().collect();
        stored.remove(name);
        for v in values {
            stored.append(name.clone(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-01 00:00:00 UTC.
    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn headers(pairs: &[(&str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        h
    }

    fn http_date(t: SystemTime) -> String {
        httpdate::fmt_http_date(t)
    }

    #[test]
    fn directives_split_on_commas_across_values_and_read_their_arguments() {
        let h = headers(&[
            ("cache-control", "Max-Age=\"60\", must-revalidate".into()),
            ("cache-control", "no-cache, s-maxage=900, private".into()),
        ]);
        let d = directives(&h);
        assert_eq!(d.max_age, Some(secs(60)));
        assert!(d.must_revalidate && d.no_cache && !d.no_store);
        let req = directives(&headers(&[(
            "cache-control",
            "max-stale, min-fresh=5, max-age=bad".into(),
        )]));
        assert_eq!(req.max_stale, Some(None));
        assert_eq!(req.min_fresh, Some(secs(5)));
        // An unreadable max-age is zero: stale at once.
        assert_eq!(req.max_age, Some(Duration::ZERO));
    }

    #[test]
    fn lifetime_from_max_age_over_expires_and_ignoring_s_maxage() {
        let date = http_date(t0());
        let expires = http_date(t0() + secs(300));
        let both = headers(&[
            ("cache-control", "max-age=60, s-maxage=900".into()),
            ("date", date.clone()),
            ("expires", expires.clone()),
        ]);
        assert_eq!(freshness_lifetime(200, &both, t0()), secs(60));
        let expiring = headers(&[("date", date.clone()), ("expires", expires)]);
        assert_eq!(freshness_lifetime(200, &expiring, t0()), secs(300));
        // Without a Date, the time received stands in.
        let no_date = headers(&[("expires", http_date(t0() + secs(30)))]);
        assert_eq!(freshness_lifetime(200, &no_date, t0()), secs(30));
        let bad = headers(&[("date", date.clone()), ("expires", "0".into())]);
        assert_eq!(freshness_lifetime(200, &bad, t0()), Duration::ZERO);
        let no_cache = headers(&[("cache-control", "no-cache, max-age=60".into())]);
        assert_eq!(freshness_lifetime(200, &no_cache, t0()), Duration::ZERO);
        let s_maxage_only = headers(&[("cache-control", "s-maxage=900".into())]);
        assert_eq!(
            freshness_lifetime(200, &s_maxage_only, t0()),
            Duration::ZERO
        );
    }

    #[test]
    fn heuristic_lifetime_is_a_tenth_of_the_time_since_last_modified() {
        let h = headers(&[
            ("date", http_date(t0())),
            ("last-modified", http_date(t0() - secs(10_000))),
        ]);
        assert_eq!(freshness_lifetime(200, &h, t0()), secs(1_000));
        assert_eq!(freshness_lifetime(404, &h, t0()), secs(1_000));
        // Not for a status that is not cacheable by default.
        assert_eq!(freshness_lifetime(302, &h, t0()), Duration::ZERO);
        assert_eq!(freshness_lifetime(500, &h, t0()), Duration::ZERO);
    }

    #[test]
    fn age_takes_the_larger_of_date_and_age_and_adds_the_time_stored() {
        // Sent at t0, received 2 s later; Date 10 s before that; Age 30.
        let (sent, got) = (t0(), t0() + secs(2));
        let h = headers(&[("date", http_date(got - secs(10))), ("age", "30".into())]);
        // Age 30 + delay 2 = 32 > apparent 10; stored 100 s.
        assert_eq!(current_age(&h, sent, got, got + secs(100)), secs(132));
        let h = headers(&[("date", http_date(got - secs(10)))]);
        assert_eq!(current_age(&h, sent, got, got + secs(100)), secs(110));
        // A Date in the future is no negative age.
        let h = headers(&[("date", http_date(got + secs(50)))]);
        assert_eq!(current_age(&h, sent, got, got), secs(2));
    }

    fn stored(h: &HeaderMap) -> Stored<'_> {
        Stored {
            status: 200,
            headers: h,
            requested: t0(),
            received: t0(),
        }
    }

    #[test]
    fn fresh_until_the_lifetime_is_used_up() {
        let h = headers(&[
            ("cache-control", "max-age=60".into()),
            ("date", http_date(t0())),
        ]);
        let none = Directives::default();
        assert!(is_fresh(&stored(&h), &none, t0() + secs(59)));
        assert!(!is_fresh(&stored(&h), &none, t0() + secs(60)));
    }

    #[test]
    fn the_request_directives_narrow_or_widen_freshness() {
        let h = headers(&[
            ("cache-control", "max-age=60".into()),
            ("date", http_date(t0())),
        ]);
        let at = |s| t0() + secs(s);
        let req = |text: &str| directives(&headers(&[("cache-control", text.into())]));
        assert!(!is_fresh(&stored(&h), &req("no-cache"), at(1)));
        assert!(!is_fresh(&stored(&h), &req("max-age=10"), at(10)));
        assert!(is_fresh(&stored(&h), &req("max-age=10"), at(9)));
        assert!(!is_fresh(&stored(&h), &req("min-fresh=20"), at(40)));
        assert!(is_fresh(&stored(&h), &req("min-fresh=20"), at(39)));
        assert!(is_fresh(&stored(&h), &req("max-stale=30"), at(89)));
        assert!(!is_fresh(&stored(&h), &req("max-stale=30"), at(90)));
        assert!(is_fresh(&stored(&h), &req("max-stale"), at(10_000)));
        // must-revalidate refuses any staleness.
        let strict = headers(&[
            ("cache-control", "max-age=60, must-revalidate".into()),
            ("date", http_date(t0())),
        ]);
        assert!(!is_fresh(&stored(&strict), &req("max-stale"), at(61)));
    }

    #[test]
    fn what_the_rfc9111_policy_stores() {
        let none = Directives::default();
        let etag = || ("etag", "\"v1\"".to_string());
        assert!(storable(200, &headers(&[etag()]), &none));
        assert!(storable(
            200,
            &headers(&[("cache-control", "max-age=5".into())]),
            &none
        ));
        // Nothing to gain: no freshness, no validator.
        assert!(!storable(200, &headers(&[]), &none));
        assert!(!storable(
            200,
            &headers(&[etag(), ("cache-control", "no-store".into())]),
            &none
        ));
        let no_store = directives(&headers(&[("cache-control", "no-store".into())]));
        assert!(!storable(200, &headers(&[etag()]), &no_store));
        assert!(!storable(
            200,
            &headers(&[etag(), ("vary", "accept, *".into())]),
            &none
        ));
        assert!(!storable(304, &headers(&[etag()]), &none));
        assert!(!storable(206, &headers(&[etag()]), &none));
        // 302 only with explicit freshness.
        assert!(!storable(302, &headers(&[etag()]), &none));
        assert!(storable(
            302,
            &headers(&[("cache-control", "max-age=5".into())]),
            &none
        ));
        // no-cache with a validator: stored, to revalidate each time.
        assert!(storable(
            200,
            &headers(&[etag(), ("cache-control", "no-cache".into())]),
            &none
        ));
    }

    #[test]
    fn validators_become_conditional_headers() {
        let h = headers(&[
            ("etag", "\"abc\"".into()),
            ("last-modified", http_date(t0())),
        ]);
        let got: Vec<_> = validators(&h).collect();
        assert_eq!(
            got,
            [
                ("if-none-match".to_string(), "\"abc\"".to_string()),
                ("if-modified-since".to_string(), http_date(t0())),
            ]
        );
    }

    #[test]
    fn a_304_replaces_headers_but_not_those_of_the_body() {
        let mut kept = headers(&[
            ("content-length", "5".into()),
            ("content-type", "text/html".into()),
            ("etag", "\"v1\"".into()),
            ("link", "<a>".into()),
            ("link", "<b>".into()),
        ]);
        let not_modified = headers(&[
            ("content-length", "0".into()),
            ("etag", "\"v1\"".into()),
            ("cache-control", "max-age=9".into()),
            ("link", "<c>".into()),
            ("connection", "close".into()),
        ]);
        update_headers(&mut kept, &not_modified);
        let all = |n| {
            kept.get_all(n)
                .map(|v| v.to_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(all("content-length"), ["5"]);
        assert_eq!(all("content-type"), ["text/html"]);
        assert_eq!(all("cache-control"), ["max-age=9"]);
        assert_eq!(all("link"), ["<c>"]);
        assert!(all("connection").is_empty());
    }
}
