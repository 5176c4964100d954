//! Proofs about dependency graphs, asked of cargo (`cargo tree`, normal edges, the
//! riscv64 target).
//!
//! - No `getrandom` reaches the OS image or its user programs: there is no operating
//!   system to ask for randomness, entropy comes from the virtio-rng device through
//!   rngd, and a `getrandom` in the graph would mean some crate has a second,
//!   unaudited path to "randomness" (or fails to link). Checked once with every
//!   backend of provider-select's table compiled in, a superset of every combination.
//! - The kernels hold no cryptography, no network stack and no driver: no crate of
//!   provider-select's graph with every backend (but `zeroize`), no smoltcp, no
//!   virtio-drivers and none of `drivers/`, no service. Those run in the processes of
//!   the user program. (This is what lets one kernel serve every combination.)

use crate::steps::{StatusOk, command};
use crate::toolchain::RISCV_TARGET;

/// The crate whose graph is the image's.
const IMAGE_CRATE: &str = "os-image";
/// The user programs, which hold the services that run in user mode (and their crypto).
const PROGRAMS_CRATE: &str = "user-programs";

/// The crate that must not appear.
const FORBIDDEN: &str = "getrandom";

/// `cargo tree` of `packages` with `features` (normal edges, no proc-macros, the
/// riscv64 target): the package names, deduplicated.
fn riscv_graph(packages: &[&str], features: &str) -> Result<Vec<String>, String> {
    let mut args = vec![
        "tree",
        "--target",
        RISCV_TARGET,
        "--edges",
        "normal,no-proc-macro",
        "--no-default-features",
        "--features",
        features,
        "--prefix",
        "none",
        "--format",
        "{p}",
    ];
    for package in packages {
        args.extend(["--package", package]);
    }
    let tree = command("cargo", &args).output_ok()?;
    let names: Vec<String> = package_names(&tree)
        .into_iter()
        .map(str::to_owned)
        .collect();
    if names.len() < 5 {
        return Err(format!(
            "cargo tree listed only {names:?} for {packages:?}; the check would prove nothing"
        ));
    }
    Ok(names)
}

/// No `getrandom` in the riscv64 graph of the kernels and the user programs with
/// every backend of provider-select's table compiled in (`all-backends`): a superset
/// of every combination's graph, in one `cargo tree`.
pub fn check_no_getrandom() -> Result<(), String> {
    let packages = riscv_graph(
        &[IMAGE_CRATE, PROGRAMS_CRATE],
        "os-image/net,provider-select/all-backends",
    )?;
    if packages.iter().any(|name| name == FORBIDDEN) {
        return Err(format!(
            "{FORBIDDEN} is in the riscv64 graph of {IMAGE_CRATE} and {PROGRAMS_CRATE} with every backend"
        ));
    }
    eprintln!(
        "    every backend: {} packages in the riscv64 graph of the images and their programs, no {FORBIDDEN}",
        packages.len()
    );
    Ok(())
}

/// What the kernels' graph must not hold besides the backends' graph: the network
/// stack, the drivers and the services, which run in the user program's processes.
const NOT_IN_KERNEL: &[&str] = &[
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

/// Crates of the backends' graph a kernel may hold: `zeroize` wipes memory and is
/// no cryptography.
const SHARED_WITH_BACKENDS: &[&str] = &["zeroize"];

/// The two kernels (`os-image`, `device-image`, built once for every combination)
/// hold no crate of provider-select's graph with every backend (provider-api, the
/// backend crates and everything they use, but `zeroize`) and none of
/// [`NOT_IN_KERNEL`].
pub fn check_kernel_graph() -> Result<(), String> {
    let kernels = riscv_graph(
        &[IMAGE_CRATE, "device-image"],
        "os-image/net,device-image/net",
    )?;
    let crypto = riscv_graph(&["provider-select"], "all-backends")?;
    let found: Vec<&str> = kernels
        .iter()
        .map(String::as_str)
        .filter(|name| {
            NOT_IN_KERNEL.contains(name)
                || (crypto.iter().any(|c| c == name) && !SHARED_WITH_BACKENDS.contains(name))
        })
        .collect();
    if !found.is_empty() {
        return Err(format!("the kernels' riscv64 graph holds {found:?}"));
    }
    eprintln!(
        "    kernels: {} packages in their riscv64 graph, none of the backends' {} (but zeroize) nor of {} more (network stack, drivers, services)",
        kernels.len(),
        crypto.len(),
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
        assert!(!names.iter().any(|name| SHARED_WITH_BACKENDS.contains(name)));
    }
}
