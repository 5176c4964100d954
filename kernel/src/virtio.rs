//! virtio over MMIO: the `virtio-drivers` HAL, and probing the device tree's slots.
//!
//! S-mode runs with translation off (`satp` = 0), so physical and virtual addresses
//! are the same and DMA buffers come straight from the heap.

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use core::ops::Range;
use core::ptr::NonNull;

use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

use alloc::boxed::Box;

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

/// Opens the network device in `slot` with a deadline of `timeout_us` per transmit.
pub fn net_device(
    slot: &Range<usize>,
    timeout_us: u64,
) -> Result<Box<dyn ipc::RawNetDevice>, virtio_net::ProbeError> {
    let transport = net_transport(slot)?;
    let device = virtio_net::VirtioNet::<KernelHal, _, _>::new(transport, KernelClock, timeout_us)?;
    Ok(Box::new(device))
}

fn net_transport(slot: &Range<usize>) -> Result<MmioTransport<'static>, virtio_net::ProbeError> {
    // SAFETY: `slot` is the device tree's virtio-mmio window of the network device;
    // the probing transport was dropped, and this transport is the only one from now
    // on, owned by the driver.
    unsafe { transport(slot) }.ok_or(virtio_net::ProbeError::WrongDevice(DeviceType::Network))
}

/// The test image's network device: as [`net_device`], and when the command line asks
/// (`net.stall-tx=N[,N...]`, see [`StallingTransport`]) stalled on purpose. Only the
/// test image's boot calls this; the production image opens [`net_device`] and has no
/// way to stall its device.
pub fn net_device_for_tests(
    slot: &Range<usize>,
    timeout_us: u64,
    bootargs: &str,
) -> Result<Box<dyn ipc::RawNetDevice>, virtio_net::ProbeError> {
    let stalls = match StallingTransport::plan(bootargs) {
        Ok(stalls) => stalls,
        Err(word) => {
            console::line(
                "KERNEL",
                format_args!("FAIL {word}: not a list of transmit kick numbers; no stall"),
            );
            alloc::vec::Vec::new()
        }
    };
    if stalls.is_empty() {
        return net_device(slot, timeout_us);
    }
    console::line(
        "KERNEL",
        format_args!("test image: the network device will stall at transmit kicks {stalls:?}"),
    );
    let transport = StallingTransport {
        inner: net_transport(slot)?,
        stalls,
        kicks: 0,
        stalled: false,
    };
    let device = virtio_net::VirtioNet::<KernelHal, _, _>::new(transport, KernelClock, timeout_us)?;
    Ok(Box::new(device))
}

/// The virtio-net transmit queue (virtio 1.2, section 5.1.2: `transmitq1`).
const NET_TRANSMIT_QUEUE: u16 = 1;
/// The most stalls one command line may ask for.
const MAX_STALLS: usize = 8;

/// A test image's network device that stops taking frames on purpose: from the `N`th
/// transmit notification (kick) on, for each `N` of `net.stall-tx=N[,N...]`, the
/// kicks are withheld from the device until the driver resets it, so the frame
/// waiting in the transmit queue is never taken. To the driver this is exactly a
/// device that stalled (its deadline passes); the reset that follows runs against the
/// real device, which then takes frames again. Every other call goes to the device.
pub struct StallingTransport {
    inner: MmioTransport<'static>,
    /// Kick numbers still to stall at, ascending.
    stalls: alloc::vec::Vec<u32>,
    kicks: u32,
    stalled: bool,
}

impl StallingTransport {
    /// The kick numbers `net.stall-tx=` asks for (none without it); the offending word
    /// when it is not a list of at most [`MAX_STALLS`] positive numbers.
    fn plan(bootargs: &str) -> Result<alloc::vec::Vec<u32>, &str> {
        let mut stalls = alloc::vec::Vec::new();
        for word in bootargs.split_whitespace() {
            let Some(list) = word.strip_prefix("net.stall-tx=") else {
                continue;
            };
            for n in list.split(',') {
                match n.parse::<u32>() {
                    Ok(n) if n > 0 && stalls.len() < MAX_STALLS => stalls.push(n),
                    _ => return Err(word),
                }
            }
        }
        stalls.sort_unstable();
        stalls.dedup();
        Ok(stalls)
    }
}

impl Transport for StallingTransport {
    fn device_type(&self) -> DeviceType {
        self.inner.device_type()
    }
    fn read_device_features(&mut self) -> u64 {
        self.inner.read_device_features()
    }
    fn write_driver_features(&mut self, driver_features: u64) {
        self.inner.write_driver_features(driver_features);
    }
    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.inner.max_queue_size(queue)
    }
    fn notify(&mut self, queue: u16) {
        if queue == NET_TRANSMIT_QUEUE {
            self.kicks = self.kicks.saturating_add(1);
            if !self.stalled && self.stalls.first() == Some(&self.kicks) {
                self.stalls.remove(0);
                self.stalled = true;
                console::line(
                    "KERNEL",
                    format_args!(
                        "test stall: virtio-net transmit kicks withheld from kick {} until the device is reset",
                        self.kicks
                    ),
                );
            }
            if self.stalled {
                return;
            }
        }
        self.inner.notify(queue);
    }
    fn get_status(&self) -> DeviceStatus {
        self.inner.get_status()
    }
    fn set_status(&mut self, status: DeviceStatus) {
        if status == DeviceStatus::empty() && self.stalled {
            self.stalled = false;
            console::line(
                "KERNEL",
                format_args!("test stall over: the driver reset the network device"),
            );
        }
        self.inner.set_status(status);
    }
    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.inner.set_guest_page_size(guest_page_size);
    }
    fn requires_legacy_layout(&self) -> bool {
        self.inner.requires_legacy_layout()
    }
    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.inner
            .queue_set(queue, size, descriptors, driver_area, device_area);
    }
    fn queue_unset(&mut self, queue: u16) {
        self.inner.queue_unset(queue);
    }
    fn queue_used(&mut self, queue: u16) -> bool {
        self.inner.queue_used(queue)
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        self.inner.ack_interrupt()
    }
    fn read_config_generation(&self) -> u32 {
        self.inner.read_config_generation()
    }
    fn read_config_space<T: zerocopy::FromBytes + zerocopy::IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<T> {
        self.inner.read_config_space(offset)
    }
    fn write_config_space<T: zerocopy::IntoBytes + zerocopy::Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> virtio_drivers::Result<()> {
        self.inner.write_config_space(offset, value)
    }
}
