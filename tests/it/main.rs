//! Integration tests: whole crawls across the actors, against fixture
//! servers on 127.0.0.1 that the tests start. One test binary, as in
//! BurntSushi's crates.

mod bodies;
#[cfg(feature = "cli")]
mod cli;
#[cfg(feature = "cli")]
mod cli_fetch;
#[cfg(feature = "cli")]
mod cli_support;
#[cfg(feature = "control")]
mod control;
#[cfg(feature = "control")]
mod control_start;
mod crawl;
#[cfg(feature = "distributed")]
mod distributed;
#[cfg(feature = "distributed")]
mod distributed_faults;
mod durable;
mod fixture;
#[cfg(feature = "control")]
mod flask_target;
mod html;
mod httpcache;
mod limits;
mod limits_close;
mod links_real;
mod log;
mod many_hosts;
mod pipelines;
mod politeness;
mod proxy;
mod recrawl;
mod redirect_safety;
mod redirects;
#[cfg(feature = "distributed")]
mod redis_server;
mod resume;
mod robots;
mod scale;
mod shutdown;
mod sitemaps;
mod spider_api;
mod spiders;
mod start_on;
mod tls;
mod trust;

// The `bench` example's generated site, whose real-shaped pages the link
// extractor's tests read.
#[path = "../../examples/common/bench_site.rs"]
#[allow(dead_code)]
mod bench_site;
#[path = "../../examples/common/bench_sitemap_spider.rs"]
#[allow(dead_code)]
mod bench_sitemap_spider;
#[path = "../../examples/common/bench_spider.rs"]
#[allow(dead_code)]
mod bench_spider;
