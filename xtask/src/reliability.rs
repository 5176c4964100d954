//! The reliability scenarios in QEMU, on every combination: the process watchdog
//! naming and stopping a process that stops making system calls, a service that
//! faults restarted (and the device stopped once its restart policy is spent), and an
//! entropy source that goes bad after boot.

use std::path::PathBuf;
use std::time::Duration;

use crate::combination::Combination;
use crate::image;
use crate::scenarios;
use crate::test_os::{self, Row, TestOsOptions};

fn boot(images: &[(Combination, PathBuf)], options: &TestOsOptions) -> Result<Vec<Row>, String> {
    let rows = test_os::boot_all(images, options, false)?;
    if test_os::report(&rows, options) {
        Ok(rows)
    } else {
        Err("see the table above".into())
    }
}

/// The watchdog: `-append spin` makes the kernel start a process that spins without a
/// system call beside the ladder; the console must name it (the process watchdog stops
/// it), the whole ladder must pass meanwhile, and QEMU must exit with success: a
/// spinning process no longer stops the machine.
pub fn watchdog(images: &[(Combination, PathBuf)]) -> Result<(), String> {
    let mut options = scenarios::options(Some("watchdog"), None, false);
    options.net.append = vec!["spin".into()];
    options.timeout = Duration::from_secs(90);
    for row in boot(images, &options)? {
        let outcome = row.outcome.as_ref().map_err(Clone::clone)?;
        match outcome.exit_code {
            Some(0) => eprintln!(
                "    {}: the watchdog named and stopped the spinner, the ladder passed; QEMU exited with success after {:.1} s",
                row.combination,
                outcome.wall.as_secs_f64()
            ),
            other => {
                return Err(format!(
                    "{}: QEMU's exit status with a spinner beside the ladder was {other:?}, not success",
                    row.combination
                ));
            }
        }
    }
    Ok(())
}

/// The tasks `policies/manifest.toml` gives a restart policy: the services the kernel
/// restarts, each faulted in turn.
fn restarted() -> Result<Vec<ipc::ServiceId>, String> {
    let path = crate::steps::workspace_root().join("policies/manifest.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let manifest = kernel_config::parse_manifest("policies/manifest.toml", &text)
        .map_err(|e| e.to_string())?;
    Ok(manifest.restart.iter().map(|policy| policy.task).collect())
}

/// The fault that makes `task` fault at the selftest's call in the `service-busy-fault`
/// scenario (`supervise=<task>`; `selftest/client/src/supervision.rs` makes the call).
fn busy_fault(task: ipc::ServiceId) -> Option<&'static str> {
    Some(match task {
        ipc::ServiceId::Logd => "fault=logd:on=QUERY@selftest",
        ipc::ServiceId::Rngd => "fault=rngd:on=GET_ENTROPY@selftest",
        ipc::ServiceId::Statefs => "fault=statefs:torn=PUT@selftest#2",
        ipc::ServiceId::Keystored => "fault=keystored:on=GET_PUBKEY@selftest#2",
        ipc::ServiceId::Netstackd => "fault=netstackd:on=RECV@selftest",
        ipc::ServiceId::Dsoftbusd => "fault=dsoftbusd:on=DISCOVER@selftest",
        _ => return None,
    })
}

/// Faults of a service while it works for another at start, which must go on across
/// the restart (`service_api::peer_restarting`): keystored as it signs dsoftbusd's
/// binding (mid-sign), statefs tearing the first write of keystored's new key, rngd as
/// it answers netstackd's draw for its seed.
const CLIENT_FAULTS: [&str; 3] = [
    "fault=keystored:on=SIGN@dsoftbusd",
    "fault=statefs:torn=PUT@keystored",
    "fault=rngd:on=GET_ENTROPY@netstackd",
];

/// Supervision: `-append fault=<service>` makes that service's first process fault as
/// it starts; the kernel must restart it and the whole ladder pass, QEMU exiting with
/// success: logd on every image, each other service with a restart policy on one of
/// them in turn (the restart is the kernel's, the same on every backend; one boot each
/// keeps the step short). `-append fault=logd:always` makes every logd process fault;
/// the kernel must restart it as its policy allows, then stop the device, QEMU exiting
/// with a failure. Then [`CLIENT_FAULTS`]: a service faults while another's start
/// depends on it, and the ladder passes. Then each service with a restart policy
/// faults while busy with the selftest's call (`service-busy-fault`, one image each,
/// in turn): the call ends at once, the service recovers, the journal holds the fault,
/// and the ladder passes.
///
/// Boots of one image each run side by side, never two on one combination at once
/// (a combination's boots share its disks).
pub fn service_restart(images: &[(Combination, PathBuf)]) -> Result<(), String> {
    /// A scenario, its `-append`, whether QEMU must exit with success, the images.
    type Run<'a> = (&'a str, Vec<String>, bool, Vec<(Combination, PathBuf)>);
    let mut runs: Vec<Run> = vec![
        (
            "service-restart",
            vec!["fault=logd".into()],
            true,
            images.to_vec(),
        ),
        (
            "restart-policy-spent",
            vec!["fault=logd:always".into()],
            false,
            images.to_vec(),
        ),
    ];
    let supervised = restarted()?;
    let image_for = |index: usize| images.get(index % images.len().max(1)).cloned();
    for (index, service) in supervised
        .iter()
        .filter(|task| **task != ipc::ServiceId::Logd)
        .enumerate()
    {
        if let Some(image) = image_for(index + 1) {
            runs.push((
                "service-restart",
                vec![format!("fault={service}")],
                true,
                vec![image],
            ));
        }
    }
    for (index, fault) in CLIENT_FAULTS.iter().enumerate() {
        if let Some(image) = image_for(index + 2) {
            runs.push(("service-restart", vec![(*fault).into()], true, vec![image]));
        }
    }
    // Every supervised service faults while busy, in turn, in one boot of each image.
    let mut busy = Vec::new();
    for service in &supervised {
        busy.push(
            busy_fault(*service)
                .ok_or_else(|| format!("{service} has a restart policy and no busy fault"))?
                .to_owned(),
        );
    }
    let names: Vec<&str> = supervised.iter().map(|s| s.name()).collect();
    busy.push(format!("supervise={}", names.join(",")));
    runs.push(("service-busy-fault", busy, true, images.to_vec()));
    let one = |(scenario, append, want_success, images): &Run| -> Result<(), String> {
        let mut options = scenarios::options(Some(scenario), None, false);
        options.net.append.clone_from(append);
        options.timeout = Duration::from_secs(90);
        let append = append.join(" ");
        for row in boot(images, &options)? {
            let outcome = row.outcome.as_ref().map_err(Clone::clone)?;
            let success = outcome.exit_code == Some(0);
            if success != *want_success {
                return Err(format!(
                    "{}: `{scenario}` with {append}: QEMU's exit status was {:?}",
                    row.combination, outcome.exit_code
                ));
            }
            let log = std::fs::read_to_string(&outcome.log).unwrap_or_default();
            let recovered: Vec<String> = log
                .lines()
                .filter_map(|l| l.strip_prefix("SELFTEST: "))
                .filter(|l| l.contains("faulted while busy"))
                .filter_map(|l| {
                    let task = l.split_whitespace().next()?;
                    let ms = l.split("serving again after ").nth(1)?.split(';').next()?;
                    Some(format!("{task} {ms}"))
                })
                .collect();
            let wanted = append
                .split_whitespace()
                .find_map(|w| w.strip_prefix("supervise="))
                .map_or(0, |list| list.split(',').count());
            if recovered.len() != wanted {
                return Err(format!(
                    "{}: `{scenario}`: {} services said they recovered, not {wanted}",
                    row.combination,
                    recovered.len()
                ));
            }
            let recovered = if recovered.is_empty() {
                String::new()
            } else {
                format!("; serving again after: {}", recovered.join(", "))
            };
            eprintln!(
                "    {}: {scenario} with {append}: QEMU exited with status {:?} after {:.1} s, as it must{recovered}",
                row.combination,
                outcome.exit_code,
                outcome.wall.as_secs_f64()
            );
        }
        Ok(())
    };
    // Waves of single-image runs on distinct combinations, side by side.
    let (batches, mut singles): (Vec<Run>, Vec<Run>) =
        runs.into_iter().partition(|run| run.3.len() > 1);
    for run in &batches {
        one(run)?;
    }
    while !singles.is_empty() {
        let mut wave: Vec<Run> = Vec::new();
        let mut rest = Vec::new();
        for run in singles {
            let combination = run.3[0].0;
            if wave.iter().any(|w| w.3[0].0 == combination) {
                rest.push(run);
            } else {
                wave.push(run);
            }
        }
        singles = rest;
        let failures: Vec<String> = crate::jobs::bounded(&wave, crate::jobs::qemu_jobs(), one)
            .into_iter()
            .filter_map(Result::err)
            .collect();
        if !failures.is_empty() {
            return Err(failures.join("; "));
        }
    }
    Ok(())
}

/// The test image's switches (a fault injected into a service, a network device that
/// stalls on purpose): each string that only the switch's code holds must be in every
/// test program, so the check sees what it looks for, and in no production program.
/// `images` are the test images; their production images sit beside them.
pub fn no_test_switches(images: &[(Combination, PathBuf)]) -> Result<(), String> {
    const SWITCHES: [&str; 3] = ["fault=", "fault injected", "net.stall-tx="];
    let holds = |path: &std::path::Path, needle: &str| -> Result<bool, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(bytes
            .windows(needle.len())
            .any(|window| window == needle.as_bytes()))
    };
    for (combination, test_image) in images {
        let test = image::programs_for(test_image);
        let production = image::device_programs_for(&image::device_image(combination));
        for switch in SWITCHES {
            if !holds(&test, switch)? {
                return Err(format!(
                    "{combination}: the test program lacks `{switch}`: the check no longer sees the switch"
                ));
            }
            if holds(&production, switch)? {
                return Err(format!(
                    "{combination}: the production program {} holds the test switch `{switch}`",
                    production.display()
                ));
            }
        }
    }
    eprintln!(
        "    {} combinations: {} test switches in every test program, none in any production program",
        images.len(),
        SWITCHES.len()
    );
    Ok(())
}

/// Entropy that goes bad after boot: virtio-rng backed by exactly the good bytes rngd
/// takes at boot (its start-up samples and its generator's seed), then zeros. The
/// ladder passes on the generator; the selftest (`-append entropy-fails`) then drives
/// the generator to its reseed, which reads zeros and must close rngd; the rest of the
/// system must behave as the scenario says.
pub fn entropy_fails_midrun(images: &[(Combination, PathBuf)]) -> Result<(), String> {
    let good = rngd::STARTUP_SAMPLES + rngd::drbg::SEED_LEN;
    let mut bytes = scenarios::test_bytes(0x0c, good);
    bytes.resize(good + 4096, 0);
    let file = scenarios::write_file("good-then-zeros.bin", &bytes)?;
    let mut options = scenarios::options(Some("entropy-fails-midrun"), Some(file), false);
    options.net.append = vec!["entropy-fails".into()];
    for row in boot(images, &options)? {
        let outcome = row.outcome.as_ref().map_err(Clone::clone)?;
        if outcome.exit_code != Some(0) {
            return Err(format!(
                "{}: QEMU exited with {:?} after the scenario",
                row.combination, outcome.exit_code
            ));
        }
    }
    Ok(())
}

/// Rounds of the soak `cargo xtask test` runs: enough to fill every bounded structure
/// after the warm-up and show a leak of a few bytes a round.
pub const SHORT_SOAK: usize = 150;

/// About how many rounds apart the short soak faults a random service: about ten
/// faults in its warm-up and rounds.
pub const SHORT_SOAK_FAULT_EVERY: usize = 25;

/// The soak on every image (`-append soak=N`): after the ladder, `rounds` rounds of a
/// TCP session with ping and an IPC call of every kind; the image itself checks that
/// the heap stayed flat and the tables bounded. With `fault_every`, a random service
/// faults about every that many rounds (`soak.faults=<n> fault=by-request`); the image
/// also checks that rounds work again after each restart. Prints each image's figures.
pub fn soak(
    images: &[(Combination, PathBuf)],
    rounds: usize,
    fault_every: Option<usize>,
) -> Result<(), String> {
    if images.is_empty() {
        return Ok(());
    }
    let mut options = scenarios::options(Some("soak"), None, false);
    options.net.append = vec![format!("soak={rounds}")];
    if let Some(every) = fault_every {
        options.net.append.extend([
            format!("soak.faults={every}"),
            "fault=by-request".to_owned(),
        ]);
    }
    // The entropy pace allows 50 handshakes a second; the rest is boot and settling.
    options.timeout = Duration::from_secs(60 + (rounds as u64 + 100) / 20);
    let rows = boot(images, &options)?;
    for row in &rows {
        let outcome = row.outcome.as_ref().map_err(Clone::clone)?;
        let log = std::fs::read_to_string(&outcome.log)
            .map_err(|e| format!("cannot read {}: {e}", outcome.log.display()))?;
        for line in log
            .lines()
            .filter_map(|l| l.strip_prefix("SELFTEST: soak: "))
        {
            eprintln!("    {}: {line}", row.combination);
        }
    }
    Ok(())
}
