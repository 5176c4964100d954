//! The kernel's IPC contract, shared by the kernel, every service and every client.
//!
//! Services are written against the [`Endpoint`] trait and nothing else: it is the
//! whole system-call surface a task has. The kernel creates one endpoint per task at
//! spawn, bound to that task's [`ServiceId`]; a task cannot make another, so it cannot
//! send as anyone but itself. The kernel stamps the sender of every request and the
//! origin of every audit record.
//!
//! Messages are byte frames in a documented, versioned format ([`frame`]). Every
//! operation a service offers is registered in [`Operation`], which is what the
//! deny-by-default policy table names. Audit records ([`audit`]) carry ids and sizes,
//! never bytes, so no secret can reach the journal through them.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod audit;
pub mod buffer;
pub mod endpoint;
pub mod frame;
pub mod operation;
pub mod policy;
pub mod service;

pub use audit::{Action, AuditEvent, AuditFilter, AuditRecord, KernelReason, Verdict};
pub use buffer::IpcBuffer;
pub use endpoint::{
    AuditFeed, AuditLoss, Capability, CapabilityError, DeviceError, Endpoint, IpcError, NetReset,
    RawBlockDevice, RawEntropyDevice, RawNetDevice, ReplyToken, Request, SECTOR_SIZE,
};
pub use frame::{Frame, FrameError, FrameKind};
pub use operation::Operation;
pub use service::ServiceId;
