-- The schema as it was before versioned migrations (every statement is idempotent, so a
-- database made by an older release takes this migration as a no-op).
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
