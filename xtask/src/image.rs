//! Building the OS image of a provider combination, and measuring it.

use std::path::{Path, PathBuf};

use object::{Object, ObjectSection};

use crate::combination::Combination;
use crate::steps::{cargo, target_dir};
use crate::toolchain::RISCV_TARGET;

/// A combination and the path of one of its built images.
pub type Built = (Combination, PathBuf);

/// Where the harness keeps a combination's image and logs: `target/qemu/<provider>/`.
pub fn run_dir(combination: &Combination) -> PathBuf {
    target_dir().join("qemu").join(combination.dir_name())
}

/// Builds the test image and the production image of `combination` (release,
/// riscv64, only that combination's backends) in one cargo run, which compiles the
/// crates they share once, and copies them to `target/qemu/<provider>/os-image.elf`
/// and `device-image.elf`, so that runs of different combinations can go side by side.
/// The same run builds the images' user programs (`programs/`: the same for every
/// combination today, so cargo builds them once) as `test-programs.elf` and
/// `device-programs.elf` beside them, and for the classic combinations (the device
/// fault scenarios run on them) `device-faults.elf`: linking it costs seconds per
/// combination, so the others do without. Returns the test image's path
/// ([`device_image`] gives the other).
pub fn build(combination: &Combination) -> Result<PathBuf, String> {
    let features = combination.features();
    let mut args = vec!["--features", features.as_str()];
    if !combination.is_classic() {
        for bin in ["os-image", "device-image", TEST_PROGRAMS, DEVICE_PROGRAMS] {
            args.extend(["--bin", bin]);
        }
    }
    let built = build_packages_with(&["os-image", "device-image", USER_PROGRAMS], &args)?;
    let image = copy(combination, &built[0], "os-image.elf")?;
    copy(combination, &built[1], "device-image.elf")?;
    copy_programs(combination)?;
    Ok(image)
}

/// The package of the user programs, and its two binaries.
const USER_PROGRAMS: &str = "user-programs";
const TEST_PROGRAMS: &str = "test-programs";
const DEVICE_PROGRAMS: &str = "device-programs";
/// The production services with fault injection: for the device fault scenario alone.
const DEVICE_FAULTS: &str = "device-faults";

fn copy_programs(combination: &Combination) -> Result<(), String> {
    let release = target_dir().join(RISCV_TARGET).join("release");
    let faults = combination.is_classic().then_some(DEVICE_FAULTS);
    for program in [TEST_PROGRAMS, DEVICE_PROGRAMS].into_iter().chain(faults) {
        copy(
            combination,
            &release.join(program),
            &format!("{program}.elf"),
        )?;
    }
    Ok(())
}

/// The user program a test image at `image` boots with (QEMU's `-initrd`): the file
/// [`build`] put beside it.
pub fn programs_for(image: &Path) -> PathBuf {
    image.with_file_name(format!("{TEST_PROGRAMS}.elf"))
}

/// The user program a production image at `image` boots with.
pub fn device_programs_for(image: &Path) -> PathBuf {
    image.with_file_name(format!("{DEVICE_PROGRAMS}.elf"))
}

/// The production services with fault injection, for a production image at `image`
/// (the device fault scenario boots the production kernel with it).
pub fn device_faults_for(image: &Path) -> PathBuf {
    image.with_file_name(format!("{DEVICE_FAULTS}.elf"))
}

/// Where [`build`] put `combination`'s production image.
pub fn device_image(combination: &Combination) -> PathBuf {
    run_dir(combination).join("device-image.elf")
}

/// Builds `combination`'s test and production images with `args` (its features and a
/// knob's, or `--config` values), as `os-image-<label>.elf` and
/// `device-image-<label>.elf`.
pub fn build_variant(
    combination: &Combination,
    args: &[String],
    label: &str,
) -> Result<(PathBuf, PathBuf), String> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let built = build_packages_with(&["os-image", "device-image", USER_PROGRAMS], &args)?;
    copy_programs(combination)?;
    Ok((
        copy(combination, &built[0], &format!("os-image-{label}.elf"))?,
        copy(combination, &built[1], &format!("device-image-{label}.elf"))?,
    ))
}

/// Builds `packages` with `--no-default-features` and `more` arguments (features,
/// `--config` values); returns each binary's path.
fn build_packages_with(packages: &[&str], more: &[&str]) -> Result<Vec<PathBuf>, String> {
    let mut args = vec!["build", "--release", "--target", RISCV_TARGET];
    for package in packages {
        args.extend(["--package", package]);
    }
    args.push("--no-default-features");
    args.extend(more);
    cargo(&args)?;
    let release = target_dir().join(RISCV_TARGET).join("release");
    Ok(packages.iter().map(|p| release.join(p)).collect())
}

fn copy(combination: &Combination, built: &Path, name: &str) -> Result<PathBuf, String> {
    let dir = run_dir(combination);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let image = dir.join(name);
    std::fs::copy(built, &image).map_err(|e| {
        format!(
            "cannot copy {} to {}: {e}",
            built.display(),
            image.display()
        )
    })?;
    Ok(image)
}

/// The sizes of what QEMU loads: a kernel image and its user program, added.
pub fn loaded_sizes(image: &Path, program: &Path) -> Result<Sizes, String> {
    let (kernel, user) = (sizes(image)?, sizes(program)?);
    Ok(Sizes {
        text: kernel.text + user.text,
        rodata: kernel.rodata + user.rodata,
    })
}

/// Section sizes of an image, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sizes {
    pub text: u64,
    pub rodata: u64,
}

/// Reads the section sizes of the ELF at `path`.
pub fn sizes(path: &Path) -> Result<Sizes, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file = object::File::parse(&*bytes)
        .map_err(|e| format!("{} is not an ELF file: {e}", path.display()))?;
    let size = |name: &str| file.section_by_name(name).map_or(0, |s| s.size());
    Ok(Sizes {
        text: size(".text"),
        rodata: size(".rodata"),
    })
}
