//! The network device stalls, and the device gets its network back.
//!
//! Two systems (the OS's services on the host, one per thread, as two devices) share
//! a link between two emulated virtio-net devices (`virtio_net::emulated`: split
//! virtqueues in memory), each driven by the real frontend (`virtio_net::VirtioNet`)
//! under the real netstackd. The initiator's dsoftbusd opens sessions to the
//! responder's (`CONNECT`: hello, Noise XK with both bindings, a ping, `BYE`). Then
//! the initiator's device stops taking frames for transmission: the frontend's
//! deadline passes, netstackd resets the device (here the device ignores the first
//! resets, so the backoff shows), and sessions succeed again.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use host_runner::{Disks, Entropy, HostSystem};
use ipc::{Action, AuditFilter, DeviceError, Endpoint, NetReset, RawNetDevice, ServiceId, Verdict};
use provider_api::Bundle;
use provider_select::backends::provider_chacha::ChaCha20Poly1305;
use provider_select::backends::provider_dalek::Dalek;
use service_api::netstackd::SocketAddr;
use service_api::{ClientError, dsoftbusd, keystored, logd};
use virtio_net::emulated::{Device, Emulated, EmulatedHal};
use virtio_net::{Clock, VirtioNet};

type DC = Bundle<Dalek, ChaCha20Poly1305>;
type Ep = kernel_core::KernelEndpoint<host_runner::HostPlatform>;

/// The frontend's transmit deadline here (the image's is 100 ms).
const TRANSMIT_TIMEOUT_US: u64 = 20_000;

/// Records logd keeps per task here: every record of the test (no eviction), so the
/// health records can be counted exactly.
const JOURNAL_PER_TASK: usize = 4096;

/// Frames on their way from one device to the other.
pub(crate) type Wire = Arc<Mutex<VecDeque<Vec<u8>>>>;

struct WallClock(Instant);

impl Clock for WallClock {
    fn now_us(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// What the test steers on one device from outside its thread.
#[derive(Default)]
pub(crate) struct Faults {
    /// Stall the device before its next transmit (until it is reset).
    stall_next: AtomicBool,
    /// Resets the device ignores once stalled.
    ignore_resets: AtomicU32,
}

/// One end of the link: the real frontend on an emulated device. Frames that came
/// over the wire are put into the device's posted receive buffers whenever netstackd
/// looks for one; frames the device took for transmission go onto the wire.
pub(crate) struct LinkedNic {
    net: VirtioNet<EmulatedHal, Emulated, WallClock>,
    device: Rc<RefCell<Device>>,
    inbound: Wire,
    outbound: Wire,
    faults: Arc<Faults>,
}

impl LinkedNic {
    pub(crate) fn new(mac: [u8; 6], inbound: Wire, outbound: Wire, faults: Arc<Faults>) -> Self {
        let device = Rc::new(RefCell::new(Device::default()));
        device.borrow_mut().mac = mac;
        let net = VirtioNet::new(
            Emulated(Rc::clone(&device)),
            WallClock(Instant::now()),
            TRANSMIT_TIMEOUT_US,
        )
        .expect("the emulated device sets up");
        Self {
            net,
            device,
            inbound,
            outbound,
            faults,
        }
    }
}

impl RawNetDevice for LinkedNic {
    fn mac(&self) -> [u8; 6] {
        self.net.mac()
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, DeviceError> {
        let mut inbound = self.inbound.lock().expect("wire");
        while let Some(frame) = inbound.front() {
            if !self.device.borrow_mut().deliver(frame) {
                break;
            }
            inbound.pop_front();
        }
        drop(inbound);
        self.net.receive(buf)
    }

    fn transmit(&mut self, frame: &[u8]) -> Result<(), DeviceError> {
        if self.faults.stall_next.swap(false, Ordering::SeqCst) {
            let mut device = self.device.borrow_mut();
            device.stalled = true;
            device.ignore_resets = self.faults.ignore_resets.load(Ordering::SeqCst);
        }
        let result = self.net.transmit(frame);
        let sent: Vec<Vec<u8>> = self.device.borrow_mut().transmitted.drain(..).collect();
        self.outbound.lock().expect("wire").extend(sent);
        result
    }

    fn reset(&mut self) -> Result<NetReset, DeviceError> {
        self.net.reset()
    }
}

pub(crate) async fn sleep<E: Endpoint>(ep: &E, ms: u64) {
    let until = ep.uptime_ms() + ms;
    while ep.uptime_ms() < until {
        ep.yield_now().await;
    }
}

/// Waits (yielding) for the other thread's message.
async fn take<E: Endpoint, T>(ep: &E, from: &Receiver<T>) -> T {
    loop {
        if let Ok(value) = from.try_recv() {
            return value;
        }
        sleep(ep, 2).await;
    }
}

async fn health<E: Endpoint>(ep: &E, verdict: Verdict) -> u32 {
    let filter = AuditFilter {
        origin: Some(ServiceId::Netstackd),
        subject: Some(ServiceId::Netstackd),
        action: Some(Action::Health),
        verdict: Some(verdict),
    };
    logd::query(ep, &filter).await.unwrap().matched
}

const RESPONDER: SocketAddr = SocketAddr {
    ip: [10, 0, 2, 15],
    port: 7411,
};

/// A device of the pair: boots on its end of the link, sends its device key to the
/// other, trusts the other's, then runs `work` as its selftest task; returns what
/// `work` returned and the console.
fn device<T: 'static>(
    end: LinkedNic,
    bootargs: &'static str,
    keys: (Sender<[u8; 32]>, Receiver<[u8; 32]>),
    work: impl AsyncFnOnce(&Ep, [u8; 32]) -> T + 'static,
) -> (T, Vec<String>) {
    let mut system = HostSystem::boot_on_network::<DC>(
        Entropy::Host,
        Disks::random(),
        Box::new(end),
        bootargs,
        JOURNAL_PER_TASK,
    );
    let result = system.run_as(ServiceId::Selftest, move |ep| async move {
        let (to_other, from_other) = keys;
        to_other
            .send(keystored::get_pubkey(&ep).await.unwrap())
            .unwrap();
        let other = take(&ep, &from_other).await;
        dsoftbusd::trust(&ep, &other).await.unwrap();
        work(&ep, other).await
    });
    (result, system.console())
}

/// The initiator's sessions: before the stall, across it, and after it.
struct Sessions {
    before: Result<(), ClientError>,
    across: Vec<Result<(), ClientError>>,
    after: Vec<Result<(), ClientError>>,
    failed_records: u32,
    allowed_records: u32,
}

#[test]
fn a_stalled_transmit_is_recovered_and_sessions_succeed_again() {
    let a_to_b: Wire = Wire::default();
    let b_to_a: Wire = Wire::default();
    let (a_keys, b_keys) = (std::sync::mpsc::channel(), std::sync::mpsc::channel());
    let done = Arc::new(AtomicBool::new(false));
    let faults = Arc::new(Faults::default());
    let (responder_console, (sessions, initiator_console)) = std::thread::scope(|scope| {
        let (a_wire, b_wire) = (
            (b_to_a.clone(), a_to_b.clone()),
            (a_to_b.clone(), b_to_a.clone()),
        );
        let (a_channel, b_channel) = ((a_keys.0, b_keys.1), (b_keys.0, a_keys.1));
        let responder_done = Arc::clone(&done);
        let responder = scope.spawn(move || {
            let end = LinkedNic::new([2, 0, 0, 0, 0, 0xa], a_wire.0, a_wire.1, Arc::default());
            let ((), console) = device(
                end,
                "net.ip=10.0.2.15/24 net.gw=none",
                a_channel,
                async move |ep, _| {
                    while !responder_done.load(Ordering::SeqCst) {
                        sleep(ep, 5).await;
                    }
                },
            );
            console
        });
        let initiator_faults = Arc::clone(&faults);
        let initiator = scope.spawn(move || {
            let end = LinkedNic::new(
                [2, 0, 0, 0, 0, 0xb],
                b_wire.0,
                b_wire.1,
                Arc::clone(&initiator_faults),
            );
            let result = device(
                end,
                "net.ip=10.0.2.16/24 net.gw=none",
                b_channel,
                async move |ep, responder_key| {
                    let session = async || {
                        dsoftbusd::connect(ep, RESPONDER, &responder_key)
                            .await
                            .map(drop)
                    };
                    // The baseline: the responder may still be coming up on a busy
                    // machine (its listener, the first ARP), so it gets a few tries.
                    let mut before = session().await;
                    for _ in 0..10 {
                        if before.is_ok() {
                            break;
                        }
                        sleep(ep, 200).await;
                        before = session().await;
                    }
                    // The device stops taking frames; it ignores its first two resets.
                    initiator_faults.ignore_resets.store(2, Ordering::SeqCst);
                    initiator_faults.stall_next.store(true, Ordering::SeqCst);
                    let mut across = Vec::new();
                    for _ in 0..10 {
                        let outcome = session().await;
                        let ok = outcome.is_ok();
                        across.push(outcome);
                        if ok {
                            break;
                        }
                        sleep(ep, 200).await;
                    }
                    let mut after = Vec::new();
                    for _ in 0..5 {
                        after.push(session().await);
                    }
                    Sessions {
                        before,
                        across,
                        after,
                        failed_records: health(ep, Verdict::Failed).await,
                        allowed_records: health(ep, Verdict::Allowed).await,
                    }
                },
            );
            done.store(true, Ordering::SeqCst);
            result
        });
        (
            responder.join().expect("responder thread"),
            initiator.join().expect("initiator thread"),
        )
    });
    let console = initiator_console.join("\n");
    assert_eq!(sessions.before, Ok(()), "{console}");
    assert!(
        sessions.across.last().is_some_and(Result::is_ok),
        "a session succeeded after the stall: {:?}\n{console}",
        sessions.across
    );
    assert!(
        sessions.after.iter().all(Result::is_ok),
        "{:?}\n{console}",
        sessions.after
    );
    let netstackd: Vec<&str> = initiator_console
        .iter()
        .filter_map(|l| l.strip_prefix("netstackd: "))
        .collect();
    let position = |prefix: &str| {
        netstackd
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line:\n{console}"))
    };
    let stopped = position("network device stopped (timeout): resetting it");
    let first = position("network device reset 1 did not bring it back");
    let second = position("network device reset 2 did not bring it back");
    let back = position("network device back after reset 3 (");
    assert!(
        stopped < first && first < second && second < back,
        "{console}"
    );
    let dropped: u32 = netstackd[back]
        .rsplit_once(" ms down, ")
        .and_then(|(_, rest)| rest.strip_suffix(" frames dropped)"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", netstackd[back]));
    assert!(dropped >= 1, "the stalled frame was dropped and counted");
    // Stopped, two failed resets, the frame dropped; ready and recovered.
    assert_eq!(sessions.failed_records, 4, "{console}");
    assert_eq!(sessions.allowed_records, 2, "{console}");
    assert!(
        !responder_console.iter().any(|l| l.contains("FAIL")),
        "{responder_console:#?}"
    );
}
