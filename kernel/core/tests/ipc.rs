//! The IPC rules, exercised through real tasks on a kernel with a virtual clock.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use ipc::frame::MAX_FRAME;
use ipc::{
    Action, AuditEvent, AuditFeed, Capability, CapabilityError, DeviceError, Endpoint, Frame,
    FrameError, IpcError, Operation, RawEntropyDevice, ServiceId, Verdict,
};
use kernel_core::policy::{Grant, Rule};
use kernel_core::{Kernel, Limits, Platform, RunOutcome};

/// Time advances 100 µs per reading, so deadlines pass while tasks spin.
#[derive(Clone, Default)]
struct TestPlatform {
    clock: Rc<Cell<u64>>,
    lines: Rc<RefCell<Vec<String>>>,
}

impl Platform for TestPlatform {
    fn now_us(&self) -> u64 {
        self.clock.set(self.clock.get() + 100);
        self.clock.get()
    }
    fn console_line(&self, prefix: &str, line: &str) {
        self.lines.borrow_mut().push(format!("{prefix}: {line}"));
    }
}

static RULES: &[Rule] = &[
    Rule {
        caller: ServiceId::Selftest,
        operation: Operation::LogdQuery,
    },
    Rule {
        caller: ServiceId::Keystored,
        operation: Operation::LogdQuery,
    },
];
static GRANTS: &[Grant] = &[
    Grant {
        task: ServiceId::Rngd,
        capability: Capability::EntropyDevice,
    },
    Grant {
        task: ServiceId::Logd,
        capability: Capability::AuditFeed,
    },
];

fn kernel(limits: Limits) -> (Kernel<TestPlatform>, TestPlatform) {
    let platform = TestPlatform::default();
    (
        Kernel::new(platform.clone(), RULES, GRANTS, limits),
        platform,
    )
}

fn query() -> Vec<u8> {
    Frame::request(Operation::LogdQuery, b"q").encode().unwrap()
}

/// A logd stand-in that answers every request with the kernel-stamped sender id.
async fn echo_sender<E: Endpoint>(ep: E) {
    loop {
        let request = ep.receive().await;
        let sender = (request.sender as u16).to_le_bytes();
        ep.reply(request.token, &Frame::reply(&sender).encode().unwrap())
            .unwrap();
    }
}

type Log<T> = Rc<RefCell<Vec<T>>>;

fn run(kernel: &mut Kernel<TestPlatform>) {
    assert_eq!(
        kernel.run(ServiceId::Selftest, 10_000_000),
        RunOutcome::MainFinished
    );
}

#[test]
fn the_kernel_stamps_the_sender_and_callers_cannot_choose_it() {
    let (mut kernel, _) = kernel(Limits::default());
    let results: Log<Vec<u8>> = Rc::default();
    kernel.spawn(ServiceId::Logd, echo_sender);
    for caller in [ServiceId::Selftest, ServiceId::Keystored] {
        let results = results.clone();
        kernel.spawn(caller, move |ep| async move {
            let reply = ep.call(ServiceId::Logd, &query()).await.unwrap();
            results
                .borrow_mut()
                .push(Frame::decode(&reply).unwrap().payload.to_vec());
        });
    }
    assert_eq!(
        kernel.run(ServiceId::Selftest, 10_000_000),
        RunOutcome::MainFinished
    );
    kernel.run(ServiceId::Keystored, 10_000_000);
    let mut got = results.borrow().clone();
    got.sort();
    assert_eq!(got, [vec![3, 0], vec![5, 0]]);
}

#[test]
fn malformed_frames_are_refused_before_delivery_and_audited() {
    let (mut kernel, _) = kernel(Limits::default());
    let outcomes: Log<Result<Vec<u8>, IpcError>> = Rc::default();
    let delivered = Rc::new(Cell::new(0));
    let seen = delivered.clone();
    kernel.spawn(ServiceId::Logd, move |ep| async move {
        let mut feed = ep.claim_audit_feed().unwrap();
        // Hand the records back to the test through a channel of our own.
        loop {
            let request = ep.receive().await;
            seen.set(seen.get() + 1);
            let mut rejected = 0u8;
            while let Some(record) = feed.pop() {
                if record.event.verdict == Verdict::Rejected {
                    assert_eq!(record.origin, ServiceId::Kernel);
                    assert_eq!(
                        record.event.action,
                        Action::MalformedFrame {
                            service: ServiceId::Logd
                        }
                    );
                    rejected += 1;
                }
            }
            ep.reply(request.token, &Frame::reply(&[rejected]).encode().unwrap())
                .unwrap();
        }
    });
    let log = outcomes.clone();
    kernel.spawn(ServiceId::Selftest, move |ep| async move {
        let reply = Frame::reply(b"").encode().unwrap();
        let oversized = vec![0u8; MAX_FRAME + 1];
        for bad in [
            &b""[..],
            b"\x01\x01\x01",
            b"\x09\x01\x01\x01\x00\x00",
            b"\x01\x01\x01\x01\x05\x00ab",
            &reply,
            &oversized,
        ] {
            let result = ep.call(ServiceId::Logd, bad).await;
            log.borrow_mut().push(result);
        }
        let result = ep.call(ServiceId::Logd, &query()).await;
        log.borrow_mut().push(result);
    });
    run(&mut kernel);
    let outcomes = outcomes.borrow();
    assert_eq!(
        outcomes[0],
        Err(IpcError::MalformedFrame(FrameError::Truncated { len: 0 }))
    );
    assert_eq!(
        outcomes[1],
        Err(IpcError::MalformedFrame(FrameError::Truncated { len: 3 }))
    );
    assert_eq!(
        outcomes[2],
        Err(IpcError::MalformedFrame(FrameError::UnsupportedVersion(9)))
    );
    assert!(matches!(
        outcomes[3],
        Err(IpcError::MalformedFrame(FrameError::LengthMismatch { .. }))
    ));
    assert_eq!(
        outcomes[4],
        Err(IpcError::MalformedFrame(FrameError::UnknownKind(2))),
        "a reply is not a request"
    );
    assert!(matches!(
        outcomes[5],
        Err(IpcError::MalformedFrame(FrameError::TooLong { .. }))
    ));
    // The service saw only the good request, and six rejection records.
    let good = outcomes[6].as_ref().expect("service still serves");
    assert_eq!(Frame::decode(good).unwrap().payload, [6]);
    assert_eq!(delivered.get(), 1);
}

#[test]
fn policy_denies_by_default_and_every_decision_is_audited() {
    let (mut kernel, _) = kernel(Limits::default());
    let records: Log<ipc::AuditRecord> = Rc::default();
    let sink = records.clone();
    kernel.spawn(ServiceId::Logd, move |ep| async move {
        let mut feed = ep.claim_audit_feed().unwrap();
        loop {
            while let Some(record) = feed.pop() {
                sink.borrow_mut().push(record);
            }
            if let Some(request) = ep.try_receive() {
                ep.reply(request.token, &Frame::reply(b"").encode().unwrap())
                    .unwrap();
            }
            ep.yield_now().await;
        }
    });
    let results: Log<Result<Vec<u8>, IpcError>> = Rc::default();
    let log = results.clone();
    kernel.spawn(ServiceId::Selftest, move |ep| async move {
        let sign = Frame::request(Operation::KeystoredSign, b"m")
            .encode()
            .unwrap();
        let result = ep.call(ServiceId::Keystored, &sign).await;
        log.borrow_mut().push(result);
        let wrong_service = query();
        let result = ep.call(ServiceId::Rngd, &wrong_service).await;
        log.borrow_mut().push(result);
        let unknown = Frame {
            kind: ipc::FrameKind::Request,
            code: 0x7777,
            payload: b"",
        }
        .encode()
        .unwrap();
        let result = ep.call(ServiceId::Logd, &unknown).await;
        log.borrow_mut().push(result);
        let result = ep.call(ServiceId::Logd, &query()).await;
        log.borrow_mut().push(result);
        ep.yield_now().await;
        ep.yield_now().await;
    });
    run(&mut kernel);
    let results = results.borrow();
    assert_eq!(
        results[..3],
        [
            Err(IpcError::Denied),
            Err(IpcError::Denied),
            Err(IpcError::Denied)
        ]
    );
    assert!(results[3].is_ok());
    let records = records.borrow();
    let verdicts: Vec<_> = records
        .iter()
        .filter(|r| matches!(r.event.action, Action::Call { .. }))
        .map(|r| (r.origin, r.event.subject, r.event.action, r.event.verdict))
        .collect();
    let call = |service, code| Action::Call { service, code };
    assert_eq!(
        verdicts,
        [
            (
                ServiceId::Kernel,
                ServiceId::Selftest,
                call(ServiceId::Keystored, Operation::KeystoredSign.code()),
                Verdict::Denied
            ),
            (
                ServiceId::Kernel,
                ServiceId::Selftest,
                call(ServiceId::Rngd, Operation::LogdQuery.code()),
                Verdict::Denied
            ),
            (
                ServiceId::Kernel,
                ServiceId::Selftest,
                call(ServiceId::Logd, 0x7777),
                Verdict::Denied
            ),
            (
                ServiceId::Kernel,
                ServiceId::Selftest,
                call(ServiceId::Logd, Operation::LogdQuery.code()),
                Verdict::Allowed
            ),
        ]
    );
    // Sequence numbers are the kernel's, in order.
    assert!(records.windows(2).all(|w| w[0].sequence < w[1].sequence));
}

#[test]
fn a_silent_service_is_reported_by_name_and_the_call_times_out() {
    let limits = Limits {
        call_timeout_us: 50_000,
        ..Limits::default()
    };
    let (mut kernel, platform) = kernel(limits);
    kernel.spawn(ServiceId::Logd, |ep| async move {
        let _held = ep.receive().await; // takes the request and never answers
        loop {
            ep.yield_now().await;
        }
    });
    let result: Log<Result<Vec<u8>, IpcError>> = Rc::default();
    let log = result.clone();
    kernel.spawn(ServiceId::Selftest, move |ep| async move {
        let result = ep.call(ServiceId::Logd, &query()).await;
        log.borrow_mut().push(result);
    });
    run(&mut kernel);
    assert_eq!(result.borrow()[0], Err(IpcError::Timeout));
    let lines = platform.lines.borrow();
    assert!(
        lines
            .iter()
            .any(|l| l
                == "KERNEL: task logd not answering: QUERY from selftest timed out after 50 ms"),
        "{lines:?}"
    );
}

#[test]
fn a_stopped_service_fails_its_callers_and_is_reported() {
    let (mut kernel, platform) = kernel(Limits::default());
    kernel.spawn(ServiceId::Logd, |ep| async move {
        let _request = ep.receive().await; // then return: the task stops
    });
    let result: Log<Result<Vec<u8>, IpcError>> = Rc::default();
    let log = result.clone();
    kernel.spawn(ServiceId::Selftest, move |ep| async move {
        let result = ep.call(ServiceId::Logd, &query()).await;
        log.borrow_mut().push(result);
        let result = ep.call(ServiceId::Logd, &query()).await;
        log.borrow_mut().push(result);
    });
    run(&mut kernel);
    assert_eq!(
        *result.borrow(),
        [Err(IpcError::PeerGone), Err(IpcError::NoSuchService)]
    );
    assert!(
        platform
            .lines
            .borrow()
            .iter()
            .any(|l| l == "KERNEL: FAIL task logd exited")
    );
}

#[test]
fn only_the_callee_can_reply_and_only_once() {
    let (mut kernel, _) = kernel(Limits::default());
    let stale: Log<Result<(), IpcError>> = Rc::default();
    let log = stale.clone();
    kernel.spawn(ServiceId::Logd, move |ep| async move {
        loop {
            let request = ep.receive().await;
            // Hold the call open for a few passes: the forger gets its chance.
            for _ in 0..5 {
                ep.yield_now().await;
            }
            let token = request.token.0;
            ep.reply(request.token, &Frame::reply(b"1").encode().unwrap())
                .unwrap();
            log.borrow_mut().push(ep.reply(
                ipc::ReplyToken(token),
                &Frame::reply(b"2").encode().unwrap(),
            ));
            log.borrow_mut()
                .push(ep.reply(ipc::ReplyToken(token), b"not a frame"));
        }
    });
    let forged: Log<Result<(), IpcError>> = Rc::default();
    let forged_log = forged.clone();
    kernel.spawn(ServiceId::Keystored, move |ep| async move {
        // On every pass, try to answer every plausible call number in logd's place.
        loop {
            for guess in 0..8 {
                let answer = Frame::reply(b"forged").encode().unwrap();
                forged_log
                    .borrow_mut()
                    .push(ep.reply(ipc::ReplyToken(guess), &answer));
            }
            ep.yield_now().await;
        }
    });
    let reply: Log<Vec<u8>> = Rc::default();
    let got = reply.clone();
    kernel.spawn(ServiceId::Selftest, move |ep| async move {
        let answer = ep.call(ServiceId::Logd, &query()).await.unwrap();
        got.borrow_mut().push(answer);
    });
    run(&mut kernel);
    assert_eq!(Frame::decode(&reply.borrow()[0]).unwrap().payload, b"1");
    assert!(forged.borrow().len() >= 8 * 5, "the forger had its window");
    assert!(
        forged
            .borrow()
            .iter()
            .all(|r| *r == Err(IpcError::StaleReply))
    );
    assert_eq!(
        stale.borrow()[0],
        Err(IpcError::StaleReply),
        "second reply to one call"
    );
    assert!(matches!(
        stale.borrow()[1],
        Err(IpcError::MalformedFrame(_))
    ));
}

#[test]
fn queues_are_bounded() {
    // Capacity 1 and a service that never takes a request: the second caller is
    // refused at once with QueueFull; the first times out.
    let limits = Limits {
        queue_capacity: 1,
        call_timeout_us: 1_000,
        ..Limits::default()
    };
    let (mut kernel, _) = kernel(limits);
    kernel.spawn(ServiceId::Logd, |ep| async move {
        loop {
            ep.yield_now().await;
        }
    });
    let got: Log<(ServiceId, Result<Vec<u8>, IpcError>)> = Rc::default();
    for caller in [ServiceId::Keystored, ServiceId::Selftest] {
        let log = got.clone();
        kernel.spawn(caller, move |ep| async move {
            let result = ep.call(ServiceId::Logd, &query()).await;
            log.borrow_mut().push((caller, result));
        });
    }
    assert_eq!(
        kernel.run(ServiceId::Selftest, 10_000_000),
        RunOutcome::MainFinished
    );
    kernel.run(ServiceId::Keystored, 10_000_000);
    let got = got.borrow();
    assert!(
        got.contains(&(ServiceId::Selftest, Err(IpcError::QueueFull))),
        "{got:?}"
    );
    assert!(
        got.contains(&(ServiceId::Keystored, Err(IpcError::Timeout))),
        "{got:?}"
    );
}

struct Counter(u8);

impl RawEntropyDevice for Counter {
    fn read(&mut self, dest: &mut [u8]) -> Result<usize, DeviceError> {
        dest.fill(self.0);
        Ok(dest.len())
    }
}

#[test]
fn capabilities_follow_the_manifest_and_every_claim_is_audited() {
    let (mut kernel, _) = kernel(Limits::default());
    kernel.install_entropy_device(Box::new(Counter(7)));
    let outcomes: Log<String> = Rc::default();
    let log = outcomes.clone();
    kernel.spawn(ServiceId::Selftest, move |ep| async move {
        log.borrow_mut()
            .push(format!("{:?}", ep.claim_entropy_device().err()));
        log.borrow_mut()
            .push(format!("{:?}", ep.claim_audit_feed().err()));
    });
    let log = outcomes.clone();
    let records: Log<ipc::AuditRecord> = Rc::default();
    let sink = records.clone();
    kernel.spawn(ServiceId::Rngd, move |ep| async move {
        let mut device = ep.claim_entropy_device().expect("granted");
        let mut buffer = [0u8; 4];
        log.borrow_mut()
            .push(format!("{:?}", device.read(&mut buffer)));
        log.borrow_mut().push(format!("{buffer:?}"));
        log.borrow_mut()
            .push(format!("{:?}", ep.claim_entropy_device().err()));
        ep.audit(AuditEvent {
            subject: ServiceId::Rngd,
            action: Action::Health,
            verdict: Verdict::Failed,
            reason: 9,
            detail: 0,
        });
    });
    kernel.spawn(ServiceId::Logd, move |ep| async move {
        let mut feed = ep.claim_audit_feed().expect("granted");
        loop {
            while let Some(record) = feed.pop() {
                sink.borrow_mut().push(record);
            }
            ep.yield_now().await;
        }
    });
    kernel.run(ServiceId::Selftest, 10_000_000);
    kernel.run(ServiceId::Rngd, 10_000_000);
    let outcomes = outcomes.borrow();
    assert_eq!(outcomes[0], "Some(NotGranted)");
    assert_eq!(outcomes[1], "Some(NotGranted)");
    assert_eq!(outcomes[3], "[7, 7, 7, 7]");
    assert_eq!(outcomes[4], "Some(AlreadyClaimed)");
    // Run logd a little longer so it drains the last records.
    let _ = kernel.run(ServiceId::Kernel, kernel.platform().now_us() + 1_000);
    let records = records.borrow();
    let claims: Vec<_> = records
        .iter()
        .filter_map(|r| match r.event.action {
            Action::Claim(c) => Some((r.event.subject, c, r.event.verdict)),
            _ => None,
        })
        .collect();
    assert!(claims.contains(&(
        ServiceId::Selftest,
        Capability::EntropyDevice,
        Verdict::Denied
    )));
    assert!(claims.contains(&(ServiceId::Selftest, Capability::AuditFeed, Verdict::Denied)));
    assert!(claims.contains(&(ServiceId::Rngd, Capability::EntropyDevice, Verdict::Allowed)));
    let health = records
        .iter()
        .find(|r| r.event.action == Action::Health)
        .expect("service record");
    assert_eq!(
        (health.origin, health.event.reason),
        (ServiceId::Rngd, 9),
        "origin stamped by the kernel"
    );
}

#[test]
fn an_absent_device_is_a_typed_refusal() {
    let (mut kernel, _) = kernel(Limits::default());
    let outcome: Log<Option<CapabilityError>> = Rc::default();
    let log = outcome.clone();
    kernel.spawn(ServiceId::Selftest, |_| async {});
    kernel.spawn(ServiceId::Rngd, move |ep| async move {
        log.borrow_mut().push(ep.claim_entropy_device().err());
    });
    kernel.run(ServiceId::Rngd, 10_000_000);
    assert_eq!(outcome.borrow()[0], Some(CapabilityError::Absent));
}

#[test]
fn the_audit_stream_drops_the_oldest_and_counts() {
    let limits = Limits {
        audit_capacity: 4,
        ..Limits::default()
    };
    let (mut kernel, _) = kernel(limits);
    let result: Log<(Vec<u64>, u64)> = Rc::default();
    let log = result.clone();
    kernel.spawn(ServiceId::Selftest, move |ep| async move {
        for detail in 0..10 {
            ep.audit(AuditEvent {
                subject: ServiceId::Selftest,
                action: Action::Health,
                verdict: Verdict::Allowed,
                reason: 0,
                detail,
            });
        }
    });
    kernel.run(ServiceId::Selftest, 10_000_000);
    kernel.spawn(ServiceId::Logd, move |ep| async move {
        let mut feed = ep.claim_audit_feed().unwrap();
        let mut sequences = Vec::new();
        while let Some(record) = feed.pop() {
            sequences.push(record.sequence);
        }
        log.borrow_mut().push((sequences, feed.dropped()));
    });
    kernel.run(ServiceId::Logd, 10_000_000);
    // The claim itself is record 10; 11 records into a queue of 4.
    assert_eq!(result.borrow()[0], (vec![7, 8, 9, 10], 7));
}

#[test]
fn console_lines_are_prefixed_by_the_kernel_and_sanitised() {
    let (mut kernel, platform) = kernel(Limits {
        console_line_max: 10,
        ..Limits::default()
    });
    kernel.spawn(ServiceId::Selftest, |ep| async move {
        ep.console("rngd: ready\nforged");
    });
    run(&mut kernel);
    assert_eq!(platform.lines.borrow()[0], "SELFTEST: rngd: read");
}
