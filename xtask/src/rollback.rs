//! The trust-store rollback scenario (`cargo xtask test`, every classic combination):
//! a revoked peer stays revoked on the production image against someone who holds
//! the state disk.
//!
//! Each combination gets its own disks (`target/qemu/<provider>/rollback/`) and two
//! host peers, A and B (`dsoftbus-peer` on snow, key files of their own):
//!
//! 1. The factory trusts A and B (the store at counter version 1); the image boots and
//!    creates its device key. A copy of `state.img` is kept: the disk from while B was
//!    trusted.
//! 2. The factory revokes B (version 2). A boot on the current disks: A's session
//!    succeeds, B's is refused.
//! 3. Three attacks, each on a copy of the current disks, booted one after the other,
//!    each refused with its own marker, `state.img` and `counter.img` left byte for byte as
//!    they were:
//!    - **one byte** of the newest trust-store slot flipped: `trust store corrupt`
//!      (before the record store retired older slots, it served the previous store,
//!      with B in it);
//!    - **the older store written back** as a valid newer slot (the slot's CRC is no
//!      key): `trust store rolled back`;
//!    - **the older copy of the whole disk** booted with the device's current counter:
//!      `trust store rolled back`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipc::SECTOR_SIZE;
use state_format::store::{RecordStore, SLOT_HEADER_LEN, slot_sector};
use state_format::trust::RECORD;

use crate::combination::Combination;
use crate::disks::DiskSet;
use crate::image;
use crate::network::{self, DSOFTBUS_PORT};
use crate::provision::{self, FileDisk, ProvisionOptions};
use crate::qemu::{self, Boot, Interaction, Network, Nic, RngBacking};
use crate::test_os::contract;

/// One boot's wait, peers included: generous for TCG on a loaded machine (a boot takes
/// a few seconds when the host is idle).
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the scenario on every combination of `images` (production images), at most
/// `jobs::qemu_jobs` combinations at once.
pub fn run(images: &[(Combination, PathBuf)]) -> Result<(), String> {
    crate::device::on_each(images, one)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The device's disks, and what the factory and the peers need.
struct Node<'a> {
    combination: &'a Combination,
    image: &'a Path,
    dir: PathBuf,
    disks: DiskSet,
    binary: &'a Path,
}

impl Node<'_> {
    fn provision(&self, trust: &[String], untrust: &[String]) -> Result<(), String> {
        provision::run(&ProvisionOptions {
            state_dir: self.dir.clone(),
            trust: trust.to_vec(),
            untrust: untrust.to_vec(),
            provider: self.combination.to_string(),
            setup_code: None,
        })
        .map(|_| ())
    }

    /// A peer's identity file and device key.
    fn peer(&self, name: &str) -> Result<(String, String), String> {
        let identity = self.dir.join(format!("peer-{name}.key"));
        let _ = std::fs::remove_file(&identity);
        let identity = identity.display().to_string();
        let key = network::peer(self.binary, &["key", "--identity", &identity])?;
        Ok((identity, key.trim().to_owned()))
    }

    /// Boots the production image on `disks` and judges it by `scenario`. With
    /// `sessions`, once dsoftbusd listens, peer `good` (an identity file) must complete
    /// a session and peer `revoked`, if given, must be refused.
    fn boot(
        &self,
        disks: &DiskSet,
        scenario: &str,
        log: &str,
        values: BTreeMap<String, String>,
        sessions: Option<(&str, Option<&str>)>,
    ) -> Result<qemu::Outcome, String> {
        let contract = contract()?;
        let expectation = contract
            .expectation("full", Some(scenario))
            .map_err(|e| e.to_string())?;
        let log = self.dir.join(log);
        let (forwards, interaction) = match sessions {
            Some((good, revoked)) => {
                let port = network::free_port()?;
                let interaction = self.sessions(port, &log, good, revoked);
                (vec![(port, DSOFTBUS_PORT)], Some(interaction))
            }
            None => (Vec::new(), None),
        };
        let nic = Nic {
            network: Network::User { forwards },
            mac: None,
        };
        let programs = image::device_programs_for(self.image);
        let boot = Boot {
            image: self.image,
            programs: Some(&programs),
            log,
            rng: &RngBacking::Host,
            disks,
            timeout: BOOT_TIMEOUT,
            until_marker: true,
            stream: false,
            bench: false,
            nic: &nic,
            bootargs: &[],
        };
        let mut values = values;
        values.insert("provider".into(), self.combination.to_string());
        let outcome = qemu::run_with(&boot, expectation, &[scenario], values, interaction)?;
        if outcome.passed() {
            return Ok(outcome);
        }
        let mut why = format!(
            "{} rollback scenario, {}: {}",
            self.combination,
            outcome.log.display(),
            outcome.explanation
        );
        for line in &outcome.tail {
            why.push_str(&format!("\n      | {line}"));
        }
        Err(why)
    }
}

/// The scenario on one combination; a line saying what it showed.
fn one(combination: &Combination, image_path: &Path, binary: &Path) -> Result<String, String> {
    let dir = image::run_dir(combination).join("rollback");
    let _ = std::fs::remove_dir_all(&dir);
    let node = Node {
        combination,
        image: image_path,
        disks: DiskSet::fresh(&dir.join("device"), false)?,
        dir: dir.join("device"),
        binary,
    };
    let (a_identity, a_key) = node.peer("a")?;
    let (b_identity, b_key) = node.peer("b")?;
    node.provision(&[a_key.clone(), b_key.clone()], &[])?;

    // 1. First boot: the key is created; the store trusts A and B.
    let created = node.boot(
        &node.disks,
        "device",
        "created.log",
        BTreeMap::from([
            ("provenance".to_owned(), "created".to_owned()),
            ("peer".to_owned(), a_key.clone()),
        ]),
        Some((&a_identity, None)),
    )?;
    let pubkey = created
        .captured
        .get("pubkey")
        .cloned()
        .ok_or("no device public key captured")?;
    let state = node.disks.state.as_deref().ok_or("no state disk")?;
    let old_disk = read(state)?;
    let old_store = RecordStore::open(FileDisk::open(state)?)
        .and_then(|mut s| s.get(RECORD))
        .map_err(|e| format!("cannot read the trust store: {e}"))?;

    // 2. The factory revokes B: A is served, B refused.
    node.provision(&[], std::slice::from_ref(&b_key))?;
    let restored = |peer: &str| {
        BTreeMap::from([
            ("provenance".to_owned(), "restored".to_owned()),
            ("pubkey".to_owned(), pubkey.clone()),
            ("peer".to_owned(), peer.to_owned()),
        ])
    };
    node.boot(
        &node.disks,
        "device",
        "revoked.log",
        restored(&a_key),
        Some((&a_identity, Some(&b_identity))),
    )?;

    // 3. The attacks, side by side, each on a copy.
    let damaged = node.disks.copy_to(&dir.join("damaged"))?;
    {
        let path = damaged.state.as_deref().ok_or("no state disk")?;
        let store = RecordStore::open(FileDisk::open(path)?).map_err(|e| e.to_string())?;
        let (entry, slot, _) = store.locate(RECORD).ok_or("no trust store on the disk")?;
        let mut bytes = read(path)?;
        bytes[slot_sector(entry, slot) as usize * SECTOR_SIZE + SLOT_HEADER_LEN + 10] ^= 0x01;
        write(path, &bytes)?;
    }
    let replayed = node.disks.copy_to(&dir.join("replayed"))?;
    {
        let path = replayed.state.as_deref().ok_or("no state disk")?;
        let mut store = RecordStore::open(FileDisk::open(path)?).map_err(|e| e.to_string())?;
        store
            .put(RECORD, &old_store)
            .map_err(|e| format!("cannot replay the older store: {e}"))?;
    }
    let older_disk = node.disks.copy_to(&dir.join("older-disk"))?;
    write(
        older_disk.state.as_deref().ok_or("no state disk")?,
        &old_disk,
    )?;
    let attacks = [
        (&damaged, "trust-store-corrupt", "one byte flipped"),
        (&replayed, "trust-store-rolled-back", "older store replayed"),
        (&older_disk, "trust-store-rolled-back", "older whole disk"),
    ];
    for (disks, scenario, what) in &attacks {
        let before = (
            read(disks.state.as_deref().ok_or("no state disk")?)?,
            read(disks.counter.as_deref().ok_or("no counter")?)?,
        );
        let log = format!("{}.log", what.replace(' ', "-"));
        node.boot(disks, scenario, &log, restored(&a_key), None)
            .map_err(|e| format!("{what}: {e}"))?;
        let after = (
            read(disks.state.as_deref().ok_or("no state disk")?)?,
            read(disks.counter.as_deref().ok_or("no counter")?)?,
        );
        if after != before {
            return Err(format!(
                "{} {what}: the state disk or the counter changed",
                node.combination
            ));
        }
    }
    Ok(format!(
        "{combination}: B revoked and refused; one flipped byte refused as corrupt, the older store replayed and the older whole disk refused as rolled back; disks and counter unchanged"
    ))
}

impl Node<'_> {
    /// The peers' sessions, run once dsoftbusd listens on forwarded port `port`.
    fn sessions(&self, port: u16, log: &Path, good: &str, revoked: Option<&str>) -> Interaction {
        let (binary, log) = (self.binary.to_path_buf(), log.to_path_buf());
        let (good, revoked) = (good.to_owned(), revoked.map(str::to_owned));
        let suite = network::suite(self.combination);
        let action = Box::new(move || -> Result<String, String> {
            let key = crate::device::logged_device_key(&log)?;
            let addr = format!("127.0.0.1:{port}");
            let session = |identity: &str| {
                network::peer(
                    &binary,
                    &[
                        "session",
                        "--sessions",
                        "1",
                        "--identity",
                        identity,
                        "--addr",
                        &addr,
                        "--device-key",
                        &key,
                        "--suite",
                        &suite,
                    ],
                )
            };
            let served = session(&good).map_err(|e| format!("the trusted peer: {e}"))?;
            if let Some(revoked) = &revoked
                && let Ok(out) = session(revoked)
            {
                return Err(format!("the revoked peer was served: {}", out.trim()));
            }
            Ok(served)
        });
        Interaction {
            trigger: "dsoftbusd: listening".into(),
            action,
        }
    }
}
