//! The user side of the kernel's system-call ABI (`docs/syscalls.md`).
//!
//! A user-mode program depends on this crate, links with `-Tuser.ld` (its build
//! script says `cargo::rustc-link-arg-bins=-Tuser.ld`) and defines
//! `#[unsafe(no_mangle)] extern "C" fn main(a0, a1, heap, heap_len) -> !`; the entry
//! ([`_start`]) calls it with the four values the kernel put in `a0`..`a3`. A panic
//! prints `panic` and the message's location on the console and exits with
//! [`PANIC_EXIT`].
//!
//! Every call here is one `ecall`; the kernel checks every buffer against the
//! process's own mappings, so a wrong address is an [`Error`], never a fault of the
//! kernel's. On the host this crate is empty.

#![no_std]
#![cfg(target_arch = "riscv64")]

use core::arch::asm;

/// The system call numbers (`a7`).
pub mod number {
    /// `exit(code)`.
    pub const EXIT: usize = 0;
    /// `yield()`.
    pub const YIELD: usize = 1;
    /// `console(address, length)`.
    pub const CONSOLE: usize = 2;
    /// `uptime()`.
    pub const UPTIME: usize = 3;
}

/// The exit code of a program that panicked.
pub const PANIC_EXIT: usize = 101;

/// Why the kernel refused a call (the code in `a0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// 1: no system call has this number.
    UnknownCall,
    /// 2: the buffer wraps or leaves the address space.
    Wraps,
    /// 3: a page of the buffer is not mapped in this process.
    Unmapped,
    /// 4: a page of the buffer is the kernel's.
    NotUser,
    /// 5: a page does not allow the access.
    Permission,
    /// 6: the buffer is longer than the call takes.
    TooLong,
    /// A code this crate does not know.
    Other(usize),
}

impl Error {
    fn from_code(code: usize) -> Self {
        match code {
            1 => Self::UnknownCall,
            2 => Self::Wraps,
            3 => Self::Unmapped,
            4 => Self::NotUser,
            5 => Self::Permission,
            6 => Self::TooLong,
            other => Self::Other(other),
        }
    }
}

/// System call `number` with arguments `args` in a0..a2: `Ok(a1)` when `a0` comes back
/// 0, the error otherwise.
///
/// # Errors
/// What the kernel answered.
pub fn call(number: usize, args: [usize; 3]) -> Result<usize, Error> {
    let status: usize;
    let value: usize;
    // SAFETY: `ecall` traps to the kernel, which reads a0..a2 and a7 and writes a0 and
    // a1 only; it never touches this process's memory except through the buffer
    // arguments, which it checks, and resumes at the next instruction.
    unsafe {
        asm!(
            "ecall",
            inlateout("a0") args[0] => status,
            inlateout("a1") args[1] => value,
            in("a2") args[2],
            in("a7") number,
        );
    }
    match status {
        0 => Ok(value),
        code => Err(Error::from_code(code)),
    }
}

/// Ends the process with `code`.
pub fn exit(code: usize) -> ! {
    let _ = call(number::EXIT, [code, 0, 0]);
    // The kernel never resumes a process that called exit.
    loop {
        core::hint::spin_loop();
    }
}

/// Gives up the rest of this slice.
pub fn yield_now() {
    let _ = call(number::YIELD, [0; 3]);
}

/// Prints `line` on the console, after the process's prefix.
///
/// # Errors
/// [`Error::TooLong`] past the kernel's limit (256 bytes).
pub fn console(line: &[u8]) -> Result<(), Error> {
    console_raw(line.as_ptr() as usize, line.len())
}

/// The console call with any address and length: what the intruder passes to prove
/// the kernel checks them.
///
/// # Errors
/// What the kernel answered.
pub fn console_raw(address: usize, len: usize) -> Result<(), Error> {
    call(number::CONSOLE, [address, len, 0]).map(|_| ())
}

/// Milliseconds since boot.
pub fn uptime_ms() -> u64 {
    call(number::UPTIME, [0; 3]).map_or(0, |ms| ms as u64)
}

unsafe extern "C" {
    /// The program's entry, which the program defines.
    fn main(a0: usize, a1: usize, heap: usize, heap_len: usize) -> !;
}

/// The ELF entry: the kernel starts here with `sp` at the top of the stack and the
/// program's arguments in a0..a3.
///
/// # Safety
/// Called by the kernel alone, once, with the registers of the ABI.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text._start")]
pub unsafe extern "C" fn _start(a0: usize, a1: usize, heap: usize, heap_len: usize) -> ! {
    // SAFETY: `main` is the program's entry with this signature (the crate's
    // contract), called once.
    unsafe { main(a0, a1, heap, heap_len) }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    const PREFIX: &[u8] = b"panic at line ";
    let mut line = [0u8; 32];
    line[..PREFIX.len()].copy_from_slice(PREFIX);
    let at = PREFIX.len();
    let mut number = info.location().map_or(0, |l| l.line());
    let mut digits = [0u8; 10];
    let mut n = digits.len();
    loop {
        n -= 1;
        digits[n] = b'0' + (number % 10) as u8;
        number /= 10;
        if number == 0 {
            break;
        }
    }
    let tail = &digits[n..];
    line[at..at + tail.len()].copy_from_slice(tail);
    let _ = console(&line[..at + tail.len()]);
    exit(PANIC_EXIT)
}
