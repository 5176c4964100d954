//! Runs the conformance kit against every backend of the workspace: provider-select's
//! one table, so a backend added there is tested here with no line in this file (see
//! `docs/adding-a-backend.md`).

provider_select::backend_table!(provider_conformance::every_backend_tests);

// AES-256-GCM-SIV is an AEAD backend but not a Noise cipher, so no image selects it
// and it is not in the table: its suite, and its cross checks with the table's AEADs.
provider_conformance::aead_backend_tests!(aes_gcm_siv, provider_aes_gcm_siv::Aes256GcmSiv);
provider_conformance::cross_aead_tests!(
    aes_gcm_siv_aes_gcm,
    provider_aes_gcm_siv::Aes256GcmSiv,
    provider_select::backends::provider_aes_gcm::Aes256Gcm
);
provider_conformance::cross_aead_tests!(
    aes_gcm_aes_gcm_siv,
    provider_select::backends::provider_aes_gcm::Aes256Gcm,
    provider_aes_gcm_siv::Aes256GcmSiv
);

// The PAKE of pairing: one backend for every combination, not an axis.
provider_conformance::pake_backend_tests!(spake2plus, provider_spake2plus::Spake2Plus);
