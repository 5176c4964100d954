//! Fault injection, for tests only: compiled into the test image's program
//! (`src/bin/test.rs`) and into `device-faults` (the production image's services plus
//! this file alone, built for the device scenario that faults netstackd under a host
//! peer's sessions). The production program, `device-programs`, never includes it, and
//! `cargo xtask test` checks that its binary has none of the switch's strings.
//!
//! `-append fault=<task>[:<when>]` makes a service's process execute an illegal
//! instruction (`unimp`), so the kernel stops it and restarts it under its policy:
//!
//! | `<when>` | the process that faults | where |
//! |---|---|---|
//! | (none) | the first (generation 0) | as it starts |
//! | `always` | every one | as it starts |
//! | `on=<OP>[@<sender>][#n]` | the first | as it takes its `n`th request for its operation `OP` (by the policy's name; from `<sender>` alone when named; `n` 1 when left out), before answering it |
//! | `after=<OP>[@<sender>][#n]` | the first | as it takes the next request after it answered its `n`th `OP` request (from `<sender>`, when named) with success |
//! | `call=<service>[#n]` | the first | as it makes its `n`th call to `<service>` |
//! | `torn=<OP>[@<sender>][#n]` | the first | in the middle of the first disk write after it takes its `n`th `OP` request: the write's first sector reaches the disk, then it faults (statefs: a torn record) |
//!
//! `-append fault=by-request` is the soak's: every process of every service faults as
//! it takes a request from the selftest whose payload is [`BY_REQUEST`] (bytes no
//! operation takes, so nothing else sends them). The soak picks which service and
//! when, at random, within the restart policies.
//!
//! The named points fault a service while it is busy: with requests of its clients open
//! (`on=`), with state of its clients in hand (`after=`: netstackd holding the socket
//! it has just handed out, `after=ACCEPT`), or in the middle of its own work
//! (`call=`: dsoftbusd between a peer's first handshake message and its answer,
//! `call=rngd#2`, the draw of its ephemeral key). Before it faults the process says
//! `fault injected: <where>` on the console.

extern crate alloc;

use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::sync::atomic::{AtomicBool, Ordering};

use ipc::{
    AuditEvent, Capability, CapabilityError, Endpoint, Frame, FrameKind, IpcBuffer, IpcError,
    Operation, ReplyToken, Request, ServiceId,
};

/// Where a fault is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// The first process, as it starts.
    Start,
    /// Every process, as it starts.
    Always,
    /// The first process, at its `n`th request for `op` (from one sender, when named).
    On(Operation, Option<ServiceId>, u32),
    /// The first process, at the next request after its `n`th successful answer to `op`
    /// (from one sender, when named).
    After(Operation, Option<ServiceId>, u32),
    /// The first process, at its `n`th call to a service.
    Call(ServiceId, u32),
    /// The first process, in the middle of the first disk write after its `n`th
    /// request for `op` (from one sender, when named).
    Torn(Operation, Option<ServiceId>, u32),
    /// Every process, as it takes a request from the selftest whose payload is
    /// [`BY_REQUEST`].
    ByRequest,
}

/// The payload that faults a service under `fault=by-request` (the soak's).
pub use selftest::supervision::BY_REQUEST;

/// `torn=`: the request was taken; the next disk write is torn. A process is one
/// thread, and only the process whose plan says `torn=` sets it.
static TEAR_NEXT_WRITE: AtomicBool = AtomicBool::new(false);

fn say(line: &str) {
    let _ = user_rt::console(line.as_bytes());
}

/// `<name>[#n]`: the name and `n` (1 when left out; 0 is refused).
fn counted(spec: &str) -> Option<(&str, u32)> {
    match spec.split_once('#') {
        None => Some((spec, 1)),
        Some((name, n)) => n.parse().ok().filter(|n| *n > 0).map(|n| (name, n)),
    }
}

/// `<OP>[@<sender>]` of `task`: the operation and the sender, if named.
fn operation_from(task: ServiceId, spec: &str) -> Option<(Operation, Option<ServiceId>)> {
    match spec.split_once('@') {
        None => Some((Operation::from_name(task, spec)?, None)),
        Some((op, sender)) => Some((
            Operation::from_name(task, op)?,
            Some(ServiceId::from_name(sender)?),
        )),
    }
}

/// The one `<when>` of `task`'s `fault=` word in `bootargs`, if there is one; a word
/// naming `task` that does not parse is said on the console (as a failure) and ignored.
pub fn plan(bootargs: &str, task: ServiceId) -> Option<When> {
    let spec = bootargs
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("fault="))
        .find(|spec| spec.split(':').next() == Some(task.name()))?;
    let when = match spec.split_once(':') {
        None => Some(When::Start),
        Some((_, "always")) => Some(When::Always),
        Some((_, when)) => match when.split_once('=') {
            Some(("on", op)) => counted(op).and_then(|(spec, n)| {
                operation_from(task, spec).map(|(op, sender)| When::On(op, sender, n))
            }),
            Some(("after", op)) => counted(op).and_then(|(spec, n)| {
                operation_from(task, spec).map(|(op, sender)| When::After(op, sender, n))
            }),
            Some(("torn", op)) => counted(op).and_then(|(spec, n)| {
                operation_from(task, spec).map(|(op, sender)| When::Torn(op, sender, n))
            }),
            Some(("call", service)) => counted(service).and_then(|(name, n)| {
                ServiceId::from_name(name).map(|service| When::Call(service, n))
            }),
            _ => None,
        },
    };
    if when.is_none() {
        say(&alloc::format!(
            "FAIL fault={spec}: not a fault this program can inject; none injected"
        ));
    }
    when
}

/// Faults the process now if its task's plan says so at start (`generation` is the
/// kernel's first argument: 0 for a task's first process).
pub fn at_start(start: &user_rt::Start) {
    let generation = start.args[0];
    match plan(&user_rt::bootargs(), start.task) {
        Some(When::Always) => fault("always, as it starts"),
        Some(When::Start) if generation == 0 => fault("as the first process starts"),
        _ => {}
    }
}

/// Says where, then executes an illegal instruction: the kernel stops the process.
pub fn fault(at: &str) -> ! {
    say(&alloc::format!("fault injected: {at}"));
    illegal_instruction()
}

#[allow(unsafe_code)]
fn illegal_instruction() -> ! {
    // SAFETY: none needed: `unimp` traps at once, and the kernel stops this process
    // (an illegal-instruction fault); nothing runs after it.
    unsafe { core::arch::asm!("unimp", options(noreturn)) }
}

/// The most answers to `after=` requests tracked at once (tokens of requests taken and
/// not answered yet): more than a service holds open.
const MAX_TRACKED: usize = 64;

/// A service's endpoint that faults its process at the point its plan names.
pub struct Faulting<E> {
    inner: E,
    when: Option<When>,
    /// Requests (or calls) counted toward the plan.
    count: Cell<u32>,
    /// `after=`: the answer was given; the next request faults.
    armed: Cell<bool>,
    /// `after=`: tokens of taken `OP` requests not answered yet.
    tracked: RefCell<Vec<u32>>,
}

impl<E: Endpoint> Faulting<E> {
    /// `inner`, faulting as `bootargs` asks for its task's first process
    /// (`generation` 0); every other process gets `inner`'s behaviour unchanged.
    pub fn new(inner: E, generation: usize) -> Self {
        let bootargs = user_rt::bootargs();
        let when = plan(&bootargs, inner.id())
            .filter(|when| {
                generation == 0
                    && matches!(
                        when,
                        When::On(..) | When::After(..) | When::Call(..) | When::Torn(..)
                    )
            })
            .or_else(|| {
                bootargs
                    .split_whitespace()
                    .any(|word| word == "fault=by-request")
                    .then_some(When::ByRequest)
            });
        Self {
            inner,
            when,
            count: Cell::new(0),
            armed: Cell::new(false),
            tracked: RefCell::new(Vec::new()),
        }
    }

    fn counts(&self, n: u32) -> bool {
        self.count.set(self.count.get().saturating_add(1));
        self.count.get() == n
    }

    /// Checks a request just taken against the plan.
    fn took(&self, request: &Request) {
        if self.armed.get() {
            fault("at the request after the answer its plan names");
        }
        let Some(when) = self.when else {
            return;
        };
        let operation = Frame::decode(&request.frame)
            .ok()
            .and_then(|frame| Operation::from_code(frame.code));
        let named = |op, sender: Option<ServiceId>| {
            operation == Some(op) && sender.is_none_or(|s| s == request.sender)
        };
        match when {
            When::ByRequest
                if request.sender == ServiceId::Selftest
                    && Frame::decode(&request.frame).is_ok_and(|f| f.payload == BY_REQUEST) =>
            {
                fault("as it takes the selftest's request to fault")
            }
            When::On(op, sender, n) if named(op, sender) && self.counts(n) => {
                fault("as it takes the request its plan names, before answering")
            }
            When::Torn(op, sender, n) if named(op, sender) && self.counts(n) => {
                TEAR_NEXT_WRITE.store(true, Ordering::Relaxed);
            }
            When::After(op, sender, _) if named(op, sender) => {
                let mut tracked = self.tracked.borrow_mut();
                if tracked.len() == MAX_TRACKED {
                    tracked.remove(0);
                }
                tracked.push(request.token.0);
            }
            _ => {}
        }
    }
}

impl<E: Endpoint> Endpoint for Faulting<E> {
    type EntropyDevice = E::EntropyDevice;
    type AuditFeed = E::AuditFeed;
    type Disk = E::Disk;
    type NetDevice = E::NetDevice;

    fn id(&self) -> ServiceId {
        self.inner.id()
    }

    async fn call(&self, service: ServiceId, request: &[u8]) -> Result<IpcBuffer, IpcError> {
        if let Some(When::Call(to, n)) = self.when
            && to == service
            && self.counts(n)
        {
            fault("as it makes the call its plan names");
        }
        self.inner.call(service, request).await
    }

    async fn receive(&self) -> Request {
        let request = self.inner.receive().await;
        self.took(&request);
        request
    }

    fn try_receive(&self) -> Option<Request> {
        let request = self.inner.try_receive()?;
        self.took(&request);
        Some(request)
    }

    fn reply(&self, token: ReplyToken, reply: &[u8]) -> Result<(), IpcError> {
        if let Some(When::After(_, _, n)) = self.when {
            let mut tracked = self.tracked.borrow_mut();
            if let Some(at) = tracked.iter().position(|t| *t == token.0) {
                tracked.remove(at);
                let success = Frame::decode(reply).is_ok_and(|f| f.kind == FrameKind::Reply);
                if success && self.counts(n) {
                    self.armed.set(true);
                }
            }
        }
        self.inner.reply(token, reply)
    }

    fn audit(&self, event: AuditEvent) {
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

    fn claim_entropy_device(&self) -> Result<Self::EntropyDevice, CapabilityError> {
        self.inner.claim_entropy_device()
    }

    fn claim_audit_feed(&self) -> Result<Self::AuditFeed, CapabilityError> {
        self.inner.claim_audit_feed()
    }

    fn claim_disk(&self, capability: Capability) -> Result<Self::Disk, CapabilityError> {
        self.inner.claim_disk(capability)
    }

    fn claim_net_device(&self) -> Result<Self::NetDevice, CapabilityError> {
        self.inner.claim_net_device()
    }
}

/// Wraps every service's endpoint in [`Faulting`].
pub struct Faults {
    /// The process's generation (the kernel's first argument).
    pub generation: usize,
}

impl user_programs::Wrap for Faults {
    type Wrapped<E: Endpoint> = Faulting<E>;

    fn wrap<E: Endpoint>(&self, ep: E) -> Faulting<E> {
        Faulting::new(ep, self.generation)
    }
}

/// A disk that tears the write [`TEAR_NEXT_WRITE`] asks for: its first sector reaches
/// the disk (and is flushed), then the process faults, so the rest never does. Every
/// other call goes to the disk.
pub struct TearingDisk<D> {
    inner: D,
}

impl<D: ipc::RawBlockDevice> ipc::RawBlockDevice for TearingDisk<D> {
    fn sectors(&self) -> u64 {
        self.inner.sectors()
    }

    fn readonly(&self) -> bool {
        self.inner.readonly()
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ipc::DeviceError> {
        self.inner.read(sector, buf)
    }

    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), ipc::DeviceError> {
        if TEAR_NEXT_WRITE.swap(false, Ordering::Relaxed) {
            const SECTOR: usize = 512;
            let first = SECTOR.min(buf.len());
            if first < buf.len() {
                let _ = self.inner.write(sector, &buf[..first]);
                let _ = self.inner.flush();
            }
            fault(&alloc::format!(
                "in the middle of a disk write: {} of its {} bytes written",
                if first < buf.len() { first } else { 0 },
                buf.len()
            ));
        }
        self.inner.write(sector, buf)
    }

    fn flush(&mut self) -> Result<(), ipc::DeviceError> {
        self.inner.flush()
    }
}

/// The test programs' disks: each as the production program opens it, behind a
/// [`TearingDisk`].
pub fn disk_for_tests(capability: Capability) -> Result<user_rt::BoxedDisk, CapabilityError> {
    let disk = user_hal::disk(capability)?;
    Ok(user_rt::BoxedDisk(alloc::boxed::Box::new(TearingDisk {
        inner: disk,
    })))
}

/// Runs the service of `start.task` with the faults the command line plans (this
/// file's switch around every endpoint and disk), `open_net` opening the network
/// device; ends a process this program has no code for.
pub fn serve(
    start: user_rt::Start,
    open_net: fn() -> Result<user_rt::BoxedNet, CapabilityError>,
) -> ! {
    at_start(&start);
    let faults = Faults {
        generation: start.args[0],
    };
    let devices = user_programs::Devices {
        net: open_net,
        disk: disk_for_tests,
    };
    user_programs::serve(start, &devices, &faults);
    user_programs::not_here()
}
