//! Where accepted events go: the durable spool ([`crate::spool::Spool`]). Tests of the HTTP
//! layer may use an in-memory one.

use futures::future::BoxFuture;

use crate::spool::{Spool, SpoolError, SpoolRecord, SpoolStats};

/// Takes accepted events; `append` resolves once they are durable on this node (per the
/// fsync policy), which is when the client may be answered 202.
pub trait EventSink: Send + Sync + 'static {
    /// All records are taken, or none.
    fn append<'a>(&'a self, records: &'a [SpoolRecord]) -> BoxFuture<'a, Result<(), SpoolError>>;

    /// Fill level, for readiness and metrics.
    fn stats(&self) -> SpoolStats;
}

impl EventSink for Spool {
    fn append<'a>(&'a self, records: &'a [SpoolRecord]) -> BoxFuture<'a, Result<(), SpoolError>> {
        Box::pin(Spool::append(self, records))
    }

    fn stats(&self) -> SpoolStats {
        Spool::stats(self)
    }
}
