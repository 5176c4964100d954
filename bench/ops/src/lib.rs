//! The operations the benchmarks measure, written once.
//!
//! Each [`Workload`] prepares its inputs when it is made and does exactly one
//! operation per [`Workload::run`]. Criterion calls `run` on the host (bench/); the
//! image calls it between two reads of the `instret` counter in QEMU. Both therefore
//! measure the same code on the same provider types.
//!
//! The handshake workloads run both sides of Noise XK. "With binding" adds what the
//! identity binding costs per session: a 96-byte payload in messages 2 and 3 and one
//! Ed25519 verification on each side (the bindings themselves are signed once per
//! node, and each side's allowlist holds the other's key decoded once, not per
//! session; `ed25519/decode-key` is that one-off cost). The primitive floor performs exactly the primitive calls a
//! handshake makes (2 fixed-base multiplications, 6 Diffie-Hellman, 8 HKDF, 18 hashes,
//! 4 seals and 4 opens of the same sizes) and nothing else, so handshake / floor is
//! the protocol's own overhead.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod identity;
pub mod pairing;

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::hint::black_box;

use dsoftbusd::binding::{Binding, BindingCache};
use noise_xk::{Initiator, Responder, Transport};
use provider_api::{
    AeadBackend, AeadCipher, AeadKey, HashBackend, Provider, SecretBytes, Seed, SigningKey,
    VerifyingKey, X25519SecretKey,
};

/// One measured operation.
pub trait Workload {
    /// A stable name such as `ed25519/sign-64` (the report's row key).
    fn name(&self) -> &'static str;
    /// Does the operation once.
    fn run(&mut self);
}

/// A workload made of a name and a closure over its prepared state.
struct Closure<F: FnMut()> {
    name: &'static str,
    body: F,
}

impl<F: FnMut()> Workload for Closure<F> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn run(&mut self) {
        (self.body)();
    }
}

fn workload(name: &'static str, body: impl FnMut() + 'static) -> Box<dyn Workload> {
    Box::new(Closure { name, body })
}

/// The AEAD sizes measured.
pub const AEAD_SIZES: [(usize, &str, &str); 3] = [
    (64, "aead/seal-64", "aead/open-64"),
    (1024, "aead/seal-1k", "aead/open-1k"),
    (16 * 1024, "aead/seal-16k", "aead/open-16k"),
];

const PROLOGUE: &[u8] = dsoftbusd::PROLOGUE;

fn seed(fill: u8) -> Seed {
    Seed::new([fill; 32])
}

/// The AEAD workloads of backend `A` (any AEAD, Noise-named or not): seal and open at
/// each of [`AEAD_SIZES`].
pub fn aead<A: AeadBackend>() -> Vec<Box<dyn Workload>> {
    let mut out: Vec<Box<dyn Workload>> = Vec::new();
    for (size, seal_name, open_name) in AEAD_SIZES {
        let cipher = Rc::new(AeadCipher::<A>::new(&AeadKey::new([5; 32])));
        let sealer = Rc::clone(&cipher);
        let mut buffer = vec![0u8; size];
        out.push(workload(seal_name, move || {
            black_box(
                sealer
                    .seal_in_place_detached(&[1; 12], b"ad", black_box(&mut buffer))
                    .ok(),
            );
        }));
        let mut sealed = vec![0u8; size];
        let tag = cipher
            .seal_in_place_detached(&[1; 12], b"ad", &mut sealed)
            .expect("sizes are small");
        let mut scratch = vec![0u8; size];
        out.push(workload(open_name, move || {
            scratch.copy_from_slice(&sealed);
            black_box(
                cipher
                    .open_in_place_detached(&[1; 12], b"ad", black_box(&mut scratch), &tag)
                    .is_ok(),
            );
        }));
    }
    out
}

/// The primitives of provider `P`: Ed25519, X25519, the AEAD.
pub fn primitives<P: Provider>() -> Vec<Box<dyn Workload>> {
    let mut out = Vec::new();
    out.push(workload("ed25519/key-from-seed", || {
        black_box(SigningKey::<P::Sig>::from_seed(black_box(&seed(1))).ok());
    }));
    let key = Rc::new(SigningKey::<P::Sig>::from_seed(&seed(1)).expect("nonzero seed"));
    let message = [0x42u8; 64];
    let signer = Rc::clone(&key);
    out.push(workload("ed25519/sign-64", move || {
        black_box(signer.sign(black_box(&message)));
    }));
    let signature = key.sign(&message);
    let public = key.verifying_key().clone();
    let public_bytes = public.to_bytes();
    out.push(workload("ed25519/verify-64", move || {
        black_box(public.verify(black_box(&message), &signature).is_ok());
    }));
    // The key checks of provider-api's verification rule (canonical, not small order,
    // prime order), paid once when a key joins an allowlist.
    out.push(workload("ed25519/decode-key", move || {
        black_box(VerifyingKey::<P::Sig>::from_bytes(black_box(&public_bytes)).is_ok());
    }));
    out.push(workload("x25519/key-pair", || {
        black_box(X25519SecretKey::<P::Kx>::from_entropy(black_box(
            &SecretBytes::new([2; 32]),
        )));
    }));
    let ours = X25519SecretKey::<P::Kx>::from_entropy(&SecretBytes::new([3; 32]));
    let theirs = *X25519SecretKey::<P::Kx>::from_entropy(&SecretBytes::new([4; 32])).public_key();
    out.push(workload("x25519/dh", move || {
        black_box(ours.diffie_hellman(black_box(&theirs)).ok());
    }));
    out.extend(aead::<P::Aead>());
    out
}

/// The identity bindings of two nodes, each side's allowlist holding the other's
/// device key (decoded once, as a daemon holds it).
pub struct Identities<P: Provider> {
    initiator: Binding,
    responder: Binding,
    initiator_key: VerifyingKey<P::Sig>,
    responder_key: VerifyingKey<P::Sig>,
}

/// A completed XK handshake between two fixed nodes: both transports.
pub fn handshake<P: Provider, H: HashBackend>(
    initiator_static: &Rc<X25519SecretKey<P::Kx>>,
    responder_static: &Rc<X25519SecretKey<P::Kx>>,
    identities: Option<&Identities<P>>,
) -> (Transport<P::Aead>, Transport<P::Aead>) {
    handshake_cached::<P, H>(initiator_static, responder_static, identities, None)
}

/// [`handshake`], each side checking the other's binding through its own
/// [`BindingCache`] when `caches` is given (initiator's, responder's): what a daemon
/// does, so a repeat peer skips the Ed25519 verification.
pub fn handshake_cached<P: Provider, H: HashBackend>(
    initiator_static: &Rc<X25519SecretKey<P::Kx>>,
    responder_static: &Rc<X25519SecretKey<P::Kx>>,
    identities: Option<&Identities<P>>,
    mut caches: Option<&mut [BindingCache; 2]>,
) -> (Transport<P::Aead>, Transport<P::Aead>) {
    let rs = *responder_static.public_key();
    let (initiator_payload, responder_payload) = match identities {
        Some(ids) => (ids.initiator.encode(), ids.responder.encode()),
        None => (Vec::new(), Vec::new()),
    };
    let i = Initiator::<P::Kx, P::Aead, H>::new(PROLOGUE, Rc::clone(initiator_static), rs);
    let (i, m1) = i
        .write_message_1(&SecretBytes::new([6; 32]), &[])
        .expect("good keys");
    let (r, _) = Responder::<P::Kx, P::Aead, H>::new(PROLOGUE, Rc::clone(responder_static))
        .read_message_1(&m1)
        .expect("genuine message");
    let (r, m2) = r
        .write_message_2(&SecretBytes::new([7; 32]), &responder_payload)
        .expect("good keys");
    let (i, payload) = i.read_message_2(&m2).expect("genuine message");
    if let Some(ids) = identities {
        let allow = core::slice::from_ref(&ids.responder_key);
        Binding::decode(&payload)
            .and_then(|b| match &mut caches {
                Some(caches) => caches[0].verify::<P::Sig>(&b, &rs, allow),
                None => b.verify::<P::Sig>(&rs, allow),
            })
            .expect("genuine binding");
    }
    let (initiator, m3) = i.write_message_3(&initiator_payload).expect("good keys");
    let (responder, peer, payload) = r.read_message_3(&m3).expect("genuine message");
    if let Some(ids) = identities {
        let allow = core::slice::from_ref(&ids.initiator_key);
        Binding::decode(&payload)
            .and_then(|b| match &mut caches {
                Some(caches) => caches[1].verify::<P::Sig>(&b, &peer, allow),
                None => b.verify::<P::Sig>(&peer, allow),
            })
            .expect("genuine binding");
    }
    (initiator, responder)
}

/// Two nodes, each with a device key and a static key bound to it.
struct Nodes<P: Provider> {
    initiator_static: Rc<X25519SecretKey<P::Kx>>,
    responder_static: Rc<X25519SecretKey<P::Kx>>,
    identities: Identities<P>,
}

impl<P: Provider> Nodes<P> {
    fn new() -> Self {
        let initiator_static = Rc::new(X25519SecretKey::from_entropy(&SecretBytes::new([8; 32])));
        let responder_static = Rc::new(X25519SecretKey::from_entropy(&SecretBytes::new([9; 32])));
        let initiator_device = SigningKey::<P::Sig>::from_seed(&seed(10)).expect("nonzero seed");
        let responder_device = SigningKey::<P::Sig>::from_seed(&seed(11)).expect("nonzero seed");
        Self {
            identities: Identities {
                initiator: Binding::sign(&initiator_device, initiator_static.public_key()),
                responder: Binding::sign(&responder_device, responder_static.public_key()),
                initiator_key: initiator_device.verifying_key().clone(),
                responder_key: responder_device.verifying_key().clone(),
            },
            initiator_static,
            responder_static,
        }
    }
}

/// The Noise workloads of provider `P` with hash `H`.
pub fn handshakes<P: Provider, H: HashBackend>() -> Vec<Box<dyn Workload>> {
    let mut out = Vec::new();
    let nodes = Rc::new(Nodes::<P>::new());
    let plain = Rc::clone(&nodes);
    out.push(workload("noise/handshake", move || {
        black_box(handshake::<P, H>(
            &plain.initiator_static,
            &plain.responder_static,
            None,
        ));
    }));
    let bound = Rc::clone(&nodes);
    out.push(workload("noise/handshake+binding", move || {
        black_box(handshake::<P, H>(
            &bound.initiator_static,
            &bound.responder_static,
            Some(&bound.identities),
        ));
    }));
    // A repeat peer: both sides' caches already hold the other's binding (the first
    // handshake, here, put it there), as on every handshake after a peer's first.
    let repeat = Rc::clone(&nodes);
    let mut caches = [BindingCache::new(), BindingCache::new()];
    handshake_cached::<P, H>(
        &repeat.initiator_static,
        &repeat.responder_static,
        Some(&repeat.identities),
        Some(&mut caches),
    );
    out.push(workload("noise/handshake+binding-repeat", move || {
        black_box(handshake_cached::<P, H>(
            &repeat.initiator_static,
            &repeat.responder_static,
            Some(&repeat.identities),
            Some(&mut caches),
        ));
    }));
    let (mut initiator, mut responder) =
        handshake::<P, H>(&nodes.initiator_static, &nodes.responder_static, None);
    let ping = [0x50u8; 64];
    out.push(workload("noise/transport-round-trip", move || {
        let sent = initiator.encrypt(black_box(&ping)).expect("fresh session");
        let received = responder.decrypt(&sent).expect("genuine message");
        let answer = responder.encrypt(&received).expect("fresh session");
        black_box(initiator.decrypt(&answer).expect("genuine message"));
    }));
    out.push(primitive_floor::<P, H>());
    out
}

/// Exactly the primitive calls of one XK handshake (both sides), no protocol logic.
fn primitive_floor<P: Provider, H: HashBackend>() -> Box<dyn Workload> {
    let a = X25519SecretKey::<P::Kx>::from_entropy(&SecretBytes::new([8; 32]));
    let b = *X25519SecretKey::<P::Kx>::from_entropy(&SecretBytes::new([9; 32])).public_key();
    let cipher = AeadCipher::<P::Aead>::new(&AeadKey::new([12; 32]));
    let mut sealed_empty = [0u8; 0];
    let empty_tag = cipher
        .seal_in_place_detached(&[0; 12], &[0; 32], &mut sealed_empty)
        .expect("small");
    let mut sealed_static = [0x33u8; 32];
    let static_tag = cipher
        .seal_in_place_detached(&[0; 12], &[0; 32], &mut sealed_static)
        .expect("small");
    workload("noise/primitive-floor", move || {
        // 2 ephemeral key pairs (fixed-base multiplications) and 6 Diffie-Hellman.
        for fill in [6u8, 7] {
            black_box(X25519SecretKey::<P::Kx>::from_entropy(&SecretBytes::new(
                [fill; 32],
            )));
        }
        for _ in 0..6 {
            black_box(a.diffie_hellman(black_box(&b)).ok());
        }
        // 8 HKDF (3 MixKey and a Split per side), 18 hashes (3 at initialisation and 6
        // MixHash per side).
        for _ in 0..8 {
            black_box(H::hkdf::<64>(&[1; 32], &[2; 32]));
        }
        for _ in 0..18 {
            black_box(H::hash(&[&[3; 32], &[4; 48]]));
        }
        // 4 seals and 4 opens: three empty payloads and the 32-byte static key.
        for _ in 0..3 {
            black_box(
                cipher
                    .seal_in_place_detached(&[0; 12], &[0; 32], &mut [])
                    .ok(),
            );
            black_box(
                cipher
                    .open_in_place_detached(&[0; 12], &[0; 32], &mut [], &empty_tag)
                    .is_ok(),
            );
        }
        let mut plain = [0x33u8; 32];
        black_box(
            cipher
                .seal_in_place_detached(&[0; 12], &[0; 32], &mut plain)
                .ok(),
        );
        let mut opened = sealed_static;
        black_box(
            cipher
                .open_in_place_detached(&[0; 12], &[0; 32], &mut opened, &static_tag)
                .is_ok(),
        );
    })
}

/// Every workload of provider `P` with hash `H`, in report order.
pub fn all<P: Provider, H: HashBackend>() -> Vec<Box<dyn Workload>> {
    let mut out = primitives::<P>();
    out.extend(handshakes::<P, H>());
    out.extend(identity::workloads::<P, H>());
    out.extend(pairing::workloads::<P, H>());
    out
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use provider_api::Bundle;

    fn runs_once<P: Provider>() {
        let workloads = all::<P, provider_hash::Blake2s>();
        let mut names: Vec<&str> = workloads.iter().map(|w| w.name()).collect();
        for mut workload in workloads {
            workload.run();
            workload.run();
        }
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "names are unique");
        assert_eq!(count, 23);
    }

    #[test]
    fn every_workload_runs_on_every_provider() {
        runs_once::<Bundle<provider_dalek::Dalek, provider_chacha::ChaCha20Poly1305>>();
        runs_once::<Bundle<provider_dalek::Dalek, provider_aes_gcm::Aes256Gcm>>();
        runs_once::<Bundle<provider_compact::Compact, provider_chacha::ChaCha20Poly1305>>();
        runs_once::<Bundle<provider_compact::Compact, provider_aes_gcm::Aes256Gcm>>();
    }
}
