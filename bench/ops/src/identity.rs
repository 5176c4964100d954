//! The device identity's two paths, as keystored walks them, measured two ways:
//!
//! - [`workloads`]: `identity/first-boot` (key from 32 bytes of entropy, sealing keys
//!   derived from the device secret, the seed sealed, the record stored, read back and
//!   opened) and `identity/restore` (sealing keys derived, the record read and opened,
//!   the key derived from the seed), with keystored's own functions on a record store
//!   in memory: exact, host and guest alike. keystored also derives the trust-store
//!   tag key at start; that belongs to neither path and is not counted.
//! - [`first_boot`] and [`restore`]: the same through the services, over IPC, with
//!   rngd for the entropy and statefs for the record (in the guest, on virtio-blk):
//!   what a boot costs, device waits included.
//!
//! The device secret here is a fixed bench value: only keystored may read the OTP disk,
//! and these run as the selftest (or the host bench). The derivations are the same.

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::hint::black_box;

use ipc::Endpoint;
use provider_api::{HashBackend, Provider, SecretBytes, SigningKey};
use service_api::statefs::KEYSTORED_DEVICE_KEY;
use service_api::{ClientError, rngd, statefs};
use state_format::memory::MemoryDisk;
use state_format::sealed::SealingKeys;
use state_format::store::{RecordKey, RecordStore};

use crate::{Workload, workload};

/// The bench's stand-in for the OTP secret.
const BENCH_SECRET: [u8; 32] = [0x0d; 32];
/// The record the benches store: the selftest's own, never keystored's.
pub const BENCH_RECORD: u16 = 7;

/// The sealing keys keystored derives from the device secret at start.
fn sealing_keys<H: HashBackend>() -> SealingKeys {
    SealingKeys::derive::<H>(&SecretBytes::new(BENCH_SECRET), KEYSTORED_DEVICE_KEY)
}

/// `identity/first-boot` and `identity/restore` on a record store in memory.
pub fn workloads<P: Provider, H: HashBackend>() -> Vec<Box<dyn Workload>> {
    let key = RecordKey {
        owner: 3,
        id: KEYSTORED_DEVICE_KEY,
    };
    let store = Rc::new(RefCell::new(
        RecordStore::open(MemoryDisk::new(512)).expect("an empty store opens"),
    ));
    let entropy = [0x5a; 32];
    let nonce = [0x4e; 12];
    let first = Rc::clone(&store);
    let mut out: Vec<Box<dyn Workload>> = Vec::new();
    out.push(workload("identity/first-boot", move || {
        let sealing = sealing_keys::<H>();
        let (made, record) = keystored::seal_new_key::<P, H>(&sealing, black_box(&entropy), &nonce)
            .expect("good entropy");
        let mut store = first.borrow_mut();
        store.put(key, &record).expect("room");
        let back = store.get(key).expect("just stored");
        let reopened = keystored::open::<P, H>(&sealing, &back).expect("just sealed");
        black_box(made.verifying_key() == reopened.verifying_key());
    }));
    let sealing = sealing_keys::<H>();
    let (_, record) =
        keystored::seal_new_key::<P, H>(&sealing, &entropy, &nonce).expect("good entropy");
    store.borrow_mut().put(key, &record).expect("room");
    out.push(workload("identity/restore", move || {
        let sealing = sealing_keys::<H>();
        let record = store.borrow_mut().get(key).expect("stored");
        black_box(keystored::open::<P, H>(&sealing, &record).expect("sealed here"));
    }));
    out
}

/// Why a path through the services failed.
#[derive(Debug)]
pub enum PathError {
    /// A service refused.
    Service(ClientError),
    /// keystored's building blocks refused.
    Keystored(keystored::Failure),
}

/// A first boot through the services: 32 and 12 bytes from rngd, the key, the seal,
/// statefs `PUT` and `GET` (of the caller's own [`BENCH_RECORD`]), the record opened.
///
/// # Errors
/// [`PathError`].
pub async fn first_boot<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
) -> Result<SigningKey<P::Sig>, PathError> {
    let entropy = rngd::get_entropy(ep, 32)
        .await
        .map_err(PathError::Service)?;
    let nonce = rngd::get_entropy(ep, 12)
        .await
        .map_err(PathError::Service)?;
    let nonce: [u8; 12] = nonce
        .as_slice()
        .try_into()
        .map_err(|_| PathError::Service(ClientError::MalformedReply))?;
    let sealing = sealing_keys::<H>();
    let (key, record) = keystored::seal_new_key::<P, H>(&sealing, &entropy, &nonce)
        .map_err(PathError::Keystored)?;
    statefs::put(ep, BENCH_RECORD, &record)
        .await
        .map_err(PathError::Service)?;
    let back = statefs::get(ep, BENCH_RECORD)
        .await
        .map_err(PathError::Service)?;
    keystored::open::<P, H>(&sealing, &back).map_err(PathError::Keystored)?;
    Ok(key)
}

/// A restore through the services: statefs `GET`, the keys derived, the record
/// opened, the key derived. [`first_boot`] must have stored the record.
///
/// # Errors
/// [`PathError`].
pub async fn restore<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
) -> Result<SigningKey<P::Sig>, PathError> {
    let record = statefs::get(ep, BENCH_RECORD)
        .await
        .map_err(PathError::Service)?;
    let sealing = sealing_keys::<H>();
    keystored::open::<P, H>(&sealing, &record).map_err(PathError::Keystored)
}
