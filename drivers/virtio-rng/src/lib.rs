//! The virtio entropy device (virtio-rng), on the `virtio-drivers` crate.
//!
//! `virtio-drivers` ships `VirtIORng`, whose `request_entropy` spins until the device
//! answers: a stalled device would hang the kernel. This frontend uses the same
//! pieces (the crate's transport and `VirtQueue`, initialised the way `VirtIORng::new`
//! does) and adds what the OS needs:
//!
//! - **a deadline per request**: a device that has not answered by then fails the
//!   request with [`DeviceError::Timeout`], and the frontend never uses the device
//!   again (its buffer may still be written by the device, so it is leaked rather than
//!   reused);
//! - **only device-written bytes**: a request returns the used length the device
//!   reported, and copies only those bytes; a used length larger than the buffer
//!   offered is a device error;
//! - **a driver-owned buffer**, wiped after each request, so entropy is not left in
//!   DMA memory;
//! - typed errors for a missing device or a device of the wrong type.
//!
//! The `virtio-drivers` `Hal` (DMA and address translation) comes from the kernel.

#![no_std]

extern crate alloc;

use alloc::boxed::Box;
use core::fmt;

use ipc::{DeviceError, RawEntropyDevice};
use virtio_drivers::Hal;
use virtio_drivers::device::common::Feature;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::{DeviceType, Transport};
use zeroize::Zeroize;

/// The device's only queue.
const QUEUE: u16 = 0;
/// Descriptors in the queue (one request is outstanding at a time).
const QUEUE_SIZE: usize = 8;
/// The most bytes one request asks the device for.
pub const BUFFER_LEN: usize = 256;

pub use device_deadline::Clock;

/// Why the device could not be set up.
#[derive(Debug)]
pub enum ProbeError {
    /// The transport is not an entropy device.
    WrongDevice(DeviceType),
    /// The device refused its queue.
    Queue(virtio_drivers::Error),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongDevice(kind) => {
                write!(f, "expected a virtio entropy device, found {kind:?}")
            }
            Self::Queue(e) => write!(f, "virtio-rng queue setup failed: {e}"),
        }
    }
}

/// A virtio-rng device with bounded requests.
pub struct VirtioRng<H: Hal, T: Transport, C: Clock> {
    transport: T,
    queue: VirtQueue<H, QUEUE_SIZE>,
    buffer: Box<[u8; BUFFER_LEN]>,
    clock: C,
    timeout_us: u64,
    failed: Option<DeviceError>,
}

impl<H: Hal, T: Transport, C: Clock> VirtioRng<H, T, C> {
    /// Initialises the device behind `transport`; each request gets `timeout_us`.
    ///
    /// # Errors
    /// [`ProbeError`] when the transport is not an entropy device or the queue
    /// cannot be set up.
    pub fn new(mut transport: T, clock: C, timeout_us: u64) -> Result<Self, ProbeError> {
        let kind = transport.device_type();
        if kind != DeviceType::EntropySource {
            return Err(ProbeError::WrongDevice(kind));
        }
        transport.begin_init(Feature::VERSION_1);
        let queue =
            VirtQueue::new(&mut transport, QUEUE, false, false).map_err(ProbeError::Queue)?;
        transport.finish_init();
        Ok(Self {
            transport,
            queue,
            buffer: Box::new([0; BUFFER_LEN]),
            clock,
            timeout_us,
            failed: None,
        })
    }

    fn request(&mut self, want: usize) -> Result<usize, DeviceError> {
        let outputs: &mut [&mut [u8]] = &mut [&mut self.buffer[..want]];
        // SAFETY: the buffer is owned by this frontend and is not touched again until
        // `pop_used` returns it below; if the device never returns it, it is leaked
        // (see the timeout path), never reused.
        let token = unsafe { self.queue.add(&[], outputs) }.map_err(|_| DeviceError::Failed)?;
        if self.queue.should_notify() {
            self.transport.notify(QUEUE);
        }
        let queue = &self.queue;
        if device_deadline::wait_until(&self.clock, self.timeout_us, || queue.can_pop()).is_err() {
            // The device still owns the buffer: give it up for good.
            let replacement = Box::new([0; BUFFER_LEN]);
            Box::leak(core::mem::replace(&mut self.buffer, replacement));
            return Err(DeviceError::Timeout);
        }
        let outputs: &mut [&mut [u8]] = &mut [&mut self.buffer[..want]];
        // SAFETY: the same buffer, with the same token, as added above.
        let used =
            unsafe { self.queue.pop_used(token, &[], outputs) }.map_err(|_| DeviceError::Failed)?;
        let used = usize::try_from(used).map_err(|_| DeviceError::Failed)?;
        if used > want {
            return Err(DeviceError::Failed);
        }
        Ok(used)
    }
}

impl<H: Hal, T: Transport, C: Clock> RawEntropyDevice for VirtioRng<H, T, C> {
    /// Asks the device for up to `min(dest.len(), BUFFER_LEN)` bytes and copies the
    /// bytes it reports written. A device that failed once is not used again.
    fn read(&mut self, dest: &mut [u8]) -> Result<usize, DeviceError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        let want = dest.len().min(BUFFER_LEN);
        if want == 0 {
            return Ok(0);
        }
        match self.request(want) {
            Ok(used) => {
                dest[..used].copy_from_slice(&self.buffer[..used]);
                self.buffer.zeroize();
                Ok(used)
            }
            Err(error) => {
                self.failed = Some(error);
                self.buffer.zeroize();
                Err(error)
            }
        }
    }
}
