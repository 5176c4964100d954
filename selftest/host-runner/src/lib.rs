//! The host runner: the OS's own service crates, wired on the host.
//!
//! [`HostSystem`] is `kernel-core` (the same executor, router, policy table and
//! manifest as the image) on std, with a host [`Entropy`] source in the entropy-device
//! slot instead of virtio-rng and in-memory disks ([`Disks`]) in the state-disk and
//! OTP-disk slots. It spawns logd, rngd, statefs, keystored, netstackd (its loopback
//! interface only: there is no network device) and dsoftbusd exactly as the image
//! does (the counter disk set-only, as the kernel installs it), with the image's hash ([`ImageHash`], BLAKE2s unless a test asks for SHA-256), so `cargo test` exercises the real services,
//! the real policy and the real audit trail; QEMU proves the devices, the kernel and
//! the markers. Disks are shared: a test keeps a handle, reboots a new system on the
//! same state, or damages it in between.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::time::Instant;

use ipc::{
    Capability, DeviceError, Endpoint, IpcBuffer, IpcError, RawBlockDevice, RawEntropyDevice,
    RawNetDevice, ReplyToken, Request, ServiceId,
};
use kernel_core::{Kernel, KernelEndpoint, Limits, Platform, RunOutcome};
use provider_api::Provider;
use state_format::memory::MemoryDisk;

/// How long a host run may take before it is declared hung.
const RUN_DEADLINE_US: u64 = 60_000_000;

/// The host as a [`Platform`]: wall-clock time (plus what a test moved the clock
/// forward by, [`HostClock`]), console lines kept in memory.
#[derive(Clone)]
pub struct HostPlatform {
    started: Instant,
    skipped_us: Rc<Cell<u64>>,
    console: Rc<RefCell<Vec<String>>>,
    /// Zero the stack below the executor after every poll ([`scrub_stack`]).
    scrub_stack: bool,
}

/// How much stack [`scrub_stack`] zeroes. 16 KiB already cleared what the freed-memory
/// test found; half a megabyte leaves room for deeper polls (a debug build's password
/// hash or scalar multiplication) within a test thread's 2 MiB, for 0.2 s of that
/// test's run.
const STACK_SCRUB_BYTES: usize = 512 * 1024;

/// Zeroes [`STACK_SCRUB_BYTES`] of stack below the caller: the bytes the task just
/// polled left there (a key's copies inside a crypto crate's frames, which no
/// `Zeroize` reaches).
///
/// On the device each process runs on a stack of its own, zeroed when it is handed
/// out and when it is freed, so no process ever reads another's stack bytes. Here
/// every task runs on the test thread's one stack, and a value built on it carries
/// what an earlier task left in its uninitialised bytes (padding, a variant's unused
/// room) into the heap: a task's future boxed at spawn held 16 bytes of dsoftbusd's
/// key seed, left on the stack by the boot before. The freed-memory test looks at
/// heap blocks; this keeps what it finds about the services, not about one shared
/// stack.
#[inline(never)]
fn scrub_stack() {
    let mut below = [0u8; STACK_SCRUB_BYTES];
    // The zeroing must happen: black_box may read every byte.
    std::hint::black_box(&mut below);
}

impl Platform for HostPlatform {
    fn now_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .saturating_add(self.skipped_us.get())
    }

    fn console_line(&self, prefix: &str, line: &str) {
        self.console.borrow_mut().push(format!("{prefix}: {line}"));
    }

    fn poll_finished(&self, _task: ServiceId) {
        if self.scrub_stack {
            scrub_stack();
        }
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

/// A disk the test and the system share.
#[derive(Clone, Debug)]
pub struct SharedDisk(pub Rc<RefCell<MemoryDisk>>);

impl SharedDisk {
    /// A disk holding `disk`.
    pub fn new(disk: MemoryDisk) -> Self {
        Self(Rc::new(RefCell::new(disk)))
    }

    /// The disk's contents now.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.borrow().bytes().to_vec()
    }
}

impl RawBlockDevice for SharedDisk {
    fn sectors(&self) -> u64 {
        self.0.borrow().sectors()
    }
    fn readonly(&self) -> bool {
        self.0.borrow().readonly()
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        self.0.borrow_mut().read(sector, buf)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), DeviceError> {
        self.0.borrow_mut().write(sector, buf)
    }
    fn flush(&mut self) -> Result<(), DeviceError> {
        self.0.borrow_mut().flush()
    }
}

/// The disks of a boot: the state disk (`state0`), the OTP disk (`otp0`) and the
/// rollback counter (`ctr0`), each absent when `None`.
#[derive(Clone, Debug)]
pub struct Disks {
    /// The read-write state disk.
    pub state: Option<SharedDisk>,
    /// The read-only OTP disk.
    pub otp: Option<SharedDisk>,
    /// The rollback counter's one sector (installed set-only, as the kernel does).
    pub counter: Option<SharedDisk>,
}

impl Disks {
    /// A fresh state disk of 512 sectors (zeroed: an empty store), an OTP disk
    /// holding `secret` and a counter at 0.
    pub fn fresh(secret: [u8; 32]) -> Self {
        Self {
            state: Some(SharedDisk::new(MemoryDisk::new(512))),
            otp: Some(Self::otp(secret)),
            counter: Some(Self::counter()),
        }
    }

    /// A rollback counter at 0 (no bit programmed).
    pub fn counter() -> SharedDisk {
        SharedDisk::new(MemoryDisk::new(1))
    }

    /// A fresh state disk and an OTP disk with a secret from the host's getrandom.
    pub fn random() -> Self {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("host entropy");
        Self::fresh(secret)
    }

    /// A read-only OTP disk holding `secret`.
    pub fn otp(secret: [u8; 32]) -> SharedDisk {
        SharedDisk::new(MemoryDisk::from_bytes(
            state_format::otp::image(&secret).to_vec(),
            true,
        ))
    }
}

/// A device secret for tests, different for each `seed`: 32 distinct bytes, like the
/// random bytes provisioning writes (a constant or a short repeating pattern is not a
/// secret provisioning could have written, and the OTP check refuses it).
pub const fn test_secret(seed: u8) -> [u8; 32] {
    let mut secret = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        // 29 is odd, so the 32 bytes are distinct: no period repeats.
        secret[i] = seed.wrapping_add((i as u8).wrapping_mul(29));
        i += 1;
    }
    secret
}

/// Every reply payload rngd and keystored send, handed to a test as it is sent, with
/// who sent it and the operation it answers: what the freed-memory test needs to know
/// every byte rngd served and every PAKE key keystored handed out.
pub type ReplyTap = Rc<dyn Fn(Tapped<'_>)>;

/// One reply a [`ReplyTap`] is handed.
#[derive(Clone, Copy, Debug)]
pub struct Tapped<'a> {
    /// The task that replied.
    pub service: ServiceId,
    /// The operation code of the request it answers.
    pub operation: u16,
    /// The reply's payload.
    pub payload: &'a [u8],
}

/// A task's endpoint with its replies tapped: everything else is the kernel's.
pub struct TappedEndpoint<E: Endpoint> {
    inner: E,
    tap: ReplyTap,
    /// The operation of each request received and not yet answered, by token.
    asked: RefCell<Vec<(u32, u16)>>,
}

impl<E: Endpoint> TappedEndpoint<E> {
    fn new(inner: E, tap: ReplyTap) -> Self {
        Self {
            inner,
            tap,
            asked: RefCell::default(),
        }
    }

    fn note(&self, request: &Request) {
        if let Ok(frame) = ipc::Frame::decode(&request.frame) {
            self.asked.borrow_mut().push((request.token.0, frame.code));
        }
    }
}

impl<E: Endpoint> Endpoint for TappedEndpoint<E> {
    type EntropyDevice = E::EntropyDevice;
    type AuditFeed = E::AuditFeed;
    type Disk = E::Disk;
    type NetDevice = E::NetDevice;

    fn id(&self) -> ServiceId {
        self.inner.id()
    }
    async fn call(&self, service: ServiceId, request: &[u8]) -> Result<IpcBuffer, IpcError> {
        self.inner.call(service, request).await
    }
    async fn receive(&self) -> Request {
        let request = self.inner.receive().await;
        self.note(&request);
        request
    }
    fn try_receive(&self) -> Option<Request> {
        let request = self.inner.try_receive()?;
        self.note(&request);
        Some(request)
    }
    fn reply(&self, token: ReplyToken, reply: &[u8]) -> Result<(), IpcError> {
        let operation = {
            let mut asked = self.asked.borrow_mut();
            let at = asked.iter().position(|(asked, _)| *asked == token.0);
            at.map(|at| asked.swap_remove(at).1)
        };
        if let (Ok(frame), Some(operation)) = (ipc::Frame::decode(reply), operation) {
            (self.tap)(Tapped {
                service: self.inner.id(),
                operation,
                payload: frame.payload,
            });
        }
        self.inner.reply(token, reply)
    }
    fn audit(&self, event: ipc::AuditEvent) {
        self.inner.audit(event);
    }
    fn console(&self, line: &str) {
        self.inner.console(line);
    }
    async fn yield_now(&self) {
        self.inner.yield_now().await;
    }
    fn uptime_ms(&self) -> u64 {
        self.inner.uptime_ms()
    }
    fn claim_entropy_device(&self) -> Result<Self::EntropyDevice, ipc::CapabilityError> {
        self.inner.claim_entropy_device()
    }
    fn claim_audit_feed(&self) -> Result<Self::AuditFeed, ipc::CapabilityError> {
        self.inner.claim_audit_feed()
    }
    fn claim_disk(&self, capability: Capability) -> Result<Self::Disk, ipc::CapabilityError> {
        self.inner.claim_disk(capability)
    }
    fn claim_net_device(&self) -> Result<Self::NetDevice, ipc::CapabilityError> {
        self.inner.claim_net_device()
    }
}

/// The image's hash: Noise's, and the one keystored seals and checks the trust store
/// with. The services are generic over it, as the images are; the host picks one at
/// boot, as `hash-blake2s` or `hash-sha256` does for an image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ImageHash {
    /// BLAKE2s-256 (`hash-blake2s`, the default).
    #[default]
    Blake2s,
    /// SHA-256 (`hash-sha256`).
    Sha256,
}

/// Evaluates `$body` with the type `$h` standing for `$hash`'s hash backend.
macro_rules! with_hash {
    ($hash:expr, $h:ident => $body:expr) => {
        match $hash {
            ImageHash::Blake2s => {
                type $h = provider_hash::Blake2s;
                $body
            }
            ImageHash::Sha256 => {
                type $h = provider_hash::Sha256;
                $body
            }
        }
    };
}

/// Moves a system's clock forward, so a test can live through the services' long
/// deadlines (a 30 s idle timeout) without waiting for them: every task sees the jump
/// at once, as after a long pause. Time never goes back.
#[derive(Clone)]
pub struct HostClock(Rc<Cell<u64>>);

impl HostClock {
    /// Moves the clock `ms` milliseconds forward.
    pub fn skip_ms(&self, ms: u64) {
        self.0
            .set(self.0.get().saturating_add(ms.saturating_mul(1000)));
    }
}

/// The services of the image, running on the host.
pub struct HostSystem {
    kernel: Kernel<HostPlatform>,
    console: Rc<RefCell<Vec<String>>>,
    clock: HostClock,
    hash: ImageHash,
    /// The kernel command line netstackd and dsoftbusd read.
    bootargs: &'static str,
}

impl HostSystem {
    /// Spawns logd, rngd, statefs, keystored and dsoftbusd on provider `P`, with
    /// `entropy` in the device slot and fresh disks (a random OTP secret), under the
    /// compiled-in policy and manifest.
    pub fn boot<P: Provider>(entropy: Entropy) -> Self {
        Self::boot_with::<P>(entropy, Disks::random())
    }

    /// As [`HostSystem::boot`], on `disks`.
    pub fn boot_with<P: Provider>(entropy: Entropy, disks: Disks) -> Self {
        Self::boot_limited::<P>(entropy, disks, dsoftbusd::sessions::LIMITS)
    }

    /// As [`HostSystem::boot_with`], with dsoftbusd's session table bounded by
    /// `limits` (the tests shorten deadlines and the entropy pace).
    pub fn boot_limited<P: Provider>(
        entropy: Entropy,
        disks: Disks,
        limits: dsoftbusd::sessions::Limits,
    ) -> Self {
        let mut system = Self::assemble::<P>(entropy, disks, None, ImageHash::Blake2s);
        system.spawn_dsoftbusd::<P>(limits);
        system
    }

    /// As [`HostSystem::boot_with`], with `hash` as the image's hash.
    pub fn boot_hashed<P: Provider>(entropy: Entropy, disks: Disks, hash: ImageHash) -> Self {
        let mut system = Self::assemble::<P>(entropy, disks, None, hash);
        system.spawn_dsoftbusd::<P>(dsoftbusd::sessions::LIMITS);
        system
    }

    fn spawn_dsoftbusd<P: Provider>(&mut self, limits: dsoftbusd::sessions::Limits) {
        let bootargs = self.bootargs;
        with_hash!(self.hash, H => self.spawn(ServiceId::Dsoftbusd, move |ep| {
            dsoftbusd::run_with::<P, H, _>(ep, limits, bootargs)
        }));
    }

    /// Spawns logd, rngd, statefs and keystored on fresh disks, leaving the dsoftbusd
    /// identity free for a test to act as (to call what the policy allows dsoftbusd
    /// alone).
    pub fn boot_identity<P: Provider>(entropy: Entropy) -> Self {
        Self::boot_identity_with::<P>(entropy, Disks::random())
    }

    /// As [`HostSystem::boot_with`], with `device` in the network-device slot (a test
    /// that speaks Ethernet to netstackd) instead of no device.
    pub fn boot_networked<P: Provider>(
        entropy: Entropy,
        disks: Disks,
        device: Box<dyn RawNetDevice>,
    ) -> Self {
        let mut system = Self::assemble::<P>(entropy, disks, Some(device), ImageHash::Blake2s);
        system.spawn_dsoftbusd::<P>(dsoftbusd::sessions::LIMITS);
        system
    }

    /// As [`HostSystem::boot_networked`], with netstackd configured by `bootargs` (the
    /// kernel command line's `net.ip=`, `net.gw=`), as two devices on one link are,
    /// and logd keeping up to `journal_per_task` records of each task (the image keeps
    /// [`logd::DEFAULT_LIMITS`]; a test that counts a task's records keeps them all).
    pub fn boot_on_network<P: Provider>(
        entropy: Entropy,
        disks: Disks,
        device: Box<dyn RawNetDevice>,
        bootargs: &'static str,
        journal_per_task: usize,
    ) -> Self {
        Self::boot_configured::<P>(entropy, disks, Some(device), bootargs, journal_per_task)
    }

    /// As [`HostSystem::boot_with`] (no network device: netstackd's loopback
    /// interface alone), with the kernel command line `bootargs` and logd keeping up
    /// to `journal_per_task` records of each task.
    pub fn boot_commanded<P: Provider>(
        entropy: Entropy,
        disks: Disks,
        bootargs: &'static str,
        journal_per_task: usize,
    ) -> Self {
        Self::boot_configured::<P>(entropy, disks, None, bootargs, journal_per_task)
    }

    /// [`HostSystem::boot_on_network`] and [`HostSystem::boot_commanded`]: `net` in the
    /// network-device slot, or none.
    fn boot_configured<P: Provider>(
        entropy: Entropy,
        disks: Disks,
        net: Option<Box<dyn RawNetDevice>>,
        bootargs: &'static str,
        journal_per_task: usize,
    ) -> Self {
        let journal = logd::JournalLimits {
            per_task: journal_per_task,
            ..logd::DEFAULT_LIMITS
        };
        let mut system = Self::assemble_with::<P>(
            entropy,
            disks,
            net,
            ImageHash::Blake2s,
            bootargs,
            journal,
            None,
        );
        system.spawn_dsoftbusd::<P>(dsoftbusd::sessions::LIMITS);
        system
    }

    /// As [`HostSystem::boot_identity_with`], with `hash` as the image's hash.
    pub fn boot_identity_hashed<P: Provider>(
        entropy: Entropy,
        disks: Disks,
        hash: ImageHash,
    ) -> Self {
        Self::assemble::<P>(entropy, disks, None, hash)
    }

    /// As [`HostSystem::boot_identity`], on `disks`.
    pub fn boot_identity_with<P: Provider>(entropy: Entropy, disks: Disks) -> Self {
        Self::assemble::<P>(entropy, disks, None, ImageHash::Blake2s)
    }

    /// As [`HostSystem::boot_with`] with the kernel command line `bootargs`, with
    /// every reply rngd and keystored send handed to `tap` as it goes ([`Tapped`]),
    /// and the stack zeroed before the tasks are spawned and after every
    /// poll (see [`scrub_stack`]).
    pub fn boot_tapped<P: Provider>(
        entropy: Entropy,
        disks: Disks,
        tap: ReplyTap,
        bootargs: &'static str,
    ) -> Self {
        let mut system = Self::assemble_with::<P>(
            entropy,
            disks,
            None,
            ImageHash::Blake2s,
            bootargs,
            logd::DEFAULT_LIMITS,
            Some(tap),
        );
        system.spawn_dsoftbusd::<P>(dsoftbusd::sessions::LIMITS);
        system
    }

    fn assemble<P: Provider>(
        entropy: Entropy,
        disks: Disks,
        net: Option<Box<dyn RawNetDevice>>,
        hash: ImageHash,
    ) -> Self {
        Self::assemble_with::<P>(entropy, disks, net, hash, "", logd::DEFAULT_LIMITS, None)
    }

    fn assemble_with<P: Provider>(
        entropy: Entropy,
        disks: Disks,
        net: Option<Box<dyn RawNetDevice>>,
        hash: ImageHash,
        bootargs: &'static str,
        journal: logd::JournalLimits,
        tap: Option<ReplyTap>,
    ) -> Self {
        let console = Rc::default();
        let clock = HostClock(Rc::default());
        let platform = HostPlatform {
            started: Instant::now(),
            skipped_us: Rc::clone(&clock.0),
            console: Rc::clone(&console),
            // The tap is the freed-memory test's: it inspects the heap, so the tasks
            // get the device's separate stacks (as far as a heap can tell).
            scrub_stack: tap.is_some(),
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
        if let Some(state) = disks.state {
            kernel.install_disk(Capability::StateDisk, Box::new(state));
        }
        if let Some(otp) = disks.otp {
            kernel.install_disk(Capability::OtpDisk, Box::new(otp));
        }
        if let Some(counter) = disks.counter {
            let counter = rollback_counter::SetOnly::new(counter);
            kernel.install_disk(Capability::RollbackCounter, Box::new(counter));
        }
        if let Some(device) = net {
            kernel.install_net_device(device);
        }
        let mut system = Self {
            kernel,
            console,
            clock,
            hash,
            bootargs,
        };
        if tap.is_some() {
            // Each future is built on the stack before it is boxed: not on what the
            // test (or the boot before) left there.
            scrub_stack();
        }
        system.spawn(ServiceId::Logd, move |ep| logd::run(ep, journal));
        match &tap {
            Some(tap) => {
                let rngd_tap = Rc::clone(tap);
                system.spawn(ServiceId::Rngd, |ep| {
                    rngd::run(TappedEndpoint::new(ep, rngd_tap))
                });
            }
            None => system.spawn(ServiceId::Rngd, rngd::run),
        }
        system.spawn(ServiceId::Statefs, statefs::run);
        match &tap {
            Some(tap) => {
                let tap = Rc::clone(tap);
                with_hash!(hash, H => system.spawn(ServiceId::Keystored, |ep| {
                    keystored::run::<P, H, provider_spake2plus::Spake2Plus, _>(
                        TappedEndpoint::new(ep, tap),
                        kernel_core::config::PURPOSES,
                    )
                }));
            }
            None => with_hash!(hash, H => system.spawn(ServiceId::Keystored, |ep| {
                keystored::run::<P, H, provider_spake2plus::Spake2Plus, _>(ep, kernel_core::config::PURPOSES)
            })),
        }
        // Without a network device netstackd serves its loopback interface alone.
        system.spawn(ServiceId::Netstackd, move |ep| {
            netstackd::run(ep, bootargs, 0)
        });
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
        let outcome = self.kernel.run(Some(id), deadline);
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
        with_hash!(self.hash, H => self.run_as(ServiceId::Selftest, |ep| async move {
            selftest::run::<P, H, _>(&ep).await
        }))
    }

    /// The system's clock, for a test to move forward.
    pub fn clock(&self) -> HostClock {
        self.clock.clone()
    }

    /// Every console line so far, prefixed as on the UART.
    pub fn console(&self) -> Vec<String> {
        self.console.borrow().clone()
    }

    /// The console as it grows, for a task of the test to watch while it runs.
    pub fn console_handle(&self) -> Rc<RefCell<Vec<String>>> {
        Rc::clone(&self.console)
    }
}
