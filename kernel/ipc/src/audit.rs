//! Audit records: every policy and capability decision, and each service's own
//! verdicts on the requests it serves.
//!
//! A record holds ids, codes and sizes only. There is no field that could carry key
//! material or entropy, so the journal cannot leak a secret by construction.

use core::fmt;

use crate::endpoint::Capability;
use crate::service::ServiceId;

/// The outcome being recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Verdict {
    /// Allowed, or served.
    Allowed = 1,
    /// Refused by policy or by the capability manifest.
    Denied = 2,
    /// Refused as bad input (malformed, oversized, unknown).
    Rejected = 3,
    /// Could not be served (a device or dependency failed).
    Failed = 4,
}

impl Verdict {
    fn from_u8(value: u8) -> Option<Self> {
        [Self::Allowed, Self::Denied, Self::Rejected, Self::Failed]
            .into_iter()
            .find(|v| *v as u8 == value)
    }
}

/// What was attempted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// A request to `service` with operation code `code`.
    Call {
        /// The service addressed.
        service: ServiceId,
        /// The operation code from the frame header.
        code: u16,
    },
    /// A request to `service` whose frame could not be parsed.
    MalformedFrame {
        /// The service addressed.
        service: ServiceId,
    },
    /// A claim of a capability.
    Claim(Capability),
    /// A change in a service's own health (for example rngd closing its source).
    Health,
    /// A reply by the subject to a call that was no longer outstanding (the caller
    /// timed out, cancelled or stopped) or was never addressed to it.
    Reply,
    /// A system call (its number) by a user-mode process; written by the kernel when
    /// it refuses one (the reason is the call's error code).
    Syscall {
        /// The system call number from `a7`.
        number: u16,
    },
    /// A user-mode process stopped by the kernel: a trap it caused (`cause` is the low
    /// 16 bits of `scause`; the record's `detail` holds the low 32 bits of `stval`), or
    /// the process watchdog (`cause` [`Action::WATCHDOG_CAUSE`]).
    Fault {
        /// Why it was stopped.
        cause: u16,
    },
    /// The kernel started a task's service over in a new process after its previous
    /// one ended (verdict `Allowed`), or refused to because the task's restart policy
    /// was spent (verdict `Denied`: the device stops serving).
    Restart {
        /// The new process's generation (how many restarts; its low 16 bits).
        generation: u16,
    },
}

impl Action {
    /// The `cause` of a [`Action::Fault`] record for a process the watchdog stopped
    /// (it ran its budget of CPU time without a system call).
    pub const WATCHDOG_CAUSE: u16 = 0xffff;
}

/// The reason code of a record the kernel writes about IPC (the `reason` field of a
/// record whose origin is the kernel). Policy and capability decisions carry 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
#[non_exhaustive]
pub enum KernelReason {
    /// The callee's queue was full; the request was not delivered.
    QueueFull = 1,
    /// No task of that id runs; the request was not delivered.
    NoSuchService = 2,
    /// The caller already had as many calls outstanding as a task may.
    TooManyCalls = 3,
    /// The callee did not answer before the call's deadline.
    Timeout = 4,
    /// The caller dropped the call before its reply was taken.
    Cancelled = 5,
    /// A reply to a call that was not outstanding for the replier.
    StaleReply = 6,
    /// A task wrote a record it may not write (another service's action, a kernel
    /// action, or a subject that never called it); the record was refused and this
    /// one written in its place, naming the action claimed and, in `detail`, the
    /// subject claimed (its [`ServiceId`] number).
    ForgedRecord = 7,
    /// The callee stopped while the call was outstanding.
    PeerGone = 8,
}

impl KernelReason {
    /// The wire code.
    pub const fn code(self) -> u16 {
        self as u16
    }
}

/// An event as a task reports it; the kernel adds the origin and a sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// Who acted (the caller, the claimant).
    pub subject: ServiceId,
    /// What they attempted.
    pub action: Action,
    /// The outcome.
    pub verdict: Verdict,
    /// A service-specific reason code (an error code), 0 when there is none.
    pub reason: u16,
    /// A size or count, such as the number of entropy bytes asked for.
    pub detail: u32,
}

/// An event with the kernel's stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Who wrote the record, stamped by the kernel: `Kernel` for policy and capability
    /// decisions, the service itself for its own verdicts.
    pub origin: ServiceId,
    /// Position in the kernel's stream of records, from 0.
    pub sequence: u64,
    /// The event.
    pub event: AuditEvent,
}

/// Which records a query counts. `None` matches anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Who wrote the record.
    pub origin: Option<ServiceId>,
    /// Who acted.
    pub subject: Option<ServiceId>,
    /// What was attempted.
    pub action: Option<Action>,
    /// The outcome.
    pub verdict: Option<Verdict>,
}

/// Why bytes are not an encoded [`AuditFilter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditDecodeError {
    /// Not exactly [`AuditFilter::ENCODED_LEN`] bytes.
    Length(usize),
    /// A field holds a value outside its type.
    BadValue,
}

impl fmt::Display for AuditDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length(len) => write!(
                f,
                "{len} bytes: an audit filter is {} bytes, a record {}",
                AuditFilter::ENCODED_LEN,
                AuditRecord::ENCODED_LEN
            ),
            Self::BadValue => f.write_str("audit filter field out of range"),
        }
    }
}

impl Action {
    fn encode(self) -> [u8; 5] {
        let (kind, a, b) = match self {
            Self::Call { service, code } => (1u8, service as u16, code),
            Self::MalformedFrame { service } => (2, service as u16, 0),
            Self::Claim(capability) => (3, capability as u16, 0),
            Self::Health => (4, 0, 0),
            Self::Reply => (5, 0, 0),
            Self::Syscall { number } => (6, number, 0),
            Self::Fault { cause } => (7, cause, 0),
            Self::Restart { generation } => (8, generation, 0),
        };
        let [a0, a1] = a.to_le_bytes();
        let [b0, b1] = b.to_le_bytes();
        [kind, a0, a1, b0, b1]
    }

    fn decode(bytes: [u8; 5]) -> Option<Self> {
        let [kind, a0, a1, b0, b1] = bytes;
        let a = u16::from_le_bytes([a0, a1]);
        let b = u16::from_le_bytes([b0, b1]);
        match kind {
            1 => Some(Self::Call {
                service: ServiceId::from_u16(a)?,
                code: b,
            }),
            2 => Some(Self::MalformedFrame {
                service: ServiceId::from_u16(a)?,
            }),
            3 => Some(Self::Claim(Capability::from_u16(a)?)),
            4 => Some(Self::Health),
            5 => Some(Self::Reply),
            6 => Some(Self::Syscall { number: a }),
            7 => Some(Self::Fault { cause: a }),
            8 => Some(Self::Restart { generation: a }),
            _ => None,
        }
    }
}

impl AuditRecord {
    /// Length of the encoding: origin (2), sequence (8), subject (2), action (5),
    /// verdict (1), reason (2), detail (4), little-endian. How a user-mode holder of
    /// the audit feed receives records (docs/syscalls.md, `audit_pop`).
    pub const ENCODED_LEN: usize = 2 + 8 + 2 + 5 + 1 + 2 + 4;

    /// The wire encoding.
    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[0..2].copy_from_slice(&(self.origin as u16).to_le_bytes());
        out[2..10].copy_from_slice(&self.sequence.to_le_bytes());
        out[10..12].copy_from_slice(&(self.event.subject as u16).to_le_bytes());
        out[12..17].copy_from_slice(&self.event.action.encode());
        out[17] = self.event.verdict as u8;
        out[18..20].copy_from_slice(&self.event.reason.to_le_bytes());
        out[20..24].copy_from_slice(&self.event.detail.to_le_bytes());
        out
    }

    /// Parses the wire encoding.
    ///
    /// # Errors
    /// [`AuditDecodeError`] for a wrong length or an out-of-range field.
    pub fn decode(bytes: &[u8]) -> Result<Self, AuditDecodeError> {
        let bytes: &[u8; Self::ENCODED_LEN] = bytes
            .try_into()
            .map_err(|_| AuditDecodeError::Length(bytes.len()))?;
        let id = |at: usize| {
            ServiceId::from_u16(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
                .ok_or(AuditDecodeError::BadValue)
        };
        let mut sequence = [0u8; 8];
        sequence.copy_from_slice(&bytes[2..10]);
        let mut action = [0u8; 5];
        action.copy_from_slice(&bytes[12..17]);
        let record = Self {
            origin: id(0)?,
            sequence: u64::from_le_bytes(sequence),
            event: AuditEvent {
                subject: id(10)?,
                action: Action::decode(action).ok_or(AuditDecodeError::BadValue)?,
                verdict: Verdict::from_u8(bytes[17]).ok_or(AuditDecodeError::BadValue)?,
                reason: u16::from_le_bytes([bytes[18], bytes[19]]),
                detail: u32::from_le_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]),
            },
        };
        if record.encode() != *bytes {
            return Err(AuditDecodeError::BadValue);
        }
        Ok(record)
    }
}

impl AuditFilter {
    /// Length of the encoding: a presence byte, origin, subject, action, verdict.
    pub const ENCODED_LEN: usize = 1 + 2 + 2 + 5 + 1;

    /// Whether `record` matches every field that is set.
    pub fn matches(&self, record: &AuditRecord) -> bool {
        self.origin.is_none_or(|o| o == record.origin)
            && self.subject.is_none_or(|s| s == record.event.subject)
            && self.action.is_none_or(|a| a == record.event.action)
            && self.verdict.is_none_or(|v| v == record.event.verdict)
    }

    /// The wire encoding (fixed length, little-endian).
    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        let mut present = 0u8;
        if let Some(origin) = self.origin {
            present |= 1;
            out[1..3].copy_from_slice(&(origin as u16).to_le_bytes());
        }
        if let Some(subject) = self.subject {
            present |= 2;
            out[3..5].copy_from_slice(&(subject as u16).to_le_bytes());
        }
        if let Some(action) = self.action {
            present |= 4;
            out[5..10].copy_from_slice(&action.encode());
        }
        if let Some(verdict) = self.verdict {
            present |= 8;
            out[10] = verdict as u8;
        }
        out[0] = present;
        out
    }

    /// Parses the wire encoding.
    ///
    /// # Errors
    /// [`AuditDecodeError`] for a wrong length or an out-of-range field.
    pub fn decode(bytes: &[u8]) -> Result<Self, AuditDecodeError> {
        let bytes: &[u8; Self::ENCODED_LEN] = bytes
            .try_into()
            .map_err(|_| AuditDecodeError::Length(bytes.len()))?;
        let present = bytes[0];
        if present & !0x0f != 0 {
            return Err(AuditDecodeError::BadValue);
        }
        let id = |at: usize| ServiceId::from_u16(u16::from_le_bytes([bytes[at], bytes[at + 1]]));
        fn field<T>(present: bool, value: Option<T>) -> Result<Option<T>, AuditDecodeError> {
            match (present, value) {
                (false, _) => Ok(None),
                (true, Some(value)) => Ok(Some(value)),
                (true, None) => Err(AuditDecodeError::BadValue),
            }
        }
        let action: [u8; 5] = bytes[5..10]
            .try_into()
            .map_err(|_| AuditDecodeError::BadValue)?;
        let filter = Self {
            origin: field(present & 1 != 0, id(1))?,
            subject: field(present & 2 != 0, id(3))?,
            action: field(present & 4 != 0, Action::decode(action))?,
            verdict: field(present & 8 != 0, Verdict::from_u8(bytes[10]))?,
        };
        // One encoding per filter: an absent field's bytes are zero, and an action's
        // unused bytes too (found by fuzzing: a filter with stray bytes decoded).
        if filter.encode() != *bytes {
            return Err(AuditDecodeError::BadValue);
        }
        Ok(filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(action: Action, verdict: Verdict) -> AuditRecord {
        AuditRecord {
            origin: ServiceId::Kernel,
            sequence: 7,
            event: AuditEvent {
                subject: ServiceId::Selftest,
                action,
                verdict,
                reason: 0,
                detail: 0,
            },
        }
    }

    #[test]
    fn filter_round_trips_and_matches() {
        let sign = Action::Call {
            service: ServiceId::Keystored,
            code: crate::Operation::KeystoredSign.code(),
        };
        let filter = AuditFilter {
            origin: Some(ServiceId::Kernel),
            subject: Some(ServiceId::Selftest),
            action: Some(sign),
            verdict: Some(Verdict::Denied),
        };
        assert_eq!(AuditFilter::decode(&filter.encode()), Ok(filter));
        assert!(filter.matches(&record(sign, Verdict::Denied)));
        assert!(!filter.matches(&record(sign, Verdict::Allowed)));
        assert!(AuditFilter::default().matches(&record(Action::Health, Verdict::Failed)));
        let claim = AuditFilter {
            action: Some(Action::Claim(Capability::EntropyDevice)),
            ..AuditFilter::default()
        };
        assert_eq!(AuditFilter::decode(&claim.encode()), Ok(claim));
        for action in [
            Action::Syscall { number: 0x1234 },
            Action::Fault { cause: 13 },
            Action::Fault {
                cause: Action::WATCHDOG_CAUSE,
            },
            Action::Restart { generation: 2 },
        ] {
            let filter = AuditFilter {
                action: Some(action),
                ..AuditFilter::default()
            };
            assert_eq!(AuditFilter::decode(&filter.encode()), Ok(filter));
        }
    }

    #[test]
    fn records_round_trip_and_stray_bytes_are_refused() {
        let record = AuditRecord {
            origin: ServiceId::Logd,
            sequence: 0x0102_0304_0506_0708,
            event: AuditEvent {
                subject: ServiceId::Intruder,
                action: Action::Syscall { number: 2 },
                verdict: Verdict::Rejected,
                reason: 4,
                detail: 0xdead_beef,
            },
        };
        let bytes = record.encode();
        assert_eq!(AuditRecord::decode(&bytes), Ok(record));
        assert_eq!(
            AuditRecord::decode(&bytes[..23]),
            Err(AuditDecodeError::Length(23))
        );
        let mut bad = bytes;
        bad[0] = 0xee;
        assert_eq!(AuditRecord::decode(&bad), Err(AuditDecodeError::BadValue));
        let mut bad = bytes;
        bad[17] = 9;
        assert_eq!(AuditRecord::decode(&bad), Err(AuditDecodeError::BadValue));
        let mut health = AuditRecord {
            event: AuditEvent {
                action: Action::Health,
                ..record.event
            },
            ..record
        }
        .encode();
        health[14] = 1;
        assert_eq!(
            AuditRecord::decode(&health),
            Err(AuditDecodeError::BadValue),
            "an action's unused bytes are zero"
        );
    }

    #[test]
    fn a_filter_has_one_encoding() {
        // An absent action with bytes in its place (the fuzzer's first find).
        let stray = [1, 0, 0, 0, 0, 0, 0, 0, 0x4c, 0x4c, 0xd3];
        assert_eq!(AuditFilter::decode(&stray), Err(AuditDecodeError::BadValue));
        let mut health = AuditFilter {
            action: Some(Action::Health),
            ..AuditFilter::default()
        }
        .encode();
        health[9] = 1;
        assert_eq!(
            AuditFilter::decode(&health),
            Err(AuditDecodeError::BadValue)
        );
    }

    #[test]
    fn malformed_filters_are_errors() {
        assert_eq!(
            AuditFilter::decode(&[0; 3]),
            Err(AuditDecodeError::Length(3))
        );
        let mut bad = AuditFilter::default().encode();
        bad[0] = 0x10;
        assert_eq!(AuditFilter::decode(&bad), Err(AuditDecodeError::BadValue));
        let mut bad = AuditFilter::default().encode();
        bad[0] = 1;
        bad[1] = 0xee;
        assert_eq!(AuditFilter::decode(&bad), Err(AuditDecodeError::BadValue));
    }
}
