//! CSS selectors as the crate parses them, and the text of what they
//! match: one place for [`Response::css`](super::Response::css), the
//! command line's `css` and its `--field`s, so that all three give the
//! same error and the same text for the same selector.

use cssparser::{ToCss as _, Token};
use scraper::error::SelectorErrorKind;
use scraper::{ElementRef, Selector};
use selectors::parser::SelectorParseErrorKind as Kind;

use crate::error::ErrorKind;

/// Parses `selector`, or an [`ErrorKind::Selector`] whose reason is one
/// short line (`empty selector`, `unsupported pseudo-element ::before`,
/// `unexpected end of selector`).
pub(crate) fn parse_selector(selector: &str) -> Result<Selector, ErrorKind> {
    Selector::parse(selector).map_err(|e| ErrorKind::Selector {
        selector: selector.to_string(),
        reason: reason(&e, selector),
    })
}

/// An element's text: its descendant text nodes joined, each run of
/// whitespace (line breaks included) made one space, trimmed; what a
/// reader sees of it on one line.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub(crate) fn element_text(element: ElementRef<'_>) -> String {
    let text: String = element.text().collect();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One line saying what is wrong with `selector`.
fn reason(error: &SelectorErrorKind<'_>, selector: &str) -> String {
    match error {
        SelectorErrorKind::UnexpectedToken(t) => format!("unexpected {}", token(t)),
        SelectorErrorKind::EndOfLine => "unexpected end of selector".into(),
        SelectorErrorKind::InvalidAtRule(rule) => format!("invalid @-rule @{rule}"),
        SelectorErrorKind::InvalidAtRuleBody => "invalid @-rule body".into(),
        SelectorErrorKind::QualRuleInvalid => "invalid qualified rule".into(),
        SelectorErrorKind::ExpectedColonOnPseudoElement(t) => {
            format!("expected \":\" in a pseudo-element, found {}", token(t))
        }
        SelectorErrorKind::ExpectedIdentityOnPseudoElement(t) => {
            format!("expected a pseudo-element name, found {}", token(t))
        }
        SelectorErrorKind::UnexpectedSelectorParseError(kind) => parse_reason(kind, selector),
    }
}

/// One line for an error of the selector grammar.
fn parse_reason(kind: &Kind<'_>, selector: &str) -> String {
    match kind {
        Kind::EmptySelector => "empty selector".into(),
        Kind::DanglingCombinator => "a combinator with no selector after it".into(),
        Kind::NonCompoundSelector => "expected a compound selector".into(),
        Kind::NonPseudoElementAfterSlotted | Kind::InvalidPseudoElementAfterSlotted => {
            "invalid pseudo-element after ::slotted()".into()
        }
        Kind::InvalidPseudoElementInsideWhere => "a pseudo-element inside :where()".into(),
        Kind::InvalidState => "a pseudo-class or pseudo-element out of place".into(),
        Kind::UnsupportedPseudoClassOrElement(name) => {
            // The parser names both kinds alike; the selector's `::` tells.
            if selector.contains(&format!("::{name}")) {
                format!("unsupported pseudo-element ::{name}")
            } else {
                format!("unsupported pseudo-class :{name}")
            }
        }
        Kind::UnexpectedIdent(name) => format!("unexpected name {name:?}"),
        Kind::ExpectedNamespace(prefix) => format!("unknown namespace prefix {prefix:?}"),
        Kind::NoQualifiedNameInAttributeSelector(t) => {
            format!("expected an attribute name, found {}", token(t))
        }
        Kind::UnexpectedTokenInAttributeSelector(t) => {
            format!("unexpected {} in an attribute selector", token(t))
        }
        Kind::PseudoElementExpectedColon(t) => {
            format!("expected \":\" in a pseudo-element, found {}", token(t))
        }
        Kind::PseudoElementExpectedIdent(t) => {
            format!("expected a pseudo-element name, found {}", token(t))
        }
        Kind::NoIdentForPseudo(t) => {
            format!(
                "expected a pseudo-class name after \":\", found {}",
                token(t)
            )
        }
        Kind::ExpectedBarInAttr(t) => {
            format!(
                "expected \"|\" in an attribute selector, found {}",
                token(t)
            )
        }
        Kind::BadValueInAttr(t) => format!("bad value {} in an attribute selector", token(t)),
        Kind::InvalidQualNameInAttr(t) => format!("invalid attribute name {}", token(t)),
        Kind::ExplicitNamespaceUnexpectedToken(t) => {
            format!("unexpected {} after a namespace prefix", token(t))
        }
        Kind::ClassNeedsIdent(t) => {
            format!("expected a class name after \".\", found {}", token(t))
        }
    }
}

/// A token as written in CSS, quoted.
fn token(t: &Token<'_>) -> String {
    format!("{:?}", t.to_css_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reason `selector` is refused with.
    fn refused(selector: &str) -> String {
        match parse_selector(selector) {
            Err(ErrorKind::Selector {
                selector: s,
                reason,
            }) => {
                assert_eq!(s, selector);
                reason
            }
            Err(other) => panic!("{selector:?}: {other}"),
            Ok(_) => panic!("{selector:?} parsed"),
        }
    }

    #[test]
    fn each_kind_of_bad_selector_gets_one_short_line() {
        let cases = [
            ("", "empty selector"),
            ("::before", "unsupported pseudo-element ::before"),
            ("a:hoverish", "unsupported pseudo-class :hoverish"),
            ("li a[", "unexpected end of selector"),
            ("a >", "a combinator with no selector after it"),
            ("a[1]", "expected an attribute name, found \"1\""),
            ("a.#x", "expected a class name after \".\", found \"#x\""),
            ("a)", "unexpected \")\""),
        ];
        for (selector, reason) in cases {
            assert_eq!(refused(selector), reason, "{selector:?}");
        }
    }

    #[test]
    fn the_error_is_one_line_naming_the_selector() {
        let kind = parse_selector("::before").err().unwrap();
        assert_eq!(
            kind.to_string(),
            "invalid CSS selector \"::before\": unsupported pseudo-element ::before"
        );
    }

    #[test]
    fn element_text_collapses_whitespace_and_trims() {
        let doc = scraper::Html::parse_fragment("<p>\n  First\n\n  <b>bold</b>\titem  </p>");
        let p = doc.select(&parse_selector("p").unwrap()).next().unwrap();
        assert_eq!(element_text(p), "First bold item");
    }
}
