//! The kernel heap: `embedded-alloc`'s linked-list allocator over the memory the
//! device tree gives, above the image.

use core::ops::Range;

use embedded_alloc::LlffHeap;

#[global_allocator]
static HEAP: LlffHeap = LlffHeap::empty();

unsafe extern "C" {
    /// The top of riscv-rt's stack region: the end of the image's memory.
    static _stack_start: u8;
}

/// The first address past the image and its stack.
pub fn image_end() -> usize {
    // Only the symbol's address is taken; the byte is never read.
    core::ptr::addr_of!(_stack_start) as usize
}

/// Hands `range` to the allocator. Called once, before any allocation.
pub fn init(range: Range<usize>) {
    // SAFETY: `range` is RAM above the image and its stack and below the device tree
    // blob (see `Machine::heap_range`), used by nothing else, and this is the only call.
    unsafe { HEAP.init(range.start, range.len()) }
}
