//! Sv39 page tables, as data: built, read and checked without touching hardware.
//!
//! This is the portable half of the kernel's memory isolation (issue 19: services in
//! user mode, each in its own address space). Everything that decides what an address
//! space holds lives here and is tested on the host; the kernel supplies the frames
//! (and, on riscv64, writes `satp` and fences).
//!
//! - **Format** (RISC-V privileged specification, Sv39): three levels of 512 entries of
//!   8 bytes; a virtual address is 39 bits, sign-extended to 64 (bits 63..39 equal to
//!   bit 38); a leaf maps 4 KiB (this crate maps only 4 KiB leaves, so every page has
//!   its own permissions). PTE bits: V R W X U G A D, the physical page number from
//!   bit 10.
//! - **W^X.** [`AddressSpace::map`] refuses a page that would be both writable and
//!   executable, and a writable page that is not readable (a reserved encoding). A
//!   and D are set on every leaf (D on writable ones) so nothing depends on whether
//!   the hart sets them itself or faults.
//! - **User ranges.** [`AddressSpace::check_user_range`] is what a system call does
//!   before it touches a buffer a process named: every page of the range mapped, user-
//!   accessible, readable (and writable when the kernel will write it), with overflow
//!   and non-canonical addresses refused. A kernel address (no U bit), another
//!   process's page (not in this space), an unmapped or a wrapping range all fail,
//!   with a typed error.
//! - **Walking.** [`AddressSpace::leaves`] visits every leaf, for the structural check
//!   (no writable frame in two spaces, no writable+executable page, device windows in
//!   their holder alone).
//!
//! Frames come through [`Frames`]: the kernel's identity-mapped memory on riscv64, a
//! map of boxed tables in the host tests.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

/// Bytes per page (and per page-table frame).
pub const PAGE_SIZE: u64 = 4096;
/// Entries per table.
pub const ENTRIES: usize = 512;
/// The `satp` MODE field value of Sv39.
pub const SATP_MODE_SV39: u64 = 8;

/// A page's permissions, as its PTE bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flags(u8);

impl Flags {
    /// Valid.
    const V: u8 = 1 << 0;
    /// Readable.
    pub const READ: Self = Self(1 << 1);
    /// Writable.
    pub const WRITE: Self = Self(1 << 2);
    /// Executable.
    pub const EXECUTE: Self = Self(1 << 3);
    /// Accessible from user mode.
    pub const USER: Self = Self(1 << 4);
    /// Global: in every address space (the kernel's own pages).
    pub const GLOBAL: Self = Self(1 << 5);
    const ACCESSED: u8 = 1 << 6;
    const DIRTY: u8 = 1 << 7;

    /// No permission at all.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// Both sets of bits.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether every bit of `other` is set here.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    fn permissions(self) -> Self {
        Self(
            self.0
                & (Self::READ.0 | Self::WRITE.0 | Self::EXECUTE.0 | Self::USER.0 | Self::GLOBAL.0),
        )
    }
}

impl core::ops::BitOr for Flags {
    type Output = Self;
    fn bitor(self, other: Self) -> Self {
        self.union(other)
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (flag, letter) in [
            (Self::READ, 'r'),
            (Self::WRITE, 'w'),
            (Self::EXECUTE, 'x'),
            (Self::USER, 'u'),
            (Self::GLOBAL, 'g'),
        ] {
            let shown = if self.contains(flag) { letter } else { '-' };
            write!(f, "{shown}")?;
        }
        Ok(())
    }
}

/// Why a mapping was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// An address or a length that is not a multiple of [`PAGE_SIZE`].
    Misaligned,
    /// A virtual address outside Sv39's two canonical halves, or a range that wraps.
    NonCanonical,
    /// Writable and executable at once (W^X), or writable and not readable (reserved).
    Permissions,
    /// A page of the range is already mapped.
    AlreadyMapped {
        /// Its virtual address.
        va: u64,
    },
    /// The frame source has no frame for another table.
    OutOfFrames,
    /// The range falls in a top-level slot this space shares with the kernel's (see
    /// [`AddressSpace::sharing`]): mapping there would change every space.
    Shared {
        /// The first such page.
        va: u64,
    },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Misaligned => f.write_str("address or length not page-aligned"),
            Self::NonCanonical => f.write_str("not a canonical Sv39 range"),
            Self::Permissions => f.write_str("writable and executable, or writable only"),
            Self::AlreadyMapped { va } => write!(f, "{va:#x} is already mapped"),
            Self::OutOfFrames => f.write_str("no frame for a page table"),
            Self::Shared { va } => write!(f, "{va:#x} is in the kernel's shared part"),
        }
    }
}

/// Why a process's buffer may not be used by a system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessError {
    /// `address + length` overflows, or leaves the canonical range.
    Wraps,
    /// A page of the range is not mapped in this address space (another process's
    /// address, or nothing).
    Unmapped {
        /// The first such page.
        va: u64,
    },
    /// A page is mapped but not for user mode (a kernel address).
    NotUser {
        /// The first such page.
        va: u64,
    },
    /// A page the kernel must write is not writable, or one it must read not readable.
    Permission {
        /// The first such page.
        va: u64,
    },
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Wraps => f.write_str("the range wraps or leaves the address space"),
            Self::Unmapped { va } => write!(f, "{va:#x} is not mapped"),
            Self::NotUser { va } => write!(f, "{va:#x} is not a user page"),
            Self::Permission { va } => write!(f, "{va:#x} does not allow the access"),
        }
    }
}

/// Where page-table frames come from and how their entries are reached.
pub trait Frames {
    /// A zeroed frame for a table: its physical address (page-aligned).
    fn allocate(&mut self) -> Option<u64>;
    /// The entries of the table at physical address `pa`.
    fn table(&self, pa: u64) -> &[u64; ENTRIES];
    /// The entries of the table at physical address `pa`, to change.
    fn table_mut(&mut self, pa: u64) -> &mut [u64; ENTRIES];
}

/// One leaf: a mapped page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Its virtual address.
    pub va: u64,
    /// The frame's physical address.
    pub pa: u64,
    /// Its permissions.
    pub flags: Flags,
}

/// Whether `va` is canonical for Sv39: bits 63..39 copy bit 38.
pub fn canonical(va: u64) -> bool {
    let top = va >> 38;
    top == 0 || top == (1 << 26) - 1
}

fn index(va: u64, level: usize) -> usize {
    ((va >> (12 + 9 * level)) & 0x1ff) as usize
}

fn pte_pa(pte: u64) -> u64 {
    ((pte >> 10) & ((1 << 44) - 1)) << 12
}

fn leaf_pte(pa: u64, flags: Flags) -> u64 {
    let mut bits = flags.permissions().0 | Flags::V | Flags::ACCESSED;
    if flags.contains(Flags::WRITE) {
        bits |= Flags::DIRTY;
    }
    ((pa >> 12) << 10) | u64::from(bits)
}

fn is_leaf(pte: u64) -> bool {
    pte & u64::from(Flags::READ.0 | Flags::WRITE.0 | Flags::EXECUTE.0) != 0
}

/// An Sv39 address space: its root table, and which of the root's 512 slots point
/// at tables it shares with another space (the kernel's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressSpace {
    root: u64,
    shared: [u64; ENTRIES / 64],
}

impl AddressSpace {
    /// An empty address space with a fresh root table.
    ///
    /// # Errors
    /// [`MapError::OutOfFrames`].
    pub fn new(frames: &mut impl Frames) -> Result<Self, MapError> {
        let root = frames.allocate().ok_or(MapError::OutOfFrames)?;
        Ok(Self {
            root,
            shared: [0; ENTRIES / 64],
        })
    }

    /// A fresh space that maps everything `kernel` maps, by pointing its root slots at
    /// `kernel`'s own lower tables: a process's space, with the kernel's global,
    /// non-user pages in it, costing one table. The shared slots are read-only for
    /// this space: [`AddressSpace::map`] refuses a range in them, and
    /// [`AddressSpace::table_frames`] does not list the kernel's tables. `kernel` must
    /// not change afterwards (the kernel builds its space once, at boot).
    ///
    /// # Errors
    /// [`MapError::OutOfFrames`].
    pub fn sharing(frames: &mut impl Frames, kernel: &AddressSpace) -> Result<Self, MapError> {
        let mut space = Self::new(frames)?;
        let entries = *frames.table(kernel.root);
        for (slot, entry) in entries.into_iter().enumerate() {
            if entry & u64::from(Flags::V) != 0 {
                frames.table_mut(space.root)[slot] = entry;
                space.shared[slot / 64] |= 1 << (slot % 64);
            }
        }
        Ok(space)
    }

    /// Whether root slot `slot` is shared with another space.
    fn is_shared(&self, slot: usize) -> bool {
        self.shared[slot / 64] & (1 << (slot % 64)) != 0
    }

    /// The root table's physical address.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// The `satp` value that selects this space with address-space id `asid`.
    pub fn satp(&self, asid: u16) -> u64 {
        (SATP_MODE_SV39 << 60) | (u64::from(asid) << 44) | (self.root >> 12)
    }

    /// Maps `len` bytes from virtual `va` to physical `pa`, page by page, with
    /// `flags`. Nothing is mapped if any page is refused.
    ///
    /// # Errors
    /// [`MapError`].
    pub fn map(
        &mut self,
        frames: &mut impl Frames,
        va: u64,
        pa: u64,
        len: u64,
        flags: Flags,
    ) -> Result<(), MapError> {
        if !va.is_multiple_of(PAGE_SIZE)
            || !pa.is_multiple_of(PAGE_SIZE)
            || !len.is_multiple_of(PAGE_SIZE)
        {
            return Err(MapError::Misaligned);
        }
        if flags.contains(Flags::WRITE | Flags::EXECUTE)
            || (flags.contains(Flags::WRITE) && !flags.contains(Flags::READ))
            || !(flags.contains(Flags::READ) || flags.contains(Flags::EXECUTE))
        {
            return Err(MapError::Permissions);
        }
        let last = va
            .checked_add(len.saturating_sub(1))
            .ok_or(MapError::NonCanonical)?;
        if !canonical(va) || !canonical(last) || (va >> 38) != (last >> 38) {
            return Err(MapError::NonCanonical);
        }
        pa.checked_add(len).ok_or(MapError::NonCanonical)?;
        // Check first, so a refusal leaves the space as it was.
        let pages = len / PAGE_SIZE;
        for page in 0..pages {
            let at = va + page * PAGE_SIZE;
            if self.is_shared(index(at, 2)) {
                return Err(MapError::Shared { va: at });
            }
            if self.translate(frames, at).is_some() {
                return Err(MapError::AlreadyMapped { va: at });
            }
        }
        for page in 0..pages {
            let at = va + page * PAGE_SIZE;
            let table = self.leaf_table(frames, at)?;
            frames.table_mut(table)[index(at, 0)] = leaf_pte(pa + page * PAGE_SIZE, flags);
        }
        Ok(())
    }

    /// The level-0 table that holds `va`'s leaf, made where missing.
    fn leaf_table(&self, frames: &mut impl Frames, va: u64) -> Result<u64, MapError> {
        let mut table = self.root;
        for level in [2, 1] {
            let entry = frames.table(table)[index(va, level)];
            table = if entry & u64::from(Flags::V) == 0 {
                let next = frames.allocate().ok_or(MapError::OutOfFrames)?;
                frames.table_mut(table)[index(va, level)] =
                    ((next >> 12) << 10) | u64::from(Flags::V);
                next
            } else {
                pte_pa(entry)
            };
        }
        Ok(table)
    }

    /// Removes the mappings of `len` bytes from `va` (pages not mapped, and pages in a
    /// slot shared with another space, are skipped); returns the physical address of
    /// each page unmapped, in order. The caller fences the TLB.
    pub fn unmap(
        &mut self,
        frames: &mut impl Frames,
        va: u64,
        len: u64,
        mut freed: impl FnMut(u64),
    ) {
        let pages = len / PAGE_SIZE;
        for page in 0..pages {
            let at = va.wrapping_add(page * PAGE_SIZE);
            if self.is_shared(index(at, 2)) {
                continue;
            }
            if let Some(table) = self.find_leaf_table(frames, at) {
                let slot = &mut frames.table_mut(table)[index(at, 0)];
                if *slot & u64::from(Flags::V) != 0 {
                    freed(pte_pa(*slot));
                    *slot = 0;
                }
            }
        }
    }

    fn find_leaf_table(&self, frames: &impl Frames, va: u64) -> Option<u64> {
        if !canonical(va) {
            return None;
        }
        let mut table = self.root;
        for level in [2, 1] {
            let entry = frames.table(table)[index(va, level)];
            if entry & u64::from(Flags::V) == 0 || is_leaf(entry) {
                return None;
            }
            table = pte_pa(entry);
        }
        Some(table)
    }

    /// The leaf mapping `va`, if any.
    pub fn translate(&self, frames: &impl Frames, va: u64) -> Option<Leaf> {
        let table = self.find_leaf_table(frames, va)?;
        let entry = frames.table(table)[index(va, 0)];
        if entry & u64::from(Flags::V) == 0 {
            return None;
        }
        let page = va & !(PAGE_SIZE - 1);
        Some(Leaf {
            va: page,
            pa: pte_pa(entry),
            flags: Flags(entry as u8).permissions(),
        })
    }

    /// Checks that a process may hand the kernel `len` bytes at `va`: every page
    /// mapped here, for user mode, readable, and writable if `write`. An empty range is
    /// allowed anywhere canonical.
    ///
    /// # Errors
    /// [`AccessError`], naming the first page that fails.
    pub fn check_user_range(
        &self,
        frames: &impl Frames,
        va: u64,
        len: u64,
        write: bool,
    ) -> Result<(), AccessError> {
        if len == 0 {
            return if canonical(va) {
                Ok(())
            } else {
                Err(AccessError::Wraps)
            };
        }
        let last = va.checked_add(len - 1).ok_or(AccessError::Wraps)?;
        if !canonical(va) || !canonical(last) || (va >> 38) != (last >> 38) {
            return Err(AccessError::Wraps);
        }
        let mut page = va & !(PAGE_SIZE - 1);
        loop {
            let leaf = self
                .translate(frames, page)
                .ok_or(AccessError::Unmapped { va: page })?;
            if !leaf.flags.contains(Flags::USER) {
                return Err(AccessError::NotUser { va: page });
            }
            if !leaf.flags.contains(Flags::READ) || (write && !leaf.flags.contains(Flags::WRITE)) {
                return Err(AccessError::Permission { va: page });
            }
            if page >= last & !(PAGE_SIZE - 1) {
                return Ok(());
            }
            page += PAGE_SIZE;
        }
    }

    /// Visits every leaf of this space, in address order.
    pub fn leaves(&self, frames: &impl Frames, mut visit: impl FnMut(Leaf)) {
        let root = frames.table(self.root);
        for (i2, &e2) in root.iter().enumerate() {
            if e2 & u64::from(Flags::V) == 0 || is_leaf(e2) {
                continue;
            }
            let middle = frames.table(pte_pa(e2));
            for (i1, &e1) in middle.iter().enumerate() {
                if e1 & u64::from(Flags::V) == 0 || is_leaf(e1) {
                    continue;
                }
                let bottom = frames.table(pte_pa(e1));
                for (i0, &e0) in bottom.iter().enumerate() {
                    if e0 & u64::from(Flags::V) == 0 {
                        continue;
                    }
                    let raw = ((i2 as u64) << 30) | ((i1 as u64) << 21) | ((i0 as u64) << 12);
                    // Sign-extend bit 38 into the upper half.
                    let va = if raw >> 38 == 1 {
                        raw | !((1 << 39) - 1)
                    } else {
                        raw
                    };
                    visit(Leaf {
                        va,
                        pa: pte_pa(e0),
                        flags: Flags(e0 as u8).permissions(),
                    });
                }
            }
        }
    }

    /// The physical addresses of this space's own table frames (root first), for
    /// freeing them with the space; tables it shares with another space are not its
    /// own.
    pub fn table_frames(&self, frames: &impl Frames, mut visit: impl FnMut(u64)) {
        visit(self.root);
        for (slot, &e2) in frames.table(self.root).iter().enumerate() {
            if e2 & u64::from(Flags::V) == 0 || is_leaf(e2) || self.is_shared(slot) {
                continue;
            }
            visit(pte_pa(e2));
            for &e1 in frames.table(pte_pa(e2)).iter() {
                if e1 & u64::from(Flags::V) != 0 && !is_leaf(e1) {
                    visit(pte_pa(e1));
                }
            }
        }
    }
}

/// What the structural check found wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation<Id> {
    /// A page both writable and executable.
    WritableExecutable {
        /// Whose space.
        space: Id,
        /// The page.
        va: u64,
    },
    /// A frame mapped writable in one space and mapped in another.
    SharedWritable {
        /// The frame.
        pa: u64,
        /// The two spaces.
        spaces: (Id, Id),
    },
    /// A device window's frame mapped in a space that does not hold it.
    WindowOutsideHolder {
        /// The frame.
        pa: u64,
        /// The space it was found in.
        space: Id,
    },
}

/// The structural check over every user address space: no page writable and
/// executable, no frame that is writable in one space mapped in another, and no
/// frame of a device window (`windows`: physical range and holder) mapped outside its
/// holder. Only user pages count: the kernel's global pages are in every space by
/// design and never user-accessible.
pub fn violations<Id: Copy + Ord>(
    frames: &impl Frames,
    spaces: &[(Id, AddressSpace)],
    windows: &[(core::ops::Range<u64>, Id)],
) -> Vec<Violation<Id>> {
    let mut found = Vec::new();
    // frame -> (space, writable) of the first mapping seen
    let mut seen: BTreeMap<u64, (Id, bool)> = BTreeMap::new();
    for &(id, space) in spaces {
        space.leaves(frames, |leaf| {
            if !leaf.flags.contains(Flags::USER) {
                return;
            }
            let writable = leaf.flags.contains(Flags::WRITE);
            if writable && leaf.flags.contains(Flags::EXECUTE) {
                found.push(Violation::WritableExecutable {
                    space: id,
                    va: leaf.va,
                });
            }
            if let Some((_, holder)) = windows.iter().find(|(range, _)| range.contains(&leaf.pa))
                && *holder != id
            {
                found.push(Violation::WindowOutsideHolder {
                    pa: leaf.pa,
                    space: id,
                });
            }
            match seen.get(&leaf.pa) {
                Some(&(other, other_writable)) if other != id && (writable || other_writable) => {
                    found.push(Violation::SharedWritable {
                        pa: leaf.pa,
                        spaces: (other, id),
                    });
                }
                Some(_) => {}
                None => {
                    seen.insert(leaf.pa, (id, writable));
                }
            }
        });
    }
    found
}
