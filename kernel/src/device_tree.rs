//! What the kernel needs from the flattened device tree, read with the `fdt` crate.
//!
//! Read once at boot, before the heap exists, so nothing here allocates.

use core::ops::Range;

/// The most virtio-mmio slots the kernel keeps (QEMU `virt` has 8).
pub const MAX_VIRTIO_SLOTS: usize = 16;

/// The heap's upper bound, so a large `-m` does not make boot slower.
const HEAP_MAX: usize = 32 << 20;

/// The machine as the device tree describes it.
#[derive(Clone, Debug)]
pub struct Machine {
    /// The first memory region.
    pub memory: Range<usize>,
    /// Where the device tree blob itself lies (kept out of the heap).
    pub blob: Range<usize>,
    /// `time` CSR ticks per second.
    pub timebase_hz: u64,
    /// The console UART's registers.
    pub uart: Option<usize>,
    /// The SiFive test finisher, for shutdown when SBI cannot.
    pub test_finisher: Option<usize>,
    /// The kernel command line (`/chosen/bootargs`, QEMU's `-append`).
    pub bootargs: &'static str,
    virtio: [Option<Range<usize>>; MAX_VIRTIO_SLOTS],
}

impl Machine {
    /// Reads the device tree at `address`.
    ///
    /// # Errors
    /// A short reason when the blob is invalid or lacks memory or a timebase.
    pub fn read(address: usize) -> Result<Self, &'static str> {
        // SAFETY: OpenSBI passes the address of a valid flattened device tree in a1, and
        // the kernel never writes to that memory (the heap is placed below it).
        let tree: fdt::Fdt<'static> =
            unsafe { fdt::Fdt::from_ptr(address as *const u8) }.map_err(|_| "invalid blob")?;
        let region = tree.memory().regions().next().ok_or("no memory region")?;
        let start = region.starting_address as usize;
        let memory = start..start + region.size.ok_or("memory region without size")?;
        let timebase_hz = tree
            .cpus()
            .next()
            .ok_or("no cpu node")?
            .timebase_frequency() as u64;
        let reg_start = |node: fdt::node::FdtNode<'_, '_>| {
            node.reg()
                .and_then(|mut regions| regions.next())
                .map(|region| region.starting_address as usize)
        };
        let uart = tree
            .chosen()
            .stdout()
            .or_else(|| tree.find_compatible(&["ns16550a", "ns16550"]))
            .and_then(reg_start);
        let test_finisher = tree
            .find_compatible(&["sifive,test1", "sifive,test0"])
            .and_then(reg_start);
        let mut virtio: [Option<Range<usize>>; MAX_VIRTIO_SLOTS] = Default::default();
        let slots = tree
            .all_nodes()
            .filter(|node| {
                node.compatible()
                    .is_some_and(|c| c.all().any(|s| s == "virtio,mmio"))
            })
            .filter_map(|node| node.reg().and_then(|mut regions| regions.next()))
            .filter_map(|region| {
                let start = region.starting_address as usize;
                region.size.map(|size| start..start + size)
            });
        for (slot, range) in virtio.iter_mut().zip(slots) {
            *slot = Some(range);
        }
        let bootargs = tree.chosen().bootargs().unwrap_or("");
        Ok(Self {
            memory,
            bootargs,
            blob: address..address + tree.total_size(),
            timebase_hz,
            uart,
            test_finisher,
            virtio,
        })
    }

    /// The virtio-mmio slots, in device-tree order.
    pub fn virtio_mmio(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        self.virtio.iter().flatten().cloned()
    }

    /// The heap: from `image_end` (page-aligned) up to the device tree blob or the end
    /// of memory, whichever comes first, at most 32 MiB.
    pub fn heap_range(&self, image_end: usize) -> Range<usize> {
        let start = image_end.next_multiple_of(4096);
        let mut end = self.memory.end.min(start.saturating_add(HEAP_MAX));
        if self.blob.start >= start {
            end = end.min(self.blob.start);
        }
        start..end.max(start)
    }
}
