//! Where a crawl is in its life: [`CrawlState`], and the atomic cell the
//! Engine moves it in and every handle reads it from.

use std::sync::atomic::{AtomicU8, Ordering};

/// Where a crawl is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CrawlState {
    /// Dequeuing and downloading.
    Running,
    /// Paused: nothing leaves the queue; requests in flight finish.
    Paused,
    /// A stop was asked for: in-flight requests are draining.
    Stopping,
    /// Over: the final stats are published.
    Finished,
}

impl CrawlState {
    /// Every state, in life order.
    pub const ALL: [CrawlState; 4] = [
        CrawlState::Running,
        CrawlState::Paused,
        CrawlState::Stopping,
        CrawlState::Finished,
    ];

    /// The state's name, as serialised (`"running"`, `"paused"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            CrawlState::Running => "running",
            CrawlState::Paused => "paused",
            CrawlState::Stopping => "stopping",
            CrawlState::Finished => "finished",
        }
    }
}

/// The crawl's state, shared by the Engine (which moves it) and every
/// handle (which reads it without a message).
#[derive(Debug, Default)]
pub(crate) struct Phase(AtomicU8);

impl Phase {
    const RUNNING: u8 = 0;
    const PAUSED: u8 = 1;
    const STOPPING: u8 = 2;
    const FINISHED: u8 = 3;

    /// The state as last moved.
    pub(crate) fn get(&self) -> CrawlState {
        match self.0.load(Ordering::Acquire) {
            Self::RUNNING => CrawlState::Running,
            Self::PAUSED => CrawlState::Paused,
            Self::STOPPING => CrawlState::Stopping,
            _ => CrawlState::Finished,
        }
    }

    /// Running → paused; false when it was not running (a pause answered
    /// after a stop changes nothing).
    pub(crate) fn paused(&self) -> bool {
        self.0
            .compare_exchange(
                Self::RUNNING,
                Self::PAUSED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Paused → running; false when it was not paused.
    pub(crate) fn resumed(&self) -> bool {
        self.0
            .compare_exchange(
                Self::PAUSED,
                Self::RUNNING,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Any state but finished → stopping.
    pub(crate) fn stopping(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s != Self::FINISHED).then_some(Self::STOPPING)
            });
    }

    /// Finished, whatever it was.
    pub(crate) fn finished(&self) {
        self.0.store(Self::FINISHED, Ordering::Release);
    }
}
