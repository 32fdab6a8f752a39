//! Following redirects: the request a 3xx answer leads to.
//!
//! awc's own following is off (it would lose the final URL and the chain),
//! so the downloader turns a 301/302/303/307/308 with a `Location` into a new
//! request that goes back through the Scheduler — and so through the dupe
//! filter — as Scrapy's RedirectMiddleware does. The chain travels in the
//! request's meta (`redirect_urls`, `redirect_reasons`) and ends up on the
//! final response. Method and body follow the browsers' rules: 303 becomes
//! a GET without body (HEAD stays HEAD), and so does a POST answered 301 or
//! 302; 307 and 308 keep both. Credentials do not follow to another origin.
//! A chain longer than the request's `max_redirects` (default 20), or one
//! that comes back to a URL it already visited, is an error.

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

/// The request `response` (a redirect to `location`) leads to.
pub fn follow<C: Clone>(
    request: &Request<C>,
    response: &Response,
    location: &str,
) -> Result<Request<C>, Error> {
    let target = response.urljoin(location)?;
    if !matches!(target.scheme(), "http" | "https") {
        return Err(Error::new(
            Stage::Download,
            ErrorKind::InvalidUrl {
                input: location.to_string(),
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
                url: target.to_string(),
            },
        ));
    }
    let mut next = request.clone();
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
        next.headers.retain(|(name, _)| {
            !name.eq_ignore_ascii_case("authorization") && !name.eq_ignore_ascii_case("cookie")
        });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::ResponseMeta;

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
        let next = follow(&post, &answer("http://h/form", 303), "/done").unwrap();
        assert_eq!(next.url.as_str(), "http://h/done");
        assert_eq!(next.method, Method::GET);
        assert!(next.body.is_empty());
        assert_eq!(
            next.headers,
            [("Authorization".to_string(), "Bearer x".to_string())]
        );
        assert_eq!(chain_of(&next.meta), [Url::parse("http://h/form").unwrap()]);
        let kept = follow(&post, &answer("http://h/form", 307), "/again").unwrap();
        assert_eq!((kept.method, &kept.body[..]), (Method::POST, &b"a=1"[..]));
        let moved = follow(&post, &answer("http://h/form", 301), "http://other/x").unwrap();
        assert_eq!(moved.method, Method::GET);
        assert!(moved.headers.is_empty(), "credentials do not cross origins");
        assert!(moved.cookies.is_empty(), "nor do the request's cookies");
        assert_eq!(next.cookies.len(), 1, "they stay on the same origin");
        assert_eq!(moved.priority, 2);
    }

    #[test]
    fn loops_and_long_chains_are_errors() {
        let a = Request::<()>::get("http://h/a").unwrap();
        let b = follow(&a, &answer("http://h/a", 302), "/b").unwrap();
        let e = follow(&b, &answer("http://h/b", 302), "/a").unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::RedirectLoop { .. }), "{e}");
        let mut r = Request::<()>::get("http://h/0").unwrap();
        r.max_redirects = 2;
        let r1 = follow(&r, &answer("http://h/0", 301), "/1").unwrap();
        let r2 = follow(&r1, &answer("http://h/1", 301), "/2").unwrap();
        let e = follow(&r2, &answer("http://h/2", 301), "/3").unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::TooManyRedirects { max: 2 }),
            "{e}"
        );
        let e = follow(&a, &answer("http://h/a", 302), "ftp://h/x").unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::InvalidUrl { .. }), "{e}");
    }
}
