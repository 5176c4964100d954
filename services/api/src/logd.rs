//! logd's wire format: `QUERY`.
//!
//! Request payload: an encoded [`ipc::AuditFilter`] (11 bytes). Reply payload
//! (32 bytes, little-endian): `matched: u32`, `held: u32`, `kernel_lost: u64`,
//! `task_lost: u64`, `evicted: u64`.
//!
//! - `kernel_lost`: kernel records the kernel's stream dropped before logd took them.
//!   Anything but 0 means the audit trail is incomplete.
//! - `task_lost`: records of tasks that exceeded their own quota in the stream.
//! - `evicted`: records the journal retired to stay within its bounds (retention).

use ipc::{AuditFilter, Endpoint, Operation};

use crate::ClientError;

/// The answer to a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryReply {
    /// Records held that match the filter.
    pub matched: u32,
    /// Records held in all.
    pub held: u32,
    /// Kernel records lost before logd saw them.
    pub kernel_lost: u64,
    /// Task records lost before logd saw them (each to its writer's own quota).
    pub task_lost: u64,
    /// Records retired by the journal's bounds.
    pub evicted: u64,
}

impl QueryReply {
    /// Length of the encoding.
    pub const ENCODED_LEN: usize = 32;

    /// The wire encoding.
    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[..4].copy_from_slice(&self.matched.to_le_bytes());
        out[4..8].copy_from_slice(&self.held.to_le_bytes());
        out[8..16].copy_from_slice(&self.kernel_lost.to_le_bytes());
        out[16..24].copy_from_slice(&self.task_lost.to_le_bytes());
        out[24..].copy_from_slice(&self.evicted.to_le_bytes());
        out
    }

    /// Parses the wire encoding.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; Self::ENCODED_LEN] = bytes.try_into().ok()?;
        let u32_at = |at: usize| bytes[at..at + 4].try_into().ok().map(u32::from_le_bytes);
        let u64_at = |at: usize| bytes[at..at + 8].try_into().ok().map(u64::from_le_bytes);
        Some(Self {
            matched: u32_at(0)?,
            held: u32_at(4)?,
            kernel_lost: u64_at(8)?,
            task_lost: u64_at(16)?,
            evicted: u64_at(24)?,
        })
    }
}

/// Asks logd how many journal records match `filter`.
///
/// # Errors
/// [`ClientError`].
pub async fn query<E: Endpoint>(ep: &E, filter: &AuditFilter) -> Result<QueryReply, ClientError> {
    let reply = crate::call(ep, Operation::LogdQuery, &filter.encode()).await?;
    QueryReply::decode(&reply).ok_or(ClientError::MalformedReply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_round_trips() {
        let reply = QueryReply {
            matched: 3,
            held: 10,
            kernel_lost: 1 << 40,
            task_lost: 7,
            evicted: u64::MAX,
        };
        assert_eq!(QueryReply::decode(&reply.encode()), Some(reply));
        assert_eq!(QueryReply::decode(&[0; 31]), None);
    }
}
