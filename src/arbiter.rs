//! Starting a crawl on an arbiter other than the caller's
//! ([`Crawler::start_on`]), so that it lives as long as that arbiter: the
//! crawl's configuration (`Send`) moves to the arbiter's thread, where
//! [`Crawler::start_async`] runs, and the handle comes back.

use actix::ArbiterHandle;

use crate::builder::Crawler;
use crate::error::{Error, ErrorKind, Stage};
use crate::handle::CrawlHandle;
use crate::spider::Spider;

impl<S: Spider> Crawler<S> {
    /// Starts the crawl on `arbiter` (as [`start_async`](Self::start_async)
    /// does there), so its actors live as long as that arbiter, not the
    /// caller's: a crawl started from an actix-web handler on an arbiter
    /// of its own outlives the HTTP worker, which the server stops and
    /// restarts at will. The arbiters the crawl makes for itself belong to
    /// `arbiter`'s actix system.
    ///
    /// ```no_run
    /// # async fn run(crawler: spinneret::Crawler<impl spinneret::Spider>) -> Result<(), spinneret::Error> {
    /// // Made once, in the application's actix system; it runs until
    /// // stopped (`Arbiter::stop`) or until the system stops.
    /// let crawls = actix::Arbiter::new();
    /// let handle = crawler.start_on(&crawls.handle()).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Fails as [`start_async`](Self::start_async) does, or with
    /// [`ErrorKind::IllegalState`] when `arbiter` has stopped (or stops
    /// before the crawl has started).
    pub async fn start_on(self, arbiter: &ArbiterHandle) -> Result<CrawlHandle, Error> {
        let gone = || {
            Error::new(
                Stage::Setup,
                ErrorKind::IllegalState("the arbiter to start the crawl on has stopped".into()),
            )
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The crawl (configuration only, `Send`) moves to the arbiter's
        // thread; its start runs there, as a task of that arbiter.
        let sent = arbiter.spawn_fn(move || {
            actix_rt::spawn(async move {
                let _ = tx.send(self.start_async().await);
            });
        });
        if !sent {
            return Err(gone());
        }
        rx.await.unwrap_or_else(|_| Err(gone()))
    }
}
