//! The job store and ledger, on SQLite (one file: the embedded default) or PostgreSQL (shared
//! by an API node and worker processes on other machines); the logic and its SQL are written
//! once, over [`db::Database`]. Every state change that moves money happens in the same
//! transaction as the job's state change, so a crash between the two cannot charge a job twice
//! or lose a hold. The `ledger` table allows one hold, one capture and one release per job (a
//! unique index), and balances carry CHECK constraints that keep them non-negative.
//!
//! A job in flight is leased: its worker renews the lease while it proves, and a job whose
//! lease ran out (the worker was killed, its machine is gone) goes back to the queue, or fails
//! after `max_attempts` claims.

pub mod db;
mod escrows;
pub mod migrations;
pub mod postgres;
pub mod sqlite;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

pub use ciro_client::types::{Balance, BatchRef, JobState, Timings, WorkerInfo};

use crate::pricing::{Chain, Token, MICRO};
use db::{vals, Conn, Row, Val};
use escrows::insert_escrow_job;
pub use escrows::Opened;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(String),
    /// A transaction lost a race with another process; it is run again.
    #[error("database conflict: {0}")]
    Conflict(String),
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
    /// Paid through an on-chain escrow: nothing is held on the ledger; the job waits for the
    /// escrow (`awaiting_payment`) with the terms this makes from its id.
    pub escrow: Option<&'a dyn Fn(i64) -> ciro_client::types::EscrowPayment>,
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

const JOB_COLUMNS: &str = "id, account, model, model_hash, state, error, chain, token, price, \
    proof_system, attempts, created_at, finished_at, queue_wait_ms, witness_ms, prove_ms, \
    verify_ms, result, proof_bytes, input, \
    (SELECT batch FROM batch_members WHERE job = jobs.id), \
    (SELECT idx FROM batch_members WHERE job = jobs.id), \
    (SELECT doc FROM escrows WHERE job = jobs.id)";

fn job_from_row(r: &Row) -> Result<Job> {
    let created_at = r.real(11)?;
    let finished_at = r.opt_real(12)?;
    Ok(Job {
        doc: ciro_client::types::Job {
            id: r.int(0)?,
            model: r.text(2)?,
            model_hash: r.text(3)?,
            state: JobState::from_db(&r.text(4)?),
            error: r.opt_text(5)?,
            chain: r.text(6)?.parse().map_err(StoreError::Invalid)?,
            token: r.text(7)?.parse().map_err(StoreError::Invalid)?,
            price_micro: r.int(8)?,
            proof_system: r.text(9)?,
            attempts: r.int(10)?,
            created_at,
            finished_at,
            timings: Timings {
                queue_wait_ms: r.opt_real(13)?,
                witness_ms: r.opt_real(14)?,
                prove_ms: r.opt_real(15)?,
                verify_ms: r.opt_real(16)?,
                total_ms: finished_at.map(|f| (f - created_at) * 1e3),
            },
            result: r.opt_text(17)?.and_then(|s| serde_json::from_str(&s).ok()),
            proof_bytes: r.opt_int(18)?,
            batch: match (r.opt_int(20)?, r.opt_int(21)?) {
                (Some(id), Some(index)) => Some(BatchRef { id, index }),
                _ => None,
            },
            payment: r
                .opt_text(22)?
                .map(|d| serde_json::from_str(&d))
                .transpose()
                .map_err(|e| StoreError::Invalid(format!("escrow document: {e}")))?,
        },
        account: r.int(1)?,
        input: r.text(19)?,
    })
}

/// Who claims a job, for how long, and which proof systems it proves (empty: all).
pub struct Claim<'a> {
    pub worker: &'a str,
    pub lease: Duration,
    pub proof_systems: &'a [&'a str],
}

/// Prove times of one model on one proof system, bucketed (for `/metrics`).
#[derive(Clone, Debug)]
pub struct ProveTimes {
    pub model: String,
    pub proof_system: String,
    pub count: u64,
    pub sum_ms: f64,
    /// `(upper bound in ms, jobs at or under it)`, cumulative, for each bound of [`PROVE_MS_BUCKETS`].
    pub buckets: Vec<(f64, u64)>,
}

/// Announced when any job may have changed (a notification may have been missed).
pub const ANY_JOB: i64 = -1;

pub const PROVE_MS_BUCKETS: [f64; 10] = [
    50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0, 120000.0,
];

/// The store.
pub struct Store {
    db: Box<dyn db::Database>,
    /// The ids of jobs changed by committed transactions (and, on PostgreSQL, by other
    /// processes, heard by `LISTEN`); [`ANY_JOB`] when any job may have changed. Live job
    /// events wait on it instead of polling the database.
    changes: tokio::sync::broadcast::Sender<i64>,
}

impl Store {
    /// The embedded store: a SQLite file.
    pub fn open(path: &Path) -> Result<Store> {
        Ok(Store::over(Box::new(sqlite::SqliteDb::open(path)?)))
    }

    pub fn open_in_memory() -> Result<Store> {
        Ok(Store::over(Box::new(sqlite::SqliteDb::open_in_memory()?)))
    }

    /// The shared store: PostgreSQL at `url`, with at most `max_connections` connections.
    pub fn connect(url: &str, max_connections: u32) -> Result<Store> {
        Ok(Store::over(Box::new(postgres::PostgresDb::connect(
            url,
            max_connections,
        )?)))
    }

    fn over(db: Box<dyn db::Database>) -> Store {
        Store {
            db,
            changes: tokio::sync::broadcast::Sender::new(4096),
        }
    }

    pub fn dialect(&self) -> db::Dialect {
        self.db.dialect()
    }

    /// A receiver of the ids of changed jobs (state, timings, result, batch), from the moment
    /// it is made.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<i64> {
        self.changes.subscribe()
    }

    /// Marks job `id` changed ([`ANY_JOB`]: any job may have), here or in another process.
    pub fn announce(&self, id: i64) {
        // No receiver (no open event stream) is not an error.
        let _ = self.changes.send(id);
    }

    /// Runs `f` in a transaction (again, if it lost a race with another process).
    fn tx<T>(&self, f: impl FnMut(&mut dyn Conn) -> Result<T>) -> Result<T> {
        self.tx_about(f, |_| Vec::new())
    }

    /// [`Store::tx`] that changes the jobs `about` names from its result: once it commits,
    /// they are announced here and, by `NOTIFY`, to the other processes.
    fn tx_about<T>(
        &self,
        mut f: impl FnMut(&mut dyn Conn) -> Result<T>,
        about: impl Fn(&T) -> Vec<i64>,
    ) -> Result<T> {
        let mut out = None;
        let mut jobs = Vec::new();
        self.db.transaction(&mut |c| {
            let v = f(c)?;
            jobs = about(&v);
            for id in &jobs {
                c.notify(db::CHANGES, &id.to_string())?;
            }
            out = Some(v);
            Ok(())
        })?;
        for id in jobs {
            self.announce(id);
        }
        out.ok_or_else(|| StoreError::Invalid("a transaction returned nothing".into()))
    }

    /// Runs `f`, which reads, or makes changes of one statement each that other processes
    /// need not hear of (lease renewals, heartbeats).
    fn read<T>(&self, mut f: impl FnMut(&mut dyn Conn) -> Result<T>) -> Result<T> {
        let mut out = None;
        self.db.read(&mut |c| {
            out = Some(f(c)?);
            Ok(())
        })?;
        out.ok_or_else(|| StoreError::Invalid("a transaction returned nothing".into()))
    }

    // ---- accounts and money ----

    /// Creates an account; returns its id. The caller keeps the key: only its hash is stored.
    pub fn create_account(&self, name: &str, api_key: &str) -> Result<i64> {
        self.tx(|c| {
            c.row(
                "INSERT INTO accounts (name, key_hash, created_at) VALUES ($1, $2, $3) RETURNING id",
                vals![name, hash_key(api_key), now()],
            )?
            .ok_or_else(|| StoreError::Invalid("no account id".into()))?
            .int(0)
        })
    }

    pub fn account_for_key(&self, api_key: &str) -> Result<Option<(i64, String)>> {
        self.read(|c| {
            c.row(
                "SELECT id, name FROM accounts WHERE key_hash = $1",
                vals![hash_key(api_key)],
            )?
            .map(|r| Ok((r.int(0)?, r.text(1)?)))
            .transpose()
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
        self.tx(|c| {
            ensure_balance(c, account, chain, token)?;
            // Checked here: SQLite turns an overflowing integer sum into a REAL.
            let r = c
                .row(
                    "SELECT available, credited FROM balances \
                     WHERE account = $1 AND chain = $2 AND token = $3 FOR UPDATE",
                    vals![account, chain.as_str(), token.as_str()],
                )?
                .ok_or_else(|| StoreError::Invalid("no balance row".into()))?;
            let (available, credited) = (r.int(0)?, r.int(1)?);
            let credited = credited
                .checked_add(amount)
                .filter(|&c| c <= max_credited)
                .ok_or(StoreError::CreditCap {
                    cap: max_credited,
                    credited,
                })?;
            let available = available.checked_add(amount).ok_or(StoreError::CreditCap {
                cap: max_credited,
                credited,
            })?;
            c.exec(
                "UPDATE balances SET available = $4, credited = $5 \
                 WHERE account = $1 AND chain = $2 AND token = $3",
                vals![account, chain.as_str(), token.as_str(), available, credited],
            )?;
            ledger(c, account, chain, token, "credit", amount, None)
        })
    }

    pub fn balances(&self, account: i64) -> Result<Vec<Balance>> {
        self.read(|c| {
            c.rows(
                "SELECT chain, token, available, held, spent, credited FROM balances \
                 WHERE account = $1 ORDER BY chain, token",
                vals![account],
            )?
            .iter()
            .map(|r| {
                Ok(Balance {
                    chain: r.text(0)?.parse().map_err(StoreError::Invalid)?,
                    token: r.text(1)?.parse().map_err(StoreError::Invalid)?,
                    available_micro: r.int(2)?,
                    held_micro: r.int(3)?,
                    spent_micro: r.int(4)?,
                    credited_micro: r.int(5)?,
                })
            })
            .collect()
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
        self.read(|c| {
            c.row(
                "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger \
                 WHERE account = $1 AND chain = $2 AND token = $3 AND kind = $4",
                vals![account, chain.as_str(), token.as_str(), kind],
            )?
            .map_or(Ok(0), |r| r.int(0))
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
        let (id, created) = self.tx_about(|c| {
            if let Some(key) = job.idempotency_key {
                let found = c.row(
                    "SELECT id, request_hash FROM jobs WHERE account = $1 AND idempotency_key = $2",
                    vals![job.account, key],
                )?;
                if let Some(r) = found {
                    if r.text(1)? != request_hash {
                        return Err(StoreError::IdempotencyConflict(key.to_string()));
                    }
                    return Ok((r.int(0)?, false));
                }
            }
            if let Some(terms) = job.escrow {
                return insert_escrow_job(c, job, &request_hash, terms).map(|id| (id, true));
            }
            ensure_balance(c, job.account, job.chain, job.token)?;
            let held = c.exec(
                "UPDATE balances SET available = available - $4, held = held + $4 \
                 WHERE account = $1 AND chain = $2 AND token = $3 AND available >= $4",
                vals![
                    job.account,
                    job.chain.as_str(),
                    job.token.as_str(),
                    job.price_micro
                ],
            )?;
            if held == 0 {
                let available = c
                    .row(
                        "SELECT available FROM balances WHERE account = $1 AND chain = $2 AND token = $3",
                        vals![job.account, job.chain.as_str(), job.token.as_str()],
                    )?
                    .map_or(Ok(0), |r| r.int(0))?;
                return Err(StoreError::InsufficientBalance {
                    chain: job.chain,
                    token: job.token,
                    available: crate::pricing::format_amount(available),
                    price: crate::pricing::format_amount(job.price_micro),
                });
            }
            let id = insert_job(c, job, &request_hash, "queued", "ledger")?;
            ledger(
                c,
                job.account,
                job.chain,
                job.token,
                "hold",
                job.price_micro,
                Some(id),
            )?;
            c.notify(db::QUEUED, "")?;
            Ok((id, true))
        }, |&(id, created)| if created { vec![id] } else { Vec::new() })?;
        Ok((self.job(id)?, created))
    }

    pub fn job(&self, id: i64) -> Result<Job> {
        self.read(|c| {
            c.row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"),
                vals![id],
            )?
            .map(|r| job_from_row(&r))
            .transpose()?
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
        self.read(|c| {
            c.rows(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE account = $1 ORDER BY id DESC LIMIT $2"
                ),
                vals![account, limit],
            )?
            .iter()
            .map(job_from_row)
            .collect()
        })
    }

    pub fn proof(&self, id: i64) -> Result<Option<Vec<u8>>> {
        self.read(|c| {
            c.row("SELECT bundle FROM proofs WHERE job = $1", vals![id])?
                .map(|r| r.opt_blob(0))
                .transpose()
                .map(Option::flatten)
        })
    }

    /// Verified plonky2 jobs in no batch yet, oldest first: `(id, finished_at)`.
    pub fn unbatched(&self, proof_system: &str, limit: usize) -> Result<Vec<(i64, f64)>> {
        self.read(|c| {
            c.rows(
                "SELECT id, COALESCE(finished_at, created_at) FROM jobs \
                 WHERE state = 'verified' AND proof_system = $1 \
                   AND id NOT IN (SELECT job FROM batch_members) \
                 ORDER BY id LIMIT $2",
                vals![proof_system, limit as i64],
            )?
            .iter()
            .map(|r| Ok((r.int(0)?, r.real(1)?)))
            .collect()
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
        self.tx_about(
            |c| {
                let (blob, error) = match aggregate {
                    Ok(b) => (Some(b), None),
                    Err(e) => (None, Some(e)),
                };
                let batch = c
                    .row(
                        "INSERT INTO batches (created_at, proofs, aggregate, error, aggregate_ms) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                        vals![now(), jobs.len() as i64, blob, error, aggregate_ms],
                    )?
                    .ok_or_else(|| StoreError::Invalid("no batch id".into()))?
                    .int(0)?;
                for (i, job) in jobs.iter().enumerate() {
                    c.exec(
                        "INSERT INTO batch_members (job, batch, idx) VALUES ($1, $2, $3)",
                        vals![*job, batch, i as i64],
                    )?;
                }
                Ok(batch)
            },
            |_| jobs.to_vec(),
        )
    }

    pub fn batch(&self, id: i64) -> Result<Option<Batch>> {
        self.read(|c| {
            let Some(r) = c.row(
                "SELECT id, created_at, proofs, length(aggregate), error, aggregate_ms \
                 FROM batches WHERE id = $1",
                vals![id],
            )?
            else {
                return Ok(None);
            };
            let jobs = c
                .rows(
                    "SELECT m.job, j.account FROM batch_members m JOIN jobs j ON j.id = m.job \
                     WHERE m.batch = $1 ORDER BY m.idx",
                    vals![id],
                )?
                .iter()
                .map(|r| Ok((r.int(0)?, r.int(1)?)))
                .collect::<Result<Vec<_>>>()?;
            Ok(Some(Batch {
                id: r.int(0)?,
                created_at: r.real(1)?,
                proofs: r.int(2)?,
                aggregate_bytes: r.opt_int(3)?,
                error: r.opt_text(4)?,
                aggregate_ms: r.real(5)?,
                jobs,
            }))
        })
    }

    pub fn batch_aggregate(&self, id: i64) -> Result<Option<Vec<u8>>> {
        self.read(|c| {
            c.row("SELECT aggregate FROM batches WHERE id = $1", vals![id])?
                .map(|r| r.opt_blob(0))
                .transpose()
                .map(Option::flatten)
        })
    }

    /// Takes the next queued job for a worker: `queued` → `proving`, leased to `claim.worker`
    /// for `claim.lease`. On PostgreSQL, rows other workers are claiming are skipped, not
    /// waited for (`FOR UPDATE SKIP LOCKED`). Lease times are the database's clock
    /// (`ciro_now()`), so machines whose clocks disagree agree on when a lease runs out.
    pub fn claim_next(&self, claim: &Claim<'_>) -> Result<Option<Job>> {
        // Proof system names are checked against the known backends before they get here;
        // anything else is refused rather than spliced into SQL.
        if let Some(bad) = claim
            .proof_systems
            .iter()
            .find(|s| !s.chars().all(|ch| ch.is_ascii_alphanumeric()))
        {
            return Err(StoreError::Invalid(format!(
                "bad proof system name {bad:?}"
            )));
        }
        let only = if claim.proof_systems.is_empty() {
            String::new()
        } else {
            let names: Vec<String> = claim
                .proof_systems
                .iter()
                .map(|s| format!("'{s}'"))
                .collect();
            format!(" AND proof_system IN ({})", names.join(", "))
        };
        self.tx_about(
            |c| {
                // Fair between accounts: each account's oldest queued job, the account served
                // longest ago (or never) first, so one account's backlog cannot starve the rest.
                let found = c.row(
                    &format!(
                        "SELECT j.id FROM jobs j \
                         WHERE j.state = 'queued'{only} AND j.id = \
                           (SELECT MIN(q.id) FROM jobs q WHERE q.account = j.account AND q.state = 'queued'{only}) \
                         ORDER BY COALESCE((SELECT MAX(p.started_at) FROM jobs p \
                           WHERE p.account = j.account AND p.started_at IS NOT NULL), 0), j.id \
                         LIMIT 1 FOR UPDATE SKIP LOCKED"
                    ),
                    &[],
                )?;
                let Some(r) = found else { return Ok(None) };
                let id = r.int(0)?;
                let n = c.exec(
                    "UPDATE jobs SET state = 'proving', attempts = attempts + 1, \
                     started_at = ciro_now(), queue_wait_ms = (ciro_now() - created_at) * 1000.0, \
                     worker = $2, lease_until = ciro_now() + $3 WHERE id = $1 AND state = 'queued'",
                    vals![id, claim.worker, claim.lease.as_secs_f64()],
                )?;
                if n == 0 {
                    return Ok(None);
                }
                // The next queued job of this account is eligible now: wake another worker.
                c.notify(db::QUEUED, "")?;
                // Read in the same transaction: a claim is never committed without its worker
                // knowing the job.
                c.row(
                    &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"),
                    vals![id],
                )?
                .map(|r| job_from_row(&r))
                .transpose()
            },
            |job| job.iter().map(|j| j.doc.id).collect(),
        )
    }

    /// Extends the leases on the jobs `claims` name (`(job, claimant)`); returns the jobs the
    /// claimant no longer holds (their lease ran out and they went back to the queue, or they
    /// ended).
    pub fn renew_leases(&self, claims: &[(i64, String)], lease: Duration) -> Result<Vec<i64>> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|c| {
            let mut lost = Vec::new();
            for (id, worker) in claims {
                let n = c.exec(
                    "UPDATE jobs SET lease_until = ciro_now() + $3 \
                     WHERE id = $1 AND worker = $2 AND state IN ('proving', 'proved')",
                    vals![*id, worker.as_str(), lease.as_secs_f64()],
                )?;
                if n == 0 {
                    lost.push(*id);
                }
            }
            Ok(lost)
        })
    }

    /// `proving` → `proved`, storing the bundle and the result, if `worker` still holds the job.
    /// Returns whether it did.
    pub fn record_proof(
        &self,
        id: i64,
        worker: &str,
        bundle: &[u8],
        result: &serde_json::Value,
        witness_ms: f64,
        prove_ms: f64,
    ) -> Result<bool> {
        self.tx_about(
            |c| {
                let n = c.exec(
                    "UPDATE jobs SET state = 'proved', result = $2, proof_bytes = $3, witness_ms = $4, \
                     prove_ms = $5 WHERE id = $1 AND state = 'proving' AND worker = $6",
                    vals![
                        id,
                        result.to_string(),
                        bundle.len() as i64,
                        witness_ms,
                        prove_ms,
                        worker
                    ],
                )?;
                if n == 1 {
                    c.exec(
                        "INSERT INTO proofs (job, bundle) VALUES ($1, $2) \
                         ON CONFLICT (job) DO UPDATE SET bundle = excluded.bundle",
                        vals![id, bundle],
                    )?;
                }
                Ok(n == 1)
            },
            |_| vec![id],
        )
    }

    /// `proved` → `verified`, capturing the hold in the same transaction, if `worker` still
    /// holds the job. A second call does nothing: the state guard and the ledger's unique index
    /// both forbid a second capture.
    pub fn record_verified(&self, id: i64, worker: &str, verify_ms: f64) -> Result<()> {
        self.tx_about(
            |c| {
                let Some((account, chain, token, price)) = job_money(c, id, "proved")? else {
                    return Ok(());
                };
                let n = c.exec(
                    "UPDATE jobs SET state = 'verified', verify_ms = $2, finished_at = ciro_now(), \
                     error = NULL, lease_until = NULL WHERE id = $1 AND worker = $3",
                    vals![id, verify_ms, worker],
                )?;
                if n == 0 {
                    return Ok(());
                }
                settle_hold(c, id, (account, chain, token, price), Settle::Capture)
            },
            |_| vec![id],
        )
    }

    /// Any unfinished state → `failed`, releasing the hold.
    pub fn record_failure(&self, id: i64, reason: &str) -> Result<()> {
        if self.fail_where(id, reason, "TRUE", &[])? {
            return Ok(());
        }
        // Nothing to fail: an unknown job is an error, a finished one is left as it is.
        self.job(id).map(|_| ())
    }

    /// `worker`'s job fails with `reason`, if `worker` still holds it (a worker that lost its
    /// lease cannot fail the job another worker now proves). Returns whether it did.
    pub fn record_worker_failure(&self, id: i64, worker: &str, reason: &str) -> Result<bool> {
        self.fail_where(id, reason, "worker = $2", &[Val::Text(worker.into())])
    }

    /// Fails job `id` if it is unfinished and `condition` (SQL on the job's row, parameters
    /// from `$2`) holds, checked under the row's lock in the same transaction as the failure.
    fn fail_where(&self, id: i64, reason: &str, condition: &str, params: &[Val]) -> Result<bool> {
        let select = format!(
            "SELECT state FROM jobs WHERE id = $1 \
             AND state IN ('awaiting_payment', 'queued', 'proving', 'proved') \
             AND {condition} FOR UPDATE"
        );
        let select_params = [&[Val::Int(id)][..], params].concat();
        self.tx_about(
            |c| {
                let Some(r) = c.row(&select, &select_params)? else {
                    return Ok(false);
                };
                let state = r.text(0)?;
                release(c, id, &state)?;
                c.exec(
                    "UPDATE jobs SET state = 'failed', error = $2, finished_at = ciro_now(), \
                     lease_until = NULL WHERE id = $1",
                    vals![id, reason],
                )?;
                c.exec("DELETE FROM proofs WHERE job = $1", vals![id])?;
                Ok(true)
            },
            |&failed| if failed { vec![id] } else { Vec::new() },
        )
    }

    /// `queued` (or `awaiting_payment`) → `cancelled`, releasing the hold (an open escrow is
    /// refunded by the settler). Only the job's own account may cancel.
    pub fn cancel(&self, account: i64, id: i64) -> Result<Job> {
        self.job_of(account, id)?;
        self.tx_about(
            |c| {
                let state = c
                    .row("SELECT state FROM jobs WHERE id = $1 FOR UPDATE", vals![id])?
                    .map_or(Ok(String::new()), |r| r.text(0))?;
                if state != "queued" && state != "awaiting_payment" {
                    return Err(StoreError::NotCancellable { id, state });
                }
                release(c, id, &state)?;
                c.exec(
                    "UPDATE jobs SET state = 'cancelled', finished_at = ciro_now() WHERE id = $1",
                    vals![id],
                )?;
                Ok(())
            },
            |_| vec![id],
        )?;
        self.job(id)
    }

    /// After a restart of the embedded service (the only process on its database): jobs that
    /// were being proved, or proved but not yet verified, go back to the queue (their proofs
    /// are made again; nothing was captured for them), whatever their lease. Jobs that have
    /// already been claimed `max_attempts` times fail instead, so one poisonous job cannot keep
    /// the service down. Returns (requeued, failed).
    pub fn recover(&self, max_attempts: i64) -> Result<(usize, usize)> {
        self.requeue_where(max_attempts, "TRUE")
    }

    /// Jobs in flight whose lease ran out (their worker was killed, hangs without renewing, or
    /// lost the database) go back to the queue, or fail after `max_attempts` claims. Safe to
    /// run from every process at once: each job's lease is checked again under its row's lock.
    /// Returns (requeued, failed).
    pub fn requeue_expired(&self, max_attempts: i64) -> Result<(usize, usize)> {
        self.requeue_where(max_attempts, "COALESCE(lease_until, 0) < ciro_now()")
    }

    fn requeue_where(&self, max_attempts: i64, condition: &str) -> Result<(usize, usize)> {
        let stuck: Vec<(i64, i64)> = self.read(|c| {
            c.rows(
                &format!(
                    "SELECT id, attempts FROM jobs WHERE state IN ('proving', 'proved') \
                     AND {condition} ORDER BY id"
                ),
                &[],
            )?
            .iter()
            .map(|r| Ok((r.int(0)?, r.int(1)?)))
            .collect()
        })?;
        let (mut requeued, mut failed) = (0, 0);
        for (id, attempts) in stuck {
            if attempts >= max_attempts {
                let reason = format!(
                    "proving this job was cut short {attempts} times (the service or its worker \
                     stopped); giving up"
                );
                if self.fail_where(
                    id,
                    &reason,
                    &format!("state IN ('proving', 'proved') AND attempts >= $2 AND {condition}"),
                    &[Val::Int(max_attempts)],
                )? {
                    failed += 1;
                }
            } else {
                let n = self.tx_about(
                    |c| {
                        let n = c.exec(
                            &format!(
                                "UPDATE jobs SET state = 'queued', worker = NULL, lease_until = NULL \
                                 WHERE id = $1 AND state IN ('proving', 'proved') AND {condition}"
                            ),
                            vals![id],
                        )?;
                        if n == 1 {
                            c.exec("DELETE FROM proofs WHERE job = $1", vals![id])?;
                            c.notify(db::QUEUED, "")?;
                        }
                        Ok(n)
                    },
                    |&n| if n == 1 { vec![id] } else { Vec::new() },
                )?;
                requeued += n as usize;
            }
        }
        Ok((requeued, failed))
    }

    /// A worker that stops before finishing hands its jobs (`(job, claimant)`) back to the
    /// queue at once (not a strike against them: the claim is not counted).
    pub fn hand_back(&self, claims: &[(i64, String)]) -> Result<usize> {
        self.tx_about(
            |c| {
                let mut n = 0;
                for (id, worker) in claims {
                    let back = c.exec(
                        "UPDATE jobs SET state = 'queued', worker = NULL, lease_until = NULL, \
                         attempts = attempts - 1 \
                         WHERE id = $1 AND worker = $2 AND state IN ('proving', 'proved')",
                        vals![*id, worker.as_str()],
                    )?;
                    if back == 1 {
                        c.exec("DELETE FROM proofs WHERE job = $1", vals![*id])?;
                    }
                    n += back;
                }
                if n > 0 {
                    c.notify(db::QUEUED, "")?;
                }
                Ok(n as usize)
            },
            |_| claims.iter().map(|c| c.0).collect(),
        )
    }

    /// Jobs in flight for longer than `limit` (by the database's clock) fail with `reason`,
    /// releasing their holds, whether or not a worker still holds them: a worker that hangs
    /// cannot keep a user's money held. A proof it stores later is ignored (the job is no
    /// longer `proving`). Returns how many failed.
    pub fn fail_overdue(&self, limit: Duration, reason: &str) -> Result<usize> {
        let condition = "state IN ('proving', 'proved') AND started_at < ciro_now() - $2";
        let limit = Val::Real(limit.as_secs_f64());
        let overdue: Vec<i64> = self.read(|c| {
            c.rows(
                &format!(
                    "SELECT id FROM jobs WHERE {}",
                    condition.replace("$2", "$1")
                ),
                std::slice::from_ref(&limit),
            )?
            .iter()
            .map(|r| r.int(0))
            .collect()
        })?;
        let mut failed = 0;
        for id in overdue {
            // Checked again under the row's lock: the job may have been requeued and claimed
            // afresh since it was read.
            if self.fail_where(id, reason, condition, std::slice::from_ref(&limit))? {
                failed += 1;
            }
        }
        Ok(failed)
    }

    pub fn count_in_state(&self, state: JobState) -> Result<i64> {
        self.read(|c| {
            c.row(
                "SELECT COUNT(*) FROM jobs WHERE state = $1",
                vals![state.as_str()],
            )?
            .map_or(Ok(0), |r| r.int(0))
        })
    }

    /// How many jobs are in each state (states with none are left out).
    pub fn counts_by_state(&self) -> Result<Vec<(String, i64)>> {
        self.read(|c| {
            c.rows(
                "SELECT state, COUNT(*) FROM jobs GROUP BY state ORDER BY state",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?, r.int(1)?)))
            .collect()
        })
    }

    /// Prove times per model and proof system, in [`PROVE_MS_BUCKETS`].
    pub fn prove_times(&self) -> Result<Vec<ProveTimes>> {
        let counts: String = PROVE_MS_BUCKETS
            .iter()
            .map(|b| format!(", SUM(CASE WHEN prove_ms <= {b:.1} THEN 1 ELSE 0 END)"))
            .collect();
        self.read(|c| {
            c.rows(
                &format!(
                    "SELECT model, proof_system, COUNT(*), SUM(prove_ms){counts} FROM jobs \
                     WHERE prove_ms IS NOT NULL GROUP BY model, proof_system ORDER BY model, proof_system"
                ),
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(ProveTimes {
                    model: r.text(0)?,
                    proof_system: r.text(1)?,
                    count: r.int(2)? as u64,
                    sum_ms: r.real(3)?,
                    buckets: PROVE_MS_BUCKETS
                        .iter()
                        .enumerate()
                        .map(|(i, &b)| Ok((b, r.int(4 + i)? as u64)))
                        .collect::<Result<_>>()?,
                })
            })
            .collect()
        })
    }

    // ---- workers ----

    /// Records that worker `w` is alive (and what it is doing) now.
    pub fn heartbeat(&self, w: &WorkerInfo) -> Result<()> {
        let jobs: Vec<String> = w.current_jobs.iter().map(|j| j.to_string()).collect();
        self.read(|c| {
            c.exec(
                "INSERT INTO workers (id, host, backends, concurrency, current_jobs, started_at, heartbeat_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, ciro_now()) \
                 ON CONFLICT (id) DO UPDATE SET current_jobs = excluded.current_jobs, \
                 heartbeat_at = excluded.heartbeat_at",
                vals![
                    w.id.as_str(),
                    w.host.as_str(),
                    w.backends.join(","),
                    w.concurrency,
                    jobs.join(","),
                    w.started_at
                ],
            )?;
            Ok(())
        })
    }

    /// A worker that stopped cleanly says so (it leaves the health report at once).
    pub fn worker_gone(&self, id: &str) -> Result<()> {
        self.read(|c| {
            c.exec("DELETE FROM workers WHERE id = $1", vals![id])?;
            Ok(())
        })
    }

    /// Workers heard from in the last `within` (by the database's clock); rows an hour older
    /// are removed.
    pub fn workers_seen(&self, within: Duration) -> Result<Vec<WorkerInfo>> {
        let within = within.as_secs_f64();
        self.read(|c| {
            c.exec(
                "DELETE FROM workers WHERE heartbeat_at < ciro_now() - $1",
                vals![within + 3600.0],
            )?;
            c.rows(
                "SELECT id, host, backends, concurrency, current_jobs, started_at, heartbeat_at \
                 FROM workers WHERE heartbeat_at >= ciro_now() - $1 ORDER BY id",
                vals![within],
            )?
            .iter()
            .map(|r| {
                let list = |s: String| -> Vec<String> {
                    s.split(',')
                        .filter(|x| !x.is_empty())
                        .map(String::from)
                        .collect()
                };
                Ok(WorkerInfo {
                    id: r.text(0)?,
                    host: r.text(1)?,
                    backends: list(r.text(2)?),
                    concurrency: r.int(3)?,
                    current_jobs: list(r.text(4)?)
                        .iter()
                        .filter_map(|j| j.parse().ok())
                        .collect(),
                    started_at: r.real(5)?,
                    heartbeat_at: r.real(6)?,
                })
            })
            .collect()
        })
    }
}

fn ensure_balance(c: &mut dyn Conn, account: i64, chain: Chain, token: Token) -> Result<()> {
    c.exec(
        "INSERT INTO balances (account, chain, token) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        vals![account, chain.as_str(), token.as_str()],
    )?;
    Ok(())
}

fn ledger(
    c: &mut dyn Conn,
    account: i64,
    chain: Chain,
    token: Token,
    kind: &str,
    amount: i64,
    job: Option<i64>,
) -> Result<()> {
    c.exec(
        "INSERT INTO ledger (account, chain, token, kind, amount, job, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        vals![
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

/// The account, chain, token and price of job `id` if it is in `state` (locking its row).
fn job_money(c: &mut dyn Conn, id: i64, state: &str) -> Result<Option<(i64, Chain, Token, i64)>> {
    c.row(
        "SELECT account, chain, token, price FROM jobs WHERE id = $1 AND state = $2 FOR UPDATE",
        vals![id, state],
    )?
    .map(|r| {
        Ok((
            r.int(0)?,
            r.text(1)?.parse().map_err(StoreError::Invalid)?,
            r.text(2)?.parse().map_err(StoreError::Invalid)?,
            r.int(3)?,
        ))
    })
    .transpose()
}

/// Inserts a new job in `state`, paid on the `payment` side ('ledger' or 'escrow'): its id.
fn insert_job(
    c: &mut dyn Conn,
    job: &NewJob<'_>,
    request_hash: &str,
    state: &str,
    payment: &str,
) -> Result<i64> {
    c.row(
        "INSERT INTO jobs (account, model, model_hash, input, request_hash, chain, token, \
         price, proof_system, state, idempotency_key, created_at, payment) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, ciro_now(), $12) RETURNING id",
        vals![
            job.account,
            job.model,
            job.model_hash,
            job.input,
            request_hash,
            job.chain.as_str(),
            job.token.as_str(),
            job.price_micro,
            job.proof_system,
            state,
            job.idempotency_key,
            payment
        ],
    )?
    .ok_or_else(|| StoreError::Invalid("no job id".into()))?
    .int(0)
}

/// Returns a job's held price to the available balance.
fn release(c: &mut dyn Conn, id: i64, state: &str) -> Result<()> {
    match job_money(c, id, state)? {
        Some(money) => settle_hold(c, id, money, Settle::Release),
        None => Ok(()),
    }
}

/// Where a job's held price goes when the job ends.
#[derive(Clone, Copy)]
enum Settle {
    /// To `spent`: the job verified.
    Capture,
    /// Back to `available`: the job failed or was cancelled.
    Release,
}

/// Moves job `id`'s held price out of `held` and records it in the ledger.
fn settle_hold(
    c: &mut dyn Conn,
    id: i64,
    (account, chain, token, price): (i64, Chain, Token, i64),
    to: Settle,
) -> Result<()> {
    let on_chain = c
        .row("SELECT payment FROM jobs WHERE id = $1", vals![id])?
        .map(|r| r.text(0))
        .transpose()?
        .is_some_and(|p| p == "escrow");
    if on_chain {
        // Its price is in the escrow contract; the settler pays or refunds it there.
        return Ok(());
    }
    let (column, kind) = match to {
        Settle::Capture => ("spent", "capture"),
        Settle::Release => ("available", "release"),
    };
    c.exec(
        &format!(
            "UPDATE balances SET held = held - $4, {column} = {column} + $4 \
             WHERE account = $1 AND chain = $2 AND token = $3"
        ),
        vals![account, chain.as_str(), token.as_str(), price],
    )?;
    ledger(c, account, chain, token, kind, price, Some(id))
}
