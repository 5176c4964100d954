//! `ipc::Endpoint` over system calls: what a service's code sees in a process.
//!
//! The kernel never blocks a process: a call is submitted (`call`) and its reply taken
//! when it has come (`take_reply`, `Pending` until then); a request is taken if one is
//! queued (`receive`, `Empty` otherwise). The futures here return `Pending` instead of
//! waiting, and [`block_on`] gives up the process's slice (`yield`) whenever the
//! service's future is pending, so the kernel's other work and the other processes run
//! before it polls again. The contract of the kernel's own endpoint holds: the kernel
//! stamps the sender, checks the policy before delivery, bounds queues and calls,
//! times a call out at its deadline, and a call dropped before its reply is cancelled.
//!
//! Bytes that pass through here (requests, replies) are wiped from the buffers they
//! crossed before those are freed.

use alloc::vec;
use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use ipc::frame::MAX_FRAME;
use ipc::{
    AuditEvent, AuditFeed, AuditLoss, AuditRecord, Capability, CapabilityError, Endpoint, Frame,
    FrameError, IpcBuffer, IpcError, RawBlockDevice, RawEntropyDevice, RawNetDevice, ReplyToken,
    Request, ServiceId,
};
use zeroize::Zeroize;

use crate::{Error, call, call3, exit, number};

/// Runs a service's future to its end, yielding the slice whenever it is pending;
/// then exits with code 0.
pub fn block_on(future: impl Future<Output = ()>) -> ! {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if future.as_mut().poll(&mut context).is_ready() {
            exit(0)
        }
        crate::yield_now();
    }
}

/// Pending exactly once: the rest of this pass goes to the kernel and the others.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: core::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

/// A process's endpoint: its task's identity, system calls underneath. `R`, `N` and
/// `D` are the entropy device, the network device and the disks their holders open in
/// their own process (`drivers/user-hal`); a process that holds none has
/// [`NoDevice`] for each.
pub struct UserEndpoint<R = NoDevice, N = NoDevice, D = NoDevice> {
    id: ServiceId,
    open_entropy: fn() -> Result<R, CapabilityError>,
    open_net: fn() -> Result<N, CapabilityError>,
    open_disk: fn(Capability) -> Result<D, CapabilityError>,
}

impl UserEndpoint {
    /// The endpoint of a process of task `id` (from [`crate::Start`]; the kernel
    /// stamps the identity on everything the process sends whatever this says).
    pub fn new(id: ServiceId) -> Self {
        Self {
            id,
            open_entropy: || Err(claim_device(Capability::EntropyDevice)),
            open_net: || Err(claim_device(Capability::NetDevice)),
            open_disk: |capability| Err(claim_device(capability)),
        }
    }
}

impl<R, N, D> UserEndpoint<R, N, D> {
    /// The endpoint of the entropy device's holder: `open` claims the device's window
    /// and opens its driver in this process.
    pub fn with_entropy_device<R2>(
        self,
        open: fn() -> Result<R2, CapabilityError>,
    ) -> UserEndpoint<R2, N, D> {
        UserEndpoint {
            id: self.id,
            open_entropy: open,
            open_net: self.open_net,
            open_disk: self.open_disk,
        }
    }

    /// The endpoint of the network device's holder: `open` claims the device's window
    /// and opens its driver in this process.
    pub fn with_net_device<N2>(
        self,
        open: fn() -> Result<N2, CapabilityError>,
    ) -> UserEndpoint<R, N2, D> {
        UserEndpoint {
            id: self.id,
            open_entropy: self.open_entropy,
            open_net: open,
            open_disk: self.open_disk,
        }
    }

    /// The endpoint of a disk's holder: `open` claims the window of a disk
    /// capability and opens its driver in this process.
    pub fn with_disks<D2>(
        self,
        open: fn(Capability) -> Result<D2, CapabilityError>,
    ) -> UserEndpoint<R, N, D2> {
        UserEndpoint {
            id: self.id,
            open_entropy: self.open_entropy,
            open_net: self.open_net,
            open_disk: open,
        }
    }
}

/// A disk behind a box: one type for a holder's disks whose drivers differ (the
/// anti-rollback counter is handed out set-only).
pub struct BoxedDisk(pub alloc::boxed::Box<dyn RawBlockDevice>);

impl RawBlockDevice for BoxedDisk {
    fn sectors(&self) -> u64 {
        self.0.sectors()
    }
    fn readonly(&self) -> bool {
        self.0.readonly()
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), ipc::DeviceError> {
        self.0.read(sector, buf)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), ipc::DeviceError> {
        self.0.write(sector, buf)
    }
    fn flush(&mut self) -> Result<(), ipc::DeviceError> {
        self.0.flush()
    }
}

/// A network device behind a box: what a program hands [`UserEndpoint`] when the
/// driver's type depends on the command line (the test image's stalling transport).
pub struct BoxedNet(pub alloc::boxed::Box<dyn RawNetDevice>);

impl RawNetDevice for BoxedNet {
    fn mac(&self) -> [u8; 6] {
        self.0.mac()
    }
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, ipc::DeviceError> {
        self.0.receive(buf)
    }
    fn transmit(&mut self, frame: &[u8]) -> Result<(), ipc::DeviceError> {
        self.0.transmit(frame)
    }
    fn reset(&mut self) -> Result<ipc::NetReset, ipc::DeviceError> {
        self.0.reset()
    }
}

/// What a refused IPC call was, in `IpcError`'s terms: a malformed frame is named by
/// the same check the kernel ran, run here on the bytes sent.
fn ipc_error(error: Error, frame: &[u8]) -> IpcError {
    match error {
        Error::Ipc(IpcError::MalformedFrame(_)) => {
            IpcError::MalformedFrame(if frame.len() > MAX_FRAME {
                FrameError::TooLong { len: frame.len() }
            } else {
                Frame::peek(frame)
                    .err()
                    .unwrap_or(FrameError::UnknownKind(frame.get(1).copied().unwrap_or(0)))
            })
        }
        Error::Ipc(other) => other,
        // A buffer the kernel could not read is this process's own bytes: not a case
        // that arises from a slice; the nearest kind is a frame the kernel refused.
        _ => IpcError::MalformedFrame(FrameError::Truncated { len: frame.len() }),
    }
}

/// Cancels its call when dropped before the reply was taken.
struct Outstanding(usize);

impl Drop for Outstanding {
    fn drop(&mut self) {
        let _ = call(number::CANCEL, [self.0, 0, 0]);
    }
}

impl<R: RawEntropyDevice, N: RawNetDevice, D: RawBlockDevice> Endpoint for UserEndpoint<R, N, D> {
    type EntropyDevice = R;
    type AuditFeed = UserAuditFeed;
    type Disk = D;
    type NetDevice = N;

    fn id(&self) -> ServiceId {
        self.id
    }

    async fn call(&self, service: ServiceId, request: &[u8]) -> Result<IpcBuffer, IpcError> {
        let id = call(
            number::CALL,
            [service as usize, request.as_ptr() as usize, request.len()],
        )
        .map_err(|e| ipc_error(e, request))?;
        let outstanding = Outstanding(id);
        let outcome = loop {
            // Asked with no room, the kernel says how long the reply is once it has
            // come (and keeps it), or that it has not come, or how the call ended.
            match call3(number::TAKE_REPLY, [id, 0, 0]) {
                Err((Error::Pending, _)) => YieldOnce(false).await,
                Err((Error::TooLong, len)) => {
                    let mut buffer = vec![0u8; len];
                    let taken = call3(
                        number::TAKE_REPLY,
                        [id, buffer.as_mut_ptr() as usize, buffer.len()],
                    );
                    let reply = taken
                        .map(|[len, _, _]| IpcBuffer::copy_from(&buffer[..len.min(buffer.len())]))
                        .map_err(|(error, _)| ipc_error(error, request));
                    buffer.zeroize();
                    break reply;
                }
                Ok(_) => break Ok(IpcBuffer::copy_from(&[])),
                Err((error, _)) => break Err(ipc_error(error, request)),
            }
        };
        // Taken or ended: the kernel holds nothing more of this call.
        core::mem::forget(outstanding);
        outcome
    }

    async fn receive(&self) -> Request {
        loop {
            if let Some(request) = self.try_receive() {
                return request;
            }
            YieldOnce(false).await;
        }
    }

    fn try_receive(&self) -> Option<Request> {
        // Asked with no room, the kernel says how long the next request is (and keeps
        // it queued), or that there is none: an idle poll allocates nothing.
        let len = match call3(number::RECEIVE, [0, 0, 0]) {
            Err((Error::TooLong, len)) => len,
            _ => return None,
        };
        let mut buffer = vec![0u8; len];
        let taken = call3(
            number::RECEIVE,
            [buffer.as_mut_ptr() as usize, buffer.len(), 0],
        );
        let request = match taken {
            // The sender's id in the low 16 bits, its generation above them.
            Ok([len, token, sender]) => Some(Request {
                sender: ServiceId::from_u16(sender as u16).unwrap_or(ServiceId::Kernel),
                sender_generation: (sender >> 16) as u32,
                frame: IpcBuffer::copy_from(&buffer[..len.min(buffer.len())]),
                token: ReplyToken(token as u32),
            }),
            Err(_) => None,
        };
        buffer.zeroize();
        request
    }

    fn reply(&self, token: ReplyToken, reply: &[u8]) -> Result<(), IpcError> {
        call(
            number::REPLY,
            [token.0 as usize, reply.as_ptr() as usize, reply.len()],
        )
        .map(|_| ())
        .map_err(|e| match e {
            Error::Ipc(IpcError::MalformedFrame(_)) => ipc_error(e, reply),
            Error::Ipc(other) => other,
            _ => IpcError::StaleReply,
        })
    }

    fn audit(&self, event: AuditEvent) {
        let record = AuditRecord {
            origin: ServiceId::Kernel,
            sequence: 0,
            event,
        }
        .encode();
        let _ = call(number::AUDIT, [record.as_ptr() as usize, record.len(), 0]);
    }

    fn console(&self, line: &str) {
        let mut end = line.len().min(256);
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        let _ = crate::console(&line.as_bytes()[..end]);
    }

    async fn yield_now(&self) {
        YieldOnce(false).await;
    }

    fn uptime_ms(&self) -> u64 {
        crate::uptime_ms()
    }

    fn claim_entropy_device(&self) -> Result<R, CapabilityError> {
        (self.open_entropy)()
    }

    fn claim_audit_feed(&self) -> Result<UserAuditFeed, CapabilityError> {
        match call(number::CLAIM, [Capability::AuditFeed as usize, 0, 0]) {
            Ok(_) => Ok(UserAuditFeed(())),
            Err(Error::Capability(why)) => Err(why),
            Err(_) => Err(CapabilityError::Absent),
        }
    }

    fn claim_disk(&self, capability: Capability) -> Result<D, CapabilityError> {
        (self.open_disk)(capability)
    }

    fn claim_net_device(&self) -> Result<N, CapabilityError> {
        (self.open_net)()
    }
}

/// Asks the kernel for a device this process cannot drive: refused (and audited);
/// the refusal says why.
fn claim_device(capability: Capability) -> CapabilityError {
    match call(number::CLAIM, [capability as usize, 0, 0]) {
        Err(Error::Capability(why)) => why,
        // NotSupported, or anything else: this process has no such device.
        _ => CapabilityError::Absent,
    }
}

/// The kernel's audit stream, for its holder (logd).
pub struct UserAuditFeed(());

impl AuditFeed for UserAuditFeed {
    fn pop(&mut self) -> Option<AuditRecord> {
        let mut bytes = [0u8; AuditRecord::ENCODED_LEN];
        match call(
            number::AUDIT_POP,
            [bytes.as_mut_ptr() as usize, bytes.len(), 0],
        ) {
            Ok(len) => AuditRecord::decode(&bytes[..len.min(bytes.len())]).ok(),
            Err(_) => None,
        }
    }

    fn lost(&self) -> AuditLoss {
        match call3(number::AUDIT_LOST, [0; 3]) {
            Ok([kernel, tasks, _]) => AuditLoss {
                kernel: kernel as u64,
                tasks: tasks as u64,
            },
            Err(_) => AuditLoss::default(),
        }
    }
}

/// A device a process cannot hold yet: no value of it exists.
pub enum NoDevice {}

impl RawEntropyDevice for NoDevice {
    fn read(&mut self, _: &mut [u8]) -> Result<usize, ipc::DeviceError> {
        match *self {}
    }
}

impl RawBlockDevice for NoDevice {
    fn sectors(&self) -> u64 {
        match *self {}
    }
    fn readonly(&self) -> bool {
        match *self {}
    }
    fn read(&mut self, _: u64, _: &mut [u8]) -> Result<(), ipc::DeviceError> {
        match *self {}
    }
    fn write(&mut self, _: u64, _: &[u8]) -> Result<(), ipc::DeviceError> {
        match *self {}
    }
    fn flush(&mut self) -> Result<(), ipc::DeviceError> {
        match *self {}
    }
}

impl RawNetDevice for NoDevice {
    fn mac(&self) -> [u8; 6] {
        match *self {}
    }
    fn receive(&mut self, _: &mut [u8]) -> Result<Option<usize>, ipc::DeviceError> {
        match *self {}
    }
    fn transmit(&mut self, _: &[u8]) -> Result<(), ipc::DeviceError> {
        match *self {}
    }
    fn reset(&mut self) -> Result<ipc::NetReset, ipc::DeviceError> {
        match *self {}
    }
}
