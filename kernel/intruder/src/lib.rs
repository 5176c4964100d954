//! The intruder: each run does one thing it must not be able to do, chosen by the
//! kernel (the step) with a target address; the test image's user program calls
//! [`run`] for a process of task `intruder`.
//! The kernel judges the outcome (kernel/src/isolation.rs): a fault it names, or the
//! refusals it recorded. Where an attack goes through, the intruder says so and exits
//! with a code the kernel reports as a failure. Step 100 is the victim: it writes a
//! secret on its stack and its heap and then yields forever.
//!
//! This program is meant to misbehave: its `unsafe` blocks are the attacks.

#![no_std]
#![cfg(target_arch = "riscv64")]

pub use program::run;

mod program {
    use core::sync::atomic::{AtomicU64, Ordering};

    use user_rt::{Error, console, console_raw, exit, yield_now};

    /// The victim's rounds: writable data of its own (each process gets a private copy
    /// of the program's data pages).
    static ROUNDS: AtomicU64 = AtomicU64::new(1);

    /// Exit codes that say an attack went through.
    const READ_WENT_THROUGH: usize = 90;
    const WRITE_WENT_THROUGH: usize = 91;
    const EXECUTE_WENT_THROUGH: usize = 92;
    const SPIN_ENDED: usize = 93;
    const UNKNOWN_STEP: usize = 94;
    const FLOAT_WENT_THROUGH: usize = 95;

    /// The unknown system call's number (selftest/client/src/isolation.rs counts its
    /// audit record).
    const UNKNOWN_CALL: usize = 0x0bad;

    /// `c.jr ra` twice (`ret`): harmless code, if it ever ran.
    const RET: [u8; 4] = [0x82, 0x80, 0x82, 0x80];

    /// Runs step `step` against `target`; `heap` is the process's heap.
    pub fn run(step: usize, target: usize, heap: usize) -> ! {
        match step {
            1 => read(target),
            2 => write(target),
            3 => execute_stack(),
            4 => execute_heap(heap),
            5 => bad_buffers(target),
            6 => unknown_call(),
            7 => spin(),
            8 => claim_device(),
            9 => float(),
            100 => victim(target as u64, heap),
            _ => exit(UNKNOWN_STEP),
        }
    }

    fn read(address: usize) -> ! {
        // SAFETY: none; this read must fault (a kernel address, another process's).
        let value = unsafe { (address as *const u64).read_volatile() };
        core::hint::black_box(value);
        let _ = console(b"read went through");
        exit(READ_WENT_THROUGH)
    }

    fn write(address: usize) -> ! {
        // SAFETY: none; this write must fault (another process's page, its own code).
        unsafe { (address as *mut u64).write_volatile(0x1badd00d) };
        let _ = console(b"write went through");
        exit(WRITE_WENT_THROUGH)
    }

    fn jump(address: usize) -> ! {
        // SAFETY: none; the jump must fault (the page is not executable). Were it to
        // run, the code there returns at once.
        let code: extern "C" fn() = unsafe { core::mem::transmute(address) };
        code();
        let _ = console(b"execute went through");
        exit(EXECUTE_WENT_THROUGH)
    }

    fn execute_stack() -> ! {
        let code = RET;
        let address = core::hint::black_box(&code).as_ptr() as usize;
        jump(address)
    }

    fn execute_heap(heap: usize) -> ! {
        // SAFETY: the heap's first page is this process's, read+write (the kernel's
        // ABI); writing four bytes there is ordinary.
        unsafe { core::ptr::copy_nonoverlapping(RET.as_ptr(), heap as *mut u8, RET.len()) };
        jump(heap)
    }

    fn bad_buffers(foreign: usize) -> ! {
        use user_rt::number;
        let ranges: [(usize, usize, Error); 4] = [
            // The kernel's code (mapped in every space, not for user mode).
            (0x8020_0000, 16, Error::NotUser),
            // Another process's stack.
            (foreign, 16, Error::Unmapped),
            // Nothing at all.
            (0x10_0000_0000, 16, Error::Unmapped),
            // A range that wraps around the top of the address space.
            (usize::MAX - 7, 16, Error::Wraps),
        ];
        for (index, (address, len, want)) in ranges.into_iter().enumerate() {
            if console_raw(address, len) != Err(want) {
                exit(10 + index)
            }
        }
        // Its own bytes, more of them than a console line takes.
        let line = [b'x'; 300];
        if console_raw(line.as_ptr() as usize, line.len()) != Err(Error::TooLong) {
            exit(14)
        }
        // Every other call that takes a buffer, each with the four ranges: the buffer
        // is checked before anything else is looked at (`take_reply` checks its call
        // id first, and this process has no call to take; `audit_pop` its feed).
        /// A call's number, and its arguments around a buffer's address and length.
        type Call = (usize, fn(usize, usize) -> [usize; 3]);
        let calls: [Call; 5] = [
            (number::CALL, |address, len| [1, address, len]),
            (number::RECEIVE, |address, len| [address, len, 0]),
            (number::REPLY, |address, len| [0, address, len]),
            (number::AUDIT, |address, len| [address, len, 0]),
            (number::BOOTARGS, |address, len| [address, len, 0]),
        ];
        for (n, (number, args)) in calls.into_iter().enumerate() {
            for (index, (address, len, want)) in ranges.into_iter().enumerate() {
                if user_rt::call(number, args(address, len)) != Err(want) {
                    exit(40 + 4 * n + index)
                }
            }
        }
        exit(0)
    }

    fn unknown_call() -> ! {
        match user_rt::call(UNKNOWN_CALL, [0; 3]) {
            Err(Error::UnknownCall) => exit(0),
            _ => exit(20),
        }
    }

    fn claim_device() -> ! {
        // The entropy device's window (capability 1): the manifest gives it to rngd.
        match user_rt::call(user_rt::number::CLAIM, [1, 0, 0]) {
            Err(Error::Capability(ipc::CapabilityError::NotGranted)) => {}
            _ => exit(30),
        }
        // DMA pages: only for the holder of a device window.
        match user_rt::call(user_rt::number::DMA_ALLOC, [1, 0, 0]) {
            Err(Error::NotHeld) => exit(0),
            _ => exit(31),
        }
    }

    fn float() -> ! {
        // SAFETY: none; `fmv.w.x f0, zero` (the F extension, which the kernel keeps off
        // in user mode) must stop the process with an illegal-instruction fault. Were it
        // to run, it writes 0 to a register nothing of this program uses.
        unsafe { core::arch::asm!(".4byte 0xf0000053") };
        let _ = console(b"a floating-point instruction went through");
        exit(FLOAT_WENT_THROUGH)
    }

    fn spin() -> ! {
        let mut n: u64 = 0;
        loop {
            n = core::hint::black_box(n.wrapping_add(1));
            if n == u64::MAX {
                exit(SPIN_ENDED)
            }
        }
    }

    fn victim(seed: u64, heap: usize) -> ! {
        let mut secret = [0u8; 16];
        secret[..8].copy_from_slice(&seed.to_le_bytes());
        secret[8..].copy_from_slice(&(!seed).to_le_bytes());
        let on_stack = core::hint::black_box(secret);
        // SAFETY: the heap's first page is this process's (the ABI).
        unsafe { core::ptr::copy_nonoverlapping(secret.as_ptr(), heap as *mut u8, 16) };
        loop {
            core::hint::black_box(&on_stack);
            ROUNDS.fetch_add(1, Ordering::Relaxed);
            yield_now();
        }
    }
}
