//! Compiles the policy table and the boot manifest into the kernel.
//! A malformed file stops the build with a message naming the file and the entry.

use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let read = |name: &str| {
        let path = root.join(name);
        println!("cargo::rerun-if-changed={}", path.display());
        std::fs::read_to_string(&path).unwrap_or_else(|e| {
            eprintln!("error: cannot read policies/{name}: {e}");
            std::process::exit(1);
        })
    };
    let rules = kernel_config::parse_policy("policies/policy.toml", &read("policy.toml"));
    let manifest = kernel_config::parse_manifest("policies/manifest.toml", &read("manifest.toml"));
    let (policy, manifest) = match (rules, manifest) {
        (Ok(policy), Ok(manifest)) => (policy, manifest),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(
        out.join("config.rs"),
        kernel_config::generate(&policy, &manifest),
    )
    .expect("write generated config");
}
