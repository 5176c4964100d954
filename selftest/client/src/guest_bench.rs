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
//!
//! `service/handshake-ipc` and `service/handshake-tcp` are one session with the
//! identity binding, both sides (the selftest's node initiating, dsoftbusd
//! responding), from the first message to the point the node knows it is accepted:
//! over IPC (`TRANSPORT`), and over TCP on netstackd's loopback interface (connect,
//! hello, the three messages, `READY`). Their ratio is the network stack's overhead.
//! Each is the median of [`HANDSHAKES`] sessions; each session starts once dsoftbusd's
//! entropy pace has a draw for it, and its close is not counted.

use alloc::format;

use ipc::{Endpoint, ServiceId};
use provider_api::{HashBackend, Provider};
use service_api::pause as sleep;

/// The cost of reading the counter, to subtract from every count.
fn read_overhead(instructions_retired: fn() -> u64) -> u64 {
    let start = instructions_retired();
    instructions_retired().saturating_sub(start)
}

/// Counts every computation workload of `P` with `H` (no IPC, no device). The image
/// runs this first thing in the selftest task, before anything awaits: the heap then
/// holds the same blocks on every boot, so allocation costs, and the counts, repeat
/// exactly (after the ladder, network timing leaves the free list in another shape
/// on each run, and first-fit searches differ by a few instructions).
pub fn computations<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    instructions_retired: fn() -> u64,
) {
    let overhead = read_overhead(instructions_retired);
    for mut workload in bench_ops::all::<P, H>() {
        workload.run();
        let start = instructions_retired();
        workload.run();
        let used = instructions_retired()
            .saturating_sub(start)
            .saturating_sub(overhead);
        ep.console(&format!("bench {} {used}", workload.name()));
    }
}

/// Counts the workloads that go through the services (after the ladder), then says
/// the bench is done. `task_instructions` gives what each task retired inside its own
/// polls (the kernel keeps the count), so a row can leave out tasks that only poll
/// meanwhile.
pub async fn run<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    instructions_retired: fn() -> u64,
    task_instructions: fn(ServiceId) -> u64,
) {
    let overhead = read_overhead(instructions_retired);
    let count = |start: u64| {
        instructions_retired()
            .saturating_sub(start)
            .saturating_sub(overhead)
    };
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
    entropy::<P, E>(ep, instructions_retired, task_instructions, overhead).await;
    ipc_round_trip(ep, instructions_retired, task_instructions, overhead).await;
    handshakes::<P, H, E>(ep, instructions_retired, overhead).await;
    ep.console(markers::SELFTEST_BENCH_DONE.message);
}

/// Requests per entropy row.
pub const ENTROPY_REQUESTS: usize = 9;

/// The instructions every task but the selftest and `server` retired so far.
fn bystanders(task_instructions: fn(ServiceId) -> u64, server: ServiceId) -> u64 {
    ServiceId::ALL
        .into_iter()
        .filter(|t| *t != ServiceId::Selftest && *t != server)
        .map(task_instructions)
        .sum()
}

/// Round trips per IPC row.
pub const ROUND_TRIPS: usize = 9;

/// `service/ipc-round-trip`: the smallest request there is to the smallest service, a
/// logd `QUERY` with the empty filter (11 bytes of payload) and the reply with its counts:
/// the call, the policy check, the kernel's audit record, delivery, logd's receive,
/// its count and its reply, and the caller taking the reply. Counted like
/// `service/get-entropy`: the selftest's and logd's work and the kernel's, the other
/// tasks' polls taken out; the median of [`ROUND_TRIPS`].
async fn ipc_round_trip<E: Endpoint>(
    ep: &E,
    instructions_retired: fn() -> u64,
    task_instructions: fn(ServiceId) -> u64,
    overhead: u64,
) {
    let filter = ipc::AuditFilter::default();
    let mut trips = alloc::vec::Vec::new();
    for _ in 0..ROUND_TRIPS {
        let others = bystanders(task_instructions, ServiceId::Logd);
        let start = instructions_retired();
        let reply = service_api::logd::query(ep, &filter).await;
        let used = instructions_retired()
            .saturating_sub(start + overhead)
            .saturating_sub(bystanders(task_instructions, ServiceId::Logd).saturating_sub(others));
        if reply.is_err() {
            ep.console("FAIL bench service/ipc-round-trip: logd did not answer");
            return;
        }
        trips.push(used);
    }
    ep.console(&format!("bench service/ipc-round-trip {}", median(trips)));
}

/// `service/get-entropy`: one 32-byte `GET_ENTROPY` over IPC, as every key and every
/// ephemeral key is made; `service/keygen`: that and the device key made from it, the
/// path of a first boot without its disk write. Medians of [`ENTROPY_REQUESTS`]. The
/// counts are the selftest's and rngd's work and the kernel's in between: the polls of
/// the other tasks meanwhile (netstackd's loop, whose cost depends on what the network
/// did earlier) are taken out with the kernel's per-task counts.
async fn entropy<P: Provider, E: Endpoint>(
    ep: &E,
    instructions_retired: fn() -> u64,
    task_instructions: fn(ServiceId) -> u64,
    overhead: u64,
) {
    let mut get = alloc::vec::Vec::new();
    let mut keygen = alloc::vec::Vec::new();
    let count = |start: u64, others: u64| {
        instructions_retired()
            .saturating_sub(start + overhead)
            .saturating_sub(bystanders(task_instructions, ServiceId::Rngd).saturating_sub(others))
    };
    for _ in 0..ENTROPY_REQUESTS {
        let (start, others) = (
            instructions_retired(),
            bystanders(task_instructions, ServiceId::Rngd),
        );
        let bytes = service_api::rngd::get_entropy(ep, 32).await;
        get.push(count(start, others));
        let (start, others) = (
            instructions_retired(),
            bystanders(task_instructions, ServiceId::Rngd),
        );
        let key = match service_api::rngd::get_entropy(ep, 32).await {
            Ok(bytes) => keystored::key_from_entropy::<P>(&bytes),
            Err(_) => None,
        };
        keygen.push(count(start, others));
        if bytes.is_err() || key.is_none() {
            ep.console("FAIL bench service/get-entropy: rngd did not serve");
            return;
        }
    }
    ep.console(&format!("bench service/get-entropy {}", median(get)));
    ep.console(&format!("bench service/keygen {}", median(keygen)));
}

/// Sessions per handshake row.
pub const HANDSHAKES: usize = 5;

fn median(mut counts: alloc::vec::Vec<u64>) -> u64 {
    counts.sort_unstable();
    counts[counts.len() / 2]
}

async fn handshakes<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    instructions_retired: fn() -> u64,
    overhead: u64,
) {
    use dsoftbusd::client::{Believed, Node, connect, connect_tcp};
    use provider_api::{SecretBytes, Seed, VerifyingKey, X25519PublicKey};
    use service_api::{dsoftbusd as api, keystored};

    let setup = async {
        let node = Node::<P>::new(&Seed::new([0x42; 32]), &SecretBytes::new([0x24; 32]))
            .map_err(|e| format!("{e}"))?;
        let discovered = api::discover(ep).await.map_err(|e| format!("{e}"))?;
        let device = keystored::get_pubkey(ep)
            .await
            .map_err(|e| format!("{e}"))?;
        let device = VerifyingKey::from_bytes(&device).map_err(|e| format!("{e}"))?;
        api::trust(ep, &node.device_key())
            .await
            .map_err(|e| format!("{e}"))?;
        Ok::<_, alloc::string::String>((node, X25519PublicKey(discovered.noise_static), device))
    };
    let (node, responder, device) = match setup.await {
        Ok(parts) => parts,
        Err(why) => {
            ep.console(&format!("FAIL bench service/handshake: {why}"));
            return;
        }
    };
    let trusted = core::slice::from_ref(&device);
    let pause = dsoftbusd::sessions::LIMITS.entropy_refill_ms * 2;
    let mut ipc = alloc::vec::Vec::new();
    for id in 0..HANDSHAKES as u32 {
        sleep(ep, pause).await;
        let start = instructions_retired();
        let session =
            connect::<P, H, E>(ep, &node, 10_000 + id, &responder, trusted, |_, _| {}).await;
        let used = instructions_retired().saturating_sub(start + overhead);
        match session {
            Ok(session) => {
                ipc.push(used);
                let _ = session.close(ep).await;
            }
            Err(why) => {
                ep.console(&format!("FAIL bench service/handshake-ipc: {why}"));
                return;
            }
        }
    }
    let mut tcp = alloc::vec::Vec::new();
    let remote = service_api::netstackd::SocketAddr::loopback(dsoftbusd::wire::PORT);
    for _ in 0..HANDSHAKES {
        sleep(ep, pause).await;
        let start = instructions_retired();
        let session = connect_tcp::<P, H, E>(
            ep,
            &node,
            remote,
            Believed::Key(responder),
            trusted,
            |_, _| {},
        )
        .await;
        let used = instructions_retired().saturating_sub(start + overhead);
        match session {
            Ok(session) => {
                tcp.push(used);
                session.close(ep).await;
            }
            Err(why) => {
                ep.console(&format!("FAIL bench service/handshake-tcp: {why}"));
                return;
            }
        }
    }
    ep.console(&format!("bench service/handshake-ipc {}", median(ipc)));
    ep.console(&format!("bench service/handshake-tcp {}", median(tcp)));
}
