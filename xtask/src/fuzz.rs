//! `cargo xtask fuzz`: the fuzz targets under libFuzzer.
//!
//! The targets are plain functions in `fuzz-targets` (`cargo xtask test` replays their
//! corpora on stable); `fuzz/` is the cargo-fuzz harness around them. libFuzzer needs
//! the sanitizer flags, which stable Rust accepts only with `RUSTC_BOOTSTRAP=1`: this
//! command sets it for cargo-fuzz's build alone, never for the image or the tests.
//! cargo-fuzz is installed when missing (`cargo install cargo-fuzz --locked`).

use std::path::Path;
use std::process::Command;

use crate::steps::{StatusOk, command, workspace_root};

/// cargo-fuzz, installed when missing.
fn ensure_cargo_fuzz() -> Result<(), String> {
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if installed {
        return Ok(());
    }
    eprintln!("    cargo-fuzz is missing; installing it (about 30 s)");
    command("cargo", &["install", "cargo-fuzz", "--locked"]).status_ok()
}

/// The targets, from the harness's own list of binaries.
pub fn targets() -> Result<Vec<String>, String> {
    let dir = workspace_root().join("fuzz/fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.path()
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    Ok(names)
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.filter_map(Result::ok).count())
}

/// One target's run: what libFuzzer reported.
pub struct Run {
    pub target: String,
    pub runs: Option<u64>,
    pub corpus: usize,
    pub crashes: usize,
}

/// libFuzzer's `Done N runs in S second(s)` line.
fn runs_of(stderr: &str) -> Option<u64> {
    stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("Done "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Runs `target` for `seconds`, then minimizes its corpus (`cargo fuzz cmin`).
pub fn fuzz_one(target: &str, seconds: u64) -> Result<Run, String> {
    let root = workspace_root();
    let time = format!("-max_total_time={seconds}");
    let output = Command::new("cargo")
        .args(["fuzz", "run", "--fuzz-dir", "fuzz", target, "--", &time])
        .env("RUSTC_BOOTSTRAP", "1")
        .current_dir(&root)
        .output()
        .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let crashes = count_files(&root.join("fuzz/artifacts").join(target));
    if !output.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        eprintln!("{}", tail.join("\n"));
        return Err(format!(
            "{target}: libFuzzer stopped (a crash or a failed property: fuzz/artifacts/{target}/)"
        ));
    }
    Command::new("cargo")
        .args(["fuzz", "cmin", "--fuzz-dir", "fuzz", target])
        .env("RUSTC_BOOTSTRAP", "1")
        .current_dir(&root)
        .output()
        .map_err(|e| format!("cannot run cargo fuzz cmin: {e}"))?;
    Ok(Run {
        target: target.to_owned(),
        runs: runs_of(&stderr),
        corpus: count_files(&root.join("fuzz/corpus").join(target)),
        crashes,
    })
}

/// `cargo xtask fuzz [TARGET] [--time S]`.
pub fn run(target: Option<&str>, seconds: u64) -> Result<Vec<Run>, String> {
    ensure_cargo_fuzz()?;
    let all = targets()?;
    let chosen: Vec<String> = match target {
        Some(name) if all.iter().any(|t| t == name) => vec![name.to_owned()],
        Some(name) => {
            return Err(format!(
                "no fuzz target {name:?} (targets: {})",
                all.join(", ")
            ));
        }
        None => all,
    };
    let mut runs = Vec::new();
    for target in &chosen {
        eprintln!("    fuzzing {target} for {seconds} s");
        runs.push(fuzz_one(target, seconds)?);
    }
    eprintln!(
        "\n    {:<28} {:>12} {:>8} {:>8}",
        "target", "executions", "corpus", "crashes"
    );
    for run in &runs {
        eprintln!(
            "    {:<28} {:>12} {:>8} {:>8}",
            run.target,
            run.runs.map_or("-".into(), |n| n.to_string()),
            run.corpus,
            run.crashes
        );
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libfuzzers_last_line_gives_the_executions() {
        let stderr = "#1024 pulse\nDone 123456 runs in 60 second(s)\n";
        assert_eq!(runs_of(stderr), Some(123_456));
        assert_eq!(runs_of("nothing"), None);
    }

    #[test]
    fn every_harness_binary_is_a_target_of_the_crate() {
        let names = targets().unwrap();
        assert_eq!(names.len(), fuzz_targets::TARGETS.len());
        for name in names {
            assert!(fuzz_targets::target(&name).is_some(), "{name}");
        }
    }
}
