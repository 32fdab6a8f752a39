//! The control API's own thread: an actix system of its own, where the
//! crawls `POST /crawls` starts run and where each registered crawl's
//! watcher waits for its end.
//!
//! No HTTP worker runs there, so a server stopping or restarting its
//! workers (or stopping altogether) leaves these crawls running; the
//! arbiters a crawl makes for itself belong to this system too. It is
//! made by [`ControlApiBuilder::build`](super::ControlApiBuilder::build)
//! and stops when the API is dropped (its last clone, and every scope
//! mounted from it) once the crawls it started have finished.

use std::io;
use std::sync::{Mutex, PoisonError};

use actix::{Arbiter, ArbiterHandle, System};

use crate::handle::CrawlHandle;

/// The thread, its system and the crawls started on it.
pub(crate) struct Home {
    /// The system's arbiter: where crawls start and watchers wait.
    arbiter: ArbiterHandle,
    /// Stopped (ending the thread) when the API is gone and the crawls
    /// below have finished.
    system: System,
    /// The crawls started here that may still run: waited for before the
    /// system stops, so dropping the API never cuts a crawl short.
    started: Mutex<Vec<CrawlHandle>>,
}

impl Home {
    /// Starts the thread and its system.
    pub fn new() -> io::Result<Home> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("spinneret-control".into())
            .spawn(move || {
                let runner = System::new();
                let _ = tx.send((System::current(), Arbiter::current()));
                runner.run()
            })?;
        let (system, arbiter) = rx
            .recv()
            .map_err(|_| io::Error::other("the control API's thread ended at its start"))?;
        Ok(Home {
            arbiter,
            system,
            started: Mutex::new(Vec::new()),
        })
    }

    /// Where crawls start.
    pub fn arbiter(&self) -> &ArbiterHandle {
        &self.arbiter
    }

    /// Records a crawl started here, forgetting those already finished.
    pub fn started(&self, handle: CrawlHandle) {
        let mut started = self.started.lock().unwrap_or_else(PoisonError::into_inner);
        started.retain(|h| !h.is_finished());
        started.push(handle);
    }

    /// Runs `then` here once `handle`'s crawl has finished (or has ended
    /// without final stats). Only a prompt: once the thread is stopping
    /// nothing runs, and every request applies the retention anyway.
    pub fn watch(&self, handle: CrawlHandle, then: impl FnOnce() + Send + 'static) {
        let _ = self.arbiter.spawn(async move {
            let _ = handle.join().await;
            then();
        });
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let started = std::mem::take(
            self.started
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let system = self.system.clone();
        let waiting = self.arbiter.spawn(async move {
            for handle in started {
                let _ = handle.join().await;
            }
            system.stop();
        });
        if !waiting {
            self.system.stop();
        }
    }
}
