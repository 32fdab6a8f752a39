//! Politeness: how hard the crawl may press each host.
//!
//! - `slots`: per-host download slots (concurrency, delay, rest after a
//!   `Retry-After`) and AutoThrottle;
//! - `robots`: robots.txt rules per origin.

pub(crate) mod robots;
pub(crate) mod slots;

pub(crate) use slots::SlotReport;
pub use slots::{AutoThrottle, HostSlot};
