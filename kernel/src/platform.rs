//! The riscv64 [`Platform`]: the `time` CSR clock, the UART console, and a record of
//! which task is running for the panic and trap handlers.

use core::sync::atomic::{AtomicU16, Ordering};

use ipc::ServiceId;
use kernel_core::Platform;

use crate::{clock, console};

/// The running task's id plus one; 0 when the kernel itself runs.
static CURRENT: AtomicU16 = AtomicU16::new(0);

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
    }

    fn poll_finished(&self, _task: ServiceId) {
        CURRENT.store(0, Ordering::Relaxed);
    }
}
