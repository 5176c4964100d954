//! Generates one constant per marker of `ladder/markers.toml`, and refuses a marker
//! whose owner is not the console prefix of a task (the kernel prefixes every line a
//! task prints, so such a marker could never be printed).

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../markers.toml");
    println!("cargo::rerun-if-changed={}", path.display());
    let fail = |message: String| -> ! {
        eprintln!("error: ladder/markers.toml: {message}");
        std::process::exit(1);
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| fail(e.to_string()));
    let contract = marker_contract::Contract::parse(&text).unwrap_or_else(|e| fail(e.to_string()));
    let prefixes: Vec<&str> = ipc::ServiceId::ALL
        .iter()
        .map(|id| id.console_prefix())
        .collect();
    let mut out = String::from("// Generated from ladder/markers.toml by build.rs. Do not edit.\n");
    let groups = contract
        .phases
        .iter()
        .map(|p| (format!("phase `{}`", p.name), &p.markers))
        .chain(std::iter::once((
            "scenarios".to_owned(),
            &contract.scenario_markers,
        )));
    for (group, markers) in groups {
        for marker in markers {
            let owner = marker.owner().expect("validated by the contract");
            if !prefixes.contains(&owner) {
                fail(format!(
                    "{}: owner `{owner}` is not a task console prefix ({})",
                    marker.id,
                    prefixes.join(", ")
                ));
            }
            let message = &marker.text[owner.len() + 2..];
            let _ = writeln!(
                out,
                "/// `{}` ({group}).\npub const {}: Marker = Marker {{ owner: {owner:?}, message: {message:?} }};",
                marker.text, marker.id
            );
        }
    }
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out_dir.join("markers.rs"), out).expect("write generated markers");
}
