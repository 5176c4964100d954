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

use alloc::format;
use alloc::string::String;

use ipc::Endpoint;
use service_api::netstackd::SocketAddr;
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
        for word in bootargs.split_whitespace() {
            if let Some(value) = word.strip_prefix("dsoftbus.peer=") {
                addr = Some(parse_peer(value).ok_or(PlanError::BadPeer)?);
            } else if let Some(value) = word.strip_prefix("dsoftbus.peer_key=") {
                key = Some(parse_key(value).ok_or(PlanError::BadPeerKey)?);
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
        Ok(Self { peer, serve_s })
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

async fn sleep<E: Endpoint>(ep: &E, ms: u64) {
    let until = ep.uptime_ms() + ms;
    while ep.uptime_ms() < until {
        ep.yield_now().await;
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
