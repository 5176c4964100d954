//! virtio over MMIO: the `virtio-drivers` HAL, and probing the device tree's slots.
//!
//! S-mode runs with translation off (`satp` = 0), so physical and virtual addresses
//! are the same and DMA buffers come straight from the heap.

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use core::ops::Range;
use core::ptr::NonNull;

use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, Transport};
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

use crate::device_tree::Machine;
use crate::{clock, console};

/// The `virtio-drivers` HAL for this kernel: identity-mapped, heap-backed DMA.
pub struct KernelHal;

fn dma_layout(pages: usize) -> Layout {
    Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).expect("DMA layout")
}

// SAFETY: dma_alloc returns zeroed, page-aligned memory that stays valid until
// dma_dealloc; with translation off, the physical address is the virtual one, and
// `share` returns the buffer's own address, which the device can reach.
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        // SAFETY: the layout has a non-zero size (pages >= 1, as virtio-drivers asks).
        let pointer = unsafe { alloc_zeroed(dma_layout(pages)) };
        let pointer = NonNull::new(pointer).expect("out of memory for virtio DMA");
        (pointer.as_ptr() as usize as PhysAddr, pointer)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: `vaddr` came from dma_alloc with the same number of pages.
        unsafe { dealloc(vaddr.as_ptr(), dma_layout(pages)) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as usize as *mut u8).expect("MMIO at address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr().cast::<u8>() as usize as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// What probing found.
pub struct Devices {
    /// The slot of the virtio entropy device, if there is one.
    pub entropy: Option<Range<usize>>,
    /// The slots of the block devices, in device-tree order (not an identity: disks
    /// are told apart by serial once opened).
    pub blocks: alloc::vec::Vec<Range<usize>>,
    /// The slot of the network device, if there is one (the first: one holder).
    pub net: Option<Range<usize>>,
}

/// Opens the MMIO transport of the slot at `slot`.
///
/// # Safety
/// `slot` must be a virtio-mmio register window from the device tree, and no other
/// transport for it may be alive.
pub unsafe fn transport(slot: &Range<usize>) -> Option<MmioTransport<'static>> {
    let header = NonNull::new(slot.start as *mut VirtIOHeader)?;
    // SAFETY: the caller guarantees an exclusive, valid virtio-mmio window, mapped for
    // the life of the machine.
    unsafe { MmioTransport::new(header, slot.len()) }.ok()
}

/// Probes every virtio-mmio slot of the device tree and reports what it holds.
pub fn probe(machine: &Machine) -> Devices {
    let mut devices = Devices {
        entropy: None,
        blocks: alloc::vec::Vec::new(),
        net: None,
    };
    for slot in machine.virtio_mmio() {
        // SAFETY: slots come from the device tree; the transport is dropped before the
        // next one (and before any driver) is made.
        let Some(transport) = (unsafe { transport(&slot) }) else {
            continue; // an empty slot has device id 0
        };
        let kind = transport.device_type();
        console::line(
            "KERNEL",
            format_args!("virtio-mmio {:#x}: {kind:?}", slot.start),
        );
        if kind == DeviceType::EntropySource && devices.entropy.is_none() {
            devices.entropy = Some(slot);
        } else if kind == DeviceType::Block {
            devices.blocks.push(slot);
        } else if kind == DeviceType::Network && devices.net.is_none() {
            devices.net = Some(slot);
        }
    }
    devices
}

/// The kernel clock, for the drivers' request deadlines.
pub struct KernelClock;

impl device_deadline::Clock for KernelClock {
    fn now_us(&self) -> u64 {
        clock::now_us()
    }
}

/// Opens the block device in `slot` (reading its serial) with a deadline of
/// `timeout_us` per request.
pub fn block_device(
    slot: &Range<usize>,
    timeout_us: u64,
) -> Result<
    virtio_blk::VirtioBlk<KernelHal, MmioTransport<'static>, KernelClock>,
    virtio_blk::ProbeError,
> {
    // SAFETY: `slot` is the device tree's virtio-mmio window of this block device; the
    // probing transport was dropped, and this transport is the only one from now on,
    // owned by the driver.
    let transport =
        unsafe { transport(slot) }.ok_or(virtio_blk::ProbeError::WrongDevice(DeviceType::Block))?;
    virtio_blk::VirtioBlk::new(transport, KernelClock, timeout_us)
}
