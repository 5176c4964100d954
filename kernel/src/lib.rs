//! The riscv64 kernel: the hardware half of the OS, around [`kernel_core`].
//!
//! [`boot`] runs on QEMU `virt` in S-mode under OpenSBI (`-bios default`):
//!
//! 1. reads the flattened device tree the firmware passes in `a1` ([`device_tree`]):
//!    memory, the timebase, the UART, the virtio-mmio slots and the test finisher;
//! 2. brings up the UART console;
//! 3. puts the heap (a maintained allocator, `embedded-alloc`) above the image, out
//!    of the device tree blob and every reserved memory region;
//! 4. reads every virtio-mmio slot's header (no driver) and finds the entropy
//!    source, the disks (by serial) and the network device there, never at a
//!    hard-coded address; every device's window becomes a capability its holder's
//!    user-mode process claims (the kernel opens no driver: the device manager tells
//!    the disks apart by serial in user mode);
//! 5. creates the kernel with the compiled-in policy and manifest, lets the image
//!    load its user program (whose `.combination` section names the provider
//!    combination the kernel prints in its banner: the kernel has no crypto and is
//!    built once for every combination) and spawn its tasks, runs them until the selftest finishes, and shuts the machine
//!    down through SBI with a status that says whether everything passed.
//!
//! A panic prints `KERNEL: panic in task <name>: <message>` and a trap prints the
//! cause; both end the run with a failure status. So does the watchdog ([`watchdog`]:
//! a task that runs past its budget without yielding is named). This crate holds the project's
//! `unsafe` (the switch to user mode, MMIO headers, the heap, frames), each block with
//! its reason. On the host
//! it is empty.

#![no_std]
#![cfg(target_arch = "riscv64")]

extern crate alloc;

mod clock;
mod console;
pub mod device_tree;
mod heap;
pub mod isolation;
mod mmu;
mod panic;
mod platform;
pub mod process;
mod shutdown;
mod trap;
pub mod virtio;
mod watchdog;

use alloc::rc::Rc;
use core::cell::Cell;

use ipc::ServiceId;
use kernel_core::{Kernel, Limits, RunOutcome};

pub use platform::RiscvPlatform;

/// How long the tasks may run before the kernel gives up, in guest seconds.
const RUN_DEADLINE_S: u64 = 600;

/// How the image's main task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MainOutcome {
    /// Everything passed: shut down with success.
    Passed,
    /// The system failed closed as designed (no entropy): shut down with failure,
    /// saying so.
    FailedClosed,
    /// Something failed.
    Failed,
}

/// The outcome of the image's main task, set by the task when it finishes.
#[derive(Clone, Default)]
pub struct MainVerdict(Rc<Cell<Option<MainOutcome>>>);

impl MainVerdict {
    /// Records how the main task ended.
    pub fn set(&self, outcome: MainOutcome) {
        self.0.set(Some(outcome));
    }
}

/// What the image learns about the boot.
#[derive(Clone, Copy, Debug)]
pub struct BootInfo {
    /// The kernel command line (`/chosen/bootargs`, QEMU's `-append`).
    pub bootargs: &'static str,
    /// The user programs the boot loader put beside the kernel (QEMU's `-initrd`): an
    /// ELF executable, read-only.
    pub programs: Option<&'static [u8]>,
}

/// Retired instructions so far (the `instret` counter), for the guest benchmarks.
/// Exact under QEMU's `-icount shift=0`; without it QEMU counts host ticks.
pub fn instructions_retired() -> u64 {
    riscv::register::instret::read64()
}

/// Instructions `task` retired inside its own polls so far (see
/// [`platform::task_instructions`]).
pub fn task_instructions(task: ServiceId) -> u64 {
    platform::task_instructions(task)
}

pub use heap::HeapStats;

/// The heap's bytes in use, their high-water mark, and the heap's size.
pub fn heap_stats() -> HeapStats {
    heap::stats()
}

/// Prints `prefix: line` on the console.
pub fn console_line(prefix: &str, line: &str) {
    console::line(prefix, format_args!("{line}"));
}

/// Brings the machine up to the point where the image spawns its tasks: device tree,
/// console, heap, clock, watchdog, devices, policy.
fn start(hart_id: usize, device_tree: usize) -> (Kernel<RiscvPlatform>, BootInfo, Option<usize>) {
    let machine = match device_tree::read(device_tree) {
        Ok(machine) => machine,
        Err(why) => {
            console::line(
                "KERNEL",
                format_args!("FAIL cannot read the device tree at {device_tree:#x}: {why}"),
            );
            shutdown::shutdown(false, None)
        }
    };
    shutdown::set_finisher(machine.test_finisher);
    console::init(machine.uart);
    let heap = machine.heap_range(heap::image_end());
    heap::init(heap.clone());
    console::line(
        "KERNEL",
        format_args!("hart {hart_id}, device tree at {device_tree:#x}"),
    );
    console::line(
        "KERNEL",
        format_args!(
            "heap {} KiB at {:#x}..{:#x}",
            heap.len() / 1024,
            heap.start,
            heap.end
        ),
    );
    console::line(
        "KERNEL",
        format_args!("{}", markers::KERNEL_HEAP_READY.message),
    );

    match mmu::enable(&machine, &heap) {
        Ok(layout) => console::line(
            "KERNEL",
            format_args!(
                "paging on (Sv39, identity, W^X checked): text r-x {} KiB, rodata r-- {} KiB, data rw- {} KiB, heap rw- {} KiB, {} device windows rw-",
                layout.text / 1024,
                layout.rodata / 1024,
                layout.data / 1024,
                layout.heap / 1024,
                layout.windows
            ),
        ),
        Err(why) => {
            console::line("KERNEL", format_args!("FAIL paging: {why}"));
            shutdown::shutdown(false, machine.test_finisher)
        }
    }
    match mmu::writes_refused() {
        Ok(()) => console::line(
            "KERNEL",
            format_args!("{}", markers::KERNEL_CODE_WRITE_REFUSED.message),
        ),
        Err(at) => console::line(
            "KERNEL",
            format_args!("FAIL a write to the kernel's image at {at:#x} did not fault"),
        ),
    }

    clock::init(machine.timebase_hz);
    watchdog::init(machine.timebase_hz, machine.sstc);
    console::line(
        "KERNEL",
        format_args!(
            "memory {:#x}+{} MiB, timebase {} Hz, {} virtio-mmio slots, {} reserved regions",
            machine.memory.start,
            machine.memory.len() >> 20,
            machine.timebase_hz,
            machine.virtio_mmio().count(),
            machine.reserved().count()
        ),
    );
    let devices = virtio::probe(&machine);
    match &devices.entropy {
        Some(slot) => console::line("KERNEL", format_args!("virtio-rng at {:#x}", slot.start)),
        None => console::line("KERNEL", format_args!("no virtio-rng device")),
    }
    console::line(
        "KERNEL",
        format_args!("{}", markers::KERNEL_DEVICE_TREE_OK.message),
    );

    let platform = RiscvPlatform::new();
    let kernel = Kernel::new(
        platform,
        kernel_core::config::POLICY,
        kernel_core::config::GRANTS,
        Limits::default(),
    );
    // The entropy device is not opened here: its window is a capability, mapped into
    // its holder's process (rngd), where its driver runs.
    if let Some(slot) = &devices.entropy {
        process::register_window(ipc::Capability::EntropyDevice, slot.clone());
    }
    // Nor the disks: which is which takes a request to each (its serial), which the
    // device manager makes in user mode; the kernel hands it every block window.
    for slot in &devices.blocks {
        process::register_window(ipc::Capability::BlockDevices, slot.clone());
    }
    // Nor is the network device: its window goes to netstackd's process.
    match &devices.net {
        Some(slot) => {
            console::line("KERNEL", format_args!("virtio-net at {:#x}", slot.start));
            process::register_window(ipc::Capability::NetDevice, slot.clone());
        }
        None => console::line("KERNEL", format_args!("no virtio-net device")),
    }
    console::line(
        "KERNEL",
        format_args!(
            "policy: {} rules; manifest: {} grants",
            kernel.policy_rules(),
            kernel_core::config::GRANTS.len()
        ),
    );
    if !machine.bootargs.is_empty() {
        // The setup code a `pair=` word carries is withheld.
        console::line(
            "KERNEL",
            format_args!(
                "bootargs: {}",
                kernel_core::bootargs::Redacted(machine.bootargs)
            ),
        );
    }
    let programs = machine.initrd.clone().map(|range| {
        // SAFETY: the boot loader put the initrd in RAM at this range (the device
        // tree's /chosen says so); the heap never overlaps it, the kernel's space maps
        // it read-only, and nothing writes it for the life of the machine.
        unsafe { core::slice::from_raw_parts(range.start as *const u8, range.len()) }
    });
    process::set_bootargs(machine.bootargs);
    let info = BootInfo {
        bootargs: machine.bootargs,
        programs,
    };
    (kernel, info, machine.test_finisher)
}

/// Boots the machine and runs the test image. `image` loads the user program (whose
/// provider combination is the banner marker) and spawns the tasks, including the
/// main task (the selftest, [`ServiceId::Selftest`]), and returns the verdict it will
/// set. The machine shuts down when the main task finishes or after
/// [`RUN_DEADLINE_S`].
pub fn boot(
    hart_id: usize,
    device_tree: usize,
    image: impl FnOnce(&mut Kernel<RiscvPlatform>, BootInfo) -> MainVerdict,
) -> ! {
    let (mut kernel, info, test_finisher) = start(hart_id, device_tree);
    let verdict = image(&mut kernel, info);
    console::line(
        "KERNEL",
        format_args!("{}", markers::KERNEL_TASKS_STARTED.message),
    );

    let deadline = clock::now_us() + RUN_DEADLINE_S * 1_000_000;
    let outcome = kernel.run(Some(ServiceId::Selftest), deadline);
    let passed = match (outcome, verdict.0.get()) {
        (RunOutcome::MainFinished, Some(MainOutcome::Passed)) => {
            console::line(
                "KERNEL",
                format_args!("{}", markers::KERNEL_SHUTDOWN.message),
            );
            true
        }
        (RunOutcome::MainFinished, Some(MainOutcome::FailedClosed)) => {
            let message = markers::KERNEL_SHUTDOWN_FAIL_CLOSED.message;
            console::line("KERNEL", format_args!("{message}"));
            false
        }
        (RunOutcome::MainFinished, _) => {
            console::line(
                "KERNEL",
                format_args!("FAIL the selftest reported failures"),
            );
            false
        }
        (RunOutcome::DeadlineExceeded, _) => {
            let limit = RUN_DEADLINE_S;
            console::line(
                "KERNEL",
                format_args!("FAIL the selftest did not finish within {limit} s"),
            );
            false
        }
        (RunOutcome::NoTasksLeft, _) => {
            console::line(
                "KERNEL",
                format_args!("FAIL every task exited and the selftest never ran"),
            );
            false
        }
    };
    shutdown::shutdown(passed, test_finisher)
}

/// Boots the machine and runs a device image: `image` spawns the services, which then
/// serve for as long as the machine runs. There is no main task and no deadline; the
/// machine stops only if every task is gone (a failure, said on the console) or
/// when it is switched off.
pub fn boot_device(
    hart_id: usize,
    device_tree: usize,
    image: impl FnOnce(&mut Kernel<RiscvPlatform>, BootInfo),
) -> ! {
    let (mut kernel, info, test_finisher) = start(hart_id, device_tree);
    image(&mut kernel, info);
    console::line(
        "KERNEL",
        format_args!("{}", markers::KERNEL_TASKS_STARTED.message),
    );
    // Returns when every service has exited (each said `FAIL task ... exited`), or
    // when the platform clock reaches u64::MAX microseconds.
    let why = match kernel.run(None, u64::MAX) {
        RunOutcome::NoTasksLeft => "every service exited",
        RunOutcome::DeadlineExceeded => "the clock ran out",
        RunOutcome::MainFinished => "a main task finished on a device",
    };
    console::line(
        "KERNEL",
        format_args!("FAIL the device stopped serving: {why}"),
    );
    shutdown::shutdown(false, test_finisher)
}
