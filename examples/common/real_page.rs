//! Pages shaped like a real documentation site's, for the `bench` example's
//! `--shape real`: the same link graph as the synthetic site (every page
//! reachable from `/` through its children 10n+1..=10n+10), but each page
//! 14 KB to 1 MB (median about 23 KB, mean 28 KB, a heavy tail: about 1
//! page in 100 is over 100 KB), most of its bytes inline `<script>` and
//! `<style>` (57 % on the median page, more on larger ones), with a
//! site-wide navigation list, a table of contents of in-page anchors,
//! relative and absolute links, external, `mailto:` and `javascript:`
//! links, comments, character references and an inline SVG icon: 70 to 135
//! anchors a page.
//!
//! Each page also holds markup that looks like links but is none as an
//! HTML parser reads it: in a comment, a script's string, a style sheet, a
//! `<template>`, another tag's attribute value, a `<textarea>`. They point
//! to `/trap/…` paths, which the server counts as requests for paths that
//! are not pages, so a crawl following one fails the bench's check. They
//! are single-quoted, as real markup often is, so the bare loop's plain
//! `href="` scan does not see them either.
//!
//! The bulk of every page is sliced from two text blobs made once (script
//! and style sheet), so rendering a page costs the server a copy of its
//! bytes, not their generation.

use std::fmt::Write as _;
use std::sync::LazyLock;

use super::{mix, page_links, page_path};

/// The smallest page, in bytes (the Pareto distribution's scale).
const MIN_BYTES: f64 = 16_384.0;
/// The Pareto distribution's shape: the median is `MIN_BYTES * 2^(1/α)`.
const ALPHA: f64 = 2.5;
/// The largest page, in bytes.
const MAX_BYTES: usize = 1 << 20;
/// About how many bytes of a page are not its style sheet and scripts.
const NON_BULK_BYTES: usize = 9_000;
/// Pages every page's navigation lists (the site's sections).
const NAV_LINKS: u64 = 40;

/// The size page `n` is rendered at, in bytes (about: within a few hundred).
pub fn page_bytes(n: u64) -> usize {
    // A uniform draw in (0, 1], then the Pareto distribution's inverse.
    let u = ((mix(n, 7) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let bytes = MIN_BYTES / u.powf(1.0 / ALPHA);
    (bytes as usize).min(MAX_BYTES)
}

/// A blob of text cut at line ends, sliced into pages.
struct Blob {
    text: String,
    /// Where each line starts, and the text's end.
    lines: Vec<usize>,
}

impl Blob {
    fn new(text: String) -> Self {
        let mut lines = vec![0];
        lines.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Blob { text, lines }
    }

    /// At least `bytes` of whole lines from the line `seed` picks, going
    /// round to the blob's start when they run out.
    fn slice(&self, seed: u64, bytes: usize, out: &mut String) {
        let line_count = self.lines.len() - 1;
        let mut from = self.lines[(seed % line_count as u64) as usize];
        let mut left = bytes;
        while left > 0 {
            let want = from + left;
            let end = match self.lines.binary_search(&want) {
                Ok(i) | Err(i) if i < self.lines.len() => self.lines[i],
                _ => self.text.len(),
            };
            out.push_str(&self.text[from..end]);
            left = left.saturating_sub(end - from);
            from = 0;
        }
    }
}

/// The script blob: about 1.5 MB of plausible JavaScript that never closes
/// its `<script>` and holds HTML only in strings.
static SCRIPT: LazyLock<Blob> = LazyLock::new(|| {
    let mut s = String::with_capacity(1_600_000);
    let mut i = 0u64;
    while s.len() < 1_500_000 {
        let r = mix(i, 31);
        let _ = match r % 6 {
            0 => writeln!(
                s,
                "function f{i}(a, b) {{ if (a < b && b > {}) {{ return a << 2; }} return b >> 1; }}",
                r % 97
            ),
            1 => writeln!(
                s,
                "var t{i} = '<div class=\"tip\"><a href=\\'/trap/script/{i}\\'>more</a></div>';"
            ),
            2 => writeln!(
                s,
                "document.querySelectorAll('.nav-{}').forEach(function (el) {{ el.classList.toggle('open', {i} % 2 === 0); }});",
                r % 50
            ),
            3 => writeln!(
                s,
                "const data{i} = {{\"id\": {i}, \"name\": \"item {}\", \"tags\": [\"a\", \"b\"], \"html\": \"<p>x &lt; y<\\/p>\"}};",
                r % 1000
            ),
            4 => writeln!(
                s,
                "  // {} — loop {i}: for (let k = 0; k < n; k++) sum += k * k;",
                super::WORDS[(r % super::WORDS.len() as u64) as usize]
            ),
            _ => writeln!(
                s,
                "window.addEventListener('load', () => {{ setTimeout(() => render{}(\"#app\"), {}); }});",
                r % 20,
                r % 500
            ),
        };
        i += 1;
    }
    Blob::new(s)
});

/// The style blob: about 400 KB of CSS.
static STYLE: LazyLock<Blob> = LazyLock::new(|| {
    let mut s = String::with_capacity(420_000);
    let mut i = 0u64;
    while s.len() < 400_000 {
        let r = mix(i, 53);
        let _ = match r % 4 {
            0 => writeln!(
                s,
                ".nav-{i} > li a:hover, .nav-{i} > li a:focus {{ color: #{:06x}; text-decoration: underline; }}",
                r & 0xFF_FFFF
            ),
            1 => writeln!(
                s,
                "@media (max-width: {}px) {{ .col-{i} {{ width: 100%; padding: 0 {}px; }} }}",
                400 + r % 800,
                r % 24
            ),
            2 => writeln!(s, "/* <a href='/trap/style/{i}'>old rule</a> */ .x{i} {{ display: none; }}"),
            _ => writeln!(
                s,
                ".icon-{i} {{ background: url(\"/static/img/icon-{}.svg\") no-repeat center / 16px; }}",
                r % 300
            ),
        };
        i += 1;
    }
    Blob::new(s)
});

/// The HTML of page `n` of a `pages`-page site: the same bytes every time,
/// about [`page_bytes`] of them.
pub fn render_real(n: u64, pages: u64) -> String {
    render_real_without(n, pages, &|_| false)
}

/// `render_real`, leaving out the links to the pages `skip` names.
pub fn render_real_without(n: u64, pages: u64, skip: &dyn Fn(u64) -> bool) -> String {
    let target = page_bytes(n);
    let mut html = String::with_capacity(target + 8192);
    let word = |k: u64| super::WORDS[(mix(n, k) % super::WORDS.len() as u64) as usize];
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Page {n} &mdash; {} &amp; {} | Docs</title>\n\
         <style>\n",
        word(1),
        word(2)
    );
    // Most of the page: a style sheet (a fifth of the bulk), then scripts.
    let bulk = target.saturating_sub(NON_BULK_BYTES);
    STYLE.slice(mix(n, 3), bulk / 5, &mut html);
    html.push_str("</style>\n<script>\n");
    SCRIPT.slice(mix(n, 4), bulk - bulk / 5, &mut html);
    html.push_str(
        "</script>\n</head>\n<body class=\"docs\">\n\
         <!-- header: <a href='/trap/comment'>old home</a> -->\n\
         <noscript><img src=\"/static/pixel.gif\" alt=\"\"></noscript>\n\
         <header><a class=\"logo\" href=\"/\" title=\"Home &amp; index\">\
         <svg viewBox=\"0 0 24 24\" width=\"24\" height=\"24\"><path d=\"M12 2L2 7l10 5 10-5-10-5zm0 13l-10-5v6l10 5 10-5v-6l-10 5z\"/></svg>\
         Docs</a></header>\n<nav class=\"sidebar\">\n<ul>\n",
    );
    // The site-wide navigation: the same sections on every page.
    for s in 1..=NAV_LINKS.min(pages - 1) {
        let _ = writeln!(
            html,
            "<li class=\"nav-item\"><a href=\"{}\" class=\"nav-link\">Section {s}: {}</a></li>",
            page_path(s),
            word(100 + s)
        );
    }
    html.push_str("</ul>\n</nav>\n<main>\n<nav class=\"toc\"><ul>\n");
    // A table of contents: in-page anchors (the page itself, again).
    let toc = 5 + mix(n, 5) % 11;
    for k in 0..toc {
        let _ = writeln!(
            html,
            "<li><a href=\"#section-{k}\">{}</a></li>",
            word(200 + k)
        );
    }
    let _ = write!(
        html,
        "</ul></nav>\n<article>\n<h1 id=\"top\">Page {n}: {} &lt;{}&gt;</h1>\n\
         <div class=\"tooltip\" data-tip='<a href=/trap/attribute>x</a>'>&#9432; {} &nbsp;&copy; 2026</div>\n\
         <template id=\"row\"><tr><td><a href='/trap/template'>row</a></td></tr></template>\n",
        word(3),
        word(4),
        word(5)
    );
    // The body: paragraphs, each with a few links in the forms real pages
    // use: the children (so every page is reachable), then others.
    let others = 5 + mix(n, 6) % 56;
    let links: Vec<u64> = page_links(n, pages)
        .chain((0..others).map(|k| mix(n, 10_000 + k) % pages))
        .filter(|&t| !skip(t))
        .collect();
    for (p, chunk) in links.chunks(4).enumerate() {
        let _ = write!(
            html,
            "<h2 id=\"section-{p}\">{} {}</h2>\n<p>",
            word(300 + p as u64),
            word(400 + p as u64)
        );
        for (k, &target) in chunk.iter().enumerate() {
            for w in 0..4 {
                html.push_str(word(1_000 + 100 * p as u64 + 10 * k as u64 + w));
                html.push(' ');
            }
            // Relative forms resolve against `/page/n`, not against `/`.
            let href = match (n, mix(n, 20_000 + target) % 3) {
                (1.., 1) if target > 0 => format!("../page/{target}"),
                (1.., 2) if target > 0 => format!("{target}"),
                _ => page_path(target),
            };
            let _ = write!(
                html,
                "<a href=\"{href}\" title=\"{} &amp; {}\">{} &raquo;</a> &mdash; ",
                word(2_000 + target),
                word(3_000 + target),
                word(4_000 + target)
            );
        }
        html.push_str("</p>\n");
    }
    let _ = write!(
        html,
        "<textarea readonly><a href='/trap/textarea'>copy me</a></textarea>\n\
         <p>See <a href=\"https://example.org/{n}\">example.org</a>, \
         <a href=\"mailto:docs@example.org\">write to us</a> or \
         <a href=\"javascript:void(0)\" onclick=\"toggle({n})\">show more</a>.</p>\n\
         </article>\n</main>\n<footer>\n<!-- generated page {n} -->\n\
         <p>&copy; 2026 Docs &middot; <a href=\"/\">Home</a> &middot; <a href=\"#top\">Top</a></p>\n\
         </footer>\n</body>\n</html>\n"
    );
    html
}
