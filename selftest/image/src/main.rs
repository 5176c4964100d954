//! The bootable riscv64 test image's kernel: one for every provider combination.
//!
//! The device's services, spawned by the same function as the production image's
//! (`device_image::spawn_services`); the selftest, the image's main process, whose exit
//! code decides the shutdown status; and the isolation phase. Every one of them is a
//! user-mode process of the boot's user program (`test-programs`, QEMU's `-initrd`):
//! this image is the kernel, and the selftest's code and the crypto are the program's.
//!
//! Built once by `cargo xtask test-os` (or `run`) with `--no-default-features` and
//! `net`; the user program is built per combination (one backend per axis,
//! provider-select's features) and names its combination in its ELF file, which the
//! kernel prints in its banner marker; the harness checks it is the one it asked for.
//! On the host this binary only says how to build it.

#![cfg_attr(target_arch = "riscv64", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(target_arch = "riscv64")]
mod image {
    use ipc::ServiceId;
    use kernel::MainVerdict;

    #[riscv_rt::entry]
    fn main(hart_id: usize, device_tree: usize) -> ! {
        kernel::boot(hart_id, device_tree, |kernel, boot| {
            let program = kernel::process::load_user_program(&boot);
            let services = device_image::spawn_services(kernel, program.clone());
            let verdict = MainVerdict::default();
            // The selftest (and, as `-append` asks, the benchmarks, sessions with
            // other devices, the soak): the main process.
            let selftest = kernel::process::spawn_main(
                kernel,
                program.clone(),
                ServiceId::Selftest,
                verdict.clone(),
            );
            // The isolation phase: the intruder in user mode (and, for the watchdog's
            // scenario, a spinner beside the ladder after it).
            let spin = boot.bootargs.split_whitespace().any(|word| word == "spin");
            let isolation = kernel::isolation::spawn(kernel, program, spin);
            for refused in services
                .iter()
                .chain(selftest.as_ref().err())
                .chain(isolation.as_ref().err())
            {
                device_image::report_refused(refused);
            }
            verdict
        })
    }
}

#[cfg(not(target_arch = "riscv64"))]
fn main() {
    eprintln!(
        "os-image is the riscv64 test kernel (the same for every provider combination; \
         its user program, test-programs, holds the crypto); build and boot it with \
         `cargo xtask run` or `cargo xtask test-os`"
    );
    std::process::exit(2);
}
