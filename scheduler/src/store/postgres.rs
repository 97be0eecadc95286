//! The shared store: PostgreSQL, for an API node and worker processes on any number of
//! machines. Connections come from a small pool; broken ones are replaced on checkout, so a
//! process that loses the database comes back by itself once it is reachable again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres::error::SqlState;
use postgres::types::{IsNull, ToSql, Type};
use postgres::{Client, NoTls};
use r2d2_postgres::PostgresConnectionManager;

use super::db::{Conn, Database, Dialect, Row, Val};
use super::{migrations, Result, StoreError};

/// A transaction that lost a race is run again at most this many times.
const ATTEMPTS: usize = 8;

pub struct PostgresDb {
    pool: r2d2::Pool<PostgresConnectionManager<NoTls>>,
}

impl PostgresDb {
    /// Connects to `url` (`postgres://user@host:port/db` or `host=… user=…`) and brings the
    /// schema up to date.
    pub fn connect(url: &str, max_connections: u32) -> Result<PostgresDb> {
        let config = connect_config(url)?;
        let pool = r2d2::Pool::builder()
            .max_size(max_connections.max(1))
            // Connections are opened as needed, not all at start: many processes share the
            // server's connection limit.
            .min_idle(Some(2))
            .connection_timeout(Duration::from_secs(5))
            .build(PostgresConnectionManager::new(config, NoTls))
            .map_err(|e| StoreError::Db(format!("cannot connect to the database: {e}")))?;
        let db = PostgresDb { pool };
        migrations::apply(&db, migrations::POSTGRES)?;
        Ok(db)
    }
}

/// The connection settings for `url`, with a connect timeout and TCP keepalives, so that a
/// database machine that vanishes without closing its connections is noticed in about half a
/// minute instead of never.
fn connect_config(url: &str) -> Result<postgres::Config> {
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Db(format!("database URL: {e}")))?;
    config
        .connect_timeout(Duration::from_secs(5))
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(3);
    Ok(config)
}

/// A failure worth running the transaction again for.
fn is_conflict(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(&SqlState::T_R_SERIALIZATION_FAILURE)
            | Some(&SqlState::T_R_DEADLOCK_DETECTED)
            | Some(&SqlState::UNIQUE_VIOLATION)
    )
}

fn db_err(e: postgres::Error) -> StoreError {
    if is_conflict(&e) {
        StoreError::Conflict(e.to_string())
    } else {
        StoreError::Db(e.to_string())
    }
}

impl Database for PostgresDb {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn transaction(&self, f: &mut dyn FnMut(&mut dyn Conn) -> Result<()>) -> Result<()> {
        off_async(|| self.run(f))
    }

    fn read(&self, f: &mut dyn FnMut(&mut dyn Conn) -> Result<()>) -> Result<()> {
        off_async(|| f(&mut PgConn::Client(&mut *self.pooled()?)))
    }
}

/// Runs `f`, which blocks on the client's own runtime. Tokio forbids that on a thread that
/// drives async tasks: there, the thread is handed over to blocking work first.
fn off_async<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// A connection of its own (not from the pool), for a listener or a lock held for long.
fn connect_direct(url: &str) -> Result<Client> {
    connect_config(url)?
        .connect(NoTls)
        .map_err(|e| StoreError::Db(e.to_string()))
}

impl PostgresDb {
    fn pooled(&self) -> Result<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>> {
        self.pool
            .get()
            .map_err(|e| StoreError::Db(format!("no database connection: {e}")))
    }

    fn run(&self, f: &mut dyn FnMut(&mut dyn Conn) -> Result<()>) -> Result<()> {
        let mut client = self.pooled()?;
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            let mut tx = client.transaction().map_err(db_err)?;
            let outcome = f(&mut PgConn::Tx(&mut tx)).and_then(|()| tx.commit().map_err(db_err));
            match outcome {
                Err(StoreError::Conflict(e)) => {
                    last = e;
                    std::thread::sleep(Duration::from_millis(2 << attempt.min(6)));
                }
                other => return other,
            }
        }
        Err(StoreError::Db(format!(
            "a transaction kept conflicting with others: {last}"
        )))
    }
}

enum PgConn<'a, 'b> {
    Tx(&'a mut postgres::Transaction<'b>),
    Client(&'a mut Client),
}

impl ToSql for Val {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            Val::Int(v) if *ty == Type::FLOAT8 => (*v as f64).to_sql(ty, out),
            Val::Int(v) => v.to_sql(ty, out),
            Val::Real(v) => v.to_sql(ty, out),
            Val::Text(v) => v.to_sql(ty, out),
            Val::Blob(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn params(p: &[Val]) -> Vec<&(dyn ToSql + Sync)> {
    p.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

fn value(r: &postgres::Row, i: usize) -> std::result::Result<Val, postgres::Error> {
    let ty = r.columns()[i].type_();
    Ok(if *ty == Type::INT8 {
        r.try_get::<_, Option<i64>>(i)?.map_or(Val::Null, Val::Int)
    } else if *ty == Type::INT4 {
        r.try_get::<_, Option<i32>>(i)?
            .map_or(Val::Null, |v| Val::Int(v.into()))
    } else if *ty == Type::INT2 {
        r.try_get::<_, Option<i16>>(i)?
            .map_or(Val::Null, |v| Val::Int(v.into()))
    } else if *ty == Type::FLOAT8 {
        r.try_get::<_, Option<f64>>(i)?.map_or(Val::Null, Val::Real)
    } else if *ty == Type::BYTEA {
        r.try_get::<_, Option<Vec<u8>>>(i)?
            .map_or(Val::Null, Val::Blob)
    } else {
        r.try_get::<_, Option<String>>(i)?
            .map_or(Val::Null, Val::Text)
    })
}

impl Conn for PgConn<'_, '_> {
    fn exec(&mut self, sql: &str, p: &[Val]) -> Result<u64> {
        match self {
            PgConn::Tx(t) => t.execute(sql, &params(p)),
            PgConn::Client(c) => c.execute(sql, &params(p)),
        }
        .map_err(db_err)
    }

    fn rows(&mut self, sql: &str, p: &[Val]) -> Result<Vec<Row>> {
        let rows = match self {
            PgConn::Tx(t) => t.query(sql, &params(p)),
            PgConn::Client(c) => c.query(sql, &params(p)),
        }
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| value(r, i))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map(Row)
                    .map_err(db_err)
            })
            .collect()
    }

    fn notify(&mut self, channel: &str, payload: &str) -> Result<()> {
        self.exec(
            "SELECT pg_notify($1, $2)",
            &[Val::Text(channel.into()), Val::Text(payload.into())],
        )?;
        Ok(())
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        match self {
            PgConn::Tx(t) => t.batch_execute(sql),
            PgConn::Client(c) => c.batch_execute(sql),
        }
        .map_err(db_err)
    }
}

/// Listens on `channels` until `stopping`, calling `on` with each notification's channel and
/// payload. Reconnects after a lost connection (and calls `on(channel, "")` for every channel
/// then, since a notification may have been missed meanwhile).
pub fn listen(url: &str, channels: &[&str], stopping: &AtomicBool, mut on: impl FnMut(&str, &str)) {
    let mut logged = false;
    while !stopping.load(Ordering::SeqCst) {
        let mut client = match connect_direct(url) {
            Ok(c) => c,
            Err(e) => {
                if !logged {
                    crate::worker::log(&format!("cannot listen for job events: {e}"));
                    logged = true;
                }
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let listen: String = channels.iter().map(|c| format!("LISTEN {c};")).collect();
        if client.batch_execute(&listen).is_err() {
            continue;
        }
        if logged {
            crate::worker::log("listening for job events again");
            logged = false;
        }
        channels.iter().for_each(|c| on(c, ""));
        let mut idle = 0u32;
        'connected: while !stopping.load(Ordering::SeqCst) {
            // A connection cut without a word (a machine gone) is only noticed by using it.
            idle += 1;
            if idle.is_multiple_of(20) && client.batch_execute("").is_err() {
                break;
            }
            {
                let mut n = client.notifications();
                let mut it = n.timeout_iter(Duration::from_millis(250));
                while !stopping.load(Ordering::SeqCst) {
                    match it.next() {
                        Ok(Some(note)) => on(note.channel(), note.payload()),
                        Ok(None) => break,
                        Err(_) => break 'connected,
                    }
                }
            }
            if client.is_closed() {
                break;
            }
        }
    }
}

/// The lead among every process sharing the database for one task (`key`): a session
/// advisory lock on a connection of its own, so it passes to another process as soon as the
/// holder stops, dies or loses its connection.
pub struct Leader {
    url: String,
    key: i64,
    client: Option<Client>,
}

impl Leader {
    pub fn new(url: &str, key: i64) -> Leader {
        Leader {
            url: url.to_string(),
            key,
            client: None,
        }
    }

    /// Whether this process leads now: still holding the lock on a live connection, or
    /// taking it if it is free.
    pub fn holds(&mut self) -> bool {
        if let Some(c) = &mut self.client {
            if !c.is_closed() && c.batch_execute("").is_ok() {
                return true;
            }
            self.client = None;
        }
        let Ok(mut c) = connect_config(&self.url).and_then(|cfg| {
            cfg.connect(NoTls)
                .map_err(|e| StoreError::Db(e.to_string()))
        }) else {
            return false;
        };
        match c.query_one("SELECT pg_try_advisory_lock($1)", &[&self.key]) {
            Ok(row) if row.get::<_, bool>(0) => {
                self.client = Some(c);
                true
            }
            _ => false,
        }
    }
}
