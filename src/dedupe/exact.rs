//! The exact fingerprint set behind the Bloom filter.
//!
//! Fingerprints (128 bits) are kept whole, sorted, in shards chosen by
//! their top bits. A shard holds about [`PER_SHARD`] fingerprints: a lookup
//! is a binary search over one or two cache lines' worth of keys, an insert
//! moves at most a few kilobytes, and when the set outgrows its shards
//! each shard splits in two at the next bit (a partition point, since it is
//! sorted), so the set grows with the crawl without being sized. Memory is
//! 16 bytes per fingerprint, plus at most one eighth for each shard's
//! growth room, plus 24 bytes per shard (a fifth of a byte per
//! fingerprint).

use crate::fingerprint::Fingerprint;

/// Fingerprints per shard, on average, before every shard splits.
pub(crate) const PER_SHARD: usize = 128;

/// A set of fingerprints with exact answers (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct ExactSet {
    /// `1 << bits` shards, each sorted; shard `i` holds the fingerprints
    /// whose top `bits` bits are `i`.
    shards: Vec<Vec<Fingerprint>>,
    /// How many top bits choose the shard.
    bits: u32,
    /// Fingerprints held.
    len: usize,
    /// Fingerprints the shards have room for (kept as they grow, so the
    /// memory report is not a walk over every shard).
    room: usize,
}

impl ExactSet {
    /// An empty set.
    pub(crate) fn new() -> Self {
        ExactSet {
            shards: vec![Vec::new()],
            bits: 0,
            len: 0,
            room: 0,
        }
    }

    fn shard(&self, fp: Fingerprint) -> usize {
        match self.bits {
            0 => 0,
            b => (fp >> (128 - b)) as usize,
        }
    }

    /// Whether `fp` is in the set.
    #[cfg(test)]
    pub(crate) fn contains(&self, fp: Fingerprint) -> bool {
        self.shards[self.shard(fp)].binary_search(&fp).is_ok()
    }

    /// Adds `fp`; `true` if it was not there.
    pub(crate) fn insert(&mut self, fp: Fingerprint) -> bool {
        let s = self.shard(fp);
        let shard = &mut self.shards[s];
        let Err(at) = shard.binary_search(&fp) else {
            return false;
        };
        if shard.len() == shard.capacity() {
            // Grow by an eighth, not double: the room left unused stays
            // small.
            let before = shard.capacity();
            shard.reserve_exact(shard.len() / 8 + 4);
            self.room += shard.capacity() - before;
        }
        shard.insert(at, fp);
        self.len += 1;
        if self.len > self.shards.len() * PER_SHARD {
            self.split();
        }
        true
    }

    /// Doubles the shards: each splits at the next bit. One shard at a
    /// time, so the memory held on top of the set is one shard's.
    fn split(&mut self) {
        let bits = self.bits + 1;
        let mut shards = Vec::with_capacity(self.shards.len() * 2);
        for mut low in std::mem::take(&mut self.shards) {
            let cut = low.partition_point(|fp| (fp >> (128 - bits)) & 1 == 0);
            let high = low.split_off(cut);
            low.shrink_to_fit();
            shards.push(low);
            shards.push(high);
        }
        self.room = shards.iter().map(Vec::capacity).sum();
        self.shards = shards;
        self.bits = bits;
    }

    /// Fingerprints held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes held (the fingerprints with their growth room, and the
    /// shard table).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.room * std::mem::size_of::<Fingerprint>()
            + self.shards.capacity() * std::mem::size_of::<Vec<Fingerprint>>()
    }

    /// Damages the set for a test: the first two fingerprints of its
    /// fullest shard change places.
    #[cfg(test)]
    pub(crate) fn swap_first_two(&mut self) {
        let shard = self.shards.iter_mut().max_by_key(|s| s.len()).unwrap();
        shard.swap(0, 1);
    }

    /// The shards in order (their concatenation is sorted) and how many
    /// top bits choose one: what a saved set holds.
    pub(crate) fn shards(&self) -> (&[Vec<Fingerprint>], u32) {
        (&self.shards, self.bits)
    }

    /// A set from saved shards, checked as [`validate`](Self::validate)
    /// does: a damaged set is an error, never a set that answers wrongly.
    pub(crate) fn from_shards(shards: Vec<Vec<Fingerprint>>, bits: u32) -> Result<Self, String> {
        let set = ExactSet {
            len: shards.iter().map(Vec::len).sum(),
            room: shards.iter().map(Vec::capacity).sum(),
            shards,
            bits,
        };
        set.validate()?;
        Ok(set)
    }

    /// Checks the set's invariants: the shard count matches `bits`, each
    /// fingerprint is in its shard and in order, and `len` is right.
    fn validate(&self) -> Result<(), String> {
        if self.bits > 40 || self.shards.len() != 1usize << self.bits {
            return Err(format!(
                "{} shards for {} bits",
                self.shards.len(),
                self.bits
            ));
        }
        let mut total = 0;
        for (i, shard) in self.shards.iter().enumerate() {
            if shard.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!("shard {i} is not sorted"));
            }
            if shard.iter().any(|&fp| self.shard(fp) != i) {
                return Err(format!("shard {i} holds another shard's fingerprint"));
            }
            total += shard.len();
        }
        if total != self.len {
            return Err(format!("{total} fingerprints, {} recorded", self.len));
        }
        Ok(())
    }
}

/// The `i`th of a sequence of spread-out fingerprints, as real ones are (a
/// hash of the request), for tests.
#[cfg(test)]
pub(crate) fn spread(i: u64) -> Fingerprint {
    let h = u128::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
    h ^ (h >> 64)
}

#[cfg(test)]
mod tests {
    use super::spread as fp;
    use super::*;

    #[test]
    fn answers_exactly_through_every_split() {
        let mut set = ExactSet::new();
        for i in 0..20_000 {
            assert!(set.insert(fp(i)), "{i} is new");
        }
        assert_eq!(set.len(), 20_000);
        // 20,000 / 128 per shard: 256 shards (split at 129, 257, ... 16,385).
        assert_eq!(set.shards.len(), 256);
        assert!((0..20_000).all(|i| set.contains(fp(i)) && !set.insert(fp(i))));
        assert!((20_000..40_000).all(|i| !set.contains(fp(i))));
        assert_eq!(set.len(), 20_000);
        set.validate().unwrap();
    }

    #[test]
    fn fingerprints_that_share_their_top_bits_stay_apart() {
        let mut set = ExactSet::new();
        // All in shard 0 whatever the split: only the low bits differ.
        for i in 0..1_000u128 {
            assert!(set.insert(i));
        }
        assert!(set.insert(u128::MAX));
        assert!((0..1_000u128).all(|i| set.contains(i)));
        assert!(!set.contains(1_000));
        set.validate().unwrap();
    }

    #[test]
    fn memory_stays_near_sixteen_bytes_a_fingerprint() {
        let mut set = ExactSet::new();
        for i in 0..200_000 {
            set.insert(fp(i));
        }
        let per = set.heap_bytes() as f64 / 200_000.0;
        assert!((16.0..19.0).contains(&per), "{per} bytes per fingerprint");
    }

    #[test]
    fn a_damaged_set_fails_validation() {
        let mut set = ExactSet::new();
        for i in 0..1_000 {
            set.insert(fp(i));
        }
        set.len += 1;
        assert!(set.validate().unwrap_err().contains("recorded"));
        set.len -= 1;
        set.shards[0].reverse();
        assert!(set.validate().is_err());
    }
}
