//! Building the OS image of a provider combination, and measuring it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// How a combination's user programs are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// As a device ships them: cargo's `release` profile (opt-level "s", fat LTO, one
    /// codegen unit; the backend crates at opt-level 3). Measured images, the
    /// classic combinations' scenarios, `test-os` by hand.
    Release,
    /// The matrix's quick build, `[profile.matrix]` in the root `Cargo.toml`: the
    /// same backend crates as `Release`, compiled once and shared by every
    /// combination, no LTO, and the user-program crate (where the services' generic
    /// code meets the combination's backends) at opt-level 0. A combination's
    /// programs build in about 2 s instead of 11 (docs/decisions/0014-matrix.md).
    Matrix,
}

impl Profile {
    /// cargo's name of the profile.
    pub fn cargo_name(self) -> &'static str {
        match self {
            Self::Release => "release",
            Self::Matrix => "matrix",
        }
    }

    /// Where cargo puts what it builds with this profile.
    fn out_dir(self) -> PathBuf {
        target_dir().join(RISCV_TARGET).join(self.cargo_name())
    }
}

/// Builds `combination`'s test and production user programs with `profile` and
/// copies them, with the two kernels (built once per run: they have no crypto and are
/// the same for every combination), to `target/qemu/<provider>/`: `os-image.elf` and
/// `device-image.elf`, `test-programs.elf` and `device-programs.elf`, so that runs of
/// different combinations can go side by side. For the classic combinations (the
/// device fault scenarios run on them) also `device-faults.elf`: linking it costs
/// seconds per combination, so the others do without. Returns the test image's path
/// ([`device_image`] gives the other).
pub fn build_with(combination: &Combination, profile: Profile) -> Result<PathBuf, String> {
    let features = combination.features();
    let mut args = vec!["--features", features.as_str()];
    // The matrix's quick builds make the production program only for the covering
    // set (Combination::covering) that `cargo xtask test` boots it on.
    let production = profile == Profile::Release || Combination::covering().contains(combination);
    if !combination.is_classic() {
        args.extend(["--bin", TEST_PROGRAMS]);
        if production {
            args.extend(["--bin", DEVICE_PROGRAMS]);
        }
    }
    // The first release build of a run builds the kernels in the same cargo run, so
    // that they compile beside the programs' crates instead of after them.
    let with_kernels = profile == Profile::Release && !kernels_built()?;
    if with_kernels {
        args.extend(["--features", KERNEL_FEATURES]);
        for package in KERNELS {
            args.extend(["--package", package]);
            if !combination.is_classic() {
                args.extend(["--bin", package]);
            }
        }
    }
    build_programs(profile, &args)?;
    if with_kernels {
        *KERNELS_BUILT
            .lock()
            .map_err(|_| "a kernel build panicked")? = true;
    }
    let image = copy_kernels(combination, "")?.0;
    copy_programs(combination, profile, production)?;
    Ok(image)
}

/// [`build_with`] as a device ships it ([`Profile::Release`]).
pub fn build(combination: &Combination) -> Result<PathBuf, String> {
    build_with(combination, Profile::Release)
}

/// The package of the user programs, and its two binaries.
const USER_PROGRAMS: &str = "user-programs";
const TEST_PROGRAMS: &str = "test-programs";
const DEVICE_PROGRAMS: &str = "device-programs";
/// The production services with fault injection: for the device fault scenario alone.
const DEVICE_FAULTS: &str = "device-faults";
/// The two kernels: the test image's and the production image's.
const KERNELS: [&str; 2] = ["os-image", "device-image"];

/// The kernels' features: the network stack's process, no backend.
const KERNEL_FEATURES: &str = "os-image/net,device-image/net";
/// Whether this run has built the kernels.
static KERNELS_BUILT: Mutex<bool> = Mutex::new(false);

/// Whether this run has built the kernels yet.
fn kernels_built() -> Result<bool, String> {
    Ok(*KERNELS_BUILT
        .lock()
        .map_err(|_| "a kernel build panicked")?)
}

/// Builds the two kernels (release, `net`, no backend: the kernel's graph holds no
/// crypto) once per run, unless a release build of programs did; returns their paths.
fn kernels() -> Result<[PathBuf; 2], String> {
    let mut built = KERNELS_BUILT
        .lock()
        .map_err(|_| "a kernel build panicked")?;
    if !*built {
        let mut args = vec!["build", "--release", "--target", RISCV_TARGET];
        for package in KERNELS {
            args.extend(["--package", package]);
        }
        args.extend(["--no-default-features", "--features", KERNEL_FEATURES]);
        cargo(&args)?;
        *built = true;
    }
    Ok(KERNELS.map(|k| Profile::Release.out_dir().join(k)))
}

/// Copies the kernels into `combination`'s directory as `os-image<suffix>.elf` and
/// `device-image<suffix>.elf`.
fn copy_kernels(combination: &Combination, suffix: &str) -> Result<(PathBuf, PathBuf), String> {
    let [test, device] = kernels()?;
    Ok((
        copy(combination, &test, &format!("os-image{suffix}.elf"))?,
        copy(combination, &device, &format!("device-image{suffix}.elf"))?,
    ))
}

/// Copies the programs just built; without `production`, removes an older
/// production program of the combination instead, so that none built from other
/// sources is ever booted as its.
fn copy_programs(
    combination: &Combination,
    profile: Profile,
    production: bool,
) -> Result<(), String> {
    let faults = combination.is_classic().then_some(DEVICE_FAULTS);
    if !production {
        let stale = run_dir(combination).join(format!("{DEVICE_PROGRAMS}.elf"));
        if stale.exists() {
            std::fs::remove_file(&stale)
                .map_err(|e| format!("cannot remove {}: {e}", stale.display()))?;
        }
    }
    let production = production.then_some(DEVICE_PROGRAMS);
    for program in [TEST_PROGRAMS].into_iter().chain(production).chain(faults) {
        copy(
            combination,
            &profile.out_dir().join(program),
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

/// Builds `combination`'s user programs with `args` (its features and a knob's, or
/// `--config` values) in the release profile, beside the kernels as
/// `os-image-<label>.elf` and `device-image-<label>.elf` (the kernels are the same;
/// the programs beside them are the variant's).
pub fn build_variant(
    combination: &Combination,
    args: &[String],
    label: &str,
) -> Result<(PathBuf, PathBuf), String> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    build_programs(Profile::Release, &args)?;
    copy_programs(combination, Profile::Release, true)?;
    copy_kernels(combination, &format!("-{label}"))
}

/// Builds the user programs with `profile`, `--no-default-features` and `more`
/// arguments (features, `--bin`s, `--config` values).
fn build_programs(profile: Profile, more: &[&str]) -> Result<(), String> {
    let mut args = vec![
        "build",
        "--profile",
        profile.cargo_name(),
        "--target",
        RISCV_TARGET,
        "--package",
        USER_PROGRAMS,
        "--no-default-features",
    ];
    args.extend(more);
    cargo(&args)
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
