//! The guest benchmarks: the same `bench-ops` workloads criterion times on the host,
//! counted here in retired instructions.
//!
//! Each workload runs once to warm up (first-use allocations), then once between two
//! reads of the counter; the cost of reading the counter is measured and subtracted.
//! Under QEMU's `-icount shift=0` the counts are exact and repeatable. One line per
//! operation: `bench <operation> <instructions>`.
//!
//! `service/first-boot` and `service/restore` are the device identity's two paths
//! through the services (`bench_ops::identity`): IPC to rngd and to statefs, whose
//! record store is on virtio-blk. Their counts include waiting for QEMU's devices.

use alloc::format;

use ipc::Endpoint;
use provider_api::{HashBackend, Provider};

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
    // The identity's two paths through the services: IPC, rngd, statefs on virtio-blk.
    let start = instructions_retired();
    let created = bench_ops::identity::first_boot::<P, H, E>(ep).await;
    let used = count(start);
    match created {
        Ok(_) => ep.console(&format!("bench service/first-boot {used}")),
        Err(why) => ep.console(&format!("FAIL bench service/first-boot: {why:?}")),
    }
    let start = instructions_retired();
    let restored = bench_ops::identity::restore::<P, H, E>(ep).await;
    let used = count(start);
    match restored {
        Ok(_) => ep.console(&format!("bench service/restore {used}")),
        Err(why) => ep.console(&format!("FAIL bench service/restore: {why:?}")),
    }
    ep.console(markers::SELFTEST_BENCH_DONE.message);
}
