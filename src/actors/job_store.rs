//! JobStore: writes a crawl's checkpoints to its job directory.
//!
//! It runs on an arbiter of its own, so an append and its `fsync` never
//! block the Scheduler: the Scheduler sends each checkpoint's delta as a
//! `WriteCheckpoint` and carries on; the answer says what became durable.

use actix::prelude::*;

use crate::error::Error;
use crate::events::CheckpointInfo;
use crate::jobdir::JobDir;
use crate::messages::{Shutdown, WriteCheckpoint};
use crate::request::Callback;

/// The JobStore actor.
pub(crate) struct JobStore<C> {
    /// The open directory (journal, pending ids, compaction state).
    dir: JobDir<C>,
}

impl<C: Callback> JobStore<C> {
    pub(crate) fn new(dir: JobDir<C>) -> Self {
        JobStore { dir }
    }
}

impl<C: Callback> Actor for JobStore<C> {
    type Context = actix::Context<Self>;
}

impl<C: Callback> Handler<WriteCheckpoint<C>> for JobStore<C> {
    type Result = Result<CheckpointInfo, Error>;

    fn handle(&mut self, msg: WriteCheckpoint<C>, _: &mut Self::Context) -> Self::Result {
        self.dir.write(msg.delta)
    }
}

impl<C: Callback> Handler<Shutdown> for JobStore<C> {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
