//! Tests of the sitemap reader (each form, each limit) and of the rules
//! that turn sitemap responses into requests.

use std::io::Write;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::read::{read, Entry, Limits};
use super::*;
use crate::response::ResponseMeta;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Every entry of `body`, and the error that stopped the reading.
fn entries(body: &[u8], limits: Limits) -> (Vec<Entry>, Option<String>) {
    let mut got = Vec::new();
    let read = read(Bytes::copy_from_slice(body), limits, |e| got.push(e));
    (got, read.stopped)
}

fn page(loc: &str, lastmod: Option<&str>, priority: Option<f64>) -> Entry {
    Entry::Page {
        loc: loc.into(),
        lastmod: lastmod.map(str::to_string),
        priority,
        alternates: Vec::new(),
    }
}

const URLSET: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:image="http://www.google.com/schemas/sitemap-image/1.1"
        xmlns:xhtml="http://www.w3.org/1999/xhtml">
  <url>
    <loc>http://h.test/a?x=1&amp;y=2</loc>
    <lastmod>2024-05-01</lastmod>
    <priority>0.8</priority>
    <image:image><image:loc>http://h.test/img.png</image:loc></image:image>
    <xhtml:link rel="alternate" hreflang="de" href="http://h.test/de/a?x=1&amp;y=2"/>
    <xhtml:link rel="alternate" hreflang="fr" href=" http://h.test/fr/a "></xhtml:link>
    <xhtml:link rel="canonical" href="http://h.test/not-alternate"/>
  </url>
  <url><loc><![CDATA[http://h.test/b]]></loc><priority>7</priority></url>
  <url><loc> http://h.test/c </loc><lastmod>2024-05-02T10:00:00+00:00</lastmod><priority>high</priority></url>
  <url><loc></loc></url>
</urlset>"#;

#[test]
fn a_urlset_gives_each_loc_with_its_lastmod_and_priority() {
    let (got, err) = entries(URLSET.as_bytes(), Limits::default());
    assert_eq!(err, None);
    assert_eq!(
        got,
        [
            Entry::Page {
                loc: "http://h.test/a?x=1&y=2".into(),
                lastmod: Some("2024-05-01".into()),
                priority: Some(0.8),
                alternates: vec![
                    "http://h.test/de/a?x=1&y=2".into(),
                    "http://h.test/fr/a".into()
                ],
            },
            // Out of range: clamped; not a number: absent.
            page("http://h.test/b", None, Some(1.0)),
            page("http://h.test/c", Some("2024-05-02T10:00:00+00:00"), None),
        ]
    );
}

const INDEX: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sitemap><loc>http://h.test/s1.xml</loc><lastmod>2024-01-01</lastmod></sitemap>
  <sitemap><loc>http://h.test/s2.xml.gz</loc></sitemap>
</sitemapindex>"#;

#[test]
fn an_index_gives_its_sitemaps() {
    let (got, err) = entries(INDEX.as_bytes(), Limits::default());
    assert_eq!(err, None);
    let sitemap = |loc: &str| Entry::Sitemap { loc: loc.into() };
    assert_eq!(
        got,
        [
            sitemap("http://h.test/s1.xml"),
            sitemap("http://h.test/s2.xml.gz")
        ]
    );
    // Empty sitemaps are empty, not malformed.
    for empty in [
        "<sitemapindex/>",
        "<?xml version=\"1.0\"?>\n<urlset></urlset>\n",
    ] {
        assert_eq!(
            entries(empty.as_bytes(), Limits::default()),
            (vec![], None),
            "{empty}"
        );
    }
    assert_eq!(entries(b"", Limits::default()), (vec![], None));
}

#[test]
fn a_gzip_body_is_read_as_the_sitemap_it_holds() {
    let (plain, _) = entries(URLSET.as_bytes(), Limits::default());
    let (got, err) = entries(&gzip(URLSET.as_bytes()), Limits::default());
    assert_eq!(err, None);
    assert_eq!(got, plain);
    let (got, err) = entries(&gzip(b"http://h.test/t1\n"), Limits::default());
    assert_eq!(
        (got, err),
        (vec![page("http://h.test/t1", None, None)], None)
    );
}

#[test]
fn a_gzip_body_of_many_pieces_is_read_whole() {
    // Paths that do not repeat, so the gzip body spans many pieces.
    let urls: String = (0..20_000u64)
        .map(|i| {
            format!(
                "<url><loc>http://h.test/{}</loc></url>\n",
                i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            )
        })
        .collect();
    let body = gzip(format!("<urlset>{urls}</urlset>").as_bytes());
    assert!(
        body.len() > 4 * crate::http::decode::PIECE,
        "{}",
        body.len()
    );
    let (got, err) = entries(&body, Limits::default());
    assert_eq!((got.len(), err), (20_000, None));
    let last = 19_999u64.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    assert_eq!(
        got[19_999],
        page(&format!("http://h.test/{last}"), None, None)
    );
    // Cut short past the first piece: an error after what was read.
    let (got, err) = entries(&body[..body.len() - 10], Limits::default());
    assert!(got.len() > 19_000, "{}", got.len());
    assert!(err.unwrap().contains("gzip"));
}

#[test]
fn a_text_sitemap_gives_one_url_a_line() {
    let body = "\u{feff}http://h.test/1\r\n\n  http://h.test/2  \nhttp://h.test/3";
    let (got, err) = entries(body.as_bytes(), Limits::default());
    assert_eq!(err, None);
    let want: Vec<Entry> = (1..=3)
        .map(|i| page(&format!("http://h.test/{i}"), None, None))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn malformed_xml_is_an_error_after_the_entries_read_before() {
    let body = "<urlset><url><loc>http://h.test/ok</loc></url><url><loc>http://h.test/x</lox></url></urlset>";
    let (got, err) = entries(body.as_bytes(), Limits::default());
    assert_eq!(got, [page("http://h.test/ok", None, None)]);
    let err = err.expect("an error");
    assert!(err.starts_with("malformed XML at byte"), "{err}");

    // Cut short: the document ends inside the root.
    let (got, err) = entries(
        b"<urlset><url><loc>http://h.test/ok</loc></url>",
        Limits::default(),
    );
    assert_eq!(got, [page("http://h.test/ok", None, None)]);
    let err = err.unwrap();
    assert!(err.contains("inside an open element"), "{err}");

    let (got, err) = entries(b"<?xml version=\"1.0\"?>\n<!-- none -->", Limits::default());
    assert_eq!(
        (got, err.as_deref()),
        (vec![], Some("malformed XML: no root element"))
    );

    let (got, err) = entries(
        b"<html><body>not a sitemap</body></html>",
        Limits::default(),
    );
    assert!(got.is_empty());
    assert_eq!(
        err.unwrap(),
        "the root element <html> is neither <urlset> nor <sitemapindex>"
    );
}

#[test]
fn entries_past_the_url_limit_are_counted_not_handed_on() {
    let limits = Limits {
        max_urls: 3,
        ..Limits::default()
    };
    let urls: String = (0..5)
        .map(|i| format!("<url><loc>http://h.test/{i}</loc></url>"))
        .collect();
    let body = format!("<urlset>{urls}</urlset>");
    let mut got = Vec::new();
    let r = read(Bytes::copy_from_slice(body.as_bytes()), limits, |e| {
        got.push(e)
    });
    assert_eq!(got.len(), 3);
    assert_eq!(got[2], page("http://h.test/2", None, None));
    assert_eq!(
        r,
        super::read::Reading {
            over_limit: 2,
            stopped: None,
            too_large: false
        }
    );
    // Exactly the limit is accepted.
    let r = read(
        Bytes::from_static(b"http://h.test/0\nhttp://h.test/1\nhttp://h.test/2\n"),
        limits,
        |_| {},
    );
    assert_eq!(r, super::read::Reading::default());
    // The protocol's limits by default; a lower body limit takes over.
    assert_eq!(
        (Limits::default().max_urls, Limits::default().max_bytes),
        (50_000, 50 << 20)
    );
    let within = Limits::default().within(Some(1000));
    assert_eq!(
        (within.max_bytes, within.bytes_limit),
        (1000, "the crawl's body limit")
    );
    let within = Limits::default().within(Some(64 << 20));
    assert_eq!(
        (within.max_bytes, within.bytes_limit),
        (50 << 20, "the limit of one sitemap")
    );
}

#[test]
fn a_gzip_bomb_stops_at_the_byte_limit() {
    // 16 MiB of white space inside a urlset, after one entry: a gzip body
    // a hundred times smaller, refused at 1 MiB decoded.
    let mut xml = b"<urlset><url><loc>http://h.test/first</loc></url>".to_vec();
    xml.resize(xml.len() + (16 << 20), b' ');
    xml.extend_from_slice(b"<url><loc>http://h.test/last</loc></url></urlset>");
    let bomb = gzip(&xml);
    assert!(bomb.len() * 100 < xml.len(), "{}", bomb.len());
    let limits = Limits {
        max_bytes: 1 << 20,
        ..Limits::default()
    };
    let (got, err) = entries(&bomb, limits);
    assert_eq!(got, [page("http://h.test/first", None, None)]);
    assert_eq!(
        err.unwrap(),
        "more than 1048576 bytes (decoded; the limit of one sitemap); the rest is refused"
    );
    let r = read(Bytes::from(bomb.clone()), limits, |_| {});
    assert!(r.too_large);
    // The same limit on a plain body; exactly the limit is accepted.
    let (got, err) = entries(&xml[..(1 << 20) + 1], limits);
    assert_eq!(got.len(), 1);
    assert!(err.unwrap().starts_with("more than 1048576 bytes"));
    let line = b"http://h.test/1\n";
    let (got, err) = entries(
        line,
        Limits {
            max_bytes: line.len(),
            ..limits
        },
    );
    assert_eq!((got.len(), err), (1, None));
}

#[test]
fn a_corrupt_gzip_body_is_an_error() {
    let mut body = gzip(URLSET.as_bytes());
    body.truncate(body.len() / 2);
    let (_, err) = entries(&body, Limits::default());
    assert!(err.unwrap().contains("gzip"));
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
enum Cb {
    #[default]
    Sitemap,
    Product,
    Page,
}

fn response(url: &str, body: impl Into<Bytes>, depth: Option<u32>) -> Response {
    let mut meta = ResponseMeta::default();
    if let Some(d) = depth {
        meta.request_meta.insert(SITEMAP_DEPTH.into(), d.into());
    }
    Response {
        url: Url::parse(url).unwrap(),
        status: 200,
        headers: Default::default(),
        body: body.into(),
        meta,
    }
}

/// (url, callback, priority, lastmod, sitemap depth) of each request.
type Made = (String, Cb, i32, Option<Value>, Option<Value>);

fn made(out: &Output<Cb>) -> Vec<Made> {
    out.requests
        .iter()
        .map(|c| {
            let r = &c.request;
            let meta = |k: &str| r.meta.get(k).cloned();
            (
                r.url.to_string(),
                r.callback.clone(),
                r.priority,
                meta(SITEMAP_LASTMOD),
                meta(SITEMAP_DEPTH),
            )
        })
        .collect()
}

fn rules() -> SitemapRules<Cb> {
    SitemapRules::new(
        Cb::Sitemap,
        ["http://h.test/robots.txt", "http://h.test/sitemap.xml"],
    )
    .unwrap()
    .rule("/b$", Cb::Product)
    .unwrap()
    .rule("", Cb::Page)
    .unwrap()
}

#[test]
fn start_requests_carry_the_sitemap_callback_at_depth_zero() {
    let got: Vec<_> = rules()
        .start_requests()
        .map(|r| {
            (
                r.url.to_string(),
                r.callback,
                r.meta.get(SITEMAP_DEPTH).cloned(),
            )
        })
        .collect();
    let zero = Some(Value::from(0));
    assert_eq!(
        got,
        [
            ("http://h.test/robots.txt".into(), Cb::Sitemap, zero.clone()),
            ("http://h.test/sitemap.xml".into(), Cb::Sitemap, zero)
        ]
    );
    let e = SitemapRules::new(Cb::Sitemap, ["nope"]).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::InvalidUrl { input, .. } if input == "nope"));
    let e = rules().rule("(", Cb::Page).unwrap_err();
    assert!(e.to_string().contains("sitemap rule \"(\""), "{e}");
}

#[test]
fn pages_get_the_first_matching_rule_a_priority_and_their_lastmod() {
    let mut out = Output::default();
    rules()
        .parse(
            &response("http://h.test/sitemap.xml", URLSET, Some(0)),
            &mut out,
        )
        .unwrap();
    let lastmod = |s: &str| Some(Value::from(s));
    assert_eq!(
        made(&out),
        [
            (
                "http://h.test/a?x=1&y=2".into(),
                Cb::Page,
                3,
                lastmod("2024-05-01"),
                None
            ),
            ("http://h.test/b".into(), Cb::Product, 5, None, None),
            (
                "http://h.test/c".into(),
                Cb::Page,
                0,
                lastmod("2024-05-02T10:00:00+00:00"),
                None
            ),
        ]
    );
    // With alternate links: each alternate as a page of its own.
    let mut out = Output::default();
    rules()
        .alternate_links(true)
        .parse(
            &response("http://h.test/sitemap.xml", URLSET, Some(0)),
            &mut out,
        )
        .unwrap();
    let urls: Vec<(String, i32, Option<Value>)> =
        made(&out).into_iter().map(|m| (m.0, m.2, m.3)).collect();
    assert_eq!(
        urls,
        [
            ("http://h.test/a?x=1&y=2".into(), 3, lastmod("2024-05-01")),
            ("http://h.test/de/a?x=1&y=2".into(), 3, None),
            ("http://h.test/fr/a".into(), 3, None),
            ("http://h.test/b".into(), 5, None),
            (
                "http://h.test/c".into(),
                0,
                lastmod("2024-05-02T10:00:00+00:00")
            ),
        ]
    );
    assert_eq!(
        [0.0, 0.04, 0.05, 0.5, 0.94, 1.0].map(|p| request_priority(Some(p))),
        [-5, -5, -4, 0, 4, 5]
    );
    // No rule: no page.
    let bare = SitemapRules::new(Cb::Sitemap, ["http://h.test/s.xml"]).unwrap();
    let mut out = Output::default();
    bare.parse(&response("http://h.test/s.xml", URLSET, None), &mut out)
        .unwrap();
    assert_eq!(out.request_count(), 0);
}

#[test]
fn robots_sitemap_lines_become_sitemap_requests() {
    let robots = "User-agent: *\nDisallow: /private\nSitemap: http://h.test/index.xml\n\
                  sitemap: http://h.test/other.txt\nSitemap: not a url\n";
    let mut out = Output::default();
    let e = rules()
        .parse(
            &response("http://h.test/robots.txt", robots, Some(0)),
            &mut out,
        )
        .unwrap_err();
    let zero = Some(Value::from(0));
    assert_eq!(
        made(&out),
        [
            (
                "http://h.test/index.xml".into(),
                Cb::Sitemap,
                0,
                None,
                zero.clone()
            ),
            ("http://h.test/other.txt".into(), Cb::Sitemap, 0, None, zero),
        ]
    );
    assert!(matches!(e.kind(), ErrorKind::Sitemap { sitemap, reason }
        if sitemap == "http://h.test/robots.txt" && reason.contains("1 entries whose <loc> is not an http(s) URL skipped (the first: \"not a url\")")));
}

#[test]
fn nested_indexes_are_followed_down_to_the_depth_limit() {
    let rules = rules().max_depth(2);
    let mut out = Output::default();
    rules
        .parse(&response("http://h.test/i.xml", INDEX, Some(1)), &mut out)
        .unwrap();
    let two = Some(Value::from(2));
    assert_eq!(
        made(&out),
        [
            (
                "http://h.test/s1.xml".into(),
                Cb::Sitemap,
                0,
                None,
                two.clone()
            ),
            ("http://h.test/s2.xml.gz".into(), Cb::Sitemap, 0, None, two),
        ]
    );
    let mut out = Output::default();
    let e = rules
        .parse(
            &response("http://h.test/deep.xml", INDEX, Some(2)),
            &mut out,
        )
        .unwrap_err();
    assert_eq!(out.request_count(), 0);
    assert_eq!(e.stage(), Stage::Parse);
    assert_eq!(e.url().map(Url::as_str), Some("http://h.test/deep.xml"));
    assert_eq!(
        e.kind().to_string(),
        "sitemap http://h.test/deep.xml: 2 sitemaps nested deeper than 2 indexes refused \
         (the first: http://h.test/s1.xml)"
    );
}

#[test]
fn a_sitemap_error_names_the_sitemap_and_keeps_the_requests_before() {
    let rules = SitemapRules {
        limits: Limits {
            max_urls: 2,
            ..Limits::default()
        },
        ..rules()
    };
    let mut out = Output::default();
    let e = rules
        .parse(&response("http://h.test/big.xml", URLSET, None), &mut out)
        .unwrap_err();
    assert_eq!(out.request_count(), 2);
    assert_eq!(e.kind_name(), "sitemap");
    assert_eq!(
        e.kind().to_string(),
        "sitemap http://h.test/big.xml: 1 URLs past the first 2 (the limit of one sitemap) skipped"
    );
    assert_eq!(out.counted("sitemap/urls"), 2);
    assert_eq!(out.counted("sitemap/urls_over_limit"), 1);
    assert_eq!(out.counted("sitemap/failed"), 1);
}

/// An output as a crawl's Parser makes it: requests handed on as they
/// come, lazy sources kept for the Scheduler.
fn crawl_output() -> Output<Cb> {
    Output {
        flush: Some(crate::spider::Flush {
            at: usize::MAX,
            send: std::sync::Arc::new(|_| {}),
        }),
        ..Output::default()
    }
}

#[test]
fn in_a_crawl_the_pages_are_made_as_they_are_pulled_and_the_same() {
    // Gzip, alternates on, a bad <loc>, and malformed XML after them.
    let broken = URLSET.replace(
        "</urlset>",
        "<url><loc>ftp://h.test/x</loc></url><url><loc>http://h.test/d</loc></url><oops></urlset>",
    );
    let body = gzip(broken.as_bytes());
    let rules = rules().alternate_links(true);
    let sitemap = response("http://h.test/sitemap.xml", body, Some(0));
    let mut eager = Output::default();
    let eager_err = rules.parse(&sitemap, &mut eager).unwrap_err();
    let mut lazy = crawl_output();
    let lazy_err = rules.parse(&sitemap, &mut lazy).unwrap_err();
    // The same error and counts, known when `parse` returns.
    assert_eq!(lazy_err.to_string(), eager_err.to_string());
    assert_eq!(lazy.counts, eager.counts);
    assert_eq!(lazy.counted("sitemap/urls"), 6);
    // No page made yet: one source, which makes the same requests.
    assert_eq!(lazy.request_count(), 0);
    assert_eq!(lazy.sources.len(), 1);
    let mut source = lazy.sources.pop().unwrap();
    let mut pulled = source.take(4);
    assert_eq!(pulled.len(), 4);
    pulled.extend(source.take(100));
    lazy.requests = pulled;
    assert_eq!(made(&lazy), made(&eager));
    assert_eq!(made(&lazy).len(), 6);
    // An index's sitemaps are requested at once; a sitemap no rule
    // matches gives no source.
    let index =
        r#"<sitemapindex><sitemap><loc>http://h.test/s1.xml</loc></sitemap></sitemapindex>"#;
    let mut out = crawl_output();
    rules
        .parse(&response("http://h.test/index.xml", index, None), &mut out)
        .unwrap();
    assert_eq!((out.requests.len(), out.sources.len()), (1, 0));
    let none = SitemapRules::new(Cb::Sitemap, ["http://h.test/sitemap.xml"]).unwrap();
    let mut out = crawl_output();
    none.parse(
        &response("http://h.test/sitemap.xml", URLSET, None),
        &mut out,
    )
    .unwrap();
    assert_eq!((out.request_count(), out.sources.len()), (0, 0));
    assert_eq!(out.counted("sitemap/skipped/no_rule"), 3);
}
