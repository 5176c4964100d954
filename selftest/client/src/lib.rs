//! The selftest client: the image's main task.
//!
//! Each check does the real thing through the same endpoint any task has, and prints
//! its marker only when the outcome is the expected one; otherwise it prints
//! `FAIL <marker>: <why>` (a failure pattern of the ladder) and the run fails. The
//! order of the checks is the order of the ladder in `selftest/markers.toml`.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod bring_up;

use alloc::format;
use alloc::string::String;

use ipc::Endpoint;
use markers::Marker;

/// Runs every check; returns whether all passed.
pub async fn run<E: Endpoint>(ep: &E) -> bool {
    let mut checks = Checks { ep, failures: 0 };
    bring_up::run(&mut checks).await;
    checks.finish()
}

/// Prints each check's marker or failure, and counts failures.
pub(crate) struct Checks<'e, E: Endpoint> {
    pub(crate) ep: &'e E,
    failures: u32,
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

    fn finish(self) -> bool {
        if self.failures == 0 {
            self.ep.console(markers::SELFTEST_ALL_PASSED.message);
            true
        } else {
            self.ep
                .console(&format!("FAIL {} checks failed", self.failures));
            false
        }
    }
}
