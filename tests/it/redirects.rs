//! Redirects followed by the crawler itself, and the cookie jar.

use serde_json::{json, Value};
use spinneret::{
    Counter, Crawler, Error, Output, Request, Response, Spider, StartRequests, StatsSnapshot,
};

use crate::fixture::{serve, Site};
use crate::spiders::{run, Collect, LinkSpider, StartCrawl};

/// One item per response: where it ended, how it got there, its title.
struct Probe(Vec<Request<()>>);

impl Spider for Probe {
    type Callback = ();
    fn name(&self) -> &str {
        "probe"
    }
    fn start_requests(&self) -> StartRequests<()> {
        Box::new(self.0.clone().into_iter())
    }
    fn parse(&self, _: (), r: &Response, out: &mut Output<()>) -> Result<(), Error> {
        let title = r
            .text()
            .split("<title>")
            .nth(1)
            .and_then(|t| t.split("</title>").next())
            .unwrap_or("")
            .to_string();
        let chain: Vec<&str> = r.meta.redirect_urls.iter().map(|u| u.path()).collect();
        out.item(json!({
            "path": r.url.path(),
            "status": r.status,
            "chain": chain,
            "first": r.meta.request_url.as_ref().map(|u| u.path().to_string()),
            "title": title,
        }));
        Ok(())
    }
}

async fn probe(starts: Vec<Request<()>>) -> (StatsSnapshot, Vec<Value>) {
    let collect = Collect::default();
    let s = run(Crawler::builder(Probe(starts)).pipeline(collect.clone())).await;
    let items = collect.items.lock().unwrap().clone();
    (s, items)
}

#[actix::test]
async fn a_301_then_302_chain_ends_at_the_final_url_with_its_chain() {
    let site = serve(1);
    let (s, items) = probe(vec![Request::get(&site.url("/chain/a")).unwrap()]).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["path"], "/items/1");
    assert_eq!(items[0]["status"], 200);
    assert_eq!(items[0]["chain"], json!(["/chain/a", "/chain/b"]));
    assert_eq!(items[0]["first"], "/chain/a");
    assert_eq!(s.get("redirect/count"), 2);
    assert_eq!(s.status_count(301), 1);
    assert_eq!(s.status_count(302), 1);
    assert_eq!(s.counter(Counter::RequestFailures), 0);
    // Each hop was a request through the scheduler and the dupe filter.
    assert_eq!(s.counter(Counter::Enqueued), 3);
}

#[actix::test]
async fn a_redirect_target_already_seen_is_filtered_as_a_duplicate() {
    let site = serve(1);
    let starts = vec![
        Request::get(&site.url("/items/1")).unwrap(),
        Request::get(&site.url("/chain/b")).unwrap().priority(-1),
    ];
    let (s, items) = probe(starts).await;
    assert_eq!(
        items.len(),
        1,
        "the redirect to /items/1 was not fetched again"
    );
    assert_eq!(s.counter(Counter::DupeFiltered), 1);
    assert_eq!(site.seen.hits("/items/1"), 1);
}

#[actix::test]
async fn a_redirect_loop_ends_with_a_counted_error() {
    let site = serve(1);
    let (s, items) = probe(vec![Request::get(&site.url("/loop/a")).unwrap()]).await;
    assert!(items.is_empty());
    assert_eq!(s.get("request_failure_count/redirect_loop"), 1);
    assert_eq!(s.counter(Counter::RequestFailures), 1);
    assert_eq!(s.finish_reason.as_deref(), Some("finished"));
}

#[actix::test]
async fn a_post_answered_303_becomes_a_get_without_body() {
    let site = serve(1);
    let post = Request::post(&site.url("/form"), "a=1&b=2").unwrap();
    let (_, items) = probe(vec![post]).await;
    assert_eq!(items[0]["path"], "/method");
    assert_eq!(items[0]["title"], "GET 0");
}

#[actix::test]
async fn redirects_can_be_turned_off() {
    let site = serve(1);
    let starts = vec![Request::get(&site.url("/chain/a")).unwrap()];
    let collect = Collect::default();
    let s = run(Crawler::builder(Probe(starts))
        .follow_redirects(false)
        .pipeline(collect.clone()))
    .await;
    assert_eq!(s.status_count(301), 1);
    assert_eq!(collect.items.lock().unwrap()[0]["status"], 301);
}

/// Crawls `/login` (which sets a session cookie and links to `/whoami`)
/// with the cookie jar on or off: the cookies `/whoami` received.
async fn cookies_after_login(site: &Site, jar: bool) -> Value {
    let collect = Collect::default();
    let crawl = Crawler::builder(LinkSpider::from_urls(&[site.url("/login")]))
        .cookies(jar)
        .pipeline(collect.clone())
        .started();
    crawl.join().await.unwrap();
    let items = collect.items.lock().unwrap().clone();
    items
        .iter()
        .find(|i| i["url"].as_str().unwrap().ends_with("/whoami"))
        .unwrap()["title"]
        .clone()
}

#[actix::test]
async fn a_session_cookie_round_trips_and_per_request_cookies_still_work() {
    let site = serve(1);
    assert_eq!(cookies_after_login(&site, true).await, "session=abc123");

    let own = Request::get(&site.url("/whoami"))
        .unwrap()
        .cookie("lang", "en");
    let (_, items) = probe(vec![own]).await;
    assert_eq!(items[0]["title"], "lang=en");
}

#[actix::test]
async fn the_cookie_jar_can_be_turned_off() {
    let site = serve(1);
    assert_eq!(cookies_after_login(&site, false).await, "none");
}
