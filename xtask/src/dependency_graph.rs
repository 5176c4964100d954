//! Proof that no `getrandom` reaches the OS image.
//!
//! The image has no operating system to ask for randomness: entropy comes from the
//! virtio-rng device through rngd, and a `getrandom` in the graph would mean some
//! crate has a second, unaudited path to "randomness" (or fails to link). The check
//! asks cargo for the normal-dependency graph of the image crates, for the riscv64
//! target, once per provider combination.

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
        let features = combination.features();
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
    }
}
