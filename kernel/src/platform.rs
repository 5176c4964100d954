//! The riscv64 [`Platform`]: the `time` CSR clock, the UART console, a record of
//! which task is running (for the panic, trap and watchdog handlers), the watchdog's
//! arming around every poll, and the instructions each task retired.

use core::sync::atomic::{AtomicU16, AtomicU64, Ordering};

use ipc::ServiceId;
use kernel_core::Platform;

use crate::{clock, console, watchdog};

/// The running task's id plus one; 0 when the kernel itself runs.
static CURRENT: AtomicU16 = AtomicU16::new(0);

/// Instructions retired inside each task's polls, by `ServiceId` number.
static RETIRED: [AtomicU64; ServiceId::ALL.len()] =
    [const { AtomicU64::new(0) }; ServiceId::ALL.len()];
/// `instret` when the current poll started.
static POLL_START: AtomicU64 = AtomicU64::new(0);

/// Instructions `task` has retired inside its polls so far (the kernel's IPC work on
/// its behalf included, the executor's loop and other tasks' polls not): what the
/// guest benchmarks count when other tasks' polling would blur a figure.
pub fn task_instructions(task: ServiceId) -> u64 {
    RETIRED
        .get(task as usize)
        .map_or(0, |count| count.load(Ordering::Relaxed))
}

/// Instructions `task` has retired inside its polls so far, the poll under way
/// included when `task` is the one being polled (a process asking for its own count
/// from inside a system call).
pub fn task_instructions_now(task: ServiceId) -> u64 {
    let mut count = task_instructions(task);
    if current_task() == Some(task) {
        let now = riscv::register::instret::read64();
        count += now.saturating_sub(POLL_START.load(Ordering::Relaxed));
    }
    count
}

/// The task being polled, if any.
pub fn current_task() -> Option<ServiceId> {
    CURRENT
        .load(Ordering::Relaxed)
        .checked_sub(1)
        .and_then(ServiceId::from_u16)
}

/// The machine, as `kernel-core` sees it.
pub struct RiscvPlatform(());

impl RiscvPlatform {
    pub(crate) fn new() -> Self {
        Self(())
    }
}

impl Platform for RiscvPlatform {
    fn now_us(&self) -> u64 {
        clock::now_us()
    }

    fn console_line(&self, prefix: &str, line: &str) {
        console::line(prefix, format_args!("{line}"));
    }

    fn poll_started(&self, task: ServiceId) {
        CURRENT.store(task as u16 + 1, Ordering::Relaxed);
        POLL_START.store(riscv::register::instret::read64(), Ordering::Relaxed);
        watchdog::arm();
    }

    fn poll_finished(&self, task: ServiceId) {
        watchdog::disarm();
        let used =
            riscv::register::instret::read64().saturating_sub(POLL_START.load(Ordering::Relaxed));
        if let Some(count) = RETIRED.get(task as usize) {
            count.fetch_add(used, Ordering::Relaxed);
        }
        CURRENT.store(0, Ordering::Relaxed);
    }
}
