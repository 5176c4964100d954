//! The production image's scenario (`device` in `ladder/markers.toml`): the image a
//! device ships (`device-image`: the services alone, no selftest, no benchmarks)
//! boots on every combination and does a device's job.
//!
//! Each combination gets fresh disks (`target/qemu/<provider>/device/`), provisioned
//! to trust a host peer's device key as a factory would, and boots twice:
//!
//! 1. **First boot.** Every service says it is ready, keystored creates the device
//!    key (`device key created`), dsoftbusd listens; then the host peer
//!    (`dsoftbus-peer`, on snow) opens sessions to it through a forwarded port and
//!    pings, and dsoftbusd must name the peer's key in its `session ... established`
//!    marker.
//! 2. **Reboot.** The same disks: keystored restores the key (`device key restored`,
//!    the same public key, checked by the ladder's `pubkey` value), and the peer's
//!    sessions succeed again, now against the restored key.
//!
//! The image never shuts down by itself; the harness stops QEMU once the markers
//! came and the peer finished.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::combination::Combination;
use crate::disks::DiskSet;
use crate::image;
use crate::network::{self, DSOFTBUS_PORT};
use crate::qemu::{self, Boot, Interaction, Network, Nic, RngBacking};
use crate::test_os::contract;

/// One boot's wait for the whole scenario, peer included: the boot and three
/// sessions take seconds on an idle host; the rest is room for TCG on a loaded 2-core
/// host (a boot that runs out says which markers were missing, and the peer names the
/// answer it waited for).
pub(crate) const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// Sessions the peer opens per boot.
const SESSIONS: &str = "3";

/// Boots every combination's production image twice (created, then restored), at
/// most `jobs::qemu_jobs` combinations at a time; `images` are the production images.
pub fn run(images: &[(Combination, PathBuf)]) -> Result<(), String> {
    on_each(images, both_boots)
}

/// Runs `scenario` (given a combination, its production image and the host peer's
/// binary; returns a line saying what it showed) on every combination of `images`, at
/// most `jobs::qemu_jobs` at a time: prints each line, and fails naming every failure.
pub fn on_each(
    images: &[(Combination, PathBuf)],
    scenario: impl Fn(&Combination, &Path, &Path) -> Result<String, String> + Sync,
) -> Result<(), String> {
    each(images, |(combination, path), binary| {
        scenario(combination, path, binary)
    })
}

/// Runs `scenario` (given an item and the host peer's binary) on every item, at most
/// `jobs::qemu_jobs` at a time: prints each line it returns, and fails naming every
/// failure.
fn each<T: Sync>(
    items: &[T],
    scenario: impl Fn(&T, &Path) -> Result<String, String> + Sync,
) -> Result<(), String> {
    qemu::ensure_installed()?;
    let binary = network::build_peer()?;
    let results = crate::jobs::bounded(items, crate::jobs::qemu_jobs(), |item| {
        scenario(item, &binary)
    });
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok(line) => eprintln!("    {line}"),
            Err(why) => failures.push(why),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// Fresh disks in `target/qemu/<provider>/<name>/` provisioned, as a factory would, to
/// trust a new host peer: the disks, the peer's identity file and its device key.
fn trusting_a_new_peer(
    combination: &Combination,
    name: &str,
    binary: &Path,
) -> Result<(DiskSet, String, String), String> {
    let dir = image::run_dir(combination).join(name);
    let disks = DiskSet::fresh(&dir, false)?;
    let identity = dir.join("peer.key");
    let _ = std::fs::remove_file(&identity);
    let identity = identity.display().to_string();
    let peer_key = network::peer(binary, &["key", "--identity", &identity])?
        .trim()
        .to_owned();
    network::trust(&dir, std::slice::from_ref(&peer_key), combination)?;
    Ok((disks, identity, peer_key))
}

/// The device key keystored printed on the console at `log` (it prints it before
/// dsoftbusd listens).
///
/// # Errors
/// No such line yet.
pub fn logged_device_key(log: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("keystored: device pubkey "))
        .ok_or("no device pubkey line before dsoftbusd listened")?
        .trim()
        .to_owned())
}

/// The user-mode network with the host's `port` forwarded to dsoftbusd's.
pub(crate) fn forwarding(port: u16) -> Nic {
    Nic {
        network: Network::User {
            forwards: vec![(port, DSOFTBUS_PORT)],
        },
        mac: None,
    }
}

/// Prints why a boot named `what` failed and the last lines of its console; the error.
pub(crate) fn failed(what: &str, outcome: &qemu::Outcome) -> String {
    eprintln!("    {what}: FAILED: {}", outcome.explanation);
    eprintln!("    last lines of {}:", outcome.log.display());
    for line in &outcome.tail {
        eprintln!("      | {line}");
    }
    format!("{what}: {}", outcome.explanation)
}

/// The two boots of one combination; a line saying what they showed.
fn both_boots(combination: &Combination, path: &Path, binary: &Path) -> Result<String, String> {
    let (disks, identity, peer_key) = trusting_a_new_peer(combination, "device", binary)?;
    let first = boot(
        combination,
        path,
        &disks,
        binary,
        &identity,
        &peer_key,
        "created",
        None,
    )?;
    let second = boot(
        combination,
        path,
        &disks,
        binary,
        &identity,
        &peer_key,
        "restored",
        Some(&first.0),
    )?;
    if second.0 != first.0 {
        return Err(format!(
            "{combination}: the reboot restored {} instead of {}",
            second.0, first.0
        ));
    }
    Ok(format!(
        "{combination}: production image created device key {}..., restored it after a reboot, served the host peer's sessions on both boots ({:.1} s and {:.1} s to the last marker; dsoftbusd listening {:.2} s and {:.2} s after QEMU started)",
        first.0.get(..16).unwrap_or(&first.0),
        first.1.as_secs_f64(),
        second.1.as_secs_f64(),
        first.2.as_secs_f64(),
        second.2.as_secs_f64()
    ))
}

/// One boot; returns the device's public key, the time to the last marker and the
/// time to dsoftbusd listening (both from QEMU's start).
#[allow(clippy::too_many_arguments)]
fn boot(
    combination: &Combination,
    path: &Path,
    disks: &DiskSet,
    binary: &Path,
    identity: &str,
    peer_key: &str,
    provenance: &str,
    expected_pubkey: Option<&str>,
) -> Result<(String, Duration, Duration), String> {
    let contract = contract()?;
    let expectation = contract
        .expectation("full", Some("device"))
        .map_err(|e| e.to_string())?;
    let port = network::free_port()?;
    let log = image::run_dir(combination).join(format!("device-{provenance}.log"));
    let suite = network::suite(combination);
    let (binary_owned, identity_owned, log_owned) =
        (binary.to_path_buf(), identity.to_owned(), log.clone());
    let action = Box::new(move || -> Result<String, String> {
        let key = logged_device_key(&log_owned)?;
        let addr = format!("127.0.0.1:{port}");
        network::peer(
            &binary_owned,
            &[
                "session",
                "--sessions",
                SESSIONS,
                "--identity",
                &identity_owned,
                "--addr",
                &addr,
                "--device-key",
                &key,
                "--suite",
                &suite,
            ],
        )
    });
    let nic = forwarding(port);
    let programs = image::device_programs_for(path);
    let boot = Boot {
        image: path,
        programs: Some(&programs),
        log,
        rng: &RngBacking::Host,
        disks,
        timeout: BOOT_TIMEOUT,
        until_marker: true,
        stream: false,
        bench: false,
        nic: &nic,
        bootargs: &[],
    };
    let mut values = BTreeMap::from([
        ("provider".to_owned(), combination.to_string()),
        ("peer".to_owned(), peer_key.to_owned()),
        ("provenance".to_owned(), provenance.to_owned()),
    ]);
    if let Some(key) = expected_pubkey {
        values.insert("pubkey".to_owned(), key.to_owned());
    }
    let outcome = qemu::run_with(
        &boot,
        expectation,
        &["device"],
        values,
        Some(Interaction {
            trigger: "dsoftbusd: listening".into(),
            action,
        }),
    )?;
    if !outcome.passed() {
        return Err(failed(
            &format!("{combination} production image ({provenance})"),
            &outcome,
        ));
    }
    match &outcome.interaction {
        Some(Ok(_)) => {}
        _ => return Err(format!("{combination}: the host peer did not run")),
    }
    let key = outcome
        .captured
        .get("pubkey")
        .cloned()
        .ok_or_else(|| format!("{combination}: no device public key captured"))?;
    let wall = outcome.wall;
    Ok((
        key,
        outcome.to_last_marker.unwrap_or(wall),
        outcome.to_trigger.unwrap_or(wall),
    ))
}

/// A service fault under the host peer's sessions: what is injected, and the scenario
/// (in `ladder/markers.toml`) that says what the boot must show.
#[derive(Clone, Copy)]
pub struct ServiceFault {
    /// The task faulted.
    pub task: &'static str,
    /// The `-append` word: which process faults, and where.
    pub spec: &'static str,
    /// What it faults in the middle of, for the report.
    pub busy: &'static str,
    /// The scenario of the expected markers.
    pub scenario: &'static str,
}

/// netstackd faults as it takes the request after its answer to the second `ACCEPT`,
/// with the peer's second connection in its hands (dsoftbusd's half-open handshake).
pub const NETSTACKD_FAULT: ServiceFault = ServiceFault {
    task: "netstackd",
    spec: "fault=netstackd:after=ACCEPT#2",
    busy: "holding the peer's second connection",
    scenario: "device-netstackd-fault",
};

/// dsoftbusd faults as it asks rngd for the ephemeral key of the peer's second
/// handshake (its first draw is its static key at start): mid-handshake.
pub const DSOFTBUSD_FAULT: ServiceFault = ServiceFault {
    task: "dsoftbusd",
    spec: "fault=dsoftbusd:call=rngd#3",
    busy: "mid-handshake (drawing the ephemeral key of the peer's second session)",
    scenario: "device-service-fault",
};

/// rngd faults as it takes dsoftbusd's request for the ephemeral key of the peer's
/// second handshake: mid-request.
pub const RNGD_FAULT: ServiceFault = ServiceFault {
    task: "rngd",
    spec: "fault=rngd:on=GET_ENTROPY@dsoftbusd#3",
    busy: "mid-request (dsoftbusd's draw for the peer's second handshake)",
    scenario: "device-service-fault",
};

/// How long the peer's tries wait for each answer before one counts as failed (the
/// outage it reports includes one such wait).
const OUTAGE_ANSWER_MS: &str = "500";

/// Service faults under a host peer's sessions: each `(combination, production image,
/// fault)` boots the production kernel with `device-faults` (the production services
/// plus fault injection, nothing else) and the fault's switch; the peer's first session
/// works, a later one is cut off by the fault, the kernel restarts the service, and
/// the peer's sessions work again against the same device key (`--device-key`, read
/// from the console before the fault). At most `jobs::qemu_jobs` boots at a time;
/// prints each boot's peer outage and the device's own account of the restart.
pub fn service_faults(runs: &[(Combination, PathBuf, ServiceFault)]) -> Result<(), String> {
    each(runs, |(combination, path, fault), binary| {
        service_fault_boot(combination, path, binary, *fault)
    })
}

fn service_fault_boot(
    combination: &Combination,
    path: &Path,
    binary: &Path,
    fault: ServiceFault,
) -> Result<String, String> {
    let name = format!("device-{}-fault", fault.task);
    let (disks, identity, peer_key) = trusting_a_new_peer(combination, &name, binary)?;
    let contract = contract()?;
    let expectation = contract
        .expectation("full", Some(fault.scenario))
        .map_err(|e| e.to_string())?;
    let port = network::free_port()?;
    let log = image::run_dir(combination).join(format!("{name}.log"));
    let suite = network::suite(combination);
    let (binary_owned, log_owned) = (binary.to_path_buf(), log.clone());
    let action = Box::new(move || -> Result<String, String> {
        let key = logged_device_key(&log_owned)?;
        let addr = format!("127.0.0.1:{port}");
        let console_log = log_owned.display().to_string();
        network::peer(
            &binary_owned,
            &[
                "outage",
                "--identity",
                &identity,
                "--addr",
                &addr,
                "--device-key",
                &key,
                "--suite",
                &suite,
                "--answer-ms",
                OUTAGE_ANSWER_MS,
                "--console-log",
                &console_log,
            ],
        )
    });
    let nic = forwarding(port);
    let programs = image::device_faults_for(path);
    let bootargs = [fault.spec.to_owned()];
    let boot = Boot {
        image: path,
        programs: Some(&programs),
        log,
        rng: &RngBacking::Host,
        disks: &disks,
        timeout: BOOT_TIMEOUT,
        until_marker: true,
        stream: false,
        bench: false,
        nic: &nic,
        bootargs: &bootargs,
    };
    let values = BTreeMap::from([
        ("provider".to_owned(), combination.to_string()),
        ("peer".to_owned(), peer_key.clone()),
        ("task".to_owned(), fault.task.to_owned()),
    ]);
    let outcome = qemu::run_with(
        &boot,
        expectation,
        &[fault.scenario],
        values,
        Some(Interaction {
            trigger: "dsoftbusd: listening".into(),
            action,
        }),
    )?;
    let what = format!("{combination} {} fault", fault.task);
    if !outcome.passed() {
        return Err(failed(&what, &outcome));
    }
    let peer = match &outcome.interaction {
        Some(Ok(out)) => out.clone(),
        _ => return Err(format!("{what}: the host peer did not run")),
    };
    let measure = peer
        .lines()
        .find_map(|l| l.strip_prefix("measure "))
        .ok_or_else(|| format!("{what}: the peer printed no outage figure"))?
        .to_owned();
    let text = std::fs::read_to_string(&outcome.log)
        .map_err(|e| format!("{}: {e}", outcome.log.display()))?;
    if !text.contains("fault injected") {
        return Err(format!("{what}: no fault was injected"));
    }
    let serving_again = text
        .lines()
        .find_map(|l| {
            l.split_once(&format!("{} serving again ", fault.task))
                .map(|(_, rest)| rest)
        })
        .and_then(|rest| rest.split(" after").next())
        .unwrap_or("(no line)")
        .to_owned();
    let relistened = text
        .lines()
        .find_map(|l| l.split_once("connections ended, ").map(|(_, rest)| rest))
        .and_then(|rest| rest.strip_suffix(" after it learned)"))
        .map(|ms| format!("; dsoftbusd listened again {ms} after it learned"))
        .unwrap_or_default();
    Ok(format!(
        "{what}: faulted {} and restarted (serving again {serving_again}){relistened}; the peer: {measure}",
        fault.busy
    ))
}

/// The fault runs for `images`: netstackd on each, dsoftbusd and rngd on one each (the
/// second and third image, or the first when there are fewer).
pub fn fault_runs(images: &[(Combination, PathBuf)]) -> Vec<(Combination, PathBuf, ServiceFault)> {
    let mut runs: Vec<_> = images
        .iter()
        .map(|(c, p)| (*c, p.clone(), NETSTACKD_FAULT))
        .collect();
    for (at, fault) in [(1, DSOFTBUSD_FAULT), (2, RNGD_FAULT)] {
        if let Some((c, p)) = images.get(at).or_else(|| images.first()) {
            runs.push((*c, p.clone(), fault));
        }
    }
    runs
}
