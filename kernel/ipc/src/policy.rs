//! The entries of the policy table and the boot manifest.
//!
//! The build-time reader (`kernel-config`) produces them from the repository's TOML
//! files and the kernel enforces them; both use these definitions.

use crate::endpoint::Capability;
use crate::operation::Operation;
use crate::service::ServiceId;

/// `caller` may call `operation` (on the operation's service).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    /// Who may call.
    pub caller: ServiceId,
    /// What they may call.
    pub operation: Operation,
}

/// The private memory a task's process may have (`memory` in the boot manifest):
/// its heap and its stack, each a whole number of pages. A task with no bound cannot
/// run as a user-mode process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBound {
    /// Whose bound.
    pub task: ServiceId,
    /// Heap, in KiB (a multiple of 4).
    pub heap_kib: u32,
    /// Stack, in KiB (a multiple of 4); a guard page below it is never mapped.
    pub stack_kib: u32,
}

/// What the kernel does when a process of `task` ends (a fault, the watchdog, a panic,
/// an exit): it starts the task's service over in a new process, at most `limit` times
/// in any `window_s` seconds; one more end within the window and the device stops
/// serving, saying so (fail closed). A task with no policy is not restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Whose policy.
    pub task: ServiceId,
    /// Restarts allowed within the window.
    pub limit: u32,
    /// The window, in seconds.
    pub window_s: u32,
}

/// `task`'s process starts only once `after`'s is serving (its first `receive`) or has
/// ended: the manifest's `after` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartAfter {
    /// The task that waits.
    pub task: ServiceId,
    /// The task it waits for.
    pub after: ServiceId,
}

/// `task` holds `capability`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The holder.
    pub task: ServiceId,
    /// The capability.
    pub capability: Capability,
}

/// What keystored signs with the device key, per caller: each purpose fixes the
/// message keystored builds, so a caller cannot obtain a signature over anything else.
/// The policy table grants purposes (`[[purpose]]` in `policies/policy.toml`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u16)]
#[non_exhaustive]
pub enum SigningPurpose {
    /// The identity binding of a Noise static key: the message is the binding prefix
    /// followed by exactly a 32-byte X25519 public key.
    NoiseStaticBinding = 1,
    /// The confirmation of a pairing: the message is the pairing prefix, a role byte
    /// (1 the prover, 2 the verifier) and a 32-byte transcript hash.
    PairingConfirm = 2,
}

impl SigningPurpose {
    /// Every purpose.
    pub const ALL: [SigningPurpose; 2] = [Self::NoiseStaticBinding, Self::PairingConfirm];

    /// The name used in the policy file.
    pub const fn name(self) -> &'static str {
        match self {
            Self::NoiseStaticBinding => "noise-static-binding",
            Self::PairingConfirm => "pairing-confirm",
        }
    }

    /// The wire code (the first two bytes of a `SIGN` request).
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The purpose named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The purpose with wire code `code`.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.code() == code)
    }
}

/// `caller` may have keystored sign for `purpose`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PurposeGrant {
    /// Who asks.
    pub caller: ServiceId,
    /// For what.
    pub purpose: SigningPurpose,
}

/// Whether `grants` let `caller` have keystored sign for `purpose`.
pub fn purpose_granted(
    grants: &[PurposeGrant],
    caller: ServiceId,
    purpose: SigningPurpose,
) -> bool {
    grants
        .iter()
        .any(|grant| grant.caller == caller && grant.purpose == purpose)
}
