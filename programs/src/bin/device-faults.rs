//! The production image's services with fault injection (`fault.rs`) and nothing
//! else: the program the device scenario that faults netstackd under a host peer's
//! sessions boots the production kernel with. It is built for that test alone; the
//! shipped program is `device-programs`, which has no such switch (`cargo xtask test`
//! checks it).

#![cfg_attr(target_arch = "riscv64", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(target_arch = "riscv64")]
#[path = "../fault.rs"]
mod fault;

#[cfg(target_arch = "riscv64")]
mod program {
    fn main(start: user_rt::Start) -> ! {
        crate::fault::serve(start, user_programs::net_device)
    }

    user_rt::entry!(main, combination = provider_select::SELECTED_NAME_BYTES);
}

#[cfg(not(target_arch = "riscv64"))]
fn main() {
    eprintln!("device-faults is a riscv64 user program, for the device fault scenario alone");
    std::process::exit(2);
}
