//! Pairing in QEMU (`device-pairing` and `device-pairing-reboot` in
//! `ladder/markers.toml`): the production image on each classic combination, its
//! disks made by the factory with a setup code and no trusted peer, and the host peer
//! (`dsoftbus-peer`, written from `docs/protocol.md` section 11) as the other side.
//!
//! 1. **First boot.** keystored opens the verifier (0 of 20 failed attempts) and
//!    dsoftbusd opens its window (the trust store is empty). The peer tries a wrong
//!    code: it must see the device's confirmation fail and send nothing more. Then
//!    the right code: it must be paired with the device key keystored printed, and
//!    dsoftbusd must name the peer's key. Then sessions with no `--device-key` (the
//!    peer uses the key it paired with) and no factory trust.
//! 2. **Reboot.** The same disks: the wrong code's attempt is still counted (1 of
//!    20), the store holds the peer (trusted peers 1), the window stays closed (a
//!    pairing with the right code hears CLOSED), the peer's sessions work; then it
//!    unpairs itself and its next session is refused.
//!
//! Then both consoles are searched for the setup code (digits and label) and the
//! verifier (`w0` and `L` in hex): none may appear.
//!
//! 3. **Two devices** (`device-pairs-device`, `device-paired-by-device`): device B
//!    freshly provisioned with a setup code, device A booted beside it over a TCP
//!    stream with `pair=10.0.2.15:7411:<B's code>`. A is the prover: it pairs, writes
//!    B's key into its store, then opens a session to B (handshake, ping, `BYE`),
//!    which B accepts from the store pairing wrote. Each console must name the other's
//!    key; both stores are read back from the disks (tags checked) and must hold the
//!    other's key; neither console may hold B's code (the kernel withholds it when it
//!    prints its command line). Two pairs, so that each classic combination takes part
//!    and each curve crate plays both roles.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::combination::Combination;
use crate::device::{self, BOOT_TIMEOUT, failed, forwarding, logged_device_key};
use crate::disks::DiskSet;
use crate::image;
use crate::network;
use crate::provision::{self, ProvisionOptions};
use crate::qemu::{self, Boot, Interaction, RngBacking};
use crate::test_os::contract;

/// Runs both boots on every combination of `images` (production images), then the
/// two-device pairings (when `images` has the four classic combinations).
pub fn run(images: &[(Combination, PathBuf)]) -> Result<(), String> {
    device::on_each(images, both_boots)?;
    let pairs = device_pairs();
    let image = |c: &Combination| {
        images
            .iter()
            .find(|(i, _)| i == c)
            .map(|(_, path)| path.clone())
    };
    if pairs
        .iter()
        .any(|(a, b)| image(a).is_none() || image(b).is_none())
    {
        eprintln!("    two devices: skipped (needs the four classic combinations)");
        return Ok(());
    }
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = pairs
            .iter()
            .map(|(a, b)| {
                let (a_image, b_image) =
                    (image(a).unwrap_or_default(), image(b).unwrap_or_default());
                scope.spawn(move || two_devices(a, &a_image, b, &b_image))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a pairing thread panicked".into()))
            })
            .collect::<Vec<_>>()
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

/// The device pairs, the prover first: every classic combination takes part, each
/// curve crate as the prover once and as the verifier once (a pairing needs the same
/// suite on both sides: the AEAD and the hash).
fn device_pairs() -> [(Combination, Combination); 2] {
    let c = |curve, aead| Combination {
        sig: curve,
        kx: curve,
        aead,
        hash: "blake2s",
    };
    [
        (c("compact", "chacha"), c("dalek", "chacha")),
        (c("dalek", "aes-gcm"), c("compact", "aes-gcm")),
    ]
}

/// How long the prover's boot may take, from its start to its session's end.
const PROVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

/// Device `a` pairs with device `b` by `b`'s setup code, then holds a session with it.
fn two_devices(
    a: &Combination,
    a_image: &Path,
    b: &Combination,
    b_image: &Path,
) -> Result<String, String> {
    let a_dir = image::run_dir(a).join("pairing-prover");
    let b_dir = image::run_dir(b).join("pairing-verifier");
    let (a_disks, b_disks) = (
        DiskSet::fresh(&a_dir, false)?,
        DiskSet::fresh(&b_dir, false)?,
    );
    let provisioned = |dir: &Path, c: &Combination| {
        provision::run(&ProvisionOptions {
            state_dir: dir.to_path_buf(),
            trust: Vec::new(),
            untrust: Vec::new(),
            provider: c.to_string(),
            setup_code: Some("random".into()),
        })
    };
    // A has a code of its own too (every device does); B's is the one A is given.
    provisioned(&a_dir, a)?;
    let b_provisioned = provisioned(&b_dir, b)?;
    let code = b_provisioned
        .setup_code
        .map(|c| String::from_utf8_lossy(&c.label()).into_owned())
        .ok_or("provisioning gave no setup code")?;
    let port = network::free_port()?;
    let contract = contract()?;
    let values = |c: &Combination| {
        BTreeMap::from([
            ("provider".to_owned(), c.to_string()),
            ("failed".to_owned(), "0".to_owned()),
            ("limit".to_owned(), "20".to_owned()),
            ("seconds".to_owned(), "900".to_owned()),
            ("why".to_owned(), "paired".to_owned()),
            ("reason".to_owned(), "bye".to_owned()),
        ])
    };
    let a_log = image::run_dir(a).join(format!("pairing-prover-to-{b}.log"));
    let b_log = image::run_dir(b).join(format!("pairing-verifier-for-{a}.log"));
    let a_programs = image::device_programs_for(a_image);
    let b_programs = image::device_programs_for(b_image);
    let a_nic = qemu::Nic {
        network: qemu::Network::Stream {
            server: false,
            port,
        },
        mac: Some("52:54:00:12:34:02".into()),
    };
    let b_nic = qemu::Nic {
        network: qemu::Network::Stream { server: true, port },
        mac: Some("52:54:00:12:34:01".into()),
    };
    let a_bootargs = vec![
        "net.ip=10.0.2.16/24".to_owned(),
        "net.gw=none".to_owned(),
        format!("pair=10.0.2.15:{}:{code}", network::DSOFTBUS_PORT),
    ];
    let b_bootargs = vec!["net.ip=10.0.2.15/24".to_owned(), "net.gw=none".to_owned()];
    let a_expectation = contract
        .expectation("full", Some("device-pairs-device"))
        .map_err(|e| e.to_string())?;
    let b_expectation = contract
        .expectation("full", Some("device-paired-by-device"))
        .map_err(|e| e.to_string())?;
    let (a_values, b_values) = (values(a), values(b));
    let a_owned = (*a, a_image.to_path_buf(), a_log.clone());
    let b_outcome = std::thread::scope(|scope| {
        let b_boot = Boot {
            image: b_image,
            programs: Some(&b_programs),
            log: b_log.clone(),
            rng: &RngBacking::Host,
            disks: &b_disks,
            timeout: BOOT_TIMEOUT,
            until_marker: true,
            stream: false,
            bench: false,
            nic: &b_nic,
            bootargs: &b_bootargs,
        };
        // A boots once B listens (the stream's server side must be up first).
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let prover = scope.spawn(move || {
            rx.recv()
                .map_err(|_| "device B never listened".to_owned())?;
            let (a, a_image, a_log) = a_owned;
            let a_boot = Boot {
                image: &a_image,
                programs: Some(&a_programs),
                log: a_log,
                rng: &RngBacking::Host,
                disks: &a_disks,
                timeout: PROVER_TIMEOUT,
                until_marker: true,
                stream: false,
                bench: false,
                nic: &a_nic,
                bootargs: &a_bootargs,
            };
            let outcome = qemu::run_with(
                &a_boot,
                a_expectation,
                &["device-pairs-device"],
                a_values,
                None,
            )?;
            if outcome.passed() {
                Ok(outcome)
            } else {
                Err(failed(
                    &format!("{a} pairing with {b} (the prover)"),
                    &outcome,
                ))
            }
        });
        let b_outcome = qemu::run_with(
            &b_boot,
            b_expectation,
            &["device-paired-by-device"],
            b_values,
            Some(Interaction {
                trigger: "dsoftbusd: listening".into(),
                action: Box::new(move || {
                    tx.send(())
                        .map_err(|_| "the prover's thread ended".to_owned())?;
                    Ok(String::new())
                }),
            }),
        );
        let a_outcome = prover
            .join()
            .unwrap_or_else(|_| Err("the prover's thread panicked".into()));
        (a_outcome, b_outcome)
    });
    let (a_outcome, b_outcome) = b_outcome;
    let a_outcome = a_outcome?;
    let b_outcome = b_outcome?;
    if !b_outcome.passed() {
        return Err(failed(
            &format!("{b} paired by {a} (the verifier)"),
            &b_outcome,
        ));
    }
    // Each console names the other's key; each store on disk holds it.
    let (a_key, b_key) = (logged_device_key(&a_log)?, logged_device_key(&b_log)?);
    let paired_with = |log: &Path| -> Result<String, String> {
        let text = std::fs::read_to_string(log)
            .map_err(|e| format!("cannot read {}: {e}", log.display()))?;
        if let Some(leak) = b_provisioned
            .never_logged
            .iter()
            .find(|secret| text.contains(secret.as_str()))
        {
            return Err(format!(
                "{} holds a secret of pairing ({} characters of B's code or verifier)",
                log.display(),
                leak.len()
            ));
        }
        text.lines()
            .find_map(|l| l.split("dsoftbusd: paired with ").nth(1))
            .map(|k| k.trim().to_owned())
            .ok_or_else(|| format!("{}: no `paired with` line", log.display()))
    };
    let (a_saw, b_saw) = (paired_with(&a_log)?, paired_with(&b_log)?);
    if a_saw != b_key || b_saw != a_key {
        return Err(format!(
            "{a} and {b}: each must name the other's key: A saw {a_saw} (B is {b_key}), B saw {b_saw} (A is {a_key})"
        ));
    }
    let hex = |k: &[u8; 32]| k.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let on_disk = |dir: &Path, c: &Combination| -> Result<Vec<String>, String> {
        Ok(provision::trusted(dir, c)?.iter().map(hex).collect())
    };
    let (a_store, b_store) = (on_disk(&a_dir, a)?, on_disk(&b_dir, b)?);
    if a_store != [b_key.clone()] || b_store != [a_key.clone()] {
        return Err(format!(
            "{a} and {b}: each store must hold the other's key alone: A's {a_store:?}, B's {b_store:?}"
        ));
    }
    Ok(format!(
        "{a} paired with {b} by its setup code (given on the command line, withheld from the console) and held a session with it; each store on disk holds the other's key ({:.1} s)",
        a_outcome.wall.as_secs_f64()
    ))
}

/// A wrong code for `code`: the next valid one.
fn wrong(code: &str) -> String {
    let value: u32 = code.replace('-', "").parse().unwrap_or(0);
    (1..)
        .map(|step| value.wrapping_add(step) % 99_999_999)
        .find_map(|candidate| {
            state_format::pairing::SetupCode::new(candidate)
                .ok()
                .map(|c| String::from_utf8_lossy(&c.label()).into_owned())
        })
        .unwrap_or_default()
}

fn both_boots(combination: &Combination, path: &Path, binary: &Path) -> Result<String, String> {
    let dir = image::run_dir(combination).join("pairing");
    let disks = DiskSet::fresh(&dir, false)?;
    let provisioned = provision::run(&ProvisionOptions {
        state_dir: dir.clone(),
        trust: Vec::new(),
        untrust: Vec::new(),
        provider: combination.to_string(),
        setup_code: Some("random".into()),
    })?;
    let never_logged = provisioned.never_logged.clone();
    let code = provisioned
        .setup_code
        .map(|c| String::from_utf8_lossy(&c.label()).into_owned())
        .ok_or("provisioning gave no setup code")?;
    let code_again = code.clone();
    let identity = dir.join("peer.key");
    let paired = dir.join("peer.paired");
    let _ = std::fs::remove_file(&identity);
    let _ = std::fs::remove_file(&paired);
    let peer_key = network::peer(
        binary,
        &["key", "--identity", &identity.display().to_string()],
    )?
    .trim()
    .to_owned();
    let suite = network::suite(combination);
    // One forwarded port for both boots: the peer finds the device it paired with by
    // its address.
    let port = network::free_port()?;
    let files = PeerFiles {
        binary: binary.to_path_buf(),
        identity: identity.display().to_string(),
        paired: paired.display().to_string(),
        suite,
    };

    // First boot: a wrong code, the right one, sessions.
    let first_files = files.clone();
    let first = boot(
        combination,
        path,
        &disks,
        "first",
        port,
        "device-pairing",
        &peer_key,
        "0",
        Box::new(move |addr, log| {
            let device_key = logged_device_key(&log)?;
            match first_files.run(&["pair", "--addr", &addr, "--code", &wrong(&code)], &[]) {
                Err(why) if why.contains("wrong setup code") => {}
                Err(why) => return Err(format!("a wrong code: {why}")),
                Ok(out) => return Err(format!("a wrong code paired: {out}")),
            }
            let started = Instant::now();
            let out = first_files.run(&["pair", "--addr", &addr, "--code", &code], &[])?;
            let took = started.elapsed();
            if !out.contains(&format!("paired with {device_key}")) {
                return Err(format!("paired with another key than {device_key}: {out}"));
            }
            first_files.run(
                &["session", "--addr", &addr, "--sessions", "2"],
                &["--suite"],
            )?;
            Ok(format!(
                "{} ({:.0} ms)",
                out.lines().find(|l| l.starts_with("measure")).unwrap_or(""),
                took.as_secs_f64() * 1000.0
            ))
        }),
    )?;

    // Reboot: the trust kept, the count kept, the window closed; the peer unpairs
    // itself.
    let second_files = files.clone();
    let second = boot(
        combination,
        path,
        &disks,
        "reboot",
        port,
        "device-pairing-reboot",
        &peer_key,
        "1",
        Box::new(move |addr, log| {
            let device_key = logged_device_key(&log)?;
            second_files.run(
                &["session", "--addr", &addr, "--sessions", "1"],
                &["--suite"],
            )?;
            // The window is closed (the store is not empty): even the right code hears
            // CLOSED, at the hello.
            match second_files.run(&["pair", "--addr", &addr, "--code", &code_again], &[]) {
                Err(why) if why.contains("CLOSED") => {}
                other => return Err(format!("a pairing outside the window: {other:?}")),
            }
            second_files.run(&["unpair", "--addr", &addr], &["--suite"])?;
            // The device key named: the device must refuse, not this peer's forgetting.
            match second_files.run(
                &["session", "--addr", &addr, "--device-key", &device_key],
                &["--suite"],
            ) {
                Err(_) => Ok("unpaired; the next session was refused".into()),
                Ok(out) => Err(format!("a session after unpairing worked: {out}")),
            }
        }),
    )?;
    for name in ["first", "reboot"] {
        let log = image::run_dir(combination).join(format!("pairing-{name}.log"));
        let text = std::fs::read_to_string(&log)
            .map_err(|e| format!("cannot read {}: {e}", log.display()))?;
        if let Some(leak) = never_logged
            .iter()
            .find(|secret| text.contains(secret.as_str()))
        {
            return Err(format!(
                "{combination}: {} holds a secret of pairing ({} characters of the code or verifier)",
                log.display(),
                leak.len()
            ));
        }
    }
    Ok(format!(
        "{combination}: a wrong code refused and counted, paired with the setup code ({}), sessions without the factory; after a reboot the peer still trusted, the attempt still counted and the window closed (CLOSED to the right code), then {}; neither console holds the code or the verifier",
        first.trim(),
        second.trim()
    ))
}

/// The host peer's files for one device.
#[derive(Clone)]
struct PeerFiles {
    binary: PathBuf,
    identity: String,
    paired: String,
    suite: String,
}

impl PeerFiles {
    /// Runs the peer with `args`, its identity and paired file, and (when `extra`
    /// names `--suite`) the device's suite.
    fn run(&self, args: &[&str], extra: &[&str]) -> Result<String, String> {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--identity", &self.identity, "--paired", &self.paired]);
        if extra.contains(&"--suite") || args.first() == Some(&"pair") {
            all.extend(["--suite", &self.suite]);
        }
        network::peer(&self.binary, &all)
    }
}

type Action = Box<dyn FnOnce(String, PathBuf) -> Result<String, String> + Send>;

/// One boot of the production image on `disks`, judged by `scenario` with the peer's
/// key and the failed-attempt count it must print; `action` runs once dsoftbusd
/// listens (given the forwarded address and the console log).
#[allow(clippy::too_many_arguments)]
fn boot(
    combination: &Combination,
    path: &Path,
    disks: &DiskSet,
    name: &str,
    port: u16,
    scenario: &str,
    peer_key: &str,
    failed_attempts: &str,
    action: Action,
) -> Result<String, String> {
    let contract = contract()?;
    let expectation = contract
        .expectation("full", Some(scenario))
        .map_err(|e| e.to_string())?;
    let log = image::run_dir(combination).join(format!("pairing-{name}.log"));
    let addr = format!("127.0.0.1:{port}");
    let log_owned = log.clone();
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
    let values = BTreeMap::from([
        ("provider".to_owned(), combination.to_string()),
        ("peer".to_owned(), peer_key.to_owned()),
        ("failed".to_owned(), failed_attempts.to_owned()),
        ("limit".to_owned(), "20".to_owned()),
        ("seconds".to_owned(), "900".to_owned()),
        ("why".to_owned(), "paired".to_owned()),
    ]);
    let outcome = qemu::run_with(
        &boot,
        expectation,
        &[scenario],
        values,
        Some(Interaction {
            trigger: "dsoftbusd: listening".into(),
            action: Box::new(move || action(addr, log_owned)),
        }),
    )?;
    if !outcome.passed() {
        return Err(failed(&format!("{combination} pairing ({name})"), &outcome));
    }
    match outcome.interaction {
        Some(Ok(line)) => Ok(line),
        _ => Err(format!("{combination}: the host peer did not run ({name})")),
    }
}
