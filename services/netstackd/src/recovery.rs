//! Bringing the network device back after it stopped.
//!
//! A device that misses a transmit deadline (or misbehaves) fails every request until
//! it is reset ([`ipc::RawNetDevice::reset`]). A device in the field must get its
//! network back without a reboot, so netstackd resets it: at once, then with a
//! doubling backoff ([`FIRST_BACKOFF_MS`], up to [`QUICK_RESETS`] attempts), then, if it
//! still has not come back, every [`SLOW_RETRY_MS`] for as long as the machine runs.
//! A device that stops again soon after it came back ([`FLAP_WINDOW_MS`]) continues
//! the backoff where the last episode left it instead of starting over, so a device
//! that keeps failing is reset at a bounded rate.
//!
//! This module is the schedule alone, with no device and no endpoint: it says when to
//! reset and what each step was ([`Event`]); the service loop resets the device,
//! prints each event and writes its audit record ([`Event::reason`]).

use ipc::{DeviceError, NetReset, Verdict};
use service_api::netstackd::DeviceHealth;

/// The wait after the first failed reset; each later quick attempt waits twice the
/// one before.
pub const FIRST_BACKOFF_MS: u64 = 100;
/// Resets tried with the doubling backoff before netstackd says the device did not
/// come back (at 0, 100, 300, 700, 1,500 and 3,100 ms after it stopped).
pub const QUICK_RESETS: u32 = 6;
/// After the quick resets, one reset every this many milliseconds, for good.
pub const SLOW_RETRY_MS: u64 = 10_000;
/// A device that stops again within this long after it came back continues the
/// backoff of its last episode.
pub const FLAP_WINDOW_MS: u64 = 5_000;

/// A step of the recovery, to print and to record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The device stopped with `error`; a reset comes in `reset_in_ms`.
    Stopped {
        /// The device's error.
        error: DeviceError,
        /// When the first reset comes.
        reset_in_ms: u64,
    },
    /// Reset number `attempt` of this episode failed with `error`; the next comes in
    /// `retry_in_ms`.
    ResetFailed {
        /// Which attempt (from 1).
        attempt: u32,
        /// Why it failed.
        error: DeviceError,
        /// When the next comes.
        retry_in_ms: u64,
    },
    /// The quick resets are spent: from now on one every [`SLOW_RETRY_MS`].
    SlowRetries {
        /// Resets tried so far in this episode.
        attempts: u32,
    },
    /// Reset number `attempt` brought the device back, `down_ms` after it stopped;
    /// `dropped` is what the reset dropped.
    Recovered {
        /// Which attempt (from 1).
        attempt: u32,
        /// How long the device was down.
        down_ms: u64,
        /// The frames the device held, dropped.
        dropped: NetReset,
    },
}

impl Event {
    /// The audit record's verdict, reason and detail for this step.
    pub fn record(&self) -> (Verdict, DeviceHealth, u32) {
        match *self {
            Self::Stopped { error, .. } => (
                Verdict::Failed,
                DeviceHealth::Stopped,
                DeviceHealth::error_detail(error),
            ),
            Self::ResetFailed { attempt, .. } => {
                (Verdict::Failed, DeviceHealth::ResetFailed, attempt)
            }
            Self::SlowRetries { attempts } => {
                (Verdict::Failed, DeviceHealth::SlowRetries, attempts)
            }
            Self::Recovered { attempt, .. } => (Verdict::Allowed, DeviceHealth::Recovered, attempt),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Down {
    since_ms: u64,
    /// Resets tried in this episode.
    attempts: u32,
    /// The backoff step the next failure takes (continued across flapping episodes).
    step: u32,
    next_ms: u64,
}

/// The recovery schedule, and what it has done so far.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    down: Option<Down>,
    /// When the device last came back, and the backoff step it had reached.
    last_recovery: Option<(u64, u32)>,
    /// Episodes that ended with the device back.
    pub recoveries: u64,
    /// Frames dropped by resets, in all.
    pub frames_dropped: u64,
}

/// The wait after the failure at backoff step `step` (from 0): doubling, and
/// [`SLOW_RETRY_MS`] once the quick resets are spent.
fn backoff(step: u32) -> u64 {
    if step + 1 >= QUICK_RESETS {
        SLOW_RETRY_MS
    } else {
        FIRST_BACKOFF_MS
            .saturating_mul(1u64 << step.min(16))
            .min(SLOW_RETRY_MS)
    }
}

impl Recovery {
    /// Whether the device is down now.
    pub fn is_down(&self) -> bool {
        self.down.is_some()
    }

    /// Notes the device's state: an error starts an episode (the [`Event::Stopped`] it
    /// returns), once.
    pub fn observe(&mut self, failed: Option<DeviceError>, now_ms: u64) -> Option<Event> {
        let error = failed?;
        if self.down.is_some() {
            return None;
        }
        // A device that came back only moments ago waits its backoff again.
        let step = match self.last_recovery {
            Some((at, step)) if now_ms.saturating_sub(at) < FLAP_WINDOW_MS => step + 1,
            _ => 0,
        };
        let reset_in_ms = if step == 0 { 0 } else { backoff(step - 1) };
        self.down = Some(Down {
            since_ms: now_ms,
            attempts: 0,
            step,
            next_ms: now_ms.saturating_add(reset_in_ms),
        });
        Some(Event::Stopped { error, reset_in_ms })
    }

    /// Whether a reset is due now.
    pub fn due(&self, now_ms: u64) -> bool {
        self.down.is_some_and(|d| now_ms >= d.next_ms)
    }

    /// Takes the outcome of a reset tried at `now_ms`: what happened (one or two
    /// events).
    pub fn attempted(
        &mut self,
        outcome: Result<NetReset, DeviceError>,
        now_ms: u64,
    ) -> [Option<Event>; 2] {
        let Some(mut down) = self.down else {
            return [None, None];
        };
        down.attempts += 1;
        match outcome {
            Ok(dropped) => {
                self.down = None;
                self.last_recovery = Some((now_ms, down.step));
                self.recoveries += 1;
                self.frames_dropped +=
                    u64::from(dropped.transmits_dropped) + u64::from(dropped.receives_dropped);
                [
                    Some(Event::Recovered {
                        attempt: down.attempts,
                        down_ms: now_ms.saturating_sub(down.since_ms),
                        dropped,
                    }),
                    None,
                ]
            }
            Err(error) => {
                let retry_in_ms = backoff(down.step);
                down.step = down.step.saturating_add(1);
                down.next_ms = now_ms.saturating_add(retry_in_ms);
                self.down = Some(down);
                let failed = Some(Event::ResetFailed {
                    attempt: down.attempts,
                    error,
                    retry_in_ms,
                });
                let slow = (down.attempts == QUICK_RESETS).then_some(Event::SlowRetries {
                    attempts: down.attempts,
                });
                [failed, slow]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const DROPPED: NetReset = NetReset {
        transmits_dropped: 1,
        receives_dropped: 2,
    };

    #[test]
    fn a_stopped_device_is_reset_at_once_and_recovers() {
        let mut r = Recovery::default();
        assert_eq!(r.observe(None, 10), None);
        assert_eq!(
            r.observe(Some(DeviceError::Timeout), 10),
            Some(Event::Stopped {
                error: DeviceError::Timeout,
                reset_in_ms: 0
            })
        );
        assert_eq!(r.observe(Some(DeviceError::Timeout), 11), None, "once");
        assert!(r.due(10));
        assert_eq!(
            r.attempted(Ok(DROPPED), 12),
            [
                Some(Event::Recovered {
                    attempt: 1,
                    down_ms: 2,
                    dropped: DROPPED
                }),
                None
            ]
        );
        assert!(!r.is_down());
        assert_eq!((r.recoveries, r.frames_dropped), (1, 3));
    }

    #[test]
    fn failed_resets_back_off_then_go_slow_but_never_stop() {
        let mut r = Recovery::default();
        r.observe(Some(DeviceError::Failed), 0);
        let mut now = 0;
        let mut waits = Vec::new();
        for attempt in 1..=QUICK_RESETS + 3 {
            assert!(r.due(now), "attempt {attempt} is due at {now}");
            let [failed, slow] = r.attempted(Err(DeviceError::Timeout), now);
            let Some(Event::ResetFailed { retry_in_ms, .. }) = failed else {
                panic!("{failed:?}");
            };
            assert_eq!(slow.is_some(), attempt == QUICK_RESETS, "{attempt}");
            waits.push(retry_in_ms);
            assert!(!r.due(now + retry_in_ms - 1));
            now += retry_in_ms;
        }
        assert_eq!(
            waits,
            [100, 200, 400, 800, 1600, 10_000, 10_000, 10_000, 10_000]
        );
        assert_eq!(
            r.attempted(Ok(NetReset::default()), now)[0],
            Some(Event::Recovered {
                attempt: QUICK_RESETS + 4,
                down_ms: now,
                dropped: NetReset::default()
            })
        );
    }

    #[test]
    fn a_device_that_keeps_stopping_is_reset_at_a_bounded_rate() {
        let mut r = Recovery::default();
        let mut now = 0;
        let mut first_waits = Vec::new();
        for _ in 0..12 {
            let Some(Event::Stopped { reset_in_ms, .. }) =
                r.observe(Some(DeviceError::Timeout), now)
            else {
                panic!("a new episode");
            };
            first_waits.push(reset_in_ms);
            now += reset_in_ms;
            assert!(r.due(now));
            r.attempted(Ok(DROPPED), now);
            now += 10; // stops again 10 ms after it came back
        }
        assert_eq!(
            first_waits,
            [
                0, 100, 200, 400, 800, 1600, 10_000, 10_000, 10_000, 10_000, 10_000, 10_000
            ]
        );
        // Long enough up: the next episode starts over.
        now += FLAP_WINDOW_MS;
        assert!(matches!(
            r.observe(Some(DeviceError::Timeout), now),
            Some(Event::Stopped { reset_in_ms: 0, .. })
        ));
    }
}
