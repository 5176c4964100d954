//! The identity proofs on the host: the real services, policy and audit trail through
//! `kernel-core`, once per provider combination.

use host_runner::{Disks, Entropy, HostSystem, ImageHash};
use ipc::policy::SigningPurpose;
use ipc::{
    Action, AuditFilter, Endpoint, Frame, FrameKind, IpcError, Operation, ServiceId, Verdict,
};
use marker_contract::{Contract, Ladder};
use service_api::{ClientError, ServiceError, keystored, logd, rngd};

const CONTRACT: &str = include_str!("../../../../ladder/markers.toml");

/// Records in logd's journal matching (origin, subject, action, verdict).
async fn count<E: Endpoint>(
    ep: &E,
    origin: ServiceId,
    subject: ServiceId,
    action: Action,
    verdict: Verdict,
) -> u32 {
    let filter = AuditFilter {
        origin: Some(origin),
        subject: Some(subject),
        action: Some(action),
        verdict: Some(verdict),
    };
    logd::query(ep, &filter)
        .await
        .expect("logd answers")
        .matched
}

fn entropy_call() -> Action {
    Action::Call {
        service: ServiceId::Rngd,
        code: Operation::RngdGetEntropy.code(),
    }
}

/// Judges host console lines against the ladder (or a scenario), leaving out the
/// kernel's own markers, which only the riscv64 kernel prints, the isolation
/// phase's audit check, which counts the records of user-mode processes the host
/// runner does not have, and the structural checks of their address spaces.
fn judge(lines: &[String], scenario: Option<&str>) -> Result<(), String> {
    let contract = Contract::parse(CONTRACT).map_err(|e| e.to_string())?;
    let mut expectation = contract
        .expectation("full", scenario)
        .map_err(|e| e.to_string())?;
    expectation.required.retain(|(_, marker)| {
        marker.owner() != Some("KERNEL")
            && marker.id != "SELFTEST_ISOLATION_AUDIT_RECORDS"
            && !marker.id.starts_with("SELFTEST_STRUCTURE_")
    });
    let mut ladder = Ladder::new(expectation, Default::default());
    for line in lines {
        ladder.feed(line);
    }
    match ladder.verdict() {
        marker_contract::Verdict::Passed => Ok(()),
        _ => Err(format!(
            "{}\n{lines:#?}",
            ladder.explain("end of the host run")
        )),
    }
}

/// Deterministic test bytes, like the RNG_FILE the QEMU scenarios use.
fn file_bytes(seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..16 * 1024)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

macro_rules! identity_suite {
    ($name:ident, $provider:ty) => {
        identity_suite!($name, $provider, ImageHash::Blake2s);
    };
    ($name:ident, $provider:ty, $hash:expr) => {
        mod $name {
            use super::*;
            type P = $provider;

            /// The whole system on fresh disks, with the suite's hash.
            fn boot(entropy: Entropy) -> HostSystem {
                HostSystem::boot_hashed::<P>(entropy, Disks::random(), $hash)
            }

            #[test]
            fn test_reject_entropy_request_oversized() {
                let mut system = boot(Entropy::Host);
                let (too_large, max, records) =
                    system.run_as(ServiceId::Selftest, |ep| async move {
                        let too_large = rngd::get_entropy(&ep, 257).await.err();
                        let max = rngd::get_entropy(&ep, 256).await.map(|b| b.len());
                        let records = count(
                            &ep,
                            ServiceId::Rngd,
                            ServiceId::Selftest,
                            entropy_call(),
                            Verdict::Rejected,
                        )
                        .await;
                        (too_large, max, records)
                    });
                assert_eq!(
                    too_large,
                    Some(ClientError::Service(ServiceError::RequestTooLarge))
                );
                assert_eq!(
                    max,
                    Ok(256),
                    "the maximum itself is served, and rngd still serves"
                );
                assert_eq!(records, 1);
            }

            #[test]
            fn test_reject_device_key_private_export() {
                let mut system = boot(Entropy::Host);
                let (export, pubkey, records) =
                    system.run_as(ServiceId::Selftest, |ep| async move {
                        let export = keystored::export_private(&ep).await;
                        let pubkey = keystored::get_pubkey(&ep).await;
                        let action = Action::Call {
                            service: ServiceId::Keystored,
                            code: Operation::KeystoredExportPrivate.code(),
                        };
                        let records = count(
                            &ep,
                            ServiceId::Keystored,
                            ServiceId::Selftest,
                            action,
                            Verdict::Denied,
                        )
                        .await;
                        (export, pubkey, records)
                    });
                assert_eq!(
                    export,
                    Err(ClientError::Service(ServiceError::ExportForbidden))
                );
                assert!(pubkey.is_ok(), "keystored still serves after the refusal");
                assert_eq!(records, 1);
            }

            #[test]
            fn an_unprivileged_caller_is_denied_by_default_and_audited() {
                let mut system = boot(Entropy::Host);
                let (entropy, pubkey, sign) =
                    system.run_as(ServiceId::SelftestPeer, |ep| async move {
                        (
                            rngd::get_entropy(&ep, 32).await.err(),
                            keystored::get_pubkey(&ep).await.err(),
                            keystored::sign(&ep, SigningPurpose::NoiseStaticBinding, &[0; 32])
                                .await
                                .err(),
                        )
                    });
                let denied = Some(ClientError::Ipc(IpcError::Denied));
                assert_eq!((entropy, pubkey, sign), (denied, denied, denied));
                let records = system.run_as(ServiceId::Selftest, |ep| async move {
                    count(
                        &ep,
                        ServiceId::Kernel,
                        ServiceId::SelftestPeer,
                        entropy_call(),
                        Verdict::Denied,
                    )
                    .await
                });
                assert_eq!(records, 1);
            }

            #[test]
            fn a_zero_length_request_is_rejected_and_rngd_keeps_serving() {
                let mut system = boot(Entropy::Host);
                let (empty, after, records) = system.run_as(ServiceId::Selftest, |ep| async move {
                    let empty = rngd::get_entropy(&ep, 0).await.err();
                    let after = rngd::get_entropy(&ep, 32).await.map(|b| b.len());
                    let records = count(
                        &ep,
                        ServiceId::Rngd,
                        ServiceId::Selftest,
                        entropy_call(),
                        Verdict::Rejected,
                    )
                    .await;
                    (empty, after, records)
                });
                assert_eq!(
                    empty,
                    Some(ClientError::Service(ServiceError::EmptyRequest))
                );
                assert_eq!(after, Ok(32));
                assert_eq!(records, 1);
            }

            #[test]
            fn truncated_and_malformed_frames_and_unknown_opcodes_are_answered_and_audited() {
                let mut system = boot(Entropy::Host);
                let results = system.run_as(ServiceId::Selftest, |ep| async move {
                    let good = || async { rngd::get_entropy(&ep, 8).await.map(|b| b.len()) };
                    let truncated = ep.call(ServiceId::Rngd, &[1, 1, 1, 2]).await.err();
                    let after_truncated = good().await;
                    let bad_payload = Frame::request(Operation::RngdGetEntropy, &[1, 2, 3])
                        .encode()
                        .unwrap();
                    let malformed = service_api::split_reply(
                        &ep.call(ServiceId::Rngd, &bad_payload).await.unwrap(),
                    )
                    .err();
                    let after_malformed = good().await;
                    let unknown = Frame {
                        kind: FrameKind::Request,
                        code: 0x7777,
                        payload: &[],
                    }
                    .encode()
                    .unwrap();
                    let unknown = ep.call(ServiceId::Rngd, &unknown).await.err();
                    let after_unknown = good().await;
                    let kernel_rejected = count(
                        &ep,
                        ServiceId::Kernel,
                        ServiceId::Selftest,
                        Action::MalformedFrame {
                            service: ServiceId::Rngd,
                        },
                        Verdict::Rejected,
                    )
                    .await;
                    let rngd_rejected = count(
                        &ep,
                        ServiceId::Rngd,
                        ServiceId::Selftest,
                        entropy_call(),
                        Verdict::Rejected,
                    )
                    .await;
                    let unknown_denied = count(
                        &ep,
                        ServiceId::Kernel,
                        ServiceId::Selftest,
                        Action::Call {
                            service: ServiceId::Rngd,
                            code: 0x7777,
                        },
                        Verdict::Denied,
                    )
                    .await;
                    (
                        truncated,
                        after_truncated,
                        malformed,
                        after_malformed,
                        unknown,
                        after_unknown,
                        kernel_rejected,
                        rngd_rejected,
                        unknown_denied,
                    )
                });
                let (
                    truncated,
                    a,
                    malformed,
                    b,
                    unknown,
                    c,
                    kernel_rejected,
                    rngd_rejected,
                    unknown_denied,
                ) = results;
                assert!(
                    matches!(truncated, Some(IpcError::MalformedFrame(_))),
                    "{truncated:?}"
                );
                assert_eq!(
                    malformed,
                    Some(ClientError::Service(ServiceError::MalformedRequest))
                );
                assert_eq!(
                    unknown,
                    Some(IpcError::Denied),
                    "an unknown opcode is in no rule"
                );
                assert_eq!(
                    (a, b, c),
                    (Ok(8), Ok(8), Ok(8)),
                    "a good request is served after each"
                );
                assert_eq!((kernel_rejected, rngd_rejected, unknown_denied), (1, 1, 1));
            }

            #[test]
            fn keystored_signs_only_bindings_for_dsoftbusd() {
                let mut system =
                    HostSystem::boot_identity_hashed::<P>(Entropy::Host, Disks::random(), $hash);
                let static_key = [0x42; 32];
                let (public, signature) =
                    system.run_as(ServiceId::Dsoftbusd, move |ep| async move {
                        (
                            keystored::get_pubkey(&ep).await.unwrap(),
                            keystored::sign(&ep, SigningPurpose::NoiseStaticBinding, &static_key)
                                .await
                                .unwrap(),
                        )
                    });
                let key =
                    provider_api::VerifyingKey::<<P as provider_api::Provider>::Sig>::from_bytes(
                        &public,
                    )
                    .unwrap();
                let signature = provider_api::Signature::from_bytes(&signature);
                let binding = [keystored::NOISE_BINDING_PREFIX, &static_key[..]].concat();
                key.verify(&binding, &signature).unwrap();
                assert!(
                    key.verify(&static_key, &signature).is_err(),
                    "only the binding"
                );
                // Anything else dsoftbusd sends through the kernel is refused.
                let refused = system.run_as(ServiceId::Dsoftbusd, |ep| async move {
                    let mut outcomes = Vec::new();
                    for payload in [
                        b"a message of my choosing".to_vec(),
                        [&9u16.to_le_bytes()[..], &[0; 32]].concat(),
                        keystored::encode_sign(SigningPurpose::NoiseStaticBinding, &[0; 31]),
                        keystored::encode_sign(SigningPurpose::NoiseStaticBinding, &[0; 1024]),
                    ] {
                        outcomes.push(
                            service_api::call(&ep, Operation::KeystoredSign, &payload)
                                .await
                                .err(),
                        );
                    }
                    outcomes
                });
                assert_eq!(
                    refused,
                    [
                        Some(ClientError::Service(ServiceError::PurposeDenied)),
                        Some(ClientError::Service(ServiceError::PurposeDenied)),
                        Some(ClientError::Service(ServiceError::MalformedRequest)),
                        Some(ClientError::Service(ServiceError::MalformedRequest)),
                    ]
                );
            }

            #[test]
            fn the_selftest_client_passes_the_ladder_on_the_host() {
                let mut system = boot(Entropy::Host);
                assert_eq!(
                    system.run_selftest::<P>(),
                    selftest::Outcome::Passed,
                    "{:#?}",
                    system.console()
                );
                judge(&system.console(), None).unwrap();
            }

            #[test]
            fn without_a_device_everything_fails_closed() {
                let mut system = boot(Entropy::Absent);
                assert_eq!(
                    system.run_selftest::<P>(),
                    selftest::Outcome::FailedClosed,
                    "{:#?}",
                    system.console()
                );
                judge(&system.console(), Some("no-rng")).unwrap();
            }

            #[test]
            fn a_stuck_source_trips_the_health_tests_and_there_is_no_key() {
                let mut system = boot(Entropy::Bytes(vec![0; 4096]));
                assert_eq!(
                    system.run_selftest::<P>(),
                    selftest::Outcome::FailedClosed,
                    "{:#?}",
                    system.console()
                );
                judge(&system.console(), Some("rng-health-failure")).unwrap();
            }

            #[test]
            fn the_same_entropy_gives_the_same_key_and_other_entropy_another() {
                let key = |seed| {
                    let mut system = boot(Entropy::Bytes(file_bytes(seed)));
                    system.run_as(ServiceId::Selftest, |ep| async move {
                        keystored::get_pubkey(&ep).await.unwrap()
                    })
                };
                assert_eq!(key(1), key(1));
                assert_ne!(key(1), key(2));
            }
        }
    };
}

use provider_api::{Bundle, Suite};
use provider_select::backends::provider_aes_gcm::Aes256Gcm;
use provider_select::backends::provider_chacha::ChaCha20Poly1305;
use provider_select::backends::provider_compact::Compact;
use provider_select::backends::provider_dalek::Dalek;

identity_suite!(dalek_chacha, Bundle<Dalek, ChaCha20Poly1305>);
identity_suite!(dalek_aes_gcm, Bundle<Dalek, Aes256Gcm>);
identity_suite!(compact_chacha, Bundle<Compact, ChaCha20Poly1305>);
identity_suite!(compact_aes_gcm, Bundle<Compact, Aes256Gcm>);
// The hash axis: the same suite with SHA-256 as the image's hash (Noise, sealing, the
// trust store's tag), on a mixed-curve combination and a classic one.
identity_suite!(
    dalek_compact_chacha_sha256,
    Suite<Dalek, Compact, ChaCha20Poly1305>,
    ImageHash::Sha256
);
identity_suite!(
    compact_aes_gcm_sha256,
    Bundle<Compact, Aes256Gcm>,
    ImageHash::Sha256
);

#[test]
fn every_backend_derives_the_same_device_key_from_the_same_entropy() {
    let key = |system: &mut HostSystem| {
        system.run_as(ServiceId::Selftest, |ep| async move {
            keystored::get_pubkey(&ep).await.unwrap()
        })
    };
    let dalek = key(&mut HostSystem::boot::<Bundle<Dalek, ChaCha20Poly1305>>(
        Entropy::Bytes(file_bytes(3)),
    ));
    let compact = key(&mut HostSystem::boot::<Bundle<Compact, Aes256Gcm>>(
        Entropy::Bytes(file_bytes(3)),
    ));
    assert_eq!(dalek, compact);
}
