-- Leases: the worker holding a job in flight and until when (it renews the lease while it
-- proves; a job whose lease ran out goes back to the queue). Workers report in `workers`.
ALTER TABLE jobs ADD COLUMN worker TEXT;
ALTER TABLE jobs ADD COLUMN lease_until DOUBLE PRECISION;
CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    backends TEXT NOT NULL,
    concurrency BIGINT NOT NULL,
    current_jobs TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL
);
