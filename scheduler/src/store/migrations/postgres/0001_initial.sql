-- The first schema.
CREATE TABLE IF NOT EXISTS accounts (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS balances (
    account BIGINT NOT NULL REFERENCES accounts(id),
    chain TEXT NOT NULL,
    token TEXT NOT NULL,
    available BIGINT NOT NULL DEFAULT 0 CHECK (available >= 0),
    held BIGINT NOT NULL DEFAULT 0 CHECK (held >= 0),
    spent BIGINT NOT NULL DEFAULT 0 CHECK (spent >= 0),
    credited BIGINT NOT NULL DEFAULT 0 CHECK (credited >= 0),
    PRIMARY KEY (account, chain, token)
);
CREATE TABLE IF NOT EXISTS ledger (
    id BIGSERIAL PRIMARY KEY,
    account BIGINT NOT NULL,
    chain TEXT NOT NULL,
    token TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('credit', 'hold', 'capture', 'release')),
    amount BIGINT NOT NULL CHECK (amount >= 0),
    job BIGINT,
    at DOUBLE PRECISION NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS ledger_once_per_job ON ledger(job, kind) WHERE job IS NOT NULL;
CREATE TABLE IF NOT EXISTS jobs (
    id BIGSERIAL PRIMARY KEY,
    account BIGINT NOT NULL REFERENCES accounts(id),
    model TEXT NOT NULL,
    model_hash TEXT NOT NULL,
    input TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    chain TEXT NOT NULL,
    token TEXT NOT NULL,
    price BIGINT NOT NULL,
    proof_system TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    idempotency_key TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    queue_wait_ms DOUBLE PRECISION,
    witness_ms DOUBLE PRECISION,
    prove_ms DOUBLE PRECISION,
    verify_ms DOUBLE PRECISION,
    result TEXT,
    proof_bytes BIGINT
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs(account, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, id);
CREATE INDEX IF NOT EXISTS jobs_by_account ON jobs(account, id);
CREATE TABLE IF NOT EXISTS proofs (
    job BIGINT PRIMARY KEY REFERENCES jobs(id),
    bundle BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    id BIGSERIAL PRIMARY KEY,
    created_at DOUBLE PRECISION NOT NULL,
    proofs BIGINT NOT NULL,
    aggregate BYTEA,
    error TEXT,
    aggregate_ms DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_members (
    job BIGINT PRIMARY KEY REFERENCES jobs(id),
    batch BIGINT NOT NULL REFERENCES batches(id),
    idx BIGINT NOT NULL
);
