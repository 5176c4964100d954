//! The user side of the kernel's system-call ABI (`docs/syscalls.md`).
//!
//! A user-mode program depends on this crate, links with `-Tuser.ld` (its build
//! script says `cargo::rustc-link-arg-bins=-Tuser.ld`) and names its entry with
//! [`entry!`]: a `fn(Start) -> !` the kernel's start registers arrive in. Before it
//! runs, the heap the kernel gave the process backs the global allocator. A panic
//! prints `panic at line N` on the console and exits with [`PANIC_EXIT`].
//!
//! [`UserEndpoint`] is `ipc::Endpoint` over these calls, so a service's code runs in a
//! process unchanged; [`block_on`] polls its future, yielding the slice whenever it
//! waits.
//!
//! Every call here is one `ecall`; the kernel checks every buffer against the
//! process's own mappings, so a wrong address is an [`Error`], never a fault of the
//! kernel's. On the host this crate is empty.

#![no_std]
#![cfg(target_arch = "riscv64")]

extern crate alloc;

mod endpoint;

use core::arch::asm;

pub use endpoint::{BoxedDisk, BoxedNet, NoDevice, UserAuditFeed, UserEndpoint, block_on};

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
    /// `call(service, address, length)`.
    pub const CALL: usize = 4;
    /// `take_reply(call, address, capacity)`.
    pub const TAKE_REPLY: usize = 5;
    /// `cancel(call)`.
    pub const CANCEL: usize = 6;
    /// `receive(address, capacity)`.
    pub const RECEIVE: usize = 7;
    /// `reply(token, address, length)`.
    pub const REPLY: usize = 8;
    /// `audit(address, length)`.
    pub const AUDIT: usize = 9;
    /// `claim(capability)`.
    pub const CLAIM: usize = 10;
    /// `audit_pop(address, capacity)`.
    pub const AUDIT_POP: usize = 11;
    /// `audit_lost()`.
    pub const AUDIT_LOST: usize = 12;
    /// `dma_alloc(pages)`.
    pub const DMA_ALLOC: usize = 13;
    /// `dma_free(address)`.
    pub const DMA_FREE: usize = 14;
    /// `bootargs(address, capacity)`.
    pub const BOOTARGS: usize = 15;
    /// `assign(address, capability)`.
    pub const ASSIGN: usize = 16;
    /// `counters(kind, task)`: the test image's selftest alone.
    pub const COUNTERS: usize = 17;
}

/// The exit codes of the test image's main process (docs/syscalls.md): any other code
/// is a failure.
pub mod main_exit {
    /// Every check passed.
    pub const PASSED: usize = 0;
    /// The system failed closed as designed (no entropy).
    pub const FAILED_CLOSED: usize = 1;
    /// Something failed.
    pub const FAILED: usize = 2;
}

/// The counters the test image's selftest reads for its benchmarks and its soak
/// (`counters`; the kernel refuses every other task).
pub mod counters {
    use super::{call, call3, number};

    /// The machine's retired instructions.
    pub fn instret() -> u64 {
        call(number::COUNTERS, [0, 0, 0]).map_or(0, |n| n as u64)
    }

    /// The instructions task `task` retired inside its polls (its process and the
    /// kernel's work for it), the poll under way included.
    pub fn task(task: ipc::ServiceId) -> u64 {
        call(number::COUNTERS, [1, task as usize, 0]).map_or(0, |n| n as u64)
    }

    /// The kernel heap's bytes in use, their high-water mark, its size.
    pub fn kernel_heap() -> [u64; 3] {
        call3(number::COUNTERS, [2, 0, 0]).map_or([0; 3], |r| r.map(|n| n as u64))
    }

    /// The restarts the kernel made so far (every service's), and its milliseconds at
    /// the latest (0 before the first).
    pub fn restarts() -> [u64; 2] {
        call3(number::COUNTERS, [4, 0, 0]).map_or([0; 2], |[n, at, _]| [n as u64, at as u64])
    }

    /// The kernel's structural check over every live address space: how many spaces
    /// it walked, or how many violations it found (it prints the first). A refused
    /// call counts as one violation: the check did not run.
    ///
    /// # Errors
    /// The number of violations.
    pub fn structure() -> Result<u64, u64> {
        match call3(number::COUNTERS, [3, 0, 0]) {
            Ok([spaces, 0, _]) => Ok(spaces as u64),
            Ok([_, violations, _]) => Err(violations as u64),
            Err(_) => Err(1),
        }
    }
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
    /// 6: the buffer is longer than the call takes, or shorter than what it must hold.
    TooLong,
    /// 16..=23: an IPC refusal.
    Ipc(ipc::IpcError),
    /// 24: the reply has not come yet.
    Pending,
    /// 25: nothing queued.
    Empty,
    /// 32..=34: a capability refusal.
    Capability(ipc::CapabilityError),
    /// 35: the call needs a capability the process does not hold.
    NotHeld,
    /// 36: a record the kernel cannot read.
    BadRecord,
    /// 37: no capability has that number.
    UnknownCapability,
    /// 38: not handed to user-mode processes (yet).
    NotSupported,
    /// 39: more DMA pages than a process may hold.
    Exhausted,
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
            16 => Self::Ipc(ipc::IpcError::Denied),
            17 => Self::Ipc(ipc::IpcError::NoSuchService),
            18 => Self::Ipc(ipc::IpcError::QueueFull),
            19 => Self::Ipc(ipc::IpcError::Timeout),
            20 => Self::Ipc(ipc::IpcError::PeerGone),
            21 => Self::Ipc(ipc::IpcError::StaleReply),
            22 => Self::Ipc(ipc::IpcError::TooManyCalls),
            23 => Self::Ipc(ipc::IpcError::MalformedFrame(ipc::FrameError::Truncated {
                len: 0,
            })),
            24 => Self::Pending,
            25 => Self::Empty,
            32 => Self::Capability(ipc::CapabilityError::NotGranted),
            33 => Self::Capability(ipc::CapabilityError::Absent),
            34 => Self::Capability(ipc::CapabilityError::AlreadyClaimed),
            35 => Self::NotHeld,
            36 => Self::BadRecord,
            37 => Self::UnknownCapability,
            38 => Self::NotSupported,
            39 => Self::Exhausted,
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
    call3(number, args)
        .map(|[value, _, _]| value)
        .map_err(|(error, _)| error)
}

/// System call `number` with arguments `args` in a0..a2: `Ok([a1, a2, a3])` when `a0`
/// comes back 0, otherwise the error and `a1` (the length a buffer must have, for
/// [`Error::TooLong`]).
///
/// # Errors
/// What the kernel answered.
pub fn call3(number: usize, args: [usize; 3]) -> Result<[usize; 3], (Error, usize)> {
    let status: usize;
    let (r1, r2, r3): (usize, usize, usize);
    // SAFETY: `ecall` traps to the kernel, which reads a0..a2 and a7 and writes a0..a3
    // only; it never touches this process's memory except through the buffer
    // arguments, which it checks, and resumes at the next instruction.
    unsafe {
        asm!(
            "ecall",
            inlateout("a0") args[0] => status,
            inlateout("a1") args[1] => r1,
            inlateout("a2") args[2] => r2,
            lateout("a3") r3,
            in("a7") number,
        );
    }
    match status {
        0 => Ok([r1, r2, r3]),
        code => Err((Error::from_code(code), r1)),
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

/// The kernel command line (QEMU's `-append`).
pub fn bootargs() -> alloc::string::String {
    let len = match call3(number::BOOTARGS, [0, 0, 0]) {
        Ok(_) => return alloc::string::String::new(),
        Err((Error::TooLong, len)) => len,
        Err(_) => return alloc::string::String::new(),
    };
    let mut bytes = alloc::vec![0u8; len];
    match call(
        number::BOOTARGS,
        [bytes.as_mut_ptr() as usize, bytes.len(), 0],
    ) {
        Ok(got) => {
            bytes.truncate(got);
            alloc::string::String::from_utf8(bytes).unwrap_or_default()
        }
        Err(_) => alloc::string::String::new(),
    }
}

/// Microseconds since boot.
pub fn uptime_us() -> u64 {
    call3(number::UPTIME, [0; 3]).map_or(0, |[_, us, _]| us as u64)
}

/// What a process finds in its registers at its start (docs/syscalls.md).
#[derive(Clone, Debug)]
pub struct Start {
    /// The task it runs for (`a0`): its identity for IPC, the console and the audit
    /// stream.
    pub task: ipc::ServiceId,
    /// The kernel's two arguments (`a1`, `a2`).
    pub args: [usize; 2],
    /// Its heap (`a3`, `a4`), already backing the allocator.
    pub heap: core::ops::Range<usize>,
}

#[global_allocator]
static HEAP: embedded_alloc::LlffHeap = embedded_alloc::LlffHeap::empty();

/// A process is one thread and the kernel never runs its code re-entrantly (a trap
/// returns to where it left), so a critical section has nothing to exclude.
struct OneThread;

critical_section::set_impl!(OneThread);

// SAFETY: nothing else runs in this address space while the process runs, and the
// process has no interrupts of its own: an empty critical section excludes everything
// there is to exclude.
unsafe impl critical_section::Impl for OneThread {
    unsafe fn acquire() -> critical_section::RawRestoreState {
        // Whatever the restore state's type is in this build (the features of
        // critical-section unify across the workspace), there is nothing to restore.
        Default::default()
    }
    unsafe fn release(_: critical_section::RawRestoreState) {}
}

/// Defines the program's entry: `entry!(main, combination = NAME)` with
/// `fn main(start: Start) -> !` and `NAME` the program's provider combination as
/// zero-padded bytes (`provider_select::SELECTED_NAME_BYTES`).
///
/// The name goes in the ELF section `.combination`, which `user.ld` keeps out of every
/// loaded segment: the kernel, built once for every combination, reads it from the
/// file it loads and prints it in its banner (docs/syscalls.md).
#[macro_export]
macro_rules! entry {
    ($main:path, combination = $name:expr) => {
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        extern "Rust" fn __user_main(start: $crate::Start) -> ! {
            $main(start)
        }

        #[allow(unsafe_code)]
        #[unsafe(link_section = ".combination")]
        #[used]
        static __COMBINATION: [u8; $name.len()] = $name;
    };
}

unsafe extern "Rust" {
    /// The program's entry, defined by [`entry!`].
    fn __user_main(start: Start) -> !;
}

/// The ELF entry: the kernel starts here with `sp` at the top of the stack and the
/// start values in a0..a4.
///
/// # Safety
/// Called by the kernel alone, once, with the registers of the ABI.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text._start")]
pub unsafe extern "C" fn _start(
    task: usize,
    arg0: usize,
    arg1: usize,
    heap: usize,
    heap_len: usize,
) -> ! {
    // SAFETY: the kernel maps `heap .. heap + heap_len` read+write for this process
    // alone (the ABI), and this runs once, before anything allocates.
    unsafe { HEAP.init(heap, heap_len) };
    let Some(task) = u16::try_from(task).ok().and_then(ipc::ServiceId::from_u16) else {
        exit(PANIC_EXIT)
    };
    let start = Start {
        task,
        args: [arg0, arg1],
        heap: heap..heap + heap_len,
    };
    // SAFETY: `__user_main` is the program's entry with this signature, defined by
    // `entry!`, called once.
    unsafe { __user_main(start) }
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
