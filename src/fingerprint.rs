//! Request fingerprints: what makes two requests "the same".
//!
//! The method, the canonical URL (query
//! pairs sorted, fragment dropped), the body bytes and the headers sorted by
//! name, hashed to 128 bits with SipHash-1-3. The request is only read, so a
//! POST body still goes out intact. The keys are fixed so fingerprints are
//! stable across processes and runs (a persisted or shared filter stays
//! valid).

use std::borrow::Cow;
use std::hash::Hasher;

use siphasher::sip128::{Hasher128, SipHasher13};
use url::Url;

use crate::request::Request;

/// A request's 128-bit fingerprint.
pub type Fingerprint = u128;

/// The URL in canonical form: query pairs sorted (by key, then value), the
/// fragment dropped. Scheme and host case, default ports and
/// percent-encoding are already normalised by the `url` parser. A URL
/// with neither query nor fragment (most of them) is already canonical and
/// comes back borrowed.
#[inline]
pub fn canonical_url(url: &Url) -> Cow<'_, Url> {
    if url.fragment().is_none() && url.query().is_none() {
        return Cow::Borrowed(url);
    }
    let mut canon = url.clone();
    canon.set_fragment(None);
    if url.query().is_some() {
        let mut pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        if pairs.is_empty() {
            canon.set_query(None);
        } else {
            pairs.sort();
            canon.query_pairs_mut().clear().extend_pairs(pairs);
        }
    }
    Cow::Owned(canon)
}

/// The fixed SipHash keys.
const KEYS: (u64, u64) = (0x7370_696e_6e65_7265, 0x7420_6670_2076_3031);

/// The most bytes [`fingerprint`] hashes in one go from a small stack
/// buffer: a link's method and URL most often fit, and a buffer this small
/// is cleared in a few stores rather than a call.
const SHORT: usize = 128;

/// The most bytes [`fingerprint`] hashes in one go from the stack.
const ONE_GO: usize = 512;

/// The fingerprint of `request`.
pub fn fingerprint<C>(request: &Request<C>) -> Fingerprint {
    let url = canonical_url(&request.url);
    // Most requests (links followed) have no headers and a short URL: the
    // same bytes as the streamed form, gathered on the stack and hashed in
    // one call rather than fed in seven small writes.
    if request.headers.is_empty() {
        let (method, body) = (request.method.as_str(), &request.body[..]);
        let n = one_go_len(method, url.as_str(), body);
        if n <= SHORT {
            return in_one_go::<SHORT>(method, url.as_str(), body, n);
        }
        if n <= ONE_GO {
            return in_one_go::<ONE_GO>(method, url.as_str(), body, n);
        }
    }
    streamed(request, url.as_str())
}

/// How many bytes the streamed form of a request without headers hashes.
fn one_go_len(method: &str, url: &str, body: &[u8]) -> usize {
    4 * 8 + method.len() + url.len() + body.len()
}

/// The streamed form's `n` bytes for a request without headers, hashed in
/// one call from an `N`-byte stack buffer (`n <= N`).
fn in_one_go<const N: usize>(method: &str, url: &str, body: &[u8], n: usize) -> Fingerprint {
    let mut buf = [0u8; N];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        buf[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    // `write_u64` hashes an integer's native bytes: so does this, so the
    // two forms agree on every platform.
    for field in [method.as_bytes(), url.as_bytes(), body] {
        put(&(field.len() as u64).to_ne_bytes());
        put(field);
    }
    put(&0u64.to_ne_bytes());
    SipHasher13::new_with_keys(KEYS.0, KEYS.1)
        .hash(&buf[..n])
        .as_u128()
}

/// The fingerprint as first defined: every field (`url` canonical)
/// streamed into the hasher, length-prefixed so that field boundaries
/// cannot shift, then the headers sorted by lower-cased name.
fn streamed<C>(request: &Request<C>, url: &str) -> Fingerprint {
    let mut h = SipHasher13::new_with_keys(KEYS.0, KEYS.1);
    let field = |h: &mut SipHasher13, bytes: &[u8]| {
        h.write_u64(bytes.len() as u64);
        h.write(bytes);
    };
    field(&mut h, request.method.as_str().as_bytes());
    field(&mut h, url.as_bytes());
    field(&mut h, &request.body);
    let mut headers: Vec<(String, &str)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    headers.sort();
    h.write_u64(headers.len() as u64);
    for (k, v) in &headers {
        field(&mut h, k.as_bytes());
        field(&mut h, v.as_bytes());
    }
    h.finish128().as_u128()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(url: &str) -> Request<()> {
        Request::get(url).unwrap()
    }

    #[test]
    fn canonical_url_sorts_query_and_drops_fragment() {
        let u = Url::parse("HTTP://Example.COM:80/a?b=2&a=1&a=0#frag").unwrap();
        assert_eq!(
            canonical_url(&u).as_str(),
            "http://example.com/a?a=0&a=1&b=2"
        );
        let u = Url::parse("http://h/a?").unwrap();
        assert_eq!(canonical_url(&u).as_str(), "http://h/a");
    }

    #[test]
    fn same_request_same_fingerprint() {
        assert_eq!(
            fingerprint(&get("http://h/a?x=1&y=2#top")),
            fingerprint(&get("http://h/a?y=2&x=1"))
        );
    }

    #[test]
    fn method_body_and_headers_count() {
        let base = fingerprint(&get("http://h/a"));
        assert_ne!(
            base,
            fingerprint(&Request::<()>::post("http://h/a", "").unwrap())
        );
        let p1 = fingerprint(&Request::<()>::post("http://h/a", "x=1").unwrap());
        let p2 = fingerprint(&Request::<()>::post("http://h/a", "x=2").unwrap());
        assert_ne!(p1, p2);
        let h1 = get("http://h/a").header("A", "1").header("b", "2");
        let h2 = get("http://h/a").header("b", "2").header("a", "1");
        assert_eq!(fingerprint(&h1), fingerprint(&h2), "headers sorted by name");
        assert_ne!(base, fingerprint(&h1));
    }

    #[test]
    fn body_is_left_intact() {
        let r = Request::<()>::post("http://h/a", "payload").unwrap();
        let _ = fingerprint(&r);
        assert_eq!(&r.body[..], b"payload");
    }

    #[test]
    fn hashing_in_one_go_changes_no_fingerprint() {
        let long = format!("http://h/{}", "x".repeat(600));
        let requests = [
            get("http://h/"),
            get("http://127.0.0.1:18080/page/12345"),
            get("http://h/a?b=2&a=1#f"),
            get(&long),
            Request::<()>::post("http://h/a", "x=1").unwrap(),
            Request::<()>::post("http://h/a", vec![7u8; 480]).unwrap(),
            get("http://h/a").header("B", "2").header("a", "1"),
        ];
        for r in &requests {
            let url = canonical_url(&r.url);
            assert_eq!(fingerprint(r), streamed(r, url.as_str()), "{}", r.url);
        }
        // Pinned: a persisted filter must stay valid across versions.
        assert_eq!(
            fingerprint(&get("http://example.com/")),
            0x7ddf_0864_5826_6bb6_17dd_d6ba_2b31_4cfa
        );
    }

    #[test]
    fn every_url_shape_hashes_as_the_streamed_form() {
        // The one-go paths must give exactly the streamed form's value:
        // persisted filters (job directories, Redis) hold fingerprints.
        let mut urls: Vec<String> = [
            "http://h/",
            "https://example.com/a/b/c.html",
            "HTTP://Example.COM:80/a?b=2&a=1&a=0#frag",
            "https://example.com:443/x",
            "http://example.com:8080/x",
            "http://h/a?",
            "http://h/a#",
            "http://h/a?#",
            "http://h/a?x=1&y=2#top",
            "http://h/a?y=2&x=1",
            "http://h/a?a=%20b&c=d+e&f",
            "http://h/a?q=caf%C3%A9&q=caf\u{e9}",
            "http://h/%7Euser/caf\u{e9}/a%2Fb",
            "http://h/a b/<c>?d e=f g",
            "http://user:pa%3Ass@h/private",
            "http://user@h:81/private?k=v",
            "http://b\u{fc}cher.example/\u{fc}ber",
            "http://xn--bcher-kva.example/%C3%BCber",
            "http://[::1]:8080/v6?z=1",
            "http://127.0.0.1:18101/page/12",
            "http://h/./a/../b/./c",
            "http://h/a?%zz=1&&=&x",
        ]
        .iter()
        .map(|u| u.to_string())
        .collect();
        // Every length across both stack buffers' limits.
        urls.extend((0..520).map(|k| format!("http://h/{}", "x".repeat(k))));
        urls.extend(
            (0..520)
                .step_by(7)
                .map(|k| format!("http://h/a?{}=1#f", "y".repeat(k))),
        );
        let mut requests: Vec<Request<()>> = urls.iter().map(|u| get(u)).collect();
        for k in (0..560).step_by(5) {
            requests.push(Request::post("http://h/p", vec![b'b'; k]).unwrap());
        }
        requests.push(get("http://h/a").header("B", "2").header("a", "1"));
        let (mut short, mut long) = (0, 0);
        for r in &requests {
            let url = canonical_url(&r.url);
            assert_eq!(fingerprint(r), streamed(r, url.as_str()), "{}", r.url);
            let n = one_go_len(r.method.as_str(), url.as_str(), &r.body);
            short += usize::from(n <= SHORT);
            long += usize::from(n > ONE_GO);
        }
        // All three paths were taken, many times each.
        assert!(short > 100 && long > 50, "{short} short, {long} long");
        assert_eq!(
            fingerprint(&get("http://b\u{fc}cher.example/")),
            fingerprint(&get("http://xn--bcher-kva.example/"))
        );
    }

    #[test]
    fn fingerprints_are_stable_across_runs() {
        // Fixed keys: a persisted filter must stay valid after a restart.
        assert_eq!(
            fingerprint(&get("http://h/a")),
            fingerprint(&get("http://h/a"))
        );
        let known = fingerprint(&get("http://example.com/"));
        assert_eq!(known, fingerprint(&get("http://EXAMPLE.com:80/#x")));
    }
}
