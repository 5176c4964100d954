//! logd, the audit journal.
//!
//! logd holds the audit-feed capability (see `policies/manifest.toml`): it alone
//! drains the kernel's stream of audit records, which carries every policy decision,
//! every capability claim and each service's own verdicts. It keeps the newest
//! `capacity` records in memory; when full, the oldest is dropped and counted, never
//! a crash. `QUERY` counts the records matching a filter, which is how the selftest
//! proves that decisions were recorded.
//!
//! Bad requests (undecodable filter, an operation logd does not offer) get a typed
//! error reply and an audit record of their own, and logd goes on serving.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::VecDeque;
use alloc::format;

use ipc::{
    Action, AuditEvent, AuditFeed, AuditFilter, AuditRecord, Endpoint, Operation, Request,
    ServiceId, Verdict,
};
use service_api::logd::QueryReply;
use service_api::{Incoming, ServiceError, reply_err, reply_ok};

/// The default number of records held.
pub const DEFAULT_CAPACITY: usize = 512;

/// A bounded journal of audit records.
#[derive(Debug)]
pub struct Journal {
    records: VecDeque<AuditRecord>,
    capacity: usize,
    dropped: u64,
}

impl Journal {
    /// An empty journal holding at most `capacity` records (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            records: VecDeque::with_capacity(capacity),
            capacity,
            dropped: 0,
        }
    }

    /// Appends a record, dropping the oldest when full.
    pub fn push(&mut self, record: AuditRecord) {
        if self.records.len() == self.capacity {
            self.records.pop_front();
            self.dropped += 1;
        }
        self.records.push_back(record);
    }

    /// Counts the records matching `filter`; `upstream_dropped` is what the kernel's
    /// stream lost before the journal saw it.
    pub fn query(&self, filter: &AuditFilter, upstream_dropped: u64) -> QueryReply {
        let matched = self.records.iter().filter(|r| filter.matches(r)).count();
        QueryReply {
            matched: u32::try_from(matched).unwrap_or(u32::MAX),
            held: u32::try_from(self.records.len()).unwrap_or(u32::MAX),
            dropped: self.dropped + upstream_dropped,
        }
    }

    /// Records dropped by the journal's own bound.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// Runs logd until the machine stops.
pub async fn run<E: Endpoint>(ep: E, capacity: usize) {
    let mut feed = match ep.claim_audit_feed() {
        Ok(feed) => feed,
        Err(error) => {
            ep.console(&format!("FAIL cannot claim the audit feed: {error}"));
            return;
        }
    };
    let mut journal = Journal::new(capacity);
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
                &journal.query(&filter, feed.dropped()).encode(),
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

    fn record(sequence: u64, verdict: Verdict) -> AuditRecord {
        AuditRecord {
            origin: ServiceId::Kernel,
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
    fn the_journal_drops_the_oldest_and_counts() {
        let mut journal = Journal::new(3);
        for sequence in 0..5 {
            journal.push(record(
                sequence,
                if sequence % 2 == 0 {
                    Verdict::Allowed
                } else {
                    Verdict::Denied
                },
            ));
        }
        let all = journal.query(&AuditFilter::default(), 10);
        assert_eq!(
            all,
            QueryReply {
                matched: 3,
                held: 3,
                dropped: 12
            }
        );
        let denied = AuditFilter {
            verdict: Some(Verdict::Denied),
            ..AuditFilter::default()
        };
        assert_eq!(
            journal.query(&denied, 0).matched,
            1,
            "only sequence 3 is still held"
        );
        assert_eq!(journal.dropped(), 2);
    }
}
