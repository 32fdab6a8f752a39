//! Applying [`Settings`] to a [`CrawlerBuilder`]: each value through the
//! setter of its name, and a group's values (retry, AutoThrottle, cookie
//! limits, Bloom sizing, checkpoints, Redis, the HTTP cache) into the builder's current
//! policy, so that a value left out keeps what the builder had.

use crate::builder::CrawlerBuilder;
#[cfg(feature = "distributed")]
use crate::distributed::RedisOptions;
use crate::httpcache::HttpCacheOptions;
use crate::politeness::AutoThrottle;
use crate::retry::RetryPolicy;
use crate::spider::Spider;

use super::Settings;

impl Settings {
    /// `b` with every value this holds applied.
    pub(crate) fn apply<S: Spider>(&self, b: CrawlerBuilder<S>) -> CrawlerBuilder<S> {
        let b = self.apply_scheduling(b);
        let b = self.apply_downloads(b);
        let b = self.apply_lifetime(b);
        self.apply_groups(b)
    }

    /// Concurrency, politeness, depth and domains.
    fn apply_scheduling<S: Spider>(&self, mut b: CrawlerBuilder<S>) -> CrawlerBuilder<S> {
        if let Some(n) = self.concurrency {
            b = b.concurrency(n);
        }
        if let Some(n) = self.per_host_concurrency {
            b = b.per_host_concurrency(n);
        }
        if let Some(d) = self.download_delay {
            b = b.download_delay(d);
        }
        if let Some(on) = self.randomize_delay {
            b = b.randomize_delay(on);
        }
        if let Some(r) = self.host_rate_limit {
            b = b.host_rate_limit(r);
        }
        if let Some(r) = self.rate_limit {
            b = b.rate_limit(r);
        }
        if let Some(n) = self.depth_limit {
            b = b.depth_limit(n);
        }
        if let Some(n) = self.depth_priority {
            b = b.depth_priority(n);
        }
        if let Some(domains) = &self.allowed_domains {
            b = b.allowed_domains(domains.iter().cloned());
        }
        if let Some(on) = self.obey_robots_txt {
            b = b.obey_robots_txt(on);
        }
        if let Some(on) = self.dedupe {
            b = b.dedupe(on);
        }
        if let Some(mode) = self.dupe_mode {
            b = b.dupe_mode(mode);
        }
        b
    }

    /// How requests are sent and answers taken.
    fn apply_downloads<S: Spider>(&self, mut b: CrawlerBuilder<S>) -> CrawlerBuilder<S> {
        if let Some(on) = self.follow_redirects {
            b = b.follow_redirects(on);
        }
        if let Some(names) = &self.cross_origin_headers {
            b = b.cross_origin_headers(names.iter().cloned());
        }
        if let Some(on) = self.block_private_addresses {
            b = b.block_private_addresses(on);
        }
        if let Some(addresses) = &self.allow_addresses {
            b = b.allow_addresses(addresses.iter().cloned());
        }
        for file in self.tls_root_files.iter().flatten() {
            b = b.tls_root_file(file);
        }
        if let Some(roots) = self.tls_roots {
            b = b.tls_roots(roots);
        }
        if let (Some(cert), Some(key)) = (&self.tls_client_cert, &self.tls_client_key) {
            b = b.tls_client_cert_file(cert, key);
        }
        if let Some(version) = self.tls_min_version {
            b = b.tls_min_version(version);
        }
        if let Some(on) = self.danger_accept_invalid_certs {
            b = b.danger_accept_invalid_certs(on);
        }
        if let Some(on) = self.http1_only {
            b = b.http1_only(on);
        }
        if let Some(on) = self.cookies {
            b = b.cookies(on);
        }
        if let Some(n) = self.downloaders {
            b = b.downloaders(n);
        }
        if let Some(t) = self.timeout {
            b = b.timeout(t);
        }
        if let Some(n) = self.max_body {
            b = b.max_body(n);
        }
        for dir in self.stream_dir.iter().flatten() {
            b = b.stream_dir(dir.clone());
        }
        if let Some(n) = self.warn_body {
            b = b.warn_body(n);
        }
        if let Some(ua) = &self.user_agent {
            b = b.user_agent(ua.clone());
        }
        if let Some(n) = self.max_crashes {
            b = b.max_crashes(n);
        }
        if let Some(on) = self.proxy_from_env {
            b = b.proxy_from_env(on);
        }
        b
    }

    /// Stopping, limits, threads, logging and persistence.
    fn apply_lifetime<S: Spider>(&self, mut b: CrawlerBuilder<S>) -> CrawlerBuilder<S> {
        if let Some(t) = self.drain_timeout {
            b = b.drain_timeout(t);
        }
        if let Some(t) = self.finish_timeout {
            b = b.finish_timeout(t);
        }
        if let Some(n) = self.close_after_items {
            b = b.close_after_items(n);
        }
        if let Some(n) = self.close_after_pages {
            b = b.close_after_pages(n);
        }
        if let Some(n) = self.close_after_errors {
            b = b.close_after_errors(n);
        }
        if let Some(t) = self.close_after_time {
            b = b.close_after_time(t);
        }
        if let Some(n) = self.memory_warning {
            b = b.memory_warning(n);
        }
        if let Some(n) = self.memory_limit {
            b = b.memory_limit(n);
        }
        if let Some(t) = self.memory_check_interval {
            b = b.memory_check_interval(t);
        }
        if let Some(every) = self.log_stats {
            b = b.log_stats((!every.is_zero()).then_some(every));
        }
        if let Some(layout) = self.thread_layout {
            b = b.thread_layout(layout);
        }
        if let Some(t) = self.flush_interval {
            b = b.flush_interval(t);
        }
        if let Some(dir) = &self.job_dir {
            b = b.job_dir(dir.clone());
        }
        if let Some(n) = self.frontier_memory {
            b = b.frontier_memory(n);
        }
        if let Some(dir) = &self.frontier_dir {
            b = b.frontier_dir(dir.clone());
        }
        if let Some(on) = self.rerun_start_requests {
            b = b.rerun_start_requests(on);
        }
        if let Some(on) = self.recrawl {
            b = b.recrawl(on);
        }
        if let Some(on) = self.recrawl_unchanged_items {
            b = b.recrawl_unchanged_items(on);
        }
        if let Some(on) = self.recrawl_sitemap_lastmod {
            b = b.recrawl_sitemap_lastmod(on);
        }
        b
    }

    /// The values of policies set whole by their setters, each into the
    /// builder's current one.
    fn apply_groups<S: Spider>(&self, mut b: CrawlerBuilder<S>) -> CrawlerBuilder<S> {
        let c = b.config();
        self.apply_retry(&mut c.retry);
        self.apply_autothrottle(&mut c.scheduler.slots.autothrottle);
        self.apply_http_cache(&mut c.http_cache);
        if let Some(n) = self.cookie_limit_per_domain {
            c.cookie_limits.per_domain = n;
        }
        if let Some(n) = self.cookie_limit_total {
            c.cookie_limits.total = n;
        }
        if let Some(n) = self.bloom_capacity {
            c.bloom_capacity = n;
        }
        if let Some(rate) = self.bloom_false_positive_rate {
            c.bloom_rate = rate;
        }
        if let Some(every) = self.checkpoint_every {
            c.checkpoints.every = every;
        }
        if let Some(n) = self.checkpoint_every_requests {
            c.checkpoints.every_requests = n;
        }
        if self.tls_client_cert.is_some() != self.tls_client_key.is_some() {
            c.settings_error =
                Some("tls_client_cert and tls_client_key go together: give both or neither".into());
        }
        #[cfg(feature = "distributed")]
        let redis = self.apply_redis(&mut c.redis);
        #[cfg(not(feature = "distributed"))]
        let redis = self.refuse_redis();
        if let Err(message) = redis {
            c.settings_error = Some(message);
        }
        b
    }

    /// `retry`, then the `retry_*` values into the current policy.
    fn apply_retry(&self, policy: &mut Option<RetryPolicy>) {
        let values = self.retry_times.is_some()
            || self.retry_http_codes.is_some()
            || self.retry_base_delay.is_some()
            || self.retry_max_delay.is_some()
            || self.retry_jitter.is_some();
        match self.retry {
            Some(false) => *policy = None,
            Some(true) => {
                policy.get_or_insert_with(RetryPolicy::default);
            }
            None if values => {
                policy.get_or_insert_with(RetryPolicy::default);
            }
            None => {}
        }
        let Some(p) = policy else {
            return;
        };
        if let Some(n) = self.retry_times {
            p.max_retries = n;
        }
        if let Some(codes) = &self.retry_http_codes {
            p.statuses.clone_from(codes);
        }
        if let Some(d) = self.retry_base_delay {
            p.base_delay = d;
        }
        if let Some(d) = self.retry_max_delay {
            p.max_delay = d;
        }
        if let Some(on) = self.retry_jitter {
            p.jitter = on;
        }
    }

    /// `http_cache`, then the `http_cache_*` values into the current
    /// options.
    fn apply_http_cache(&self, current: &mut Option<HttpCacheOptions>) {
        let values = self.http_cache_policy.is_some()
            || self.http_cache_dir.is_some()
            || self.http_cache_expiration.is_some()
            || self.http_cache_max_bytes.is_some()
            || self.http_cache_ignore_statuses.is_some();
        match self.http_cache {
            Some(false) => *current = None,
            Some(true) => {
                current.get_or_insert_with(HttpCacheOptions::default);
            }
            None if values => {
                current.get_or_insert_with(HttpCacheOptions::default);
            }
            None => {}
        }
        let Some(o) = current else {
            return;
        };
        if let Some(p) = self.http_cache_policy {
            o.policy = p;
        }
        if let Some(dir) = &self.http_cache_dir {
            o.dir = Some(dir.clone());
        }
        if let Some(d) = self.http_cache_expiration {
            o.expiration = d;
        }
        if let Some(n) = self.http_cache_max_bytes {
            o.max_bytes = n;
        }
        if let Some(codes) = &self.http_cache_ignore_statuses {
            o.ignore_statuses.clone_from(codes);
        }
    }

    /// `autothrottle`, then the `autothrottle_*` values into the current
    /// AutoThrottle.
    fn apply_autothrottle(&self, current: &mut Option<AutoThrottle>) {
        let values = self.autothrottle_start_delay.is_some()
            || self.autothrottle_max_delay.is_some()
            || self.autothrottle_target_concurrency.is_some();
        match self.autothrottle {
            Some(false) => *current = None,
            Some(true) => {
                current.get_or_insert_with(AutoThrottle::default);
            }
            None if values => {
                current.get_or_insert_with(AutoThrottle::default);
            }
            None => {}
        }
        let Some(at) = current else {
            return;
        };
        if let Some(d) = self.autothrottle_start_delay {
            at.start_delay = d;
        }
        if let Some(d) = self.autothrottle_max_delay {
            at.max_delay = d;
        }
        if let Some(x) = self.autothrottle_target_concurrency {
            at.target_concurrency = x;
        }
    }

    /// `redis`, then the `redis_*` values into the current options; the
    /// message `build` fails with when there is no Redis URL for them.
    #[cfg(feature = "distributed")]
    fn apply_redis(&self, current: &mut Option<RedisOptions>) -> Result<(), String> {
        if let Some(url) = &self.redis {
            match current {
                Some(options) => options.url.clone_from(url),
                None => *current = Some(RedisOptions::new(url.clone())),
            }
        }
        let Some(o) = current else {
            return match self.redis_option_given() {
                Some(key) => Err(format!(
                    "setting {key} needs a Redis URL (the redis setting)"
                )),
                None => Ok(()),
            };
        };
        if let Some(id) = &self.redis_crawl_id {
            o.crawl_id = Some(id.clone());
        }
        if let Some(id) = &self.redis_worker_id {
            o.worker_id = Some(id.clone());
        }
        if let Some(d) = self.redis_lease_ttl {
            o.lease_ttl = d;
        }
        if let Some(d) = self.redis_poll {
            o.poll = d;
        }
        if let Some(rate) = self.redis_host_rate {
            o.host_rate = Some(rate);
        }
        if let Some(d) = self.redis_op_timeout {
            o.op_timeout = d;
        }
        if let Some(d) = self.redis_ack_interval {
            o.ack_interval = d;
        }
        Ok(())
    }

    /// Without the `distributed` feature, the message `build` fails with
    /// when a `redis` setting is given: such a crawl cannot run here, and
    /// running it alone would fetch what the other workers fetch.
    #[cfg(not(feature = "distributed"))]
    fn refuse_redis(&self) -> Result<(), String> {
        let key = match &self.redis {
            Some(_) => Some("redis"),
            None => self.redis_option_given(),
        };
        match key {
            Some(key) => Err(format!(
                "setting {key} needs spinneret's `distributed` feature (a crawl shared through Redis)"
            )),
            None => Ok(()),
        }
    }

    /// The first `redis_*` option given, by its key.
    fn redis_option_given(&self) -> Option<&'static str> {
        let given = [
            ("redis_crawl_id", self.redis_crawl_id.is_some()),
            ("redis_worker_id", self.redis_worker_id.is_some()),
            ("redis_lease_ttl", self.redis_lease_ttl.is_some()),
            ("redis_poll", self.redis_poll.is_some()),
            ("redis_host_rate", self.redis_host_rate.is_some()),
            ("redis_op_timeout", self.redis_op_timeout.is_some()),
            ("redis_ack_interval", self.redis_ack_interval.is_some()),
        ];
        given.iter().find(|(_, set)| *set).map(|(key, _)| *key)
    }
}

#[cfg(test)]
mod tests;
