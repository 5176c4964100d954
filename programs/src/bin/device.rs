//! The production image's user program: the services that run in user mode.

#![cfg_attr(target_arch = "riscv64", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(target_arch = "riscv64")]
mod program {
    fn main(start: user_rt::Start) -> ! {
        user_programs::serve(start, &user_programs::DEVICES, &user_programs::Plain);
        user_programs::not_here()
    }

    user_rt::entry!(main, combination = provider_select::SELECTED_NAME_BYTES);
}

#[cfg(not(target_arch = "riscv64"))]
fn main() {
    eprintln!("device-programs is a riscv64 user program, loaded by the production image");
    std::process::exit(2);
}
