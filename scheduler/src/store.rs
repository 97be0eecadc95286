//! The job store and ledger: one SQLite file. Every state change that moves money happens in
//! the same transaction as the job's state change, so a crash between the two cannot charge a
//! job twice or lose a hold. The `ledger` table allows one hold, one capture and one release per
//! job (a unique index), and balances carry CHECK constraints that keep them non-negative.

use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

pub use ciro_client::types::{Balance, BatchRef, JobState, Timings};

use crate::pricing::{Chain, Token, MICRO};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("no balance on {chain} in {token}: {available} available, the job costs {price}; credit test tokens with `ciro-cli faucet --chain {chain} --token {token}`")]
    InsufficientBalance {
        chain: Chain,
        token: Token,
        available: String,
        price: String,
    },
    #[error("job {0} not found")]
    NoSuchJob(i64),
    #[error("job {id} is {state}; only a queued job can be cancelled")]
    NotCancellable { id: i64, state: String },
    #[error("the idempotency key {0:?} was already used for a different request")]
    IdempotencyConflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the faucet gives at most {cap} micro-units per balance; this one has had {credited}")]
    CreditCap { cap: i64, credited: i64 },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A job as the store keeps it: the API's document plus what the API never shows, its owner
/// and its input.
#[derive(Clone, Debug)]
pub struct Job {
    pub doc: ciro_client::types::Job,
    pub account: i64,
    pub input: String,
}

/// An aggregation batch: the aggregate of its jobs' plonky2 proofs, or why there is none.
#[derive(Clone, Debug, Serialize)]
pub struct Batch {
    pub id: i64,
    pub created_at: f64,
    pub proofs: i64,
    /// The aggregate file's size (`None`: the batch failed).
    pub aggregate_bytes: Option<i64>,
    pub error: Option<String>,
    pub aggregate_ms: f64,
    /// The jobs, in statement order, with their accounts (for the API to show only one's own).
    #[serde(skip)]
    pub jobs: Vec<(i64, i64)>,
}

/// What a new job needs; validated by the caller.
pub struct NewJob<'a> {
    pub account: i64,
    pub model: &'a str,
    pub model_hash: &'a str,
    pub input: &'a str,
    pub chain: Chain,
    pub token: Token,
    pub price_micro: i64,
    pub proof_system: &'a str,
    pub idempotency_key: Option<&'a str>,
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS balances (
    account INTEGER NOT NULL REFERENCES accounts(id),
    chain TEXT NOT NULL,
    token TEXT NOT NULL,
    available INTEGER NOT NULL DEFAULT 0 CHECK (available >= 0),
    held INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0),
    spent INTEGER NOT NULL DEFAULT 0 CHECK (spent >= 0),
    credited INTEGER NOT NULL DEFAULT 0 CHECK (credited >= 0),
    PRIMARY KEY (account, chain, token)
);
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY,
    account INTEGER NOT NULL,
    chain TEXT NOT NULL,
    token TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('credit', 'hold', 'capture', 'release')),
    amount INTEGER NOT NULL CHECK (amount >= 0),
    job INTEGER,
    at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS ledger_once_per_job ON ledger(job, kind) WHERE job IS NOT NULL;
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    account INTEGER NOT NULL REFERENCES accounts(id),
    model TEXT NOT NULL,
    model_hash TEXT NOT NULL,
    input TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    chain TEXT NOT NULL,
    token TEXT NOT NULL,
    price INTEGER NOT NULL,
    proof_system TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    idempotency_key TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    queue_wait_ms REAL,
    witness_ms REAL,
    prove_ms REAL,
    verify_ms REAL,
    result TEXT,
    proof_bytes INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs(account, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, id);
CREATE INDEX IF NOT EXISTS jobs_by_account ON jobs(account, id);
CREATE TABLE IF NOT EXISTS proofs (
    job INTEGER PRIMARY KEY REFERENCES jobs(id),
    bundle BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    created_at REAL NOT NULL,
    proofs INTEGER NOT NULL,
    aggregate BLOB,
    error TEXT,
    aggregate_ms REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_members (
    job INTEGER PRIMARY KEY REFERENCES jobs(id),
    batch INTEGER NOT NULL REFERENCES batches(id),
    idx INTEGER NOT NULL
);
"#;

const JOB_COLUMNS: &str = "id, account, model, model_hash, state, error, chain, token, price, \
    proof_system, attempts, created_at, finished_at, queue_wait_ms, witness_ms, prove_ms, \
    verify_ms, result, proof_bytes, input, \
    (SELECT batch FROM batch_members WHERE job = jobs.id), \
    (SELECT idx FROM batch_members WHERE job = jobs.id)";

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    let parse_err = |i: usize, e: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    };
    let chain: String = r.get(6)?;
    let token: String = r.get(7)?;
    let result: Option<String> = r.get(17)?;
    let created_at: f64 = r.get(11)?;
    let finished_at: Option<f64> = r.get(12)?;
    Ok(Job {
        doc: ciro_client::types::Job {
            id: r.get(0)?,
            model: r.get(2)?,
            model_hash: r.get(3)?,
            state: JobState::from_db(&r.get::<_, String>(4)?),
            error: r.get(5)?,
            chain: chain.parse().map_err(|e| parse_err(6, e))?,
            token: token.parse().map_err(|e| parse_err(7, e))?,
            price_micro: r.get(8)?,
            proof_system: r.get(9)?,
            attempts: r.get(10)?,
            created_at,
            finished_at,
            timings: Timings {
                queue_wait_ms: r.get(13)?,
                witness_ms: r.get(14)?,
                prove_ms: r.get(15)?,
                verify_ms: r.get(16)?,
                total_ms: finished_at.map(|f| (f - created_at) * 1e3),
            },
            result: result.and_then(|s| serde_json::from_str(&s).ok()),
            proof_bytes: r.get(18)?,
            batch: match (r.get(20)?, r.get(21)?) {
                (Some(id), Some(index)) => Some(BatchRef { id, index }),
                _ => None,
            },
        },
        account: r.get(1)?,
        input: r.get(19)?,
    })
}

/// The store. One connection behind a mutex: SQLite serialises writers anyway, and every
/// operation here is a short transaction.
pub struct Store {
    conn: Mutex<Connection>,
    /// Counts committed writes: live job events wait on it instead of polling the database.
    changes: tokio::sync::watch::Sender<u64>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a job reported verified (and charged) survives a power cut, not only a crash.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store::with_connection(conn))
    }

    pub fn open_in_memory() -> Result<Store> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store::with_connection(conn))
    }

    fn with_connection(conn: Connection) -> Store {
        Store {
            conn: Mutex::new(conn),
            changes: tokio::sync::watch::Sender::new(0),
        }
    }

    /// A receiver that sees a new value after every committed write (job states, timings,
    /// batches, balances).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back on
        // drop), so a poisoned mutex is safe to keep using.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    }

    fn tx<T>(&self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>) -> Result<T> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
            Ok(out)
        })
    }

    // ---- accounts and money ----

    /// Creates an account; returns its id. The caller keeps the key: only its hash is stored.
    pub fn create_account(&self, name: &str, api_key: &str) -> Result<i64> {
        self.tx(|tx| {
            tx.execute(
                "INSERT INTO accounts (name, key_hash, created_at) VALUES (?1, ?2, ?3)",
                params![name, hash_key(api_key), now()],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    pub fn account_for_key(&self, api_key: &str) -> Result<Option<(i64, String)>> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT id, name FROM accounts WHERE key_hash = ?1",
                [hash_key(api_key)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
        })
    }

    /// Credits test tokens (the dev faucet), refusing a credit that would take the balance's
    /// total credits past `max_credited`.
    pub fn credit(
        &self,
        account: i64,
        chain: Chain,
        token: Token,
        amount: i64,
        max_credited: i64,
    ) -> Result<()> {
        if amount <= 0 || amount > 1_000_000 * MICRO {
            return Err(StoreError::Invalid(
                "the faucet credits between 0.000001 and 1,000,000 tokens at a time".into(),
            ));
        }
        self.tx(|tx| {
            ensure_balance(tx, account, chain, token)?;
            // Checked here: SQLite turns an overflowing integer sum into a REAL.
            let (available, credited): (i64, i64) = tx.query_row(
                "SELECT available, credited FROM balances WHERE account = ?1 AND chain = ?2 AND token = ?3",
                params![account, chain.as_str(), token.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let credited = credited
                .checked_add(amount)
                .filter(|&c| c <= max_credited)
                .ok_or_else(|| StoreError::CreditCap {
                    cap: max_credited,
                    credited,
                })?;
            let available = available
                .checked_add(amount)
                .ok_or(StoreError::CreditCap {
                    cap: max_credited,
                    credited,
                })?;
            tx.execute(
                "UPDATE balances SET available = ?4, credited = ?5 \
                 WHERE account = ?1 AND chain = ?2 AND token = ?3",
                params![account, chain.as_str(), token.as_str(), available, credited],
            )?;
            ledger(tx, account, chain, token, "credit", amount, None)
        })
    }

    pub fn balances(&self, account: i64) -> Result<Vec<Balance>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT chain, token, available, held, spent, credited FROM balances \
                 WHERE account = ?1 ORDER BY chain, token",
            )?;
            let rows = st.query_map([account], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (chain, token, available, held, spent, credited) = row?;
                out.push(Balance {
                    chain: chain.parse().map_err(StoreError::Invalid)?,
                    token: token.parse().map_err(StoreError::Invalid)?,
                    available_micro: available,
                    held_micro: held,
                    spent_micro: spent,
                    credited_micro: credited,
                });
            }
            Ok(out)
        })
    }

    /// Sum of ledger entries of one kind for an account, chain and token (for audits and tests).
    pub fn ledger_total(
        &self,
        account: i64,
        chain: Chain,
        token: Token,
        kind: &str,
    ) -> Result<i64> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT COALESCE(SUM(amount), 0) FROM ledger \
                 WHERE account = ?1 AND chain = ?2 AND token = ?3 AND kind = ?4",
                params![account, chain.as_str(), token.as_str(), kind],
                |r| r.get(0),
            )?)
        })
    }

    // ---- jobs ----

    /// Creates a queued job and holds its price, atomically. With an idempotency key that was
    /// used before for the same request, returns the existing job (and `false`) instead.
    pub fn create_job(&self, job: &NewJob<'_>) -> Result<(Job, bool)> {
        let request_hash = hex::encode(Sha256::digest(
            format!(
                "{}\n{}\n{}\n{}\n{}",
                job.model, job.chain, job.token, job.proof_system, job.input
            )
            .as_bytes(),
        ));
        let id = self.tx(|tx| {
            if let Some(key) = job.idempotency_key {
                let found: Option<(i64, String)> = tx
                    .query_row(
                        "SELECT id, request_hash FROM jobs WHERE account = ?1 AND idempotency_key = ?2",
                        params![job.account, key],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                if let Some((id, hash)) = found {
                    if hash != request_hash {
                        return Err(StoreError::IdempotencyConflict(key.to_string()));
                    }
                    return Ok((id, false));
                }
            }
            ensure_balance(tx, job.account, job.chain, job.token)?;
            let held = tx.execute(
                "UPDATE balances SET available = available - ?4, held = held + ?4 \
                 WHERE account = ?1 AND chain = ?2 AND token = ?3 AND available >= ?4",
                params![
                    job.account,
                    job.chain.as_str(),
                    job.token.as_str(),
                    job.price_micro
                ],
            )?;
            if held == 0 {
                let available: i64 = tx.query_row(
                    "SELECT available FROM balances WHERE account = ?1 AND chain = ?2 AND token = ?3",
                    params![job.account, job.chain.as_str(), job.token.as_str()],
                    |r| r.get(0),
                )?;
                return Err(StoreError::InsufficientBalance {
                    chain: job.chain,
                    token: job.token,
                    available: crate::pricing::format_amount(available),
                    price: crate::pricing::format_amount(job.price_micro),
                });
            }
            tx.execute(
                "INSERT INTO jobs (account, model, model_hash, input, request_hash, chain, token, \
                 price, proof_system, state, idempotency_key, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', ?10, ?11)",
                params![
                    job.account,
                    job.model,
                    job.model_hash,
                    job.input,
                    request_hash,
                    job.chain.as_str(),
                    job.token.as_str(),
                    job.price_micro,
                    job.proof_system,
                    job.idempotency_key,
                    now()
                ],
            )?;
            let id = tx.last_insert_rowid();
            ledger(
                tx,
                job.account,
                job.chain,
                job.token,
                "hold",
                job.price_micro,
                Some(id),
            )?;
            Ok((id, true))
        })?;
        Ok((self.job(id.0)?, id.1))
    }

    pub fn job(&self, id: i64) -> Result<Job> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                [id],
                job_from_row,
            )
            .optional()?
            .ok_or(StoreError::NoSuchJob(id))
        })
    }

    /// A job as seen by `account`: someone else's job is indistinguishable from a missing one.
    pub fn job_of(&self, account: i64, id: i64) -> Result<Job> {
        match self.job(id) {
            Ok(j) if j.account == account => Ok(j),
            Ok(_) => Err(StoreError::NoSuchJob(id)),
            Err(e) => Err(e),
        }
    }

    pub fn jobs_of(&self, account: i64, limit: i64) -> Result<Vec<Job>> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE account = ?1 ORDER BY id DESC LIMIT ?2"
            ))?;
            let rows = st.query_map(params![account, limit], job_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    pub fn proof(&self, id: i64) -> Result<Option<Vec<u8>>> {
        self.with(|c| {
            Ok(
                c.query_row("SELECT bundle FROM proofs WHERE job = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()?,
            )
        })
    }

    /// Verified plonky2 jobs in no batch yet, oldest first: `(id, finished_at)`.
    pub fn unbatched(&self, proof_system: &str, limit: usize) -> Result<Vec<(i64, f64)>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, COALESCE(finished_at, created_at) FROM jobs \
                 WHERE state = 'verified' AND proof_system = ?1 \
                   AND id NOT IN (SELECT job FROM batch_members) \
                 ORDER BY id LIMIT ?2",
            )?;
            let rows = st.query_map(params![proof_system, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Records a batch and its members (in statement order) in one transaction: its aggregate,
    /// or the error that left it without one.
    pub fn record_batch(
        &self,
        jobs: &[i64],
        aggregate: std::result::Result<&[u8], &str>,
        aggregate_ms: f64,
    ) -> Result<i64> {
        self.tx(|tx| {
            let (blob, error) = match aggregate {
                Ok(b) => (Some(b), None),
                Err(e) => (None, Some(e)),
            };
            tx.execute(
                "INSERT INTO batches (created_at, proofs, aggregate, error, aggregate_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![now(), jobs.len() as i64, blob, error, aggregate_ms],
            )?;
            let batch = tx.last_insert_rowid();
            for (i, job) in jobs.iter().enumerate() {
                tx.execute(
                    "INSERT INTO batch_members (job, batch, idx) VALUES (?1, ?2, ?3)",
                    params![job, batch, i as i64],
                )?;
            }
            Ok(batch)
        })
    }

    pub fn batch(&self, id: i64) -> Result<Option<Batch>> {
        self.with(|c| {
            let b = c
                .query_row(
                    "SELECT id, created_at, proofs, length(aggregate), error, aggregate_ms \
                     FROM batches WHERE id = ?1",
                    [id],
                    |r| {
                        Ok(Batch {
                            id: r.get(0)?,
                            created_at: r.get(1)?,
                            proofs: r.get(2)?,
                            aggregate_bytes: r.get(3)?,
                            error: r.get(4)?,
                            aggregate_ms: r.get(5)?,
                            jobs: Vec::new(),
                        })
                    },
                )
                .optional()?;
            let Some(mut b) = b else { return Ok(None) };
            let mut st = c.prepare(
                "SELECT m.job, j.account FROM batch_members m JOIN jobs j ON j.id = m.job \
                 WHERE m.batch = ?1 ORDER BY m.idx",
            )?;
            b.jobs = st
                .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(b))
        })
    }

    pub fn batch_aggregate(&self, id: i64) -> Result<Option<Vec<u8>>> {
        self.with(|c| {
            Ok(
                c.query_row("SELECT aggregate FROM batches WHERE id = ?1", [id], |r| {
                    r.get::<_, Option<Vec<u8>>>(0)
                })
                .optional()?
                .flatten(),
            )
        })
    }

    /// Takes the next queued job for a worker: `queued` → `proving`.
    pub fn claim_next(&self) -> Result<Option<Job>> {
        let id = self.tx(|tx| {
            // Fair between accounts: each account's oldest queued job, the account served
            // longest ago (or never) first, so one account's backlog cannot starve the rest.
            let id: Option<(i64, f64)> = tx
                .query_row(
                    "SELECT j.id, j.created_at FROM jobs j \
                     WHERE j.state = 'queued' AND j.id = \
                       (SELECT MIN(q.id) FROM jobs q WHERE q.account = j.account AND q.state = 'queued') \
                     ORDER BY COALESCE((SELECT MAX(p.started_at) FROM jobs p \
                       WHERE p.account = j.account AND p.started_at IS NOT NULL), 0), j.id \
                     LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((id, created)) = id {
                let t = now();
                tx.execute(
                    "UPDATE jobs SET state = 'proving', attempts = attempts + 1, started_at = ?2, \
                     queue_wait_ms = ?3 WHERE id = ?1",
                    params![id, t, (t - created) * 1e3],
                )?;
            }
            Ok(id.map(|x| x.0))
        })?;
        id.map(|id| self.job(id)).transpose()
    }

    /// `proving` → `proved`, storing the bundle and the result.
    pub fn record_proof(
        &self,
        id: i64,
        bundle: &[u8],
        result: &serde_json::Value,
        witness_ms: f64,
        prove_ms: f64,
    ) -> Result<()> {
        self.tx(|tx| {
            let n = tx.execute(
                "UPDATE jobs SET state = 'proved', result = ?2, proof_bytes = ?3, witness_ms = ?4, \
                 prove_ms = ?5 WHERE id = ?1 AND state = 'proving'",
                params![id, result.to_string(), bundle.len() as i64, witness_ms, prove_ms],
            )?;
            if n == 1 {
                tx.execute(
                    "INSERT OR REPLACE INTO proofs (job, bundle) VALUES (?1, ?2)",
                    params![id, bundle],
                )?;
            }
            Ok(())
        })
    }

    /// `proved` → `verified`, capturing the hold in the same transaction. A second call does
    /// nothing: the state guard and the ledger's unique index both forbid a second capture.
    pub fn record_verified(&self, id: i64, verify_ms: f64) -> Result<()> {
        self.tx(|tx| {
            let Some((account, chain, token, price)) = job_money(tx, id, "proved")? else {
                return Ok(());
            };
            tx.execute(
                "UPDATE balances SET held = held - ?4, spent = spent + ?4 \
                 WHERE account = ?1 AND chain = ?2 AND token = ?3",
                params![account, chain.as_str(), token.as_str(), price],
            )?;
            ledger(tx, account, chain, token, "capture", price, Some(id))?;
            tx.execute(
                "UPDATE jobs SET state = 'verified', verify_ms = ?2, finished_at = ?3, error = NULL \
                 WHERE id = ?1",
                params![id, verify_ms, now()],
            )?;
            Ok(())
        })
    }

    /// Any unfinished state → `failed`, releasing the hold.
    pub fn record_failure(&self, id: i64, reason: &str) -> Result<()> {
        self.tx(|tx| {
            let state: Option<String> = tx
                .query_row("SELECT state FROM jobs WHERE id = ?1", [id], |r| r.get(0))
                .optional()?;
            let Some(state) = state else {
                return Err(StoreError::NoSuchJob(id));
            };
            if JobState::from_db(&state).is_final() {
                return Ok(());
            }
            release(tx, id, &state)?;
            tx.execute(
                "UPDATE jobs SET state = 'failed', error = ?2, finished_at = ?3 WHERE id = ?1",
                params![id, reason, now()],
            )?;
            tx.execute("DELETE FROM proofs WHERE job = ?1", [id])?;
            Ok(())
        })
    }

    /// `queued` → `cancelled`, releasing the hold. Only the job's own account may cancel.
    pub fn cancel(&self, account: i64, id: i64) -> Result<Job> {
        self.job_of(account, id)?;
        self.tx(|tx| {
            if job_money(tx, id, "queued")?.is_none() {
                let state: String =
                    tx.query_row("SELECT state FROM jobs WHERE id = ?1", [id], |r| r.get(0))?;
                return Err(StoreError::NotCancellable { id, state });
            }
            release(tx, id, "queued")?;
            tx.execute(
                "UPDATE jobs SET state = 'cancelled', finished_at = ?2 WHERE id = ?1",
                params![id, now()],
            )?;
            Ok(())
        })?;
        self.job(id)
    }

    /// After a restart: jobs that were being proved, or proved but not yet verified, go back
    /// to the queue (their proofs are made again; nothing was captured for them). Jobs that
    /// have already crashed the service `max_attempts` times fail instead, so one poisonous
    /// job cannot keep the service down. Returns (requeued, failed).
    pub fn recover(&self, max_attempts: i64) -> Result<(usize, usize)> {
        self.recover_except(max_attempts, &[], f64::INFINITY)
    }

    /// [`Store::recover`] for the jobs no worker of this process holds (`in_flight`): the
    /// periodic sweep, which frees a job whose worker could not record its end (a full disk,
    /// a crashed step) without waiting for a restart. Only jobs started before `started_before`
    /// (seconds since the epoch) count, so a job claimed a moment ago is never taken back.
    pub fn recover_except(
        &self,
        max_attempts: i64,
        in_flight: &[i64],
        started_before: f64,
    ) -> Result<(usize, usize)> {
        let stuck: Vec<(i64, i64)> = self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, attempts FROM jobs WHERE state IN ('proving', 'proved') \
                 AND (started_at IS NULL OR started_at < ?1) ORDER BY id",
            )?;
            let rows = st.query_map([started_before], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })?;
        let (mut requeued, mut failed) = (0, 0);
        for (id, attempts) in stuck.into_iter().filter(|(id, _)| !in_flight.contains(id)) {
            if attempts >= max_attempts {
                self.record_failure(
                    id,
                    &format!(
                        "the service stopped while proving this job {attempts} times; giving up"
                    ),
                )?;
                failed += 1;
            } else {
                self.tx(|tx| {
                    tx.execute(
                        "UPDATE jobs SET state = 'queued' WHERE id = ?1 AND state IN ('proving', 'proved')",
                        [id],
                    )?;
                    tx.execute("DELETE FROM proofs WHERE job = ?1", [id])?;
                    Ok(())
                })?;
                requeued += 1;
            }
        }
        Ok((requeued, failed))
    }

    /// Jobs in flight since before `started_before` (seconds since the epoch) fail with
    /// `reason`, releasing their holds, whether or not a worker still holds them: a worker that
    /// hangs cannot keep a user's money held. A proof it stores later is ignored (the job is no
    /// longer `proving`). Returns how many failed.
    pub fn fail_overdue(&self, started_before: f64, reason: &str) -> Result<usize> {
        let overdue: Vec<i64> = self.with(|c| {
            let mut st = c.prepare(
                "SELECT id FROM jobs WHERE state IN ('proving', 'proved') AND started_at < ?1",
            )?;
            let rows = st.query_map([started_before], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<i64>>>()?)
        })?;
        for &id in &overdue {
            self.record_failure(id, reason)?;
        }
        Ok(overdue.len())
    }

    pub fn count_in_state(&self, state: JobState) -> Result<i64> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM jobs WHERE state = ?1",
                [state.as_str()],
                |r| r.get(0),
            )?)
        })
    }
}

fn ensure_balance(
    tx: &rusqlite::Transaction<'_>,
    account: i64,
    chain: Chain,
    token: Token,
) -> Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO balances (account, chain, token) VALUES (?1, ?2, ?3)",
        params![account, chain.as_str(), token.as_str()],
    )?;
    Ok(())
}

fn ledger(
    tx: &rusqlite::Transaction<'_>,
    account: i64,
    chain: Chain,
    token: Token,
    kind: &str,
    amount: i64,
    job: Option<i64>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO ledger (account, chain, token, kind, amount, job, at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            account,
            chain.as_str(),
            token.as_str(),
            kind,
            amount,
            job,
            now()
        ],
    )?;
    Ok(())
}

/// The account, chain, token and price of job `id` if it is in `state`.
fn job_money(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    state: &str,
) -> Result<Option<(i64, Chain, Token, i64)>> {
    let row: Option<(i64, String, String, i64)> = tx
        .query_row(
            "SELECT account, chain, token, price FROM jobs WHERE id = ?1 AND state = ?2",
            params![id, state],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    row.map(|(a, c, t, p)| {
        Ok((
            a,
            c.parse().map_err(StoreError::Invalid)?,
            t.parse().map_err(StoreError::Invalid)?,
            p,
        ))
    })
    .transpose()
}

/// Returns a job's held price to the available balance.
fn release(tx: &rusqlite::Transaction<'_>, id: i64, state: &str) -> Result<()> {
    let Some((account, chain, token, price)) = job_money(tx, id, state)? else {
        return Ok(());
    };
    tx.execute(
        "UPDATE balances SET held = held - ?4, available = available + ?4 \
         WHERE account = ?1 AND chain = ?2 AND token = ?3",
        params![account, chain.as_str(), token.as_str(), price],
    )?;
    ledger(tx, account, chain, token, "release", price, Some(id))
}
