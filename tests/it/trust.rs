//! What the crawler trusts and what it shows: credentials kept out of logs,
//! errors and events.

use spinneret::{CrawlEvent, Crawler};

use crate::fixture::serve;
use crate::log::Records;
use crate::spiders::{LinkSpider, StartCrawl};

#[actix::test]
async fn credentials_in_a_url_reach_no_log_error_or_event() {
    let site = serve(1);
    let url = format!("http://someuser:hunter2pw@{}/status/404", site.addr);
    let records = Records::default();
    let crawl = Crawler::builder(LinkSpider::from_urls(&[url]))
        .logger(records.logger())
        .started();
    let mut events = crawl.subscribe();
    crawl.join().await.unwrap();
    assert_eq!(site.seen.hits("/status/404"), 1, "the request was sent");
    let mut errors = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let CrawlEvent::Error { url, message, .. } = &event {
            errors.push((url.clone(), message.clone()));
        }
        let json = serde_json::to_string(&event).unwrap();
        assert!(!json.contains("hunter2pw"), "{json}");
        assert!(!json.contains("someuser"), "{json}");
    }
    // The 404 was recorded as an error, its URL shown masked.
    let masked = format!("http://***:***@{}/status/404", site.addr);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0.as_deref(), Some(masked.as_str()));
    assert!(errors[0].1.contains(&masked), "{errors:?}");
    let failures = records.lines("request failed");
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["url"], masked);
    let logged = records.text();
    assert!(!logged.contains("hunter2pw"), "{logged}");
    assert!(!logged.contains("someuser"), "{logged}");
}
