//! Chooses the provider combination of an image from cargo features.
//!
//! | axis | features | backend crates |
//! |---|---|---|
//! | signing + key agreement | `sig-dalek`, `sig-compact` | `provider-dalek`, `provider-compact` |
//! | AEAD | `aead-chacha`, `aead-aes-gcm` | `provider-chacha`, `provider-aes-gcm` |
//!
//! With exactly one feature per axis, [`Selected`] is that combination. Images are
//! always built that way (`cargo xtask` passes `--no-default-features` and one feature
//! per axis).
//!
//! With both features of an axis enabled, as `--all-features` does, the choice is
//! still defined and never silent: the first backend of the row above wins (`dalek`,
//! then `chacha`), [`AMBIGUOUS`] is `true`, and [`compiled_in`] lists every backend
//! compiled in, so an image banner can say what it carries besides what it uses.
//! Code that wants a particular backend regardless of features names it directly
//! (`Bundle<provider_compact::Compact, provider_aes_gcm::Aes256Gcm>`): backends are
//! types, and several coexist in one build.
//!
//! With no feature on an axis, the build fails with a message naming the features.

#![no_std]
#![forbid(unsafe_code)]

use provider_api::{Bundle, ProviderName};

#[cfg(not(any(feature = "sig-dalek", feature = "sig-compact")))]
compile_error!("provider-select: enable a signing backend feature: `sig-dalek` or `sig-compact`");
#[cfg(not(any(feature = "aead-chacha", feature = "aead-aes-gcm")))]
compile_error!("provider-select: enable an AEAD backend feature: `aead-chacha` or `aead-aes-gcm`");

/// The selected signing + key-agreement backend.
#[cfg(feature = "sig-dalek")]
pub type SelectedCurve = provider_dalek::Dalek;
/// The selected signing + key-agreement backend.
#[cfg(all(feature = "sig-compact", not(feature = "sig-dalek")))]
pub type SelectedCurve = provider_compact::Compact;

/// The selected AEAD backend.
#[cfg(feature = "aead-chacha")]
pub type SelectedAead = provider_chacha::ChaCha20Poly1305;
/// The selected AEAD backend.
#[cfg(all(feature = "aead-aes-gcm", not(feature = "aead-chacha")))]
pub type SelectedAead = provider_aes_gcm::Aes256Gcm;

/// The selected provider combination.
pub type Selected = Bundle<SelectedCurve, SelectedAead>;

/// Whether an axis had both of its backends enabled, so that the precedence rule
/// decided [`Selected`].
pub const AMBIGUOUS: bool = (cfg!(feature = "sig-dalek") && cfg!(feature = "sig-compact"))
    || (cfg!(feature = "aead-chacha") && cfg!(feature = "aead-aes-gcm"));

/// The name of [`Selected`], such as `dalek+chacha`.
pub fn selected_name() -> ProviderName {
    <Selected as provider_api::Provider>::name()
}

/// Every backend compiled in, by name, in table order.
pub fn compiled_in() -> impl Iterator<Item = &'static str> {
    [
        (cfg!(feature = "sig-dalek"), "dalek"),
        (cfg!(feature = "sig-compact"), "compact"),
        (cfg!(feature = "aead-chacha"), "chacha"),
        (cfg!(feature = "aead-aes-gcm"), "aes-gcm"),
    ]
    .into_iter()
    .filter_map(|(enabled, name)| enabled.then_some(name))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    #[test]
    fn selected_name_is_compiled_in_and_ambiguity_is_reported() {
        let name = super::selected_name();
        let compiled: Vec<_> = super::compiled_in().collect();
        assert!(compiled.contains(&name.curve), "{name} not in {compiled:?}");
        assert!(compiled.contains(&name.aead), "{name} not in {compiled:?}");
        assert_eq!(super::AMBIGUOUS, compiled.len() > 2);
    }

    #[test]
    #[cfg(all(
        feature = "sig-dalek",
        feature = "sig-compact",
        feature = "aead-chacha",
        feature = "aead-aes-gcm"
    ))]
    fn all_features_choose_the_first_backend_of_each_axis() {
        assert_eq!(std::format!("{}", super::selected_name()), "dalek+chacha");
        const { assert!(super::AMBIGUOUS) };
    }
}
