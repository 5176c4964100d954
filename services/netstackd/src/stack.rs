//! The sockets: two smoltcp interfaces, the per-caller handle tables, and the
//! operations on them, without IPC (the service loop in the crate root carries them).
//!
//! - **Interfaces.** The network device's (`net.ip`, default route via `net.gw`) and a
//!   loopback interface (127.0.0.1/8, smoltcp's `phy::Loopback`): packets to an
//!   interface's own address are not looped back by smoltcp, so peers inside one image
//!   meet on the loopback interface. Each interface has its own socket set; a
//!   connection lives on the interface its peer is reached through.
//! - **Bounds.** At most [`MAX_SOCKETS`] smoltcp sockets in all (listeners' backlogs,
//!   connections, and connections still closing), at most
//!   [`MAX_SOCKETS_PER_CALLER`] handles per task. A listener keeps `backlog`
//!   listening sockets per interface; a connection beyond them is reset by smoltcp.
//! - **Ownership.** Every handle records the task that opened it; any other task gets
//!   `BadHandle`, exactly as for a handle that does not exist.
//! - **Generations.** Every handle carries this process's generation (the kernel's
//!   restart count of netstackd); a handle of another generation, made by a process
//!   that has since faulted, is `Restarted`, never looked up.
//! - **No waiting on timers.** Nagle and delayed acknowledgements are off, so a
//!   request-answer exchange never waits for a timer (under `-icount` a timer wait is
//!   counted as instructions spent polling).
//! - **Work per poll is bounded**: [`MAX_INGRESS`] packets in and [`MAX_EGRESS`] rounds
//!   out per interface (smoltcp's `poll` would take every queued packet).

use alloc::vec;
use alloc::vec::Vec;

use ipc::{RawNetDevice, ServiceId};
use service_api::ServiceError;
use service_api::netstackd::{
    Accepted, Handle, MAX_SOCKETS_PER_CALLER, READY_ACCEPTABLE, READY_CLOSED, READY_CONNECTED,
    READY_READABLE, Ready, SocketAddr, SocketState, Status,
};
use smoltcp::iface::{
    Config, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet,
};
use smoltcp::phy::{Device, Loopback, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address};

use crate::config::NetConfig;
use crate::phy::NetPhy;

/// smoltcp sockets in all, on both interfaces.
pub const MAX_SOCKETS: usize = 48;
/// Bytes of receive and of send buffer per connection.
pub const SOCKET_BUFFER: usize = 4096;
/// Packets taken from an interface's device per poll.
pub const MAX_INGRESS: usize = 32;
/// Egress rounds per interface per poll.
pub const MAX_EGRESS: usize = 16;
/// Loopback rounds per poll: a segment and the answer to it go through in one poll.
const LOOPBACK_ROUNDS: usize = 4;
/// How long a closed connection may take to finish closing before it is dropped.
const LINGER_MS: u64 = 2_000;
/// How long a connection waits for a peer that stopped answering TCP (its data
/// unacknowledged, or [`KEEP_ALIVE`] probes unanswered) before it is reset.
///
/// smoltcp counts this from the peer's last segment whether or not anything is
/// outstanding, so without keep-alive probes a connection that is merely quiet would
/// be reset after it: a transport timer must never end a live connection for being
/// quiet (the application decides that: dsoftbusd's idle timeout, decision 0011).
pub const PEER_TIMEOUT: Duration = Duration::from_secs(15);
/// While a connection is quiet, a keep-alive probe goes out this often; a live peer's
/// TCP answers it, which keeps [`PEER_TIMEOUT`] from running out.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// How long a connection whose handshake is complete may wait in a listener's
/// backlog for its owner to accept it before it is reset.
pub const BACKLOG_WAIT_MS: u64 = 2_000;
/// smoltcp's timeout for a listening socket's connection that a SYN started and the
/// peer never completed: it holds a backlog slot that long at most. Longer than
/// smoltcp's first retransmission (its RTO starts at 1 s), so a SYN-ACK that was lost
/// (a frame a device reset dropped) is sent again once before the slot is given up;
/// a flood of SYNs is bounded by the oldest-gives-way rule in `refill`, not by this.
pub const SYN_TIMEOUT: Duration = Duration::from_secs(3);
/// smoltcp sockets one task holds at most: its listeners' backlogs, its connections
/// and its connections still closing. The sockets of one task's peers (a flood of
/// connections to dsoftbusd's port) cannot take every socket of the stack.
pub const MAX_SOCKETS_PER_TASK: usize = 24;
/// Ports `CONNECT` takes its local port from (IANA's dynamic range).
const EPHEMERAL_PORTS: core::ops::RangeInclusive<u16> = 49152..=65535;
/// The loopback interface's (locally administered) MAC address.
const LOOPBACK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

/// Which interface a socket lives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Iface {
    /// The network device.
    Net,
    /// 127.0.0.1/8.
    Loopback,
}

struct Link<Dev: Device> {
    iface: Interface,
    device: Dev,
    sockets: SocketSet<'static>,
}

impl<Dev: Device> Link<Dev> {
    fn new(device: Dev, mac: [u8; 6], seed: u64, cidr: IpCidr, now: Instant) -> Self {
        let mut device = device;
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut device, now);
        iface.update_ip_addrs(|addrs| {
            // One address per interface: the vector (capacity 2 or more) has room.
            let _ = addrs.push(cidr);
        });
        Self {
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
        }
    }

    /// One bounded round of ingress and egress; returns (packets taken in, whether a
    /// socket's state may have changed).
    fn pump(&mut self, now: Instant) -> (usize, bool) {
        self.iface.poll_maintenance(now);
        let mut changed = false;
        let mut taken = 0;
        for _ in 0..MAX_INGRESS {
            match self
                .iface
                .poll_ingress_single(now, &mut self.device, &mut self.sockets)
            {
                PollIngressSingleResult::None => break,
                PollIngressSingleResult::PacketProcessed => taken += 1,
                PollIngressSingleResult::SocketStateChanged => {
                    taken += 1;
                    changed = true;
                }
            }
        }
        for _ in 0..MAX_EGRESS {
            match self
                .iface
                .poll_egress(now, &mut self.device, &mut self.sockets)
            {
                PollResult::None => break,
                PollResult::SocketStateChanged => changed = true,
            }
        }
        (taken, changed)
    }

    fn socket(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(handle)
    }
}

/// One listening socket of a listener's backlog.
#[derive(Clone, Copy)]
struct Pending {
    iface: Iface,
    socket: SocketHandle,
    /// Since when it has held a connection a SYN started and the peer has not
    /// completed.
    syn_since: Option<u64>,
    /// Since when it has held a complete connection nobody accepted.
    ready_since: Option<u64>,
}

enum Kind {
    Listener {
        port: u16,
        backlog: u8,
        pending: Vec<Pending>,
    },
    Stream {
        iface: Iface,
        socket: SocketHandle,
        /// Whether the caller knows it is established (accepted, or `CONNECT`
        /// answered, or `READY_CONNECTED` reported).
        announced: bool,
    },
}

struct Entry {
    owner: ServiceId,
    handle: Handle,
    kind: Kind,
}

struct Lingering {
    owner: ServiceId,
    iface: Iface,
    socket: SocketHandle,
    until_ms: u64,
}

/// Why the stack could not start on the network device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// The device's MAC address is not a unicast address.
    NotUnicastMac([u8; 6]),
}

/// The sizes of the stack's tables, for tests and soak runs: each is bounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackStats {
    /// smoltcp sockets on both interfaces.
    pub sockets: usize,
    /// Handles held by tasks.
    pub handles: usize,
    /// Closed connections still finishing their close.
    pub lingering: usize,
    /// Frames the network device delivered.
    pub frames_in: u64,
    /// Frames sent on the network device.
    pub frames_out: u64,
}

/// Both interfaces, every socket, and who holds which.
pub struct Stack<D: RawNetDevice> {
    net: Option<(Link<NetPhy<D>>, NetConfig)>,
    lo: Link<Loopback>,
    entries: Vec<Entry>,
    lingering: Vec<Lingering>,
    next_handle: u16,
    /// This process's generation, in every handle it makes.
    generation: u16,
    next_port: u16,
    seed: u64,
    /// The time of the last poll.
    now_ms: u64,
}

/// smoltcp's time from the kernel's milliseconds: smoltcp counts microseconds in an
/// `i64`, so the clock is held at its limit (about 292,000 years) instead of wrapping.
fn instant(now_ms: u64) -> Instant {
    const LIMIT_MS: u64 = i64::MAX as u64 / 1000;
    Instant::from_millis(now_ms.min(LIMIT_MS) as i64)
}

fn endpoint(ep: Option<IpEndpoint>) -> SocketAddr {
    match ep {
        Some(IpEndpoint {
            addr: IpAddress::Ipv4(ip),
            port,
        }) => SocketAddr {
            ip: ip.octets(),
            port,
        },
        None => SocketAddr {
            ip: [0; 4],
            port: 0,
        },
    }
}

fn new_socket() -> tcp::Socket<'static> {
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0u8; SOCKET_BUFFER]),
        tcp::SocketBuffer::new(vec![0u8; SOCKET_BUFFER]),
    );
    socket.set_nagle_enabled(false);
    socket.set_ack_delay(None);
    socket.set_timeout(Some(PEER_TIMEOUT));
    socket.set_keep_alive(Some(KEEP_ALIVE));
    socket
}

/// A connection whose handshake is complete (it may be closed by the peer already):
/// what `ACCEPT` hands out.
fn acceptable(state: tcp::State) -> bool {
    matches!(state, tcp::State::Established | tcp::State::CloseWait)
}

impl<D: RawNetDevice> Stack<D> {
    /// The loopback interface alone. `seed` seeds smoltcp (sequence numbers) and the
    /// first ephemeral port.
    pub fn new(seed: u64, now_ms: u64) -> Self {
        let now = instant(now_ms);
        let lo_cidr = IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8);
        let lo = Link::new(
            Loopback::new(Medium::Ethernet),
            LOOPBACK_MAC,
            seed.rotate_left(17),
            lo_cidr,
            now,
        );
        let span = u64::from(EPHEMERAL_PORTS.end() - EPHEMERAL_PORTS.start()) + 1;
        let next_port = EPHEMERAL_PORTS.start() + (seed % span) as u16;
        Self {
            net: None,
            lo,
            entries: Vec::new(),
            lingering: Vec::new(),
            next_handle: 1,
            generation: 0,
            next_port,
            seed,
            now_ms,
        }
    }

    /// The same stack, for netstackd's generation `generation` (the kernel's restart
    /// count of it, modulo 65,536): its handles carry it.
    #[must_use]
    pub fn with_generation(mut self, generation: u16) -> Self {
        self.generation = generation;
        self
    }

    /// The generation its handles carry.
    pub fn generation(&self) -> u16 {
        self.generation
    }

    /// Adds the network device's interface, configured by `config`.
    ///
    /// # Errors
    /// [`StartError`]; the stack goes on with the loopback interface alone.
    pub fn attach(&mut self, device: D, config: NetConfig, now_ms: u64) -> Result<(), StartError> {
        let now = instant(now_ms);
        let mac = device.mac();
        if !EthernetAddress(mac).is_unicast() {
            return Err(StartError::NotUnicastMac(mac));
        }
        let cidr = IpCidr::new(IpAddress::Ipv4(config.address), config.prefix);
        let mut link = Link::new(NetPhy::new(device), mac, self.seed, cidr, now);
        if let Some(gateway) = config.gateway {
            // A fresh table has room for the default route.
            let _ = link.iface.routes_mut().add_default_ipv4_route(gateway);
        }
        self.net = Some((link, config));
        Ok(())
    }

    /// The interfaces' addresses, for the ready line: `10.0.2.15/24,127.0.0.1/8`.
    pub fn addresses(&self) -> alloc::string::String {
        match &self.net {
            Some((_, config)) => alloc::format!("{}/{},127.0.0.1/8", config.address, config.prefix),
            None => alloc::string::String::from("127.0.0.1/8"),
        }
    }

    /// The network device's error, if it failed.
    pub fn device_failed(&self) -> Option<ipc::DeviceError> {
        self.net.as_ref().and_then(|(link, _)| link.device.failed())
    }

    /// Resets the network device; `None` without one.
    pub fn reset_device(&mut self) -> Option<Result<ipc::NetReset, ipc::DeviceError>> {
        self.net.as_mut().map(|(link, _)| link.device.reset())
    }

    /// The table sizes now.
    pub fn stats(&self) -> StackStats {
        let (net_sockets, frames_in, frames_out) = match &self.net {
            Some((link, _)) => (
                link.sockets.iter().count(),
                link.device.frames_in,
                link.device.frames_out,
            ),
            None => (0, 0, 0),
        };
        StackStats {
            sockets: net_sockets + self.lo.sockets.iter().count(),
            handles: self.entries.len(),
            lingering: self.lingering.len(),
            frames_in,
            frames_out,
        }
    }

    fn sockets_in_use(&self) -> usize {
        self.stats().sockets
    }

    fn add_socket(&mut self, iface: Iface, socket: tcp::Socket<'static>) -> Option<SocketHandle> {
        if self.sockets_in_use() >= MAX_SOCKETS {
            return None;
        }
        match iface {
            Iface::Net => self.net.as_mut().map(|(link, _)| link.sockets.add(socket)),
            Iface::Loopback => Some(self.lo.sockets.add(socket)),
        }
    }

    fn socket(&mut self, iface: Iface, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        match iface {
            Iface::Net => self
                .net
                .as_mut()
                .map(|(link, _)| link.socket(handle))
                .expect("a net socket exists only with a net interface"),
            Iface::Loopback => self.lo.socket(handle),
        }
    }

    fn remove_socket(&mut self, iface: Iface, handle: SocketHandle) {
        match iface {
            Iface::Net => {
                if let Some((link, _)) = self.net.as_mut() {
                    link.sockets.remove(handle);
                }
            }
            Iface::Loopback => {
                self.lo.sockets.remove(handle);
            }
        }
    }

    fn ifaces(&self) -> Vec<Iface> {
        let mut ifaces = vec![Iface::Loopback];
        if self.net.is_some() {
            ifaces.push(Iface::Net);
        }
        ifaces
    }

    fn held_by(&self, owner: ServiceId) -> usize {
        self.entries.iter().filter(|e| e.owner == owner).count()
    }

    /// The smoltcp sockets `owner` holds: backlogs, connections, and closing ones.
    fn sockets_of(&self, owner: ServiceId) -> usize {
        let held: usize = self
            .entries
            .iter()
            .filter(|e| e.owner == owner)
            .map(|e| match &e.kind {
                Kind::Listener { pending, .. } => pending.len(),
                Kind::Stream { .. } => 1,
            })
            .sum();
        held + self.lingering.iter().filter(|l| l.owner == owner).count()
    }

    fn find(&self, owner: ServiceId, handle: Handle) -> Result<usize, ServiceError> {
        if handle.generation() != self.generation {
            return Err(ServiceError::Restarted);
        }
        self.entries
            .iter()
            .position(|e| e.owner == owner && e.handle == handle)
            .ok_or(ServiceError::BadHandle)
    }

    fn stream(
        &self,
        owner: ServiceId,
        handle: Handle,
    ) -> Result<(Iface, SocketHandle), ServiceError> {
        match self.entries[self.find(owner, handle)?].kind {
            Kind::Stream { iface, socket, .. } => Ok((iface, socket)),
            Kind::Listener { .. } => Err(ServiceError::BadHandle),
        }
    }

    /// A handle number no entry has: the counter wraps and skips numbers in use.
    fn new_handle(&mut self) -> Handle {
        loop {
            let candidate = Handle::new(self.generation, self.next_handle);
            self.next_handle = self.next_handle.checked_add(1).unwrap_or(1);
            if !self.entries.iter().any(|e| e.handle == candidate) {
                return candidate;
            }
        }
    }

    fn port_in_use(&self, port: u16) -> bool {
        let mut local = self.lo.sockets.iter();
        let lo = local.any(|(_, s)| match s {
            smoltcp::socket::Socket::Tcp(s) => {
                s.local_endpoint().is_some_and(|e| e.port == port)
                    || s.listen_endpoint().port == port
            }
        });
        let net = self.net.as_ref().is_some_and(|(link, _)| {
            link.sockets.iter().any(|(_, s)| match s {
                smoltcp::socket::Socket::Tcp(s) => {
                    s.local_endpoint().is_some_and(|e| e.port == port)
                        || s.listen_endpoint().port == port
                }
            })
        });
        lo || net
    }

    /// The next ephemeral port no socket uses.
    fn ephemeral_port(&mut self) -> Option<u16> {
        let span = usize::from(EPHEMERAL_PORTS.end() - EPHEMERAL_PORTS.start()) + 1;
        for _ in 0..span.min(MAX_SOCKETS * 2 + 1) {
            let port = self.next_port;
            self.next_port = if port == *EPHEMERAL_PORTS.end() {
                *EPHEMERAL_PORTS.start()
            } else {
                port + 1
            };
            if !self.port_in_use(port) {
                return Some(port);
            }
        }
        None
    }

    /// Keeps a listener's backlog listening: re-arms sockets a reset sent back to
    /// Closed; when every socket of an interface holds a connection nobody completed,
    /// resets the oldest, so a SYN flood cannot keep the port from new peers (smoltcp
    /// has no SYN cookies); brings the backlog up to `backlog` per interface, as far as
    /// the owner's and the stack's socket budgets allow.
    fn refill(&mut self, at: usize) {
        let now_ms = self.now_ms;
        let owner = self.entries[at].owner;
        let Kind::Listener {
            port,
            backlog,
            ref pending,
        } = self.entries[at].kind
        else {
            return;
        };
        let mut pending = pending.clone();
        for p in &mut pending {
            let socket = self.socket(p.iface, p.socket);
            match socket.state() {
                tcp::State::Closed => {
                    // A listener's port cannot be refused.
                    let _ = socket.listen(port);
                    p.syn_since = None;
                    p.ready_since = None;
                }
                tcp::State::SynReceived => {
                    p.syn_since.get_or_insert(now_ms);
                }
                state if acceptable(state) => {
                    p.syn_since = None;
                    let since = *p.ready_since.get_or_insert(now_ms);
                    if now_ms.saturating_sub(since) >= BACKLOG_WAIT_MS {
                        // Nobody accepted it in time: reset (the next poll sends the
                        // RST), and the refill after it listens again.
                        socket.abort();
                        p.ready_since = None;
                    }
                }
                _ => {
                    p.syn_since = None;
                    p.ready_since = None;
                }
            }
        }
        for iface in self.ifaces() {
            let mut listening = 0;
            let mut oldest: Option<(u64, SocketHandle)> = None;
            for p in pending.iter().filter(|p| p.iface == iface) {
                if self.socket(p.iface, p.socket).state() == tcp::State::Listen {
                    listening += 1;
                }
                if let Some(since) = p.syn_since
                    && oldest.is_none_or(|(o, _)| since < o)
                {
                    oldest = Some((since, p.socket));
                }
            }
            if listening == 0
                && let Some((_, socket)) = oldest
            {
                let s = self.socket(iface, socket);
                s.abort();
                let _ = s.listen(port);
                if let Some(p) = pending.iter_mut().find(|p| p.socket == socket) {
                    p.syn_since = None;
                }
            }
        }
        for iface in self.ifaces() {
            let have = pending.iter().filter(|p| p.iface == iface).count();
            for _ in have..usize::from(backlog) {
                let held = self.sockets_of(owner) - self.pending_of(at) + pending.len();
                if held >= MAX_SOCKETS_PER_TASK {
                    break;
                }
                let mut socket = new_socket();
                socket.set_timeout(Some(SYN_TIMEOUT));
                if socket.listen(port).is_err() {
                    break;
                }
                let Some(handle) = self.add_socket(iface, socket) else {
                    break;
                };
                pending.push(Pending {
                    iface,
                    socket: handle,
                    syn_since: None,
                    ready_since: None,
                });
            }
        }
        if let Kind::Listener { pending: kept, .. } = &mut self.entries[at].kind {
            *kept = pending;
        }
    }

    fn pending_of(&self, at: usize) -> usize {
        match &self.entries[at].kind {
            Kind::Listener { pending, .. } => pending.len(),
            Kind::Stream { .. } => 0,
        }
    }

    /// `LISTEN`: listens on `port` on every interface.
    ///
    /// # Errors
    /// `InUse`, `Full`.
    pub fn listen(
        &mut self,
        owner: ServiceId,
        port: u16,
        backlog: u8,
    ) -> Result<Handle, ServiceError> {
        if self.port_in_use(port)
            || self
                .entries
                .iter()
                .any(|e| matches!(e.kind, Kind::Listener { port: p, .. } if p == port))
        {
            return Err(ServiceError::InUse);
        }
        let needs = self.ifaces().len() * usize::from(backlog);
        if self.held_by(owner) >= MAX_SOCKETS_PER_CALLER
            || self.sockets_of(owner) + needs > MAX_SOCKETS_PER_TASK
            || self.sockets_in_use() + needs > MAX_SOCKETS
        {
            return Err(ServiceError::Full);
        }
        let handle = self.new_handle();
        self.entries.push(Entry {
            owner,
            handle,
            kind: Kind::Listener {
                port,
                backlog,
                pending: Vec::new(),
            },
        });
        let at = self.entries.len() - 1;
        self.refill(at);
        Ok(handle)
    }

    /// `ACCEPT` without waiting: a connection whose handshake is complete, or `None`.
    ///
    /// # Errors
    /// `BadHandle` (not a listener of the caller's), `Full` (the caller's table; the
    /// connection stays in the backlog).
    pub fn try_accept(
        &mut self,
        owner: ServiceId,
        listener: Handle,
    ) -> Result<Option<Accepted>, ServiceError> {
        let at = self.find(owner, listener)?;
        let Kind::Listener { pending, .. } = &self.entries[at].kind else {
            return Err(ServiceError::BadHandle);
        };
        let pending = pending.clone();
        let ready = pending
            .iter()
            .position(|p| acceptable(self.socket(p.iface, p.socket).state()));
        let Some(index) = ready else {
            self.refill(at);
            return Ok(None);
        };
        if self.held_by(owner) >= MAX_SOCKETS_PER_CALLER {
            return Err(ServiceError::Full);
        }
        let Pending { iface, socket, .. } = pending[index];
        if let Kind::Listener { pending, .. } = &mut self.entries[at].kind {
            pending.remove(index);
        }
        let (remote, local) = {
            let s = self.socket(iface, socket);
            // The handshake is done: the timeout for a silent peer, not for a SYN.
            s.set_timeout(Some(PEER_TIMEOUT));
            (endpoint(s.remote_endpoint()), endpoint(s.local_endpoint()))
        };
        self.refill(at);
        let handle = self.new_handle();
        self.entries.push(Entry {
            owner,
            handle,
            kind: Kind::Stream {
                iface,
                socket,
                announced: true,
            },
        });
        Ok(Some(Accepted {
            handle,
            remote,
            local,
        }))
    }

    /// `CONNECT`: starts a connection to `remote`; [`Stack::connected`] says when it
    /// is established.
    ///
    /// # Errors
    /// `Unavailable` (no route), `Full`.
    pub fn connect(
        &mut self,
        owner: ServiceId,
        remote: SocketAddr,
    ) -> Result<Handle, ServiceError> {
        let ip = Ipv4Address::from(remote.ip);
        let iface = if remote.is_loopback() {
            Iface::Loopback
        } else {
            match &self.net {
                Some((_, config)) if config.contains(ip) || config.gateway.is_some() => Iface::Net,
                _ => return Err(ServiceError::Unavailable),
            }
        };
        if ip.is_broadcast() || ip.is_multicast() || ip.is_unspecified() {
            return Err(ServiceError::Unavailable);
        }
        if self.held_by(owner) >= MAX_SOCKETS_PER_CALLER
            || self.sockets_of(owner) >= MAX_SOCKETS_PER_TASK
        {
            return Err(ServiceError::Full);
        }
        let port = self.ephemeral_port().ok_or(ServiceError::Full)?;
        let handle = self
            .add_socket(iface, new_socket())
            .ok_or(ServiceError::Full)?;
        let started = {
            let (link_iface, socket) = match iface {
                Iface::Net => {
                    let (link, _) = self.net.as_mut().expect("routed to the net interface");
                    (&mut link.iface, link.sockets.get_mut::<tcp::Socket>(handle))
                }
                Iface::Loopback => (
                    &mut self.lo.iface,
                    self.lo.sockets.get_mut::<tcp::Socket>(handle),
                ),
            };
            socket.connect(
                link_iface.context(),
                (IpAddress::Ipv4(ip), remote.port),
                port,
            )
        };
        if started.is_err() {
            self.remove_socket(iface, handle);
            return Err(ServiceError::Unavailable);
        }
        let id = self.new_handle();
        self.entries.push(Entry {
            owner,
            handle: id,
            kind: Kind::Stream {
                iface,
                socket: handle,
                announced: false,
            },
        });
        Ok(id)
    }

    /// Whether a connection `CONNECT` started is established: its local address when
    /// it is, `None` while it is being set up.
    ///
    /// # Errors
    /// `Refused` when it was reset (nobody listens there), `BadHandle`.
    pub fn connected(
        &mut self,
        owner: ServiceId,
        handle: Handle,
    ) -> Result<Option<SocketAddr>, ServiceError> {
        let (iface, socket) = self.stream(owner, handle)?;
        let socket = self.socket(iface, socket);
        match socket.state() {
            tcp::State::SynSent | tcp::State::SynReceived => Ok(None),
            tcp::State::Established | tcp::State::CloseWait => {
                Ok(Some(endpoint(socket.local_endpoint())))
            }
            _ => Err(ServiceError::Refused),
        }
    }

    /// `SEND` without waiting: queues what fits and says how much.
    ///
    /// # Errors
    /// `Closed` when this side may not send any more, `BadHandle`.
    pub fn send(
        &mut self,
        owner: ServiceId,
        handle: Handle,
        data: &[u8],
    ) -> Result<usize, ServiceError> {
        let (iface, socket) = self.stream(owner, handle)?;
        let socket = self.socket(iface, socket);
        if !socket.may_send() {
            return Err(ServiceError::Closed);
        }
        socket.send_slice(data).map_err(|_| ServiceError::Closed)
    }

    /// `RECV` without waiting: up to `max` bytes, or `None` when none wait.
    ///
    /// # Errors
    /// `Closed` when the peer closed (or reset) and every byte was taken, `BadHandle`.
    pub fn recv(
        &mut self,
        owner: ServiceId,
        handle: Handle,
        max: usize,
    ) -> Result<Option<Vec<u8>>, ServiceError> {
        let (iface, socket) = self.stream(owner, handle)?;
        let socket = self.socket(iface, socket);
        if socket.can_recv() {
            let mut data = vec![0u8; max.min(socket.recv_queue())];
            let n = socket
                .recv_slice(&mut data)
                .map_err(|_| ServiceError::Closed)?;
            data.truncate(n);
            return Ok(Some(data));
        }
        if !socket.may_recv() {
            return Err(ServiceError::Closed);
        }
        Ok(None)
    }

    /// `CLOSE`: frees the handle at once. A connection closes gracefully (or is reset
    /// when `abort`) and lingers until the close is done, at most 5 s; a listener's
    /// backlog is reset.
    ///
    /// # Errors
    /// `BadHandle`.
    pub fn close(
        &mut self,
        owner: ServiceId,
        handle: Handle,
        abort: bool,
        now_ms: u64,
    ) -> Result<(), ServiceError> {
        let at = self.find(owner, handle)?;
        let entry = self.entries.remove(at);
        match entry.kind {
            Kind::Listener { pending, .. } => {
                for p in pending {
                    self.socket(p.iface, p.socket).abort();
                    self.lingering.push(Lingering {
                        owner,
                        iface: p.iface,
                        socket: p.socket,
                        until_ms: now_ms,
                    });
                }
            }
            Kind::Stream { iface, socket, .. } => {
                let s = self.socket(iface, socket);
                if abort {
                    s.abort();
                } else {
                    s.close();
                }
                self.lingering.push(Lingering {
                    owner,
                    iface,
                    socket,
                    until_ms: now_ms + LINGER_MS,
                });
            }
        }
        Ok(())
    }

    /// Closes every socket `owner` holds, with a reset (its process ended: the kernel
    /// restarted the task, and the new process knows none of them); returns how many
    /// handles it held.
    pub fn forget_owner(&mut self, owner: ServiceId, now_ms: u64) -> usize {
        let handles: Vec<Handle> = self
            .entries
            .iter()
            .filter(|e| e.owner == owner)
            .map(|e| e.handle)
            .collect();
        for handle in &handles {
            let _ = self.close(owner, *handle, true, now_ms);
        }
        handles.len()
    }

    /// `STATUS`.
    ///
    /// # Errors
    /// `BadHandle`.
    pub fn status(&mut self, owner: ServiceId, handle: Handle) -> Result<Status, ServiceError> {
        let at = self.find(owner, handle)?;
        match self.entries[at].kind {
            Kind::Listener { port, .. } => Ok(Status {
                state: SocketState::Listening,
                remote: SocketAddr {
                    ip: [0; 4],
                    port: 0,
                },
                local: SocketAddr { ip: [0; 4], port },
                rx_queued: 0,
                tx_queued: 0,
            }),
            Kind::Stream { iface, socket, .. } => {
                let s = self.socket(iface, socket);
                let state = match s.state() {
                    tcp::State::SynSent | tcp::State::SynReceived => SocketState::Connecting,
                    tcp::State::Established => SocketState::Established,
                    tcp::State::CloseWait => SocketState::PeerClosed,
                    tcp::State::FinWait1
                    | tcp::State::FinWait2
                    | tcp::State::Closing
                    | tcp::State::LastAck
                    | tcp::State::TimeWait => SocketState::Closing,
                    tcp::State::Closed | tcp::State::Listen => SocketState::Closed,
                };
                Ok(Status {
                    state,
                    remote: endpoint(s.remote_endpoint()),
                    local: endpoint(s.local_endpoint()),
                    rx_queued: u16::try_from(s.recv_queue()).unwrap_or(u16::MAX),
                    tx_queued: u16::try_from(s.send_queue()).unwrap_or(u16::MAX),
                })
            }
        }
    }

    /// `WAIT` without waiting: the caller's sockets that are ready now. A connection
    /// reported established ([`READY_CONNECTED`]) is not reported so again.
    pub fn ready(&mut self, owner: ServiceId) -> Vec<Ready> {
        let mut ready = Vec::new();
        for at in 0..self.entries.len() {
            if self.entries[at].owner != owner {
                continue;
            }
            let handle = self.entries[at].handle;
            let mut flags = 0;
            match &self.entries[at].kind {
                Kind::Stream {
                    iface,
                    socket,
                    announced,
                } => {
                    let (iface, socket, announced) = (*iface, *socket, *announced);
                    let s = self.socket(iface, socket);
                    let state = s.state();
                    if !announced {
                        if acceptable(state) {
                            flags |= READY_CONNECTED;
                        } else if !matches!(state, tcp::State::SynSent | tcp::State::SynReceived) {
                            flags |= READY_CLOSED;
                        }
                    } else {
                        if s.can_recv() || !s.may_recv() {
                            flags |= READY_READABLE;
                        }
                        if matches!(state, tcp::State::Closed | tcp::State::TimeWait) {
                            flags |= READY_CLOSED;
                        }
                    }
                    if flags & READY_CONNECTED != 0
                        && let Kind::Stream { announced, .. } = &mut self.entries[at].kind
                    {
                        *announced = true;
                    }
                }
                Kind::Listener { pending, .. } => {
                    let pending = pending.clone();
                    if pending
                        .iter()
                        .any(|p| acceptable(self.socket(p.iface, p.socket).state()))
                    {
                        flags |= READY_ACCEPTABLE;
                    }
                }
            }
            if flags != 0 {
                ready.push(Ready { handle, flags });
            }
        }
        ready
    }

    /// Moves packets on both interfaces (bounded), drops connections that finished
    /// closing or lingered too long, and re-arms listeners. Returns whether a socket's
    /// state may have changed.
    pub fn poll(&mut self, now_ms: u64) -> bool {
        self.now_ms = now_ms;
        let now = instant(now_ms);
        let mut changed = false;
        if let Some((link, _)) = self.net.as_mut() {
            changed |= link.pump(now).1;
        }
        for _ in 0..LOOPBACK_ROUNDS {
            let (taken, c) = self.lo.pump(now);
            changed |= c;
            if taken == 0 {
                break;
            }
        }
        self.reap(now_ms);
        changed
    }

    fn reap(&mut self, now_ms: u64) {
        let lingering = core::mem::take(&mut self.lingering);
        for l in lingering {
            let state = self.socket(l.iface, l.socket).state();
            if matches!(state, tcp::State::Closed | tcp::State::TimeWait) || now_ms >= l.until_ms {
                self.remove_socket(l.iface, l.socket);
            } else {
                self.lingering.push(l);
            }
        }
        for at in 0..self.entries.len() {
            if matches!(self.entries[at].kind, Kind::Listener { .. }) {
                self.refill(at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stack with no network device (the type parameter is never instantiated).
    struct NoDevice;

    impl RawNetDevice for NoDevice {
        fn mac(&self) -> [u8; 6] {
            [2, 0, 0, 0, 0, 9]
        }
        fn receive(&mut self, _: &mut [u8]) -> Result<Option<usize>, ipc::DeviceError> {
            Ok(None)
        }
        fn transmit(&mut self, _: &[u8]) -> Result<(), ipc::DeviceError> {
            Ok(())
        }
        fn reset(&mut self) -> Result<ipc::NetReset, ipc::DeviceError> {
            Ok(ipc::NetReset::default())
        }
    }

    #[test]
    fn handles_wrap_past_u16_max_never_to_zero_and_skip_handles_in_use() {
        let mut stack = Stack::<NoDevice>::new(1, 0);
        let first = stack.listen(ServiceId::Selftest, 1000, 1).unwrap();
        assert_eq!(first, Handle(1));
        stack.next_handle = u16::MAX - 1;
        let a = stack.listen(ServiceId::Selftest, 1001, 1).unwrap();
        let b = stack.listen(ServiceId::Selftest, 1002, 1).unwrap();
        let c = stack.listen(ServiceId::Selftest, 1003, 1).unwrap();
        assert_eq!(
            (a, b),
            (Handle::new(0, u16::MAX - 1), Handle::new(0, u16::MAX))
        );
        assert_eq!(c, Handle(2), "0 is never a handle, and 1 is in use");
    }

    #[test]
    fn handles_carry_the_generation_and_another_generations_are_restarted_not_bad() {
        let mut old = Stack::<NoDevice>::new(1, 0).with_generation(4);
        let stale = old.listen(ServiceId::Selftest, 1000, 1).unwrap();
        assert_eq!(stale.generation(), 4);
        let mut new = Stack::<NoDevice>::new(1, 0).with_generation(5);
        let fresh = new.listen(ServiceId::Selftest, 1000, 1).unwrap();
        assert_eq!(fresh, Handle::new(5, 1));
        assert_eq!(
            stale.number(),
            fresh.number(),
            "both processes numbered their first handle 1"
        );
        assert_eq!(
            new.try_accept(ServiceId::Selftest, stale).err(),
            Some(ServiceError::Restarted),
            "the old generation's handle never reaches the new listener"
        );
        assert_eq!(
            new.close(ServiceId::Selftest, stale, true, 0).err(),
            Some(ServiceError::Restarted)
        );
        assert_eq!(
            new.try_accept(ServiceId::Logd, fresh).err(),
            Some(ServiceError::BadHandle)
        );
        assert!(
            new.try_accept(ServiceId::Selftest, fresh)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn forgetting_an_owner_closes_its_sockets_and_no_one_elses() {
        let mut stack = Stack::<NoDevice>::new(1, 0);
        let gone = stack.listen(ServiceId::Dsoftbusd, 7411, 2).unwrap();
        stack.listen(ServiceId::Dsoftbusd, 7412, 2).unwrap();
        let kept = stack.listen(ServiceId::Selftest, 7413, 2).unwrap();
        assert_eq!(stack.forget_owner(ServiceId::Dsoftbusd, 0), 2);
        assert_eq!(
            stack.status(ServiceId::Dsoftbusd, gone).err(),
            Some(ServiceError::BadHandle)
        );
        assert!(stack.status(ServiceId::Selftest, kept).is_ok());
        // The port is free for the owner's next process once the stack has run.
        stack.poll(0);
        assert_eq!(
            stack
                .listen(ServiceId::Dsoftbusd, 7411, 2)
                .map(|h| h.number() > 0),
            Ok(true)
        );
        assert_eq!(stack.forget_owner(ServiceId::Logd, 0), 0);
    }

    #[test]
    fn ephemeral_ports_wrap_within_the_dynamic_range_and_skip_ports_in_use() {
        let mut stack = Stack::<NoDevice>::new(1, 0);
        stack.listen(ServiceId::Selftest, 49152, 1).unwrap();
        stack.next_port = 65535;
        assert_eq!(stack.ephemeral_port(), Some(65535));
        assert_eq!(stack.ephemeral_port(), Some(49153), "49152 is listened on");
        assert_eq!(stack.ephemeral_port(), Some(49154));
    }

    #[test]
    fn the_clock_can_run_for_years_without_overflow() {
        let mut stack = Stack::<NoDevice>::new(1, 0);
        let listener = stack.listen(ServiceId::Selftest, 7411, 2).unwrap();
        for now in [u64::from(u32::MAX), 1 << 40, u64::MAX] {
            stack.poll(now);
            assert!(
                stack
                    .try_accept(ServiceId::Selftest, listener)
                    .unwrap()
                    .is_none()
            );
        }
    }
}
