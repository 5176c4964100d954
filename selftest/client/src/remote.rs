//! After the ladder: sessions with peers outside the image.
//!
//! The kernel command line says what to do:
//!
//! - `dsoftbus.peer=A.B.C.D:PORT dsoftbus.peer_key=HEX`: ask dsoftbusd to open a
//!   session to that device (`CONNECT`: the handshake as initiator with the device's
//!   own identity, a ping, `BYE`) and print the outcome. The peer may still be
//!   booting, so a refused connection is retried, a bounded number of times.
//! - `serve` or `serve=SECONDS` (at most [`MAX_SERVE_S`]): keep running so peers can
//!   open sessions to this device (`cargo xtask run --net user`, the host-peer and
//!   two-device scenarios), then finish.
//! - `spin`: the watchdog's test: the kernel runs a process that spins without a
//!   system call beside the ladder (after the isolation phase's steps); the process
//!   watchdog must name and stop it while everything else goes on. The selftest then
//!   expects the watchdog's second audit record.
//! - `entropy-fails`: the entropy source goes bad after boot (the harness backs
//!   virtio-rng with good bytes, then zeros): with a session established, the selftest
//!   draws from rngd until its generator's reseed reads the bad bytes, then checks
//!   what must hold: rngd stays closed, keystored keeps its key, dsoftbusd refuses new
//!   sessions with a clear error, and the established session goes on.

use alloc::format;
use alloc::string::String;

use ipc::Endpoint;
use provider_api::{HashBackend, Provider};
use service_api::netstackd::SocketAddr;
use service_api::pause as sleep;
use service_api::{ClientError, ServiceError, dsoftbusd as api};

/// The longest `serve`: the kernel stops the machine at 600 s.
pub const MAX_SERVE_S: u64 = 540;
/// `serve` without a number.
pub const DEFAULT_SERVE_S: u64 = 300;
/// `CONNECT` attempts while the peer refuses (it may not be listening yet).
const CONNECT_ATTEMPTS: u32 = 40;
/// Between attempts.
const RETRY_MS: u64 = 250;

/// What the command line asks for after the ladder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The peer device to open a session to, and the device key it must prove.
    pub peer: Option<(SocketAddr, [u8; 32])>,
    /// How long to keep serving, in seconds.
    pub serve_s: Option<u64>,
    /// A spinner runs beside the ladder (the watchdog's test).
    pub spin: bool,
    /// Check the system after the entropy source fails.
    pub entropy_fails: bool,
    /// Soak rounds (`soak=N`).
    pub soak: Option<usize>,
}

/// Why the command line was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// `dsoftbus.peer` is not `A.B.C.D:PORT`.
    BadPeer,
    /// `dsoftbus.peer_key` is not 64 hex digits.
    BadPeerKey,
    /// One of `dsoftbus.peer` and `dsoftbus.peer_key` without the other.
    Incomplete,
    /// `serve=` is not a number of seconds up to [`MAX_SERVE_S`].
    BadServe,
    /// `soak=` is not a number of rounds.
    BadSoak,
}

fn parse_peer(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let ip: core::net::Ipv4Addr = ip.parse().ok()?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    Some(SocketAddr {
        ip: ip.octets(),
        port,
    })
}

fn parse_key(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

impl Plan {
    /// Reads the plan from the kernel command line.
    ///
    /// # Errors
    /// [`PlanError`].
    pub fn from_bootargs(bootargs: &str) -> Result<Self, PlanError> {
        let (mut addr, mut key, mut serve_s) = (None, None, None);
        let (mut spin, mut entropy_fails, mut soak) = (false, false, None);
        for word in bootargs.split_whitespace() {
            if let Some(value) = word.strip_prefix("dsoftbus.peer=") {
                addr = Some(parse_peer(value).ok_or(PlanError::BadPeer)?);
            } else if let Some(value) = word.strip_prefix("dsoftbus.peer_key=") {
                key = Some(parse_key(value).ok_or(PlanError::BadPeerKey)?);
            } else if word == "spin" {
                spin = true;
            } else if word == "entropy-fails" {
                entropy_fails = true;
            } else if let Some(value) = word.strip_prefix("soak=") {
                soak = Some(value.parse().map_err(|_| PlanError::BadSoak)?);
            } else if word == "serve" {
                serve_s = Some(DEFAULT_SERVE_S);
            } else if let Some(value) = word.strip_prefix("serve=") {
                let seconds: u64 = value.parse().map_err(|_| PlanError::BadServe)?;
                if seconds == 0 || seconds > MAX_SERVE_S {
                    return Err(PlanError::BadServe);
                }
                serve_s = Some(seconds);
            }
        }
        let peer = match (addr, key) {
            (Some(addr), Some(key)) => Some((addr, key)),
            (None, None) => None,
            _ => return Err(PlanError::Incomplete),
        };
        Ok(Self {
            peer,
            serve_s,
            spin,
            entropy_fails,
            soak,
        })
    }
}

/// The outcome word of the remote-session marker.
fn outcome(result: &Result<api::Connected, ClientError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(ClientError::Service(ServiceError::OtherAlgorithm)) => "suite-mismatch",
        Err(ClientError::Service(ServiceError::AuthenticationFailed)) => "authentication-failed",
        Err(ClientError::Service(ServiceError::Refused)) => "refused",
        Err(ClientError::Service(ServiceError::TimedOut)) => "timed-out",
        Err(ClientError::Service(ServiceError::Busy)) => "busy",
        Err(_) => "failed",
    }
}

/// Asks dsoftbusd for a session to `peer` and prints the outcome:
/// `SELFTEST: dsoftbus remote session <outcome>` (the harness knows which outcome
/// the pair of devices must give).
pub async fn connect<E: Endpoint>(ep: &E, peer: SocketAddr, key: &[u8; 32]) {
    let mut attempts = 0;
    let result = loop {
        attempts += 1;
        let result = api::connect(ep, peer, key).await;
        let again = matches!(
            result,
            Err(ClientError::Service(
                ServiceError::Refused | ServiceError::Busy | ServiceError::TimedOut
            ))
        );
        if !again || attempts == CONNECT_ATTEMPTS {
            break result;
        }
        sleep(ep, RETRY_MS).await;
    };
    let detail: String = match &result {
        Ok(connected) => format!(
            "device {}, handshake hash {}",
            dsoftbusd::hex(&connected.device_key),
            dsoftbusd::hex(&connected.handshake_hash[..8])
        ),
        Err(error) => format!("{error}"),
    };
    ep.console(&format!(
        "session to {peer}: {detail} ({attempts} attempt{})",
        if attempts == 1 { "" } else { "s" }
    ));
    ep.console(&markers::SELFTEST_DSOFTBUS_REMOTE.render(&[outcome(&result)]));
}

/// Keeps the machine running for `seconds` so peers can reach this device.
pub async fn serve<E: Endpoint>(ep: &E, seconds: u64) {
    let line = format!("{seconds}");
    ep.console(&markers::SELFTEST_SERVING.render(&[&line]));
    sleep(ep, seconds * 1000).await;
}

/// Requests of 256 bytes the selftest makes, at most, to drive rngd's generator to its
/// reseed (64 KiB: 256 requests; the ladder drew some already).
const DRAIN_REQUESTS: usize = 300;

/// After the entropy source goes bad: rngd closes at its next reseed and stays closed;
/// keystored still serves its key; dsoftbusd refuses new sessions with a clear error;
/// a session established before goes on. Prints the marker, or `FAIL` with why.
pub async fn entropy_fails<P: Provider, H: HashBackend, E: Endpoint>(ep: &E) -> bool {
    let outcome = check_entropy_failure::<P, H, E>(ep).await;
    match &outcome {
        Ok(()) => ep.console(markers::SELFTEST_ENTROPY_FAILED_MIDRUN.message),
        Err(why) => ep.console(&format!(
            "FAIL {}: {why}",
            markers::SELFTEST_ENTROPY_FAILED_MIDRUN.message
        )),
    }
    outcome.is_ok()
}

async fn check_entropy_failure<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
) -> Result<(), String> {
    use dsoftbusd::client::{
        Believed, ConnectError, Node, connect_tcp, connect_tcp_with_ephemeral,
    };
    use provider_api::{SecretBytes, VerifyingKey};
    use service_api::{keystored, rngd};

    let dsoftbusd_addr = SocketAddr::loopback(dsoftbusd::wire::PORT);
    let secret = |bytes: &[u8]| {
        SecretBytes::from_fill(|out: &mut [u8; 32]| {
            out.copy_from_slice(&bytes[..32]);
            Ok::<(), ()>(())
        })
        .map_err(|()| String::from("entropy"))
    };
    let fresh = rngd::get_entropy(ep, 128)
        .await
        .map_err(|e| format!("rngd before the failure: {e}"))?;
    let node = Node::<P>::new(&secret(&fresh[..32])?, &secret(&fresh[32..64])?)
        .map_err(|e| format!("{e}"))?;
    let ephemerals = [secret(&fresh[64..96])?, secret(&fresh[96..128])?];
    api::trust(ep, &node.device_key())
        .await
        .map_err(|e| format!("TRUST: {e}"))?;
    let device_key = keystored::get_pubkey(ep)
        .await
        .map_err(|e| format!("GET_PUBKEY: {e}"))?;
    let device = VerifyingKey::from_bytes(&device_key).map_err(|e| format!("{e}"))?;
    let trusted = core::slice::from_ref(&device);
    // The ladder's flood may have spent dsoftbusd's entropy pace: Busy means later.
    let mut established = None;
    for _ in 0..50 {
        match connect_tcp::<P, H, E>(
            ep,
            &node,
            dsoftbusd_addr,
            Believed::FromHello,
            trusted,
            |_, _| {},
        )
        .await
        {
            Err(ConnectError::Busy) => sleep(ep, 20).await,
            other => {
                established =
                    Some(other.map_err(|e| format!("a session before the failure: {e}"))?);
                break;
            }
        }
    }
    let mut established =
        established.ok_or_else(|| String::from("dsoftbusd stayed busy before the failure"))?;

    // Draw until the generator's reseed reads the bad bytes.
    let mut drawn = 0usize;
    let mut failure = None;
    for _ in 0..DRAIN_REQUESTS {
        match rngd::get_entropy(ep, 256).await {
            Ok(_) => drawn += 256,
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    match failure {
        Some(ClientError::Service(ServiceError::HealthTestFailed)) => {}
        other => {
            return Err(format!(
                "after {drawn} bytes rngd gave {other:?}, not a tripped test"
            ));
        }
    }
    ep.console(&format!(
        "rngd closed after {drawn} more bytes: its reseed read the bad bytes"
    ));
    match rngd::get_entropy(ep, 32).await {
        Err(ClientError::Service(ServiceError::HealthTestFailed)) => {}
        other => return Err(format!("rngd after closing gave {other:?}")),
    }
    match keystored::get_pubkey(ep).await {
        Ok(key) if key == device_key => {}
        other => return Err(format!("keystored after the failure gave {other:?}")),
    }
    // The first handshake that needs an ephemeral key finds rngd closed (dsoftbusd
    // closes it after its first message); from then on the hello says why. The node
    // uses the entropy it drew before the failure, as a peer with its own source would.
    let mut refusals = alloc::vec::Vec::new();
    for ephemeral in ephemerals {
        let attempt =
            connect_tcp_with_ephemeral::<P, H, E>(ep, &node, dsoftbusd_addr, trusted, ephemeral)
                .await;
        match attempt {
            Err(error) => refusals.push(error),
            Ok(_) => return Err(String::from("a new session was made without entropy")),
        }
    }
    if refusals.last() != Some(&ConnectError::Unavailable) {
        return Err(format!(
            "new sessions were refused with {refusals:?}, not Unavailable"
        ));
    }
    match established.ping(ep, b"still here").await {
        Ok(pong) if pong == b"still here" => {}
        other => {
            return Err(format!(
                "the established session after the failure: {other:?}"
            ));
        }
    }
    established.close(ep).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_comes_from_the_command_line() {
        assert_eq!(Plan::from_bootargs("bench"), Ok(Plan::default()));
        let key = "ab".repeat(32);
        let plan = Plan::from_bootargs(&format!(
            "net.ip=10.0.2.16/24 dsoftbus.peer=10.0.2.15:7411 dsoftbus.peer_key={key} serve=60"
        ))
        .unwrap();
        assert_eq!(
            plan.peer,
            Some((
                SocketAddr {
                    ip: [10, 0, 2, 15],
                    port: 7411
                },
                [0xab; 32]
            ))
        );
        assert_eq!(plan.serve_s, Some(60));
        assert!(!plan.spin);
        assert!(Plan::from_bootargs("spin").unwrap().spin);
        assert!(Plan::from_bootargs("entropy-fails").unwrap().entropy_fails);
        assert_eq!(Plan::from_bootargs("soak=250").unwrap().soak, Some(250));
        assert_eq!(Plan::from_bootargs("soak=x"), Err(PlanError::BadSoak));
        assert_eq!(
            Plan::from_bootargs("serve").unwrap().serve_s,
            Some(DEFAULT_SERVE_S)
        );
        for (args, error) in [
            ("dsoftbus.peer=10.0.2.15", PlanError::BadPeer),
            ("dsoftbus.peer=10.0.2.15:0", PlanError::BadPeer),
            ("dsoftbus.peer_key=abc", PlanError::BadPeerKey),
            ("dsoftbus.peer=10.0.2.15:7411", PlanError::Incomplete),
            ("serve=0", PlanError::BadServe),
            ("serve=999", PlanError::BadServe),
        ] {
            assert_eq!(Plan::from_bootargs(args), Err(error), "{args}");
        }
    }
}
