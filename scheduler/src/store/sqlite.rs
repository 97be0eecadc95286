//! The embedded store: one SQLite file, one connection behind a mutex (SQLite serialises
//! writers anyway, and every operation is a short transaction).

use std::path::Path;
use std::sync::Mutex;

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, TransactionBehavior};

use super::db::{Conn, Database, Dialect, Row, Val};
use super::{migrations, Result, StoreError};

pub struct SqliteDb {
    conn: Mutex<Connection>,
}

impl SqliteDb {
    pub fn open(path: &Path) -> Result<SqliteDb> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a job reported verified (and charged) survives a power cut, not only a crash.
        conn.pragma_update(None, "synchronous", "FULL")?;
        SqliteDb::with_connection(conn)
    }

    pub fn open_in_memory() -> Result<SqliteDb> {
        SqliteDb::with_connection(Connection::open_in_memory()?)
    }

    fn with_connection(conn: Connection) -> Result<SqliteDb> {
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let db = SqliteDb {
            conn: Mutex::new(conn),
        };
        migrations::apply(&db, migrations::SQLITE)?;
        Ok(db)
    }
}

impl Database for SqliteDb {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn transaction(&self, f: &mut dyn FnMut(&mut dyn Conn) -> Result<()>) -> Result<()> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back on
        // drop), so a poisoned mutex is safe to keep using.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        f(&mut SqliteConn(&tx))?;
        tx.commit()?;
        Ok(())
    }

    fn read(&self, f: &mut dyn FnMut(&mut dyn Conn) -> Result<()>) -> Result<()> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut SqliteConn(&conn))
    }
}

struct SqliteConn<'a>(&'a Connection);

/// The store's SQL is PostgreSQL's: `$n` becomes `?n`, row locks (`FOR UPDATE [SKIP LOCKED]`)
/// go, since SQLite's `BEGIN IMMEDIATE` already locks the whole database, and the database
/// clock `ciro_now()` (a function the PostgreSQL migrations define) is SQLite's own.
fn translate(sql: &str) -> String {
    sql.replace(" FOR UPDATE SKIP LOCKED", "")
        .replace(" FOR UPDATE", "")
        .replace("ciro_now()", "unixepoch('now', 'subsec')")
        .replace('$', "?")
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Val::Null => ToSqlOutput::Owned(Value::Null),
            Val::Int(v) => ToSqlOutput::Owned(Value::Integer(*v)),
            Val::Real(v) => ToSqlOutput::Owned(Value::Real(*v)),
            Val::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Val::Blob(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
        })
    }
}

impl Conn for SqliteConn<'_> {
    fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64> {
        let n = self
            .0
            .execute(&translate(sql), rusqlite::params_from_iter(params))?;
        Ok(n as u64)
    }

    fn rows(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>> {
        let mut st = self.0.prepare(&translate(sql))?;
        let n = st.column_count();
        let rows = st.query_map(rusqlite::params_from_iter(params), |r| {
            (0..n)
                .map(|i| {
                    Ok(match r.get_ref(i)? {
                        ValueRef::Null => Val::Null,
                        ValueRef::Integer(v) => Val::Int(v),
                        ValueRef::Real(v) => Val::Real(v),
                        ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                        ValueRef::Blob(b) => Val::Blob(b.to_vec()),
                    })
                })
                .collect::<rusqlite::Result<Vec<_>>>()
                .map(Row)
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn notify(&mut self, _channel: &str, _payload: &str) -> Result<()> {
        Ok(())
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.0.execute_batch(sql)?)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Db(e.to_string())
    }
}
