//! The selftest client: the image's main task.
//!
//! Each check does the real thing through the same endpoint any task has, and prints
//! its marker only when the outcome is the expected one; otherwise it prints
//! `FAIL <marker>: <why>` (a failure pattern of the ladder) and the run fails. The
//! order of the checks is the order of the ladder in `ladder/markers.toml`.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod bring_up;
mod dsoftbus;
pub mod guest_bench;
mod identity;
pub mod image;
mod isolation;
pub mod remote;
pub mod soak;
pub mod supervision;

use alloc::format;
use alloc::string::String;

use ipc::Endpoint;
use markers::Marker;
use provider_api::{HashBackend, Provider};

/// How the selftest ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every check passed.
    Passed,
    /// There is no entropy, and every service proved it fails closed: the expected
    /// outcome of the `no-rng` and `rng-health-failure` scenarios, not a healthy system.
    FailedClosed,
    /// A check failed.
    Failed,
}

/// Runs every check on provider `P` (and hash `H` for the Noise sessions) and
/// reports the outcome.
pub async fn run<P: Provider, H: HashBackend, E: Endpoint>(ep: &E) -> Outcome {
    run_checks::<P, H, E>(ep, None, None).await
}

/// [`run`], plus the audit trail of the kernel's isolation phase: the test image's,
/// where the intruder runs in user mode (the host runner has no user mode). `spinner`:
/// the kernel also runs a spinning process after the phase's steps (`-append spin`).
/// `structure` runs the kernel's structural check over every live address space (no
/// page writable and executable, no writable frame in two spaces, no device window
/// outside its holder): at the end of each phase, each a marker.
pub async fn run_in_image<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    spinner: bool,
    structure: fn() -> Result<(), String>,
) -> Outcome {
    run_checks::<P, H, E>(ep, Some(spinner), Some(structure)).await
}

/// `isolation`: check the isolation phase's audit trail, with or without the spinner.
async fn run_checks<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    isolation: Option<bool>,
    structure: Option<fn() -> Result<(), String>>,
) -> Outcome {
    let mut checks = Checks {
        ep,
        failures: 0,
        structure,
    };
    bring_up::run(&mut checks).await;
    let mode = identity::run::<P, E>(&mut checks).await;
    checks.structure(markers::SELFTEST_STRUCTURE_IDENTITY);
    if let identity::Mode::Keyed = mode {
        dsoftbus::run::<P, H, E>(&mut checks).await;
        checks.structure(markers::SELFTEST_STRUCTURE_DSOFTBUS);
    }
    if let Some(spinner) = isolation {
        isolation::audit_records(&mut checks, spinner).await;
    }
    bring_up::audit_trail_complete(&mut checks).await;
    checks.structure(markers::SELFTEST_STRUCTURE_FULL);
    checks.finish(mode)
}

/// Prints each check's marker or failure, and counts failures.
pub(crate) struct Checks<'e, E: Endpoint> {
    pub(crate) ep: &'e E,
    failures: u32,
    /// The kernel's structural check, where there is a kernel with address spaces.
    structure: Option<fn() -> Result<(), String>>,
}

impl<E: Endpoint> Checks<'_, E> {
    /// Prints `marker` when `outcome` is `Ok`, a failure line otherwise.
    pub(crate) fn check(&mut self, marker: Marker, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.ep.console(marker.message),
            Err(why) => {
                self.failures += 1;
                self.ep.console(&format!("FAIL {}: {why}", marker.message));
            }
        }
    }

    /// Runs the kernel's structural check and prints `marker` when it holds (nothing
    /// on the host, which has no address spaces).
    pub(crate) fn structure(&mut self, marker: Marker) {
        if let Some(structure) = self.structure {
            self.check(marker, structure());
        }
    }

    fn finish(self, mode: identity::Mode) -> Outcome {
        match (self.failures, mode) {
            (0, identity::Mode::Keyed) => {
                self.ep.console(markers::SELFTEST_ALL_PASSED.message);
                Outcome::Passed
            }
            (0, identity::Mode::FailedClosed) => {
                self.ep
                    .console("no entropy: later phases skipped, the system failed closed");
                Outcome::FailedClosed
            }
            (failures, _) => {
                self.ep.console(&format!("FAIL {failures} checks failed"));
                Outcome::Failed
            }
        }
    }
}
