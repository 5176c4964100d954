//! The driver HAL of a user-mode device holder (`docs/syscalls.md`: `claim`,
//! `dma_alloc`, `dma_free`).
//!
//! A process that holds a device capability claims its window: the kernel maps the
//! device's registers into this process alone (read+write, never executable) and says
//! where. The `virtio-drivers` [`Hal`] here serves the drivers of `drivers/virtio-*`
//! from that window and from DMA pages the kernel allocates (zeroed, physically
//! contiguous, mapped into this process, their physical address returned). A process
//! cannot know the physical address of its own heap, so every buffer a driver shares
//! with the device is bounced through DMA pages: copied in before the device reads it,
//! copied back after the device wrote it; the kernel zeroes the pages when they are
//! freed.
//!
//! This crate is where a user-mode driver's `unsafe` lives (MMIO, DMA pointers), each
//! block with its reason.

#![no_std]
#![cfg(target_arch = "riscv64")]

extern crate alloc;

use alloc::vec::Vec;
use core::cell::RefCell;
use core::ptr::NonNull;

use critical_section::Mutex;
use ipc::{Capability, CapabilityError};
use user_rt::{Error, call, call3};
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

use user_rt::number::{ASSIGN, CLAIM, DMA_ALLOC, DMA_FREE};

/// A window this process holds: physical address, address here, length.
#[derive(Clone, Copy)]
struct Window {
    pa: PhysAddr,
    va: usize,
    len: usize,
}

static WINDOWS: Mutex<RefCell<Vec<Window>>> = Mutex::new(RefCell::new(Vec::new()));

/// Bounce buffers in use: physical address, address here, pages.
static BOUNCES: Mutex<RefCell<Vec<(PhysAddr, usize, usize)>>> =
    Mutex::new(RefCell::new(Vec::new()));

/// Claims the window of device capability `capability` and opens its virtio-mmio
/// transport. A disk's claim waits (yielding) while the device manager has not yet
/// said which disk is which.
///
/// # Errors
/// The kernel's refusal (not granted, absent, already claimed), or
/// [`CapabilityError::Absent`] when the window holds no virtio device.
pub fn claim_virtio(capability: Capability) -> Result<MmioTransport<'static>, CapabilityError> {
    claim_window(capability).map(|(_, transport)| transport)
}

/// [`claim_virtio`], with the window's address in this process.
fn claim_window(
    capability: Capability,
) -> Result<(usize, MmioTransport<'static>), CapabilityError> {
    let [va, len, pa] = loop {
        match call3(CLAIM, [capability as usize, 0, 0]) {
            Ok(window) => break window,
            Err((Error::Pending, _)) => user_rt::yield_now(),
            Err((Error::Capability(why), _)) => return Err(why),
            Err(_) => return Err(CapabilityError::Absent),
        }
    };
    critical_section::with(|cs| {
        WINDOWS.borrow(cs).borrow_mut().push(Window {
            pa: pa as PhysAddr,
            va,
            len,
        });
    });
    let header = NonNull::new(va as *mut VirtIOHeader).ok_or(CapabilityError::Absent)?;
    // SAFETY: the kernel mapped `len` bytes of the device's register window at `va`
    // in this process alone, read+write, until the process ends or hands the window
    // on (`assign`, after this transport and its driver are dropped), and this is the
    // only transport made over it.
    let transport =
        unsafe { MmioTransport::new(header, len) }.map_err(|_| CapabilityError::Absent)?;
    Ok((va, transport))
}

/// A disk's driver in a user-mode process.
pub type UserDisk = virtio_blk::VirtioBlk<UserHal, MmioTransport<'static>, UserClock>;

/// How long a disk may take to answer one request (at most 4 KiB, or a flush).
pub const DISK_TIMEOUT_US: u64 = 2_000_000;

/// The virtio-blk driver over `transport`, each request bounded by `timeout_us`.
///
/// # Errors
/// [`CapabilityError::Absent`] when the device does not set up (said on the console).
pub fn block_device(
    transport: MmioTransport<'static>,
    timeout_us: u64,
) -> Result<UserDisk, CapabilityError> {
    virtio_blk::VirtioBlk::new(transport, UserClock, timeout_us).map_err(|why| {
        let line = alloc::format!("virtio-blk unusable: {why}");
        let _ = user_rt::console(line.as_bytes());
        CapabilityError::Absent
    })
}

/// The device manager's next block device: its window (claimed from
/// `block-devices`) and its driver; `None` when it holds them all.
pub fn next_block_device() -> Option<(usize, Result<UserDisk, CapabilityError>)> {
    let (va, transport) = claim_window(Capability::BlockDevices).ok()?;
    Some((va, block_device(transport, DISK_TIMEOUT_US)))
}

/// The device manager hands the block window at `va` (its driver dropped) on as disk
/// capability `capability`: unmapped here, claimable by that capability's holder.
///
/// # Errors
/// The kernel's refusal.
pub fn assign(va: usize, capability: Capability) -> Result<(), Error> {
    call(ASSIGN, [va, capability as usize, 0]).map(|_| ())
}

/// The device manager is done: disk claims stop waiting.
pub fn disks_settled() {
    let _ = call(ASSIGN, [0, usize::MAX, 0]);
}

/// A disk capability's disk, opened in this process (waiting while the device manager
/// works); the anti-rollback counter is handed out set-only.
///
/// # Errors
/// The claim's refusal, or [`CapabilityError::Absent`] when the disk does not set up.
pub fn disk(capability: Capability) -> Result<user_rt::BoxedDisk, CapabilityError> {
    let transport = claim_virtio(capability)?;
    let disk = block_device(transport, DISK_TIMEOUT_US)?;
    Ok(user_rt::BoxedDisk(
        if capability == Capability::RollbackCounter {
            alloc::boxed::Box::new(rollback_counter::SetOnly::new(disk))
        } else {
            alloc::boxed::Box::new(disk)
        },
    ))
}

/// DMA pages from the kernel: (address here, physical address).
fn dma_pages(pages: usize) -> Option<(usize, PhysAddr)> {
    call3(DMA_ALLOC, [pages, 0, 0])
        .ok()
        .map(|[va, pa, _]| (va, pa as PhysAddr))
}

/// The `virtio-drivers` HAL of a user-mode device holder.
pub struct UserHal;

// SAFETY: `dma_alloc` returns pages the kernel zeroed, mapped read+write into this
// process and physically contiguous, with their true physical address; they stay
// mapped until `dma_dealloc`. `mmio_phys_to_virt` answers only addresses inside a
// window this process holds. `share` hands the device the physical address of a
// bounce buffer holding the buffer's bytes (for the device to read), and `unshare`
// copies the device's bytes back before the bounce buffer is freed; the device never
// sees the process's own memory.
unsafe impl Hal for UserHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let Some((va, pa)) = dma_pages(pages) else {
            panic!("no DMA pages for the driver");
        };
        let Some(pointer) = NonNull::new(va as *mut u8) else {
            panic!("DMA pages at address 0");
        };
        (pa, pointer)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, _pages: usize) -> i32 {
        match call(DMA_FREE, [vaddr.as_ptr() as usize, 0, 0]) {
            Ok(_) => 0,
            Err(_) => -1,
        }
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        let inside = |w: &Window| {
            paddr >= w.pa
                && usize::try_from(paddr - w.pa)
                    .ok()
                    .and_then(|offset| offset.checked_add(size))
                    .is_some_and(|end| end <= w.len)
        };
        let window =
            critical_section::with(|cs| WINDOWS.borrow(cs).borrow().iter().copied().find(inside));
        let Some(window) = window else {
            panic!("MMIO outside the windows this process holds");
        };
        let at = window.va + (paddr - window.pa) as usize;
        NonNull::new(at as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let len = buffer.len();
        let pages = len.div_ceil(PAGE_SIZE).max(1);
        let Some((va, pa)) = dma_pages(pages) else {
            panic!("no DMA pages for a bounce buffer");
        };
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: `buffer` is valid for reads of `len` bytes (the Hal contract),
            // and the bounce buffer is `pages` fresh pages of ours.
            unsafe {
                core::ptr::copy_nonoverlapping(buffer.as_ptr().cast::<u8>(), va as *mut u8, len);
            }
        }
        critical_section::with(|cs| BOUNCES.borrow(cs).borrow_mut().push((pa, va, pages)));
        pa
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let bounce = critical_section::with(|cs| {
            let mut bounces = BOUNCES.borrow(cs).borrow_mut();
            let at = bounces.iter().position(|(pa, _, _)| *pa == paddr)?;
            Some(bounces.swap_remove(at))
        });
        let Some((_, va, _)) = bounce else {
            return;
        };
        if direction != BufferDirection::DriverToDevice {
            // SAFETY: `buffer` is valid for writes of its length (the Hal contract),
            // and the bounce buffer holds at least that many bytes.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    va as *const u8,
                    buffer.as_ptr().cast::<u8>(),
                    buffer.len(),
                );
            }
        }
        let _ = call(DMA_FREE, [va, 0, 0]);
    }
}

/// The kernel's clock, for the drivers' deadlines (microseconds since boot).
pub struct UserClock;

impl device_deadline::Clock for UserClock {
    fn now_us(&self) -> u64 {
        user_rt::uptime_us()
    }
}

/// The network device's transport, its window claimed (for a driver over a
/// transport of the program's own, such as the test image's stalling one).
///
/// # Errors
/// The claim's refusal.
pub fn net_transport() -> Result<MmioTransport<'static>, CapabilityError> {
    claim_virtio(Capability::NetDevice)
}

/// The virtio-net driver over `transport`, each transmit bounded by `timeout_us`.
///
/// # Errors
/// [`CapabilityError::Absent`] when the device does not set up (said on the console).
pub fn net_device_over<T: virtio_drivers::transport::Transport>(
    transport: T,
    timeout_us: u64,
) -> Result<virtio_net::VirtioNet<UserHal, T, UserClock>, CapabilityError> {
    virtio_net::VirtioNet::new(transport, UserClock, timeout_us).map_err(|why| {
        let line = alloc::format!("virtio-net unusable: {why}");
        let _ = user_rt::console(line.as_bytes());
        CapabilityError::Absent
    })
}

/// The entropy device, opened in this process: its window claimed, the virtio-rng
/// driver over it, each request bounded by `timeout_us`.
///
/// # Errors
/// The claim's refusal, or [`CapabilityError::Absent`] when the device does not set up.
pub fn entropy_device(
    timeout_us: u64,
) -> Result<virtio_rng::VirtioRng<UserHal, MmioTransport<'static>, UserClock>, CapabilityError> {
    let transport = claim_virtio(Capability::EntropyDevice)?;
    virtio_rng::VirtioRng::new(transport, UserClock, timeout_us).map_err(|why| {
        let line = alloc::format!("virtio-rng unusable: {why}");
        let _ = user_rt::console(line.as_bytes());
        CapabilityError::Absent
    })
}
