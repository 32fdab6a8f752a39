//! JobStore: writes a crawl's checkpoints to its job directory.
//!
//! It runs on an arbiter of its own, so an append and its `fsync` never
//! block the Scheduler: the Scheduler sends each checkpoint's delta as a
//! `WriteCheckpoint` and carries on; the answer says what became durable.
//! At the end of the finish sequence the Engine sends `ReleaseJobDir`: the
//! store closes the directory (its journal and its lock) and refuses any
//! later write.

use actix::prelude::*;

use crate::error::{Error, ErrorKind, Stage};
use crate::events::CheckpointInfo;
use crate::jobdir::JobDir;
use crate::messages::{ReleaseJobDir, Shutdown, WriteCheckpoint};
use crate::request::Callback;

/// The JobStore actor.
pub(crate) struct JobStore<C> {
    /// The open directory (journal, pending ids, compaction state, lock);
    /// `None` once released: nothing may be written after the lock is
    /// given up.
    dir: Option<JobDir<C>>,
}

impl<C: Callback> JobStore<C> {
    pub(crate) fn new(dir: JobDir<C>) -> Self {
        JobStore { dir: Some(dir) }
    }

    /// Starts a JobStore over `store` (if the crawl has a job directory) on
    /// an arbiter of its own (checkpoints are written and synced there),
    /// pushed to `arbiters`; its address goes to `shutdown`.
    pub(crate) fn start_on_own_arbiter(
        store: Option<JobDir<C>>,
        arbiters: &mut Vec<Arbiter>,
        shutdown: &mut Vec<Recipient<Shutdown>>,
    ) -> Option<Addr<Self>> {
        store.map(|store| {
            let arbiter = Arbiter::new();
            let addr = JobStore::start_in_arbiter(&arbiter.handle(), move |_| JobStore::new(store));
            arbiters.push(arbiter);
            shutdown.push(addr.clone().recipient());
            addr
        })
    }
}

impl<C: Callback> Actor for JobStore<C> {
    type Context = actix::Context<Self>;
}

impl<C: Callback> Handler<WriteCheckpoint<C>> for JobStore<C> {
    type Result = Result<CheckpointInfo, Error>;

    fn handle(&mut self, msg: WriteCheckpoint<C>, _: &mut Self::Context) -> Self::Result {
        let Some(dir) = self.dir.as_mut() else {
            return Err(Error::new(
                Stage::Control,
                ErrorKind::IllegalState(
                    "cannot checkpoint: the job directory was released at the crawl's end".into(),
                ),
            ));
        };
        dir.write(msg.delta)
    }
}

impl<C: Callback> Handler<ReleaseJobDir> for JobStore<C> {
    type Result = ();

    fn handle(&mut self, _: ReleaseJobDir, _: &mut Self::Context) {
        self.dir = None;
    }
}

impl<C: Callback> Handler<Shutdown> for JobStore<C> {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
