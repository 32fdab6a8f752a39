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
//! The split is exhaustive: the check and the split name every field of
//! `Context` and `Request`, so a field added to either does not compile
//! here until it is kept, or checked to be at the default `Request::from_url`
//! gives it (the form a plain request is rebuilt from).

use awc::http::Method;
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

/// What a plain GET keeps: every field a default request does not fix.
pub(super) struct Plain<C> {
    url: Url,
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
        meta,
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
        && meta.is_empty()
        && *allow_redirects
        && *max_redirects == DEFAULT_MAX_REDIRECTS
        && max_conns_per_host.is_none()
        && allowed_status.is_empty()
        && timeout.is_none()
        && max_body.is_none()
        && stream_to.is_none()
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
                false,
                ctx(|c| {
                    c.request.meta.insert("k".into(), 1.into());
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
