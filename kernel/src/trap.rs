//! An exception the kernel did not expect (a bad access, an illegal instruction) is
//! printed with its cause and the task it happened in, and ends the run.

use riscv::register::{scause, sepc, stval};

use crate::{console, platform, shutdown};

#[unsafe(export_name = "ExceptionHandler")]
fn exception_handler(_frame: &riscv_rt::TrapFrame) -> ! {
    let task = platform::current_task().map_or("kernel", |id| id.name());
    console::line(
        "KERNEL",
        format_args!(
            "trap in task {task}: scause={:#x} sepc={:#x} stval={:#x}",
            scause::read().bits(),
            sepc::read(),
            stval::read()
        ),
    );
    shutdown::shutdown(false, None)
}
