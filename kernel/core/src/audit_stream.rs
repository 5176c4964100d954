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
//!   faults takes every record it held with it. The stream keeps a copy of the last
//!   records it handed out (`retained` of them); when the holder's process is replaced
//!   they go back at the head of the stream, and the new process takes them again.
//!   Records handed out before those are lost for good and counted as lost, each in
//!   its budget (a lost kernel record means the trail is incomplete, as above).

use alloc::collections::{BTreeMap, VecDeque};

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
    /// Copies of the last records handed out, oldest first, at most `retained`.
    delivered: VecDeque<AuditRecord>,
    retained: usize,
    /// Records handed out that left `delivered`, each in its budget: lost if the
    /// holder's process is replaced.
    aged: AuditLoss,
}

/// What a restart of the feed's holder did to the stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Redelivered {
    /// Records put back at the head of the stream for the new process.
    pub(crate) records: usize,
    /// Records the old process took that the stream no longer had a copy of: lost.
    pub(crate) lost: AuditLoss,
}

/// Counts `record` in its budget of `loss`.
fn count(loss: &mut AuditLoss, record: &AuditRecord) {
    if record.origin == ServiceId::Kernel {
        loss.kernel += 1;
    } else {
        loss.tasks += 1;
    }
}

impl AuditStream {
    pub(crate) fn new(kernel_capacity: usize, task_quota: usize, retained: usize) -> Self {
        Self {
            kernel: VecDeque::new(),
            tasks: BTreeMap::new(),
            kernel_capacity: kernel_capacity.max(1),
            task_quota: task_quota.max(1),
            sequence: 0,
            lost: AuditLoss::default(),
            delivered: VecDeque::new(),
            retained,
            aged: AuditLoss::default(),
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

    /// The held record with the lowest sequence number; a copy stays in the window a
    /// restarted holder takes again.
    pub(crate) fn pop(&mut self) -> Option<AuditRecord> {
        let oldest_task = self
            .tasks
            .iter()
            .filter_map(|(origin, queue)| queue.front().map(|r| (r.sequence, *origin)))
            .min();
        let kernel_first = self.kernel.front().map(|r| r.sequence);
        let record = match (kernel_first, oldest_task) {
            (Some(k), Some((t, _))) if k < t => self.kernel.pop_front(),
            (Some(_), None) => self.kernel.pop_front(),
            (_, Some((_, origin))) => self.tasks.get_mut(&origin)?.pop_front(),
            (None, None) => None,
        }?;
        if self.retained > 0 {
            if self.delivered.len() >= self.retained
                && let Some(old) = self.delivered.pop_front()
            {
                count(&mut self.aged, &old);
            }
            self.delivered.push_back(record);
        } else {
            count(&mut self.aged, &record);
        }
        Some(record)
    }

    /// The feed's holder was replaced by a new process (the old one's journal is
    /// gone): the retained copies go back at the head of the stream, oldest first, and
    /// what the old process took before them is counted lost.
    pub(crate) fn holder_restarted(&mut self) -> Redelivered {
        let lost = core::mem::take(&mut self.aged);
        self.lost.kernel += lost.kernel;
        self.lost.tasks += lost.tasks;
        let records = self.delivered.len();
        while let Some(record) = self.delivered.pop_back() {
            if record.origin == ServiceId::Kernel {
                self.kernel.push_front(record);
            } else {
                self.tasks
                    .entry(record.origin)
                    .or_default()
                    .push_front(record);
            }
        }
        Redelivered { records, lost }
    }

    pub(crate) fn lost(&self) -> AuditLoss {
        self.lost
    }

    /// Records held, all budgets together.
    pub(crate) fn held(&self) -> usize {
        self.kernel.len() + self.tasks.values().map(VecDeque::len).sum::<usize>()
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
        let mut stream = AuditStream::new(4, 2, 0);
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
        let mut stream = AuditStream::new(2, 2, 0);
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
    fn a_restarted_holder_takes_the_retained_records_again_and_older_ones_are_counted_lost() {
        let mut stream = AuditStream::new(8, 8, 3);
        for n in 0..4 {
            stream.push(ServiceId::Kernel, event(ServiceId::Rngd));
            stream.push(ServiceId::Statefs, event(ServiceId::Selftest));
            let _ = n;
        }
        // The old process takes five records (sequences 0 to 4), then faults.
        let taken: Vec<u64> = (0..5).map(|_| stream.pop().unwrap().sequence).collect();
        assert_eq!(taken, [0, 1, 2, 3, 4]);
        let again = stream.holder_restarted();
        // Sequences 0 (kernel) and 1 (statefs) left the window of three.
        assert_eq!(again.records, 3);
        assert_eq!(
            again.lost,
            AuditLoss {
                kernel: 1,
                tasks: 1
            }
        );
        assert_eq!(
            stream.lost(),
            AuditLoss {
                kernel: 1,
                tasks: 1
            }
        );
        // The new process takes 2, 3, 4 again, then the rest, in order.
        let all: Vec<u64> = core::iter::from_fn(|| stream.pop().map(|r| r.sequence)).collect();
        assert_eq!(all, [2, 3, 4, 5, 6, 7]);
        // The second process faults too: 5, 6 and 7 go back; 2 and 4 (kernel) and 3
        // (statefs) are gone with it.
        let again = stream.holder_restarted();
        assert_eq!(again.records, 3);
        assert_eq!(
            again.lost,
            AuditLoss {
                kernel: 2,
                tasks: 1
            }
        );
        assert_eq!(
            stream.lost(),
            AuditLoss {
                kernel: 3,
                tasks: 2
            }
        );
        let all: Vec<u64> = core::iter::from_fn(|| stream.pop().map(|r| r.sequence)).collect();
        assert_eq!(all, [5, 6, 7]);
        // A restart with nothing taken since loses nothing.
        let again = stream.holder_restarted();
        assert_eq!((again.records, again.lost), (3, AuditLoss::default()));
    }

    #[test]
    fn the_sequence_number_wraps_without_panicking() {
        let mut stream = AuditStream::new(4, 4, 0);
        stream.set_sequence(u64::MAX);
        stream.push(ServiceId::Kernel, event(ServiceId::Logd));
        stream.push(ServiceId::Kernel, event(ServiceId::Logd));
        assert_eq!(stream.pop().map(|r| r.sequence), Some(u64::MAX));
        assert_eq!(stream.pop().map(|r| r.sequence), Some(0));
    }
}
