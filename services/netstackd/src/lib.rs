//! netstackd: the network stack, and the only holder of the network device.
//!
//! netstackd claims the virtio-net capability (the boot manifest grants it to
//! netstackd alone), runs smoltcp's TCP/IPv4 on it and on a loopback interface
//! ([`stack`]), and offers bounded stream sockets over IPC
//! (`service_api::netstackd`): `LISTEN`, `ACCEPT`, `CONNECT`, `SEND`, `RECV`,
//! `CLOSE`, `STATUS`, `WAIT`. The policy decides who may call them (dsoftbusd, and
//! the selftest for its loopback sessions).
//!
//! - **Configured per boot**: the address and gateway come from the kernel command
//!   line ([`config`]); smoltcp's random seed comes from rngd; time is the kernel's
//!   clock. Without a network device (or with a configuration it refuses) netstackd
//!   serves the loopback interface alone and says so.
//! - **Polled from its task**: each pass takes a bounded number of packets per
//!   interface and a bounded number of requests, answers what can be answered, and
//!   yields. A request that asked to wait (`wait_ms`) is parked and answered when what
//!   it waits for happens or its wait is over; at most [`MAX_PARKED`] are parked.
//! - **Audited**: every request gets a record (caller, operation, verdict, the error
//!   code, and the handle or byte count), never the bytes carried.
//! - **The device comes back** ([`recovery`]): a network device that stops (a missed
//!   transmit deadline, a device error) is reset and set up again, at once and then
//!   with a backoff, for as long as it takes; each step is a console line and a health
//!   record, and the frames the device held are dropped and counted. TCP retransmits
//!   what was lost; sessions go on.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod config;
pub mod phy;
pub mod recovery;
pub mod stack;

use alloc::format;
use alloc::vec::Vec;

use ipc::{
    Action, AuditEvent, CapabilityError, DeviceError, Endpoint, Operation, ReplyToken, ServiceId,
    Verdict,
};
use service_api::netstackd::{self as netstackd_api, DeviceHealth, Handle, Request, encode_ready};
use service_api::{Incoming, ServiceError, reply_err, reply_ok, rngd};

use crate::config::NetConfig;
use crate::recovery::{Event, Recovery};
use crate::stack::Stack;

/// Requests taken per pass.
const MAX_REQUESTS_PER_PASS: usize = 8;
/// Requests parked (waiting) at once, for all callers.
pub const MAX_PARKED: usize = 32;

/// What a parked request waits for.
enum Waiting {
    Accept(Handle),
    Connect(Handle),
    Send {
        handle: Handle,
        rest: Vec<u8>,
        sent: usize,
    },
    Recv {
        handle: Handle,
        max: usize,
    },
    Wait,
}

struct Parked {
    token: ReplyToken,
    caller: ServiceId,
    operation: Operation,
    deadline_ms: u64,
    waiting: Waiting,
}

/// An answer: the reply payload or the error, and the record's detail.
type Answer = (Result<Vec<u8>, ServiceError>, u32);

fn record(
    caller: ServiceId,
    operation: Operation,
    result: &Result<Vec<u8>, ServiceError>,
    detail: u32,
) -> AuditEvent {
    let (verdict, reason) = match result {
        Ok(_) => (Verdict::Allowed, 0),
        Err(
            error @ (ServiceError::TimedOut
            | ServiceError::Closed
            | ServiceError::Refused
            | ServiceError::Unavailable),
        ) => (Verdict::Failed, error.code()),
        Err(error) => (Verdict::Rejected, error.code()),
    };
    AuditEvent {
        subject: caller,
        action: Action::Call {
            service: ServiceId::Netstackd,
            code: operation.code(),
        },
        verdict,
        reason,
        detail,
    }
}

fn answer<E: Endpoint>(
    ep: &E,
    token: ReplyToken,
    caller: ServiceId,
    operation: Operation,
    (result, detail): Answer,
) {
    ep.audit(record(caller, operation, &result, detail));
    // A caller that gave up (its call timed out or was dropped) gets nothing: the
    // kernel refuses the reply and records it.
    let _ = match &result {
        Ok(payload) => reply_ok(ep, token, payload),
        Err(error) => reply_err(ep, token, *error),
    };
}

/// The service: the stack, the parked requests, and the generation of each client's
/// process it last heard from.
pub struct Netstackd<D: ipc::RawNetDevice> {
    stack: Stack<D>,
    parked: Vec<Parked>,
    /// By client task id: every request is checked, so an index, not a search.
    clients: [Option<u32>; ServiceId::ALL.len()],
}

fn handle_detail(handle: Handle) -> u32 {
    handle.0
}

impl<D: ipc::RawNetDevice> Netstackd<D> {
    /// Wraps a started stack.
    pub fn new(stack: Stack<D>) -> Self {
        Self {
            stack,
            parked: Vec::new(),
            clients: [None; ServiceId::ALL.len()],
        }
    }

    /// A request from `sender`'s process of generation `generation` (kernel-stamped):
    /// when that is another process than the last one heard from, the kernel restarted
    /// the client, and what its earlier process held goes: its sockets are reset and
    /// its parked requests dropped (their calls ended with that process). Says so.
    fn client_generation<E: Endpoint>(
        &mut self,
        ep: &E,
        sender: ServiceId,
        generation: u32,
        now_ms: u64,
    ) {
        let seen = self.clients[sender as usize].get_or_insert(generation);
        if *seen == generation {
            return;
        }
        *seen = generation;
        self.parked.retain(|p| p.caller != sender);
        let closed = self.stack.forget_owner(sender, now_ms);
        // The reset sockets leave the stack now, so their ports are free for the new
        // process's first request.
        self.stack.poll(now_ms);
        ep.console(&format!(
            "{} restarted (generation {generation}): the {closed} sockets its earlier process held are reset",
            sender.name()
        ));
    }

    /// The stack, for its statistics.
    pub fn stack(&self) -> &Stack<D> {
        &self.stack
    }

    /// Requests parked now.
    pub fn parked(&self) -> usize {
        self.parked.len()
    }

    /// Tries to finish what `waiting` waits for: `None` while it still waits.
    fn attempt(&mut self, caller: ServiceId, waiting: &mut Waiting) -> Option<Answer> {
        let stack = &mut self.stack;
        match waiting {
            Waiting::Accept(listener) => match stack.try_accept(caller, *listener) {
                Ok(Some(accepted)) => Some((Ok(accepted.encode()), handle_detail(accepted.handle))),
                Ok(None) => None,
                Err(error) => Some((Err(error), handle_detail(*listener))),
            },
            Waiting::Connect(handle) => match stack.connected(caller, *handle) {
                Ok(Some(local)) => {
                    let mut reply = Vec::from(handle.0.to_le_bytes());
                    reply.extend_from_slice(&local.ip);
                    reply.extend_from_slice(&local.port.to_le_bytes());
                    Some((Ok(reply), handle_detail(*handle)))
                }
                Ok(None) => None,
                Err(error) => {
                    let _ = stack.close(caller, *handle, true, 0);
                    Some((Err(error), handle_detail(*handle)))
                }
            },
            Waiting::Send { handle, rest, sent } => match stack.send(caller, *handle, rest) {
                Ok(n) => {
                    *sent += n;
                    rest.drain(..n);
                    rest.is_empty().then(|| {
                        let sent = u16::try_from(*sent).unwrap_or(u16::MAX);
                        (Ok(Vec::from(sent.to_le_bytes())), u32::from(sent))
                    })
                }
                Err(error) => Some((Err(error), handle_detail(*handle))),
            },
            Waiting::Recv { handle, max } => match stack.recv(caller, *handle, *max) {
                Ok(Some(data)) => {
                    let len = data.len() as u32;
                    Some((Ok(data), len))
                }
                Ok(None) => None,
                Err(error) => Some((Err(error), handle_detail(*handle))),
            },
            Waiting::Wait => {
                let ready = stack.ready(caller);
                let generation = stack.generation();
                (!ready.is_empty())
                    .then(|| (Ok(encode_ready(generation, &ready)), ready.len() as u32))
            }
        }
    }

    /// What a request that waited `wait_ms` in vain is answered with.
    fn expired(&mut self, caller: ServiceId, waiting: Waiting, now_ms: u64) -> Answer {
        match waiting {
            Waiting::Connect(handle) => {
                let _ = self.stack.close(caller, handle, true, now_ms);
                (Err(ServiceError::TimedOut), handle_detail(handle))
            }
            Waiting::Send { sent, .. } => {
                let sent = u16::try_from(sent).unwrap_or(u16::MAX);
                (Ok(Vec::from(sent.to_le_bytes())), u32::from(sent))
            }
            Waiting::Wait => (Ok(encode_ready(self.stack.generation(), &[])), 0),
            Waiting::Accept(handle) | Waiting::Recv { handle, .. } => {
                (Err(ServiceError::TimedOut), handle_detail(handle))
            }
        }
    }

    /// Handles one delivered request: answers it now, or parks it.
    pub fn handle<E: Endpoint>(&mut self, ep: &E, request: ipc::Request, now_ms: u64) {
        self.client_generation(ep, request.sender, request.sender_generation, now_ms);
        let incoming = match Incoming::parse(ServiceId::Netstackd, &request) {
            Ok(incoming) => incoming,
            Err((error, code)) => {
                ep.audit(AuditEvent {
                    subject: request.sender,
                    action: Action::Call {
                        service: ServiceId::Netstackd,
                        code,
                    },
                    verdict: Verdict::Rejected,
                    reason: error.code(),
                    detail: request.frame.len() as u32,
                });
                let _ = reply_err(ep, request.token, error);
                return;
            }
        };
        let (caller, operation) = (incoming.sender, incoming.operation);
        let decoded = match Request::decode(operation, incoming.payload) {
            Ok(decoded) => decoded,
            Err(error) => {
                let detail = incoming.payload.len() as u32;
                return answer(ep, request.token, caller, operation, (Err(error), detail));
            }
        };
        let stack = &mut self.stack;
        let (mut waiting, wait_ms) = match decoded {
            Request::Listen { port, backlog } => {
                let result = stack.listen(caller, port, backlog);
                let detail = u32::from(port);
                let result = result.map(|h| Vec::from(h.0.to_le_bytes()));
                return answer(ep, request.token, caller, operation, (result, detail));
            }
            Request::Close { handle, abort } => {
                let result = stack
                    .close(caller, handle, abort, now_ms)
                    .map(|()| Vec::new());
                // Requests of the caller's still waiting on the socket end with it.
                let (ended, kept): (Vec<Parked>, Vec<Parked>) = core::mem::take(&mut self.parked)
                    .into_iter()
                    .partition(|p| p.caller == caller && parked_on(&p.waiting, handle));
                self.parked = kept;
                for p in ended {
                    let detail = handle_detail(handle);
                    answer(
                        ep,
                        p.token,
                        p.caller,
                        p.operation,
                        (Err(ServiceError::Closed), detail),
                    );
                }
                return answer(
                    ep,
                    request.token,
                    caller,
                    operation,
                    (result, handle_detail(handle)),
                );
            }
            Request::Stats => {
                let stats = stack.stats();
                let clamp = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
                let reply = netstackd_api::Stats {
                    sockets: clamp(stats.sockets),
                    handles: clamp(stats.handles),
                    lingering: clamp(stats.lingering),
                    parked: clamp(self.parked.len()),
                };
                return answer(
                    ep,
                    request.token,
                    caller,
                    operation,
                    (Ok(reply.encode()), 0),
                );
            }
            Request::Status { handle } => {
                let result = stack.status(caller, handle).map(|s| s.encode());
                return answer(
                    ep,
                    request.token,
                    caller,
                    operation,
                    (result, handle_detail(handle)),
                );
            }
            Request::Accept { listener, wait_ms } => (Waiting::Accept(listener), wait_ms),
            Request::Connect { remote, wait_ms } => match stack.connect(caller, remote) {
                Ok(handle) if wait_ms == 0 => {
                    // Not established yet: WAIT says when (READY_CONNECTED).
                    let mut reply = Vec::from(handle.0.to_le_bytes());
                    reply.extend_from_slice(&[0; 4]);
                    reply.extend_from_slice(&[0; 2]);
                    return answer(
                        ep,
                        request.token,
                        caller,
                        operation,
                        (Ok(reply), handle_detail(handle)),
                    );
                }
                Ok(handle) => (Waiting::Connect(handle), wait_ms),
                Err(error) => {
                    let detail = u32::from(remote.port);
                    return answer(ep, request.token, caller, operation, (Err(error), detail));
                }
            },
            Request::Send {
                handle,
                wait_ms,
                data,
            } => (
                Waiting::Send {
                    handle,
                    rest: Vec::from(data),
                    sent: 0,
                },
                wait_ms,
            ),
            Request::Recv {
                handle,
                max,
                wait_ms,
            } => (
                Waiting::Recv {
                    handle,
                    max: usize::from(max),
                },
                wait_ms,
            ),
            Request::Wait { wait_ms } => (Waiting::Wait, wait_ms),
        };
        if let Some(done) = self.attempt(caller, &mut waiting) {
            return answer(ep, request.token, caller, operation, done);
        }
        if wait_ms == 0 {
            let done = self.expired(caller, waiting, now_ms);
            return answer(ep, request.token, caller, operation, done);
        }
        if self.parked.len() >= MAX_PARKED {
            if let Waiting::Connect(handle) = waiting {
                let _ = self.stack.close(caller, handle, true, now_ms);
            }
            return answer(
                ep,
                request.token,
                caller,
                operation,
                (Err(ServiceError::Busy), 0),
            );
        }
        self.parked.push(Parked {
            token: request.token,
            caller,
            operation,
            deadline_ms: now_ms + u64::from(wait_ms),
            waiting,
        });
    }

    /// Answers every parked request whose wait is over or whose event came.
    pub fn resolve<E: Endpoint>(&mut self, ep: &E, now_ms: u64) {
        let parked = core::mem::take(&mut self.parked);
        for mut p in parked {
            if let Some(done) = self.attempt(p.caller, &mut p.waiting) {
                answer(ep, p.token, p.caller, p.operation, done);
            } else if now_ms >= p.deadline_ms {
                let done = self.expired(p.caller, p.waiting, now_ms);
                answer(ep, p.token, p.caller, p.operation, done);
            } else {
                self.parked.push(p);
            }
        }
    }

    /// Notices a stopped network device and resets it when `recovery` says a reset is
    /// due, reporting each step.
    pub fn recover<E: Endpoint>(&mut self, ep: &E, recovery: &mut Recovery) {
        let now = ep.uptime_ms();
        if let Some(event) = recovery.observe(self.stack.device_failed(), now) {
            report(ep, event);
        }
        if !recovery.due(now) {
            return;
        }
        let Some(outcome) = self.stack.reset_device() else {
            return;
        };
        for event in recovery
            .attempted(outcome, ep.uptime_ms())
            .into_iter()
            .flatten()
        {
            report(ep, event);
        }
    }

    /// One pass: packets, then up to [`MAX_REQUESTS_PER_PASS`] requests, then the
    /// packets those requests queued, then the parked requests.
    pub fn pass<E: Endpoint>(&mut self, ep: &E) {
        let now = ep.uptime_ms();
        self.stack.poll(now);
        let mut took = 0;
        while took < MAX_REQUESTS_PER_PASS {
            let Some(request) = ep.try_receive() else {
                break;
            };
            self.handle(ep, request, now);
            took += 1;
        }
        if took > 0 {
            self.stack.poll(now);
        }
        self.resolve(ep, now);
    }
}

fn parked_on(waiting: &Waiting, handle: Handle) -> bool {
    match waiting {
        Waiting::Accept(h) | Waiting::Connect(h) | Waiting::Recv { handle: h, .. } => *h == handle,
        Waiting::Send { handle: h, .. } => *h == handle,
        Waiting::Wait => false,
    }
}

fn health<E: Endpoint>(ep: &E, verdict: Verdict, reason: u16) {
    health_detail(ep, verdict, reason, 0);
}

fn health_detail<E: Endpoint>(ep: &E, verdict: Verdict, reason: u16, detail: u32) {
    ep.audit(AuditEvent {
        subject: ServiceId::Netstackd,
        action: Action::Health,
        verdict,
        reason,
        detail,
    });
}

/// Prints a step of the device's recovery and writes its health record.
fn report<E: Endpoint>(ep: &E, event: Event) {
    let (verdict, reason, detail) = event.record();
    health_detail(ep, verdict, reason.code(), detail);
    match event {
        Event::Stopped { error, reset_in_ms } => {
            let cause = match error {
                DeviceError::Timeout => "timeout",
                _ => "failure",
            };
            ep.console(&markers::NETSTACKD_DEVICE_STOPPED.render(&[cause]));
            if reset_in_ms > 0 {
                ep.console(&format!(
                    "the device came back less than {} s ago: next reset in {reset_in_ms} ms",
                    recovery::FLAP_WINDOW_MS / 1000
                ));
            }
        }
        Event::ResetFailed {
            attempt,
            error,
            retry_in_ms,
        } => ep.console(&format!(
            "network device reset {attempt} did not bring it back ({error}): next in {retry_in_ms} ms"
        )),
        Event::SlowRetries { attempts } => ep.console(&format!(
            "FAIL the network device did not come back after {attempts} resets: one reset every {} s from now on",
            recovery::SLOW_RETRY_MS / 1000
        )),
        Event::Recovered {
            attempt,
            down_ms,
            dropped,
        } => {
            let frames = dropped.transmits_dropped + dropped.receives_dropped;
            if frames > 0 {
                health_detail(
                    ep,
                    Verdict::Failed,
                    DeviceHealth::FramesDropped.code(),
                    frames,
                );
            }
            ep.console(&markers::NETSTACKD_DEVICE_RECOVERED.render(&[
                &format!("{attempt}"),
                &format!("{down_ms}"),
                &format!("{frames}"),
            ]));
        }
    }
}

/// Runs netstackd until the machine stops, configured by the kernel command line
/// `bootargs`; `generation` is the kernel's restart count of netstackd (0 for its
/// first process), which every handle carries.
pub async fn run<E: Endpoint>(ep: E, bootargs: &str, generation: usize) {
    let mut device = match ep.claim_net_device() {
        Ok(device) => Some(device),
        Err(CapabilityError::Absent) => {
            ep.console("no network device: the loopback interface only");
            None
        }
        Err(error) => {
            ep.console(&format!(
                "network device refused ({error}): the loopback interface only"
            ));
            None
        }
    };
    let config = match NetConfig::from_bootargs(bootargs) {
        Ok(config) => config,
        Err(error) => {
            ep.console(&format!(
                "bad network configuration ({error}): the loopback interface only"
            ));
            health(&ep, Verdict::Failed, ServiceError::MalformedRequest.code());
            device = None;
            NetConfig::default()
        }
    };
    // rngd faulted mid-call: the kernel restarts it; its new process answers.
    let drawn = service_api::across_restarts(
        &ep,
        || rngd::get_entropy(&ep, 8),
        service_api::peer_restarting,
    )
    .await;
    let seed = match drawn {
        Ok(bytes) => {
            let mut seed = [0u8; 8];
            seed.copy_from_slice(&bytes);
            u64::from_le_bytes(seed)
        }
        Err(error) => {
            ep.console(markers::NETSTACKD_NO_ENTROPY.message);
            ep.console(&format!("rngd: {error}"));
            health(&ep, Verdict::Failed, ServiceError::Unavailable.code());
            loop {
                let request = ep.receive().await;
                let _ = reply_err(&ep, request.token, ServiceError::Unavailable);
            }
        }
    };
    // The generation modulo 65,536: the handle's high half.
    let mut stack = Stack::new(seed, ep.uptime_ms()).with_generation(generation as u16);
    if let Some(device) = device {
        match stack.attach(device, config, ep.uptime_ms()) {
            Ok(()) => ep.console(&format!("network device: {config}")),
            Err(stack::StartError::NotUnicastMac(mac)) => ep.console(&format!(
                "the network device's MAC {mac:02x?} is not unicast: the loopback interface only"
            )),
        }
    }
    ep.console(&markers::NETSTACKD_READY.render(&[&stack.addresses()]));
    health(&ep, Verdict::Allowed, 0);
    let mut service = Netstackd::new(stack);
    let mut recovery = Recovery::default();
    loop {
        service.pass(&ep);
        service.recover(&ep, &mut recovery);
        ep.yield_now().await;
    }
}
