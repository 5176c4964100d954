//! Host benchmarks of every backend and provider combination.
//!
//! Benchmark ids are `<operation>/<implementation>`. In the same run, as baselines:
//! `<backend>-direct` calls the backend crate without provider-api (what the API
//! costs), `noise/snow-handshake` is snow's XK on the same suite with fixed
//! ephemerals (as ours), and `noise/primitive-floor` is the handshake's primitive
//! calls alone (the protocol's overhead). `cargo xtask bench` reads the results and
//! computes the ratios.

use std::hint::black_box;

use aes_gcm::aead::{AeadInOut, KeyInit};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use host_runner::{Entropy, HostSystem};
use ipc::ServiceId;
use provider_api::{
    AeadBackend, Bundle, HashAlgorithm, HashBackend, KeyAgreementBackend, NoiseAead, Provider,
    SignatureBackend, Suite,
};
use provider_select::backends::provider_aes_gcm::Aes256Gcm;
use provider_select::backends::provider_chacha::ChaCha20Poly1305;
use provider_select::backends::provider_compact::Compact;
use provider_select::backends::provider_dalek::Dalek;
use provider_select::backends::provider_hash::Blake2s;
use signature::{Signer, Verifier};

/// Runs every `bench-ops` workload of `P` under `<name>/<label>`, for the operations
/// `keep` selects.
fn ours<P: Provider, H: HashBackend>(c: &mut Criterion, label: &str, keep: impl Fn(&str) -> bool) {
    run(c, label, bench_ops::all::<P, H>(), keep);
}

/// The AEAD workloads of one backend, under `<operation>/<label>`.
fn aead_only<A: AeadBackend>(c: &mut Criterion, label: &str) {
    run(c, label, bench_ops::aead::<A>(), |_| true);
}

/// Benchmarks each workload `keep` selects as `<operation>/<label>`, AEAD sizes as
/// throughput.
fn run(
    c: &mut Criterion,
    label: &str,
    workloads: Vec<Box<dyn bench_ops::Workload>>,
    keep: impl Fn(&str) -> bool,
) {
    for mut workload in workloads {
        let name = workload.name();
        if !keep(name) {
            continue;
        }
        let mut group = c.benchmark_group(name);
        if let Some((size, _, _)) = bench_ops::AEAD_SIZES
            .iter()
            .find(|(_, seal, open)| *seal == name || *open == name)
        {
            group.throughput(Throughput::Bytes(*size as u64));
        }
        group.bench_function(label, |b| b.iter(|| workload.run()));
        group.finish();
    }
}

fn curve_direct(c: &mut Criterion) {
    let seed = [1u8; 32];
    let message = [0x42u8; 64];
    c.benchmark_group("ed25519/key-from-seed")
        .bench_function("dalek-direct", |b| {
            b.iter(|| black_box(ed25519_dalek::SigningKey::from_bytes(black_box(&seed))))
        });
    c.benchmark_group("ed25519/key-from-seed")
        .bench_function("compact-direct", |b| {
            b.iter(|| {
                black_box(ed25519_compact::KeyPair::from_seed(
                    ed25519_compact::Seed::new(black_box(seed)),
                ))
            })
        });
    let dalek = ed25519_dalek::SigningKey::from_bytes(&seed);
    let compact = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed));
    c.benchmark_group("ed25519/sign-64")
        .bench_function("dalek-direct", |b| {
            b.iter(|| black_box(dalek.sign(black_box(&message))))
        });
    c.benchmark_group("ed25519/sign-64")
        .bench_function("compact-direct", |b| {
            b.iter(|| black_box(compact.sk.sign(black_box(message), None)))
        });
    let dalek_signature = dalek.sign(&message);
    let dalek_public = dalek.verifying_key();
    c.benchmark_group("ed25519/verify-64")
        .bench_function("dalek-direct", |b| {
            b.iter(|| {
                black_box(
                    dalek_public
                        .verify(black_box(&message), &dalek_signature)
                        .is_ok(),
                )
            })
        });
    let compact_signature = compact.sk.sign(message, None);
    c.benchmark_group("ed25519/verify-64")
        .bench_function("compact-direct", |b| {
            b.iter(|| {
                black_box(
                    compact
                        .pk
                        .verify(black_box(message), &compact_signature)
                        .is_ok(),
                )
            })
        });
    // Decoding without provider-api's rule: dalek decompresses, compact validates
    // (canonical, not small order). The difference is the rule's remaining checks.
    let public = dalek_public.to_bytes();
    c.benchmark_group("ed25519/decode-key")
        .bench_function("dalek-direct", |b| {
            b.iter(|| {
                black_box(ed25519_dalek::VerifyingKey::from_bytes(black_box(&public)).is_ok())
            })
        });
    c.benchmark_group("ed25519/decode-key")
        .bench_function("compact-direct", |b| {
            b.iter(|| {
                black_box(
                    ed25519_compact::PublicKey::new(black_box(public))
                        .validate()
                        .is_ok(),
                )
            })
        });
    c.benchmark_group("x25519/key-pair")
        .bench_function("dalek-direct", |b| {
            b.iter(|| {
                let secret = x25519_dalek::StaticSecret::from(black_box([2u8; 32]));
                black_box((x25519_dalek::PublicKey::from(&secret), secret))
            })
        });
    c.benchmark_group("x25519/key-pair")
        .bench_function("compact-direct", |b| {
            b.iter(|| {
                black_box(
                    ed25519_compact::x25519::SecretKey::new(black_box([2u8; 32]))
                        .recover_public_key(),
                )
            })
        });
    let dalek_secret = x25519_dalek::StaticSecret::from([3u8; 32]);
    let dalek_peer = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([4u8; 32]));
    c.benchmark_group("x25519/dh")
        .bench_function("dalek-direct", |b| {
            b.iter(|| black_box(dalek_secret.diffie_hellman(black_box(&dalek_peer))))
        });
    let compact_secret = ed25519_compact::x25519::SecretKey::new([3u8; 32]);
    let compact_peer = ed25519_compact::x25519::SecretKey::new([4u8; 32])
        .recover_public_key()
        .unwrap();
    c.benchmark_group("x25519/dh")
        .bench_function("compact-direct", |b| {
            b.iter(|| black_box(compact_peer.dh(black_box(&compact_secret))))
        });
}

fn aead_direct<C: AeadInOut + KeyInit>(c: &mut Criterion, label: &str) {
    let cipher = C::new_from_slice(&[5u8; 32]).expect("32-byte key");
    let nonce = aes_gcm::aead::Nonce::<C>::try_from(&[1u8; 12][..]).expect("96-bit nonce");
    for (size, seal, open) in bench_ops::AEAD_SIZES {
        let mut buffer = vec![0u8; size];
        let mut group = c.benchmark_group(seal);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(label, |b| {
            b.iter(|| {
                black_box(
                    cipher
                        .encrypt_inout_detached(&nonce, b"ad", black_box(&mut buffer[..]).into())
                        .ok(),
                )
            })
        });
        group.finish();
        let mut sealed = vec![0u8; size];
        let tag = cipher
            .encrypt_inout_detached(&nonce, b"ad", (&mut sealed[..]).into())
            .expect("small");
        let mut scratch = vec![0u8; size];
        let mut group = c.benchmark_group(open);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(label, |b| {
            b.iter(|| {
                scratch.copy_from_slice(&sealed);
                black_box(
                    cipher
                        .decrypt_inout_detached(
                            &nonce,
                            b"ad",
                            black_box(&mut scratch[..]).into(),
                            &tag,
                        )
                        .is_ok(),
                )
            })
        });
        group.finish();
    }
}

/// snow's XK handshake on the same suite, both sides, with fixed ephemeral keys.
fn snow_handshake<A: NoiseAead, H: HashBackend>(c: &mut Criterion, label: &str) {
    let name = noise_name::<A, H>();
    let params: snow::params::NoiseParams = name.parse().expect("a snow suite");
    let builder = snow::Builder::new(params.clone());
    let initiator_keys = builder.generate_keypair().expect("keys");
    let responder_keys = snow::Builder::new(params.clone())
        .generate_keypair()
        .expect("keys");
    let mut buffer = [0u8; 256];
    let mut payload = [0u8; 256];
    c.benchmark_group("noise/snow-handshake")
        .bench_function(label, |b| {
            b.iter(|| {
                let mut initiator = snow::Builder::new(params.clone())
                    .prologue(b"dsoftbus/v1")
                    .unwrap()
                    .local_private_key(&initiator_keys.private)
                    .unwrap()
                    .remote_public_key(&responder_keys.public)
                    .unwrap()
                    .fixed_ephemeral_key_for_testing_only(&[6; 32])
                    .build_initiator()
                    .unwrap();
                let mut responder = snow::Builder::new(params.clone())
                    .prologue(b"dsoftbus/v1")
                    .unwrap()
                    .local_private_key(&responder_keys.private)
                    .unwrap()
                    .fixed_ephemeral_key_for_testing_only(&[7; 32])
                    .build_responder()
                    .unwrap();
                let n = initiator.write_message(&[], &mut buffer).unwrap();
                responder.read_message(&buffer[..n], &mut payload).unwrap();
                let n = responder.write_message(&[], &mut buffer).unwrap();
                initiator.read_message(&buffer[..n], &mut payload).unwrap();
                let n = initiator.write_message(&[], &mut buffer).unwrap();
                responder.read_message(&buffer[..n], &mut payload).unwrap();
                black_box((
                    initiator.into_transport_mode().unwrap(),
                    responder.into_transport_mode().unwrap(),
                ))
            })
        });
}

/// The suite's name, from the backends' own Noise names (no table to keep in step).
fn noise_name<A: NoiseAead, H: HashBackend>() -> String {
    format!("Noise_XK_25519_{}_{}", A::NOISE_NAME, H::NAME)
}

/// The device identity's two paths through the services on the host runner
/// (`bench_ops::identity`): IPC to rngd and statefs, the record store on a memory disk.
fn identity_paths<P: Provider>(c: &mut Criterion, label: &str) {
    let mut system = HostSystem::boot_identity::<P>(Entropy::Host);
    c.benchmark_group("service/first-boot")
        .bench_function(label, |b| {
            b.iter(|| {
                black_box(system.run_as(ServiceId::Selftest, |ep| async move {
                    bench_ops::identity::first_boot::<P, Blake2s, _>(&ep)
                        .await
                        .expect("first boot")
                }))
            })
        });
    c.benchmark_group("service/restore")
        .bench_function(label, |b| {
            b.iter(|| {
                black_box(system.run_as(ServiceId::Selftest, |ep| async move {
                    bench_ops::identity::restore::<P, Blake2s, _>(&ep)
                        .await
                        .expect("restore")
                }))
            })
        });
}

fn is_identity(name: &str) -> bool {
    name.starts_with("identity/")
}

fn is_signing(name: &str) -> bool {
    name.starts_with("ed25519/")
}

fn is_key_agreement(name: &str) -> bool {
    name.starts_with("x25519/")
}

fn is_aead(name: &str) -> bool {
    name.starts_with("aead/")
}

fn is_session(name: &str) -> bool {
    name.starts_with("noise/")
}

/// Every backend's primitives, labelled with its name: each Ed25519 backend's
/// operations, each X25519 backend's, each AEAD's (with the first backend of the other
/// axes, which the operations do not use); every combination's session paths; and
/// snow's handshake on every suite. All from provider-select's one table, so a backend
/// added there is measured with no line here.
macro_rules! every_backend {
    (
        $sig_axis:literal $sig_alias:ident [$sig0:ident $sig0_feature:literal => $sig0_ty:ty $(, $sig:ident $sig_feature:literal => $sig_ty:ty)* $(,)?];
        $kx_axis:literal $kx_alias:ident [$kx0:ident $kx0_feature:literal => $kx0_ty:ty $(, $kx:ident $kx_feature:literal => $kx_ty:ty)* $(,)?];
        $aead_axis:literal $aead_alias:ident [$aead0:ident $aead0_feature:literal => $aead0_ty:ty $(, $aead:ident $aead_feature:literal => $aead_ty:ty)* $(,)?];
        $hash_axis:literal $hash_alias:ident [$($hash:ident $hash_feature:literal => $hash_ty:ty),+ $(,)?];
    ) => {
        fn primitives(c: &mut Criterion) {
            type Sig0 = $sig0_ty;
            type Kx0 = $kx0_ty;
            type Aead0 = $aead0_ty;
            ours::<Suite<Sig0, Kx0, Aead0>, Blake2s>(c, <Sig0 as SignatureBackend>::NAME, is_signing);
            $(ours::<Suite<$sig_ty, Kx0, Aead0>, Blake2s>(c, <$sig_ty as SignatureBackend>::NAME, is_signing);)*
            ours::<Suite<Sig0, Kx0, Aead0>, Blake2s>(c, <Kx0 as KeyAgreementBackend>::NAME, is_key_agreement);
            $(ours::<Suite<Sig0, $kx_ty, Aead0>, Blake2s>(c, <$kx_ty as KeyAgreementBackend>::NAME, is_key_agreement);)*
            ours::<Suite<Sig0, Kx0, Aead0>, Blake2s>(c, <Aead0 as AeadBackend>::NAME, is_aead);
            $(ours::<Suite<Sig0, Kx0, $aead_ty>, Blake2s>(c, <$aead_ty as AeadBackend>::NAME, is_aead);)*
        }

        fn sessions(c: &mut Criterion) {
            sessions_by_kx::<$sig0_ty>(c);
            $(sessions_by_kx::<$sig_ty>(c);)*
        }

        fn sessions_by_kx<S: SignatureBackend + 'static>(c: &mut Criterion) {
            sessions_by_aead::<S, $kx0_ty>(c);
            $(sessions_by_aead::<S, $kx_ty>(c);)*
        }

        fn sessions_by_aead<S: SignatureBackend + 'static, K: KeyAgreementBackend + 'static>(
            c: &mut Criterion,
        ) {
            sessions_by_hash::<S, K, $aead0_ty>(c);
            $(sessions_by_hash::<S, K, $aead_ty>(c);)*
        }

        fn sessions_by_hash<
            S: SignatureBackend + 'static,
            K: KeyAgreementBackend + 'static,
            A: NoiseAead,
        >(
            c: &mut Criterion,
        ) {
            $(ours::<Suite<S, K, A>, $hash_ty>(c, &label::<S, K, A, $hash_ty>(), is_session);)+
        }

        /// snow's XK on each suite, labelled `<aead>[+<hash>]` (an AEAD backend's name:
        /// two backends of one algorithm get one row each, on the same suite).
        fn for_each_suite(c: &mut Criterion) {
            snow_by_hash::<$aead0_ty>(c);
            $(snow_by_hash::<$aead_ty>(c);)*
        }

        fn snow_by_hash<A: NoiseAead>(c: &mut Criterion) {
            $(snow_handshake::<A, $hash_ty>(c, &suite_label::<A, $hash_ty>());)+
        }
    };
}

provider_select::backend_table!(every_backend);

/// snow's row label for a suite: `<aead>[+<hash>]`.
fn suite_label<A: AeadBackend, H: HashBackend>() -> String {
    if H::ALGORITHM == HashAlgorithm::Blake2s256 {
        A::NAME.to_owned()
    } else {
        format!("{}+{}", A::NAME, H::ALGORITHM.short_name())
    }
}

fn benches(c: &mut Criterion) {
    // Primitives per backend of every axis, and the crates called directly.
    primitives(c);
    curve_direct(c);
    aead_direct::<chacha20poly1305::ChaCha20Poly1305>(c, "chacha-direct");
    aead_direct::<aes_gcm::Aes256Gcm>(c, "aes-gcm-direct");
    // An AEAD that is not Noise's: measured as a primitive only.
    aead_only::<provider_aes_gcm_siv::Aes256GcmSiv>(c, "aes-gcm-siv");
    aead_direct::<aes_gcm_siv::Aes256GcmSiv>(c, "aes-gcm-siv-direct");
    // Sessions on every combination, and snow on each suite.
    sessions(c);
    for_each_suite(c);
    // The identity paths per classic combination.
    ours::<Bundle<Dalek, ChaCha20Poly1305>, Blake2s>(c, "dalek+chacha", is_identity);
    ours::<Bundle<Dalek, Aes256Gcm>, Blake2s>(c, "dalek+aes-gcm", is_identity);
    ours::<Bundle<Compact, ChaCha20Poly1305>, Blake2s>(c, "compact+chacha", is_identity);
    ours::<Bundle<Compact, Aes256Gcm>, Blake2s>(c, "compact+aes-gcm", is_identity);
    identity_paths::<Bundle<Dalek, ChaCha20Poly1305>>(c, "dalek+chacha");
    identity_paths::<Bundle<Dalek, Aes256Gcm>>(c, "dalek+aes-gcm");
    identity_paths::<Bundle<Compact, ChaCha20Poly1305>>(c, "compact+chacha");
    identity_paths::<Bundle<Compact, Aes256Gcm>>(c, "compact+aes-gcm");
}

/// The combination's name as the image prints it: `<sig>[/<kx>]+<aead>[+<hash>]`.
fn label<S: SignatureBackend, K: KeyAgreementBackend, A: AeadBackend, H: HashBackend>() -> String {
    let mut name = String::from(S::NAME);
    if K::NAME != S::NAME {
        name = format!("{name}/{}", K::NAME);
    }
    name = format!("{name}+{}", A::NAME);
    if H::ALGORITHM != HashAlgorithm::Blake2s256 {
        name = format!("{name}+{}", H::ALGORITHM.short_name());
    }
    name
}

criterion_group!(providers, benches);
criterion_main!(providers);
