//! keystored, the device-key store.
//!
//! **Derivation.** At start, keystored asks rngd for 32 bytes (`GET_ENTROPY`, its only
//! source: there is no fallback). Those bytes are the Ed25519 seed; the key pair is
//! derived from it as RFC 8032 section 5.1.5 says (SHA-512 of the seed, clamped scalar,
//! public key = scalar x B), through `provider_api::SigningKey::from_seed` on the
//! image's curve backend. The seed lives in a zeroizing [`provider_api::Seed`] and is
//! dropped right after; the expanded key lives in the backend's key type, which
//! zeroizes on drop and has no getter. The OS has no storage, so the key is made anew
//! each boot; backing virtio-rng with a file (`RNG_FILE`) makes it reproducible. At the
//! 4 bits per byte that rngd's health tests assume, 32 bytes carry at least 128 bits of
//! min-entropy, Ed25519's security level.
//!
//! **Interface** (`service_api::keystored`): `GET_PUBKEY`; `SIGN(message)`, at most
//! 1 KiB, which the kernel's policy allows to dsoftbusd only; `EXPORT_PRIVATE`, always
//! refused with its own error and an audit record. No call returns private key
//! material.
//!
//! **Fail closed.** If entropy cannot be had, keystored prints
//! `keystored: fail-closed: no device key`, records it, and answers `NoKey`.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use ipc::{Action, AuditEvent, Endpoint, Operation, ServiceId, Verdict};
use provider_api::{CurveBackend, Seed, SigningKey};
use service_api::keystored::MAX_SIGN_MESSAGE;
use service_api::{ClientError, Incoming, ServiceError, reply_err, reply_ok};

/// The device key, or none when keystored failed closed.
pub struct Keystored<C: CurveBackend> {
    key: Option<SigningKey<C>>,
}

/// A handled request: the reply payload or error, and its audit record.
pub struct Handled {
    /// The reply payload (public data only) or the error.
    pub reply: Result<Vec<u8>, ServiceError>,
    /// The record of the decision.
    pub audit: AuditEvent,
}

/// Lower-case hex, for the public key marker.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

impl<C: CurveBackend> Keystored<C> {
    /// Derives the device key from 32 bytes of rngd entropy.
    pub fn from_entropy(entropy: &[u8]) -> Result<Self, ServiceError> {
        let seed = Seed::from_fill(|seed| {
            let bytes: &[u8; 32] = entropy.try_into().map_err(|_| ServiceError::Unavailable)?;
            seed.copy_from_slice(bytes);
            Ok::<(), ServiceError>(())
        })?;
        let key = SigningKey::from_seed(&seed).map_err(|_| ServiceError::Unavailable)?;
        Ok(Self { key: Some(key) })
    }

    /// keystored without a key: every request but export is answered `NoKey`.
    pub fn failed_closed() -> Self {
        Self { key: None }
    }

    /// The device public key, if there is a key.
    pub fn public_key(&self) -> Option<[u8; 32]> {
        self.key.as_ref().map(|key| key.verifying_key().to_bytes())
    }

    /// Handles one request frame from `sender`.
    pub fn handle(&self, sender: ServiceId, frame: &[u8]) -> Handled {
        let request = ipc::Request {
            sender,
            frame: ipc::IpcBuffer::copy_from(frame),
            token: ipc::ReplyToken(0),
        };
        let audit = |code: u16, verdict, reason: u16, detail: usize| AuditEvent {
            subject: sender,
            action: Action::Call {
                service: ServiceId::Keystored,
                code,
            },
            verdict,
            reason,
            detail: u32::try_from(detail).unwrap_or(u32::MAX),
        };
        let incoming = match Incoming::parse(ServiceId::Keystored, &request) {
            Ok(incoming) => incoming,
            Err((error, code)) => {
                return Handled {
                    reply: Err(error),
                    audit: audit(code, Verdict::Rejected, error.code(), frame.len()),
                };
            }
        };
        let code = incoming.operation.code();
        let size = incoming.payload.len();
        let refuse = |error: ServiceError, verdict| Handled {
            reply: Err(error),
            audit: audit(code, verdict, error.code(), size),
        };
        match (incoming.operation, &self.key) {
            (Operation::KeystoredExportPrivate, _) => {
                refuse(ServiceError::ExportForbidden, Verdict::Denied)
            }
            (_, None) => refuse(ServiceError::NoKey, Verdict::Failed),
            (Operation::KeystoredGetPubkey, Some(key)) if incoming.payload.is_empty() => Handled {
                reply: Ok(key.verifying_key().to_bytes().to_vec()),
                audit: audit(code, Verdict::Allowed, 0, 0),
            },
            (Operation::KeystoredGetPubkey, Some(_)) => {
                refuse(ServiceError::MalformedRequest, Verdict::Rejected)
            }
            (Operation::KeystoredSign, Some(_)) if size > MAX_SIGN_MESSAGE => {
                refuse(ServiceError::RequestTooLarge, Verdict::Rejected)
            }
            (Operation::KeystoredSign, Some(key)) => Handled {
                reply: Ok(key.sign(incoming.payload).to_bytes().to_vec()),
                audit: audit(code, Verdict::Allowed, 0, size),
            },
            _ => refuse(ServiceError::UnknownOperation, Verdict::Rejected),
        }
    }
}

/// Asks rngd for the seed and derives the key, or fails closed.
async fn derive<C: CurveBackend, E: Endpoint>(ep: &E) -> Result<Keystored<C>, ClientError> {
    let entropy = service_api::rngd::get_entropy(ep, 32).await?;
    Keystored::from_entropy(&entropy).map_err(ClientError::Service)
}

/// Runs keystored until the machine stops.
pub async fn run<C: CurveBackend, E: Endpoint>(ep: E) {
    let keystored = match derive::<C, E>(&ep).await {
        Ok(keystored) => {
            let public = keystored
                .public_key()
                .map(|key| hex(&key))
                .unwrap_or_default();
            ep.console(&markers::KEYSTORED_DEVICE_PUBKEY.render(&public));
            keystored
        }
        Err(error) => {
            ep.console(markers::KEYSTORED_NO_KEY.message);
            let reason = match error {
                ClientError::Service(e) => e.code(),
                _ => ServiceError::Unavailable.code(),
            };
            ep.audit(AuditEvent {
                subject: ServiceId::Keystored,
                action: Action::Health,
                verdict: Verdict::Failed,
                reason,
                detail: 0,
            });
            Keystored::failed_closed()
        }
    };
    loop {
        let request = ep.receive().await;
        let handled = keystored.handle(request.sender, &request.frame);
        ep.audit(handled.audit);
        let _ = match &handled.reply {
            Ok(payload) => reply_ok(&ep, request.token, payload),
            Err(error) => reply_err(&ep, request.token, *error),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use ipc::Frame;
    use provider_api::VerifyingKey;
    use provider_dalek::Dalek;

    fn frame(operation: Operation, payload: &[u8]) -> Vec<u8> {
        Frame::request(operation, payload)
            .encode()
            .unwrap()
            .to_vec()
    }

    #[test]
    fn the_key_is_rfc8032_from_the_entropy_and_signs() {
        // RFC 8032 test 1 seed: the public key must be the RFC's.
        let seed: Vec<u8> = (0..32)
            .map(|i| {
                [
                    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92,
                    0xec, 0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b,
                    0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
                ][i]
            })
            .collect();
        let keystored = Keystored::<Dalek>::from_entropy(&seed).unwrap();
        assert_eq!(
            hex(&keystored.public_key().unwrap()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let signed = keystored.handle(
            ServiceId::Dsoftbusd,
            &frame(Operation::KeystoredSign, b"bind"),
        );
        let signature = provider_api::Signature::from_slice(&signed.reply.unwrap()).unwrap();
        let public = VerifyingKey::<Dalek>::from_bytes(&keystored.public_key().unwrap()).unwrap();
        public.verify(b"bind", &signature).unwrap();
        assert_eq!(
            (signed.audit.verdict, signed.audit.detail),
            (Verdict::Allowed, 4)
        );
    }

    #[test]
    fn test_reject_device_key_private_export_in_the_handler() {
        let keystored = Keystored::<Dalek>::from_entropy(&[7; 32]).unwrap();
        for payload in [&b""[..], b"please"] {
            let handled = keystored.handle(
                ServiceId::Selftest,
                &frame(Operation::KeystoredExportPrivate, payload),
            );
            assert_eq!(handled.reply, Err(ServiceError::ExportForbidden));
            assert_eq!(
                (handled.audit.verdict, handled.audit.reason),
                (Verdict::Denied, ServiceError::ExportForbidden.code())
            );
        }
        let closed = Keystored::<Dalek>::failed_closed();
        let handled = closed.handle(
            ServiceId::Selftest,
            &frame(Operation::KeystoredExportPrivate, b""),
        );
        assert_eq!(
            handled.reply,
            Err(ServiceError::ExportForbidden),
            "its own error even without a key"
        );
    }

    #[test]
    fn bad_requests_are_typed_errors_and_it_keeps_serving() {
        let keystored = Keystored::<Dalek>::from_entropy(&[9; 32]).unwrap();
        let cases = [
            (
                frame(Operation::KeystoredSign, &vec![0; MAX_SIGN_MESSAGE + 1]),
                ServiceError::RequestTooLarge,
            ),
            (
                frame(Operation::KeystoredGetPubkey, b"x"),
                ServiceError::MalformedRequest,
            ),
            (
                frame(Operation::RngdGetEntropy, &[1, 0]),
                ServiceError::UnknownOperation,
            ),
            (vec![1, 1], ServiceError::MalformedRequest),
        ];
        for (bytes, expected) in cases {
            let handled = keystored.handle(ServiceId::Dsoftbusd, &bytes);
            assert_eq!(handled.reply, Err(expected));
            assert_eq!(handled.audit.verdict, Verdict::Rejected);
            let good = keystored.handle(
                ServiceId::Dsoftbusd,
                &frame(Operation::KeystoredGetPubkey, b""),
            );
            assert_eq!(good.reply.map(|k| k.len()), Ok(32));
        }
    }

    #[test]
    fn without_entropy_there_is_no_key() {
        assert!(Keystored::<Dalek>::from_entropy(&[1; 31]).is_err());
        assert!(
            Keystored::<Dalek>::from_entropy(&[0; 32]).is_err(),
            "the all-zero seed is refused"
        );
        let closed = Keystored::<Dalek>::failed_closed();
        let handled = closed.handle(
            ServiceId::Selftest,
            &frame(Operation::KeystoredGetPubkey, b""),
        );
        assert_eq!(handled.reply, Err(ServiceError::NoKey));
    }
}
