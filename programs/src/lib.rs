//! What a process of each task runs: the services that have moved to user mode, on
//! [`user_rt::UserEndpoint`], their code unchanged from the kernel-task days (generic
//! over `ipc::Endpoint`).
//!
//! Today that is logd. The others still run as kernel tasks in supervisor mode
//! (issue 19 moves them as the system calls they need arrive: device windows and DMA
//! for rngd, statefs, keystored and netstackd).

#![no_std]
#![forbid(unsafe_code)]

#[cfg(target_arch = "riscv64")]
mod riscv {
    use ipc::ServiceId;
    use user_rt::{Start, UserEndpoint, block_on, exit};

    /// The exit code of a process started for a task this program does not run.
    pub const NOT_HERE: usize = 127;

    /// Runs the service of `start.task`, if this program has it; returns otherwise.
    pub fn serve(start: Start) {
        if start.task == ServiceId::Logd {
            block_on(logd::run(
                UserEndpoint::new(ServiceId::Logd),
                logd::DEFAULT_LIMITS,
            ))
        }
    }

    /// Ends a process this program has no code for.
    pub fn not_here() -> ! {
        exit(NOT_HERE)
    }
}

#[cfg(target_arch = "riscv64")]
pub use riscv::{NOT_HERE, not_here, serve};
