//! Stopping the machine with a status QEMU turns into its exit code.
//!
//! The SBI system-reset extension is the firmware's way; on QEMU `virt`, OpenSBI
//! implements it with the SiFive test finisher. The kernel writes the finisher itself
//! for a failure, because not every OpenSBI passes the failure reason on.

use core::sync::atomic::{AtomicUsize, Ordering};

use sbi_rt::{NoReason, Shutdown, SystemFailure};

static FINISHER: AtomicUsize = AtomicUsize::new(0);

const FINISHER_PASS: u32 = 0x5555;
/// FAIL with code 1 in the upper half: QEMU exits with status 1.
const FINISHER_FAIL_1: u32 = 0x3333 | (1 << 16);

/// Remembers the test finisher's address for the panic and trap paths.
pub fn set_finisher(address: Option<usize>) {
    FINISHER.store(address.unwrap_or(0), Ordering::Relaxed);
}

/// Powers the machine off: QEMU exits 0 when `passed`, non-zero otherwise.
pub fn shutdown(passed: bool, finisher: Option<usize>) -> ! {
    let finisher = finisher.or_else(|| Some(FINISHER.load(Ordering::Relaxed)).filter(|&a| a != 0));
    if let (false, Some(address)) = (passed, finisher) {
        // SAFETY: `address` is the `reg` of the device tree's sifive,test node; a 32-bit
        // write of FINISHER_FAIL ends the machine.
        unsafe { core::ptr::write_volatile(address as *mut u32, FINISHER_FAIL_1) };
    }
    let _ = if passed {
        sbi_rt::system_reset(Shutdown, NoReason)
    } else {
        sbi_rt::system_reset(Shutdown, SystemFailure)
    };
    // The firmware lacks system reset: use the finisher directly, or stop the hart.
    if let Some(address) = finisher {
        let value = if passed {
            FINISHER_PASS
        } else {
            FINISHER_FAIL_1
        };
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(address as *mut u32, value) };
    }
    loop {
        riscv::asm::wfi();
    }
}
