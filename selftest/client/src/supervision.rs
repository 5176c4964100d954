//! A service faulted while it works for the selftest, before the ladder
//! (`-append supervise=<task>`, with the test program's `fault=<task>:...@selftest`
//! switch that makes the service's first process fault at the selftest's request).
//!
//! The selftest makes the call the fault is planned at and must see it end at once as
//! `PeerGone` (never at its deadline); it then waits for the kernel's new process to
//! serve, checks what the service must have recovered, and reads the audit journal for
//! the fault (the kernel's `Fault` record of the service, cause illegal instruction),
//! the restart (`Restart`, generation 1, allowed) and the call the fault ended
//! (`Failed`), with no kernel record lost. The ladder then runs on the new process.
//!
//! | task | the call that faults it | what must hold afterwards |
//! |---|---|---|
//! | logd | `QUERY` (with the kernel's records queued for it) | the records written while it was down reach the new process |
//! | rngd | `GET_ENTROPY` | it serves again (its start-up health tests run from scratch, on a new generator) |
//! | statefs | the second `PUT` of one record, torn: the first sector of its slot written | the first version stands, a new `PUT` works |
//! | keystored | the second `GET_PUBKEY` | the same public key: the sealed key restored, not a new one |
//! | netstackd | `RECV` on a connection of the selftest's | that socket's handle is refused as `Restarted`; a new connection works |
//! | dsoftbusd | `DISCOVER` | the same device key; a new Noise static key |

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use ipc::{Action, AuditFilter, Endpoint, IpcError, Operation, ServiceId, Verdict};
use service_api::netstackd::{self, SocketAddr};
use service_api::{ClientError, ServiceError, dsoftbusd, keystored, logd, rngd, statefs};

use service_api::pause as sleep;

/// The payload that makes a service fault as it takes it, in the test program under
/// `-append fault=by-request` (the soak's faults at random rounds): no operation takes
/// these bytes, so no other request carries them.
pub const BY_REQUEST: &[u8] = b"fault-injection: fault as you take this request";

/// The operation the selftest sends [`BY_REQUEST`] with to `task`, one its policy
/// allows the selftest.
pub fn by_request_operation(task: ServiceId) -> Option<Operation> {
    Some(match task {
        ServiceId::Logd => Operation::LogdQuery,
        ServiceId::Rngd => Operation::RngdGetEntropy,
        ServiceId::Statefs => Operation::StatefsGet,
        ServiceId::Keystored => Operation::KeystoredGetPubkey,
        ServiceId::Netstackd => Operation::NetstackdStats,
        ServiceId::Dsoftbusd => Operation::DsoftbusdStats,
        _ => return None,
    })
}

/// Makes `task` fault now (`fault=by-request`): the call must end as `PeerGone`.
///
/// # Errors
/// What the call ended with instead.
pub async fn fault_now<E: Endpoint>(ep: &E, task: ServiceId) -> Result<(), String> {
    let operation = by_request_operation(task)
        .ok_or_else(|| format!("{} takes no such request", task.name()))?;
    let frame = ipc::Frame::request(operation, BY_REQUEST)
        .encode()
        .map_err(|e| format!("{e:?}"))?;
    let reply = ep.call(task, &frame).await;
    match reply {
        Err(IpcError::PeerGone) => Ok(()),
        Err(error) => Err(format!("{}: {error}, not PeerGone", task.name())),
        Ok(_) => Err(format!("{} answered: no fault was injected", task.name())),
    }
}

/// The tasks this phase can supervise.
pub const TASKS: [ServiceId; 6] = [
    ServiceId::Logd,
    ServiceId::Rngd,
    ServiceId::Statefs,
    ServiceId::Keystored,
    ServiceId::Netstackd,
    ServiceId::Dsoftbusd,
];

/// How long the new process may take to serve.
const SERVE_AGAIN_MS: u64 = 10_000;
/// Between tries while it starts.
const RETRY_MS: u64 = 5;

/// The statefs record the phase writes (the selftest's own namespace).
const RECORD: u16 = 0x5e;

/// The port of the selftest's own listener (not dsoftbusd's).
const PORT: u16 = 7499;

/// Whether an error says the service's process is gone or not serving yet.
fn not_yet(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Ipc(IpcError::PeerGone | IpcError::Timeout | IpcError::QueueFull)
    )
}

/// The planned call: it must end as `PeerGone`.
fn faulted<T>(result: Result<T, ClientError>, call: &str) -> Result<(), String> {
    match result {
        Err(ClientError::Ipc(IpcError::PeerGone)) => Ok(()),
        Err(error) => Err(format!("{call} failed with {error}, not PeerGone")),
        Ok(_) => Err(format!("{call} was answered: no fault was injected")),
    }
}

/// Tries `call` until the new process answers it (or [`SERVE_AGAIN_MS`] passes);
/// returns the answer and the milliseconds waited.
async fn again<E: Endpoint, T, F: Future<Output = Result<T, ClientError>>>(
    ep: &E,
    mut call: impl FnMut() -> F,
) -> Result<(T, u64), String> {
    let started = ep.uptime_ms();
    loop {
        match call().await {
            Ok(value) => return Ok((value, ep.uptime_ms().saturating_sub(started))),
            Err(error) if not_yet(&error) => {
                if ep.uptime_ms().saturating_sub(started) > SERVE_AGAIN_MS {
                    return Err(format!("not serving again within {SERVE_AGAIN_MS} ms"));
                }
                sleep(ep, RETRY_MS).await;
            }
            Err(error) => return Err(format!("the new process answered {error}")),
        }
    }
}

/// The planned fault and the recovery of `task`; returns the milliseconds from the
/// end of the faulted call to the new process's first answer.
async fn fault_and_recover<E: Endpoint>(ep: &E, task: ServiceId) -> Result<u64, String> {
    match task {
        ServiceId::Logd => {
            let all = AuditFilter::default();
            faulted(logd::query(ep, &all).await, "QUERY")?;
            let (_, ms) = again(ep, || logd::query(ep, &all)).await?;
            Ok(ms)
        }
        ServiceId::Rngd => {
            faulted(rngd::get_entropy(ep, 32).await, "GET_ENTROPY")?;
            let (bytes, ms) = again(ep, || rngd::get_entropy(ep, 32)).await?;
            if bytes.len() != 32 {
                return Err(format!("{} bytes, not 32", bytes.len()));
            }
            Ok(ms)
        }
        ServiceId::Statefs => {
            // Whole records, so the torn write's first sector holds only part of it.
            let version = |byte: u8| alloc::vec![byte; statefs::MAX_RECORD];
            let (first, second, third) = (version(1), version(2), version(3));
            statefs::put(ep, RECORD, &first)
                .await
                .map_err(|e| format!("the first PUT: {e}"))?;
            faulted(statefs::put(ep, RECORD, &second).await, "the torn PUT")?;
            let (stored, ms) = again(ep, || statefs::get(ep, RECORD)).await?;
            if stored[..] != first[..] {
                return Err(format!(
                    "after the torn write the record holds {} bytes that are not the first version",
                    stored.len()
                ));
            }
            statefs::put(ep, RECORD, &third)
                .await
                .map_err(|e| format!("a PUT after the restart: {e}"))?;
            let stored = statefs::get(ep, RECORD)
                .await
                .map_err(|e| format!("a GET after the restart: {e}"))?;
            if stored[..] != third[..] {
                return Err("the record does not hold what was put after the restart".into());
            }
            statefs::delete(ep, RECORD)
                .await
                .map_err(|e| format!("DELETE: {e}"))?;
            Ok(ms)
        }
        ServiceId::Keystored => {
            let before = keystored::get_pubkey(ep)
                .await
                .map_err(|e| format!("the first GET_PUBKEY: {e}"))?;
            faulted(keystored::get_pubkey(ep).await, "the second GET_PUBKEY")?;
            let (after, ms) = again(ep, || keystored::get_pubkey(ep)).await?;
            if after != before {
                return Err("the restarted keystored has another device key".into());
            }
            Ok(ms)
        }
        ServiceId::Netstackd => {
            let listener = netstackd::listen(ep, PORT, 1)
                .await
                .map_err(|e| format!("LISTEN: {e}"))?;
            let (stream, _) = netstackd::connect(ep, SocketAddr::loopback(PORT), 1000)
                .await
                .map_err(|e| format!("CONNECT: {e}"))?;
            faulted(
                netstackd::recv(ep, stream, 16, 0).await,
                "RECV on an open connection",
            )?;
            let (_, ms) = again(ep, || netstackd::stats(ep)).await?;
            for old in [stream, listener] {
                match netstackd::status(ep, old).await {
                    Err(ClientError::Service(ServiceError::Restarted)) => {}
                    other => {
                        return Err(format!(
                            "STATUS of a handle of the faulted process got {other:?}, not Restarted"
                        ));
                    }
                }
            }
            let listener = netstackd::listen(ep, PORT, 1)
                .await
                .map_err(|e| format!("LISTEN again: {e}"))?;
            let (stream, _) = netstackd::connect(ep, SocketAddr::loopback(PORT), 1000)
                .await
                .map_err(|e| format!("CONNECT again: {e}"))?;
            for handle in [stream, listener] {
                let _ = netstackd::close(ep, handle, true).await;
            }
            Ok(ms)
        }
        ServiceId::Dsoftbusd => {
            let before = keystored::get_pubkey(ep)
                .await
                .map_err(|e| format!("GET_PUBKEY: {e}"))?;
            faulted(dsoftbusd::discover(ep).await, "DISCOVER")?;
            let (found, ms) = again(ep, || dsoftbusd::discover(ep)).await?;
            if found.device_key != before {
                return Err("the restarted dsoftbusd names another device key".into());
            }
            Ok(ms)
        }
        other => Err(format!("{} cannot be supervised here", other.name())),
    }
}

/// The operation of the planned call.
fn planned(task: ServiceId) -> Option<Operation> {
    Some(match task {
        ServiceId::Logd => Operation::LogdQuery,
        ServiceId::Rngd => Operation::RngdGetEntropy,
        ServiceId::Statefs => Operation::StatefsPut,
        ServiceId::Keystored => Operation::KeystoredGetPubkey,
        ServiceId::Netstackd => Operation::NetstackdRecv,
        ServiceId::Dsoftbusd => Operation::DsoftbusdDiscover,
        _ => return None,
    })
}

/// What the journal must hold about the fault: (what, filter, at least).
fn audited(task: ServiceId) -> Vec<(&'static str, AuditFilter, u32)> {
    let mut records = alloc::vec![
        (
            "the kernel's record of the fault (illegal instruction)",
            AuditFilter {
                origin: Some(ServiceId::Kernel),
                subject: Some(task),
                action: Some(Action::Fault { cause: 2 }),
                verdict: None,
            },
            1,
        ),
        (
            "the kernel's record of the restart (generation 1)",
            AuditFilter {
                origin: Some(ServiceId::Kernel),
                subject: Some(task),
                action: Some(Action::Restart { generation: 1 }),
                verdict: Some(Verdict::Allowed),
            },
            1,
        ),
    ];
    if let Some(operation) = planned(task) {
        records.push((
            "the kernel's record of the call the fault ended",
            AuditFilter {
                origin: Some(ServiceId::Kernel),
                subject: Some(ServiceId::Selftest),
                action: Some(Action::Call {
                    service: task,
                    code: operation.code(),
                }),
                verdict: Some(Verdict::Failed),
            },
            1,
        ));
    }
    records
}

/// Faults `task` at the selftest's planned call, checks its recovery and the audit
/// trail, and says so (marker `SELFTEST_SUPERVISED`, or a failure). Returns whether
/// it held.
pub async fn run<E: Endpoint>(ep: &E, task: ServiceId) -> bool {
    let outcome = async {
        let ms = fault_and_recover(ep, task).await?;
        for (what, filter, least) in audited(task) {
            let (reply, _) = again(ep, || logd::query(ep, &filter)).await?;
            if reply.matched < least {
                return Err(format!("the journal lacks {what}"));
            }
            if reply.kernel_lost != 0 {
                return Err(format!("the kernel lost {} records", reply.kernel_lost));
            }
        }
        Ok::<u64, String>(ms)
    }
    .await;
    match outcome {
        Ok(ms) => {
            ep.console(&markers::SELFTEST_SUPERVISED.render(&[task.name(), &format!("{ms}")]));
            true
        }
        Err(why) => {
            ep.console(&format!("FAIL {} faulted while busy: {why}", task.name()));
            false
        }
    }
}

/// `supervise=<task>[,<task>...]` of the command line: the tasks to fault in turn
/// (none without the word).
///
/// # Errors
/// The word, when it names a task this phase cannot fault, or one twice.
pub fn from_bootargs(bootargs: &str) -> Result<Vec<ServiceId>, String> {
    let Some(names) = bootargs
        .split_whitespace()
        .find_map(|word| word.strip_prefix("supervise="))
    else {
        return Ok(Vec::new());
    };
    let mut tasks = Vec::new();
    for name in names.split(',') {
        let task = ServiceId::from_name(name)
            .filter(|task| TASKS.contains(task) && !tasks.contains(task))
            .ok_or_else(|| {
                format!("supervise={names}: {name} is not a service this phase can fault once")
            })?;
        tasks.push(task);
    }
    // In the order of [`TASKS`]: a step may call a service faulted in a later step
    // (dsoftbusd's asks keystored for the device key), which must not be counted
    // toward that service's planned call.
    tasks.sort_by_key(|task| TASKS.iter().position(|t| t == task));
    Ok(tasks)
}
