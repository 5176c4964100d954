//! The one heap buffer that IPC bytes travel in: wiped when dropped.
//!
//! A reply frame can carry entropy (`GET_ENTROPY` serves the seeds of the device key,
//! of dsoftbusd's static key and of every ephemeral key), so every heap copy of a
//! frame or of a payload taken out of one lives in an [`IpcBuffer`]: the encoded
//! frame ([`Frame::encode`](crate::Frame::encode)), the kernel's queued request and
//! stored reply, what [`Endpoint::call`](crate::Endpoint::call) returns and what a
//! client splits out of it. An `IpcBuffer` is allocated at its final length and never
//! grows, so no reallocation can leave an unwiped copy behind; on drop every byte of
//! its allocation is overwritten with zeros before it is freed.
//!
//! `Debug` prints the length only.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Deref;

use zeroize::Zeroize;

/// Bytes on the heap, at a fixed length, zeroized before the allocation is freed.
#[derive(Clone, PartialEq, Eq)]
pub struct IpcBuffer(Vec<u8>);

impl IpcBuffer {
    /// A copy of `bytes`, allocated at exactly their length.
    pub fn copy_from(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }

    /// `len` bytes written in place by `fill`, which gets the zeroed buffer.
    pub fn filled(len: usize, fill: impl FnOnce(&mut [u8])) -> Self {
        let mut buffer = Self(vec![0; len]);
        fill(&mut buffer.0);
        buffer
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl Deref for IpcBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for IpcBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for IpcBuffer {
    fn drop(&mut self) {
        // Zeroes the elements and the spare capacity, then the allocation is freed.
        self.0.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for IpcBuffer {}

impl fmt::Debug for IpcBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IpcBuffer({} bytes)", self.0.len())
    }
}

impl PartialEq<[u8]> for IpcBuffer {
    fn eq(&self, other: &[u8]) -> bool {
        self.0 == other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for IpcBuffer {
    fn eq(&self, other: &[u8; N]) -> bool {
        self.0 == other
    }
}

impl PartialEq<&[u8]> for IpcBuffer {
    fn eq(&self, other: &&[u8]) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn copies_at_exact_length_and_prints_no_bytes() {
        let buffer = IpcBuffer::copy_from(&[0xab; 5]);
        assert_eq!(buffer.len(), 5);
        assert_eq!(buffer.0.capacity(), 5);
        assert_eq!(format!("{buffer:?}"), "IpcBuffer(5 bytes)");
        let filled = IpcBuffer::filled(3, |b| b.copy_from_slice(&[1, 2, 3]));
        assert_eq!(filled, [1u8, 2, 3]);
    }
}
