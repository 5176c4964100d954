//! User-mode processes: a program loaded from the boot's user programs (QEMU's
//! `-initrd`, an ELF), run in U-mode in an Sv39 address space of its own, reaching the
//! kernel only through system calls (`docs/syscalls.md` is the ABI).
//!
//! **Address space.** Every process's space shares the kernel's top-level slots
//! ([`sv39::AddressSpace::sharing`]): the kernel's pages are in it, global and never
//! user-accessible, so the kernel runs on the process's tables across a trap. The
//! process's own part lies in slots the kernel does not use:
//!
//! - the program at its link address ([`PROGRAM`]): code read+execute and read-only
//!   data read-only, mapped from one set of frames shared by every process of the
//!   program (code is public; the frames are never writable anywhere in user mode);
//!   its writable data copied into frames of its own, and its bss zeroed;
//! - a heap of the manifest's size at [`HEAP`], read+write, never executable;
//! - a stack of the manifest's size ending at the top of the process's own stack
//!   window ([`STACK_WINDOWS`] + n × [`STACK_WINDOW`], so two processes' stacks never
//!   share an address), with the page below it left unmapped: the guard page.
//!
//! No page is writable and executable (`sv39` refuses the mapping). Every frame a
//! process gets is zeroed first, and zeroed again when it is freed
//! ([`crate::mmu::HeapFrames::free`]), so nothing of a process reaches another through
//! reused memory.
//!
//! **Running.** A process runs inside its kernel task's poll: [`Process::resume`]
//! enters user mode for one slice ([`SLICE_US`]), serves the system calls it makes on
//! the way, and returns when the process yields, its slice ends (the timer preempts it:
//! a process that spins cannot keep the others from running), it exits, or it faults.
//! A fault stops the process alone: the kernel names it with `scause` and `stval`,
//! writes an audit record and frees its memory; the machine goes on. The process
//! watchdog stops a process that ran [`WATCHDOG_BUDGET_MS`] of its own time without a
//! system call.

mod devices;
mod switch;

use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use ipc::policy::MemoryBound;
use ipc::{Action, Endpoint, ServiceId, Verdict};
use kernel_core::KernelEndpoint;
use sv39::{AccessError, AddressSpace, Flags, Frames, MapError, PAGE_SIZE};

use crate::mmu::HeapFrames;
use crate::{RiscvPlatform, clock};

pub use devices::{register as register_window, structural_check};
pub use switch::Trap;

/// Where programs are linked: 128 GiB, one top-level slot (1 GiB) of their own.
pub const PROGRAM: Range<u64> = 0x20_0000_0000..0x20_4000_0000;
/// Where a process's heap starts.
pub const HEAP: u64 = 0x30_0000_0000;
/// Where the stack windows start: process n's stack ends at the top of window n.
pub const STACK_WINDOWS: u64 = 0x38_0000_0000;
/// The size of one stack window (16 MiB).
pub const STACK_WINDOW: u64 = 0x100_0000;
/// Where device windows are mapped in their holder: each at its own page from here.
pub const DEVICE_WINDOWS: u64 = 0x28_0000_0000;
/// Where a device holder's DMA pages are mapped.
pub const DMA: u64 = 0x2c_0000_0000;
/// The most DMA pages a process may hold at once, and ask for in one call.
pub const MAX_DMA_PAGES: u64 = 64;
/// The pages of a process's DMA window, from [`DMA`]: allocations are placed first-fit
/// in it and their addresses reused, so its page tables stay bounded however many
/// buffers a driver bounces over a long run (twice [`MAX_DMA_PAGES`]: room to
/// fragment).
pub const DMA_WINDOW_PAGES: u64 = 2 * MAX_DMA_PAGES;
/// How many stack windows there are (the process numbers wrap around them).
const STACK_WINDOW_COUNT: u64 = 1024;
/// The next process's number: its stack window.
static NEXT_WINDOW: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// How long a process runs before the timer preempts it.
pub const SLICE_US: u64 = 10_000;
/// How much of its own time a process may run without a system call before the
/// watchdog stops it.
pub const WATCHDOG_BUDGET_MS: u64 = 1_000;
/// The longest console line a process may write in one call, in bytes.
pub const CONSOLE_MAX: usize = 256;

/// The system call numbers (`a7`). `docs/syscalls.md` is the contract.
pub mod number {
    /// `exit(code)`: the process ends; the kernel frees its memory.
    pub const EXIT: u64 = 0;
    /// `yield()`: the process gives up the rest of its slice.
    pub const YIELD: u64 = 1;
    /// `console(address, length)`: one line on the console, after the process's
    /// prefix; at most [`super::CONSOLE_MAX`] bytes, control characters replaced.
    pub const CONSOLE: u64 = 2;
    /// `uptime()`: milliseconds since boot, in `a1`.
    pub const UPTIME: u64 = 3;
    /// `call(service, address, length)`: submits a request frame; the call's id in
    /// `a1`. Does not wait.
    pub const CALL: u64 = 4;
    /// `take_reply(call, address, capacity)`: the call's reply, its length in `a1`;
    /// `Pending` while it has not come.
    pub const TAKE_REPLY: u64 = 5;
    /// `cancel(call)`: the caller no longer waits for the call.
    pub const CANCEL: u64 = 6;
    /// `receive(address, capacity)`: the next request: its length in `a1`, its reply
    /// token in `a2`, its sender's id in `a3`; `Empty` when there is none.
    pub const RECEIVE: u64 = 7;
    /// `reply(token, address, length)`: answers a request with a reply or error
    /// frame.
    pub const REPLY: u64 = 8;
    /// `audit(address, length)`: a record of the process's own (24-byte encoding,
    /// origin and sequence zero: the kernel stamps them).
    pub const AUDIT: u64 = 9;
    /// `claim(capability)`: takes a capability the manifest grants the task.
    pub const CLAIM: u64 = 10;
    /// `audit_pop(address, capacity)`: the next record of the kernel's audit stream
    /// (24-byte encoding), for the holder of the audit feed; `Empty` when none.
    pub const AUDIT_POP: u64 = 11;
    /// `audit_lost()`: records the stream lost: the kernel's in `a1`, tasks' in `a2`.
    pub const AUDIT_LOST: u64 = 12;
    /// `dma_alloc(pages)`: zeroed, physically contiguous pages for the holder of a
    /// device window: their address in `a1`, their physical address in `a2`.
    pub const DMA_ALLOC: u64 = 13;
    /// `dma_free(address)`: gives DMA pages back (zeroed).
    pub const DMA_FREE: u64 = 14;
    /// `bootargs(address, capacity)`: the kernel command line; its length in `a1`.
    pub const BOOTARGS: u64 = 15;
    /// `assign(address, capability)`: the device manager hands the block window it
    /// holds at `address` on as a disk capability; capability `u64::MAX` says it is
    /// done.
    pub const ASSIGN: u64 = 16;
    /// `counters(kind, task)`: the test image's selftest alone (`NotGranted` for any
    /// other task) reads the counters its benchmarks and soak need: kind
    /// [`super::counter::INSTRET`], [`super::counter::TASK`],
    /// [`super::counter::HEAP`].
    pub const COUNTERS: u64 = 17;
}

/// The kinds of `counters`.
pub mod counter {
    /// `a1`: the machine's retired instructions (`instret`).
    pub const INSTRET: u64 = 0;
    /// `a1`: the instructions task `a1` retired inside its polls (its process's work
    /// and the kernel's on its behalf), the current poll included.
    pub const TASK: u64 = 1;
    /// `a1`, `a2`, `a3`: the kernel heap's bytes in use, their high-water mark, its
    /// size.
    pub const HEAP: u64 = 2;
    /// The structural check over every live address space: `a1` the spaces walked,
    /// `a2` the violations (0 when it holds; the kernel prints the first).
    pub const STRUCTURE: u64 = 3;
    /// `a1`: the restarts the kernel made so far, every service's; `a2`: the
    /// kernel's milliseconds at the latest (0 before the first).
    pub const RESTARTS: u64 = 4;
}

/// Restarts made so far, every service's, and the kernel's milliseconds at the latest:
/// for the selftest's soak, which tells a round a fault cut from a failure.
static RESTARTS_MADE: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
static LATEST_RESTART_MS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The kernel command line, for `bootargs`.
static BOOTARGS: critical_section::Mutex<core::cell::Cell<&'static str>> =
    critical_section::Mutex::new(core::cell::Cell::new(""));

/// Keeps the kernel command line for the processes that read it (`bootargs`).
pub fn set_bootargs(line: &'static str) {
    critical_section::with(|cs| BOOTARGS.borrow(cs).set(line));
}

/// Why a system call was refused: the code in `a0` (0 is success).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum SyscallError {
    /// No system call has this number.
    UnknownCall = 1,
    /// The buffer wraps around the address space or leaves Sv39's canonical range.
    Wraps = 2,
    /// A page of the buffer is not mapped in the caller's space (another process's
    /// address, or nothing).
    Unmapped = 3,
    /// A page of the buffer is not a user page (a kernel address).
    NotUser = 4,
    /// A page of the buffer does not allow the access (read for input, write for
    /// output).
    Permission = 5,
    /// The buffer is longer than the call takes, or shorter than what it must hold
    /// (then `a1` says how long it must be, and nothing is lost).
    TooLong = 6,
    /// IPC: the policy does not allow this call.
    Denied = 16,
    /// IPC: no such service runs.
    NoSuchService = 17,
    /// IPC: the service's queue is full.
    QueueFull = 18,
    /// IPC: the service did not answer before the call's deadline.
    Timeout = 19,
    /// IPC: the service stopped, or the call id is not the caller's.
    PeerGone = 20,
    /// IPC: a reply to a call that is not outstanding for the replier.
    StaleReply = 21,
    /// IPC: the caller has as many calls outstanding as a task may.
    TooManyCalls = 22,
    /// IPC: not a well-formed frame of the kind the call takes.
    MalformedFrame = 23,
    /// The call's reply has not come yet.
    Pending = 24,
    /// Nothing to take: no request queued, no audit record.
    Empty = 25,
    /// The manifest does not grant the capability to this task.
    NotGranted = 32,
    /// The machine has no such device.
    Absent = 33,
    /// The capability was already claimed.
    AlreadyClaimed = 34,
    /// The call needs a capability the process does not hold.
    NotHeld = 35,
    /// The record's encoding is not valid (or its origin or sequence is not zero).
    BadRecord = 36,
    /// No capability has this number.
    UnknownCapability = 37,
    /// Reserved (was: a capability not handed to user-mode processes yet; every one
    /// is now).
    NotSupported = 38,
    /// More DMA pages than a process may hold.
    Exhausted = 39,
}

impl SyscallError {
    /// The code in `a0`.
    pub const fn code(self) -> u16 {
        self as u16
    }
}

impl From<ipc::IpcError> for SyscallError {
    fn from(why: ipc::IpcError) -> Self {
        use ipc::IpcError;
        match why {
            IpcError::MalformedFrame(_) => Self::MalformedFrame,
            IpcError::Denied => Self::Denied,
            IpcError::NoSuchService => Self::NoSuchService,
            IpcError::QueueFull => Self::QueueFull,
            IpcError::Timeout => Self::Timeout,
            IpcError::PeerGone => Self::PeerGone,
            IpcError::StaleReply => Self::StaleReply,
            IpcError::TooManyCalls => Self::TooManyCalls,
            // IpcError is non-exhaustive: a kind this kernel does not know yet.
            _ => Self::PeerGone,
        }
    }
}

impl From<ipc::CapabilityError> for SyscallError {
    fn from(why: ipc::CapabilityError) -> Self {
        match why {
            ipc::CapabilityError::NotGranted => Self::NotGranted,
            ipc::CapabilityError::Absent => Self::Absent,
            ipc::CapabilityError::AlreadyClaimed => Self::AlreadyClaimed,
        }
    }
}

impl From<AccessError> for SyscallError {
    fn from(why: AccessError) -> Self {
        match why {
            AccessError::Wraps => Self::Wraps,
            AccessError::Unmapped { .. } => Self::Unmapped,
            AccessError::NotUser { .. } => Self::NotUser,
            AccessError::Permission { .. } => Self::Permission,
        }
    }
}

/// Why a program could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// Not a 64-bit little-endian RISC-V executable ELF.
    NotAnExecutable,
    /// The ELF's headers do not parse.
    Malformed,
    /// A loadable segment outside [`PROGRAM`], writable and executable, or
    /// overlapping another.
    BadSegment {
        /// Its virtual address.
        vaddr: u64,
    },
    /// The entry point is not in an executable segment.
    BadEntry,
    /// No memory left for its frames.
    OutOfMemory,
    /// No `.combination` section naming its provider combination (1 to
    /// [`program_combination::CAPACITY`] printable ASCII bytes, zero-padded): `user_rt::entry!`
    /// puts it there.
    NoCombination,
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotAnExecutable => f.write_str("not a riscv64 executable ELF"),
            Self::Malformed => f.write_str("malformed ELF headers"),
            Self::NoCombination => f.write_str(
                "no .combination section with a printable name of its provider combination",
            ),
            Self::BadSegment { vaddr } => write!(
                f,
                "segment at {vaddr:#x} is outside the program window, writable and executable, or overlapping"
            ),
            Self::BadEntry => f.write_str("the entry point is not in the program's code"),
            Self::OutOfMemory => f.write_str("out of memory"),
        }
    }
}

/// Why a process could not be started.
#[derive(Debug)]
pub enum StartError {
    /// The manifest gives the task no memory bound: it cannot run as a process.
    NoMemoryBound(ServiceId),
    /// A mapping was refused.
    Map(MapError),
    /// No memory left.
    OutOfMemory,
    /// The kernel's space is not built yet.
    NoKernelSpace,
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoMemoryBound(task) => write!(f, "the manifest gives {task} no memory bound"),
            Self::Map(why) => write!(f, "{why}"),
            Self::OutOfMemory => f.write_str("out of memory"),
            Self::NoKernelSpace => f.write_str("paging is not on"),
        }
    }
}

impl From<MapError> for StartError {
    fn from(why: MapError) -> Self {
        match why {
            MapError::OutOfFrames => Self::OutOfMemory,
            other => Self::Map(other),
        }
    }
}

/// A page of a loaded program: where it goes and what it holds.
struct ProgramPage {
    va: u64,
    flags: Flags,
    /// Read-only pages: the one frame every process maps. Writable pages: the frame
    /// each process's copy starts from (never mapped itself).
    frame: u64,
}

/// A program, loaded once: its pages in frames of their own, out of the initrd.
pub struct Program {
    entry: u64,
    pages: Vec<ProgramPage>,
    combination: String,
}

fn down(at: u64) -> u64 {
    at & !(PAGE_SIZE - 1)
}

fn flags_of(p_flags: u32) -> Flags {
    let mut flags = Flags::USER;
    if p_flags & elf::abi::PF_R != 0 {
        flags = flags | Flags::READ;
    }
    if p_flags & elf::abi::PF_W != 0 {
        flags = flags | Flags::WRITE;
    }
    if p_flags & elf::abi::PF_X != 0 {
        flags = flags | Flags::EXECUTE;
    }
    flags
}

impl Program {
    /// Loads the ELF executable `image`: every loadable segment must lie in
    /// [`PROGRAM`], on pages of its own, and not be writable and executable.
    ///
    /// # Errors
    /// [`LoadError`].
    pub fn load(image: &[u8]) -> Result<Self, LoadError> {
        use elf::endian::LittleEndian;
        let file = elf::ElfBytes::<LittleEndian>::minimal_parse(image)
            .map_err(|_| LoadError::Malformed)?;
        let header = &file.ehdr;
        if header.class != elf::file::Class::ELF64
            || header.e_machine != elf::abi::EM_RISCV
            || header.e_type != elf::abi::ET_EXEC
        {
            return Err(LoadError::NotAnExecutable);
        }
        let segments = file.segments().ok_or(LoadError::Malformed)?;
        let mut pages: Vec<ProgramPage> = Vec::new();
        let mut frames = HeapFrames;
        for segment in segments.iter().filter(|s| s.p_type == elf::abi::PT_LOAD) {
            let bad = LoadError::BadSegment {
                vaddr: segment.p_vaddr,
            };
            let flags = flags_of(segment.p_flags);
            let end = segment
                .p_vaddr
                .checked_add(segment.p_memsz)
                .ok_or(LoadError::Malformed)?;
            let file_end = segment
                .p_offset
                .checked_add(segment.p_filesz)
                .ok_or(LoadError::Malformed)?;
            if segment.p_memsz == 0 {
                continue;
            }
            if segment.p_vaddr < PROGRAM.start
                || end > PROGRAM.end
                || segment.p_filesz > segment.p_memsz
                || file_end > image.len() as u64
                || flags.contains(Flags::WRITE | Flags::EXECUTE)
            {
                return Err(bad);
            }
            let mut page = down(segment.p_vaddr);
            while page < end {
                if pages.iter().any(|p| p.va == page) {
                    return Err(bad);
                }
                let frame = frames.allocate().ok_or(LoadError::OutOfMemory)?;
                // The bytes of the file that land in this page.
                let from = page.max(segment.p_vaddr);
                let to = (page + PAGE_SIZE).min(segment.p_vaddr + segment.p_filesz);
                if from < to {
                    let offset = (segment.p_offset + (from - segment.p_vaddr)) as usize;
                    let bytes = &image[offset..offset + (to - from) as usize];
                    // SAFETY: `frame` is a fresh, zeroed, identity-mapped page from the
                    // heap; `from - page + len` stays within it.
                    unsafe {
                        core::ptr::copy_nonoverlapping(
                            bytes.as_ptr(),
                            (frame + (from - page)) as *mut u8,
                            bytes.len(),
                        );
                    }
                }
                pages.push(ProgramPage {
                    va: page,
                    flags,
                    frame,
                });
                page += PAGE_SIZE;
            }
        }
        let entry = header.e_entry;
        let runs = pages
            .iter()
            .any(|p| p.va == down(entry) && p.flags.contains(Flags::EXECUTE));
        if !runs {
            return Err(LoadError::BadEntry);
        }
        let combination = program_combination::read(&file, image)
            .map(String::from)
            .ok_or(LoadError::NoCombination)?;
        Ok(Self {
            entry,
            pages,
            combination,
        })
    }

    /// The provider combination the program was built with, such as `dalek+chacha`:
    /// the kernel is the same for every combination, its user program is not.
    pub fn combination(&self) -> &str {
        &self.combination
    }

    /// The address of the program's first executable page (for the intruder, which
    /// tries to write its own code).
    pub fn code_start(&self) -> Option<u64> {
        self.pages
            .iter()
            .find(|p| p.flags.contains(Flags::EXECUTE))
            .map(|p| p.va)
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// It called `exit` with this code.
    Exited(u64),
    /// It caused a trap: stopped by the kernel.
    Faulted {
        /// `scause`.
        scause: u64,
        /// `stval`: the faulting address for a page fault.
        stval: u64,
        /// Where.
        sepc: u64,
    },
    /// It ran its watchdog budget of its own time without a system call.
    Watchdog {
        /// How long it had run, in milliseconds.
        ran_ms: u64,
    },
}

/// What [`Process::resume`] came back with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// The process yielded or its slice ended: it runs again at its next resume.
    Yielded,
    /// The process is over; its memory is freed when the [`Process`] is dropped.
    Ended(End),
}

/// A refused system call, as the kernel recorded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The call's number.
    pub number: u64,
    /// Why.
    pub error: SyscallError,
}

/// How many refusals a process keeps for its supervisor to read (the audit stream
/// has every one).
const REFUSALS_KEPT: usize = 32;

/// A running (or ended) user-mode process.
pub struct Process {
    task: ServiceId,
    label: &'static str,
    space: AddressSpace,
    context: switch::UserContext,
    /// Frames of its own (data, bss, heap, stack), freed and zeroed with it.
    own: Vec<u64>,
    stack: Range<u64>,
    heap: Range<u64>,
    /// `time` ticks it has run since its last system call.
    since_call: u64,
    preemptions: u64,
    refusals: Vec<Refusal>,
    ended: Option<End>,
    /// Calls it submitted and has not taken or cancelled: id and deadline.
    calls: Vec<(u32, u64)>,
    /// The audit feed, once it claimed it.
    feed: Option<kernel_core::AuditFeedHandle<RiscvPlatform>>,
    /// Its number: its stack window, its name in the registry of live spaces and as
    /// a device window's holder.
    number: u64,
    /// Device windows mapped into it: where, how many bytes, physical address.
    windows: Vec<(u64, u64, u64)>,
    /// Where the next device window goes.
    next_window: u64,
    /// DMA allocations: address, physical address, pages.
    dma: Vec<(u64, u64, u64)>,
    /// What a service served it, when the kernel keeps a copy (the test image's
    /// freed-memory check: [`Process::keep_served_by`]).
    served: Option<Served>,
    /// For a restarted service: when its previous process ended (microseconds since
    /// boot, `instret`), until this one first asks for a request (serving again).
    restarted_after: Option<(u64, u64)>,
}

/// The payloads of one service's first replies to a process, copied as the process
/// took them (each wiped when dropped), [`Served::MAX_BYTES`] at most: later ones are
/// not copied, so the copy is bounded and stops growing early in a long run (the
/// soak's kernel heap stays flat).
struct Served {
    from: ServiceId,
    /// Its calls to `from` still open.
    open: Vec<u32>,
    payloads: Vec<ipc::IpcBuffer>,
    bytes: usize,
}

impl Served {
    /// The most bytes kept.
    const MAX_BYTES: usize = 4096;
}

/// `scause` codes of the exceptions a process may cause, by name (for the line that
/// stops it).
fn cause_name(code: u64) -> &'static str {
    match code {
        0 => "instruction address misaligned",
        1 => "instruction access fault",
        2 => "illegal instruction",
        3 => "breakpoint",
        4 => "load address misaligned",
        5 => "load access fault",
        6 => "store address misaligned",
        7 => "store access fault",
        12 => "instruction page fault",
        13 => "load page fault",
        15 => "store page fault",
        _ => "exception",
    }
}

impl Process {
    /// Starts `program` as a process of task `task` (its identity for the console,
    /// the audit stream and IPC: the kernel stamps it on everything the process
    /// sends), named `label` in the kernel's lines, with the memory the manifest's
    /// `bounds` give the task. Its registers: the task's id in a0, `args` in a1 and
    /// a2, the heap's address and size in a3 and a4 (docs/syscalls.md).
    ///
    /// # Errors
    /// [`StartError`]; nothing is left allocated.
    pub fn start(
        program: &Program,
        task: ServiceId,
        label: &'static str,
        bounds: &[MemoryBound],
        args: [u64; 2],
    ) -> Result<Self, StartError> {
        let number = NEXT_WINDOW.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        let bound = bounds
            .iter()
            .find(|b| b.task == task)
            .ok_or(StartError::NoMemoryBound(task))?;
        let kernel = crate::mmu::kernel_space().ok_or(StartError::NoKernelSpace)?;
        let frames = &mut HeapFrames;
        let space = AddressSpace::sharing(frames, &kernel)?;
        let window_top = STACK_WINDOWS + (number % STACK_WINDOW_COUNT + 1) * STACK_WINDOW;
        let stack = window_top - u64::from(bound.stack_kib) * 1024..window_top;
        let heap = HEAP..HEAP + u64::from(bound.heap_kib) * 1024;
        let mut process = Self {
            task,
            label,
            space,
            context: switch::UserContext::new(
                program.entry,
                stack.end,
                [
                    task as u64,
                    args[0],
                    args[1],
                    heap.start,
                    heap.end - heap.start,
                ],
            ),
            own: Vec::new(),
            stack: stack.clone(),
            heap: heap.clone(),
            since_call: 0,
            preemptions: 0,
            refusals: Vec::new(),
            ended: None,
            calls: Vec::new(),
            feed: None,
            number,
            windows: Vec::new(),
            next_window: DEVICE_WINDOWS,
            dma: Vec::new(),
            served: None,
            restarted_after: None,
        };
        // On an error from here, dropping `process` frees what was mapped.
        for page in &program.pages {
            if page.flags.contains(Flags::WRITE) {
                let copy = process.own_frame()?;
                // SAFETY: both are whole, identity-mapped heap frames: the program's
                // pristine page and the process's fresh copy.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        page.frame as *const u8,
                        copy as *mut u8,
                        PAGE_SIZE as usize,
                    );
                }
                process
                    .space
                    .map(frames, page.va, copy, PAGE_SIZE, page.flags)?;
            } else {
                process
                    .space
                    .map(frames, page.va, page.frame, PAGE_SIZE, page.flags)?;
            }
        }
        let rw = Flags::USER | Flags::READ | Flags::WRITE;
        for region in [heap, stack] {
            let mut va = region.start;
            while va < region.end {
                let frame = process.own_frame()?;
                process.space.map(frames, va, frame, PAGE_SIZE, rw)?;
                va += PAGE_SIZE;
            }
        }
        devices::space_started(number, process.space);
        Ok(process)
    }

    /// A fresh zeroed frame, recorded as the process's own.
    fn own_frame(&mut self) -> Result<u64, StartError> {
        let frame = HeapFrames.allocate().ok_or(StartError::OutOfMemory)?;
        self.own.push(frame);
        Ok(frame)
    }

    /// Its address space (for the structural check).
    pub fn space(&self) -> AddressSpace {
        self.space
    }

    /// Its stack's addresses.
    pub fn stack(&self) -> Range<u64> {
        self.stack.clone()
    }

    /// Its heap's addresses.
    pub fn heap(&self) -> Range<u64> {
        self.heap.clone()
    }

    /// The physical frames of its own (data, bss, heap, stack), which are zeroed and
    /// freed with it.
    pub fn own_frames(&self) -> &[u64] {
        &self.own
    }

    /// From now on, the kernel keeps a copy of the payload of every successful reply
    /// of `service` the process takes (the first 4 KiB; wiped when dropped): what the
    /// test image's freed-memory check searches the process's frames for.
    pub fn keep_served_by(&mut self, service: ServiceId) {
        self.served = Some(Served {
            from: service,
            open: Vec::new(),
            payloads: Vec::new(),
            bytes: 0,
        });
    }

    /// The payloads kept since [`Process::keep_served_by`], oldest first.
    pub fn served(&self) -> impl Iterator<Item = &ipc::IpcBuffer> {
        self.served.iter().flat_map(|s| s.payloads.iter())
    }

    /// How many times the timer preempted it.
    pub fn preemptions(&self) -> u64 {
        self.preemptions
    }

    /// The system calls the kernel refused it (the first [`REFUSALS_KEPT`]).
    pub fn refusals(&self) -> &[Refusal] {
        &self.refusals
    }

    /// Runs the process for at most one slice, serving its system calls; see the
    /// module's documentation. After [`Resume::Ended`] it never runs again.
    pub fn resume(&mut self, ep: &KernelEndpoint<RiscvPlatform>) -> Resume {
        if let Some(end) = self.ended {
            return Resume::Ended(end);
        }
        let Some(kernel) = crate::mmu::kernel_space() else {
            return self.end(ep, End::Exited(u64::MAX));
        };
        let slice_end =
            riscv::register::time::read64().saturating_add(clock::us_to_ticks(SLICE_US));
        loop {
            let entered = riscv::register::time::read64();
            let trap = switch::enter(
                &mut self.context,
                self.space.satp(0),
                kernel.satp(0),
                slice_end,
            );
            let now = riscv::register::time::read64();
            self.since_call = self.since_call.saturating_add(now.saturating_sub(entered));
            if trap.is_interrupt() {
                // The slice's timer (or the poll's deadline): preempted.
                self.preemptions += 1;
                let ran_ms = clock::ticks_to_us(self.since_call) / 1000;
                if ran_ms >= WATCHDOG_BUDGET_MS {
                    return self.end(ep, End::Watchdog { ran_ms });
                }
                return Resume::Yielded;
            }
            if trap.code() != 8 {
                let end = End::Faulted {
                    scause: trap.scause,
                    stval: trap.stval,
                    sepc: self.context.pc,
                };
                return self.end(ep, end);
            }
            // An ecall from user mode: resume after it.
            self.since_call = 0;
            self.context.pc += 4;
            match self.syscall(ep) {
                Call::Continue if now < slice_end => {}
                Call::Continue | Call::Yield => return Resume::Yielded,
                Call::Exit(code) => return self.end(ep, End::Exited(code)),
            }
        }
    }

    /// Records how the process ended; a fault and the watchdog are named on the
    /// console and in the audit stream.
    fn end(&mut self, ep: &KernelEndpoint<RiscvPlatform>, end: End) -> Resume {
        for (call, _) in self.calls.drain(..) {
            ep.cancel_call(call);
        }
        let name = self.task.name();
        let label = self.label;
        match end {
            End::Exited(_) => {}
            End::Faulted {
                scause,
                stval,
                sepc,
            } => {
                crate::console::line(
                    "KERNEL",
                    format_args!(
                        "process {name} ({label}) stopped: {} (scause {scause:#x}, stval {stval:#x}, sepc {sepc:#x})",
                        cause_name(scause)
                    ),
                );
                ep.kernel_record(
                    Action::Fault {
                        cause: scause as u16,
                    },
                    Verdict::Denied,
                    0,
                    stval as u32,
                );
            }
            End::Watchdog { ran_ms } => {
                let ms = alloc::format!("{ran_ms}");
                crate::console::line(
                    "KERNEL",
                    format_args!(
                        "{}",
                        markers::KERNEL_PROCESS_WATCHDOG.rendered(&[name, label, &ms])
                    ),
                );
                ep.kernel_record(
                    Action::Fault {
                        cause: Action::WATCHDOG_CAUSE,
                    },
                    Verdict::Denied,
                    0,
                    u32::try_from(ran_ms).unwrap_or(u32::MAX),
                );
            }
        }
        self.ended = Some(end);
        Resume::Ended(end)
    }

    /// Serves the system call in the process's registers.
    fn syscall(&mut self, ep: &KernelEndpoint<RiscvPlatform>) -> Call {
        let number = self.context.a(7);
        let [a0, a1, a2] = [self.context.a(0), self.context.a(1), self.context.a(2)];
        let result = match number {
            number::EXIT => return Call::Exit(a0),
            number::YIELD => {
                self.context.set_a(0, 0);
                return Call::Yield;
            }
            number::CONSOLE => self
                .copy_in(a0, a1, CONSOLE_MAX)
                .map(|bytes| {
                    ep.console(&String::from_utf8_lossy(&bytes));
                    [0; 3]
                })
                .map_err(Into::into),
            number::UPTIME => Ok([ep.uptime_ms(), clock::now_us(), 0]),
            number::CALL => self.call(ep, a0, a1, a2),
            number::TAKE_REPLY => self.take_reply(ep, a0, a1, a2),
            number::CANCEL => {
                let call = a0 as u32;
                if let Some(at) = self.calls.iter().position(|(id, _)| u64::from(*id) == a0) {
                    self.calls.swap_remove(at);
                    ep.cancel_call(call);
                    self.keep_if_served(call, None);
                }
                Ok([0; 3])
            }
            number::RECEIVE => {
                // Serving: what the tasks that start after it wait for.
                mark_started(self.task);
                if let Some((ended_us, ended_instret)) = self.restarted_after.take() {
                    let us = clock::now_us().saturating_sub(ended_us);
                    let instructions =
                        riscv::register::instret::read64().saturating_sub(ended_instret);
                    crate::console::line(
                        "KERNEL",
                        format_args!(
                            "{} serving again {us} us and {instructions} instructions after its previous process ended",
                            self.task
                        ),
                    );
                }
                self.receive(ep, a0, a1)
            }
            number::REPLY => self
                .copy_in(a1, a2, ipc::frame::MAX_FRAME)
                .and_then(|bytes| {
                    ep.reply(ipc::ReplyToken(a0 as u32), &bytes)
                        .map_err(SyscallError::from)
                })
                .map(|()| [0; 3])
                .map_err(Into::into),
            number::AUDIT => self
                .copy_in(a0, a1, ipc::AuditRecord::ENCODED_LEN)
                .and_then(|bytes| {
                    let record =
                        ipc::AuditRecord::decode(&bytes).map_err(|_| SyscallError::BadRecord)?;
                    if record.origin != ServiceId::Kernel || record.sequence != 0 {
                        return Err(SyscallError::BadRecord);
                    }
                    ep.audit(record.event);
                    Ok([0; 3])
                })
                .map_err(Into::into),
            number::CLAIM => self.claim(ep, a0),
            number::AUDIT_POP => self.audit_pop(a0, a1),
            number::BOOTARGS => {
                let line = critical_section::with(|cs| BOOTARGS.borrow(cs).get());
                let len = line.len() as u64;
                // The whole buffer is checked first, as for every buffer to fill.
                if let Err(error) = self.check_out(a0, a1) {
                    Err(error.into())
                } else if a1 < len {
                    Err((SyscallError::TooLong, len))
                } else {
                    self.copy_out(a0, line.as_bytes())
                        .map(|()| [len, 0, 0])
                        .map_err(Into::into)
                }
            }
            number::ASSIGN => self.assign(ep, a0, a1),
            number::COUNTERS => self.counters(a0, a1),
            number::DMA_ALLOC => self.dma_alloc(a0),
            number::DMA_FREE => self.dma_free(a0),
            number::AUDIT_LOST => match &self.feed {
                Some(feed) => {
                    let lost = ipc::AuditFeed::lost(feed);
                    Ok([lost.kernel, lost.tasks, 0])
                }
                None => Err(SyscallError::NotHeld.into()),
            },
            _ => Err(SyscallError::UnknownCall.into()),
        };
        match result {
            Ok([r1, r2, r3]) => {
                self.context.set_a(0, 0);
                self.context.set_a(1, r1);
                self.context.set_a(2, r2);
                self.context.set_a(3, r3);
            }
            Err((error, needed)) => self.refuse(ep, number, error, needed),
        }
        Call::Continue
    }

    /// Answers a refused call: the error in `a0`, `needed` in `a1` (a length the
    /// buffer must have, or 0). Refusals that are part of the ordinary flow are not
    /// audited: a reply not come yet, nothing queued, and a buffer to fill that is
    /// shorter than what waits (`TooLong` with the length needed; a process asks with
    /// no room to learn the length, and nothing is taken). Every other one is.
    fn refuse(
        &mut self,
        ep: &KernelEndpoint<RiscvPlatform>,
        number: u64,
        error: SyscallError,
        needed: u64,
    ) {
        let ordinary = matches!(error, SyscallError::Pending | SyscallError::Empty)
            || (error == SyscallError::TooLong && needed > 0);
        if !ordinary {
            ep.kernel_record(
                Action::Syscall {
                    number: u16::try_from(number).unwrap_or(u16::MAX),
                },
                Verdict::Rejected,
                error.code(),
                u32::try_from(self.context.a(1)).unwrap_or(u32::MAX),
            );
            if self.refusals.len() < REFUSALS_KEPT {
                self.refusals.push(Refusal { number, error });
            }
        }
        self.context.set_a(0, u64::from(error.code()));
        self.context.set_a(1, needed);
    }

    fn call(
        &mut self,
        ep: &KernelEndpoint<RiscvPlatform>,
        service: u64,
        va: u64,
        len: u64,
    ) -> Result<[u64; 3], (SyscallError, u64)> {
        let bytes = self.copy_in(va, len, ipc::frame::MAX_FRAME)?;
        let service = u16::try_from(service)
            .ok()
            .and_then(ServiceId::from_u16)
            .ok_or(SyscallError::NoSuchService)?;
        let call = ep
            .submit_call(service, &bytes)
            .map_err(SyscallError::from)?;
        self.calls.push((call, ep.call_deadline()));
        if let Some(served) = &mut self.served
            && served.from == service
        {
            served.open.push(call);
        }
        Ok([u64::from(call), 0, 0])
    }

    fn take_reply(
        &mut self,
        ep: &KernelEndpoint<RiscvPlatform>,
        call: u64,
        va: u64,
        capacity: u64,
    ) -> Result<[u64; 3], (SyscallError, u64)> {
        let at = self
            .calls
            .iter()
            .position(|(id, _)| u64::from(*id) == call)
            .ok_or(SyscallError::PeerGone)?;
        let (id, deadline) = self.calls[at];
        // The buffer is checked before the reply is taken, so a bad one loses nothing.
        self.check_out(va, capacity)?;
        if let Some(len) = ep.reply_len(id)
            && len as u64 > capacity
        {
            return Err((SyscallError::TooLong, len as u64));
        }
        match ep.poll_call(id, deadline) {
            core::task::Poll::Pending => Err(SyscallError::Pending.into()),
            core::task::Poll::Ready(outcome) => {
                self.calls.swap_remove(at);
                let outcome = outcome.map_err(SyscallError::from);
                self.keep_if_served(id, outcome.as_deref().ok());
                let reply = outcome?;
                self.copy_out(va, &reply)?;
                Ok([reply.len() as u64, 0, 0])
            }
        }
    }

    /// Keeps a copy of a reply's payload when the kernel keeps what the call's service
    /// serves this process.
    /// `reply` is `None` when the call failed or was cancelled.
    fn keep_if_served(&mut self, call: u32, reply: Option<&[u8]>) {
        let Some(served) = &mut self.served else {
            return;
        };
        let Some(at) = served.open.iter().position(|open| *open == call) else {
            return;
        };
        served.open.swap_remove(at);
        if let Some(reply) = reply
            && let Ok(frame) = ipc::Frame::decode(reply)
            && frame.kind == ipc::FrameKind::Reply
            && served.bytes + frame.payload.len() <= Served::MAX_BYTES
        {
            served.bytes += frame.payload.len();
            served
                .payloads
                .push(ipc::IpcBuffer::copy_from(frame.payload));
        }
    }

    fn receive(
        &mut self,
        ep: &KernelEndpoint<RiscvPlatform>,
        va: u64,
        capacity: u64,
    ) -> Result<[u64; 3], (SyscallError, u64)> {
        self.check_out(va, capacity)?;
        let len = ep.next_request_len().ok_or(SyscallError::Empty)?;
        if len as u64 > capacity {
            return Err((SyscallError::TooLong, len as u64));
        }
        let request = ep.try_receive().ok_or(SyscallError::Empty)?;
        self.copy_out(va, &request.frame)?;
        // The sender's id in the low 16 bits, its generation above them.
        Ok([
            request.frame.len() as u64,
            u64::from(request.token.0),
            request.sender as u64 | u64::from(request.sender_generation) << 16,
        ])
    }

    fn claim(
        &mut self,
        ep: &KernelEndpoint<RiscvPlatform>,
        capability: u64,
    ) -> Result<[u64; 3], (SyscallError, u64)> {
        let capability = u16::try_from(capability)
            .ok()
            .and_then(ipc::Capability::from_u16)
            .ok_or(SyscallError::UnknownCapability)?;
        match capability {
            ipc::Capability::AuditFeed => {
                let feed = ep.claim_audit_feed().map_err(SyscallError::from)?;
                self.feed = Some(feed);
                Ok([0; 3])
            }
            _ if devices::unsettled(capability) => Err(SyscallError::Pending.into()),
            ipc::Capability::EntropyDevice
            | ipc::Capability::NetDevice
            | ipc::Capability::BlockDevices
            | ipc::Capability::StateDisk
            | ipc::Capability::OtpDisk
            | ipc::Capability::RollbackCounter => {
                let number = self.number;
                let window = ep
                    .claim_with(capability, || devices::take(capability, number))
                    .map_err(SyscallError::from)?;
                self.map_window(window)
            }
        }
    }

    /// The selftest's counters (see [`number::COUNTERS`]).
    fn counters(&self, kind: u64, task: u64) -> Result<[u64; 3], (SyscallError, u64)> {
        if self.task != ServiceId::Selftest {
            return Err(SyscallError::NotGranted.into());
        }
        match kind {
            counter::INSTRET => Ok([riscv::register::instret::read64(), 0, 0]),
            counter::TASK => {
                let task = u16::try_from(task)
                    .ok()
                    .and_then(ServiceId::from_u16)
                    .ok_or(SyscallError::NoSuchService)?;
                Ok([crate::platform::task_instructions_now(task), 0, 0])
            }
            counter::HEAP => {
                let heap = crate::heap_stats();
                Ok([heap.in_use as u64, heap.high_water as u64, heap.size as u64])
            }
            counter::RESTARTS => {
                use core::sync::atomic::Ordering::Relaxed;
                Ok([
                    RESTARTS_MADE.load(Relaxed),
                    LATEST_RESTART_MS.load(Relaxed),
                    0,
                ])
            }
            counter::STRUCTURE => match structural_check() {
                Ok(spaces) => Ok([spaces as u64, 0, 0]),
                Err((first, violations)) => {
                    crate::console::line(
                        "KERNEL",
                        format_args!("FAIL structural check: {first} ({violations} in all)"),
                    );
                    Ok([0, violations as u64, 0])
                }
            },
            _ => Err(SyscallError::UnknownCall.into()),
        }
    }

    /// The device manager hands a block window on (see [`devices::assign`]), or says
    /// it is done.
    fn assign(
        &mut self,
        ep: &KernelEndpoint<RiscvPlatform>,
        va: u64,
        capability: u64,
    ) -> Result<[u64; 3], (SyscallError, u64)> {
        if capability == u64::MAX {
            // Only the device manager says the disks are settled: any other process
            // saying so early would make the disks absent for their holders.
            if self.task != ServiceId::Devmgr {
                return Err(SyscallError::NotGranted.into());
            }
            devices::settle();
            return Ok([0; 3]);
        }
        let capability = u16::try_from(capability)
            .ok()
            .and_then(ipc::Capability::from_u16)
            .ok_or(SyscallError::UnknownCapability)?;
        let at = self
            .windows
            .iter()
            .position(|(address, _, _)| *address == va)
            .ok_or(SyscallError::NotHeld)?;
        let (address, len, pa) = self.windows[at];
        devices::assign(self.number, pa, capability).map_err(|why| match why {
            devices::AssignError::NotHeld => SyscallError::NotHeld,
            devices::AssignError::NotADisk => SyscallError::UnknownCapability,
            devices::AssignError::Taken => SyscallError::AlreadyClaimed,
        })?;
        // Out of this process: unmapped, and the next switch fences the TLB.
        let start = down(address);
        let end = (address + len).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        self.space
            .unmap(&mut HeapFrames, start, end - start, |_| {});
        self.windows.swap_remove(at);
        ep.kernel_record(
            Action::Syscall {
                number: number::ASSIGN as u16,
            },
            Verdict::Allowed,
            0,
            capability as u32,
        );
        Ok([0; 3])
    }

    /// Maps a device window (its pages, read+write, never executable) into this
    /// process at the next free place after [`DEVICE_WINDOWS`]; returns its address,
    /// length and physical address.
    fn map_window(&mut self, window: Range<u64>) -> Result<[u64; 3], (SyscallError, u64)> {
        let start = down(window.start);
        let end = window.end.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let at = self.next_window;
        let flags = Flags::USER | Flags::READ | Flags::WRITE;
        self.space
            .map(&mut HeapFrames, at, start, end - start, flags)
            .map_err(|_| SyscallError::Exhausted)?;
        self.next_window = at + (end - start) + PAGE_SIZE;
        let address = at + (window.start - start);
        let len = window.end - window.start;
        self.windows.push((address, len, window.start));
        Ok([address, len, window.start])
    }

    fn dma_alloc(&mut self, pages: u64) -> Result<[u64; 3], (SyscallError, u64)> {
        if self.windows.is_empty() {
            return Err(SyscallError::NotHeld.into());
        }
        let held: u64 = self.dma.iter().map(|(_, _, n)| n).sum();
        if pages == 0 || pages > MAX_DMA_PAGES - held {
            return Err(SyscallError::Exhausted.into());
        }
        let layout = dma_layout(pages).ok_or(SyscallError::Exhausted)?;
        // SAFETY: the layout has a non-zero size.
        let frames = unsafe { alloc::alloc::alloc_zeroed(layout) };
        if frames.is_null() {
            return Err(SyscallError::Exhausted.into());
        }
        let pa = frames as u64;
        let Some(va) = self.free_dma_range(pages) else {
            // SAFETY: just allocated with this layout, never mapped.
            unsafe { alloc::alloc::dealloc(frames, layout) };
            return Err(SyscallError::Exhausted.into());
        };
        let flags = Flags::USER | Flags::READ | Flags::WRITE;
        if self
            .space
            .map(&mut HeapFrames, va, pa, pages * PAGE_SIZE, flags)
            .is_err()
        {
            // SAFETY: just allocated with this layout, never mapped.
            unsafe { alloc::alloc::dealloc(frames, layout) };
            return Err(SyscallError::Exhausted.into());
        }
        self.dma.push((va, pa, pages));
        Ok([va, pa, 0])
    }

    /// The lowest address in the DMA window where `pages` pages overlap no allocation.
    fn free_dma_range(&self, pages: u64) -> Option<u64> {
        let len = pages * PAGE_SIZE;
        let end = DMA + DMA_WINDOW_PAGES * PAGE_SIZE;
        let mut at = DMA;
        while at + len <= end {
            let clash = self
                .dma
                .iter()
                .find(|(va, _, n)| at < va + n * PAGE_SIZE && *va < at + len);
            match clash {
                None => return Some(at),
                Some((va, _, n)) => at = va + n * PAGE_SIZE,
            }
        }
        None
    }

    fn dma_free(&mut self, va: u64) -> Result<[u64; 3], (SyscallError, u64)> {
        let at = self
            .dma
            .iter()
            .position(|(start, _, _)| *start == va)
            .ok_or(SyscallError::Unmapped)?;
        let (va, pa, pages) = self.dma.swap_remove(at);
        self.space
            .unmap(&mut HeapFrames, va, pages * PAGE_SIZE, |_| {});
        // SAFETY: allocated by `dma_alloc` with this many pages, now unmapped from its
        // only space (the hart is on the kernel's tables; the next switch fences).
        unsafe { free_dma(pa, pages) };
        Ok([0; 3])
    }

    fn audit_pop(&mut self, va: u64, capacity: u64) -> Result<[u64; 3], (SyscallError, u64)> {
        const LEN: usize = ipc::AuditRecord::ENCODED_LEN;
        if self.feed.is_none() {
            return Err(SyscallError::NotHeld.into());
        }
        self.check_out(va, capacity)?;
        if capacity < LEN as u64 {
            return Err((SyscallError::TooLong, LEN as u64));
        }
        let record = self
            .feed
            .as_mut()
            .and_then(ipc::AuditFeed::pop)
            .ok_or(SyscallError::Empty)?;
        self.copy_out(va, &record.encode())?;
        Ok([LEN as u64, 0, 0])
    }

    /// Checks that the process may have the kernel write `len` bytes at `va`.
    fn check_out(&self, va: u64, len: u64) -> Result<(), SyscallError> {
        self.space
            .check_user_range(&HeapFrames, va, len, true)
            .map_err(SyscallError::from)
    }

    /// Copies `bytes` to the process's address `va`, after checking every page of the
    /// range against its own tables (mapped, user, writable; no wrap), through the
    /// frames' kernel mappings.
    fn copy_out(&self, va: u64, bytes: &[u8]) -> Result<(), SyscallError> {
        let frames = &HeapFrames;
        let len = bytes.len() as u64;
        self.check_out(va, len)?;
        let mut done = 0u64;
        while done < len {
            let at = va + done;
            let leaf = self
                .space
                .translate(frames, at)
                .ok_or(SyscallError::Unmapped)?;
            let offset = at - leaf.va;
            let run = (PAGE_SIZE - offset).min(len - done);
            let from = &bytes[done as usize..(done + run) as usize];
            // SAFETY: `check_out` proved the page mapped, for user mode and writable
            // in this process's space, so its frame is one of the process's own
            // (program pages are never writable); it is identity-mapped in the
            // kernel, and `offset + run` stays within the page.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    from.as_ptr(),
                    (leaf.pa + offset) as *mut u8,
                    from.len(),
                );
            }
            done += run;
        }
        Ok(())
    }

    /// Copies `len` bytes at the process's address `va` into the kernel, after
    /// checking every page of the range against the process's own tables (mapped,
    /// user, readable; no wrap). The bytes are read through the frames' kernel
    /// mappings, never through the user address.
    fn copy_in(&self, va: u64, len: u64, max: usize) -> Result<ipc::IpcBuffer, SyscallError> {
        let frames = &HeapFrames;
        self.space.check_user_range(frames, va, len, false)?;
        if len > max as u64 {
            return Err(SyscallError::TooLong);
        }
        // Wiped when dropped: a request or reply frame can carry a secret (entropy,
        // a signature's input), and the kernel's copy must not outlive its use.
        let mut result = Ok(());
        let bytes = ipc::IpcBuffer::filled(len as usize, |out| {
            let mut at = va;
            let mut done = 0;
            while done < out.len() {
                let Some(leaf) = self.space.translate(frames, at) else {
                    result = Err(SyscallError::Unmapped);
                    return;
                };
                let offset = at - leaf.va;
                let run = (PAGE_SIZE - offset).min((out.len() - done) as u64) as usize;
                // SAFETY: `check_user_range` proved the page mapped, for user mode and
                // readable in this process's space; its frame is a live heap frame the
                // process owns or a program page, identity-mapped in the kernel, and
                // `offset + run` stays within the page.
                let slice =
                    unsafe { core::slice::from_raw_parts((leaf.pa + offset) as *const u8, run) };
                out[done..done + run].copy_from_slice(slice);
                done += run;
                at += run as u64;
            }
        });
        result.map(|()| bytes)
    }
}

impl From<SyscallError> for (SyscallError, u64) {
    fn from(error: SyscallError) -> Self {
        (error, 0)
    }
}

/// Loads the boot's user program (QEMU's `-initrd`) once, for every process of the
/// image, and says so on the console; a missing or refused program is a `FAIL` line
/// and `None` (the tasks that need it then cannot start, and say so).
pub fn load_user_program(boot: &crate::BootInfo) -> Option<alloc::rc::Rc<Program>> {
    let Some(image) = boot.programs else {
        crate::console::line(
            "KERNEL",
            format_args!("FAIL no user program: the image boots with -initrd <programs>"),
        );
        return None;
    };
    match Program::load(image) {
        Ok(program) => {
            crate::console::line(
                "KERNEL",
                format_args!(
                    "user program: {} bytes, {} pages, entry {:#x}",
                    image.len(),
                    program.pages.len(),
                    program.entry
                ),
            );
            crate::console::line(
                "KERNEL",
                format_args!(
                    "{}",
                    markers::KERNEL_PROVIDER.render(&[program.combination()])
                ),
            );
            Some(alloc::rc::Rc::new(program))
        }
        Err(why) => {
            crate::console::line("KERNEL", format_args!("FAIL the user program: {why}"));
            None
        }
    }
}

/// Spawns task `task` as a user-mode process of `program`: the task's future starts
/// the process and runs it a slice per poll until it ends. A process that cannot
/// start, exits or faults ends the task (the kernel then says the task exited).
///
/// # Errors
/// [`kernel_core::SpawnError`] from the kernel.
pub fn spawn_service(
    kernel: &mut kernel_core::Kernel<RiscvPlatform>,
    program: Option<alloc::rc::Rc<Program>>,
    task: ServiceId,
) -> Result<(), kernel_core::SpawnError> {
    spawn(kernel, program, task, false)
}

/// Spawns task `task` as a process that runs once (the device manager): when it exits
/// with code 0 its work is done, and its task stays, idle, instead of ending (which
/// the kernel reports as a failure). Any other end is a failure, as for a service.
///
/// # Errors
/// [`kernel_core::SpawnError`] from the kernel.
pub fn spawn_init(
    kernel: &mut kernel_core::Kernel<RiscvPlatform>,
    program: Option<alloc::rc::Rc<Program>>,
    task: ServiceId,
) -> Result<(), kernel_core::SpawnError> {
    spawn(kernel, program, task, true)
}

fn spawn(
    kernel: &mut kernel_core::Kernel<RiscvPlatform>,
    program: Option<alloc::rc::Rc<Program>>,
    task: ServiceId,
    runs_once: bool,
) -> Result<(), kernel_core::SpawnError> {
    kernel.spawn(task, move |ep| async move {
        let Some(program) = program else {
            ep.console("FAIL no user program to run this task's process");
            if task == ServiceId::Devmgr {
                devices::settle();
            }
            mark_started(task);
            return;
        };
        // The device manager first: nothing else starts until the disks are settled,
        // so the services start together, in their order, as they always did (the
        // device's first draws of entropy, and so its key under a given entropy
        // source, do not depend on how long the disks took to answer).
        if task != ServiceId::Devmgr {
            wait_for_disks(&ep).await;
        }
        wait_for_start_order(&ep, task).await;
        let mut restarts = Restarts::for_task(task);
        let mut generation = 0;
        let mut previous_end = None;
        loop {
            let mut process = match Process::start(
                &program,
                task,
                "service",
                kernel_core::config::MEMORY,
                [u64::from(generation), 0],
            ) {
                Ok(process) => process,
                Err(why) => {
                    ep.console(&alloc::format!("FAIL cannot start the process: {why}"));
                    if restarts.policy.is_some() {
                        // A supervised service that cannot run: fail closed, as past
                        // its policy, never a device without it that looks healthy.
                        crate::console::line(
                            "KERNEL",
                            format_args!("{task} cannot run: the device stops serving"),
                        );
                        crate::shutdown::shutdown(false, None);
                    }
                    mark_started(task);
                    return;
                }
            };
            if generation > 0 {
                restarts.say_restarted(generation);
            }
            process.restarted_after = previous_end;
            let end = loop {
                match process.resume(&ep) {
                    Resume::Yielded => ep.yield_now().await,
                    Resume::Ended(end) => break end,
                }
            };
            previous_end = Some((clock::now_us(), riscv::register::instret::read64()));
            // Its frames zeroed and freed, its devices reset, before anything else.
            drop(process);
            match end {
                End::Exited(0) if runs_once => {
                    crate::console::line(
                        "KERNEL",
                        format_args!("process {task} did its work and exited"),
                    );
                    core::future::pending::<()>().await;
                }
                End::Exited(code) => crate::console::line(
                    "KERNEL",
                    format_args!("process {task} exited with code {code}"),
                ),
                // Named on the console and in the audit stream already.
                End::Faulted { .. } | End::Watchdog { .. } => {}
            }
            generation = match restarts.admit(&ep) {
                Some(generation) => generation,
                None => {
                    // Ended for good: nothing waits for it any more. (A restarted
                    // service is waited for until its new process serves.)
                    mark_started(task);
                    return;
                }
            };
        }
    })
}

/// A task's restart policy (`policies/manifest.toml`) and the restarts it has had.
struct Restarts {
    task: ServiceId,
    policy: Option<ipc::policy::RestartPolicy>,
    /// When each restart within the window happened, in guest milliseconds.
    recent: alloc::collections::VecDeque<u64>,
}

impl Restarts {
    fn for_task(task: ServiceId) -> Self {
        Self {
            task,
            policy: kernel_core::config::RESTART
                .iter()
                .find(|policy| policy.task == task)
                .copied(),
            recent: alloc::collections::VecDeque::new(),
        }
    }

    /// The task's process ended: restart it if its policy allows (every call still
    /// open to it ends now as `PeerGone`; returns the new generation), or say it stays
    /// ended (`None`: no policy, the task ends as before). Past the policy the device
    /// stops serving: it says so, records it, and shuts down (fail closed).
    fn admit(&mut self, ep: &KernelEndpoint<RiscvPlatform>) -> Option<u32> {
        let task = self.task;
        let policy = self.policy?;
        let now = ep.uptime_ms();
        let window_ms = u64::from(policy.window_s) * 1000;
        while self
            .recent
            .front()
            .is_some_and(|&at| now.saturating_sub(at) >= window_ms)
        {
            self.recent.pop_front();
        }
        let (limit, window) = (
            alloc::format!("{}", policy.limit),
            alloc::format!("{}", policy.window_s),
        );
        if self.recent.len() >= policy.limit as usize {
            // The generation refused (its low 16 bits; `detail` the policy's limit).
            ep.kernel_record(
                Action::Restart {
                    generation: ep.generation().wrapping_add(1) as u16,
                },
                Verdict::Denied,
                0,
                policy.limit,
            );
            crate::console::line(
                "KERNEL",
                format_args!(
                    "{}",
                    markers::KERNEL_RESTART_POLICY_SPENT.rendered(&[task.name(), &limit, &window])
                ),
            );
            crate::shutdown::shutdown(false, None);
        }
        self.recent.push_back(now);
        RESTARTS_MADE.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        LATEST_RESTART_MS.store(now, core::sync::atomic::Ordering::Relaxed);
        let generation = ep.service_restarted();
        ep.kernel_record(
            Action::Restart {
                generation: generation as u16,
            },
            Verdict::Allowed,
            0,
            generation,
        );
        Some(generation)
    }

    /// The console line of a restart, once the new process of `generation` exists.
    fn say_restarted(&self, generation: u32) {
        let Some(policy) = self.policy else {
            return;
        };
        let values = [
            alloc::format!("{generation}"),
            alloc::format!("{}", self.recent.len()),
            alloc::format!("{}", policy.limit),
            alloc::format!("{}", policy.window_s),
        ];
        crate::console::line(
            "KERNEL",
            format_args!(
                "{}",
                markers::KERNEL_SERVICE_RESTARTED.rendered(&[
                    self.task.name(),
                    &values[0],
                    &values[1],
                    &values[2],
                    &values[3]
                ])
            ),
        );
    }
}

/// The exit codes of the test image's main process (docs/syscalls.md).
pub mod main_exit {
    /// Every check passed.
    pub const PASSED: u64 = 0;
    /// The system failed closed as designed (no entropy).
    pub const FAILED_CLOSED: u64 = 1;
}

/// Spawns the test image's main task (the selftest) as a process: it starts once the
/// disks are settled, with the services, and the machine shuts down when it ends. Its
/// exit code is `verdict`: [`main_exit::PASSED`], [`main_exit::FAILED_CLOSED`], any
/// other code, a fault or the watchdog is a failure.
///
/// # Errors
/// [`kernel_core::SpawnError`] from the kernel.
pub fn spawn_main(
    kernel: &mut kernel_core::Kernel<RiscvPlatform>,
    program: Option<alloc::rc::Rc<Program>>,
    task: ServiceId,
    verdict: crate::MainVerdict,
) -> Result<(), kernel_core::SpawnError> {
    kernel.spawn(task, move |ep| async move {
        let failed = || verdict.set(crate::MainOutcome::Failed);
        let Some(program) = program else {
            ep.console("FAIL no user program to run the selftest's process");
            return failed();
        };
        wait_for_disks(&ep).await;
        wait_for_start_order(&ep, task).await;
        let mut process =
            match Process::start(&program, task, "main", kernel_core::config::MEMORY, [0, 0]) {
                Ok(process) => process,
                Err(why) => {
                    ep.console(&alloc::format!("FAIL cannot start the process: {why}"));
                    return failed();
                }
            };
        process.keep_served_by(ServiceId::Rngd);
        let end = loop {
            match process.resume(&ep) {
                Resume::Yielded => ep.yield_now().await,
                Resume::Ended(end) => break end,
            }
        };
        // It exits holding bytes rngd served it: none may outlive it in its frames.
        if let End::Exited(_) = end {
            match crate::isolation::served_bytes_freed(process) {
                None => {}
                Some(Ok((bytes, frames))) => {
                    let (bytes, frames) = (alloc::format!("{bytes}"), alloc::format!("{frames}"));
                    crate::console::line(
                        "KERNEL",
                        format_args!(
                            "{}",
                            markers::KERNEL_SERVED_BYTES_FREED.rendered(&[&bytes, &frames])
                        ),
                    );
                }
                Some(Err(why)) => {
                    crate::console::line(
                        "KERNEL",
                        format_args!("FAIL {}: {why}", markers::KERNEL_SERVED_BYTES_FREED.message),
                    );
                    return failed();
                }
            }
        }
        match end {
            End::Exited(main_exit::PASSED) => verdict.set(crate::MainOutcome::Passed),
            End::Exited(main_exit::FAILED_CLOSED) => {
                verdict.set(crate::MainOutcome::FailedClosed);
            }
            End::Exited(code) => {
                crate::console::line(
                    "KERNEL",
                    format_args!("process {task} exited with code {code}"),
                );
                failed();
            }
            // Named on the console and in the audit stream already.
            End::Faulted { .. } | End::Watchdog { .. } => failed(),
        }
    })
}

/// The tasks whose process is serving (its first `receive`) or has ended, a bit per
/// `ServiceId`: what the manifest's `after` lists wait for.
static STARTED: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

const _: () = assert!(ServiceId::ALL.len() <= 32);

fn mark_started(task: ServiceId) {
    STARTED.fetch_or(1 << task as u32, core::sync::atomic::Ordering::Relaxed);
}

fn started(task: ServiceId) -> bool {
    STARTED.load(core::sync::atomic::Ordering::Relaxed) & (1 << task as u32) != 0
}

/// How long a process waits for the tasks its manifest entry names in `after`, in
/// guest milliseconds; then it starts all the same, saying so (a task that never
/// comes must not keep the device from serving).
const START_WAIT_MS: u64 = 20_000;

/// Waits (yielding) until every task `task`'s manifest entry names in `after` is
/// serving or has ended, or [`START_WAIT_MS`] passed. So netstackd and dsoftbusd,
/// which draw entropy as they start, start once keystored has made or restored the
/// device key: the device's first draws are its key's, and a given entropy source
/// gives one key whatever the disks' timing.
async fn wait_for_start_order(ep: &KernelEndpoint<RiscvPlatform>, task: ServiceId) {
    let deadline = ep.uptime_ms() + START_WAIT_MS;
    let waiting = || {
        kernel_core::config::ORDER
            .iter()
            .filter(|wait| wait.task == task && !started(wait.after))
            .map(|wait| wait.after)
            .next()
    };
    while let Some(after) = waiting() {
        if ep.uptime_ms() > deadline {
            crate::console::line(
                "KERNEL",
                format_args!("{task} starts without {after} serving after {START_WAIT_MS} ms"),
            );
            return;
        }
        ep.yield_now().await;
    }
}

/// Waits (yielding) until the device manager has said which disk is which, or ended.
pub async fn wait_for_disks(ep: &KernelEndpoint<RiscvPlatform>) {
    while devices::unsettled(ipc::Capability::StateDisk) {
        ep.yield_now().await;
    }
}

fn dma_layout(pages: u64) -> Option<alloc::alloc::Layout> {
    alloc::alloc::Layout::from_size_align((pages * PAGE_SIZE) as usize, PAGE_SIZE as usize).ok()
}

/// Zeroes and frees DMA pages.
///
/// # Safety
/// `pa` came from `dma_alloc` with `pages` pages, is mapped nowhere, freed once.
unsafe fn free_dma(pa: u64, pages: u64) {
    let Some(layout) = dma_layout(pages) else {
        return;
    };
    let bytes = pa as *mut u8;
    let words = pa as *mut u64;
    for index in 0..(pages * PAGE_SIZE) as usize / 8 {
        // SAFETY: within the page-aligned allocation (the caller's contract), so every
        // u64 is aligned and inside it; volatile so the zeroing is not dropped before
        // the deallocation.
        unsafe { words.add(index).write_volatile(0) };
    }
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
    // SAFETY: allocated with this layout, freed once.
    unsafe { alloc::alloc::dealloc(bytes, layout) };
}

/// What a served system call asks of the run loop.
enum Call {
    Continue,
    Yield,
    Exit(u64),
}

impl Drop for Process {
    fn drop(&mut self) {
        // The hart is on the kernel's tables whenever a process is not running, so
        // none of these frames is reachable through a live translation; the fence in
        // the next switch drops any cached one.
        let frames = &mut HeapFrames;
        devices::space_ended(self.number);
        devices::release(self.number);
        if self.task == ServiceId::Devmgr {
            // Whatever it did not assign stays unassigned: absent, never waited for.
            devices::settle();
        }
        for (_, pa, pages) in self.dma.drain(..) {
            // SAFETY: allocated by `dma_alloc`; the space that mapped it is going away
            // with nothing running on it.
            unsafe { free_dma(pa, pages) };
        }
        let mut tables = Vec::new();
        self.space.table_frames(frames, |pa| tables.push(pa));
        for frame in self.own.drain(..).chain(tables) {
            // SAFETY: each came from `HeapFrames::allocate` for this process alone
            // (its own pages, then its own tables; the kernel's shared tables are not
            // listed, nor device windows or DMA pages, which are not in `own`),
            // nothing maps it any more, and each is freed once here.
            unsafe { HeapFrames::free(frame) };
        }
    }
}
