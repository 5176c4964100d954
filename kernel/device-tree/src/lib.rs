//! What the kernel learns from the flattened device tree, read without trusting it.
//!
//! The riscv64 kernel gets the blob's address from OpenSBI in `a1`. Before it makes a
//! slice of the blob it reads only the first eight bytes and calls [`blob_len`], which
//! checks the magic *before* believing the `totalsize` that follows, and bounds it.
//! [`Machine::parse`] then reads the slice with `flat_device_tree` (whose lookups
//! return errors rather than panicking) and checks every address range for overflow:
//! a blob that lacks memory, a cpu or a timebase, or describes a range that wraps the
//! address space, is a [`DeviceTreeError`], never a panic.
//!
//! [`Machine::heap_range`] places the heap above the image, out of the blob, every
//! `/reserved-memory` region and every entry of the blob's memory reservation block,
//! wherever each lies.
//!
//! This crate has no `unsafe` and no hardware: the host tests it on QEMU 7.2's own
//! `virt` tree and on trees built with `vm-fdt`.

#![no_std]
#![forbid(unsafe_code)]

use core::fmt;
use core::ops::Range;

use flat_device_tree::Fdt;

/// The magic number that opens every flattened device tree.
pub const MAGIC: u32 = 0xd00d_feed;
/// Bytes [`blob_len`] reads: the magic and `totalsize`, both big-endian `u32`.
pub const HEADER_PEEK: usize = 8;
/// The largest blob the kernel accepts (QEMU's `virt` tree is about 4 KiB).
pub const MAX_BLOB: usize = 1 << 20;
/// The smallest header of any version the format defines.
pub const MIN_BLOB: usize = 40;
/// The most virtio-mmio slots the kernel keeps (QEMU `virt` has 8).
pub const MAX_VIRTIO_SLOTS: usize = 16;
/// The most reserved regions honoured; a tree with more is refused.
pub const MAX_RESERVED: usize = 16;
/// The heap's upper bound, so a large `-m` does not make boot slower.
pub const HEAP_MAX: usize = 32 << 20;
/// Heap alignment.
const PAGE: usize = 4096;

/// Why the device tree cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceTreeError {
    /// The first word is not [`MAGIC`]; `totalsize` was not read.
    BadMagic(u32),
    /// `totalsize` is outside [`MIN_BLOB`]`..=`[`MAX_BLOB`].
    BadSize(usize),
    /// The blob does not parse.
    Malformed,
    /// No `/memory` node, or it has no region with a size.
    NoMemory,
    /// No cpu node.
    NoCpu,
    /// The cpu has no `timebase-frequency`, or it is zero.
    NoTimebase,
    /// A region's start plus size wraps the address space.
    Overflow(&'static str),
    /// More reserved regions than [`MAX_RESERVED`].
    TooManyReservations,
}

impl fmt::Display for DeviceTreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic(magic) => write!(f, "bad magic {magic:#010x}"),
            Self::BadSize(size) => {
                write!(f, "totalsize {size} outside {MIN_BLOB}..={MAX_BLOB}")
            }
            Self::Malformed => f.write_str("the blob does not parse"),
            Self::NoMemory => f.write_str("no memory region with a size"),
            Self::NoCpu => f.write_str("no cpu node"),
            Self::NoTimebase => f.write_str("no timebase-frequency"),
            Self::Overflow(what) => write!(f, "the {what} range wraps the address space"),
            Self::TooManyReservations => {
                write!(f, "more than {MAX_RESERVED} reserved memory regions")
            }
        }
    }
}

/// The blob's length from its first [`HEADER_PEEK`] bytes: the magic is checked
/// first, then `totalsize` is bounded.
///
/// # Errors
/// [`DeviceTreeError::BadMagic`], [`DeviceTreeError::BadSize`].
pub fn blob_len(header: [u8; HEADER_PEEK]) -> Result<usize, DeviceTreeError> {
    let [m0, m1, m2, m3, s0, s1, s2, s3] = header;
    let magic = u32::from_be_bytes([m0, m1, m2, m3]);
    if magic != MAGIC {
        return Err(DeviceTreeError::BadMagic(magic));
    }
    let size = usize::try_from(u32::from_be_bytes([s0, s1, s2, s3])).unwrap_or(usize::MAX);
    if (MIN_BLOB..=MAX_BLOB).contains(&size) {
        Ok(size)
    } else {
        Err(DeviceTreeError::BadSize(size))
    }
}

/// The machine as the device tree describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine<'a> {
    /// The first memory region.
    pub memory: Range<usize>,
    /// Where the device tree blob itself lies.
    pub blob: Range<usize>,
    /// `time` CSR ticks per second.
    pub timebase_hz: u64,
    /// The console UART's registers.
    pub uart: Option<usize>,
    /// The SiFive test finisher, for shutdown when SBI cannot.
    pub test_finisher: Option<usize>,
    /// The kernel command line (`/chosen/bootargs`, QEMU's `-append`).
    pub bootargs: &'a str,
    /// Whether the first hart has the Sstc extension (`stimecmp`: S-mode sets its own
    /// timer without calling the firmware), from its `riscv,isa` string or its
    /// `riscv,isa-extensions` list.
    pub sstc: bool,
    /// What the boot loader put in memory beside the kernel (`/chosen`'s
    /// `linux,initrd-start` and `linux,initrd-end`, QEMU's `-initrd`): the user
    /// programs. The heap never overlaps it.
    pub initrd: Option<Range<usize>>,
    virtio: [Option<Range<usize>>; MAX_VIRTIO_SLOTS],
    reserved: [Option<Range<usize>>; MAX_RESERVED],
}

/// `start..start + size`, or an error naming `what` when it wraps.
fn range(start: usize, size: usize, what: &'static str) -> Result<Range<usize>, DeviceTreeError> {
    start
        .checked_add(size)
        .map(|end| start..end)
        .ok_or(DeviceTreeError::Overflow(what))
}

impl<'a> Machine<'a> {
    /// Reads the device tree `blob`, which lies at address `at`.
    ///
    /// # Errors
    /// A [`DeviceTreeError`] for anything the kernel cannot boot with.
    pub fn parse(blob: &'a [u8], at: usize) -> Result<Self, DeviceTreeError> {
        let tree = Fdt::new(blob).map_err(|_| DeviceTreeError::Malformed)?;
        let blob = range(at, tree.total_size(), "device tree blob")?;
        let region = tree
            .memory()
            .map_err(|_| DeviceTreeError::NoMemory)?
            .regions()
            .next()
            .ok_or(DeviceTreeError::NoMemory)?;
        let size = region.size.ok_or(DeviceTreeError::NoMemory)?;
        let memory = range(region.starting_address as usize, size, "memory")?;
        let cpu = tree.cpus().next().ok_or(DeviceTreeError::NoCpu)?;
        let timebase_hz = cpu
            .timebase_frequency()
            .ok()
            .and_then(|hz| u64::try_from(hz).ok())
            .filter(|&hz| hz > 0)
            .ok_or(DeviceTreeError::NoTimebase)?;
        let sstc = cpu
            .property("riscv,isa")
            .and_then(|p| p.as_str())
            .is_some_and(|isa| {
                isa.split('_')
                    .skip(1)
                    .any(|ext| ext.eq_ignore_ascii_case("sstc"))
            })
            || cpu.property("riscv,isa-extensions").is_some_and(|p| {
                p.value
                    .split(|&b| b == 0)
                    .any(|ext| ext.eq_ignore_ascii_case(b"sstc"))
            });
        let reg_start = |node: flat_device_tree::node::FdtNode<'_, '_>| {
            node.reg()
                .next()
                .map(|region| region.starting_address as usize)
        };
        let chosen = tree.chosen().ok();
        let uart = chosen
            .and_then(|c| c.stdout())
            .map(|stdout| stdout.node())
            .or_else(|| tree.find_compatible(&["ns16550a", "ns16550"]))
            .and_then(reg_start);
        let chosen_node = tree.find_node("/chosen");
        let cell = |name: &str| -> Option<usize> {
            let value = chosen_node?.property(name)?.value;
            match value.len() {
                4 => Some(u32::from_be_bytes(value.try_into().ok()?) as usize),
                8 => usize::try_from(u64::from_be_bytes(value.try_into().ok()?)).ok(),
                _ => None,
            }
        };
        let initrd = match (cell("linux,initrd-start"), cell("linux,initrd-end")) {
            (Some(start), Some(end)) if start < end => Some(start..end),
            (Some(_), Some(_)) => return Err(DeviceTreeError::Overflow("initrd")),
            _ => None,
        };
        let test_finisher = tree
            .find_compatible(&["sifive,test1", "sifive,test0"])
            .and_then(reg_start);

        let mut virtio: [Option<Range<usize>>; MAX_VIRTIO_SLOTS] = Default::default();
        let slots = tree.all_nodes().filter(|node| {
            node.compatible()
                .is_some_and(|c| c.all().any(|s| s == "virtio,mmio"))
        });
        let mut free = virtio.iter_mut();
        for node in slots {
            let Some(region) = node.reg().next() else {
                continue;
            };
            let Some(size) = region.size else { continue };
            let Some(slot) = free.next() else { break };
            *slot = Some(range(
                region.starting_address as usize,
                size,
                "virtio-mmio",
            )?);
        }

        let mut reserved: [Option<Range<usize>>; MAX_RESERVED] = Default::default();
        let mut free = reserved.iter_mut();
        let mut reserve = |start: usize, size: usize| -> Result<(), DeviceTreeError> {
            let slot = free.next().ok_or(DeviceTreeError::TooManyReservations)?;
            *slot = Some(range(start, size, "reserved memory")?);
            Ok(())
        };
        if let Some(node) = tree.find_node("/reserved-memory") {
            for child in node.children() {
                for region in child.reg() {
                    reserve(region.starting_address as usize, region.size.unwrap_or(0))?;
                }
            }
        }
        for entry in tree.memory_reservations() {
            reserve(entry.address() as usize, entry.size())?;
        }

        Ok(Self {
            memory,
            blob,
            timebase_hz,
            uart,
            test_finisher,
            bootargs: chosen.and_then(|c| c.bootargs()).unwrap_or(""),
            sstc,
            initrd,
            virtio,
            reserved,
        })
    }

    /// The virtio-mmio slots, in device-tree order.
    pub fn virtio_mmio(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        self.virtio.iter().flatten().cloned()
    }

    /// Reserved memory: `/reserved-memory` children and the memory reservation block.
    pub fn reserved(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        self.reserved.iter().flatten().cloned()
    }

    /// The heap: the largest stretch of memory from `image_end` (page-aligned) up to
    /// [`HEAP_MAX`] bytes above it that overlaps neither the blob, the initrd nor any
    /// reserved region. Empty when there is none.
    pub fn heap_range(&self, image_end: usize) -> Range<usize> {
        let Some(start) = image_end.checked_next_multiple_of(PAGE) else {
            return 0..0;
        };
        let start = start.max(self.memory.start);
        let end = self.memory.end.min(start.saturating_add(HEAP_MAX));
        if start >= end {
            return start..start;
        }
        // Sweep the window from low to high, skipping every excluded range.
        let mut excluded: [Option<Range<usize>>; MAX_RESERVED + 2] = Default::default();
        for (slot, range) in excluded.iter_mut().zip(
            core::iter::once(self.blob.clone())
                .chain(self.initrd.clone())
                .chain(self.reserved()),
        ) {
            *slot = Some(range);
        }
        excluded.sort_unstable_by_key(|range| range.as_ref().map_or(usize::MAX, |r| r.start));
        let mut best = start..start;
        let mut cursor = start;
        for range in excluded.iter().flatten() {
            if range.end <= cursor || range.is_empty() {
                continue;
            }
            if range.start >= end {
                break;
            }
            let gap = cursor..range.start.max(cursor);
            if gap.len() > best.len() {
                best = gap;
            }
            cursor = range
                .end
                .checked_next_multiple_of(PAGE)
                .unwrap_or(usize::MAX);
        }
        if cursor < end && end - cursor > best.len() {
            best = cursor..end;
        }
        best
    }
}
