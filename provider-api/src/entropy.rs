//! Entropy sources: fill the whole buffer or fail with a typed error.
//!
//! A short read passed off as success is the classic way a key ends up with fewer
//! random bits than it claims, so [`EntropySource::fill_entropy`] has no partial
//! outcome: on `Ok(())` every byte of the destination was written by the source.
//!
//! Requests are bounded by [`MAX_ENTROPY_REQUEST`], the same bound `rngd` enforces on
//! its IPC interface. [`EntropyRng`] splits larger requests from RustCrypto APIs into
//! bounded chunks.

use core::fmt;

/// The largest number of bytes one [`EntropySource::fill_entropy`] call may ask for.
///
/// 256 bytes is eight 32-byte keys: more than any single key derivation here needs,
/// small enough that one request never holds a device or an IPC message for long.
pub const MAX_ENTROPY_REQUEST: usize = 256;

/// Why an entropy request was not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntropyError {
    /// The request asked for zero bytes.
    EmptyRequest,
    /// The request asked for more than [`MAX_ENTROPY_REQUEST`] bytes.
    RequestTooLarge {
        /// The number of bytes asked for.
        requested: usize,
        /// The largest number that may be asked for.
        max: usize,
    },
    /// There is no entropy device, or it is not usable.
    Unavailable,
    /// The device did not answer within its deadline.
    Timeout,
    /// A continuous health test on the raw source failed; the source is closed.
    HealthTestFailed,
    /// Policy does not allow this caller to draw entropy.
    Denied,
    /// The request or its reply could not be carried (IPC failure, malformed reply).
    Transport,
}

impl EntropyError {
    /// Checks a request length against the bounds every source enforces:
    /// `1 <= len <= MAX_ENTROPY_REQUEST`.
    pub const fn check_request_len(len: usize) -> Result<(), Self> {
        if len == 0 {
            Err(Self::EmptyRequest)
        } else if len > MAX_ENTROPY_REQUEST {
            Err(Self::RequestTooLarge {
                requested: len,
                max: MAX_ENTROPY_REQUEST,
            })
        } else {
            Ok(())
        }
    }
}

impl fmt::Display for EntropyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyRequest => f.write_str("entropy request for zero bytes"),
            Self::RequestTooLarge { requested, max } => {
                write!(
                    f,
                    "entropy request for {requested} bytes exceeds the maximum of {max}"
                )
            }
            Self::Unavailable => f.write_str("no usable entropy device"),
            Self::Timeout => f.write_str("entropy device did not answer in time"),
            Self::HealthTestFailed => f.write_str("entropy health test failed; source closed"),
            Self::Denied => f.write_str("entropy request denied by policy"),
            Self::Transport => f.write_str("entropy request could not be carried"),
        }
    }
}

impl core::error::Error for EntropyError {}

/// A source of entropy suitable for key generation.
pub trait EntropySource {
    /// Fills all of `dest` with entropy, or fails without claiming success.
    ///
    /// # Errors
    /// [`EntropyError::EmptyRequest`] or [`EntropyError::RequestTooLarge`] when
    /// `dest.len()` is outside `1..=MAX_ENTROPY_REQUEST`; otherwise whatever stopped the
    /// source (see [`EntropyError`]). On error the contents of `dest` are unspecified
    /// and must not be used.
    fn fill_entropy(&mut self, dest: &mut [u8]) -> Result<(), EntropyError>;
}

impl<S: EntropySource + ?Sized> EntropySource for &mut S {
    fn fill_entropy(&mut self, dest: &mut [u8]) -> Result<(), EntropyError> {
        (**self).fill_entropy(dest)
    }
}

/// Adapts an [`EntropySource`] to the `rand_core` 0.10 RNG traits (`TryRng` +
/// `TryCryptoRng`), so RustCrypto APIs that want a crypto RNG draw from it.
///
/// Requests longer than [`MAX_ENTROPY_REQUEST`] are served in bounded chunks; an empty
/// request succeeds without touching the source. Errors from the source are returned,
/// never turned into panics: wrap in `rand_core::UnwrapErr` only where a panic is the
/// right answer.
#[derive(Debug)]
pub struct EntropyRng<S>(pub S);

impl<S: EntropySource> rand_core::TryRng for EntropyRng<S> {
    type Error = EntropyError;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut bytes = [0u8; 4];
        self.0.fill_entropy(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut bytes = [0u8; 8];
        self.0.fill_entropy(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        dst.chunks_mut(MAX_ENTROPY_REQUEST)
            .try_for_each(|chunk| self.0.fill_entropy(chunk))
    }
}

impl<S: EntropySource> rand_core::TryCryptoRng for EntropyRng<S> {}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::TryRng;

    /// Hands out a counter, and records the size of every request it served.
    struct Counting {
        next: u8,
        requests: [usize; 8],
        served: usize,
    }

    impl EntropySource for Counting {
        fn fill_entropy(&mut self, dest: &mut [u8]) -> Result<(), EntropyError> {
            EntropyError::check_request_len(dest.len())?;
            for byte in dest.iter_mut() {
                *byte = self.next;
                self.next = self.next.wrapping_add(1);
            }
            self.requests[self.served] = dest.len();
            self.served += 1;
            Ok(())
        }
    }

    struct Broken;

    impl EntropySource for Broken {
        fn fill_entropy(&mut self, _: &mut [u8]) -> Result<(), EntropyError> {
            Err(EntropyError::HealthTestFailed)
        }
    }

    #[test]
    fn request_bounds_are_typed_errors() {
        assert_eq!(
            EntropyError::check_request_len(0),
            Err(EntropyError::EmptyRequest)
        );
        assert_eq!(EntropyError::check_request_len(1), Ok(()));
        assert_eq!(EntropyError::check_request_len(MAX_ENTROPY_REQUEST), Ok(()));
        assert_eq!(
            EntropyError::check_request_len(MAX_ENTROPY_REQUEST + 1),
            Err(EntropyError::RequestTooLarge {
                requested: MAX_ENTROPY_REQUEST + 1,
                max: MAX_ENTROPY_REQUEST
            })
        );
    }

    #[test]
    fn rng_adapter_splits_large_requests_into_bounded_chunks() {
        let mut rng = EntropyRng(Counting {
            next: 0,
            requests: [0; 8],
            served: 0,
        });
        let mut buffer = [0u8; 2 * MAX_ENTROPY_REQUEST + 10];
        rng.try_fill_bytes(&mut buffer).unwrap();
        assert_eq!(
            rng.0.requests[..rng.0.served],
            [MAX_ENTROPY_REQUEST, MAX_ENTROPY_REQUEST, 10]
        );
        assert!(
            buffer.iter().enumerate().all(|(i, &b)| b == i as u8),
            "every byte from the source"
        );
        rng.try_fill_bytes(&mut []).unwrap();
        assert_eq!(
            rng.0.served, 3,
            "an empty request does not reach the source"
        );
        assert_eq!(rng.try_next_u32().unwrap().to_le_bytes().len(), 4);
    }

    #[test]
    fn rng_adapter_returns_source_errors() {
        let mut rng = EntropyRng(Broken);
        assert_eq!(
            rng.try_fill_bytes(&mut [0; 32]),
            Err(EntropyError::HealthTestFailed)
        );
        assert_eq!(rng.try_next_u64(), Err(EntropyError::HealthTestFailed));
    }
}
