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

/// `task` holds `capability`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The holder.
    pub task: ServiceId,
    /// The capability.
    pub capability: Capability,
}
