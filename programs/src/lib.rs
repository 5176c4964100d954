//! What a process of each task runs: the services that have moved to user mode, on
//! [`user_rt::UserEndpoint`], their code unchanged from the kernel-task days (generic
//! over `ipc::Endpoint`).
//!
//! Today that is logd and rngd (which drives the entropy device from its own window,
//! `drivers/user-hal`). The others still run as kernel tasks in supervisor mode
//! (issue 19 moves them next: the disks need the device manager that tells them apart
//! by serial; keystored and dsoftbusd bring the crypto backends into the program).

#![no_std]
#![forbid(unsafe_code)]

#[cfg(target_arch = "riscv64")]
mod riscv {
    use ipc::ServiceId;
    use user_rt::{Start, UserEndpoint, block_on, exit};

    /// The exit code of a process started for a task this program does not run.
    pub const NOT_HERE: usize = 127;

    /// How long the entropy device may take to answer one request.
    const ENTROPY_DEVICE_TIMEOUT_US: u64 = 500_000;

    /// Runs the service of `start.task`, if this program has it; returns otherwise.
    pub fn serve(start: Start) {
        match start.task {
            ServiceId::Logd => block_on(logd::run(
                UserEndpoint::new(ServiceId::Logd),
                logd::DEFAULT_LIMITS,
            )),
            ServiceId::Rngd => block_on(rngd::run(UserEndpoint::with_entropy_device(
                ServiceId::Rngd,
                || user_hal::entropy_device(ENTROPY_DEVICE_TIMEOUT_US),
            ))),
            _ => {}
        }
    }

    /// Ends a process this program has no code for.
    pub fn not_here() -> ! {
        exit(NOT_HERE)
    }
}

#[cfg(target_arch = "riscv64")]
pub use riscv::{NOT_HERE, not_here, serve};
