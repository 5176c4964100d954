//! What a process of each task runs: the services that have moved to user mode, on
//! [`user_rt::UserEndpoint`], their code unchanged from the kernel-task days (generic
//! over `ipc::Endpoint`).
//!
//! Today that is logd, rngd (which drives the entropy device from its own window,
//! `drivers/user-hal`) and dsoftbusd (Noise XK with the combination's backends: the
//! program is built per combination). The others still run as kernel tasks in
//! supervisor mode (issue 19 moves them next: statefs and keystored need the device
//! manager that tells the disks apart by serial, netstackd the network device's
//! window and the command line).

#![no_std]
#![forbid(unsafe_code)]

#[cfg(target_arch = "riscv64")]
mod riscv {
    use ipc::ServiceId;
    use provider_select::{Selected, SelectedHash as Hash};
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
            ServiceId::Dsoftbusd => block_on(dsoftbusd::run::<Selected, Hash, _>(
                UserEndpoint::new(ServiceId::Dsoftbusd),
            )),
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
