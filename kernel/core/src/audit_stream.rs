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
}

impl AuditStream {
    pub(crate) fn new(kernel_capacity: usize, task_quota: usize) -> Self {
        Self {
            kernel: VecDeque::new(),
            tasks: BTreeMap::new(),
            kernel_capacity: kernel_capacity.max(1),
            task_quota: task_quota.max(1),
            sequence: 0,
            lost: AuditLoss::default(),
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

    /// The held record with the lowest sequence number.
    pub(crate) fn pop(&mut self) -> Option<AuditRecord> {
        let oldest_task = self
            .tasks
            .iter()
            .filter_map(|(origin, queue)| queue.front().map(|r| (r.sequence, *origin)))
            .min();
        let kernel_first = self.kernel.front().map(|r| r.sequence);
        match (kernel_first, oldest_task) {
            (Some(k), Some((t, _))) if k < t => self.kernel.pop_front(),
            (Some(_), None) => self.kernel.pop_front(),
            (_, Some((_, origin))) => self.tasks.get_mut(&origin)?.pop_front(),
            (None, None) => None,
        }
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
        let mut stream = AuditStream::new(4, 2);
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
        let origins: alloc::vec::Vec<_> = core::iter::from_fn(|| stream.pop())
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
        let mut stream = AuditStream::new(2, 2);
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
    fn the_sequence_number_wraps_without_panicking() {
        let mut stream = AuditStream::new(4, 4);
        stream.set_sequence(u64::MAX);
        stream.push(ServiceId::Kernel, event(ServiceId::Logd));
        stream.push(ServiceId::Kernel, event(ServiceId::Logd));
        assert_eq!(stream.pop().map(|r| r.sequence), Some(u64::MAX));
        assert_eq!(stream.pop().map(|r| r.sequence), Some(0));
    }
}
