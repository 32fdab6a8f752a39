//! The link extractor on pages shaped like real ones (the `bench`
//! example's `--shape real` pages: 14 KB to 1 MB, mostly inline script and
//! style, 70 to 135 anchors, and markup that only looks like links): its scan
//! finds exactly the links the tree parser finds, every page's children
//! among them, and none of the look-alikes.

use spinneret::{LinkExtractor, Response};
use url::Url;

use crate::bench_site::real_page::{page_bytes, render_real};
use crate::bench_site::{page_links, page_path};

/// The generated site's size: the links point below it.
const PAGES: u64 = 20_000;

fn response(n: u64) -> Response {
    Response {
        url: Url::parse(&format!("http://127.0.0.1:8/{}", &page_path(n)[1..])).unwrap(),
        status: 200,
        headers: Default::default(),
        body: render_real(n, PAGES).into(),
        meta: Default::default(),
    }
}

#[test]
fn real_shaped_pages_give_the_tree_parsers_links_and_no_look_alikes() {
    let extractor = LinkExtractor::default();
    // The first 300 pages, and the largest ones among the next 20,000
    // (the tail of the size distribution: 100 KB to 1 MB).
    let large = (300..PAGES).filter(|&n| page_bytes(n) > 100_000).take(20);
    let mut checked = 0;
    for n in (0..300).chain(large) {
        let r = response(n);
        let scanned = extractor.extract(&r);
        let parsed = extractor.extract_from(&r.html(), &r.url);
        assert_eq!(scanned, parsed, "page {n}");
        assert!(
            scanned.iter().all(|u| !u.path().starts_with("/trap/")),
            "page {n}: a look-alike was taken for a link: {scanned:?}"
        );
        let same_host = scanned
            .iter()
            .filter(|u| u.host_str() == Some("127.0.0.1"))
            .count();
        assert!(
            (40..=150).contains(&same_host),
            "page {n}: {same_host} same-host links"
        );
        for child in page_links(n, PAGES) {
            let want = r.url.join(&page_path(child)).unwrap();
            assert!(scanned.contains(&want), "page {n} lost its link to {want}");
        }
        // The external, mailto: and javascript: links: one of them kept.
        let external = scanned
            .iter()
            .filter(|u| u.host_str() == Some("example.org"));
        assert_eq!(external.count(), 1, "page {n}");
        checked += 1;
    }
    assert_eq!(checked, 320);
}
