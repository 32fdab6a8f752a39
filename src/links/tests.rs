//! Tests of the link extractor through its entry points: the scan and the
//! tree parser give the same links, and the filters keep the right ones.

use bytes::Bytes;

use super::*;
use crate::response::ResponseMeta;

fn page(url: &str, body: &str) -> Response {
    Response {
        url: Url::parse(url).unwrap(),
        status: 200,
        headers: Default::default(),
        body: Bytes::from(body.to_string()),
        meta: ResponseMeta::default(),
    }
}

fn strings(urls: Vec<Url>) -> Vec<String> {
    urls.into_iter().map(String::from).collect()
}

const SITE: &str = r#"<html><body>
    <a href="/a">a</a>
    <a href="b/c?x=1">relative</a>
    <a href="../up">up</a>
    <a href="http://h.test/a#top">a again, with a fragment</a>
    <a href="https://other.test/x">other host</a>
    <a href="http://sub.h.test/s">subdomain</a>
    <a href="javascript:void(0)">js</a>
    <a href="mailto:me@h.test">mail</a>
    <a href="tel:+123">tel</a>
    <a href="data:text/plain,hi">data</a>
    <a href="http://[::1">unparseable</a>
    <a>no href</a>
    <map><area href="/area" alt="area"></map>
    <link href="/style.css" rel="stylesheet">
    <a href="/logout">logout</a>
</body></html>"#;

#[test]
fn defaults_resolve_dedupe_and_keep_order() {
    let r = page("http://h.test/dir/page", SITE);
    assert_eq!(
        strings(LinkExtractor::default().extract(&r)),
        [
            "http://h.test/a",
            "http://h.test/dir/b/c?x=1",
            "http://h.test/up",
            "https://other.test/x",
            "http://sub.h.test/s",
            "http://h.test/area",
            "http://h.test/logout",
        ]
    );
}

#[test]
fn markup_in_raw_text_is_not_a_link_and_entities_are_decoded() {
    let body = r#"<html><head><title><a href="/in-title"></title>
        <script>var s = '<a href="/in-script">';</script>
        <style>a[href="/in-style"] { color: red }</style></head>
        <body><textarea><a href="/in-textarea"></textarea>
        <a href="/q?x=1&amp;y=2&copy=3&lt;4">entity</a>
        <!-- <a href="/in-comment"> --><xmp><a href="/in-xmp"></xmp>
        <A HREF="/upper">case</A>
        <a href='/single'>quotes</a><a href=/bare>unquoted</a>
        <template><a href="/in-template">template</a></template>
        <noscript><a href="/in-noscript">noscript</a></noscript>
        <a href="/after">after</a>
        </body></html>"#;
    let r = page("http://h.test/", body);
    let extractor = LinkExtractor::default();
    let links = strings(extractor.extract(&r));
    assert_eq!(
        links,
        [
            // `&copy` followed by `=` is not a reference in an attribute.
            "http://h.test/q?x=1&y=2&copy=3%3C4",
            "http://h.test/upper",
            "http://h.test/single",
            "http://h.test/bare",
            "http://h.test/in-noscript",
            "http://h.test/after",
        ]
    );
    // The same links as from the parsed page, but for `<noscript>`,
    // which scraper parses as a browser running scripts would: as text.
    let mut parsed = strings(extractor.extract_from(&r.html(), &r.url));
    parsed.insert(4, "http://h.test/in-noscript".into());
    assert_eq!(links, parsed);
    let site = page("http://h.test/dir/page", SITE);
    assert_eq!(
        extractor.extract(&site),
        extractor.extract_from(&site.html(), &site.url)
    );
}

#[test]
fn allow_and_deny_patterns() {
    let r = page("http://h.test/dir/page", SITE);
    let links = LinkExtractor::builder()
        .allow([r"h\.test/"])
        .deny(["/logout$", r"\?x="])
        .build()
        .unwrap();
    assert_eq!(
        strings(links.extract(&r)),
        [
            "http://h.test/a",
            "http://h.test/up",
            "http://sub.h.test/s",
            "http://h.test/area",
        ]
    );
}

#[test]
fn same_domain_and_allow_domains() {
    let r = page("http://h.test:8080/dir/page", SITE);
    let same = LinkExtractor::builder().same_domain(true).build().unwrap();
    assert_eq!(
        strings(same.extract(&r)),
        [
            "http://h.test:8080/a",
            "http://h.test:8080/dir/b/c?x=1",
            "http://h.test:8080/up",
            "http://h.test/a",
            "http://h.test:8080/area",
            "http://h.test:8080/logout",
        ]
    );
    let domains = LinkExtractor::builder()
        .allow_domains(["H.test"])
        .deny(["h.test:8080"])
        .build()
        .unwrap();
    assert_eq!(
        strings(domains.extract(&r)),
        ["http://h.test/a", "http://sub.h.test/s"]
    );
}

#[test]
fn base_href_is_respected() {
    let r = page(
        "http://h.test/dir/page",
        r#"<html><head><base href="/other/"><base href="/ignored/"></head>
           <body><a href="x">x</a><a href="/abs">abs</a><a href="">self</a></body></html>"#,
    );
    assert_eq!(
        strings(LinkExtractor::default().extract(&r)),
        [
            "http://h.test/other/x",
            "http://h.test/abs",
            "http://h.test/other/"
        ]
    );
    // A base inside <noscript> is not the page's base; its links count.
    let r = page(
        "http://h.test/dir/page",
        r#"<noscript><base href="/ns/"><a href="x">x</a></noscript><a href="y">y</a>"#,
    );
    assert_eq!(
        strings(LinkExtractor::default().extract(&r)),
        ["http://h.test/dir/x", "http://h.test/dir/y"]
    );
    // A base that is not http(s) is not used.
    let r = page(
        "http://h.test/dir/page",
        r#"<base href="javascript:x"><a href="y">y</a>"#,
    );
    assert_eq!(
        strings(LinkExtractor::default().extract(&r)),
        ["http://h.test/dir/y"]
    );
}

#[test]
fn base_and_noscript_are_found_in_any_case() {
    let r = page(
        "http://h.test/dir/page",
        r#"<HEAD><BaSe HREF="/other/"></HEAD><NoScript><a href="n">n</a></NOSCRIPT><a href="x">x</a>"#,
    );
    assert_eq!(
        strings(LinkExtractor::default().extract(&r)),
        ["http://h.test/other/n", "http://h.test/other/x"]
    );
    // The pre-check that spares the scanner these selectors is tested
    // in scanner.rs.
}

#[test]
fn tags_and_attrs_are_configurable() {
    let r = page("http://h.test/", SITE);
    let links = LinkExtractor::builder()
        .tags(["LINK"])
        .attrs(["href"])
        .build()
        .unwrap();
    assert_eq!(strings(links.extract(&r)), ["http://h.test/style.css"]);
}

#[test]
fn attributes_are_read_where_they_stand() {
    // Text before the links that is several bytes per character, an
    // attribute named twice (the first counts), names that only
    // contain the wanted one, an empty and a missing value, and two
    // wanted attributes on one element (both, in the order asked).
    let body = "<p>héllo ✓ — 漢字</p>\
        <a data-href=\"/no\" href=\"/first\" href=\"/second\">1</a>\
        <a hrefx=\"/no\" HREF='/é?q=a&amp;b'>2</a>\
        <a href>self</a><a name=\"x\">no href</a>\
        <area src=\"/s\" href=\"/h\"><a href=\"/t\" src=\"/u\">3</a>";
    let r = page("http://h.test/dir/page", body);
    let links = strings(LinkExtractor::default().extract(&r));
    assert_eq!(
        links,
        [
            "http://h.test/first",
            "http://h.test/%C3%A9?q=a&b",
            "http://h.test/dir/page",
            "http://h.test/h",
            "http://h.test/t",
        ]
    );
    // The tree parser reads the same attributes.
    assert_eq!(
        links,
        strings(LinkExtractor::default().extract_from(&Html::parse_document(body), &r.url))
    );
    let two = LinkExtractor::builder()
        .tags(["a", "area"])
        .attrs(["src", "href"])
        .build()
        .unwrap();
    let found = strings(two.extract(&r));
    assert_eq!(
        found[3..],
        [
            "http://h.test/s",
            "http://h.test/h",
            "http://h.test/u",
            "http://h.test/t",
        ]
    );
}

#[test]
fn a_value_is_taken_as_written_in_the_page_its_noscript_and_its_base() {
    // A leading U+FEFF is part of the value, as browsers (and the
    // tree parser) read it: the URL parser percent-encodes it.
    let r = page(
        "http://h.test/dir/page",
        "<a href=\"\u{FEFF}/bom\">a</a>\
         <noscript><a href=\"\u{FEFF}/ns\">n</a></noscript>",
    );
    assert_eq!(
        strings(LinkExtractor::default().extract(&r)),
        [
            "http://h.test/dir/%EF%BB%BF/bom",
            "http://h.test/dir/%EF%BB%BF/ns",
        ]
    );
    let r = page(
        "http://h.test/dir/page",
        "<base href=\"\u{FEFF}/b/\"><a href=\"x\">x</a>",
    );
    assert_eq!(
        strings(LinkExtractor::default().extract(&r)),
        ["http://h.test/dir/%EF%BB%BF/b/x"]
    );
}

#[test]
fn bad_tag_or_attribute_names_fail_at_build() {
    let e = LinkExtractor::builder().tags(["a b"]).build().unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Config(_)), "{e}");
    assert!(e.to_string().contains("name \"a b\""), "{e}");
    let e = LinkExtractor::builder().attrs([""]).build().unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Config(_)), "{e}");
    // No tags: no links, and no failure.
    let none = LinkExtractor::builder().tags(Vec::<String>::new()).build();
    let r = page("http://h.test/", SITE);
    assert!(none.unwrap().extract(&r).is_empty());
}

#[test]
fn bad_patterns_fail_at_build() {
    let e = LinkExtractor::builder()
        .allow(["ok"])
        .deny(["(unclosed"])
        .build()
        .unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Config(_)), "{e}");
    assert_eq!(e.stage(), Stage::Setup);
    assert!(e.to_string().contains("deny pattern \"(unclosed\""), "{e}");
}

#[test]
fn requests_carry_the_links() {
    let r = page(
        "http://h.test/",
        r#"<a href="/a#x">a</a><a href="/a">a</a>"#,
    );
    let requests: Vec<Request<()>> = LinkExtractor::default().requests(&r);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].url.as_str(), "http://h.test/a");
    assert_eq!(requests[0].method, awc::http::Method::GET);
}

/// Pages whose markup tokenizers get wrong when they take shortcuts: the
/// scan must find what the tree parser finds in each.
const TRICKY: &[&str] = &[
    // Raw text and escapable raw text of every kind.
    r#"<script><!--<script></script><a href="/double-escaped"></script><a href="/after-script">"#,
    r#"<script><!-- <a href="/in-escaped"> --></script><a href="/ok1">"#,
    r#"<style>/* <a href="/in-style"> */</style><iframe><a href="/in-iframe"></iframe><a href="/ok2">"#,
    r#"<noembed><a href="/in-noembed"></noembed><noframes><a href="/in-noframes"></noframes><a href="/ok3">"#,
    r#"<title><a href="/in-title"></title><textarea><a href="/in-textarea"></textarea><a href="/ok4">"#,
    r#"<a href="/before-plaintext"><plaintext><a href="/in-plaintext">"#,
    // Comments, including the abrupt and bogus ones.
    r#"<!--> <a href="/after-abrupt-comment"> -->"#,
    r#"<!---> <a href="/after-abrupt-comment-2"> -->"#,
    r#"<!-- a -- b --!> <a href="/after-bang-close">"#,
    r#"<? <a href="/in-bogus"> ?><a href="/after-bogus">"#,
    r#"<!-- never closed <a href="/in-open-comment">"#,
    // Markup inside attribute values, and odd attribute syntax.
    r#"<div title='<a href="/in-attribute">'><a href="/ok5" title=">"></div>"#,
    r#"<img alt=<a href=/unquoted-alt><a href=/ok6/><a href = "/spaced" ><A HREF='/UPPER'>"#,
    r#"<a href="/first" href="/second"><a data-href="/data" href="&#x2F;hex&amp;amp">"#,
    // Templates: inert, nested, never closed; a base inside one counts not.
    r#"<template><base href="/t/"><a href="/in-template"><template><a href="/nested"></template><a href="/still-in"></template><a href="ok7">"#,
    r#"<a href="/before"><template><a href="/in-open-template">"#,
    // Foreign content: an SVG `<style>` is markup, not raw text.
    r#"<svg><style><a href="/svg-style-link"></a></style><a href="/svg-link"><text>x</text></a></svg><math><mi><a href="/math-link">m</a></mi></math>"#,
];

#[test]
fn the_scan_finds_what_the_tree_parser_finds_on_tricky_pages() {
    let extractor = LinkExtractor::default();
    for body in TRICKY {
        let r = page("http://h.test/dir/p", body);
        let scanned = strings(extractor.extract(&r));
        let parsed = strings(extractor.extract_from(&r.html(), &r.url));
        assert_eq!(scanned, parsed, "page: {body}");
        for link in &scanned {
            assert!(
                !link.contains("/in-"),
                "{link} is not a link as a parser reads {body}"
            );
        }
    }
}

#[test]
fn a_page_with_hundreds_of_links_keeps_each_once_in_order() {
    let mut body = String::new();
    for round in 0..3 {
        for i in 0..150 {
            // The same URL written three ways: relative, absolute and with
            // a fragment.
            let href = match round {
                0 => format!("p{i}"),
                1 => format!("http://h.test/dir/p{i}"),
                _ => format!("/dir/p{i}#part"),
            };
            body.push_str(&format!("<a href=\"{href}\">{i}</a>\n"));
        }
    }
    let r = page("http://h.test/dir/index", &body);
    let links = strings(LinkExtractor::default().extract(&r));
    let want: Vec<String> = (0..150)
        .map(|i| format!("http://h.test/dir/p{i}"))
        .collect();
    assert_eq!(links, want);
}
