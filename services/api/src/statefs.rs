//! statefs's wire format. Records belong to the caller: the kernel-stamped sender is
//! the namespace, so a task names only its own records and cannot reach another's.
//!
//! - `PUT`: payload: `record id: u16`, then the record, at most [`MAX_RECORD`] bytes;
//!   reply empty. The record is on the disk (written and flushed) when the reply comes.
//! - `GET`: payload: `record id: u16`; reply: the record.
//! - `DELETE`: payload: `record id: u16`; reply empty.
//!
//! Errors: `NotFound` (the record is provably absent), `Corrupt` (it, or damage that
//! could be it, fails its check), `Full` (no free entry, or the caller holds
//! [`MAX_RECORDS`] records), `RequestTooLarge`, `MalformedRequest`, `Unavailable` (no
//! state disk, or the disk failed).

use ipc::{Endpoint, IpcBuffer, Operation};

use crate::{ClientError, ServiceError};

/// The longest record.
pub const MAX_RECORD: usize = 1024;
/// The most records one caller holds.
pub const MAX_RECORDS: usize = 8;

/// keystored's record: the sealed device-key seed.
pub const KEYSTORED_DEVICE_KEY: u16 = 1;
/// keystored's record: the sealed pairing verifier (`state_format::pairing`), written by
/// the factory.
pub const KEYSTORED_PAIRING_VERIFIER: u16 = 2;
/// keystored's record: pairing's failed-attempt count.
pub const KEYSTORED_PAIRING_ATTEMPTS: u16 = 3;
/// dsoftbusd's record: the trust store.
pub const DSOFTBUSD_TRUST_STORE: u16 = 1;

/// Decodes a request payload into the record id and the rest.
///
/// # Errors
/// `MalformedRequest` without a record id, `RequestTooLarge` above [`MAX_RECORD`].
pub fn decode_request(payload: &[u8]) -> Result<(u16, &[u8]), ServiceError> {
    let (id, rest) = payload
        .split_first_chunk::<2>()
        .ok_or(ServiceError::MalformedRequest)?;
    if rest.len() > MAX_RECORD {
        return Err(ServiceError::RequestTooLarge);
    }
    Ok((u16::from_le_bytes(*id), rest))
}

fn request(id: u16, record: &[u8]) -> alloc::vec::Vec<u8> {
    let mut payload = alloc::vec::Vec::with_capacity(2 + record.len());
    payload.extend_from_slice(&id.to_le_bytes());
    payload.extend_from_slice(record);
    payload
}

/// Stores `record` as the caller's record `id`.
///
/// # Errors
/// [`ClientError`].
pub async fn put<E: Endpoint>(ep: &E, id: u16, record: &[u8]) -> Result<(), ClientError> {
    crate::call(ep, Operation::StatefsPut, &request(id, record))
        .await
        .map(|_| ())
}

/// Reads the caller's record `id`.
///
/// # Errors
/// [`ClientError`].
pub async fn get<E: Endpoint>(ep: &E, id: u16) -> Result<IpcBuffer, ClientError> {
    crate::call(ep, Operation::StatefsGet, &id.to_le_bytes()).await
}

/// Deletes the caller's record `id`.
///
/// # Errors
/// [`ClientError`].
pub async fn delete<E: Endpoint>(ep: &E, id: u16) -> Result<(), ClientError> {
    crate::call(ep, Operation::StatefsDelete, &id.to_le_bytes())
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_a_record_and_are_bounded() {
        assert_eq!(decode_request(&request(7, b"abc")), Ok((7, &b"abc"[..])));
        assert_eq!(decode_request(&[1]), Err(ServiceError::MalformedRequest));
        assert_eq!(
            decode_request(&request(1, &[0; MAX_RECORD + 1])),
            Err(ServiceError::RequestTooLarge)
        );
        assert!(decode_request(&request(1, &[0; MAX_RECORD])).is_ok());
    }
}
