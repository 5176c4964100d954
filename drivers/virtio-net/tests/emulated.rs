//! The frontend against an emulated device: a `Transport` whose two split virtqueues
//! (virtio 1.2, sections 2.7 and 5.1) are served from memory. Queue 0 receives: the
//! test delivers frames into the buffers the driver posted. Queue 1 transmits: each
//! notify takes the frames the driver made available, unless the device is stalled.
//!
//! The host test HAL maps DMA one to one (like the kernel's), so the emulation reads
//! and writes the rings at the addresses the driver gave.

use std::cell::RefCell;
use std::ptr::NonNull;
use std::rc::Rc;

use device_deadline::Clock;
use ipc::{DeviceError, RawNetDevice};
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};
use virtio_net::{ProbeError, RX_BUFFERS, VirtioNet};

struct TestHal;

fn layout(pages: usize) -> std::alloc::Layout {
    std::alloc::Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).unwrap()
}

// SAFETY: DMA memory is zeroed, page-aligned heap memory, valid until dma_dealloc; the
// "physical" address is the virtual one, which the emulated device uses as is.
unsafe impl Hal for TestHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        // SAFETY: a non-zero layout.
        let pointer = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout(pages)) }).unwrap();
        (pointer.as_ptr() as PhysAddr, pointer)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: allocated by dma_alloc with the same number of pages.
        unsafe { std::alloc::dealloc(vaddr.as_ptr(), layout(pages)) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).unwrap()
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr().cast::<u8>() as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// Time advances 10 µs per reading.
#[derive(Clone, Default)]
struct Ticks(Rc<RefCell<u64>>);

impl Clock for Ticks {
    fn now_us(&self) -> u64 {
        *self.0.borrow_mut() += 10;
        *self.0.borrow()
    }
}

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
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

#[derive(Default)]
struct Device {
    queues: [Option<Queue>; 2],
    transmitted: Vec<Vec<u8>>,
    stalled: bool,
    /// Present itself as a block device.
    block: bool,
}

struct Emulated(Rc<RefCell<Device>>);

fn read_mem(at: u64, len: usize) -> Vec<u8> {
    // SAFETY: `at` is an address the driver gave the device (a descriptor or ring in
    // DMA memory, or a buffer it shared), valid while the request is outstanding.
    unsafe { std::slice::from_raw_parts(at as *const u8, len).to_vec() }
}

fn write_mem(at: u64, bytes: &[u8]) {
    // SAFETY: as in read_mem, for a buffer the driver made device-writable.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), at as *mut u8, bytes.len()) }
}

fn u16_at(at: u64) -> u16 {
    u16::from_le_bytes(read_mem(at, 2).try_into().unwrap())
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
    /// Puts `frame` into the next posted receive buffer; false when none is posted.
    fn deliver(&mut self, frame: &[u8]) -> bool {
        let queue = self.queues[0].as_mut().expect("receive queue set up");
        let Some((head, chain)) = queue.next() else {
            return false;
        };
        let (addr, len) = chain[0];
        let mut bytes = vec![0u8; HEADER];
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
        let queue = self.queues[1].as_mut().expect("transmit queue set up");
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
        DeviceStatus::empty()
    }
    fn set_status(&mut self, _status: DeviceStatus) {}
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
        let config = [MAC[0], MAC[1], MAC[2], MAC[3], MAC[4], MAC[5], 1, 0];
        Ok(T::read_from_prefix(&config[offset..]).unwrap().0)
    }
    fn write_config_space<T: zerocopy::IntoBytes + zerocopy::Immutable>(
        &mut self,
        _offset: usize,
        _value: T,
    ) -> virtio_drivers::Result<()> {
        Ok(())
    }
}

type Net = VirtioNet<TestHal, Emulated, Ticks>;

fn device() -> (Net, Rc<RefCell<Device>>) {
    let state = Rc::new(RefCell::new(Device::default()));
    let net = VirtioNet::new(Emulated(Rc::clone(&state)), Ticks::default(), 5_000).unwrap();
    (net, state)
}

#[test]
fn every_receive_buffer_is_recycled_so_the_queue_never_drains() {
    let (mut net, state) = device();
    assert_eq!(net.mac(), MAC);
    assert_eq!(net.posted(), RX_BUFFERS);
    let mut buf = [0u8; 1514];
    assert_eq!(net.receive(&mut buf), Ok(None), "nothing arrived yet");
    // Ten times the queue's worth of frames, one at a time.
    for i in 0..10 * RX_BUFFERS {
        let frame = vec![i as u8; 60 + i % 1400];
        assert!(
            state.borrow_mut().deliver(&frame),
            "frame {i}: a buffer was posted"
        );
        assert_eq!(net.receive(&mut buf), Ok(Some(frame.len())));
        assert_eq!(&buf[..frame.len()], &frame[..]);
        assert_eq!(net.posted(), RX_BUFFERS);
    }
    // A full queue's worth at once, then read out in order.
    for i in 0..RX_BUFFERS {
        assert!(state.borrow_mut().deliver(&[i as u8; 64]));
    }
    assert!(
        !state.borrow_mut().deliver(&[0; 64]),
        "every buffer is in use"
    );
    for i in 0..RX_BUFFERS {
        assert_eq!(net.receive(&mut buf), Ok(Some(64)));
        assert_eq!(buf[0], i as u8);
    }
    assert_eq!(net.receive(&mut buf), Ok(None));
    assert!(state.borrow_mut().deliver(&[1; 64]), "posted again");
}

#[test]
fn a_frame_longer_than_the_callers_buffer_is_dropped_and_counted() {
    let (mut net, state) = device();
    state.borrow_mut().deliver(&[9; 1000]);
    state.borrow_mut().deliver(&[8; 100]);
    let mut small = [0u8; 500];
    assert_eq!(
        net.receive(&mut small),
        Ok(Some(100)),
        "the long one is skipped"
    );
    assert_eq!(small[0], 8);
    assert_eq!(net.dropped(), 1);
    assert_eq!(net.posted(), RX_BUFFERS);
}

#[test]
fn frames_are_transmitted_with_the_header_stripped_by_the_device() {
    let (mut net, state) = device();
    for i in 0..3 * RX_BUFFERS {
        net.transmit(&[i as u8; 200]).unwrap();
    }
    let sent = state.borrow().transmitted.clone();
    assert_eq!(sent.len(), 3 * RX_BUFFERS);
    assert!(
        sent.iter()
            .enumerate()
            .all(|(i, f)| f == &vec![i as u8; 200])
    );
    assert_eq!(net.transmit(&[]), Err(DeviceError::BadRequest));
    assert_eq!(net.transmit(&[0; 2048]), Err(DeviceError::BadRequest));
}

#[test]
fn a_stalled_transmit_fails_by_the_deadline_and_the_device_is_not_used_again() {
    let (mut net, state) = device();
    net.transmit(&[1; 60]).unwrap();
    state.borrow_mut().stalled = true;
    assert_eq!(net.transmit(&[2; 60]), Err(DeviceError::Timeout));
    state.borrow_mut().stalled = false;
    assert_eq!(
        net.transmit(&[3; 60]),
        Err(DeviceError::Timeout),
        "not used again"
    );
    let mut buf = [0u8; 100];
    assert_eq!(net.receive(&mut buf), Err(DeviceError::Timeout));
    assert_eq!(state.borrow().transmitted.len(), 1);
}

#[test]
fn a_device_of_another_type_is_refused_before_it_is_touched() {
    let state = Rc::new(RefCell::new(Device {
        block: true,
        ..Device::default()
    }));
    let probe = VirtioNet::<TestHal, _, _>::new(Emulated(Rc::clone(&state)), Ticks::default(), 1);
    assert!(matches!(
        probe,
        Err(ProbeError::WrongDevice(DeviceType::Block))
    ));
    assert!(state.borrow().queues.iter().all(Option::is_none));
}
