//! The production riscv64 image of one provider combination.
//!
//! The kernel and the services (see the library), and nothing else: no selftest, no
//! benchmarks, no main task. It boots, each service says it is ready, keystored
//! creates or restores the device identity, and dsoftbusd serves Noise XK sessions to
//! the peers its trust store names, for as long as the machine runs.
//!
//! Built by `cargo xtask test` beside the test image (same features), booted by the
//! `device` scenario on every combination, and measured by `cargo xtask bench`: its
//! `.text + .rodata` is the footprint a device ships. On the host this binary only says
//! how to build it.

#![cfg_attr(target_arch = "riscv64", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(target_arch = "riscv64")]
#[riscv_rt::entry]
fn main(hart_id: usize, device_tree: usize) -> ! {
    kernel::boot_device(
        hart_id,
        device_tree,
        provider_select::selected_name(),
        |kernel, boot| {
            device_image::announce_backends();
            let program = kernel::process::load_user_program(&boot);
            for refused in device_image::spawn_services(kernel, program) {
                device_image::report_refused(&refused);
            }
        },
    )
}

#[cfg(not(target_arch = "riscv64"))]
fn main() {
    eprintln!(
        "device-image is the riscv64 production image ({}); build and boot it with \
         `cargo xtask test-device`, measure it with `cargo xtask size`",
        provider_select::selected_name()
    );
    std::process::exit(2);
}
