//! The spider of `spinneret crawl`: from its start URLs it follows the
//! links a [`LinkExtractor`] keeps and yields one item per page.
//!
//! An item is a page that answered with a status below 400 (a page the
//! server refused, or one that failed to download, is counted in the
//! stats' errors instead): `url` (after any redirect), `status`, `depth`
//! (hops from a start URL), `title` (the text of the first `<title>`),
//! then one field per `--field NAME=CSS`: the text of the selector's
//! first match (its text nodes joined, each run of whitespace made one
//! space, trimmed: the text `spinneret css` prints), or with
//! `NAME=CSS@attr` that match's attribute. A title or field the page does
//! not have is `null` (an empty CSV cell), so every item has the same
//! fields in the same order.

use scraper::{Html, Selector};
use serde_json::{Map, Value};

use crate::error::Error;
use crate::links::LinkExtractor;
use crate::request::Request;
use crate::response::{element_text, parse_selector, Response};
use crate::spider::{Output, Spider, StartRequests};

/// The fields every item has, before the `--field` ones.
pub(super) const BUILT_IN: [&str; 4] = ["url", "status", "depth", "title"];

/// One `--field NAME=CSS[@attr]`.
#[derive(Debug)]
pub(super) struct Field {
    /// The item's key.
    name: String,
    /// Compiled once, matched on every page.
    selector: Selector,
    /// The attribute taken from the first match; its text when `None`.
    attr: Option<String>,
}

impl Field {
    /// Parses `NAME=CSS` or `NAME=CSS@attr`. The text after the last `@`
    /// is an attribute when it is an attribute name (letters, digits, `-`,
    /// `_`, `:`); otherwise the `@` belongs to the selector. A
    /// [`ErrorKind::Config`] error naming the argument for a missing name,
    /// a built-in name, or a selector that does not parse.
    pub fn parse(arg: &str) -> Result<Field, Error> {
        let Some((name, css)) = arg.split_once('=') else {
            return Err(Error::config(format!("--field {arg:?}: expected NAME=CSS")));
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::config(format!("--field {arg:?}: the name is empty")));
        }
        if BUILT_IN.contains(&name) {
            return Err(Error::config(format!(
                "--field {arg:?}: {name:?} is a built-in field (url, status, depth, title)"
            )));
        }
        let (css, attr) = match css.rsplit_once('@') {
            Some((css, attr)) if is_attr_name(attr) => (css, Some(attr.to_string())),
            _ => (css, None),
        };
        let selector =
            parse_selector(css).map_err(|k| Error::config(format!("--field {arg:?}: {k}")))?;
        Ok(Field {
            name: name.to_string(),
            selector,
            attr,
        })
    }

    /// The field's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value on `doc`: the first match's text or attribute, or null.
    fn value(&self, doc: &Html) -> Value {
        let Some(el) = doc.select(&self.selector).next() else {
            return Value::Null;
        };
        match &self.attr {
            Some(attr) => el
                .value()
                .attr(attr)
                .map_or(Value::Null, |v| Value::String(v.to_string())),
            None => Value::String(element_text(el)),
        }
    }
}

/// Whether `s` is an attribute name.
fn is_attr_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':'))
}

/// The follow-links spider; see the module docs.
pub(super) struct FollowLinks {
    /// The start requests (checked when the command line was read).
    pub starts: Vec<Request<()>>,
    /// Which links are followed.
    pub links: LinkExtractor,
    /// The `--field`s, in the order given.
    pub fields: Vec<Field>,
    /// Every request goes through this proxy, when set.
    pub proxy: Option<String>,
}

impl FollowLinks {
    /// Every field of an item, in order: the built-in ones, then the
    /// `--field`s.
    pub fn columns(&self) -> Vec<String> {
        BUILT_IN
            .iter()
            .map(|s| s.to_string())
            .chain(self.fields.iter().map(|f| f.name.clone()))
            .collect()
    }

    /// The item of `response`.
    fn item(&self, response: &Response) -> Map<String, Value> {
        let doc = response.html();
        let title = Selector::parse("title").expect("a valid selector");
        let mut item = Map::new();
        item.insert("url".into(), response.url.as_str().into());
        item.insert("status".into(), response.status.into());
        item.insert("depth".into(), response.meta.depth.into());
        let title = doc.select(&title).next().map(element_text);
        item.insert("title".into(), title.map_or(Value::Null, Value::String));
        for field in &self.fields {
            item.insert(field.name.clone(), field.value(&doc));
        }
        item
    }
}

impl Spider for FollowLinks {
    type Callback = ();

    fn name(&self) -> &str {
        "crawl"
    }

    fn start_requests(&self) -> StartRequests<()> {
        Box::new(self.starts.clone().into_iter())
    }

    fn parse(&self, _: (), response: &Response, out: &mut Output<()>) -> Result<(), Error> {
        out.item(Value::Object(self.item(response)));
        for request in self.links.requests::<()>(response) {
            out.request(match &self.proxy {
                Some(proxy) => request.proxy(proxy.clone()),
                None => request,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn doc() -> Html {
        Html::parse_document(
            r#"<html><head><title> A page </title></head><body>
            <h1>Head <b>line</b></h1><a class="next" href="/p/2">next</a>
            <a href="mailto:x@y">mail</a></body></html>"#,
        )
    }

    #[test]
    fn a_field_takes_the_first_matchs_text_or_attribute_or_null() {
        let doc = doc();
        let text = Field::parse("h=h1").unwrap();
        assert_eq!(text.value(&doc), Value::from("Head line"));
        let attr = Field::parse("next=a.next@href").unwrap();
        assert_eq!(attr.value(&doc), Value::from("/p/2"));
        let absent = Field::parse("price=.price").unwrap();
        assert_eq!(absent.value(&doc), Value::Null);
        let no_attr = Field::parse("x=h1@data-x").unwrap();
        assert_eq!(no_attr.value(&doc), Value::Null);
    }

    #[test]
    fn an_at_sign_that_is_no_attribute_stays_in_the_selector() {
        let doc = doc();
        let mail = Field::parse(r#"mail=a[href="mailto:x@y"]"#).unwrap();
        assert_eq!(mail.attr, None);
        assert_eq!(mail.value(&doc), Value::from("mail"));
    }

    #[test]
    fn bad_fields_are_refused_naming_the_argument() {
        for arg in ["nameless", "=h1", "url=h1", "t=h1[", "t=@href"] {
            let err = Field::parse(arg).unwrap_err();
            assert!(matches!(err.kind(), ErrorKind::Config(_)), "{arg}");
            assert!(err.to_string().contains(arg), "{arg}: {err}");
        }
    }

    #[test]
    fn a_fields_text_is_on_one_line_as_css_prints_it() {
        let doc = Html::parse_document("<p class=x>\n  First\n\n  <b>bold</b>\titem </p>");
        let field = Field::parse("p=p.x").unwrap();
        assert_eq!(field.value(&doc), Value::from("First bold item"));
    }

    #[test]
    fn a_bad_selector_in_a_field_is_named_on_one_line() {
        let err = Field::parse("x=::before").unwrap_err();
        let ErrorKind::Config(message) = err.kind() else {
            panic!("{err}");
        };
        assert_eq!(
            message,
            "--field \"x=::before\": invalid CSS selector \"::before\": \
             unsupported pseudo-element ::before"
        );
    }
}
