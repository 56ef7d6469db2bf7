//! Store conformance suite: every test body runs on SQLite and on PostgreSQL, plus the
//! PostgreSQL row-level-security proofs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod support;

mod accounts;
mod anomaly;
mod credits;
mod dashboard;
mod identity;
mod keys;
mod lease_props;
mod ledger;
mod migrations;
mod payments;
mod records;
mod rls;
