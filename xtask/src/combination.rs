//! The four provider combinations and how to build for each.

use std::fmt;

/// One signing + key-agreement backend and one AEAD backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Combination {
    /// `dalek` or `compact`.
    pub curve: &'static str,
    /// `chacha` or `aes-gcm`.
    pub aead: &'static str,
}

impl Combination {
    /// Every combination, in the order reports list them.
    pub const ALL: &'static [Combination] = &[
        Combination {
            curve: "dalek",
            aead: "chacha",
        },
        Combination {
            curve: "dalek",
            aead: "aes-gcm",
        },
        Combination {
            curve: "compact",
            aead: "chacha",
        },
        Combination {
            curve: "compact",
            aead: "aes-gcm",
        },
    ];

    /// The cargo features of this combination's image (see `provider-select`), with
    /// the network stack.
    pub fn features(&self) -> String {
        format!("sig-{},aead-{},net", self.curve, self.aead)
    }

    /// The features of this combination without the network stack (to measure what
    /// it adds; such an image does not pass the ladder).
    pub fn features_without_network(&self) -> String {
        format!("sig-{},aead-{}", self.curve, self.aead)
    }
}

impl fmt::Display for Combination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.curve, self.aead)
    }
}
