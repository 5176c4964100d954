//! Runs the conformance kit against every backend of the workspace.
//!
//! Adding a backend is one line here (see `docs/adding-a-backend.md`).

provider_conformance::curve_backend_tests!(dalek, provider_dalek::Dalek);
provider_conformance::curve_backend_tests!(compact, provider_compact::Compact);

provider_conformance::aead_backend_tests!(chacha, provider_chacha::ChaCha20Poly1305);
provider_conformance::aead_backend_tests!(aes_gcm, provider_aes_gcm::Aes256Gcm);
provider_conformance::aead_backend_tests!(aes_gcm_siv, provider_aes_gcm_siv::Aes256GcmSiv);

provider_conformance::cross_curve_tests!(
    dalek_compact,
    provider_dalek::Dalek,
    provider_compact::Compact
);
provider_conformance::cross_curve_tests!(
    compact_dalek,
    provider_compact::Compact,
    provider_dalek::Dalek
);

provider_conformance::cross_aead_tests!(
    chacha_aes_gcm,
    provider_chacha::ChaCha20Poly1305,
    provider_aes_gcm::Aes256Gcm
);
provider_conformance::cross_aead_tests!(
    aes_gcm_chacha,
    provider_aes_gcm::Aes256Gcm,
    provider_chacha::ChaCha20Poly1305
);

provider_conformance::cross_aead_tests!(
    aes_gcm_siv_aes_gcm,
    provider_aes_gcm_siv::Aes256GcmSiv,
    provider_aes_gcm::Aes256Gcm
);
provider_conformance::cross_aead_tests!(
    aes_gcm_aes_gcm_siv,
    provider_aes_gcm::Aes256Gcm,
    provider_aes_gcm_siv::Aes256GcmSiv
);

provider_conformance::hash_backend_tests!(blake2s, provider_hash::Blake2s);
provider_conformance::hash_backend_tests!(sha256, provider_hash::Sha256);
