//! What a process of each task runs: the services that have moved to user mode, on
//! [`user_rt::UserEndpoint`], their code unchanged from the kernel-task days (generic
//! over `ipc::Endpoint`).
//!
//! Every service runs here: logd, rngd and netstackd (which drive the entropy and the
//! network device from their own windows, `drivers/user-hal`), statefs and keystored
//! (their disks' windows, which the device manager, [`devmgr`], hands on by serial),
//! and dsoftbusd (Noise XK); keystored and dsoftbusd with the combination's backends,
//! so the program is built per combination.

#![no_std]
#![forbid(unsafe_code)]

#[cfg(target_arch = "riscv64")]
extern crate alloc;

#[cfg(target_arch = "riscv64")]
mod riscv {
    use alloc::vec::Vec;

    use ipc::{Capability, CapabilityError, Endpoint, ServiceId};
    use provider_select::{Selected, SelectedHash as Hash, SelectedPake as Pake};
    use user_rt::{BoxedDisk, BoxedNet, Start, UserEndpoint, block_on, exit};

    /// The exit code of a process started for a task this program does not run.
    pub const NOT_HERE: usize = 127;

    /// How long the entropy device may take to answer one request.
    const ENTROPY_DEVICE_TIMEOUT_US: u64 = 500_000;

    /// How long the network device may take to take one frame for transmission.
    pub const NET_TRANSMIT_TIMEOUT_US: u64 = 100_000;

    /// The production image's network device: the window claimed, the driver over it.
    ///
    /// # Errors
    /// The claim's refusal, or a device that does not set up.
    pub fn net_device() -> Result<BoxedNet, CapabilityError> {
        let transport = user_hal::net_transport()?;
        let device = user_hal::net_device_over(transport, NET_TRANSMIT_TIMEOUT_US)?;
        Ok(BoxedNet(alloc::boxed::Box::new(device)))
    }

    /// What a program puts around each service's endpoint: nothing in the production
    /// program ([`Plain`]); the test programs' fault injection (`src/fault.rs`).
    pub trait Wrap {
        /// The endpoint a service gets: with `E`'s devices.
        type Wrapped<E: Endpoint>: Endpoint<
                EntropyDevice = E::EntropyDevice,
                AuditFeed = E::AuditFeed,
                Disk = E::Disk,
                NetDevice = E::NetDevice,
            >;
        /// Puts it around `ep`.
        fn wrap<E: Endpoint>(&self, ep: E) -> Self::Wrapped<E>;
    }

    /// The endpoint as it is.
    pub struct Plain;

    impl Wrap for Plain {
        type Wrapped<E: Endpoint> = E;

        fn wrap<E: Endpoint>(&self, ep: E) -> E {
            ep
        }
    }

    /// How a program opens its devices: the network device (netstackd's), a disk (by
    /// capability: statefs's and keystored's). The production program's are
    /// [`DEVICES`]; the test programs' may stall the network device or tear a disk
    /// write on purpose.
    pub struct Devices {
        /// Opens the network device.
        pub net: fn() -> Result<BoxedNet, CapabilityError>,
        /// Opens a disk.
        pub disk: fn(Capability) -> Result<BoxedDisk, CapabilityError>,
    }

    /// The production program's devices, as the hardware gives them.
    pub const DEVICES: Devices = Devices {
        net: net_device,
        disk: user_hal::disk,
    };

    /// Runs the service of `start.task`, if this program has it; returns otherwise.
    /// `devices` opens the devices; `wrap` goes around each service's endpoint.
    pub fn serve<W: Wrap>(start: Start, devices: &Devices, wrap: &W) {
        match start.task {
            ServiceId::Logd => block_on(logd::run(
                wrap.wrap(UserEndpoint::new(ServiceId::Logd)),
                logd::DEFAULT_LIMITS,
            )),
            ServiceId::Rngd => {
                block_on(rngd::run(wrap.wrap(
                    UserEndpoint::new(ServiceId::Rngd).with_entropy_device(|| {
                        user_hal::entropy_device(ENTROPY_DEVICE_TIMEOUT_US)
                    }),
                )))
            }
            ServiceId::Netstackd => {
                let bootargs = user_rt::bootargs();
                block_on(netstackd::run(
                    wrap.wrap(UserEndpoint::new(ServiceId::Netstackd).with_net_device(devices.net)),
                    &bootargs,
                    start.args[0],
                ))
            }
            ServiceId::Dsoftbusd => {
                let bootargs = user_rt::bootargs();
                block_on(dsoftbusd::run::<Selected, Hash, _>(
                    wrap.wrap(UserEndpoint::new(ServiceId::Dsoftbusd)),
                    &bootargs,
                ))
            }
            ServiceId::Devmgr => devmgr(),
            ServiceId::Statefs => block_on(statefs::run(
                wrap.wrap(UserEndpoint::new(ServiceId::Statefs).with_disks(devices.disk)),
            )),
            ServiceId::Keystored => block_on(keystored::run::<Selected, Hash, Pake, _>(
                wrap.wrap(UserEndpoint::new(ServiceId::Keystored).with_disks(devices.disk)),
                kernel_core::config::PURPOSES,
            )),
            _ => {}
        }
    }

    /// Says on the console when more than one backend per axis is compiled in (the
    /// `--all-features` rule: the first in provider-select's table wins). The device
    /// manager says it, once per boot.
    fn announce_backends() {
        if provider_select::AMBIGUOUS {
            let compiled: Vec<&str> = provider_select::compiled_in().collect();
            say(&alloc::format!(
                "more than one backend per axis compiled in ({}); using {}",
                compiled.join(", "),
                provider_select::selected_name()
            ));
        }
    }

    fn say(line: &str) {
        let _ = user_rt::console(line.as_bytes());
    }

    /// The device manager: claims every block device's window, reads each disk's
    /// serial, and hands each window on as the disk capability its serial names
    /// (`state0`, `otp0`, `ctr0`); a disk whose serial names none keeps no capability,
    /// and two disks with one serial are a failure: neither is used. Then it says it
    /// is done, and exits.
    pub fn devmgr() -> ! {
        announce_backends();
        let mut found: Vec<(usize, Option<Capability>)> = Vec::new();
        while let Some((va, device)) = user_hal::next_block_device() {
            let capability = match &device {
                Ok(disk) => {
                    let serial = core::str::from_utf8(disk.serial()).unwrap_or("?");
                    say(&alloc::format!(
                        "virtio-blk serial {serial}: {} sectors{}",
                        ipc::RawBlockDevice::sectors(disk),
                        if ipc::RawBlockDevice::readonly(disk) {
                            ", read-only"
                        } else {
                            ""
                        }
                    ));
                    Capability::ALL.into_iter().find(|c| {
                        c.disk_serial()
                            .is_some_and(|s| s.as_bytes() == disk.serial())
                    })
                }
                Err(_) => None,
            };
            // The driver goes before the window does.
            drop(device);
            found.push((va, capability));
        }
        for &(va, capability) in &found {
            let Some(capability) = capability else {
                continue;
            };
            if found.iter().filter(|(_, c)| *c == Some(capability)).count() > 1 {
                say(&alloc::format!(
                    "FAIL two disks with serial {}: neither is used",
                    capability.disk_serial().unwrap_or("?")
                ));
                continue;
            }
            if let Err(why) = user_hal::assign(va, capability) {
                say(&alloc::format!(
                    "FAIL cannot hand on {}: {why:?}",
                    capability.name()
                ));
            }
        }
        user_hal::disks_settled();
        exit(0)
    }

    /// Ends a process this program has no code for.
    pub fn not_here() -> ! {
        exit(NOT_HERE)
    }
}

#[cfg(target_arch = "riscv64")]
pub use riscv::{
    DEVICES, Devices, NET_TRANSMIT_TIMEOUT_US, NOT_HERE, Plain, Wrap, devmgr, net_device, not_here,
    serve,
};
