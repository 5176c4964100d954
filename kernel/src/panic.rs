//! A panic names the task it happened in and ends the run with a failure status.

use crate::{console, platform, shutdown};

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let task = platform::current_task().map_or("kernel", |id| id.name());
    match info.location() {
        Some(at) => console::line(
            "KERNEL",
            format_args!(
                "panic in task {task} at {}:{}: {}",
                at.file(),
                at.line(),
                info.message()
            ),
        ),
        None => console::line(
            "KERNEL",
            format_args!("panic in task {task}: {}", info.message()),
        ),
    }
    shutdown::shutdown(false, None)
}
