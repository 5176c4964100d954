//! The virtio block device (virtio-blk), bounded, on the `virtio-drivers` crate.
//!
//! `virtio-drivers` ships `VirtIOBlk`, whose `device_id` and `flush` (and blocking
//! `read_blocks`/`write_blocks`) wait in `add_notify_wait_pop`, a spin with no end: a
//! stalled disk would hang the kernel, and there is no non-blocking form of `GET_ID`
//! or `FLUSH`. This frontend uses the crate's transport and `VirtQueue` (as the
//! virtio-rng frontend does) and speaks the four requests the OS needs, with the
//! discipline of that frontend:
//!
//! - **a deadline per request** (`IN`, `OUT`, `FLUSH`, `GET_ID`): a request the device
//!   has not completed by then fails with [`DeviceError::Timeout`], the driver's
//!   buffers are leaked (the device may still write them) and the device is never
//!   used again;
//! - **lengths and ranges checked before the device sees them**: a buffer that is not
//!   a non-zero multiple of 512 bytes, or sectors past the end, is
//!   [`DeviceError::BadRequest`]; a write to a read-only disk (the `RO` feature) is
//!   [`DeviceError::ReadOnly`];
//! - **driver-owned DMA buffers**, wiped after every request (the OTP disk carries the
//!   device secret), with transfers larger than one buffer split;
//! - **the serial** read once at start (`GET_ID`), so the kernel finds disks by
//!   serial, never by slot.
//!
//! Request layout (virtio 1.2, section 5.2.6): a 16-byte header (`type: u32`,
//! reserved `u32`, `sector: u64`, little-endian) the device reads, the data, and a
//! one-byte status the device writes (0 OK, 1 IOERR, 2 UNSUPP).

#![no_std]

extern crate alloc;

use alloc::boxed::Box;
use core::fmt;

use bitflags::bitflags;
use device_deadline::{Clock, wait_until};
use ipc::{DeviceError, RawBlockDevice, SECTOR_SIZE};
use virtio_drivers::Hal;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::{DeviceType, Transport};
use zeroize::Zeroize;

/// The device's request queue.
const QUEUE: u16 = 0;
/// Descriptors in the queue: one request (three descriptors) at a time.
const QUEUE_SIZE: usize = 4;
/// The most bytes one request moves; larger transfers are split.
pub const MAX_TRANSFER: usize = 4096;
/// Longest serial (`GET_ID` answers 20 bytes, NUL-padded).
pub const SERIAL_LEN: usize = 20;

const REQUEST_IN: u32 = 0;
const REQUEST_OUT: u32 = 1;
const REQUEST_FLUSH: u32 = 4;
const REQUEST_GET_ID: u32 = 8;
const STATUS_OK: u8 = 0;

bitflags! {
    /// The feature bits this frontend negotiates (virtio 1.2, sections 5.2.3, 6).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    struct Features: u64 {
        /// The disk is read-only.
        const RO = 1 << 5;
        /// The device has a FLUSH request.
        const FLUSH = 1 << 9;
        /// A virtio 1.x device.
        const VERSION_1 = 1 << 32;
    }
}

/// Why the device could not be set up.
#[derive(Debug)]
pub enum ProbeError {
    /// The transport is not a block device.
    WrongDevice(DeviceType),
    /// The device refused its queue or its configuration.
    Setup(virtio_drivers::Error),
    /// `GET_ID` failed or timed out.
    Serial(DeviceError),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongDevice(kind) => write!(f, "expected a virtio block device, found {kind:?}"),
            Self::Setup(e) => write!(f, "virtio-blk setup failed: {e}"),
            Self::Serial(e) => write!(f, "virtio-blk GET_ID failed: {e}"),
        }
    }
}

/// Which way data moves in a request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Data {
    /// No data (FLUSH).
    None,
    /// The device writes `len` bytes into the buffer (IN, GET_ID).
    FromDevice(usize),
    /// The device reads `len` bytes from the buffer (OUT).
    ToDevice(usize),
}

/// A virtio-blk device with bounded requests.
pub struct VirtioBlk<H: Hal, T: Transport, C: Clock> {
    transport: T,
    queue: VirtQueue<H, QUEUE_SIZE>,
    clock: C,
    timeout_us: u64,
    sectors: u64,
    readonly: bool,
    flush: bool,
    serial: [u8; SERIAL_LEN],
    header: Box<[u8; 16]>,
    buffer: Box<[u8; MAX_TRANSFER]>,
    status: Box<[u8; 1]>,
    failed: Option<DeviceError>,
}

impl<H: Hal, T: Transport, C: Clock> VirtioBlk<H, T, C> {
    /// Initialises the device behind `transport` and reads its serial; each request
    /// gets `timeout_us`.
    ///
    /// # Errors
    /// [`ProbeError`].
    pub fn new(mut transport: T, clock: C, timeout_us: u64) -> Result<Self, ProbeError> {
        let kind = transport.device_type();
        if kind != DeviceType::Block {
            return Err(ProbeError::WrongDevice(kind));
        }
        let features = transport.begin_init(Features::RO | Features::FLUSH | Features::VERSION_1);
        // Capacity: config offsets 0 and 4, read until the generation is stable.
        let sectors = transport
            .read_consistent(|| {
                let low = transport.read_config_space::<u32>(0)?;
                let high = transport.read_config_space::<u32>(4)?;
                Ok(u64::from(low) | (u64::from(high) << 32))
            })
            .map_err(ProbeError::Setup)?;
        let queue =
            VirtQueue::new(&mut transport, QUEUE, false, false).map_err(ProbeError::Setup)?;
        transport.finish_init();
        let mut device = Self {
            transport,
            queue,
            clock,
            timeout_us,
            sectors,
            readonly: features.contains(Features::RO),
            flush: features.contains(Features::FLUSH),
            serial: [0; SERIAL_LEN],
            header: Box::new([0; 16]),
            buffer: Box::new([0; MAX_TRANSFER]),
            status: Box::new([0xff]),
            failed: None,
        };
        device
            .request(REQUEST_GET_ID, 0, Data::FromDevice(SERIAL_LEN))
            .map_err(ProbeError::Serial)?;
        device.serial.copy_from_slice(&device.buffer[..SERIAL_LEN]);
        device.buffer.zeroize();
        Ok(device)
    }

    /// The serial (`serial=` on QEMU's `-device`), up to the first NUL.
    pub fn serial(&self) -> &[u8] {
        let len = self
            .serial
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(SERIAL_LEN);
        &self.serial[..len]
    }

    /// Checks a transfer against the disk before the device sees it.
    fn check(&self, sector: u64, len: usize) -> Result<(), DeviceError> {
        if len == 0 || !len.is_multiple_of(SECTOR_SIZE) {
            return Err(DeviceError::BadRequest);
        }
        let count = (len / SECTOR_SIZE) as u64;
        match sector.checked_add(count) {
            Some(end) if end <= self.sectors => Ok(()),
            _ => Err(DeviceError::BadRequest),
        }
    }

    /// One request, bounded by the deadline; the data, if any, is in `self.buffer`.
    fn request(&mut self, kind: u32, sector: u64, data: Data) -> Result<(), DeviceError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        self.header[..4].copy_from_slice(&kind.to_le_bytes());
        self.header[4..8].fill(0);
        self.header[8..].copy_from_slice(&sector.to_le_bytes());
        self.status[0] = 0xff;
        let result = self.exchange(data);
        if let Err(error) = result {
            self.failed = Some(error);
        }
        result
    }

    fn exchange(&mut self, data: Data) -> Result<(), DeviceError> {
        let header: &[u8] = &self.header[..];
        let (inputs, outputs): (&[&[u8]], &mut [&mut [u8]]) = match data {
            Data::None => (&[header], &mut [&mut self.status[..]]),
            Data::FromDevice(len) => (
                &[header],
                &mut [&mut self.buffer[..len], &mut self.status[..]],
            ),
            Data::ToDevice(len) => (&[header, &self.buffer[..len]], &mut [&mut self.status[..]]),
        };
        // SAFETY: the header, data and status buffers belong to this frontend and are
        // not touched until `pop_used` returns them below; if the device never does,
        // they are leaked (see the timeout path), never reused.
        let token = unsafe { self.queue.add(inputs, outputs) }.map_err(|_| DeviceError::Failed)?;
        if self.queue.should_notify() {
            self.transport.notify(QUEUE);
        }
        let queue = &self.queue;
        if wait_until(&self.clock, self.timeout_us, || queue.can_pop()).is_err() {
            // The device still owns the buffers: give them up for good.
            Box::leak(core::mem::replace(&mut self.header, Box::new([0; 16])));
            Box::leak(core::mem::replace(
                &mut self.buffer,
                Box::new([0; MAX_TRANSFER]),
            ));
            Box::leak(core::mem::replace(&mut self.status, Box::new([0xff])));
            return Err(DeviceError::Timeout);
        }
        let header: &[u8] = &self.header[..];
        let (inputs, outputs): (&[&[u8]], &mut [&mut [u8]]) = match data {
            Data::None => (&[header], &mut [&mut self.status[..]]),
            Data::FromDevice(len) => (
                &[header],
                &mut [&mut self.buffer[..len], &mut self.status[..]],
            ),
            Data::ToDevice(len) => (&[header, &self.buffer[..len]], &mut [&mut self.status[..]]),
        };
        // SAFETY: the same buffers, with the same token, as added above.
        unsafe { self.queue.pop_used(token, inputs, outputs) }.map_err(|_| DeviceError::Failed)?;
        if self.status[0] == STATUS_OK {
            Ok(())
        } else {
            Err(DeviceError::Failed)
        }
    }
}

impl<H: Hal, T: Transport, C: Clock> RawBlockDevice for VirtioBlk<H, T, C> {
    fn sectors(&self) -> u64 {
        self.sectors
    }

    fn readonly(&self) -> bool {
        self.readonly
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        self.check(sector, buf.len())?;
        let mut at = sector;
        for chunk in buf.chunks_mut(MAX_TRANSFER) {
            let result = self.request(REQUEST_IN, at, Data::FromDevice(chunk.len()));
            if result.is_ok() {
                chunk.copy_from_slice(&self.buffer[..chunk.len()]);
            }
            self.buffer.zeroize();
            result?;
            at += (chunk.len() / SECTOR_SIZE) as u64;
        }
        Ok(())
    }

    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), DeviceError> {
        self.check(sector, buf.len())?;
        if self.readonly {
            return Err(DeviceError::ReadOnly);
        }
        let mut at = sector;
        for chunk in buf.chunks(MAX_TRANSFER) {
            self.buffer[..chunk.len()].copy_from_slice(chunk);
            let result = self.request(REQUEST_OUT, at, Data::ToDevice(chunk.len()));
            self.buffer.zeroize();
            result?;
            at += (chunk.len() / SECTOR_SIZE) as u64;
        }
        Ok(())
    }

    /// Sends `FLUSH` when the device offers it. A device without the feature offers no
    /// cache control: its completed writes are taken as durable, and there is nothing
    /// to send.
    fn flush(&mut self) -> Result<(), DeviceError> {
        if self.flush {
            self.request(REQUEST_FLUSH, 0, Data::None)
        } else {
            self.failed.map_or(Ok(()), Err)
        }
    }
}
