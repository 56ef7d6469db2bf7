//! The records the services hand to the HTTP surface (which never names the store): keys,
//! usage, the statement and audit events, as the store reads them.

pub use layers_store::{
    AuditEvent, AuditFilter, CapOverrides, KeyLimits, KeyRecord, KeyState, Severity, StatementLine, StatusClass,
    TransactionKind, UsageCursor, UsageFilter, UsageRecord, UsageSummary, UsageTotals,
};
