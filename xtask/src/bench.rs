//! `cargo xtask bench`: criterion on the host, instruction counts in QEMU, and the
//! report in `target/bench-report/`.
//!
//! Host figures come from criterion's `bencher` output (nanoseconds per iteration);
//! guest figures from the image's bench mode (`-icount shift=0 -append bench`), one
//! `bench <operation> <instructions>` line per operation. Every ratio in the report
//! compares figures of the same run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::combination::Combination;
use crate::image::{self, Sizes};
use crate::steps::{StatusOk, command, target_dir, workspace_root};
use crate::test_os::{self, TestOsOptions};

/// Guest rows whose count includes waiting for QEMU's devices (virtio-rng, virtio-blk):
/// QEMU completes requests on host time, so the count varies between runs.
pub const DEVICE_BOUND: &[&str] = &[
    "service/first-boot",
    "service/restore",
    "service/handshake-ipc",
    "service/handshake-tcp",
];

/// Guest rows that wait for no device but allocate after the ladder: the heap is a
/// first-fit free list whose shape then depends on when the network's packets came,
/// so a search can take a few instructions more or less (measured: 29 in 939,698).
/// Two runs must agree within the row's tolerance, in parts per million: 1,000 for
/// most; 5,000 for the IPC round trip, whose count (about 60,000) also holds the
/// kernel's executor between the two tasks' polls, whose path depends on the other
/// tasks' state (their polls are taken out; measured: 62 apart).
pub const HEAP_BOUND: &[(&str, u64)] = &[
    ("service/get-entropy", 1_000),
    ("service/keygen", 1_000),
    ("service/ipc-round-trip", 5_000),
];

/// The tolerance of a [`HEAP_BOUND`] row, if `name` is one.
fn heap_bound(name: &str) -> Option<u64> {
    HEAP_BOUND
        .iter()
        .find(|(row, _)| *row == name)
        .map(|(_, ppm)| *ppm)
}

/// The identity rows, per combination.
const IDENTITY_OPS: [&str; 4] = [
    "identity/first-boot",
    "identity/restore",
    "service/first-boot",
    "service/restore",
];

/// Host results: benchmark id (`<operation>/<implementation>`) to nanoseconds.
pub type Host = BTreeMap<String, f64>;
/// Guest results: (operation, retired instructions), in the order the image ran them.
pub type Guest = Vec<(String, u64)>;

/// The count of `operation` in `guest`.
fn lookup(guest: &Guest, operation: &str) -> Option<u64> {
    guest
        .iter()
        .find(|(name, _)| name == operation)
        .map(|(_, n)| *n)
}

/// Runs the criterion benchmarks, quick or full, and returns the figures.
pub fn host(quick: bool) -> Result<Host, String> {
    host_with(quick, &[], None)
}

/// Runs the criterion benchmarks with more cargo arguments (`--features ...`) and,
/// when given, only the benchmarks whose id matches `filter` (a regex).
fn host_with(quick: bool, cargo_args: &[&str], filter: Option<&str>) -> Result<Host, String> {
    let mut args = vec![
        "bench",
        "--package",
        "provider-bench",
        "--bench",
        "providers",
    ];
    args.extend(cargo_args);
    args.extend(["--", "--output-format", "bencher"]);
    if quick {
        args.extend([
            "--warm-up-time",
            "0.2",
            "--measurement-time",
            "0.6",
            "--sample-size",
            "10",
        ]);
    }
    args.extend(filter);
    let output = command("cargo", &args).output_ok()?;
    let host = parse_bencher(&output);
    if host.is_empty() {
        return Err("criterion reported no benchmark".into());
    }
    Ok(host)
}

/// Reads criterion's `bencher` lines: `test <id> ... bench: <n> ns/iter (+/- <m>)`.
pub fn parse_bencher(output: &str) -> Host {
    output
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("test ")?;
            let (id, rest) = rest.split_once(" ... bench:")?;
            let number = rest.split_whitespace().next()?.replace(',', "");
            Some((id.to_owned(), number.parse().ok()?))
        })
        .collect()
}

/// Reads the image's `bench <operation> <instructions>` lines from a console log, in
/// order.
pub fn parse_guest(log: &str) -> Guest {
    log.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("SELFTEST: bench ")?;
            let (name, count) = rest.rsplit_once(' ')?;
            Some((name.to_owned(), count.parse().ok()?))
        })
        .collect()
}

/// Boots each image in bench mode and returns its counts.
pub fn guest(images: &[(Combination, PathBuf)]) -> Result<BTreeMap<Combination, Guest>, String> {
    let options = TestOsOptions {
        phase: "full".into(),
        timeout: Duration::from_secs(300),
        until_marker: false,
        provider: "all".into(),
        rng_file: None,
        no_rng: false,
        scenario: Some("bench".into()),
        state_dir: None,
        no_otp: false,
        matrix_profile: false,
        net: Default::default(),
    };
    let rows = test_os::boot_all(images, &options, false)?;
    if !test_os::report(&rows, &options) {
        return Err("the bench scenario failed; see above".into());
    }
    let mut out = BTreeMap::new();
    for (combination, _) in images {
        let log = image::run_dir(combination).join("uart-bench.log");
        let text = std::fs::read_to_string(&log)
            .map_err(|e| format!("cannot read {}: {e}", log.display()))?;
        let counts = parse_guest(&text);
        if counts.len() < 16 {
            return Err(format!(
                "{combination}: only {} bench lines in {}",
                counts.len(),
                log.display()
            ));
        }
        out.insert(*combination, counts);
    }
    Ok(out)
}

/// Boots `combination`'s image twice in bench mode and checks the instruction counts
/// are identical (all but the device-bound rows, which are reported).
pub fn check_determinism(images: &[(Combination, PathBuf)]) -> Result<(), String> {
    let first = guest(images)?;
    let second = guest(images)?;
    for (combination, counts) in &first {
        let again = &second[combination];
        for (name, count) in counts {
            let other = lookup(again, name).unwrap_or_default();
            if DEVICE_BOUND.contains(&name.as_str()) {
                eprintln!(
                    "    {combination} {name}: {count} and {other} (waits for QEMU's devices: not exact)"
                );
            } else if let Some(tolerance) = heap_bound(name) {
                let apart = count.abs_diff(other);
                if apart.saturating_mul(1_000_000) > (*count).max(other) * tolerance {
                    return Err(format!(
                        "{combination} {name}: {count} instructions, then {other}: more than {tolerance} ppm apart"
                    ));
                }
                eprintln!(
                    "    {combination} {name}: {count} and {other} ({apart} apart: heap shape, within {tolerance} ppm)"
                );
            } else if *count != other {
                return Err(format!(
                    "{combination} {name}: {count} instructions, then {other}"
                ));
            }
        }
        eprintln!(
            "    {combination}: {} operations counted twice, identical",
            counts.len() - DEVICE_BOUND.len() - HEAP_BOUND.len()
        );
    }
    Ok(())
}

fn time(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else if ns >= 1_000.0 {
        format!("{:.1} µs", ns / 1_000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> String {
    match (numerator, denominator) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:+.1} %", (a / b - 1.0) * 100.0),
        _ => "-".into(),
    }
}

fn cell(host: &Host, id: &str) -> String {
    host.get(id).map_or("-".into(), |ns| time(*ns))
}

const CURVE_OPS: [&str; 6] = [
    "ed25519/key-from-seed",
    "ed25519/sign-64",
    "ed25519/verify-64",
    "ed25519/decode-key",
    "x25519/key-pair",
    "x25519/dh",
];
const SESSION_OPS: [&str; 5] = [
    "noise/handshake",
    "noise/handshake+binding",
    "noise/handshake+binding-repeat",
    "noise/transport-round-trip",
    "noise/primitive-floor",
];

/// How the report's figures were made: `quick` or `full`, the date, the time it took.
pub struct RunInfo<'a> {
    pub mode: &'a str,
    pub date: &'a str,
    pub took: Duration,
}

/// The markdown report.
/// The network figures: the host peer's handshake wall time per combination, and the
/// `.text` the network stack adds (measured on one combination).
#[derive(Default)]
pub struct NetFigures {
    /// Median handshake wall time, host peer to guest, in milliseconds.
    pub peer_ms: BTreeMap<Combination, f64>,
    /// (combination measured, .text with netstackd, .text without).
    pub netstackd_text: Option<(Combination, u64, u64)>,
}

pub fn markdown(
    host: &Host,
    guest: &BTreeMap<Combination, Guest>,
    sizes: &BTreeMap<Combination, Sizes>,
    production: &BTreeMap<Combination, Sizes>,
    net: &NetFigures,
    run: &RunInfo<'_>,
) -> String {
    let RunInfo { mode, date, took } = run;
    // One column per combination of a covering set: the classic four, and one more
    // for each backend they do not have (Combination::covering).
    let combos: Vec<Combination> = Combination::covering();
    let separator = format!("\n|---|{}", "---|".repeat(combos.len()));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Generated by `cargo xtask bench` ({mode} mode) on {date}, in {} minutes on a 2-core machine, image builds included. `--quick` shortens criterion's measurements and writes `target/bench-report/` only.\n",
        took.as_secs().div_ceil(60)
    );
    let _ = writeln!(
        out,
        "**Host** (x86-64, criterion): time per operation, lower is better. \"vs direct\" compares the call through `provider-api` with the same call on the backend crate, in the same run. For `verify-64` and `decode-key` the direct call is the crate's default, so \"vs direct\" is the cost of provider-api's verification rule: dalek verifies with `verify_strict` instead of `verify`, and decoding adds the canonical-encoding and prime-order checks (once per key, when it joins an allowlist).\n"
    );
    // The columns are the backends the host run measured (labels without `-direct`),
    // so a new backend needs no line here.
    let backends_of = |op: &str| -> Vec<String> {
        let prefix = format!("{op}/");
        host.keys()
            .filter_map(|id| id.strip_prefix(&prefix))
            .filter(|label| !label.ends_with("-direct"))
            .map(str::to_owned)
            .collect()
    };
    let table = |out: &mut String, ops: &[&str], size_of: &dyn Fn(&str) -> Option<usize>| {
        // Every backend any row measured (an X25519-only backend has no Ed25519 row).
        let mut labels: Vec<String> = Vec::new();
        for op in ops {
            for label in backends_of(op) {
                if !labels.contains(&label) {
                    labels.push(label);
                }
            }
        }
        let _ = write!(out, "| operation |");
        for label in &labels {
            let _ = write!(out, " {label} | vs direct |");
        }
        let _ = writeln!(out, "\n|---|{}", "---|---|".repeat(labels.len()));
        for op in ops {
            let _ = write!(out, "| {op} |");
            for label in &labels {
                let get = |l: &str| host.get(&format!("{op}/{l}")).copied();
                let value = get(label).map_or("-".into(), |ns| match size_of(op) {
                    Some(size) => {
                        format!("{} ({:.0} MB/s)", time(ns), size as f64 / ns * 1000.0)
                    }
                    None => time(ns),
                });
                let _ = write!(
                    out,
                    " {value} | {} |",
                    ratio(get(label), get(&format!("{label}-direct")))
                );
            }
            let _ = writeln!(out);
        }
    };
    table(&mut out, &CURVE_OPS, &|_| None);
    let _ = writeln!(out);
    let aead_sizes = [
        ("aead/seal-64", 64),
        ("aead/open-64", 64),
        ("aead/seal-1k", 1024),
        ("aead/open-1k", 1024),
        ("aead/seal-16k", 16384),
        ("aead/open-16k", 16384),
    ];
    let aead_ops = aead_sizes.map(|(op, _)| op);
    table(&mut out, &aead_ops, &|op| {
        aead_sizes.iter().find(|(o, _)| *o == op).map(|(_, n)| *n)
    });
    let _ = write!(out, "\n| per combination (host) |");
    for c in &combos {
        let _ = write!(out, " {c} |");
    }
    let _ = writeln!(out, "{separator}");
    let row = |out: &mut String, label: &str, value: &dyn Fn(&Combination) -> String| {
        let _ = write!(out, "| {label} |");
        for c in &combos {
            let _ = write!(out, " {} |", value(c));
        }
        let _ = writeln!(out);
    };
    for op in SESSION_OPS.iter().chain(IDENTITY_OPS.iter()) {
        row(&mut out, op, &|c| cell(host, &format!("{op}/{c}")));
    }
    let snow = |c: &Combination| host.get(&snow_id(c)).copied();
    row(&mut out, "snow handshake, same suite", &|c| {
        snow(c).map_or("-".into(), time)
    });
    row(&mut out, "handshake vs snow", &|c| {
        ratio(host.get(&format!("noise/handshake/{c}")).copied(), snow(c))
    });
    row(&mut out, "handshake vs primitive floor", &|c| {
        ratio(
            host.get(&format!("noise/handshake/{c}")).copied(),
            host.get(&format!("noise/primitive-floor/{c}")).copied(),
        )
    });
    let _ = writeln!(
        out,
        "\n**Guest** (riscv64imac in QEMU 7.2 `virt`, `-icount shift=0`): retired instructions per operation, exact and repeatable; images at opt-level \"s\" with LTO, dalek without precomputed tables, ed25519-compact without `opt_size`.\n"
    );
    let _ = write!(out, "| operation (guest) |");
    for c in &combos {
        let _ = write!(out, " {c} |");
    }
    let _ = writeln!(out, "{separator}");
    let names: Vec<String> = guest
        .values()
        .next()
        .map(|g| g.iter().map(|(name, _)| name.clone()).collect())
        .unwrap_or_default();
    for name in &names {
        let label = if DEVICE_BOUND.contains(&name.as_str()) {
            format!("{name} ¹")
        } else if heap_bound(name).is_some() {
            format!("{name} ²")
        } else {
            name.clone()
        };
        row(&mut out, &label, &|c| {
            guest
                .get(c)
                .and_then(|g| lookup(g, name))
                .map_or("-".into(), thousands)
        });
    }
    let exact =
        |c: &Combination, op: &str| guest.get(c).and_then(|g| lookup(g, op)).map(|n| n as f64);
    row(&mut out, "handshake vs primitive floor", &|c| {
        ratio(
            exact(c, "noise/handshake"),
            exact(c, "noise/primitive-floor"),
        )
    });
    row(&mut out, "identity binding, per handshake", &|c| {
        ratio(
            exact(c, "noise/handshake+binding"),
            exact(c, "noise/handshake"),
        )
    });
    let times = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.3}x", a / b),
        _ => "-".into(),
    };
    row(
        &mut out,
        "restore / key-from-seed (goal: at most 1.10x)",
        &|c| {
            times(
                exact(c, "identity/restore"),
                exact(c, "ed25519/key-from-seed"),
            )
        },
    );
    row(
        &mut out,
        "restore through the services / key-from-seed ¹",
        &|c| {
            times(
                exact(c, "service/restore"),
                exact(c, "ed25519/key-from-seed"),
            )
        },
    );
    row(
        &mut out,
        "handshake over TCP loopback / over IPC ¹ (goal: at most 1.10x)",
        &|c| {
            times(
                exact(c, "service/handshake-tcp"),
                exact(c, "service/handshake-ipc"),
            )
        },
    );
    row(
        &mut out,
        "host peer (snow) to guest handshake, wall, median of 10",
        &|c| {
            net.peer_ms
                .get(c)
                .map_or("-".into(), |ms| format!("{ms:.1} ms"))
        },
    );
    row(&mut out, "test image .text (bytes)", &|c| {
        sizes.get(c).map_or("-".into(), |s| thousands(s.text))
    });
    row(&mut out, "test image .rodata (bytes)", &|c| {
        sizes.get(c).map_or("-".into(), |s| thousands(s.rodata))
    });
    row(&mut out, "production image .text + .rodata (bytes)", &|c| {
        production
            .get(c)
            .map_or("-".into(), |s| thousands(s.text + s.rodata))
    });
    let _ = writeln!(
        out,
        "\n¹ Includes waiting for QEMU's virtio-rng and virtio-blk, which QEMU completes on host time, so these counts vary between runs. `identity/first-boot` and `identity/restore` are the same paths with keystored's own functions on a record store in memory: exact. ² Waits for no device but allocates after the network has run, from a first-fit heap whose shape then varies: two runs agree within 0.1% (`cargo xtask test` checks; measured 29 instructions apart in 939,698), the IPC round trip within 0.5% (it also holds the kernel's executor between the two tasks' polls; measured 62 apart in 59,446). Every other guest count is identical run to run (`cargo xtask test` checks). `service/handshake-ipc` and `-tcp` are one session with the binding, both sides and every task that works for it (IPC, rngd, netstackd), from the first message to the initiator knowing it is accepted: the median of five.\n"
    );
    if let Some((c, netstackd, all)) = net.netstackd_text {
        let _ = writeln!(
            out,
            "netstackd (smoltcp, the socket service) is {} bytes of the `.text` of the {c} production image's user program ({} in all; the virtio-net driver is the user runtime's and drivers' row of `cargo xtask size`). The host peer's wall time runs through QEMU's user networking on the host (TCG, no `-icount`).\n",
            thousands(netstackd),
            thousands(all)
        );
    }
    every_combination(&mut out, host, guest, sizes, production);
    let _ = writeln!(out, "**Fastest and smallest** (over every combination)\n");
    let best = |values: Vec<(Combination, f64)>| {
        values
            .into_iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map_or("-".into(), |(c, _)| c.to_string())
    };
    let all = Combination::all();
    let host_best = |op: &str| {
        best(
            all.iter()
                .filter_map(|c| host.get(&format!("{op}/{c}")).map(|v| (*c, *v)))
                .collect(),
        )
    };
    let guest_best = |op: &str| {
        best(
            all.iter()
                .filter_map(|c| lookup(guest.get(c)?, op).map(|v| (*c, v as f64)))
                .collect(),
        )
    };
    // Keygen depends on the Ed25519 backend alone: the host measures it per backend.
    let host_keygen = host
        .iter()
        .filter_map(|(id, ns)| Some((id.strip_prefix("ed25519/key-from-seed/")?, *ns)))
        .filter(|(label, _)| !label.ends_with("-direct"))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or("-", |(label, _)| label);
    let _ = writeln!(
        out,
        "- keygen (device key from a seed): host {host_keygen} (the Ed25519 backend), guest {}",
        guest_best("ed25519/key-from-seed")
    );
    for (path, op) in [
        ("first boot (key, seal, store)", "identity/first-boot"),
        ("restore (read, unseal, key)", "identity/restore"),
        ("handshake with binding", "noise/handshake+binding"),
        (
            "repeat peer's handshake with binding",
            "noise/handshake+binding-repeat",
        ),
        ("transport round trip", "noise/transport-round-trip"),
    ] {
        let _ = writeln!(
            out,
            "- {path}: host {}, guest {}",
            host_best(op),
            guest_best(op)
        );
    }
    let smallest = best(
        all.iter()
            .filter_map(|c| production.get(c).map(|s| (*c, (s.text + s.rodata) as f64)))
            .collect(),
    );
    let _ = writeln!(
        out,
        "- size: smallest production image (.text + .rodata, without knobs): {smallest}"
    );
    out
}

/// criterion's id of snow's handshake on `c`'s suite (`noise/snow-handshake/<aead>`,
/// `+<hash>` when not BLAKE2s, as the bench labels it).
fn snow_id(c: &Combination) -> String {
    if c.hash == "blake2s" {
        format!("noise/snow-handshake/{}", c.aead)
    } else {
        format!("noise/snow-handshake/{}+{}", c.aead, c.hash)
    }
}

/// One row per combination (every backend of every axis): the session paths on the
/// host and in the guest, and the image size; then the goals' figures.
fn every_combination(
    out: &mut String,
    host: &Host,
    guest: &BTreeMap<Combination, Guest>,
    sizes: &BTreeMap<Combination, Sizes>,
    production: &BTreeMap<Combination, Sizes>,
) {
    let _ = writeln!(
        out,
        "\n**Every combination** (`<sig>[/<kx>]+<aead>[+<hash>]`: Ed25519 backend, X25519 backend when it differs, AEAD, hash when not BLAKE2s). Host times; guest instructions; `.text + .rodata` of the test image and of the production image, each with its user program.\n"
    );
    let _ = writeln!(
        out,
        "| combination | formally verified | handshake | handshake+binding | repeat peer (cached binding) | repeat vs plain | transport round trip | handshake vs snow (same suite) | guest handshake+binding | guest repeat peer | guest repeat vs plain | guest transport round trip | test image (bytes) | production image (bytes) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let g = |c: &Combination, op: &str| {
        guest
            .get(c)
            .and_then(|g| lookup(g, op))
            .map_or("-".into(), thousands)
    };
    for c in Combination::all() {
        let _ = writeln!(
            out,
            "| {c} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.verified(),
            cell(host, &format!("noise/handshake/{c}")),
            cell(host, &format!("noise/handshake+binding/{c}")),
            cell(host, &format!("noise/handshake+binding-repeat/{c}")),
            ratio(
                host.get(&format!("noise/handshake+binding-repeat/{c}"))
                    .copied(),
                host.get(&format!("noise/handshake/{c}")).copied()
            ),
            cell(host, &format!("noise/transport-round-trip/{c}")),
            ratio(
                host.get(&format!("noise/handshake/{c}")).copied(),
                host.get(&snow_id(c)).copied()
            ),
            g(c, "noise/handshake+binding"),
            g(c, "noise/handshake+binding-repeat"),
            ratio(
                guest
                    .get(c)
                    .and_then(|g| lookup(g, "noise/handshake+binding-repeat"))
                    .map(|n| n as f64),
                guest
                    .get(c)
                    .and_then(|g| lookup(g, "noise/handshake"))
                    .map(|n| n as f64)
            ),
            g(c, "noise/transport-round-trip"),
            sizes
                .get(c)
                .map_or("-".into(), |s| thousands(s.text + s.rodata)),
            production
                .get(c)
                .map_or("-".into(), |s| thousands(s.text + s.rodata)),
        );
    }
    let fastest = Combination::all()
        .iter()
        .filter_map(|c| Some((*c, *host.get(&format!("noise/handshake/{c}"))?)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((c, ns)) = fastest {
        let _ = writeln!(
            out,
            "\nFastest host handshake: {c}, {} against snow's {} on the same suite ({}).",
            time(ns),
            host.get(&snow_id(&c)).map_or("-".into(), |v| time(*v)),
            ratio(Some(ns), host.get(&snow_id(&c)).copied()),
        );
    }
    let best_guest_binding = Combination::all()
        .iter()
        .filter_map(|c| Some((*c, lookup(guest.get(c)?, "noise/handshake+binding-repeat")?)))
        .min_by_key(|(_, n)| *n);
    if let Some((c, n)) = best_guest_binding {
        let _ = writeln!(
            out,
            "Fewest guest instructions for a repeat peer's handshake with binding: {c}, {} ({} without the binding).\n",
            thousands(n),
            guest
                .get(&c)
                .and_then(|g| lookup(g, "noise/handshake"))
                .map_or("-".into(), thousands),
        );
    }
}

/// A size or speed switch of a backend crate, measured as a variant of one
/// combination: the same images and benchmarks with the switch on.
pub struct Knob {
    /// Its name (in the report, and for `cargo xtask size --knob`).
    pub name: &'static str,
    /// How it is turned on.
    pub switch: Switch,
    /// What the switch changes.
    pub what: &'static str,
    /// The combination it is measured on.
    pub combination: &'static str,
    /// The backend's label in host benchmark ids.
    pub backend: &'static str,
}

/// How a knob is turned on.
pub enum Switch {
    /// A cargo feature: provider-select's for the images, the provider crate's for
    /// the host benchmarks (which link every provider directly).
    Feature {
        select: &'static str,
        provider: &'static str,
    },
    /// Cargo configuration values (`--config`), the same for images and host.
    Config(&'static [&'static str]),
}

impl Knob {
    /// The cargo arguments that turn it on for the images (on top of the
    /// combination's features) and for the host benchmarks.
    pub fn image_args(&self, combination: &Combination) -> Vec<String> {
        match self.switch {
            Switch::Feature { select, .. } => vec![
                "--features".into(),
                format!("{},provider-select/{select}", combination.features()),
            ],
            Switch::Config(values) => {
                let mut args = vec!["--features".into(), combination.features()];
                for value in values {
                    args.extend(["--config".into(), (*value).to_owned()]);
                }
                args
            }
        }
    }

    fn host_args(&self) -> Vec<&'static str> {
        match self.switch {
            Switch::Feature { provider, .. } => vec!["--features", provider],
            Switch::Config(values) => values.iter().flat_map(|v| ["--config", v]).collect(),
        }
    }

    /// The knob named `name`.
    pub fn named(name: &str) -> Option<&'static Knob> {
        KNOBS.iter().find(|k| k.name == name)
    }
}

/// Every knob the report measures.
pub const KNOBS: &[Knob] = &[
    Knob {
        name: "dalek-precomputed-tables",
        switch: Switch::Feature {
            select: "dalek-precomputed-tables",
            provider: "provider-dalek/precomputed-tables",
        },
        what: "curve25519-dalek's precomputed basepoint tables (ed25519-dalek `fast`, x25519-dalek `precomputed-tables`), provider-select's feature",
        combination: "dalek+chacha",
        backend: "dalek",
    },
    Knob {
        name: "compact-opt-size",
        switch: Switch::Feature {
            select: "compact-opt-size",
            provider: "provider-compact/opt-size",
        },
        what: "ed25519-compact's `opt_size` (smaller code and tables for its curve arithmetic), provider-select's feature",
        combination: "compact+chacha",
        backend: "compact",
    },
    Knob {
        name: "compact-opt-level-3",
        switch: Switch::Config(&["profile.release.package.ed25519-compact.opt-level=3"]),
        what: "ed25519-compact compiled at opt-level 3 while the rest of the image stays at \"s\" (a cargo profile override: `[profile.release.package.ed25519-compact] opt-level = 3`)",
        combination: "compact+chacha",
        backend: "compact",
    },
];

/// The operations a knob can change, host and guest.
const KNOB_OPS: [&str; 5] = [
    "ed25519/key-from-seed",
    "ed25519/sign-64",
    "ed25519/verify-64",
    "x25519/key-pair",
    "x25519/dh",
];

/// One knob's figures with the switch on.
pub struct Variant {
    pub knob: &'static Knob,
    pub combination: Combination,
    pub host: Host,
    pub guest: Guest,
    pub test_image: Sizes,
    pub production_image: Sizes,
    pub production_path: PathBuf,
}

/// Builds, boots (bench mode) and benchmarks (host, the knob's backend only) every
/// knob's variant.
fn variants(quick: bool) -> Result<Vec<Variant>, String> {
    let mut out = Vec::new();
    for knob in KNOBS {
        let combination = Combination::parse(knob.combination)
            .ok_or_else(|| format!("knob {}: no combination {}", knob.name, knob.combination))?;
        eprintln!("    knob {}: {combination} with it", knob.name);
        let (test_path, production_path) =
            image::build_variant(&combination, &knob.image_args(&combination), knob.name)?;
        let guest = guest(&[(combination, test_path.clone())])?
            .remove(&combination)
            .ok_or("the variant's bench boot printed nothing")?;
        let filter = format!(
            "^(ed25519|x25519)/[a-z0-9-]+/{}$|^noise/handshake(\\+binding)?/{}$|^{}$",
            knob.backend,
            regex_escape(&combination.to_string()),
            regex_escape(&snow_id(&combination)),
        );
        let host = host_with(quick, &knob.host_args(), Some(&filter))?;
        out.push(Variant {
            knob,
            combination,
            host,
            guest,
            test_image: image::loaded_sizes(&test_path, &image::programs_for(&test_path))?,
            production_image: image::loaded_sizes(
                &production_path,
                &image::device_programs_for(&production_path),
            )?,
            production_path,
        });
    }
    Ok(out)
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// The knobs' section: each switch's cost and gain against the same combination
/// without it.
fn knobs_markdown(
    out: &mut String,
    host: &Host,
    guest: &BTreeMap<Combination, Guest>,
    sizes: &BTreeMap<Combination, Sizes>,
    production: &BTreeMap<Combination, Sizes>,
    variants: &[Variant],
) {
    let _ = writeln!(
        out,
        "\n**Knobs**: a backend crate's size or speed switch, measured as a variant of one combination (the image's name does not change). Host \"without\" comes from the main run and \"with\" from a run of the same benchmarks built with the switch, right after: two runs, so host changes under about 3 % are noise.\n"
    );
    for v in variants {
        let c = &v.combination;
        let _ = writeln!(
            out,
            "`{}` on {c}: {}.\n\n| | without | with | change |\n|---|---|---|---|",
            v.knob.name, v.knob.what
        );
        let mut line =
            |label: String, without: Option<f64>, with: Option<f64>, fmt: fn(f64) -> String| {
                let _ = writeln!(
                    out,
                    "| {label} | {} | {} | {} |",
                    without.map_or("-".into(), fmt),
                    with.map_or("-".into(), fmt),
                    ratio(with, without)
                );
            };
        let count = |n: f64| thousands(n as u64);
        for op in KNOB_OPS {
            let id = format!("{op}/{}", v.knob.backend);
            line(
                format!("host {op}"),
                host.get(&id).copied(),
                v.host.get(&id).copied(),
                time,
            );
        }
        for op in ["noise/handshake", "noise/handshake+binding"] {
            let id = format!("{op}/{c}");
            line(
                format!("host {op}"),
                host.get(&id).copied(),
                v.host.get(&id).copied(),
                time,
            );
        }
        // Each run against snow's handshake of the same run (snow is built the same
        // way in both: the switch is not snow's).
        let vs_snow = |h: &Host| {
            let ours = h.get(&format!("noise/handshake/{c}"))?;
            let snow = h.get(&snow_id(c))?;
            Some(ours / snow)
        };
        line(
            "host handshake / snow's, same suite, same run".into(),
            vs_snow(host),
            vs_snow(&v.host),
            |x| format!("{x:.3}x"),
        );
        for op in KNOB_OPS.iter().chain(&[
            "noise/handshake",
            "noise/handshake+binding",
            "noise/handshake+binding-repeat",
            "identity/restore",
        ]) {
            line(
                format!("guest {op} (instructions)"),
                guest.get(c).and_then(|g| lookup(g, op)).map(|n| n as f64),
                lookup(&v.guest, op).map(|n| n as f64),
                count,
            );
        }
        let total = |s: &Sizes| (s.text + s.rodata) as f64;
        line(
            "production image .text + .rodata (bytes)".into(),
            production.get(c).map(total),
            Some(total(&v.production_image)),
            count,
        );
        line(
            "test image .text + .rodata (bytes)".into(),
            sizes.get(c).map(total),
            Some(total(&v.test_image)),
            count,
        );
        let _ = writeln!(out);
    }
}

/// The size goal's bound and the next step's, in bytes.
const SIZE_GOAL: u64 = 160 * 1024;
const SIZE_NEXT: u64 = 128 * 1024;

/// The production image's section: its size on every combination and variant, the
/// goal, and where the smallest one's bytes go.
fn production_markdown(
    out: &mut String,
    production: &BTreeMap<Combination, Sizes>,
    variants: &[Variant],
) -> Result<(), String> {
    let _ = writeln!(
        out,
        "**Production image** (`device-image` and its user program: the kernel and the services as a device ships them, no selftest, no benchmarks; `cargo xtask test` boots it on every combination: key created, sessions with a host peer, reboot, key restored, sessions). `.text + .rodata` in bytes, smallest first:\n\n| image | .text | .rodata | .text + .rodata | KiB |\n|---|---|---|---|---|"
    );
    let mut all: Vec<(String, Sizes, PathBuf)> = production
        .iter()
        .map(|(c, s)| (c.to_string(), *s, image::device_image(c)))
        .chain(variants.iter().map(|v| {
            (
                format!("{} with {}", v.combination, v.knob.name),
                v.production_image,
                v.production_path.clone(),
            )
        }))
        .collect();
    all.sort_by_key(|(name, s, _)| (s.text + s.rodata, name.clone()));
    for (name, s, _) in &all {
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {:.1} |",
            thousands(s.text),
            thousands(s.rodata),
            thousands(s.text + s.rodata),
            (s.text + s.rodata) as f64 / 1024.0
        );
    }
    let Some((name, smallest, path)) = all.first() else {
        return Ok(());
    };
    let total = smallest.text + smallest.rodata;
    let verdict = if total <= SIZE_GOAL { "met" } else { "missed" };
    let _ = writeln!(
        out,
        "\nSmallest: {name}, {} bytes ({:.1} KiB). Goal at most 160 KiB: **{verdict}** ({} bytes {}). To reach 128 KiB, {} bytes would have to go. Where its bytes go (`cargo xtask size --provider ...` prints this for any combination; code inlined into a caller counts for the caller, generic code for the crate that defines it):\n",
        thousands(total),
        total as f64 / 1024.0,
        thousands(total.abs_diff(SIZE_GOAL)),
        if total <= SIZE_GOAL { "under" } else { "over" },
        thousands(total.saturating_sub(SIZE_NEXT)),
    );
    let rows = crate::footprint::breakdown(path)?;
    out.push_str(&crate::footprint::table(&rows));
    let _ = writeln!(out);
    Ok(())
}

/// A grouped bar chart: for each metric, one bar per combination, scaled to the
/// largest value of that metric.
pub fn svg(
    host: &Host,
    guest: &BTreeMap<Combination, Guest>,
    sizes: &BTreeMap<Combination, Sizes>,
) -> String {
    let combos = Combination::classic();
    let colours = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759"];
    type Metric<'a> = (
        &'a str,
        Box<dyn Fn(&Combination) -> Option<f64> + 'a>,
        fn(f64) -> String,
    );
    let metrics: Vec<Metric> = vec![
        (
            "host: handshake with binding",
            Box::new(|c| host.get(&format!("noise/handshake+binding/{c}")).copied()),
            time,
        ),
        (
            "host: identity restore",
            Box::new(|c| host.get(&format!("identity/restore/{c}")).copied()),
            time,
        ),
        (
            "host: transport round trip",
            Box::new(|c| {
                host.get(&format!("noise/transport-round-trip/{c}"))
                    .copied()
            }),
            time,
        ),
        (
            "guest: handshake with binding (instructions)",
            Box::new(|c| lookup(guest.get(c)?, "noise/handshake+binding").map(|v| v as f64)),
            |v| thousands(v as u64),
        ),
        (
            "guest: identity restore (instructions)",
            Box::new(|c| lookup(guest.get(c)?, "identity/restore").map(|v| v as f64)),
            |v| thousands(v as u64),
        ),
        (
            "guest: transport round trip (instructions)",
            Box::new(|c| lookup(guest.get(c)?, "noise/transport-round-trip").map(|v| v as f64)),
            |v| thousands(v as u64),
        ),
        (
            "image .text + .rodata (bytes)",
            Box::new(|c| sizes.get(c).map(|s| (s.text + s.rodata) as f64)),
            |v| thousands(v as u64),
        ),
    ];
    let (left, bar_height, gap, width) = (300.0, 16.0, 26.0, 460.0);
    let group_height = bar_height * combos.len() as f64 + gap;
    let height = 60.0 + group_height * metrics.len() as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="900" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="10" y="20" font-size="15" font-weight="bold">Provider combinations: lower is better (bars scaled per metric)</text>"#
    );
    for (i, (c, colour)) in combos.iter().zip(colours).enumerate() {
        let x = 10.0 + i as f64 * 150.0;
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="32" width="12" height="12" fill="{colour}"/><text x="{}" y="42">{c}</text>"#,
            x + 16.0
        );
    }
    for (m, (label, value, format)) in metrics.iter().enumerate() {
        let top = 60.0 + m as f64 * group_height;
        let _ = writeln!(
            out,
            r#"<text x="10" y="{}" font-weight="bold">{label}</text>"#,
            top + 12.0
        );
        let max = combos.iter().filter_map(value).fold(0.0f64, f64::max);
        for (i, (c, colour)) in combos.iter().zip(colours).enumerate() {
            let y = top + 18.0 + i as f64 * bar_height;
            let Some(v) = value(c) else { continue };
            let w = if max > 0.0 {
                (v / max * width).max(1.0)
            } else {
                1.0
            };
            let _ = writeln!(
                out,
                r#"<rect x="{left}" y="{y}" width="{w:.1}" height="{}" fill="{colour}"/>"#,
                bar_height - 3.0
            );
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{}" font-size="11">{}</text>"#,
                left - 8.0 - 140.0,
                y + 10.0,
                c
            );
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{}" font-size="11">{}</text>"#,
                left + w + 6.0,
                y + 10.0,
                format(v)
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

/// Replaces the README's report section (between the two markers) with `table`.
pub fn update_readme(table: &str) -> Result<(), String> {
    let path = workspace_root().join("README.md");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (start, end) = ("<!-- bench-report:start -->", "<!-- bench-report:end -->");
    let (Some(a), Some(b)) = (text.find(start), text.find(end)) else {
        return Err(format!(
            "{} has no {start} ... {end} section",
            path.display()
        ));
    };
    let updated = format!("{}{start}\n{table}{}", &text[..a], &text[b..]);
    std::fs::write(&path, updated).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The host peer's handshake times on every image, and netstackd's `.text` on one.
fn net_figures(images: &[(Combination, PathBuf)]) -> Result<NetFigures, String> {
    let binary = crate::network::build_peer()?;
    let peer_ms = crate::network::host_peer(images, &binary, false)?
        .into_iter()
        .filter_map(|run| run.median_ms().map(|ms| (run.combination, ms)))
        .collect();
    // netstackd lives in the user program: its row of the program's footprint.
    let netstackd_text = match images.first() {
        Some((combination, _)) => {
            let program = image::device_programs_for(&image::device_image(combination));
            let rows = crate::footprint::breakdown(&program)?;
            let netstackd = rows
                .iter()
                .find(|row| row.component.starts_with("netstackd"))
                .map_or(0, |row| row.text);
            let all: u64 = rows.iter().map(|row| row.text).sum();
            Some((*combination, netstackd, all))
        }
        None => None,
    };
    Ok(NetFigures {
        peer_ms,
        netstackd_text,
    })
}

/// The whole `cargo xtask bench`.
pub fn run(quick: bool) -> Result<PathBuf, String> {
    let started = std::time::Instant::now();
    let images = test_os::build_images(Combination::all())?;
    eprintln!("    guest: counting instructions in QEMU");
    let guest = guest(&images)?;
    // Each image with its user program: every service runs from the program.
    let sizes: BTreeMap<Combination, Sizes> = images
        .iter()
        .filter_map(|(c, path)| {
            image::loaded_sizes(path, &image::programs_for(path))
                .ok()
                .map(|s| (*c, s))
        })
        .collect();
    let production: BTreeMap<Combination, Sizes> = images
        .iter()
        .filter_map(|(c, _)| {
            let path = image::device_image(c);
            image::loaded_sizes(&path, &image::device_programs_for(&path))
                .ok()
                .map(|s| (*c, s))
        })
        .collect();
    eprintln!("    network: the host peer's handshakes, and netstackd's .text");
    let classic: Vec<(Combination, PathBuf)> = images
        .iter()
        .filter(|(c, _)| c.is_classic())
        .cloned()
        .collect();
    let net = net_figures(&classic)?;
    eprintln!(
        "    host: criterion ({})",
        if quick { "quick" } else { "full" }
    );
    let host = host(quick)?;
    eprintln!("    knobs: each switch's images, guest counts and host figures");
    let variants = variants(quick)?;
    let date = command("date", &["-u", "+%Y-%m-%d"])
        .output_ok()
        .map(|d| d.trim().to_owned())
        .unwrap_or_default();
    let mut report = markdown(
        &host,
        &guest,
        &sizes,
        &production,
        &net,
        &RunInfo {
            mode: if quick { "quick" } else { "full" },
            date: &date,
            took: started.elapsed(),
        },
    );
    knobs_markdown(&mut report, &host, &guest, &sizes, &production, &variants);
    production_markdown(&mut report, &production, &variants)?;
    let dir = target_dir().join("bench-report");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write(
        &dir.join("report.md"),
        &format!("# Provider benchmarks\n\n{report}\n![chart](chart.svg)\n"),
    )?;
    write(&dir.join("chart.svg"), &svg(&host, &guest, &sizes))?;
    let host_tsv: String = host
        .iter()
        .map(|(id, ns)| format!("{id}\t{ns}\n"))
        .collect();
    write(&dir.join("host.tsv"), &host_tsv)?;
    let guest_tsv: String = guest
        .iter()
        .flat_map(|(c, counts)| {
            counts
                .iter()
                .map(move |(op, n)| format!("{c}\t{op}\t{n}\n"))
        })
        .collect();
    write(&dir.join("guest.tsv"), &guest_tsv)?;
    if quick {
        eprintln!(
            "    README.md left as it is (quick figures are not the report's); `cargo xtask bench` (full) regenerates its table"
        );
    } else {
        update_readme(&report)?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criterion_bencher_lines_and_guest_lines_parse() {
        let host = parse_bencher(
            "test x25519/dh/dalek ... bench:      59,279 ns/iter (+/- 215)\nnoise\ntest a/b ... bench: 12 ns/iter (+/- 0)\n",
        );
        assert_eq!(host.get("x25519/dh/dalek"), Some(&59279.0));
        assert_eq!(host.get("a/b"), Some(&12.0));
        assert_eq!(host.len(), 2);
        let guest = parse_guest(
            "SELFTEST: bench x25519/dh 842880\nSELFTEST: bench aead/seal-64 7615\nSELFTEST: bench done\nKERNEL: x\n",
        );
        assert_eq!(
            guest,
            [
                ("x25519/dh".to_owned(), 842880),
                ("aead/seal-64".to_owned(), 7615)
            ],
            "in log order"
        );
        assert_eq!(lookup(&guest, "aead/seal-64"), Some(7615));
    }

    #[test]
    fn knob_filters_match_only_their_backend() {
        assert_eq!(regex_escape("dalek+chacha"), "dalek\\+chacha");
        assert_eq!(
            regex_escape("dalek/compact+aes-gcm"),
            "dalek/compact\\+aes-gcm"
        );
        for knob in KNOBS {
            assert!(
                Combination::parse(knob.combination).is_some(),
                "{}",
                knob.combination
            );
        }
    }

    #[test]
    fn numbers_format_for_people() {
        assert_eq!(thousands(7247079), "7,247,079");
        assert_eq!(thousands(999), "999");
        assert_eq!(time(460_327.0), "460.3 µs");
        assert_eq!(time(2_505.0), "2.5 µs");
        assert_eq!(time(388.0), "388 ns");
        assert_eq!(ratio(Some(101.0), Some(100.0)), "+1.0 %");
    }
}
