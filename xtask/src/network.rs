//! The network scenarios: each device with a host peer that is not the OS's code, and
//! pairs of devices linked by a TCP stream between two QEMUs.
//!
//! Every combination gets a node directory (`target/qemu/<provider>/node/`, its own
//! state and OTP disks) that lives through both scenarios:
//!
//! 1. **Host peer.** The node trusts the host peer's device key (provisioned before
//!    the boot, as a factory would), boots with `serve` and a port forwarded from
//!    127.0.0.1, and, once it serves, `dsoftbus-peer` (snow) opens sessions to it,
//!    pings, and mounts every network fault, each followed by a good session. The
//!    console must show dsoftbusd authenticating the peer's key.
//! 2. **Two devices.** Each node is provisioned to trust the others' device keys
//!    (learned from step 1's console), then pairs boot side by side: the listening
//!    device first (`-netdev stream,server=on`, 10.0.2.15), then the connecting one
//!    (10.0.2.16), whose selftest asks dsoftbusd to open a session to the first. A
//!    dalek node and a compact node with the same AEAD must complete it; nodes with
//!    different AEADs must both refuse it, naming both suites.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::combination::Combination;
use crate::disks::DiskSet;
use crate::image;
use crate::provision::{self, ProvisionOptions};
use crate::qemu::{self, Boot, Interaction, Network, Nic, Outcome, RngBacking};
use crate::steps::{StatusOk, command, target_dir};
use crate::test_os::contract;

/// dsoftbusd's TCP port.
pub const DSOFTBUS_PORT: u16 = 7411;

/// The Noise suite of `combination`'s image: its AEAD backend's algorithm (from
/// provider-select's table) and its hash, by their Noise names.
pub fn suite(combination: &Combination) -> String {
    let cipher = provider_select::aead_algorithm(combination.aead)
        .and_then(|algorithm| algorithm.noise())
        .map(|(name, _)| name)
        .unwrap_or_else(|| panic!("no Noise cipher for the {} backend", combination.aead));
    let hash = match combination.hash {
        "blake2s" => provider_api::HashAlgorithm::Blake2s256,
        "sha256" => provider_api::HashAlgorithm::Sha256,
        other => panic!("no Noise hash name for the {other} backend"),
    };
    format!("Noise_XK_25519_{cipher}_{}", hash.noise_name())
}

/// Builds `dsoftbus-peer` and returns its path.
pub fn build_peer() -> Result<PathBuf, String> {
    command("cargo", &["build", "--package", "dsoftbus-peer"]).status_ok()?;
    Ok(target_dir().join("debug/dsoftbus-peer"))
}

/// A TCP port on 127.0.0.1 nobody listens on now.
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))
}

/// Runs `dsoftbus-peer` with `args`; returns its standard output.
pub fn peer(binary: &Path, args: &[&str]) -> Result<String, String> {
    let output = std::process::Command::new(binary)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{}{}", stdout.trim(), stderr.trim()))
    }
}

/// Adds `keys` to the trust store on `dir`'s disks, tagged for `combination`'s hash.
pub fn trust(dir: &Path, keys: &[String], combination: &Combination) -> Result<(), String> {
    provision::run(&ProvisionOptions {
        state_dir: dir.to_path_buf(),
        trust: keys.to_vec(),
        untrust: Vec::new(),
        provider: combination.to_string(),
        setup_code: None,
    })
    .map(|_| ())
}

fn node_dir(combination: &Combination) -> PathBuf {
    image::run_dir(combination).join("node")
}

/// One boot of the network scenarios.
struct NetBoot {
    combination: Combination,
    image: PathBuf,
    disks: DiskSet,
    nic: Nic,
    bootargs: Vec<String>,
    scenario: &'static str,
    values: BTreeMap<String, String>,
    log: String,
    timeout: Duration,
}

impl NetBoot {
    fn run(&self, interaction: Option<Interaction>) -> Result<Outcome, String> {
        let contract = contract()?;
        let expectation = contract
            .expectation("full", Some(self.scenario))
            .map_err(|e| e.to_string())?;
        let programs = image::programs_for(&self.image);
        let boot = Boot {
            image: &self.image,
            programs: Some(&programs),
            log: image::run_dir(&self.combination).join(&self.log),
            rng: &RngBacking::Host,
            disks: &self.disks,
            timeout: self.timeout,
            until_marker: true,
            stream: false,
            bench: false,
            nic: &self.nic,
            bootargs: &self.bootargs,
        };
        let mut values = self.values.clone();
        values.insert("provider".into(), self.combination.to_string());
        qemu::run_with(&boot, expectation, &[self.scenario], values, interaction)
    }
}

fn judged(
    combination: &Combination,
    what: &str,
    outcome: Result<Outcome, String>,
) -> Result<Outcome, String> {
    match outcome {
        Ok(outcome) if outcome.passed() => Ok(outcome),
        Ok(outcome) => {
            eprintln!("    {combination} {what}: FAILED: {}", outcome.explanation);
            eprintln!("    last lines of {}:", outcome.log.display());
            for line in &outcome.tail {
                eprintln!("      | {line}");
            }
            Err(format!("{combination} {what}: {}", outcome.explanation))
        }
        Err(why) => Err(format!("{combination} {what}: {why}")),
    }
}

/// What the host-peer step learned about one device.
pub struct PeerRun {
    pub combination: Combination,
    /// The device's public key.
    pub device_key: String,
    /// The peer's report (its `measure` line, and one line per fault).
    pub report: String,
}

impl PeerRun {
    /// The median handshake wall time the peer measured, in milliseconds.
    pub fn median_ms(&self) -> Option<f64> {
        let line = self
            .report
            .lines()
            .find(|l| l.starts_with("measure handshake_ms"))?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words.iter().position(|w| *w == "median")?;
        words.get(at + 1)?.parse().ok()
    }
}

/// The transmit kick at which a test image's network device stalls in the host-peer
/// step with faults (`net.stall-tx=`, test images only): during the peer's first
/// sessions, so every later session and fault runs on a device that came back.
const STALL_AT_KICK: u32 = 40;
/// How long the image serves the host peer, and how long the harness waits for the
/// whole boot: the peer's work takes under a minute on an idle host; the rest is room
/// for TCG on a loaded 2-core host (a boot that runs out says which markers were
/// missing, and the peer names the answer it waited for).
const SERVE_S: u64 = 300;
const HOST_PEER_TIMEOUT: Duration = Duration::from_secs(SERVE_S + 60);
/// How long the connecting device of a pair may take: its whole ladder, then one
/// session (within the listener's serving time).
const PAIR_CONNECTOR_TIMEOUT: Duration = Duration::from_secs(SERVE_S - 30);
/// How long the harness waits for the console to say every established session
/// ended, after the peer is done.
const CLOSED_LINES_WAIT: Duration = Duration::from_secs(30);

/// Counts the sessions `log` says were established with `peer` and the ones it says
/// ended (`DSOFTBUSD_SESSION`, `DSOFTBUSD_SESSION_CLOSED`).
fn session_lines(log: &Path, peer: &str) -> (usize, usize, Vec<String>) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let prefix = format!("dsoftbusd: session with {peer} ");
    let mut established = 0;
    let mut reasons = Vec::new();
    for rest in text.lines().filter_map(|l| l.strip_prefix(prefix.as_str())) {
        if rest == "established" {
            established += 1;
        } else if let Some(reason) = rest
            .strip_prefix("closed (")
            .and_then(|r| r.strip_suffix(')'))
        {
            reasons.push(reason.to_owned());
        }
    }
    (established, reasons.len(), reasons)
}

/// Waits until `log` says every session established with `peer` ended; returns the
/// ends' reasons, counted.
fn every_session_ended(log: &Path, peer: &str) -> Result<String, String> {
    let started = std::time::Instant::now();
    loop {
        let (established, closed, reasons) = session_lines(log, peer);
        if established > 0 && closed == established {
            let mut counted: BTreeMap<String, usize> = BTreeMap::new();
            for reason in reasons {
                *counted.entry(reason).or_default() += 1;
            }
            let list: Vec<String> = counted.iter().map(|(r, n)| format!("{n} {r}")).collect();
            return Ok(format!(
                "{established} sessions established, {closed} ended on the console ({})",
                list.join(", ")
            ));
        }
        if started.elapsed() > CLOSED_LINES_WAIT {
            return Err(format!(
                "{established} sessions established with the peer but {closed} ended on the console, {} s after the peer finished",
                CLOSED_LINES_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Step 1 on every image, at most `jobs::qemu_jobs` at a time (with the faults, or
/// only sessions): each device's public key and the peer's report.
///
/// With the faults, the image also stalls its network device once
/// ([`STALL_AT_KICK`]): netstackd must reset it and sessions go on. Beside the
/// sessions and the faults an idle session waits for the device's idle timeout (its
/// `BYE` after 30 s, then the close), and once the peer is done every session the
/// console said was established must have its `closed` line.
pub fn host_peer(
    images: &[(Combination, PathBuf)],
    binary: &Path,
    with_faults: bool,
) -> Result<Vec<PeerRun>, String> {
    let one = |(combination, image): &(Combination, PathBuf)| -> Result<(Combination, String, String), String> {
            let dir = node_dir(combination);
            let disks = DiskSet::fresh(&dir, false)?;
            let identity = dir.join("peer.key");
            let _ = std::fs::remove_file(&identity);
            let identity_arg = identity.display().to_string();
            let peer_key = peer(binary, &["key", "--identity", &identity_arg])?
                .trim()
                .to_owned();
            trust(&dir, std::slice::from_ref(&peer_key), combination)?;
            let port = free_port()?;
            let suite = suite(combination);
            let log = image::run_dir(combination).join("host-peer.log");
            let binary = binary.to_path_buf();
            let device_key = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
            let key_slot = std::sync::Arc::clone(&device_key);
            let boot_log = log.clone();
            let peer_for_lines = peer_key.clone();
            let action = Box::new(move || -> Result<String, String> {
                // The device key is on the console before `serving`.
                let text = std::fs::read_to_string(&boot_log).unwrap_or_default();
                let key = text
                    .lines()
                    .find_map(|l| l.strip_prefix("keystored: device pubkey "))
                    .ok_or("no device pubkey line before serving")?
                    .trim()
                    .to_owned();
                *key_slot.lock().expect("key slot") = key.clone();
                let addr = format!("127.0.0.1:{port}");
                let common: Vec<String> = [
                    "--identity",
                    identity_arg.as_str(),
                    "--addr",
                    addr.as_str(),
                    "--device-key",
                    key.as_str(),
                    "--suite",
                    suite.as_str(),
                ]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
                let idle = with_faults.then(|| {
                    let (binary, args) = (binary.clone(), common.clone());
                    std::thread::spawn(move || {
                        let args: Vec<&str> = std::iter::once("idle")
                            .chain(args.iter().map(String::as_str))
                            .collect();
                        peer(&binary, &args)
                    })
                });
                let common: Vec<&str> = common.iter().map(String::as_str).collect();
                let sessions = peer(
                    &binary,
                    &[&["session", "--sessions", "10"], &common[..]].concat(),
                )?;
                let faults = if with_faults {
                    peer(&binary, &[&["faults"], &common[..]].concat())?
                } else {
                    String::new()
                };
                let idle = match idle {
                    Some(thread) => thread.join().map_err(|_| "the idle peer panicked")??,
                    None => String::new(),
                };
                let ends = if with_faults {
                    format!("{}\n", every_session_ended(&boot_log, &peer_for_lines)?)
                } else {
                    String::new()
                };
                Ok(format!("{sessions}{faults}{idle}{ends}"))
            });
            let mut bootargs = vec![format!("serve={SERVE_S}")];
            let mut values = BTreeMap::from([("peer".into(), peer_key)]);
            if with_faults {
                bootargs.push(format!("net.stall-tx={STALL_AT_KICK}"));
                values.insert("cause".into(), "timeout".into());
                values.insert("reason".into(), "idle-timeout".into());
            }
            let boot = NetBoot {
                combination: *combination,
                image: image.clone(),
                disks,
                nic: Nic {
                    network: Network::User {
                        forwards: vec![(port, DSOFTBUS_PORT)],
                    },
                    mac: None,
                },
                bootargs,
                scenario: if with_faults {
                    "host-peer-faults"
                } else {
                    "host-peer"
                },
                values,
                log: "host-peer.log".into(),
                timeout: HOST_PEER_TIMEOUT,
            };
            let outcome = judged(
                combination,
                "host peer",
                boot.run(Some(Interaction {
                    trigger: "SELFTEST: serving".into(),
                    action,
                })),
            )?;
            let report = match outcome.interaction {
                Some(Ok(report)) => report,
                _ => return Err(format!("{combination}: the host peer did not run")),
            };
            let key = device_key.lock().expect("key slot").clone();
            Ok((*combination, key, report))
    };
    let results = crate::jobs::bounded(images, crate::jobs::qemu_jobs(), one);
    let mut runs = Vec::new();
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok((combination, device_key, report)) => {
                for line in report.lines() {
                    eprintln!("    {combination}: {line}");
                }
                runs.push(PeerRun {
                    combination,
                    device_key,
                    report,
                });
            }
            Err(why) => failures.push(why),
        }
    }
    if failures.is_empty() {
        Ok(runs)
    } else {
        Err(failures.join("; "))
    }
}

/// One pair of step 2: `listener` serves, `connector` opens a session to it.
struct Pair {
    listener: Combination,
    connector: Combination,
}

impl Pair {
    fn same_suite(&self) -> bool {
        self.listener.aead == self.connector.aead
    }
}

/// The pairs, in two rounds of two (a node boots once per round): every combination
/// completes a session with its other-curve twin, and fails cleanly with an AEAD it
/// does not speak.
fn rounds() -> [[Pair; 2]; 2] {
    let c = |curve, aead| Combination {
        sig: curve,
        kx: curve,
        aead,
        hash: "blake2s",
    };
    [
        [
            Pair {
                listener: c("dalek", "chacha"),
                connector: c("compact", "chacha"),
            },
            Pair {
                listener: c("compact", "aes-gcm"),
                connector: c("dalek", "aes-gcm"),
            },
        ],
        [
            Pair {
                listener: c("compact", "chacha"),
                connector: c("dalek", "aes-gcm"),
            },
            Pair {
                listener: c("dalek", "chacha"),
                connector: c("compact", "aes-gcm"),
            },
        ],
    ]
}

fn run_pair(
    pair: &Pair,
    images: &BTreeMap<Combination, PathBuf>,
    keys: &BTreeMap<Combination, String>,
) -> Result<String, String> {
    let image = |c: &Combination| {
        images
            .get(c)
            .cloned()
            .ok_or_else(|| format!("no {c} image"))
    };
    let key = |c: &Combination| keys.get(c).cloned().ok_or_else(|| format!("no {c} key"));
    let port = free_port()?;
    let (listener_key, connector_key) = (key(&pair.listener)?, key(&pair.connector)?);
    let (listener_suite, connector_suite) = (suite(&pair.listener), suite(&pair.connector));
    let ok = pair.same_suite();
    let connector_boot = NetBoot {
        combination: pair.connector,
        image: image(&pair.connector)?,
        disks: DiskSet::in_dir(&node_dir(&pair.connector), false)?,
        nic: Nic {
            network: Network::Stream {
                server: false,
                port,
            },
            mac: Some("52:54:00:12:34:02".into()),
        },
        bootargs: vec![
            "net.ip=10.0.2.16/24".into(),
            "net.gw=none".into(),
            format!("dsoftbus.peer=10.0.2.15:{DSOFTBUS_PORT}"),
            format!("dsoftbus.peer_key={listener_key}"),
        ],
        scenario: if ok {
            "two-device-initiator"
        } else {
            "suite-mismatch-initiator"
        },
        values: BTreeMap::from([
            ("peer".into(), listener_key.clone()),
            ("ours".into(), connector_suite.clone()),
            ("theirs".into(), listener_suite.clone()),
            (
                "outcome".into(),
                if ok { "ok" } else { "suite-mismatch" }.into(),
            ),
        ]),
        log: format!("two-device-to-{}.log", pair.listener),
        timeout: PAIR_CONNECTOR_TIMEOUT,
    };
    let listener_boot = NetBoot {
        combination: pair.listener,
        image: image(&pair.listener)?,
        disks: DiskSet::in_dir(&node_dir(&pair.listener), false)?,
        nic: Nic {
            network: Network::Stream { server: true, port },
            mac: Some("52:54:00:12:34:01".into()),
        },
        bootargs: vec![
            "net.ip=10.0.2.15/24".into(),
            "net.gw=none".into(),
            format!("serve={SERVE_S}"),
        ],
        scenario: if ok {
            "two-device-responder"
        } else {
            "suite-mismatch-responder"
        },
        values: BTreeMap::from([
            ("peer".into(), connector_key),
            ("ours".into(), listener_suite),
            ("theirs".into(), connector_suite),
        ]),
        log: format!("two-device-from-{}.log", pair.connector),
        timeout: HOST_PEER_TIMEOUT,
    };
    let connector = pair.connector;
    let action = Box::new(move || -> Result<String, String> {
        let outcome = judged(&connector, "connecting", connector_boot.run(None))?;
        Ok(format!(
            "{connector} connected and shut down in {:.1} s",
            outcome.wall.as_secs_f64()
        ))
    });
    let outcome = judged(
        &pair.listener,
        "listening",
        listener_boot.run(Some(Interaction {
            trigger: "SELFTEST: serving".into(),
            action,
        })),
    )?;
    Ok(format!(
        "{} <- {}: {} ({})",
        pair.listener,
        pair.connector,
        if ok {
            "session, ping, BYE on both consoles"
        } else {
            "refused on both sides, naming both suites"
        },
        outcome.interaction.and_then(Result::ok).unwrap_or_default()
    ))
}

/// Runs both network scenarios on `images` (all four combinations).
pub fn run(images: &[(Combination, PathBuf)]) -> Result<(), String> {
    let binary = build_peer()?;
    qemu::ensure_installed()?;
    let keys: Vec<(Combination, String)> = host_peer(images, &binary, true)?
        .into_iter()
        .map(|run| (run.combination, run.device_key))
        .collect();
    if !Combination::classic()
        .iter()
        .all(|c| images.iter().any(|(i, _)| i == c))
    {
        eprintln!("    two devices: skipped (needs the four classic combinations)");
        return Ok(());
    }
    // The pairs are the four classic combinations: each trusts the other three (with
    // every combination booted, trusting all fifteen others and the host peer would
    // fill the allowlist, and the selftest's own TRUST would be refused).
    let classic = Combination::classic();
    for combination in classic {
        let others: Vec<String> = keys
            .iter()
            .filter(|(c, _)| c != combination && classic.contains(c))
            .map(|(_, k)| k.clone())
            .collect();
        trust(&node_dir(combination), &others, combination)?;
    }
    let images: BTreeMap<Combination, PathBuf> = images.iter().cloned().collect();
    let keys: BTreeMap<Combination, String> = keys.into_iter().collect();
    for round in rounds() {
        let results = std::thread::scope(|scope| {
            let handles: Vec<_> = round
                .iter()
                .map(|pair| scope.spawn(|| run_pair(pair, &images, &keys)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("pair thread"))
                .collect::<Vec<_>>()
        });
        for result in results {
            eprintln!("    {}", result?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_round_boots_each_node_once_and_every_combination_meets_both_outcomes() {
        for round in rounds() {
            let mut nodes: Vec<Combination> = round
                .iter()
                .flat_map(|p| [p.listener, p.connector])
                .collect();
            nodes.sort();
            nodes.dedup();
            assert_eq!(
                nodes.len(),
                4,
                "a node's disks are used by one QEMU at a time"
            );
        }
        let all = rounds();
        for combination in Combination::classic() {
            let pairs: Vec<&Pair> = all
                .iter()
                .flatten()
                .filter(|p| p.listener == *combination || p.connector == *combination)
                .collect();
            assert!(pairs.iter().any(|p| p.same_suite()), "{combination}");
            assert!(pairs.iter().any(|p| !p.same_suite()), "{combination}");
        }
        let ok: Vec<&Pair> = all.iter().flatten().filter(|p| p.same_suite()).collect();
        assert!(ok.iter().all(|p| p.listener.sig != p.connector.sig));
    }
}
