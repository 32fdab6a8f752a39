//! The dupe filter's store: have we seen this fingerprint before?
//!
//! The DupeFilter actor owns one [`DupeBackend`]. The default,
//! [`BloomDupe`], is a Bloom filter from `probabilistic-collections` with
//! fixed hash seeds (so a persisted filter stays valid across runs); a
//! networked back-end (`RedisDupe`, see [`distributed`](crate::distributed)) plugs
//! in behind the same trait.

use futures_util::future::ready;
use probabilistic_collections::bloom::BloomFilter;
use probabilistic_collections::SipHasherBuilder;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Stage};
use crate::queue::BackendFuture;

// What a back-end stores, and how a request becomes one.
pub use crate::fingerprint::{canonical_url, fingerprint, Fingerprint};

/// A store of seen fingerprints with an atomic test-and-add.
pub trait DupeBackend: Send + 'static {
    /// For each fingerprint, in order: `true` if it was new (and is now
    /// recorded), `false` if it was seen before.
    fn check_and_add(&mut self, fingerprints: Vec<Fingerprint>) -> BackendFuture<Vec<bool>>;
}

/// The in-memory Bloom filter.
#[derive(Serialize, Deserialize)]
pub struct BloomDupe {
    /// The filter; false positives at the configured rate, never false
    /// negatives (a new URL may rarely be taken for a seen one, a seen one is
    /// never fetched twice).
    filter: BloomFilter<Fingerprint>,
    /// Fingerprints added, to warn once the capacity is passed (the false
    /// positive rate then grows).
    added: usize,
    /// The capacity it was sized for.
    capacity: usize,
}

impl BloomDupe {
    /// A filter sized for `capacity` fingerprints at `false_positive_rate`.
    pub fn new(capacity: usize, false_positive_rate: f64) -> Result<Self, Error> {
        if capacity == 0 || !(false_positive_rate > 0.0 && false_positive_rate < 1.0) {
            return Err(Error::new(
                Stage::Setup,
                ErrorKind::Config(format!(
                    "bloom filter needs capacity > 0 and 0 < rate < 1, got {capacity} and {false_positive_rate}"
                )),
            ));
        }
        let hashers = [
            SipHasherBuilder::from_seed(0x5eed_0001, 0x5eed_0002),
            SipHasherBuilder::from_seed(0x5eed_0003, 0x5eed_0004),
        ];
        Ok(BloomDupe {
            filter: BloomFilter::with_hashers(capacity, false_positive_rate, hashers),
            added: 0,
            capacity,
        })
    }

    /// Test-and-add one fingerprint now.
    pub fn insert_new(&mut self, fp: Fingerprint) -> bool {
        if self.filter.contains(&fp) {
            return false;
        }
        self.filter.insert(&fp);
        self.added += 1;
        true
    }

    /// Fingerprints added so far.
    pub fn added(&self) -> usize {
        self.added
    }

    /// Whether more were added than the filter was sized for.
    pub fn over_capacity(&self) -> bool {
        self.added > self.capacity
    }

    /// The filter's size in bytes.
    pub fn size_bytes(&self) -> usize {
        self.filter.len() / 8
    }

    /// The filter serialised (bincode), as a job directory stores it.
    pub fn to_bytes(&self) -> Result<Vec<u8>, bincode::Error> {
        bincode::serialize(self)
    }

    /// A filter from [`to_bytes`](Self::to_bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, bincode::Error> {
        bincode::deserialize(bytes)
    }
}

impl DupeBackend for BloomDupe {
    fn check_and_add(&mut self, fingerprints: Vec<Fingerprint>) -> BackendFuture<Vec<bool>> {
        let fresh = fingerprints
            .into_iter()
            .map(|fp| self.insert_new(fp))
            .collect();
        Box::pin(ready(Ok(fresh)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_and_add() {
        let mut b = BloomDupe::new(1000, 0.001).unwrap();
        assert!(b.insert_new(1));
        assert!(b.insert_new(2));
        assert!(!b.insert_new(1));
        assert_eq!(b.added(), 2);
        assert!(!b.over_capacity());
    }

    #[test]
    fn default_sizing_stays_under_two_bytes_per_url() {
        let b = BloomDupe::new(1 << 20, 0.001).unwrap();
        let per_url = b.size_bytes() as f64 / f64::from(1u32 << 20);
        assert!(per_url < 2.0, "{per_url} bytes per URL");
    }

    #[test]
    fn serialised_filter_keeps_what_it_saw() {
        let mut b = BloomDupe::new(1000, 0.001).unwrap();
        for fp in 0..100 {
            b.insert_new(fp);
        }
        let bytes = b.to_bytes().unwrap();
        assert!(bytes.len() < b.size_bytes() + 512, "{} bytes", bytes.len());
        let mut back = BloomDupe::from_bytes(&bytes).unwrap();
        assert_eq!(back.added(), 100);
        assert!((0..100).all(|fp| !back.insert_new(fp)));
        assert!(back.insert_new(1_000_000));
    }

    #[test]
    fn bad_sizing_is_a_config_error() {
        assert!(BloomDupe::new(0, 0.01).is_err());
        assert!(BloomDupe::new(10, 1.5).is_err());
    }
}
