//! Making sure the riscv64 target is installed, since automatic installs are off.

use crate::steps::{StatusOk, command};

/// The target of the OS image.
pub const RISCV_TARGET: &str = "riscv64imac-unknown-none-elf";

/// Adds the riscv64 target with rustup when the pinned toolchain lacks it.
///
/// `RUSTUP_AUTO_INSTALL=0` is set on these machines, so nothing else will; rustup runs
/// in the workspace, where `rust-toolchain.toml` names the toolchain.
pub fn ensure_riscv_target() -> Result<(), String> {
    let installed = command("rustup", &["target", "list", "--installed"])
        .output_ok()
        .map_err(|e| format!("cannot ask rustup which targets are installed: {e}"))?;
    if installed.lines().any(|line| line.trim() == RISCV_TARGET) {
        eprintln!("    {RISCV_TARGET} is installed");
        return Ok(());
    }
    eprintln!("    {RISCV_TARGET} is missing; adding it with rustup");
    command("rustup", &["target", "add", RISCV_TARGET])
        .status_ok()
        .map_err(|e| {
            format!(
                "could not add the {RISCV_TARGET} target ({e}). Fallback: \
                 `rustup component add rust-src` and build with \
                 `RUSTC_BOOTSTRAP=1 cargo build -Zbuild-std=core,alloc`"
            )
        })
}
