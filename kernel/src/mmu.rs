//! The kernel's own address space: Sv39 translation on, every page mapped at its own
//! physical address (so DMA addresses and pointers stay what they were), and W^X for
//! the kernel image: code read+execute, read-only data read-only, data, bss, the
//! stack and the heap read+write and never executable, device windows read+write.
//! Nothing is user-accessible. The tables are built with `sv39` (host-tested) in
//! page-aligned heap blocks the kernel keeps for the life of the machine.
//!
//! This is the first step of the user-mode work (issue 19): the kernel runs on page
//! tables with its own image protected; processes get address spaces of their own
//! next. What it proves today: with `memory.x` aligning the image's sections to pages,
//! no kernel page is both writable and executable (read back from the tables), and a
//! write into the kernel's code or read-only data faults instead of patching it
//! ([`writes_refused`] provokes both faults at every boot).

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use core::cell::Cell;
use core::ops::Range;

use critical_section::Mutex;

use device_tree::Machine;
use sv39::{AddressSpace, Flags, Frames, MapError, PAGE_SIZE};

unsafe extern "C" {
    /// Linker symbols of riscv-rt's script (only their addresses are used).
    static __stext: u8;
    static __etext: u8;
    static __srodata: u8;
    static __sdata: u8;
    static _stack_start: u8;
}

/// Frames from the heap: zeroed when handed out, page-aligned, identity-mapped (the
/// physical address is the pointer). The kernel's own tables are never freed; a
/// process's tables and pages go back through [`HeapFrames::free`], which zeroes them
/// first.
pub(crate) struct HeapFrames;

fn frame_layout() -> Layout {
    // 4096 is a power of two and a valid size: this cannot fail.
    Layout::from_size_align(PAGE_SIZE as usize, PAGE_SIZE as usize).unwrap_or(Layout::new::<u8>())
}

impl HeapFrames {
    /// Zeroes the frame at `pa` and gives it back to the heap, so no byte of it
    /// reaches whoever gets the memory next.
    ///
    /// # Safety
    /// `pa` came from [`Frames::allocate`] on this type, is no longer mapped in any
    /// running space (the caller fenced the TLB or switched away), and is freed once.
    pub(crate) unsafe fn free(pa: u64) {
        let frame = pa as *mut u8;
        let words = pa as *mut u64;
        for index in 0..PAGE_SIZE as usize / 8 {
            // SAFETY: the frame is a live, page-aligned heap block of PAGE_SIZE bytes
            // (the caller's contract), so every u64 in it is aligned and inside it;
            // volatile writes so that the zeroing is not dropped as a dead store
            // before the deallocation.
            unsafe { words.add(index).write_volatile(0) };
        }
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
        // SAFETY: allocated by `allocate` with this layout, freed once.
        unsafe { dealloc(frame, frame_layout()) };
    }
}

impl Frames for HeapFrames {
    fn allocate(&mut self) -> Option<u64> {
        // SAFETY: the layout has a non-zero size.
        let table = unsafe { alloc_zeroed(frame_layout()) };
        (!table.is_null()).then_some(table as u64)
    }

    fn table(&self, pa: u64) -> &[u64; 512] {
        // SAFETY: every table address comes from `allocate` above (a live, page-sized,
        // page-aligned heap block never freed) and is identity-mapped, so the physical
        // address is the pointer.
        unsafe { &*(pa as *const [u64; 512]) }
    }

    fn table_mut(&mut self, pa: u64) -> &mut [u64; 512] {
        // SAFETY: as in `table`; the kernel builds its tables on one hart, with no
        // other reference to the table alive.
        unsafe { &mut *(pa as *mut [u64; 512]) }
    }
}

/// The kernel's space, once built: every process's space shares its top-level slots.
static KERNEL_SPACE: Mutex<Cell<Option<AddressSpace>>> = Mutex::new(Cell::new(None));

/// The kernel's address space (`None` before [`enable`]).
pub(crate) fn kernel_space() -> Option<AddressSpace> {
    critical_section::with(|cs| KERNEL_SPACE.borrow(cs).get())
}

/// The first byte of the kernel's code: an address mapped in every space, never for
/// user mode.
pub(crate) fn kernel_text_start() -> u64 {
    // SAFETY: only the symbol's address is taken.
    unsafe { address(&__stext) }
}

fn address(symbol: &u8) -> u64 {
    core::ptr::from_ref(symbol) as u64
}

fn down(at: u64) -> u64 {
    at & !(PAGE_SIZE - 1)
}

fn up(at: u64) -> u64 {
    at.div_ceil(PAGE_SIZE) * PAGE_SIZE
}

/// What was mapped, for the boot line.
pub struct Mapped {
    /// Bytes of code (r-x).
    pub text: u64,
    /// Bytes of read-only data (r--).
    pub rodata: u64,
    /// Bytes of data, bss and stack (rw-).
    pub data: u64,
    /// Bytes of heap (rw-).
    pub heap: u64,
    /// Device windows mapped (rw-).
    pub windows: usize,
}

/// Why translation stayed off.
#[derive(Debug)]
pub enum PagingError {
    /// A mapping was refused.
    Map(MapError),
    /// The tables read back hold a page that is writable and executable, writable
    /// kernel code, or a user page.
    Unsafe {
        /// The first such page.
        va: u64,
    },
}

impl core::fmt::Display for PagingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Map(why) => write!(f, "{why}"),
            Self::Unsafe { va } => write!(f, "page {va:#x} would be writable code or a user page"),
        }
    }
}

impl From<MapError> for PagingError {
    fn from(why: MapError) -> Self {
        Self::Map(why)
    }
}

/// Builds the kernel's address space and turns translation on.
///
/// # Errors
/// [`PagingError`] (nothing is switched on then).
pub fn enable(machine: &Machine<'_>, heap: &Range<usize>) -> Result<Mapped, PagingError> {
    let frames = &mut HeapFrames;
    let mut space = AddressSpace::new(frames)?;
    // SAFETY: only the linker symbols' addresses are taken; no byte is read.
    let (stext, etext, srodata, sdata, stack_end) = unsafe {
        (
            address(&__stext),
            address(&__etext),
            address(&__srodata),
            address(&__sdata),
            address(&_stack_start),
        )
    };
    let global = Flags::GLOBAL;
    let text = down(stext)..up(etext);
    // memory.x aligns .rodata and .data to pages; should a section share a page with
    // the one before, that page keeps the earlier section's mapping plus what the
    // later needs (never writable and executable: map refuses it).
    let rodata = up(etext).max(down(srodata))..down(sdata);
    let data = down(sdata)..up(stack_end);
    let mut map = |range: &Range<u64>, flags: Flags| {
        if range.is_empty() {
            return Ok(());
        }
        space.map(
            frames,
            range.start,
            range.start,
            range.end - range.start,
            flags | global,
        )
    };
    map(&text, Flags::READ | Flags::EXECUTE)?;
    map(&rodata, Flags::READ)?;
    map(&data, Flags::READ | Flags::WRITE)?;
    let heap = down(heap.start as u64)..up(heap.end as u64);
    map(&heap, Flags::READ | Flags::WRITE)?;
    let blob = down(machine.blob.start as u64)..up(machine.blob.end as u64);
    map(&blob, Flags::READ)?;
    // The user programs (QEMU's -initrd): read, never written or run by the kernel;
    // processes get copies of their pages.
    if let Some(initrd) = &machine.initrd {
        let programs = down(initrd.start as u64)..up(initrd.end as u64);
        map(&programs, Flags::READ)?;
    }
    let mut windows = 0;
    let devices = machine
        .virtio_mmio()
        .chain(machine.uart.map(|at| at..at + 8))
        .chain(machine.test_finisher.map(|at| at..at + 4));
    for window in devices {
        let pages = down(window.start as u64)..up(window.end as u64);
        map(&pages, Flags::READ | Flags::WRITE)?;
        windows += 1;
    }
    // Read back what the hardware will use: no page writable and executable, the
    // code not writable, nothing user-accessible.
    let mut bad = None;
    space.leaves(frames, |leaf| {
        let writable_code = leaf.flags.contains(Flags::WRITE)
            && (leaf.flags.contains(Flags::EXECUTE) || text.contains(&leaf.va));
        if writable_code || leaf.flags.contains(Flags::USER) {
            bad.get_or_insert(leaf.va);
        }
    });
    if let Some(va) = bad {
        return Err(PagingError::Unsafe { va });
    }
    let ppn = (space.root() >> 12) as usize;
    // SAFETY: the space maps, at their own addresses, everything the kernel touches
    // from here on: its image (the code running now included), its stack, the heap
    // (where the tables and every allocation live), the device tree blob and every
    // device window; the fence that follows makes the hart use the new tables.
    unsafe { riscv::register::satp::set(riscv::register::satp::Mode::Sv39, 0, ppn) };
    riscv::asm::sfence_vma_all();
    critical_section::with(|cs| KERNEL_SPACE.borrow(cs).set(Some(space)));
    Ok(Mapped {
        text: text.end - text.start,
        rodata: rodata.end.saturating_sub(rodata.start),
        data: data.end - data.start,
        heap: heap.end - heap.start,
        windows,
    })
}

/// Checks on the running hardware what the tables say: a write to the first byte of
/// the kernel's code and of its read-only data must each stop with a store page
/// fault. Returns the first address whose write did not fault that way.
pub fn writes_refused() -> Result<(), usize> {
    // SAFETY: only the symbols' addresses are taken; no byte is read here.
    let probes = unsafe { [address(&__stext), address(&__srodata)] };
    for at in probes {
        let at = at as usize;
        if crate::trap::probe_write(at) != Some(crate::trap::STORE_PAGE_FAULT) {
            return Err(at);
        }
    }
    Ok(())
}
