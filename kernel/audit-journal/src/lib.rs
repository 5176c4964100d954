//! The audit journal's bounded store, one implementation for its two holders.
//!
//! logd keeps the journal in its process; when that process faults the journal goes
//! with it. So the kernel keeps a copy of what logd took, in a [`Journal`] with the
//! same bounds ([`LIMITS`]): it retires exactly the records logd's journal retires, and
//! a restarted logd takes the copy again and holds what its previous process held
//! (decision 13). Sharing this crate is what makes the two agree.
//!
//! The bounds: the kernel's records are kept per subject (the task a decision was
//! about), so a task that calls a lot retires only the records about itself; each
//! task's own records have a quota of their own. When a budget is full its oldest
//! record is retired and counted (`evicted`).

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use ipc::{AuditRecord, ServiceId};

/// How many records the journal keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalLimits {
    /// Records written by the kernel, per subject (the task the decision was about).
    pub kernel: usize,
    /// Records written by each task.
    pub per_task: usize,
}

/// The journal's bounds: logd's, and the kernel's copy of it.
pub const LIMITS: JournalLimits = JournalLimits {
    kernel: 512,
    per_task: 128,
};

/// One queue per task, indexed by its id (every record passes through here, in logd
/// and in the kernel, so the lookup is an index, not a search).
type PerTask = [VecDeque<AuditRecord>; ServiceId::ALL.len()];

/// A bounded journal of audit records, with the kernel's records apart.
#[derive(Debug)]
pub struct Journal {
    /// The kernel's records, by subject.
    kernel: PerTask,
    /// Each task's own records, by origin.
    tasks: PerTask,
    limits: JournalLimits,
    evicted: u64,
}

fn per_task() -> PerTask {
    core::array::from_fn(|_| VecDeque::new())
}

impl Journal {
    /// An empty journal with `limits` (each at least one).
    pub fn new(limits: JournalLimits) -> Self {
        Self {
            kernel: per_task(),
            tasks: per_task(),
            limits: JournalLimits {
                kernel: limits.kernel.max(1),
                per_task: limits.per_task.max(1),
            },
            evicted: 0,
        }
    }

    /// Appends a record, retiring the oldest of the same budget when it is full.
    pub fn push(&mut self, record: AuditRecord) {
        let (queue, bound) = if record.origin == ServiceId::Kernel {
            (
                &mut self.kernel[record.event.subject as usize],
                self.limits.kernel,
            )
        } else {
            (
                &mut self.tasks[record.origin as usize],
                self.limits.per_task,
            )
        };
        if queue.len() >= bound {
            queue.pop_front();
            self.evicted += 1;
        }
        queue.push_back(record);
    }

    /// Every record held, budget by budget.
    pub fn records(&self) -> impl Iterator<Item = &AuditRecord> {
        self.kernel
            .iter()
            .flatten()
            .chain(self.tasks.iter().flatten())
    }

    /// Records held.
    pub fn held(&self) -> usize {
        self.kernel
            .iter()
            .chain(self.tasks.iter())
            .map(VecDeque::len)
            .sum::<usize>()
    }

    /// Records retired by the journal's own bounds.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Every record held, in sequence order, leaving the journal empty (its count of
    /// retired records stays).
    pub fn take_in_order(&mut self) -> Vec<AuditRecord> {
        let mut all: Vec<AuditRecord> = self
            .kernel
            .iter_mut()
            .chain(self.tasks.iter_mut())
            .flat_map(core::mem::take)
            .collect();
        all.sort_unstable_by_key(|r| r.sequence);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc::{Action, AuditEvent, Verdict};

    fn record(origin: ServiceId, subject: ServiceId, sequence: u64) -> AuditRecord {
        AuditRecord {
            origin,
            sequence,
            event: AuditEvent {
                subject,
                action: Action::Health,
                verdict: Verdict::Allowed,
                reason: 0,
                detail: 0,
            },
        }
    }

    #[test]
    fn every_task_id_indexes_its_own_queue() {
        let mut seen = [false; ServiceId::ALL.len()];
        for id in ServiceId::ALL {
            let at = id as usize;
            assert!(at < seen.len() && !seen[at], "{id:?}");
            seen[at] = true;
        }
    }

    #[test]
    fn taking_in_order_gives_every_record_held_by_sequence_and_empties_it() {
        let mut journal = Journal::new(JournalLimits {
            kernel: 2,
            per_task: 1,
        });
        for (sequence, (origin, subject)) in [
            (ServiceId::Kernel, ServiceId::Rngd),
            (ServiceId::Statefs, ServiceId::Selftest),
            (ServiceId::Kernel, ServiceId::Rngd),
            (ServiceId::Kernel, ServiceId::Logd),
            (ServiceId::Statefs, ServiceId::Selftest),
            (ServiceId::Kernel, ServiceId::Rngd),
        ]
        .into_iter()
        .enumerate()
        {
            journal.push(record(origin, subject, sequence as u64));
        }
        // Retired: 0 (rngd's budget of two) and 1 (statefs's quota of one).
        assert_eq!(journal.evicted(), 2);
        let sequences: Vec<u64> = journal.take_in_order().iter().map(|r| r.sequence).collect();
        assert_eq!(sequences, [2, 3, 4, 5]);
        assert_eq!(journal.held(), 0);
        assert_eq!(journal.evicted(), 2);
    }
}
