//! The host runner: the OS's own service crates, wired on the host.
//!
//! [`HostSystem`] is `kernel-core` (the same executor, router, policy table and
//! manifest as the image) on std, with a host [`Entropy`] source in the entropy-device
//! slot instead of virtio-rng. It spawns logd, rngd, keystored and dsoftbusd (with
//! BLAKE2s) exactly as the image does, so `cargo test` exercises the real services, the real policy and the real
//! audit trail; QEMU proves the device, the kernel and the markers.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::time::Instant;

use ipc::{DeviceError, RawEntropyDevice, ServiceId};
use kernel_core::{Kernel, KernelEndpoint, Limits, Platform, RunOutcome};
use provider_api::Provider;
use provider_hash::Blake2s;

/// How long a host run may take before it is declared hung.
const RUN_DEADLINE_US: u64 = 60_000_000;

/// The host as a [`Platform`]: wall-clock time, console lines kept in memory.
#[derive(Clone)]
pub struct HostPlatform {
    started: Instant,
    console: Rc<RefCell<Vec<String>>>,
}

impl Platform for HostPlatform {
    fn now_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn console_line(&self, prefix: &str, line: &str) {
        self.console.borrow_mut().push(format!("{prefix}: {line}"));
    }
}

/// What sits in the entropy-device slot.
#[derive(Clone, Debug)]
pub enum Entropy {
    /// The host's getrandom.
    Host,
    /// These bytes, in order, then nothing (like `RNG_FILE`).
    Bytes(Vec<u8>),
    /// No device (like `NO_RNG=1`).
    Absent,
}

struct HostDevice {
    entropy: Entropy,
    at: usize,
}

impl RawEntropyDevice for HostDevice {
    fn read(&mut self, dest: &mut [u8]) -> Result<usize, DeviceError> {
        match &self.entropy {
            Entropy::Host => getrandom::fill(dest)
                .map(|()| dest.len())
                .map_err(|_| DeviceError::Failed),
            Entropy::Bytes(bytes) => {
                let n = dest.len().min(bytes.len() - self.at);
                dest[..n].copy_from_slice(&bytes[self.at..self.at + n]);
                self.at += n;
                Ok(n)
            }
            Entropy::Absent => Err(DeviceError::Failed),
        }
    }
}

/// The services of the image, running on the host.
pub struct HostSystem {
    kernel: Kernel<HostPlatform>,
    console: Rc<RefCell<Vec<String>>>,
}

impl HostSystem {
    /// Spawns logd, rngd, keystored and dsoftbusd on provider `P`, with `entropy` in the device
    /// slot, under the compiled-in policy and manifest.
    pub fn boot<P: Provider>(entropy: Entropy) -> Self {
        let mut system = Self::boot_identity::<P>(entropy);
        system.spawn(ServiceId::Dsoftbusd, dsoftbusd::run::<P, Blake2s, _>);
        system
    }

    /// Spawns only logd, rngd and keystored, leaving the dsoftbusd identity free for
    /// a test to act as (to call what the policy allows dsoftbusd alone).
    pub fn boot_identity<P: Provider>(entropy: Entropy) -> Self {
        let console = Rc::default();
        let platform = HostPlatform {
            started: Instant::now(),
            console: Rc::clone(&console),
        };
        let mut kernel = Kernel::new(
            platform,
            kernel_core::config::POLICY,
            kernel_core::config::GRANTS,
            Limits::default(),
        );
        if !matches!(entropy, Entropy::Absent) {
            kernel.install_entropy_device(Box::new(HostDevice { entropy, at: 0 }));
        }
        let mut system = Self { kernel, console };
        system.spawn(ServiceId::Logd, |ep| logd::run(ep, logd::DEFAULT_LIMITS));
        system.spawn(ServiceId::Rngd, rngd::run);
        system.spawn(ServiceId::Keystored, keystored::run::<P::Curve, _>);
        system
    }

    /// Spawns a task, as the image does.
    ///
    /// # Panics
    /// When the kernel refuses the id (the kernel's own, or one already running): a
    /// bug in the test that asked.
    pub fn spawn<F, Fut>(&mut self, id: ServiceId, body: F)
    where
        F: FnOnce(KernelEndpoint<HostPlatform>) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        if let Err(error) = self.kernel.spawn(id, body) {
            panic!("cannot spawn {id}: {error}");
        }
    }

    /// The sizes of the kernel's tables.
    pub fn stats(&self) -> kernel_core::KernelStats {
        self.kernel.stats()
    }

    /// Runs `body` as task `id` until it finishes, the services running alongside, and
    /// returns what it returned.
    ///
    /// # Panics
    /// When the task does not finish within a minute (the console is printed).
    pub fn run_as<T, F, Fut>(&mut self, id: ServiceId, body: F) -> T
    where
        T: 'static,
        F: FnOnce(KernelEndpoint<HostPlatform>) -> Fut,
        Fut: Future<Output = T> + 'static,
    {
        let result = Rc::new(RefCell::new(None));
        let slot = Rc::clone(&result);
        self.spawn(id, move |ep| {
            let task = body(ep);
            async move {
                let value = task.await;
                *slot.borrow_mut() = Some(value);
            }
        });
        let deadline = self.kernel.platform().now_us() + RUN_DEADLINE_US;
        let outcome = self.kernel.run(id, deadline);
        assert_eq!(
            outcome,
            RunOutcome::MainFinished,
            "task {id} did not finish: {:#?}",
            self.console()
        );
        result
            .borrow_mut()
            .take()
            .expect("the task stored its result")
    }

    /// Runs the image's selftest client, as the selftest task.
    pub fn run_selftest<P: Provider>(&mut self) -> selftest::Outcome {
        self.run_as(ServiceId::Selftest, |ep| async move {
            selftest::run::<P, Blake2s, _>(&ep).await
        })
    }

    /// Every console line so far, prefixed as on the UART.
    pub fn console(&self) -> Vec<String> {
        self.console.borrow().clone()
    }
}
