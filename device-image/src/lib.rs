//! The services of a device, spawned the way a device ships them.
//!
//! One list, used by both images: the production image (`device-image`, this crate's
//! binary) runs only these, and the test image (`os-image`) adds the selftest task
//! beside them, so what the ladder proves is what a device runs.
//!
//! Tasks: logd, rngd, netstackd and dsoftbusd (user-mode processes of the image's
//! user program, `programs/`; rngd drives the entropy device and netstackd the
//! network device from its own window, netstackd runs TCP/IPv4 on virtio-net and
//! loopback with the `net` feature, dsoftbusd Noise XK over TCP), statefs and
//! keystored (sealing with the image's AEAD and its Noise hash's HKDF), which are
//! still kernel tasks in supervisor mode.

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
    use provider_select::{Selected, SelectedHash as Hash};

    /// Says on the console when more than one backend per axis is compiled in (the
    /// `--all-features` rule: the first in provider-select's table wins).
    pub fn announce_backends() {
        if provider_select::AMBIGUOUS {
            let compiled: Vec<&str> = provider_select::compiled_in().collect();
            let line = format!(
                "more than one backend per axis compiled in ({}); using {}",
                compiled.join(", "),
                provider_select::selected_name()
            );
            kernel::console_line("KERNEL", &line);
        }
    }

    /// Spawns every service; returns the refusals (each a failure the caller prints).
    /// `program` is the image's user program
    /// ([`kernel::process::load_user_program`]), whose processes run the services
    /// that have moved to user mode: logd, rngd, netstackd (which reads its addresses
    /// from the command line) and dsoftbusd.
    pub fn spawn_services(
        kernel: &mut Kernel<RiscvPlatform>,
        program: Option<Rc<Program>>,
    ) -> Vec<SpawnError> {
        [
            kernel::process::spawn_service(kernel, program.clone(), ServiceId::Logd),
            kernel::process::spawn_service(kernel, program.clone(), ServiceId::Rngd),
            kernel.spawn(ServiceId::Statefs, statefs::run),
            kernel.spawn(ServiceId::Keystored, |ep| {
                keystored::run::<Selected, Hash, _>(ep, kernel_core::config::PURPOSES)
            }),
            #[cfg(feature = "net")]
            kernel::process::spawn_service(kernel, program.clone(), ServiceId::Netstackd),
            kernel::process::spawn_service(kernel, program.clone(), ServiceId::Dsoftbusd),
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
pub use riscv::{announce_backends, report_refused, spawn_services};
