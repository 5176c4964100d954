//! Build-time reader of the policy table and the boot manifest.
//!
//! Both are data files in the repository (`policies/policy.toml`,
//! `policies/manifest.toml`), compiled into every image by `kernel-core`'s build
//! script through [`generate`]. A malformed file fails the build with a message that
//! names the file, the entry and what is wrong, and lists what would be valid.
//!
//! The policy is deny by default: a call is allowed only when an `[[allow]]` entry
//! names its caller, its service and its operation. The manifest says which task holds
//! which capability; each capability has at most one holder.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};

use ipc::policy::{
    Grant, MemoryBound, PurposeGrant, RestartPolicy, Rule, SigningPurpose, StartAfter,
};
use ipc::{Capability, Operation, ServiceId};
use serde::Deserialize;

/// A policy or manifest file that cannot be used, with where and why.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as the caller named it.
    pub file: String,
    /// The entry (`allow[2]`, `task[0]`), or empty for the whole file.
    pub entry: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.entry.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.entry, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    allow: Vec<AllowEntry>,
    #[serde(default)]
    purpose: Vec<PurposeEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurposeEntry {
    caller: String,
    purposes: Vec<String>,
}

/// A parsed policy file: the call rules and the signing purposes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Who may call which operation.
    pub rules: Vec<Rule>,
    /// Whom keystored signs for, and for what.
    pub purposes: Vec<PurposeGrant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowEntry {
    caller: String,
    service: String,
    operations: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    #[serde(default)]
    task: Vec<TaskEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskEntry {
    name: String,
    capabilities: Vec<String>,
    memory: Option<MemoryEntry>,
    #[serde(default)]
    after: Vec<String>,
    restart: Option<RestartEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestartEntry {
    limit: u32,
    window_s: u32,
}

/// The most restarts a policy may allow in its window, and the longest window.
pub const MAX_RESTARTS: u32 = 100;
/// The longest restart window, in seconds (a day).
pub const MAX_RESTART_WINDOW_S: u32 = 86_400;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemoryEntry {
    heap_kib: u32,
    stack_kib: u32,
}

/// The largest heap or stack a manifest may give one process, in KiB.
pub const MAX_REGION_KIB: u32 = 16 * 1024;

/// A parsed boot manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Who holds which capability.
    pub grants: Vec<Grant>,
    /// The private memory of each task that runs as a user-mode process.
    pub memory: Vec<MemoryBound>,
    /// Which task's process starts only once which other's is serving.
    pub order: Vec<StartAfter>,
    /// Which tasks' services the kernel restarts, how often.
    pub restart: Vec<RestartPolicy>,
}

fn known_services() -> String {
    ServiceId::ALL.map(ServiceId::name).join(", ")
}

fn service(file: &str, entry: &str, field: &str, name: &str) -> Result<ServiceId, ConfigError> {
    match ServiceId::from_name(name) {
        Some(ServiceId::Kernel) | None => Err(error(
            file,
            entry,
            format!("unknown {field} `{name}` (known: {})", known_services()),
        )),
        Some(id) => Ok(id),
    }
}

fn error(file: &str, entry: &str, message: String) -> ConfigError {
    ConfigError {
        file: file.to_owned(),
        entry: entry.to_owned(),
        message,
    }
}

/// Parses and validates a policy file.
///
/// # Errors
/// [`ConfigError`] for TOML errors, unknown fields, unknown callers, services,
/// operations or purposes, an operation of another service, an empty or repeated
/// rule, a purpose granted to a caller that may not `SIGN`, or a caller that may `SIGN`
/// with no purpose.
pub fn parse_policy(file: &str, text: &str) -> Result<Policy, ConfigError> {
    let parsed: PolicyFile = toml::from_str(text).map_err(|e| error(file, "", e.to_string()))?;
    let mut rules = BTreeSet::new();
    for (index, allow) in parsed.allow.iter().enumerate() {
        let entry = format!("allow[{index}]");
        let caller = service(file, &entry, "caller", &allow.caller)?;
        let target = service(file, &entry, "service", &allow.service)?;
        if allow.operations.is_empty() {
            return Err(error(file, &entry, "allows no operation".into()));
        }
        for name in &allow.operations {
            let operation = Operation::from_name(target, name).ok_or_else(|| {
                let known: Vec<_> = Operation::ALL
                    .into_iter()
                    .filter(|op| op.service() == target)
                    .map(Operation::name)
                    .collect();
                error(
                    file,
                    &entry,
                    format!(
                        "`{name}` is not an operation of {target} (known: {})",
                        known.join(", ")
                    ),
                )
            })?;
            if !rules.insert(Rule { caller, operation }) {
                return Err(error(
                    file,
                    &entry,
                    format!("{caller} -> {target}.{name} is allowed twice"),
                ));
            }
        }
    }
    let rules: Vec<Rule> = rules.into_iter().collect();
    let may_sign = |caller: ServiceId| {
        rules
            .iter()
            .any(|rule| rule.caller == caller && rule.operation == Operation::KeystoredSign)
    };
    let mut purposes = BTreeSet::new();
    for (index, grant) in parsed.purpose.iter().enumerate() {
        let entry = format!("purpose[{index}]");
        let caller = service(file, &entry, "caller", &grant.caller)?;
        if !may_sign(caller) {
            return Err(error(
                file,
                &entry,
                format!("{caller} is granted purposes but may not call keystored SIGN"),
            ));
        }
        if grant.purposes.is_empty() {
            return Err(error(file, &entry, "grants no purpose".into()));
        }
        for name in &grant.purposes {
            let purpose = SigningPurpose::from_name(name).ok_or_else(|| {
                let known = SigningPurpose::ALL.map(SigningPurpose::name).join(", ");
                error(
                    file,
                    &entry,
                    format!("unknown signing purpose `{name}` (known: {known})"),
                )
            })?;
            if !purposes.insert(PurposeGrant { caller, purpose }) {
                return Err(error(
                    file,
                    &entry,
                    format!("{caller} is granted `{name}` twice"),
                ));
            }
        }
    }
    if let Some(rule) = rules.iter().find(|rule| {
        rule.operation == Operation::KeystoredSign
            && !purposes.iter().any(|p| p.caller == rule.caller)
    }) {
        return Err(error(
            file,
            "",
            format!(
                "{} may call keystored SIGN but has no [[purpose]]: it could sign nothing",
                rule.caller
            ),
        ));
    }
    Ok(Policy {
        rules,
        purposes: purposes.into_iter().collect(),
    })
}

/// Parses and validates a boot manifest.
///
/// # Errors
/// [`ConfigError`] for TOML errors, unknown fields, unknown tasks or capabilities, a
/// task listed twice, a capability granted to more than one task, or a memory bound
/// that is zero, not a whole number of pages, or above [`MAX_REGION_KIB`].
pub fn parse_manifest(file: &str, text: &str) -> Result<Manifest, ConfigError> {
    let parsed: ManifestFile = toml::from_str(text).map_err(|e| error(file, "", e.to_string()))?;
    let mut grants: Vec<Grant> = Vec::new();
    let mut memory: Vec<MemoryBound> = Vec::new();
    let mut order: Vec<StartAfter> = Vec::new();
    let mut restart: Vec<RestartPolicy> = Vec::new();
    let mut tasks = BTreeSet::new();
    for (index, task) in parsed.task.iter().enumerate() {
        let entry = format!("task[{index}]");
        let id = service(file, &entry, "task", &task.name)?;
        if !tasks.insert(id) {
            return Err(error(file, &entry, format!("task {id} is listed twice")));
        }
        for name in &task.capabilities {
            let capability = Capability::from_name(name).ok_or_else(|| {
                let known = Capability::ALL.map(Capability::name).join(", ");
                error(
                    file,
                    &entry,
                    format!("unknown capability `{name}` (known: {known})"),
                )
            })?;
            if let Some(holder) = grants.iter().find(|g| g.capability == capability) {
                return Err(error(
                    file,
                    &entry,
                    format!(
                        "capability `{name}` is already granted to {}; a capability has one holder",
                        holder.task
                    ),
                ));
            }
            grants.push(Grant {
                task: id,
                capability,
            });
        }
        if let Some(bound) = &task.memory {
            for (field, kib) in [("heap_kib", bound.heap_kib), ("stack_kib", bound.stack_kib)] {
                if kib == 0 || kib % 4 != 0 || kib > MAX_REGION_KIB {
                    return Err(error(
                        file,
                        &entry,
                        format!(
                            "memory.{field} = {kib}: want a multiple of 4 from 4 to {MAX_REGION_KIB}"
                        ),
                    ));
                }
            }
            memory.push(MemoryBound {
                task: id,
                heap_kib: bound.heap_kib,
                stack_kib: bound.stack_kib,
            });
        }
        if let Some(policy) = &task.restart {
            if policy.limit == 0
                || policy.limit > MAX_RESTARTS
                || policy.window_s == 0
                || policy.window_s > MAX_RESTART_WINDOW_S
            {
                return Err(error(
                    file,
                    &entry,
                    format!(
                        "restart = {{ limit = {}, window_s = {} }}: want a limit from 1 to {MAX_RESTARTS} and a window from 1 to {MAX_RESTART_WINDOW_S} s (leave `restart` out for none)",
                        policy.limit, policy.window_s
                    ),
                ));
            }
            restart.push(RestartPolicy {
                task: id,
                limit: policy.limit,
                window_s: policy.window_s,
            });
        }
        for name in &task.after {
            let after = service(file, &entry, "after", name)?;
            if after == id {
                return Err(error(file, &entry, format!("task {id} waits for itself")));
            }
            order.push(StartAfter { task: id, after });
        }
    }
    // Every task named in an `after` must be listed, and the waits must not cycle.
    for wait in &order {
        if !tasks.contains(&wait.after) {
            return Err(error(
                file,
                wait.task.name(),
                format!(
                    "`after` names {}, which the manifest does not list",
                    wait.after
                ),
            ));
        }
    }
    // A cycle: some task's waits lead back to it (two paths to one task are fine).
    for start in &order {
        let mut seen = BTreeSet::new();
        let mut frontier = vec![start.after];
        while let Some(next) = frontier.pop() {
            if next == start.task {
                return Err(error(
                    file,
                    start.task.name(),
                    format!("`after` makes a cycle through {}", start.after),
                ));
            }
            if seen.insert(next) {
                frontier.extend(order.iter().filter(|w| w.task == next).map(|w| w.after));
            }
        }
    }
    Ok(Manifest {
        grants,
        memory,
        order,
        restart,
    })
}

/// Rust source for `kernel-core`'s compiled-in tables: `POLICY: &[Rule]`,
/// `PURPOSES: &[PurposeGrant]`, `GRANTS: &[Grant]`, `MEMORY: &[MemoryBound]`,
/// `ORDER: &[StartAfter]` and `RESTART: &[RestartPolicy]`, naming `ipc` types.
pub fn generate(policy: &Policy, manifest: &Manifest) -> String {
    let mut out =
        String::from("// Generated by kernel-config from policies/*.toml. Do not edit.\n\n");
    table(
        &mut out,
        "The deny-by-default policy table, from `policies/policy.toml`.",
        "POLICY: &[crate::policy::Rule]",
        policy.rules.iter().map(|rule| {
            format!(
                "crate::policy::Rule {{ caller: ipc::ServiceId::{:?}, operation: ipc::Operation::{:?} }}",
                rule.caller, rule.operation
            )
        }),
    );
    table(
        &mut out,
        "What keystored signs for whom, from `policies/policy.toml`'s `[[purpose]]`.",
        "PURPOSES: &[ipc::policy::PurposeGrant]",
        policy.purposes.iter().map(|grant| {
            format!(
                "ipc::policy::PurposeGrant {{ caller: ipc::ServiceId::{:?}, purpose: ipc::policy::SigningPurpose::{:?} }}",
                grant.caller, grant.purpose
            )
        }),
    );
    table(
        &mut out,
        "The boot manifest's capability grants, from `policies/manifest.toml`.",
        "GRANTS: &[crate::policy::Grant]",
        manifest.grants.iter().map(|grant| {
            format!(
                "crate::policy::Grant {{ task: ipc::ServiceId::{:?}, capability: ipc::Capability::{:?} }}",
                grant.task, grant.capability
            )
        }),
    );
    table(
        &mut out,
        "The private memory of each user-mode process, from `policies/manifest.toml`.",
        "MEMORY: &[ipc::policy::MemoryBound]",
        manifest.memory.iter().map(|bound| {
            format!(
                "ipc::policy::MemoryBound {{ task: ipc::ServiceId::{:?}, heap_kib: {}, stack_kib: {} }}",
                bound.task, bound.heap_kib, bound.stack_kib
            )
        }),
    );
    table(
        &mut out,
        "Which process starts only once which other is serving, from `policies/manifest.toml`.",
        "ORDER: &[ipc::policy::StartAfter]",
        manifest.order.iter().map(|wait| {
            format!(
                "ipc::policy::StartAfter {{ task: ipc::ServiceId::{:?}, after: ipc::ServiceId::{:?} }}",
                wait.task, wait.after
            )
        }),
    );
    table(
        &mut out,
        "Which services the kernel restarts, how often, from `policies/manifest.toml`.",
        "RESTART: &[ipc::policy::RestartPolicy]",
        manifest.restart.iter().map(|policy| {
            format!(
                "ipc::policy::RestartPolicy {{ task: ipc::ServiceId::{:?}, limit: {}, window_s: {} }}",
                policy.task, policy.limit, policy.window_s
            )
        }),
    );
    out
}

/// Appends `pub static <declaration> = &[...];` with its doc line and one row per
/// item (tables after the first are separated by a blank line).
fn table(out: &mut String, doc: &str, declaration: &str, rows: impl Iterator<Item = String>) {
    if out.ends_with(";\n") {
        out.push('\n');
    }
    let _ = writeln!(out, "/// {doc}\npub static {declaration} = &[");
    for row in rows {
        let _ = writeln!(out, "    {row},");
    }
    out.push_str("];\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_policy_parses() {
        let policy = parse_policy(
            "p.toml",
            r#"
            [[allow]]
            caller = "keystored"
            service = "rngd"
            operations = ["GET_ENTROPY"]

            [[allow]]
            caller = "dsoftbusd"
            service = "keystored"
            operations = ["SIGN"]

            [[purpose]]
            caller = "dsoftbusd"
            purposes = ["noise-static-binding"]
            "#,
        )
        .unwrap();
        assert_eq!(
            policy.rules[0],
            Rule {
                caller: ServiceId::Keystored,
                operation: Operation::RngdGetEntropy
            }
        );
        assert_eq!(
            policy.purposes,
            [PurposeGrant {
                caller: ServiceId::Dsoftbusd,
                purpose: SigningPurpose::NoiseStaticBinding
            }]
        );
        let source = generate(&policy, &Manifest::default());
        assert!(source.contains("ipc::Operation::RngdGetEntropy"));
        assert!(source.contains("SigningPurpose::NoiseStaticBinding"));
    }

    #[test]
    fn malformed_policies_name_the_entry_and_the_problem() {
        let cases = [
            (
                "[[allow]]\ncaller = \"keystored\"\n",
                "missing field `service`",
            ),
            (
                "[[allow]]\ncaller = \"ghost\"\nservice = \"rngd\"\noperations = [\"GET_ENTROPY\"]\n",
                "allow[0]: unknown caller `ghost`",
            ),
            (
                "[[allow]]\ncaller = \"selftest\"\nservice = \"rngd\"\noperations = [\"SIGN\"]\n",
                "`SIGN` is not an operation of rngd (known: GET_ENTROPY)",
            ),
            (
                "[[allow]]\ncaller = \"selftest\"\nservice = \"rngd\"\noperations = []\n",
                "allows no operation",
            ),
            (
                "[[allow]]\ncaller = \"selftest\"\nservice = \"rngd\"\noperations = [\"GET_ENTROPY\", \"GET_ENTROPY\"]\n",
                "allowed twice",
            ),
            (
                "[[allow]]\ncaller = \"selftest\"\nservice = \"kernel\"\noperations = [\"X\"]\n",
                "unknown service `kernel`",
            ),
            (
                "[[allow]]\ncaller = \"selftest\"\nservice = \"rngd\"\noperations = [\"GET_ENTROPY\"]\nextra = 1\n",
                "unknown field `extra`",
            ),
            ("allow = 3", "invalid type"),
            (
                "[[purpose]]\ncaller = \"selftest\"\npurposes = [\"noise-static-binding\"]\n",
                "purpose[0]: selftest is granted purposes but may not call keystored SIGN",
            ),
            (
                "[[allow]]\ncaller = \"dsoftbusd\"\nservice = \"keystored\"\noperations = [\"SIGN\"]\n",
                "dsoftbusd may call keystored SIGN but has no [[purpose]]",
            ),
            (
                "[[allow]]\ncaller = \"dsoftbusd\"\nservice = \"keystored\"\noperations = [\"SIGN\"]\n[[purpose]]\ncaller = \"dsoftbusd\"\npurposes = [\"anything\"]\n",
                "unknown signing purpose `anything` (known: noise-static-binding, pairing-confirm)",
            ),
        ];
        for (text, expected) in cases {
            let message = parse_policy("policies/policy.toml", text)
                .unwrap_err()
                .to_string();
            assert!(message.starts_with("policies/policy.toml: "), "{message}");
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
    }

    #[test]
    fn manifest_grants_each_capability_once() {
        let grants = parse_manifest(
            "m.toml",
            "[[task]]\nname = \"rngd\"\ncapabilities = [\"virtio-rng\"]\n[[task]]\nname = \"logd\"\ncapabilities = [\"audit-feed\"]\n",
        )
        .unwrap()
        .grants;
        assert_eq!(grants.len(), 2);
        let twice = "[[task]]\nname = \"rngd\"\ncapabilities = [\"virtio-rng\"]\n[[task]]\nname = \"selftest\"\ncapabilities = [\"virtio-rng\"]\n";
        assert!(
            parse_manifest("m.toml", twice)
                .unwrap_err()
                .to_string()
                .contains("already granted to rngd")
        );
        let unknown = "[[task]]\nname = \"rngd\"\ncapabilities = [\"gpu\"]\n";
        assert!(
            parse_manifest("m.toml", unknown)
                .unwrap_err()
                .to_string()
                .contains("unknown capability `gpu`")
        );
    }

    #[test]
    fn start_order_names_listed_tasks_without_cycles() {
        let task = |name: &str, after: &str| {
            format!("[[task]]\nname = \"{name}\"\ncapabilities = []\nafter = [{after}]\n")
        };
        let good = task("keystored", "") + &task("netstackd", "\"keystored\"");
        assert_eq!(
            parse_manifest("m.toml", &good).unwrap().order,
            [StartAfter {
                task: ServiceId::Netstackd,
                after: ServiceId::Keystored
            }]
        );
        for (manifest, expected) in [
            (task("netstackd", "\"keystored\""), "does not list"),
            (task("netstackd", "\"netstackd\""), "waits for itself"),
            (task("netstackd", "\"gpu\""), "unknown after `gpu`"),
            (
                task("netstackd", "\"keystored\"") + &task("keystored", "\"netstackd\""),
                "cycle",
            ),
        ] {
            let message = parse_manifest("m.toml", &manifest).unwrap_err().to_string();
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
        // Two paths to one task, or one task named twice, are not cycles.
        let diamond = task("logd", "")
            + &task("statefs", "\"logd\"")
            + &task("keystored", "\"logd\"")
            + &task("netstackd", "\"statefs\", \"keystored\"")
            + &task("selftest", "\"netstackd\"");
        assert!(parse_manifest("m.toml", &diamond).is_ok());
        let twice = task("keystored", "")
            + &task("netstackd", "\"keystored\", \"keystored\"")
            + &task("selftest", "\"netstackd\"");
        assert!(parse_manifest("m.toml", &twice).is_ok());
    }

    #[test]
    fn restart_policies_are_bounded() {
        let task = |restart: &str| {
            format!("[[task]]\nname = \"logd\"\ncapabilities = []\nrestart = {restart}\n")
        };
        assert_eq!(
            parse_manifest("m.toml", &task("{ limit = 3, window_s = 60 }"))
                .unwrap()
                .restart,
            [RestartPolicy {
                task: ServiceId::Logd,
                limit: 3,
                window_s: 60
            }]
        );
        for bad in [
            "{ limit = 0, window_s = 60 }",
            "{ limit = 3, window_s = 0 }",
            "{ limit = 101, window_s = 60 }",
            "{ limit = 3, window_s = 86401 }",
        ] {
            let message = parse_manifest("m.toml", &task(bad))
                .unwrap_err()
                .to_string();
            assert!(message.contains("want a limit"), "{message}");
        }
    }

    #[test]
    fn the_repository_files_are_valid() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/");
        let policy = std::fs::read_to_string(format!("{root}policy.toml")).unwrap();
        let manifest = std::fs::read_to_string(format!("{root}manifest.toml")).unwrap();
        assert!(
            !parse_policy("policy.toml", &policy)
                .unwrap()
                .rules
                .is_empty()
        );
        assert!(
            !parse_manifest("manifest.toml", &manifest)
                .unwrap()
                .grants
                .is_empty()
        );
    }

    #[test]
    fn memory_bounds_are_whole_pages_within_the_limit() {
        let bound = |heap: u32, stack: u32| {
            format!(
                "[[task]]\nname = \"intruder\"\ncapabilities = []\nmemory = {{ heap_kib = {heap}, stack_kib = {stack} }}\n"
            )
        };
        let manifest = parse_manifest("m.toml", &bound(64, 16)).unwrap();
        assert_eq!(
            manifest.memory,
            [MemoryBound {
                task: ServiceId::Intruder,
                heap_kib: 64,
                stack_kib: 16
            }]
        );
        for (heap, stack) in [(0, 16), (64, 6), (MAX_REGION_KIB + 4, 16)] {
            let message = parse_manifest("m.toml", &bound(heap, stack))
                .unwrap_err()
                .to_string();
            assert!(message.contains("want a multiple of 4"), "{message}");
        }
    }
}
