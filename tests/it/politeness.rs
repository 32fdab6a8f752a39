//! Per-host slots, delays, Retry-After, retries, rate limits, depth,
//! offsite and robots.txt, measured at the fixture servers.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spinneret::{Counter, Crawler, DownloadMiddleware, Error, Request, RequestAction, RetryPolicy};

use crate::fixture::{serve, serve_on};
use crate::spiders::{run, Cb, LinkSpider, StartCrawl};

fn gaps(times: &[Instant]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

#[actix::test]
async fn per_host_concurrency_is_never_exceeded_and_a_slow_host_starves_nobody() {
    let slow = serve_on("127.0.0.1", 1, None);
    let fast = serve_on("127.0.0.2", 1, None);
    let mut urls: Vec<String> = (0..12).map(|i| slow.url(&format!("/slow/{i}"))).collect();
    // The fast host's requests queue behind every slow one (priority and
    // arrival order are equal), yet must not wait for them.
    urls.extend((0..12).map(|i| fast.url(&format!("/items/{i}"))));
    let s = run(Crawler::builder(LinkSpider::from_urls(&urls))
        .concurrency(8)
        .per_host_concurrency(3))
    .await;
    assert_eq!(s.counter(Counter::ResponseCount), 24);
    assert_eq!(slow.seen.max_active.load(Ordering::SeqCst), 3);
    let slow_times = slow.seen.times("/slow/");
    let fast_times = fast.seen.times("/items/");
    assert_eq!((slow_times.len(), fast_times.len()), (12, 12));
    // 12 slow pages, 3 at a time, 50 ms each: at least 4 rounds. The fast
    // host is done before the slow one's last round starts.
    let fast_done = *fast_times.last().unwrap();
    assert!(
        fast_done < slow_times[9],
        "the fast host waited for the slow one"
    );
}

#[actix::test]
async fn a_requests_max_conns_per_host_caps_its_host() {
    let site = serve(1);
    let starts: Vec<spinneret::Request<crate::spiders::Cb>> = (0..9)
        .map(|i| {
            let mut r = spinneret::Request::get(&site.url(&format!("/slow/{i}"))).unwrap();
            r.max_conns_per_host = Some(2);
            r
        })
        .collect();
    let s = run(Crawler::builder(LinkSpider::new(starts))).await;
    assert_eq!(s.counter(Counter::ResponseCount), 9);
    assert_eq!(site.seen.max_active.load(Ordering::SeqCst), 2);
}

/// Records when each request leaves for the network (its middleware
/// pass in the downloader): the spacing the crawler controls. Arrival
/// times at the server also carry the network's and the scheduler's
/// jitter, which can bunch two requests under load.
struct Stamp(Arc<Mutex<Vec<Instant>>>);

impl DownloadMiddleware<Cb> for Stamp {
    fn process_request(
        &self,
        _: &mut Request<Cb>,
        _: &mut Vec<Request<Cb>>,
    ) -> Result<RequestAction, Error> {
        self.0.lock().unwrap().push(Instant::now());
        Ok(RequestAction::Continue)
    }
}

/// Requests left at least `interval` apart on the whole: the span from
/// the first to the last covers every interval (only the two ends carry a
/// thread hop's jitter), and no single gap is much shorter.
fn assert_spaced(times: &[Instant], interval: Duration) {
    let span = *times.last().unwrap() - times[0];
    let want = interval * (times.len() as u32 - 1);
    assert!(
        span + Duration::from_millis(10) >= want,
        "{} requests in {span:?}, want {want:?}",
        times.len()
    );
    for gap in gaps(times) {
        assert!(gap >= interval / 2, "gap {gap:?} for {interval:?}");
    }
}

#[actix::test]
async fn download_delay_spaces_requests_to_a_host() {
    let site = serve(1);
    let urls: Vec<String> = (0..5).map(|i| site.url(&format!("/items/{i}"))).collect();
    let stamps = Arc::new(Mutex::new(Vec::new()));
    let crawl = Crawler::builder(LinkSpider::from_urls(&urls))
        .download_delay(Duration::from_millis(100))
        .randomize_delay(false)
        .middleware(Stamp(stamps.clone()))
        .started();
    crawl.join().await.unwrap();
    assert_eq!(site.seen.times("/items/").len(), 5);
    assert_spaced(&stamps.lock().unwrap(), Duration::from_millis(100));
}

#[actix::test]
async fn a_host_rate_limit_spaces_requests() {
    let site = serve(1);
    let urls: Vec<String> = (0..6).map(|i| site.url(&format!("/items/{i}"))).collect();
    let stamps = Arc::new(Mutex::new(Vec::new()));
    let crawl = Crawler::builder(LinkSpider::from_urls(&urls))
        .host_rate_limit(20.0)
        .middleware(Stamp(stamps.clone()))
        .started();
    crawl.join().await.unwrap();
    assert_eq!(site.seen.times("/items/").len(), 6);
    assert_spaced(&stamps.lock().unwrap(), Duration::from_millis(50));
}

#[actix::test]
async fn retry_after_on_429_rests_that_host_only() {
    let a = serve_on("127.0.0.1", 1, None);
    let b = serve_on("127.0.0.2", 1, None);
    let mut urls = vec![a.url("/once429/x")];
    urls.extend((0..3).map(|i| a.url(&format!("/items/{i}"))));
    urls.extend((0..10).map(|i| b.url(&format!("/slow/{i}"))));
    let s = run(Crawler::builder(LinkSpider::from_urls(&urls))
        .per_host_concurrency(1)
        .retry(RetryPolicy {
            base_delay: Duration::from_millis(10),
            ..RetryPolicy::default()
        }))
    .await;
    assert_eq!(s.status_count(429), 1);
    assert_eq!(s.get("retry/reason_count/http_429"), 1);
    assert_eq!(s.counter(Counter::RequestFailures), 0);
    let told = a.seen.times("/once429/")[0];
    let rest_ends = told + Duration::from_millis(950);
    // Nothing of host A was fetched during its rest…
    let a_hits = a.seen.log.lock().unwrap().clone();
    for (path, at) in &a_hits {
        assert!(
            *at <= told || *at >= rest_ends,
            "{path} fetched while A rested"
        );
    }
    assert_eq!(a.seen.hits("/once429/x"), 2);
    // …while host B kept being crawled.
    let b_during = b
        .seen
        .times("/slow/")
        .into_iter()
        .filter(|t| *t > told && *t < rest_ends)
        .count();
    assert!(
        b_during >= 3,
        "host B waited for host A ({b_during} hits meanwhile)"
    );
}

#[actix::test]
async fn retries_happen_the_configured_number_of_times_with_growing_gaps() {
    let site = serve(1);
    let stamps = Arc::new(Mutex::new(Vec::new()));
    let s = run(
        Crawler::builder(LinkSpider::from_urls(&[site.url("/status/503")]))
            .middleware(Stamp(stamps.clone()))
            .retry(RetryPolicy {
                max_retries: 3,
                base_delay: Duration::from_millis(100),
                jitter: false,
                ..RetryPolicy::default()
            }),
    )
    .await;
    let times = site.seen.times("/status/503");
    assert_eq!(times.len(), 4, "1 attempt + 3 retries");
    assert_eq!(s.get("retry/count"), 3);
    assert_eq!(s.get("retry/max_reached"), 1);
    assert_eq!(s.counter(Counter::RequestFailures), 1);
    assert_eq!(s.counter(Counter::HttpErrorIgnored), 1);
    let gaps = gaps(&stamps.lock().unwrap());
    for (i, gap) in gaps.iter().enumerate() {
        let nominal = Duration::from_millis(100 << i);
        assert!(
            *gap >= nominal.mul_f64(0.9),
            "gap {i} was {gap:?}, under {nominal:?}"
        );
    }
    assert!(gaps[0] < gaps[1] && gaps[1] < gaps[2], "{gaps:?}");
}

#[actix::test]
async fn depth_limit_and_offsite_are_filtered_and_counted() {
    let site = serve(31);
    let other = serve_on("127.0.0.2", 1, None);
    // The test spider follows same-host links only, so the offsite request
    // is a start request (start requests are filtered too).
    let starts = [
        format!("{}?u={}", site.url("/linkto"), site.url("/p/0")),
        other.url("/items/0"),
    ];
    let s = run(Crawler::builder(LinkSpider::from_urls(&starts))
        .depth_limit(2)
        .allowed_domains(["127.0.0.1"]))
    .await;
    assert_eq!(s.get("offsite/filtered"), 1);
    assert_eq!(other.seen.total(), 0);
    // Depth 0: /linkto; 1: /p/0; 2: /p/1, /p/2, /missing (from /p/0).
    // Depth 3 requests (their children and /missing links) are dropped.
    assert_eq!(site.seen.hits("/p/0"), 1);
    assert_eq!(site.seen.hits("/p/1"), 1);
    assert_eq!(site.seen.hits("/p/3"), 0);
    assert_eq!(s.counter(Counter::DepthMax), 2);
    // /p/1 and /p/2 each link to 2 children, /p/0 and /missing: 8 at depth 3.
    assert_eq!(s.get("depth/filtered"), 8);
}

#[actix::test]
async fn robots_txt_disallow_is_obeyed_and_counted() {
    let site = serve_on("127.0.0.1", 15, Some("User-agent: *\nDisallow: /p/1\n"));
    let s = run(Crawler::builder(LinkSpider::from_urls(&[site.url("/p/0")])).obey_robots_txt(true))
        .await;
    assert_eq!(site.seen.hits("/robots.txt"), 1);
    // /p/1 and everything only reachable through it is never fetched:
    // /p/1 → 3, 4 → 7, 8, 9, 10. "/p/1" also prefixes /p/10…/p/14.
    for n in [1, 3, 4, 7, 8, 9, 10, 11, 12, 13, 14] {
        assert_eq!(site.seen.hits(&format!("/p/{n}")), 0, "/p/{n} fetched");
    }
    assert_eq!(site.seen.hits("/p/2"), 1);
    // The rule is a prefix: /p/1, /p/11, /p/12, /p/13, /p/14 (linked from
    // /p/5 and /p/6) are all forbidden.
    assert_eq!(s.get("robotstxt/forbidden"), 5);
    assert_eq!(s.get("robotstxt/request_count"), 1);
    assert_eq!(s.status_count(200), 4, "/p/0, /p/2, /p/5, /p/6");
}

#[actix::test]
async fn a_global_rate_limit_spaces_requests_across_hosts() {
    let a = serve_on("127.0.0.1", 1, None);
    let b = serve_on("127.0.0.2", 1, None);
    let mut urls: Vec<String> = (0..3).map(|i| a.url(&format!("/items/{i}"))).collect();
    urls.extend((0..3).map(|i| b.url(&format!("/items/{i}"))));
    let stamps = Arc::new(Mutex::new(Vec::new()));
    let s = run(Crawler::builder(LinkSpider::from_urls(&urls))
        .rate_limit(20.0)
        .middleware(Stamp(stamps.clone())))
    .await;
    assert_eq!(s.counter(Counter::ResponseCount), 6);
    assert_spaced(&stamps.lock().unwrap(), Duration::from_millis(50));
}

#[actix::test]
async fn depth_priority_crawls_breadth_first() {
    // A chain of concurrency 1: with a positive depth priority every page of
    // depth 1 is fetched before any of depth 2.
    let site = serve(15);
    let crawl = Crawler::builder(LinkSpider::from_urls(&[site.url("/p/0")]))
        .concurrency(1)
        .depth_priority(1)
        .started();
    crawl.join().await.unwrap();
    let order: Vec<String> = site
        .seen
        .log
        .lock()
        .unwrap()
        .iter()
        .map(|(p, _)| p.clone())
        .collect();
    let pos = |p: &str| order.iter().position(|x| x == p).unwrap();
    // Depth 1: /p/1, /p/2, /missing. Depth 2: /p/3 … /p/6.
    for shallow in ["/p/1", "/p/2", "/missing"] {
        for deep in ["/p/3", "/p/4", "/p/5", "/p/6"] {
            assert!(
                pos(shallow) < pos(deep),
                "{shallow} after {deep}: {order:?}"
            );
        }
    }
}
