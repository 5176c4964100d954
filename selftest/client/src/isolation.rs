//! The audit trail of the isolation phase (test image only): every fault of the
//! intruder's processes and every system call the kernel refused them is in the
//! journal, recorded by the kernel, exactly as many as the steps caused. The steps run
//! beside the ladder, so the check waits for the last record (the watchdog's, which
//! needs a second of the spinner's own time) before it counts.

use alloc::format;
use alloc::string::String;

use ipc::{Action, AuditFilter, Endpoint, ServiceId, Verdict};
use service_api::logd;

use crate::Checks;

/// The intruder's unknown system call number (kernel/intruder).
pub const UNKNOWN_CALL: u16 = 0x0bad;
/// The console system call's number (docs/syscalls.md).
const CONSOLE: u16 = 2;
/// The other calls that take a buffer: `call`, `receive`, `reply`, `audit`,
/// `bootargs`.
const CALL: u16 = 4;
const RECEIVE: u16 = 7;
const REPLY: u16 = 8;
const AUDIT: u16 = 9;
const BOOTARGS: u16 = 15;
/// `claim`.
const CLAIM: u16 = 10;
/// `dma_alloc`.
const DMA_ALLOC: u16 = 13;

/// Each record the steps leave, and how many.
const EXPECTED: [(Action, Verdict, u32); 15] = [
    // A read of a kernel address, a read of the victim's page.
    (Action::Fault { cause: 13 }, Verdict::Denied, 2),
    // A write to the victim's page, a write to its own code.
    (Action::Fault { cause: 15 }, Verdict::Denied, 2),
    // Executing its stack, executing its heap.
    (Action::Fault { cause: 12 }, Verdict::Denied, 2),
    // A floating-point instruction (the unit is off in user mode).
    (Action::Fault { cause: 2 }, Verdict::Denied, 1),
    (
        Action::Fault {
            cause: Action::WATCHDOG_CAUSE,
        },
        Verdict::Denied,
        1,
    ),
    // A kernel, a foreign, an unmapped, a wrapping and an oversized buffer.
    (Action::Syscall { number: CONSOLE }, Verdict::Rejected, 5),
    // The four again to each other call that takes a buffer.
    (Action::Syscall { number: CALL }, Verdict::Rejected, 4),
    (Action::Syscall { number: RECEIVE }, Verdict::Rejected, 4),
    (Action::Syscall { number: REPLY }, Verdict::Rejected, 4),
    (Action::Syscall { number: AUDIT }, Verdict::Rejected, 4),
    (Action::Syscall { number: BOOTARGS }, Verdict::Rejected, 4),
    (
        Action::Syscall {
            number: UNKNOWN_CALL,
        },
        Verdict::Rejected,
        1,
    ),
    // The entropy device's window: the kernel's capability decision, and the call.
    (
        Action::Claim(ipc::Capability::EntropyDevice),
        Verdict::Denied,
        1,
    ),
    (Action::Syscall { number: CLAIM }, Verdict::Rejected, 1),
    // DMA pages without a device window.
    (Action::Syscall { number: DMA_ALLOC }, Verdict::Rejected, 1),
];

/// How long the check waits for the steps' records, in guest milliseconds.
const WAIT_MS: u64 = 60_000;

/// The records to expect: [`EXPECTED`], and with `spinner` (`-append spin`: the kernel
/// runs a spinning process after the steps) one more of the watchdog's.
fn expected(spinner: bool) -> [u32; EXPECTED.len()] {
    EXPECTED.map(|(action, _, want)| match action {
        Action::Fault {
            cause: Action::WATCHDOG_CAUSE,
        } if spinner => want + 1,
        _ => want,
    })
}

pub(crate) async fn audit_records<E: Endpoint>(checks: &mut Checks<'_, E>, spinner: bool) {
    let ep = checks.ep;
    let expected = expected(spinner);
    let deadline = ep.uptime_ms() + WAIT_MS;
    let outcome = loop {
        match counts(ep).await {
            Ok(counts) if counts.iter().zip(expected).all(|(n, want)| *n >= want) => {
                break if counts == expected {
                    Ok(())
                } else {
                    Err(format!("more records than steps: {counts:?}"))
                };
            }
            Ok(counts) if ep.uptime_ms() > deadline => {
                break Err(format!(
                    "after {WAIT_MS} ms the journal holds {counts:?} of the intruder's records, want {expected:?}"
                ));
            }
            Ok(_) => service_api::pause(ep, 100).await,
            Err(why) => break Err(why),
        }
    };
    checks.check(markers::SELFTEST_ISOLATION_AUDIT_RECORDS, outcome);
}

async fn counts<E: Endpoint>(ep: &E) -> Result<[u32; EXPECTED.len()], String> {
    let mut counts = [0; EXPECTED.len()];
    for (count, (action, verdict, _)) in counts.iter_mut().zip(EXPECTED) {
        let filter = AuditFilter {
            origin: Some(ServiceId::Kernel),
            subject: Some(ServiceId::Intruder),
            action: Some(action),
            verdict: Some(verdict),
        };
        *count = logd::query(ep, &filter)
            .await
            .map_err(|e| format!("logd query failed: {e}"))?
            .matched;
    }
    Ok(counts)
}
