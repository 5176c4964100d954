//! Building the OS image of a provider combination, and measuring it.

use std::path::PathBuf;

use object::{Object, ObjectSection};

use crate::combination::Combination;
use crate::steps::{cargo, target_dir};
use crate::toolchain::RISCV_TARGET;

/// Where the harness keeps a combination's image and logs: `target/qemu/<provider>/`.
pub fn run_dir(combination: &Combination) -> PathBuf {
    target_dir().join("qemu").join(combination.dir_name())
}

/// Builds the image of `combination` (release, riscv64, only that combination's
/// backends) and copies it to `target/qemu/<provider>/os-image.elf`, so that runs of
/// different combinations can go side by side.
pub fn build(combination: &Combination) -> Result<PathBuf, String> {
    build_with(combination, &combination.features(), "os-image.elf")
}

/// Builds `combination`'s image without the network stack, as
/// `target/qemu/<provider>/os-image-no-net.elf`: only to measure what it adds.
pub fn build_without_network(combination: &Combination) -> Result<PathBuf, String> {
    build_with(
        combination,
        &combination.features_without_network(),
        "os-image-no-net.elf",
    )
}

fn build_with(combination: &Combination, features: &str, name: &str) -> Result<PathBuf, String> {
    cargo(&[
        "build",
        "--release",
        "--target",
        RISCV_TARGET,
        "--package",
        "os-image",
        "--no-default-features",
        "--features",
        features,
    ])?;
    let built = target_dir().join(RISCV_TARGET).join("release/os-image");
    let dir = run_dir(combination);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let image = dir.join(name);
    std::fs::copy(&built, &image).map_err(|e| {
        format!(
            "cannot copy {} to {}: {e}",
            built.display(),
            image.display()
        )
    })?;
    Ok(image)
}

/// Section sizes of an image, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sizes {
    pub text: u64,
    pub rodata: u64,
}

/// Reads the section sizes of the ELF at `path`.
pub fn sizes(path: &std::path::Path) -> Result<Sizes, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file = object::File::parse(&*bytes)
        .map_err(|e| format!("{} is not an ELF file: {e}", path.display()))?;
    let size = |name: &str| file.section_by_name(name).map_or(0, |s| s.size());
    Ok(Sizes {
        text: size(".text"),
        rodata: size(".rodata"),
    })
}
