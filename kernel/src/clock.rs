//! Time since boot, from the `time` CSR and the device tree's timebase.

use core::sync::atomic::{AtomicU64, Ordering};

static TIMEBASE_HZ: AtomicU64 = AtomicU64::new(10_000_000);

pub fn init(timebase_hz: u64) {
    TIMEBASE_HZ.store(timebase_hz.max(1), Ordering::Relaxed);
}

/// Microseconds since the machine started counting.
pub fn now_us() -> u64 {
    let ticks = u128::from(riscv::register::time::read64());
    let hz = u128::from(TIMEBASE_HZ.load(Ordering::Relaxed));
    u64::try_from(ticks * 1_000_000 / hz).unwrap_or(u64::MAX)
}

/// `time` ticks as microseconds.
pub fn ticks_to_us(ticks: u64) -> u64 {
    let hz = u128::from(TIMEBASE_HZ.load(Ordering::Relaxed));
    u64::try_from(u128::from(ticks) * 1_000_000 / hz).unwrap_or(u64::MAX)
}

/// Microseconds as `time` ticks.
pub fn us_to_ticks(us: u64) -> u64 {
    let hz = u128::from(TIMEBASE_HZ.load(Ordering::Relaxed));
    u64::try_from(u128::from(us) * hz / 1_000_000).unwrap_or(u64::MAX)
}
