//! The kernel object, the endpoints it hands to tasks, and the rules of IPC.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use core::cell::RefCell;
use core::fmt;
use core::future::{Future, poll_fn};
use core::task::Poll;

use ipc::frame::MAX_FRAME;
use ipc::{
    Action, AuditEvent, AuditLoss, AuditRecord, Capability, CapabilityError, DeviceError, Endpoint,
    Frame, FrameError, FrameKind, IpcBuffer, IpcError, KernelReason, Operation, RawBlockDevice,
    RawEntropyDevice, RawNetDevice, ReplyToken, Request, ServiceId, Verdict,
};

use crate::Platform;
use crate::audit_stream::{Admitted, AuditStream};
use crate::executor::{Executor, YieldNow};
use crate::policy::{Grant, Policy, Rule, granted};

/// The bounds the kernel enforces.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Requests queued per task before callers get [`IpcError::QueueFull`].
    pub queue_capacity: usize,
    /// How long a call may wait for its reply.
    pub call_timeout_us: u64,
    /// Calls one task may have outstanding at once before it gets
    /// [`IpcError::TooManyCalls`].
    pub calls_per_task: usize,
    /// The kernel's own audit records held for logd before the oldest is dropped
    /// (and the loss announced).
    pub kernel_audit_capacity: usize,
    /// Audit records of one task held for logd before that task's oldest is dropped.
    pub task_audit_quota: usize,
    /// Longest console line; longer lines are cut.
    pub console_line_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            queue_capacity: 8,
            call_timeout_us: 2_000_000,
            calls_per_task: 4,
            kernel_audit_capacity: 256,
            task_audit_quota: 64,
            console_line_max: 240,
        }
    }
}

/// How a [`Kernel::run`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// The main task finished.
    MainFinished,
    /// The deadline passed first.
    DeadlineExceeded,
    /// Every task finished and none was the main task (a device image, whose
    /// services all exited): nothing is left to run, so waiting for the deadline
    /// would only spin.
    NoTasksLeft,
}

/// Why [`Kernel::spawn`] refused a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnError {
    /// The id is the kernel's own: records and decisions signed `kernel` must come
    /// from the kernel alone.
    ReservedId(ServiceId),
    /// A task with this id is already running: ids are identities.
    AlreadyRunning(ServiceId),
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReservedId(id) => write!(f, "task id {id} is reserved for the kernel"),
            Self::AlreadyRunning(id) => write!(f, "task {id} is already running"),
        }
    }
}

/// The kernel's tables, for tests and soak runs: each is bounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Calls outstanding (submitted, not yet answered, timed out or cancelled).
    pub calls_pending: usize,
    /// Requests waiting in every task's queue.
    pub requests_queued: usize,
    /// Audit records held for logd.
    pub audit_held: usize,
    /// Audit records lost so far.
    pub audit_lost: AuditLoss,
}

struct Envelope {
    call: u32,
    sender: ServiceId,
    /// The sender's generation when it called.
    sender_generation: u32,
    frame: IpcBuffer,
}

struct PendingCall {
    caller: ServiceId,
    callee: ServiceId,
    code: u16,
    reply: Option<IpcBuffer>,
}

/// A device the manifest hands to one holder.
enum DeviceSlot<T> {
    Absent,
    Present(T),
    Claimed,
}

impl<T> DeviceSlot<T> {
    /// Hands the device out once.
    fn take(&mut self) -> Result<T, CapabilityError> {
        match core::mem::replace(self, DeviceSlot::Claimed) {
            DeviceSlot::Present(device) => Ok(device),
            DeviceSlot::Absent => {
                *self = DeviceSlot::Absent;
                Err(CapabilityError::Absent)
            }
            DeviceSlot::Claimed => Err(CapabilityError::AlreadyClaimed),
        }
    }
}

struct State {
    inboxes: BTreeMap<ServiceId, VecDeque<Envelope>>,
    calls: BTreeMap<u32, PendingCall>,
    next_call: u32,
    /// (callee, caller) pairs with at least one delivered request: a service may
    /// write audit records naming only callers it has really served.
    served: BTreeSet<(ServiceId, ServiceId)>,
    audit: AuditStream,
    entropy_device: DeviceSlot<Box<dyn RawEntropyDevice>>,
    disks: BTreeMap<Capability, DeviceSlot<Box<dyn RawBlockDevice>>>,
    net_device: DeviceSlot<Box<dyn RawNetDevice>>,
    /// The task that claimed the audit feed (one holder).
    audit_feed_holder: Option<ServiceId>,
    /// How many times each task's service was restarted (0: never), by task id (every
    /// call reads its caller's: an index, not a search).
    generations: [u32; ServiceId::ALL.len()],
}

struct Shared<P: Platform> {
    platform: P,
    limits: Limits,
    policy: Policy,
    grants: &'static [Grant],
    state: RefCell<State>,
}

/// The kernel: tasks, their endpoints, and the state they share.
pub struct Kernel<P: Platform> {
    shared: Rc<Shared<P>>,
    executor: Executor,
}

impl<P: Platform> Kernel<P> {
    /// A kernel with the given policy rules and capability grants (normally
    /// [`crate::config::POLICY`] and [`crate::config::GRANTS`]).
    pub fn new(
        platform: P,
        rules: &'static [Rule],
        grants: &'static [Grant],
        limits: Limits,
    ) -> Self {
        Self {
            shared: Rc::new(Shared {
                platform,
                limits,
                policy: Policy::new(rules),
                grants,
                state: RefCell::new(State {
                    inboxes: BTreeMap::new(),
                    calls: BTreeMap::new(),
                    next_call: 1,
                    served: BTreeSet::new(),
                    audit: AuditStream::new(
                        limits.kernel_audit_capacity,
                        limits.task_audit_quota,
                        audit_journal::LIMITS,
                    ),
                    entropy_device: DeviceSlot::Absent,
                    disks: BTreeMap::new(),
                    net_device: DeviceSlot::Absent,
                    audit_feed_holder: None,
                    generations: [0; ServiceId::ALL.len()],
                }),
            }),
            executor: Executor::default(),
        }
    }

    /// The platform.
    pub fn platform(&self) -> &P {
        &self.shared.platform
    }

    /// The number of policy rules.
    pub fn policy_rules(&self) -> usize {
        self.shared.policy.len()
    }

    /// The sizes of the kernel's tables.
    pub fn stats(&self) -> KernelStats {
        let state = self.shared.state.borrow();
        KernelStats {
            calls_pending: state.calls.len(),
            requests_queued: state.inboxes.values().map(VecDeque::len).sum(),
            audit_held: state.audit.held(),
            audit_lost: state.audit.lost(),
        }
    }

    /// Puts the machine's raw entropy device where its manifest holder can claim it.
    pub fn install_entropy_device(&mut self, device: Box<dyn RawEntropyDevice>) {
        self.shared.state.borrow_mut().entropy_device = DeviceSlot::Present(device);
    }

    /// Puts a disk where the holder of `capability` (a disk capability, chosen by the
    /// disk's serial) can claim it.
    pub fn install_disk(&mut self, capability: Capability, disk: Box<dyn RawBlockDevice>) {
        self.shared
            .state
            .borrow_mut()
            .disks
            .insert(capability, DeviceSlot::Present(disk));
    }

    /// Puts the machine's network device where its manifest holder can claim it.
    pub fn install_net_device(&mut self, device: Box<dyn RawNetDevice>) {
        self.shared.state.borrow_mut().net_device = DeviceSlot::Present(device);
    }

    /// Starts task `id`, handing `body` the task's endpoint.
    ///
    /// # Errors
    /// [`SpawnError`] when `id` is the kernel's or already running; `body` is not
    /// called.
    pub fn spawn<F, Fut>(&mut self, id: ServiceId, body: F) -> Result<(), SpawnError>
    where
        F: FnOnce(KernelEndpoint<P>) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        if id == ServiceId::Kernel {
            return Err(SpawnError::ReservedId(id));
        }
        if self.executor.contains(id) {
            return Err(SpawnError::AlreadyRunning(id));
        }
        self.shared
            .state
            .borrow_mut()
            .inboxes
            .insert(id, VecDeque::new());
        let endpoint = KernelEndpoint {
            shared: Rc::clone(&self.shared),
            id,
        };
        self.executor.push(id, body(endpoint));
        Ok(())
    }

    /// Runs the tasks until `main` finishes or `deadline_us` (platform time) passes.
    /// Another task finishing is reported on the console as a failure: services are
    /// meant to serve until the machine stops.
    ///
    /// A device image has no main task (`None`): its services serve until the
    /// deadline, which a device sets to `u64::MAX`, or until none is left
    /// ([`RunOutcome::NoTasksLeft`]).
    pub fn run(&mut self, main: Option<ServiceId>, deadline_us: u64) -> RunOutcome {
        loop {
            let shared = &self.shared;
            let finished = self.executor.poll_all(|id, poll| {
                shared.platform.poll_started(id);
                let _ = poll();
                shared.platform.poll_finished(id);
            });
            let mut main_finished = false;
            for id in finished {
                self.shared.task_stopped(id);
                if Some(id) == main {
                    main_finished = true;
                } else {
                    self.shared.kernel_line(&format!("FAIL task {id} exited"));
                }
            }
            if main_finished {
                return RunOutcome::MainFinished;
            }
            if self.executor.is_empty() {
                return RunOutcome::NoTasksLeft;
            }
            if self.shared.platform.now_us() >= deadline_us {
                return RunOutcome::DeadlineExceeded;
            }
        }
    }
}

impl<P: Platform> Shared<P> {
    fn kernel_line(&self, line: &str) {
        self.platform
            .console_line(ServiceId::Kernel.console_prefix(), line);
    }

    /// Queues a record in its origin's budget; announces the first lost kernel record.
    fn record(&self, origin: ServiceId, event: AuditEvent) {
        let admitted = self.state.borrow_mut().audit.push(origin, event);
        if admitted == (Admitted::KernelRecordDropped { first: true }) {
            self.kernel_line(
                "FAIL audit: the stream dropped a kernel record before logd took it; \
                 the trail is incomplete",
            );
        }
    }

    fn kernel_audit(
        &self,
        subject: ServiceId,
        action: Action,
        verdict: Verdict,
        reason: u16,
        detail: usize,
    ) {
        self.record(
            ServiceId::Kernel,
            AuditEvent {
                subject,
                action,
                verdict,
                reason,
                detail: u32::try_from(detail).unwrap_or(u32::MAX),
            },
        );
    }

    /// A record written by task `origin`: kept when it is the task's to write,
    /// otherwise refused and replaced by a kernel record naming what was claimed.
    ///
    /// A task may record calls to its own service whose subject is itself or a task
    /// whose request it was delivered, and its own health. Malformed frames, claims
    /// and replies are the kernel's to record.
    fn task_record(&self, origin: ServiceId, event: AuditEvent) {
        let allowed = match event.action {
            Action::Call { service, .. } => {
                service == origin
                    && (event.subject == origin
                        || self
                            .state
                            .borrow()
                            .served
                            .contains(&(origin, event.subject)))
            }
            Action::Health => event.subject == origin,
            Action::MalformedFrame { .. }
            | Action::Claim(_)
            | Action::Reply
            | Action::Syscall { .. }
            | Action::Fault { .. }
            | Action::Restart { .. } => false,
        };
        if allowed {
            self.record(origin, event);
        } else {
            // The refusal names the action and, in `detail`, the subject claimed.
            self.kernel_audit(
                origin,
                event.action,
                Verdict::Rejected,
                KernelReason::ForgedRecord.code(),
                usize::from(event.subject as u16),
            );
        }
    }

    /// Admits a request: size, frame, kind, policy, the caller's call bound, route,
    /// queue. Every refusal is audited with its reason; the call is recorded as
    /// allowed only once the request sits in the callee's queue.
    fn submit(&self, caller: ServiceId, service: ServiceId, frame: &[u8]) -> Result<u32, IpcError> {
        let malformed = |error: FrameError| {
            self.kernel_audit(
                caller,
                Action::MalformedFrame { service },
                Verdict::Rejected,
                0,
                frame.len(),
            );
            Err(IpcError::MalformedFrame(error))
        };
        if frame.len() > MAX_FRAME {
            return malformed(FrameError::TooLong { len: frame.len() });
        }
        let code = match Frame::peek(frame) {
            Ok((FrameKind::Request, code)) => code,
            Ok((kind, _)) => return malformed(FrameError::UnknownKind(kind as u8)),
            Err(error) => return malformed(error),
        };
        let action = Action::Call { service, code };
        if !self.policy.allows(caller, service, code) {
            self.kernel_audit(caller, action, Verdict::Denied, 0, frame.len());
            return Err(IpcError::Denied);
        }
        let admitted = self.deliver(caller, service, code, frame);
        match admitted {
            Ok(_) => self.kernel_audit(caller, action, Verdict::Allowed, 0, frame.len()),
            Err((_, reason)) => {
                self.kernel_audit(caller, action, Verdict::Failed, reason.code(), frame.len())
            }
        }
        admitted.map_err(|(error, _)| error)
    }

    /// Puts the request in the callee's queue and opens its call.
    fn deliver(
        &self,
        caller: ServiceId,
        service: ServiceId,
        code: u16,
        frame: &[u8],
    ) -> Result<u32, (IpcError, KernelReason)> {
        let mut state = self.state.borrow_mut();
        let outstanding = state
            .calls
            .values()
            .filter(|pending| pending.caller == caller)
            .count();
        if outstanding >= self.limits.calls_per_task {
            return Err((IpcError::TooManyCalls, KernelReason::TooManyCalls));
        }
        let queued = match state.inboxes.get(&service) {
            None => return Err((IpcError::NoSuchService, KernelReason::NoSuchService)),
            Some(inbox) => inbox.len(),
        };
        if queued >= self.limits.queue_capacity {
            return Err((IpcError::QueueFull, KernelReason::QueueFull));
        }
        // Ids wrap; skip any still in use (the table is bounded, so this ends).
        let mut call = state.next_call;
        while state.calls.contains_key(&call) {
            call = call.wrapping_add(1).max(1);
        }
        state.next_call = call.wrapping_add(1).max(1);
        state.calls.insert(
            call,
            PendingCall {
                caller,
                callee: service,
                code,
                reply: None,
            },
        );
        state.served.insert((service, caller));
        let sender_generation = state.generations[caller as usize];
        if let Some(inbox) = state.inboxes.get_mut(&service) {
            inbox.push_back(Envelope {
                call,
                sender: caller,
                sender_generation,
                frame: IpcBuffer::copy_from(frame),
            });
        }
        Ok(call)
    }

    fn poll_reply(&self, call: u32, deadline_us: u64) -> Poll<Result<IpcBuffer, IpcError>> {
        let mut state = self.state.borrow_mut();
        let Some(pending) = state.calls.get_mut(&call) else {
            return Poll::Ready(Err(IpcError::PeerGone));
        };
        if let Some(reply) = pending.reply.take() {
            state.calls.remove(&call);
            return Poll::Ready(Ok(reply));
        }
        if self.platform.now_us() < deadline_us {
            return Poll::Pending;
        }
        let Some(PendingCall {
            caller,
            callee,
            code,
            ..
        }) = state.calls.remove(&call)
        else {
            return Poll::Ready(Err(IpcError::PeerGone));
        };
        if let Some(inbox) = state.inboxes.get_mut(&callee) {
            inbox.retain(|envelope| envelope.call != call);
        }
        drop(state);
        self.kernel_audit(
            caller,
            Action::Call {
                service: callee,
                code,
            },
            Verdict::Failed,
            KernelReason::Timeout.code(),
            0,
        );
        let operation = Operation::from_code(code).map_or("?", Operation::name);
        self.kernel_line(&format!(
            "not answering: task {callee}, {operation} from {caller}, timed out after {} ms",
            self.limits.call_timeout_us / 1000
        ));
        Poll::Ready(Err(IpcError::Timeout))
    }

    /// Forgets a call whose caller dropped it before taking the reply: the request
    /// leaves the callee's queue if it is still there, a stored reply is wiped (its
    /// buffer zeroizes on drop), and the cancellation is recorded. A call that
    /// already completed is not in the table, and nothing happens.
    fn cancel(&self, call: u32) {
        let mut state = self.state.borrow_mut();
        let Some(pending) = state.calls.remove(&call) else {
            return;
        };
        if let Some(inbox) = state.inboxes.get_mut(&pending.callee) {
            inbox.retain(|envelope| envelope.call != call);
        }
        drop(state);
        self.kernel_audit(
            pending.caller,
            Action::Call {
                service: pending.callee,
                code: pending.code,
            },
            Verdict::Failed,
            KernelReason::Cancelled.code(),
            0,
        );
    }

    fn task_stopped(&self, id: ServiceId) {
        self.state.borrow_mut().inboxes.remove(&id);
        self.fail_calls_to(id);
    }

    /// Task `id`'s service starts over in a new process (the kernel restarts what
    /// faulted): every call to it still open, queued or taken and not answered, ends
    /// now as `PeerGone` (recorded), never at its deadline, and a request the old
    /// process had not taken is not delivered to the new one; the audit feed, if it
    /// held it, can be claimed again; its generation goes up. Returns the new
    /// generation.
    fn service_restarted(&self, id: ServiceId) -> u32 {
        let redelivered = {
            let mut state = self.state.borrow_mut();
            if let Some(inbox) = state.inboxes.get_mut(&id) {
                inbox.clear();
            }
            if state.audit_feed_holder == Some(id) {
                state.audit_feed_holder = None;
                Some(state.audit.holder_restarted())
            } else {
                None
            }
        };
        if let Some(records) = redelivered {
            let line = alloc::format!(
                "audit: {}'s journal went with its process: the kernel's copy of it ({records} records) goes to the new process",
                id.name(),
            );
            self.kernel_line(&line);
        }
        self.fail_calls_to(id);
        let mut state = self.state.borrow_mut();
        let generation = &mut state.generations[id as usize];
        *generation = generation.wrapping_add(1);
        *generation
    }

    /// Ends every call whose callee is `id` and that `id` has not answered as
    /// `PeerGone` (poll_reply finds it missing), each recorded. A call it answered
    /// keeps its reply for the caller to take: the operation happened, and a caller
    /// told otherwise might repeat it.
    fn fail_calls_to(&self, id: ServiceId) {
        let mut state = self.state.borrow_mut();
        let mut gone = alloc::vec::Vec::new();
        state.calls.retain(|_, pending| {
            if pending.callee == id && pending.reply.is_none() {
                gone.push((pending.caller, pending.code));
                false
            } else {
                true
            }
        });
        drop(state);
        for (caller, code) in gone {
            self.kernel_audit(
                caller,
                Action::Call { service: id, code },
                Verdict::Failed,
                KernelReason::PeerGone.code(),
                0,
            );
        }
    }

    fn claim<T>(
        &self,
        task: ServiceId,
        capability: Capability,
        take: impl FnOnce(&mut State) -> Result<T, CapabilityError>,
    ) -> Result<T, CapabilityError> {
        let result = if granted(self.grants, task, capability) {
            take(&mut self.state.borrow_mut())
        } else {
            Err(CapabilityError::NotGranted)
        };
        let verdict = match result {
            Ok(_) => Verdict::Allowed,
            Err(CapabilityError::Absent) => Verdict::Failed,
            Err(_) => Verdict::Denied,
        };
        self.kernel_audit(task, Action::Claim(capability), verdict, 0, 0);
        result
    }
}

/// Cancels its call when dropped before the call completed (see [`Shared::cancel`]).
struct OutstandingCall<'a, P: Platform> {
    shared: &'a Shared<P>,
    call: u32,
}

impl<P: Platform> Drop for OutstandingCall<'_, P> {
    fn drop(&mut self) {
        self.shared.cancel(self.call);
    }
}

/// The raw entropy device, as handed to its one holder. Only the kernel makes one.
pub struct DeviceHandle(Box<dyn RawEntropyDevice>);

impl RawEntropyDevice for DeviceHandle {
    fn read(&mut self, dest: &mut [u8]) -> Result<usize, DeviceError> {
        self.0.read(dest)
    }
}

/// A disk, as handed to its one holder. Only the kernel makes one.
pub struct DiskHandle(Box<dyn RawBlockDevice>);

impl RawBlockDevice for DiskHandle {
    fn sectors(&self) -> u64 {
        self.0.sectors()
    }
    fn readonly(&self) -> bool {
        self.0.readonly()
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        self.0.read(sector, buf)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), DeviceError> {
        self.0.write(sector, buf)
    }
    fn flush(&mut self) -> Result<(), DeviceError> {
        self.0.flush()
    }
}

/// The network device, as handed to its one holder. Only the kernel makes one.
pub struct NetHandle(Box<dyn RawNetDevice>);

impl RawNetDevice for NetHandle {
    fn mac(&self) -> [u8; 6] {
        self.0.mac()
    }
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, DeviceError> {
        self.0.receive(buf)
    }
    fn transmit(&mut self, frame: &[u8]) -> Result<(), DeviceError> {
        self.0.transmit(frame)
    }
    fn reset(&mut self) -> Result<ipc::NetReset, DeviceError> {
        self.0.reset()
    }
}

/// The audit stream, as handed to its one holder. Only the kernel makes one.
pub struct AuditFeedHandle<P: Platform> {
    shared: Rc<Shared<P>>,
}

impl<P: Platform> ipc::AuditFeed for AuditFeedHandle<P> {
    fn pop(&mut self) -> Option<AuditRecord> {
        self.shared.state.borrow_mut().audit.pop()
    }

    fn lost(&self) -> AuditLoss {
        self.shared.state.borrow().audit.lost()
    }
}

/// A task's endpoint, bound at spawn to the task's identity.
pub struct KernelEndpoint<P: Platform> {
    shared: Rc<Shared<P>>,
    id: ServiceId,
}

impl<P: Platform> KernelEndpoint<P> {
    /// Submits a call without waiting: the request is checked and queued exactly as
    /// by [`Endpoint::call`], and the call's id comes back. The kernel's process layer
    /// uses it for a user-mode process, which polls with [`KernelEndpoint::poll_call`]
    /// and must cancel what it no longer waits for.
    ///
    /// # Errors
    /// As [`Endpoint::call`] before delivery.
    pub fn submit_call(&self, service: ServiceId, request: &[u8]) -> Result<u32, IpcError> {
        self.shared.submit(self.id, service, request)
    }

    /// The deadline of a call submitted now (platform microseconds).
    pub fn call_deadline(&self) -> u64 {
        self.shared.platform.now_us() + self.shared.limits.call_timeout_us
    }

    /// Whether `call` is outstanding and this task's own.
    fn owns_call(&self, call: u32) -> bool {
        self.shared
            .state
            .borrow()
            .calls
            .get(&call)
            .is_some_and(|pending| pending.caller == self.id)
    }

    /// The length of `call`'s reply if it has come (the reply stays until taken).
    pub fn reply_len(&self, call: u32) -> Option<usize> {
        let state = self.shared.state.borrow();
        let pending = state.calls.get(&call)?;
        if pending.caller != self.id {
            return None;
        }
        pending.reply.as_ref().map(|reply| reply.len())
    }

    /// Polls a call this task submitted with [`KernelEndpoint::submit_call`]: its reply,
    /// or its end (timeout past `deadline_us`, the callee gone). A call id that is not
    /// this task's is [`IpcError::PeerGone`], and nothing of the other call is touched.
    pub fn poll_call(&self, call: u32, deadline_us: u64) -> Poll<Result<IpcBuffer, IpcError>> {
        if !self.owns_call(call) {
            return Poll::Ready(Err(IpcError::PeerGone));
        }
        self.shared.poll_reply(call, deadline_us)
    }

    /// Cancels a call this task submitted (as dropping [`Endpoint::call`]'s future
    /// does); a call that is not this task's is left alone.
    pub fn cancel_call(&self, call: u32) {
        if self.owns_call(call) {
            self.shared.cancel(call);
        }
    }

    /// The length of the next request in this task's queue, if any (it stays queued).
    pub fn next_request_len(&self) -> Option<usize> {
        let state = self.shared.state.borrow();
        state
            .inboxes
            .get(&self.id)?
            .front()
            .map(|envelope| envelope.frame.len())
    }

    /// Claims `capability` for this task the way every claim goes: the manifest's
    /// grant first, then `take` (which hands out what the capability stands for, or
    /// says why not), and an audit record of the decision. For the kernel's process
    /// layer, whose device capabilities are windows it maps rather than drivers
    /// kernel-core holds.
    ///
    /// # Errors
    /// [`CapabilityError::NotGranted`] without a grant (`take` is not called), or
    /// what `take` says.
    pub fn claim_with<T>(
        &self,
        capability: Capability,
        take: impl FnOnce() -> Result<T, CapabilityError>,
    ) -> Result<T, CapabilityError> {
        self.shared.claim(self.id, capability, |_| take())
    }

    /// This task's service starts over in a new process: every call to it still open
    /// ends now as `PeerGone` (each recorded), requests the old process had not taken
    /// are dropped, the audit feed it held can be claimed again, and its generation
    /// goes up (returned). Its own calls as a caller are the caller's to cancel.
    pub fn service_restarted(&self) -> u32 {
        self.shared.service_restarted(self.id)
    }

    /// How many times this task's service was restarted.
    pub fn generation(&self) -> u32 {
        self.shared.state.borrow().generations[self.id as usize]
    }

    /// A record written by the kernel (origin [`ServiceId::Kernel`]) about this
    /// endpoint's task: what the kernel's process layer decides about a user-mode
    /// process it runs for the task (a refused system call, a fault, the process
    /// watchdog, a restart). Only those three actions are accepted; any other is the kernel's IPC
    /// or capability layer's to record, and is ignored here.
    pub fn kernel_record(&self, action: Action, verdict: Verdict, reason: u16, detail: u32) {
        if matches!(
            action,
            Action::Syscall { .. } | Action::Fault { .. } | Action::Restart { .. }
        ) {
            self.shared
                .kernel_audit(self.id, action, verdict, reason, detail as usize);
        }
    }
}

impl<P: Platform> Endpoint for KernelEndpoint<P> {
    type EntropyDevice = DeviceHandle;
    type AuditFeed = AuditFeedHandle<P>;
    type Disk = DiskHandle;
    type NetDevice = NetHandle;

    fn id(&self) -> ServiceId {
        self.id
    }

    async fn call(&self, service: ServiceId, request: &[u8]) -> Result<IpcBuffer, IpcError> {
        let call = self.shared.submit(self.id, service, request)?;
        let _outstanding = OutstandingCall {
            shared: &self.shared,
            call,
        };
        let deadline = self.shared.platform.now_us() + self.shared.limits.call_timeout_us;
        // Every ready outcome removes the call from the table, so the guard's drop
        // then finds nothing; only a call dropped while pending is cancelled.
        poll_fn(|_| self.shared.poll_reply(call, deadline)).await
    }

    async fn receive(&self) -> Request {
        poll_fn(|_| self.try_receive().map_or(Poll::Pending, Poll::Ready)).await
    }

    fn try_receive(&self) -> Option<Request> {
        let mut state = self.shared.state.borrow_mut();
        let envelope = state.inboxes.get_mut(&self.id)?.pop_front()?;
        Some(Request {
            sender: envelope.sender,
            sender_generation: envelope.sender_generation,
            frame: envelope.frame,
            token: ReplyToken(envelope.call),
        })
    }

    fn reply(&self, token: ReplyToken, reply: &[u8]) -> Result<(), IpcError> {
        match Frame::peek(reply) {
            Ok((FrameKind::Reply | FrameKind::Error, _)) => {}
            Ok((kind, _)) => {
                return Err(IpcError::MalformedFrame(FrameError::UnknownKind(
                    kind as u8,
                )));
            }
            Err(error) => return Err(IpcError::MalformedFrame(error)),
        }
        let mut state = self.shared.state.borrow_mut();
        match state.calls.get_mut(&token.0) {
            Some(pending) if pending.callee == self.id && pending.reply.is_none() => {
                pending.reply = Some(IpcBuffer::copy_from(reply));
                Ok(())
            }
            _ => {
                drop(state);
                self.shared.kernel_audit(
                    self.id,
                    Action::Reply,
                    Verdict::Rejected,
                    KernelReason::StaleReply.code(),
                    reply.len(),
                );
                Err(IpcError::StaleReply)
            }
        }
    }

    fn audit(&self, event: AuditEvent) {
        self.shared.task_record(self.id, event);
    }

    fn console(&self, line: &str) {
        let max = self.shared.limits.console_line_max;
        let clean: String = line
            .chars()
            .take(max)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        self.shared
            .platform
            .console_line(self.id.console_prefix(), &clean);
    }

    async fn yield_now(&self) {
        YieldNow::new().await;
    }

    fn uptime_ms(&self) -> u64 {
        self.shared.platform.now_us() / 1000
    }

    fn claim_entropy_device(&self) -> Result<DeviceHandle, CapabilityError> {
        self.shared
            .claim(self.id, Capability::EntropyDevice, |state| {
                state.entropy_device.take().map(DeviceHandle)
            })
    }

    fn claim_disk(&self, capability: Capability) -> Result<DiskHandle, CapabilityError> {
        if capability.disk_serial().is_none() {
            // Not a disk: nobody can be granted it through this call.
            self.shared
                .kernel_audit(self.id, Action::Claim(capability), Verdict::Denied, 0, 0);
            return Err(CapabilityError::NotGranted);
        }
        self.shared.claim(self.id, capability, |state| {
            state
                .disks
                .get_mut(&capability)
                .map_or(Err(CapabilityError::Absent), DeviceSlot::take)
                .map(DiskHandle)
        })
    }

    fn claim_net_device(&self) -> Result<NetHandle, CapabilityError> {
        self.shared.claim(self.id, Capability::NetDevice, |state| {
            state.net_device.take().map(NetHandle)
        })
    }

    fn claim_audit_feed(&self) -> Result<AuditFeedHandle<P>, CapabilityError> {
        let shared = Rc::clone(&self.shared);
        let id = self.id;
        self.shared.claim(self.id, Capability::AuditFeed, |state| {
            if state.audit_feed_holder.is_some() {
                Err(CapabilityError::AlreadyClaimed)
            } else {
                state.audit_feed_holder = Some(id);
                Ok(AuditFeedHandle { shared })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;

    #[derive(Default)]
    struct Clock(Cell<u64>);

    impl Platform for Clock {
        fn now_us(&self) -> u64 {
            self.0.set(self.0.get() + 1);
            self.0.get()
        }
        fn console_line(&self, _: &str, _: &str) {}
    }

    static RULES: &[Rule] = &[Rule {
        caller: ServiceId::Selftest,
        operation: Operation::LogdQuery,
    }];

    #[test]
    fn call_ids_wrap_past_zero_and_skip_ids_in_use() {
        let (kernel, _, _) = logd_and_selftest(&[]);
        let frame = Frame::request(Operation::LogdQuery, &[]).encode().unwrap();
        kernel.shared.state.borrow_mut().next_call = u32::MAX;
        let first = kernel
            .shared
            .submit(ServiceId::Selftest, ServiceId::Logd, &frame)
            .unwrap();
        assert_eq!(first, u32::MAX);
        let second = kernel
            .shared
            .submit(ServiceId::Selftest, ServiceId::Logd, &frame)
            .unwrap();
        assert_eq!(second, 1, "0 is never a call id");
        // 2 is taken (pretend an old call is still outstanding): the next id skips it.
        kernel.shared.state.borrow_mut().calls.insert(
            2,
            PendingCall {
                caller: ServiceId::Logd,
                callee: ServiceId::Selftest,
                code: 0,
                reply: None,
            },
        );
        let third = kernel
            .shared
            .submit(ServiceId::Selftest, ServiceId::Logd, &frame)
            .unwrap();
        assert_eq!(third, 3);
    }

    /// A kernel with logd's inbox, and the endpoints of logd and the selftest.
    fn logd_and_selftest(
        grants: &'static [Grant],
    ) -> (Kernel<Clock>, KernelEndpoint<Clock>, KernelEndpoint<Clock>) {
        let kernel = Kernel::new(Clock::default(), RULES, grants, Limits::default());
        kernel
            .shared
            .state
            .borrow_mut()
            .inboxes
            .insert(ServiceId::Logd, VecDeque::new());
        let endpoint = |id| KernelEndpoint {
            shared: Rc::clone(&kernel.shared),
            id,
        };
        let (logd, selftest) = (endpoint(ServiceId::Logd), endpoint(ServiceId::Selftest));
        (kernel, logd, selftest)
    }

    #[test]
    fn a_restarted_service_ends_every_call_to_it_and_frees_its_audit_feed() {
        static GRANTS: &[Grant] = &[Grant {
            task: ServiceId::Logd,
            capability: Capability::AuditFeed,
        }];
        let (kernel, logd, selftest) = logd_and_selftest(GRANTS);
        let frame = Frame::request(Operation::LogdQuery, &[]).encode().unwrap();
        let taken = selftest.submit_call(ServiceId::Logd, &frame).unwrap();
        let queued = selftest.submit_call(ServiceId::Logd, &frame).unwrap();
        // The old process took one request and never answered; the other waits.
        assert!(logd.try_receive().is_some());
        assert!(logd.claim_audit_feed().is_ok());
        assert_eq!(
            logd.claim_audit_feed().err(),
            Some(CapabilityError::AlreadyClaimed)
        );
        while kernel.shared.state.borrow_mut().audit.pop().is_some() {}

        assert_eq!(logd.generation(), 0);
        assert_eq!(logd.service_restarted(), 1);
        assert_eq!(logd.generation(), 1);

        // Both calls end now, not at their deadline; the new process gets nothing old.
        for call in [taken, queued] {
            assert_eq!(
                selftest.poll_call(call, u64::MAX),
                Poll::Ready(Err(IpcError::PeerGone))
            );
        }
        assert!(logd.next_request_len().is_none());
        let mut failed = 0;
        while let Some(record) = kernel.shared.state.borrow_mut().audit.pop() {
            if record.event.verdict == Verdict::Failed
                && record.event.reason == KernelReason::PeerGone.code()
                && record.event.subject == ServiceId::Selftest
            {
                failed += 1;
            }
        }
        assert_eq!(failed, 2, "each ended call is recorded");
        // The new process can claim the feed again; a second claim is still refused.
        assert!(logd.claim_audit_feed().is_ok());
        assert_eq!(
            logd.claim_audit_feed().err(),
            Some(CapabilityError::AlreadyClaimed)
        );
    }

    #[test]
    fn a_request_carries_its_senders_generation_stamped_when_it_called() {
        let (_kernel, logd, selftest) = logd_and_selftest(&[]);
        let frame = Frame::request(Operation::LogdQuery, &[]).encode().unwrap();
        selftest.submit_call(ServiceId::Logd, &frame).unwrap();
        let first = logd.try_receive().unwrap();
        assert_eq!(
            (first.sender, first.sender_generation),
            (ServiceId::Selftest, 0)
        );
        // The sender's task restarted: its new process's calls say so.
        assert_eq!(selftest.service_restarted(), 1);
        selftest.submit_call(ServiceId::Logd, &frame).unwrap();
        let second = logd.try_receive().unwrap();
        assert_eq!(
            (second.sender, second.sender_generation),
            (ServiceId::Selftest, 1)
        );
    }

    #[test]
    fn an_answered_call_survives_its_callees_restart() {
        let (_kernel, logd, selftest) = logd_and_selftest(&[]);
        let frame = Frame::request(Operation::LogdQuery, &[]).encode().unwrap();
        let call = selftest.submit_call(ServiceId::Logd, &frame).unwrap();
        let request = logd.try_receive().unwrap();
        let reply = Frame::reply(&[7]).encode().unwrap();
        logd.reply(request.token, &reply).unwrap();
        // logd answered, then its process faulted before the caller took the reply.
        logd.service_restarted();
        match selftest.poll_call(call, u64::MAX) {
            Poll::Ready(Ok(got)) => assert_eq!(got.as_slice(), reply.as_slice()),
            other => panic!("the answered call ended as {other:?}"),
        }
    }
}
