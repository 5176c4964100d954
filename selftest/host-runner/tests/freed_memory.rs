//! No secret in freed memory: every heap block freed while the services run is
//! searched for bytes that are secrets of the system.
//!
//! **What counts as a secret.** Every reply of 16 bytes or more that rngd actually
//! sends (recorded as it goes through a tap on rngd's endpoint: the device-key seed,
//! dsoftbusd's static-key seed, every ephemeral key of both sides of every Noise
//! session, every such draw a client asked for), the raw stream behind the entropy
//! device (the generator's seed material), and the OTP secret. Shorter draws (the
//! sealing nonce's 12 bytes, netstackd's 8-byte seed) cannot hold a 16-byte window,
//! and secrets derived from served bytes (the sealing and tag keys, rngd's generator
//! key, Noise transport keys) are not looked for: this test guards what rngd serves. rngd serves
//! from a ChaCha20 generator, so what it serves is not a window of the device stream:
//! the tap is what keeps this test seeing the bytes it guards. (The earlier version
//! indexed only the device stream and went blind when rngd moved to a generator.)
//!
//! **How.** The global allocator of this test binary looks, at every `dealloc` and
//! `realloc`, for any 16-byte window of any secret in the block being freed. A block
//! that still holds one was freed without being wiped. Every allocation is
//! zero-filled (`alloc_zeroed`), so every byte inspected was written by someone. The
//! index of windows is a fixed table filled without allocating, under a lock the
//! allocator takes too.
//!
//! **The traffic.** Two boots on one state disk (the key created and sealed, then
//! restored), on every classic backend pair: `GET_ENTROPY` of each size a caller
//! uses, three Noise sessions over IPC and three over TCP through netstackd's loopback
//! interface, each with a ping, and the teardown (which frees every key).
//!
//! **Pairing** (`docs/protocol.md` section 11) adds secrets that rngd does not serve:
//! the device's SPAKE2+ verifier (`w0` and `L`, which keystored unseals at every
//! start), the setup code's password input and the password hash's output (the
//! prover's), the PAKE's shared key and the two identity keys derived from it (each
//! recorded as the prover in the test learns it, before the device computes its own),
//! and the shared key keystored hands dsoftbusd in either role (its replies are tapped
//! too). The state disk is provisioned with a setup code, and the first boot's traffic
//! ends with a pairing over TCP. A third boot, on a fresh disk provisioned with the
//! same code, has `pair=127.0.0.1:7411:<code>` on its command line: the device pairs
//! with itself over loopback, so its own dsoftbusd and keystored run the prover's side
//! (`PAIRING_PROVE`, section 11.7), then it opens a session to the key it paired (its
//! ping is drawn from rngd, so the session's plaintexts are looked for too).
//!
//! **One stack.** The services run as tasks on this test's one thread, where the
//! device gives each process a stack of its own, zeroed. A value built on the shared
//! stack carries what an earlier task left in its uninitialised bytes into the heap (a
//! task's future, boxed at spawn, held 16 bytes of dsoftbusd's key seed), which says
//! nothing about the services. The tapped boot zeroes the stack below the executor
//! after every poll and before the tasks are spawned (`host_runner::scrub_stack`).
//!
//! **The detector itself** is proven on the live path in every run: a block holding
//! 16 bytes of the first thing rngd served, freed by the test task mid-run, must be
//! found (and is then not counted as a leak).

use std::alloc::{GlobalAlloc, Layout, System};
use std::rc::Rc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use dsoftbusd::client::{Believed, Node, connect, connect_tcp};
use dsoftbusd::wire;
use host_runner::{Disks, Entropy, HostSystem, SharedDisk, Tapped};
use ipc::{Action, AuditFilter, Endpoint, Operation, ServiceId, Verdict};
use provider_api::{Provider, SecretBytes, Seed, Suite, VerifyingKey, X25519PublicKey};
use provider_select::backends::provider_hash::Blake2s;
use service_api::dsoftbusd::{discover, trust};
use service_api::netstackd::SocketAddr;
use service_api::{keystored, logd, rngd};
use state_format::memory::MemoryDisk;
use state_format::pairing::{ITERATIONS, SetupCode, Verifier};
use state_format::store::RecordStore;

use dsoftbusd::client::Stream;
use dsoftbusd::pairing::{self as pair, IdentityKeys, PairHello, PairReply};
use provider_api::pake::{PakeBackend, PakeContext};
use provider_spake2plus::Spake2Plus;

/// The setup code the state disk is provisioned with.
const CODE: u32 = 31_415_926;
/// The salt it is provisioned with.
const SALT: [u8; 16] = [0x5c; 16];

fn record_secret(bytes: &[u8]) {
    SECRETS.lock().expect("lock").record(bytes);
}

/// The secrets among the replies the tap is handed: all that rngd serves, and the
/// PAKE's shared key that keystored hands dsoftbusd (as the verifier, or behind
/// `confirmP` as the prover).
fn record_reply(reply: Tapped<'_>) {
    let secret = match (reply.service, reply.operation) {
        (ServiceId::Rngd, _) => reply.payload,
        (ServiceId::Keystored, code) if code == Operation::KeystoredPairingFinish.code() => {
            reply.payload
        }
        (ServiceId::Keystored, code) if code == Operation::KeystoredPairingProveFinish.code() => {
            reply.payload.get(32..).unwrap_or_default()
        }
        _ => return,
    };
    SECRETS.lock().expect("lock").record(secret);
}

/// A pairing with the right code over TCP, as a prover; every secret of the run
/// recorded as soon as the prover has it. Returns whether the device paired.
async fn pairing_traffic<P: Provider, E: Endpoint>(ep: &E) -> Result<bool, String> {
    let suite = noise_xk::protocol_name::<P::Aead, Blake2s>();
    let code = SetupCode::new(CODE).map_err(|e| e.to_string())?;
    record_secret(&code.password_input().expose_secret()[..16]);
    let mut stream = Stream::open(ep, SocketAddr::loopback(wire::PORT))
        .await
        .map_err(|e| e.to_string())?;
    stream
        .send(
            ep,
            &PairHello {
                suite: suite.clone(),
            }
            .encode(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let reply = stream
        .recv(ep)
        .await
        .map_err(|e| format!("{e:?}"))?
        .ok_or("closed")?;
    let reply = PairReply::decode(&reply).map_err(|e| e.to_string())?;
    let (iterations, salt) = reply.params.ok_or("no parameters: the window is closed")?;
    let output = code.pbkdf_output::<Spake2Plus>(&salt, iterations);
    record_secret(output.expose_secret());
    let context = pair::pake_context(&suite);
    let pake_context = PakeContext {
        context: &context,
        prover_id: &[],
        verifier_id: &[],
    };
    let random = rngd::get_entropy(ep, 64).await.map_err(|e| e.to_string())?;
    let random = SecretBytes::<64>::from_fill(|r: &mut [u8; 64]| {
        r.copy_from_slice(&random);
        Ok::<(), ()>(())
    })
    .map_err(|()| "entropy")?;
    let (prover, share_p) =
        Spake2Plus::prover_start(&output, &pake_context, &random).map_err(|e| e.to_string())?;
    stream.send(ep, &share_p).await.map_err(|e| e.to_string())?;
    let pake_2 = stream
        .recv(ep)
        .await
        .map_err(|e| format!("{e:?}"))?
        .ok_or("closed")?;
    let proved = Spake2Plus::prover_finish(prover, &pake_2[..65], &pake_2[65..])
        .map_err(|e| e.to_string())?;
    record_secret(proved.key.expose_secret());
    let share_v: [u8; 65] = pake_2[..65].try_into().map_err(|_| "pake 2")?;
    let confirm_v: [u8; 32] = pake_2[65..].try_into().map_err(|_| "pake 2")?;
    let th = pair::transcript_hash::<Blake2s>(&share_p, &share_v, &confirm_v, &proved.confirm);
    let keys = IdentityKeys::derive::<Blake2s>(&proved.key, &th);
    record_secret(keys.prover.expose_secret());
    record_secret(keys.verifier.expose_secret());
    let identity = provider_api::SigningKey::<P::Sig>::from_seed(&Seed::new([0x44; 32]))
        .map_err(|e| e.to_string())?;
    let signature = identity
        .sign(&pair::confirm_message(pair::PROVER, &th))
        .to_bytes();
    let sealed = pair::seal_identity::<P::Aead>(
        &keys.prover,
        &th,
        &identity.verifying_key().to_bytes(),
        &signature,
    );
    stream
        .send(ep, &[&proved.confirm[..], &sealed].concat())
        .await
        .map_err(|e| e.to_string())?;
    let pake_4 = stream
        .recv(ep)
        .await
        .map_err(|e| format!("{e:?}"))?
        .ok_or("closed")?;
    Ok(
        pair::open_identity::<P::Aead, P::Sig>(&keys.verifier, &th, pair::VERIFIER, &pake_4)
            .is_ok(),
    )
}

/// The third boot's command line: the device pairs with itself by its own code.
const SELF_PAIRING: &str = "pair=127.0.0.1:7411:3141-5926";
/// How long the third boot may take to pair and hold its session (a debug build's
/// password hash and P-256, twice, on a busy machine).
const OUTCOME_MS: u64 = 60_000;
/// dsoftbusd's records of the sessions it opens itself, allowed.
const SESSION_RECORDS: AuditFilter = AuditFilter {
    origin: Some(ServiceId::Dsoftbusd),
    subject: Some(ServiceId::Dsoftbusd),
    action: Some(Action::Call {
        service: ServiceId::Dsoftbusd,
        code: Operation::DsoftbusdConnect.code(),
    }),
    verdict: Some(Verdict::Allowed),
};

/// Provisions `state` as the factory does for pairing: [`CODE`]'s verifier, sealed
/// under `secret`, and no trust store (the window opens at boot).
fn provision_pairing<P: Provider>(state: &SharedDisk, secret: &[u8; 32]) {
    state_format::pairing::provision::<Spake2Plus, P::Aead, Blake2s, _>(
        &mut RecordStore::open(state.clone()).expect("a fresh store"),
        &SecretBytes::new(*secret),
        &SetupCode::new(CODE).expect("a valid code"),
        SALT,
        ITERATIONS,
        &[0x12; 12],
    )
    .expect("provisioned");
}

/// The length of a window that counts as a leak.
const WINDOW: usize = 16;
/// Room for every secret byte one run records.
const CAPACITY: usize = 96 * 1024;
/// Slots of the window table (a power of two, well above the windows it holds).
const SLOTS: usize = 1 << 18;

/// Every secret recorded so far: segments back to back (a window never spans two),
/// and a table from a window's first 8 bytes to where it starts.
struct Secrets {
    bytes: [u8; CAPACITY],
    len: usize,
    /// Offset + 1 of a window start; 0 is empty. Open addressing, linear probing.
    table: [u32; SLOTS],
    /// A segment did not fit: the test fails rather than look at part of the traffic.
    overflowed: bool,
}

impl Secrets {
    const fn new() -> Self {
        Self {
            bytes: [0; CAPACITY],
            len: 0,
            table: [0; SLOTS],
            overflowed: false,
        }
    }

    fn clear(&mut self) {
        self.len = 0;
        self.table.fill(0);
        self.overflowed = false;
    }

    /// Records `segment`. Never allocates.
    fn record(&mut self, segment: &[u8]) {
        if segment.len() < WINDOW {
            return; // too short to be found as a window: nothing to index
        }
        if self.len + segment.len() > CAPACITY {
            self.overflowed = true;
            return;
        }
        let start = self.len;
        self.bytes[start..start + segment.len()].copy_from_slice(segment);
        self.len += segment.len();
        for at in start..=self.len - WINDOW {
            let mut slot = slot_of(&self.bytes[at..]);
            while self.table[slot] != 0 {
                slot = (slot + 1) % SLOTS;
            }
            self.table[slot] = at as u32 + 1;
        }
    }

    /// The offset of a recorded window that appears in `block`, if one does. Does not
    /// allocate.
    fn find(&self, block: &[u8]) -> Option<usize> {
        let last = block.len().checked_sub(WINDOW)?;
        (0..=last).find_map(|start| {
            let window = &block[start..start + WINDOW];
            let mut slot = slot_of(window);
            loop {
                let entry = self.table[slot] as usize;
                if entry == 0 {
                    return None;
                }
                let at = entry - 1;
                if self.bytes[at..at + WINDOW] == *window {
                    return Some(at);
                }
                slot = (slot + 1) % SLOTS;
            }
        })
    }
}

fn slot_of(bytes: &[u8]) -> usize {
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[..8]);
    let hash = u64::from_le_bytes(first).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (hash >> (64 - SLOTS.trailing_zeros())) as usize
}

static SECRETS: Mutex<Secrets> = Mutex::new(Secrets::new());
static INSPECTING: AtomicBool = AtomicBool::new(false);
/// The device's byte stream inside the host device: it holds the stream legitimately.
static DEVICE_BUFFER: AtomicUsize = AtomicUsize::new(0);
static LEAKS: AtomicUsize = AtomicUsize::new(0);
static FIRST_LEAK_SIZE: AtomicUsize = AtomicUsize::new(0);
static FIRST_LEAK_OFFSET: AtomicUsize = AtomicUsize::new(0);
static BLOCKS_INSPECTED: AtomicUsize = AtomicUsize::new(0);
/// The block the test plants on purpose (not a leak, but it must be found).
static PLANTED: AtomicUsize = AtomicUsize::new(0);
static PLANTED_FOUND: AtomicBool = AtomicBool::new(false);

/// The system allocator, zero-filling every block and inspecting every freed one.
struct Inspecting;

impl Inspecting {
    fn inspect(ptr: *mut u8, size: usize) {
        if !INSPECTING.load(Ordering::Relaxed)
            || ptr as usize == DEVICE_BUFFER.load(Ordering::Relaxed)
        {
            return;
        }
        // SAFETY: `ptr` is a live block of `size` bytes from `alloc_zeroed` below, not
        // yet handed back to the system, so every byte is initialised and readable.
        let block = unsafe { std::slice::from_raw_parts(ptr, size) };
        let Ok(secrets) = SECRETS.lock() else { return };
        BLOCKS_INSPECTED.fetch_add(1, Ordering::Relaxed);
        let Some(offset) = secrets.find(block) else {
            return;
        };
        if ptr as usize == PLANTED.load(Ordering::Relaxed) {
            PLANTED_FOUND.store(true, Ordering::Relaxed);
        } else if LEAKS.fetch_add(1, Ordering::Relaxed) == 0 {
            FIRST_LEAK_SIZE.store(size, Ordering::Relaxed);
            FIRST_LEAK_OFFSET.store(offset, Ordering::Relaxed);
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's pointer and layout;
// `alloc` asks for zeroed memory, which satisfies `alloc`'s contract too. The
// inspection only reads the block before it is freed and never allocates.
unsafe impl GlobalAlloc for Inspecting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout, as GlobalAlloc::alloc requires.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        Self::inspect(ptr, layout.size());
        // SAFETY: `ptr` came from this allocator (so from System) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A reallocation frees the old block: it must not leave a copy behind either.
        // SAFETY: the caller's layout with the new size, as `realloc` requires.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a fresh zeroed block of the new layout.
        let new = unsafe { System.alloc_zeroed(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct, and at least min(sizes) long.
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            // SAFETY: the old block, freed through this allocator.
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Inspecting = Inspecting;

/// Health-test-clean pseudo-random bytes (SplitMix64): a recorded entropy stream.
fn stream(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

/// Frees a block holding 16 bytes of the first secret rngd served (from its
/// recording): the detector must find it. Returns whether it did.
fn plant_a_freed_copy() -> bool {
    let window: Option<[u8; WINDOW]> = {
        let secrets = SECRETS.lock().expect("lock");
        // The recording starts with the device stream, the OTP and the verifier; rngd's
        // first reply follows them.
        (secrets.len >= BEFORE_RNGD + WINDOW).then(|| {
            let at = BEFORE_RNGD;
            secrets.bytes[at..at + WINDOW].try_into().expect("a window")
        })
    };
    let Some(window) = window else { return false };
    PLANTED_FOUND.store(false, Ordering::Relaxed);
    let mut block = vec![0u8; 64];
    block[24..24 + WINDOW].copy_from_slice(&window);
    PLANTED.store(block.as_ptr() as usize, Ordering::Relaxed);
    drop(std::hint::black_box(block));
    PLANTED.store(0, Ordering::Relaxed);
    PLANTED_FOUND.load(Ordering::Relaxed)
}

/// Every operation that moves secret bytes: `GET_ENTROPY` of each size a caller
/// uses, and the services' own draws (keystored's seed at start, dsoftbusd's static
/// key at start and an ephemeral per session, the client's ephemeral), over IPC and
/// over TCP. Returns whether the planted copy was found.
async fn secret_traffic<P: Provider, E: Endpoint>(ep: &E) -> Result<bool, String> {
    for n in [1, 16, 32, 255, 256] {
        let bytes = rngd::get_entropy(ep, n).await.map_err(|e| e.to_string())?;
        assert_eq!(bytes.len(), usize::from(n));
    }
    let planted = plant_a_freed_copy();
    // A node whose own keys are not from rngd: only the ephemerals are.
    let node = Node::<P>::new(&Seed::new([3; 32]), &SecretBytes::new([4; 32]))
        .map_err(|e| e.to_string())?;
    let discovered = discover(ep).await.map_err(|e| e.to_string())?;
    let device = keystored::get_pubkey(ep).await.map_err(|e| e.to_string())?;
    let device = VerifyingKey::from_bytes(&device).map_err(|e| e.to_string())?;
    trust(ep, &node.device_key())
        .await
        .map_err(|e| e.to_string())?;
    let responder = X25519PublicKey(discovered.noise_static);
    for id in 1..=3 {
        let mut session = connect::<P, Blake2s, E>(
            ep,
            &node,
            id,
            &responder,
            core::slice::from_ref(&device),
            |_, _| {},
        )
        .await
        .map_err(|e| format!("{e:?}"))?;
        let pong = session
            .ping(ep, b"not a secret")
            .await
            .map_err(|e| format!("{e:?}"))?;
        assert_eq!(pong, b"not a secret");
        session.close(ep).await.map_err(|e| e.to_string())?;
    }
    for _ in 0..3 {
        let mut session = connect_tcp::<P, Blake2s, E>(
            ep,
            &node,
            SocketAddr::loopback(wire::PORT),
            Believed::FromHello,
            core::slice::from_ref(&device),
            |_, _| {},
        )
        .await
        .map_err(|e| format!("{e:?}"))?;
        let pong = session
            .ping(ep, b"not a secret either")
            .await
            .map_err(|e| format!("{e:?}"))?;
        assert_eq!(pong, b"not a secret either");
        session.close(ep).await;
    }
    Ok(planted)
}

/// The device stream's length.
const STREAM_LEN: usize = 64 * 1024;
/// What is recorded before rngd serves anything: the device stream, the OTP secret,
/// the verifier record.
const BEFORE_RNGD: usize = STREAM_LEN + 32 + provider_api::pake::PAKE_RECORD_LEN;

/// One backend pair: two boots on one disk; the leaks found.
fn run_with_known_entropy<P: Provider>() -> usize {
    let secret = host_runner::test_secret(0x61);
    let otp = Disks::otp(secret);
    let state = SharedDisk::new(MemoryDisk::new(512));
    let counter = Disks::counter();
    // The factory's setup code: its verifier sealed on the state disk.
    let code = SetupCode::new(CODE).expect("a valid code");
    let verifier = Verifier::register::<Spake2Plus>(&code, SALT, ITERATIONS).expect("a verifier");
    provision_pairing::<P>(&state, &secret);
    {
        let mut secrets = SECRETS.lock().expect("lock");
        secrets.clear();
        secrets.record(&stream(0x5eed, STREAM_LEN));
        secrets.record(&secret);
        secrets.record(verifier.record.expose_secret());
    }
    drop(verifier);
    LEAKS.store(0, Ordering::Relaxed);
    INSPECTING.store(true, Ordering::Relaxed);
    let mut outcomes: Vec<Result<bool, String>> = Vec::new();
    // First boot creates and seals the device key; the second restores it.
    for provenance in ["created", "restored"] {
        let bytes = stream(0x5eed, STREAM_LEN);
        DEVICE_BUFFER.store(bytes.as_ptr() as usize, Ordering::Relaxed);
        let disks = Disks {
            state: Some(state.clone()),
            otp: Some(otp.clone()),
            counter: Some(counter.clone()),
        };
        let tap: host_runner::ReplyTap = Rc::new(record_reply);
        let mut system = HostSystem::boot_tapped::<P>(Entropy::Bytes(bytes), disks, tap, "");
        let pairs = provenance == "created";
        outcomes.push(system.run_as(ServiceId::Selftest, |ep| async move {
            let planted = secret_traffic::<P, _>(&ep).await?;
            // The first boot's window is open (the store is empty): pair.
            if pairs && !pairing_traffic::<P, _>(&ep).await? {
                return Err("the device's identity did not check".into());
            }
            Ok(planted)
        }));
        let line = format!("keystored: device key {provenance}");
        let printed = system.console().contains(&line);
        if pairs {
            assert!(
                system
                    .console()
                    .iter()
                    .any(|l| l.starts_with("dsoftbusd: paired with ")),
                "the pairing ran"
            );
        }
        drop(system); // teardown frees the keys: they must be wiped too
        assert!(printed, "no {line:?}");
    }
    // A third boot, on a disk of its own provisioned with the same code: the device
    // pairs with itself over loopback (`pair=` on its command line), so its dsoftbusd
    // is the prover too, then opens a session to the key it paired.
    let prover_paired = {
        let state = SharedDisk::new(MemoryDisk::new(512));
        provision_pairing::<P>(&state, &secret);
        // The prover's password input and hash output (computed before the lock: the
        // allocator takes it too).
        let code = SetupCode::new(CODE).expect("a valid code");
        let input = code.password_input();
        let output = code.pbkdf_output::<Spake2Plus>(&SALT, ITERATIONS);
        record_secret(&input.expose_secret()[..16]);
        record_secret(output.expose_secret());
        drop((input, output));
        let bytes = stream(0x5eed_0003, STREAM_LEN);
        DEVICE_BUFFER.store(bytes.as_ptr() as usize, Ordering::Relaxed);
        let disks = Disks {
            state: Some(state),
            otp: Some(otp.clone()),
            counter: Some(Disks::counter()),
        };
        let tap: host_runner::ReplyTap = Rc::new(record_reply);
        let mut system =
            HostSystem::boot_tapped::<P>(Entropy::Bytes(bytes), disks, tap, SELF_PAIRING);
        let arrived = system.run_as(ServiceId::Selftest, |ep| async move {
            // Paired, then the session: established, then ponged.
            let until = ep.uptime_ms() + OUTCOME_MS;
            while ep.uptime_ms() < until {
                if logd::query(&ep, &SESSION_RECORDS)
                    .await
                    .is_ok_and(|found| found.matched >= 2)
                {
                    return true;
                }
                ep.yield_now().await;
            }
            false
        });
        let console = system.console();
        drop(system);
        assert!(
            !console
                .iter()
                .any(|line| line.contains("31415926") || line.contains("3141-5926")),
            "the code on a console: {console:#?}"
        );
        arrived
            && console
                .iter()
                .filter(|l| l.starts_with("dsoftbusd: paired with "))
                .count()
                == 2
    };
    INSPECTING.store(false, Ordering::Relaxed);
    assert!(
        prover_paired,
        "the device paired with itself, then a session"
    );
    assert_eq!(
        outcomes,
        [Ok(true), Ok(true)],
        "each boot's traffic ran and the planted copy was found"
    );
    let secrets = SECRETS.lock().expect("lock");
    assert!(!secrets.overflowed, "the recording overflowed");
    assert!(
        secrets.len > BEFORE_RNGD + 1000,
        "rngd served only {} bytes",
        secrets.len - BEFORE_RNGD
    );
    LEAKS.load(Ordering::Relaxed)
}

/// One test function: the inspection is global, so nothing else may run (and free
/// secret bytes of its own) while it is on.
#[test]
fn no_freed_heap_block_holds_a_secret_on_any_backend() {
    // The detector off the live path: a copy of 16 recorded bytes is found, a changed
    // one is not.
    {
        let mut secrets = SECRETS.lock().expect("lock");
        secrets.clear();
        let sample = stream(7, 4096);
        secrets.record(&sample);
        let mut block = vec![0u8; 100];
        block[40..56].copy_from_slice(&sample[3000..3016]);
        assert_eq!(secrets.find(&block), Some(3000));
        block[55] ^= 1;
        assert_eq!(secrets.find(&block), None);
        secrets.clear();
    }

    type Run = fn() -> usize;
    /// Every backend of every axis of provider-select's table at least once: each
    /// with the first backend of the other two axes (a backend added to the table is
    /// run here with no line in this file).
    macro_rules! covering_runs {
        (
            $sig_axis:literal $sig_alias:ident [$sig0:ident $sig0_feature:literal => $sig0_ty:ty $(, $sig:ident $sig_feature:literal => $sig_ty:ty)* $(,)?];
            $kx_axis:literal $kx_alias:ident [$kx0:ident $kx0_feature:literal => $kx0_ty:ty $(, $kx:ident $kx_feature:literal => $kx_ty:ty)* $(,)?];
            $aead_axis:literal $aead_alias:ident [$aead0:ident $aead0_feature:literal => $aead0_ty:ty $(, $aead:ident $aead_feature:literal => $aead_ty:ty)* $(,)?];
            $hash_axis:literal $hash_alias:ident $hashes:tt;
        ) => {
            [
                (
                    concat!($sig0_feature, " ", $kx0_feature, " ", $aead0_feature),
                    run_with_known_entropy::<Suite<$sig0_ty, $kx0_ty, $aead0_ty>> as Run,
                ),
                $((
                    concat!($sig_feature, " ", $kx0_feature, " ", $aead0_feature),
                    run_with_known_entropy::<Suite<$sig_ty, $kx0_ty, $aead0_ty>> as Run,
                ),)*
                $((
                    concat!($sig0_feature, " ", $kx_feature, " ", $aead0_feature),
                    run_with_known_entropy::<Suite<$sig0_ty, $kx_ty, $aead0_ty>> as Run,
                ),)*
                $((
                    concat!($sig0_feature, " ", $kx0_feature, " ", $aead_feature),
                    run_with_known_entropy::<Suite<$sig0_ty, $kx0_ty, $aead_ty>> as Run,
                ),)*
            ]
        };
    }
    let runs = provider_select::backend_table!(covering_runs);
    assert!(runs.len() >= 7, "the table's backends: {}", runs.len());
    for (name, run) in runs {
        let before = BLOCKS_INSPECTED.load(Ordering::Relaxed);
        let leaks = run();
        let inspected = BLOCKS_INSPECTED.load(Ordering::Relaxed) - before;
        assert!(inspected > 200, "{name}: only {inspected} blocks inspected");
        assert_eq!(
            leaks,
            0,
            "{name}: {leaks} freed blocks held a secret; the first was {} bytes, holding \
             the recording at offset {} (0..{STREAM_LEN}: the device stream, then 32 of \
             the OTP secret, 97 of the pairing verifier, then what rngd served and \
             pairing's secrets, as they came)",
            FIRST_LEAK_SIZE.load(Ordering::Relaxed),
            FIRST_LEAK_OFFSET.load(Ordering::Relaxed)
        );
    }
}
