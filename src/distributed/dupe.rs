//! The shared dupe filter: a Bloom filter in a Redis bitmap, in front of an
//! exact set of fingerprints in small integer sets.
//!
//! The bitmap answers "not seen" for every new URL (always right, `k`
//! `GETBIT`s); its "maybe seen" is confirmed against the exact set before
//! a request is dropped, so past the capacity the bitmap was sized for
//! its false positives cost a lookup, never a page (each one is counted
//! in `dupefilter/bloom_false_positives`).
//!
//! **Layout.** The exact set is cut into `2^s` shards by the
//! fingerprint's top `s` bits (`s`, like the bitmap's `m` and `k`, is the
//! first worker's and stored in `bloom:shape`): shard `x` is the Redis set
//! `seen:<x in hex>`, whose members are the fingerprint's next 64 bits
//! written as a signed decimal integer. Redis keeps a set of integers of at
//! most `set-max-intset-entries` (default 512) members as an `intset`, a
//! sorted array of 8-byte integers, so `s` is chosen for 64 to 128
//! fingerprints per shard at the crawl's Bloom capacity
//! ([`BloomShape::sized`]): the shards stay compact up to about three times
//! that capacity; beyond it they turn one by one into hash tables, still
//! exact but about 72 bytes per URL.
//!
//! **Cost.** Measured with Redis 7.0 (`exact_set_memory_per_url` in the
//! tests, run with `--ignored`): 1,000,000 fingerprints through the check
//! and push scripts, with the default sizing (1,048,576 URLs at 0.001: a
//! 1.88 MB bitmap, 8,192 shards), raise `used_memory` by 12.35 bytes per
//! URL. By `MEMORY USAGE`, the bitmap takes 2.10 (in a 2 MB allocation) and
//! the exact set 9.45: 8 for the integer, the rest the shards' keys and
//! allocation slack. Of the layouts weighed (`used_memory` before and
//! after 1,000,000 `SADD`s or `HSET`s sent with `redis-cli --pipe`, the
//! exact set alone), these intsets took 9.6 bytes per URL, one Redis set
//! of the 32-character hex fingerprints 88, and a hash per shard holding
//! the rest of the fingerprint as a binary field (listpack-encoded) 21.5.
//!
//! **What "exact" means here.** The set holds the top `64 + s` bits of a
//! fingerprint, not all 128 (77 bits with the default sizing; 64 for a
//! capacity of at most 128). A new URL is dropped only if those bits equal
//! a seen URL's *and* its bits in the bitmap are all set. Among `n` URLs the
//! first happens with a probability below `n² / 2^(65 + s)` (3·10⁻¹² for a
//! million URLs with the default sizing), and the second must happen too.
//! Keeping all 128 bits (the hash above) would more than double the memory
//! against a risk of that order.
//!
//! Test-and-add is atomic (one script per batch). A new fingerprint is
//! *reserved* for the worker that asked, and its bits and exact-set entry
//! are written only when that worker's push queues the request (in the
//! same script). So a worker that dies between the check and the push
//! loses nothing: the reaper drops its reservations, and its parent
//! request, leased and not acknowledged, is fetched again and finds its
//! links new.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::FutureExt;

use super::{invoke, Shared};
use crate::dedupe::{DupeBackend, DupeReport};
use crate::error::{Error, ErrorKind, Stage};
use crate::fingerprint::Fingerprint;
use crate::queue::BackendFuture;

/// Fingerprints per exact-set shard, on average, at the Bloom capacity: a
/// quarter of Redis's default `set-max-intset-entries`, so that shards stay
/// intsets well past the capacity (and their count, whatever the luck of
/// the draw).
const PER_SHARD: usize = 128;

/// The most shard bits (4 billion shards).
const MAX_SHARD_BITS: u32 = 32;

/// The fewest bits of a bitmap.
const MIN_BITS: u64 = 64;

/// The most bits of a bitmap: a Redis string holds 2^32 bits.
const MAX_BITS: u64 = 4_294_967_295;

/// The most hashes per fingerprint.
const MAX_HASHES: u32 = 32;

/// The dupe filter's shape, the same for every worker of a crawl.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BloomShape {
    /// Bits.
    pub m: u64,
    /// Bits per fingerprint.
    pub k: u32,
    /// Top bits of a fingerprint that choose its exact-set shard.
    pub s: u32,
}

impl BloomShape {
    /// The shape for `capacity` fingerprints at `rate` false positives.
    pub(crate) fn sized(capacity: usize, rate: f64) -> Self {
        let ln2 = std::f64::consts::LN_2;
        let m = (-(capacity as f64) * rate.ln() / (ln2 * ln2))
            .ceil()
            .max(MIN_BITS as f64);
        let m = m.min(MAX_BITS as f64) as u64;
        let k = ((m as f64 / capacity as f64) * ln2)
            .round()
            .clamp(1.0, f64::from(MAX_HASHES)) as u32;
        let shards = capacity.div_ceil(PER_SHARD).max(1);
        let s = shards
            .next_power_of_two()
            .trailing_zeros()
            .min(MAX_SHARD_BITS);
        BloomShape { m, k, s }
    }

    /// The bit positions of `fp`, comma-separated (double hashing on the
    /// fingerprint's halves).
    pub(crate) fn bits(&self, fp: Fingerprint) -> String {
        let h1 = fp as u64;
        let h2 = ((fp >> 64) as u64) | 1;
        let mut out = String::with_capacity(self.k as usize * 11);
        for i in 0..u64::from(self.k) {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{}", h1.wrapping_add(i.wrapping_mul(h2)) % self.m);
        }
        out
    }

    /// `fp`'s shard of the exact set (its top `s` bits, in hex: the key is
    /// `seen:<shard>`) and its member there (the next 64 bits, as a signed
    /// decimal, so that Redis stores it as an integer).
    pub(crate) fn exact(&self, fp: Fingerprint) -> (String, String) {
        let shard = match self.s {
            0 => 0,
            s => fp >> (128 - s),
        };
        let member = ((fp << self.s) >> 64) as u64 as i64;
        (format!("{shard:x}"), member.to_string())
    }

    /// The scripts' four arguments for `fp`: its hex (naming its
    /// reservation), its bit positions, its shard and its member.
    pub(crate) fn args(&self, fp: Fingerprint) -> [String; 4] {
        let (shard, member) = self.exact(fp);
        [format!("{fp:032x}"), self.bits(fp), shard, member]
    }

    /// Agrees on the crawl's shape: the first worker's is kept, later ones
    /// adopt it (so workers sized differently still share one filter). A
    /// crawl whose shape has no shard bits was begun by a version without
    /// the exact set, whose filter holds fingerprints the set lacks: it is
    /// refused rather than crawled again.
    pub(crate) async fn agree(self, shared: &Shared) -> Result<BloomShape, Error> {
        let mut args = shared.args();
        args.extend([self.m.to_string(), self.k.to_string(), self.s.to_string()]);
        let agreed: Vec<String> = shared
            .retry("bloom shape", |con| {
                invoke(&shared.scripts.shape, &args, con)
            })
            .await?;
        let key = format!("{}bloom:shape", shared.prefix);
        match &agreed[..] {
            [m, k, s] => BloomShape::validated(&key, m, k, s),
            _ => Err(Error::new(
                Stage::Setup,
                ErrorKind::Backend(format!(
                    "the crawl's dupe filter in Redis ({}bloom) was made by an earlier version \
                     of spinneret, without the exact set: finish the crawl with that version, \
                     or clear it (distributed::clear) to start afresh",
                    shared.prefix
                )),
            )),
        }
    }

    /// The shape stored in `key` as `m`, `k` and `s`, if each is within
    /// the bounds [`sized`](Self::sized) keeps to: `m` from 64 bits to the
    /// 2^32 - 1 a Redis string holds, `k` from 1 to 32 hashes, `s` at most
    /// 32 shard bits. Anything else (written by hand, or damaged) is a
    /// `Config` error naming the key and the value: `m = 0` would divide
    /// by zero, `k = 0` take every URL for seen, a huge `k` allocate
    /// gigabytes for the bit positions.
    pub(crate) fn validated(key: &str, m: &str, k: &str, s: &str) -> Result<BloomShape, Error> {
        let field = |name: &str, value: &str, range: std::ops::RangeInclusive<u64>| {
            value
                .parse::<u64>()
                .ok()
                .filter(|v| range.contains(v))
                .ok_or_else(|| {
                    Error::new(
                        Stage::Setup,
                        ErrorKind::Config(format!(
                            "the crawl's dupe filter shape in Redis ({key}) has {name} = {value:?}, \
                             outside {}..={}: clear the crawl (distributed::clear) or set the \
                             field to a value in range",
                            range.start(),
                            range.end()
                        )),
                    )
                })
        };
        let m = field("m", m, MIN_BITS..=MAX_BITS)?;
        let k = field("k", k, 1..=u64::from(MAX_HASHES))?;
        let s = field("s", s, 0..=u64::from(MAX_SHARD_BITS))?;
        // In range, so they fit.
        Ok(BloomShape {
            m,
            k: k as u32,
            s: s as u32,
        })
    }
}

/// The Redis dupe filter (see the module docs).
pub struct RedisDupe {
    shared: Shared,
    shape: BloomShape,
    /// New fingerprints the bitmap took for seen, since the last report
    /// (added to by the checks' futures).
    false_positives: Arc<AtomicU64>,
}

impl RedisDupe {
    pub(crate) fn new(shared: Shared, shape: BloomShape) -> Self {
        RedisDupe {
            shared,
            shape,
            false_positives: Arc::default(),
        }
    }
}

impl DupeBackend for RedisDupe {
    fn check_and_add(&mut self, fingerprints: Vec<Fingerprint>) -> BackendFuture<Vec<bool>> {
        let mut args = self.shared.args();
        for fp in &fingerprints {
            args.extend(self.shape.args(*fp));
        }
        let (shared, false_positives) = (self.shared.clone(), self.false_positives.clone());
        async move {
            let fresh: Vec<i64> = shared
                .retry("dupe check", |con| {
                    invoke(&shared.scripts.check, &args, con)
                })
                .await?;
            if fresh.len() != fingerprints.len() {
                return Err(Error::new(
                    Stage::Schedule,
                    ErrorKind::Backend(format!(
                        "Redis answered {} of {} fingerprints",
                        fresh.len(),
                        fingerprints.len()
                    )),
                ));
            }
            let confirmed_misses = fresh.iter().filter(|&&n| n == 2).count() as u64;
            false_positives.fetch_add(confirmed_misses, Ordering::Relaxed);
            Ok(fresh.into_iter().map(|n| n >= 1).collect())
        }
        .boxed_local()
    }

    fn take_report(&mut self) -> DupeReport {
        DupeReport {
            bloom_false_positives: self.false_positives.swap(0, Ordering::Relaxed),
            ..DupeReport::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_follows_the_bloom_formulas() {
        let s = BloomShape::sized(1 << 20, 0.001);
        // 14.38 bits per fingerprint, 10 hashes, 8,192 shards.
        assert_eq!(s.m, 15_075_994);
        assert_eq!(s.k, 10);
        assert_eq!(s.s, 13);
        let bits = s.bits(0x1234_5678_9abc_def0_0fed_cba9_8765_4321);
        let positions: Vec<u64> = bits.split(',').map(|b| b.parse().unwrap()).collect();
        assert_eq!(positions.len(), 10);
        assert!(positions.iter().all(|&p| p < s.m));
        assert_eq!(bits, s.bits(0x1234_5678_9abc_def0_0fed_cba9_8765_4321));
    }

    #[test]
    fn shards_hold_about_128_at_the_capacity() {
        let bits = |capacity| BloomShape::sized(capacity, 0.01).s;
        assert_eq!(bits(1), 0);
        assert_eq!(bits(128), 0);
        assert_eq!(bits(129), 1);
        assert_eq!(bits(1000), 3);
        assert_eq!(bits(usize::MAX), MAX_SHARD_BITS);
    }

    #[test]
    fn the_exact_entry_is_the_top_bits_then_the_next_64() {
        let fp: Fingerprint = 0xabcd_ef01_2345_6789_fedc_ba98_7654_3210;
        let shape = |s| BloomShape { m: 64, k: 1, s };
        assert_eq!(
            shape(0).exact(fp),
            ("0".into(), (0xabcd_ef01_2345_6789_u64 as i64).to_string())
        );
        // Twelve bits choose the shard; the member starts after them.
        assert_eq!(
            shape(12).exact(fp),
            ("abc".into(), (0xdef0_1234_5678_9fed_u64 as i64).to_string())
        );
        assert_eq!(shape(13).exact(fp).0, format!("{:x}", 0xabcd_u32 >> 3));
        let (_, top) = shape(0).exact(u128::MAX << 64);
        assert_eq!(top, "-1");
        let (_, min) = shape(1).exact(1 << 126);
        assert_eq!(min, i64::MIN.to_string());
    }
}
