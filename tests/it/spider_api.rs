//! What a spider author writes: start URLs that fail loudly.

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
