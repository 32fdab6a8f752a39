//! What the downloader hands back for a request.
//!
//! A [`Response`] is the final URL, status, headers and body of an exchange,
//! plus [`ResponseMeta`]: the facts Scrapy keeps per response
//! (`download_latency`, `download_slot`, `download_timeout`, `depth`) and the
//! request's own meta, so a callback sees what its request carried.

use std::borrow::Cow;
use std::time::Duration;

use awc::http::header::HeaderMap;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use url::Url;

use crate::error::{Error, ErrorKind, Stage};

/// A downloaded answer.
#[derive(Clone, Debug)]
pub struct Response {
    /// The URL the body came from (after any redirect).
    pub url: Url,
    /// The HTTP status code.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The (decompressed) body.
    pub body: Bytes,
    /// Crawl facts about this exchange.
    pub meta: ResponseMeta,
}

/// Crawl facts about one exchange, named as in Scrapy.
#[derive(Clone, Debug, Default)]
pub struct ResponseMeta {
    /// Time from sending the request to having the whole body.
    pub download_latency: Duration,
    /// The download slot (the host) the request went through.
    pub download_slot: String,
    /// The timeout that applied to the exchange.
    pub download_timeout: Duration,
    /// Hops from a start request.
    pub depth: u32,
    /// Which attempt this was (1 for the first).
    pub attempt: u32,
    /// The URL that was requested, before any redirect.
    pub request_url: Option<Url>,
    /// URLs redirected through on the way to `Response::url`, in order.
    pub redirect_urls: Vec<Url>,
    /// The request's meta, carried over.
    pub request_meta: Map<String, Value>,
}

impl Response {
    /// The body as text (UTF-8; invalid sequences replaced).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The body parsed as JSON into `T`.
    ///
    /// Fails with [`ErrorKind::Json`] (stage `parse`, this response's URL)
    /// when the body is not valid JSON of that shape.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::new(Stage::Parse, ErrorKind::Json(e.to_string())).with_url(&self.url)
        })
    }

    /// A header's value as text, if present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body length in bytes.
    pub fn content_length(&self) -> usize {
        self.body.len()
    }

    /// Resolves `link` (relative or absolute) against this response's URL.
    pub fn urljoin(&self, link: &str) -> Result<Url, Error> {
        self.url.join(link).map_err(|e| {
            Error::new(
                Stage::Parse,
                ErrorKind::InvalidUrl {
                    input: link.to_string(),
                    reason: e.to_string(),
                },
            )
            .with_url(&self.url)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(body: &'static str) -> Response {
        Response {
            url: Url::parse("http://h/a/list").unwrap(),
            status: 200,
            headers: HeaderMap::new(),
            body: Bytes::from_static(body.as_bytes()),
            meta: ResponseMeta::default(),
        }
    }

    #[test]
    fn json_errors_name_the_url() {
        let e = response("{not json").json::<Value>().unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Json(_)));
        assert_eq!(e.url().unwrap().as_str(), "http://h/a/list");
    }

    #[test]
    fn urljoin_resolves_relative_links() {
        let r = response("");
        assert_eq!(
            r.urljoin("./detail?id=1").unwrap().as_str(),
            "http://h/a/detail?id=1"
        );
    }
}
