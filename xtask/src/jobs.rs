//! How many QEMUs a step runs at once.
//!
//! Under TCG the guest's clock follows the host's, so a guest whose QEMU the host does
//! not schedule still sees its time pass: its deadlines (a transmit's 100 ms, a
//! handshake's 3 s, the watchdog's 5 s) run out while it cannot run. Sixteen QEMUs at
//! once on a 2-core machine starved each other that way (beside other builds, the
//! production-image step failed twice). Steps that boot one QEMU per combination run
//! at most [`qemu_jobs`] at a time: the same CPU work, never more guests than the
//! host can keep running.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// QEMUs one step runs at once: `XTASK_QEMU_JOBS` if set, otherwise twice the host's
/// cores (a guest idles while it waits for its peer or its disks), at least 2.
pub fn qemu_jobs() -> usize {
    if let Some(jobs) = std::env::var("XTASK_QEMU_JOBS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return jobs;
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (2 * cores).max(2)
}

/// Runs `work` on every item, at most `limit` at once, and returns the results in the
/// items' order.
pub fn bounded<T: Sync, R: Send>(
    items: &[T],
    limit: usize,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..limit.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let at = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = items.get(at) else {
                        break;
                    };
                    let result = work(item);
                    results.lock().expect("results")[at] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .expect("results")
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_runs_once_in_order_and_never_more_than_the_limit_at_once() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let items: Vec<u32> = (0..20).collect();
        let results = bounded(&items, 3, |n| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(5));
            running.fetch_sub(1, Ordering::SeqCst);
            n * 2
        });
        assert_eq!(results, (0..20).map(|n| n * 2).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) <= 3);
        assert!(bounded(&[] as &[u32], 3, |n| *n).is_empty());
    }
}
