//! The network faults a device must survive, each followed by a good session on the
//! same boot (`cargo xtask test` runs them all against every combination).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::session::{Peer, SessionError, dial};
use crate::wire::{self, WireError};

/// A fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// Hello and the first message, read the second, then disconnect.
    MidHandshake,
    /// 512 random bytes instead of a hello.
    RandomBytes,
    /// A length field of 65,535 (beyond the device's 1,024).
    OversizedLength,
    /// The hello one byte at a time, then silence: the handshake deadline must free it.
    Slowloris,
    /// 64 connection attempts at once, each sending a hello.
    Burst,
}

impl Fault {
    /// Every fault, in the order `faults` runs them.
    pub const ALL: [Fault; 5] = [
        Self::MidHandshake,
        Self::RandomBytes,
        Self::OversizedLength,
        Self::Slowloris,
        Self::Burst,
    ];
}

/// How long this peer waits for the device to close a stalled connection: its
/// handshake deadline is 3 s, but an emulated device on a loaded host may not run
/// for seconds, so the wait is sized for that (a failure says it waited this long).
const STALL_LIMIT: Duration = Duration::from_secs(30);

/// Reads until the device closes the connection; returns the bytes it sent first.
fn until_closed(stream: &mut TcpStream, limit: Duration) -> Result<(Vec<u8>, Duration), String> {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let mut received = Vec::new();
    let mut buffer = [0u8; 512];
    loop {
        if started.elapsed() > limit {
            return Err(format!(
                "slow: the device kept the connection open for more than {} s",
                limit.as_secs()
            ));
        }
        match stream.read(&mut buffer) {
            Ok(0) => return Ok((received, started.elapsed())),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Ok((received, started.elapsed()));
            }
            Err(e) => return Err(format!("reading: {e}")),
        }
    }
}

fn random(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).expect("host entropy");
    bytes
}

/// Mounts `fault` against the device at `addr`; says what the device did.
///
/// # Errors
/// What the device did wrong.
pub fn mount(peer: &Peer, addr: SocketAddr, fault: Fault) -> Result<String, String> {
    match fault {
        Fault::MidHandshake => {
            let (mut stream, key, busy) = accepted_hello(peer, addr)?;
            let params: snow::params::NoiseParams =
                peer.suite.parse().map_err(|e: snow::Error| e.to_string())?;
            let mut noise = snow::Builder::new(params)
                .remote_public_key(&key)
                .and_then(|b| b.prologue(crate::session::PROLOGUE))
                .and_then(|b| {
                    let pair = b.generate_keypair()?;
                    b.local_private_key(&pair.private)?.build_initiator()
                })
                .map_err(|e| e.to_string())?;
            let mut buffer = [0u8; 256];
            let len = noise
                .write_message(&[], &mut buffer)
                .map_err(|e| e.to_string())?;
            wire::write_frame(&mut stream, &buffer[..len]).map_err(|e| e.to_string())?;
            wire::read_frame(&mut stream, "handshake message 2").map_err(|e| e.to_string())?;
            drop(stream);
            Ok(match busy {
                0 => "disconnected after the device's second message".into(),
                n => format!(
                    "disconnected after the device's second message (hello busy {n} times first)"
                ),
            })
        }
        Fault::RandomBytes => {
            let mut stream = dial(addr).map_err(|e| e.to_string())?;
            stream.write_all(&random(512)).map_err(|e| e.to_string())?;
            let (answer, took) = until_closed(&mut stream, STALL_LIMIT)?;
            Ok(format!(
                "closed after {} ms, having sent {} bytes",
                took.as_millis(),
                answer.len()
            ))
        }
        Fault::OversizedLength => {
            let mut stream = dial(addr).map_err(|e| e.to_string())?;
            let mut bytes = vec![0xff, 0xff];
            bytes.extend_from_slice(&random(100));
            stream.write_all(&bytes).map_err(|e| e.to_string())?;
            let (answer, took) = until_closed(&mut stream, STALL_LIMIT)?;
            if !answer.is_empty() {
                return Err(format!(
                    "answered a 65535-byte length with {} bytes",
                    answer.len()
                ));
            }
            Ok(format!(
                "closed without an answer after {} ms",
                took.as_millis()
            ))
        }
        Fault::Slowloris => {
            let mut stream = dial(addr).map_err(|e| e.to_string())?;
            let hello = wire::hello(&peer.suite);
            let mut frame = (hello.len() as u16).to_be_bytes().to_vec();
            frame.extend_from_slice(&hello);
            let started = Instant::now();
            for byte in &frame[..4] {
                if stream.write_all(&[*byte]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            let (answer, _) = until_closed(&mut stream, STALL_LIMIT)?;
            if !answer.is_empty() {
                return Err(format!(
                    "answered a partial hello with {} bytes",
                    answer.len()
                ));
            }
            Ok(format!(
                "4 bytes at 300 ms each, then silence: closed {} ms after the first byte",
                started.elapsed().as_millis()
            ))
        }
        Fault::Burst => {
            // Each connection whose hello is answered OK holds a half-open slot until
            // the device's handshake deadline closes it; the peer records when each
            // was open, so "at once" is measured, however slow the device is.
            let threads: Vec<_> = (0..64)
                .map(|_| {
                    let suite = peer.suite.clone();
                    std::thread::spawn(move || -> (&'static str, Option<(Instant, Instant)>) {
                        let Ok(mut stream) = dial(addr) else {
                            return ("not connected", None);
                        };
                        if wire::write_frame(&mut stream, &wire::hello(&suite)).is_err() {
                            return ("reset", None);
                        }
                        let reply = wire::read_frame(&mut stream, "hello reply")
                            .map_err(|_| ())
                            .and_then(|body| wire::parse_hello_reply(&body).map_err(|_| ()));
                        match reply {
                            Ok(r) if r.status == wire::STATUS_OK => {
                                let offered = Instant::now();
                                match until_closed(&mut stream, STALL_LIMIT) {
                                    Ok(_) => ("handshake offered", Some((offered, Instant::now()))),
                                    Err(_) => ("offered and never closed", None),
                                }
                            }
                            Ok(r) if r.status == wire::STATUS_BUSY => ("busy", None),
                            _ => ("closed", None),
                        }
                    })
                })
                .collect();
            let mut open = Vec::new();
            let mut tally: std::collections::BTreeMap<&str, usize> = Default::default();
            for thread in threads {
                let (outcome, interval) = thread.join().expect("burst thread");
                *tally.entry(outcome).or_default() += 1;
                open.extend(interval);
            }
            let summary: Vec<String> = tally.iter().map(|(k, v)| format!("{v} {k}")).collect();
            if tally.contains_key("offered and never closed") {
                return Err(format!(
                    "a half-open handshake outlived the device's deadline: {}",
                    summary.join(", ")
                ));
            }
            let at_once = most_at_once(&open);
            // The device's half-open quota (4 in all, 2 per source) bounds it.
            if at_once > 4 {
                return Err(format!(
                    "{at_once} handshakes offered at once: {}",
                    summary.join(", ")
                ));
            }
            Ok(format!(
                "64 at once: {} (at most {at_once} open at once)",
                summary.join(", ")
            ))
        }
    }
}

/// The most of `intervals` (open, closed) that overlap at one moment.
fn most_at_once(intervals: &[(Instant, Instant)]) -> usize {
    let mut events: Vec<(Instant, i32)> = intervals
        .iter()
        .flat_map(|&(open, closed)| [(open, 1), (closed, -1)])
        .collect();
    // At one instant, closes count before opens.
    events.sort_by_key(|&(at, delta)| (at, delta));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, delta) in events {
        now += delta;
        most = most.max(now);
    }
    usize::try_from(most).unwrap_or(0)
}

/// A connection whose hello the device accepted, the device's static key, and how
/// many hellos heard Busy first (the device's entropy pace, spent by the sessions
/// before the fault), waited out as a peer would, at most 40 times.
fn accepted_hello(peer: &Peer, addr: SocketAddr) -> Result<(TcpStream, [u8; 32], u32), String> {
    let mut busy = 0;
    loop {
        let mut stream = dial(addr).map_err(|e| e.to_string())?;
        wire::write_frame(&mut stream, &wire::hello(&peer.suite)).map_err(|e| e.to_string())?;
        let reply = wire::read_frame(&mut stream, "hello reply").map_err(|e| e.to_string())?;
        let reply = wire::parse_hello_reply(&reply).map_err(|e| e.to_string())?;
        match reply.static_key {
            Some(key) => return Ok((stream, key, busy)),
            None if reply.status == wire::STATUS_BUSY && busy < 40 => {
                busy += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
            None => {
                return Err(format!(
                    "the hello was not accepted (status {}, after {busy} busy)",
                    reply.status
                ));
            }
        }
    }
}

/// A good session (handshake, a ping, `BYE`), retried while the device is still
/// freeing what a fault held (Busy, or connections refused), at most 40 times.
///
/// # Errors
/// The last failure.
pub fn good_session(
    peer: &Peer,
    addr: SocketAddr,
    expected: &[u8; 32],
) -> Result<Duration, String> {
    let mut last = String::new();
    for _ in 0..40 {
        match peer.connect(addr, expected) {
            Ok(mut session) => {
                let data = random(16);
                session.ping(&data).map_err(|e| format!("ping: {e}"))?;
                let took = session.handshake_time;
                session.bye().map_err(|e| format!("bye: {e}"))?;
                return Ok(took);
            }
            // A slow device is named at once, not waited for again and again.
            Err(error @ SessionError::Wire(WireError::Slow { .. })) => {
                return Err(error.to_string());
            }
            Err(error @ (SessionError::Busy | SessionError::Wire(_))) => {
                last = error.to_string();
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(error) => return Err(error.to_string()),
        }
    }
    Err(format!("no good session after 40 tries: {last}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_counts_what_is_open_at_one_moment() {
        let t = Instant::now();
        let at = |ms| t + Duration::from_millis(ms);
        assert_eq!(most_at_once(&[]), 0);
        // Two at a time, three times over: never more than two at once.
        let waves: Vec<_> = (0..3)
            .flat_map(|w| {
                [
                    (at(w * 100), at(w * 100 + 100)),
                    (at(w * 100), at(w * 100 + 100)),
                ]
            })
            .collect();
        assert_eq!(most_at_once(&waves), 2);
        assert_eq!(
            most_at_once(&[(at(0), at(50)), (at(10), at(60)), (at(20), at(30))]),
            3
        );
    }
}
