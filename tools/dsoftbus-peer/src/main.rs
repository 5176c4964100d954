//! `dsoftbus-peer`: a dsoftbus peer on the host that is not the OS's code.
//!
//! Written from `docs/protocol.md` alone: its Noise is `snow`, its identity binding
//! `ed25519-dalek`, its framing and hello its own ([`wire`]). It has its own device
//! identity, an Ed25519 seed in a key file (64 hex digits, made on first use), which
//! a device trusts once provisioned (`TRUST=<hex>` on `cargo xtask run`, or
//! `cargo xtask provision --trust`).
//!
//! - `dsoftbus-peer key --identity FILE` prints this peer's device public key.
//! - `dsoftbus-peer session --addr HOST:PORT --device-key HEX` opens sessions to the
//!   device whose key is `HEX` (as its `keystored: device pubkey` line prints it),
//!   pings, ends each with `BYE`, and prints the handshake wall times.
//! - `dsoftbus-peer pair --addr HOST:PORT --code 1234-5678` pairs with the device whose
//!   setup code that is (section 11: SPAKE2+ with `spake2plus`), prints the device key
//!   it proved and keeps it in the paired file, so that `session` then needs no
//!   `--device-key`. `unpair` asks the device to forget this peer (or `--key`), and
//!   `reopen` to open its pairing window, over a session.
//! - `dsoftbus-peer faults ...` mounts each network fault, each followed by a good
//!   session.
//! - `dsoftbus-peer idle ...` opens a session, pings once, then stays silent and
//!   measures when the device ends it (section 7: `BYE` after 30 s, then the close).

mod faults;
mod pairing;
mod session;
mod wire;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use ed25519_dalek::SigningKey;
use zeroize::Zeroizing;

use crate::faults::Fault;
use crate::session::Peer;

/// A dsoftbus peer on the host (snow for Noise).
#[derive(Parser)]
#[command(name = "dsoftbus-peer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Identity {
    /// This peer's identity key file (made when missing).
    #[arg(long, default_value = "target/dsoftbus-peer.key")]
    identity: PathBuf,
    /// The devices this peer paired with: one `<addr> <device key>` line each.
    #[arg(long, default_value = "target/dsoftbus-peer.paired")]
    paired: PathBuf,
}

#[derive(Args)]
struct Target {
    #[command(flatten)]
    identity: Identity,
    /// The device's address, such as 127.0.0.1:7411.
    #[arg(long)]
    addr: SocketAddr,
    /// The device key the device must prove (64 hex digits); by default the one this
    /// peer paired with at `--addr`.
    #[arg(long)]
    device_key: Option<String>,
    /// The Noise protocol name to speak (the device's: ChaChaPoly or AESGCM).
    #[arg(long, default_value = "Noise_XK_25519_ChaChaPoly_BLAKE2s")]
    suite: String,
}

#[derive(Subcommand)]
enum Command {
    /// Print this peer's device public key (making the key file if missing).
    Key(Identity),
    /// Open sessions, ping, and print the handshake wall times.
    Session {
        #[command(flatten)]
        target: Target,
        /// Sessions to open, one after the other.
        #[arg(long, default_value_t = 1)]
        sessions: usize,
        /// Pings per session.
        #[arg(long, default_value_t = 3)]
        pings: usize,
    },
    /// Open a session, ping, then stay silent: the device must send `BYE` after its
    /// idle timeout and close. Prints how long each took.
    Idle {
        #[command(flatten)]
        target: Target,
        /// The idle timeout the device must keep, in seconds (`docs/protocol.md`).
        #[arg(long, default_value_t = 30)]
        rule_s: u64,
        /// How long to wait for the `BYE` (and then for the close) at most, in seconds.
        #[arg(long, default_value_t = 90)]
        limit_s: u64,
    },
    /// Open sessions until one is cut off (the device scenario that faults netstackd
    /// at a planned connection), then try again until a session works, then open
    /// `--after` more. Prints how long the peer went without a working session: from
    /// the start of the try that failed to the end of the first that worked.
    Outage {
        #[command(flatten)]
        target: Target,
        /// How long a try waits for each answer of the device before it counts as
        /// failed, in milliseconds (the figure includes one such wait).
        #[arg(long, default_value_t = 500)]
        answer_ms: u64,
        /// Working sessions at most before the one cut off.
        #[arg(long, default_value_t = 8)]
        before: u32,
        /// How long the device may stay out of service, in seconds.
        #[arg(long, default_value_t = 30)]
        limit_s: u64,
        /// Sessions that must work after it.
        #[arg(long, default_value_t = 3)]
        after: u32,
        /// The device's console log: a failed try counts as the one cut off only once
        /// the log says `fault injected` (before that it was the device being slow,
        /// and is tried again).
        #[arg(long)]
        console_log: Option<PathBuf>,
    },
    /// Pair with a device by its setup code (section 11), print the device key it
    /// proved, and keep it for `session`.
    Pair {
        #[command(flatten)]
        identity: Identity,
        /// The device's address.
        #[arg(long)]
        addr: SocketAddr,
        /// The device's setup code, as its label prints it (`1234-5678`).
        #[arg(long)]
        code: String,
        /// The suite to speak (the device's).
        #[arg(long, default_value = "Noise_XK_25519_ChaChaPoly_BLAKE2s")]
        suite: String,
    },
    /// Ask the device, over a session, to forget this peer (or `--key`).
    Unpair {
        #[command(flatten)]
        target: Target,
        /// The device key to remove (64 hex digits); this peer's own by default.
        #[arg(long)]
        key: Option<String>,
    },
    /// Ask the device, over a session, to open its pairing window.
    Reopen {
        #[command(flatten)]
        target: Target,
    },
    /// Mount the network faults (all, or the ones named), each followed by a good
    /// session.
    Faults {
        #[command(flatten)]
        target: Target,
        /// The faults to mount.
        #[arg(long, value_enum)]
        only: Vec<Fault>,
    },
}

/// Reads the identity seed, or makes one (never printed).
fn identity(path: &Path) -> Result<SigningKey, String> {
    if !path.exists() {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| format!("host entropy: {e}"))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let text = Zeroizing::new(format!("{}\n", hex::encode(seed.as_ref())));
        write_private(path, text.as_bytes())?;
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
    );
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), seed.as_mut())
        .map_err(|_| format!("{}: not 64 hex digits", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn hex_key(text: &str) -> Result<[u8; 32], String> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut key)
        .map_err(|_| format!("{text:?} is not 64 hex digits"))?;
    Ok(key)
}

/// The device key a session to `target` expects: `--device-key`, or the one this peer
/// paired with at its address.
fn expected_key(target: &Target) -> Result<[u8; 32], String> {
    if let Some(text) = &target.device_key {
        return hex_key(text).map_err(|e| format!("--device-key: {e}"));
    }
    let paired = &target.identity.paired;
    let text = std::fs::read_to_string(paired).unwrap_or_default();
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .find(|(addr, _)| *addr == target.addr.to_string())
        .map(|(_, key)| hex_key(key))
        .transpose()?
        .ok_or_else(|| {
            format!(
                "no --device-key, and no pairing with {} in {}: run `pair` first",
                target.addr,
                paired.display()
            )
        })
}

/// Keeps `device_key` as the device at `addr` in `paired` (replacing an older line).
fn save_paired(
    paired: &Path,
    addr: SocketAddr,
    device_key: Option<&[u8; 32]>,
) -> Result<(), String> {
    let text = std::fs::read_to_string(paired).unwrap_or_default();
    let mut lines: Vec<String> = text
        .lines()
        .filter(|line| !line.starts_with(&format!("{addr} ")))
        .map(String::from)
        .collect();
    if let Some(key) = device_key {
        lines.push(format!("{addr} {}", hex::encode(key)));
    }
    if let Some(dir) = paired.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(paired, body).map_err(|e| format!("{}: {e}", paired.display()))
}

fn millis(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// How often a hello answered Busy is tried again, and after how long: the device
/// refills one handshake every 20 ms (`docs/protocol.md` section 3 asks for 100 ms).
const BUSY_RETRIES: u32 = 40;
const BUSY_DELAY: Duration = Duration::from_millis(100);

/// How often a handshake the device closed is tried again: an emulated device on a
/// loaded host may miss its own 3 s handshake deadline while its QEMU is not scheduled
/// (each retry is counted and reported).
const CLOSED_RETRIES: u32 = 3;

/// What [`connect_patiently`] had to wait out.
#[derive(Default)]
struct Patience {
    busy: u32,
    closed: u32,
}

/// A session, the hello tried again while the device says Busy, and a handshake the
/// device closed tried again a few times.
fn connect_patiently(
    peer: &Peer,
    target: &Target,
    expected: &[u8; 32],
    patience: &mut Patience,
) -> Result<session::Session, String> {
    loop {
        match peer.connect(target.addr, expected) {
            Err(session::SessionError::Busy) if patience.busy < BUSY_RETRIES => {
                patience.busy += 1;
                std::thread::sleep(BUSY_DELAY);
            }
            Err(session::SessionError::Wire(wire::WireError::Closed))
                if patience.closed < CLOSED_RETRIES =>
            {
                patience.closed += 1;
                eprintln!("peer: the device closed a handshake; trying again");
            }
            other => return other.map_err(|e| format!("{e}")),
        }
    }
}

/// What [`outage`] saw.
struct Outage {
    /// Sessions that worked before the first that failed.
    before: u32,
    /// Tries that failed before the device's log said a fault was injected.
    slow_before: u32,
    /// From the start of the first try that failed to the end of the first that
    /// worked after it.
    without_service: Duration,
    /// Tries that failed, the first included.
    failed_tries: u32,
    /// Why the first failed.
    first_error: String,
}

/// One try: a session, a ping answered, a `BYE`; Busy is the device answering, so it
/// is tried again after [`BUSY_DELAY`] within the same try.
fn one_try(
    peer: &Peer,
    target: &Target,
    expected: &[u8; 32],
    answer: Duration,
) -> Result<(), session::SessionError> {
    for _ in 0..BUSY_RETRIES {
        match peer.connect_within(target.addr, expected, answer) {
            Err(session::SessionError::Busy) => std::thread::sleep(BUSY_DELAY),
            Err(other) => return Err(other),
            Ok(mut session) => {
                session.ping(b"is the device serving?")?;
                return session.bye();
            }
        }
    }
    Err(session::SessionError::Busy)
}

/// Whether the device's console log (when there is one) says a fault was injected.
fn fault_logged(console_log: Option<&Path>) -> bool {
    console_log.is_none_or(|path| {
        std::fs::read_to_string(path).is_ok_and(|text| text.contains("fault injected"))
    })
}

/// The most tries that may fail before the fault is logged (the device being slow).
const SLOW_TRIES: u32 = 5;

/// Sessions until one fails (at most `before` working ones first, and at least one),
/// then tries until one works again, within `limit`. With `console_log`, a try that
/// fails before the log says a fault was injected is the device being slow: tried
/// again, at most [`SLOW_TRIES`] times.
fn outage(
    peer: &Peer,
    target: &Target,
    expected: &[u8; 32],
    answer: Duration,
    before: u32,
    limit: Duration,
    console_log: Option<&Path>,
) -> Result<Outage, String> {
    let mut worked = 0;
    let mut slow_before = 0;
    let (cut_at, first_error) = loop {
        let at = Instant::now();
        match one_try(peer, target, expected, answer) {
            Ok(()) if worked < before => worked += 1,
            Ok(()) => {
                return Err(format!(
                    "{worked} sessions worked and none was cut off: was no fault injected?"
                ));
            }
            Err(error) if !fault_logged(console_log) && slow_before < SLOW_TRIES => {
                slow_before += 1;
                eprintln!("peer: a try failed before any fault ({error}); trying again");
            }
            Err(_) if worked == 0 => {
                return Err("the first session failed: the device never served".to_owned());
            }
            Err(error) => break (at, error.to_string()),
        }
    };
    eprintln!("peer: session {worked} was cut off ({first_error}); trying again");
    let mut failed_tries = 1;
    loop {
        if cut_at.elapsed() > limit {
            return Err(format!(
                "no session worked within {} s of the one cut off ({failed_tries} tries)",
                limit.as_secs()
            ));
        }
        match one_try(peer, target, expected, answer) {
            Ok(()) => {
                return Ok(Outage {
                    before: worked,
                    slow_before,
                    without_service: cut_at.elapsed(),
                    failed_tries,
                    first_error,
                });
            }
            Err(error) => {
                failed_tries += 1;
                eprintln!("peer: try {failed_tries} failed: {error}");
            }
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Key(id) => {
            let key = identity(&id.identity)?;
            println!("{}", hex::encode(key.verifying_key().as_bytes()));
            Ok(())
        }
        Command::Session {
            target,
            sessions,
            pings,
        } => {
            let peer = Peer {
                identity: identity(&target.identity.identity)?,
                suite: target.suite.clone(),
            };
            let expected = expected_key(&target)?;
            let mut times = Vec::new();
            let mut patience = Patience::default();
            for n in 0..sessions {
                // Busy is the device's entropy pace: try again a little later.
                let mut session = connect_patiently(&peer, &target, &expected, &mut patience)
                    .map_err(|e| format!("session {n}: {e}"))?;
                for p in 0..pings {
                    let data = format!("ping {p} of session {n}");
                    session
                        .ping(data.as_bytes())
                        .map_err(|e| format!("session {n}, ping {p}: {e}"))?;
                }
                times.push(session.handshake_time);
                eprintln!(
                    "peer: session {n}: handshake {} ms, {pings} pings answered, hash {}",
                    millis(session.handshake_time),
                    hex::encode(&session.handshake_hash[..8])
                );
                session.bye().map_err(|e| format!("session {n}: {e}"))?;
            }
            times.sort();
            if let (Some(min), Some(max)) = (times.first(), times.last()) {
                let median = times[times.len() / 2];
                println!(
                    "measure handshake_ms min {} median {} max {} sessions {} busy {} closed {}",
                    millis(*min),
                    millis(median),
                    millis(*max),
                    times.len(),
                    patience.busy,
                    patience.closed
                );
            }
            Ok(())
        }
        Command::Idle {
            target,
            rule_s,
            limit_s,
        } => {
            let peer = Peer {
                identity: identity(&target.identity.identity)?,
                suite: target.suite.clone(),
            };
            let expected = expected_key(&target)?;
            let mut session =
                connect_patiently(&peer, &target, &expected, &mut Patience::default())
                    .map_err(|e| format!("idle session: {e}"))?;
            session
                .ping(b"the last word before the silence")
                .map_err(|e| format!("idle session, ping: {e}"))?;
            let (bye_after, closed_after) = session
                .await_idle_end(Duration::from_secs(limit_s))
                .map_err(|e| format!("idle session: {e}"))?;
            // The device's clock starts at its receipt of the ping, a little before this
            // peer's starts (at the pong): allow a second.
            let rule = Duration::from_secs(rule_s);
            if bye_after + Duration::from_secs(1) < rule {
                return Err(format!(
                    "idle session: BYE after {:.1} s of silence, before the {rule_s} s rule",
                    bye_after.as_secs_f64()
                ));
            }
            println!(
                "idle session: BYE after {:.1} s of silence (rule {rule_s} s), closed {:.2} s later",
                bye_after.as_secs_f64(),
                closed_after.as_secs_f64()
            );
            Ok(())
        }
        Command::Outage {
            target,
            answer_ms,
            before,
            limit_s,
            after,
            console_log,
        } => {
            let peer = Peer {
                identity: identity(&target.identity.identity)?,
                suite: target.suite.clone(),
            };
            let expected = expected_key(&target)?;
            let outage = outage(
                &peer,
                &target,
                &expected,
                Duration::from_millis(answer_ms),
                before,
                Duration::from_secs(limit_s),
                console_log.as_deref(),
            )?;
            let mut patience = Patience::default();
            for n in 0..after {
                let mut session = connect_patiently(&peer, &target, &expected, &mut patience)
                    .map_err(|e| format!("session {n} after the outage: {e}"))?;
                session
                    .ping(b"after the outage")
                    .map_err(|e| format!("session {n} after the outage, ping: {e}"))?;
                session
                    .bye()
                    .map_err(|e| format!("session {n} after the outage: {e}"))?;
            }
            println!(
                "measure outage_ms {} sessions_before {} slow_before {} failed_tries {} answer_wait_ms {answer_ms} sessions_after {after} first_error {:?}",
                millis(outage.without_service),
                outage.before,
                outage.slow_before,
                outage.failed_tries,
                outage.first_error,
            );
            Ok(())
        }
        Command::Pair {
            identity: id,
            addr,
            code,
            suite,
        } => {
            let key = identity(&id.identity)?;
            let digits = pairing::digits(&code)?;
            let paired =
                pairing::pair(addr, &suite, digits, &key).map_err(|e| format!("pair: {e}"))?;
            save_paired(&id.paired, addr, Some(&paired.device_key))?;
            println!("paired with {}", hex::encode(paired.device_key));
            println!(
                "measure pair_ms {} password_hash_ms {}",
                millis(paired.total),
                millis(paired.password_hash)
            );
            Ok(())
        }
        Command::Unpair { target, key } => {
            let peer = Peer {
                identity: identity(&target.identity.identity)?,
                suite: target.suite.clone(),
            };
            let own = peer.identity.verifying_key().to_bytes();
            let key = match key {
                Some(text) => hex_key(&text).map_err(|e| format!("--key: {e}"))?,
                None => own,
            };
            let expected = expected_key(&target)?;
            let mut session =
                connect_patiently(&peer, &target, &expected, &mut Patience::default())
                    .map_err(|e| format!("unpair: {e}"))?;
            let answer = session
                .request(&[&b"UNPAIR"[..], &key].concat())
                .map_err(|e| format!("unpair: {e}"))?;
            if answer != b"DONE" {
                return Err(format!(
                    "unpair: the device answered {}",
                    String::from_utf8_lossy(&answer)
                ));
            }
            if key == own {
                save_paired(&target.identity.paired, target.addr, None)?;
            } else {
                let _ = session.bye();
            }
            println!("unpaired {}", hex::encode(key));
            Ok(())
        }
        Command::Reopen { target } => {
            let peer = Peer {
                identity: identity(&target.identity.identity)?,
                suite: target.suite.clone(),
            };
            let expected = expected_key(&target)?;
            let mut session =
                connect_patiently(&peer, &target, &expected, &mut Patience::default())
                    .map_err(|e| format!("reopen: {e}"))?;
            let answer = session
                .request(b"PAIROPEN")
                .map_err(|e| format!("reopen: {e}"))?;
            let _ = session.bye();
            if answer != b"DONE" {
                return Err(format!(
                    "reopen: the device answered {}",
                    String::from_utf8_lossy(&answer)
                ));
            }
            println!("pairing window open");
            Ok(())
        }
        Command::Faults { target, only } => {
            let peer = Peer {
                identity: identity(&target.identity.identity)?,
                suite: target.suite.clone(),
            };
            let expected = expected_key(&target)?;
            let list = if only.is_empty() {
                Fault::ALL.to_vec()
            } else {
                only
            };
            for fault in list {
                let what = faults::mount(&peer, target.addr, fault)
                    .map_err(|e| format!("fault {fault:?}: {e}"))?;
                let took = faults::good_session(&peer, target.addr, &expected)
                    .map_err(|e| format!("after fault {fault:?}: {e}"))?;
                println!(
                    "fault {fault:?}: {what}; then a good session (handshake {} ms)",
                    millis(took)
                );
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("dsoftbus-peer: {why}");
            ExitCode::FAILURE
        }
    }
}
