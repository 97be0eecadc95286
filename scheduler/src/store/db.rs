//! The seam between the store's logic and a database: values, rows, one connection inside a
//! transaction, and a database that runs transactions. The store's SQL is written once, in
//! PostgreSQL's dialect (`$1` placeholders, `FOR UPDATE`); the SQLite side translates the two
//! things SQLite spells differently, so the ledger's rules cannot drift between backends.

use super::{Result, StoreError};

/// A value bound to, or read from, a statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::Int(v)
    }
}
impl From<f64> for Val {
    fn from(v: f64) -> Val {
        Val::Real(v)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Val {
        Val::Text(v.to_string())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Val {
        Val::Text(v)
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Val {
        Val::Text(v.clone())
    }
}
impl From<&[u8]> for Val {
    fn from(v: &[u8]) -> Val {
        Val::Blob(v.to_vec())
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Val {
        v.map_or(Val::Null, Into::into)
    }
}

/// `vals![a, b, c]`: statement parameters.
macro_rules! vals {
    ($($v:expr),* $(,)?) => { &[$($crate::store::db::Val::from($v)),*][..] };
}
pub(crate) use vals;

/// One result row.
#[derive(Debug)]
pub struct Row(pub Vec<Val>);

impl Row {
    fn at(&self, i: usize) -> Result<&Val> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError::Invalid(format!("column {i} missing from a row")))
    }

    fn wrong(&self, i: usize, want: &str) -> StoreError {
        StoreError::Invalid(format!(
            "column {i}: expected {want}, found {:?}",
            self.0[i]
        ))
    }

    pub fn int(&self, i: usize) -> Result<i64> {
        self.opt_int(i)?.ok_or_else(|| self.wrong(i, "an integer"))
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.at(i)? {
            Val::Null => Ok(None),
            Val::Int(v) => Ok(Some(*v)),
            _ => Err(self.wrong(i, "an integer")),
        }
    }

    pub fn real(&self, i: usize) -> Result<f64> {
        self.opt_real(i)?.ok_or_else(|| self.wrong(i, "a number"))
    }

    pub fn opt_real(&self, i: usize) -> Result<Option<f64>> {
        match self.at(i)? {
            Val::Null => Ok(None),
            Val::Real(v) => Ok(Some(*v)),
            // SQLite stores a REAL that happens to be whole as an integer.
            Val::Int(v) => Ok(Some(*v as f64)),
            _ => Err(self.wrong(i, "a number")),
        }
    }

    pub fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?.ok_or_else(|| self.wrong(i, "text"))
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.at(i)? {
            Val::Null => Ok(None),
            Val::Text(v) => Ok(Some(v.clone())),
            _ => Err(self.wrong(i, "text")),
        }
    }

    pub fn opt_blob(&self, i: usize) -> Result<Option<Vec<u8>>> {
        match self.at(i)? {
            Val::Null => Ok(None),
            Val::Blob(v) => Ok(Some(v.clone())),
            _ => Err(self.wrong(i, "bytes")),
        }
    }
}

/// A connection inside a transaction.
pub trait Conn {
    /// Runs a statement; returns the number of rows it changed.
    fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64>;
    /// Runs a query; returns its rows.
    fn rows(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>>;
    /// Tells other processes sharing the database, once the transaction commits, that something
    /// changed on `channel` (PostgreSQL `NOTIFY` with `payload`; nothing for SQLite, whose one
    /// process wakes its own workers and streams).
    fn notify(&mut self, channel: &str, payload: &str) -> Result<()>;
    /// Runs several statements (a migration).
    fn batch(&mut self, sql: &str) -> Result<()>;

    fn row(&mut self, sql: &str, params: &[Val]) -> Result<Option<Row>> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }
}

/// Which database is behind the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A database the store can run transactions on.
pub trait Database: Send + Sync {
    fn dialect(&self) -> Dialect;
    /// Runs `f` in one transaction and commits it. `f` may run more than once: a transaction
    /// that lost a race with another process (a serialization failure, a deadlock, a unique
    /// key taken meanwhile) is rolled back and run again.
    fn transaction(&self, f: &mut dyn FnMut(&mut dyn Conn) -> Result<()>) -> Result<()>;
    /// Runs `f`, which only reads (or makes single-statement changes that need no
    /// transaction): without `BEGIN`/`COMMIT` where that saves round trips.
    fn read(&self, f: &mut dyn FnMut(&mut dyn Conn) -> Result<()>) -> Result<()> {
        self.transaction(f)
    }
}

/// Channels the store notifies on: a job changed (the payload is its id), and a job was queued.
pub const CHANGES: &str = "ciro_changes";
pub const QUEUED: &str = "ciro_queued";
