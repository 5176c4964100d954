//! CipherState (specification section 5.1) and the transport it becomes.

use alloc::vec::Vec;

use provider_api::cipher::{NONCE_LEN, TAG_LEN};
use provider_api::{AeadCipher, AeadKey, NoiseAead, NoiseNonce};

use crate::{MAX_MESSAGE_LEN, NoiseError};

/// A key (or none yet) and its nonce counter.
pub(crate) struct CipherState<A: NoiseAead> {
    cipher: Option<AeadCipher<A>>,
    n: u64,
}

impl<A: NoiseAead> CipherState<A> {
    pub(crate) fn empty() -> Self {
        Self { cipher: None, n: 0 }
    }

    pub(crate) fn keyed(key: &AeadKey) -> Self {
        Self {
            cipher: Some(AeadCipher::new(key)),
            n: 0,
        }
    }

    #[cfg(test)]
    pub(crate) fn set_nonce(&mut self, n: u64) {
        self.n = n;
    }

    /// The 96-bit nonce: 32 zero bits, then the counter, little-endian for ChaChaPoly
    /// and big-endian for AESGCM (specification sections 12.3 and 12.4).
    fn nonce(n: u64) -> [u8; NONCE_LEN] {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[4..].copy_from_slice(&match A::NOISE_NONCE {
            NoiseNonce::LittleEndian => n.to_le_bytes(),
            NoiseNonce::BigEndian => n.to_be_bytes(),
        });
        nonce
    }

    /// `EncryptWithAd`: encrypts with the current nonce and advances it; without a
    /// key, returns the plaintext.
    pub(crate) fn encrypt_with_ad(
        &mut self,
        ad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, NoiseError> {
        let Some(cipher) = &self.cipher else {
            return Ok(plaintext.to_vec());
        };
        // 2^64 - 1 is reserved: a counter that reached it never encrypts again.
        if self.n == u64::MAX {
            return Err(NoiseError::NonceExhausted);
        }
        let mut out = Vec::with_capacity(plaintext.len() + TAG_LEN);
        out.extend_from_slice(plaintext);
        cipher
            .seal_in_place(&Self::nonce(self.n), ad, &mut out)
            .map_err(|_| NoiseError::TooLong {
                len: plaintext.len() + TAG_LEN,
            })?;
        self.n += 1;
        Ok(out)
    }

    /// `DecryptWithAd`: decrypts with the current nonce and advances it only on
    /// success; without a key, returns the input.
    pub(crate) fn decrypt_with_ad(
        &mut self,
        ad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, NoiseError> {
        let Some(cipher) = &self.cipher else {
            return Ok(ciphertext.to_vec());
        };
        if self.n == u64::MAX {
            return Err(NoiseError::NonceExhausted);
        }
        if ciphertext.len() < TAG_LEN {
            return Err(NoiseError::TooShort {
                need: TAG_LEN,
                got: ciphertext.len(),
            });
        }
        let mut out = ciphertext.to_vec();
        cipher
            .open_in_place(&Self::nonce(self.n), ad, &mut out)
            .map_err(|_| NoiseError::Authentication)?;
        self.n += 1;
        Ok(out)
    }
}

/// An established session: one cipher state per direction.
pub struct Transport<A: NoiseAead> {
    send: CipherState<A>,
    receive: CipherState<A>,
    handshake_hash: [u8; 32],
}

impl<A: NoiseAead> Transport<A> {
    pub(crate) fn new(
        send: CipherState<A>,
        receive: CipherState<A>,
        handshake_hash: [u8; 32],
    ) -> Self {
        Self {
            send,
            receive,
            handshake_hash,
        }
    }

    /// Encrypts one transport message.
    ///
    /// # Errors
    /// [`NoiseError::TooLong`] when the message would exceed 65,535 bytes,
    /// [`NoiseError::NonceExhausted`] when the sending counter is spent.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let len = plaintext.len() + TAG_LEN;
        if len > MAX_MESSAGE_LEN {
            return Err(NoiseError::TooLong { len });
        }
        self.send.encrypt_with_ad(&[], plaintext)
    }

    /// Decrypts one transport message. On failure (tampering, a replay, a message
    /// out of order) the session is unchanged.
    ///
    /// # Errors
    /// [`NoiseError::Authentication`], [`NoiseError::TooShort`],
    /// [`NoiseError::TooLong`], [`NoiseError::NonceExhausted`].
    pub fn decrypt(&mut self, message: &[u8]) -> Result<Vec<u8>, NoiseError> {
        if message.len() > MAX_MESSAGE_LEN {
            return Err(NoiseError::TooLong { len: message.len() });
        }
        self.receive.decrypt_with_ad(&[], message)
    }

    /// The handshake hash `h`, identical on both sides: a channel binding.
    pub fn handshake_hash(&self) -> &[u8; 32] {
        &self.handshake_hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use provider_select::backends::provider_chacha::ChaCha20Poly1305;

    #[test]
    fn the_nonce_counter_refuses_to_wrap() {
        let key = AeadKey::new([1; 32]);
        let mut state = CipherState::<ChaCha20Poly1305>::keyed(&key);
        state.set_nonce(u64::MAX - 1);
        assert!(state.encrypt_with_ad(&[], b"last").is_ok());
        assert_eq!(
            state.encrypt_with_ad(&[], b"wrap"),
            Err(NoiseError::NonceExhausted)
        );
        assert_eq!(
            state.decrypt_with_ad(&[], &[0; 32]),
            Err(NoiseError::NonceExhausted)
        );
    }

    #[test]
    fn nonces_are_little_endian_for_chachapoly_and_big_endian_for_aesgcm() {
        assert_eq!(
            CipherState::<ChaCha20Poly1305>::nonce(1),
            [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            CipherState::<provider_select::backends::provider_aes_gcm::Aes256Gcm>::nonce(1),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        );
    }
}
