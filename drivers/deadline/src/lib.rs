//! Deadlines for device requests.
//!
//! A driver that waits for a device by spinning must stop by a deadline: a stalled
//! device must fail one request, not hang the kernel. The virtio frontends poll their
//! queue through [`wait_until`] with the kernel's clock.

#![no_std]
#![forbid(unsafe_code)]

/// A monotonic clock for request deadlines.
pub trait Clock {
    /// Microseconds, monotonic.
    fn now_us(&self) -> u64;
}

/// The deadline passed before the condition held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadlinePassed;

/// Spins until `done()` holds or `timeout_us` has passed on `clock`.
///
/// # Errors
/// [`DeadlinePassed`] when the deadline came first.
pub fn wait_until<C: Clock>(
    clock: &C,
    timeout_us: u64,
    mut done: impl FnMut() -> bool,
) -> Result<(), DeadlinePassed> {
    let deadline = clock.now_us().saturating_add(timeout_us);
    while !done() {
        if clock.now_us() >= deadline {
            return Err(DeadlinePassed);
        }
        core::hint::spin_loop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;

    struct Ticks(Cell<u64>);

    impl Clock for Ticks {
        fn now_us(&self) -> u64 {
            self.0.set(self.0.get() + 10);
            self.0.get()
        }
    }

    #[test]
    fn a_condition_that_never_holds_ends_at_the_deadline() {
        let clock = Ticks(Cell::new(0));
        assert_eq!(wait_until(&clock, 1_000, || false), Err(DeadlinePassed));
        assert!(clock.0.get() >= 1_000);
        let mut polls = 0;
        assert_eq!(
            wait_until(&clock, 1_000, || {
                polls += 1;
                polls == 3
            }),
            Ok(())
        );
    }
}
