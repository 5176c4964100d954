//! The project's commands, so that a fresh machine needs nothing but cargo.
//!
//! - `cargo xtask test`: everything CI checks, ending with one summary line.
//! - `cargo xtask run`: the main job (boot the image in QEMU; see its help).
//!
//! Every step shells out to cargo (or later QEMU) with the arguments printed first, so
//! a failure can be reproduced by copying one line.

mod bench;
mod combination;
mod dependency_graph;
mod device;
mod disks;
mod footprint;
mod fuzz;
mod image;
mod jobs;
mod network;
mod pairing;
mod persistence;
mod provision;
mod qemu;
mod reliability;
mod rollback;
mod scenarios;
mod steps;
mod test_os;
mod toolchain;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::combination::Combination;
use crate::image::Profile;
use crate::steps::{StatusOk, Steps};

/// Build, test and boot the riscv64 device-identity and Noise-session OS.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything CI checks: formatting, clippy, host tests (the conformance kit
    /// against every backend), the riscv64 build of every provider combination, and
    /// the getrandom-free check of the image's dependency graph.
    Test,
    /// Build the default image, boot it in QEMU with the console streamed, and end
    /// with a summary: markers reached, phases passed, wall time.
    Run(test_os::TestOsOptions),
    /// Benchmark every provider combination: criterion on the host (with direct-crate,
    /// snow and primitive-floor baselines) and retired instructions in QEMU; writes
    /// target/bench-report/ and, in full mode only, the README's table.
    Bench {
        /// Short measurements (about 12 minutes instead of 35 on 2 cores); the README
        /// is left as it is.
        #[arg(long)]
        quick: bool,
    },
    /// Build the image of each requested provider combination, boot it in QEMU, and
    /// pass only when every marker of the phase came, in order, with no failure
    /// pattern, before the timeout.
    TestOs(test_os::TestOsOptions),
    /// The network scenarios alone: each image with a host peer on snow (sessions,
    /// then every network fault), and, with all four, pairs of devices over a TCP
    /// stream between two QEMUs.
    TestNet {
        /// Provider combination, or `all`.
        #[arg(long, env = "PROVIDER", default_value = "all")]
        provider: String,
    },
    /// Run the fuzz targets under libFuzzer (installs cargo-fuzz when missing; uses
    /// RUSTC_BOOTSTRAP=1 for the sanitizer flags, for this build alone), then minimize
    /// each corpus into fuzz/corpus/.
    Fuzz {
        /// One target (default: every one, in turn).
        target: Option<String>,
        /// Seconds per target.
        #[arg(long, default_value_t = 120)]
        time: u64,
    },
    /// The soak: every combination runs ROUNDS rounds of a TCP session with ping and an
    /// IPC call of every kind, then shows its heap flat and its tables bounded.
    Soak {
        /// Rounds after the warm-up.
        #[arg(long, default_value_t = 10_000)]
        rounds: usize,
        /// Fault a random service about every this many rounds (at most twice each;
        /// `soak.faults=<n> fault=by-request`). 0: no faults.
        #[arg(long, default_value_t = 0)]
        fault_every: usize,
        /// Provider combination, or `all`.
        #[arg(long, env = "PROVIDER", default_value = "all")]
        provider: String,
    },
    /// The host peer (`dsoftbus-peer`, on snow): `key`, `session`, `faults`; the
    /// arguments go to it as they are (`cargo xtask peer -- --help`).
    Peer {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The factory: make a node's disks (a random device secret on the OTP disk, an
    /// empty state disk) and add or remove the peers it trusts.
    Provision(provision::ProvisionOptions),
    /// The production image's scenario alone: build each requested combination's
    /// `device-image` (no selftest, no benchmarks), boot it on fresh disks that trust
    /// a host peer, let the peer (snow) open sessions, reboot, and check the key is
    /// restored and served again.
    TestDevice {
        /// Provider combination, `classic` or `all`.
        #[arg(long, env = "PROVIDER", default_value = "all")]
        provider: String,
    },
    /// The pairing scenario alone: each requested combination's production image on
    /// fresh disks with a setup code and no trusted peer; the host peer tries a wrong
    /// code, pairs with the right one, holds sessions; reboot; it unpairs.
    TestPairing {
        /// Provider combination, `classic` or `all`.
        #[arg(long, env = "PROVIDER", default_value = "classic")]
        provider: String,
    },
    /// The netstackd fault scenario alone: each requested combination's production
    /// kernel with the production services plus fault injection (`device-faults`);
    /// netstackd faults under the host peer's sessions, and the peer reports how long
    /// it went without a working session.
    TestDeviceFault {
        /// Provider combination, `classic` or `all`.
        #[arg(long, env = "PROVIDER", default_value = "classic")]
        provider: String,
    },
    /// The trust-store rollback scenario alone, on the production image: the factory
    /// trusts two host peers and revokes one; then one flipped byte of the store, the
    /// older store written back, and an older copy of the whole state disk must each be
    /// refused.
    TestRollback {
        /// Provider combination, `classic` or `all`.
        #[arg(long, env = "PROVIDER", default_value = "classic")]
        provider: String,
    },
    /// Build the production image (`device-image`: no selftest, no benchmarks) of
    /// each requested combination and print where the `.text + .rodata` bytes of its
    /// kernel image and of its user program go, by component: the kernel, the user
    /// runtime and drivers, each service, each backend, shared crates.
    Size {
        /// Provider combination, `classic` or `all`.
        #[arg(long, env = "PROVIDER", default_value = "dalek+chacha")]
        provider: String,
        /// A backend's size or speed switch to turn on, as `cargo xtask bench`
        /// measures it: `dalek-precomputed-tables`, `compact-opt-size`,
        /// `compact-opt-level-3`.
        #[arg(long)]
        knob: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Test => test(),
        Command::Run(options) => run(&options),
        Command::TestOs(options) => test_os_command(&options),
        Command::Fuzz { target, time } => match fuzz::run(target.as_deref(), time) {
            Ok(_) => ExitCode::SUCCESS,
            Err(why) => {
                eprintln!("xtask fuzz: {why}");
                ExitCode::FAILURE
            }
        },
        Command::Soak {
            rounds,
            fault_every,
            provider,
        } => {
            let combinations = Combination::select(&provider);
            let faults = (fault_every > 0).then_some(fault_every);
            let outcome = test_os::build_images(&combinations)
                .and_then(|images| reliability::soak(&images, rounds, faults));
            match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(why) => {
                    eprintln!("xtask soak: FAILED: {why}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Peer { args } => {
            let binary = match network::build_peer() {
                Ok(binary) => binary,
                Err(why) => {
                    eprintln!("xtask peer: {why}");
                    return ExitCode::FAILURE;
                }
            };
            match std::process::Command::new(&binary).args(&args).status() {
                Ok(status) if status.success() => ExitCode::SUCCESS,
                Ok(_) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("xtask peer: cannot run {}: {e}", binary.display());
                    ExitCode::FAILURE
                }
            }
        }
        Command::TestNet { provider } => {
            let combinations = Combination::select(&provider);
            if combinations.is_empty() {
                eprintln!("xtask test-net: unknown PROVIDER {provider:?}");
                return ExitCode::FAILURE;
            }
            let outcome =
                test_os::build_images(&combinations).and_then(|images| network::run(&images));
            match outcome {
                Ok(()) => {
                    eprintln!("xtask test-net: passed");
                    ExitCode::SUCCESS
                }
                Err(why) => {
                    eprintln!("xtask test-net: FAILED: {why}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Provision(options) => match provision::run(&options) {
            Ok(done) => {
                eprintln!(
                    "xtask provision: {} trusts {} peer(s)",
                    options.state_dir.display(),
                    done.peers.len()
                );
                for peer in done.peers {
                    println!("{}", hex_key(&peer));
                }
                if let Some(code) = done.setup_code {
                    // The label: printed this once, stored nowhere.
                    eprintln!(
                        "xtask provision: setup code (the device's label; it is stored nowhere, \
                         keep it): {}",
                        String::from_utf8_lossy(&code.label())
                    );
                }
                ExitCode::SUCCESS
            }
            Err(why) => {
                eprintln!("xtask provision: {why}");
                ExitCode::FAILURE
            }
        },
        Command::TestDevice { provider } => {
            on_production_images("test-device", &provider, device::run)
        }
        Command::TestPairing { provider } => {
            on_production_images("test-pairing", &provider, pairing::run)
        }
        Command::TestDeviceFault { provider } => {
            on_production_images("test-device-fault", &provider, |images| {
                device::service_faults(&device::fault_runs(images))
            })
        }
        Command::TestRollback { provider } => {
            on_production_images("test-rollback", &provider, rollback::run)
        }
        Command::Size { provider, knob } => match size(&provider, &knob) {
            Ok(()) => ExitCode::SUCCESS,
            Err(why) => {
                eprintln!("xtask size: {why}");
                ExitCode::FAILURE
            }
        },
        Command::Bench { quick } => match bench::run(quick) {
            Ok(dir) => {
                eprintln!(
                    "xtask bench: report in {}/report.md (and chart.svg); {}",
                    dir.display(),
                    if quick {
                        "README left as it is (quick mode)"
                    } else {
                        "README table updated"
                    }
                );
                ExitCode::SUCCESS
            }
            Err(why) => {
                eprintln!("xtask bench: {why}");
                ExitCode::FAILURE
            }
        },
    }
}

/// `cargo xtask <command>` for a scenario of the production images: builds the
/// combinations `provider` names and runs `scenario` on their production images.
fn on_production_images(
    command: &str,
    provider: &str,
    scenario: fn(&[image::Built]) -> Result<(), String>,
) -> ExitCode {
    let outcome = test_os::build_images(&Combination::select(provider)).and_then(|built| {
        if built.is_empty() {
            return Err(format!("no combination named `{provider}`"));
        }
        let images: Vec<_> = built
            .iter()
            .map(|(c, _)| (*c, image::device_image(c)))
            .collect();
        scenario(&images)
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("xtask {command}: {why}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask size`: builds each production image and prints its breakdown.
fn size(provider: &str, knobs: &[String]) -> Result<(), String> {
    toolchain::ensure_riscv_target()?;
    let combinations = Combination::select(provider);
    if combinations.is_empty() {
        return Err(format!("no combination named `{provider}`"));
    }
    let knobs = knobs
        .iter()
        .map(|name| {
            bench::Knob::named(name).ok_or_else(|| {
                let known: Vec<&str> = bench::KNOBS.iter().map(|k| k.name).collect();
                format!("no knob `{name}` (knobs: {})", known.join(", "))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if knobs.len() > 1 {
        return Err("one knob at a time".into());
    }
    for combination in combinations {
        let path = match knobs.first() {
            None => {
                image::build(&combination)?;
                image::device_image(&combination)
            }
            Some(knob) => {
                image::build_variant(&combination, &knob.image_args(&combination), knob.name)?.1
            }
        };
        let knobs = knobs
            .first()
            .map_or(String::new(), |k| format!(" with {}", k.name));
        // The kernel image and its user program (every service runs from the program).
        let program = image::device_programs_for(&path);
        for (what, elf) in [("kernel image", &path), ("user program", &program)] {
            let rows = footprint::breakdown(elf)?;
            let total: u64 = rows.iter().map(footprint::Row::total).sum();
            println!(
                "{combination}{knobs}: production {what} .text + .rodata {total} bytes ({:.1} KiB), {}",
                total as f64 / 1024.0,
                elf.display()
            );
            print!("{}", footprint::table(&rows));
        }
    }
    Ok(())
}

fn hex_key(key: &[u8; 32]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn test() -> ExitCode {
    let mut steps = Steps::new("xtask test");
    steps.run("rustfmt --check", || {
        steps::cargo(&["fmt", "--all", "--", "--check"])
    });
    steps.run("clippy -D warnings (host, all features)", || {
        steps::cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ])
    });
    steps.run("riscv64 target installed", toolchain::ensure_riscv_target);
    steps.run("clippy -D warnings (riscv64 images)", || {
        steps::cargo(&[
            "clippy",
            "--release",
            "--target",
            toolchain::RISCV_TARGET,
            "--package",
            "os-image",
            "--package",
            "device-image",
            "--package",
            "user-programs",
            "--",
            "-D",
            "warnings",
        ])
    });
    steps.run("host tests (workspace, all features)", host_tests);
    steps.run("no getrandom in the riscv64 image graph", || {
        dependency_graph::check_no_getrandom()
    });
    steps.run(
        "no crypto, smoltcp, driver or service in the kernel's graph",
        dependency_graph::check_kernel_graph,
    );
    let qemu = test_os::TestOsOptions {
        phase: "full".into(),
        timeout: std::time::Duration::from_secs(120),
        until_marker: false,
        provider: "all".into(),
        rng_file: None,
        no_rng: false,
        scenario: None,
        state_dir: None,
        no_otp: false,
        matrix_profile: false,
        net: Default::default(),
    };
    let mut all_images = Vec::new();
    let count = Combination::all().len();
    // The ladder boots start while the images are still being built: one QEMU beside
    // cargo (whose matrix builds leave a core idle much of the time: cargo's start,
    // single-threaded links), each image as soon as it exists; what is left when the
    // builds end boots side by side as before. The two steps' times say what each
    // took; the ladder's table has every combination.
    let built: std::sync::Mutex<std::collections::VecDeque<(Combination, std::path::PathBuf)>> =
        std::sync::Mutex::new(std::collections::VecDeque::new());
    let building = std::sync::atomic::AtomicBool::new(true);
    std::thread::scope(|scope| {
        let early = scope.spawn(|| {
            let mut rows = Vec::new();
            loop {
                let next = built.lock().expect("queue").pop_front();
                match next {
                    Some(image) => {
                        match test_os::boot_all(std::slice::from_ref(&image), &qemu, false) {
                            Ok(mut booted) => rows.append(&mut booted),
                            Err(why) => return Err(why),
                        }
                    }
                    None if building.load(std::sync::atomic::Ordering::SeqCst) => {
                        std::thread::sleep(std::time::Duration::from_millis(200));
                    }
                    None => return Ok(rows),
                }
                if !building.load(std::sync::atomic::Ordering::SeqCst) {
                    return Ok(rows);
                }
            }
        });
        steps.run(
            &format!("build the riscv64 images ({count} combinations; the ladder boots begin beside the builds)"),
            || {
                // The classic four as a device ships them (their scenarios and the
                // benchmarks use them); every other combination with the matrix's quick
                // profile (image::Profile::Matrix).
                let result = test_os::build_images_each(
                    Combination::all(),
                    |c| {
                        if c.is_classic() {
                            Profile::Release
                        } else {
                            Profile::Matrix
                        }
                    },
                    |image| built.lock().expect("queue").push_back(image.clone()),
                );
                building.store(false, std::sync::atomic::Ordering::SeqCst);
                all_images = result?;
                Ok(())
            },
        );
        building.store(false, std::sync::atomic::Ordering::SeqCst);
        let early = early.join().expect("the early boots' thread");
        steps.run(
            &format!("QEMU: full marker ladder, every combination ({count})"),
            || {
                let mut rows = early?;
                let rest: Vec<_> = built.lock().expect("queue").drain(..).collect();
                eprintln!(
                    "    {} booted beside the builds, {} after them",
                    rows.len(),
                    rest.len()
                );
                rows.extend(test_os::boot_all(&rest, &qemu, false)?);
                rows.sort_by_key(|row| {
                    Combination::all()
                        .iter()
                        .position(|c| *c == row.combination)
                        .unwrap_or(usize::MAX)
                });
                if test_os::report(&rows, &qemu) {
                    Ok(())
                } else {
                    Err("the marker ladder failed; see above".into())
                }
            },
        );
    });
    // The production image boots on a covering set of the matrix: the classic four,
    // and one combination for each backend they do not have (decision 14: every
    // combination's crypto is proven by its ladder; the production program is the
    // same services without the selftest).
    let covering = Combination::covering();
    let covering_images: Vec<_> = all_images
        .iter()
        .filter(|(c, _)| covering.contains(c))
        .cloned()
        .collect();
    steps.run(
        "the production programs hold none of the test image's switches (fault injection, stalling network device)",
        || reliability::no_test_switches(&covering_images),
    );
    // The scenarios below run on the four classic combinations: each fault is about
    // a service, not a backend, and the four cover both backends of the AEAD (which
    // the sealed format names) and both curve crates.
    let images: Vec<_> = all_images
        .iter()
        .filter(|(c, _)| c.is_classic())
        .cloned()
        .collect();
    steps.run(
        "QEMU: identity scenarios (no rng, zero rng, RNG_FILE keys, UART leak scan)",
        || scenarios::run(&images),
    );
    steps.run(
        "QEMU: persistence (reboot, torn update, tampered, other device, no OTP, no state disk, other AEAD)",
        || {
            let (a, b) = scenarios::rng_files()?;
            persistence::run(&images, &a, &b)
        },
    );
    steps.run(
        "QEMU: a short soak (memory flat, tables bounded), all four combinations",
        || {
            // Two combinations as they are (the leak check undisturbed), two with
            // every service faulting at rounds of its own.
            let (plain, faulted) = images.split_at(images.len() / 2);
            let every = reliability::SHORT_SOAK_FAULT_EVERY;
            reliability::soak(plain, reliability::SHORT_SOAK, None)?;
            reliability::soak(faulted, reliability::SHORT_SOAK, Some(every))
        },
    );
    steps.run(
        "QEMU: the process watchdog stops a spinning process while the ladder passes",
        || reliability::watchdog(&images),
    );
    steps.run(
        "QEMU: a faulted service restarts and the ladder passes; past its policy the device stops",
        || reliability::service_restart(&images),
    );
    steps.run(
        "QEMU: entropy that fails mid-run (rngd closes, the key stays, sessions refused)",
        || reliability::entropy_fails_midrun(&images),
    );
    steps.run(
        "QEMU: network (host peer on snow with faults, two devices over a TCP stream)",
        || network::run(&images),
    );
    let device_images: Vec<_> = covering_images
        .iter()
        .map(|(c, _)| (*c, image::device_image(c)))
        .collect();
    steps.run(
        &format!(
            "QEMU: the production image, the classic four and one combination per other backend ({}): ready, key created, sessions; reboot, key restored, sessions",
            device_images.len()
        ),
        || device::run(&device_images),
    );
    let classic_device_images: Vec<_> = device_images
        .iter()
        .filter(|(c, _)| c.is_classic())
        .cloned()
        .collect();
    steps.run(
        "QEMU: a service faults under a host peer's sessions and the device serves again (production services plus fault injection): netstackd on the four classic combinations, dsoftbusd and rngd on one each",
        || device::service_faults(&device::fault_runs(&classic_device_images)),
    );
    steps.run(
        "QEMU: a revoked peer stays revoked (one flipped byte, the older store, an older disk), the four classic combinations",
        || rollback::run(&classic_device_images),
    );
    steps.run(
        "QEMU: pairing with a setup code, the four classic combinations (a wrong code refused and counted, the right one pairs, sessions with no factory trust; reboot: still trusted, still counted; unpair, refused)",
        || pairing::run(&classic_device_images),
    );
    steps.run(
        "benchmarks compile and run once (criterion test mode)",
        // The workspace's feature set, as the host tests had it: cargo reuses what
        // they compiled and builds only the bench targets.
        || steps::cargo(&["test", "--workspace", "--all-features", "--benches"]),
    );
    // Two combinations that between them hold both curve crates and both AEADs of
    // the classic four: the counts are the instrument's, and two show it repeats
    // (four took 43 s of the budget the matrix needs).
    let two: Vec<_> = images
        .iter()
        .filter(|(c, _)| ["dalek+chacha", "compact+aes-gcm"].contains(&c.to_string().as_str()))
        .cloned()
        .collect();
    steps.run(
        "QEMU: guest bench counts repeat on two runs (dalek+chacha, compact+aes-gcm; heap-bound rows within 0.1%, the IPC round trip within 0.5%)",
        || bench::check_determinism(&two),
    );
    steps.finish()
}

/// Runs the host tests with the conformance kit's counts collected, then prints them.
fn host_tests() -> Result<(), String> {
    let report = steps::target_dir().join("conformance/report.tsv");
    std::fs::create_dir_all(report.parent().expect("report has a parent"))
        .map_err(|e| format!("cannot create {}: {e}", report.display()))?;
    // Stale lines from an earlier run would be counted again.
    let _ = std::fs::remove_file(&report);
    steps::command("cargo", &["test", "--workspace", "--all-features"])
        .env("CONFORMANCE_REPORT", &report)
        .status_ok()?;
    let lines = std::fs::read_to_string(&report).map_err(|e| {
        format!(
            "the conformance kit wrote no report to {}: {e}",
            report.display()
        )
    })?;
    steps::print_conformance_table(&lines)
}

fn test_os_command(options: &test_os::TestOsOptions) -> ExitCode {
    match test_os::test_os(options, false) {
        Ok(rows) if test_os::report(&rows, options) => {
            eprintln!(
                "xtask test-os: {} passed for {} combination(s)",
                options.judged(),
                rows.len()
            );
            ExitCode::SUCCESS
        }
        Ok(_) => {
            let judged = options.judged();
            eprintln!("xtask test-os: {judged} FAILED");
            ExitCode::FAILURE
        }
        Err(why) => {
            eprintln!("xtask test-os: {why}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: &test_os::TestOsOptions) -> ExitCode {
    if options.provider == "all" {
        eprintln!("cargo xtask run boots one image; use `cargo xtask test-os` for PROVIDER=all");
        return ExitCode::FAILURE;
    }
    let rows = match test_os::test_os(options, true) {
        Ok(rows) => rows,
        Err(why) => {
            eprintln!("xtask run: {why}");
            return ExitCode::FAILURE;
        }
    };
    let passed = test_os::report(&rows, options);
    for row in &rows {
        if let Ok(outcome) = &row.outcome {
            let phases = &outcome.complete;
            eprintln!(
                "xtask run: {}: {}/{} markers, phases passed: {}, wall time {:.1} s",
                row.combination,
                outcome.reached,
                outcome.total,
                if phases.is_empty() {
                    "none".to_owned()
                } else {
                    phases.join(", ")
                },
                outcome.wall.as_secs_f64()
            );
        }
    }
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
