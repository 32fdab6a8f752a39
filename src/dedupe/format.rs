//! The dupe store's bytes, as a job directory's compacted checkpoint holds
//! them: a format of ours, versioned, that names the Bloom filter's
//! parameters and holds its bits as they are.
//!
//! # Version 2 (written)
//!
//! Little-endian throughout. Every length is checked against the bytes
//! left before anything is allocated, and nothing may follow the end.
//!
//! ```text
//! magic        4 bytes "SPDS"
//! version      u32     2
//! mode         u8      0: an exact set behind the filter, 1: the filter alone
//! rate         f64     the false-positive rate each stage is sized for
//! stages       u32     at least 1, oldest first; each:
//!   capacity   u64     fingerprints it was sized for
//!   added      u64     fingerprints added
//!   bit count  u64     the filter's length in bits, at least 1
//!   hash count u32     bits set per fingerprint, at least 1
//!   bits       ceil(bit count / 8) bytes: bit i is bit i % 8 (least
//!              significant first) of byte i / 8; the unused high bits of
//!              the last byte are zero
//! exact set    (mode 0 only)
//!   shard bits u32     2^shard bits shards, at most 2^40
//!   per shard  u64 count, then count fingerprints (u128), ascending;
//!              shard i holds those whose top shard-bits bits are i
//! ```
//!
//! The filters hash with SipHash under the fixed seeds of [`SEEDS`], so the
//! seeds are not stored.
//!
//! # Version 1 (read only)
//!
//! Earlier builds wrote the store through bincode 1: the same fields in
//! serde's order, integers fixed-width, no header (the bytes start with the
//! stage count, a u64). The layout is fixed, so it is read here by hand and
//! a job directory written then still resumes:
//!
//! ```text
//! stages u64; each: bytes u64 + the bits as above; bit count u64;
//!   ones u64; two hashers of 11 u64 (the key pair k0, k1, then SipHash's state:
//!   the keys again, length, v0, v2, v1, v3, tail, ntail);
//!   hash count u64; capacity u64; added u64
//! rate f64
//! exact u8 (0 none, 1 some); if 1: shards u64; each: count u64, then
//!   count u128; shard bits u32; fingerprints u64
//! ```
//!
//! Any other version is refused, naming it ([`Refusal::Version`]).
//!
//! # The bits in and out of the filter
//!
//! `probabilistic-collections` gives no access to a filter's bits but
//! through its serde impls. [`FilterParts`] mirrors its fields in their
//! serde order, and postcard carries them between the two in memory only:
//! nothing postcard writes is stored.

use probabilistic_collections::bloom::BloomFilter;
use probabilistic_collections::SipHasherBuilder;
use serde::{Deserialize, Serialize};

use super::exact::ExactSet;
use super::{BloomStage, MemoryDupe, SEEDS};
use crate::fingerprint::Fingerprint;

/// The first bytes of a version 2 store (a version 1 store, starting with
/// its stage count as a u64, cannot start with these).
const MAGIC: [u8; 4] = *b"SPDS";
/// The version written.
pub(super) const VERSION: u32 = 2;
/// The bincode layout of earlier builds.
const VERSION_1: u32 = 1;

/// Why saved bytes cannot become a store.
#[derive(Debug, PartialEq)]
pub(super) enum Refusal {
    /// The header names a version this build does not read.
    Version(u32),
    /// The bytes are damaged or cut short, as said.
    Damaged(String),
}

/// `probabilistic-collections`' `BloomFilter` field by field, in serde
/// order: its `BitVec` (bytes, bit count, ones), its double hasher's two
/// builders, the hash count (its markers serialise as nothing).
#[derive(Serialize, Deserialize)]
struct FilterParts<'a> {
    /// The bits, as the format stores them.
    blocks: &'a [u8],
    /// The length in bits.
    len: usize,
    /// Bits set, which the bit vector keeps counted.
    one_count: usize,
    /// The hash functions' builders.
    hashers: [SipHasherBuilder; 2],
    /// Bits set per fingerprint.
    hasher_count: usize,
}

/// One stage as saved, its bits borrowed from the saved bytes.
struct SavedStage<'a> {
    /// As [`BloomStage::capacity`].
    capacity: usize,
    /// As [`BloomStage::added`].
    added: usize,
    /// The filter's length in bits.
    bit_count: usize,
    /// Bits set per fingerprint.
    hash_count: usize,
    /// The bits, `bit_count.div_ceil(8)` bytes.
    blocks: &'a [u8],
}

/// The store's bytes, version 2. Fails only if the Bloom filter's serde
/// layout is not the one [`FilterParts`] mirrors.
pub(super) fn encode(store: &MemoryDupe) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(store.size_bytes() + 64);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.push(u8::from(store.exact.is_none()));
    out.extend_from_slice(&store.rate.to_le_bytes());
    out.extend_from_slice(&(store.stages.len() as u32).to_le_bytes());
    for stage in &store.stages {
        let serde_bytes =
            postcard::to_allocvec(&stage.filter).map_err(|e| format!("Bloom filter: {e}"))?;
        let (parts, rest) = postcard::take_from_bytes::<FilterParts>(&serde_bytes)
            .map_err(|e| format!("Bloom filter layout: {e}"))?;
        if !rest.is_empty() || parts.blocks.len() != parts.len.div_ceil(8) {
            return Err("Bloom filter layout: not the one expected".into());
        }
        for n in [stage.capacity, stage.added, parts.len] {
            out.extend_from_slice(&(n as u64).to_le_bytes());
        }
        out.extend_from_slice(&(parts.hasher_count as u32).to_le_bytes());
        out.extend_from_slice(parts.blocks);
    }
    if let Some(exact) = &store.exact {
        let (shards, bits) = exact.shards();
        out.extend_from_slice(&bits.to_le_bytes());
        for shard in shards {
            out.extend_from_slice(&(shard.len() as u64).to_le_bytes());
            for fp in shard {
                out.extend_from_slice(&fp.to_le_bytes());
            }
        }
    }
    Ok(out)
}

/// A store from saved bytes of version 2 or 1.
pub(super) fn decode(bytes: &[u8]) -> Result<MemoryDupe, Refusal> {
    let mut r = Reader { bytes, at: 0 };
    if !bytes.starts_with(&MAGIC) {
        // No header: version 1 is the only layout without one.
        return decode_v1(r).map_err(|refusal| match refusal {
            Refusal::Damaged(reason) => damaged(format!(
                "neither version {VERSION} (no header) nor version {VERSION_1} ({reason})"
            )),
            other => other,
        });
    }
    r.at = MAGIC.len();
    match r.u32("version")? {
        VERSION => decode_v2(r),
        other => Err(Refusal::Version(other)),
    }
}

fn decode_v2(mut r: Reader<'_>) -> Result<MemoryDupe, Refusal> {
    let exact = match r.u8("mode")? {
        0 => true,
        1 => false,
        m => return Err(damaged(format!("mode {m} is neither 0 nor 1"))),
    };
    let rate = r.f64("rate")?;
    let count = r.u32("stage count")? as usize;
    let mut stages = Vec::new();
    for i in 0..count {
        let what = |field: &str| format!("stage {i} {field}");
        let capacity = r.usize(&what("capacity"))?;
        let added = r.usize(&what("added"))?;
        let bit_count = r.usize(&what("bit count"))?;
        let hash_count = r.u32(&what("hash count"))? as usize;
        let blocks = r.take(bit_count.div_ceil(8), &what("bits"))?;
        stages.push(SavedStage {
            capacity,
            added,
            bit_count,
            hash_count,
            blocks,
        });
    }
    let exact = if exact {
        let bits = r.u32("shard bits")?;
        // Each shard takes at least its count's 8 bytes.
        if bits > 40 || (r.left() as u64) / 8 < 1u64 << bits {
            return Err(damaged(format!("{bits} shard bits for {} bytes", r.left())));
        }
        let shards = (0..1usize << bits)
            .map(|i| r.fingerprints(&format!("shard {i}")))
            .collect::<Result<_, _>>()?;
        Some((shards, bits))
    } else {
        None
    };
    r.finish()?;
    build(rate, stages, exact)
}

fn decode_v1(mut r: Reader<'_>) -> Result<MemoryDupe, Refusal> {
    // A stage takes at least 28 u64: 6 of its own and 2 hashers of 11.
    let count = r.count("stage count", 28 * 8)?;
    let mut stages = Vec::new();
    for i in 0..count {
        let what = |field: &str| format!("stage {i} {field}");
        let blocks = r.count(&what("bytes"), 1)?;
        let blocks = r.take(blocks, &what("bits"))?;
        let bit_count = r.usize(&what("bit count"))?;
        let ones = r.usize(&what("ones"))?;
        for (k0, k1) in SEEDS {
            let seeds = (r.u64(&what("seed"))?, r.u64(&what("seed"))?);
            if seeds != (k0, k1) {
                return Err(damaged(format!("stage {i} has foreign hash seeds")));
            }
            // SipHash's state as it was built: not needed to rebuild it.
            r.take(9 * 8, &what("hasher state"))?;
        }
        let hash_count = r.usize(&what("hash count"))?;
        let capacity = r.usize(&what("capacity"))?;
        let added = r.usize(&what("added"))?;
        if ones != count_ones(blocks) {
            return Err(damaged(format!("stage {i} counts {ones} bits set")));
        }
        stages.push(SavedStage {
            capacity,
            added,
            bit_count,
            hash_count,
            blocks,
        });
    }
    let rate = r.f64("rate")?;
    let exact = match r.u8("exact set tag")? {
        0 => None,
        1 => {
            let shards = r.count("shard count", 8)?;
            let shards: Vec<_> = (0..shards)
                .map(|i| r.fingerprints(&format!("shard {i}")))
                .collect::<Result<_, _>>()?;
            let bits = r.u32("shard bits")?;
            let len = r.usize("fingerprint count")?;
            if len != shards.iter().map(Vec::len).sum::<usize>() {
                return Err(damaged(format!("{len} fingerprints recorded")));
            }
            Some((shards, bits))
        }
        t => return Err(damaged(format!("exact set tag {t}"))),
    };
    r.finish()?;
    build(rate, stages, exact)
}

/// The store from its saved parts, checked.
fn build(
    rate: f64,
    saved: Vec<SavedStage<'_>>,
    exact: Option<(Vec<Vec<Fingerprint>>, u32)>,
) -> Result<MemoryDupe, Refusal> {
    if !(rate > 0.0 && rate < 1.0) {
        return Err(damaged(format!("rate {rate} is not between 0 and 1")));
    }
    if saved.is_empty() {
        return Err(damaged("no Bloom filter stage".into()));
    }
    let mut stages = Vec::with_capacity(saved.len());
    for (i, s) in saved.into_iter().enumerate() {
        stages.push(stage(s).map_err(|e| damaged(format!("stage {i}: {e}")))?);
    }
    let exact = exact
        .map(|(shards, bits)| ExactSet::from_shards(shards, bits))
        .transpose()
        .map_err(|e| damaged(format!("exact set: {e}")))?;
    Ok(MemoryDupe::from_parts(stages, rate, exact))
}

/// One filter stage with the saved bits, through the filter's serde impls.
fn stage(s: SavedStage<'_>) -> Result<BloomStage, String> {
    if s.bit_count == 0 || s.hash_count == 0 {
        return Err(format!("{} bits, {} hashes", s.bit_count, s.hash_count));
    }
    let tail = s.bit_count % 8;
    if tail != 0 && s.blocks[s.blocks.len() - 1] >> tail != 0 {
        return Err("bits set past the filter's length".into());
    }
    let parts = FilterParts {
        blocks: s.blocks,
        len: s.bit_count,
        one_count: count_ones(s.blocks),
        hashers: SEEDS.map(|(k0, k1)| SipHasherBuilder::from_seed(k0, k1)),
        hasher_count: s.hash_count,
    };
    let serde_bytes = postcard::to_allocvec(&parts).map_err(|e| e.to_string())?;
    let filter: BloomFilter<Fingerprint> =
        postcard::from_bytes(&serde_bytes).map_err(|e| format!("Bloom filter: {e}"))?;
    if filter.len() != s.bit_count || filter.hasher_count() != s.hash_count {
        return Err("Bloom filter layout: not the one expected".into());
    }
    Ok(BloomStage {
        filter,
        capacity: s.capacity,
        added: s.added,
    })
}

fn count_ones(blocks: &[u8]) -> usize {
    blocks.iter().map(|b| b.count_ones() as usize).sum()
}

fn damaged(reason: String) -> Refusal {
    Refusal::Damaged(reason)
}

/// Reads saved bytes front to back, every length checked.
struct Reader<'a> {
    /// The saved bytes.
    bytes: &'a [u8],
    /// Bytes read so far.
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// The next `n` bytes, `what` naming them if they are not all there.
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Refusal> {
        if n > self.left() {
            return Err(damaged(format!(
                "cut short at byte {}: {what} needs {n} bytes, {} left",
                self.at,
                self.left()
            )));
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], Refusal> {
        Ok(self.take(N, what)?.try_into().expect("N bytes taken"))
    }

    fn u8(&mut self, what: &str) -> Result<u8, Refusal> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, Refusal> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, Refusal> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn f64(&mut self, what: &str) -> Result<f64, Refusal> {
        self.array(what).map(f64::from_le_bytes)
    }

    fn usize(&mut self, what: &str) -> Result<usize, Refusal> {
        let n = self.u64(what)?;
        usize::try_from(n).map_err(|_| damaged(format!("{what} {n} is out of range")))
    }

    /// A u64 count of things at least `unit` bytes each, checked against
    /// the bytes left.
    fn count(&mut self, what: &str, unit: usize) -> Result<usize, Refusal> {
        let n = self.usize(what)?;
        if n > self.left() / unit {
            return Err(damaged(format!(
                "{what}: {n}, more than the {} bytes left can hold",
                self.left()
            )));
        }
        Ok(n)
    }

    /// A u64 count, then that many fingerprints.
    fn fingerprints(&mut self, what: &str) -> Result<Vec<Fingerprint>, Refusal> {
        let n = self.count(what, 16)?;
        let bytes = self.take(n * 16, what)?;
        Ok(bytes
            .chunks_exact(16)
            .map(|b| u128::from_le_bytes(b.try_into().expect("16 bytes")))
            .collect())
    }

    fn finish(self) -> Result<(), Refusal> {
        match self.left() {
            0 => Ok(()),
            n => Err(damaged(format!("{n} bytes after the end"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::exact::spread as fp;
    use super::super::DupeMode;
    use super::*;
    use crate::error::ErrorKind;

    /// The dupe stores earlier releases saved (version 1), made by their
    /// code: `MemoryDupe::new(16, 0.01, Exact)` given `spread(0..200)`,
    /// and `MemoryDupe::new(64, 0.01, Probabilistic)` given
    /// `spread(0..100)`.
    const V1_EXACT: &[u8] = include_bytes!("../../tests/fixtures/dupe_store_v1_exact.bin");
    const V1_PROBABILISTIC: &[u8] =
        include_bytes!("../../tests/fixtures/dupe_store_v1_probabilistic.bin");

    fn store(capacity: usize, mode: DupeMode, n: u64) -> MemoryDupe {
        let mut b = MemoryDupe::new(capacity, 0.01, mode).unwrap();
        for i in 0..n {
            b.insert_new(fp(i));
        }
        b
    }

    /// Each stage's parameters and bits, as saved.
    fn stages(b: &MemoryDupe) -> Vec<(usize, usize, usize, usize, Vec<u8>)> {
        b.stages
            .iter()
            .map(|s| {
                let bytes = postcard::to_allocvec(&s.filter).unwrap();
                let parts = postcard::from_bytes::<FilterParts>(&bytes).unwrap();
                let bits = parts.blocks.to_vec();
                (s.capacity, s.added, parts.len, parts.hasher_count, bits)
            })
            .collect()
    }

    #[test]
    fn a_store_comes_back_bit_for_bit() {
        // Exact: 4 stages (16, 32, 64, 128) and a set of 2 shards.
        // Probabilistic: one stage past its capacity.
        for original in [
            store(16, DupeMode::Exact, 200),
            store(64, DupeMode::Probabilistic, 100),
        ] {
            let bytes = encode(&original).unwrap();
            assert_eq!(bytes[..8], [b'S', b'P', b'D', b'S', 2, 0, 0, 0]);
            let mut back = decode(&bytes).unwrap();
            assert_eq!(stages(&back), stages(&original));
            assert_eq!(back.rate, 0.01);
            assert_eq!(back.mode(), original.mode());
            assert_eq!(back.added(), original.added());
            assert_eq!(encode(&back).unwrap(), bytes);
            assert!((0..100).all(|i| !back.insert_new(fp(i))));
        }
        let mut back = decode(&encode(&store(16, DupeMode::Exact, 200)).unwrap()).unwrap();
        assert_eq!(back.stages.len(), 4);
        assert_eq!(back.exact.as_ref().unwrap().shards().1, 1);
        assert!(
            (200..400).all(|i| back.insert_new(fp(i))),
            "new ones are new"
        );
    }

    #[test]
    fn version_1_stores_of_earlier_releases_load_as_they_were() {
        // The same insertions today give the same filters: a version 1
        // store comes back exactly as the release that saved it had it.
        for (saved, original) in [
            (V1_EXACT, store(16, DupeMode::Exact, 200)),
            (V1_PROBABILISTIC, store(64, DupeMode::Probabilistic, 100)),
        ] {
            let back = decode(saved).unwrap();
            assert_eq!(stages(&back), stages(&original));
            assert_eq!(back.mode(), original.mode());
            assert_eq!(encode(&back).unwrap(), encode(&original).unwrap());
        }
        let mut exact = decode(V1_EXACT).unwrap();
        assert_eq!((exact.stages.len(), exact.added()), (4, 200));
        assert!((0..200).all(|i| !exact.insert_new(fp(i))));
        assert!((200..300).all(|i| exact.insert_new(fp(i))));
        let probabilistic = decode(V1_PROBABILISTIC).unwrap();
        assert_eq!(probabilistic.stages.len(), 1);
        assert!(probabilistic.over_capacity());
    }

    #[test]
    fn another_version_is_refused_by_number() {
        let mut bytes = encode(&store(16, DupeMode::Exact, 20)).unwrap();
        bytes[4..8].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(decode(&bytes).err(), Some(Refusal::Version(3)));
        let e = MemoryDupe::from_bytes(&bytes).err().unwrap();
        assert!(
            matches!(
                e.kind(),
                ErrorKind::DupeStoreVersion {
                    path: None,
                    found: 3,
                    expected: 2
                }
            ),
            "{e}"
        );
        assert_eq!(e.kind_name(), "dupe_store_version");
        assert_eq!(
            e.kind().to_string(),
            "saved dupe store is in format version 3; this build reads versions 1 to 2. \
             Resume the job with the release that wrote it, or start a fresh job directory"
        );
    }

    #[test]
    fn every_cut_is_a_clear_error_naming_where() {
        for saved in [
            encode(&store(16, DupeMode::Exact, 200)).unwrap(),
            V1_EXACT.to_vec(),
        ] {
            for len in 0..saved.len() {
                let Err(Refusal::Damaged(reason)) = decode(&saved[..len]) else {
                    panic!("{len} of {} bytes read", saved.len());
                };
                assert!(!reason.is_empty());
            }
        }
        let saved = encode(&store(16, DupeMode::Exact, 200)).unwrap();
        let e = MemoryDupe::from_bytes(&saved[..100]).err().unwrap();
        assert_eq!(e.kind_name(), "dupe_store_corrupt");
        assert_eq!(
            e.kind().to_string(),
            "saved dupe store cannot be read: cut short at byte 97: stage 1 bits needs 39 \
             bytes, 3 left. The job cannot resume from it; move the job directory aside to \
             start a fresh one"
        );
        let mut longer = saved.clone();
        longer.push(0);
        assert_eq!(
            decode(&longer).err(),
            Some(Refusal::Damaged("1 bytes after the end".into()))
        );
        let Err(Refusal::Damaged(reason)) = decode(b"not a store at all") else {
            panic!("garbage read");
        };
        assert!(
            reason.starts_with("neither version 2 (no header) nor version 1"),
            "{reason}"
        );
    }

    #[test]
    fn inconsistent_parts_are_refused() {
        let saved = encode(&store(16, DupeMode::Exact, 10)).unwrap();
        // Header 8, mode 1, rate 8, stage count 4; stage 0 from byte 21:
        // capacity 8, added 8, bit count 8, hash count 4, then its bits.
        let refusal = |at: usize, value: &[u8]| {
            let mut bad = saved.clone();
            bad[at..at + value.len()].copy_from_slice(value);
            match decode(&bad) {
                Err(Refusal::Damaged(reason)) => reason,
                other => panic!("{:?}", other.map(|b| b.added())),
            }
        };
        assert_eq!(refusal(8, &[7]), "mode 7 is neither 0 nor 1");
        assert_eq!(
            refusal(9, &2f64.to_le_bytes()),
            "rate 2 is not between 0 and 1"
        );
        // Capacity 16 at 1 % is 154 bits, 7 hashes, 20 bytes; the last
        // byte's top 6 bits lie past the filter.
        assert_eq!(
            refusal(45, &0u32.to_le_bytes()),
            "stage 0: 154 bits, 0 hashes"
        );
        assert_eq!(
            refusal(49 + 19, &[0xff]),
            "stage 0: bits set past the filter's length"
        );
        // No stage at all (a probabilistic store, so nothing follows).
        let mut none = encode(&store(16, DupeMode::Probabilistic, 10)).unwrap();
        none.truncate(21);
        none[17..21].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            decode(&none).err(),
            Some(Refusal::Damaged("no Bloom filter stage".into()))
        );
        // The exact set's fingerprints swapped: out of order.
        let mut b = store(16, DupeMode::Exact, 10);
        b.exact.as_mut().unwrap().swap_first_two();
        let Err(Refusal::Damaged(reason)) = decode(&encode(&b).unwrap()) else {
            panic!("an unsorted set read");
        };
        assert_eq!(reason, "exact set: shard 0 is not sorted");
    }
}
