//! The identity checks: rngd's entropy and limits, the device key, keystored's
//! refusals, the policy on SIGN, and the audit trail of all of it. Without entropy
//! they prove instead that rngd and keystored fail closed.

use alloc::format;
use alloc::string::String;

use ipc::policy::SigningPurpose;
use ipc::{
    Action, AuditFilter, Capability, CapabilityError, Endpoint, IpcError, Operation, ServiceId,
    Verdict,
};
use provider_api::{Provider, VerifyingKey};
use service_api::{ClientError, ServiceError, keystored, logd, rngd, statefs};

use crate::Checks;

/// Whether the system has a device key.
pub(crate) enum Mode {
    /// rngd served entropy and keystored has a key.
    Keyed,
    /// There is no entropy, and rngd and keystored both refused as they must.
    FailedClosed,
}

pub(crate) async fn run<P: Provider, E: Endpoint>(checks: &mut Checks<'_, E>) -> Mode {
    let ep = checks.ep;
    // The key first: keystored answers once it has made or restored its key, so its
    // draws come before this task's, and under a given entropy source (RNG_FILE) the
    // device key does not depend on which process the scheduler ran first.
    let pubkey = keystored::get_pubkey(ep).await;
    let entropy = rngd::get_entropy(ep, 32).await;
    let no_entropy = matches!(
        entropy,
        Err(ClientError::Service(
            ServiceError::Unavailable | ServiceError::HealthTestFailed
        ))
    );
    let no_key = pubkey == Err(ClientError::Service(ServiceError::NoKey));
    match entropy {
        Ok(first) if !no_key => {
            keyed::<P, E>(checks, &first).await;
            Mode::Keyed
        }
        _ if no_entropy || no_key => {
            let outcome = fail_closed(ep, no_entropy, no_key).await;
            checks.check(markers::SELFTEST_IDENTITY_FAIL_CLOSED, outcome);
            Mode::FailedClosed
        }
        other => {
            checks.check(
                markers::SELFTEST_RNG_ENTROPY,
                Err(format!("GET_ENTROPY: {other:?}, GET_PUBKEY: {pubkey:?}")),
            );
            Mode::Keyed
        }
    }
}

async fn keyed<P: Provider, E: Endpoint>(checks: &mut Checks<'_, E>, first: &[u8]) {
    let ep = checks.ep;

    // Two draws of 32 bytes: full length (checked by the client), different, not zero.
    let entropy = match rngd::get_entropy(ep, 32).await {
        Ok(second) if second.as_slice() == first => {
            Err(String::from("two draws returned the same bytes"))
        }
        Ok(_) if first.iter().all(|&b| b == 0) => Err(String::from("a draw was all zero")),
        Ok(_) => Ok(()),
        Err(error) => Err(format!("second GET_ENTROPY failed: {error}")),
    };
    checks.check(markers::SELFTEST_RNG_ENTROPY, entropy);

    // The device public key decodes as an Ed25519 point on this image's backend.
    let pubkey = match keystored::get_pubkey(ep).await {
        Ok(key) => VerifyingKey::<P::Sig>::from_bytes(&key)
            .map(|_| ())
            .map_err(|e| format!("the device public key does not decode: {e}")),
        Err(error) => Err(format!("GET_PUBKEY failed: {error}")),
    };
    checks.check(markers::SELFTEST_DEVICE_KEY_PUBKEY, pubkey);

    // Out-of-bounds sizes get their own errors, and rngd serves a good request after.
    let too_large = rngd::get_entropy(ep, 257).await.err();
    let empty = rngd::get_entropy(ep, 0).await.err();
    let after = rngd::get_entropy(ep, 1).await.map(|b| b.len());
    let bounds = match (too_large, empty, after) {
        (
            Some(ClientError::Service(ServiceError::RequestTooLarge)),
            Some(ClientError::Service(ServiceError::EmptyRequest)),
            Ok(1),
        ) => Ok(()),
        other => Err(format!("257, 0 and then 1 byte got {other:?}")),
    };
    checks.check(markers::SELFTEST_ENTROPY_OVERSIZED_REJECTED, bounds);

    // Asking for the private key reaches keystored, which refuses with its own error.
    let export = match keystored::export_private(ep).await {
        Err(ref error) if keystored::is_export_refusal(error) => Ok(()),
        other => Err(format!("EXPORT_PRIVATE got {other:?}")),
    };
    checks.check(markers::SELFTEST_PRIVATE_EXPORT_REJECTED, export);

    // SIGN is dsoftbusd's alone: the kernel refuses the selftest.
    let sign = match keystored::sign(ep, SigningPurpose::NoiseStaticBinding, &[0; 32]).await {
        Err(ClientError::Ipc(IpcError::Denied)) => Ok(()),
        other => Err(format!("SIGN by the selftest got {other:?}")),
    };
    checks.check(markers::SELFTEST_UNPRIVILEGED_DENIED, sign);

    checks.check(
        markers::SELFTEST_STATEFS_ISOLATED,
        statefs_namespace(ep).await,
    );

    // The disks are statefs's and keystored's: the selftest can claim neither.
    let disks = [Capability::StateDisk, Capability::OtpDisk].map(|disk| ep.claim_disk(disk).err());
    let disks = match disks {
        [
            Some(CapabilityError::NotGranted),
            Some(CapabilityError::NotGranted),
        ] => Ok(()),
        other => Err(format!(
            "claims of the state and OTP disks got {other:?} (None: handed out)"
        )),
    };
    checks.check(markers::SELFTEST_DISK_CAPABILITIES_DENIED, disks);

    let entropy_call = Action::Call {
        service: ServiceId::Rngd,
        code: Operation::RngdGetEntropy.code(),
    };
    let expected: [(ServiceId, ServiceId, Action, Verdict, u32); 5] = [
        (
            ServiceId::Kernel,
            ServiceId::Rngd,
            Action::Claim(Capability::EntropyDevice),
            Verdict::Allowed,
            1,
        ),
        // keystored read its sealed record from statefs (on every boot: a first boot
        // also draws from rngd, a restore does not need it).
        (
            ServiceId::Statefs,
            ServiceId::Keystored,
            Action::Call {
                service: ServiceId::Statefs,
                code: Operation::StatefsGet.code(),
            },
            Verdict::Allowed,
            1,
        ),
        (
            ServiceId::Rngd,
            ServiceId::Selftest,
            entropy_call,
            Verdict::Rejected,
            2,
        ),
        (
            ServiceId::Keystored,
            ServiceId::Selftest,
            Action::Call {
                service: ServiceId::Keystored,
                code: Operation::KeystoredExportPrivate.code(),
            },
            Verdict::Denied,
            1,
        ),
        (
            ServiceId::Kernel,
            ServiceId::Selftest,
            Action::Call {
                service: ServiceId::Keystored,
                code: Operation::KeystoredSign.code(),
            },
            Verdict::Denied,
            1,
        ),
    ];
    let audit = audited(ep, &expected).await;
    checks.check(markers::SELFTEST_IDENTITY_AUDIT_RECORDS, audit);
}

/// The selftest's records are its own: its record 1 is not keystored's record 1 (the
/// sealed device key), it round trips, it is deleted, and an oversized record is
/// refused.
async fn statefs_namespace<E: Endpoint>(ep: &E) -> Result<(), String> {
    let mine = b"selftest record, not a sealed key";
    statefs::put(ep, 1, mine)
        .await
        .map_err(|e| format!("PUT: {e}"))?;
    match statefs::get(ep, 1).await {
        Ok(back) if back.as_slice() == mine => {}
        other => return Err(format!("GET of its own record 1 got {other:?}")),
    }
    statefs::delete(ep, 1)
        .await
        .map_err(|e| format!("DELETE: {e}"))?;
    match statefs::get(ep, 1).await {
        Err(ClientError::Service(ServiceError::NotFound)) => {}
        other => return Err(format!("GET after DELETE got {other:?}")),
    }
    match statefs::put(ep, 2, &[0; statefs::MAX_RECORD + 1]).await {
        Err(ClientError::Ipc(_) | ClientError::Service(ServiceError::RequestTooLarge)) => Ok(()),
        other => Err(format!("an oversized PUT got {other:?}")),
    }
}

/// Without entropy or without a device key: keystored refuses what it cannot do
/// (no key: `NoKey`), still refuses export with its own error, and each service that
/// closed recorded why. rngd may be healthy (keystored failed on its disks), and
/// keystored may have restored its key without rngd.
async fn fail_closed<E: Endpoint>(ep: &E, no_entropy: bool, no_key: bool) -> Result<(), String> {
    if no_key {
        match keystored::get_pubkey(ep).await {
            Err(ClientError::Service(ServiceError::NoKey)) => {}
            other => return Err(format!("GET_PUBKEY without a key got {other:?}")),
        }
    }
    match keystored::export_private(ep).await {
        Err(ref error) if keystored::is_export_refusal(error) => {}
        other => return Err(format!("EXPORT_PRIVATE got {other:?}")),
    }
    let health = |service| (service, service, Action::Health, Verdict::Failed, 1);
    let mut expected = alloc::vec::Vec::new();
    if no_entropy {
        expected.push(health(ServiceId::Rngd));
    }
    if no_key {
        expected.push(health(ServiceId::Keystored));
    }
    audited(ep, &expected).await
}

/// Checks that logd holds at least `count` records of each (origin, subject, action,
/// verdict).
async fn audited<E: Endpoint>(
    ep: &E,
    expected: &[(ServiceId, ServiceId, Action, Verdict, u32)],
) -> Result<(), String> {
    for &(origin, subject, action, verdict, count) in expected {
        let filter = AuditFilter {
            origin: Some(origin),
            subject: Some(subject),
            action: Some(action),
            verdict: Some(verdict),
        };
        match logd::query(ep, &filter).await {
            Ok(reply) if reply.matched >= count => {}
            Ok(reply) => {
                return Err(format!(
                    "{} records of {origin} on {subject} {action:?} {verdict:?}, want {count}",
                    reply.matched
                ));
            }
            Err(error) => return Err(format!("logd query failed: {error}")),
        }
    }
    Ok(())
}
