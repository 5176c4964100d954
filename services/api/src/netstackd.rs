//! netstackd's wire format: bounded TCP stream sockets over IPC (IPv4 only).
//!
//! A socket belongs to the task that opened it: handles are per caller (the
//! kernel-stamped sender), so a task names only its own sockets, and another task's
//! handle number is [`BadHandle`](crate::ServiceError::BadHandle) to it.
//!
//! **Generations.** A handle is a `u32`: the generation of the netstackd process that
//! made it (the kernel's restart count of netstackd, modulo 65,536) in its high 16 bits,
//! a number in its low 16. When netstackd faults and the kernel restarts it, every
//! socket is gone; the new process answers a handle of another generation with
//! [`Restarted`](crate::ServiceError::Restarted), never as one of its own, and every
//! `WAIT` reply starts with the generation that answers, so a client that holds only a
//! listener (and so would wait for ever) learns of the restart at its next `WAIT`. A
//! call open when the old process ended fails with the kernel's `PeerGone`. A caller holds
//! at most [`MAX_SOCKETS_PER_CALLER`] handles, and netstackd also bounds the sockets
//! behind them per caller (a listener's backlog, connections, connections still
//! closing), so no task, nor the peers it serves, can take every socket of the stack. Integers are little-endian; an address
//! is 4 bytes of IPv4 address then a `u16` port.
//!
//! Operations that can wait take `wait_ms` (at most [`MAX_WAIT_MS`], below the
//! kernel's call timeout): netstackd answers as soon as the thing asked for happens,
//! or when the wait is over. `wait_ms = 0` answers at once; for `CONNECT` it returns
//! the handle while the connection is being set up, and `WAIT` reports
//! [`READY_CONNECTED`] once it is established (or [`READY_CLOSED`] if it failed).
//!
//! | operation | payload | reply |
//! |---|---|---|
//! | `LISTEN` | `port: u16`, `backlog: u8` (1..=[`MAX_BACKLOG`]) | `listener: u32` |
//! | `ACCEPT` | `listener: u32`, `wait_ms: u16` | `handle: u32`, remote address, local address |
//! | `CONNECT` | remote address, `wait_ms: u16` | `handle: u32`, local address |
//! | `SEND` | `handle: u32`, `wait_ms: u16`, data (at most [`MAX_IO`]) | `sent: u16` |
//! | `RECV` | `handle: u32`, `max: u16` (1..=[`MAX_IO`]), `wait_ms: u16` | data (1..=`max` bytes) |
//! | `CLOSE` | `handle: u32`, `abort: u8` (0 graceful, 1 reset) | empty |
//! | `STATUS` | `handle: u32` | `state: u8`, remote address, local address, `rx: u16`, `tx: u16` |
//! | `WAIT` | `wait_ms: u16` | `generation: u16`, then `(handle: u32, flags: u8)` per ready socket |
//! | `STATS` | empty | `sockets: u16`, `handles: u16`, `lingering: u16`, `parked: u16` (the whole stack's, for soak runs) |
//!
//! A listener listens on every interface (the network device's address and the
//! loopback interface, 127.0.0.1) with up to `backlog` connections being set up or
//! waiting for `ACCEPT` per interface; connections beyond that are reset by the stack.
//! `CONNECT` to 127.0.0.0/8 goes over the loopback interface, anything else over the
//! network device.
//!
//! Errors: `TimedOut` (nothing within `wait_ms`: no connection to accept, no data, not
//! connected yet), `Closed` (`RECV` after the peer closed and every byte was taken, or
//! a socket that was reset), `Refused` (`CONNECT` answered by a reset), `InUse`
//! (`LISTEN` on a port already listened on), `BadHandle`, `Restarted` (a handle of an
//! earlier generation), `Full` (the caller's table,
//! or netstackd's sockets), `Unavailable` (no route: no network device, or an address
//! outside the configured network), `MalformedRequest`, `RequestTooLarge`.

use alloc::vec::Vec;

use ipc::{Endpoint, IpcBuffer, Operation};

use crate::{ClientError, ServiceError};

/// The most sockets (listeners and connections) one task holds.
pub const MAX_SOCKETS_PER_CALLER: usize = 16;
/// The longest backlog a listener may ask for, per interface.
pub const MAX_BACKLOG: u8 = 4;
/// The longest wait a request may ask for: half the kernel's call timeout.
pub const MAX_WAIT_MS: u16 = 1000;
/// The most bytes one `SEND` carries or one `RECV` returns.
pub const MAX_IO: usize = 2048;

/// `WAIT` flag: bytes (or the peer's close) wait to be received.
pub const READY_READABLE: u8 = 1;
/// `WAIT` flag: a listener has a connection to accept.
pub const READY_ACCEPTABLE: u8 = 2;
/// `WAIT` flag: the connection is over (reset, or closed both ways).
pub const READY_CLOSED: u8 = 4;
/// `WAIT` flag: a connection `CONNECT` started without waiting is now established
/// (reported once).
pub const READY_CONNECTED: u8 = 8;

/// An IPv4 address and a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SocketAddr {
    /// The IPv4 address.
    pub ip: [u8; 4],
    /// The port.
    pub port: u16,
}

impl SocketAddr {
    /// Encoded length.
    pub const LEN: usize = 6;

    /// `127.0.0.1:port`.
    pub const fn loopback(port: u16) -> Self {
        Self {
            ip: [127, 0, 0, 1],
            port,
        }
    }

    /// Whether the address is on the loopback network, 127.0.0.0/8.
    pub const fn is_loopback(&self) -> bool {
        self.ip[0] == 127
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ip);
        out.extend_from_slice(&self.port.to_le_bytes());
    }

    fn decode(bytes: &[u8]) -> Option<(Self, &[u8])> {
        let (ip, rest) = bytes.split_first_chunk::<4>()?;
        let (port, rest) = rest.split_first_chunk::<2>()?;
        Some((
            Self {
                ip: *ip,
                port: u16::from_le_bytes(*port),
            },
            rest,
        ))
    }
}

impl core::fmt::Display for SocketAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d] = self.ip;
        write!(f, "{a}.{b}.{c}.{d}:{}", self.port)
    }
}

/// A socket handle: meaningful only to the task that holds it, and only to the
/// generation of netstackd that made it (its high 16 bits; the number in the low 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Handle(pub u32);

impl Handle {
    /// Handle `number` of netstackd's generation `generation`.
    pub const fn new(generation: u16, number: u16) -> Self {
        Self(((generation as u32) << 16) | number as u32)
    }

    /// The generation of netstackd that made it.
    pub const fn generation(self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// Its number within that generation.
    pub const fn number(self) -> u16 {
        self.0 as u16
    }
}

/// A connection's state, as `STATUS` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SocketState {
    /// A listener.
    Listening = 1,
    /// `CONNECT` sent, not answered yet.
    Connecting = 2,
    /// Open both ways.
    Established = 3,
    /// The peer closed its side; bytes may still wait to be received.
    PeerClosed = 4,
    /// This side closed; the close is being carried out.
    Closing = 5,
    /// Over: closed both ways, or reset.
    Closed = 6,
}

impl SocketState {
    const ALL: [Self; 6] = [
        Self::Listening,
        Self::Connecting,
        Self::Established,
        Self::PeerClosed,
        Self::Closing,
        Self::Closed,
    ];

    /// The state with wire code `code`.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|s| *s as u8 == code)
    }
}

/// The `reason` of netstackd's health records about its network device (`Health`,
/// subject netstackd): each step of bringing a stopped device back. Codes start at
/// 100, above every [`ServiceError`](crate::ServiceError) code netstackd's other
/// health records carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum DeviceHealth {
    /// The device stopped (`Failed`); `detail` is 1 for a missed deadline, 2 for
    /// any other device error ([`DeviceHealth::error_detail`]).
    Stopped = 100,
    /// A reset did not bring it back (`Failed`); `detail` is the attempt, from 1.
    ResetFailed = 101,
    /// The quick resets are spent; resets go on at a slow pace (`Failed`); `detail`
    /// is the attempts so far.
    SlowRetries = 102,
    /// A reset brought it back (`Allowed`); `detail` is the attempt, from 1.
    Recovered = 103,
    /// Frames the reset dropped (`Failed`): `detail` is how many (transmits the
    /// device never took and receives nobody took).
    FramesDropped = 104,
}

impl DeviceHealth {
    /// The record's reason code.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The `detail` of a [`DeviceHealth::Stopped`] record for `error`.
    pub const fn error_detail(error: ipc::DeviceError) -> u32 {
        match error {
            ipc::DeviceError::Timeout => 1,
            _ => 2,
        }
    }
}

/// A decoded request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `LISTEN`.
    Listen {
        /// The port.
        port: u16,
        /// Connections set up or waiting per interface.
        backlog: u8,
    },
    /// `ACCEPT`.
    Accept {
        /// The listener.
        listener: Handle,
        /// How long to wait for a connection.
        wait_ms: u16,
    },
    /// `CONNECT`.
    Connect {
        /// Where to.
        remote: SocketAddr,
        /// How long to wait for the connection to be established.
        wait_ms: u16,
    },
    /// `SEND`.
    Send {
        /// The connection.
        handle: Handle,
        /// How long to wait for room in the send buffer.
        wait_ms: u16,
        /// The bytes.
        data: &'a [u8],
    },
    /// `RECV`.
    Recv {
        /// The connection.
        handle: Handle,
        /// The most bytes to return.
        max: u16,
        /// How long to wait for bytes.
        wait_ms: u16,
    },
    /// `CLOSE`.
    Close {
        /// The socket.
        handle: Handle,
        /// Reset instead of closing gracefully.
        abort: bool,
    },
    /// `STATUS`.
    Status {
        /// The socket.
        handle: Handle,
    },
    /// `WAIT`.
    Wait {
        /// How long to wait for a socket to become ready.
        wait_ms: u16,
    },
    /// `STATS`.
    Stats,
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    let chunk = bytes.get(at..at + 2)?;
    Some(u16::from_le_bytes([chunk[0], chunk[1]]))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let chunk = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
}

fn exact(payload: &[u8], len: usize) -> Result<(), ServiceError> {
    if payload.len() == len {
        Ok(())
    } else {
        Err(ServiceError::MalformedRequest)
    }
}

fn bounded_wait(ms: u16) -> Result<u16, ServiceError> {
    if ms > MAX_WAIT_MS {
        Err(ServiceError::RequestTooLarge)
    } else {
        Ok(ms)
    }
}

impl<'a> Request<'a> {
    /// Decodes the payload of `operation`.
    ///
    /// # Errors
    /// `MalformedRequest` for a payload of the wrong shape (or a zero backlog, port or
    /// `max`), `RequestTooLarge` above [`MAX_IO`], [`MAX_BACKLOG`] or [`MAX_WAIT_MS`],
    /// `UnknownOperation` for an operation that is not netstackd's.
    pub fn decode(operation: Operation, payload: &'a [u8]) -> Result<Self, ServiceError> {
        let malformed = ServiceError::MalformedRequest;
        let at = |i| u16_at(payload, i).ok_or(malformed);
        let handle_at = |i| u32_at(payload, i).map(Handle).ok_or(malformed);
        match operation {
            Operation::NetstackdListen => {
                exact(payload, 3)?;
                let (port, backlog) = (at(0)?, payload[2]);
                if port == 0 || backlog == 0 {
                    return Err(malformed);
                }
                if backlog > MAX_BACKLOG {
                    return Err(ServiceError::RequestTooLarge);
                }
                Ok(Self::Listen { port, backlog })
            }
            Operation::NetstackdAccept => {
                exact(payload, 6)?;
                Ok(Self::Accept {
                    listener: handle_at(0)?,
                    wait_ms: bounded_wait(at(4)?)?,
                })
            }
            Operation::NetstackdConnect => {
                exact(payload, SocketAddr::LEN + 2)?;
                let (remote, rest) = SocketAddr::decode(payload).ok_or(malformed)?;
                if remote.port == 0 {
                    return Err(malformed);
                }
                Ok(Self::Connect {
                    remote,
                    wait_ms: bounded_wait(u16_at(rest, 0).ok_or(malformed)?)?,
                })
            }
            Operation::NetstackdSend => {
                let data = payload.get(6..).ok_or(malformed)?;
                if data.len() > MAX_IO {
                    return Err(ServiceError::RequestTooLarge);
                }
                if data.is_empty() {
                    return Err(ServiceError::EmptyRequest);
                }
                Ok(Self::Send {
                    handle: handle_at(0)?,
                    wait_ms: bounded_wait(at(4)?)?,
                    data,
                })
            }
            Operation::NetstackdRecv => {
                exact(payload, 8)?;
                let max = at(4)?;
                if max == 0 {
                    return Err(ServiceError::EmptyRequest);
                }
                if usize::from(max) > MAX_IO {
                    return Err(ServiceError::RequestTooLarge);
                }
                Ok(Self::Recv {
                    handle: handle_at(0)?,
                    max,
                    wait_ms: bounded_wait(at(6)?)?,
                })
            }
            Operation::NetstackdClose => {
                exact(payload, 5)?;
                let abort = match payload[4] {
                    0 => false,
                    1 => true,
                    _ => return Err(malformed),
                };
                Ok(Self::Close {
                    handle: handle_at(0)?,
                    abort,
                })
            }
            Operation::NetstackdStatus => {
                exact(payload, 4)?;
                Ok(Self::Status {
                    handle: handle_at(0)?,
                })
            }
            Operation::NetstackdWait => {
                exact(payload, 2)?;
                Ok(Self::Wait {
                    wait_ms: bounded_wait(at(0)?)?,
                })
            }
            Operation::NetstackdStats => {
                exact(payload, 0)?;
                Ok(Self::Stats)
            }
            _ => Err(ServiceError::UnknownOperation),
        }
    }

    /// The operation and its payload.
    pub fn encode(&self) -> (Operation, Vec<u8>) {
        let mut out = Vec::new();
        let operation = match *self {
            Self::Listen { port, backlog } => {
                out.extend_from_slice(&port.to_le_bytes());
                out.push(backlog);
                Operation::NetstackdListen
            }
            Self::Accept { listener, wait_ms } => {
                out.extend_from_slice(&listener.0.to_le_bytes());
                out.extend_from_slice(&wait_ms.to_le_bytes());
                Operation::NetstackdAccept
            }
            Self::Connect { remote, wait_ms } => {
                remote.encode_into(&mut out);
                out.extend_from_slice(&wait_ms.to_le_bytes());
                Operation::NetstackdConnect
            }
            Self::Send {
                handle,
                wait_ms,
                data,
            } => {
                out.extend_from_slice(&handle.0.to_le_bytes());
                out.extend_from_slice(&wait_ms.to_le_bytes());
                out.extend_from_slice(data);
                Operation::NetstackdSend
            }
            Self::Recv {
                handle,
                max,
                wait_ms,
            } => {
                out.extend_from_slice(&handle.0.to_le_bytes());
                out.extend_from_slice(&max.to_le_bytes());
                out.extend_from_slice(&wait_ms.to_le_bytes());
                Operation::NetstackdRecv
            }
            Self::Close { handle, abort } => {
                out.extend_from_slice(&handle.0.to_le_bytes());
                out.push(u8::from(abort));
                Operation::NetstackdClose
            }
            Self::Status { handle } => {
                out.extend_from_slice(&handle.0.to_le_bytes());
                Operation::NetstackdStatus
            }
            Self::Wait { wait_ms } => {
                out.extend_from_slice(&wait_ms.to_le_bytes());
                Operation::NetstackdWait
            }
            Self::Stats => Operation::NetstackdStats,
        };
        (operation, out)
    }
}

/// An accepted connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// Its handle.
    pub handle: Handle,
    /// The peer's address.
    pub remote: SocketAddr,
    /// This side's address.
    pub local: SocketAddr,
}

impl Accepted {
    /// The reply payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 2 * SocketAddr::LEN);
        out.extend_from_slice(&self.handle.0.to_le_bytes());
        self.remote.encode_into(&mut out);
        self.local.encode_into(&mut out);
        out
    }

    /// Decodes a reply payload.
    ///
    /// # Errors
    /// [`ClientError::MalformedReply`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ClientError> {
        let bad = ClientError::MalformedReply;
        if bytes.len() != 4 + 2 * SocketAddr::LEN {
            return Err(bad);
        }
        let handle = Handle(u32_at(bytes, 0).ok_or(bad)?);
        let (remote, rest) = SocketAddr::decode(&bytes[4..]).ok_or(bad)?;
        let (local, _) = SocketAddr::decode(rest).ok_or(bad)?;
        Ok(Self {
            handle,
            remote,
            local,
        })
    }
}

/// A socket's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// Its state.
    pub state: SocketState,
    /// The peer's address (zero for a listener).
    pub remote: SocketAddr,
    /// This side's address.
    pub local: SocketAddr,
    /// Bytes received and not yet taken.
    pub rx_queued: u16,
    /// Bytes queued to send and not yet acknowledged.
    pub tx_queued: u16,
}

impl Status {
    /// The reply payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 2 * SocketAddr::LEN + 4);
        out.push(self.state as u8);
        self.remote.encode_into(&mut out);
        self.local.encode_into(&mut out);
        out.extend_from_slice(&self.rx_queued.to_le_bytes());
        out.extend_from_slice(&self.tx_queued.to_le_bytes());
        out
    }

    /// Decodes a reply payload.
    ///
    /// # Errors
    /// [`ClientError::MalformedReply`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ClientError> {
        let bad = ClientError::MalformedReply;
        if bytes.len() != 1 + 2 * SocketAddr::LEN + 4 {
            return Err(bad);
        }
        let state = SocketState::from_code(bytes[0]).ok_or(bad)?;
        let (remote, rest) = SocketAddr::decode(&bytes[1..]).ok_or(bad)?;
        let (local, rest) = SocketAddr::decode(rest).ok_or(bad)?;
        Ok(Self {
            state,
            remote,
            local,
            rx_queued: u16_at(rest, 0).ok_or(bad)?,
            tx_queued: u16_at(rest, 2).ok_or(bad)?,
        })
    }
}

/// The sizes of netstackd's tables, as `STATS` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// smoltcp sockets on both interfaces.
    pub sockets: u16,
    /// Handles held by tasks.
    pub handles: u16,
    /// Connections still finishing their close.
    pub lingering: u16,
    /// Requests parked, waiting.
    pub parked: u16,
}

impl Stats {
    /// The reply payload.
    pub fn encode(&self) -> Vec<u8> {
        [self.sockets, self.handles, self.lingering, self.parked]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }

    /// Decodes a reply payload.
    ///
    /// # Errors
    /// [`ClientError::MalformedReply`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ClientError> {
        let bad = ClientError::MalformedReply;
        if bytes.len() != 8 {
            return Err(bad);
        }
        Ok(Self {
            sockets: u16_at(bytes, 0).ok_or(bad)?,
            handles: u16_at(bytes, 2).ok_or(bad)?,
            lingering: u16_at(bytes, 4).ok_or(bad)?,
            parked: u16_at(bytes, 6).ok_or(bad)?,
        })
    }
}

/// netstackd's table sizes.
///
/// # Errors
/// [`ClientError`].
pub async fn stats<E: Endpoint>(ep: &E) -> Result<Stats, ClientError> {
    Stats::decode(&call(ep, Request::Stats).await?)
}

/// A socket `WAIT` reported ready, with its `READY_*` flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready {
    /// The socket.
    pub handle: Handle,
    /// `READY_*` bits.
    pub flags: u8,
}

/// What a `WAIT` answered: the generation of netstackd that answered, and the
/// caller's sockets that are ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waited {
    /// The answering process's generation: a client holding handles of another
    /// generation knows they are gone.
    pub generation: u16,
    /// The ready sockets.
    pub ready: Vec<Ready>,
}

/// The size of one ready socket in a `WAIT` reply.
const READY_LEN: usize = 5;

/// Encodes a `WAIT` reply from netstackd's generation `generation`.
pub fn encode_ready(generation: u16, ready: &[Ready]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + READY_LEN * ready.len());
    out.extend_from_slice(&generation.to_le_bytes());
    for r in ready {
        out.extend_from_slice(&r.handle.0.to_le_bytes());
        out.push(r.flags);
    }
    out
}

/// Decodes a `WAIT` reply.
///
/// # Errors
/// [`ClientError::MalformedReply`].
pub fn decode_ready(bytes: &[u8]) -> Result<Waited, ClientError> {
    let (generation, entries) = bytes
        .split_first_chunk::<2>()
        .ok_or(ClientError::MalformedReply)?;
    if !entries.len().is_multiple_of(READY_LEN)
        || entries.len() / READY_LEN > MAX_SOCKETS_PER_CALLER
    {
        return Err(ClientError::MalformedReply);
    }
    Ok(Waited {
        generation: u16::from_le_bytes(*generation),
        ready: entries
            .chunks_exact(READY_LEN)
            .map(|c| Ready {
                handle: Handle(u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                flags: c[4],
            })
            .collect(),
    })
}

async fn call<E: Endpoint>(ep: &E, request: Request<'_>) -> Result<IpcBuffer, ClientError> {
    let (operation, payload) = request.encode();
    crate::call(ep, operation, &payload).await
}

fn handle_of(reply: &[u8]) -> Result<Handle, ClientError> {
    u32_at(reply, 0)
        .map(Handle)
        .ok_or(ClientError::MalformedReply)
}

/// Listens on `port` on every interface.
///
/// # Errors
/// [`ClientError`].
pub async fn listen<E: Endpoint>(ep: &E, port: u16, backlog: u8) -> Result<Handle, ClientError> {
    let reply = call(ep, Request::Listen { port, backlog }).await?;
    if reply.len() != 4 {
        return Err(ClientError::MalformedReply);
    }
    handle_of(&reply)
}

/// Takes a connection from `listener`, waiting up to `wait_ms`.
///
/// # Errors
/// [`ClientError`]; `TimedOut` when none came.
pub async fn accept<E: Endpoint>(
    ep: &E,
    listener: Handle,
    wait_ms: u16,
) -> Result<Accepted, ClientError> {
    Accepted::decode(&call(ep, Request::Accept { listener, wait_ms }).await?)
}

/// Opens a connection to `remote`, waiting up to `wait_ms` for it to be established.
///
/// # Errors
/// [`ClientError`].
pub async fn connect<E: Endpoint>(
    ep: &E,
    remote: SocketAddr,
    wait_ms: u16,
) -> Result<(Handle, SocketAddr), ClientError> {
    let reply = call(ep, Request::Connect { remote, wait_ms }).await?;
    if reply.len() != 4 + SocketAddr::LEN {
        return Err(ClientError::MalformedReply);
    }
    let (local, _) = SocketAddr::decode(&reply[4..]).ok_or(ClientError::MalformedReply)?;
    Ok((handle_of(&reply)?, local))
}

/// Queues `data` (at most [`MAX_IO`] bytes), waiting up to `wait_ms` for room; returns
/// how many bytes were queued.
///
/// # Errors
/// [`ClientError`].
pub async fn send<E: Endpoint>(
    ep: &E,
    handle: Handle,
    data: &[u8],
    wait_ms: u16,
) -> Result<usize, ClientError> {
    let reply = call(
        ep,
        Request::Send {
            handle,
            wait_ms,
            data,
        },
    )
    .await?;
    u16_at(&reply, 0)
        .filter(|_| reply.len() == 2)
        .map(usize::from)
        .ok_or(ClientError::MalformedReply)
}

/// Queues all of `data`, in pieces of [`MAX_IO`], each waiting up to `wait_ms`.
///
/// # Errors
/// [`ClientError`]; `TimedOut` when a piece could not be queued whole in time.
pub async fn send_all<E: Endpoint>(
    ep: &E,
    handle: Handle,
    data: &[u8],
    wait_ms: u16,
) -> Result<(), ClientError> {
    for piece in data.chunks(MAX_IO) {
        if send(ep, handle, piece, wait_ms).await? != piece.len() {
            return Err(ClientError::Service(ServiceError::TimedOut));
        }
    }
    Ok(())
}

/// Takes up to `max` received bytes, waiting up to `wait_ms` for some.
///
/// # Errors
/// [`ClientError`]; `TimedOut` when none came, `Closed` after the peer closed and
/// every byte was taken.
pub async fn recv<E: Endpoint>(
    ep: &E,
    handle: Handle,
    max: u16,
    wait_ms: u16,
) -> Result<IpcBuffer, ClientError> {
    call(
        ep,
        Request::Recv {
            handle,
            max,
            wait_ms,
        },
    )
    .await
}

/// Closes a socket (gracefully, or with a reset when `abort`); the handle is free
/// at once.
///
/// # Errors
/// [`ClientError`].
pub async fn close<E: Endpoint>(ep: &E, handle: Handle, abort: bool) -> Result<(), ClientError> {
    call(ep, Request::Close { handle, abort }).await.map(|_| ())
}

/// A socket's state and addresses.
///
/// # Errors
/// [`ClientError`].
pub async fn status<E: Endpoint>(ep: &E, handle: Handle) -> Result<Status, ClientError> {
    Status::decode(&call(ep, Request::Status { handle }).await?)
}

/// The caller's sockets that are ready, waiting up to `wait_ms` for one, and the
/// generation of netstackd that answered.
///
/// # Errors
/// [`ClientError`].
pub async fn wait<E: Endpoint>(ep: &E, wait_ms: u16) -> Result<Waited, ClientError> {
    decode_ready(&call(ep, Request::Wait { wait_ms }).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bounds_hold() {
        let remote = SocketAddr {
            ip: [10, 0, 2, 2],
            port: 7411,
        };
        let data = [7u8; 10];
        for request in [
            Request::Listen {
                port: 7411,
                backlog: 4,
            },
            Request::Accept {
                listener: Handle(3),
                wait_ms: 500,
            },
            Request::Connect {
                remote,
                wait_ms: 1000,
            },
            Request::Send {
                handle: Handle(1),
                wait_ms: 0,
                data: &data,
            },
            Request::Recv {
                handle: Handle(2),
                max: 2048,
                wait_ms: 10,
            },
            Request::Close {
                handle: Handle(9),
                abort: true,
            },
            Request::Status { handle: Handle(4) },
            Request::Wait { wait_ms: 1 },
            Request::Stats,
        ] {
            let (operation, payload) = request.encode();
            assert_eq!(Request::decode(operation, &payload), Ok(request));
        }
        let too_large = ServiceError::RequestTooLarge;
        let (op, payload) = Request::Listen {
            port: 1,
            backlog: MAX_BACKLOG + 1,
        }
        .encode();
        assert_eq!(Request::decode(op, &payload), Err(too_large));
        let (op, payload) = Request::Wait {
            wait_ms: MAX_WAIT_MS + 1,
        }
        .encode();
        assert_eq!(Request::decode(op, &payload), Err(too_large));
        let big = [0u8; MAX_IO + 1];
        let (op, payload) = Request::Send {
            handle: Handle(1),
            wait_ms: 0,
            data: &big,
        }
        .encode();
        assert_eq!(Request::decode(op, &payload), Err(too_large));
        let (op, payload) = Request::Connect {
            remote: SocketAddr {
                ip: [1; 4],
                port: 0,
            },
            wait_ms: 0,
        }
        .encode();
        assert_eq!(
            Request::decode(op, &payload),
            Err(ServiceError::MalformedRequest)
        );
        assert_eq!(
            Request::decode(Operation::NetstackdStatus, &[1]),
            Err(ServiceError::MalformedRequest)
        );
        assert_eq!(
            Request::decode(Operation::LogdQuery, &[]),
            Err(ServiceError::UnknownOperation)
        );
    }

    #[test]
    fn replies_round_trip() {
        let accepted = Accepted {
            handle: Handle(5),
            remote: SocketAddr {
                ip: [10, 0, 2, 2],
                port: 40000,
            },
            local: SocketAddr {
                ip: [10, 0, 2, 15],
                port: 7411,
            },
        };
        assert_eq!(Accepted::decode(&accepted.encode()), Ok(accepted));
        let status = Status {
            state: SocketState::PeerClosed,
            remote: accepted.remote,
            local: accepted.local,
            rx_queued: 3,
            tx_queued: 4,
        };
        assert_eq!(Status::decode(&status.encode()), Ok(status));
        let ready = [
            Ready {
                handle: Handle(1),
                flags: READY_READABLE,
            },
            Ready {
                handle: Handle(2),
                flags: READY_ACCEPTABLE | READY_CLOSED,
            },
        ];
        let waited = Waited {
            generation: 3,
            ready: ready.to_vec(),
        };
        assert_eq!(decode_ready(&encode_ready(3, &ready)), Ok(waited));
        assert_eq!(
            decode_ready(&[1, 2]).map(|w| w.ready),
            Ok(Vec::new()),
            "a reply with no ready socket is its generation alone"
        );
        assert_eq!(decode_ready(&[1]), Err(ClientError::MalformedReply));
        assert_eq!(decode_ready(&[1, 2, 3]), Err(ClientError::MalformedReply));
        let handle = Handle::new(0xabcd, 0x1234);
        assert_eq!((handle.generation(), handle.number()), (0xabcd, 0x1234));
    }
}
