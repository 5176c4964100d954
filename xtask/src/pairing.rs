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

/// Runs both boots on every combination of `images` (production images).
pub fn run(images: &[(Combination, PathBuf)]) -> Result<(), String> {
    device::on_each(images, both_boots)
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
