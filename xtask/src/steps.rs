//! Named steps with timing, and one summary line at the end.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

/// A sequence of named steps. Every step runs even when an earlier one failed, so one
/// run reports everything that is wrong; the summary names the failures.
pub struct Steps {
    title: &'static str,
    started: Instant,
    results: Vec<(String, Result<(), String>, f64)>,
}

impl Steps {
    pub fn new(title: &'static str) -> Self {
        Self {
            title,
            started: Instant::now(),
            results: Vec::new(),
        }
    }

    pub fn run(&mut self, name: &str, step: impl FnOnce() -> Result<(), String>) {
        eprintln!("\n==> {name}");
        let started = Instant::now();
        let result = step();
        let seconds = started.elapsed().as_secs_f64();
        match &result {
            Ok(()) => eprintln!("==> {name}: ok ({seconds:.1} s)"),
            Err(why) => eprintln!("==> {name}: FAILED ({seconds:.1} s): {why}"),
        }
        self.results.push((name.to_owned(), result, seconds));
    }

    pub fn finish(self) -> ExitCode {
        let failed: Vec<&str> = self
            .results
            .iter()
            .filter(|(_, result, _)| result.is_err())
            .map(|(name, _, _)| name.as_str())
            .collect();
        let total = self.results.len();
        let seconds = self.started.elapsed().as_secs_f64();
        eprintln!();
        for (name, result, step_seconds) in &self.results {
            let verdict = if result.is_ok() { "ok" } else { "FAILED" };
            eprintln!("  {verdict:<6} {step_seconds:>7.1} s  {name}");
        }
        if failed.is_empty() {
            eprintln!("{}: all {total} steps passed in {seconds:.0} s", self.title);
            ExitCode::SUCCESS
        } else {
            eprintln!(
                "{}: {} of {total} steps FAILED in {seconds:.0} s: {}",
                self.title,
                failed.len(),
                failed.join("; ")
            );
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// Cargo's target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// A command that runs in the workspace root, printed before it runs.
pub fn command(program: &str, args: &[&str]) -> Command {
    let mut command = Command::new(program);
    command.args(args).current_dir(workspace_root());
    command
}

/// Runs cargo with `args`, streaming its output.
pub fn cargo(args: &[&str]) -> Result<(), String> {
    command("cargo", args).status_ok()
}

/// Running a command and turning its exit status into a step result.
pub trait StatusOk {
    fn status_ok(&mut self) -> Result<(), String>;
    fn output_ok(&mut self) -> Result<String, String>;
}

impl StatusOk for Command {
    fn status_ok(&mut self) -> Result<(), String> {
        let shown = show(self);
        eprintln!("    $ {shown}");
        let status = self
            .status()
            .map_err(|e| format!("cannot start `{shown}`: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("`{shown}` exited with {status}"))
        }
    }

    fn output_ok(&mut self) -> Result<String, String> {
        let shown = show(self);
        let output = self
            .output()
            .map_err(|e| format!("cannot start `{shown}`: {e}"))?;
        if output.status.success() {
            String::from_utf8(output.stdout)
                .map_err(|e| format!("`{shown}` printed non-UTF-8: {e}"))
        } else {
            Err(format!(
                "`{shown}` exited with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }
}

fn show(command: &Command) -> String {
    let mut shown = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        shown.push(' ');
        shown.push_str(&arg.to_string_lossy());
    }
    shown
}

/// Prints the conformance kit's report (see `provider_conformance::Tally::report`) as
/// a table sorted by backend, and fails if it is empty.
pub fn print_conformance_table(report: &str) -> Result<(), String> {
    let mut rows: Vec<Vec<&str>> = report
        .lines()
        .filter_map(|line| line.strip_prefix("conformance\t"))
        .map(|line| line.split('\t').collect())
        .filter(|fields: &Vec<&str>| fields.len() == 7)
        .collect();
    if rows.is_empty() {
        return Err("the conformance kit reported no checks".into());
    }
    rows.sort();
    eprintln!("\n    conformance kit: cases run per backend");
    eprintln!(
        "    {:<16} {:<26} {:>6} {:>7} {:>9} {:>12}",
        "backend", "check", "total", "valid", "invalid", "acceptable"
    );
    eprintln!(
        "    {:<16} {:<26} {:>6} {:>7} {:>9} {:>12}",
        "", "", "", "ok", "rejected", "acc/rej"
    );
    for row in rows {
        eprintln!(
            "    {:<16} {:<26} {:>6} {:>7} {:>9} {:>12}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            format!("{}/{}", row[5], row[6])
        );
    }
    Ok(())
}
