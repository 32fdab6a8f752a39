//! The shared dupe filter: a Bloom filter in a plain Redis bitmap.
//!
//! Why a Bloom filter rather than a set of 128-bit fingerprints: at the
//! default 0.1 % false-positive rate it costs 14.4 bits (1.8 bytes) per
//! URL, where a Redis set costs about 80 bytes per member (the 16-byte
//! string, its header and the hash-table entry): 10 million URLs take
//! 18 MB instead of about 800 MB. A false positive skips a new URL at that
//! rate; a seen URL is never fetched twice.
//!
//! Test-and-add is atomic (one script per batch). A new fingerprint is
//! *reserved* for the worker that asked, and its bits are set only when
//! that worker's push queues the request (in the same script). So a worker
//! that dies between the check and the push loses nothing: the reaper
//! drops its reservations, and its parent request, leased and not
//! acknowledged, is fetched again and finds its links new.

use std::fmt::Write as _;

use futures_util::FutureExt;
use redis::AsyncCommands;

use super::{invoke, Shared};
use crate::dedupe::DupeBackend;
use crate::error::{Error, ErrorKind, Stage};
use crate::fingerprint::Fingerprint;
use crate::queue::BackendFuture;

/// The Bloom filter's shape, the same for every worker of a crawl.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BloomShape {
    /// Bits.
    pub m: u64,
    /// Bits per fingerprint.
    pub k: u32,
}

impl BloomShape {
    /// The shape for `capacity` fingerprints at `rate` false positives.
    pub(crate) fn sized(capacity: usize, rate: f64) -> Self {
        let ln2 = std::f64::consts::LN_2;
        let m = (-(capacity as f64) * rate.ln() / (ln2 * ln2))
            .ceil()
            .max(64.0);
        // A Redis string holds at most 2^32 bits.
        let m = m.min(4_294_967_295.0) as u64;
        let k = ((m as f64 / capacity as f64) * ln2)
            .round()
            .clamp(1.0, 32.0) as u32;
        BloomShape { m, k }
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

    /// Agrees on the crawl's shape: the first worker's is kept, later ones
    /// adopt it (so workers sized differently still share one filter).
    pub(crate) async fn agree(self, shared: &Shared) -> Result<BloomShape, Error> {
        let key = format!("{}bloom:shape", shared.prefix);
        let (m, k): (u64, u32) = shared
            .retry("bloom shape", |mut con| {
                let key = key.clone();
                async move {
                    let _: bool = con.hset_nx(&key, "m", self.m).await?;
                    let _: bool = con.hset_nx(&key, "k", self.k).await?;
                    con.hmget(&key, &["m", "k"]).await
                }
            })
            .await?;
        Ok(BloomShape { m, k })
    }
}

/// The Redis dupe filter (see the module docs).
pub struct RedisDupe {
    shared: Shared,
    shape: BloomShape,
}

impl RedisDupe {
    pub(crate) fn new(shared: Shared, shape: BloomShape) -> Self {
        RedisDupe { shared, shape }
    }
}

impl DupeBackend for RedisDupe {
    fn check_and_add(&mut self, fingerprints: Vec<Fingerprint>) -> BackendFuture<Vec<bool>> {
        let mut args = self.shared.args();
        for fp in &fingerprints {
            args.push(format!("{fp:032x}"));
            args.push(self.shape.bits(*fp));
        }
        let shared = self.shared.clone();
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
            Ok(fresh.into_iter().map(|n| n == 1).collect())
        }
        .boxed_local()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_follows_the_bloom_formulas() {
        let s = BloomShape::sized(1 << 20, 0.001);
        // 14.38 bits per fingerprint, 10 hashes.
        assert_eq!(s.m, 15_075_994);
        assert_eq!(s.k, 10);
        let bits = s.bits(0x1234_5678_9abc_def0_0fed_cba9_8765_4321);
        let positions: Vec<u64> = bits.split(',').map(|b| b.parse().unwrap()).collect();
        assert_eq!(positions.len(), 10);
        assert!(positions.iter().all(|&p| p < s.m));
        assert_eq!(bits, s.bits(0x1234_5678_9abc_def0_0fed_cba9_8765_4321));
    }
}
