//! The production riscv64 image's kernel: one for every provider combination.
//!
//! The kernel and the services (see the library), and nothing else: no selftest, no
//! benchmarks, no main task. It boots, each service says it is ready, keystored
//! creates or restores the device identity, and dsoftbusd serves Noise XK sessions to
//! the peers its trust store names, for as long as the machine runs.
//!
//! Built once by `cargo xtask test` beside the test image's kernel; booted with each
//! combination's `device-programs` by the `device` scenario, and measured with it by
//! `cargo xtask bench`: the two's `.text + .rodata` is the footprint a device ships. On the host this binary only says
//! how to build it.

#![cfg_attr(target_arch = "riscv64", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(target_arch = "riscv64")]
#[riscv_rt::entry]
fn main(hart_id: usize, device_tree: usize) -> ! {
    kernel::boot_device(hart_id, device_tree, |kernel, boot| {
        let program = kernel::process::load_user_program(&boot);
        for refused in device_image::spawn_services(kernel, program) {
            device_image::report_refused(&refused);
        }
    })
}

#[cfg(not(target_arch = "riscv64"))]
fn main() {
    eprintln!(
        "device-image is the riscv64 production kernel (the same for every provider \
         combination; its user program, device-programs, holds the crypto); build and \
         boot it with `cargo xtask test-device`, measure it with `cargo xtask size`"
    );
    std::process::exit(2);
}
