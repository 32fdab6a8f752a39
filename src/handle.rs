//! The handle to a running crawl.
//!
//! Cheap to clone; every clone controls the same crawl. It reads live stats
//! and the crawl's state straight from atomics, forwards pause/resume/stop
//! to the Engine, asks the Scheduler for the per-host slots, and `join()`
//! waits for the final stats.

use std::sync::Arc;

use actix::Recipient;
use tokio::sync::{broadcast, watch};

use crate::error::{Error, ErrorKind, Stage};
use crate::events::CrawlEvent;
use crate::events::{CheckpointInfo, ResumeInfo};
use crate::messages::{Checkpoint, HostSlots, Pause, Resume, StopCrawl, StopMode};
use crate::politeness::HostSlot;
use crate::state::{CrawlState, Phase};
use crate::stats::{Stats, StatsSnapshot};

/// Controls and observes one crawl.
#[derive(Clone)]
pub struct CrawlHandle {
    /// Engine: pause.
    pause: Recipient<Pause>,
    /// Engine: resume.
    resume: Recipient<Resume>,
    /// Engine: stop.
    stop: Recipient<StopCrawl>,
    /// The crawl's live counters.
    stats: Arc<Stats>,
    /// Running, paused, stopping or finished, as the Engine last set it.
    phase: Arc<Phase>,
    /// Scheduler: the per-host slots; `None` for a handle built without one
    /// (unit tests).
    hosts: Option<Recipient<HostSlots>>,
    /// Becomes `Some(final stats)` when the crawl has finished.
    finished: watch::Receiver<Option<StatsSnapshot>>,
    /// Lifecycle events, for `subscribe`.
    events: broadcast::Sender<CrawlEvent>,
    /// Engine: checkpoint now.
    checkpoint: Option<Recipient<Checkpoint>>,
    /// What the job directory held, when this crawl resumed one.
    resumed: Option<Arc<ResumeInfo>>,
}

impl CrawlHandle {
    pub(crate) fn new(
        pause: Recipient<Pause>,
        resume: Recipient<Resume>,
        stop: Recipient<StopCrawl>,
        stats: Arc<Stats>,
        finished: watch::Receiver<Option<StatsSnapshot>>,
    ) -> Self {
        CrawlHandle {
            pause,
            resume,
            stop,
            stats,
            phase: Arc::default(),
            hosts: None,
            finished,
            events: broadcast::channel(1).0,
            checkpoint: None,
            resumed: None,
        }
    }

    pub(crate) fn with_job(
        mut self,
        checkpoint: Recipient<Checkpoint>,
        resumed: Option<ResumeInfo>,
    ) -> Self {
        self.checkpoint = Some(checkpoint);
        self.resumed = resumed.map(Arc::new);
        self
    }

    /// What the job directory held when this crawl started from it: `None`
    /// for a crawl without a job directory or with a new one.
    pub fn resumed(&self) -> Option<&ResumeInfo> {
        self.resumed.as_deref()
    }

    /// Writes a checkpoint to the job directory now and returns once it is
    /// durable (periodic checkpoints happen anyway). Fails with
    /// [`ErrorKind::IllegalState`] when the crawl has no job directory or
    /// has finished, and with the journal's error when the write fails.
    pub async fn checkpoint(&self) -> Result<CheckpointInfo, Error> {
        let Some(to) = &self.checkpoint else {
            return Err(finished_error("the crawl has no job directory"));
        };
        if self.is_finished() {
            return Err(finished_error("cannot checkpoint: the crawl has finished"));
        }
        to.send(Checkpoint)
            .await
            .unwrap_or_else(|_| Err(finished_error("cannot checkpoint: the crawl has finished")))
    }

    pub(crate) fn with_events(mut self, events: broadcast::Sender<CrawlEvent>) -> Self {
        self.events = events;
        self
    }

    /// Reads the state the Engine moves, and the Scheduler's slots.
    pub(crate) fn with_phase(mut self, phase: Arc<Phase>, hosts: Recipient<HostSlots>) -> Self {
        self.phase = phase;
        self.hosts = Some(hosts);
        self
    }

    /// Running, paused, stopping or finished.
    pub fn state(&self) -> CrawlState {
        if self.is_finished() {
            CrawlState::Finished
        } else {
            self.phase.get()
        }
    }

    /// Every download slot the Scheduler holds now (requests in flight,
    /// delay, resting after a `Retry-After`), sorted by host; empty once
    /// the crawl has finished. It holds the busy hosts and at most 1,024
    /// idle ones (the most recently idle), so this stays bounded however
    /// many hosts the crawl meets.
    pub async fn hosts(&self) -> Vec<HostSlot> {
        match (&self.hosts, self.is_finished()) {
            (Some(to), false) => to.send(HostSlots).await.unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Lifecycle events from now on (subscribe right after `start` to see
    /// `Started`): started, paused, resumed, stopping, every checkpoint
    /// written, every recorded error, finished with the final stats.
    pub fn subscribe(&self) -> broadcast::Receiver<CrawlEvent> {
        self.events.subscribe()
    }

    /// A snapshot of the live stats.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Whether the crawl has finished.
    pub fn is_finished(&self) -> bool {
        self.finished.borrow().is_some()
    }

    /// Stops dequeuing; requests in flight finish. Fails with
    /// [`ErrorKind::IllegalState`] once the crawl is stopping or finished.
    pub async fn pause(&self) -> Result<(), Error> {
        self.control(&self.pause, Pause, "pause").await
    }

    /// Dequeues again after a pause.
    pub async fn resume(&self) -> Result<(), Error> {
        self.control(&self.resume, Resume, "resume").await
    }

    /// Stops the crawl: no more requests leave the queue, in-flight ones
    /// finish (parsed, items through the pipelines) within the drain
    /// deadline, pipelines close, and the crawl finishes with reason
    /// `"shutdown"`; the requests left in the queue (and any abandoned when
    /// the deadline passes) are counted in `scheduler/unprocessed`. A second
    /// call forces the stop at once.
    pub async fn stop(&self) -> Result<(), Error> {
        self.control(&self.stop, StopCrawl(StopMode::Escalate), "stop")
            .await
    }

    /// Stops the crawl as [`stop`](Self::stop) does, except that asking
    /// again while it drains changes nothing (a control API's stop, which
    /// two operators may send at once).
    pub async fn stop_gracefully(&self) -> Result<(), Error> {
        self.control(&self.stop, StopCrawl(StopMode::Graceful), "stop")
            .await
    }

    /// Stops the crawl at once: requests in flight are abandoned (counted
    /// in `scheduler/unprocessed`), pipelines close, and the crawl finishes
    /// with reason `"shutdown"`.
    pub async fn stop_now(&self) -> Result<(), Error> {
        self.control(&self.stop, StopCrawl(StopMode::Force), "stop")
            .await
    }

    /// Stops the crawl on SIGINT or SIGTERM (on Windows, Ctrl-C): the
    /// first signal stops it gracefully (in-flight requests drain), the
    /// second forces it. Call it inside the actix system running the
    /// crawl; the library never installs signal handlers unless asked.
    pub fn stop_on_signals(&self) -> Result<(), Error> {
        let mut signals = StopSignals::new()?;
        let handle = self.clone();
        actix_rt::spawn(async move {
            while signals.next().await {
                if handle.stop().await.is_err() {
                    // Finished: no more signals to wait for.
                    return;
                }
            }
        });
        Ok(())
    }

    /// Waits for the crawl to finish and returns its final stats (with
    /// `finish_reason` set).
    pub async fn join(&self) -> Result<StatsSnapshot, Error> {
        let mut rx = self.finished.clone();
        let done = match rx.wait_for(Option::is_some).await {
            Ok(done) => done.clone(),
            Err(_) => None,
        };
        done.ok_or_else(|| finished_error("the crawl ended without final stats"))
    }

    async fn control<M>(&self, to: &Recipient<M>, msg: M, what: &str) -> Result<(), Error>
    where
        M: actix::Message<Result = Result<(), Error>> + Send + 'static,
    {
        if self.is_finished() {
            return Err(finished_error(&format!(
                "cannot {what}: the crawl has finished"
            )));
        }
        to.send(msg).await.unwrap_or_else(|_| {
            Err(finished_error(&format!(
                "cannot {what}: the crawl has finished"
            )))
        })
    }
}

fn finished_error(message: &str) -> Error {
    Error::new(Stage::Control, ErrorKind::IllegalState(message.to_string()))
}

/// The signals that ask a process to stop: SIGTERM and SIGINT on Unix,
/// Ctrl-C (and Ctrl-Break) elsewhere.
pub(crate) struct StopSignals {
    #[cfg(unix)]
    term: actix_rt::signal::unix::Signal,
    #[cfg(unix)]
    int: actix_rt::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers (inside a Tokio runtime).
    pub(crate) fn new() -> Result<Self, Error> {
        #[cfg(unix)]
        {
            use actix_rt::signal::unix::{signal, SignalKind};
            Ok(StopSignals {
                term: signal(SignalKind::terminate()).map_err(signal_setup)?,
                int: signal(SignalKind::interrupt()).map_err(signal_setup)?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Waits for the next signal: true when one came, false when no more
    /// can come.
    pub(crate) async fn next(&mut self) -> bool {
        #[cfg(unix)]
        {
            use futures_util::future::{select, Either};
            let got = select(Box::pin(self.term.recv()), Box::pin(self.int.recv())).await;
            let (Either::Left((signal, _)) | Either::Right((signal, _))) = got;
            signal.is_some()
        }
        #[cfg(not(unix))]
        match actix_rt::signal::ctrl_c().await {
            Ok(()) => true,
            Err(e) => {
                log::warn!("cannot wait for Ctrl-C: {e}");
                false
            }
        }
    }
}

#[cfg(unix)]
fn signal_setup(e: std::io::Error) -> Error {
    Error::new(
        Stage::Setup,
        ErrorKind::Custom(format!("signal handler: {e}")),
    )
}
