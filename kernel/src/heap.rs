//! The kernel heap: `embedded-alloc`'s linked-list allocator over the memory the
//! device tree gives, above the image, with counts of the bytes in use and their
//! high-water mark (the soak reads them to show memory stays flat).

use core::alloc::{GlobalAlloc, Layout};
use core::ops::Range;
use core::sync::atomic::{AtomicUsize, Ordering};

use embedded_alloc::LlffHeap;

/// The allocator with its counts.
struct Counted {
    heap: LlffHeap,
    in_use: AtomicUsize,
    high_water: AtomicUsize,
    size: AtomicUsize,
}

impl Counted {
    fn grew(&self, bytes: usize) {
        let now = self.in_use.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.high_water.fetch_max(now, Ordering::Relaxed);
    }

    fn shrank(&self, bytes: usize) {
        self.in_use.fetch_sub(bytes, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed to `LlffHeap` unchanged; the counters only watch.
unsafe impl GlobalAlloc for Counted {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on.
        let pointer = unsafe { self.heap.alloc(layout) };
        if !pointer.is_null() {
            self.grew(layout.size());
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc`, passed on.
        unsafe { self.heap.dealloc(pointer, layout) };
        self.shrank(layout.size());
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc`, passed on.
        let moved = unsafe { self.heap.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            self.shrank(layout.size());
            self.grew(new_size);
        }
        moved
    }
}

#[global_allocator]
static HEAP: Counted = Counted {
    heap: LlffHeap::empty(),
    in_use: AtomicUsize::new(0),
    high_water: AtomicUsize::new(0),
    size: AtomicUsize::new(0),
};

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
    HEAP.size.store(range.len(), Ordering::Relaxed);
    // SAFETY: `range` is RAM above the image and its stack and below the device tree
    // blob (see `Machine::heap_range`), used by nothing else, and this is the only call.
    unsafe { HEAP.heap.init(range.start, range.len()) }
}

/// The heap's figures, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Allocated and not yet freed.
    pub in_use: usize,
    /// The most ever in use at once.
    pub high_water: usize,
    /// The heap's size.
    pub size: usize,
}

/// The heap's figures now.
pub fn stats() -> HeapStats {
    HeapStats {
        in_use: HEAP.in_use.load(Ordering::Relaxed),
        high_water: HEAP.high_water.load(Ordering::Relaxed),
        size: HEAP.size.load(Ordering::Relaxed),
    }
}
