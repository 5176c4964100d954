//! The registry of every operation any service offers.
//!
//! Policy rules name operations; the kernel reads the operation code from a request's
//! frame header and checks it against the rules before the request is delivered. An
//! operation belongs to exactly one service, so a rule cannot allow an operation on
//! the wrong service.

use crate::service::ServiceId;

/// An operation of a service, with its wire code (the frame header's `code` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
#[non_exhaustive]
pub enum Operation {
    /// logd: count the journal records that match a filter.
    LogdQuery = 0x0101,
    /// rngd: `n` bytes of health-tested entropy, `1 <= n <= 256`.
    RngdGetEntropy = 0x0201,
    /// keystored: the 32-byte Ed25519 device public key.
    KeystoredGetPubkey = 0x0301,
    /// keystored: an Ed25519 signature by the device key over a bounded message.
    KeystoredSign = 0x0302,
    /// keystored: export the private key. Always refused; it exists so that asking is
    /// a distinct, audited event.
    KeystoredExportPrivate = 0x0303,
    /// keystored: check the authentication tag of a trust-store record, with a key
    /// derived from the device-unique secret.
    KeystoredVerifyTrustStore = 0x0304,
    /// keystored: whether a pairing verifier is provisioned, the failed attempts, and
    /// the password hash's parameters a prover needs.
    KeystoredPairingStatus = 0x0305,
    /// keystored: one SPAKE2+ run as the verifier, counted as a failed attempt on disk
    /// before it answers: the prover's share in, the device's share and confirmation out.
    KeystoredPairingStart = 0x0306,
    /// keystored: the prover's confirmation of the run started; the shared key out.
    KeystoredPairingFinish = 0x0307,
    /// keystored: a trust store holding the given keys, one version above the rollback
    /// counter, tagged with the device's key.
    KeystoredTagTrustStore = 0x0308,
    /// keystored: clears the failed-attempt count (a trusted peer reopened pairing).
    KeystoredPairingReopen = 0x0309,
    /// keystored: one SPAKE2+ run as the prover (this device pairs with another): the
    /// other device's password-hash parameters and the setup code in, the prover's
    /// share out.
    KeystoredPairingProve = 0x030a,
    /// keystored: the other device's share and confirmation for the run proved; the
    /// prover's confirmation and the shared key out, only if that confirmation matched.
    KeystoredPairingProveFinish = 0x030b,
    /// dsoftbusd: its Noise static public key and its device public key.
    DsoftbusdDiscover = 0x0401,
    /// dsoftbusd: add a peer's device public key to the allowlist.
    DsoftbusdTrust = 0x0402,
    /// dsoftbusd: carry one Noise message of a session and return the answer.
    DsoftbusdTransport = 0x0403,
    /// statefs: store a record of the caller's.
    StatefsPut = 0x0701,
    /// statefs: read a record of the caller's.
    StatefsGet = 0x0702,
    /// statefs: delete a record of the caller's.
    StatefsDelete = 0x0703,
    /// netstackd: listen for TCP connections on a port.
    NetstackdListen = 0x0801,
    /// netstackd: take an established connection from a listener.
    NetstackdAccept = 0x0802,
    /// netstackd: open a TCP connection to an address.
    NetstackdConnect = 0x0803,
    /// netstackd: queue bytes on a connection.
    NetstackdSend = 0x0804,
    /// netstackd: take received bytes from a connection.
    NetstackdRecv = 0x0805,
    /// netstackd: close a connection or a listener.
    NetstackdClose = 0x0806,
    /// netstackd: a connection's state and addresses.
    NetstackdStatus = 0x0807,
    /// netstackd: which of the caller's sockets are ready (waits, bounded).
    NetstackdWait = 0x0808,
    /// netstackd: the sizes of its tables.
    NetstackdStats = 0x0809,
    /// dsoftbusd: the sizes of its session table.
    DsoftbusdStats = 0x0405,
    /// dsoftbusd: open a session to a peer over TCP and ping it.
    DsoftbusdConnect = 0x0404,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 30] = [
        Self::LogdQuery,
        Self::RngdGetEntropy,
        Self::KeystoredGetPubkey,
        Self::KeystoredSign,
        Self::KeystoredExportPrivate,
        Self::KeystoredVerifyTrustStore,
        Self::KeystoredPairingStatus,
        Self::KeystoredPairingStart,
        Self::KeystoredPairingFinish,
        Self::KeystoredTagTrustStore,
        Self::KeystoredPairingReopen,
        Self::KeystoredPairingProve,
        Self::KeystoredPairingProveFinish,
        Self::DsoftbusdDiscover,
        Self::DsoftbusdTrust,
        Self::DsoftbusdTransport,
        Self::DsoftbusdConnect,
        Self::StatefsPut,
        Self::StatefsGet,
        Self::StatefsDelete,
        Self::NetstackdListen,
        Self::NetstackdAccept,
        Self::NetstackdConnect,
        Self::NetstackdSend,
        Self::NetstackdRecv,
        Self::NetstackdClose,
        Self::NetstackdStatus,
        Self::NetstackdWait,
        Self::NetstackdStats,
        Self::DsoftbusdStats,
    ];

    /// The service that offers this operation.
    pub const fn service(self) -> ServiceId {
        match self {
            Self::LogdQuery => ServiceId::Logd,
            Self::RngdGetEntropy => ServiceId::Rngd,
            Self::KeystoredGetPubkey
            | Self::KeystoredSign
            | Self::KeystoredExportPrivate
            | Self::KeystoredVerifyTrustStore
            | Self::KeystoredPairingStatus
            | Self::KeystoredPairingStart
            | Self::KeystoredPairingFinish
            | Self::KeystoredTagTrustStore
            | Self::KeystoredPairingReopen
            | Self::KeystoredPairingProve
            | Self::KeystoredPairingProveFinish => ServiceId::Keystored,
            Self::DsoftbusdDiscover
            | Self::DsoftbusdTrust
            | Self::DsoftbusdTransport
            | Self::DsoftbusdConnect
            | Self::DsoftbusdStats => ServiceId::Dsoftbusd,
            Self::NetstackdListen
            | Self::NetstackdAccept
            | Self::NetstackdConnect
            | Self::NetstackdSend
            | Self::NetstackdRecv
            | Self::NetstackdClose
            | Self::NetstackdStatus
            | Self::NetstackdWait
            | Self::NetstackdStats => ServiceId::Netstackd,
            Self::StatefsPut | Self::StatefsGet | Self::StatefsDelete => ServiceId::Statefs,
        }
    }

    /// The name used in policy files.
    pub const fn name(self) -> &'static str {
        match self {
            Self::LogdQuery => "QUERY",
            Self::RngdGetEntropy => "GET_ENTROPY",
            Self::KeystoredGetPubkey => "GET_PUBKEY",
            Self::KeystoredSign => "SIGN",
            Self::KeystoredExportPrivate => "EXPORT_PRIVATE",
            Self::KeystoredVerifyTrustStore => "VERIFY_TRUST_STORE",
            Self::KeystoredPairingStatus => "PAIRING_STATUS",
            Self::KeystoredPairingStart => "PAIRING_START",
            Self::KeystoredPairingFinish => "PAIRING_FINISH",
            Self::KeystoredTagTrustStore => "TAG_TRUST_STORE",
            Self::KeystoredPairingReopen => "PAIRING_REOPEN",
            Self::KeystoredPairingProve => "PAIRING_PROVE",
            Self::KeystoredPairingProveFinish => "PAIRING_PROVE_FINISH",
            Self::DsoftbusdDiscover => "DISCOVER",
            Self::DsoftbusdTrust => "TRUST",
            Self::DsoftbusdTransport => "TRANSPORT",
            Self::DsoftbusdConnect => "CONNECT",
            Self::NetstackdListen => "LISTEN",
            Self::NetstackdAccept => "ACCEPT",
            Self::NetstackdConnect => "CONNECT",
            Self::NetstackdSend => "SEND",
            Self::NetstackdRecv => "RECV",
            Self::NetstackdClose => "CLOSE",
            Self::NetstackdStatus => "STATUS",
            Self::NetstackdWait => "WAIT",
            Self::NetstackdStats => "STATS",
            Self::DsoftbusdStats => "STATS",
            Self::StatefsPut => "PUT",
            Self::StatefsGet => "GET",
            Self::StatefsDelete => "DELETE",
        }
    }

    /// The wire code.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The operation with wire code `code`.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.code() == code)
    }

    /// The operation of `service` named `name`.
    pub fn from_name(service: ServiceId, name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|op| op.service() == service && op.name() == name)
    }
}
