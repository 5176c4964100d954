//! The watchdog: a task that runs past its budget without yielding is named and the
//! machine stops with a failing status, instead of hanging until the harness gives up.
//!
//! The executor is cooperative: a task runs from the moment it is polled until its
//! poll returns, and nothing else runs meanwhile. So the watchdog arms the supervisor
//! timer when a poll starts (`stimecmp = now + budget`, with the Sstc extension; the
//! SBI timer call otherwise) and disarms it when the poll returns. The interrupt can
//! only fire while one poll has run for the whole budget.
//!
//! **The budget** is [`BUDGET_MS`] = 5 s. The longest legitimate poll waits for a
//! device inside the poll: a disk request has a 2 s deadline, the entropy device
//! 0.5 s, a network transmit 0.1 s; the longest computation in one poll (the guest
//! benchmarks' workloads, run back to back) takes well under a second of guest time.
//! 5 s is more than twice the longest, and far below the harness's timeouts.
//!
//! **Why the handler is safe.** It runs in the middle of the stuck task's poll, which
//! may hold the kernel's state borrowed (an IPC call in progress), so it touches none
//! of it: it reads which task was polled and when (atomics the platform keeps), prints
//! one line on the UART, and stops the machine; it never returns into the task. For
//! the same reason it writes no audit record: the audit stream is kernel state the
//! task may hold. The console line and the exit status are the record. If the timer
//! fires between polls (it cannot, being disarmed, but a spurious interrupt might),
//! the handler disarms it and returns; if it fires before the poll's deadline (a
//! user-mode process's slice timer raised late by QEMU, after the kernel moved the
//! timer on), it puts the deadline back and returns: only an overrun stops the machine.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::{clock, console, platform, shutdown};

/// How long one poll may run, in milliseconds.
pub const BUDGET_MS: u64 = 5_000;

/// Whether `stimecmp` (Sstc) is there; otherwise the SBI timer call.
static SSTC: AtomicBool = AtomicBool::new(false);
/// The budget in `time` ticks.
static BUDGET_TICKS: AtomicU64 = AtomicU64::new(0);
/// When the current poll started, in `time` ticks.
static STARTED: AtomicU64 = AtomicU64::new(0);

fn set_timer(at: u64) {
    if SSTC.load(Ordering::Relaxed) {
        // SAFETY: the device tree says the hart has Sstc, and the firmware (OpenSBI)
        // enables S-mode access to `stimecmp` (0x14d) where it does; writing it only
        // moves the supervisor timer's deadline.
        unsafe { core::arch::asm!("csrw 0x14d, {0}", in(reg) at) };
    } else {
        let _ = sbi_rt::set_timer(at);
    }
}

/// Enables the supervisor timer interrupt with the timer disarmed.
pub fn init(timebase_hz: u64, sstc: bool) {
    SSTC.store(sstc, Ordering::Relaxed);
    BUDGET_TICKS.store(
        timebase_hz.saturating_mul(BUDGET_MS) / 1000,
        Ordering::Relaxed,
    );
    set_timer(u64::MAX);
    // SAFETY: the timer is disarmed and the handler below is installed (riscv-rt
    // dispatches SupervisorTimer to it); enabling the interrupt lets it fire only when
    // a poll overruns.
    unsafe {
        riscv::register::sie::set_stimer();
        riscv::register::sstatus::set_sie();
    }
}

/// A poll starts: the timer goes off if it is still running after the budget.
pub fn arm() {
    let now = riscv::register::time::read64();
    STARTED.store(now, Ordering::Relaxed);
    set_timer(now.saturating_add(BUDGET_TICKS.load(Ordering::Relaxed)));
}

/// A user-mode process is about to run inside the current poll: the timer goes off at
/// `slice_end` (`time` ticks) to preempt it, or at the poll's own deadline if that
/// comes first. The interrupt then arrives in user mode, where the process layer takes
/// it as the end of the slice; [`rearm`] puts the poll's deadline back.
pub fn arm_slice(slice_end: u64) {
    let poll_end = STARTED
        .load(Ordering::Relaxed)
        .saturating_add(BUDGET_TICKS.load(Ordering::Relaxed));
    set_timer(slice_end.min(poll_end));
}

/// The process is back in the kernel: the timer guards the poll again.
pub fn rearm() {
    set_timer(
        STARTED
            .load(Ordering::Relaxed)
            .saturating_add(BUDGET_TICKS.load(Ordering::Relaxed)),
    );
}

/// The poll returned.
pub fn disarm() {
    set_timer(u64::MAX);
}

#[riscv_rt::core_interrupt(riscv::interrupt::Interrupt::SupervisorTimer)]
fn supervisor_timer() {
    let Some(task) = platform::current_task() else {
        disarm();
        return;
    };
    let now = riscv::register::time::read64();
    let started = STARTED.load(Ordering::Relaxed);
    let deadline = started.saturating_add(BUDGET_TICKS.load(Ordering::Relaxed));
    if now < deadline {
        // Not this poll's deadline: a user-mode slice's timer whose interrupt came
        // after the kernel had moved the timer on (seen in QEMU 7.2 under load, 10 to
        // 20 ms into a poll). The poll has not overrun: put its deadline back, which
        // clears the pending interrupt.
        set_timer(deadline);
        return;
    }
    let ran_us = clock::ticks_to_us(now.saturating_sub(started));
    // No allocation here: the task may have been stopped inside the allocator.
    let mut digits = [0u8; 20];
    let ms = decimal(ran_us / 1000, &mut digits);
    console::line(
        "KERNEL",
        format_args!("{}", markers::KERNEL_WATCHDOG.rendered(&[task.name(), ms])),
    );
    console::line(
        "KERNEL",
        format_args!("the watchdog's budget is {BUDGET_MS} ms per poll: stopping the machine"),
    );
    shutdown::shutdown(false, None)
}

/// `n` in decimal, in `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    core::str::from_utf8(&buf[at..]).unwrap_or("?")
}
