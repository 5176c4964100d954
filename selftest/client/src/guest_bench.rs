//! The guest benchmarks: the same `bench-ops` workloads criterion times on the host,
//! counted here in retired instructions.
//!
//! Each workload runs once to warm up (first-use allocations), then once between two
//! reads of the counter; the cost of reading the counter is measured and subtracted.
//! Under QEMU's `-icount shift=0` the counts are exact and repeatable. One line per
//! operation: `bench <operation> <instructions>`.
//!
//! `service/keygen-path` is the keygen path through the services: a `GET_ENTROPY`
//! of 32 bytes to rngd over IPC, then the RFC 8032 derivation, as keystored does it.

use alloc::format;

use ipc::Endpoint;
use provider_api::{HashBackend, Provider, Seed, SigningKey};
use service_api::rngd;

/// Runs every workload of `P` with `H`, counting with `instructions_retired`.
pub async fn run<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    instructions_retired: fn() -> u64,
) {
    let overhead = {
        let start = instructions_retired();
        instructions_retired().saturating_sub(start)
    };
    let count = |start: u64| {
        instructions_retired()
            .saturating_sub(start)
            .saturating_sub(overhead)
    };
    for mut workload in bench_ops::all::<P, H>() {
        workload.run();
        let start = instructions_retired();
        workload.run();
        let used = count(start);
        ep.console(&format!("bench {} {used}", workload.name()));
    }
    let start = instructions_retired();
    let derived = match rngd::get_entropy(ep, 32).await {
        Ok(entropy) => Seed::from_fill(|seed: &mut [u8; 32]| {
            seed.copy_from_slice(&entropy);
            Ok::<(), ()>(())
        })
        .ok()
        .and_then(|seed| SigningKey::<P::Curve>::from_seed(&seed).ok()),
        Err(_) => None,
    };
    let used = count(start);
    match derived {
        Some(_) => ep.console(&format!("bench service/keygen-path {used}")),
        None => ep.console("FAIL bench service/keygen-path: no entropy"),
    }
    ep.console(markers::SELFTEST_BENCH_DONE.message);
}
