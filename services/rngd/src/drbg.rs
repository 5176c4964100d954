//! The generator rngd serves from: ChaCha20 (the RustCrypto `chacha20` crate's
//! `ChaCha20Rng`), seeded from health-tested device entropy, with fast key erasure and
//! a reseed schedule. See `docs/decisions/0008-rngd-drbg.md`.
//!
//! - **Seed**: 32 bytes from the device, every one through the health tests.
//! - **Fast key erasure**: after each request, 32 more bytes of keystream become the
//!   next key and the old state is dropped (zeroized), so the state a later compromise
//!   reveals cannot reproduce any output already served (backtracking resistance).
//! - **Reseed**: after [`Schedule::reseed_bytes`] bytes served or
//!   [`Schedule::reseed_ms`] since the last (re)seed, whichever comes first, 32 fresh
//!   tested device bytes are XORed into 32 bytes of the generator's own output to make
//!   the next key: if either is uniform and independent of the other, so is the key, so
//!   a reseed never weakens the state and recovers it after a compromise (prediction
//!   resistance from the next reseed on). A reseed that cannot be had closes rngd.

use chacha20::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use zeroize::Zeroizing;

/// When the generator takes fresh device entropy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Bytes served between reseeds, at most.
    pub reseed_bytes: usize,
    /// Milliseconds between reseeds, at most.
    pub reseed_ms: u64,
}

/// rngd's schedule: 64 KiB or one minute. A device boots with a few hundred requests of
/// 32 bytes (about 10 KiB); a busy one reseeds every 2,048 such requests.
pub const SCHEDULE: Schedule = Schedule {
    reseed_bytes: 64 * 1024,
    reseed_ms: 60_000,
};

/// Bytes of device entropy a seed or reseed takes.
pub const SEED_LEN: usize = 32;

/// The generator and its reseed accounting.
pub struct Drbg {
    rng: ChaCha20Rng,
    schedule: Schedule,
    served: usize,
    seeded_ms: u64,
    reseeds: u64,
}

impl Drbg {
    /// A generator seeded with `seed` (tested device entropy) at `now_ms`.
    pub fn new(seed: &Zeroizing<[u8; SEED_LEN]>, schedule: Schedule, now_ms: u64) -> Self {
        Self {
            rng: ChaCha20Rng::from_seed(**seed),
            schedule,
            served: 0,
            seeded_ms: now_ms,
            reseeds: 0,
        }
    }

    /// Whether the schedule calls for fresh device entropy before serving more.
    pub fn due(&self, now_ms: u64) -> bool {
        self.served >= self.schedule.reseed_bytes
            || now_ms.saturating_sub(self.seeded_ms) >= self.schedule.reseed_ms
    }

    /// Mixes `fresh` (tested device entropy) into the key.
    pub fn reseed(&mut self, fresh: &Zeroizing<[u8; SEED_LEN]>, now_ms: u64) {
        let mut key = Zeroizing::new([0u8; SEED_LEN]);
        self.rng.fill_bytes(&mut key[..]);
        for (k, f) in key.iter_mut().zip(fresh.iter()) {
            *k ^= f;
        }
        self.rng = ChaCha20Rng::from_seed(*key);
        self.served = 0;
        self.seeded_ms = now_ms;
        self.reseeds += 1;
    }

    /// Fills `dest`, then erases the key that made it.
    pub fn fill(&mut self, dest: &mut [u8]) {
        self.rng.fill_bytes(dest);
        self.served = self.served.saturating_add(dest.len());
        let mut next = Zeroizing::new([0u8; SEED_LEN]);
        self.rng.fill_bytes(&mut next[..]);
        self.rng = ChaCha20Rng::from_seed(*next);
    }

    /// Bytes served since the last (re)seed.
    pub fn served(&self) -> usize {
        self.served
    }

    /// Reseeds so far.
    pub fn reseeds(&self) -> u64 {
        self.reseeds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: Schedule = Schedule {
        reseed_bytes: 100,
        reseed_ms: 1_000,
    };

    fn seed(fill: u8) -> Zeroizing<[u8; SEED_LEN]> {
        Zeroizing::new([fill; SEED_LEN])
    }

    #[test]
    fn the_output_is_chacha20_keyed_by_the_seed_then_by_erased_keys() {
        let mut drbg = Drbg::new(&seed(1), SCHEDULE, 0);
        let mut first = [0u8; 16];
        drbg.fill(&mut first);
        // The first output is ChaCha20's keystream under the seed, from block 0.
        let mut reference = ChaCha20Rng::from_seed([1; 32]);
        let mut expected = [0u8; 16];
        reference.fill_bytes(&mut expected);
        assert_eq!(first, expected);
        // The next output is not the reference's continuation: the key was replaced.
        let mut second = [0u8; 16];
        drbg.fill(&mut second);
        let mut continuation = [0u8; 16];
        reference.fill_bytes(&mut continuation);
        assert_ne!(second, continuation);
        assert_ne!(second, first);
    }

    #[test]
    fn the_schedule_calls_for_a_reseed_by_bytes_or_by_time() {
        let mut drbg = Drbg::new(&seed(2), SCHEDULE, 0);
        assert!(!drbg.due(999));
        assert!(drbg.due(1_000), "by time");
        drbg.fill(&mut [0u8; 99]);
        assert!(!drbg.due(10));
        drbg.fill(&mut [0u8; 1]);
        assert!(drbg.due(10), "by bytes");
        drbg.reseed(&seed(3), 10);
        assert_eq!((drbg.served(), drbg.reseeds()), (0, 1));
        assert!(!drbg.due(1_009));
        assert!(drbg.due(1_010));
    }

    #[test]
    fn the_same_seed_gives_the_same_stream_and_a_reseed_changes_it() {
        let run = |reseed: Option<u8>| {
            let mut drbg = Drbg::new(&seed(4), SCHEDULE, 0);
            let mut out = [0u8; 64];
            drbg.fill(&mut out[..32]);
            if let Some(fill) = reseed {
                drbg.reseed(&seed(fill), 0);
            }
            drbg.fill(&mut out[32..]);
            out
        };
        assert_eq!(run(None), run(None));
        assert_ne!(run(None)[32..], run(Some(5))[32..]);
        assert_ne!(run(Some(5))[32..], run(Some(6))[32..]);
        assert_eq!(run(Some(5))[..32], run(None)[..32]);
    }
}
