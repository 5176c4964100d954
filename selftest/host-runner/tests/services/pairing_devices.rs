//! A device pairs with another by that device's setup code (`docs/protocol.md`
//! section 11 with a device as the prover: `pair=A.B.C.D:PORT:CODE` on its command
//! line). Two systems (the OS's services on the host, one per thread) share a link
//! between two emulated virtio-net devices, as in `network_recovery`. Device B was
//! provisioned with the code and trusts nobody (its window is open); device A is
//! booted first with a wrong code, then with the right one:
//!
//! - the wrong code: A's keystored finds B's confirmation does not match, A sends
//!   nothing more and says `pairing refused (confirmation)`; B counted the attempt on
//!   its disk; A trusts nobody;
//! - the right code: each side proves its device key, each writes the other's into its
//!   trust store (read back from the disks here, tags checked), A then opens a session
//!   to B (handshake, ping, `BYE`), which B accepts from the store pairing wrote.
//!
//! Neither console holds the code.
//!
//! A device whose other device cannot take the pairing tries again, 40 times, then
//! gives up once: a refused connection (loopback, a port no one listens on) and a
//! connection never answered (a link whose other end is silent). Both were said as a
//! pairing given up after one try before these tests (a reset while connecting read
//! as `peer-closed`, no answer as `handshake-timeout`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use host_runner::{Entropy, HostSystem, SharedDisk};
use ipc::{Action, AuditFilter, Endpoint, Operation, ServiceId, Verdict};
use provider_api::SecretBytes;
use provider_hash::Blake2s;
use service_api::{keystored, logd};
use state_format::memory::MemoryDisk;
use state_format::store::RecordStore;

use crate::network_recovery::{LinkedNic, Wire, sleep};
use crate::pairing::{Device, OTP};

type P = provider_api::Bundle<
    provider_select::backends::provider_dalek::Dalek,
    provider_select::backends::provider_chacha::ChaCha20Poly1305,
>;
type Ep = kernel_core::KernelEndpoint<host_runner::HostPlatform>;

/// Records logd keeps per task (none evicted while the test counts them).
const JOURNAL_PER_TASK: usize = 4096;
/// How long a boot of A may take to reach its outcome (a debug build's password hash
/// and P-256 on a busy machine).
const OUTCOME_MS: u64 = 60_000;

/// dsoftbusd's records about its own connections of `operation` with `verdict`.
fn own(operation: Operation, verdict: Verdict) -> AuditFilter {
    AuditFilter {
        origin: Some(ServiceId::Dsoftbusd),
        subject: Some(ServiceId::Dsoftbusd),
        action: Some(Action::Call {
            service: ServiceId::Dsoftbusd,
            code: operation.code(),
        }),
        verdict: Some(verdict),
    }
}

/// Waits until logd holds `count` records matching `filter`; whether it did in time.
async fn records(ep: &Ep, filter: &AuditFilter, count: u32) -> bool {
    let until = ep.uptime_ms() + OUTCOME_MS;
    while ep.uptime_ms() < until {
        if logd::query(ep, filter)
            .await
            .is_ok_and(|r| r.matched >= count)
        {
            return true;
        }
        sleep(ep, 20).await;
    }
    false
}

/// The device keys of the trust store on `device`'s disk (its tag checked).
fn stored(device: &Device) -> Vec<[u8; 32]> {
    let mut records = RecordStore::open(device.state.clone()).unwrap();
    let store = records.get(state_format::trust::RECORD).unwrap();
    let tags = state_format::trust::TagKey::derive::<Blake2s>(&SecretBytes::new(OTP));
    state_format::trust::decode::<Blake2s>(&tags, &store)
        .expect("a store tagged by keystored")
        .peers
}

/// The failed pairing attempts on `device`'s disk.
fn attempts(device: &Device) -> u16 {
    let mut records = RecordStore::open(device.state.clone()).unwrap();
    let record = records.get(state_format::pairing::ATTEMPTS_RECORD).unwrap();
    state_format::pairing::decode_attempts(&record).unwrap()
}

/// One boot of A: its key, whether its outcome came in time, its console.
struct Boot {
    key: [u8; 32],
    arrived: bool,
    console: Vec<String>,
}

fn hex(key: &[u8; 32]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_device_pairs_with_another_by_its_code_and_a_wrong_code_is_refused_and_counted() {
    // The disks live in each device's thread (they are not `Send`); their bytes come
    // back to be read.
    let a_to_b: Wire = Wire::default();
    let b_to_a: Wire = Wire::default();
    let done = Arc::new(AtomicBool::new(false));
    let ((b_key, b_console, b), (boots, a)) = std::thread::scope(|scope| {
        let (b_in, b_out) = (a_to_b.clone(), b_to_a.clone());
        let b_done = Arc::clone(&done);
        let verifier = scope.spawn(move || {
            let b = Device::provisioned();
            let end = LinkedNic::new([2, 0, 0, 0, 0, 0xa], b_in, b_out, Arc::default());
            let mut system = HostSystem::boot_on_network::<P>(
                Entropy::Host,
                b.disks(),
                Box::new(end),
                "net.ip=10.0.2.15/24 net.gw=none",
                JOURNAL_PER_TASK,
            );
            let key = system.run_as(ServiceId::Selftest, move |ep| async move {
                let key = keystored::get_pubkey(&ep).await.unwrap();
                while !b_done.load(Ordering::SeqCst) {
                    sleep(&ep, 5).await;
                }
                key
            });
            let console = system.console();
            drop(system);
            (key, console, (b.state.bytes(), b.counter.bytes()))
        });
        let prover = scope.spawn(move || {
            let a = Device::provisioned();
            let boot = |disks, bootargs: &'static str, outcome: AuditFilter, count: u32| {
                let end = LinkedNic::new(
                    [2, 0, 0, 0, 0, 0xb],
                    b_to_a.clone(),
                    a_to_b.clone(),
                    Arc::default(),
                );
                let mut system = HostSystem::boot_on_network::<P>(
                    Entropy::Host,
                    disks,
                    Box::new(end),
                    bootargs,
                    JOURNAL_PER_TASK,
                );
                let (key, arrived) = system.run_as(ServiceId::Selftest, move |ep| async move {
                    let key = keystored::get_pubkey(&ep).await.unwrap();
                    (key, records(&ep, &outcome, count).await)
                });
                Boot {
                    key,
                    arrived,
                    console: system.console(),
                }
            };
            // A wrong code: the try ends with a refused transport record.
            let wrong = boot(
                a.disks(),
                "net.ip=10.0.2.16/24 net.gw=none pair=10.0.2.15:7411:2020-2022",
                own(Operation::DsoftbusdTransport, Verdict::Rejected),
                1,
            );
            // The right code: paired, then the session (established, then ponged).
            let right = boot(
                a.disks(),
                "net.ip=10.0.2.16/24 net.gw=none pair=10.0.2.15:7411:2020-2021",
                own(Operation::DsoftbusdConnect, Verdict::Allowed),
                2,
            );
            done.store(true, Ordering::SeqCst);
            ((wrong, right), (a.state.bytes(), a.counter.bytes()))
        });
        (
            verifier.join().expect("B's thread"),
            prover.join().expect("A's thread"),
        )
    });
    let (wrong, right) = boots;
    let disks = |(state, counter): (Vec<u8>, Vec<u8>)| Device {
        state: SharedDisk::new(MemoryDisk::from_bytes(state, false)),
        counter: SharedDisk::new(MemoryDisk::from_bytes(counter, false)),
    };
    let (a, b) = (disks(a), disks(b));
    let all = |console: &[String]| console.join("\n");
    assert!(wrong.arrived, "{}", all(&wrong.console));
    assert!(
        wrong
            .console
            .iter()
            .any(|l| l == "dsoftbusd: pairing refused (confirmation)"),
        "{}",
        all(&wrong.console)
    );
    assert!(
        !wrong.console.iter().any(|l| l.contains("paired with")),
        "{}",
        all(&wrong.console)
    );
    assert!(right.arrived, "{}", all(&right.console));
    assert_eq!(wrong.key, right.key, "A's key survives its reboot");
    let (a_key, b_key) = (right.key, b_key);
    for (console, line) in [
        (
            &right.console,
            format!("dsoftbusd: paired with {}", hex(&b_key)),
        ),
        (
            &right.console,
            "dsoftbusd: pairing window closed (paired)".into(),
        ),
        (
            &right.console,
            format!("dsoftbusd: session with {} established", hex(&b_key)),
        ),
        (
            &right.console,
            format!("dsoftbusd: session with {} closed (bye)", hex(&b_key)),
        ),
        (
            &b_console,
            format!("dsoftbusd: paired with {}", hex(&a_key)),
        ),
        (
            &b_console,
            format!("dsoftbusd: session with {} established", hex(&a_key)),
        ),
    ] {
        assert!(
            console.contains(&line),
            "`{line}` missing:\n{}",
            all(console)
        );
    }
    // Both stores changed on the disks, each holding the other's key alone; B counted
    // the wrong code's run and took the right one's back.
    assert_eq!(stored(&a), vec![b_key]);
    assert_eq!(stored(&b), vec![a_key]);
    assert_eq!(attempts(&b), 1);
    for console in [&wrong.console, &right.console, &b_console] {
        assert!(
            !console
                .iter()
                .any(|l| l.contains("2020-202") || l.contains("2020202")),
            "{}",
            all(console)
        );
    }
}

/// Runs `system` (whose `pair=` names a device that never pairs) with its clock moved
/// on `step_ms` at a time until dsoftbusd gives up; its console, and how many tries
/// ended (one record of dsoftbusd's own connection per try).
fn tries_until_given_up(mut system: HostSystem, step_ms: u64) -> (Vec<String>, u32) {
    let clock = system.clock();
    let given_up = |console: &[String]| {
        console
            .iter()
            .any(|l| l.starts_with("dsoftbusd: pairing refused"))
    };
    // Rounds of 20 s of the clock at most (a run of the test's task must end within
    // the host runner's minute of platform time, which the skips count in); bounded:
    // far more than 41 tries need.
    for _ in 0..100 {
        if given_up(&system.console()) {
            break;
        }
        let clock = clock.clone();
        system.run_as(ServiceId::Selftest, move |ep| async move {
            for _ in 0..20_000 / step_ms {
                clock.skip_ms(step_ms);
                sleep(&ep, 1).await;
            }
        });
    }
    let tries = system.run_as(ServiceId::Selftest, |ep| async move {
        // Refused (a reset) or expired (no answer): failed or rejected.
        let tries = AuditFilter {
            verdict: None,
            ..own(Operation::DsoftbusdTransport, Verdict::Failed)
        };
        logd::query(&ep, &tries).await.map_or(0, |r| r.matched)
    });
    (system.console(), tries)
}

/// Asserts that the prover tried `1 + PROVER_TRIES` times, then said once that it
/// gave up, as a failed connection, and paired with nobody.
fn assert_tried_and_gave_up(console: &[String], tries: u32) {
    let all = console.join("\n");
    let refused: Vec<_> = console
        .iter()
        .filter(|l| l.starts_with("dsoftbusd: pairing refused"))
        .collect();
    assert_eq!(
        refused,
        ["dsoftbusd: pairing refused (connect-failed)"],
        "{all}"
    );
    assert_eq!(tries, 1 + dsoftbusd::pairing::PROVER_TRIES, "{all}");
    assert!(!console.iter().any(|l| l.contains("paired with")), "{all}");
}

/// A device whose `pair=` names an address where nothing listens (yet): the connection
/// is refused, so it tries again every 250 ms, 40 more times, then gives up and says
/// so once (`docs/protocol.md` section 11.7, "Tries"). Over netstackd's loopback
/// interface, on a port no one listens on; the clock is moved on rather than waited.
#[test]
fn a_device_whose_peer_refuses_the_connection_tries_again_forty_times_then_gives_up() {
    let a = Device::provisioned();
    let system = HostSystem::boot_commanded::<P>(
        Entropy::Host,
        a.disks(),
        "pair=127.0.0.1:7412:2020-2021",
        JOURNAL_PER_TASK,
    );
    let (console, tries) = tries_until_given_up(system, 50);
    assert_tried_and_gave_up(&console, tries);
}

/// A device whose `pair=` names an address no one answers at (the other device not up
/// on the link yet: no ARP reply, no reset): each try ends at the pairing deadline as
/// a failed connection (the other device began nothing, so counted nothing) and is
/// tried again, 40 more times.
#[test]
fn a_device_whose_peer_never_answers_tries_again_forty_times_then_gives_up() {
    let a = Device::provisioned();
    // A link whose other end nobody reads.
    let end = LinkedNic::new(
        [2, 0, 0, 0, 0, 0xb],
        Wire::default(),
        Wire::default(),
        Arc::default(),
    );
    let system = HostSystem::boot_on_network::<P>(
        Entropy::Host,
        a.disks(),
        Box::new(end),
        "net.ip=10.0.2.16/24 net.gw=none pair=10.0.2.15:7411:2020-2021",
        JOURNAL_PER_TASK,
    );
    let (console, tries) = tries_until_given_up(system, 500);
    assert_tried_and_gave_up(&console, tries);
}
