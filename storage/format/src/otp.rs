//! The device-unique secret: the first 32 bytes of sector 0 of the read-only OTP disk
//! (serial `otp0`), a stand-in for OTP fuses or eFuse. The rest of the sector is zero.
//!
//! Provisioning writes 32 bytes from a random source and zeros after them, so a sector
//! no provisioning could have written is refused rather than used as a key:
//!
//! - all 32 bytes `0x00` or all `0xff`: an unprogrammed or erased part (fuses read
//!   as one or the other, depending on the technology) ([`OtpError::Blank`]);
//! - any other pattern that repeats with a period of 1, 2, 4, 8 or 16 bytes
//!   (`0x55` everywhere, `DEADBEEF` eight times): a test pattern or a stuck
//!   programmer, never random output ([`OtpError::Pattern`]; the chance that 32 random
//!   bytes repeat with period 16 is 2^-128);
//! - anything but zeros after the secret: not this format ([`OtpError::Malformed`]).

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
    /// The secret is all `0x00` or all `0xff`: the part was never programmed, or was
    /// erased.
    Blank,
    /// The secret repeats a short pattern: no random source wrote it.
    Pattern,
    /// The bytes after the secret are not zero: not a sector provisioning wrote.
    Malformed,
    /// The disk is writable: an OTP part is read-only, and a writable one is not it.
    Writable,
}

/// Why `sector` is not one provisioning could have written, if it is not.
pub fn check_sector(sector: &[u8; SECTOR_SIZE]) -> Result<(), OtpError> {
    let (secret, rest) = sector.split_at(SECRET_LEN);
    if rest.iter().any(|&b| b != 0) {
        return Err(OtpError::Malformed);
    }
    if secret.iter().all(|&b| b == 0) || secret.iter().all(|&b| b == 0xff) {
        return Err(OtpError::Blank);
    }
    let repeats = |period: usize| secret.iter().skip(period).zip(secret).all(|(a, b)| a == b);
    if [1, 2, 4, 8, 16].into_iter().any(repeats) {
        return Err(OtpError::Pattern);
    }
    Ok(())
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
    let outcome = disk
        .read(0, &mut sector)
        .map_err(OtpError::Disk)
        .and_then(|()| check_sector(&sector))
        .map(|()| {
            SecretBytes::from_fill(|secret: &mut [u8; SECRET_LEN]| {
                secret.copy_from_slice(&sector[..SECRET_LEN]);
                Ok::<(), ()>(())
            })
            .expect("infallible fill")
        });
    sector.zeroize();
    outcome
}

/// The OTP disk image for `secret`: the secret, then zeros to one sector.
pub fn image(secret: &[u8; SECRET_LEN]) -> [u8; SECTOR_SIZE] {
    let mut sector = [0u8; SECTOR_SIZE];
    sector[..SECRET_LEN].copy_from_slice(secret);
    sector
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sector(secret: [u8; SECRET_LEN]) -> [u8; SECTOR_SIZE] {
        image(&secret)
    }

    #[test]
    fn only_what_provisioning_could_write_is_a_secret() {
        let mut random = [0u8; SECRET_LEN];
        for (i, byte) in random.iter_mut().enumerate() {
            *byte = (i as u8).wrapping_mul(151).wrapping_add(7);
        }
        assert_eq!(check_sector(&sector(random)), Ok(()));
        assert_eq!(check_sector(&sector([0; 32])), Err(OtpError::Blank));
        assert_eq!(
            check_sector(&sector([0xff; 32])),
            Err(OtpError::Blank),
            "erased"
        );
        for constant in [0x01, 0x55, 0xaa, 0xfe] {
            assert_eq!(
                check_sector(&sector([constant; 32])),
                Err(OtpError::Pattern)
            );
        }
        for period in [2usize, 4, 8, 16] {
            let pattern: [u8; SECRET_LEN] = core::array::from_fn(|i| random[i % period]);
            assert_eq!(
                check_sector(&sector(pattern)),
                Err(OtpError::Pattern),
                "period {period}"
            );
        }
        // One byte different breaks every period: a secret again.
        let mut almost = [0x55; SECRET_LEN];
        almost[31] = 0x56;
        assert_eq!(check_sector(&sector(almost)), Ok(()));
        let mut tail = sector(random);
        tail[SECTOR_SIZE - 1] = 1;
        assert_eq!(check_sector(&tail), Err(OtpError::Malformed));
    }
}
