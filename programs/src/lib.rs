//! What a process of each task runs: the services that have moved to user mode, on
//! [`user_rt::UserEndpoint`], their code unchanged from the kernel-task days (generic
//! over `ipc::Endpoint`).
//!
//! Today that is logd, rngd and netstackd (which drive the entropy and the network
//! device from their own windows, `drivers/user-hal`) and dsoftbusd (Noise XK with the
//! combination's backends: the program is built per combination). statefs and
//! keystored still run as kernel tasks in supervisor mode: they need the device
//! manager that tells the disks apart by serial (issue 19's next step).

#![no_std]
#![forbid(unsafe_code)]

#[cfg(target_arch = "riscv64")]
extern crate alloc;

#[cfg(target_arch = "riscv64")]
mod riscv {
    use ipc::{CapabilityError, ServiceId};
    use provider_select::{Selected, SelectedHash as Hash};
    use user_rt::{BoxedNet, Start, UserEndpoint, block_on, exit};

    /// The exit code of a process started for a task this program does not run.
    pub const NOT_HERE: usize = 127;

    /// How long the entropy device may take to answer one request.
    const ENTROPY_DEVICE_TIMEOUT_US: u64 = 500_000;

    /// How long the network device may take to take one frame for transmission.
    pub const NET_TRANSMIT_TIMEOUT_US: u64 = 100_000;

    /// The production image's network device: the window claimed, the driver over it.
    ///
    /// # Errors
    /// The claim's refusal, or a device that does not set up.
    pub fn net_device() -> Result<BoxedNet, CapabilityError> {
        let transport = user_hal::net_transport()?;
        let device = user_hal::net_device_over(transport, NET_TRANSMIT_TIMEOUT_US)?;
        Ok(BoxedNet(alloc::boxed::Box::new(device)))
    }

    /// Runs the service of `start.task`, if this program has it; returns otherwise.
    /// `open_net` opens the network device for netstackd (the test image's may stall
    /// it on purpose).
    pub fn serve(start: Start, open_net: fn() -> Result<BoxedNet, CapabilityError>) {
        match start.task {
            ServiceId::Logd => block_on(logd::run(
                UserEndpoint::new(ServiceId::Logd),
                logd::DEFAULT_LIMITS,
            )),
            ServiceId::Rngd => block_on(rngd::run(
                UserEndpoint::new(ServiceId::Rngd)
                    .with_entropy_device(|| user_hal::entropy_device(ENTROPY_DEVICE_TIMEOUT_US)),
            )),
            ServiceId::Netstackd => {
                let bootargs = user_rt::bootargs();
                block_on(netstackd::run(
                    UserEndpoint::new(ServiceId::Netstackd).with_net_device(open_net),
                    &bootargs,
                ))
            }
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
pub use riscv::{NET_TRANSMIT_TIMEOUT_US, NOT_HERE, net_device, not_here, serve};
