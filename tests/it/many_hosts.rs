//! A crawl over thousands of hosts: every host is fetched once and the
//! Scheduler's host slots stay bounded, the idle ones dropped.
//!
//! Any 127.x.y.z address reaches a server bound to 0.0.0.0 on Linux, so
//! one server on 0.0.0.0:0 plays every host; the crawler only ever
//! connects to 127.x.y.z addresses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};
use spinneret::{Counter, Crawler, Error, Output, Request, Response, Spider, StartRequests};

use crate::fixture::spawn_app;
use crate::spiders::{run, Cb};

/// Distinct hosts the start page links to.
const HOSTS: usize = 20_000;

/// The idle host slots the Scheduler keeps by default.
const IDLE_SLOTS: u64 = 1024;

/// The crawl's concurrency.
const CONCURRENCY: usize = 64;

/// Follows each line of the start page (one URL per line).
struct LineSpider {
    /// The start page.
    start: String,
}

impl Spider for LineSpider {
    type Callback = Cb;

    fn name(&self) -> &str {
        "lines"
    }

    fn start_requests(&self) -> StartRequests<Cb> {
        Box::new(std::iter::once(Request::get(&self.start).unwrap()))
    }

    fn parse(&self, _: Cb, response: &Response, out: &mut Output<Cb>) -> Result<(), Error> {
        if response.url.path() == "/start" {
            for line in response.text().lines() {
                out.request(Request::get(line)?);
            }
        }
        Ok(())
    }
}

/// `127.a.b.1` for host `i`: never 127.0.0.1, which serves the start page.
fn host(i: usize) -> String {
    format!("127.{}.{}.1", 1 + i / 250, i % 250)
}

#[actix::test]
async fn thousands_of_hosts_are_each_fetched_once_with_bounded_slots() {
    // Hits by `Host` header and path.
    let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let seen = hits.clone();
    let port = Arc::new(Mutex::new(0u16));
    let links_port = port.clone();
    let server = spawn_app("0.0.0.0", 2, move |cfg| {
        let seen = seen.clone();
        let links_port = links_port.clone();
        cfg.route(
            "/{tail:.*}",
            web::get().to(move |req: HttpRequest| {
                let seen = seen.clone();
                let port = *links_port.lock().unwrap();
                async move {
                    let name = req.connection_info().host().to_string();
                    *seen
                        .lock()
                        .unwrap()
                        .entry(format!("{name}{}", req.path()))
                        .or_default() += 1;
                    if req.path() != "/start" {
                        // Closed after the answer: 20,000 kept-alive
                        // connections would run out of file descriptors.
                        return HttpResponse::Ok().force_close().body("ok");
                    }
                    let body: String = (0..HOSTS)
                        .map(|i| format!("http://{}:{port}/\n", host(i)))
                        .collect();
                    HttpResponse::Ok().body(body)
                }
            }),
        );
    });
    *port.lock().unwrap() = server.addr.port();
    let start = format!("http://127.0.0.1:{}/start", server.addr.port());

    let began = Instant::now();
    let s = run(Crawler::builder(LineSpider { start }).concurrency(CONCURRENCY)).await;
    let took = began.elapsed();

    assert_eq!(s.counter(Counter::ResponseCount), HOSTS as u64 + 1);
    let hits = hits.lock().unwrap();
    assert_eq!(hits.len(), HOSTS + 1);
    assert!(hits.values().all(|&n| n == 1), "a page fetched twice");
    let port = server.addr.port();
    for i in [0, 1, HOSTS / 2, HOSTS - 1] {
        assert_eq!(hits.get(&format!("{}:{port}/", host(i))), Some(&1));
    }
    // The busy slots (at most the crawl's concurrency, plus those answered
    // since the last pop) and the idle ones kept.
    let peak = s.get("scheduler/host_slots_max");
    assert!(peak > 0, "no host slots stat");
    assert!(
        peak <= IDLE_SLOTS + 3 * CONCURRENCY as u64,
        "{peak} host slots held at once"
    );
    eprintln!("{HOSTS} hosts in {took:?}, at most {peak} host slots");
}
