//! The XK handshake (specification section 7.5), one type per step.

use alloc::rc::Rc;
use alloc::vec::Vec;

use provider_api::{
    HashBackend, KeyAgreementBackend, NoiseAead, SecretBytes, X25519PublicKey, X25519SecretKey,
};

use crate::cipher_state::Transport;
use crate::symmetric::SymmetricState;
use crate::{
    DH_LEN, MAX_MESSAGE_LEN, MESSAGE_1_MIN, MESSAGE_2_MIN, MESSAGE_3_MIN, NoiseError, TAG_LEN,
    protocol_name,
};

/// The result of a handshake step: the next state, and the message written or the
/// payload read.
pub type Step<S> = Result<(S, Vec<u8>), NoiseError>;

/// The state both roles share.
struct Core<C: KeyAgreementBackend, A: NoiseAead, H: HashBackend> {
    symmetric: SymmetricState<A, H>,
    s: Rc<X25519SecretKey<C>>,
}

impl<C: KeyAgreementBackend, A: NoiseAead, H: HashBackend> Core<C, A, H> {
    /// `Initialize()` for XK: protocol name, prologue, then the responder's static
    /// key as the pre-message.
    fn new(prologue: &[u8], s: Rc<X25519SecretKey<C>>, responder_static: &X25519PublicKey) -> Self {
        let mut symmetric = SymmetricState::new(protocol_name::<A, H>().as_bytes());
        symmetric.mix_hash(prologue);
        symmetric.mix_hash(responder_static.as_bytes());
        Self { symmetric, s }
    }

    fn mix_dh(
        &mut self,
        secret: &X25519SecretKey<C>,
        public: &X25519PublicKey,
    ) -> Result<(), NoiseError> {
        let shared = secret
            .diffie_hellman(public)
            .map_err(|_| NoiseError::LowOrderKey)?;
        self.symmetric.mix_key(shared.expose_secret());
        Ok(())
    }
}

fn check_len(message: &[u8], need: usize) -> Result<(), NoiseError> {
    if message.len() > MAX_MESSAGE_LEN {
        Err(NoiseError::TooLong { len: message.len() })
    } else if message.len() < need {
        Err(NoiseError::TooShort {
            need,
            got: message.len(),
        })
    } else {
        Ok(())
    }
}

fn check_written(message: Vec<u8>) -> Result<Vec<u8>, NoiseError> {
    if message.len() > MAX_MESSAGE_LEN {
        Err(NoiseError::TooLong { len: message.len() })
    } else {
        Ok(message)
    }
}

fn public_key(bytes: &[u8]) -> X25519PublicKey {
    let mut key = [0u8; DH_LEN];
    key.copy_from_slice(&bytes[..DH_LEN]);
    X25519PublicKey(key)
}

/// The initiator before its first message.
pub struct Initiator<C: KeyAgreementBackend, A: NoiseAead, H: HashBackend> {
    core: Core<C, A, H>,
    rs: X25519PublicKey,
}

/// The initiator after `-> e, es`, waiting for the responder.
pub struct InitiatorAwaitingResponse<C: KeyAgreementBackend, A: NoiseAead, H: HashBackend> {
    core: Core<C, A, H>,
    e: X25519SecretKey<C>,
}

/// The initiator after `<- e, ee`, ready to send its static key.
pub struct InitiatorReadyToFinish<C: KeyAgreementBackend, A: NoiseAead, H: HashBackend> {
    core: Core<C, A, H>,
    re: X25519PublicKey,
}

impl<C: KeyAgreementBackend, A: NoiseAead, H: HashBackend> Initiator<C, A, H> {
    /// An initiator with static key `s` (shared by all of the node's sessions), who
    /// knows the responder's static key `rs`.
    pub fn new(prologue: &[u8], s: Rc<X25519SecretKey<C>>, rs: X25519PublicKey) -> Self {
        Self {
            core: Core::new(prologue, s, &rs),
            rs,
        }
    }

    /// `-> e, es` with `payload`; the ephemeral key is made from `entropy`, which must
    /// be fresh for every session.
    ///
    /// # Errors
    /// [`NoiseError::LowOrderKey`] for a low-order `rs`; [`NoiseError::TooLong`].
    pub fn write_message_1(
        mut self,
        entropy: &SecretBytes<32>,
        payload: &[u8],
    ) -> Step<InitiatorAwaitingResponse<C, A, H>> {
        let e = X25519SecretKey::<C>::from_entropy(entropy);
        let mut message = e.public_key().as_bytes().to_vec();
        self.core.symmetric.mix_hash(e.public_key().as_bytes());
        self.core.mix_dh(&e, &self.rs)?;
        message.extend(self.core.symmetric.encrypt_and_hash(payload)?);
        let message = check_written(message)?;
        Ok((InitiatorAwaitingResponse { core: self.core, e }, message))
    }
}

impl<C: KeyAgreementBackend, A: NoiseAead, H: HashBackend> InitiatorAwaitingResponse<C, A, H> {
    /// `<- e, ee`: reads the responder's message and returns its payload.
    ///
    /// # Errors
    /// [`NoiseError::TooShort`], [`NoiseError::TooLong`], [`NoiseError::LowOrderKey`],
    /// [`NoiseError::Authentication`].
    pub fn read_message_2(mut self, message: &[u8]) -> Step<InitiatorReadyToFinish<C, A, H>> {
        check_len(message, MESSAGE_2_MIN)?;
        let re = public_key(message);
        self.core.symmetric.mix_hash(re.as_bytes());
        self.core.mix_dh(&self.e, &re)?;
        let payload = self.core.symmetric.decrypt_and_hash(&message[DH_LEN..])?;
        Ok((
            InitiatorReadyToFinish {
                core: self.core,
                re,
            },
            payload,
        ))
    }
}

impl<C: KeyAgreementBackend, A: NoiseAead, H: HashBackend> InitiatorReadyToFinish<C, A, H> {
    /// `-> s, se` with `payload`; the handshake is complete.
    ///
    /// # Errors
    /// [`NoiseError::LowOrderKey`], [`NoiseError::TooLong`].
    pub fn write_message_3(
        mut self,
        payload: &[u8],
    ) -> Result<(Transport<A>, Vec<u8>), NoiseError> {
        let static_public = *self.core.s.public_key();
        let mut message = self
            .core
            .symmetric
            .encrypt_and_hash(static_public.as_bytes())?;
        let shared = self
            .core
            .s
            .diffie_hellman(&self.re)
            .map_err(|_| NoiseError::LowOrderKey)?;
        self.core.symmetric.mix_key(shared.expose_secret());
        message.extend(self.core.symmetric.encrypt_and_hash(payload)?);
        let message = check_written(message)?;
        let (send, receive, hash) = self.core.symmetric.split();
        Ok((Transport::new(send, receive, hash), message))
    }
}

/// The responder before the first message.
pub struct Responder<C: KeyAgreementBackend, A: NoiseAead, H: HashBackend> {
    core: Core<C, A, H>,
}

/// The responder after `-> e, es`, ready to answer.
pub struct ResponderReadyToRespond<C: KeyAgreementBackend, A: NoiseAead, H: HashBackend> {
    core: Core<C, A, H>,
    re: X25519PublicKey,
}

/// The responder after `<- e, ee`, waiting for the initiator's static key.
pub struct ResponderAwaitingFinish<C: KeyAgreementBackend, A: NoiseAead, H: HashBackend> {
    core: Core<C, A, H>,
    e: X25519SecretKey<C>,
}

impl<C: KeyAgreementBackend, A: NoiseAead, H: HashBackend> Responder<C, A, H> {
    /// A responder with static key `s` (shared by all of the node's sessions).
    pub fn new(prologue: &[u8], s: Rc<X25519SecretKey<C>>) -> Self {
        let public = *s.public_key();
        Self {
            core: Core::new(prologue, s, &public),
        }
    }

    /// `-> e, es`: reads the initiator's first message and returns its payload.
    ///
    /// # Errors
    /// [`NoiseError::TooShort`], [`NoiseError::TooLong`], [`NoiseError::LowOrderKey`],
    /// [`NoiseError::Authentication`] (also what a wrong responder key looks like).
    pub fn read_message_1(mut self, message: &[u8]) -> Step<ResponderReadyToRespond<C, A, H>> {
        check_len(message, MESSAGE_1_MIN)?;
        let re = public_key(message);
        self.core.symmetric.mix_hash(re.as_bytes());
        let shared = self
            .core
            .s
            .diffie_hellman(&re)
            .map_err(|_| NoiseError::LowOrderKey)?;
        self.core.symmetric.mix_key(shared.expose_secret());
        let payload = self.core.symmetric.decrypt_and_hash(&message[DH_LEN..])?;
        Ok((
            ResponderReadyToRespond {
                core: self.core,
                re,
            },
            payload,
        ))
    }
}

impl<C: KeyAgreementBackend, A: NoiseAead, H: HashBackend> ResponderReadyToRespond<C, A, H> {
    /// `<- e, ee` with `payload`; the ephemeral key is made from `entropy`, which must
    /// be fresh for every session.
    ///
    /// # Errors
    /// [`NoiseError::LowOrderKey`], [`NoiseError::TooLong`].
    pub fn write_message_2(
        mut self,
        entropy: &SecretBytes<32>,
        payload: &[u8],
    ) -> Step<ResponderAwaitingFinish<C, A, H>> {
        let e = X25519SecretKey::<C>::from_entropy(entropy);
        let mut message = e.public_key().as_bytes().to_vec();
        self.core.symmetric.mix_hash(e.public_key().as_bytes());
        self.core.mix_dh(&e, &self.re)?;
        message.extend(self.core.symmetric.encrypt_and_hash(payload)?);
        let message = check_written(message)?;
        Ok((ResponderAwaitingFinish { core: self.core, e }, message))
    }
}

impl<C: KeyAgreementBackend, A: NoiseAead, H: HashBackend> ResponderAwaitingFinish<C, A, H> {
    /// `-> s, se`: reads the initiator's static key and payload; the handshake is
    /// complete. Returns the transport, the initiator's static key and the payload.
    ///
    /// # Errors
    /// [`NoiseError::TooShort`], [`NoiseError::TooLong`], [`NoiseError::LowOrderKey`],
    /// [`NoiseError::Authentication`].
    pub fn read_message_3(
        mut self,
        message: &[u8],
    ) -> Result<(Transport<A>, X25519PublicKey, Vec<u8>), NoiseError> {
        check_len(message, MESSAGE_3_MIN)?;
        let (encrypted_static, encrypted_payload) = message.split_at(DH_LEN + TAG_LEN);
        let rs = self.core.symmetric.decrypt_and_hash(encrypted_static)?;
        let rs = public_key(&rs);
        self.core.mix_dh(&self.e, &rs)?;
        let payload = self.core.symmetric.decrypt_and_hash(encrypted_payload)?;
        let (receive, send, hash) = self.core.symmetric.split();
        Ok((Transport::new(send, receive, hash), rs, payload))
    }
}
