//! Politeness: how hard the crawl may press each host.
//!
//! - `slots`: per-host download slots (concurrency, delay, rest after a
//!   `Retry-After`) and AutoThrottle;
//! - `robots`: robots.txt rules per origin;
//! - `robots_fetch`: fetching one robots.txt as the robots standard says.

pub(crate) mod robots;
pub(crate) mod robots_fetch;
pub(crate) mod slots;

pub(crate) use slots::SlotReport;
pub use slots::{AutoThrottle, HostSlot};
