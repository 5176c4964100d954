//! statefs, the record store on the state disk.
//!
//! statefs alone holds the state-disk capability (`policies/manifest.toml`): the kernel
//! found the disk by its serial, `state0`. It serves `PUT`, `GET` and `DELETE`
//! (`service_api::statefs`) on the record store of `state-format` (`docs/state-disk.md`):
//! fixed entries of two slots, a new version always written to the slot that is not
//! current and flushed before the reply, so a torn write leaves the previous version.
//!
//! - **Namespaces.** A record's owner is the kernel-stamped sender: a task names only
//!   its own records, and no request can reach another task's.
//! - **Bounds.** Records of at most 1 KiB, at most 8 per caller, 32 on the disk.
//! - **Fail closed.** Without a disk, or with a disk whose store does not open (a
//!   superblock of another format, slots without one, a failing disk), statefs
//!   answers every request `Unavailable`, says why once, and writes nothing.
//! - **Audit.** Every request gets a record: caller, operation, verdict, the error as
//!   reason, the record id as detail.
//!
//! [`Statefs::handle`] is a plain function of the request, so the host tests drive it
//! directly as well as through the kernel.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::vec::Vec;

use ipc::{
    Action, AuditEvent, Capability, CapabilityError, Endpoint, Operation, RawBlockDevice,
    ServiceId, Verdict,
};
use service_api::statefs::{MAX_RECORD, MAX_RECORDS, decode_request};
use service_api::{Incoming, ServiceError, reply_err, reply_ok};
use state_format::store::{
    MAX_RECORD_LEN, MAX_RECORDS_PER_OWNER, RecordKey, RecordStore, StoreError,
};

const _: () = assert!(MAX_RECORD == MAX_RECORD_LEN && MAX_RECORDS == MAX_RECORDS_PER_OWNER);

/// Why statefs serves nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// The kernel handed out no state disk.
    NoDisk(CapabilityError),
    /// The store on the disk did not open.
    Store(StoreError),
}

/// The store, or why there is none.
pub struct Statefs<D: RawBlockDevice> {
    store: Result<RecordStore<D>, Closed>,
}

/// A handled request: the reply payload or error, and its audit record.
pub struct Handled {
    /// The record (for `GET`), empty otherwise, or the error.
    pub reply: Result<Vec<u8>, ServiceError>,
    /// The record of the decision.
    pub audit: AuditEvent,
}

fn service_error(error: StoreError) -> ServiceError {
    match error {
        StoreError::NotFound => ServiceError::NotFound,
        StoreError::Corrupt => ServiceError::Corrupt,
        StoreError::Full => ServiceError::Full,
        StoreError::TooLarge { .. } => ServiceError::RequestTooLarge,
        _ => ServiceError::Unavailable,
    }
}

impl<D: RawBlockDevice> Statefs<D> {
    /// Opens the store on the disk (or records why there is none).
    pub fn start(disk: Result<D, CapabilityError>) -> Self {
        let store = disk
            .map_err(Closed::NoDisk)
            .and_then(|disk| RecordStore::open(disk).map_err(Closed::Store));
        Self { store }
    }

    /// `Ok(records held)` when serving, or why not.
    pub fn status(&self) -> Result<usize, Closed> {
        match &self.store {
            Ok(store) => Ok(store.len()),
            Err(closed) => Err(*closed),
        }
    }

    /// Handles one request frame from `sender`.
    pub fn handle(&mut self, sender: ServiceId, frame: &[u8]) -> Handled {
        let request = ipc::Request {
            sender,
            sender_generation: 0,
            frame: ipc::IpcBuffer::copy_from(frame),
            token: ipc::ReplyToken(0),
        };
        let audit = |code: u16, verdict, reason: u16, record: u16| AuditEvent {
            subject: sender,
            action: Action::Call {
                service: ServiceId::Statefs,
                code,
            },
            verdict,
            reason,
            detail: u32::from(record),
        };
        let parsed = Incoming::parse(ServiceId::Statefs, &request).and_then(|incoming| {
            let code = incoming.operation.code();
            decode_request(incoming.payload)
                .map(|(id, rest)| (incoming.operation, id, rest))
                .map_err(|error| (error, code))
        });
        let (operation, id, rest) = match parsed {
            Ok(parts) => parts,
            Err((error, code)) => {
                return Handled {
                    reply: Err(error),
                    audit: audit(code, Verdict::Rejected, error.code(), 0),
                };
            }
        };
        let code = operation.code();
        let key = RecordKey {
            owner: sender as u16,
            id,
        };
        let store = match &mut self.store {
            Ok(store) => store,
            Err(_) => {
                let error = ServiceError::Unavailable;
                return Handled {
                    reply: Err(error),
                    audit: audit(code, Verdict::Failed, error.code(), id),
                };
            }
        };
        let outcome = match operation {
            Operation::StatefsPut => store.put(key, rest).map(|()| Vec::new()),
            Operation::StatefsGet if rest.is_empty() => store.get(key),
            Operation::StatefsDelete if rest.is_empty() => store.delete(key).map(|()| Vec::new()),
            _ => {
                let error = ServiceError::MalformedRequest;
                return Handled {
                    reply: Err(error),
                    audit: audit(code, Verdict::Rejected, error.code(), id),
                };
            }
        };
        match outcome {
            Ok(reply) => Handled {
                reply: Ok(reply),
                audit: audit(code, Verdict::Allowed, 0, id),
            },
            Err(error) => {
                let error = service_error(error);
                let verdict = match error {
                    ServiceError::NotFound | ServiceError::Full | ServiceError::RequestTooLarge => {
                        Verdict::Rejected
                    }
                    _ => Verdict::Failed,
                };
                Handled {
                    reply: Err(error),
                    audit: audit(code, verdict, error.code(), id),
                }
            }
        }
    }
}

/// Runs statefs until the machine stops.
pub async fn run<E: Endpoint>(ep: E) {
    let mut statefs = Statefs::start(ep.claim_disk(Capability::StateDisk));
    match statefs.status() {
        Ok(records) => {
            ep.console(markers::STATEFS_READY.message);
            ep.console(&format!("{records} records on the state disk"));
        }
        Err(closed) => {
            match closed {
                Closed::NoDisk(_) => ep.console(markers::STATEFS_NO_DISK.message),
                Closed::Store(error) => {
                    ep.console(&format!("fail-closed: state disk unreadable: {error}"))
                }
            }
            ep.audit(AuditEvent {
                subject: ServiceId::Statefs,
                action: Action::Health,
                verdict: Verdict::Failed,
                reason: ServiceError::Unavailable.code(),
                detail: 0,
            });
        }
    }
    loop {
        let request = ep.receive().await;
        let handled = statefs.handle(request.sender, &request.frame);
        ep.audit(handled.audit);
        let _ = match &handled.reply {
            Ok(payload) => reply_ok(&ep, request.token, payload),
            Err(error) => reply_err(&ep, request.token, *error),
        };
    }
}
