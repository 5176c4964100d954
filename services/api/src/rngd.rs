//! rngd's wire format: `GET_ENTROPY`.
//!
//! Request payload: `n: u16`, with `1 <= n <= MAX_REQUEST`. Reply payload: exactly `n`
//! bytes of health-tested entropy. Errors: `EmptyRequest` (`n = 0`),
//! `RequestTooLarge` (`n > MAX_REQUEST`), `MalformedRequest` (a payload that is not
//! two bytes), `Unavailable` (no device, or it failed), `HealthTestFailed`.

use ipc::{Endpoint, IpcBuffer, Operation};

use crate::{ClientError, ServiceError};

/// The largest request rngd serves: the provider API's entropy bound.
pub const MAX_REQUEST: usize = provider_api::MAX_ENTROPY_REQUEST;

/// Encodes a request for `n` bytes.
pub fn encode_request(n: u16) -> [u8; 2] {
    n.to_le_bytes()
}

/// Decodes a request, checking the bounds.
///
/// # Errors
/// The [`ServiceError`] rngd answers with.
pub fn decode_request(payload: &[u8]) -> Result<usize, ServiceError> {
    let bytes: [u8; 2] = payload
        .try_into()
        .map_err(|_| ServiceError::MalformedRequest)?;
    match usize::from(u16::from_le_bytes(bytes)) {
        0 => Err(ServiceError::EmptyRequest),
        n if n > MAX_REQUEST => Err(ServiceError::RequestTooLarge),
        n => Ok(n),
    }
}

/// Asks rngd for `n` bytes. The reply is wiped when dropped.
///
/// # Errors
/// [`ClientError`]; a reply of the wrong length is [`ClientError::MalformedReply`].
pub async fn get_entropy<E: Endpoint>(ep: &E, n: u16) -> Result<IpcBuffer, ClientError> {
    let reply = crate::call(ep, Operation::RngdGetEntropy, &encode_request(n)).await?;
    if reply.len() == usize::from(n) {
        Ok(reply)
    } else {
        Err(ClientError::MalformedReply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bounds() {
        assert_eq!(decode_request(&encode_request(1)), Ok(1));
        assert_eq!(decode_request(&encode_request(256)), Ok(256));
        assert_eq!(
            decode_request(&encode_request(0)),
            Err(ServiceError::EmptyRequest)
        );
        assert_eq!(
            decode_request(&encode_request(257)),
            Err(ServiceError::RequestTooLarge)
        );
        assert_eq!(decode_request(&[1]), Err(ServiceError::MalformedRequest));
        assert_eq!(
            decode_request(&[1, 0, 0]),
            Err(ServiceError::MalformedRequest)
        );
    }
}
