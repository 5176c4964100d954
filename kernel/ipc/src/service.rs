//! The identities of tasks.

use core::fmt;

/// Who a task is. The kernel binds one to each task's endpoint at spawn and stamps
/// it on everything the task sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum ServiceId {
    /// The kernel itself (origin of policy and capability audit records).
    Kernel = 0,
    /// The audit journal.
    Logd = 1,
    /// The entropy authority.
    Rngd = 2,
    /// The device-key store.
    Keystored = 3,
    /// The Noise session daemon.
    Dsoftbusd = 4,
    /// The selftest client.
    Selftest = 5,
    /// The selftest's second node: the remote peer of dsoftbusd sessions.
    SelftestPeer = 6,
    /// The record store on the state disk.
    Statefs = 7,
    /// The network stack: owns the network device, offers stream sockets.
    Netstackd = 8,
    /// The test image's intruder: a user-mode process whose manifest entry grants
    /// nothing, which attacks the isolation between address spaces (the ladder's
    /// `isolation` phase).
    Intruder = 9,
    /// The device manager: tells the block devices apart by their serials and hands
    /// each window to the holder of the disk capability its serial names.
    Devmgr = 10,
}

impl ServiceId {
    /// Every id, in numeric order.
    pub const ALL: [ServiceId; 11] = [
        Self::Kernel,
        Self::Logd,
        Self::Rngd,
        Self::Keystored,
        Self::Dsoftbusd,
        Self::Selftest,
        Self::SelftestPeer,
        Self::Statefs,
        Self::Netstackd,
        Self::Intruder,
        Self::Devmgr,
    ];

    /// The name used in policy files, manifests and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Kernel => "kernel",
            Self::Logd => "logd",
            Self::Rngd => "rngd",
            Self::Keystored => "keystored",
            Self::Dsoftbusd => "dsoftbusd",
            Self::Selftest => "selftest",
            Self::SelftestPeer => "selftest-peer",
            Self::Statefs => "statefs",
            Self::Netstackd => "netstackd",
            Self::Intruder => "intruder",
            Self::Devmgr => "devmgr",
        }
    }

    /// What the kernel puts before every console line of this task. Markers of the
    /// ladder start with it, so a task cannot print another task's marker.
    pub const fn console_prefix(self) -> &'static str {
        match self {
            Self::Kernel => "KERNEL",
            Self::Selftest => "SELFTEST",
            Self::SelftestPeer => "SELFTEST-PEER",
            other => other.name(),
        }
    }

    /// The id named `name` (see [`ServiceId::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|id| id.name() == name)
    }

    /// The id with numeric value `value`.
    pub fn from_u16(value: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|id| *id as u16 == value)
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
