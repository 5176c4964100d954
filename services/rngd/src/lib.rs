//! rngd, the single entropy authority.
//!
//! rngd alone holds the entropy-device capability (`policies/manifest.toml`); no other
//! task links or reaches the driver. It offers one operation, `GET_ENTROPY { n }`,
//! `1 <= n <= 256` (see `service_api::rngd`), gated by the kernel's policy.
//!
//! - **Start-up.** rngd claims the device and runs [`STARTUP_SAMPLES`] raw bytes
//!   through the health tests ([`health`]), then discards them; then it seeds its
//!   generator ([`drbg`], ChaCha20 with fast key erasure) with 32 more tested bytes.
//!   `rngd: ready` is printed only after both passed.
//! - **Serving.** Callers are served from the generator, never from the device: a
//!   burst of requests is not a burst of device reads, and a request's cost does not
//!   depend on the device's timing. Every device byte still goes through the health
//!   tests. The generator takes fresh device entropy on a schedule
//!   ([`drbg::SCHEDULE`]: 64 KiB served or one minute); if that read fails or a test
//!   trips, no byte of the request is served and rngd closes for good.
//! - **Fail closed.** Without a device, after a device failure, or after a tripped
//!   test, rngd answers every request with a typed error (`Unavailable`,
//!   `HealthTestFailed`) and prints why once: it never falls back to another source.
//! - **Audit.** Every request gets a record: caller, size asked for, verdict, reason.
//!   Never the bytes.
//!
//! The request handling ([`Rngd::handle`]) is a plain function of the request, so the
//! host tests drive it directly as well as through the kernel.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod drbg;
pub mod health;

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use ipc::{
    Action, AuditEvent, CapabilityError, DeviceError, Endpoint, Operation, RawEntropyDevice,
    ServiceId, Verdict,
};
use service_api::{Incoming, ServiceError, reply_err, reply_ok};
use zeroize::Zeroizing;

use crate::drbg::{Drbg, SEED_LEN, Schedule};
use crate::health::{HealthFailure, HealthTests};

/// Raw samples tested (and discarded) before rngd serves anything.
pub const STARTUP_SAMPLES: usize = 1024;

/// Device reads per request before rngd gives up on a device that keeps returning
/// nothing.
const MAX_READS_PER_REQUEST: usize = 16;

/// Why rngd serves no entropy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// The kernel handed out no device.
    NoDevice(CapabilityError),
    /// The device failed or stalled.
    Device(DeviceError),
    /// The device returned nothing, repeatedly.
    Starved,
    /// A health test tripped.
    Health(HealthFailure),
}

impl Closed {
    /// The error requests are answered with.
    pub const fn error(self) -> ServiceError {
        match self {
            Self::Health(_) => ServiceError::HealthTestFailed,
            _ => ServiceError::Unavailable,
        }
    }
}

/// rngd's state: a healthy device and the generator it seeded, or closed for a reason.
pub struct Rngd<D: RawEntropyDevice> {
    source: Result<(D, HealthTests), Closed>,
    drbg: Option<Drbg>,
}

/// A handled request: the reply frame's payload or error, and its audit record.
pub struct Handled {
    /// The entropy (wiped on drop) or the error.
    pub reply: Result<Zeroizing<Vec<u8>>, ServiceError>,
    /// The record of the decision.
    pub audit: AuditEvent,
    /// Set when this request closed rngd.
    pub closed_now: Option<Closed>,
}

impl<D: RawEntropyDevice> Rngd<D> {
    /// Takes the device (or the reason there is none), runs the start-up tests and
    /// seeds the generator, with rngd's reseed schedule, at time 0.
    pub fn start(device: Result<D, CapabilityError>) -> Self {
        Self::start_with(device, drbg::SCHEDULE, 0)
    }

    /// [`Rngd::start`] with another reseed schedule, at `now_ms`.
    pub fn start_with(device: Result<D, CapabilityError>, schedule: Schedule, now_ms: u64) -> Self {
        let mut rngd = Self {
            source: device
                .map(|d| (d, HealthTests::new()))
                .map_err(Closed::NoDevice),
            drbg: None,
        };
        if rngd.source.is_ok() {
            let mut startup = Zeroizing::new(vec![0u8; STARTUP_SAMPLES]);
            for chunk in startup.chunks_mut(service_api::rngd::MAX_REQUEST) {
                if rngd.draw(chunk).is_err() {
                    return rngd;
                }
            }
            let mut seed = Zeroizing::new([0u8; SEED_LEN]);
            if rngd.draw(&mut seed[..]).is_ok() {
                rngd.drbg = Some(Drbg::new(&seed, schedule, now_ms));
            }
        }
        rngd
    }

    /// `Ok(())` when serving, or why not.
    pub fn status(&self) -> Result<(), Closed> {
        self.source.as_ref().map(|_| ()).map_err(|closed| *closed)
    }

    /// Reseeds so far (0 before the first).
    pub fn reseeds(&self) -> u64 {
        self.drbg.as_ref().map_or(0, Drbg::reseeds)
    }

    /// Fills `dest` from the generator, reseeding first when the schedule says so.
    fn serve(&mut self, dest: &mut [u8], now_ms: u64) -> Result<(), Closed> {
        self.status()?;
        if self.drbg.as_ref().is_some_and(|d| d.due(now_ms)) {
            let mut fresh = Zeroizing::new([0u8; SEED_LEN]);
            self.draw(&mut fresh[..])?;
            if let Some(drbg) = self.drbg.as_mut() {
                drbg.reseed(&fresh, now_ms);
            }
        }
        match self.drbg.as_mut() {
            Some(drbg) => {
                drbg.fill(dest);
                Ok(())
            }
            None => Err(self.status().err().unwrap_or(Closed::Starved)),
        }
    }

    /// Fills `dest` with tested entropy, or closes rngd.
    fn draw(&mut self, dest: &mut [u8]) -> Result<(), Closed> {
        let (device, tests) = self.source.as_mut().map_err(|closed| *closed)?;
        let mut filled = 0;
        let mut reads = 0;
        let outcome = loop {
            if filled == dest.len() {
                break Ok(());
            }
            if reads == MAX_READS_PER_REQUEST {
                break Err(Closed::Starved);
            }
            reads += 1;
            match device.read(&mut dest[filled..]) {
                Ok(n) => {
                    // A device that claims more bytes than it was given room for is
                    // not to be trusted with anything else either.
                    let Some(fresh) = filled.checked_add(n).and_then(|end| dest.get(filled..end))
                    else {
                        break Err(Closed::Device(DeviceError::Failed));
                    };
                    if let Err(failure) = tests.feed_all(fresh) {
                        break Err(Closed::Health(failure));
                    }
                    filled += n;
                }
                Err(error) => break Err(Closed::Device(error)),
            }
        };
        if let Err(closed) = outcome {
            zeroize::Zeroize::zeroize(dest);
            self.source = Err(closed);
            // The generator goes too (its state zeroizes as it drops).
            self.drbg = None;
        }
        outcome
    }

    /// Handles one request frame from `sender` at `now_ms` (for the reseed schedule).
    pub fn handle(&mut self, sender: ServiceId, frame: &[u8], now_ms: u64) -> Handled {
        let code = Operation::RngdGetEntropy.code();
        let request = ipc::Request {
            sender,
            sender_generation: 0,
            frame: ipc::IpcBuffer::copy_from(frame),
            token: ipc::ReplyToken(0),
        };
        let parsed = Incoming::parse(ServiceId::Rngd, &request).and_then(|incoming| {
            service_api::rngd::decode_request(incoming.payload)
                .map_err(|e| (e, incoming.operation.code()))
        });
        let audit = |verdict, reason: u16, detail: usize, code| AuditEvent {
            subject: sender,
            action: Action::Call {
                service: ServiceId::Rngd,
                code,
            },
            verdict,
            reason,
            detail: u32::try_from(detail).unwrap_or(u32::MAX),
        };
        let n = match parsed {
            Ok(n) => n,
            Err((error, code)) => {
                let asked = frame.len().saturating_sub(ipc::frame::HEADER_LEN);
                return Handled {
                    reply: Err(error),
                    audit: audit(Verdict::Rejected, error.code(), asked, code),
                    closed_now: None,
                };
            }
        };
        let was_open = self.source.is_ok();
        let mut bytes = Zeroizing::new(vec![0u8; n]);
        match self.serve(&mut bytes, now_ms) {
            Ok(()) => Handled {
                reply: Ok(bytes),
                audit: audit(Verdict::Allowed, 0, n, code),
                closed_now: None,
            },
            Err(closed) => Handled {
                reply: Err(closed.error()),
                audit: audit(Verdict::Failed, closed.error().code(), n, code),
                closed_now: was_open.then_some(closed),
            },
        }
    }
}

fn announce<E: Endpoint>(ep: &E, closed: Closed) {
    match closed {
        Closed::NoDevice(_) => ep.console(markers::RNGD_NO_DEVICE.message),
        Closed::Health(failure) => {
            ep.console(&markers::RNGD_HEALTH_TEST_FAILED.render(&[failure.name()]))
        }
        Closed::Device(error) => {
            ep.console(&format!("fail-closed: entropy device failed: {error:?}"))
        }
        Closed::Starved => ep.console("fail-closed: entropy device returns no data"),
    }
    let reason = match closed {
        Closed::Health(failure) => failure.code(),
        _ => closed.error().code(),
    };
    ep.audit(AuditEvent {
        subject: ServiceId::Rngd,
        action: Action::Health,
        verdict: Verdict::Failed,
        reason,
        detail: 0,
    });
}

/// Runs rngd until the machine stops.
pub async fn run<E: Endpoint>(ep: E) {
    let mut rngd = Rngd::start_with(ep.claim_entropy_device(), drbg::SCHEDULE, ep.uptime_ms());
    match rngd.status() {
        Ok(()) => ep.console(markers::RNGD_READY.message),
        Err(closed) => announce(&ep, closed),
    }
    loop {
        let request = ep.receive().await;
        let handled = rngd.handle(request.sender, &request.frame, ep.uptime_ms());
        ep.audit(handled.audit);
        if let Some(closed) = handled.closed_now {
            announce(&ep, closed);
        }
        // A refused reply means the caller gave up; the bytes are wiped either way.
        let _ = match &handled.reply {
            Ok(bytes) => reply_ok(&ep, request.token, bytes),
            Err(error) => reply_err(&ep, request.token, *error),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc::Frame;

    /// Serves a fixed byte pattern; counts reads.
    struct Scripted {
        bytes: Vec<u8>,
        at: usize,
        per_read: usize,
    }

    impl RawEntropyDevice for Scripted {
        fn read(&mut self, dest: &mut [u8]) -> Result<usize, DeviceError> {
            let n = dest
                .len()
                .min(self.per_read)
                .min(self.bytes.len() - self.at);
            dest[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn healthy(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    fn request(n: u16) -> Vec<u8> {
        Frame::request(Operation::RngdGetEntropy, &n.to_le_bytes())
            .encode()
            .unwrap()
            .to_vec()
    }

    #[test]
    fn serves_from_a_generator_seeded_with_tested_bytes_after_the_startup_samples() {
        use rand_core::{Rng, SeedableRng};
        // Healthy bytes for the start-up samples and the seed, then a stuck device:
        // requests within the schedule never read it.
        let mut bytes = healthy(STARTUP_SAMPLES + SEED_LEN);
        bytes.extend([0u8; 64]);
        let mut rngd = Rngd::start(Ok(Scripted {
            bytes: bytes.clone(),
            at: 0,
            per_read: 100,
        }));
        assert_eq!(rngd.status(), Ok(()));
        let handled = rngd.handle(ServiceId::Keystored, &request(32), 0);
        let seed: [u8; 32] = bytes[STARTUP_SAMPLES..STARTUP_SAMPLES + 32]
            .try_into()
            .unwrap();
        let mut expected = [0u8; 32];
        chacha20::ChaCha20Rng::from_seed(seed).fill_bytes(&mut expected);
        assert_eq!(
            handled.reply.as_deref().map(|b| b.to_vec()),
            Ok(expected.to_vec())
        );
        assert_eq!(
            (handled.audit.verdict, handled.audit.detail),
            (Verdict::Allowed, 32)
        );
        for _ in 0..100 {
            let next = rngd.handle(ServiceId::Keystored, &request(256), 0);
            assert!(
                next.reply.is_ok(),
                "a burst of requests reads no device byte"
            );
        }
        assert_eq!(rngd.reseeds(), 0);
    }

    #[test]
    fn the_schedule_takes_fresh_device_entropy_by_bytes_and_by_time() {
        let schedule = Schedule {
            reseed_bytes: 512,
            reseed_ms: 1_000,
        };
        let mut rngd = Rngd::start_with(
            Ok(Scripted {
                bytes: healthy(8192),
                at: 0,
                per_read: 256,
            }),
            schedule,
            0,
        );
        for _ in 0..2 {
            assert!(
                rngd.handle(ServiceId::Keystored, &request(256), 10)
                    .reply
                    .is_ok()
            );
        }
        assert_eq!(rngd.reseeds(), 0);
        assert!(
            rngd.handle(ServiceId::Keystored, &request(1), 10)
                .reply
                .is_ok()
        );
        assert_eq!(rngd.reseeds(), 1, "after 512 bytes");
        assert!(
            rngd.handle(ServiceId::Keystored, &request(1), 1_009)
                .reply
                .is_ok()
        );
        assert_eq!(rngd.reseeds(), 1);
        assert!(
            rngd.handle(ServiceId::Keystored, &request(1), 1_010)
                .reply
                .is_ok()
        );
        assert_eq!(rngd.reseeds(), 2, "after a second");
    }

    #[test]
    fn bad_requests_get_typed_errors_and_records_and_rngd_keeps_serving() {
        let mut rngd = Rngd::start(Ok(Scripted {
            bytes: healthy(8192),
            at: 0,
            per_read: 256,
        }));
        let wrong_op = Frame::request(Operation::LogdQuery, &[1, 0])
            .encode()
            .unwrap()
            .to_vec();
        let cases: [(Vec<u8>, ServiceError); 6] = [
            (request(257), ServiceError::RequestTooLarge),
            (request(0), ServiceError::EmptyRequest),
            (
                Frame::request(Operation::RngdGetEntropy, &[1])
                    .encode()
                    .unwrap()
                    .to_vec(),
                ServiceError::MalformedRequest,
            ),
            (vec![1, 1, 1], ServiceError::MalformedRequest),
            (wrong_op, ServiceError::UnknownOperation),
            (
                Frame::reply(&[1, 0]).encode().unwrap().to_vec(),
                ServiceError::MalformedRequest,
            ),
        ];
        for (frame, expected) in cases {
            let handled = rngd.handle(ServiceId::Selftest, &frame, 0);
            assert_eq!(handled.reply.err(), Some(expected));
            assert_eq!(handled.audit.verdict, Verdict::Rejected);
            assert_eq!(handled.audit.reason, expected.code());
            assert_eq!(handled.audit.subject, ServiceId::Selftest);
            let good = rngd.handle(ServiceId::Selftest, &request(16), 0);
            assert_eq!(
                good.reply.map(|b| b.len()),
                Ok(16),
                "still serving after {expected:?}"
            );
        }
        let oversized = rngd.handle(ServiceId::Selftest, &request(257), 0);
        assert_eq!(
            oversized.audit.detail, 2,
            "the record holds the size of the payload, not bytes"
        );
    }

    #[test]
    fn a_stuck_device_fails_the_startup_and_rngd_serves_nothing() {
        let mut rngd = Rngd::start(Ok(Scripted {
            bytes: vec![0; 4096],
            at: 0,
            per_read: 256,
        }));
        assert_eq!(
            rngd.status(),
            Err(Closed::Health(HealthFailure::RepetitionCount))
        );
        let handled = rngd.handle(ServiceId::Keystored, &request(32), 0);
        assert_eq!(handled.reply.err(), Some(ServiceError::HealthTestFailed));
        assert_eq!(handled.audit.verdict, Verdict::Failed);
        assert_eq!(
            handled.closed_now, None,
            "closed at start-up, announced then"
        );
    }

    #[test]
    fn a_reseed_that_trips_a_test_serves_none_of_that_request_and_closes_rngd() {
        let mut bytes = healthy(STARTUP_SAMPLES + SEED_LEN);
        bytes.extend([7u8; 64]);
        let schedule = Schedule {
            reseed_bytes: 64,
            reseed_ms: u64::MAX,
        };
        let mut rngd = Rngd::start_with(
            Ok(Scripted {
                bytes,
                at: 0,
                per_read: 256,
            }),
            schedule,
            0,
        );
        assert!(
            rngd.handle(ServiceId::Keystored, &request(64), 0)
                .reply
                .is_ok()
        );
        let handled = rngd.handle(ServiceId::Keystored, &request(64), 0);
        assert_eq!(handled.reply.err(), Some(ServiceError::HealthTestFailed));
        assert_eq!(
            handled.closed_now,
            Some(Closed::Health(HealthFailure::RepetitionCount))
        );
        assert!(
            rngd.handle(ServiceId::Keystored, &request(1), 0)
                .reply
                .is_err(),
            "closed for good"
        );
    }

    /// Claims to have written more bytes than it was offered.
    struct Overclaiming(Scripted);

    impl RawEntropyDevice for Overclaiming {
        fn read(&mut self, dest: &mut [u8]) -> Result<usize, DeviceError> {
            let n = self.0.read(dest)?;
            Ok(if self.0.at > STARTUP_SAMPLES + SEED_LEN {
                n + 1
            } else {
                n
            })
        }
    }

    #[test]
    fn a_device_that_overstates_its_byte_count_closes_rngd_instead_of_panicking() {
        let schedule = Schedule {
            reseed_bytes: 32,
            reseed_ms: u64::MAX,
        };
        let mut rngd = Rngd::start_with(
            Ok(Overclaiming(Scripted {
                bytes: healthy(8192),
                at: 0,
                per_read: 64,
            })),
            schedule,
            0,
        );
        assert_eq!(rngd.status(), Ok(()));
        assert!(
            rngd.handle(ServiceId::Keystored, &request(32), 0)
                .reply
                .is_ok()
        );
        let handled = rngd.handle(ServiceId::Keystored, &request(32), 0);
        assert_eq!(handled.reply.err(), Some(ServiceError::Unavailable));
        assert_eq!(
            handled.closed_now,
            Some(Closed::Device(DeviceError::Failed))
        );
        assert_eq!(handled.audit.verdict, Verdict::Failed);
    }

    #[test]
    fn no_device_and_an_empty_device_fail_closed() {
        let absent: Rngd<Scripted> = Rngd::start(Err(CapabilityError::Absent));
        assert_eq!(
            absent.status(),
            Err(Closed::NoDevice(CapabilityError::Absent))
        );
        let empty = Rngd::start(Ok(Scripted {
            bytes: Vec::new(),
            at: 0,
            per_read: 256,
        }));
        assert_eq!(empty.status(), Err(Closed::Starved));
        assert_eq!(Closed::Starved.error(), ServiceError::Unavailable);
    }
}
