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
//!   with [`DeviceError::Timeout`] and is not used again (its buffer may still be read
//!   by the device, so it is leaked rather than reused);
//! - **bounded lengths**: a frame longer than the caller's buffer is dropped and
//!   counted ([`VirtioNet::dropped`]); a completion that claims more than the buffer
//!   offered, or names a buffer that was not posted, is a device error.
//!
//! No checksum offload is negotiated (`VirtIONetRaw` asks for none): the network stack
//! computes checksums itself. The `virtio-drivers` `Hal` (DMA and address translation)
//! comes from the kernel.

#![no_std]

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use ipc::{DeviceError, RawNetDevice};
use virtio_drivers::Hal;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::{DeviceType, Transport};

pub use device_deadline::Clock;

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

/// A receive buffer the device holds, and the token it was posted with.
struct Posted {
    token: u16,
    buffer: Box<[u8; BUFFER_LEN]>,
}

/// A virtio-net device with recycled receive buffers and bounded transmits.
pub struct VirtioNet<H: Hal, T: Transport, C: Clock> {
    raw: VirtIONetRaw<H, T, QUEUE_SIZE>,
    posted: Vec<Posted>,
    transmit: Box<[u8; BUFFER_LEN]>,
    clock: C,
    timeout_us: u64,
    dropped: u64,
    failed: Option<DeviceError>,
}

impl<H: Hal, T: Transport, C: Clock> VirtioNet<H, T, C> {
    /// Initialises the device behind `transport` and posts every receive buffer; each
    /// transmit gets `timeout_us`.
    ///
    /// # Errors
    /// [`ProbeError`].
    pub fn new(transport: T, clock: C, timeout_us: u64) -> Result<Self, ProbeError> {
        let kind = transport.device_type();
        if kind != DeviceType::Network {
            return Err(ProbeError::WrongDevice(kind));
        }
        let raw = VirtIONetRaw::new(transport).map_err(ProbeError::Setup)?;
        let mut device = Self {
            raw,
            posted: Vec::with_capacity(RX_BUFFERS),
            transmit: Box::new([0; BUFFER_LEN]),
            clock,
            timeout_us,
            dropped: 0,
            failed: None,
        };
        for _ in 0..RX_BUFFERS {
            device
                .post(Box::new([0; BUFFER_LEN]))
                .map_err(ProbeError::Setup)?;
        }
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

    fn post(&mut self, mut buffer: Box<[u8; BUFFER_LEN]>) -> Result<(), virtio_drivers::Error> {
        // SAFETY: the buffer is owned by this frontend and kept in `posted` untouched
        // until the device returns it through `receive_complete`; if the device fails,
        // the frontend stops, and a buffer the device may still own (one in `posted`,
        // or one whose completion went wrong) is never freed while the frontend lives
        // and never reused.
        let token = unsafe { self.raw.receive_begin(&mut buffer[..]) }?;
        self.posted.push(Posted { token, buffer });
        Ok(())
    }

    fn fail(&mut self, error: DeviceError) -> DeviceError {
        self.failed = Some(error);
        error
    }

    /// Takes one completed receive buffer, copies its frame into `out` (or drops it),
    /// and posts the buffer again. `Ok(None)` when no buffer completed.
    fn receive_one(&mut self, out: &mut [u8]) -> Result<Option<Option<usize>>, DeviceError> {
        let Some(token) = self.raw.poll_receive() else {
            return Ok(None);
        };
        let Some(at) = self.posted.iter().position(|p| p.token == token) else {
            return Err(self.fail(DeviceError::Failed));
        };
        let mut posted = self.posted.swap_remove(at);
        // SAFETY: the same buffer, with the same token, as posted in `post`.
        let completed = unsafe { self.raw.receive_complete(token, &mut posted.buffer[..]) };
        let (header, len) = match completed {
            Ok(lengths) => lengths,
            Err(_) => {
                // The device did not give the buffer back as the queue expects: it may
                // still own it, so it is never freed or reused.
                Box::leak(posted.buffer);
                return Err(self.fail(DeviceError::Failed));
            }
        };
        let Some(frame) = posted.buffer.get(header..header.saturating_add(len)) else {
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
}

impl<H: Hal, T: Transport, C: Clock> RawNetDevice for VirtioNet<H, T, C> {
    fn mac(&self) -> [u8; 6] {
        self.raw.mac_address()
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
        let header = self
            .raw
            .fill_buffer_header(&mut self.transmit[..])
            .map_err(|_| DeviceError::Failed)?;
        let len = header + frame.len();
        if frame.is_empty() || len > BUFFER_LEN {
            return Err(DeviceError::BadRequest);
        }
        self.transmit[header..len].copy_from_slice(frame);
        // SAFETY: the transmit buffer is owned by this frontend and not touched until
        // `transmit_complete` returns it below; if the device never does, it is leaked
        // (see the timeout path), never reused.
        let token = match unsafe { self.raw.transmit_begin(&self.transmit[..len]) } {
            Ok(token) => token,
            Err(_) => return Err(self.fail(DeviceError::Failed)),
        };
        let raw = &mut self.raw;
        let done = device_deadline::wait_until(&self.clock, self.timeout_us, || {
            raw.poll_transmit().is_some()
        });
        if done.is_err() {
            // The device still owns the buffer: give it up for good.
            Box::leak(core::mem::replace(
                &mut self.transmit,
                Box::new([0; BUFFER_LEN]),
            ));
            return Err(self.fail(DeviceError::Timeout));
        }
        if self.raw.poll_transmit() != Some(token) {
            return Err(self.fail(DeviceError::Failed));
        }
        // SAFETY: the same buffer, with the same token, as passed to `transmit_begin`.
        match unsafe { self.raw.transmit_complete(token, &self.transmit[..len]) } {
            Ok(_) => Ok(()),
            Err(_) => Err(self.fail(DeviceError::Failed)),
        }
    }
}
