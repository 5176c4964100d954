//! Attacks by network peers that are not well-behaved TCP stacks, through a network
//! device the test drives frame by frame (Ethernet, ARP, IPv4, TCP built here), and by
//! local tasks against netstackd's budgets. Each was found by a review and failed
//! before its fix; each now proves the fix.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use dsoftbusd::client::{Believed, Node, Stream, connect_tcp};
use dsoftbusd::wire::{Hello, HelloReply, HelloStatus};
use host_runner::{Disks, Entropy, HostSystem};
use ipc::{
    Action, AuditFilter, DeviceError, Endpoint, Operation, RawNetDevice, ServiceId, Verdict,
};
use provider_api::{Bundle, SecretBytes, Seed, VerifyingKey};
use provider_hash::Blake2s;
use provider_select::backends::provider_chacha::ChaCha20Poly1305;
use provider_select::backends::provider_dalek::Dalek;
use service_api::netstackd::{self, SocketAddr};
use service_api::{ClientError, ServiceError, keystored};

type DC = Bundle<Dalek, ChaCha20Poly1305>;

#[derive(Default)]
struct Wire {
    rx: VecDeque<Vec<u8>>,
    log: Vec<Seg>,
}
struct FakeNet(Rc<RefCell<Wire>>);
const DEV_MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
const DEV_IP: [u8; 4] = [10, 0, 2, 15];
impl RawNetDevice for FakeNet {
    fn mac(&self) -> [u8; 6] {
        DEV_MAC
    }
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, DeviceError> {
        let mut w = self.0.borrow_mut();
        match w.rx.pop_front() {
            Some(f) => {
                buf[..f.len()].copy_from_slice(&f);
                Ok(Some(f.len()))
            }
            None => Ok(None),
        }
    }
    fn transmit(&mut self, frame: &[u8]) -> Result<(), DeviceError> {
        if let Some(seg) = parse(frame) {
            self.0.borrow_mut().log.push(seg);
        }
        Ok(())
    }
    fn reset(&mut self) -> Result<ipc::NetReset, DeviceError> {
        // The wire never fails, so nothing asks for a reset.
        Ok(ipc::NetReset::default())
    }
}

#[derive(Clone, Debug)]
struct Seg {
    dst_ip: [u8; 4],
    dport: u16,
    seq: u32,
    flags: u8,
    payload: Vec<u8>,
}
const FIN: u8 = 1;
const SYN: u8 = 2;
const RST: u8 = 4;
const PSH: u8 = 8;
const ACK: u8 = 0x10;

fn parse(f: &[u8]) -> Option<Seg> {
    if f.len() < 14 || f[12..14] != [8, 0] {
        return None;
    }
    let ip = &f[14..];
    let ihl = usize::from(ip[0] & 0xf) * 4;
    if ip[9] != 6 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let t = &ip[ihl..total];
    let doff = usize::from(t[12] >> 4) * 4;
    Some(Seg {
        dst_ip: ip[16..20].try_into().unwrap(),
        dport: u16::from_be_bytes([t[2], t[3]]),
        seq: u32::from_be_bytes(t[4..8].try_into().unwrap()),
        flags: t[13],
        payload: t[doff..].to_vec(),
    })
}

fn csum(data: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        s += u32::from(w);
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn eth(src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&DEV_MAC);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[derive(Clone)]
struct Peer {
    mac: [u8; 6],
    ip: [u8; 4],
    port: u16,
    seq: u32,
    ack: u32,
}

impl Peer {
    fn new(ip_last: u8, port: u16) -> Self {
        Self {
            mac: [0x52, 0x55, 10, 0, 2, ip_last],
            ip: [10, 0, 2, ip_last],
            port,
            seq: 1000,
            ack: 0,
        }
    }
    fn arp(&self) -> Vec<u8> {
        let mut p = vec![0, 1, 8, 0, 6, 4, 0, 1];
        p.extend_from_slice(&self.mac);
        p.extend_from_slice(&self.ip);
        p.extend_from_slice(&[0; 6]);
        p.extend_from_slice(&DEV_IP);
        eth(self.mac, 0x0806, &p)
    }
    fn tcp(&self, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&self.port.to_be_bytes());
        t.extend_from_slice(&dport.to_be_bytes());
        t.extend_from_slice(&self.seq.to_be_bytes());
        t.extend_from_slice(&self.ack.to_be_bytes());
        t.push(5 << 4);
        t.push(flags);
        t.extend_from_slice(&65535u16.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0]);
        t.extend_from_slice(payload);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&self.ip);
        pseudo.extend_from_slice(&DEV_IP);
        pseudo.push(0);
        pseudo.push(6);
        pseudo.extend_from_slice(&(t.len() as u16).to_be_bytes());
        pseudo.extend_from_slice(&t);
        let c = csum(&pseudo);
        t[16..18].copy_from_slice(&c.to_be_bytes());
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&((20 + t.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
        ip.extend_from_slice(&self.ip);
        ip.extend_from_slice(&DEV_IP);
        let c = csum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip.extend_from_slice(&t);
        eth(self.mac, 0x0800, &ip)
    }
}

fn segs_to(wire: &Rc<RefCell<Wire>>, p: &Peer) -> Vec<Seg> {
    wire.borrow()
        .log
        .iter()
        .filter(|s| s.dst_ip == p.ip && s.dport == p.port)
        .cloned()
        .collect()
}

async fn sleep<E: Endpoint>(ep: &E, ms: u64) {
    let until = ep.uptime_ms() + ms;
    while ep.uptime_ms() < until {
        ep.yield_now().await;
    }
}

fn inject(wire: &Rc<RefCell<Wire>>, f: Vec<u8>) {
    wire.borrow_mut().rx.push_back(f);
}

/// SYN; returns the server's answer flags (SYN|ACK, RST, or 0 for nothing).
async fn syn<E: Endpoint>(ep: &E, wire: &Rc<RefCell<Wire>>, p: &mut Peer) -> u8 {
    inject(wire, p.arp());
    inject(wire, p.tcp(7411, SYN, &[]));
    sleep(ep, 10).await;
    let segs = segs_to(wire, p);
    let Some(first) = segs.first() else { return 0 };
    if first.flags & SYN != 0 {
        p.seq = p.seq.wrapping_add(1);
        p.ack = first.seq.wrapping_add(1);
    }
    first.flags & (SYN | ACK | RST)
}

/// The whole TCP handshake, `data`, then every byte (and FIN) acknowledged but no FIN
/// of its own: a peer that keeps its side open.
async fn open_send_ack<E: Endpoint>(
    ep: &E,
    wire: &Rc<RefCell<Wire>>,
    p: &mut Peer,
    data: &[u8],
) -> Result<Vec<u8>, u8> {
    let f = syn(ep, wire, p).await;
    if f != SYN | ACK {
        return Err(f);
    }
    inject(wire, p.tcp(7411, ACK, &[]));
    inject(wire, p.tcp(7411, PSH | ACK, data));
    p.seq = p.seq.wrapping_add(data.len() as u32);
    sleep(ep, 10).await;
    let mut got = Vec::new();
    for s in segs_to(wire, p) {
        if !s.payload.is_empty() && s.seq == p.ack {
            got.extend_from_slice(&s.payload);
            p.ack = p.ack.wrapping_add(s.payload.len() as u32);
        }
        if s.flags & FIN != 0 && s.seq.wrapping_add(s.payload.len() as u32) == p.ack {
            p.ack = p.ack.wrapping_add(1);
        }
    }
    let fin = segs_to(wire, p).iter().any(|s| s.flags & FIN != 0);
    inject(wire, p.tcp(7411, ACK, &[]));
    if !fin {
        got.push(0xEE); // marker: no FIN seen
    }
    Ok(got)
}

fn networked() -> (HostSystem, Rc<RefCell<Wire>>) {
    let wire = Rc::new(RefCell::new(Wire::default()));
    let system = HostSystem::boot_networked::<DC>(
        Entropy::Host,
        Disks::random(),
        Box::new(FakeNet(Rc::clone(&wire))),
    );
    (system, wire)
}

/// Four SYNs nobody completes used to hold every listening socket of the device
/// interface for smoltcp's 10 s peer timeout, and every other peer was reset. Now the
/// oldest half-open TCP connection gives way when none is left listening.
#[test]
fn a_few_uncompleted_syns_do_not_lock_peers_out() {
    let (mut system, wire) = networked();
    let answers = system.run_as(ServiceId::Selftest, move |ep| async move {
        service_api::dsoftbusd::discover(&ep).await.unwrap();
        sleep(&ep, 100).await;
        for i in 0..8u16 {
            syn(&ep, &wire, &mut Peer::new(3, 40000 + i)).await;
        }
        let mut answers = Vec::new();
        for n in 0..4u16 {
            answers.push(syn(&ep, &wire, &mut Peer::new(4, 50000 + n)).await);
            sleep(&ep, 50).await;
        }
        answers
    });
    assert!(answers.iter().all(|f| *f == SYN | ACK), "{answers:x?}");
}

/// Peers that send a bad hello and keep their side open used to pin netstackd's whole
/// socket budget (each refused connection lingering), so even the loopback interface
/// had no socket left for anyone. Now dsoftbusd's peers count against dsoftbusd's
/// budget: its port fills, the stack does not.
#[test]
fn bad_hellos_that_keep_their_side_open_starve_no_other_task() {
    let (mut system, wire) = networked();
    let (opened, local) = system.run_as(ServiceId::Selftest, move |ep| async move {
        service_api::dsoftbusd::discover(&ep).await.unwrap();
        sleep(&ep, 100).await;
        let mut opened = 0;
        for i in 0..60u16 {
            if open_send_ack(&ep, &wire, &mut Peer::new(3, 30000 + i), b"\x00\x05GET /")
                .await
                .is_ok()
            {
                opened += 1;
            }
        }
        let local = netstackd::connect(&ep, SocketAddr::loopback(9), 300)
            .await
            .map(|_| ());
        (opened, local)
    });
    assert!(opened > 0);
    // Nothing listens on loopback port 9: a socket was free to be refused.
    assert_eq!(local, Err(ClientError::Service(ServiceError::Refused)));
}

/// Hellos alone used to spend the entropy pace (the draw was taken at the hello), so
/// one peer saying hello kept every other at Busy. Now only a first message draws.
#[test]
fn hellos_alone_do_not_drain_the_entropy_pace() {
    let mut system = HostSystem::boot::<DC>(Entropy::Host);
    let (statuses, legit) = system.run_as(ServiceId::Selftest, |ep| async move {
        let node = Node::<DC>::new(&Seed::new([7; 32]), &SecretBytes::new([8; 32])).unwrap();
        service_api::dsoftbusd::discover(&ep).await.unwrap();
        service_api::dsoftbusd::trust(&ep, &node.device_key())
            .await
            .unwrap();
        let device = VerifyingKey::from_bytes(&keystored::get_pubkey(&ep).await.unwrap()).unwrap();
        let suite = noise_xk::protocol_name::<ChaCha20Poly1305, Blake2s>();
        let mut statuses = Vec::new();
        for _ in 0..40 {
            let mut s = Stream::open(&ep, SocketAddr::loopback(7411)).await.unwrap();
            s.send(
                &ep,
                &Hello {
                    suite: suite.clone(),
                }
                .encode(),
            )
            .await
            .unwrap();
            let reply = s.recv(&ep).await.ok().flatten();
            statuses.push(reply.map(|r| HelloReply::decode(&r).unwrap().status));
            s.close(&ep, true).await;
            sleep(&ep, 5).await;
        }
        let legit = connect_tcp::<DC, Blake2s, _>(
            &ep,
            &node,
            SocketAddr::loopback(7411),
            Believed::FromHello,
            &[device],
            |_, _| {},
        )
        .await
        .map(drop);
        (statuses, legit)
    });
    assert!(
        statuses.iter().all(|s| *s == Some(HelloStatus::Ok)),
        "{statuses:?}"
    );
    assert_eq!(legit, Ok(()));
}

/// One task's listeners (a listener handle costs a backlog of sockets) used to take
/// every socket of the stack, and dsoftbusd's CONNECT failed. Now sockets are counted
/// per task.
#[test]
fn one_task_cannot_take_every_socket() {
    let mut system = HostSystem::boot::<DC>(Entropy::Host);
    let (refused, after) = system.run_as(ServiceId::Selftest, |ep| async move {
        service_api::dsoftbusd::discover(&ep).await.unwrap();
        let own = keystored::get_pubkey(&ep).await.unwrap();
        service_api::dsoftbusd::trust(&ep, &own).await.unwrap();
        let mut refused = None;
        for port in 20000..20016u16 {
            if let Err(e) = netstackd::listen(&ep, port, netstackd::MAX_BACKLOG).await {
                refused = Some(e);
                break;
            }
        }
        let after = service_api::dsoftbusd::connect(&ep, SocketAddr::loopback(7411), &own)
            .await
            .map(|_| ());
        (refused, after)
    });
    assert_eq!(refused, Some(ClientError::Service(ServiceError::Full)));
    assert_eq!(after, Ok(()), "dsoftbusd still has sockets");
}

/// A CONNECT to an address that never answers was sometimes answered by the kernel's
/// call timeout rather than dsoftbusd (its deadline was checked only on events).
#[test]
fn connect_to_a_silent_address_is_answered_by_dsoftbusd_in_time() {
    let mut system = HostSystem::boot::<DC>(Entropy::Host);
    let outcomes = system.run_as(ServiceId::Selftest, |ep| async move {
        service_api::dsoftbusd::discover(&ep).await.unwrap();
        let own = keystored::get_pubkey(&ep).await.unwrap();
        service_api::dsoftbusd::trust(&ep, &own).await.unwrap();
        let mut outcomes = Vec::new();
        for i in 0..8u64 {
            sleep(&ep, 137 * i % 1000).await;
            let silent = SocketAddr {
                ip: [127, 0, 0, 2],
                port: 7411,
            };
            outcomes.push(
                service_api::dsoftbusd::connect(&ep, silent, &own)
                    .await
                    .map(|_| ()),
            );
        }
        outcomes
    });
    assert!(
        outcomes
            .iter()
            .all(|r| *r == Err(ClientError::Service(ServiceError::TimedOut))),
        "{outcomes:?}"
    );
}

/// Every IPC call is a kernel record. A task that calls a lot (dsoftbusd working for
/// network peers: the review measured about 11 calls per garbage connection) used to
/// retire the kernel's records about every other task from logd's journal. Now the
/// kernel's records are kept per subject.
#[test]
fn a_task_that_calls_a_lot_does_not_retire_records_about_another() {
    let mut system = HostSystem::boot::<DC>(Entropy::Host);
    let denied = system.run_as(ServiceId::SelftestPeer, |ep| async move {
        netstackd::listen(&ep, 9999, 1).await.map(|_| ())
    });
    assert!(denied.is_err(), "selftest-peer may not LISTEN");
    let filter = AuditFilter {
        origin: Some(ServiceId::Kernel),
        subject: Some(ServiceId::SelftestPeer),
        action: Some(Action::Call {
            service: ServiceId::Netstackd,
            code: Operation::NetstackdListen.code(),
        }),
        verdict: Some(Verdict::Denied),
    };
    let (before, after, evicted) = system.run_as(ServiceId::Selftest, move |ep| async move {
        let before = service_api::logd::query(&ep, &filter)
            .await
            .unwrap()
            .matched;
        for _ in 0..(logd::DEFAULT_LIMITS.kernel + 100) {
            let _ = netstackd::status(&ep, netstackd::Handle(0xffff)).await;
        }
        let after = service_api::logd::query(&ep, &filter).await.unwrap();
        (before, after.matched, after.evicted)
    });
    assert_eq!(before, 1);
    assert!(evicted > 0, "the calls did retire records (their own)");
    assert_eq!(after, 1, "the denial about selftest-peer is still held");
}

/// A connection whose handshake is complete waited in a listener's backlog for as long
/// as its peer kept sending (smoltcp's timer only fires on a silent peer), holding a
/// backlog slot nobody accepted. Now it is reset after `BACKLOG_WAIT_MS`.
#[test]
fn a_connection_nobody_accepts_leaves_the_backlog_in_bounded_time() {
    let mut system = HostSystem::boot::<DC>(Entropy::Host);
    let clock = system.clock();
    let states = system.run_as(ServiceId::Selftest, move |ep| async move {
        netstackd::listen(&ep, 9100, 1).await.unwrap();
        let (client, _) = netstackd::connect(&ep, SocketAddr::loopback(9100), 1000)
            .await
            .unwrap();
        let mut states = Vec::new();
        // Never accepted; the peer sends a byte every 250 ms for 4 s.
        for _ in 0..16 {
            clock.skip_ms(250);
            let _ = netstackd::send(&ep, client, b"x", 0).await;
            sleep(&ep, 2).await;
            states.push(netstackd::status(&ep, client).await.map(|s| s.state));
        }
        states
    });
    let ms = ::netstackd::stack::BACKLOG_WAIT_MS;
    let closed_at = states
        .iter()
        .position(|s| *s == Ok(netstackd::SocketState::Closed))
        .map(|step| (step as u64 + 1) * 250);
    assert!(
        closed_at.is_some_and(|t| t >= ms && t <= ms + 1000),
        "reset {closed_at:?} ms after it was established, bound {ms} ms: {states:?}"
    );
}

/// A SYN-ACK that never reached the peer (a frame a device reset dropped) was never
/// sent again: the listening socket's timeout (1 s) ran out before smoltcp's first
/// retransmission (1 s), and the peer was reset. Now it is sent again and the
/// connection completes.
#[test]
fn a_lost_syn_ack_is_sent_again_and_the_connection_completes() {
    let (mut system, wire) = networked();
    let clock = system.clock();
    let (first, again, accepted) = system.run_as(ServiceId::Selftest, move |ep| async move {
        let listener = netstackd::listen(&ep, 9200, netstackd::MAX_BACKLOG)
            .await
            .unwrap();
        let mut p = Peer::new(5, 41000);
        inject(&wire, p.arp());
        inject(&wire, p.tcp(9200, SYN, &[]));
        sleep(&ep, 10).await;
        let first = segs_to(&wire, &p).first().map(|s| s.flags);
        // That SYN-ACK is lost; the peer hears nothing more for 1.2 s.
        wire.borrow_mut().log.clear();
        for _ in 0..6 {
            clock.skip_ms(200);
            sleep(&ep, 2).await;
        }
        let segs = segs_to(&wire, &p);
        let again = segs.first().map(|s| s.flags);
        if let Some(s) = segs.first().filter(|s| s.flags & SYN != 0) {
            p.seq = p.seq.wrapping_add(1);
            p.ack = s.seq.wrapping_add(1);
            inject(&wire, p.tcp(9200, ACK, &[]));
        }
        sleep(&ep, 10).await;
        let accepted = netstackd::accept(&ep, listener, 500).await.map(|_| ());
        (first, again, accepted)
    });
    assert_eq!(first, Some(SYN | ACK));
    assert_eq!(again, Some(SYN | ACK), "sent again, not reset");
    assert_eq!(accepted, Ok(()));
}
