//! Comparing applied migrations with the ones embedded in this build.
//! Invariant: `serve` never runs against a schema older or newer than its own.

use sqlx::migrate::Migrator;

use crate::error::{StoreError, StoreResult};

pub(crate) fn compare(migrator: &Migrator, applied: &[i64]) -> StoreResult<()> {
    if let Some(unknown) = applied.iter().find(|v| !migrator.iter().any(|m| m.version == **v)) {
        return Err(StoreError::UnknownMigration { version: *unknown });
    }
    let pending = migrator.iter().filter(|m| !applied.contains(&m.version)).count();
    if pending > 0 {
        return Err(StoreError::NotMigrated { pending });
    }
    Ok(())
}
