//! `cargo xtask provision`: the factory. It makes a node's disks (an OTP disk with a
//! random device secret, an empty state disk, a rollback counter at 0) and adds or
//! removes the peers the node trusts, writing the trust store exactly as the image
//! reads it (`state-format`): a record of dsoftbusd's in the record store, tagged with
//! a key derived from the OTP secret, at the counter's next value, after which it
//! advances the counter (`state_format::trust::provision`), so no store it replaced is
//! ever accepted again. It knows the OTP because it wrote it, and it programs the
//! counter as a factory programs fuses; a person holding only the state disk can do
//! neither.
//!
//! Every key is checked under provider-api's verification rule (a canonical point of
//! prime order) before it joins the store, and refused with the reason otherwise.
//!
//! `--setup-code` gives the node a setup code for pairing (`docs/protocol.md` section
//! 11): a random 8-digit code (or the one given), of which only the SPAKE2+ verifier
//! is stored, sealed under the node's OTP-derived key with the image's AEAD and hash
//! (`state_format::pairing::provision`); the code is printed once, as the label a
//! device carries, and stored nowhere. Provisioning it again replaces the verifier and
//! sets the failed-attempt count back to 0. A node without a trust store gets an empty
//! one with its code, so that the device's first pairing updates a record that exists
//! (docs/state-disk.md says why).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use ipc::{DeviceError, RawBlockDevice, SECTOR_SIZE, ServiceId};
use provider_api::{HashBackend, SecretBytes, SignatureError, VerifyingKey};
use service_api::statefs::DSOFTBUSD_TRUST_STORE;
use state_format::pairing::{self, SetupCode};
use state_format::store::{RecordKey, RecordStore, StoreError};
use state_format::trust::{self, MAX_PEERS, TagKey};

use crate::combination::Combination;
use crate::disks::DiskSet;

/// dsoftbusd's trust-store record.
const TRUST_STORE: RecordKey = RecordKey {
    owner: ServiceId::Dsoftbusd as u16,
    id: DSOFTBUSD_TRUST_STORE,
};
const _: () =
    assert!(TRUST_STORE.owner == trust::RECORD.owner && TRUST_STORE.id == trust::RECORD.id);

/// A disk image file as a block device, for the record store on the host.
pub struct FileDisk {
    file: File,
    sectors: u64,
}

impl FileDisk {
    /// Opens `path` for reading and writing.
    pub fn open(path: &Path) -> Result<Self, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let len = file
            .metadata()
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .len();
        Ok(Self {
            file,
            sectors: len / SECTOR_SIZE as u64,
        })
    }

    fn check(&self, sector: u64, len: usize) -> Result<u64, DeviceError> {
        let count = (len / SECTOR_SIZE) as u64;
        if len == 0
            || !len.is_multiple_of(SECTOR_SIZE)
            || sector.saturating_add(count) > self.sectors
        {
            return Err(DeviceError::BadRequest);
        }
        Ok(sector * SECTOR_SIZE as u64)
    }
}

impl RawBlockDevice for FileDisk {
    fn sectors(&self) -> u64 {
        self.sectors
    }
    fn readonly(&self) -> bool {
        false
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        let at = self.check(sector, buf.len())?;
        self.file
            .read_exact_at(buf, at)
            .map_err(|_| DeviceError::Failed)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), DeviceError> {
        let at = self.check(sector, buf.len())?;
        self.file
            .write_all_at(buf, at)
            .map_err(|_| DeviceError::Failed)
    }
    fn flush(&mut self) -> Result<(), DeviceError> {
        self.file.sync_data().map_err(|_| DeviceError::Failed)
    }
}

/// The hash the image derives its keys with (the trust-store tag follows it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    /// BLAKE2s, the hash of today's images.
    Blake2s,
    /// SHA-256.
    Sha256,
}

impl Hash {
    /// The hash of `combination`'s image: its trust store must be tagged with it.
    pub fn of(combination: &Combination) -> Result<Self, String> {
        match combination.hash {
            "blake2s" => Ok(Self::Blake2s),
            "sha256" => Ok(Self::Sha256),
            other => Err(format!("provisioning knows no hash `{other}`")),
        }
    }
}

/// `cargo xtask provision`'s arguments.
#[derive(clap::Args, Clone, Debug)]
pub struct ProvisionOptions {
    /// The node's directory: `state.img` and `otp.img`, created when missing.
    #[arg(long, env = "STATE_DIR")]
    pub state_dir: PathBuf,
    /// Trust this peer's Ed25519 device public key (64 hex digits); repeatable.
    #[arg(long = "trust", value_name = "HEX")]
    pub trust: Vec<String>,
    /// Stop trusting this key; repeatable.
    #[arg(long = "untrust", value_name = "HEX")]
    pub untrust: Vec<String>,
    /// The combination whose image will boot these disks: the trust store is
    /// tagged with its Noise hash (an image refuses a store tagged with another).
    #[arg(long, env = "PROVIDER", default_value = "dalek+chacha")]
    pub provider: String,
    /// Give the node a setup code for pairing: a random one, or the one given
    /// (`1234-5678`). Printed once, as the device's label; only its verifier is stored.
    #[arg(long, value_name = "CODE", num_args = 0..=1, default_missing_value = "random")]
    pub setup_code: Option<String>,
}

/// What provisioning did.
#[derive(Debug)]
pub struct Provisioned {
    /// The peers the node trusts now.
    pub peers: Vec<[u8; 32]>,
    /// The setup code given to the node, to print once.
    pub setup_code: Option<SetupCode>,
    /// With a setup code: text that must never appear in the node's console, in the
    /// forms a leak would take (the code's digits and label, the verifier's `w0` and
    /// `L` in hex).
    pub never_logged: Vec<String>,
}

/// The code to provision: the one given, or a random one.
fn setup_code(given: &str) -> Result<SetupCode, String> {
    if given != "random" {
        return SetupCode::parse(given).map_err(|e| format!("--setup-code {given:?}: {e}"));
    }
    let words = crate::disks::urandom::<256>()?;
    SetupCode::from_random(
        words
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes(w.try_into().expect("4 bytes"))),
    )
    .ok_or_else(|| "64 random words gave no valid setup code".to_string())
}

/// Seals the verifier of `code` on the node's state disk with the image's AEAD.
fn provision_code<H: HashBackend>(
    options: &ProvisionOptions,
    disks: &DiskSet,
    code: &SetupCode,
) -> Result<Vec<String>, String> {
    let otp = otp_secret(disks.otp.as_deref().ok_or("no OTP disk")?)?;
    let state = disks.state.as_deref().ok_or("no state disk")?;
    let mut store = RecordStore::open(FileDisk::open(state)?)
        .map_err(|e| format!("{}: {e}", state.display()))?;
    let combination = Combination::parse(&options.provider).ok_or("no single combination")?;
    let algorithm = provider_select::aead_algorithm(combination.aead)
        .ok_or_else(|| format!("no AEAD backend named {:?}", combination.aead))?;
    let salt = crate::disks::urandom::<{ pairing::SALT_LEN }>()?;
    let nonce = crate::disks::urandom::<12>()?;
    type Pake = provider_select::SelectedPake;
    let sealed =
        match algorithm {
            provider_api::AeadAlgorithm::ChaCha20Poly1305 => {
                pairing::provision::<
                    Pake,
                    provider_select::backends::provider_chacha::ChaCha20Poly1305,
                    H,
                    _,
                >(&mut store, &otp, code, salt, pairing::ITERATIONS, &nonce)
            }
            provider_api::AeadAlgorithm::Aes256Gcm => {
                pairing::provision::<
                    Pake,
                    provider_select::backends::provider_aes_gcm::Aes256Gcm,
                    H,
                    _,
                >(&mut store, &otp, code, salt, pairing::ITERATIONS, &nonce)
            }
            other => return Err(format!("no image seals with {}", other.name())),
        };
    sealed.map_err(|e| format!("cannot provision the setup code: {e}"))?;
    let verifier = pairing::Verifier::register::<Pake>(code, salt, pairing::ITERATIONS)
        .map_err(|e| format!("verifier: {e}"))?;
    let record = verifier.record.expose_secret();
    Ok(vec![
        String::from_utf8_lossy(&code.digits()).into_owned(),
        String::from_utf8_lossy(&code.label()).into_owned(),
        hex::encode(&record[..32]),
        hex::encode(&record[32..]),
    ])
}

impl ProvisionOptions {
    /// The hash the trust store must be tagged with: the named combination's.
    ///
    /// # Errors
    /// `provider` names no single combination (`all` and `classic` name several).
    pub fn hash(&self) -> Result<Hash, String> {
        let combination = Combination::parse(&self.provider).ok_or_else(|| {
            format!(
                "provisioning needs the one combination that will boot these disks \
                 (PROVIDER or --provider), not {:?}",
                self.provider
            )
        })?;
        Hash::of(&combination)
    }
}

/// Parses a device key and checks it under the verification rule.
///
/// # Errors
/// Not 64 hex digits, or a key the rule refuses (with why).
pub fn device_key(text: &str) -> Result<[u8; 32], String> {
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("{text:?} is not a 32-byte key in hex (64 digits)"))?;
    match VerifyingKey::<provider_dalek::Dalek>::from_bytes(&bytes) {
        Ok(_) => Ok(bytes),
        Err(SignatureError::InvalidPublicKey(why)) => {
            Err(format!("refusing {}: {why}", text.trim()))
        }
        Err(other) => Err(format!("refusing {}: {other}", text.trim())),
    }
}

/// Reads the device secret from an OTP image.
fn otp_secret(path: &Path) -> Result<SecretBytes<32>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut disk = state_format::memory::MemoryDisk::from_bytes(bytes, true);
    state_format::otp::read_secret(&mut disk)
        .map_err(|e| format!("{} holds no device secret: {e:?}", path.display()))
}

/// The peers the trust store on `state` holds (empty without one), once its tag
/// verifies and it is not older than the device's `counter`.
fn current_peers<H: HashBackend>(
    store: &mut RecordStore<FileDisk>,
    tags: &TagKey,
    counter: u32,
) -> Result<Vec<[u8; 32]>, String> {
    match store.get(TRUST_STORE) {
        Ok(record) => {
            let store = trust::decode::<H>(tags, &record)
                .map_err(|e| format!("the trust store on this disk is refused: {e}"))?;
            if store.rollback_version < counter {
                return Err(format!(
                    "the trust store on this disk was rolled back: it was written at \
                     version {}, the device's counter is at {counter} (a newer store \
                     existed); make fresh disks for this device",
                    store.rollback_version
                ));
            }
            Ok(store.peers)
        }
        Err(StoreError::NotFound) => Ok(Vec::new()),
        Err(error) => Err(format!("cannot read the trust store: {error}")),
    }
}

/// The device's rollback counter, as the factory's programmer holds it: set-only.
fn counter_disk(disks: &DiskSet) -> Result<rollback_counter::SetOnly<FileDisk>, String> {
    let path = disks.counter.as_deref().ok_or("no rollback counter")?;
    Ok(rollback_counter::SetOnly::new(FileDisk::open(path)?))
}

fn apply<H: HashBackend>(
    options: &ProvisionOptions,
    disks: &DiskSet,
) -> Result<Vec<[u8; 32]>, String> {
    let otp = otp_secret(disks.otp.as_deref().ok_or("no OTP disk")?)?;
    let tags = TagKey::derive::<H>(&otp);
    let state = disks.state.as_deref().ok_or("no state disk")?;
    let mut store = RecordStore::open(FileDisk::open(state)?)
        .map_err(|e| format!("{}: {e}", state.display()))?;
    let mut counter = counter_disk(disks)?;
    let value = rollback_counter::read(&mut counter)
        .map_err(|e| format!("cannot read the rollback counter: {e}"))?;
    let mut peers = current_peers::<H>(&mut store, &tags, value)?;
    let trust = options
        .trust
        .iter()
        .map(|k| device_key(k))
        .collect::<Result<Vec<_>, _>>()?;
    let untrust = options
        .untrust
        .iter()
        .map(|k| device_key(k))
        .collect::<Result<Vec<_>, _>>()?;
    // A node given a setup code with no trust store gets an empty one now: the
    // device's first pairing then updates a record that exists, and a power cut during
    // that write leaves this store standing (a torn first version of a record would
    // leave damage the record store cannot tell from any record: `corrupt`).
    let first_store =
        options.setup_code.is_some() && matches!(store.get(TRUST_STORE), Err(StoreError::NotFound));
    if trust.is_empty() && untrust.is_empty() && !first_store {
        return Ok(peers);
    }
    peers.retain(|peer| !untrust.contains(peer));
    for key in trust {
        if !peers.contains(&key) {
            peers.push(key);
        }
    }
    if peers.len() > MAX_PEERS {
        return Err(format!(
            "{} peers: a trust store holds at most {MAX_PEERS}",
            peers.len()
        ));
    }
    trust::provision::<H, _, _>(&mut store, &mut counter, &tags, &peers)
        .map_err(|e| format!("cannot write the trust store: {e}"))?;
    Ok(peers)
}

/// The peers the trust store in `state_dir` holds, read as the factory's programmer
/// reads it (the tag checked with the OTP's key, the version against the counter);
/// nothing is written.
///
/// # Errors
/// What went wrong, in a sentence.
pub fn trusted(state_dir: &Path, combination: &Combination) -> Result<Vec<[u8; 32]>, String> {
    // With nothing to trust, untrust or give, provisioning only reads.
    run(&ProvisionOptions {
        state_dir: state_dir.to_path_buf(),
        trust: Vec::new(),
        untrust: Vec::new(),
        provider: combination.to_string(),
        setup_code: None,
    })
    .map(|provisioned| provisioned.peers)
}

/// Runs `cargo xtask provision`; returns the peers the node now trusts.
///
/// # Errors
/// What went wrong, in a sentence.
pub fn run(options: &ProvisionOptions) -> Result<Provisioned, String> {
    let hash = options.hash()?;
    let disks = DiskSet::in_dir(&options.state_dir, false)?;
    let code = options.setup_code.as_deref().map(setup_code).transpose()?;
    let peers = match hash {
        Hash::Blake2s => apply::<provider_hash::Blake2s>(options, &disks)?,
        Hash::Sha256 => apply::<provider_hash::Sha256>(options, &disks)?,
    };
    let never_logged = match &code {
        Some(code) => match hash {
            Hash::Blake2s => provision_code::<provider_hash::Blake2s>(options, &disks, code)?,
            Hash::Sha256 => provision_code::<provider_hash::Sha256>(options, &disks, code)?,
        },
        None => Vec::new(),
    };
    Ok(Provisioned {
        peers,
        setup_code: code,
        never_logged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_outside_the_rule_are_refused_with_why() {
        let honest = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        assert!(device_key(honest).is_ok());
        let small_order = "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa";
        assert!(device_key(small_order).unwrap_err().contains("small order"));
        let mixed = "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d";
        assert!(device_key(mixed).unwrap_err().contains("prime order"));
        let non_canonical = "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f";
        assert!(device_key(non_canonical).unwrap_err().contains("canonical"));
        assert!(device_key("abcd").unwrap_err().contains("64 digits"));
    }

    #[test]
    fn provisioning_writes_a_store_the_image_format_reads_and_refuses_bad_keys() {
        let dir = std::env::temp_dir().join(format!("provision-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let key = |fill: u8| {
            let signing = provider_api::SigningKey::<provider_dalek::Dalek>::from_seed(
                &provider_api::Seed::new([fill; 32]),
            )
            .unwrap();
            hex::encode(signing.verifying_key().to_bytes())
        };
        let options = |trust: Vec<String>, untrust: Vec<String>| ProvisionOptions {
            state_dir: dir.clone(),
            trust,
            untrust,
            provider: "dalek+chacha".into(),
            setup_code: None,
        };
        let peers = run(&options(vec![key(1), key(2)], vec![])).unwrap().peers;
        assert_eq!(peers.len(), 2);
        let peers = run(&options(vec![key(3)], vec![key(1)])).unwrap().peers;
        assert_eq!(peers.len(), 2);
        assert!(
            run(&options(
                vec!["c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa".into()],
                vec![]
            ))
            .is_err()
        );
        // The image's own reading: the tag verifies with the device's secret, and the
        // store is as new as the counter, which moved with each store written.
        let otp = otp_secret(&dir.join("otp.img")).unwrap();
        let mut store = RecordStore::open(FileDisk::open(&dir.join("state.img")).unwrap()).unwrap();
        let record = store.get(TRUST_STORE).unwrap();
        let tags = TagKey::derive::<provider_hash::Blake2s>(&otp);
        let decoded = trust::decode::<provider_hash::Blake2s>(&tags, &record).unwrap();
        assert_eq!(decoded.peers.len(), 2);
        let mut counter = FileDisk::open(&dir.join("counter.img")).unwrap();
        assert_eq!(rollback_counter::read(&mut counter), Ok(2));
        assert_eq!(decoded.rollback_version, 2);
        // A state disk rolled back to the first store: the factory says so.
        let mut older = store;
        older
            .put(
                TRUST_STORE,
                &trust::encode::<provider_hash::Blake2s>(&tags, 1, &decoded.peers),
            )
            .unwrap();
        drop(older);
        assert!(
            run(&options(vec![key(4)], vec![]))
                .unwrap_err()
                .contains("rolled back")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    /// `cargo xtask provision` alone (the README's recipe) tags the store with the
    /// hash of the image PROVIDER names: a +sha256 image accepts its store, and the
    /// store of one combination is refused by an image with the other hash.
    #[test]
    fn the_store_is_tagged_with_the_hash_of_the_image_provider_names() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            provision: ProvisionOptions,
        }
        let dir = std::env::temp_dir().join(format!("provision-hash-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let peer = hex::encode(
            provider_api::SigningKey::<provider_dalek::Dalek>::from_seed(&provider_api::Seed::new(
                [9; 32],
            ))
            .unwrap()
            .verifying_key()
            .to_bytes(),
        );
        let state_dir = dir.to_str().unwrap();
        let args = ["provision", "--state-dir", state_dir, "--trust", &peer];
        let cli = Cli::parse_from(args.iter().chain(&["--provider", "dalek+chacha+sha256"]));
        assert_eq!(run(&cli.provision).unwrap().peers.len(), 1);
        let otp = otp_secret(&dir.join("otp.img")).unwrap();
        let mut store = RecordStore::open(FileDisk::open(&dir.join("state.img")).unwrap()).unwrap();
        let record = store.get(TRUST_STORE).unwrap();
        let sha = TagKey::derive::<provider_hash::Sha256>(&otp);
        assert_eq!(
            trust::decode::<provider_hash::Sha256>(&sha, &record).map(|p| p.peers.len()),
            Ok(1),
            "the +sha256 image accepts the store"
        );
        let blake = TagKey::derive::<provider_hash::Blake2s>(&otp);
        assert!(
            trust::decode::<provider_hash::Blake2s>(&blake, &record).is_err(),
            "a BLAKE2s image refuses it"
        );
        // Without a single combination there is no hash to choose.
        let cli = Cli::parse_from(args.iter().chain(&["--provider", "all"]));
        assert!(
            run(&cli.provision)
                .err()
                .unwrap()
                .contains("one combination")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `--setup-code`: the verifier the image opens (its AEAD, its hash, this node's
    /// OTP), the count at 0, and nowhere on the disks the code's digits.
    #[test]
    fn a_setup_code_is_stored_as_its_sealed_verifier_only() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            provision: ProvisionOptions,
        }
        let dir = std::env::temp_dir().join(format!("provision-code-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let state_dir = dir.to_str().unwrap();
        for (provider, aes) in [("dalek+chacha", false), ("compact+aes-gcm+sha256", true)] {
            let _ = std::fs::remove_dir_all(&dir);
            let args = [
                "provision",
                "--state-dir",
                state_dir,
                "--provider",
                provider,
                "--setup-code",
            ];
            let done = run(&Cli::parse_from(args).provision).unwrap();
            let code = done.setup_code.expect("a code");
            let otp = otp_secret(&dir.join("otp.img")).unwrap();
            let mut store =
                RecordStore::open(FileDisk::open(&dir.join("state.img")).unwrap()).unwrap();
            let record = store.get(pairing::VERIFIER_RECORD).unwrap();
            let opened = if aes {
                let keys = state_format::sealed::SealingKeys::derive::<provider_hash::Sha256>(
                    &otp,
                    pairing::VERIFIER_RECORD_ID,
                );
                let mut plaintext = [0u8; pairing::VERIFIER_PLAINTEXT_LEN];
                state_format::sealed::unseal::<
                    provider_select::backends::provider_aes_gcm::Aes256Gcm,
                    provider_hash::Sha256,
                >(&keys, pairing::VERIFIER_RECORD_ID, &record, &mut plaintext)
                .map(|()| plaintext)
            } else {
                let keys = state_format::sealed::SealingKeys::derive::<provider_hash::Blake2s>(
                    &otp,
                    pairing::VERIFIER_RECORD_ID,
                );
                let mut plaintext = [0u8; pairing::VERIFIER_PLAINTEXT_LEN];
                state_format::sealed::unseal::<
                    provider_select::backends::provider_chacha::ChaCha20Poly1305,
                    provider_hash::Blake2s,
                >(&keys, pairing::VERIFIER_RECORD_ID, &record, &mut plaintext)
                .map(|()| plaintext)
            };
            let verifier = pairing::Verifier::from_plaintext(&opened.unwrap()).unwrap();
            let again = pairing::Verifier::register::<provider_select::SelectedPake>(
                &code,
                verifier.salt,
                verifier.iterations,
            )
            .unwrap();
            assert_eq!(
                again.record.expose_secret(),
                verifier.record.expose_secret()
            );
            assert_eq!(
                pairing::decode_attempts(&store.get(pairing::ATTEMPTS_RECORD).unwrap()),
                Some(0)
            );
            // An empty trust store came with the code (a torn first pairing write then
            // leaves it standing), at the counter's first value.
            let record = store.get(TRUST_STORE).expect("an empty trust store");
            assert_eq!(
                trust::parse_unverified(&record).map(|t| (t.peers.len(), t.rollback_version)),
                Ok((0, 1))
            );
            let disk = std::fs::read(dir.join("state.img")).unwrap();
            assert!(
                !disk.windows(8).any(|w| w == code.digits()),
                "the code's digits are not on the disk"
            );
        }
        // A code given is kept; a trivial one is refused.
        let _ = std::fs::remove_dir_all(&dir);
        let args = [
            "provision",
            "--state-dir",
            state_dir,
            "--setup-code",
            "2020-2021",
        ];
        let done = run(&Cli::parse_from(args).provision).unwrap();
        assert_eq!(&done.setup_code.unwrap().label(), b"2020-2021");
        let args = [
            "provision",
            "--state-dir",
            state_dir,
            "--setup-code",
            "1234-5678",
        ];
        assert!(
            run(&Cli::parse_from(args).provision)
                .err()
                .unwrap()
                .contains("guess")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
