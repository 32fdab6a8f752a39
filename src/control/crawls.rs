//! The crawls a [`ControlApi`](super::ControlApi) serves, in registration
//! order, and the retention of finished ones.
//!
//! A crawl is stamped the first time it is seen finished: by its watcher
//! as soon as it ends, or by any request that looks first (so what a
//! request shows never depends on a watcher's timing). When more than
//! `keep` crawls are stamped, the ones stamped first are removed: the
//! API keeps the `keep` most recently finished. A crawl that has not
//! finished is never removed by the retention.

use crate::handle::CrawlHandle;

/// A crawl the API serves.
#[derive(Clone)]
pub(crate) struct Registered {
    /// Its id in the routes.
    pub id: String,
    /// A name for people (the spider's, say).
    pub name: String,
    /// Its handle.
    pub handle: CrawlHandle,
    /// When it was first seen finished, in stamp order; `None` until then.
    /// The retention removes the lowest stamps first.
    finished: Option<u64>,
}

impl Registered {
    /// A crawl not yet seen finished.
    pub fn new(id: String, name: String, handle: CrawlHandle) -> Self {
        Registered {
            id,
            name,
            handle,
            finished: None,
        }
    }
}

/// The registered crawls and the retention's bookkeeping.
pub(crate) struct Crawls {
    /// In registration order (a few hundred at most: a scan finds one).
    list: Vec<Registered>,
    /// The next finish stamp.
    next_stamp: u64,
    /// How many finished crawls stay registered.
    keep: usize,
    /// How many finished crawls the retention has removed.
    removed: u64,
}

impl Crawls {
    /// No crawl; keeps the `keep` most recently finished.
    pub fn new(keep: usize) -> Self {
        Crawls {
            list: Vec::new(),
            next_stamp: 0,
            keep,
            removed: 0,
        }
    }

    pub fn push(&mut self, crawl: Registered) {
        self.list.push(crawl);
    }

    pub fn get(&self, id: &str) -> Option<&Registered> {
        self.list.iter().find(|r| r.id == id)
    }

    /// Removes the crawl `id`, whatever its state.
    pub fn remove(&mut self, id: &str) -> Option<Registered> {
        let at = self.list.iter().position(|r| r.id == id)?;
        Some(self.list.remove(at))
    }

    /// Every crawl, in registration order.
    pub fn all(&self) -> &[Registered] {
        &self.list
    }

    /// How many finished crawls the retention has removed.
    pub fn removed(&self) -> u64 {
        self.removed
    }

    /// Stamps the crawls that have finished since the last look (in
    /// registration order), then removes the finished ones beyond the
    /// retention; returns those.
    pub fn sweep(&mut self) -> Vec<Registered> {
        for r in &mut self.list {
            if r.finished.is_none() && r.handle.is_finished() {
                r.finished = Some(self.next_stamp);
                self.next_stamp += 1;
            }
        }
        let stamps: Vec<Option<u64>> = self.list.iter().map(|r| r.finished).collect();
        let mut gone = Vec::new();
        // From the back, so that the indices still to remove stay valid.
        for at in beyond(&stamps, self.keep).into_iter().rev() {
            gone.push(self.list.remove(at));
        }
        gone.reverse();
        self.removed += gone.len() as u64;
        gone
    }
}

/// The positions, ascending, of the entries of `stamps` (`None`: not
/// finished) to remove so that at most `keep` finished ones remain: those
/// stamped first.
fn beyond(stamps: &[Option<u64>], keep: usize) -> Vec<usize> {
    let mut finished: Vec<(u64, usize)> = stamps
        .iter()
        .enumerate()
        .filter_map(|(at, s)| s.map(|s| (s, at)))
        .collect();
    let over = finished.len().saturating_sub(keep);
    finished.sort_unstable();
    let mut gone: Vec<usize> = finished[..over].iter().map(|&(_, at)| at).collect();
    gone.sort_unstable();
    gone
}

#[cfg(test)]
mod tests {
    use super::beyond;

    #[test]
    fn the_first_finished_go_and_running_crawls_stay() {
        // Registered in this order; finished in the order of the stamps.
        let stamps = [Some(3), None, Some(0), Some(2), None, Some(1)];
        assert_eq!(beyond(&stamps, 4), Vec::<usize>::new());
        assert_eq!(beyond(&stamps, 3), [2]);
        assert_eq!(beyond(&stamps, 2), [2, 5]);
        assert_eq!(beyond(&stamps, 1), [2, 3, 5]);
        // Keeping none removes every finished crawl, never a running one.
        assert_eq!(beyond(&stamps, 0), [0, 2, 3, 5]);
        assert_eq!(beyond(&[None, None], 0), Vec::<usize>::new());
        assert_eq!(beyond(&[], 0), Vec::<usize>::new());
    }
}
