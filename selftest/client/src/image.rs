//! The test image's main process: what runs in the selftest's user-mode process, from
//! the boot's command line. The ladder's checks ([`crate::run_in_image`]), then what
//! `-append` asks for after them: the guest benchmarks (`bench`), a session with a
//! peer device (`dsoftbus.peer=`), serving (`serve=`), the soak (`soak=`), the checks
//! after the entropy source fails (`entropy-fails`). With `spin` the kernel runs a
//! spinning process beside the ladder, whose watchdog record the checks then expect.
//!
//! The counters it needs beyond IPC come from the kernel (`counters`, a system call
//! only this task may make), passed in as [`Counters`] so this crate stays free of the
//! system-call layer.

use alloc::format;

use ipc::{Endpoint, ServiceId};
use provider_api::{HashBackend, Provider};

use crate::{Outcome, guest_bench, remote, soak};

/// The kernel's counters, as the benchmarks and the soak read them.
#[derive(Clone, Copy)]
pub struct Counters {
    /// This process's own retired instructions (its code and the kernel's work for
    /// it), read at the start of a fresh slice: what the computations count, exactly,
    /// however the machine's other work and the timer fall.
    pub own_instructions: fn() -> u64,
    /// The machine's retired instructions: what the rows through the services count.
    pub instructions_retired: fn() -> u64,
    /// What each task retired inside its own polls.
    pub task_instructions: fn(ServiceId) -> u64,
    /// The kernel heap.
    pub heap: fn() -> soak::Heap,
    /// The kernel's structural check over every live address space.
    pub structure: fn() -> Result<(), alloc::string::String>,
    /// The restarts the kernel made so far, and its milliseconds at the latest.
    pub restarts: fn() -> [u64; 2],
}

/// Draws 64 bytes from rngd and keeps them, unwiped, in the heap (leaked) until the
/// process exits (and leaves a copy on the stack, which later calls may overwrite): the kernel's
/// freed-memory check (it copies the first 4 KiB rngd serves this process) must find
/// them in its frames before it frees them, or it is blind, and nowhere after. Right
/// after the ladder's checks, so they are among those first 4 KiB and still held when
/// the entropy source has failed by the end of a scenario. A process that ends holding
/// secrets is what the check is about.
async fn hold_served_entropy<E: Endpoint>(ep: &E) {
    if let Ok(bytes) = service_api::rngd::get_entropy(ep, 64).await {
        let mut on_stack = [0u8; 64];
        on_stack.copy_from_slice(&bytes);
        core::hint::black_box(&on_stack);
        core::mem::forget(alloc::vec::Vec::from(&bytes[..]));
        core::mem::forget(bytes);
    }
}

/// Runs the selftest and what `bootargs` asks for after it; returns the outcome.
pub async fn main<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    bootargs: &str,
    counters: Counters,
) -> Outcome {
    let bench = bootargs.split_whitespace().any(|arg| arg == "bench");
    // The soak with a random service faulted about every N rounds (`soak.faults=N`,
    // with the test program's `fault=by-request`).
    let soak_faults = bootargs
        .split_whitespace()
        .find_map(|arg| arg.strip_prefix("soak.faults="))
        .map(|every| every.parse::<usize>().ok().filter(|n| *n > 0));
    let plan = remote::Plan::from_bootargs(bootargs);
    if bench {
        guest_bench::computations::<P, H, E>(ep, counters.own_instructions);
    }
    let spinner = plan.as_ref().is_ok_and(|plan| plan.spin);
    // A service faulted at the selftest's call, before the ladder runs on its new
    // process (`supervise=<task>`).
    let supervised = match crate::supervision::from_bootargs(bootargs) {
        Ok(tasks) => {
            let mut held = true;
            for task in tasks {
                held &= crate::supervision::run(ep, task).await;
            }
            held
        }
        Err(why) => {
            ep.console(&format!("FAIL {why}"));
            false
        }
    };
    let mut outcome = crate::run_in_image::<P, H, E>(ep, spinner, counters.structure).await;
    if !supervised {
        outcome = Outcome::Failed;
    }
    hold_served_entropy(ep).await;
    let passed = outcome == Outcome::Passed;
    if bench && passed {
        guest_bench::run::<P, H, E>(
            ep,
            counters.instructions_retired,
            counters.task_instructions,
        )
        .await;
    }
    match plan {
        Ok(plan) if passed => {
            if let Some((peer, key)) = plan.peer {
                remote::connect(ep, peer, &key).await;
            }
            if let Some(seconds) = plan.serve_s {
                remote::serve(ep, seconds).await;
            }
            if let Some(rounds) = plan.soak
                && !soak::run::<P, H, E>(
                    ep,
                    rounds,
                    counters.heap,
                    soak_faults.flatten().map(|every| soak::Faults {
                        restarts: counters.restarts,
                        every,
                    }),
                )
                .await
            {
                outcome = Outcome::Failed;
            }
            if plan.entropy_fails && !remote::entropy_fails::<P, H, E>(ep).await {
                outcome = Outcome::Failed;
            }
        }
        Ok(_) => {}
        Err(why) => {
            ep.console(&format!("FAIL the command line's session plan: {why:?}"));
            outcome = Outcome::Failed;
        }
    }
    if soak_faults == Some(None) {
        ep.console("FAIL soak.faults= is not a positive number of rounds");
        outcome = Outcome::Failed;
    }
    outcome
}
