//! A queued request in memory, in the smallest form that gives it back
//! whole.
//!
//! Most requests a crawl queues are plain GETs: a URL, a callback, a
//! priority and a depth, and their ids and counters. In a `Context` (some
//! 400 bytes) the rest of the fields are empty, and a large frontier holds
//! tens of thousands of them. A plain request is kept as its own fields
//! alone (about 150 bytes, [`Plain`]) and rebuilt when it leaves the
//! queue; any other is kept boxed as it came.
//!
//! A plain GET may carry a small `meta` too (a sitemap page's lastmod):
//! a map of one entry costs some 600 bytes as a map, 40 as its JSON text,
//! so a meta of at most [`META_TEXT_MAX`] bytes of JSON that reads back
//! exactly (no floating-point numbers, which JSON text may not give back
//! bit for bit) is kept as its text and parsed again when the request
//! leaves the queue.
//!
//! The split is exhaustive: the check and the split name every field of
//! `Context` and `Request`, so a field added to either does not compile
//! here until it is kept, or checked to be at the default `Request::from_url`
//! gives it (the form a plain request is rebuilt from).

use awc::http::Method;
use serde_json::{Map, Value};
use url::Url;
use uuid::Uuid;

use crate::context::Context;
use crate::request::{Callback, Request, DEFAULT_MAX_REDIRECTS};

/// A request held by the memory queue.
pub(super) enum Queued<C> {
    /// A plain GET, kept as the fields that are not at their defaults.
    Plain(Box<Plain<C>>),
    /// Any other request, as it came.
    Full(Box<Context<C>>),
}

/// The longest `meta`, as JSON text, a plain request keeps.
pub(super) const META_TEXT_MAX: usize = 256;

/// What a plain GET keeps: every field a default request does not fix.
pub(super) struct Plain<C> {
    url: Url,
    /// The request's `meta` as JSON text, when it has one.
    meta: Option<Box<str>>,
    callback: C,
    id: Uuid,
    parent: Option<Uuid>,
    priority: i32,
    depth: u32,
    attempt: u32,
    retries: u32,
    crashes: u32,
    dont_filter: bool,
}

impl<C: Callback> Queued<C> {
    /// Holds `ctx`, in the plain form when it is a plain GET.
    pub(super) fn new(ctx: Context<C>) -> Self {
        if !is_plain(&ctx) {
            return Queued::Full(Box::new(ctx));
        }
        let Some(meta) = meta_text(&ctx.request.meta) else {
            return Queued::Full(Box::new(ctx));
        };
        let Context {
            id,
            request,
            parent,
            attempt,
            retries,
            crashes,
            dispatched_at: _,
        } = ctx;
        let Request {
            url,
            callback,
            dont_filter,
            priority,
            depth,
            method: _,
            headers: _,
            body: _,
            proxy: _,
            cookies: _,
            meta: _,
            allow_redirects: _,
            max_redirects: _,
            max_conns_per_host: _,
            allowed_status: _,
            timeout: _,
            max_body: _,
            stream_to: _,
            known: _,
        } = request;
        Queued::Plain(Box::new(Plain {
            url,
            meta,
            callback,
            id,
            parent,
            priority,
            depth,
            attempt,
            retries,
            crashes,
            dont_filter,
        }))
    }

    /// The request's URL.
    pub(super) fn url(&self) -> &Url {
        match self {
            Queued::Plain(p) => &p.url,
            Queued::Full(ctx) => &ctx.request.url,
        }
    }

    /// The request as it was pushed.
    pub(super) fn into_context(self) -> Context<C> {
        let p = match self {
            Queued::Full(ctx) => return *ctx,
            Queued::Plain(p) => *p,
        };
        // A default request with the kept fields set again: what `new`
        // left out was at these defaults (`is_plain`).
        let mut request = Request::from_url(p.url);
        request.callback = p.callback;
        request.dont_filter = p.dont_filter;
        request.priority = p.priority;
        request.depth = p.depth;
        if let Some(text) = p.meta {
            // Written by `meta_text` from a map: it reads back.
            request.meta =
                serde_json::from_str(&text).expect("a queued meta's JSON text reads back");
        }
        Context {
            id: p.id,
            request,
            parent: p.parent,
            attempt: p.attempt,
            retries: p.retries,
            crashes: p.crashes,
            dispatched_at: None,
        }
    }
}

/// Whether every field [`Plain`] leaves out is at its default.
fn is_plain<C>(ctx: &Context<C>) -> bool {
    let Context {
        id: _,
        request,
        parent: _,
        attempt: _,
        retries: _,
        crashes: _,
        dispatched_at,
    } = ctx;
    let Request {
        url: _,
        callback: _,
        dont_filter: _,
        priority: _,
        depth: _,
        method,
        headers,
        body,
        proxy,
        cookies,
        // Kept by `meta_text`, or the request is kept whole.
        meta: _,
        allow_redirects,
        max_redirects,
        max_conns_per_host,
        allowed_status,
        timeout,
        max_body,
        stream_to,
        known,
    } = request;
    dispatched_at.is_none()
        && known.is_none()
        && *method == Method::GET
        && headers.is_empty()
        && body.is_empty()
        && proxy.is_none()
        && cookies.is_empty()
        && *allow_redirects
        && *max_redirects == DEFAULT_MAX_REDIRECTS
        && max_conns_per_host.is_none()
        && allowed_status.is_empty()
        && timeout.is_none()
        && max_body.is_none()
        && stream_to.is_none()
}

/// How a plain request keeps `meta`: `Some(None)` when empty,
/// `Some(Some(text))` when its JSON text is short and reads back exactly,
/// `None` when it must stay a map (the request is kept whole).
fn meta_text(meta: &Map<String, Value>) -> Option<Option<Box<str>>> {
    if meta.is_empty() {
        return Some(None);
    }
    // More entries than a few cannot be short: not worth writing out.
    if meta.len() > 4 || !meta.values().all(exact) {
        return None;
    }
    let text = serde_json::to_string(meta).ok()?;
    (text.len() <= META_TEXT_MAX).then(|| Some(text.into_boxed_str()))
}

/// Whether `value` reads back from its JSON text exactly as it is.
fn exact(value: &Value) -> bool {
    match value {
        Value::Number(n) => !n.is_f64(),
        Value::Array(a) => a.iter().all(exact),
        Value::Object(o) => o.values().all(exact),
        Value::Null | Value::Bool(_) | Value::String(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use super::*;

    fn ctx(f: impl FnOnce(&mut Context<()>)) -> Context<()> {
        let request = Request::get("http://h.test/a?b=1").unwrap();
        let mut ctx = Context::new(request, Some(Uuid::new_v4()));
        ctx.request.priority = -3;
        ctx.request.depth = 4;
        ctx.attempt = 2;
        ctx.retries = 1;
        ctx.crashes = 1;
        f(&mut ctx);
        ctx
    }

    fn same(a: &Context<()>, b: &Context<()>) -> bool {
        (
            a.id,
            &a.request,
            a.parent,
            a.attempt,
            a.retries,
            a.crashes,
            a.dispatched_at,
        ) == (
            b.id,
            &b.request,
            b.parent,
            b.attempt,
            b.retries,
            b.crashes,
            b.dispatched_at,
        )
    }

    #[test]
    fn every_request_comes_back_as_it_went_in() {
        let variants: Vec<(bool, Context<()>)> = vec![
            (true, ctx(|_| {})),
            (true, ctx(|c| c.request.dont_filter = true)),
            (true, ctx(|c| c.parent = None)),
            (false, ctx(|c| c.request.method = Method::HEAD)),
            (
                false,
                ctx(|c| c.request.headers.push(("a".into(), "b".into()))),
            ),
            (false, ctx(|c| c.request.body = Bytes::from_static(b"x"))),
            (
                false,
                ctx(|c| c.request.proxy = Some("http://p.test:1".into())),
            ),
            (
                false,
                ctx(|c| c.request.cookies.push(("k".into(), "v".into()))),
            ),
            (
                true,
                ctx(|c| {
                    c.request.meta.insert("k".into(), 1.into());
                    c.request.meta.insert("lastmod".into(), "2024-05-01".into());
                    c.request.meta.insert(
                        "n".into(),
                        serde_json::json!([u64::MAX, -1, null, {"b": true}]),
                    );
                }),
            ),
            // A float may not read back bit for bit; a long meta is not
            // worth its text.
            (
                false,
                ctx(|c| {
                    c.request.meta.insert("f".into(), 0.1.into());
                }),
            ),
            (
                false,
                ctx(|c| {
                    c.request
                        .meta
                        .insert("k".into(), "x".repeat(META_TEXT_MAX).into());
                }),
            ),
            (
                false,
                ctx(|c| {
                    for k in 0..5 {
                        c.request.meta.insert(k.to_string(), k.into());
                    }
                }),
            ),
            (false, ctx(|c| c.request.allow_redirects = false)),
            (false, ctx(|c| c.request.max_redirects = 3)),
            (false, ctx(|c| c.request.max_conns_per_host = Some(2))),
            (false, ctx(|c| c.request.allowed_status.push(404))),
            (
                false,
                ctx(|c| c.request.timeout = Some(Duration::from_secs(1))),
            ),
            (false, ctx(|c| c.request.max_body = Some(10))),
            (false, ctx(|c| c.request.stream_to = Some("/tmp/x".into()))),
            (
                false,
                ctx(|c| {
                    c.request.known = Some(Box::new(crate::request::KnownPage {
                        etag: Some("\"v1\"".into()),
                        digest: 7,
                        ..Default::default()
                    }))
                }),
            ),
            (false, ctx(|c| c.dispatched_at = Some(Instant::now()))),
        ];
        for (i, (plain, original)) in variants.into_iter().enumerate() {
            let queued = Queued::new(original.clone());
            assert_eq!(matches!(queued, Queued::Plain(_)), plain, "variant {i}");
            assert_eq!(queued.url(), &original.request.url);
            assert!(same(&queued.into_context(), &original), "variant {i}");
        }
    }

    #[test]
    fn a_plain_request_takes_less_than_half_a_context() {
        assert!(std::mem::size_of::<Plain<()>>() * 2 < std::mem::size_of::<Context<()>>());
        assert_eq!(std::mem::size_of::<Queued<()>>(), 16);
    }
}
