//! smoltcp's `phy::Device` over the kernel's network-device capability.
//!
//! Every frame is copied: into a driver-independent receive buffer, and from a
//! transmit buffer on the stack. A device error is kept (the stack then sees a device
//! with nothing to receive and no room to send, and TCP keeps what it wanted to send
//! for a retransmission) and reported by [`NetPhy::failed`] until [`NetPhy::reset`]
//! brings the device back.

use alloc::boxed::Box;

use ipc::{DeviceError, NetReset, RawNetDevice};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// The largest Ethernet frame without the FCS: 14 bytes of header and a 1500-byte
/// payload.
pub const MAX_FRAME: usize = 1514;

/// The network device, as smoltcp sees it.
pub struct NetPhy<D: RawNetDevice> {
    device: D,
    received: Box<[u8; MAX_FRAME]>,
    failed: Option<DeviceError>,
    /// Frames received so far.
    pub frames_in: u64,
    /// Frames transmitted so far.
    pub frames_out: u64,
}

impl<D: RawNetDevice> NetPhy<D> {
    /// Wraps `device`.
    pub fn new(device: D) -> Self {
        Self {
            device,
            received: Box::new([0; MAX_FRAME]),
            failed: None,
            frames_in: 0,
            frames_out: 0,
        }
    }

    /// The device's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.device.mac()
    }

    /// The device error that stopped this device, if one did.
    pub fn failed(&self) -> Option<DeviceError> {
        self.failed
    }

    /// Resets the device ([`RawNetDevice::reset`]); once it is back, frames flow again.
    ///
    /// # Errors
    /// The device's, when it did not come back (it stays stopped).
    pub fn reset(&mut self) -> Result<NetReset, DeviceError> {
        let dropped = self.device.reset()?;
        self.failed = None;
        Ok(dropped)
    }
}

/// A received frame.
pub struct RxToken<'a>(&'a [u8]);

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.0)
    }
}

/// Room to send one frame.
pub struct TxToken<'a, D: RawNetDevice> {
    device: &'a mut D,
    failed: &'a mut Option<DeviceError>,
    sent: &'a mut u64,
}

impl<D: RawNetDevice> phy::TxToken for TxToken<'_, D> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut frame = [0u8; MAX_FRAME];
        // smoltcp never asks for more than the MTU it was given; a larger request is
        // built in a scratch buffer and not sent.
        let mut scratch;
        let buffer = if len <= MAX_FRAME {
            &mut frame[..len]
        } else {
            scratch = alloc::vec![0u8; len];
            &mut scratch[..]
        };
        let result = f(buffer);
        if len <= MAX_FRAME && self.failed.is_none() {
            match self.device.transmit(&frame[..len]) {
                Ok(()) => *self.sent += 1,
                Err(error) => *self.failed = Some(error),
            }
        }
        result
    }
}

impl<D: RawNetDevice> phy::Device for NetPhy<D> {
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, D>
    where
        Self: 'a;

    fn receive(&mut self, _: Instant) -> Option<(RxToken<'_>, TxToken<'_, D>)> {
        if self.failed.is_some() {
            return None;
        }
        let len = match self.device.receive(&mut self.received[..]) {
            Ok(Some(len)) => len,
            Ok(None) => return None,
            Err(error) => {
                self.failed = Some(error);
                return None;
            }
        };
        self.frames_in += 1;
        Some((
            RxToken(&self.received[..len]),
            TxToken {
                device: &mut self.device,
                failed: &mut self.failed,
                sent: &mut self.frames_out,
            },
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_, D>> {
        if self.failed.is_some() {
            return None;
        }
        Some(TxToken {
            device: &mut self.device,
            failed: &mut self.failed,
            sent: &mut self.frames_out,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps.max_burst_size = Some(1);
        caps
    }
}
