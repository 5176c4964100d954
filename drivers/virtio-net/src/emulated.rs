//! An emulated virtio-net device, for tests on the host (the `emulated` feature; no
//! image enables it): a [`Transport`] whose two split virtqueues (virtio 1.2, sections
//! 2.7 and 5.1) are served from memory. Queue 0 receives: the test delivers frames
//! into the buffers the driver posted ([`Device::deliver`]). Queue 1 transmits: each
//! notify takes the frames the driver made available, unless the device is stalled
//! ([`Device::stalled`]). Writing 0 to the status register resets the device (its
//! queues are forgotten and a stall ends), unless the test made it ignore that many
//! resets ([`Device::ignore_resets`]).
//!
//! The HAL ([`EmulatedHal`]) maps DMA one to one (like the kernel's), so the emulation
//! reads and writes the rings at the addresses the driver gave. This is the real
//! frontend's test bench: the driver under test is [`crate::VirtioNet`] itself.

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::ptr::NonNull;

use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

/// The DMA of the emulation: heap memory, mapped one to one (as the kernel's HAL
/// does), so the emulated device reads and writes the addresses the driver gives it.
pub struct EmulatedHal;

fn layout(pages: usize) -> Layout {
    Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).expect("DMA layout")
}

// SAFETY: DMA memory is zeroed, page-aligned heap memory, valid until dma_dealloc; the
// "physical" address is the virtual one, which the emulated device uses as is.
unsafe impl Hal for EmulatedHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        // SAFETY: a non-zero layout.
        let pointer = NonNull::new(unsafe { alloc_zeroed(layout(pages)) }).expect("DMA memory");
        (pointer.as_ptr() as PhysAddr, pointer)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: allocated by dma_alloc with the same number of pages.
        unsafe { dealloc(vaddr.as_ptr(), layout(pages)) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).expect("MMIO at address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr().cast::<u8>() as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// The MAC address an emulated device has unless told otherwise.
pub const DEFAULT_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// `virtio_net_hdr` with VERSION_1: 12 bytes.
const HEADER: usize = 12;

/// One split virtqueue as the device sees it.
#[derive(Default, Clone, Copy)]
struct Queue {
    descriptors: u64,
    avail: u64,
    used: u64,
    size: u32,
    last_avail: u16,
}

/// The emulated device's state, which a test reads and steers.
pub struct Device {
    queues: [Option<Queue>; 2],
    /// Every frame the device took for transmission, header stripped, in order.
    pub transmitted: Vec<Vec<u8>>,
    /// While set, the device takes no frame for transmission (a notify does nothing).
    /// A reset clears it.
    pub stalled: bool,
    /// Present itself as a block device.
    pub block: bool,
    /// Its MAC address.
    pub mac: [u8; 6],
    status: DeviceStatus,
    /// Resets of a device that was set up.
    pub resets: u32,
    /// Resets to ignore (the status keeps its value) before one completes.
    pub ignore_resets: u32,
}

impl Default for Device {
    fn default() -> Self {
        Self {
            queues: [None, None],
            transmitted: Vec::new(),
            stalled: false,
            block: false,
            mac: DEFAULT_MAC,
            status: DeviceStatus::empty(),
            resets: 0,
            ignore_resets: 0,
        }
    }
}

/// The emulated device's transport, sharing the device's state with the test.
pub struct Emulated(pub Rc<RefCell<Device>>);

fn read_mem(at: u64, len: usize) -> Vec<u8> {
    // SAFETY: `at` is an address the driver gave the device (a descriptor or ring in
    // DMA memory, or a buffer it shared), valid while the request is outstanding.
    unsafe { core::slice::from_raw_parts(at as *const u8, len).to_vec() }
}

fn write_mem(at: u64, bytes: &[u8]) {
    // SAFETY: as in read_mem, for a buffer the driver made device-writable.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), at as *mut u8, bytes.len()) }
}

fn u16_at(at: u64) -> u16 {
    u16::from_le_bytes([read_mem(at, 1)[0], read_mem(at + 1, 1)[0]])
}

impl Queue {
    /// The next chain the driver made available: its head and its (address, length).
    fn next(&mut self) -> Option<(u16, Vec<(u64, usize)>)> {
        if self.last_avail == u16_at(self.avail + 2) {
            return None;
        }
        let slot = u64::from(self.last_avail % self.size as u16);
        let head = u16_at(self.avail + 4 + 2 * slot);
        self.last_avail = self.last_avail.wrapping_add(1);
        let mut chain = Vec::new();
        let mut index = head;
        loop {
            let d = read_mem(self.descriptors + 16 * u64::from(index), 16);
            let addr = u64::from_le_bytes(d[..8].try_into().unwrap());
            let len = u32::from_le_bytes(d[8..12].try_into().unwrap()) as usize;
            let flags = u16::from_le_bytes(d[12..14].try_into().unwrap());
            chain.push((addr, len));
            if flags & 1 == 0 {
                break;
            }
            index = u16::from_le_bytes(d[14..16].try_into().unwrap());
        }
        Some((head, chain))
    }

    fn complete(&self, head: u16, written: u32) {
        let used_idx = u16_at(self.used + 2);
        let entry = self.used + 4 + 8 * u64::from(used_idx % self.size as u16);
        write_mem(entry, &u32::from(head).to_le_bytes());
        write_mem(entry + 4, &written.to_le_bytes());
        write_mem(self.used + 2, &used_idx.wrapping_add(1).to_le_bytes());
    }
}

impl Device {
    /// How many of its two queues (receive, transmit) are set up.
    pub fn queues_set_up(&self) -> usize {
        self.queues.iter().filter(|q| q.is_some()).count()
    }

    /// Puts `frame` into the next posted receive buffer; false when none is posted
    /// (or the device is not set up).
    pub fn deliver(&mut self, frame: &[u8]) -> bool {
        let Some(queue) = self.queues[0].as_mut() else {
            return false;
        };
        let Some((head, chain)) = queue.next() else {
            return false;
        };
        let (addr, len) = chain[0];
        let mut bytes = alloc::vec![0u8; HEADER];
        bytes.extend_from_slice(frame);
        assert!(bytes.len() <= len, "the emulation only sends what fits");
        write_mem(addr, &bytes);
        queue.complete(head, bytes.len() as u32);
        true
    }

    fn serve_transmit(&mut self) {
        if self.stalled {
            return;
        }
        let Some(queue) = self.queues[1].as_mut() else {
            return;
        };
        while let Some((head, chain)) = queue.next() {
            let mut frame: Vec<u8> = chain
                .iter()
                .flat_map(|&(addr, len)| read_mem(addr, len))
                .collect();
            frame.drain(..HEADER);
            self.transmitted.push(frame);
            queue.complete(head, 0);
        }
    }
}

impl Transport for Emulated {
    fn device_type(&self) -> DeviceType {
        if self.0.borrow().block {
            DeviceType::Block
        } else {
            DeviceType::Network
        }
    }
    fn read_device_features(&mut self) -> u64 {
        (1 << 32) | (1 << 5) // VERSION_1, MAC
    }
    fn write_driver_features(&mut self, _driver_features: u64) {}
    fn max_queue_size(&mut self, _queue: u16) -> u32 {
        16
    }
    fn notify(&mut self, queue: u16) {
        if queue == 1 {
            self.0.borrow_mut().serve_transmit();
        }
    }
    fn get_status(&self) -> DeviceStatus {
        self.0.borrow().status
    }
    fn set_status(&mut self, status: DeviceStatus) {
        let mut device = self.0.borrow_mut();
        if status != DeviceStatus::empty() {
            device.status = status;
        } else if device.ignore_resets > 0 {
            device.ignore_resets -= 1;
        } else {
            // Counted when it ends a set-up (the driver's set-up resets first too).
            if device.status != DeviceStatus::empty() {
                device.resets += 1;
            }
            device.status = status;
            device.queues = [None, None];
            device.stalled = false;
        }
    }
    fn set_guest_page_size(&mut self, _guest_page_size: u32) {}
    fn requires_legacy_layout(&self) -> bool {
        false
    }
    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.0.borrow_mut().queues[usize::from(queue)] = Some(Queue {
            descriptors,
            avail: driver_area,
            used: device_area,
            size,
            last_avail: 0,
        });
    }
    fn queue_unset(&mut self, queue: u16) {
        self.0.borrow_mut().queues[usize::from(queue)] = None;
    }
    fn queue_used(&mut self, queue: u16) -> bool {
        self.0.borrow().queues[usize::from(queue)].is_some()
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        InterruptStatus::empty()
    }
    fn read_config_generation(&self) -> u32 {
        0
    }
    fn read_config_space<T: zerocopy::FromBytes + zerocopy::IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<T> {
        // mac (6 bytes), then status (u16: link up).
        let m = self.0.borrow().mac;
        let config = [m[0], m[1], m[2], m[3], m[4], m[5], 1, 0];
        T::read_from_prefix(config.get(offset..).unwrap_or_default())
            .map(|(value, _)| value)
            .map_err(|_| virtio_drivers::Error::ConfigSpaceTooSmall)
    }
    fn write_config_space<T: zerocopy::IntoBytes + zerocopy::Immutable>(
        &mut self,
        _offset: usize,
        _value: T,
    ) -> virtio_drivers::Result<()> {
        Ok(())
    }
}
