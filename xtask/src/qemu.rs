//! Booting an image in QEMU and judging its console against the marker ladder.
//!
//! The harness starts QEMU itself and stops only that process, through its own child
//! handle (never by name), so runs of different combinations can go side by side.
//! Every console line is kept in `target/qemu/<provider>/uart.log`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use marker_contract::{Expectation, Ladder, Verdict};

use crate::disks::DiskSet;
use crate::steps::{StatusOk, command};

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-riscv64";

/// What backs the virtio-rng device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RngBacking {
    /// QEMU's built-in backend (the host's getrandom).
    Host,
    /// A file, through `-object rng-random`.
    File(PathBuf),
    /// No virtio-rng device at all.
    Absent,
}

/// What the virtio-net device is attached to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Network {
    /// QEMU's user networking, restricted (the guest reaches nothing outside), with
    /// these TCP ports forwarded from 127.0.0.1 on the host: `(host, guest)`.
    User { forwards: Vec<(u16, u16)> },
    /// A TCP stream to another QEMU on 127.0.0.1: the listening side (`server`)
    /// must start first.
    Stream { server: bool, port: u16 },
}

impl Default for Network {
    fn default() -> Self {
        Self::User {
            forwards: Vec::new(),
        }
    }
}

/// The network device of a boot: what it is attached to, and its MAC address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Nic {
    pub network: Network,
    /// `None`: QEMU's default (52:54:00:12:34:56).
    pub mac: Option<String>,
}

impl Nic {
    fn qemu_args(&self, qemu: &mut Command) {
        let netdev = match &self.network {
            Network::User { forwards } => {
                let mut netdev = "user,id=n0,restrict=on,ipv6=off".to_owned();
                for (host, guest) in forwards {
                    netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
                }
                netdev
            }
            Network::Stream { server, port } => format!(
                "stream,id=n0,server={},addr.type=inet,addr.host=127.0.0.1,addr.port={port}",
                if *server { "on" } else { "off" }
            ),
        };
        let mut device = "virtio-net-device,netdev=n0".to_owned();
        if let Some(mac) = &self.mac {
            device.push_str(&format!(",mac={mac}"));
        }
        qemu.args(["-netdev", &netdev, "-device", &device]);
    }
}

/// One boot.
pub struct Boot<'a> {
    pub image: &'a Path,
    /// The user program the kernel loads (`-initrd`):
    /// [`crate::image::programs_for`] for a test image,
    /// [`crate::image::device_programs_for`] for a production image.
    pub programs: Option<&'a Path>,
    pub log: PathBuf,
    pub rng: &'a RngBacking,
    pub disks: &'a DiskSet,
    pub timeout: Duration,
    /// Stop QEMU as soon as the ladder has passed.
    pub until_marker: bool,
    /// Print every console line as it comes.
    pub stream: bool,
    /// Count instructions exactly (`-icount shift=0`) and run the image's bench mode
    /// (`-append bench`).
    pub bench: bool,
    /// The network device.
    pub nic: &'a Nic,
    /// More kernel command-line words (`net.ip=...`, `serve`, ...).
    pub bootargs: &'a [String],
}

/// How a boot ended.
pub struct Outcome {
    pub verdict: Verdict,
    pub explanation: String,
    pub reached: usize,
    pub total: usize,
    /// From QEMU's start to the ladder's last marker.
    pub to_last_marker: Option<Duration>,
    /// From QEMU's start to the console line that started the interaction.
    pub to_trigger: Option<Duration>,
    pub wall: Duration,
    /// QEMU's exit status, when it exited by itself.
    pub exit_code: Option<i32>,
    /// Failure-pattern lines printed after the ladder passed (outside the phase).
    pub later_failures: Vec<String>,
    /// Placeholder values read from the markers (such as `pubkey`).
    pub captured: BTreeMap<String, String>,
    /// Phases (or the scenario) whose markers all came.
    pub complete: Vec<String>,
    /// What the interaction reported, when the boot had one and it ran.
    pub interaction: Option<Result<String, String>>,
    pub log: PathBuf,
    pub tail: Vec<String>,
}

impl Outcome {
    /// The ladder passed, and the interaction (if it ran) succeeded.
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Passed && !matches!(self.interaction, Some(Err(_)))
    }
}

/// Something the harness does while an image runs: once a console line contains
/// `trigger`, `action` runs on its own thread (a host peer connecting, a second
/// device booting). The boot ends when the ladder passed and the action finished.
pub struct Interaction {
    pub trigger: String,
    pub action: Box<dyn FnOnce() -> Result<String, String> + Send>,
}

/// Makes sure QEMU is installed: installs `qemu-system-misc` with apt-get when
/// running as root, otherwise says how in one line.
pub fn ensure_installed() -> Result<(), String> {
    if Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        return Ok(());
    }
    let root = command("id", &["-u"])
        .output_ok()
        .is_ok_and(|uid| uid.trim() == "0");
    if !root {
        return Err(format!(
            "{QEMU} is missing; install it with `sudo apt-get install -y qemu-system-misc`"
        ));
    }
    eprintln!("    {QEMU} is missing; installing qemu-system-misc with apt-get");
    let install = || {
        command(
            "apt-get",
            &[
                "install",
                "-y",
                "--no-install-recommends",
                "qemu-system-misc",
            ],
        )
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status_ok()
    };
    install()
        .or_else(|_| {
            command("apt-get", &["update"]).status_ok()?;
            install()
        })
        .map_err(|e| format!("could not install qemu-system-misc: {e}"))
}

fn qemu_command(boot: &Boot<'_>) -> Command {
    let mut qemu = Command::new(QEMU);
    qemu.args([
        "-machine", "virt", "-m", "128M", "-smp", "1", "-bios", "default",
    ])
    .args([
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-no-reboot",
    ])
    .arg("-kernel")
    .arg(boot.image);
    if let Some(programs) = boot.programs {
        qemu.arg("-initrd").arg(programs);
    }
    let mut bootargs: Vec<&str> = boot.bootargs.iter().map(String::as_str).collect();
    if boot.bench {
        qemu.args(["-icount", "shift=0"]);
        bootargs.push("bench");
    }
    if !bootargs.is_empty() {
        qemu.args(["-append", &bootargs.join(" ")]);
    }
    match boot.rng {
        RngBacking::Host => {
            qemu.args(["-device", "virtio-rng-device"]);
        }
        RngBacking::File(path) => {
            qemu.arg("-object")
                .arg(format!("rng-random,id=rng0,filename={}", path.display()))
                .args(["-device", "virtio-rng-device,rng=rng0"]);
        }
        RngBacking::Absent => {}
    }
    boot.disks.qemu_args(&mut qemu);
    boot.nic.qemu_args(&mut qemu);
    qemu.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    qemu
}

/// Reads the child's stdout line by line into a channel (and a log file).
fn pump(child: &mut Child, log: &Path) -> Result<mpsc::Receiver<String>, String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut file =
        std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let (sender, receiver) = mpsc::channel();
    let errors = sender.clone();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut raw = Vec::new();
        while reader.read_until(b'\n', &mut raw).is_ok_and(|n| n > 0) {
            let line = String::from_utf8_lossy(&raw)
                .trim_end_matches(['\r', '\n'])
                .to_owned();
            let _ = writeln!(file, "{line}");
            raw.clear();
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if errors.send(format!("qemu: {line}")).is_err() {
                break;
            }
        }
    });
    Ok(receiver)
}

/// Boots `boot.image` and follows its console against `expectation`; `labels` are the
/// phase and scenario names to report as complete or not. An [`Interaction`], if
/// given, starts when its console line comes.
pub fn run_with(
    boot: &Boot<'_>,
    expectation: Expectation<'_>,
    labels: &[&str],
    values: BTreeMap<String, String>,
    interaction: Option<Interaction>,
) -> Result<Outcome, String> {
    let failure_patterns = expectation.failure_patterns;
    let mut ladder = Ladder::new(expectation, values);
    let started = Instant::now();
    let mut child = qemu_command(boot)
        .spawn()
        .map_err(|e| format!("cannot start {QEMU}: {e}"))?;
    let lines = pump(&mut child, &boot.log)?;
    let mut tail: Vec<String> = Vec::new();
    let mut to_last_marker = None;
    let mut to_trigger = None;
    let mut later_failures = Vec::new();
    let mut ended_by = "timeout";
    let deadline = started + boot.timeout;
    let mut pending = interaction;
    let mut running: Option<std::thread::JoinHandle<Result<String, String>>> = None;
    let mut interaction_result: Option<Result<String, String>> = None;
    loop {
        if let Some(handle) = running.take_if(|h| h.is_finished()) {
            interaction_result = Some(
                handle
                    .join()
                    .unwrap_or_else(|_| Err("the interaction panicked".into())),
            );
        }
        let interaction_done = pending.is_none() && running.is_none();
        if matches!(interaction_result, Some(Err(_))) {
            ended_by = "the interaction failing";
            break;
        }
        if ladder.verdict() == &Verdict::Passed && boot.until_marker && interaction_done {
            ended_by = "the last marker";
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match lines.recv_timeout(left.min(Duration::from_millis(100))) {
            Ok(line) => {
                if boot.stream {
                    println!("{line}");
                }
                tail.push(line.clone());
                if tail.len() > 30 {
                    tail.remove(0);
                }
                if let Some(next) = pending.take_if(|i| line.contains(i.trigger.as_str())) {
                    to_trigger = Some(started.elapsed());
                    running = Some(std::thread::spawn(next.action));
                }
                let was_waiting = matches!(ladder.verdict(), Verdict::Waiting { .. });
                let verdict = ladder.feed(&line).clone();
                match verdict {
                    Verdict::Passed if was_waiting => {
                        to_last_marker = Some(started.elapsed());
                    }
                    Verdict::Passed => {
                        if marker_contract::failure_in(&line, failure_patterns).is_some() {
                            later_failures.push(line);
                        }
                    }
                    Verdict::Waiting { .. } => {}
                    Verdict::FailurePattern { .. }
                    | Verdict::OutOfOrder { .. }
                    | Verdict::Forbidden { .. } => {
                        ended_by = "a failure";
                        break;
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                ended_by = "QEMU exiting";
                break;
            }
        }
    }
    // Stop our own QEMU if it is still running; never anyone else's.
    let exit_code = match child.try_wait() {
        Ok(Some(status)) => status.code(),
        _ if ended_by == "QEMU exiting" => child.wait().ok().and_then(|s| s.code()),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    };
    // An interaction still running ends once QEMU is gone (its peer is).
    if let Some(handle) = running.take() {
        interaction_result = Some(
            handle
                .join()
                .unwrap_or_else(|_| Err("the interaction panicked".into())),
        );
    }
    let wall = started.elapsed();
    let mut explanation = ladder.explain(ended_by);
    if let Some(Err(why)) = &interaction_result {
        explanation.push_str(&format!("; the interaction failed: {why}"));
    }
    if let (Verdict::Passed, Some(code)) = (ladder.verdict(), exit_code)
        && code != 0
        && later_failures.is_empty()
        && ended_by == "QEMU exiting"
    {
        explanation.push_str(&format!("; QEMU exited with status {code}"));
    }
    Ok(Outcome {
        verdict: ladder.verdict().clone(),
        explanation,
        reached: ladder.reached(),
        total: ladder.len(),
        to_last_marker,
        to_trigger,
        wall,
        exit_code,
        later_failures,
        captured: ladder.captured().clone(),
        complete: labels
            .iter()
            .filter(|l| ladder.label_complete(l))
            .map(|l| (*l).to_owned())
            .collect(),
        log: boot.log.clone(),
        tail,
        interaction: interaction_result,
    })
}
