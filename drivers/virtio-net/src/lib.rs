//! The virtio network device (virtio-net), on `virtio-drivers`' `VirtIONetRaw`.
//!
//! `VirtIONetRaw` has the non-blocking pieces (post a receive buffer, see which one
//! completed, start a transmit, see it completed); its `send` and `receive_wait` spin
//! until the device answers, and `VirtIONet` wraps them the same way. This frontend
//! uses only the non-blocking pieces and adds what the OS needs:
//!
//! - **every receive buffer recycled**: [`RX_BUFFERS`] driver-owned buffers stay posted;
//!   each completed one is copied out and posted again at once, so the queue never
//!   drains however many frames arrive;
//! - **a deadline per transmit**: a device that has not taken a frame by then fails it
//!   with [`DeviceError::Timeout`], and every request fails until the holder resets it;
//! - **a reset that brings the device back** ([`RawNetDevice::reset`]): the device is
//!   reset through its status register (virtio 1.2, section 2.1: writing 0), the reset
//!   is confirmed by reading the status back (bounded by the same deadline), and only
//!   then are the buffers it held taken back, the frames in them dropped and counted,
//!   and the device set up again. One slow moment of the device costs the frames in
//!   flight, never the network for the rest of the boot;
//! - **bounded lengths**: a frame longer than the caller's buffer is dropped and
//!   counted ([`VirtioNet::dropped`]); a completion that claims more than the buffer
//!   offered, or names a buffer that was not posted, is a device error.
//!
//! A buffer the device may still own (posted, or a transmit it never took) is never
//! freed or reused before a confirmed reset: if the reset does not complete, the
//! buffers stay with the device and the frontend stays out of use.
//!
//! The transport is shared ([`SharedTransport`]) between `VirtIONetRaw`, which owns a
//! handle to it, and this frontend, which resets the device through it while the raw
//! driver still exists (its `Drop` unsets the queues, which is only safe on a device
//! that no longer uses them).
//!
//! No checksum offload is negotiated (`VirtIONetRaw` asks for none): the network stack
//! computes checksums itself. The `virtio-drivers` `Hal` (DMA and address translation)
//! comes from the kernel.

#![no_std]

extern crate alloc;

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;

use ipc::{DeviceError, NetReset, RawNetDevice};
use virtio_drivers::Hal;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{PhysAddr, Result as VirtioResult};
use zerocopy::{FromBytes, Immutable, IntoBytes};

pub use device_deadline::Clock;

#[cfg(feature = "emulated")]
pub mod emulated;

/// Descriptors per queue.
const QUEUE_SIZE: usize = 16;
/// Receive buffers kept posted.
pub const RX_BUFFERS: usize = QUEUE_SIZE;
/// Length of every buffer: a virtio-net header and a 1514-byte Ethernet frame fit,
/// as `VirtIONetRaw` asks (at least 1526).
pub const BUFFER_LEN: usize = 2048;

/// Why the device could not be set up.
#[derive(Debug)]
pub enum ProbeError {
    /// The transport is not a network device.
    WrongDevice(DeviceType),
    /// The device refused its set-up (features, queues, a receive buffer).
    Setup(virtio_drivers::Error),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongDevice(kind) => {
                write!(f, "expected a virtio network device, found {kind:?}")
            }
            Self::Setup(e) => write!(f, "virtio-net set-up failed: {e}"),
        }
    }
}

/// A transport shared by the raw driver and the frontend: every call goes to the one
/// transport behind it. The raw driver never holds a borrow across calls, and the
/// frontend only uses it between the raw driver's calls, so the borrows never meet.
pub struct SharedTransport<T: Transport>(Rc<RefCell<T>>);

impl<T: Transport> Transport for SharedTransport<T> {
    fn device_type(&self) -> DeviceType {
        self.0.borrow().device_type()
    }
    fn read_device_features(&mut self) -> u64 {
        self.0.borrow_mut().read_device_features()
    }
    fn write_driver_features(&mut self, driver_features: u64) {
        self.0.borrow_mut().write_driver_features(driver_features);
    }
    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.0.borrow_mut().max_queue_size(queue)
    }
    fn notify(&mut self, queue: u16) {
        self.0.borrow_mut().notify(queue);
    }
    fn get_status(&self) -> DeviceStatus {
        self.0.borrow().get_status()
    }
    fn set_status(&mut self, status: DeviceStatus) {
        self.0.borrow_mut().set_status(status);
    }
    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.0.borrow_mut().set_guest_page_size(guest_page_size);
    }
    fn requires_legacy_layout(&self) -> bool {
        self.0.borrow().requires_legacy_layout()
    }
    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.0
            .borrow_mut()
            .queue_set(queue, size, descriptors, driver_area, device_area);
    }
    fn queue_unset(&mut self, queue: u16) {
        self.0.borrow_mut().queue_unset(queue);
    }
    fn queue_used(&mut self, queue: u16) -> bool {
        self.0.borrow_mut().queue_used(queue)
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        self.0.borrow_mut().ack_interrupt()
    }
    fn read_config_generation(&self) -> u32 {
        self.0.borrow().read_config_generation()
    }
    fn read_config_space<V: FromBytes + IntoBytes>(&self, offset: usize) -> VirtioResult<V> {
        self.0.borrow().read_config_space(offset)
    }
    fn write_config_space<V: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: V,
    ) -> VirtioResult<()> {
        self.0.borrow_mut().write_config_space(offset, value)
    }
}

/// A receive buffer the device holds, and the token it was posted with.
struct Posted {
    token: u16,
    buffer: Box<[u8; BUFFER_LEN]>,
}

type Raw<H, T> = VirtIONetRaw<H, SharedTransport<T>, QUEUE_SIZE>;

/// A virtio-net device with recycled receive buffers, bounded transmits, and a reset.
pub struct VirtioNet<H: Hal, T: Transport, C: Clock> {
    transport: Rc<RefCell<T>>,
    /// `None` between a confirmed reset and a set-up that succeeded.
    raw: Option<Raw<H, T>>,
    mac: [u8; 6],
    posted: Vec<Posted>,
    /// Receive buffers the device gave back in a way the queue did not expect: it may
    /// still write to them, so they wait for a confirmed reset.
    #[expect(
        clippy::vec_box,
        reason = "a buffer the device may write to keeps its address when it changes lists"
    )]
    held: Vec<Box<[u8; BUFFER_LEN]>>,
    /// Receive buffers no device holds, to be posted at the next set-up.
    #[expect(
        clippy::vec_box,
        reason = "buffers are posted by address: each keeps its own allocation"
    )]
    spare: Vec<Box<[u8; BUFFER_LEN]>>,
    transmit: Box<[u8; BUFFER_LEN]>,
    /// The transmit buffer was handed to the device, which never gave it back: it is
    /// not reused before a confirmed reset.
    transmit_in_flight: bool,
    clock: C,
    timeout_us: u64,
    dropped: u64,
    resets: u64,
    failed: Option<DeviceError>,
}

impl<H: Hal, T: Transport, C: Clock> VirtioNet<H, T, C> {
    /// Initialises the device behind `transport` and posts every receive buffer; each
    /// transmit (and a reset's confirmation) gets `timeout_us`.
    ///
    /// # Errors
    /// [`ProbeError`].
    pub fn new(transport: T, clock: C, timeout_us: u64) -> Result<Self, ProbeError> {
        let kind = transport.device_type();
        if kind != DeviceType::Network {
            return Err(ProbeError::WrongDevice(kind));
        }
        let transport = Rc::new(RefCell::new(transport));
        let raw =
            VirtIONetRaw::new(SharedTransport(Rc::clone(&transport))).map_err(ProbeError::Setup)?;
        let mut device = Self {
            transport,
            mac: raw.mac_address(),
            raw: Some(raw),
            posted: Vec::with_capacity(RX_BUFFERS),
            held: Vec::new(),
            spare: (0..RX_BUFFERS).map(|_| Box::new([0; BUFFER_LEN])).collect(),
            transmit: Box::new([0; BUFFER_LEN]),
            transmit_in_flight: false,
            clock,
            timeout_us,
            dropped: 0,
            resets: 0,
            failed: None,
        };
        device.post_spares().map_err(ProbeError::Setup)?;
        Ok(device)
    }

    /// Frames dropped because they were longer than the caller's buffer.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Receive buffers the device holds now (always [`RX_BUFFERS`] on a healthy device).
    pub fn posted(&self) -> usize {
        self.posted.len()
    }

    /// Resets that brought the device back so far.
    pub fn resets(&self) -> u64 {
        self.resets
    }

    fn post_spares(&mut self) -> Result<(), virtio_drivers::Error> {
        while let Some(buffer) = self.spare.pop() {
            self.post(buffer)?;
        }
        Ok(())
    }

    fn post(&mut self, mut buffer: Box<[u8; BUFFER_LEN]>) -> Result<(), virtio_drivers::Error> {
        let Some(raw) = self.raw.as_mut() else {
            self.spare.push(buffer);
            return Err(virtio_drivers::Error::NotReady);
        };
        // SAFETY: the buffer is owned by this frontend and kept in `posted` untouched
        // until the device returns it through `receive_complete`, or until a confirmed
        // reset ends the device's use of it (`reset`); it is never freed or reused
        // while the device may still write to it.
        match unsafe { raw.receive_begin(&mut buffer[..]) } {
            Ok(token) => {
                self.posted.push(Posted { token, buffer });
                Ok(())
            }
            Err(e) => {
                self.spare.push(buffer);
                Err(e)
            }
        }
    }

    fn fail(&mut self, error: DeviceError) -> DeviceError {
        self.failed = Some(error);
        error
    }

    /// Takes one completed receive buffer, copies its frame into `out` (or drops it),
    /// and posts the buffer again. `Ok(None)` when no buffer completed.
    fn receive_one(&mut self, out: &mut [u8]) -> Result<Option<Option<usize>>, DeviceError> {
        let Some(raw) = self.raw.as_mut() else {
            return Err(self.fail(DeviceError::Failed));
        };
        let Some(token) = raw.poll_receive() else {
            return Ok(None);
        };
        let Some(at) = self.posted.iter().position(|p| p.token == token) else {
            return Err(self.fail(DeviceError::Failed));
        };
        let mut posted = self.posted.swap_remove(at);
        // SAFETY: the same buffer, with the same token, as posted in `post`.
        let completed = unsafe { raw.receive_complete(token, &mut posted.buffer[..]) };
        let (header, len) = match completed {
            Ok(lengths) => lengths,
            Err(_) => {
                // The device did not give the buffer back as the queue expects: it may
                // still own it, so it waits for a confirmed reset.
                self.held.push(posted.buffer);
                return Err(self.fail(DeviceError::Failed));
            }
        };
        let Some(frame) = posted.buffer.get(header..header.saturating_add(len)) else {
            self.spare.push(posted.buffer);
            return Err(self.fail(DeviceError::Failed));
        };
        let delivered = if len <= out.len() {
            out[..len].copy_from_slice(frame);
            Some(len)
        } else {
            self.dropped += 1;
            None
        };
        if self.post(posted.buffer).is_err() {
            return Err(self.fail(DeviceError::Failed));
        }
        Ok(Some(delivered))
    }

    /// Counts the receives the device completed that nobody took, and takes their
    /// buffers back (the device is done with them).
    fn drain_completed_receives(&mut self) -> u32 {
        let mut drained = 0;
        let Some(raw) = self.raw.as_mut() else {
            return 0;
        };
        for _ in 0..RX_BUFFERS {
            let Some(token) = raw.poll_receive() else {
                break;
            };
            let Some(at) = self.posted.iter().position(|p| p.token == token) else {
                break;
            };
            let mut posted = self.posted.swap_remove(at);
            // SAFETY: the same buffer, with the same token, as posted in `post`.
            match unsafe { raw.receive_complete(token, &mut posted.buffer[..]) } {
                Ok(_) => {
                    drained += 1;
                    self.spare.push(posted.buffer);
                }
                Err(_) => {
                    self.held.push(posted.buffer);
                    break;
                }
            }
        }
        drained
    }
}

impl<H: Hal, T: Transport, C: Clock> RawNetDevice for VirtioNet<H, T, C> {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The next frame that fits `buf`; frames that do not fit are dropped and counted
    /// (at most [`RX_BUFFERS`] are looked at per call).
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, DeviceError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        for _ in 0..RX_BUFFERS {
            match self.receive_one(buf)? {
                None => return Ok(None),
                Some(Some(len)) => return Ok(Some(len)),
                Some(None) => {}
            }
        }
        Ok(None)
    }

    fn transmit(&mut self, frame: &[u8]) -> Result<(), DeviceError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        let Some(raw) = self.raw.as_mut() else {
            return Err(self.fail(DeviceError::Failed));
        };
        let header = raw
            .fill_buffer_header(&mut self.transmit[..])
            .map_err(|_| DeviceError::Failed)?;
        let len = header + frame.len();
        if frame.is_empty() || len > BUFFER_LEN {
            return Err(DeviceError::BadRequest);
        }
        self.transmit[header..len].copy_from_slice(frame);
        // SAFETY: the transmit buffer is owned by this frontend and not touched until
        // `transmit_complete` returns it below; if the device never does, it is marked
        // in flight and not touched before a confirmed reset.
        let token = match unsafe { raw.transmit_begin(&self.transmit[..len]) } {
            Ok(token) => token,
            Err(_) => return Err(self.fail(DeviceError::Failed)),
        };
        let done = device_deadline::wait_until(&self.clock, self.timeout_us, || {
            raw.poll_transmit().is_some()
        });
        if done.is_err() {
            // The device still owns the buffer until it is reset.
            self.transmit_in_flight = true;
            return Err(self.fail(DeviceError::Timeout));
        }
        if raw.poll_transmit() != Some(token) {
            self.transmit_in_flight = true;
            return Err(self.fail(DeviceError::Failed));
        }
        // SAFETY: the same buffer, with the same token, as passed to `transmit_begin`.
        match unsafe { raw.transmit_complete(token, &self.transmit[..len]) } {
            Ok(_) => Ok(()),
            Err(_) => {
                self.transmit_in_flight = true;
                Err(self.fail(DeviceError::Failed))
            }
        }
    }

    /// Resets the device (status 0, confirmed by reading it back within the deadline),
    /// takes back every buffer it held, and sets it up again with every receive buffer
    /// posted. Works on a healthy device too.
    fn reset(&mut self) -> Result<NetReset, DeviceError> {
        let receives_dropped = self.drain_completed_receives();
        self.failed.get_or_insert(DeviceError::Failed);
        let transport = &self.transport;
        transport.borrow_mut().set_status(DeviceStatus::empty());
        let confirmed = device_deadline::wait_until(&self.clock, self.timeout_us, || {
            transport.borrow().get_status() == DeviceStatus::empty()
        });
        if confirmed.is_err() {
            // The device may still use every buffer it held: keep them all.
            return Err(DeviceError::Timeout);
        }
        // The device has stopped: its queues can be unset (the raw driver's drop) and
        // every buffer it held is ours again.
        drop(self.raw.take());
        let transmits_dropped = u32::from(core::mem::take(&mut self.transmit_in_flight));
        self.spare.extend(self.posted.drain(..).map(|p| p.buffer));
        self.spare.append(&mut self.held);
        let raw = VirtIONetRaw::new(SharedTransport(Rc::clone(&self.transport)))
            .map_err(|_| DeviceError::Failed)?;
        self.mac = raw.mac_address();
        self.raw = Some(raw);
        self.post_spares().map_err(|_| DeviceError::Failed)?;
        self.failed = None;
        self.resets += 1;
        Ok(NetReset {
            transmits_dropped,
            receives_dropped,
        })
    }
}
