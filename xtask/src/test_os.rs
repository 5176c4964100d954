//! `cargo xtask test-os` and `cargo xtask run`: build images, boot them, judge them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use clap::builder::BoolishValueParser;
use marker_contract::Contract;

use crate::combination::Combination;
use crate::image;
use crate::qemu::{self, Boot, Outcome, RngBacking};
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
    /// Boot without a virtio-rng device.
    #[arg(long, env = "NO_RNG", value_parser = BoolishValueParser::new())]
    pub no_rng: bool,
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
        if self.provider == "all" {
            return Ok(Combination::ALL.to_vec());
        }
        Combination::ALL
            .iter()
            .find(|c| c.to_string() == self.provider)
            .map(|c| vec![*c])
            .ok_or_else(|| {
                let known: Vec<String> = Combination::ALL.iter().map(ToString::to_string).collect();
                format!(
                    "unknown PROVIDER {:?} (known: {}, all)",
                    self.provider,
                    known.join(", ")
                )
            })
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
    let path = workspace_root().join("selftest/markers.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Contract::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// One combination's run, for the table.
pub struct Row {
    pub combination: Combination,
    pub outcome: Result<Outcome, String>,
    pub sizes: Option<image::Sizes>,
}

impl Row {
    pub fn passed(&self, phase_is_last: bool) -> bool {
        match &self.outcome {
            // The whole ladder ends in shutdown: QEMU must also have exited cleanly.
            Ok(outcome) if phase_is_last && outcome.exit_code.is_some() => {
                outcome.passed() && outcome.exit_code == Some(0)
            }
            Ok(outcome) => outcome.passed(),
            Err(_) => false,
        }
    }
}

/// Builds and boots every requested combination; returns the rows.
pub fn test_os(options: &TestOsOptions, stream: bool) -> Result<Vec<Row>, String> {
    let contract = contract()?;
    contract.ladder(&options.phase).map_err(|e| e.to_string())?;
    let combinations = options.combinations()?;
    let rng = options.rng()?;
    toolchain::ensure_riscv_target()?;
    qemu::ensure_installed()?;

    // Builds share one target directory, so they run one after the other; the boots
    // then run side by side, each on its own copy of its image.
    let mut images = Vec::new();
    for combination in &combinations {
        eprintln!("    building the {combination} image");
        images.push(image::build(combination)?);
    }
    let rows = std::thread::scope(|scope| {
        let handles: Vec<_> = combinations
            .iter()
            .zip(&images)
            .map(|(combination, path)| {
                let (contract, rng) = (&contract, &rng);
                scope.spawn(move || {
                    let boot = Boot {
                        image: path,
                        log: image::run_dir(combination).join("uart.log"),
                        rng,
                        timeout: options.timeout,
                        until_marker: options.until_marker,
                        stream,
                    };
                    let values = BTreeMap::from([("provider".to_owned(), combination.to_string())]);
                    Row {
                        combination: *combination,
                        outcome: qemu::run(&boot, contract, &options.phase, values),
                        sizes: image::sizes(path).ok(),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("boot thread"))
            .collect::<Vec<_>>()
    });
    Ok(rows)
}

/// Prints the failures in detail and the table; returns whether every row passed.
pub fn report(rows: &[Row], options: &TestOsOptions) -> bool {
    let contract = contract().expect("read before");
    let phase_is_last = contract.phase_names().last() == Some(&options.phase.as_str());
    let mut all_passed = true;
    for row in rows {
        let passed = row.passed(phase_is_last);
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
                        "    {}: note: after phase `{}` passed, the image printed: {line}",
                        row.combination, options.phase
                    );
                }
            }
            Err(why) => eprintln!("\n    {}: FAILED: {why}", row.combination),
        }
    }
    eprintln!(
        "\n    phase `{}`{}:",
        options.phase,
        if options.until_marker {
            " (until the last marker)"
        } else {
            ""
        }
    );
    eprintln!(
        "    {:<16} {:<7} {:>8} {:>16} {:>8} {:>10} {:>10}",
        "provider", "result", "markers", "to last marker", "wall", ".text", ".rodata"
    );
    for row in rows {
        let verdict = if row.passed(phase_is_last) {
            "ok"
        } else {
            "FAILED"
        };
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
            "    {:<16} {:<7} {:>8} {:>16} {:>8} {:>10} {:>10}",
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

/// The phases a run passed completely, given how many ladder markers it reached.
pub fn phases_passed(contract: &Contract, reached: usize) -> Vec<String> {
    let mut end = 0;
    contract
        .phases
        .iter()
        .filter_map(|phase| {
            end += phase.markers.len();
            (end <= reached).then(|| phase.name.clone())
        })
        .collect()
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

    #[test]
    fn phases_passed_counts_whole_phases() {
        let contract = contract().unwrap();
        let first = contract.phases[0].markers.len();
        assert_eq!(phases_passed(&contract, first - 1), Vec::<String>::new());
        assert_eq!(
            phases_passed(&contract, first),
            vec![contract.phases[0].name.clone()]
        );
    }
}
