//! The identity binding: a device key vouches for a Noise static key.
//!
//! Each node's handshake payload is its Ed25519 device public key and that key's
//! signature over [`BINDING_PREFIX`] followed by the node's Noise static public key.
//! The prefix separates this use of the device key from any other signature it makes.
//! The peer accepts the binding only if the device key is on its allowlist and the
//! signature covers exactly the static key the handshake authenticated.
//!
//! An allowlist holds decoded [`VerifyingKey`]s: a key is checked once, under
//! provider-api's rule (canonical, prime order), when it joins the list, and a binding
//! naming any other key is an unknown identity.

use alloc::vec::Vec;
use core::fmt;

use provider_api::{Signature, SignatureBackend, SigningKey, VerifyingKey, X25519PublicKey};

/// The domain-separation prefix of the signed message (keystored builds the message of
/// its `noise-static-binding` purpose from it: one definition for both).
pub use service_api::keystored::NOISE_BINDING_PREFIX as BINDING_PREFIX;
/// Length of an encoded binding: the device key, then the signature.
pub const BINDING_LEN: usize = 32 + 64;

/// The message a device key signs to vouch for `noise_static`: keystored's message
/// for the `noise-static-binding` purpose, built by the same function.
pub fn binding_message(noise_static: &X25519PublicKey) -> Vec<u8> {
    service_api::keystored::purpose_message(
        ipc::policy::SigningPurpose::NoiseStaticBinding,
        noise_static.as_bytes(),
    )
    .expect("an X25519 public key is the 32 bytes the purpose takes")
}

/// A device key's signature over a Noise static key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The Ed25519 device public key.
    pub device_key: [u8; 32],
    /// Its signature over [`binding_message`].
    pub signature: [u8; 64],
}

/// Why a binding was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindingError {
    /// Not [`BINDING_LEN`] bytes.
    Malformed,
    /// The device key is not on the allowlist.
    UnknownIdentity,
    /// The signature does not verify over this static key.
    BadSignature,
}

impl fmt::Display for BindingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed identity binding",
            Self::UnknownIdentity => "device key not on the allowlist",
            Self::BadSignature => "signature does not cover the Noise static key",
        })
    }
}

impl Binding {
    /// Signs `noise_static` with `device` (for nodes that hold their key; dsoftbusd
    /// asks keystored instead).
    pub fn sign<B: SignatureBackend>(
        device: &SigningKey<B>,
        noise_static: &X25519PublicKey,
    ) -> Self {
        Self {
            device_key: device.verifying_key().to_bytes(),
            signature: device.sign(&binding_message(noise_static)).to_bytes(),
        }
    }

    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BINDING_LEN);
        out.extend_from_slice(&self.device_key);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Parses the wire encoding.
    ///
    /// # Errors
    /// [`BindingError::Malformed`].
    pub fn decode(bytes: &[u8]) -> Result<Self, BindingError> {
        if bytes.len() != BINDING_LEN {
            return Err(BindingError::Malformed);
        }
        let (device_key, signature) = bytes.split_at(32);
        Ok(Self {
            device_key: device_key.try_into().map_err(|_| BindingError::Malformed)?,
            signature: signature.try_into().map_err(|_| BindingError::Malformed)?,
        })
    }

    /// Checks the binding for `noise_static` against `allowlist`.
    ///
    /// # Errors
    /// [`BindingError::UnknownIdentity`], [`BindingError::BadSignature`].
    pub fn verify<B: SignatureBackend>(
        &self,
        noise_static: &X25519PublicKey,
        allowlist: &[VerifyingKey<B>],
    ) -> Result<(), BindingError> {
        let key = allowlist
            .iter()
            .find(|key| key.to_bytes() == self.device_key)
            .ok_or(BindingError::UnknownIdentity)?;
        key.verify(
            &binding_message(noise_static),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| BindingError::BadSignature)
    }
}

/// How many verified bindings a [`BindingCache`] remembers.
pub const BINDING_CACHE_CAPACITY: usize = 16;

/// Verified bindings, remembered so that a repeat peer's handshake skips the Ed25519
/// verification (about half of a handshake's work on this device).
///
/// An entry is the exact triple that verified: device key, Noise static key and
/// signature bytes. A hit therefore means these very bytes verified before, and
/// verification is a function of them: the verdict cannot differ. What can change is
/// the allowlist, so [`BindingCache::verify`] checks it first on every handshake,
/// cached or not: a device removed from it is refused with
/// [`BindingError::UnknownIdentity`] whatever the cache holds. Bounded: at most
/// [`BINDING_CACHE_CAPACITY`] entries, the oldest replaced first. Nothing here is
/// secret (public keys and a signature).
#[derive(Debug, Default)]
pub struct BindingCache {
    entries: alloc::collections::VecDeque<[u8; 32 + 32 + 64]>,
    hits: u64,
    misses: u64,
}

impl BindingCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// [`Binding::verify`], skipping the signature check when this exact binding of
    /// this static key verified before. The allowlist is always checked.
    ///
    /// # Errors
    /// [`BindingError::UnknownIdentity`], [`BindingError::BadSignature`].
    pub fn verify<B: SignatureBackend>(
        &mut self,
        binding: &Binding,
        noise_static: &X25519PublicKey,
        allowlist: &[VerifyingKey<B>],
    ) -> Result<(), BindingError> {
        if !allowlist
            .iter()
            .any(|key| key.to_bytes() == binding.device_key)
        {
            return Err(BindingError::UnknownIdentity);
        }
        let mut entry = [0u8; 128];
        entry[..32].copy_from_slice(&binding.device_key);
        entry[32..64].copy_from_slice(noise_static.as_bytes());
        entry[64..].copy_from_slice(&binding.signature);
        if self.entries.contains(&entry) {
            self.hits = self.hits.saturating_add(1);
            return Ok(());
        }
        self.misses = self.misses.saturating_add(1);
        binding.verify(noise_static, allowlist)?;
        if self.entries.len() == BINDING_CACHE_CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
        Ok(())
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no binding is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Verifications skipped, and verifications done, so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use provider_api::{SecretBytes, Seed, X25519SecretKey};
    use provider_dalek::Dalek;

    #[test]
    fn a_binding_covers_one_static_key_for_one_allowed_device() {
        let device = SigningKey::<Dalek>::from_seed(&Seed::new([1; 32])).unwrap();
        let noise =
            *X25519SecretKey::<Dalek>::from_entropy(&SecretBytes::new([2; 32])).public_key();
        let other =
            *X25519SecretKey::<Dalek>::from_entropy(&SecretBytes::new([3; 32])).public_key();
        let binding = Binding::sign(&device, &noise);
        let allowed = [device.verifying_key().clone()];
        assert_eq!(Binding::decode(&binding.encode()), Ok(binding.clone()));
        assert_eq!(binding.verify::<Dalek>(&noise, &allowed), Ok(()));
        assert_eq!(
            binding.verify::<Dalek>(&other, &allowed),
            Err(BindingError::BadSignature)
        );
        let stranger = SigningKey::<Dalek>::from_seed(&Seed::new([9; 32])).unwrap();
        assert_eq!(
            binding.verify::<Dalek>(&noise, &[stranger.verifying_key().clone()]),
            Err(BindingError::UnknownIdentity)
        );
        assert_eq!(Binding::decode(&[0; 95]), Err(BindingError::Malformed));
        let plain = device.sign(noise.as_bytes()).to_bytes();
        let unprefixed = Binding {
            device_key: allowed[0].to_bytes(),
            signature: plain,
        };
        assert_eq!(
            unprefixed.verify::<Dalek>(&noise, &allowed),
            Err(BindingError::BadSignature),
            "the prefix is part of the message"
        );
    }

    #[test]
    fn the_cache_skips_only_a_verified_triple_and_always_checks_the_allowlist() {
        let device = SigningKey::<Dalek>::from_seed(&Seed::new([1; 32])).unwrap();
        let noise =
            *X25519SecretKey::<Dalek>::from_entropy(&SecretBytes::new([2; 32])).public_key();
        let other =
            *X25519SecretKey::<Dalek>::from_entropy(&SecretBytes::new([3; 32])).public_key();
        let binding = Binding::sign(&device, &noise);
        let allowed = [device.verifying_key().clone()];
        let mut cache = BindingCache::new();
        assert_eq!(cache.verify::<Dalek>(&binding, &noise, &allowed), Ok(()));
        assert_eq!(cache.verify::<Dalek>(&binding, &noise, &allowed), Ok(()));
        assert_eq!(cache.counts(), (1, 1), "the second handshake is a hit");
        // The same binding presented for another static key is not a hit.
        assert_eq!(
            cache.verify::<Dalek>(&binding, &other, &allowed),
            Err(BindingError::BadSignature)
        );
        // A forged signature for a cached device and static key is not a hit either.
        let mut forged = binding.clone();
        forged.signature[0] ^= 1;
        assert_eq!(
            cache.verify::<Dalek>(&forged, &noise, &allowed),
            Err(BindingError::BadSignature)
        );
        // Removed from the allowlist: refused although cached.
        let stranger = SigningKey::<Dalek>::from_seed(&Seed::new([9; 32])).unwrap();
        assert_eq!(
            cache.verify::<Dalek>(&binding, &noise, &[stranger.verifying_key().clone()]),
            Err(BindingError::UnknownIdentity)
        );
        assert_eq!(cache.len(), 1, "refusals are not remembered");
        // Bounded: the oldest goes first.
        for seed in 10..10 + BINDING_CACHE_CAPACITY as u8 {
            let noise =
                *X25519SecretKey::<Dalek>::from_entropy(&SecretBytes::new([seed; 32])).public_key();
            let b = Binding::sign(&device, &noise);
            assert_eq!(cache.verify::<Dalek>(&b, &noise, &allowed), Ok(()));
        }
        assert_eq!(cache.len(), BINDING_CACHE_CAPACITY);
        let before = cache.counts();
        assert_eq!(cache.verify::<Dalek>(&binding, &noise, &allowed), Ok(()));
        assert_eq!(
            cache.counts().1,
            before.1 + 1,
            "the first entry was evicted"
        );
    }
}
