//! Versioned schema migrations, one list per database. Each runs once, in its own
//! transaction, recorded in `schema_migrations`; a database newer than this build is refused
//! rather than written with an old idea of its schema.

use super::db::{vals, Database, Dialect};
use super::{now, Result, StoreError};

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migration {
    ($version:literal, $dialect:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("migrations/", $dialect, "/", $name, ".sql")),
        }
    };
}

pub const SQLITE: &[Migration] = &[
    migration!(1, "sqlite", "0001_initial"),
    migration!(2, "sqlite", "0002_leases_and_workers"),
    migration!(3, "sqlite", "0003_database_clock"),
    migration!(4, "sqlite", "0004_escrow_payments"),
];

pub const POSTGRES: &[Migration] = &[
    migration!(1, "postgres", "0001_initial"),
    migration!(2, "postgres", "0002_leases_and_workers"),
    migration!(3, "postgres", "0003_database_clock"),
    migration!(4, "postgres", "0004_escrow_payments"),
];

pub fn apply(db: &dyn Database, migrations: &[Migration]) -> Result<()> {
    let latest = migrations.last().map_or(0, |m| m.version);
    db.transaction(&mut |c| {
        if db.dialect() == Dialect::Postgres {
            // Processes starting together migrate one at a time.
            c.exec("SELECT pg_advisory_xact_lock(727100)", &[])?;
        }
        c.batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (\
                version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)",
        )?;
        let applied = c
            .row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])?
            .map(|r| r.int(0))
            .transpose()?
            .unwrap_or(0);
        if applied > latest {
            return Err(StoreError::Invalid(format!(
                "the database is at schema version {applied}; this build knows up to {latest}: \
                 upgrade Ciro before pointing it at this database"
            )));
        }
        for m in migrations.iter().filter(|m| m.version > applied) {
            c.batch(m.sql)?;
            c.exec(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                vals![m.version, m.name, now()],
            )?;
        }
        Ok(())
    })
}
