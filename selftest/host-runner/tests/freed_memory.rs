//! No served entropy in freed memory: every heap block freed while the services run
//! is searched for bytes rngd handed out.
//!
//! rngd's device is a known byte stream here, so every secret in the system (the
//! device-key seed, dsoftbusd's static-key seed, every ephemeral key of both sides of
//! a Noise session, every byte a client asked for) is a window of that stream. The
//! global allocator of this test binary looks, at every `dealloc` and `realloc`, for
//! any 16-byte window of the stream in the block being freed. A block that still holds
//! one was freed without being wiped: the secret lingered on the heap.
//!
//! Before `IpcBuffer` (kernel/ipc), this found keystored's seed in two freed 38-byte
//! blocks (a 6-byte frame header and 32 bytes): the encoded reply frame and the
//! kernel's copy of it.
//!
//! Every allocation is zero-filled (`alloc_zeroed`), so every byte the inspection
//! reads was written by someone: the test never reads uninitialised memory.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use dsoftbusd::client::{Node, connect};
use host_runner::{Disks, Entropy, HostSystem, SharedDisk};
use ipc::{Endpoint, ServiceId};
use provider_aes_gcm::Aes256Gcm;
use provider_api::{Bundle, Provider, SecretBytes, Seed, VerifyingKey, X25519PublicKey};
use provider_chacha::ChaCha20Poly1305;
use provider_compact::Compact;
use provider_dalek::Dalek;
use provider_hash::Blake2s;
use service_api::dsoftbusd::{discover, trust};
use service_api::{keystored, rngd};
use state_format::memory::MemoryDisk;

/// The length of a window that counts as a leak.
const WINDOW: usize = 16;

/// The known stream behind rngd, and its 16-byte windows by their first 8 bytes.
struct Index {
    stream: Vec<u8>,
    by_prefix: HashMap<u64, Vec<usize>>,
}

impl Index {
    fn new(stream: Vec<u8>) -> Self {
        let mut by_prefix: HashMap<u64, Vec<usize>> = HashMap::new();
        for at in 0..=stream.len() - WINDOW {
            by_prefix.entry(prefix(&stream[at..])).or_default().push(at);
        }
        Self { stream, by_prefix }
    }

    /// The stream offset of a window that appears in `block`, if one does. Does not
    /// allocate.
    fn find(&self, block: &[u8]) -> Option<usize> {
        let candidates = block.len().checked_sub(WINDOW)?;
        (0..=candidates).find_map(|start| {
            let window = &block[start..start + WINDOW];
            self.by_prefix
                .get(&prefix(window))?
                .iter()
                .copied()
                .find(|&at| self.stream[at..at + WINDOW] == *window)
        })
    }
}

fn prefix(bytes: &[u8]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(first)
}

static INDEX: OnceLock<Index> = OnceLock::new();
static INSPECTING: AtomicBool = AtomicBool::new(false);
/// The stream's own buffer inside the host device: it holds every window, legitimately.
static DEVICE_BUFFER: AtomicUsize = AtomicUsize::new(0);
/// The OTP disk's buffer: it holds the OTP secret, legitimately.
static OTP_BUFFER: AtomicUsize = AtomicUsize::new(0);
static LEAKS: AtomicUsize = AtomicUsize::new(0);
static FIRST_LEAK_SIZE: AtomicUsize = AtomicUsize::new(0);
static FIRST_LEAK_OFFSET: AtomicUsize = AtomicUsize::new(0);
static BLOCKS_INSPECTED: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, zero-filling every block and inspecting every freed one.
struct Inspecting;

impl Inspecting {
    fn inspect(ptr: *mut u8, size: usize) {
        if !INSPECTING.load(Ordering::Relaxed)
            || ptr as usize == DEVICE_BUFFER.load(Ordering::Relaxed)
        {
            return;
        }
        let Some(index) = INDEX.get() else { return };
        // SAFETY: `ptr` is a live block of `size` bytes from `alloc_zeroed` below, not
        // yet handed back to the system, so every byte is initialised and readable.
        let block = unsafe { std::slice::from_raw_parts(ptr, size) };
        BLOCKS_INSPECTED.fetch_add(1, Ordering::Relaxed);
        if let Some(offset) = index.find(block)
            && LEAKS.fetch_add(1, Ordering::Relaxed) == 0
        {
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

/// Every operation that moves secret bytes: `GET_ENTROPY` of each size a caller
/// uses, and the services' own draws (keystored's seed at start, dsoftbusd's static
/// key at start and an ephemeral per session, the client's ephemeral).
async fn secret_traffic<P: Provider, E: Endpoint>(ep: &E) -> Result<(), String> {
    for n in [1, 16, 32, 255, 256] {
        let bytes = rngd::get_entropy(ep, n).await.map_err(|e| e.to_string())?;
        assert_eq!(bytes.len(), usize::from(n));
    }
    // A node whose own keys are not from the stream: only the ephemerals are.
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
    }
    Ok(())
}

/// Where in the stream the OTP secret comes from: far past anything rngd serves here.
const OTP_AT: usize = 60 * 1024;

fn run_with_known_entropy<P: Provider>() -> usize {
    let mut secret = [0u8; 32];
    secret.copy_from_slice(&stream(0x5eed, 64 * 1024)[OTP_AT..OTP_AT + 32]);
    let otp = Disks::otp(secret);
    OTP_BUFFER.store(otp.0.borrow().bytes().as_ptr() as usize, Ordering::Relaxed);
    let state = SharedDisk::new(MemoryDisk::new(512));
    LEAKS.store(0, Ordering::Relaxed);
    INSPECTING.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    // First boot creates and seals the device key; the second restores it.
    for provenance in ["created", "restored"] {
        let bytes = stream(0x5eed, 64 * 1024);
        DEVICE_BUFFER.store(bytes.as_ptr() as usize, Ordering::Relaxed);
        let disks = Disks {
            state: Some(state.clone()),
            otp: Some(otp.clone()),
            counter: Some(Disks::counter()),
        };
        let mut system = HostSystem::boot_with::<P>(Entropy::Bytes(bytes), disks);
        outcomes.push(system.run_as(ServiceId::Selftest, |ep| async move {
            secret_traffic::<P, _>(&ep).await
        }));
        let line = format!("keystored: device key {provenance}");
        let printed = system.console().contains(&line);
        drop(system); // teardown frees the keys: they must be wiped too
        assert!(printed, "no {line:?}");
    }
    INSPECTING.store(false, Ordering::Relaxed);
    assert_eq!(outcomes, [Ok(()), Ok(())]);
    LEAKS.load(Ordering::Relaxed)
}

/// One test function: the inspection is global, so nothing else may run (and free
/// stream bytes of its own) while it is on.
#[test]
fn no_freed_heap_block_holds_served_entropy_on_any_backend() {
    let index = INDEX.get_or_init(|| Index::new(stream(0x5eed, 64 * 1024)));

    // The detector itself: a copy of 16 stream bytes is found, a changed one is not.
    let mut block = vec![0u8; 100];
    block[40..56].copy_from_slice(&index.stream[5000..5016]);
    assert_eq!(index.find(&block), Some(5000));
    block[55] ^= 1;
    assert_eq!(index.find(&block), None);

    type Run = fn() -> usize;
    let runs: [(&str, Run); 4] = [
        (
            "dalek+chacha",
            run_with_known_entropy::<Bundle<Dalek, ChaCha20Poly1305>>,
        ),
        (
            "dalek+aes-gcm",
            run_with_known_entropy::<Bundle<Dalek, Aes256Gcm>>,
        ),
        (
            "compact+chacha",
            run_with_known_entropy::<Bundle<Compact, ChaCha20Poly1305>>,
        ),
        (
            "compact+aes-gcm",
            run_with_known_entropy::<Bundle<Compact, Aes256Gcm>>,
        ),
    ];
    for (name, run) in runs {
        let before = BLOCKS_INSPECTED.load(Ordering::Relaxed);
        let leaks = run();
        let inspected = BLOCKS_INSPECTED.load(Ordering::Relaxed) - before;
        assert!(inspected > 200, "{name}: only {inspected} blocks inspected");
        assert_eq!(
            leaks,
            0,
            "{name}: {leaks} freed blocks held served entropy; the first was {} bytes, \
             holding the stream at offset {}",
            FIRST_LEAK_SIZE.load(Ordering::Relaxed),
            FIRST_LEAK_OFFSET.load(Ordering::Relaxed)
        );
    }
}
