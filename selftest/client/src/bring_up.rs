//! The bring-up checks: IPC, frame validation, the policy gate, the capability
//! manifest, and the audit trail of all three.

use alloc::format;
use alloc::string::String;

use ipc::frame::FrameError;
use ipc::{
    Action, AuditFilter, Capability, CapabilityError, Endpoint, Frame, IpcError, Operation,
    ServiceId, Verdict,
};
use service_api::logd;

use crate::Checks;

pub(crate) async fn run<E: Endpoint>(checks: &mut Checks<'_, E>) {
    let ep = checks.ep;

    // A request goes to logd and a well-formed answer comes back. The kernel's record
    // of this very call is in the journal by the time logd answers.
    let round_trip = match logd::query(ep, &AuditFilter::default()).await {
        Ok(reply) if reply.held > 0 => Ok(()),
        Ok(reply) => Err(format!("logd answered but holds no record: {reply:?}")),
        Err(error) => Err(format!("logd query failed: {error}")),
    };
    checks.check(markers::SELFTEST_IPC_ROUND_TRIP, round_trip);

    // A truncated frame is refused by the kernel, and logd still serves afterwards.
    let truncated = ep.call(ServiceId::Logd, &[1, 1, 1]).await;
    let malformed = match truncated {
        Err(IpcError::MalformedFrame(FrameError::Truncated { len: 3 })) => {
            logd::query(ep, &AuditFilter::default())
                .await
                .map(|_| ())
                .map_err(|e| format!("logd did not serve after the malformed frame: {e}"))
        }
        other => Err(format!("a 3-byte frame got {other:?}")),
    };
    checks.check(markers::SELFTEST_MALFORMED_FRAME_REJECTED, malformed);
    checks.structure(markers::SELFTEST_STRUCTURE_BRING_UP);

    // Deny by default: no rule names (selftest, logd, GET_ENTROPY), an operation that
    // is not even logd's. The kernel refuses it before logd sees it.
    let denied = match Frame::request(Operation::RngdGetEntropy, &[32, 0]).encode() {
        Ok(frame) => match ep.call(ServiceId::Logd, &frame).await {
            Err(IpcError::Denied) => Ok(()),
            other => Err(format!("GET_ENTROPY sent to logd got {other:?}")),
        },
        Err(error) => Err(format!("cannot encode the request: {error}")),
    };
    checks.check(markers::SELFTEST_POLICY_DENY, denied);

    // The selftest holds no device capability: the entropy device is rngd's alone.
    let capability = match ep.claim_entropy_device() {
        Err(CapabilityError::NotGranted) => Ok(()),
        Err(other) => Err(format!("claim refused for the wrong reason: {other}")),
        Ok(_) => Err(String::from(
            "the entropy device was handed to the selftest",
        )),
    };
    checks.check(markers::SELFTEST_DEVICE_CAPABILITY_DENIED, capability);

    // Each of those decisions is in the journal, recorded by the kernel.
    let expected = [
        (
            Action::MalformedFrame {
                service: ServiceId::Logd,
            },
            Verdict::Rejected,
        ),
        (
            Action::Call {
                service: ServiceId::Logd,
                code: Operation::RngdGetEntropy.code(),
            },
            Verdict::Denied,
        ),
        (Action::Claim(Capability::EntropyDevice), Verdict::Denied),
        (
            Action::Call {
                service: ServiceId::Logd,
                code: Operation::LogdQuery.code(),
            },
            Verdict::Allowed,
        ),
    ];
    let mut audit = Ok(());
    for (action, verdict) in expected {
        let filter = AuditFilter {
            origin: Some(ServiceId::Kernel),
            subject: Some(ServiceId::Selftest),
            action: Some(action),
            verdict: Some(verdict),
        };
        match logd::query(ep, &filter).await {
            Ok(reply) if reply.matched > 0 => {}
            Ok(_) => audit = Err(format!("no record of {action:?} {verdict:?}")),
            Err(error) => audit = Err(format!("logd query failed: {error}")),
        }
    }
    checks.check(markers::SELFTEST_AUDIT_RECORDS, audit);
    checks.structure(markers::SELFTEST_STRUCTURE_POLICY);
}

/// The kernel's stream lost none of its own records before logd took them: every
/// decision of the run is in the journal. (Task records lost to a task's own quota,
/// and records the journal retired for space, are counted apart and not a failure.)
pub(crate) async fn audit_trail_complete<E: Endpoint>(checks: &mut Checks<'_, E>) {
    let outcome = match logd::query(checks.ep, &AuditFilter::default()).await {
        Ok(reply) if reply.kernel_lost == 0 => Ok(()),
        Ok(reply) => Err(format!(
            "the kernel's stream lost {} of its records before logd took them",
            reply.kernel_lost
        )),
        Err(error) => Err(format!("logd query failed: {error}")),
    };
    checks.check(markers::SELFTEST_AUDIT_TRAIL_COMPLETE, outcome);
}
