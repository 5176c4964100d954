//! The kernel object, the endpoints it hands to tasks, and the rules of IPC.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::future::{Future, poll_fn};
use core::task::Poll;

use ipc::frame::MAX_FRAME;
use ipc::{
    Action, AuditEvent, AuditRecord, Capability, CapabilityError, DeviceError, Endpoint, Frame,
    FrameError, FrameKind, IpcError, Operation, RawEntropyDevice, ReplyToken, Request, ServiceId,
    Verdict,
};

use crate::Platform;
use crate::executor::{Executor, YieldNow};
use crate::policy::{Grant, Policy, Rule, granted};

/// The bounds the kernel enforces.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Requests queued per task before callers get [`IpcError::QueueFull`].
    pub queue_capacity: usize,
    /// How long a call may wait for its reply.
    pub call_timeout_us: u64,
    /// Audit records held for logd before the oldest is dropped.
    pub audit_capacity: usize,
    /// Longest console line; longer lines are cut.
    pub console_line_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            queue_capacity: 8,
            call_timeout_us: 2_000_000,
            audit_capacity: 256,
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
}

struct Envelope {
    call: u32,
    sender: ServiceId,
    frame: Vec<u8>,
}

struct PendingCall {
    caller: ServiceId,
    callee: ServiceId,
    code: u16,
    reply: Option<Vec<u8>>,
}

enum DeviceSlot {
    Absent,
    Present(Box<dyn RawEntropyDevice>),
    Claimed,
}

struct State {
    inboxes: BTreeMap<ServiceId, VecDeque<Envelope>>,
    calls: BTreeMap<u32, PendingCall>,
    next_call: u32,
    audit: VecDeque<AuditRecord>,
    audit_sequence: u64,
    audit_dropped: u64,
    entropy_device: DeviceSlot,
    audit_feed_claimed: bool,
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
                    audit: VecDeque::new(),
                    audit_sequence: 0,
                    audit_dropped: 0,
                    entropy_device: DeviceSlot::Absent,
                    audit_feed_claimed: false,
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

    /// Puts the machine's raw entropy device where its manifest holder can claim it.
    pub fn install_entropy_device(&mut self, device: Box<dyn RawEntropyDevice>) {
        self.shared.state.borrow_mut().entropy_device = DeviceSlot::Present(device);
    }

    /// Starts task `id`, handing `body` the task's endpoint.
    ///
    /// # Panics
    /// If a task with this id is already running: ids are identities.
    pub fn spawn<F, Fut>(&mut self, id: ServiceId, body: F)
    where
        F: FnOnce(KernelEndpoint<P>) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        assert!(!self.executor.contains(id), "task {id} spawned twice");
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
    }

    /// Runs the tasks until `main` finishes or `deadline_us` (platform time) passes.
    /// Another task finishing is reported on the console as a failure: services are
    /// meant to serve until the machine stops.
    pub fn run(&mut self, main: ServiceId, deadline_us: u64) -> RunOutcome {
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
                if id == main {
                    main_finished = true;
                } else {
                    self.shared.kernel_line(&format!("FAIL task {id} exited"));
                }
            }
            if main_finished {
                return RunOutcome::MainFinished;
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

    fn record(&self, origin: ServiceId, event: AuditEvent) {
        let mut state = self.state.borrow_mut();
        let sequence = state.audit_sequence;
        state.audit_sequence += 1;
        if state.audit.len() >= self.limits.audit_capacity {
            state.audit.pop_front();
            state.audit_dropped += 1;
        }
        state.audit.push_back(AuditRecord {
            origin,
            sequence,
            event,
        });
    }

    fn kernel_audit(&self, subject: ServiceId, action: Action, verdict: Verdict, detail: usize) {
        self.record(
            ServiceId::Kernel,
            AuditEvent {
                subject,
                action,
                verdict,
                reason: 0,
                detail: u32::try_from(detail).unwrap_or(u32::MAX),
            },
        );
    }

    /// Admits a request: size, frame, kind, policy, route, queue. Every refusal and
    /// every policy decision is audited.
    fn submit(&self, caller: ServiceId, service: ServiceId, frame: &[u8]) -> Result<u32, IpcError> {
        let malformed = |error: FrameError| {
            self.kernel_audit(
                caller,
                Action::MalformedFrame { service },
                Verdict::Rejected,
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
            self.kernel_audit(caller, action, Verdict::Denied, frame.len());
            return Err(IpcError::Denied);
        }
        self.kernel_audit(caller, action, Verdict::Allowed, frame.len());

        let mut state = self.state.borrow_mut();
        let call = state.next_call;
        let inbox = state
            .inboxes
            .get_mut(&service)
            .ok_or(IpcError::NoSuchService)?;
        if inbox.len() >= self.limits.queue_capacity {
            return Err(IpcError::QueueFull);
        }
        inbox.push_back(Envelope {
            call,
            sender: caller,
            frame: frame.to_vec(),
        });
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
        Ok(call)
    }

    fn poll_reply(&self, call: u32, deadline_us: u64) -> Poll<Result<Vec<u8>, IpcError>> {
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
        let PendingCall {
            caller,
            callee,
            code,
            ..
        } = state.calls.remove(&call).expect("present above");
        if let Some(inbox) = state.inboxes.get_mut(&callee) {
            inbox.retain(|envelope| envelope.call != call);
        }
        drop(state);
        let operation = Operation::from_code(code).map_or("?", Operation::name);
        self.kernel_line(&format!(
            "task {callee} not answering: {operation} from {caller} timed out after {} ms",
            self.limits.call_timeout_us / 1000
        ));
        Poll::Ready(Err(IpcError::Timeout))
    }

    fn task_stopped(&self, id: ServiceId) {
        let mut state = self.state.borrow_mut();
        state.inboxes.remove(&id);
        // Calls to the stopped task end as PeerGone (poll_reply finds them missing).
        state.calls.retain(|_, pending| pending.callee != id);
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
        self.kernel_audit(task, Action::Claim(capability), verdict, 0);
        result
    }
}

/// The raw entropy device, as handed to its one holder. Only the kernel makes one.
pub struct DeviceHandle(Box<dyn RawEntropyDevice>);

impl RawEntropyDevice for DeviceHandle {
    fn read(&mut self, dest: &mut [u8]) -> Result<usize, DeviceError> {
        self.0.read(dest)
    }
}

/// The audit stream, as handed to its one holder. Only the kernel makes one.
pub struct AuditFeedHandle<P: Platform> {
    shared: Rc<Shared<P>>,
}

impl<P: Platform> ipc::AuditFeed for AuditFeedHandle<P> {
    fn pop(&mut self) -> Option<AuditRecord> {
        self.shared.state.borrow_mut().audit.pop_front()
    }

    fn dropped(&self) -> u64 {
        self.shared.state.borrow().audit_dropped
    }
}

/// A task's endpoint, bound at spawn to the task's identity.
pub struct KernelEndpoint<P: Platform> {
    shared: Rc<Shared<P>>,
    id: ServiceId,
}

impl<P: Platform> Endpoint for KernelEndpoint<P> {
    type EntropyDevice = DeviceHandle;
    type AuditFeed = AuditFeedHandle<P>;

    fn id(&self) -> ServiceId {
        self.id
    }

    async fn call(&self, service: ServiceId, request: &[u8]) -> Result<Vec<u8>, IpcError> {
        let call = self.shared.submit(self.id, service, request)?;
        let deadline = self.shared.platform.now_us() + self.shared.limits.call_timeout_us;
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
                pending.reply = Some(reply.to_vec());
                Ok(())
            }
            _ => Err(IpcError::StaleReply),
        }
    }

    fn audit(&self, event: AuditEvent) {
        self.shared.record(self.id, event);
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
        self.shared.claim(
            self.id,
            Capability::EntropyDevice,
            |state| match core::mem::replace(&mut state.entropy_device, DeviceSlot::Claimed) {
                DeviceSlot::Present(device) => Ok(DeviceHandle(device)),
                DeviceSlot::Absent => {
                    state.entropy_device = DeviceSlot::Absent;
                    Err(CapabilityError::Absent)
                }
                DeviceSlot::Claimed => Err(CapabilityError::AlreadyClaimed),
            },
        )
    }

    fn claim_audit_feed(&self) -> Result<AuditFeedHandle<P>, CapabilityError> {
        let shared = Rc::clone(&self.shared);
        self.shared.claim(self.id, Capability::AuditFeed, |state| {
            if core::mem::replace(&mut state.audit_feed_claimed, true) {
                Err(CapabilityError::AlreadyClaimed)
            } else {
                Ok(AuditFeedHandle { shared })
            }
        })
    }
}
