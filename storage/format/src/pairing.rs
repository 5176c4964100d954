//! Pairing's state on the device: the setup code's rules, the sealed verifier record
//! (keystored's record [`VERIFIER_RECORD_ID`]) and the failed-attempt count (keystored's
//! record [`ATTEMPTS_RECORD_ID`]). Specified in `docs/state-disk.md`; the protocol that
//! uses them is `docs/protocol.md`, section 11.
//!
//! **The setup code** is an 8-digit number, printed once by the factory on the
//! device's label (`1234-5678`) and stored nowhere on the device. Its value is at most
//! 99,999,998 (27 bits, as Matter's passcode), not 0, and none of the codes a person
//! would guess first ([`SetupCode::TRIVIAL`]: eight equal digits, `12345678`,
//! `87654321`), which Matter refuses too.
//!
//! **The verifier** is what the device needs to check a peer's knowledge of the code,
//! without the code: SPAKE2+'s `w0` and `L = w1·P`, from PBKDF2-HMAC-SHA256 of the code
//! with a per-device salt. It is sealed (the sealed-record format of [`crate::sealed`],
//! record id 2) with the image's AEAD under a key derived from the OTP secret, so a
//! copy of the state disk gives neither the verifier nor a way to test guesses of the
//! code against it (27 bits would fall to any password hash).

use ipc::RawBlockDevice;
use provider_api::pake::{PAKE_PBKDF_OUTPUT_LEN, PAKE_RECORD_LEN, PakeBackend};
use provider_api::{AeadBackend, HashBackend, SecretBytes};
use zeroize::Zeroize;

use crate::sealed::{SealingKeys, seal};
use crate::store::{RecordKey, RecordStore, StoreError};

/// keystored's record id of the sealed verifier.
pub const VERIFIER_RECORD_ID: u16 = 2;
/// keystored's record id of the failed-attempt count.
pub const ATTEMPTS_RECORD_ID: u16 = 3;
/// The sealed verifier in the record store.
pub const VERIFIER_RECORD: RecordKey = RecordKey {
    owner: ipc::ServiceId::Keystored as u16,
    id: VERIFIER_RECORD_ID,
};
/// The failed-attempt count in the record store.
pub const ATTEMPTS_RECORD: RecordKey = RecordKey {
    owner: ipc::ServiceId::Keystored as u16,
    id: ATTEMPTS_RECORD_ID,
};

/// PBKDF2 rounds the factory uses (Matter's floor). What protects the code is the
/// sealing, not the rounds: a 27-bit code falls to any count once the verifier is
/// known (decision 0015 gives the cost of each choice).
pub const ITERATIONS: u32 = 1_000;
/// The fewest rounds a device accepts in its record (Matter's range is 1,000 to
/// 100,000).
pub const MIN_ITERATIONS: u32 = 1_000;
/// The most rounds a device accepts in its record.
pub const MAX_ITERATIONS: u32 = 100_000;
/// The salt's length (Matter takes 16 to 32 bytes).
pub const SALT_LEN: usize = 16;
/// The sealed plaintext: iterations (4 bytes, little-endian), salt, `w0 || L`.
pub const VERIFIER_PLAINTEXT_LEN: usize = 4 + SALT_LEN + PAKE_RECORD_LEN;
/// Failed attempts after which the device accepts no pairing until a trusted peer
/// reopens it (Matter closes its window after 20).
pub const MAX_FAILED_ATTEMPTS: u16 = 20;

/// A setup code: an 8-digit number the device's label carries.
#[derive(Clone, PartialEq, Eq)]
pub struct SetupCode(u32);

/// Why a setup code was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupCodeError {
    /// Not 8 decimal digits (a dash after the fourth is allowed).
    Malformed,
    /// 0 or above 99,999,998.
    OutOfRange,
    /// One of [`SetupCode::TRIVIAL`].
    Trivial,
}

impl core::fmt::Display for SetupCodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Malformed => "a setup code is 8 digits, such as 1234-5678",
            Self::OutOfRange => "a setup code is between 00000001 and 99999998",
            Self::Trivial => "that setup code is one of the first a person would guess",
        })
    }
}

impl SetupCode {
    /// The largest code.
    pub const MAX: u32 = 99_999_998;
    /// Codes refused: eight equal digits, and the two runs.
    pub const TRIVIAL: [u32; 12] = [
        0, 11_111_111, 22_222_222, 33_333_333, 44_444_444, 55_555_555, 66_666_666, 77_777_777,
        88_888_888, 99_999_999, 12_345_678, 87_654_321,
    ];

    /// The code `value`.
    ///
    /// # Errors
    /// [`SetupCodeError::OutOfRange`], [`SetupCodeError::Trivial`].
    pub fn new(value: u32) -> Result<Self, SetupCodeError> {
        if Self::TRIVIAL.contains(&value) {
            return Err(SetupCodeError::Trivial);
        }
        if value == 0 || value > Self::MAX {
            return Err(SetupCodeError::OutOfRange);
        }
        Ok(Self(value))
    }

    /// Parses `1234-5678` or `12345678`.
    ///
    /// # Errors
    /// [`SetupCodeError`].
    pub fn parse(text: &str) -> Result<Self, SetupCodeError> {
        let bytes = text.as_bytes();
        let digits: [u8; 8] = match bytes.len() {
            8 => bytes.try_into().map_err(|_| SetupCodeError::Malformed)?,
            9 if bytes[4] == b'-' => {
                let mut digits = [0u8; 8];
                digits[..4].copy_from_slice(&bytes[..4]);
                digits[4..].copy_from_slice(&bytes[5..]);
                digits
            }
            _ => return Err(SetupCodeError::Malformed),
        };
        let mut value = 0u32;
        for digit in digits {
            if !digit.is_ascii_digit() {
                return Err(SetupCodeError::Malformed);
            }
            value = value * 10 + u32::from(digit - b'0');
        }
        Self::new(value)
    }

    /// A code from random 32-bit words: the first whose low 27 bits make a valid code
    /// (three in four do). `None` only if all of `words` were refused.
    pub fn from_random(words: impl IntoIterator<Item = u32>) -> Option<Self> {
        words
            .into_iter()
            .find_map(|word| Self::new(word & 0x07ff_ffff).ok())
    }

    /// The 8 ASCII digits.
    pub fn digits(&self) -> [u8; 8] {
        let mut digits = [b'0'; 8];
        let mut value = self.0;
        for digit in digits.iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
        digits
    }

    /// As a label prints it: `1234-5678`.
    pub fn label(&self) -> [u8; 9] {
        let digits = self.digits();
        let mut label = [b'-'; 9];
        label[..4].copy_from_slice(&digits[..4]);
        label[5..].copy_from_slice(&digits[4..]);
        label
    }

    /// The password hash's input (RFC 9383): `len(pw) || pw || len(idProver) ||
    /// idProver || len(idVerifier) || idVerifier`, each length 8 bytes little-endian,
    /// `pw` the 8 ASCII digits, both identities empty.
    pub fn password_input(&self) -> SecretBytes<32> {
        let mut input = SecretBytes::zeroed();
        let bytes = input.expose_secret_mut();
        bytes[..8].copy_from_slice(&8u64.to_le_bytes());
        let mut digits = self.digits();
        bytes[8..16].copy_from_slice(&digits);
        digits.zeroize();
        input
    }

    /// The password hash's output for this code with `salt` and `iterations`.
    pub fn pbkdf_output<B: PakeBackend>(
        &self,
        salt: &[u8; SALT_LEN],
        iterations: u32,
    ) -> SecretBytes<PAKE_PBKDF_OUTPUT_LEN> {
        B::password_hash(self.password_input().expose_secret(), salt, iterations)
    }
}

impl Drop for SetupCode {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl core::fmt::Debug for SetupCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SetupCode(..)")
    }
}

/// The verifier as keystored holds it once unsealed.
pub struct Verifier {
    /// PBKDF2 rounds, which a prover needs.
    pub iterations: u32,
    /// The salt, which a prover needs.
    pub salt: [u8; SALT_LEN],
    /// `w0 || L`.
    pub record: SecretBytes<PAKE_RECORD_LEN>,
}

/// Why a verifier's plaintext was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifierError {
    /// Not [`VERIFIER_PLAINTEXT_LEN`] bytes.
    Length,
    /// Rounds outside [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`].
    Iterations,
}

impl Verifier {
    /// The verifier for `code`, with `salt` and `iterations` (the factory's side).
    ///
    /// # Errors
    /// [`provider_api::PakeError::InvalidSecret`] (a password hash that gives a zero
    /// scalar: never for a real one).
    pub fn register<B: PakeBackend>(
        code: &SetupCode,
        salt: [u8; SALT_LEN],
        iterations: u32,
    ) -> Result<Self, provider_api::PakeError> {
        let output = code.pbkdf_output::<B>(&salt, iterations);
        Ok(Self {
            iterations,
            salt,
            record: B::record_from_pbkdf_output(&output)?,
        })
    }

    /// The plaintext to seal.
    pub fn to_plaintext(&self) -> SecretBytes<VERIFIER_PLAINTEXT_LEN> {
        let mut out = SecretBytes::zeroed();
        let bytes = out.expose_secret_mut();
        bytes[..4].copy_from_slice(&self.iterations.to_le_bytes());
        bytes[4..4 + SALT_LEN].copy_from_slice(&self.salt);
        bytes[4 + SALT_LEN..].copy_from_slice(self.record.expose_secret());
        out
    }

    /// The verifier from an unsealed plaintext. The record itself is checked by the
    /// PAKE when a run starts.
    ///
    /// # Errors
    /// [`VerifierError`].
    pub fn from_plaintext(plaintext: &[u8]) -> Result<Self, VerifierError> {
        if plaintext.len() != VERIFIER_PLAINTEXT_LEN {
            return Err(VerifierError::Length);
        }
        let iterations =
            u32::from_le_bytes([plaintext[0], plaintext[1], plaintext[2], plaintext[3]]);
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(VerifierError::Iterations);
        }
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&plaintext[4..4 + SALT_LEN]);
        let mut record = SecretBytes::zeroed();
        record
            .expose_secret_mut()
            .copy_from_slice(&plaintext[4 + SALT_LEN..]);
        Ok(Self {
            iterations,
            salt,
            record,
        })
    }
}

/// Why the factory could not provision a setup code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProvisionError {
    /// The password hash gave a zero scalar (never for a real hash).
    Pake(provider_api::PakeError),
    /// The record store refused a record.
    Store(StoreError),
}

impl core::fmt::Display for ProvisionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Pake(error) => write!(f, "verifier: {error}"),
            Self::Store(error) => write!(f, "record store: {error}"),
        }
    }
}

/// What the factory does to give a device its setup code: the verifier for `code`
/// (with `salt` and `iterations`) sealed under the device's OTP-derived key for record
/// [`VERIFIER_RECORD_ID`] with the image's AEAD `A` and hash `H` and a fresh `nonce`,
/// stored; and the failed-attempt count set to 0. The code itself is not stored.
///
/// # Errors
/// [`ProvisionError`].
pub fn provision<K: PakeBackend, A: AeadBackend, H: HashBackend, D: RawBlockDevice>(
    records: &mut RecordStore<D>,
    otp: &SecretBytes<32>,
    code: &SetupCode,
    salt: [u8; SALT_LEN],
    iterations: u32,
    nonce: &[u8; 12],
) -> Result<(), ProvisionError> {
    let verifier = Verifier::register::<K>(code, salt, iterations).map_err(ProvisionError::Pake)?;
    let keys = SealingKeys::derive::<H>(otp, VERIFIER_RECORD_ID);
    let sealed = seal::<A, H>(
        &keys,
        VERIFIER_RECORD_ID,
        1,
        nonce,
        verifier.to_plaintext().expose_secret(),
    );
    records
        .put(VERIFIER_RECORD, &sealed)
        .map_err(ProvisionError::Store)?;
    records
        .put(ATTEMPTS_RECORD, &encode_attempts(0))
        .map_err(ProvisionError::Store)
}

/// The failed-attempt record: `PAIR`, version 1, 0, the count (2 bytes, little-endian).
pub const ATTEMPTS_LEN: usize = 8;

/// The failed-attempt record holding `failed`.
pub fn encode_attempts(failed: u16) -> [u8; ATTEMPTS_LEN] {
    let mut out = [0u8; ATTEMPTS_LEN];
    out[..4].copy_from_slice(b"PAIR");
    out[4] = 1;
    out[6..8].copy_from_slice(&failed.to_le_bytes());
    out
}

/// The count in a failed-attempt record; `None` when it is not one (keystored then
/// counts the limit as reached: it never reads a damaged count as zero).
pub fn decode_attempts(record: &[u8]) -> Option<u16> {
    if record.len() != ATTEMPTS_LEN || record[..4] != *b"PAIR" || record[4] != 1 || record[5] != 0 {
        return None;
    }
    Some(u16::from_le_bytes([record[6], record[7]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_codes_refuse_the_trivial_the_out_of_range_and_the_malformed() {
        for trivial in SetupCode::TRIVIAL {
            assert_eq!(SetupCode::new(trivial).err(), Some(SetupCodeError::Trivial));
        }
        assert_eq!(
            SetupCode::new(SetupCode::MAX + 2).err(),
            Some(SetupCodeError::OutOfRange)
        );
        assert_eq!(
            SetupCode::parse("1234-5678").err(),
            Some(SetupCodeError::Trivial)
        );
        assert_eq!(
            SetupCode::parse("00000000").err(),
            Some(SetupCodeError::Trivial)
        );
        for malformed in [
            "",
            "1234567",
            "123456789",
            "1234_5678",
            "12-345678",
            "1234-567a",
            "１２３４５６７８",
        ] {
            assert_eq!(
                SetupCode::parse(malformed).err(),
                Some(SetupCodeError::Malformed),
                "{malformed}"
            );
        }
        let code = SetupCode::parse("2020-2021").unwrap();
        assert_eq!(&code.digits(), b"20202021");
        assert_eq!(&code.label(), b"2020-2021");
        assert_eq!(SetupCode::parse("20202021").unwrap(), code);
        assert_eq!(&SetupCode::new(1).unwrap().label(), b"0000-0001");
        assert_eq!(alloc::format!("{code:?}"), "SetupCode(..)");
    }

    #[test]
    fn random_codes_take_the_first_valid_word() {
        // 0x07ff_ffff is above the maximum; the low 27 bits of the next are 12345678
        // (trivial); then 20202021.
        let words = [
            0x07ff_ffff,
            0xf800_0000 | 12_345_678,
            0xf800_0000 | 20_202_021,
        ];
        assert_eq!(
            SetupCode::from_random(words),
            Some(SetupCode::new(20_202_021).unwrap())
        );
        assert_eq!(SetupCode::from_random([0u32; 4]), None);
    }

    #[test]
    fn the_password_input_is_rfc9383s_with_empty_identities() {
        let input = SetupCode::new(20_202_021).unwrap().password_input();
        let mut expected = [0u8; 32];
        expected[0] = 8;
        expected[8..16].copy_from_slice(b"20202021");
        assert_eq!(input.expose_secret(), &expected);
    }

    #[test]
    fn the_attempt_record_reads_back_and_refuses_anything_else() {
        for count in [0, 1, MAX_FAILED_ATTEMPTS, u16::MAX] {
            assert_eq!(decode_attempts(&encode_attempts(count)), Some(count));
        }
        let mut bad = encode_attempts(3);
        bad[4] = 2;
        assert_eq!(decode_attempts(&bad), None);
        assert_eq!(decode_attempts(&encode_attempts(3)[..7]), None);
        assert_eq!(decode_attempts(b"TRST\x01\x00\x03\x00"), None);
    }

    #[test]
    fn verifier_plaintext_round_trips_and_bounds_the_rounds() {
        let mut record = SecretBytes::zeroed();
        record.expose_secret_mut()[0] = 9;
        let verifier = Verifier {
            iterations: ITERATIONS,
            salt: [7; SALT_LEN],
            record,
        };
        let plaintext = verifier.to_plaintext();
        let back = Verifier::from_plaintext(plaintext.expose_secret()).unwrap();
        assert_eq!(back.iterations, ITERATIONS);
        assert_eq!(back.salt, [7; SALT_LEN]);
        assert_eq!(back.record.expose_secret(), verifier.record.expose_secret());
        let mut bytes = *plaintext.expose_secret();
        bytes[..4].copy_from_slice(&999u32.to_le_bytes());
        assert_eq!(
            Verifier::from_plaintext(&bytes).err(),
            Some(VerifierError::Iterations)
        );
        bytes[..4].copy_from_slice(&100_001u32.to_le_bytes());
        assert_eq!(
            Verifier::from_plaintext(&bytes).err(),
            Some(VerifierError::Iterations)
        );
        assert_eq!(
            Verifier::from_plaintext(&bytes[1..]).err(),
            Some(VerifierError::Length)
        );
    }
}
