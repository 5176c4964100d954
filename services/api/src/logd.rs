//! logd's wire format: `QUERY`.
//!
//! Request payload: an encoded [`ipc::AuditFilter`] (11 bytes). Reply payload
//! (16 bytes): `matched: u32`, `held: u32`, `dropped: u64`, where `dropped` counts
//! records lost to the bounds of the kernel's stream and of the journal together.

use ipc::{AuditFilter, Endpoint, Operation};

use crate::ClientError;

/// The answer to a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryReply {
    /// Records held that match the filter.
    pub matched: u32,
    /// Records held in all.
    pub held: u32,
    /// Records dropped because a bound was reached (oldest first).
    pub dropped: u64,
}

impl QueryReply {
    /// Length of the encoding.
    pub const ENCODED_LEN: usize = 16;

    /// The wire encoding.
    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[..4].copy_from_slice(&self.matched.to_le_bytes());
        out[4..8].copy_from_slice(&self.held.to_le_bytes());
        out[8..].copy_from_slice(&self.dropped.to_le_bytes());
        out
    }

    /// Parses the wire encoding.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; Self::ENCODED_LEN] = bytes.try_into().ok()?;
        let (matched, rest) = bytes.split_first_chunk::<4>()?;
        let (held, dropped) = rest.split_first_chunk::<4>()?;
        Some(Self {
            matched: u32::from_le_bytes(*matched),
            held: u32::from_le_bytes(*held),
            dropped: u64::from_le_bytes(dropped.try_into().ok()?),
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
            dropped: 1 << 40,
        };
        assert_eq!(QueryReply::decode(&reply.encode()), Some(reply));
        assert_eq!(QueryReply::decode(&[0; 15]), None);
    }
}
