//! The system-call surface of a task.

use core::fmt;

use crate::audit::{AuditEvent, AuditRecord};
use crate::buffer::IpcBuffer;
use crate::frame::FrameError;
use crate::service::ServiceId;

/// A request delivered to a service, with the kernel-stamped sender.
#[derive(Debug)]
pub struct Request {
    /// Who sent it. Stamped by the kernel; the sender cannot choose it.
    pub sender: ServiceId,
    /// The generation of the sender's process when it called (how many times the
    /// kernel restarted the sender's task; 0 for its first process). Stamped by the
    /// kernel: a service that keeps state per client (netstackd's sockets) drops what
    /// an earlier process of that client held when a later one calls.
    pub sender_generation: u32,
    /// The request frame, already checked to be a well-formed request frame whose
    /// operation the policy allows this sender. Wiped when dropped.
    pub frame: IpcBuffer,
    /// What [`Endpoint::reply`] needs to answer this request.
    pub token: ReplyToken,
}

/// Identifies the call a reply answers. The kernel accepts a reply only from the task
/// the call was addressed to, so a token is useless to anyone else.
#[derive(Debug, PartialEq, Eq)]
pub struct ReplyToken(pub u32);

/// Why an IPC operation failed, as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IpcError {
    /// The request is not a well-formed request frame; it was not delivered.
    MalformedFrame(FrameError),
    /// The policy does not allow this caller this operation on this service.
    Denied,
    /// The service is not running in this image.
    NoSuchService,
    /// The service's queue is full; try again later.
    QueueFull,
    /// The service did not answer before the call's deadline.
    Timeout,
    /// The service stopped while the call was outstanding.
    PeerGone,
    /// A reply to a call that is no longer outstanding, or not addressed to the
    /// replier.
    StaleReply,
    /// The caller already has as many calls outstanding as the kernel allows one task.
    TooManyCalls,
}

impl fmt::Display for IpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MalformedFrame(e) => write!(f, "malformed frame: {e}"),
            Self::Denied => f.write_str("denied by policy"),
            Self::NoSuchService => f.write_str("no such service"),
            Self::QueueFull => f.write_str("service queue full"),
            Self::Timeout => f.write_str("service did not answer in time"),
            Self::PeerGone => f.write_str("service stopped"),
            Self::StaleReply => f.write_str("reply to a call that is not outstanding"),
            Self::TooManyCalls => f.write_str("too many calls outstanding"),
        }
    }
}

impl core::error::Error for IpcError {}

/// A capability the kernel hands out according to the boot manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum Capability {
    /// The raw entropy device (virtio-rng). Manifest name `virtio-rng`.
    EntropyDevice = 1,
    /// The stream of audit records. Manifest name `audit-feed`.
    AuditFeed = 2,
    /// The read-write state disk, the virtio-blk device whose serial is `state0`.
    /// Manifest name `state-disk`.
    StateDisk = 3,
    /// The read-only device-unique-secret disk (a stand-in for OTP/eFuse), serial
    /// `otp0`. Manifest name `otp-disk`.
    OtpDisk = 4,
    /// The network device (virtio-net). Manifest name `virtio-net`.
    NetDevice = 5,
    /// The anti-rollback counter (one-time-programmable bits, a stand-in for
    /// anti-rollback fuses or RPMB), the one-sector disk with serial `ctr0`, handed out
    /// so that its bits can only be set (the `rollback-counter` crate). Manifest name
    /// `rollback-counter`.
    RollbackCounter = 6,
    /// Every block device's window, before it is known which disk is which: the
    /// device manager reads each disk's serial and hands the window on as the disk
    /// capability the serial names. Manifest name `block-devices`.
    BlockDevices = 7,
}

impl Capability {
    /// Every capability.
    pub const ALL: [Capability; 7] = [
        Self::EntropyDevice,
        Self::AuditFeed,
        Self::StateDisk,
        Self::OtpDisk,
        Self::NetDevice,
        Self::RollbackCounter,
        Self::BlockDevices,
    ];

    /// The name used in the boot manifest.
    pub const fn name(self) -> &'static str {
        match self {
            Self::EntropyDevice => "virtio-rng",
            Self::AuditFeed => "audit-feed",
            Self::StateDisk => "state-disk",
            Self::OtpDisk => "otp-disk",
            Self::NetDevice => "virtio-net",
            Self::RollbackCounter => "rollback-counter",
            Self::BlockDevices => "block-devices",
        }
    }

    /// The virtio-blk serial that identifies a disk capability's device.
    pub const fn disk_serial(self) -> Option<&'static str> {
        match self {
            Self::StateDisk => Some("state0"),
            Self::OtpDisk => Some("otp0"),
            Self::RollbackCounter => Some("ctr0"),
            _ => None,
        }
    }

    /// The capability named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The capability with numeric value `value`.
    pub fn from_u16(value: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|c| *c as u16 == value)
    }
}

/// Why a capability was not handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapabilityError {
    /// The boot manifest does not grant it to this task.
    NotGranted,
    /// This machine has no such device.
    Absent,
    /// It was already handed out; each capability has one holder.
    AlreadyClaimed,
}

impl fmt::Display for CapabilityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotGranted => "capability not granted to this task by the boot manifest",
            Self::Absent => "no such device on this machine",
            Self::AlreadyClaimed => "capability already claimed",
        })
    }
}

/// Why a device request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceError {
    /// The device did not complete the request before its deadline. It is not used
    /// again until it is reset (a network device: [`RawNetDevice::reset`]; the
    /// entropy device and the disks have no reset and stay out of use).
    Timeout,
    /// The device reported an error or behaved outside its specification.
    Failed,
    /// The request was refused before it reached the device: a buffer that is not a
    /// non-zero multiple of the sector size, or sectors beyond the disk's end.
    BadRequest,
    /// A write to a read-only disk.
    ReadOnly,
    /// A write that would clear a bit of a one-time-programmable device (the rollback
    /// counter), refused before the device saw it.
    ClearsProgrammedBit,
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Timeout => "the device did not answer in time",
            Self::Failed => "the device failed",
            Self::BadRequest => "request outside the device's bounds",
            Self::ReadOnly => "the disk is read-only",
            Self::ClearsProgrammedBit => "a write would clear a one-time-programmable bit",
        })
    }
}

/// The size of a disk sector, the unit of every block request.
pub const SECTOR_SIZE: usize = 512;

/// A disk, as its one holder sees it. Every request is bounded in time; lengths and
/// ranges are checked before the device sees them.
pub trait RawBlockDevice {
    /// The disk's size in sectors.
    fn sectors(&self) -> u64;
    /// Whether the disk refuses writes.
    fn readonly(&self) -> bool;
    /// Reads `buf.len() / SECTOR_SIZE` sectors from `sector` on.
    ///
    /// # Errors
    /// [`DeviceError::BadRequest`] unless `buf` is a non-zero multiple of
    /// [`SECTOR_SIZE`] within the disk; otherwise the device's failure.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DeviceError>;
    /// Writes `buf` to the sectors from `sector` on. The write has completed (as far as
    /// the device reports) when this returns `Ok`; call [`RawBlockDevice::flush`] to
    /// make it durable.
    ///
    /// # Errors
    /// As [`RawBlockDevice::read`], and [`DeviceError::ReadOnly`].
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), DeviceError>;
    /// Makes every completed write durable.
    ///
    /// # Errors
    /// The device's failure.
    fn flush(&mut self) -> Result<(), DeviceError>;
}

/// The raw entropy device, as its one holder sees it.
pub trait RawEntropyDevice {
    /// Reads up to `dest.len()` raw bytes and returns how many the device wrote.
    /// Bounded in time.
    ///
    /// # Errors
    /// [`DeviceError`] when the device stalls or fails.
    fn read(&mut self, dest: &mut [u8]) -> Result<usize, DeviceError>;
}

/// Records the kernel's audit stream lost before its holder took them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditLoss {
    /// The kernel's own records (policy, capability and IPC decisions) dropped because
    /// their budget was full. Any loss here is a failure: the trail is incomplete.
    pub kernel: u64,
    /// Records written by tasks dropped because the writer exceeded its own quota.
    /// A task can only ever push out its own records.
    pub tasks: u64,
}

/// An Ethernet network device, as its one holder sees it. Nothing waits: a receive
/// returns at once, a transmit is bounded by a deadline.
pub trait RawNetDevice {
    /// The device's MAC address.
    fn mac(&self) -> [u8; 6];
    /// The next received frame, copied into `buf`, and its length; `None` when no
    /// frame waits. A frame longer than `buf` is dropped (and counted by the driver).
    ///
    /// # Errors
    /// [`DeviceError`] when the device failed.
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, DeviceError>;
    /// Sends one Ethernet frame.
    ///
    /// # Errors
    /// [`DeviceError::BadRequest`] for a frame longer than the device takes; the
    /// device's failure or timeout. After a failure or a timeout every request fails
    /// with that error until [`RawNetDevice::reset`] succeeds.
    fn transmit(&mut self, frame: &[u8]) -> Result<(), DeviceError>;
    /// Resets the device and sets it up again, after a failure or a missed deadline:
    /// every frame the device held (a transmit it never took, receives not yet taken)
    /// is dropped and counted, and the device takes requests again. Bounded in time.
    ///
    /// # Errors
    /// [`DeviceError`] when the device did not complete its reset or refused its
    /// set-up; it stays out of use, and the holder may try again later.
    fn reset(&mut self) -> Result<NetReset, DeviceError>;
}

/// What a network device's reset dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetReset {
    /// Frames handed to the device for transmission that it never took.
    pub transmits_dropped: u32,
    /// Frames the device had received that nobody took before the reset.
    pub receives_dropped: u32,
}

/// The stream of audit records, as its one holder (logd) sees it.
pub trait AuditFeed {
    /// The oldest record not yet taken (lowest sequence number).
    fn pop(&mut self) -> Option<AuditRecord>;
    /// How many records the kernel dropped, by kind.
    fn lost(&self) -> AuditLoss;
}

/// Everything a task can ask of the kernel.
///
/// The kernel creates one endpoint per task at spawn, bound to the task's
/// [`ServiceId`]. Waiting operations are `async`: tasks are cooperatively scheduled,
/// and every wait is bounded by the kernel.
#[allow(async_fn_in_trait)]
pub trait Endpoint {
    /// The raw entropy device handed out by [`Endpoint::claim_entropy_device`].
    type EntropyDevice: RawEntropyDevice;
    /// The audit stream handed out by [`Endpoint::claim_audit_feed`].
    type AuditFeed: AuditFeed;
    /// A disk handed out by [`Endpoint::claim_disk`].
    type Disk: RawBlockDevice;
    /// The network device handed out by [`Endpoint::claim_net_device`].
    type NetDevice: RawNetDevice;

    /// This task's identity.
    fn id(&self) -> ServiceId;

    /// Sends a request frame to `service` and waits, bounded, for the reply frame.
    ///
    /// Dropping the call before it completes cancels it: the kernel forgets it, takes
    /// an undelivered request out of the callee's queue, wipes a reply that already
    /// came, and records the cancellation.
    ///
    /// # Errors
    /// [`IpcError`]: the frame is malformed, the policy denies it, the service is
    /// absent, busy, silent past the deadline, or stopped, or this task already has
    /// too many calls outstanding.
    async fn call(&self, service: ServiceId, request: &[u8]) -> Result<IpcBuffer, IpcError>;

    /// Waits for the next request addressed to this task.
    async fn receive(&self) -> Request;

    /// The next request addressed to this task, if one is queued.
    fn try_receive(&self) -> Option<Request>;

    /// Answers a request.
    ///
    /// # Errors
    /// [`IpcError::StaleReply`] when the caller is no longer waiting (it timed out or
    /// stopped) or the token is not for a call to this task.
    fn reply(&self, token: ReplyToken, reply: &[u8]) -> Result<(), IpcError>;

    /// Appends an event to the audit stream; the kernel stamps this task as origin.
    fn audit(&self, event: AuditEvent);

    /// Prints one line on the console, prefixed by the kernel with this task's
    /// console prefix (`rngd: `, `SELFTEST: `, ...).
    fn console(&self, line: &str);

    /// Lets the other tasks run.
    async fn yield_now(&self);

    /// Milliseconds since boot.
    fn uptime_ms(&self) -> u64;

    /// Takes the raw entropy device, if the boot manifest grants it to this task.
    /// The decision is audited.
    ///
    /// # Errors
    /// [`CapabilityError`].
    fn claim_entropy_device(&self) -> Result<Self::EntropyDevice, CapabilityError>;

    /// Takes the audit stream, if the boot manifest grants it to this task. The
    /// decision is audited.
    ///
    /// # Errors
    /// [`CapabilityError`].
    fn claim_audit_feed(&self) -> Result<Self::AuditFeed, CapabilityError>;

    /// Takes the disk of `capability` ([`Capability::StateDisk`],
    /// [`Capability::OtpDisk`] or [`Capability::RollbackCounter`]), if the boot manifest grants it to this task. The
    /// kernel found the disk by its serial, never by slot. The decision is audited.
    ///
    /// # Errors
    /// [`CapabilityError`]; [`CapabilityError::Absent`] when no disk has that serial.
    fn claim_disk(&self, capability: Capability) -> Result<Self::Disk, CapabilityError>;

    /// Takes the network device, if the boot manifest grants it to this task. The
    /// decision is audited.
    ///
    /// # Errors
    /// [`CapabilityError`].
    fn claim_net_device(&self) -> Result<Self::NetDevice, CapabilityError>;
}
