//! Providers: one backend per axis, chosen apart.
//!
//! Services take a [`Provider`] as a generic parameter, so the whole crypto choice of an
//! image is one type, and two providers can coexist in one program (the cross-backend
//! tests and the benchmarks do exactly that). The axes are independent: Ed25519
//! signing ([`Provider::Sig`]), X25519 key agreement ([`Provider::Kx`]) and the AEAD
//! ([`Provider::Aead`]) may come from three different backend crates. [`Suite`] makes
//! a provider out of any three; [`Bundle`] is the common case of one curve crate for
//! both Ed25519 and X25519. (The hash is the fourth axis; protocols take it as their
//! own parameter, a [`crate::HashBackend`].)
//!
//! The AEAD of a provider must be one Noise can name ([`NoiseAead`]): a provider is
//! what an image runs its sessions with, so a provider whose AEAD Noise has no name
//! for would fail at run time; it fails to compile instead.

use core::fmt;
use core::marker::PhantomData;

use crate::cipher::NoiseAead;
use crate::key_agreement::KeyAgreementBackend;
use crate::signing::SignatureBackend;

/// A backend for both halves of the Curve25519 family: Ed25519 signatures and X25519
/// key agreement (implemented for every type that is both).
pub trait CurveBackend: SignatureBackend + KeyAgreementBackend + 'static {}

impl<C: SignatureBackend + KeyAgreementBackend + 'static> CurveBackend for C {}

/// A complete choice of cryptography for a service or an image.
pub trait Provider: 'static {
    /// Ed25519.
    type Sig: SignatureBackend + 'static;
    /// X25519.
    type Kx: KeyAgreementBackend + 'static;
    /// The AEAD.
    type Aead: NoiseAead;

    /// The readable name of the combination, such as `dalek+chacha` or
    /// `dalek/compact+chacha`.
    fn name() -> ProviderName {
        ProviderName {
            sig: <Self::Sig as SignatureBackend>::NAME,
            kx: <Self::Kx as KeyAgreementBackend>::NAME,
            aead: <Self::Aead as crate::AeadBackend>::NAME,
        }
    }
}

/// The provider made of signing backend `S`, key-agreement backend `K` and AEAD
/// backend `A`. Never instantiated: it exists only as a type.
pub struct Suite<S, K, A>(Backends<S, K, A>, core::convert::Infallible);

/// The three backends a [`Suite`] names, as a zero-sized marker.
type Backends<S, K, A> = PhantomData<fn() -> (S, K, A)>;

impl<S, K, A> Provider for Suite<S, K, A>
where
    S: SignatureBackend + 'static,
    K: KeyAgreementBackend + 'static,
    A: NoiseAead,
{
    type Sig = S;
    type Kx = K;
    type Aead = A;
}

/// The provider whose curve backend `C` does both Ed25519 and X25519, with AEAD `A`.
pub type Bundle<C, A> = Suite<C, C, A>;

/// The name of a provider combination: `<sig>+<aead>` when one backend does Ed25519
/// and X25519 (`dalek+chacha`), `<sig>/<kx>+<aead>` when they differ
/// (`dalek/compact+chacha`: Ed25519 by dalek, X25519 by compact).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProviderName {
    /// The Ed25519 backend's name.
    pub sig: &'static str,
    /// The X25519 backend's name.
    pub kx: &'static str,
    /// The AEAD backend's name.
    pub aead: &'static str,
}

impl ProviderName {
    /// Whether this is the combination spelled `text`: `sig+aead` (one curve backend
    /// for both) or `sig/kx+aead`.
    pub fn matches(&self, text: &str) -> bool {
        let Some((curves, aead)) = text.split_once('+') else {
            return false;
        };
        let (sig, kx) = curves.split_once('/').unwrap_or((curves, curves));
        sig == self.sig && kx == self.kx && aead == self.aead
    }
}

impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sig == self.kx {
            write!(f, "{}+{}", self.sig, self.aead)
        } else {
            write!(f, "{}/{}+{}", self.sig, self.kx, self.aead)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ProviderName;
    use alloc::string::ToString;

    #[test]
    fn names_are_short_when_one_backend_does_both_curves() {
        let same = ProviderName {
            sig: "dalek",
            kx: "dalek",
            aead: "chacha",
        };
        assert_eq!(same.to_string(), "dalek+chacha");
        assert!(same.matches("dalek+chacha"));
        assert!(same.matches("dalek/dalek+chacha"));
        assert!(!same.matches("dalek/compact+chacha"));
        let split = ProviderName {
            kx: "compact",
            ..same
        };
        assert_eq!(split.to_string(), "dalek/compact+chacha");
        assert!(split.matches("dalek/compact+chacha"));
        assert!(!split.matches("dalek+chacha"));
        assert!(!split.matches("dalek/compact"));
    }
}
