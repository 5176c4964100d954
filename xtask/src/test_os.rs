//! `cargo xtask test-os` and `cargo xtask run`: build images, boot them, judge them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use clap::builder::BoolishValueParser;
use marker_contract::Contract;

use crate::combination::Combination;
use crate::disks::DiskSet;
use crate::image::{self, Profile};
use crate::qemu::{self, Boot, Interaction, Network, Nic, Outcome, RngBacking};
use crate::steps::workspace_root;
use crate::toolchain;

/// The seed commands' environment variables, mirrored as flags.
#[derive(Args, Clone, Debug)]
pub struct TestOsOptions {
    /// Phase of the marker ladder to require (cumulative): bring-up, ..., full.
    #[arg(long, env = "RUN_PHASE", default_value = "full")]
    pub phase: String,
    /// Time allowed per boot, like `90s`, `2m` or `90`.
    #[arg(long, env = "RUN_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Stop QEMU as soon as the phase's last marker is seen.
    #[arg(long, env = "RUN_UNTIL_MARKER", value_parser = BoolishValueParser::new())]
    pub until_marker: bool,
    /// Provider combination (`dalek+chacha`, ...), or `all` for every one.
    #[arg(long, env = "PROVIDER", default_value = "dalek+chacha")]
    pub provider: String,
    /// Back the virtio-rng device with this file.
    #[arg(long, env = "RNG_FILE", conflicts_with = "no_rng")]
    pub rng_file: Option<PathBuf>,
    /// Boot without a virtio-rng device (implies the `no-rng` scenario).
    #[arg(long, env = "NO_RNG", value_parser = BoolishValueParser::new())]
    pub no_rng: bool,
    /// Judge the run by a scenario of `ladder/markers.toml` instead of a phase
    /// (`no-rng`, `rng-health-failure`).
    #[arg(long, env = "RUN_SCENARIO")]
    pub scenario: Option<String>,
    /// Keep the disks in this directory (`state.img`, `otp.img`, created when
    /// missing) so the device keeps its identity between runs; with several
    /// combinations, each gets `<dir>/<provider>/`. Without it every run gets fresh
    /// disks under `target/qemu/<provider>/`.
    #[arg(long, env = "STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Boot without the OTP disk (keystored must fail closed).
    #[arg(long, env = "NO_OTP", value_parser = BoolishValueParser::new())]
    pub no_otp: bool,
    /// Build the user programs with the matrix's quick profile (`[profile.matrix]`,
    /// as `cargo xtask test` builds every non-classic combination) instead of as a
    /// device ships them.
    #[arg(long, env = "MATRIX_PROFILE", value_parser = BoolishValueParser::new())]
    pub matrix_profile: bool,
    #[command(flatten)]
    pub net: NetOptions,
}

/// What the network device is attached to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum NetMode {
    /// QEMU user networking, restricted, nothing forwarded: the loopback ladder.
    #[default]
    Isolated,
    /// QEMU user networking with dsoftbusd's port forwarded from 127.0.0.1, and the
    /// image kept running (`serve`) so peers can open sessions to it.
    User,
    /// A link to one other device, itself booted with `--net stream-join`: a TCP
    /// stream between the two QEMUs on 127.0.0.1 (`--net-port`), this side listening
    /// (boot it first). This device is 10.0.2.15 on the link, kept running (`serve`).
    StreamListen,
    /// The other end of a `--net stream-listen` device's link (boot it second). This
    /// device is 10.0.2.16; `--append pair=10.0.2.15:7411:<code>` pairs it with the
    /// first by that device's setup code.
    StreamJoin,
}

/// The network of a boot, the peers its disks trust, and more kernel command line.
#[derive(Args, Clone, Debug)]
pub struct NetOptions {
    /// `user`: forward dsoftbusd's port from 127.0.0.1 and keep the image serving;
    /// `stream-listen`, `stream-join`: link two devices to each other.
    #[arg(long, env = "NET", value_enum, default_value = "isolated")]
    pub net: NetMode,
    /// The host port forwarded to dsoftbusd's 7411 with `--net user`, or the port of
    /// the stream between two devices with `--net stream-listen`/`stream-join` (the
    /// next ones for more combinations).
    #[arg(long, env = "NET_PORT", default_value_t = 7411)]
    pub net_port: u16,
    /// How long the image serves with `--net user` or a stream, in seconds (at most
    /// 540).
    #[arg(long, env = "SERVE", default_value_t = 540)]
    pub serve: u64,
    /// Peer device keys (64 hex digits each, comma-separated) to provision into the
    /// trust store before the boot.
    #[arg(long, env = "TRUST", value_delimiter = ',')]
    pub trust: Vec<String>,
    /// More kernel command-line words (`-append`), such as `serve=60` or `spin`.
    #[arg(long = "append", env = "APPEND", value_delimiter = ' ')]
    pub append: Vec<String>,
}

impl Default for NetOptions {
    fn default() -> Self {
        Self {
            net: NetMode::Isolated,
            net_port: 7411,
            serve: 540,
            trust: Vec::new(),
            append: Vec::new(),
        }
    }
}

/// Parses `90s`, `2m`, `500ms` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, "s"), |i| text.split_at(i));
    let value: u64 = number
        .parse()
        .map_err(|_| format!("not a duration: {text:?} (use 90s, 2m, 500ms)"))?;
    match unit {
        "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value * 60)),
        "ms" => Ok(Duration::from_millis(value)),
        _ => Err(format!("unknown unit in {text:?} (use s, m or ms)")),
    }
}

impl TestOsOptions {
    fn combinations(&self) -> Result<Vec<Combination>, String> {
        let chosen = Combination::select(&self.provider);
        if chosen.is_empty() {
            let known: Vec<String> = Combination::all().iter().map(ToString::to_string).collect();
            return Err(format!(
                "unknown PROVIDER {:?} (known: {}, classic, all)",
                self.provider,
                known.join(", ")
            ));
        }
        Ok(chosen)
    }

    /// The scenario to judge by: the one asked for, `no-rng` when booting without a
    /// device, or `no-otp` without the OTP disk.
    pub fn scenario(&self) -> Option<&str> {
        self.scenario
            .as_deref()
            .or(self.no_rng.then_some("no-rng"))
            .or(self.no_otp.then_some("no-otp"))
    }

    /// The network device of the `index`th boot, the command-line words it needs,
    /// and, with `--net user`, what to tell the person once the image serves.
    fn network(&self, index: usize, log: &Path) -> (Nic, Vec<String>, Option<Interaction>) {
        match self.net.net {
            NetMode::Isolated => (Nic::default(), self.net.append.clone(), None),
            NetMode::User => {
                let port = self.net.net_port + index as u16;
                let nic = Nic {
                    network: Network::User {
                        forwards: vec![(port, crate::network::DSOFTBUS_PORT)],
                    },
                    mac: None,
                };
                let serve = self.net.serve.clamp(1, 540);
                let log = log.to_path_buf();
                let action = Box::new(move || -> Result<String, String> {
                    // The key line came before `serving`, so it is in the log.
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    let key = text
                        .lines()
                        .find_map(|l| l.strip_prefix("keystored: device pubkey "))
                        .unwrap_or("(none: see the console)")
                        .trim()
                        .to_owned();
                    eprintln!(
                        "\nxtask run: dsoftbusd listens on 127.0.0.1:{port} for {serve} s\n\
                         xtask run: device public key {key}\n\
                         xtask run: a peer: cargo xtask peer session --addr 127.0.0.1:{port} \
                         --device-key {key}\n\
                         xtask run: (the peer's own key: cargo xtask peer key; provision it \
                         with TRUST=<key> before the boot)\n"
                    );
                    Ok(String::new())
                });
                let interaction = Interaction {
                    trigger: "SELFTEST: serving".into(),
                    action,
                };
                let mut bootargs = vec![format!("serve={serve}")];
                bootargs.extend(self.net.append.iter().cloned());
                (nic, bootargs, Some(interaction))
            }
            NetMode::StreamListen | NetMode::StreamJoin => {
                let listens = self.net.net == NetMode::StreamListen;
                let port = self.net.net_port + index as u16;
                let (ip, mac) = if listens {
                    ("10.0.2.15", "52:54:00:12:34:01")
                } else {
                    ("10.0.2.16", "52:54:00:12:34:02")
                };
                let nic = Nic {
                    network: Network::Stream {
                        server: listens,
                        port,
                    },
                    mac: Some(mac.into()),
                };
                let serve = self.net.serve.clamp(1, 540);
                let action = Box::new(move || -> Result<String, String> {
                    let next = if listens {
                        format!(
                            "xtask run: the other device: cargo xtask run --net stream-join \
                             --net-port {port} --append pair=10.0.2.15:{dsoftbus}:<this \
                             device's setup code>\n",
                            dsoftbus = crate::network::DSOFTBUS_PORT
                        )
                    } else {
                        String::new()
                    };
                    eprintln!(
                        "\nxtask run: this device is {ip} on the stream at 127.0.0.1:{port}, \
                         serving for {serve} s\n{next}"
                    );
                    Ok(String::new())
                });
                let interaction = Interaction {
                    trigger: "SELFTEST: serving".into(),
                    action,
                };
                let mut bootargs = vec![
                    format!("serve={serve}"),
                    format!("net.ip={ip}/24"),
                    "net.gw=none".to_owned(),
                ];
                bootargs.extend(self.net.append.iter().cloned());
                (nic, bootargs, Some(interaction))
            }
        }
    }

    /// The time a boot may take: `--timeout`, or longer than it serves.
    fn boot_timeout(&self) -> Duration {
        match self.net.net {
            NetMode::Isolated => self.timeout,
            NetMode::User | NetMode::StreamListen | NetMode::StreamJoin => self
                .timeout
                .max(Duration::from_secs(self.net.serve.clamp(1, 540) + 60)),
        }
    }

    /// The disks of `combination`'s boot: the state directory's (kept), or fresh ones.
    pub fn disks(&self, combination: &Combination, several: bool) -> Result<DiskSet, String> {
        match &self.state_dir {
            Some(dir) if several => DiskSet::in_dir(&dir.join(combination.dir_name()), self.no_otp),
            Some(dir) => DiskSet::in_dir(dir, self.no_otp),
            None => DiskSet::fresh(&image::run_dir(combination), self.no_otp),
        }
    }

    /// What the run is judged by, for messages: ``phase `full` `` or
    /// ``scenario `no-rng` ``, and what backs the entropy device when not the host.
    pub fn judged(&self) -> String {
        let by = match self.scenario() {
            Some(scenario) => format!("scenario `{scenario}`"),
            None => format!("phase `{}`", self.phase),
        };
        match (&self.rng_file, self.no_rng) {
            (_, true) => format!("{by} without virtio-rng"),
            (Some(path), false) => format!("{by} with RNG_FILE={}", path.display()),
            (None, false) => by,
        }
    }

    /// The console log's name: `uart.log` for a phase, `uart-<scenario>.log` otherwise.
    fn log_name(&self) -> String {
        self.scenario()
            .map_or("uart.log".to_owned(), |s| format!("uart-{s}.log"))
    }

    fn rng(&self) -> Result<RngBacking, String> {
        match (&self.rng_file, self.no_rng) {
            (_, true) => Ok(RngBacking::Absent),
            (Some(path), false) => {
                let path = std::path::absolute(path)
                    .map_err(|e| format!("RNG_FILE {}: {e}", path.display()))?;
                if !path.is_file() {
                    return Err(format!("RNG_FILE {} is not a file", path.display()));
                }
                Ok(RngBacking::File(path))
            }
            (None, false) => Ok(RngBacking::Host),
        }
    }
}

/// Reads the marker contract, the single source of truth of the ladder.
pub fn contract() -> Result<Contract, String> {
    let path = workspace_root().join("ladder/markers.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Contract::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// One combination's run, for the table.
pub struct Row {
    pub combination: Combination,
    pub outcome: Result<Outcome, String>,
    pub sizes: Option<image::Sizes>,
    /// Whether the whole normal ladder was required: then QEMU must also have exited 0.
    pub whole_ladder: bool,
}

impl Row {
    pub fn passed(&self) -> bool {
        match &self.outcome {
            Ok(outcome) if self.whole_ladder && outcome.exit_code.is_some() => {
                outcome.passed() && outcome.exit_code == Some(0)
            }
            Ok(outcome) => outcome.passed(),
            Err(_) => false,
        }
    }
}

/// Builds the image of every requested combination as a device ships it, one after
/// the other (they share one target directory); returns each with its path.
pub fn build_images(combinations: &[Combination]) -> Result<Vec<(Combination, PathBuf)>, String> {
    build_images_with(combinations, |_| Profile::Release)
}

/// As [`build_images_with`], calling `each` with every image as soon as it is built.
pub fn build_images_each(
    combinations: &[Combination],
    profile: impl Fn(&Combination) -> Profile,
    each: impl Fn(&(Combination, PathBuf)),
) -> Result<Vec<(Combination, PathBuf)>, String> {
    toolchain::ensure_riscv_target()?;
    combinations
        .iter()
        .map(|combination| {
            let profile = profile(combination);
            eprintln!(
                "    building the {combination} programs ({})",
                profile.cargo_name()
            );
            let image = image::build_with(combination, profile).map(|path| (*combination, path))?;
            each(&image);
            Ok(image)
        })
        .collect()
}

/// Builds the image of every requested combination, each with the profile `profile`
/// gives it; returns each with its path.
pub fn build_images_with(
    combinations: &[Combination],
    profile: impl Fn(&Combination) -> Profile,
) -> Result<Vec<(Combination, PathBuf)>, String> {
    toolchain::ensure_riscv_target()?;
    combinations
        .iter()
        .map(|combination| {
            let profile = profile(combination);
            eprintln!(
                "    building the {combination} programs ({})",
                profile.cargo_name()
            );
            image::build_with(combination, profile).map(|path| (*combination, path))
        })
        .collect()
}

/// Builds and boots every requested combination; returns the rows.
pub fn test_os(options: &TestOsOptions, stream: bool) -> Result<Vec<Row>, String> {
    let profile = if options.matrix_profile {
        Profile::Matrix
    } else {
        Profile::Release
    };
    let images = build_images_with(&options.combinations()?, |_| profile)?;
    boot_all(&images, options, stream)
}

/// Boots prebuilt images side by side, each judged by the options' phase or scenario,
/// on the disks the options give.
pub fn boot_all(
    images: &[(Combination, PathBuf)],
    options: &TestOsOptions,
    stream: bool,
) -> Result<Vec<Row>, String> {
    let several = images.len() > 1;
    let disks = images
        .iter()
        .map(|(combination, _)| options.disks(combination, several))
        .collect::<Result<Vec<_>, _>>()?;
    if !options.net.trust.is_empty() {
        for ((combination, _), set) in images.iter().zip(&disks) {
            let dir = set
                .state
                .as_deref()
                .and_then(Path::parent)
                .ok_or("TRUST needs a state disk")?;
            crate::network::trust(dir, &options.net.trust, combination)?;
            eprintln!(
                "    {}: trusts {} provisioned peer(s)",
                dir.display(),
                options.net.trust.len()
            );
        }
    }
    boot_all_on(images, &disks, options, stream, &BTreeMap::new())
}

/// Boots prebuilt images side by side on the given disks (one set per image), each
/// judged by the options' phase or scenario; `values` are placeholder values every
/// image must print (besides its `provider`).
pub fn boot_all_on(
    images: &[(Combination, PathBuf)],
    disks: &[DiskSet],
    options: &TestOsOptions,
    stream: bool,
    values: &BTreeMap<String, String>,
) -> Result<Vec<Row>, String> {
    let contract = contract()?;
    let expectation = contract
        .expectation(&options.phase, options.scenario())
        .map_err(|e| e.to_string())?;
    let labels: Vec<&str> = contract
        .phase_names()
        .into_iter()
        .chain(options.scenario())
        .collect();
    let whole_ladder = options.scenario().is_none()
        && contract.phase_names().last() == Some(&options.phase.as_str());
    let rng = options.rng()?;
    qemu::ensure_installed()?;
    let boots: Vec<(usize, &(Combination, PathBuf), &DiskSet)> = images
        .iter()
        .zip(disks)
        .enumerate()
        .map(|(index, (image, disks))| (index, image, disks))
        .collect();
    // Images kept serving for a person (`--net user`) all run at once; any other
    // boots run at most `qemu_jobs` at a time.
    let limit = match options.net.net {
        NetMode::User | NetMode::StreamListen | NetMode::StreamJoin => boots.len(),
        NetMode::Isolated => crate::jobs::qemu_jobs(),
    };
    let rows = crate::jobs::bounded(&boots, limit, |&(index, (combination, path), disks)| {
        let (expectation, rng, labels) = (expectation.clone(), &rng, &labels);
        let log = image::run_dir(combination).join(options.log_name());
        let (nic, bootargs, interaction) = options.network(index, &log);
        let programs = image::programs_for(path);
        let boot = Boot {
            image: path,
            programs: Some(&programs),
            log,
            rng,
            disks,
            timeout: options.boot_timeout(),
            until_marker: options.until_marker,
            stream,
            bench: options.scenario() == Some("bench"),
            nic: &nic,
            bootargs: &bootargs,
        };
        let mut values = values.clone();
        values.insert("provider".to_owned(), combination.to_string());
        Row {
            combination: *combination,
            outcome: qemu::run_with(&boot, expectation, labels, values, interaction),
            sizes: image::sizes(path).ok(),
            whole_ladder,
        }
    });
    Ok(rows)
}

/// Prints the failures in detail and the table; returns whether every row passed.
pub fn report(rows: &[Row], options: &TestOsOptions) -> bool {
    let mut all_passed = true;
    for row in rows {
        let passed = row.passed();
        all_passed &= passed;
        match &row.outcome {
            Ok(outcome) if !passed => {
                eprintln!("\n    {}: FAILED: {}", row.combination, outcome.explanation);
                if let Some(code) = outcome.exit_code {
                    eprintln!("    QEMU exit status {code}");
                }
                eprintln!("    last lines of {}:", outcome.log.display());
                for line in &outcome.tail {
                    eprintln!("      | {line}");
                }
            }
            Ok(outcome) => {
                for line in &outcome.later_failures {
                    eprintln!(
                        "    {}: note: after {} passed, the image printed: {line}",
                        row.combination,
                        options.judged()
                    );
                }
            }
            Err(why) => eprintln!("\n    {}: FAILED: {why}", row.combination),
        }
    }
    eprintln!(
        "\n    {}{}:",
        options.judged(),
        if options.until_marker {
            " (until the last marker)"
        } else {
            ""
        }
    );
    eprintln!(
        "    {:<28} {:<7} {:>8} {:>16} {:>8} {:>10} {:>10}",
        "provider", "result", "markers", "to last marker", "wall", ".text", ".rodata"
    );
    for row in rows {
        let verdict = if row.passed() { "ok" } else { "FAILED" };
        let (markers, to_last, wall) = match &row.outcome {
            Ok(o) => (
                format!("{}/{}", o.reached, o.total),
                o.to_last_marker
                    .map_or("-".to_owned(), |d| format!("{:.2} s", d.as_secs_f64())),
                format!("{:.2} s", o.wall.as_secs_f64()),
            ),
            Err(_) => ("-".into(), "-".into(), "-".into()),
        };
        let (text, rodata) = row.sizes.map_or(("-".into(), "-".into()), |s| {
            (s.text.to_string(), s.rodata.to_string())
        });
        eprintln!(
            "    {:<28} {:<7} {:>8} {:>16} {:>8} {:>10} {:>10}",
            row.combination.to_string(),
            verdict,
            markers,
            to_last,
            wall,
            text,
            rodata
        );
    }
    all_passed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_the_seed_commands() {
        assert_eq!(parse_duration("190s"), Ok(Duration::from_secs(190)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[derive(clap::Parser)]
    struct Command {
        #[command(flatten)]
        options: TestOsOptions,
    }

    fn network(args: &[&str]) -> (Nic, Vec<String>) {
        use clap::Parser;
        let command = Command::try_parse_from([&["xtask"][..], args].concat()).unwrap();
        let (nic, bootargs, interaction) = command.options.network(0, Path::new("uart.log"));
        assert!(interaction.is_some(), "the person is told once it serves");
        (nic, bootargs)
    }

    #[test]
    fn two_devices_by_hand_get_the_two_ends_of_one_stream_and_two_addresses() {
        let (b, b_args) = network(&["--net", "stream-listen", "--net-port", "7520"]);
        let (a, a_args) = network(&[
            "--net",
            "stream-join",
            "--net-port",
            "7520",
            "--serve",
            "30",
            "--append",
            "pair=10.0.2.15:7411:1234-5678",
        ]);
        let stream = |server| Network::Stream { server, port: 7520 };
        assert_eq!((b.network, a.network), (stream(true), stream(false)));
        assert_ne!(a.mac, b.mac, "one link, two MAC addresses");
        assert_eq!(b_args, ["serve=540", "net.ip=10.0.2.15/24", "net.gw=none"]);
        assert_eq!(
            a_args,
            [
                "serve=30",
                "net.ip=10.0.2.16/24",
                "net.gw=none",
                "pair=10.0.2.15:7411:1234-5678"
            ]
        );
    }
}
