//! Secrets kept out of logs, errors and events.
//!
//! A URL may carry a user name and password (`http://user:pw@host/`, a
//! proxy's, a Redis server's), and a request's headers and cookies may carry
//! credentials. Whatever the crate prints (its log lines, its errors'
//! `Display` and `Debug`, the events a host application streams out, a
//! request's `Debug`) goes through here first: user names and passwords
//! become `***`, secret header and cookie values `[redacted]`. The data
//! itself is untouched: requests are still sent with their credentials.

use std::fmt;

use url::Url;

/// What a secret value is printed as.
pub(crate) const REDACTED: &str = "[redacted]";

/// What a URL's user name and password are printed as.
const MASK: &str = "***";

/// A URL printed with its user name and password masked
/// (`http://***:***@host/`); a URL without them prints as is.
pub(crate) struct Redacted<'a>(pub &'a Url);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.0;
        if url.username().is_empty() && url.password().is_none() {
            return f.write_str(url.as_str());
        }
        let mut masked = url.clone();
        // Only URLs that can hold credentials reach here, so neither fails.
        let _ = masked.set_username(MASK);
        if url.password().is_some() {
            let _ = masked.set_password(Some(MASK));
        }
        f.write_str(masked.as_str())
    }
}

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// `input`, a URL as text (a proxy's, a Redis server's, one a page gave),
/// with its credentials masked. Text that does not parse as a URL loses
/// everything between its scheme and its last `@`, which is where
/// credentials would be.
pub(crate) fn text(input: &str) -> String {
    if let Ok(url) = Url::parse(input) {
        return Redacted(&url).to_string();
    }
    let start = input.find("://").map_or(0, |i| i + 3);
    match input.rfind('@') {
        Some(at) if at >= start => format!("{}{MASK}{}", &input[..start], &input[at..]),
        _ => input.to_string(),
    }
}

/// Whether a header's value is a credential: `Authorization`,
/// `Proxy-Authorization`, `Cookie`, `Set-Cookie`, and any name that says
/// it holds a key, token, secret, password or session (`X-Api-Key`,
/// `X-Auth-Token`, ...).
pub(crate) fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "auth", "cookie", "key", "token", "secret", "password", "session",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// A request's or response's meta map printed with every URL in it
/// masked (the redirect chain's `redirect_urls`, or a URL a spider put
/// there): each string value that holds `://` and an `@` goes through
/// [`text`], in nested arrays and objects too.
pub(crate) struct Meta<'a>(pub &'a serde_json::Map<String, serde_json::Value>);

impl fmt::Debug for Meta<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn mask(value: &mut serde_json::Value) {
            match value {
                serde_json::Value::String(s) if s.contains("://") && s.contains('@') => {
                    *s = text(s);
                }
                serde_json::Value::Array(items) => items.iter_mut().for_each(mask),
                serde_json::Value::Object(map) => map.values_mut().for_each(mask),
                _ => {}
            }
        }
        let mut map = self.0.clone();
        map.values_mut().for_each(mask);
        write!(f, "{map:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_a_meta_map_are_masked() {
        let meta = serde_json::json!({
            "redirect_urls": ["http://u:chainpw@h/a", "http://h/b"],
            "nested": {"from": "https://x:nestedpw@h/"},
            "note": "a@b",
        });
        let shown = format!("{:?}", Meta(meta.as_object().unwrap()));
        assert!(
            !shown.contains("chainpw") && !shown.contains("nestedpw"),
            "{shown}"
        );
        assert!(
            shown.contains("http://***:***@h/a") && shown.contains("http://h/b"),
            "{shown}"
        );
        assert!(shown.contains("a@b"), "{shown}");
    }

    #[test]
    fn urls_lose_their_credentials_and_nothing_else() {
        let show = |u: &str| Redacted(&Url::parse(u).unwrap()).to_string();
        assert_eq!(
            show("http://user:pw@127.0.0.1:8080/a?b=c"),
            "http://***:***@127.0.0.1:8080/a?b=c"
        );
        assert_eq!(show("http://user@h/"), "http://***@h/");
        assert_eq!(show("https://:pw@h/"), "https://***:***@h/");
        assert_eq!(show("http://h/p@q"), "http://h/p@q");
        assert_eq!(
            text("redis://:hunter2@127.0.0.1:6379/0"),
            "redis://***:***@127.0.0.1:6379/0"
        );
        // Not a URL: everything up to the last `@` goes.
        assert_eq!(text("http://u:p w@[bad/"), "http://***@[bad/");
        assert_eq!(text("not a url"), "not a url");
    }

    #[test]
    fn credential_headers_are_secret() {
        for name in [
            "Authorization",
            "proxy-authorization",
            "Cookie",
            "Set-Cookie",
            "X-Api-Key",
            "X-Auth-Token",
            "X-Session-Id",
        ] {
            assert!(is_secret_header(name), "{name}");
        }
        for name in ["Accept", "User-Agent", "Content-Type", "Referer"] {
            assert!(!is_secret_header(name), "{name}");
        }
    }
}
