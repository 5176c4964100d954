//! Proofs about dependency graphs, asked of cargo (`cargo tree`, normal edges, the
//! riscv64 target).
//!
//! - No `getrandom` reaches the OS image or its user programs: there is no operating
//!   system to ask for randomness, entropy comes from the virtio-rng device through
//!   rngd, and a `getrandom` in the graph would mean some crate has a second,
//!   unaudited path to "randomness" (or fails to link). Once per combination.
//! - The kernel crate holds no cryptography, no network stack and no driver: no
//!   provider-api, no backend, no hash crate, no smoltcp, no virtio-drivers and none
//!   of `drivers/`, no service. Those run in the processes of the user program.

use crate::combination::Combination;
use crate::steps::{StatusOk, command};
use crate::toolchain::RISCV_TARGET;

/// The crate whose graph is the image's.
const IMAGE_CRATE: &str = "os-image";
/// The user programs, which hold the services that run in user mode (and their crypto).
const PROGRAMS_CRATE: &str = "user-programs";

/// The crate that must not appear.
const FORBIDDEN: &str = "getrandom";

pub fn check_no_getrandom(combinations: &[Combination]) -> Result<(), String> {
    for combination in combinations {
        let features = format!("os-image/net,{}", combination.features());
        let tree = command(
            "cargo",
            &[
                "tree",
                "--target",
                RISCV_TARGET,
                "--edges",
                "normal",
                "--package",
                IMAGE_CRATE,
                "--package",
                PROGRAMS_CRATE,
                "--no-default-features",
                "--features",
                &features,
                "--prefix",
                "none",
                "--format",
                "{p}",
            ],
        )
        .output_ok()?;
        let packages = package_names(&tree);
        if packages.len() < 5 {
            return Err(format!(
                "{combination}: cargo tree listed only {packages:?}; the check would prove nothing"
            ));
        }
        if let Some(found) = packages.iter().find(|name| **name == FORBIDDEN) {
            return Err(format!(
                "{combination}: {found} is in the riscv64 graph of {IMAGE_CRATE} and {PROGRAMS_CRATE}"
            ));
        }
        eprintln!(
            "    {combination}: {} packages in the riscv64 graph, no {FORBIDDEN}",
            packages.len()
        );
    }
    Ok(())
}

/// What the kernel crate's graph must not hold.
const NOT_IN_KERNEL: &[&str] = &[
    "provider-api",
    "provider-select",
    "provider-dalek",
    "provider-compact",
    "provider-chacha",
    "provider-aes-gcm",
    "provider-aes-gcm-siv",
    "provider-hash",
    "curve25519-dalek",
    "ed25519-dalek",
    "ed25519-compact",
    "x25519-dalek",
    "chacha20poly1305",
    "aes-gcm",
    "smoltcp",
    "virtio-drivers",
    "virtio-rng",
    "virtio-net",
    "virtio-blk",
    "rollback-counter",
    "device-deadline",
    "noise-xk",
    "logd",
    "rngd",
    "statefs",
    "keystored",
    "netstackd",
    "dsoftbusd",
];

/// Checks the kernel crate's riscv64 graph holds none of [`NOT_IN_KERNEL`].
pub fn check_kernel_graph() -> Result<(), String> {
    let tree = command(
        "cargo",
        &[
            "tree",
            "--target",
            RISCV_TARGET,
            "--edges",
            "normal",
            "--package",
            "kernel",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ],
    )
    .output_ok()?;
    let packages = package_names(&tree);
    if packages.len() < 5 {
        return Err(format!(
            "cargo tree listed only {packages:?} for the kernel; the check would prove nothing"
        ));
    }
    let found: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|name| NOT_IN_KERNEL.contains(name))
        .collect();
    if !found.is_empty() {
        return Err(format!("the kernel's riscv64 graph holds {found:?}"));
    }
    eprintln!(
        "    kernel: {} packages in its riscv64 graph, none of {} forbidden (crypto, smoltcp, drivers, services)",
        packages.len(),
        NOT_IN_KERNEL.len()
    );
    Ok(())
}

/// The package names in `cargo tree --prefix none --format {p}` output, deduplicated.
fn package_names(tree: &str) -> Vec<&str> {
    let mut names: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_reads_cargo_tree_output_and_finds_the_forbidden_crate() {
        let tree = "provider-select v0.1.0 (/w/providers/select)\n\
                    provider-api v0.1.0 (/w/provider-api)\n\
                    getrandom v0.3.4\n\
                    aead v0.6.1\n\
                    provider-api v0.1.0 (/w/provider-api) (*)\n";
        let names = package_names(tree);
        assert_eq!(
            names,
            ["aead", "getrandom", "provider-api", "provider-select"]
        );
        assert!(names.contains(&FORBIDDEN));
        assert!(names.iter().any(|name| NOT_IN_KERNEL.contains(name)));
    }
}
