//! The test image's isolation phase: the intruder, a user-mode program whose manifest
//! entry grants nothing, attacks the isolation between address spaces one step at a
//! time, each step a fresh process, beside a victim process that holds a secret. The
//! kernel judges each step from what the hardware and the system-call layer did (the
//! trap's `scause` and `stval`, the refusals it recorded), never from the intruder's
//! word, and prints the ladder's `isolation` markers. At every step it runs the
//! structural check over every live process's space (the services' in user mode
//! included) and every held device window; at the end it stops the victim and
//! searches the victim's freed frames for its secret.
//!
//! The program is `kernel/intruder` (built once for every combination), loaded from
//! the boot's `-initrd`. The step numbers and what each does are that program's
//! contract with this file.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use ipc::{Endpoint, ServiceId};
use kernel_core::{Kernel, KernelEndpoint, SpawnError};
use markers::Marker;

use crate::process::{End, Process, Program, Resume, SyscallError};
use crate::{RiscvPlatform, console};

/// The intruder's steps (its `a0`).
mod step {
    pub const READ: u64 = 1;
    pub const WRITE: u64 = 2;
    pub const EXECUTE_STACK: u64 = 3;
    pub const EXECUTE_HEAP: u64 = 4;
    pub const BAD_BUFFERS: u64 = 5;
    pub const UNKNOWN_CALL: u64 = 6;
    pub const SPIN: u64 = 7;
    pub const CLAIM_DEVICE: u64 = 8;
    pub const FLOAT: u64 = 9;
    pub const VICTIM: u64 = 100;
}

/// `scause` codes.
const ILLEGAL_INSTRUCTION: u64 = 2;
const INSTRUCTION_PAGE_FAULT: u64 = 12;
const LOAD_PAGE_FAULT: u64 = 13;
const STORE_PAGE_FAULT: u64 = 15;

/// What a step must end in.
enum Expect {
    /// A fault of this cause, wherever.
    Fault(u64),
    /// A page fault of this cause at exactly this address.
    FaultAt(u64, u64),
    /// A page fault of this cause inside the process's stack.
    FaultInStack(u64),
    /// A page fault of this cause at the start of the process's heap.
    FaultAtHeap(u64),
    /// An exit with code 0 after exactly these refusals, in order.
    Refused(&'static [SyscallError]),
    /// Stopped by the watchdog after at least two preemptions.
    Watchdog,
}

/// The refusals the bad-buffers step must get: a kernel address, the victim's address,
/// an unmapped address and a wrapping range to the console, and a range longer than it
/// takes; then the four ranges again to `call`, `receive`, `reply`, `audit` and
/// `bootargs`, each.
const BAD_BUFFERS: &[SyscallError] = &{
    use SyscallError::{NotUser, TooLong, Unmapped, Wraps};
    let four = [NotUser, Unmapped, Unmapped, Wraps];
    let mut all = [TooLong; 25];
    let mut i = 0;
    while i < 4 {
        all[i] = four[i];
        let mut call = 0;
        while call < 5 {
            all[5 + 4 * call + i] = four[i];
            call += 1;
        }
        i += 1;
    }
    all
};

/// The victim's secret: 16 bytes the kernel knows and no other process should ever
/// see. The victim writes them on its stack and its heap.
const SECRET_SEED: u64 = 0x5ec2_e7a1_1dd0_0a55;

fn secret() -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&SECRET_SEED.to_le_bytes());
    out[8..].copy_from_slice(&(!SECRET_SEED).to_le_bytes());
    out
}

/// Spawns the isolation phase as task [`ServiceId::Intruder`]. `program` is the
/// boot's user program (`None`: the phase fails, saying why).
///
/// # Errors
/// [`SpawnError`] from the kernel.
/// With `spinner` (`-append spin`), after its steps the phase runs one more spinning
/// process, beside the rest of the ladder, until the watchdog stops it.
pub fn spawn(
    kernel: &mut Kernel<RiscvPlatform>,
    program: Option<alloc::rc::Rc<Program>>,
    spinner: bool,
) -> Result<(), SpawnError> {
    kernel.spawn(ServiceId::Intruder, move |ep| async move {
        if let Err(why) = run(&ep, program.as_deref()).await {
            ep.console(&format!("FAIL isolation: {why}"));
        } else if spinner && let Some(program) = program.as_deref() {
            spin_beside_the_ladder(&ep, program).await;
        }
        // A task that ends is a failure of the image; this one has nothing left to do.
        core::future::pending::<()>().await;
    })
}

fn pass(marker: Marker) {
    console::line("KERNEL", format_args!("{}", marker.message));
}

async fn run(ep: &KernelEndpoint<RiscvPlatform>, program: Option<&Program>) -> Result<(), String> {
    let program = program.ok_or("no user program: the test image boots with -initrd")?;
    let code = program.code_start().ok_or("the intruder has no code")?;
    let bounds = kernel_core::config::MEMORY;
    let mut victim = Process::start(
        program,
        ServiceId::Intruder,
        "victim",
        bounds,
        [step::VICTIM, SECRET_SEED],
    )
    .map_err(|e| format!("the victim: {e}"))?;
    // Let the victim write its secret: it yields once it has.
    if victim.resume(ep) != Resume::Yielded {
        return Err(String::from("the victim ended before the steps"));
    }
    let foreign = victim.stack().end - 16;
    // An address of the kernel's: its code's first page, mapped in every space, not
    // for user mode.
    let kernel_address = crate::mmu::kernel_text_start();
    let steps: [(&'static str, u64, u64, Expect, Marker); 11] = [
        (
            "read-kernel",
            step::READ,
            kernel_address,
            Expect::FaultAt(LOAD_PAGE_FAULT, kernel_address),
            markers::KERNEL_ISOLATION_KERNEL_READ,
        ),
        (
            "read-foreign",
            step::READ,
            foreign,
            Expect::FaultAt(LOAD_PAGE_FAULT, foreign),
            markers::KERNEL_ISOLATION_FOREIGN_READ,
        ),
        (
            "write-foreign",
            step::WRITE,
            foreign,
            Expect::FaultAt(STORE_PAGE_FAULT, foreign),
            markers::KERNEL_ISOLATION_FOREIGN_WRITE,
        ),
        (
            "write-code",
            step::WRITE,
            code,
            Expect::FaultAt(STORE_PAGE_FAULT, code),
            markers::KERNEL_ISOLATION_CODE_WRITE,
        ),
        (
            "execute-stack",
            step::EXECUTE_STACK,
            0,
            Expect::FaultInStack(INSTRUCTION_PAGE_FAULT),
            markers::KERNEL_ISOLATION_STACK_EXECUTE,
        ),
        (
            "execute-heap",
            step::EXECUTE_HEAP,
            0,
            Expect::FaultAtHeap(INSTRUCTION_PAGE_FAULT),
            markers::KERNEL_ISOLATION_HEAP_EXECUTE,
        ),
        (
            "bad-buffers",
            step::BAD_BUFFERS,
            foreign,
            Expect::Refused(BAD_BUFFERS),
            markers::KERNEL_ISOLATION_BAD_BUFFERS,
        ),
        (
            "unknown-call",
            step::UNKNOWN_CALL,
            0,
            Expect::Refused(&[SyscallError::UnknownCall]),
            markers::KERNEL_ISOLATION_UNKNOWN_CALL,
        ),
        (
            "claim-device",
            step::CLAIM_DEVICE,
            0,
            Expect::Refused(&[SyscallError::NotGranted, SyscallError::NotHeld]),
            markers::KERNEL_ISOLATION_DEVICE_REFUSED,
        ),
        (
            "float",
            step::FLOAT,
            0,
            Expect::Fault(ILLEGAL_INSTRUCTION),
            markers::KERNEL_ISOLATION_FLOAT_STOPPED,
        ),
        (
            "spin",
            step::SPIN,
            0,
            Expect::Watchdog,
            markers::KERNEL_ISOLATION_SPIN_STOPPED,
        ),
    ];
    let mut failures = 0;
    let mut checks = 0;
    let mut walked = 0;
    for (label, number, target, expect, marker) in steps {
        let mut intruder = Process::start(
            program,
            ServiceId::Intruder,
            label,
            bounds,
            [number, target],
        )
        .map_err(|e| format!("step {label}: {e}"))?;
        let structure = crate::process::structural_check()
            .map(|spaces| {
                walked = walked.max(spaces);
            })
            .map_err(|(first, count)| format!("{first} ({count} violations in all)"));
        checks += 1;
        let end = run_beside(ep, &mut intruder, &mut victim).await?;
        let verdict = judge(&intruder, end, &expect).and(structure);
        match verdict {
            Ok(()) if matches!(expect, Expect::Watchdog) => {
                let times = format!("{}", intruder.preemptions());
                console::line("KERNEL", format_args!("{}", marker.rendered(&[&times])));
            }
            Ok(()) => pass(marker),
            Err(why) => {
                failures += 1;
                console::line("KERNEL", format_args!("FAIL {}: {why}", marker.message));
            }
        }
    }
    if failures == 0 {
        let (count, spaces) = (format!("{checks}"), format!("{walked}"));
        console::line(
            "KERNEL",
            format_args!(
                "{}",
                markers::KERNEL_ISOLATION_STRUCTURE.rendered(&[&count, &spaces])
            ),
        );
    }
    // The victim ends; its frames are zeroed as they are freed. Search them, and
    // first search them live: the secret must be there, or the search is blind.
    let frames: Vec<u64> = victim.own_frames().to_vec();
    let secret = secret();
    let held = frames
        .iter()
        .filter(|&&frame| holds(frame, &secret))
        .count();
    drop(victim);
    let found = frames.iter().any(|&frame| holds(frame, &secret));
    let failure = match (held, found) {
        (0, _) => Some("no frame of the live victim held its secret: the search is blind"),
        (_, true) => Some("a freed frame still holds the victim's secret"),
        (_, false) => None,
    };
    match failure {
        Some(why) => console::line(
            "KERNEL",
            format_args!(
                "FAIL {}: {why}",
                markers::KERNEL_ISOLATION_FRAMES_ZEROED.message
            ),
        ),
        None => pass(markers::KERNEL_ISOLATION_FRAMES_ZEROED),
    }
    Ok(())
}

/// The watchdog's scenario (`-append spin`): a process that spins without a system
/// call, started after the steps, while the selftest's ladder goes on. The timer
/// preempts it at every slice; the process watchdog must stop it after a second of its
/// own time; the ladder must pass meanwhile (the scenario checks). Prints the marker,
/// or `FAIL` with why.
async fn spin_beside_the_ladder(ep: &KernelEndpoint<RiscvPlatform>, program: &Program) {
    let started = Process::start(
        program,
        ServiceId::Intruder,
        "spinner",
        kernel_core::config::MEMORY,
        [step::SPIN, 0],
    );
    let mut spinner = match started {
        Ok(spinner) => spinner,
        Err(why) => {
            ep.console(&format!("FAIL the spinner: {why}"));
            return;
        }
    };
    let deadline = ep.uptime_ms() + STEP_DEADLINE_MS;
    let end = loop {
        if let Resume::Ended(end) = spinner.resume(ep) {
            break Ok(end);
        }
        if ep.uptime_ms() > deadline {
            break Err(format!("still running after {STEP_DEADLINE_MS} ms"));
        }
        ep.yield_now().await;
    };
    let marker = markers::KERNEL_SPINNER_STOPPED;
    match end.and_then(|end| judge(&spinner, end, &Expect::Watchdog)) {
        Ok(()) => {
            let times = format!("{}", spinner.preemptions());
            console::line("KERNEL", format_args!("{}", marker.rendered(&[&times])));
        }
        Err(why) => console::line("KERNEL", format_args!("FAIL {}: {why}", marker.message)),
    }
}

/// Runs `intruder` to its end, the victim running beside it (each for its slices, the
/// kernel's other tasks between them). Gives up after [`STEP_DEADLINE_MS`].
async fn run_beside(
    ep: &KernelEndpoint<RiscvPlatform>,
    intruder: &mut Process,
    victim: &mut Process,
) -> Result<End, String> {
    let deadline = ep.uptime_ms() + STEP_DEADLINE_MS;
    loop {
        if let Resume::Ended(end) = intruder.resume(ep) {
            return Ok(end);
        }
        if let Resume::Ended(end) = victim.resume(ep) {
            return Err(format!("the victim ended: {end:?}"));
        }
        if ep.uptime_ms() > deadline {
            return Err(format!(
                "the intruder's step did not end within {STEP_DEADLINE_MS} ms"
            ));
        }
        ep.yield_now().await;
    }
}

/// How long one step may take, in guest milliseconds: the spinning step ends when the
/// watchdog's budget of its own time is spent, which on a loaded machine takes longer.
const STEP_DEADLINE_MS: u64 = 60_000;

fn judge(intruder: &Process, end: End, expect: &Expect) -> Result<(), String> {
    let fault = |cause: u64, at: &dyn Fn(u64) -> bool| match end {
        End::Faulted { scause, stval, .. } if scause == cause && at(stval) => Ok(()),
        other => Err(format!(
            "want a fault with scause {cause:#x}, got {other:?}"
        )),
    };
    match *expect {
        Expect::Fault(cause) => fault(cause, &|_| true),
        Expect::FaultAt(cause, address) => fault(cause, &|stval| stval == address),
        Expect::FaultInStack(cause) => {
            let stack = intruder.stack();
            fault(cause, &|stval| stack.contains(&stval))
        }
        Expect::FaultAtHeap(cause) => {
            let heap = intruder.heap().start;
            fault(cause, &|stval| stval == heap)
        }
        Expect::Refused(expected) => {
            let got: Vec<SyscallError> = intruder.refusals().iter().map(|r| r.error).collect();
            match end {
                End::Exited(0) if got == expected => Ok(()),
                other => Err(format!(
                    "want exit 0 after refusals {expected:?}, got {other:?} after {got:?}"
                )),
            }
        }
        Expect::Watchdog => match end {
            End::Watchdog { .. } if intruder.preemptions() >= 2 => Ok(()),
            other => Err(format!(
                "want the watchdog after preemptions, got {other:?} after {} preemptions",
                intruder.preemptions()
            )),
        },
    }
}

/// Whether the 4 KiB frame at `frame` holds `secret` anywhere.
fn holds(frame: u64, secret: &[u8; 16]) -> bool {
    read_frame(frame)
        .windows(secret.len())
        .any(|window| window == secret)
}

/// The freed-memory check at the frame level, on a process as it ends: the payloads
/// (the first 4 KiB) the kernel copied as the process took them from a service (rngd, for the test
/// image's selftest: [`Process::keep_served_by`]) are searched for in the process's
/// own frames before they are freed, where some must be found (the program leaves
/// bytes rngd served it in its heap and on its stack as it exits, so a check that
/// finds nothing there is blind and fails), and after, where none may be. Every
/// 16-byte block of every payload is looked for at every byte offset of every frame.
/// Returns the bytes searched for and how many frames held some before the free;
/// `None` when nothing was served.
///
/// # Errors
/// Why the check failed.
pub fn served_bytes_freed(process: Process) -> Option<Result<(usize, usize), String>> {
    let bytes: usize = process.served().map(|p| p.len()).sum();
    if bytes == 0 {
        return None;
    }
    // Built before the frames are freed, so nothing of it can land in them.
    let blocks = Blocks::new(process.served().map(|p| p.as_slice()));
    let frames: Vec<u64> = process.own_frames().to_vec();
    let before = frames.iter().filter(|&&f| blocks.found_in(f)).count();
    drop(process);
    let after = frames.iter().filter(|&&f| blocks.found_in(f)).count();
    Some(match (before, after) {
        (0, _) => Err(format!(
            "none of the process's {} frames held any of the {bytes} bytes before the free: the check cannot see them",
            frames.len()
        )),
        (_, 0) => Ok((bytes, before)),
        (_, after) => Err(format!(
            "{after} freed frames still hold bytes of the {bytes} served"
        )),
    })
}

/// The 16-byte blocks searched for, sorted, with a bitmap of their first eight bytes'
/// hashes to pass over most offsets with one lookup.
struct Blocks {
    sorted: Vec<[u8; 16]>,
    filter: Vec<u64>,
}

impl Drop for Blocks {
    /// The blocks are bytes rngd served: wiped like every other copy of them.
    fn drop(&mut self) {
        for block in &mut self.sorted {
            for byte in block.iter_mut() {
                // SAFETY: `byte` is a live, exclusively borrowed u8 of this vector;
                // volatile so the wipe is not dropped as a dead store before the free.
                unsafe { core::ptr::write_volatile(byte, 0) };
            }
        }
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
    }
}

impl Blocks {
    const FILTER_BITS: u32 = 16;

    fn new<'a>(payloads: impl Iterator<Item = &'a [u8]>) -> Self {
        let mut sorted: Vec<[u8; 16]> = payloads
            .flat_map(|p| p.chunks_exact(16))
            .filter_map(|chunk| <[u8; 16]>::try_from(chunk).ok())
            .collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut filter = alloc::vec![0u64; (1 << Self::FILTER_BITS) / 64];
        for block in &sorted {
            let bit = Self::bit(block);
            filter[bit / 64] |= 1 << (bit % 64);
        }
        Self { sorted, filter }
    }

    fn bit(bytes: &[u8]) -> usize {
        let mut head = [0u8; 8];
        head.copy_from_slice(&bytes[..8]);
        (u64::from_le_bytes(head).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - Self::FILTER_BITS))
            as usize
    }

    /// Whether the 4 KiB frame at `frame` holds a block at any byte offset.
    fn found_in(&self, frame: u64) -> bool {
        let page = read_frame(frame);
        if page.iter().all(|&b| b == 0) {
            return false;
        }
        page.windows(16).any(|window| {
            let bit = Self::bit(window);
            self.filter[bit / 64] & (1 << (bit % 64)) != 0
                && self.sorted.binary_search_by(|b| b[..].cmp(window)).is_ok()
        })
    }
}

/// A copy of the 4 KiB frame at `frame`.
fn read_frame(frame: u64) -> [u8; sv39::PAGE_SIZE as usize] {
    let mut page = [0u8; sv39::PAGE_SIZE as usize];
    for (offset, byte) in page.iter_mut().enumerate() {
        // SAFETY: `frame` is a heap frame of a process's, live or freed into the heap,
        // which is identity-mapped read-write in the kernel's space; nothing else runs
        // on this hart meanwhile, and reading bytes (volatile, as raw memory whatever
        // the allocator now keeps there) cannot break an invariant.
        *byte = unsafe { ((frame as usize + offset) as *const u8).read_volatile() };
    }
    page
}
