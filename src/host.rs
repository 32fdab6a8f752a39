//! Host matching: whether a host is a domain or one of its subdomains.
//!
//! One rule for every place that filters by domain (the crawl's allowed
//! domains, a link extractor's `allow_domains`, a `no_proxy` list): a
//! domain as users write it (`Example.com`, `.example.com`, `*.example.com`,
//! `example.com.`) is normalised once with [`normalise`], then a host
//! matches it when it is that domain or ends in `.` + that domain
//! ([`within`]). `example.com` therefore matches `www.example.com` but not
//! `badexample.com`, and an IP address matches only itself.

/// A domain as written by a user, in the form [`within`] compares:
/// lower-case, without a leading `*.` or `.` and without a trailing `.`.
pub(crate) fn normalise(domain: &str) -> String {
    domain
        .trim()
        .trim_start_matches("*.")
        .trim_start_matches('.')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// Whether `host` is `domain` (normalised) or a subdomain of it. `host` is
/// compared as a URL gives it (domain names are already lower-case there);
/// a trailing `.` (the fully qualified form) is ignored.
pub(crate) fn within(host: &str, domain: &str) -> bool {
    let host = host.trim_end_matches('.');
    host == domain
        || (host
            .strip_suffix(domain)
            .is_some_and(|sub| sub.ends_with('.'))
            // An IP address is no subdomain: `1.2.3.4` is not within
            // `2.3.4`. Parsed only when the suffix matched.
            && host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().is_err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_domain_matches_itself_and_its_subdomains_only() {
        let d = normalise("Example.COM");
        assert!(within("example.com", &d));
        assert!(within("www.example.com", &d));
        assert!(within("a.b.example.com.", &d));
        assert!(!within("badexample.com", &d));
        assert!(!within("example.com.evil", &d));
        assert!(!within("com", &d));
    }

    #[test]
    fn an_ip_address_matches_only_itself() {
        assert!(within("127.0.0.1", "127.0.0.1"));
        assert!(!within("1.2.3.4", "2.3.4"));
        assert!(!within("10.0.0.1", "0.0.1"));
        assert!(within("::1", "::1"));
    }

    #[test]
    fn written_forms_normalise_to_one() {
        for written in [
            "example.com",
            ".example.com",
            "*.example.com",
            "EXAMPLE.com.",
            " example.com ",
        ] {
            assert_eq!(normalise(written), "example.com", "{written:?}");
        }
    }
}
