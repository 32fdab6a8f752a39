//! The dupe filter's store: have we seen this fingerprint before?
//!
//! The DupeFilter actor owns one [`DupeBackend`]. The default,
//! [`MemoryDupe`], is a Bloom filter (`probabilistic-collections`, fixed
//! hash seeds so a persisted filter stays valid across runs) beside an
//! exact set of fingerprints:
//!
//! - the set answers every lookup: most links a crawl meets are
//!   duplicates, and one binary search in one small shard costs less than
//!   the filter's two hashes and ten probes (and touches one cache line,
//!   not ten);
//! - the filter is asked only about fingerprints the set has not seen, so
//!   its false positives cost no page; they are counted
//!   (`dupefilter/bloom_false_positives`);
//! - the set grows with the crawl (16 bytes per fingerprint and a little
//!   room), and the filter grows in stages, each twice the size of the one
//!   before, so nothing needs sizing: [`bloom`](crate::CrawlerBuilder::bloom)
//!   sizes the first stage only.
//!
//! [`DupeMode::Probabilistic`] keeps the filter alone (one stage, 1.8 bytes
//! per URL at a 0.1 % rate) for speed: past the capacity it was sized for,
//! its false positives drop new URLs, and the stats count the duplicates it
//! answered unconfirmed and how many of them were likely new.
//!
//! A job directory saves the store ([`MemoryDupe::to_bytes`]) in a
//! versioned format of this crate's (`format`): the filter's parameters
//! and bits, and the exact set, with every length checked on read.
//!
//! A networked back-end (`RedisDupe`, see
//! [`distributed`](crate::distributed)) plugs in behind the same trait.

mod exact;
mod format;

use std::path::Path;

use futures_util::future::ready;
use probabilistic_collections::bloom::BloomFilter;
use probabilistic_collections::SipHasherBuilder;

use crate::error::{Error, ErrorKind, Stage};
use crate::queue::BackendFuture;
use exact::ExactSet;
use format::Refusal;

// What a back-end stores, and how a request becomes one.
pub use crate::fingerprint::{canonical_url, fingerprint, Fingerprint};

/// A store of seen fingerprints with an atomic test-and-add.
pub trait DupeBackend: Send + 'static {
    /// For each fingerprint, in order: `true` if it was new (and is now
    /// recorded), `false` if it was seen before.
    fn check_and_add(&mut self, fingerprints: Vec<Fingerprint>) -> BackendFuture<Vec<bool>>;

    /// What the back-end counted since the last call, for the stats (the
    /// DupeFilter asks after every answer). Default: nothing.
    fn take_report(&mut self) -> DupeReport {
        DupeReport::default()
    }
}

/// What a [`DupeBackend`] counted since it was last asked.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DupeReport {
    /// "Maybe seen" answers of a Bloom filter that the exact store found
    /// new: pages the filter alone would have lost.
    pub bloom_false_positives: u64,
    /// "Seen" answers a Bloom filter gave alone (no exact store) while past
    /// the capacity it was sized for.
    pub unconfirmed: u64,
    /// How many of those were likely new URLs, dropped (the filter's
    /// estimated false-positive rate at each answer, summed, in whole
    /// URLs).
    pub maybe_lost: u64,
    /// The filter went past its capacity with no exact store behind it
    /// (reported once), holding this many fingerprints.
    pub passed_capacity: Option<u64>,
    /// Fingerprints held now, when the back-end knows.
    pub fingerprints: Option<u64>,
    /// Bytes the store holds now, when the back-end knows.
    pub bytes: Option<u64>,
}

/// Whether the built-in store confirms the Bloom filter's "maybe seen".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DupeMode {
    /// The filter in front of an exact set: never drops a new URL
    /// (default).
    #[default]
    Exact,
    /// The filter alone, fixed at the capacity it was sized for: past it,
    /// new URLs are dropped at a growing rate (counted, and warned of).
    Probabilistic,
}

/// The SipHash seeds of every filter's two hashers: fixed, so a filter
/// saved by one run answers the same in the next.
const SEEDS: [(u64, u64); 2] = [(0x5eed_0001, 0x5eed_0002), (0x5eed_0003, 0x5eed_0004)];

/// One Bloom filter stage.
struct BloomStage {
    filter: BloomFilter<Fingerprint>,
    /// Fingerprints it was sized for.
    capacity: usize,
    /// Fingerprints added.
    added: usize,
}

impl BloomStage {
    fn new(capacity: usize, rate: f64) -> Self {
        let hashers = SEEDS.map(|(k0, k1)| SipHasherBuilder::from_seed(k0, k1));
        BloomStage {
            filter: BloomFilter::with_hashers(capacity, rate, hashers),
            capacity,
            added: 0,
        }
    }

    /// The false-positive rate at its fill: (1 - e^(-k n / m))^k.
    fn estimated_rate(&self) -> f64 {
        let k = self.filter.hasher_count() as f64;
        let m = self.filter.len().max(1) as f64;
        (1.0 - (-k * self.added as f64 / m).exp()).powf(k)
    }
}

/// The in-memory store: a Bloom filter in stages, and in
/// [`DupeMode::Exact`] an exact set behind it (see the module docs).
pub struct MemoryDupe {
    /// Oldest first; new fingerprints go to the last.
    stages: Vec<BloomStage>,
    /// The false-positive rate each stage is sized for.
    rate: f64,
    /// The exact set (none in probabilistic mode).
    exact: Option<ExactSet>,
    /// Counted since the last report.
    pending: DupeReport,
    /// `maybe_lost` not yet reported as a whole URL.
    lost_carry: f64,
}

impl MemoryDupe {
    /// A store whose first Bloom stage is sized for `capacity` fingerprints
    /// at `false_positive_rate`.
    pub fn new(capacity: usize, false_positive_rate: f64, mode: DupeMode) -> Result<Self, Error> {
        if capacity == 0 || !(false_positive_rate > 0.0 && false_positive_rate < 1.0) {
            return Err(Error::new(
                Stage::Setup,
                ErrorKind::Config(format!(
                    "bloom filter needs capacity > 0 and 0 < rate < 1, got {capacity} and {false_positive_rate}"
                )),
            ));
        }
        Ok(MemoryDupe {
            stages: vec![BloomStage::new(capacity, false_positive_rate)],
            rate: false_positive_rate,
            exact: (mode == DupeMode::Exact).then(ExactSet::new),
            pending: DupeReport::default(),
            lost_carry: 0.0,
        })
    }

    /// Its mode.
    pub fn mode(&self) -> DupeMode {
        match self.exact {
            Some(_) => DupeMode::Exact,
            None => DupeMode::Probabilistic,
        }
    }

    /// Test-and-add one fingerprint now.
    pub fn insert_new(&mut self, fp: Fingerprint) -> bool {
        // Newest first: the largest stage holds most fingerprints.
        let in_filter = |stages: &[BloomStage]| stages.iter().rev().any(|s| s.filter.contains(&fp));
        match self.exact.as_mut() {
            Some(exact) => {
                // The set answers first: most links a crawl meets are
                // duplicates, and one binary search in one shard costs less
                // than the filter's two hashes and ten probes. The filter is
                // asked only about new fingerprints, to count its false
                // positives.
                if !exact.insert(fp) {
                    return false;
                }
                if in_filter(&self.stages) {
                    self.pending.bloom_false_positives += 1;
                }
            }
            None if in_filter(&self.stages) => {
                let stage = &self.stages[0];
                if stage.added > stage.capacity {
                    self.pending.unconfirmed += 1;
                    self.lost_carry += stage.estimated_rate();
                }
                return false;
            }
            None => {}
        }
        self.add_to_filter(fp);
        true
    }

    /// Sets `fp`'s bits in the newest stage; in exact mode a full stage is
    /// followed by one twice its size.
    fn add_to_filter(&mut self, fp: Fingerprint) {
        let exact = self.exact.is_some();
        let last = self.stages.last_mut().expect("a store has a stage");
        if exact && last.added >= last.capacity {
            let capacity = last.capacity.saturating_mul(2);
            self.stages.push(BloomStage::new(capacity, self.rate));
        }
        let last = self.stages.last_mut().expect("a store has a stage");
        last.filter.insert(&fp);
        last.added += 1;
        if !exact && last.added == last.capacity + 1 {
            self.pending.passed_capacity = Some(last.added as u64);
        }
    }

    /// Fingerprints added so far.
    pub fn added(&self) -> usize {
        self.stages.iter().map(|s| s.added).sum()
    }

    /// Whether a filter with no exact store behind it holds more than it
    /// was sized for (its false positives then drop new URLs more often).
    pub fn over_capacity(&self) -> bool {
        self.exact.is_none() && self.stages.iter().any(|s| s.added > s.capacity)
    }

    /// Bytes held: the filter stages and the exact set.
    pub fn size_bytes(&self) -> usize {
        let filters: usize = self.stages.iter().map(|s| s.filter.len() / 8).sum();
        filters + self.exact.as_ref().map_or(0, ExactSet::heap_bytes)
    }

    /// A store of saved parts (nothing counted yet).
    fn from_parts(stages: Vec<BloomStage>, rate: f64, exact: Option<ExactSet>) -> Self {
        MemoryDupe {
            stages,
            rate,
            exact,
            pending: DupeReport::default(),
            lost_carry: 0.0,
        }
    }

    /// The store saved, as a job directory's checkpoint holds it: a
    /// versioned format of this crate's (its header, the filter's
    /// parameters, its bits, the exact set), stable across releases.
    ///
    /// Fails with [`ErrorKind::Backend`] only if the Bloom filter's bits
    /// cannot be read out of it.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        format::encode(self).map_err(|reason| {
            Error::new(
                Stage::Control,
                ErrorKind::Backend(format!("the dupe store cannot be saved: {reason}")),
            )
        })
    }

    /// A store from [`to_bytes`](Self::to_bytes), or from the format of
    /// earlier releases (version 1), checked: bytes that are cut short or
    /// inconsistent (an exact set out of order, no filter stage) are
    /// [`ErrorKind::DupeStoreCorrupt`], never a filter that answers
    /// wrongly, and a format version this build does not read is
    /// [`ErrorKind::DupeStoreVersion`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        format::decode(bytes).map_err(|r| refused(r, None))
    }

    /// As [`from_bytes`](Self::from_bytes), the error naming `file`, where
    /// the bytes were read.
    pub(crate) fn from_saved(bytes: &[u8], file: &Path) -> Result<Self, Error> {
        format::decode(bytes).map_err(|r| refused(r, Some(file)))
    }
}

/// The error for saved bytes that cannot become a store.
fn refused(refusal: Refusal, file: Option<&Path>) -> Error {
    let path = file.map(Path::to_path_buf);
    let kind = match refusal {
        Refusal::Version(found) => ErrorKind::DupeStoreVersion {
            path,
            found,
            expected: format::VERSION,
        },
        Refusal::Damaged(reason) => ErrorKind::DupeStoreCorrupt { path, reason },
    };
    Error::new(Stage::Setup, kind)
}

impl DupeBackend for MemoryDupe {
    fn check_and_add(&mut self, fingerprints: Vec<Fingerprint>) -> BackendFuture<Vec<bool>> {
        let fresh = fingerprints
            .into_iter()
            .map(|fp| self.insert_new(fp))
            .collect();
        Box::pin(ready(Ok(fresh)))
    }

    fn take_report(&mut self) -> DupeReport {
        let whole = self.lost_carry.floor();
        self.lost_carry -= whole;
        let mut report = std::mem::take(&mut self.pending);
        report.maybe_lost = whole as u64;
        report.fingerprints = Some(self.added() as u64);
        report.bytes = Some(self.size_bytes() as u64);
        report
    }
}

#[cfg(test)]
mod tests {
    use super::exact::spread as fp;
    use super::*;

    #[test]
    fn test_and_add() {
        let mut b = MemoryDupe::new(1000, 0.001, DupeMode::Exact).unwrap();
        assert!(b.insert_new(1));
        assert!(b.insert_new(2));
        assert!(!b.insert_new(1));
        assert_eq!(b.added(), 2);
        assert!(!b.over_capacity());
    }

    #[test]
    fn exact_mode_never_drops_a_new_fingerprint_past_capacity() {
        // A filter sized for 100 and a 1 % rate, given 20,000: the stages
        // grow (100, 200, ... 12,800) and every false positive of theirs
        // is caught by the exact set.
        let mut b = MemoryDupe::new(100, 0.01, DupeMode::Exact).unwrap();
        let new = (0..20_000).filter(|&i| b.insert_new(fp(i))).count();
        assert_eq!(new, 20_000);
        assert_eq!((0..20_000).filter(|&i| b.insert_new(fp(i))).count(), 0);
        assert_eq!(b.added(), 20_000);
        assert_eq!(b.stages.len(), 8);
        assert!(!b.over_capacity());
        let report = b.take_report();
        // Each stage at 1 % gives a few dozen false positives over 20,000
        // new fingerprints; none dropped a page.
        assert!(report.bloom_false_positives > 0, "{report:?}");
        assert_eq!(report.unconfirmed, 0);
        assert_eq!(report.passed_capacity, None);
        assert_eq!(report.fingerprints, Some(20_000));
        assert_eq!(b.take_report().bloom_false_positives, 0);
    }

    #[test]
    fn probabilistic_mode_counts_and_reports_what_it_may_drop() {
        let mut b = MemoryDupe::new(1_000, 0.01, DupeMode::Probabilistic).unwrap();
        let new = (0..20_000).filter(|&i| b.insert_new(fp(i))).count();
        // Past 1,000 the single stage fills up and drops new URLs.
        assert!(new < 20_000, "{new}");
        assert!(b.over_capacity());
        assert_eq!(b.stages.len(), 1);
        let report = b.take_report();
        assert_eq!(report.bloom_false_positives, 0);
        assert_eq!(report.passed_capacity, Some(1_001));
        let dropped = (20_000 - new) as u64;
        // The dropped new URLs were unconfirmed "seen" answers past
        // capacity (but for the few false positives at the filter's sized
        // rate before it), and the estimate is in the right range.
        assert!(report.unconfirmed <= dropped);
        assert!(
            dropped - report.unconfirmed < 10,
            "{report:?} for {dropped} dropped"
        );
        assert!(
            report.maybe_lost > dropped / 2 && report.maybe_lost < dropped * 2,
            "{report:?} for {dropped} dropped"
        );
        // Reported once.
        assert_eq!(b.take_report().passed_capacity, None);
    }

    #[test]
    fn default_sizing_stays_under_two_bytes_per_url() {
        let b = MemoryDupe::new(1 << 20, 0.001, DupeMode::Probabilistic).unwrap();
        let per_url = b.size_bytes() as f64 / f64::from(1u32 << 20);
        assert!(per_url < 2.0, "{per_url} bytes per URL");
    }

    #[test]
    fn serialised_store_keeps_what_it_saw() {
        let mut b = MemoryDupe::new(100, 0.001, DupeMode::Exact).unwrap();
        for i in 0..1_000 {
            b.insert_new(fp(i));
        }
        let bytes = b.to_bytes().unwrap();
        assert!(bytes.len() < b.size_bytes() + 4096, "{} bytes", bytes.len());
        let mut back = MemoryDupe::from_bytes(&bytes).unwrap();
        assert_eq!(back.added(), 1_000);
        assert_eq!(back.mode(), DupeMode::Exact);
        assert!((0..1_000).all(|i| !back.insert_new(fp(i))));
        assert!((1_000..2_000).all(|i| back.insert_new(fp(i))));
    }

    #[test]
    fn a_damaged_store_is_an_error() {
        let mut b = MemoryDupe::new(100, 0.001, DupeMode::Exact).unwrap();
        for i in 0..1_000 {
            b.insert_new(fp(i));
        }
        let bytes = b.to_bytes().unwrap();
        let cut = MemoryDupe::from_bytes(&bytes[..bytes.len() / 2])
            .err()
            .unwrap();
        assert!(
            matches!(cut.kind(), ErrorKind::DupeStoreCorrupt { path: None, reason } if reason == "shard 3: 125, more than the 583 bytes left can hold"),
            "{cut}"
        );
        // Two fingerprints of the exact set swapped: out of order, caught.
        b.exact.as_mut().unwrap().swap_first_two();
        let err = MemoryDupe::from_bytes(&b.to_bytes().unwrap())
            .err()
            .unwrap();
        assert!(err.to_string().contains("not sorted"), "{err}");
    }

    #[test]
    fn bad_sizing_is_a_config_error() {
        assert!(MemoryDupe::new(0, 0.01, DupeMode::Exact).is_err());
        assert!(MemoryDupe::new(10, 1.5, DupeMode::Exact).is_err());
    }
}
