//! SymmetricState (specification section 5.2).

use alloc::vec::Vec;
use core::marker::PhantomData;

use provider_api::{AeadKey, HashBackend, NoiseAead, SecretBytes};

use crate::NoiseError;
use crate::cipher_state::CipherState;

/// The chaining key, the handshake hash and the current cipher state.
pub(crate) struct SymmetricState<A: NoiseAead, H: HashBackend> {
    ck: SecretBytes<32>,
    h: [u8; 32],
    cipher: CipherState<A>,
    hash: PhantomData<H>,
}

impl<A: NoiseAead, H: HashBackend> SymmetricState<A, H> {
    /// `InitializeSymmetric(protocol_name)`.
    pub(crate) fn new(protocol_name: &[u8]) -> Self {
        let mut h = [0u8; 32];
        if protocol_name.len() <= h.len() {
            h[..protocol_name.len()].copy_from_slice(protocol_name);
        } else {
            h = H::hash(&[protocol_name]);
        }
        Self {
            ck: SecretBytes::new(h),
            h,
            cipher: CipherState::empty(),
            hash: PhantomData,
        }
    }

    /// `MixHash(data)`.
    pub(crate) fn mix_hash(&mut self, data: &[u8]) {
        self.h = H::hash(&[&self.h, data]);
    }

    /// `MixKey(input_key_material)`.
    pub(crate) fn mix_key(&mut self, input_key_material: &[u8]) {
        let output = H::hkdf::<64>(self.ck.expose_secret(), input_key_material);
        let (ck, k) = output.expose_secret().split_at(32);
        self.ck = SecretBytes::from_fill(|out| {
            out.copy_from_slice(ck);
            Ok::<(), ()>(())
        })
        .expect("infallible");
        let key = AeadKey::from_fill(|out| {
            out.copy_from_slice(k);
            Ok::<(), ()>(())
        })
        .expect("infallible");
        self.cipher = CipherState::keyed(&key);
    }

    /// `EncryptAndHash(plaintext)`.
    pub(crate) fn encrypt_and_hash(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let ciphertext = self.cipher.encrypt_with_ad(&self.h, plaintext)?;
        self.mix_hash(&ciphertext);
        Ok(ciphertext)
    }

    /// `DecryptAndHash(ciphertext)`.
    pub(crate) fn decrypt_and_hash(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let plaintext = self.cipher.decrypt_with_ad(&self.h, ciphertext)?;
        self.mix_hash(ciphertext);
        Ok(plaintext)
    }

    /// `Split()`: the initiator's sending state first.
    pub(crate) fn split(self) -> (CipherState<A>, CipherState<A>, [u8; 32]) {
        let output = H::hkdf::<64>(self.ck.expose_secret(), &[]);
        let (k1, k2) = output.expose_secret().split_at(32);
        let key = |bytes: &[u8]| {
            AeadKey::from_fill(|out| {
                out.copy_from_slice(bytes);
                Ok::<(), ()>(())
            })
            .expect("infallible")
        };
        (
            CipherState::keyed(&key(k1)),
            CipherState::keyed(&key(k2)),
            self.h,
        )
    }
}
