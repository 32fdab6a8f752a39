//! What a spider author writes: start URLs that fail loudly, and `?` on the
//! errors a parse callback meets.

use spinneret::{start_urls, Crawler, Error, ErrorKind, Output, Response, Spider, StartRequests};

/// A spider whose start URLs include a typo.
struct Typo;

impl Spider for Typo {
    type Callback = ();
    fn name(&self) -> &str {
        "typo"
    }
    fn start_requests(&self) -> StartRequests<()> {
        start_urls(["http://127.0.0.1:9/", "htp:/127.0.0.1:9/b"]).expect("valid start URLs")
    }
    fn parse(&self, _: (), _: &Response, _: &mut Output<()>) -> Result<(), Error> {
        Ok(())
    }
}

#[actix::test]
async fn a_malformed_start_url_fails_the_start_naming_it() {
    let started = Crawler::builder(Typo).build().unwrap().start();
    let err = started.err().expect("a crawl started from a malformed URL");
    let ErrorKind::Panic(message) = err.kind() else {
        panic!("{err:?}");
    };
    assert!(message.starts_with("valid start URLs: "), "{message}");
    assert!(message.contains("InvalidUrl"), "{message}");
    assert!(message.contains("htp:/127.0.0.1:9/b"), "{message}");
}

/// Which failure `parse` meets, through `?`.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
enum Meet {
    #[default]
    Json,
    Url,
    Io,
}

/// A spider whose callbacks use `?` on the errors a parse meets.
struct Questions;

impl Spider for Questions {
    type Callback = Meet;
    fn name(&self) -> &str {
        "questions"
    }
    fn start_requests(&self) -> StartRequests<Meet> {
        Box::new(std::iter::empty())
    }
    fn parse(&self, cb: Meet, response: &Response, out: &mut Output<Meet>) -> Result<(), Error> {
        match cb {
            Meet::Json => {
                let v: serde_json::Value = serde_json::from_slice(&response.body)?;
                out.item(v);
            }
            Meet::Url => {
                let url = url::Url::parse(std::str::from_utf8(&response.body).unwrap_or(""))?;
                out.item(url.to_string());
            }
            Meet::Io => {
                let text = std::fs::read_to_string("/nonexistent/spinneret/file")?;
                out.item(text);
            }
        }
        Ok(())
    }
}

#[test]
fn question_mark_in_parse_gives_typed_parse_errors() {
    let response = Response {
        url: url::Url::parse("http://127.0.0.1:9/p").unwrap(),
        status: 200,
        headers: spinneret::HeaderMap::new(),
        body: bytes::Bytes::from_static(b"not json, nor a URL"),
        meta: spinneret::ResponseMeta::default(),
    };
    let fail = |cb| {
        let mut out = Output::default();
        let e = Questions.parse(cb, &response, &mut out).unwrap_err();
        assert_eq!(out.item_count(), 0);
        assert_eq!(e.stage(), spinneret::Stage::Parse);
        e
    };
    let json = fail(Meet::Json);
    assert_eq!(json.kind_name(), "json");
    let source = std::error::Error::source(&json).unwrap();
    assert!(source.is::<serde_json::Error>(), "{source:?}");
    let bad_url = fail(Meet::Url);
    assert_eq!(bad_url.kind_name(), "invalid_url");
    let source = std::error::Error::source(&bad_url).unwrap();
    assert_eq!(
        source.downcast_ref::<url::ParseError>(),
        Some(&url::ParseError::RelativeUrlWithoutBase)
    );
    let io = fail(Meet::Io);
    assert!(
        matches!(io.kind(), ErrorKind::Io(std::io::ErrorKind::NotFound)),
        "{io:?}"
    );
    let source = std::error::Error::source(&io).unwrap();
    assert!(source.is::<std::io::Error>(), "{source:?}");
}
