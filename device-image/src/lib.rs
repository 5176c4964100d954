//! The services of a device, spawned the way a device ships them.
//!
//! One list, used by both images: the production image (`device-image`, this crate's
//! binary) runs only these, and the test image (`os-image`) adds the selftest task
//! beside them, so what the ladder proves is what a device runs.
//!
//! Tasks, each a user-mode process of the image's user program (`programs/`): logd,
//! rngd (the entropy device's window), the device manager (which tells the disks
//! apart by serial, hands each window on, and exits), statefs (the state disk),
//! keystored (the OTP disk and the counter; sealing with the image's AEAD and its
//! Noise hash's HKDF), netstackd (the network device's window; TCP/IPv4 on virtio-net
//! and loopback, with the `net` feature) and dsoftbusd (Noise XK over TCP).

#![cfg_attr(target_arch = "riscv64", no_std)]
#![forbid(unsafe_code)]

#[cfg(target_arch = "riscv64")]
mod riscv {
    extern crate alloc;

    use alloc::format;
    use alloc::rc::Rc;
    use alloc::vec::Vec;

    use ipc::ServiceId;
    use kernel::RiscvPlatform;
    use kernel::process::Program;
    use kernel_core::{Kernel, SpawnError};

    /// Spawns every service; returns the refusals (each a failure the caller prints).
    /// `program` is the image's user program
    /// ([`kernel::process::load_user_program`]), whose processes run the services
    /// that run in user mode: every one (netstackd reads its addresses from the
    /// command line; the device manager, which runs once, tells the disks apart for
    /// statefs and keystored).
    pub fn spawn_services(
        kernel: &mut Kernel<RiscvPlatform>,
        program: Option<Rc<Program>>,
    ) -> Vec<SpawnError> {
        [
            kernel::process::spawn_service(kernel, program.clone(), ServiceId::Logd),
            kernel::process::spawn_service(kernel, program.clone(), ServiceId::Rngd),
            kernel::process::spawn_init(kernel, program.clone(), ServiceId::Devmgr),
            kernel::process::spawn_service(kernel, program.clone(), ServiceId::Statefs),
            kernel::process::spawn_service(kernel, program.clone(), ServiceId::Keystored),
            #[cfg(feature = "net")]
            kernel::process::spawn_service(kernel, program.clone(), ServiceId::Netstackd),
            kernel::process::spawn_service(kernel, program, ServiceId::Dsoftbusd),
        ]
        .into_iter()
        .filter_map(Result::err)
        .collect()
    }

    /// Prints a refused spawn as the failure it is.
    pub fn report_refused(refused: &SpawnError) {
        kernel::console_line("KERNEL", &format!("FAIL cannot start a task: {refused}"));
    }
}

#[cfg(target_arch = "riscv64")]
pub use riscv::{report_refused, spawn_services};
