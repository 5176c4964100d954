//! An exception the kernel did not expect (a bad access, an illegal instruction) is
//! printed with its cause and the task it happened in, and ends the run.
//!
//! One exception is expected: a [`probe_write`], the boot's check that the MMU
//! refuses writes to the kernel's code and read-only data. A store page fault at the
//! probed address is recorded, the faulting instruction skipped, and the probe
//! returns the cause; anything else is the unexpected case above.

use core::sync::atomic::{AtomicUsize, Ordering};

use riscv::register::{scause, sepc, stval};

use crate::{console, platform, shutdown};

/// The address a probe expects to fault on; 0 when no probe runs.
static PROBED: AtomicUsize = AtomicUsize::new(0);
/// The `scause` the probe's fault had; 0 while none came.
static PROBE_CAUSE: AtomicUsize = AtomicUsize::new(0);

/// `scause` of a store/AMO page fault.
pub const STORE_PAGE_FAULT: usize = 15;

/// Writes the byte at `address` back onto itself and returns the `scause` of the
/// fault that stopped it, or `None` when the write went through (the byte is then
/// unchanged all the same: it is the value just read).
pub fn probe_write(address: usize) -> Option<usize> {
    PROBE_CAUSE.store(0, Ordering::SeqCst);
    PROBED.store(address, Ordering::SeqCst);
    let byte = address as *mut u8;
    // SAFETY: `address` is a mapped, readable byte of the kernel's image (the caller
    // passes one of its own section symbols); the write stores the value just read, so
    // memory is unchanged whether or not the MMU lets it through, and a fault at it is
    // taken by the handler below, which skips the store and returns here.
    unsafe { byte.write_volatile(byte.read_volatile()) };
    PROBED.store(0, Ordering::SeqCst);
    match PROBE_CAUSE.load(Ordering::SeqCst) {
        0 => None,
        cause => Some(cause),
    }
}

#[unsafe(export_name = "ExceptionHandler")]
fn exception_handler(_frame: &mut riscv_rt::TrapFrame) {
    let cause = scause::read();
    let probed = PROBED.load(Ordering::SeqCst);
    if probed != 0 && !cause.is_interrupt() && stval::read() == probed {
        PROBE_CAUSE.store(cause.code(), Ordering::SeqCst);
        let at = sepc::read();
        // SAFETY: `sepc` is the address of the probe's store, in the kernel's code,
        // which is mapped readable; its first two bytes tell a 2-byte (compressed)
        // instruction from a 4-byte one.
        let parcel = unsafe { (at as *const u16).read_volatile() };
        let length = if parcel & 0b11 == 0b11 { 4 } else { 2 };
        // SAFETY: resuming after the faulting store, inside `probe_write`.
        unsafe { sepc::write(at + length) };
        return;
    }
    let task = platform::current_task().map_or("kernel", |id| id.name());
    console::line(
        "KERNEL",
        format_args!(
            "trap in task {task}: scause={:#x} sepc={:#x} stval={:#x}",
            cause.bits(),
            sepc::read(),
            stval::read()
        ),
    );
    shutdown::shutdown(false, None)
}
