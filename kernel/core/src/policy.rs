//! The policy gate and the capability grants, as compiled-in tables.

use ipc::{Capability, Operation, ServiceId};

pub use ipc::policy::{Grant, Rule};

/// A deny-by-default policy over a table of [`Rule`]s.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    rules: &'static [Rule],
}

impl Policy {
    /// The policy allowing exactly `rules`.
    pub const fn new(rules: &'static [Rule]) -> Self {
        Self { rules }
    }

    /// Whether `caller` may send operation code `code` to `service`. Unknown codes,
    /// and codes of another service, are denied.
    pub fn allows(&self, caller: ServiceId, service: ServiceId, code: u16) -> bool {
        let Some(operation) = Operation::from_code(code) else {
            return false;
        };
        operation.service() == service
            && self
                .rules
                .iter()
                .any(|rule| rule.caller == caller && rule.operation == operation)
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the table is empty (everything denied).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Whether `grants` give `capability` to `task`.
pub fn granted(grants: &[Grant], task: ServiceId, capability: Capability) -> bool {
    grants
        .iter()
        .any(|grant| grant.task == task && grant.capability == capability)
}

#[cfg(test)]
mod tests {
    use super::*;

    static RULES: &[Rule] = &[Rule {
        caller: ServiceId::Keystored,
        operation: Operation::RngdGetEntropy,
    }];

    #[test]
    fn deny_by_default() {
        let policy = Policy::new(RULES);
        let code = Operation::RngdGetEntropy.code();
        assert!(policy.allows(ServiceId::Keystored, ServiceId::Rngd, code));
        assert!(!policy.allows(ServiceId::Selftest, ServiceId::Rngd, code));
        assert!(
            !policy.allows(ServiceId::Keystored, ServiceId::Logd, code),
            "wrong service"
        );
        assert!(
            !policy.allows(ServiceId::Keystored, ServiceId::Rngd, 0xbeef),
            "unknown code"
        );
        assert!(!Policy::new(&[]).allows(ServiceId::Keystored, ServiceId::Rngd, code));
    }

    #[test]
    fn compiled_tables_are_present() {
        assert!(!crate::config::POLICY.is_empty());
        assert!(granted(
            crate::config::GRANTS,
            ServiceId::Rngd,
            Capability::EntropyDevice
        ));
        assert!(!granted(
            crate::config::GRANTS,
            ServiceId::Selftest,
            Capability::EntropyDevice
        ));
    }
}
