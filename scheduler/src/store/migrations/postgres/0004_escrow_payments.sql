-- On-chain payments: a job paid through an escrow contract holds nothing on the embedded
-- ledger; `escrows` mirrors what the chain shows for it.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS payment TEXT NOT NULL DEFAULT 'ledger';
CREATE TABLE IF NOT EXISTS escrows (
    job BIGINT PRIMARY KEY REFERENCES jobs(id),
    chain_id BIGINT NOT NULL,
    -- awaiting, open, settled, refunded
    status TEXT NOT NULL,
    -- The API's EscrowPayment document (terms, then transactions).
    doc TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS escrows_by_status ON escrows(chain_id, status, job);
-- The last block whose escrow events the service has read, per chain and escrow.
CREATE TABLE IF NOT EXISTS chain_cursors (
    chain_id BIGINT NOT NULL,
    escrow TEXT NOT NULL,
    block BIGINT NOT NULL,
    PRIMARY KEY (chain_id, escrow)
);
-- Contracts the service deployed itself (dev chains), per chain id.
CREATE TABLE IF NOT EXISTS chain_deployments (
    chain_id BIGINT PRIMARY KEY,
    deployment TEXT NOT NULL
);
