//! The frontend against an emulated device: a `Transport` whose `notify` serves the
//! split virtqueue from a memory disk (virtio 1.2, section 2.7), and can stall.
//!
//! The host test HAL maps DMA one to one (like the kernel's), so the emulation reads
//! the rings at the addresses the driver gave.

use std::cell::RefCell;
use std::ptr::NonNull;
use std::rc::Rc;

use device_deadline::Clock;
use ipc::{DeviceError, RawBlockDevice, SECTOR_SIZE};
use virtio_blk::{ProbeError, VirtioBlk};
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

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

/// What the emulated device holds and does.
struct Device {
    disk: Vec<u8>,
    serial: &'static [u8],
    readonly: bool,
    /// Requests served before the device stops answering.
    answers_left: usize,
    requests: Vec<u32>,
    queue: Option<(u64, u64, u64, u32)>,
    last_avail: u16,
}

struct Emulated(Rc<RefCell<Device>>);

impl Emulated {
    fn new(
        sectors: usize,
        serial: &'static [u8],
        readonly: bool,
        answers: usize,
    ) -> (Self, Rc<RefCell<Device>>) {
        let device = Rc::new(RefCell::new(Device {
            disk: (0..sectors * SECTOR_SIZE)
                .map(|i| (i / SECTOR_SIZE) as u8)
                .collect(),
            serial,
            readonly,
            answers_left: answers,
            requests: Vec::new(),
            queue: None,
            last_avail: 0,
        }));
        (Self(Rc::clone(&device)), device)
    }
}

/// Reads `len` bytes at physical address `at`.
fn read_mem(at: u64, len: usize) -> Vec<u8> {
    // SAFETY: `at` is an address the driver gave the device (a descriptor or ring in
    // DMA memory, or a buffer it shared), valid while the request is outstanding.
    unsafe { std::slice::from_raw_parts(at as *const u8, len).to_vec() }
}

fn write_mem(at: u64, bytes: &[u8]) {
    // SAFETY: as in read_mem, for a buffer the driver made device-writable.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), at as *mut u8, bytes.len()) }
}

impl Device {
    /// Serves every new entry of the available ring.
    fn serve(&mut self) {
        let Some((descriptors, avail, used, size)) = self.queue else {
            return;
        };
        let avail_idx = u16::from_le_bytes(read_mem(avail + 2, 2).try_into().unwrap());
        while self.last_avail != avail_idx {
            if self.answers_left == 0 {
                return; // stalled: never answers
            }
            self.answers_left -= 1;
            let slot = u64::from(self.last_avail % size as u16);
            let head = u16::from_le_bytes(read_mem(avail + 4 + 2 * slot, 2).try_into().unwrap());
            // Walk the chain: header, optional data, status.
            let mut chain = Vec::new();
            let mut index = head;
            loop {
                let d = read_mem(descriptors + 16 * u64::from(index), 16);
                let addr = u64::from_le_bytes(d[..8].try_into().unwrap());
                let len = u32::from_le_bytes(d[8..12].try_into().unwrap()) as usize;
                let flags = u16::from_le_bytes(d[12..14].try_into().unwrap());
                chain.push((addr, len));
                if flags & 1 == 0 {
                    break;
                }
                index = u16::from_le_bytes(d[14..16].try_into().unwrap());
            }
            let header = read_mem(chain[0].0, 16);
            let kind = u32::from_le_bytes(header[..4].try_into().unwrap());
            let sector = u64::from_le_bytes(header[8..].try_into().unwrap()) as usize;
            self.requests.push(kind);
            let (status_addr, _) = *chain.last().unwrap();
            let mut status = 0u8;
            let mut written = 1u32;
            match kind {
                0 => {
                    let (addr, len) = chain[1];
                    write_mem(addr, &self.disk[sector * SECTOR_SIZE..][..len]);
                    written += len as u32;
                }
                1 if self.readonly => status = 1,
                1 => {
                    let (addr, len) = chain[1];
                    let bytes = read_mem(addr, len);
                    self.disk[sector * SECTOR_SIZE..][..len].copy_from_slice(&bytes);
                }
                4 => {}
                8 => {
                    let (addr, len) = chain[1];
                    let mut id = vec![0u8; len];
                    id[..self.serial.len()].copy_from_slice(self.serial);
                    write_mem(addr, &id);
                    written += len as u32;
                }
                _ => status = 2,
            }
            write_mem(status_addr, &[status]);
            let used_idx = u16::from_le_bytes(read_mem(used + 2, 2).try_into().unwrap());
            let entry = used + 4 + 8 * u64::from(used_idx % size as u16);
            write_mem(entry, &u32::from(head).to_le_bytes());
            write_mem(entry + 4, &written.to_le_bytes());
            write_mem(used + 2, &used_idx.wrapping_add(1).to_le_bytes());
            self.last_avail = self.last_avail.wrapping_add(1);
        }
    }
}

impl Transport for Emulated {
    fn device_type(&self) -> DeviceType {
        DeviceType::Block
    }
    fn read_device_features(&mut self) -> u64 {
        let ro = if self.0.borrow().readonly { 1 << 5 } else { 0 };
        (1 << 32) | (1 << 9) | ro
    }
    fn write_driver_features(&mut self, _driver_features: u64) {}
    fn max_queue_size(&mut self, _queue: u16) -> u32 {
        16
    }
    fn notify(&mut self, _queue: u16) {
        self.0.borrow_mut().serve();
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
        _queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.0.borrow_mut().queue = Some((descriptors, driver_area, device_area, size));
    }
    fn queue_unset(&mut self, _queue: u16) {
        self.0.borrow_mut().queue = None;
    }
    fn queue_used(&mut self, _queue: u16) -> bool {
        self.0.borrow().queue.is_some()
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
        let sectors = (self.0.borrow().disk.len() / SECTOR_SIZE) as u64;
        let word = match offset {
            0 => sectors as u32,
            4 => (sectors >> 32) as u32,
            _ => 0,
        };
        Ok(T::read_from_prefix(&word.to_le_bytes()).unwrap().0)
    }
    fn write_config_space<T: zerocopy::IntoBytes + zerocopy::Immutable>(
        &mut self,
        _offset: usize,
        _value: T,
    ) -> virtio_drivers::Result<()> {
        Ok(())
    }
}

type Blk = VirtioBlk<TestHal, Emulated, Ticks>;

fn device(sectors: usize, readonly: bool, answers: usize) -> (Blk, Rc<RefCell<Device>>) {
    let (transport, state) = Emulated::new(sectors, b"state0", readonly, answers);
    let blk = VirtioBlk::new(transport, Ticks::default(), 5_000).expect("probes");
    (blk, state)
}

#[test]
fn reads_writes_and_flushes_reach_the_disk_and_the_serial_is_read() {
    let (mut blk, state) = device(32, false, usize::MAX);
    assert_eq!(blk.serial(), b"state0");
    assert_eq!(blk.sectors(), 32);
    let mut buf = vec![0u8; 3 * SECTOR_SIZE];
    blk.read(5, &mut buf).unwrap();
    assert!(buf[..SECTOR_SIZE].iter().all(|&b| b == 5));
    assert!(buf[2 * SECTOR_SIZE..].iter().all(|&b| b == 7));
    // Larger than one transfer: split into requests.
    let data: Vec<u8> = (0..9 * SECTOR_SIZE).map(|i| (i % 251) as u8).collect();
    blk.write(20, &data).unwrap();
    blk.flush().unwrap();
    assert_eq!(
        &state.borrow().disk[20 * SECTOR_SIZE..29 * SECTOR_SIZE],
        &data[..]
    );
    let mut back = vec![0u8; data.len()];
    blk.read(20, &mut back).unwrap();
    assert_eq!(back, data);
    // GET_ID, one read, 9 sectors written as 8 + 1, FLUSH, 9 sectors read as 8 + 1.
    assert_eq!(state.borrow().requests, [8, 0, 1, 1, 4, 0, 0]);
}

#[test]
fn lengths_and_ranges_are_refused_before_the_device_sees_them() {
    let (mut blk, state) = device(8, false, usize::MAX);
    let before = state.borrow().requests.len();
    for (sector, len) in [
        (0, 0),
        (0, 100),
        (0, SECTOR_SIZE + 1),
        (7, 2 * SECTOR_SIZE),
        (u64::MAX, SECTOR_SIZE),
    ] {
        let mut buf = vec![0u8; len];
        assert_eq!(
            blk.read(sector, &mut buf),
            Err(DeviceError::BadRequest),
            "{sector} {len}"
        );
        assert_eq!(blk.write(sector, &buf), Err(DeviceError::BadRequest));
    }
    assert_eq!(
        state.borrow().requests.len(),
        before,
        "nothing reached the device"
    );
    let mut last = vec![0u8; SECTOR_SIZE];
    blk.read(7, &mut last).unwrap();
}

#[test]
fn a_read_only_disk_refuses_writes_without_asking_the_device() {
    let (transport, state) = Emulated::new(8, b"otp0", true, usize::MAX);
    let mut blk: Blk = VirtioBlk::new(transport, Ticks::default(), 5_000).unwrap();
    assert!(blk.readonly());
    assert_eq!(blk.write(0, &[0; SECTOR_SIZE]), Err(DeviceError::ReadOnly));
    assert_eq!(state.borrow().requests, [8]);
}

#[test]
fn a_stalled_device_fails_by_the_deadline_and_is_not_used_again() {
    // Answers GET_ID and one read, then never again.
    let (mut blk, state) = device(8, false, 2);
    let mut buf = vec![0u8; SECTOR_SIZE];
    blk.read(1, &mut buf).unwrap();
    assert_eq!(blk.read(2, &mut buf), Err(DeviceError::Timeout));
    assert_eq!(
        blk.read(3, &mut buf),
        Err(DeviceError::Timeout),
        "not used again"
    );
    assert_eq!(blk.flush(), Err(DeviceError::Timeout));
    assert_eq!(
        state.borrow().requests,
        [8, 0],
        "the stalled request was the last sent"
    );
    // A device silent from the start: the probe's GET_ID times out.
    let (transport, _) = Emulated::new(8, b"state0", false, 0);
    assert!(matches!(
        VirtioBlk::<TestHal, _, _>::new(transport, Ticks::default(), 5_000),
        Err(ProbeError::Serial(DeviceError::Timeout))
    ));
}
