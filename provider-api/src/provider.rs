//! Provider bundles: one signing + key-agreement backend and one AEAD backend.
//!
//! Services take a [`Provider`] as a generic parameter, so the whole crypto choice of an
//! image is one type, and two providers can coexist in one program (the cross-backend
//! tests and the benchmarks do exactly that). [`Bundle`] makes a provider out of any
//! pair of backends.

use core::fmt;
use core::marker::PhantomData;

use crate::cipher::AeadBackend;
use crate::key_agreement::KeyAgreementBackend;
use crate::signing::SignatureBackend;

/// A backend for the Curve25519 family: Ed25519 signatures and X25519 key agreement.
pub trait CurveBackend: SignatureBackend + KeyAgreementBackend + 'static {
    /// A short name for reports and banners, such as `dalek` or `compact`.
    const NAME: &'static str;
}

/// A complete choice of cryptography for a service or an image.
pub trait Provider: 'static {
    /// Ed25519 and X25519.
    type Curve: CurveBackend;
    /// The AEAD.
    type Aead: AeadBackend;

    /// The readable name of the combination, such as `dalek+chacha`.
    fn name() -> ProviderName {
        ProviderName {
            curve: <Self::Curve as CurveBackend>::NAME,
            aead: <Self::Aead as AeadBackend>::NAME,
        }
    }
}

/// The provider made of curve backend `C` and AEAD backend `A`. Never instantiated:
/// it exists only as a type.
pub struct Bundle<C, A>(PhantomData<fn() -> (C, A)>, core::convert::Infallible);

impl<C: CurveBackend, A: AeadBackend> Provider for Bundle<C, A> {
    type Curve = C;
    type Aead = A;
}

/// The name of a provider combination: `<curve>+<aead>`, for example `dalek+chacha`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProviderName {
    /// The curve backend's name.
    pub curve: &'static str,
    /// The AEAD backend's name.
    pub aead: &'static str,
}

impl ProviderName {
    /// Whether this is the combination spelled `text` (`curve+aead`).
    pub fn matches(&self, text: &str) -> bool {
        text.split_once('+')
            .is_some_and(|(curve, aead)| curve == self.curve && aead == self.aead)
    }
}

impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.curve, self.aead)
    }
}
