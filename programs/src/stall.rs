//! The test image's network device that stalls on purpose (`net.stall-tx=N[,N...]`):
//! compiled into the test image's user program alone (`src/bin/test.rs` includes this
//! file; the production image's program has no way to stall its device).

extern crate alloc;

use alloc::boxed::Box;

use ipc::CapabilityError;
use user_rt::BoxedNet;
use virtio_drivers::PhysAddr;
use virtio_drivers::transport::mmio::MmioTransport;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};

fn say(line: &str) {
    let _ = user_rt::console(line.as_bytes());
}

/// The test image's network device: as the production image's, and when the command
/// line asks (`net.stall-tx=N[,N...]`, see [`StallingTransport`]) stalled on purpose.
pub fn net_device_for_tests() -> Result<BoxedNet, CapabilityError> {
    let bootargs = user_rt::bootargs();
    let stalls = match StallingTransport::plan(&bootargs) {
        Ok(stalls) => stalls,
        Err(word) => {
            say(&alloc::format!(
                "FAIL {word}: not a list of transmit kick numbers; no stall"
            ));
            alloc::vec::Vec::new()
        }
    };
    let transport = user_hal::net_transport()?;
    let timeout = user_programs::NET_TRANSMIT_TIMEOUT_US;
    if stalls.is_empty() {
        return Ok(BoxedNet(Box::new(user_hal::net_device_over(
            transport, timeout,
        )?)));
    }
    say(&alloc::format!(
        "test image: the network device will stall at transmit kicks {stalls:?}"
    ));
    let transport = StallingTransport {
        inner: transport,
        stalls,
        kicks: 0,
        stalled: false,
    };
    Ok(BoxedNet(Box::new(user_hal::net_device_over(
        transport, timeout,
    )?)))
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
    pub fn plan(bootargs: &str) -> Result<alloc::vec::Vec<u32>, &str> {
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
                say(&alloc::format!(
                    "test stall: virtio-net transmit kicks withheld from kick {} until the device is reset",
                    self.kicks
                ));
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
            say("test stall over: the driver reset the network device");
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
