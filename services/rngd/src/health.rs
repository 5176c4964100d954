//! Continuous health tests on the raw device output: NIST SP 800-90B section 4.4.
//!
//! Each byte is one sample. The cutoffs follow from a false-positive rate of
//! α = 2^-20 per sample and an assumed min-entropy of [`ASSUMED_ENTROPY_BITS`] bits
//! per sample:
//!
//! - repetition count (4.4.1): `C = 1 + ceil(20 / H)` = 6 identical samples in a row;
//! - adaptive proportion (4.4.2), window W = 512: `C = 1 + CRITBINOM(512, 2^-H,
//!   1 - α)` = 62 occurrences of the window's first value (computed exactly; it agrees
//!   with the standard's Table 2, e.g. 13 at H = 8, 311 at H = 1).
//!
//! The tests detect a failing source (stuck, heavily biased); they are not an entropy
//! assessment. H = 4 is deliberately below what QEMU's virtio-rng (backed by the host's
//! getrandom) delivers, so a healthy source practically never trips them, while a
//! stuck one trips the repetition count after 6 samples.

use core::fmt;

/// The min-entropy per byte the cutoffs assume.
pub const ASSUMED_ENTROPY_BITS: u32 = 4;
/// Repetition count cutoff: this many identical samples in a row fail.
pub const REPETITION_CUTOFF: u32 = 6;
/// Adaptive proportion window.
pub const PROPORTION_WINDOW: u32 = 512;
/// Adaptive proportion cutoff: this many occurrences of the window's first sample fail.
pub const PROPORTION_CUTOFF: u32 = 62;

/// Which test tripped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthFailure {
    /// Too many identical samples in a row.
    RepetitionCount,
    /// One value too frequent within a window.
    AdaptiveProportion,
}

impl HealthFailure {
    /// The name used in markers and audit records.
    pub const fn name(self) -> &'static str {
        match self {
            Self::RepetitionCount => "repetition-count",
            Self::AdaptiveProportion => "adaptive-proportion",
        }
    }

    /// The audit reason code.
    pub const fn code(self) -> u16 {
        match self {
            Self::RepetitionCount => 1,
            Self::AdaptiveProportion => 2,
        }
    }
}

impl fmt::Display for HealthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Both tests, run over every sample, in order.
#[derive(Clone, Debug, Default)]
pub struct HealthTests {
    repeated: Option<(u8, u32)>,
    window: Option<(u8, u32, u32)>,
}

impl HealthTests {
    /// Fresh tests.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs one sample through both tests.
    ///
    /// # Errors
    /// The test that tripped. A tripped source must not be used again.
    pub fn feed(&mut self, sample: u8) -> Result<(), HealthFailure> {
        let run = match self.repeated {
            Some((value, run)) if value == sample => run + 1,
            _ => 1,
        };
        self.repeated = Some((sample, run));
        if run >= REPETITION_CUTOFF {
            return Err(HealthFailure::RepetitionCount);
        }
        self.window = match self.window {
            None => Some((sample, 1, 1)),
            Some((first, count, seen)) => {
                let count = count + u32::from(sample == first);
                if count >= PROPORTION_CUTOFF {
                    return Err(HealthFailure::AdaptiveProportion);
                }
                (seen + 1 < PROPORTION_WINDOW).then_some((first, count, seen + 1))
            }
        };
        Ok(())
    }

    /// Runs every sample of `samples` through both tests.
    ///
    /// # Errors
    /// The first test that tripped.
    pub fn feed_all(&mut self, samples: &[u8]) -> Result<(), HealthFailure> {
        samples.iter().try_for_each(|&sample| self.feed(sample))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed pseudo-random sequence (xorshift), standing in for a healthy source.
    fn healthy(len: usize) -> alloc::vec::Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect()
    }

    extern crate alloc;

    #[test]
    fn a_healthy_source_passes() {
        assert_eq!(HealthTests::new().feed_all(&healthy(100_000)), Ok(()));
    }

    #[test]
    fn a_stuck_source_trips_the_repetition_count_at_the_cutoff() {
        let mut tests = HealthTests::new();
        for _ in 1..REPETITION_CUTOFF {
            assert_eq!(tests.feed(0), Ok(()));
        }
        assert_eq!(tests.feed(0), Err(HealthFailure::RepetitionCount));
    }

    #[test]
    fn a_biased_source_trips_the_adaptive_proportion() {
        // 0x55 every other sample: never five in a row, but 256 times per window.
        let biased: alloc::vec::Vec<u8> = healthy(1024)
            .into_iter()
            .enumerate()
            .map(|(i, b)| if i % 2 == 0 { 0x55 } else { b | 1 })
            .collect();
        assert_eq!(
            HealthTests::new().feed_all(&biased),
            Err(HealthFailure::AdaptiveProportion)
        );
    }

    #[test]
    fn the_proportion_window_restarts() {
        // The first value recurs 61 times (just under the cutoff) in each window.
        let mut tests = HealthTests::new();
        for _window in 0..3 {
            let mut noise = healthy(PROPORTION_WINDOW as usize)
                .into_iter()
                .map(|b| b | 0x80);
            for i in 0..PROPORTION_WINDOW {
                let sample = if i % 8 == 0 && i / 8 < PROPORTION_CUTOFF - 1 {
                    0x01
                } else {
                    noise.next().unwrap()
                };
                assert_eq!(tests.feed(sample), Ok(()), "sample {i}");
            }
        }
    }
}
