//! The kernel's bounded stream of audit records, with separate budgets so that no task
//! can push the kernel's own records out.
//!
//! - **Kernel records** (policy, capability and IPC decisions) have a budget of their
//!   own. Only a kernel record can evict a kernel record, and that happens only when
//!   logd stops draining; it is counted in [`AuditLoss::kernel`] and announced once on
//!   the console as a failure.
//! - **Task records** (each service's own verdicts) have a quota per writing task.
//!   A task over its quota loses its own oldest record, counted in
//!   [`AuditLoss::tasks`]; other tasks' records and the kernel's are untouched.
//!
//! Records leave in sequence order whichever budget they sit in.
//!
//! - **A restarted holder.** logd's journal lives in its process, so a logd that
//!   faults would take every record it held with it. The stream keeps a copy of what it
//!   handed out in an [`audit_journal::Journal`] with logd's bounds, which retires
//!   exactly the records logd's journal retires; when the holder's process is replaced
//!   the copy goes back at the head of the stream, in sequence order, and the new
//!   process takes it again: it holds what its previous process held.

use alloc::collections::{BTreeMap, VecDeque};

use audit_journal::{Journal, JournalLimits};
use ipc::{AuditEvent, AuditLoss, AuditRecord, ServiceId};

/// What happened to a record on its way in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admitted {
    /// Queued with room to spare.
    Queued,
    /// Queued, and a kernel record was dropped to make room: the first time this
    /// happens the kernel says so on the console.
    KernelRecordDropped {
        /// Whether this is the first kernel record ever dropped.
        first: bool,
    },
    /// Queued, and the writer's own oldest record was dropped.
    TaskRecordDropped,
}

pub(crate) struct AuditStream {
    kernel: VecDeque<AuditRecord>,
    tasks: BTreeMap<ServiceId, VecDeque<AuditRecord>>,
    kernel_capacity: usize,
    task_quota: usize,
    sequence: u64,
    lost: AuditLoss,
    /// A copy of the holder's journal: every record handed out, under the journal's
    /// bounds.
    copy: Journal,
    /// The copy, handed back after the holder's process was replaced: older than
    /// every record queued, so it leaves first, outside the budgets (a record arriving
    /// while the new process starts never pushes one of these out).
    replay: VecDeque<AuditRecord>,
}

impl AuditStream {
    pub(crate) fn new(kernel_capacity: usize, task_quota: usize, journal: JournalLimits) -> Self {
        Self {
            kernel: VecDeque::new(),
            tasks: BTreeMap::new(),
            kernel_capacity: kernel_capacity.max(1),
            task_quota: task_quota.max(1),
            sequence: 0,
            lost: AuditLoss::default(),
            copy: Journal::new(journal),
            replay: VecDeque::new(),
        }
    }

    /// Stamps `event` with `origin` and the next sequence number and queues it in
    /// `origin`'s budget.
    pub(crate) fn push(&mut self, origin: ServiceId, event: AuditEvent) -> Admitted {
        let record = AuditRecord {
            origin,
            sequence: self.sequence,
            event,
        };
        self.sequence = self.sequence.wrapping_add(1);
        let (queue, bound) = if origin == ServiceId::Kernel {
            (&mut self.kernel, self.kernel_capacity)
        } else {
            (self.tasks.entry(origin).or_default(), self.task_quota)
        };
        let mut admitted = Admitted::Queued;
        if queue.len() >= bound {
            queue.pop_front();
            admitted = if origin == ServiceId::Kernel {
                self.lost.kernel += 1;
                Admitted::KernelRecordDropped {
                    first: self.lost.kernel == 1,
                }
            } else {
                self.lost.tasks += 1;
                Admitted::TaskRecordDropped
            };
        }
        queue.push_back(record);
        admitted
    }

    /// The held record with the lowest sequence number; a copy goes to the copy of the
    /// holder's journal.
    pub(crate) fn pop(&mut self) -> Option<AuditRecord> {
        let oldest_task = self
            .tasks
            .iter()
            .filter_map(|(origin, queue)| queue.front().map(|r| (r.sequence, *origin)))
            .min();
        let kernel_first = self.kernel.front().map(|r| r.sequence);
        if let Some(record) = self.replay.pop_front() {
            if self.replay.is_empty() {
                // Handed back whole: its room goes back to the heap (a soak with
                // faults reads the heap flat only then).
                self.replay = VecDeque::new();
            }
            self.copy.push(record);
            return Some(record);
        }
        let record = match (kernel_first, oldest_task) {
            (Some(k), Some((t, _))) if k < t => self.kernel.pop_front(),
            (Some(_), None) => self.kernel.pop_front(),
            (_, Some((_, origin))) => self.tasks.get_mut(&origin)?.pop_front(),
            (None, None) => None,
        }?;
        self.copy.push(record);
        Some(record)
    }

    /// The feed's holder was replaced by a new process (the old one's journal is
    /// gone): the copy of its journal goes back at the head of the stream, in sequence
    /// order, for the new process to take. Returns how many records.
    pub(crate) fn holder_restarted(&mut self) -> usize {
        // The copy holds what was taken, and what an earlier replacement handed back
        // and nobody took yet is newer than all of it.
        let mut again: VecDeque<AuditRecord> = self.copy.take_in_order().into();
        again.append(&mut self.replay);
        let records = again.len();
        self.replay = again;
        records
    }

    pub(crate) fn lost(&self) -> AuditLoss {
        self.lost
    }

    /// Records held, all budgets together.
    pub(crate) fn held(&self) -> usize {
        self.replay.len()
            + self.kernel.len()
            + self.tasks.values().map(VecDeque::len).sum::<usize>()
    }

    #[cfg(test)]
    pub(crate) fn set_sequence(&mut self, sequence: u64) {
        self.sequence = sequence;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use ipc::{Action, Verdict};

    fn event(subject: ServiceId) -> AuditEvent {
        AuditEvent {
            subject,
            action: Action::Health,
            verdict: Verdict::Allowed,
            reason: 0,
            detail: 0,
        }
    }

    #[test]
    fn a_task_over_its_quota_only_loses_its_own_records() {
        let mut stream = AuditStream::new(4, 2, audit_journal::LIMITS);
        stream.push(ServiceId::Kernel, event(ServiceId::Selftest));
        stream.push(ServiceId::Rngd, event(ServiceId::Rngd));
        for _ in 0..1000 {
            stream.push(ServiceId::Selftest, event(ServiceId::Selftest));
        }
        assert_eq!(
            stream.lost(),
            AuditLoss {
                kernel: 0,
                tasks: 998
            }
        );
        let origins: Vec<_> = core::iter::from_fn(|| stream.pop())
            .map(|r| (r.origin, r.sequence))
            .collect();
        assert_eq!(
            origins,
            [
                (ServiceId::Kernel, 0),
                (ServiceId::Rngd, 1),
                (ServiceId::Selftest, 1000),
                (ServiceId::Selftest, 1001)
            ],
            "in sequence order, the kernel's and rngd's records kept"
        );
    }

    #[test]
    fn kernel_records_are_dropped_only_by_kernel_records_and_counted() {
        let mut stream = AuditStream::new(2, 2, audit_journal::LIMITS);
        assert_eq!(
            stream.push(ServiceId::Kernel, event(ServiceId::Logd)),
            Admitted::Queued
        );
        stream.push(ServiceId::Kernel, event(ServiceId::Logd));
        assert_eq!(
            stream.push(ServiceId::Kernel, event(ServiceId::Logd)),
            Admitted::KernelRecordDropped { first: true }
        );
        assert_eq!(
            stream.push(ServiceId::Kernel, event(ServiceId::Logd)),
            Admitted::KernelRecordDropped { first: false }
        );
        assert_eq!(stream.lost().kernel, 2);
        assert_eq!(stream.held(), 2);
    }

    #[test]
    fn a_restarted_holder_takes_what_its_journal_held_again_in_order() {
        let journal = JournalLimits {
            kernel: 2,
            per_task: 1,
        };
        let mut stream = AuditStream::new(8, 8, journal);
        for _ in 0..4 {
            stream.push(ServiceId::Kernel, event(ServiceId::Rngd));
            stream.push(ServiceId::Statefs, event(ServiceId::Selftest));
        }
        // The old process takes six records (sequences 0 to 5) into a journal with
        // the same bounds, then faults.
        let mut old = Journal::new(journal);
        for _ in 0..6 {
            old.push(stream.pop().unwrap());
        }
        let held: Vec<u64> = old.take_in_order().iter().map(|r| r.sequence).collect();
        assert_eq!(held, [2, 4, 5], "rngd's last two, statefs's last one");
        assert_eq!(stream.holder_restarted(), 3);
        // The new process takes them again first, then the rest, in order; nothing is
        // counted lost.
        let all: Vec<u64> = core::iter::from_fn(|| stream.pop().map(|r| r.sequence)).collect();
        assert_eq!(all, [2, 4, 5, 6, 7]);
        assert_eq!(stream.lost(), AuditLoss::default());
        // It faults too: its journal held rngd's 4 and 6, statefs's 7.
        assert_eq!(stream.holder_restarted(), 3);
        // The third takes one record and faults: the rest of what was handed back
        // comes after its copy, in order.
        assert_eq!(stream.pop().map(|r| r.sequence), Some(4));
        assert_eq!(stream.holder_restarted(), 3);
        let all: Vec<u64> = core::iter::from_fn(|| stream.pop().map(|r| r.sequence)).collect();
        assert_eq!(all, [4, 6, 7]);
    }

    #[test]
    fn records_arriving_while_the_holder_restarts_push_none_of_its_copy_out() {
        let journal = JournalLimits {
            kernel: 8,
            per_task: 8,
        };
        let mut stream = AuditStream::new(2, 2, journal);
        for _ in 0..2 {
            stream.push(ServiceId::Kernel, event(ServiceId::Rngd));
        }
        while stream.pop().is_some() {}
        assert_eq!(stream.holder_restarted(), 2);
        // The kernel's budget of two fills while the new process starts.
        for _ in 0..2 {
            stream.push(ServiceId::Kernel, event(ServiceId::Rngd));
        }
        assert_eq!(stream.lost(), AuditLoss::default());
        let all: Vec<u64> = core::iter::from_fn(|| stream.pop().map(|r| r.sequence)).collect();
        assert_eq!(all, [0, 1, 2, 3]);
    }

    #[test]
    fn the_sequence_number_wraps_without_panicking() {
        let mut stream = AuditStream::new(4, 4, audit_journal::LIMITS);
        stream.set_sequence(u64::MAX);
        stream.push(ServiceId::Kernel, event(ServiceId::Logd));
        stream.push(ServiceId::Kernel, event(ServiceId::Logd));
        assert_eq!(stream.pop().map(|r| r.sequence), Some(u64::MAX));
        assert_eq!(stream.pop().map(|r| r.sequence), Some(0));
    }
}
