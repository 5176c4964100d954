//! The test image's user program: the services that run in user mode, the selftest
//! (the image's main process, `selftest::image`: its exit code is the image's verdict),
//! and the intruder of the ladder's isolation phase (task `intruder`: its step in the
//! first argument, its target address in the second). Its network device can stall on
//! purpose (`net.stall-tx=`, `stall.rs`), and a service's process can fault on purpose
//! (`fault=`, `fault.rs`); the production image's program can do neither.

#![cfg_attr(target_arch = "riscv64", no_std, no_main)]
#![deny(unsafe_code)]

#[cfg(target_arch = "riscv64")]
#[path = "../stall.rs"]
mod stall;

#[cfg(target_arch = "riscv64")]
#[path = "../fault.rs"]
mod fault;

#[cfg(target_arch = "riscv64")]
extern crate alloc;

#[cfg(target_arch = "riscv64")]
mod program {
    use ipc::ServiceId;
    use provider_select::{Selected, SelectedHash as Hash};
    use selftest::image::Counters;
    use user_rt::{UserEndpoint, block_on, counters, exit, main_exit};

    /// This process's own instructions, read at the start of a fresh slice (the yield
    /// gives up the rest of the current one), so a computation counted between two
    /// reads is never preempted: its count is exact.
    fn own_instructions() -> u64 {
        user_rt::yield_now();
        counters::task(ServiceId::Selftest)
    }

    fn kernel_heap() -> selftest::soak::Heap {
        let [in_use, high_water, size] = counters::kernel_heap();
        selftest::soak::Heap {
            in_use: in_use as usize,
            high_water: high_water as usize,
            size: size as usize,
        }
    }

    fn structure() -> Result<(), alloc::string::String> {
        match counters::structure() {
            Ok(_) => Ok(()),
            Err(violations) => Err(alloc::format!(
                "the kernel found {violations} violations (the first on its console)"
            )),
        }
    }

    fn selftest() -> ! {
        let counters = Counters {
            own_instructions,
            instructions_retired: counters::instret,
            task_instructions: counters::task,
            heap: kernel_heap,
            structure,
            restarts: counters::restarts,
        };
        block_on(async move {
            let ep = UserEndpoint::new(ServiceId::Selftest);
            let bootargs = user_rt::bootargs();
            let outcome =
                selftest::image::main::<Selected, Hash, _>(&ep, &bootargs, counters).await;
            exit(match outcome {
                selftest::Outcome::Passed => main_exit::PASSED,
                selftest::Outcome::FailedClosed => main_exit::FAILED_CLOSED,
                selftest::Outcome::Failed => main_exit::FAILED,
            })
        })
    }

    fn main(start: user_rt::Start) -> ! {
        if start.task == ServiceId::Intruder {
            let [step, target] = start.args;
            intruder::run(step, target, start.heap.start)
        }
        if start.task == ServiceId::Selftest {
            selftest()
        }
        crate::fault::serve(start, crate::stall::net_device_for_tests)
    }

    user_rt::entry!(main, combination = provider_select::SELECTED_NAME_BYTES);
}

#[cfg(not(target_arch = "riscv64"))]
fn main() {
    eprintln!("test-programs is a riscv64 user program, loaded by the test image");
    std::process::exit(2);
}
