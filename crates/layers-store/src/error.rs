//! Failures of the store. Invariant: the sqlx source is kept, and unique violations are
//! recognised by constraint name so callers can map them (409) without reading messages.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unique constraint {constraint} violated")]
    Conflict {
        constraint: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("{entity} not found")]
    NotFound { entity: &'static str },
    #[error("the database is not migrated: {pending} migration(s) pending; run `layers migrate`")]
    NotMigrated { pending: usize },
    #[error("the database has migrations this build does not know (version {version}); upgrade Layers")]
    UnknownMigration { version: i64 },
    #[error("stored value in {column} is invalid")]
    Corrupt { column: &'static str },
    #[error("unsupported database URL scheme; use sqlite:// or postgres://")]
    UnsupportedUrl,
    #[error("the database role can bypass row-level security: {detail}")]
    UnsafeRole { detail: String },
}

pub type StoreResult<T> = Result<T, StoreError>;

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        let constraint = match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => Some(
                db.constraint()
                    .map(str::to_owned)
                    .or_else(|| sqlite_constraint(db.message()))
                    .unwrap_or_else(|| "unknown".to_owned()),
            ),
            _ => None,
        };
        match constraint {
            Some(constraint) => StoreError::Conflict { constraint, source: err },
            None => StoreError::Database(err),
        }
    }
}

impl StoreError {
    /// True when the database could not be reached or dropped the connection (as opposed to
    /// refusing this one statement): the caller should treat the database as down.
    pub fn is_connection(&self) -> bool {
        let StoreError::Database(err) = self else { return false };
        match err {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            // Class 08: connection exceptions; 57P01-03: the server is shutting down or starting.
            sqlx::Error::Database(db) => {
                db.code().is_some_and(|c| c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03"))
            }
            _ => false,
        }
    }

    /// True when a unique constraint of this name was violated.
    pub fn is_conflict_on(&self, name: &str) -> bool {
        matches!(self, StoreError::Conflict { constraint, .. } if constraint == name)
    }
}

/// SQLite reports no constraint name, only `UNIQUE constraint failed: table.col[, table.col]`.
/// Its unique indexes are named like PostgreSQL's constraints (`<table>_<cols>_key`), so this
/// rebuilds the same name from the columns.
fn sqlite_constraint(message: &str) -> Option<String> {
    let cols = message.strip_prefix("UNIQUE constraint failed: ")?;
    let mut table = None;
    let mut names = Vec::new();
    for part in cols.split(", ") {
        let (t, c) = part.split_once('.')?;
        table.get_or_insert(t);
        names.push(c);
    }
    Some(format!("{}_{}_key", table?, names.join("_")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sqlite_constraint_names_match_postgres() {
        assert_eq!(
            super::sqlite_constraint("UNIQUE constraint failed: users.email").as_deref(),
            Some("users_email_key")
        );
        assert_eq!(super::sqlite_constraint("NOT NULL constraint failed: x.y"), None);
    }
}
