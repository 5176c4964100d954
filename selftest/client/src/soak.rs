//! The soak (`-append soak=N`, `cargo xtask soak`): after the ladder, `N` rounds of
//! everything the system does, then proof that memory is flat and every table within
//! its bound.
//!
//! A round is one session over TCP with a ping (hello, handshake, `READY`, `PING`,
//! `BYE`) and one IPC call of every kind the selftest may make: logd `QUERY`, rngd
//! `GET_ENTROPY`, keystored `GET_PUBKEY` and `EXPORT_PRIVATE` (refused), statefs `PUT`
//! and `GET`, dsoftbusd `DISCOVER`, `TRANSPORT` (a malformed first message, refused)
//! and `STATS`, netstackd `WAIT`, `STATUS` (no socket's handle, refused) and `STATS`.
//!
//! With `-append soak.faults=<every> fault=by-request` (the second is the test
//! program's switch) a random service faults about every `<every>` rounds, at a round
//! drawn at random (from rngd; the schedule's seed is printed): the soak sends it the
//! request that makes it fault, and each service faults at most [`FAULTS_PER_SERVICE`]
//! times, so no restart policy is spent. A round that fails within [`CUT_MS`] of a
//! restart the kernel made is counted as cut by the fault, not as a failure, and the
//! next rounds must work again within [`RECOVER_MS`]; the soak prints how many
//! faults it made and how many rounds they cut.
//!
//! [`WARM_UP`] rounds run first, so bounded structures that fill as the system runs
//! (the audit journal, the allocator's free lists) reach their steady size; the heap
//! in use is read after them and again after the rounds, once closing connections had
//! time to go. The soak fails if the second exceeds the first by more than
//! [`LEAK_MARGIN`], or if any table is past its bound.

use alloc::format;
use alloc::string::String;

use dsoftbusd::client::{Believed, ConnectError, Node, connect_tcp};
use dsoftbusd::sessions::LIMITS;
use ipc::{AuditFilter, Endpoint};
use provider_api::{HashBackend, Provider, SecretBytes, VerifyingKey};
use service_api::netstackd::{self, Handle, MAX_SOCKETS_PER_CALLER, SocketAddr};
use service_api::pause as sleep;
use service_api::{ClientError, ServiceError, dsoftbusd as api, keystored, logd, rngd, statefs};

/// Rounds before the heap is first read.
pub const WARM_UP: usize = 100;
/// How much more heap may be in use after the rounds than before: allocator
/// fragmentation and buffers that grew to a size they keep (a vector's capacity), not
/// a leak. A leak of one byte per round shows at 10,000 rounds.
pub const LEAK_MARGIN: usize = 16 * 1024;
/// Faults at random rounds: the kernel's restart counter, and about how many rounds
/// apart.
#[derive(Clone, Copy)]
pub struct Faults {
    /// The restarts the kernel made so far, and its milliseconds at the latest.
    pub restarts: fn() -> [u64; 2],
    /// About how many rounds apart.
    pub every: usize,
}

/// How often the soak faults each service at most: one fewer than the restart
/// policy's limit (3 in 60 s), so a fast soak never spends it.
pub const FAULTS_PER_SERVICE: usize = 2;

/// A round that fails this soon after a restart was cut by the fault.
pub const CUT_MS: u64 = 3_000;
/// How soon after a restart rounds must work again.
pub const RECOVER_MS: u64 = 10_000;

/// How long closing connections get before the heap is read (netstackd lets one
/// linger 2 s at most).
const SETTLE_MS: u64 = 3_000;
/// netstackd's socket bound and parked-request bound (`netstackd::stack::MAX_SOCKETS`,
/// `netstackd::MAX_PARKED`).
const MAX_SOCKETS: u16 = 48;
const MAX_PARKED: u16 = 32;

/// The heap's figures, in bytes, as the kernel counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Heap {
    /// Allocated and not yet freed.
    pub in_use: usize,
    /// The most ever in use at once.
    pub high_water: usize,
    /// The heap's size.
    pub size: usize,
}

struct Soak<P: Provider> {
    node: Node<P>,
    trusted: [VerifyingKey<P::Sig>; 1],
    calls: u64,
}

impl<P: Provider> Soak<P> {
    async fn round<H: HashBackend, E: Endpoint>(&mut self, ep: &E) -> Result<(), String> {
        let dsoftbusd = SocketAddr::loopback(dsoftbusd::wire::PORT);
        let mut session = None;
        for _ in 0..100 {
            match connect_tcp::<P, H, E>(
                ep,
                &self.node,
                dsoftbusd,
                Believed::FromHello,
                &self.trusted,
                |_, _| {},
            )
            .await
            {
                // The entropy pace: 50 handshakes a second, at most.
                Err(ConnectError::Busy) => sleep(ep, 5).await,
                other => {
                    session = Some(other.map_err(|e| format!("session: {e}"))?);
                    break;
                }
            }
        }
        let mut session = session.ok_or_else(|| String::from("dsoftbusd stayed busy"))?;
        let pong = session
            .ping(ep, b"soak")
            .await
            .map_err(|e| format!("ping: {e}"))?;
        session.close(ep).await;
        if pong != b"soak" {
            return Err(String::from("the pong carries other data"));
        }
        let fail = |what: &str, e: ClientError| format!("{what}: {e}");
        logd::query(ep, &AuditFilter::default())
            .await
            .map_err(|e| fail("QUERY", e))?;
        rngd::get_entropy(ep, 32)
            .await
            .map_err(|e| fail("GET_ENTROPY", e))?;
        keystored::get_pubkey(ep)
            .await
            .map_err(|e| fail("GET_PUBKEY", e))?;
        match keystored::export_private(ep).await {
            Err(ref e) if keystored::is_export_refusal(e) => {}
            other => return Err(format!("EXPORT_PRIVATE: {other:?}")),
        }
        statefs::put(ep, 3, b"soak")
            .await
            .map_err(|e| fail("PUT", e))?;
        statefs::get(ep, 3).await.map_err(|e| fail("GET", e))?;
        api::discover(ep).await.map_err(|e| fail("DISCOVER", e))?;
        match api::transport(ep, u32::MAX, &[1, 2, 3]).await {
            Err(ClientError::Service(ServiceError::MalformedRequest)) => {}
            other => return Err(format!("a malformed TRANSPORT: {other:?}")),
        }
        api::stats(ep)
            .await
            .map_err(|e| fail("dsoftbusd STATS", e))?;
        // Handle 0 of the generation that answers (a handle carries netstackd's
        // generation: one of an earlier process would be refused as Restarted).
        let generation = netstackd::wait(ep, 0)
            .await
            .map_err(|e| fail("WAIT", e))?
            .generation;
        match netstackd::status(ep, Handle::new(generation, 0)).await {
            Err(ClientError::Service(ServiceError::BadHandle)) => {}
            other => return Err(format!("STATUS of no socket: {other:?}")),
        }
        netstackd::stats(ep)
            .await
            .map_err(|e| fail("netstackd STATS", e))?;
        self.calls += 13;
        Ok(())
    }
}

/// Runs `rounds` rounds after the warm-up and prints the figures; `heap` reads the
/// kernel's heap counts; with `faults`, a random service faults now and then. Returns whether memory stayed flat and every table bounded (and, with
/// faults, whether they happened and every one was recovered from).
pub async fn run<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    rounds: usize,
    heap: fn() -> Heap,
    faults: Option<Faults>,
) -> bool {
    let outcome = soak::<P, H, E>(ep, rounds, heap, faults).await;
    match &outcome {
        Ok(_) => {
            let rounds = format!("{rounds}");
            ep.console(&markers::SELFTEST_SOAK.render(&[&rounds]));
        }
        Err(why) => ep.console(&format!("FAIL {}: {why}", markers::SELFTEST_SOAK.message)),
    }
    outcome.is_ok()
}

/// Rounds cut by faults.
#[derive(Default)]
struct Cuts {
    rounds: u64,
    /// When the latest streak of cut rounds began (0: none going on).
    since_ms: u64,
}

/// The faults to come: a small generator (xorshift64*, seeded from rngd: a test's
/// schedule, not cryptography), the next round, and each service's count.
struct Schedule {
    state: u64,
    next: usize,
    every: usize,
    made: [usize; crate::supervision::TASKS.len()],
}

impl Schedule {
    fn new(seed: u64, every: usize) -> Self {
        let mut schedule = Self {
            state: seed | 1,
            next: 0,
            every,
            made: [0; crate::supervision::TASKS.len()],
        };
        schedule.next = schedule.gap();
        schedule
    }

    fn draw(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Rounds to the next fault: from half to one and a half times `every`.
    fn gap(&mut self) -> usize {
        self.every / 2 + (self.draw() % self.every.max(1) as u64) as usize
    }

    /// At round `round`: the service to fault now, if it is time and one may still.
    fn due(&mut self, round: usize) -> Option<ipc::ServiceId> {
        if round < self.next {
            return None;
        }
        self.next = round + self.gap().max(1);
        let open: alloc::vec::Vec<usize> = (0..self.made.len())
            .filter(|i| self.made[*i] < FAULTS_PER_SERVICE)
            .collect();
        let pick = *open.get((self.draw() % open.len().max(1) as u64) as usize)?;
        self.made[pick] += 1;
        Some(crate::supervision::TASKS[pick])
    }
}

impl<P: Provider> Soak<P> {
    /// A round, and with `restarts` one cut by a fault again until one works: a
    /// failure that is not within [`CUT_MS`] of a restart, or rounds that do not work
    /// again within [`RECOVER_MS`], end the soak.
    async fn round_across_faults<H: HashBackend, E: Endpoint>(
        &mut self,
        ep: &E,
        restarts: Option<fn() -> [u64; 2]>,
        cuts: &mut Cuts,
    ) -> Result<(), String> {
        loop {
            let failed = match self.round::<H, E>(ep).await {
                Ok(()) => {
                    cuts.since_ms = 0;
                    return Ok(());
                }
                Err(why) => why,
            };
            let Some(restarts) = restarts else {
                return Err(failed);
            };
            let now = ep.uptime_ms();
            let [made, latest_ms] = restarts();
            if made == 0 || now.saturating_sub(latest_ms) > CUT_MS {
                return Err(format!("{failed} (no restart within {CUT_MS} ms)"));
            }
            if cuts.since_ms == 0 {
                cuts.since_ms = now;
            } else if now.saturating_sub(cuts.since_ms) > RECOVER_MS {
                return Err(format!(
                    "{failed}: rounds did not work again within {RECOVER_MS} ms of a restart"
                ));
            }
            cuts.rounds += 1;
            // A restarted dsoftbusd no longer trusts this node: tell it again.
            let _ = api::trust(ep, &self.node.device_key()).await;
            sleep(ep, 20).await;
        }
    }
}

async fn soak<P: Provider, H: HashBackend, E: Endpoint>(
    ep: &E,
    rounds: usize,
    heap: fn() -> Heap,
    faults: Option<Faults>,
) -> Result<String, String> {
    let mut cuts = Cuts::default();
    let restarts = faults.map(|f| f.restarts);
    let restarts_before = restarts.map_or(0, |r| r()[0]);
    let mut schedule = match faults {
        Some(faults) => {
            let seed = rngd::get_entropy(ep, 8)
                .await
                .map_err(|e| format!("GET_ENTROPY: {e}"))?;
            let seed = u64::from_le_bytes(seed[..8].try_into().map_err(|_| "8 bytes")?);
            ep.console(&format!(
                "soak: a random service faults about every {} rounds (schedule seed {seed})",
                faults.every
            ));
            Some(Schedule::new(seed, faults.every))
        }
        None => None,
    };
    let mut made = 0u64;
    let entropy = rngd::get_entropy(ep, 64)
        .await
        .map_err(|e| format!("GET_ENTROPY: {e}"))?;
    let secret = |bytes: &[u8]| {
        SecretBytes::from_fill(|out: &mut [u8; 32]| {
            out.copy_from_slice(bytes);
            Ok::<(), String>(())
        })
    };
    let node = Node::<P>::new(&secret(&entropy[..32])?, &secret(&entropy[32..])?)
        .map_err(|e| format!("{e}"))?;
    api::trust(ep, &node.device_key())
        .await
        .map_err(|e| format!("TRUST: {e}"))?;
    let device = keystored::get_pubkey(ep)
        .await
        .map_err(|e| format!("GET_PUBKEY: {e}"))?;
    let device = VerifyingKey::from_bytes(&device).map_err(|e| format!("{e}"))?;
    let mut soak = Soak {
        node,
        trusted: [device],
        calls: 0,
    };
    for round in 0..WARM_UP {
        if let Some(task) = schedule.as_mut().and_then(|s| s.due(round)) {
            crate::supervision::fault_now(ep, task)
                .await
                .map_err(|e| format!("warm-up round {round}: faulting {e}"))?;
            made += 1;
        }
        soak.round_across_faults::<H, E>(ep, restarts, &mut cuts)
            .await
            .map_err(|e| format!("warm-up round {round}: {e}"))?;
    }
    sleep(ep, SETTLE_MS).await;
    let before = heap();
    soak.calls = 0;
    let started = ep.uptime_ms();
    for round in 0..rounds {
        if let Some(task) = schedule.as_mut().and_then(|s| s.due(WARM_UP + round)) {
            crate::supervision::fault_now(ep, task)
                .await
                .map_err(|e| format!("round {round}: faulting {e}"))?;
            made += 1;
        }
        soak.round_across_faults::<H, E>(ep, restarts, &mut cuts)
            .await
            .map_err(|e| format!("round {round}: {e}"))?;
        if (round + 1) % 1000 == 0 {
            ep.console(&format!(
                "soak: {} rounds, heap in use {} bytes",
                round + 1,
                heap().in_use
            ));
        }
    }
    let took = ep.uptime_ms() - started;
    sleep(ep, SETTLE_MS).await;
    let after = heap();
    let sessions = api::stats(ep)
        .await
        .map_err(|e| format!("dsoftbusd STATS: {e}"))?;
    let sockets = netstackd::stats(ep)
        .await
        .map_err(|e| format!("netstackd STATS: {e}"))?;
    let journal = logd::query(ep, &AuditFilter::default())
        .await
        .map_err(|e| format!("QUERY: {e}"))?;
    let restarted = restarts.map(|r| r()[0].saturating_sub(restarts_before));
    // One line each (a console line holds 240 characters).
    let mut figures = alloc::vec::Vec::from([
        format!(
            "soak: {rounds} rounds in {took} ms: {rounds} sessions with ping, {} IPC calls",
            soak.calls
        ),
        format!(
            "soak: heap in use {} -> {} bytes (margin {LEAK_MARGIN}), high water {} of {}",
            before.in_use, after.in_use, after.high_water, after.size
        ),
        format!(
            "soak: sessions {} half-open, {} established; sockets {}, handles {}, \
             lingering {}, parked {}",
            sessions.half_open,
            sessions.established,
            sockets.sockets,
            sockets.handles,
            sockets.lingering,
            sockets.parked
        ),
        format!(
            "soak: journal {} held, {} evicted, {} kernel and {} task records lost",
            journal.held, journal.evicted, journal.kernel_lost, journal.task_lost
        ),
    ]);
    if let Some(restarted) = restarted {
        figures.push(format!(
            "soak: {made} services faulted at random rounds, {restarted} restarts, {} rounds cut by them and tried again",
            cuts.rounds
        ));
    }
    for line in &figures {
        ep.console(line);
    }
    if let Some(restarted) = restarted
        && (made == 0 || restarted != made)
    {
        return Err(format!(
            "{made} faults made at random rounds and {restarted} restarts: they must be equal, and more than none"
        ));
    }
    if after.in_use > before.in_use + LEAK_MARGIN {
        return Err(format!(
            "heap in use grew from {} to {} bytes over {rounds} rounds",
            before.in_use, after.in_use
        ));
    }
    let bounded = usize::from(sessions.half_open) <= LIMITS.half_open
        && usize::from(sessions.established) <= LIMITS.established
        && sockets.sockets <= MAX_SOCKETS
        && usize::from(sockets.handles) <= 2 * MAX_SOCKETS_PER_CALLER
        && sockets.parked <= MAX_PARKED
        && journal.kernel_lost == 0;
    if !bounded {
        return Err(String::from(
            "a table is past its bound (see the line above)",
        ));
    }
    Ok(figures.join("; "))
}
