//! The bench site's sitemaps, served when the site is made with
//! `Site::with_sitemaps(n)` (`bench --sitemaps N`): `/robots.txt` names
//! `/sitemap_index.xml`, which lists `n` gzip sitemaps
//! `/sitemaps/{k}.xml.gz`; sitemap k lists the k-th of `n` equal runs of
//! the site's pages (at most [`MAX_URLS`] each), each with a `<lastmod>`.
//! A changing site's sitemaps list the live pages of its edition, new
//! ones spread over them, each with the day it last changed (`listing`).
//! Everything is rendered on request from the page numbers.

use std::fmt::Write as _;
use std::io::Write as _;

use super::page_path;

/// The most pages one sitemap lists: the protocol's limit.
pub const MAX_URLS: u64 = 50_000;

/// Where the sitemap index is served.
pub const INDEX_PATH: &str = "/sitemap_index.xml";

/// Pages each of `sitemaps` sitemaps lists, for a `pages`-page site; `None`
/// when that is more than [`MAX_URLS`] (more sitemaps are needed).
pub fn per_sitemap(pages: u64, sitemaps: u64) -> Option<u64> {
    Some(pages.div_ceil(sitemaps.max(1))).filter(|&per| per <= MAX_URLS)
}

/// The `<lastmod>` of page `n` of a site that does not change: a day of
/// January 2024.
pub fn lastmod(n: u64) -> String {
    format!("2024-01-{:02}", 1 + n % 28)
}

/// Which of `sitemaps` sitemaps lists page `n` of a `pages`-page site:
/// the k-th run of the first `pages`, and later (new) pages in turn.
fn sitemap_of(n: u64, pages: u64, sitemaps: u64) -> Option<u64> {
    let per = per_sitemap(pages, sitemaps)?;
    Some(if n < pages {
        n / per
    } else {
        (n - pages) % sitemaps
    })
}

/// The pages sitemap `k` of a site lists, each with its `<lastmod>`.
pub fn listing(site: &super::Site, k: u64) -> Vec<(u64, String)> {
    let (pages, sitemaps) = (site.pages, site.sitemaps);
    let mine = |n: &u64| sitemap_of(*n, pages, sitemaps) == Some(k);
    match &site.changes {
        Some(changes) => changes.live().filter(|(n, _)| mine(n)).collect(),
        None => (0..pages).filter(mine).map(|n| (n, lastmod(n))).collect(),
    }
}

/// The answer for `path` (content type and body) if it is one of the
/// sitemaps of `site` served at `host`.
pub fn answer(path: &str, host: &str, site: &super::Site) -> Option<(&'static str, Vec<u8>)> {
    let (pages, sitemaps) = (site.pages, site.sitemaps);
    const XMLNS: &str = "http://www.sitemaps.org/schemas/sitemap/0.9";
    if path == "/robots.txt" {
        let text = format!("User-agent: *\nAllow: /\nSitemap: http://{host}{INDEX_PATH}\n");
        return Some(("text/plain", text.into_bytes()));
    }
    if path == INDEX_PATH {
        let mut xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<sitemapindex xmlns=\"{XMLNS}\">\n"
        );
        for k in 0..sitemaps {
            let _ = writeln!(
                xml,
                "<sitemap><loc>http://{host}/sitemaps/{k}.xml.gz</loc></sitemap>"
            );
        }
        xml.push_str("</sitemapindex>\n");
        return Some(("application/xml", xml.into_bytes()));
    }
    let k: u64 = path
        .strip_prefix("/sitemaps/")?
        .strip_suffix(".xml.gz")?
        .parse()
        .ok()?;
    per_sitemap(pages, sitemaps)?;
    if k >= sitemaps {
        return None;
    }
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut xml =
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset xmlns=\"{XMLNS}\">\n");
    for (n, lastmod) in listing(site, k) {
        let _ = writeln!(
            xml,
            "<url><loc>http://{host}{}</loc><lastmod>{lastmod}</lastmod></url>",
            page_path(n),
        );
        if xml.len() > 1 << 16 {
            gzip.write_all(xml.as_bytes()).ok()?;
            xml.clear();
        }
    }
    xml.push_str("</urlset>\n");
    gzip.write_all(xml.as_bytes()).ok()?;
    Some(("application/gzip", gzip.finish().ok()?))
}
