//! Following redirects: the request a 3xx answer leads to.
//!
//! awc's own following is off (it would lose the final URL and the chain),
//! so the downloader turns a 301/302/303/307/308 with a `Location` into a new
//! request that goes back through the Scheduler, as Scrapy's
//! RedirectMiddleware does. The chain travels in the request's meta
//! (`redirect_urls`, `redirect_reasons`) and ends up on the final response.
//! Method and body follow the browsers' rules: 303 becomes a GET without
//! body (HEAD stays HEAD), and so does a POST answered 301 or 302; 307 and
//! 308 keep both. A chain longer than the request's `max_redirects`
//! (default 20), or one that comes back to a URL it already visited, is an
//! error.
//!
//! # Admission
//!
//! A redirect is admitted as any new request is: the depth limit and the
//! allowed domains apply to its target, and `dont_filter` does not exempt
//! it from the allowed domains (that flag speaks for the URL its author
//! wrote, not for wherever a server sends it), so a redirect off the
//! allowed domains is dropped and counted (`offsite/filtered` and
//! `redirect/offsite_filtered`). For the dupe filter a redirect keeps its
//! parent's `dont_filter`: it continues the fetch its author asked for, so a
//! `dont_filter` request (a retry, a page fetched again on purpose) reaches
//! its final page even when that page was seen before, while an ordinary
//! request's redirect to a page already seen is a duplicate. Loops stay
//! bounded either way, by `max_redirects` and the chain check.
//!
//! # Headers across origins
//!
//! When a redirect changes origin (scheme, host or port), only the headers
//! on an allow-list go with it ([`DEFAULT_CROSS_ORIGIN_HEADERS`] unless
//! configured): credentials of any kind (`Authorization`,
//! `Proxy-Authorization`, API keys, tokens) and the request's own cookies
//! stay behind. A `Referer` that crosses is cut to its origin, and dropped
//! from https to http, as browsers' default referrer policy does. The
//! request's proxy is its route, not a header, and stays.

use serde_json::Value;
use url::Url;

use crate::error::{Error, ErrorKind, Stage};
use crate::request::Request;
use crate::response::Response;
use awc::http::Method;

/// The meta key holding the URLs redirected through, in order.
pub const REDIRECT_URLS: &str = "redirect_urls";
/// The meta key holding the statuses of those redirects.
pub const REDIRECT_REASONS: &str = "redirect_reasons";

/// Headers a redirect carries to another origin unless configured
/// otherwise: content negotiation and identification, no credentials.
pub(crate) const DEFAULT_CROSS_ORIGIN_HEADERS: &[&str] = &[
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Cache-Control",
    "Content-Language",
    "Content-Type",
    "Pragma",
    "Referer",
    "User-Agent",
];

/// Whether a request with this meta is a redirect (it has a chain).
pub(crate) fn is_redirect_hop(meta: &serde_json::Map<String, Value>) -> bool {
    meta.get(REDIRECT_URLS)
        .and_then(Value::as_array)
        .is_some_and(|chain| !chain.is_empty())
}

/// Whether `status` is a redirect this crawler follows.
pub fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// The URLs a request was redirected through (from its meta).
pub fn chain_of(meta: &serde_json::Map<String, Value>) -> Vec<Url> {
    meta.get(REDIRECT_URLS)
        .and_then(Value::as_array)
        .map(|urls| {
            urls.iter()
                .filter_map(|u| u.as_str().and_then(|s| Url::parse(s).ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// The request `response` (a redirect to `location`) leads to; to another
/// origin it carries only the headers named in `cross_origin` (lower-case).
pub fn follow<C: Clone>(
    request: &Request<C>,
    response: &Response,
    location: &str,
    cross_origin: &[String],
) -> Result<Request<C>, Error> {
    let target = response.urljoin(location)?;
    if !matches!(target.scheme(), "http" | "https") {
        return Err(Error::new(
            Stage::Download,
            ErrorKind::InvalidUrl {
                input: crate::redact::text(location),
                reason: format!("redirect to unsupported scheme {:?}", target.scheme()),
            },
        ));
    }
    let mut chain = chain_of(&request.meta);
    chain.push(request.url.clone());
    if chain.len() > request.max_redirects as usize {
        return Err(Error::new(
            Stage::Download,
            ErrorKind::TooManyRedirects {
                max: request.max_redirects,
            },
        ));
    }
    let same = |a: &Url, b: &Url| a.as_str().split('#').next() == b.as_str().split('#').next();
    if chain.iter().any(|seen| same(seen, &target)) {
        return Err(Error::new(
            Stage::Download,
            ErrorKind::RedirectLoop {
                url: crate::redact::Redacted(&target).to_string(),
            },
        ));
    }
    let mut next = request.clone();
    if let Some(known) = next.known.as_deref_mut() {
        // A re-crawl's revisit: its validators are its own page's, so the
        // target is asked for its whole body, judged by it.
        known.conditional = false;
        next.headers
            .retain(|(name, _)| !crate::request::is_validator(name));
    }
    let drops_body = response.status == 303 && request.method != Method::HEAD
        || matches!(response.status, 301 | 302) && request.method == Method::POST;
    if drops_body {
        next.method = Method::GET;
        next.body = bytes::Bytes::new();
        next.headers.retain(|(name, _)| {
            !name.eq_ignore_ascii_case("content-type")
                && !name.eq_ignore_ascii_case("content-length")
        });
    }
    if target.origin() != request.url.origin() {
        keep_crossing(&mut next.headers, &target, cross_origin);
        // The request's own cookies were meant for its site; the jar sends
        // the target's.
        next.cookies.clear();
    }
    let mut reasons: Vec<Value> = request
        .meta
        .get(REDIRECT_REASONS)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    reasons.push(response.status.into());
    next.meta.insert(
        REDIRECT_URLS.into(),
        chain.iter().map(|u| Value::from(u.as_str())).collect(),
    );
    next.meta
        .insert(REDIRECT_REASONS.into(), Value::Array(reasons));
    next.url = target;
    // As Scrapy's REDIRECT_PRIORITY_ADJUST: finish what was started.
    next.priority = request.priority.saturating_add(2);
    Ok(next)
}

/// Keeps the headers named in `allowed` (lower-case), for a move to
/// another origin `to`; a `Referer` is cut to its origin, or dropped when
/// it is an https URL and `to` is http, or when it is no URL.
fn keep_crossing(headers: &mut Vec<(String, String)>, to: &Url, allowed: &[String]) {
    headers.retain_mut(|(name, value)| {
        let name = name.to_ascii_lowercase();
        if !allowed.contains(&name) {
            return false;
        }
        if name != "referer" {
            return true;
        }
        let Ok(referer) = Url::parse(value) else {
            return false;
        };
        let origin = referer.origin();
        let downgrade = referer.scheme() == "https" && to.scheme() == "http";
        if !origin.is_tuple() || downgrade {
            return false;
        }
        *value = format!("{}/", origin.ascii_serialization());
        true
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::ResponseMeta;

    fn defaults() -> Vec<String> {
        DEFAULT_CROSS_ORIGIN_HEADERS
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect()
    }

    fn answer(url: &str, status: u16) -> Response {
        Response {
            url: Url::parse(url).unwrap(),
            status,
            headers: Default::default(),
            body: Default::default(),
            meta: ResponseMeta::default(),
        }
    }

    #[test]
    fn chain_and_method_rules() {
        let post = Request::<()>::post("http://h/form", "a=1")
            .unwrap()
            .cookie("session", "s")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Authorization", "Bearer x");
        let next = follow(&post, &answer("http://h/form", 303), "/done", &defaults()).unwrap();
        assert_eq!(next.url.as_str(), "http://h/done");
        assert_eq!(next.method, Method::GET);
        assert!(next.body.is_empty());
        assert_eq!(
            next.headers,
            [("Authorization".to_string(), "Bearer x".to_string())]
        );
        assert_eq!(chain_of(&next.meta), [Url::parse("http://h/form").unwrap()]);
        let kept = follow(&post, &answer("http://h/form", 307), "/again", &defaults()).unwrap();
        assert_eq!((kept.method, &kept.body[..]), (Method::POST, &b"a=1"[..]));
        let moved = follow(
            &post,
            &answer("http://h/form", 301),
            "http://other/x",
            &defaults(),
        )
        .unwrap();
        assert_eq!(moved.method, Method::GET);
        assert!(moved.headers.is_empty(), "credentials do not cross origins");
        assert!(moved.cookies.is_empty(), "nor do the request's cookies");
        assert_eq!(next.cookies.len(), 1, "they stay on the same origin");
        assert_eq!(moved.priority, 2);
    }

    #[test]
    fn loops_and_long_chains_are_errors() {
        let a = Request::<()>::get("http://h/a").unwrap();
        let b = follow(&a, &answer("http://h/a", 302), "/b", &defaults()).unwrap();
        let e = follow(&b, &answer("http://h/b", 302), "/a", &defaults()).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::RedirectLoop { .. }), "{e}");
        let mut r = Request::<()>::get("http://h/0").unwrap();
        r.max_redirects = 2;
        let r1 = follow(&r, &answer("http://h/0", 301), "/1", &defaults()).unwrap();
        let r2 = follow(&r1, &answer("http://h/1", 301), "/2", &defaults()).unwrap();
        let e = follow(&r2, &answer("http://h/2", 301), "/3", &defaults()).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::TooManyRedirects { max: 2 }),
            "{e}"
        );
        let e = follow(&a, &answer("http://h/a", 302), "ftp://h/x", &defaults()).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::InvalidUrl { .. }), "{e}");
    }

    #[test]
    fn redirect_errors_keep_credentials_out_of_debug_too() {
        let a = Request::<()>::get("http://u:looppw@h/a").unwrap();
        let e = follow(&a, &answer("http://u:looppw@h/a", 302), "/a", &defaults()).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::RedirectLoop { .. }), "{e}");
        let e2 = follow(
            &a,
            &answer("http://h/a", 302),
            "ftp://u:schemepw@h/x",
            &defaults(),
        )
        .unwrap_err();
        for shown in [
            format!("{e:?}"),
            format!("{e2:?}"),
            e.to_string(),
            e2.to_string(),
        ] {
            assert!(
                !shown.contains("looppw") && !shown.contains("schemepw"),
                "{shown}"
            );
        }
    }

    #[test]
    fn only_allowed_headers_cross_origins() {
        let get = Request::<()>::get("https://a.test/x")
            .unwrap()
            .header("Authorization", "Bearer x")
            .header("Proxy-Authorization", "Basic eA==")
            .header("X-Api-Key", "k")
            .header("Cookie", "s=1")
            .header("User-Agent", "ua")
            .header("accept", "text/html")
            .header("Referer", "https://a.test/from?q=secret");
        let names = |r: &Request<()>| -> Vec<String> {
            r.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect()
        };
        let same = follow(&get, &answer("https://a.test/x", 302), "/y", &defaults()).unwrap();
        assert_eq!(names(&same), names(&get), "one origin keeps every header");
        let other = follow(
            &get,
            &answer("https://a.test/x", 302),
            "https://b.test/",
            &defaults(),
        );
        assert_eq!(
            names(&other.unwrap()),
            [
                "User-Agent: ua",
                "accept: text/html",
                "Referer: https://a.test/"
            ]
        );
        // Another port or scheme is another origin too; https to http drops
        // the Referer as well.
        for to in ["https://a.test:8443/", "http://a.test/"] {
            let next = follow(&get, &answer("https://a.test/x", 302), to, &defaults()).unwrap();
            assert!(!names(&next).iter().any(|h| h.contains("Bearer")), "{to}");
        }
        let plain = follow(
            &get,
            &answer("https://a.test/x", 302),
            "http://a.test/",
            &defaults(),
        );
        assert_eq!(
            names(&plain.unwrap()),
            ["User-Agent: ua", "accept: text/html"]
        );
        // The Referer's own scheme decides: an https one never goes to an
        // http target, whatever the request's scheme.
        let from_http = Request::<()>::get("http://a.test/x")
            .unwrap()
            .header("Referer", "https://intranet.test/page");
        let next = follow(
            &from_http,
            &answer("http://a.test/x", 302),
            "http://b.test/",
            &defaults(),
        )
        .unwrap();
        assert!(next.headers.is_empty(), "{:?}", next.headers);
        // A configured list replaces the default.
        let own = vec!["x-api-key".to_string()];
        let next = follow(
            &get,
            &answer("https://a.test/x", 307),
            "https://b.test/",
            &own,
        );
        assert_eq!(names(&next.unwrap()), ["X-Api-Key: k"]);
    }

    #[test]
    fn a_redirected_revisit_asks_its_target_without_its_validators() {
        let mut revisit = Request::<()>::get("http://h/old")
            .unwrap()
            .header("If-None-Match", "\"1\"")
            .header("if-modified-since", "Wed, 01 May 2024 10:00:00 GMT")
            .header("Accept", "text/html");
        revisit.known = Some(Box::new(crate::request::KnownPage {
            etag: Some("\"1\"".into()),
            conditional: true,
            digest: 9,
            ..Default::default()
        }));
        let next = follow(&revisit, &answer("http://h/old", 301), "/new", &defaults()).unwrap();
        assert_eq!(
            next.headers,
            [("Accept".to_string(), "text/html".to_string())]
        );
        let known = next.known.unwrap();
        assert!(!known.conditional, "not added again");
        assert_eq!(known.digest, 9, "judged against what the page was");
    }

    #[test]
    fn a_redirect_is_known_by_its_chain() {
        let a = Request::<()>::get("http://h/a").unwrap();
        assert!(!is_redirect_hop(&a.meta));
        let b = follow(&a, &answer("http://h/a", 302), "/b", &defaults()).unwrap();
        assert!(is_redirect_hop(&b.meta));
    }
}
