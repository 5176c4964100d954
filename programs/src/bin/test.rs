//! The test image's user program: the services that run in user mode, and the
//! intruder of the ladder's isolation phase (task `intruder`: its step in the first
//! argument, its target address in the second). Its network device can stall on
//! purpose (`net.stall-tx=`, `stall.rs`); the production image's program cannot.

#![cfg_attr(target_arch = "riscv64", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(target_arch = "riscv64")]
#[path = "../stall.rs"]
mod stall;

#[cfg(target_arch = "riscv64")]
mod program {
    use ipc::ServiceId;

    fn main(start: user_rt::Start) -> ! {
        if start.task == ServiceId::Intruder {
            let [step, target] = start.args;
            intruder::run(step, target, start.heap.start)
        }
        user_programs::serve(start, crate::stall::net_device_for_tests);
        user_programs::not_here()
    }

    user_rt::entry!(main);
}

#[cfg(not(target_arch = "riscv64"))]
fn main() {
    eprintln!("test-programs is a riscv64 user program, loaded by the test image");
    std::process::exit(2);
}
