//! The device-unique secret: the first 32 bytes of sector 0 of the read-only OTP disk
//! (serial `otp0`), a stand-in for OTP fuses or eFuse. The rest of the sector is zero.
//! An all-zero secret is an unprogrammed part and is refused.

use ipc::{DeviceError, RawBlockDevice, SECTOR_SIZE};
use provider_api::SecretBytes;
use zeroize::Zeroize;

/// Length of the secret.
pub const SECRET_LEN: usize = 32;

/// Why the OTP disk gives no secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtpError {
    /// The disk could not be read.
    Disk(DeviceError),
    /// The secret is all zero: the part was never programmed.
    Blank,
    /// The disk is writable: an OTP part is read-only, and a writable one is not it.
    Writable,
}

/// Reads the secret from the OTP disk. The sector buffer is wiped before returning.
///
/// # Errors
/// [`OtpError`].
pub fn read_secret<D: RawBlockDevice>(disk: &mut D) -> Result<SecretBytes<SECRET_LEN>, OtpError> {
    if !disk.readonly() {
        return Err(OtpError::Writable);
    }
    let mut sector = [0u8; SECTOR_SIZE];
    let read = disk.read(0, &mut sector).map_err(OtpError::Disk);
    let secret = read.map(|()| {
        SecretBytes::from_fill(|secret: &mut [u8; SECRET_LEN]| {
            secret.copy_from_slice(&sector[..SECRET_LEN]);
            Ok::<(), ()>(())
        })
    });
    sector.zeroize();
    match secret {
        Ok(Ok(secret)) if !secret.is_all_zero() => Ok(secret),
        Ok(_) => Err(OtpError::Blank),
        Err(error) => Err(error),
    }
}

/// The OTP disk image for `secret`: the secret, then zeros to one sector.
pub fn image(secret: &[u8; SECRET_LEN]) -> [u8; SECTOR_SIZE] {
    let mut sector = [0u8; SECTOR_SIZE];
    sector[..SECRET_LEN].copy_from_slice(secret);
    sector
}
