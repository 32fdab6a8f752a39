//! The bearer-token check of every guarded route.
//!
//! A token given is never compared with the right one directly: both are
//! run through HMAC-SHA256 under a key drawn at random when the API is
//! built, and the two tags are compared in constant time. How long a wrong
//! guess takes tells nothing about how much of it was right or how long
//! the token is, and the key (unknown outside the process) keeps the tags
//! from being computed ahead.

use ring::hmac;
use ring::rand::SystemRandom;

/// The shortest token accepted, in bytes (after trimming): 16 bytes of a
/// random token is past guessing over the network.
pub(super) const MIN_TOKEN_BYTES: usize = 16;

/// The right token's tag and the key it was made with.
pub(super) struct TokenCheck {
    /// Drawn at random per API: tags cannot be precomputed or compared
    /// across processes.
    key: hmac::Key,
    /// The right token's tag under `key`.
    tag: hmac::Tag,
}

impl TokenCheck {
    /// The check for `token` (already trimmed), or why it cannot guard
    /// the API.
    pub(super) fn new(token: &str) -> Result<Self, String> {
        if token.len() < MIN_TOKEN_BYTES {
            return Err(format!(
                "the control API's bearer token has {} bytes; use at least {MIN_TOKEN_BYTES} \
                 (a random one, such as 32 hex digits)",
                token.len()
            ));
        }
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
            .map_err(|_| "no randomness for the control API's token key".to_string())?;
        let tag = hmac::sign(&key, token.as_bytes());
        Ok(TokenCheck { key, tag })
    }

    /// Whether `given` is the token, compared in constant time.
    pub(super) fn accepts(&self, given: &str) -> bool {
        hmac::verify(&self.key, given.as_bytes(), self.tag.as_ref()).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_itself_is_accepted() {
        let check = TokenCheck::new("0123456789abcdef").unwrap();
        assert!(check.accepts("0123456789abcdef"));
        assert!(!check.accepts("0123456789abcdeg"), "the last byte differs");
        assert!(!check.accepts("0123456789abcde"), "a prefix");
        assert!(!check.accepts("0123456789abcdef0"), "longer");
        assert!(!check.accepts(""));
        let err = TokenCheck::new("0123456789abcde").err().unwrap();
        assert!(err.contains("15 bytes"), "{err}");
    }
}
