//! logd, the audit journal.
//!
//! logd holds the audit-feed capability (see `policies/manifest.toml`): it alone
//! drains the kernel's stream of audit records, which carries every policy decision,
//! every capability claim and each service's own verdicts. `QUERY` counts the records
//! matching a filter, which is how the selftest proves that decisions were recorded.
//!
//! The journal is bounded the way the kernel's stream is: the kernel's records have a
//! budget of their own, and each task that writes records has a quota, so a task that
//! floods the journal ages out only its own records. The kernel's budget is kept per
//! subject too: every IPC call is a kernel record, so a task that calls a lot (dsoftbusd
//! working for network peers nobody authenticated yet) would otherwise retire the
//! records of decisions about every other task. When a budget is full its oldest
//! record is retired and counted (`evicted`). Records the kernel's stream lost before
//! logd took them are reported apart (`kernel_lost`, `task_lost`): a lost kernel record
//! means the trail is incomplete, and the selftest fails the ladder on it.
//!
//! Bad requests (undecodable filter, an operation logd does not offer) get a typed
//! error reply and an audit record of their own, and logd goes on serving.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;

use ipc::{
    Action, AuditEvent, AuditFeed, AuditFilter, AuditLoss, Endpoint, Operation, Request, ServiceId,
    Verdict,
};
use service_api::logd::QueryReply;
use service_api::{Incoming, ServiceError, reply_err, reply_ok};

pub use audit_journal::{Journal, JournalLimits};

/// The journal's default bounds (the kernel keeps its copy of the journal under the
/// same, `audit_journal::LIMITS`).
pub const DEFAULT_LIMITS: JournalLimits = audit_journal::LIMITS;

/// Counts the records of `journal` matching `filter`; `lost` is what the kernel's
/// stream lost before the journal saw it.
pub fn query(journal: &Journal, filter: &AuditFilter, lost: AuditLoss) -> QueryReply {
    let matched = journal.records().filter(|r| filter.matches(r)).count();
    QueryReply {
        matched: u32::try_from(matched).unwrap_or(u32::MAX),
        held: u32::try_from(journal.held()).unwrap_or(u32::MAX),
        kernel_lost: lost.kernel,
        task_lost: lost.tasks,
        evicted: journal.evicted(),
    }
}

/// Runs logd until the machine stops.
pub async fn run<E: Endpoint>(ep: E, limits: JournalLimits) {
    let mut feed = match ep.claim_audit_feed() {
        Ok(feed) => feed,
        Err(error) => {
            ep.console(&format!("FAIL cannot claim the audit feed: {error}"));
            return;
        }
    };
    let mut journal = Journal::new(limits);
    ep.console(markers::LOGD_READY.message);
    loop {
        drain(&mut feed, &mut journal);
        match ep.try_receive() {
            Some(request) => serve(&ep, &mut feed, &mut journal, request),
            None => ep.yield_now().await,
        }
    }
}

fn drain<F: AuditFeed>(feed: &mut F, journal: &mut Journal) {
    while let Some(record) = feed.pop() {
        journal.push(record);
    }
}

fn serve<E: Endpoint>(ep: &E, feed: &mut E::AuditFeed, journal: &mut Journal, request: Request) {
    let answer = match Incoming::parse(ServiceId::Logd, &request) {
        Ok(Incoming {
            operation: Operation::LogdQuery,
            payload,
            ..
        }) => AuditFilter::decode(payload)
            .map_err(|_| (ServiceError::MalformedRequest, Operation::LogdQuery.code())),
        Ok(other) => Err((ServiceError::UnknownOperation, other.operation.code())),
        Err(refusal) => Err(refusal),
    };
    // A refused reply means the caller gave up; there is no one left to tell.
    let _ = match answer {
        Ok(filter) => {
            // Records of decisions made up to this request are in the stream; take them.
            drain(feed, journal);
            reply_ok(
                ep,
                request.token,
                &query(journal, &filter, feed.lost()).encode(),
            )
        }
        Err((error, code)) => {
            ep.audit(AuditEvent {
                subject: request.sender,
                action: Action::Call {
                    service: ServiceId::Logd,
                    code,
                },
                verdict: Verdict::Rejected,
                reason: error.code(),
                detail: u32::try_from(request.frame.len()).unwrap_or(u32::MAX),
            });
            reply_err(ep, request.token, error)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc::AuditRecord;

    fn subject_record(subject: ServiceId, sequence: u64, verdict: Verdict) -> AuditRecord {
        AuditRecord {
            origin: ServiceId::Kernel,
            sequence,
            event: AuditEvent {
                subject,
                action: Action::Health,
                verdict,
                reason: 0,
                detail: 0,
            },
        }
    }

    fn record(origin: ServiceId, sequence: u64, verdict: Verdict) -> AuditRecord {
        AuditRecord {
            origin,
            sequence,
            event: AuditEvent {
                subject: ServiceId::Selftest,
                action: Action::Health,
                verdict,
                reason: 0,
                detail: 0,
            },
        }
    }

    #[test]
    fn each_budget_retires_its_own_oldest_and_counts() {
        let mut journal = Journal::new(JournalLimits {
            kernel: 3,
            per_task: 2,
        });
        for sequence in 0..5 {
            let verdict = if sequence % 2 == 0 {
                Verdict::Allowed
            } else {
                Verdict::Denied
            };
            journal.push(record(ServiceId::Kernel, sequence, verdict));
        }
        for sequence in 5..1000 {
            journal.push(record(ServiceId::Selftest, sequence, Verdict::Allowed));
        }
        let lost = AuditLoss {
            kernel: 4,
            tasks: 6,
        };
        let all = query(&journal, &AuditFilter::default(), lost);
        assert_eq!(
            all,
            QueryReply {
                matched: 5,
                held: 5,
                kernel_lost: 4,
                task_lost: 6,
                evicted: 2 + 993,
            }
        );
        let denied = AuditFilter {
            verdict: Some(Verdict::Denied),
            ..AuditFilter::default()
        };
        assert_eq!(
            query(&journal, &denied, lost).matched,
            1,
            "only sequence 3 is still held: the task's flood did not touch the kernel's"
        );
    }

    #[test]
    fn the_kernels_records_about_one_task_do_not_retire_those_about_another() {
        let mut journal = Journal::new(JournalLimits {
            kernel: 2,
            per_task: 2,
        });
        let about = subject_record;
        journal.push(about(ServiceId::Selftest, 0, Verdict::Denied));
        for sequence in 1..500 {
            journal.push(about(ServiceId::Dsoftbusd, sequence, Verdict::Allowed));
        }
        let denied = AuditFilter {
            verdict: Some(Verdict::Denied),
            ..AuditFilter::default()
        };
        let lost = AuditLoss::default();
        assert_eq!(query(&journal, &denied, lost).matched, 1, "still held");
        assert_eq!(journal.held(), 3);
        assert_eq!(journal.evicted(), 497);
    }
}
