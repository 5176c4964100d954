//! The versioned IPC frame.
//!
//! Every request and reply is one frame (little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | version, currently [`VERSION`] = 1 |
//! | 1 | 1 | kind: 1 request, 2 reply, 3 error reply ([`FrameKind`]) |
//! | 2 | 2 | code: the [`Operation`](crate::Operation) of a request, 0 in a reply, the service's error code in an error reply |
//! | 4 | 2 | payload length `n` |
//! | 6 | `n` | payload, at most [`MAX_PAYLOAD`] bytes |
//!
//! A frame is valid only if its length is exactly `6 + n`. Decoding never panics: any
//! other input is a [`FrameError`].

use core::fmt;

use crate::buffer::IpcBuffer;

/// The frame format version this crate reads and writes.
pub const VERSION: u8 = 1;
/// Length of the header.
pub const HEADER_LEN: usize = 6;
/// The largest frame the kernel carries.
pub const MAX_FRAME: usize = 4096;
/// The largest payload of a frame.
pub const MAX_PAYLOAD: usize = MAX_FRAME - HEADER_LEN;

/// What a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// A request; `code` is the operation.
    Request = 1,
    /// A successful reply; `code` is 0.
    Reply = 2,
    /// A failed reply; `code` is the service's error code.
    Error = 3,
}

/// A decoded frame, borrowing its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Request, reply or error.
    pub kind: FrameKind,
    /// Operation, 0, or error code (see [`FrameKind`]).
    pub code: u16,
    /// The payload.
    pub payload: &'a [u8],
}

/// Why bytes are not a valid frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// Shorter than the header.
    Truncated {
        /// Bytes present.
        len: usize,
    },
    /// A version this crate does not read.
    UnsupportedVersion(u8),
    /// A kind byte that is not 1, 2 or 3.
    UnknownKind(u8),
    /// The header's payload length disagrees with the bytes present.
    LengthMismatch {
        /// Payload length in the header.
        declared: usize,
        /// Payload bytes present.
        actual: usize,
    },
    /// Longer than [`MAX_FRAME`].
    TooLong {
        /// Bytes present or requested.
        len: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { len } => write!(f, "frame of {len} bytes is shorter than its header"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported frame version {v}"),
            Self::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            Self::LengthMismatch { declared, actual } => {
                write!(
                    f,
                    "frame declares {declared} payload bytes but carries {actual}"
                )
            }
            Self::TooLong { len } => write!(f, "frame of {len} bytes exceeds {MAX_FRAME}"),
        }
    }
}

impl core::error::Error for FrameError {}

impl<'a> Frame<'a> {
    /// A request for `operation`.
    pub const fn request(operation: crate::Operation, payload: &'a [u8]) -> Self {
        Self {
            kind: FrameKind::Request,
            code: operation.code(),
            payload,
        }
    }

    /// A successful reply.
    pub const fn reply(payload: &'a [u8]) -> Self {
        Self {
            kind: FrameKind::Reply,
            code: 0,
            payload,
        }
    }

    /// A failed reply carrying a service error code.
    pub const fn error(code: u16) -> Self {
        Self {
            kind: FrameKind::Error,
            code,
            payload: &[],
        }
    }

    /// Parses a frame.
    ///
    /// # Errors
    /// A [`FrameError`] for anything that is not exactly one valid frame.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, FrameError> {
        if bytes.len() > MAX_FRAME {
            return Err(FrameError::TooLong { len: bytes.len() });
        }
        let Some((header, payload)) = bytes.split_first_chunk::<HEADER_LEN>() else {
            return Err(FrameError::Truncated { len: bytes.len() });
        };
        let [version, kind, code_lo, code_hi, len_lo, len_hi] = *header;
        if version != VERSION {
            return Err(FrameError::UnsupportedVersion(version));
        }
        let kind = match kind {
            1 => FrameKind::Request,
            2 => FrameKind::Reply,
            3 => FrameKind::Error,
            other => return Err(FrameError::UnknownKind(other)),
        };
        let declared = usize::from(u16::from_le_bytes([len_lo, len_hi]));
        if declared != payload.len() {
            return Err(FrameError::LengthMismatch {
                declared,
                actual: payload.len(),
            });
        }
        Ok(Self {
            kind,
            code: u16::from_le_bytes([code_lo, code_hi]),
            payload,
        })
    }

    /// Reads only the header, for routing: the kind and code of a frame that is
    /// otherwise valid.
    ///
    /// # Errors
    /// As [`Frame::decode`].
    pub fn peek(bytes: &[u8]) -> Result<(FrameKind, u16), FrameError> {
        Frame::decode(bytes).map(|frame| (frame.kind, frame.code))
    }

    /// Serialises the frame into a buffer that is wiped when dropped.
    ///
    /// # Errors
    /// [`FrameError::TooLong`] when the payload exceeds [`MAX_PAYLOAD`].
    pub fn encode(&self) -> Result<IpcBuffer, FrameError> {
        if self.payload.len() > MAX_PAYLOAD {
            return Err(FrameError::TooLong {
                len: HEADER_LEN + self.payload.len(),
            });
        }
        let len = u16::try_from(self.payload.len()).map_err(|_| FrameError::TooLong {
            len: self.payload.len(),
        })?;
        Ok(IpcBuffer::filled(HEADER_LEN + self.payload.len(), |out| {
            let (header, payload) = out.split_at_mut(HEADER_LEN);
            header[0] = VERSION;
            header[1] = self.kind as u8;
            header[2..4].copy_from_slice(&self.code.to_le_bytes());
            header[4..6].copy_from_slice(&len.to_le_bytes());
            payload.copy_from_slice(self.payload);
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Operation;
    use alloc::vec;

    #[test]
    fn round_trip() {
        let bytes = Frame::request(Operation::RngdGetEntropy, &[32, 0])
            .encode()
            .unwrap();
        assert_eq!(bytes, [1u8, 1, 0x01, 0x02, 2, 0, 32, 0]);
        let frame = Frame::decode(&bytes).unwrap();
        assert_eq!(frame, Frame::request(Operation::RngdGetEntropy, &[32, 0]));
        assert_eq!(Frame::peek(&bytes), Ok((FrameKind::Request, 0x0201)));
    }

    #[test]
    fn every_malformed_shape_is_an_error() {
        assert_eq!(Frame::decode(&[]), Err(FrameError::Truncated { len: 0 }));
        assert_eq!(
            Frame::decode(&[1, 1, 0]),
            Err(FrameError::Truncated { len: 3 })
        );
        assert_eq!(
            Frame::decode(&[2, 1, 0, 0, 0, 0]),
            Err(FrameError::UnsupportedVersion(2))
        );
        assert_eq!(
            Frame::decode(&[1, 9, 0, 0, 0, 0]),
            Err(FrameError::UnknownKind(9))
        );
        assert_eq!(
            Frame::decode(&[1, 1, 0, 0, 3, 0, 1]),
            Err(FrameError::LengthMismatch {
                declared: 3,
                actual: 1
            })
        );
        assert_eq!(
            Frame::decode(&[1, 1, 0, 0, 0, 0, 7]),
            Err(FrameError::LengthMismatch {
                declared: 0,
                actual: 1
            })
        );
        assert_eq!(
            Frame::decode(&vec![0; MAX_FRAME + 1]),
            Err(FrameError::TooLong { len: MAX_FRAME + 1 })
        );
        assert!(Frame::reply(&vec![0; MAX_PAYLOAD + 1]).encode().is_err());
        assert!(Frame::reply(&vec![0; MAX_PAYLOAD]).encode().is_ok());
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics() {
        // Every 0..=7-byte input over a small alphabet, plus header-shaped prefixes.
        let alphabet = [0u8, 1, 2, 3, 0xff];
        let mut input = [0u8; 7];
        for len in 0..=input.len() {
            let combos = alphabet.len().pow(len as u32);
            for mut n in 0..combos {
                for byte in input.iter_mut().take(len) {
                    *byte = alphabet[n % alphabet.len()];
                    n /= alphabet.len();
                }
                let _ = Frame::decode(&input[..len]);
            }
        }
    }
}
