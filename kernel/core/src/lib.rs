//! The portable kernel: everything that does not touch hardware.
//!
//! - **Tasks** are futures, polled round-robin by a cooperative executor. A task
//!   that never finishes is normal for a service; the run ends when the image's main
//!   task (the selftest) finishes or a deadline passes.
//! - **IPC**: each task gets one [`KernelEndpoint`] bound to its [`ServiceId`] at
//!   spawn. Its fields are private and only [`Kernel::spawn`] makes one, so a task can
//!   neither forge its identity nor reach another task's queue. The kernel stamps the
//!   sender on every request, checks the frame header and the policy before delivery,
//!   bounds every queue, and bounds every call with a deadline; a callee that misses
//!   it is reported by name.
//! - **Policy**: the deny-by-default table compiled from `policies/policy.toml`
//!   ([`config::POLICY`]). Every decision is an audit record.
//! - **Capabilities**: the boot manifest ([`config::GRANTS`]) says which task may
//!   claim which capability; a capability has one holder and every claim is audited.
//! - **Audit stream**: bounded queues of records, drained by the holder of the
//!   audit-feed capability (logd). The kernel's own records have a budget no task
//!   can touch; each task has a quota of its own. A lost kernel record is counted and
//!   announced as a failure. A task may only write records about its own service and
//!   the callers it served; anything else is refused and recorded as a forgery.
//! - **Calls** are bounded per task, time out, and are cleaned up when the caller
//!   drops them: the kernel keeps no state for a call nobody waits for.
//!
//! The hardware side (clock, console, devices, the panic and trap handlers) comes in
//! through [`Platform`]: the riscv64 kernel provides one, the host runner another.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod audit_stream;
pub mod bootargs;
mod executor;
mod kernel;
pub mod policy;

/// The tables compiled from `policies/policy.toml` and `policies/manifest.toml`.
pub mod config {
    include!(concat!(env!("OUT_DIR"), "/config.rs"));
}

pub use kernel::{
    AuditFeedHandle, DeviceHandle, DiskHandle, Kernel, KernelEndpoint, KernelStats, Limits,
    RunOutcome, SpawnError,
};

use ipc::ServiceId;

/// What the kernel needs from the machine it runs on.
pub trait Platform: 'static {
    /// Microseconds since boot, monotonic.
    fn now_us(&self) -> u64;
    /// Writes one console line: `prefix`, `": "`, `line`.
    fn console_line(&self, prefix: &str, line: &str);
    /// Called just before a task is polled (for a watchdog).
    fn poll_started(&self, _task: ServiceId) {}
    /// Called after a task's poll returned.
    fn poll_finished(&self, _task: ServiceId) {}
}
