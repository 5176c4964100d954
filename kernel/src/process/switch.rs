//! Entering user mode and coming back: the one place where the hart changes
//! privilege.
//!
//! [`enter`] is a function call from the kernel's point of view: it saves the kernel's
//! callee-saved registers on the kernel stack, loads the process's registers from its
//! [`UserContext`], and `sret`s into user mode on the process's page tables. The next
//! trap from user mode (a system call, a fault, the timer) lands in `user_trap`, which
//! saves every user register into the same context, restores the kernel's registers
//! and returns from [`enter`] with the trap's cause. So a process runs inside its
//! task's poll, and the kernel never runs on a stack a process could touch.
//!
//! While the process runs, `stvec` points at `user_trap` and `sscratch` holds the
//! context's address; in the kernel, `stvec` is riscv-rt's handler again and
//! `sscratch` is 0. Interrupts are off in the kernel across the switch (a timer taken
//! between the `stvec` write and `sret` would land in `user_trap` with kernel
//! registers); in user mode the supervisor's interrupts are always enabled, which is
//! what lets the timer preempt a process. `sstatus.SUM` is never set: the kernel reads
//! and writes a process's memory through its frames' kernel mappings, after checking
//! the range against the process's tables (`super::copy_in`), never through user
//! addresses.

use core::arch::global_asm;

/// A process's registers while it is not running, and what `user_trap` needs to get
/// back to the kernel. The layout is the assembly's: keep the offsets in step.
#[repr(C)]
#[derive(Debug)]
pub struct UserContext {
    /// x0..x31 (x0's slot unused).
    pub regs: [u64; 32],
    /// Where the process resumes (`sepc`).
    pub pc: u64,
    /// The kernel's stack pointer inside [`enter`] (offset 33 * 8).
    kernel_sp: u64,
    /// The kernel's trap vector to restore (offset 34 * 8).
    kernel_vector: u64,
}

impl UserContext {
    /// A process about to start at `pc` with stack pointer `sp` and arguments `args`
    /// in a0..a4.
    pub fn new(pc: u64, sp: u64, args: [u64; 5]) -> Self {
        let mut regs = [0; 32];
        regs[2] = sp;
        regs[10..15].copy_from_slice(&args);
        Self {
            regs,
            pc,
            kernel_sp: 0,
            kernel_vector: 0,
        }
    }

    /// Argument register `a{n}` (n < 8).
    pub fn a(&self, n: usize) -> u64 {
        self.regs[10 + n]
    }

    /// Sets `a{n}`.
    pub fn set_a(&mut self, n: usize, value: u64) {
        self.regs[10 + n] = value;
    }
}

/// The cause of the trap that brought a process back.
#[derive(Clone, Copy, Debug)]
pub struct Trap {
    /// `scause`.
    pub scause: u64,
    /// `stval`.
    pub stval: u64,
}

impl Trap {
    /// Whether it was an interrupt (the top bit of `scause`).
    pub fn is_interrupt(&self) -> bool {
        self.scause >> 63 == 1
    }

    /// The exception or interrupt code.
    pub fn code(&self) -> u64 {
        self.scause & !(1 << 63)
    }
}

unsafe extern "C" {
    fn user_enter(context: *mut UserContext);
}

global_asm!(
    r#"
    .section .text.user_switch, "ax"
    .globl user_enter
    .p2align 2
user_enter:
    addi sp, sp, -128
    sd ra, 0(sp)
    sd s0, 8(sp)
    sd s1, 16(sp)
    sd s2, 24(sp)
    sd s3, 32(sp)
    sd s4, 40(sp)
    sd s5, 48(sp)
    sd s6, 56(sp)
    sd s7, 64(sp)
    sd s8, 72(sp)
    sd s9, 80(sp)
    sd s10, 88(sp)
    sd s11, 96(sp)
    sd gp, 104(sp)
    sd tp, 112(sp)
    sd sp, 264(a0)
    csrr t0, stvec
    sd t0, 272(a0)
    csrw sscratch, a0
    ld t0, 256(a0)
    csrw sepc, t0
    la t0, user_trap
    csrw stvec, t0
    ld x1, 8(a0)
    ld x2, 16(a0)
    ld x3, 24(a0)
    ld x4, 32(a0)
    ld x5, 40(a0)
    ld x6, 48(a0)
    ld x7, 56(a0)
    ld x8, 64(a0)
    ld x9, 72(a0)
    ld x11, 88(a0)
    ld x12, 96(a0)
    ld x13, 104(a0)
    ld x14, 112(a0)
    ld x15, 120(a0)
    ld x16, 128(a0)
    ld x17, 136(a0)
    ld x18, 144(a0)
    ld x19, 152(a0)
    ld x20, 160(a0)
    ld x21, 168(a0)
    ld x22, 176(a0)
    ld x23, 184(a0)
    ld x24, 192(a0)
    ld x25, 200(a0)
    ld x26, 208(a0)
    ld x27, 216(a0)
    ld x28, 224(a0)
    ld x29, 232(a0)
    ld x30, 240(a0)
    ld x31, 248(a0)
    ld x10, 80(a0)
    sret

    .p2align 2
user_trap:
    csrrw a0, sscratch, a0
    sd x1, 8(a0)
    sd x2, 16(a0)
    sd x3, 24(a0)
    sd x4, 32(a0)
    sd x5, 40(a0)
    sd x6, 48(a0)
    sd x7, 56(a0)
    sd x8, 64(a0)
    sd x9, 72(a0)
    sd x11, 88(a0)
    sd x12, 96(a0)
    sd x13, 104(a0)
    sd x14, 112(a0)
    sd x15, 120(a0)
    sd x16, 128(a0)
    sd x17, 136(a0)
    sd x18, 144(a0)
    sd x19, 152(a0)
    sd x20, 160(a0)
    sd x21, 168(a0)
    sd x22, 176(a0)
    sd x23, 184(a0)
    sd x24, 192(a0)
    sd x25, 200(a0)
    sd x26, 208(a0)
    sd x27, 216(a0)
    sd x28, 224(a0)
    sd x29, 232(a0)
    sd x30, 240(a0)
    sd x31, 248(a0)
    csrr t0, sscratch
    sd t0, 80(a0)
    csrr t0, sepc
    sd t0, 256(a0)
    ld sp, 264(a0)
    ld t0, 272(a0)
    csrw stvec, t0
    csrw sscratch, zero
    ld ra, 0(sp)
    ld s0, 8(sp)
    ld s1, 16(sp)
    ld s2, 24(sp)
    ld s3, 32(sp)
    ld s4, 40(sp)
    ld s5, 48(sp)
    ld s6, 56(sp)
    ld s7, 64(sp)
    ld s8, 72(sp)
    ld s9, 80(sp)
    ld s10, 88(sp)
    ld s11, 96(sp)
    ld gp, 104(sp)
    ld tp, 112(sp)
    addi sp, sp, 128
    ret
"#
);

const _: () = {
    assert!(core::mem::offset_of!(UserContext, pc) == 256);
    assert!(core::mem::offset_of!(UserContext, kernel_sp) == 264);
    assert!(core::mem::offset_of!(UserContext, kernel_vector) == 272);
};

/// `sstatus.FS` (bits 13-14) and `sstatus.VS` (bits 9-10): the floating-point and
/// vector units' state. OpenSBI leaves FS on, but the kernel saves no floating-point or
/// vector register of a process (the targets are `imac`: no code of ours uses them), so
/// with the units on, one process could leave data in `f0` for the next to read. Off,
/// every such instruction is an illegal-instruction fault that stops its process.
const FLOAT_AND_VECTOR: u64 = (0b11 << 13) | (0b11 << 9);

/// Runs the process whose registers are in `context`, on the tables `satp` selects,
/// until its next trap or `slice_end` (`time` ticks), when the timer preempts it; back
/// on the kernel's tables (`kernel_satp`), returns the cause. The timer is armed and
/// put back to the poll's watchdog deadline with interrupts off, so the slice's
/// interrupt is only ever taken in user mode.
pub fn enter(context: &mut UserContext, satp: u64, kernel_satp: u64, slice_end: u64) -> Trap {
    // SAFETY: this block is the privilege switch. Interrupts go off first (bit 1 of
    // sstatus, SIE), so nothing can trap between the `stvec` write inside `user_enter`
    // and its `sret`; SPP (bit 8) cleared makes `sret` go to user mode, SPIE (bit 5)
    // set is what SIE becomes there (ignored in user mode, where the supervisor's
    // interrupts are always on); FS and VS cleared turn the floating-point and vector
    // units off for the process. `satp` selects a space that maps the kernel's image,
    // stack and heap exactly as the kernel's own space does (global, non-user entries,
    // shared by `AddressSpace::sharing`), so the kernel keeps running across the write;
    // the fence drops the previous space's translations. `user_enter` keeps the
    // calling convention: it returns with every callee-saved register restored, and
    // `context` is a live, exclusively borrowed struct with the layout the assembly
    // uses. On the way back the kernel's space is selected again before anything else
    // runs, and interrupts come back on only after `scause` and `stval` are read.
    unsafe {
        core::arch::asm!("csrc sstatus, {sie}", sie = in(reg) 1u64 << 1);
        crate::watchdog::arm_slice(slice_end);
        core::arch::asm!("csrc sstatus, {spp}", spp = in(reg) 1u64 << 8);
        core::arch::asm!("csrs sstatus, {spie}", spie = in(reg) 1u64 << 5);
        core::arch::asm!("csrc sstatus, {fs_vs}", fs_vs = in(reg) FLOAT_AND_VECTOR);
        core::arch::asm!("csrw satp, {0}", "sfence.vma", in(reg) satp);
        user_enter(context);
        core::arch::asm!("csrw satp, {0}", "sfence.vma", in(reg) kernel_satp);
        let scause: u64;
        let stval: u64;
        core::arch::asm!("csrr {0}, scause", "csrr {1}, stval", out(reg) scause, out(reg) stval);
        crate::watchdog::rearm();
        core::arch::asm!("csrs sstatus, {sie}", sie = in(reg) 1u64 << 1);
        Trap { scause, stval }
    }
}
