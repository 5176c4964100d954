//! Fixed-size secret byte strings that zeroize on drop and never print.
//!
//! Seeds, raw entropy destined for keys, and AEAD keys travel in [`SecretBytes`] so that
//! every copy the program makes is wiped when it goes out of scope. Fill one in place
//! (`SecretBytes::zeroed` then [`SecretBytes::expose_secret_mut`]) to avoid leaving a
//! stray copy on the stack.
//!
//! **The bytes live on the heap.** Moving a value in Rust copies its bytes and leaves
//! the old ones where they were, unwiped. A secret held across an `.await` lives in the
//! task's heap-allocated future, and moving it out later (into an `Rc`, into the next
//! handshake step) would leave a copy in that future's memory. So a `SecretBytes` owns a
//! boxed array: moving it moves a pointer, and its one copy is wiped on drop. The key
//! and cipher wrappers of this crate box the backends' types for the same reason.
//! `selftest/host-runner/tests/freed_memory.rs` checks every freed block.

use alloc::boxed::Box;
use core::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// `N` secret bytes on the heap: zeroized on drop, redacted in `Debug`, never `Copy`.
///
/// Reading the bytes takes an explicit call to [`SecretBytes::expose_secret`], so every
/// place that handles the raw secret is easy to find in review.
pub struct SecretBytes<const N: usize>(Box<[u8; N]>);

/// A 32-byte seed: the input of Ed25519 key derivation and X25519 secret keys.
pub type Seed = SecretBytes<32>;

impl<const N: usize> SecretBytes<N> {
    /// Moves `bytes` to the heap. The caller's own copy, if it has one, is its to wipe.
    pub fn new(bytes: [u8; N]) -> Self {
        Self(Box::new(bytes))
    }

    /// All zero bytes, ready to be filled in place through
    /// [`SecretBytes::expose_secret_mut`].
    pub fn zeroed() -> Self {
        Self(Box::new([0; N]))
    }

    /// Builds the secret by letting `fill` write into it in place.
    pub fn from_fill<E>(fill: impl FnOnce(&mut [u8; N]) -> Result<(), E>) -> Result<Self, E> {
        let mut secret = Self::zeroed();
        fill(&mut secret.0)?;
        Ok(secret)
    }

    /// The secret bytes. Callers must not copy them into anything that outlives the
    /// borrow without zeroizing it themselves.
    pub fn expose_secret(&self) -> &[u8; N] {
        &self.0
    }

    /// The secret bytes, mutably, for filling in place.
    pub fn expose_secret_mut(&mut self) -> &mut [u8; N] {
        &mut self.0
    }

    /// Whether every byte is zero, decided in constant time.
    pub fn is_all_zero(&self) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.0.ct_eq(&[0u8; N]))
    }
}

impl<const N: usize> Drop for SecretBytes<N> {
    fn drop(&mut self) {
        // Wipes the heap array before the box frees it.
        self.0.zeroize();
    }
}

impl<const N: usize> ZeroizeOnDrop for SecretBytes<N> {}

impl<const N: usize> fmt::Debug for SecretBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes<{N}>(REDACTED)")
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn debug_is_redacted() {
        let secret = SecretBytes::new([0xab; 16]);
        let printed = format!("{secret:?}");
        assert_eq!(printed, "SecretBytes<16>(REDACTED)");
    }

    #[test]
    fn all_zero_detection() {
        assert!(SecretBytes::<32>::zeroed().is_all_zero());
        let mut one = SecretBytes::<32>::zeroed();
        one.expose_secret_mut()[31] = 1;
        assert!(!one.is_all_zero());
    }

    #[test]
    fn from_fill_propagates_the_error() {
        let filled = SecretBytes::<4>::from_fill(|b| {
            b.copy_from_slice(&[1, 2, 3, 4]);
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(filled.expose_secret(), &[1, 2, 3, 4]);
        assert!(SecretBytes::<4>::from_fill(|_| Err("no entropy")).is_err());
    }
}
