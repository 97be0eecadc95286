//! Jobs paid through an on-chain escrow: their mirror of the chain (`escrows`), the block
//! cursor of the event watcher, and the contracts a service deployed on a dev chain.

use ciro_client::types::EscrowPayment;

use super::db::{self, vals, Conn};
use super::{insert_job, job_from_row, now, Job, NewJob, Result, Store, StoreError, JOB_COLUMNS};

/// Inserts a job that waits for its escrow, and its quoted terms.
pub(super) fn insert_escrow_job(
    c: &mut dyn Conn,
    job: &NewJob<'_>,
    request_hash: &str,
    terms: &dyn Fn(i64) -> EscrowPayment,
) -> Result<i64> {
    let id = insert_job(c, job, request_hash, "awaiting_payment", "escrow")?;
    let doc = terms(id);
    write_doc(c, id, &doc, true)?;
    Ok(id)
}

fn write_doc(c: &mut dyn Conn, job: i64, doc: &EscrowPayment, insert: bool) -> Result<()> {
    let text = serde_json::to_string(doc).map_err(|e| StoreError::Invalid(e.to_string()))?;
    if insert {
        c.exec(
            "INSERT INTO escrows (job, chain_id, status, doc, updated_at) VALUES ($1, $2, $3, $4, $5)",
            vals![job, doc.chain_id as i64, doc.status.as_str(), text, now()],
        )?;
    } else {
        c.exec(
            "UPDATE escrows SET status = $2, doc = $3, updated_at = $4 WHERE job = $1",
            vals![job, doc.status.as_str(), text, now()],
        )?;
    }
    Ok(())
}

fn read_doc(c: &mut dyn Conn, job: i64) -> Result<Option<EscrowPayment>> {
    c.row(
        "SELECT doc FROM escrows WHERE job = $1 FOR UPDATE",
        vals![job],
    )?
    .map(|r| {
        serde_json::from_str(&r.text(0)?)
            .map_err(|e| StoreError::Invalid(format!("escrow document: {e}")))
    })
    .transpose()
}

/// What recording an opened escrow did.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// The job was waiting for it: it is queued now.
    Queued,
    /// The job is not waiting for a payment (paid already, cancelled, failed, or unknown): the
    /// escrow should be refunded.
    NotWaiting,
}

impl Store {
    /// Jobs paid on chain `chain_id` whose escrow is in `status`, oldest first.
    pub fn escrow_jobs(&self, chain_id: u64, status: &str, limit: i64) -> Result<Vec<Job>> {
        self.escrow_jobs_where(chain_id, status, "TRUE", limit)
    }

    /// Jobs paid on chain `chain_id` whose escrow is open and that have ended here (verified:
    /// to settle; failed or cancelled: to refund), oldest first.
    pub fn escrows_to_close(&self, chain_id: u64, limit: i64) -> Result<Vec<Job>> {
        self.escrow_jobs_where(
            chain_id,
            "open",
            "state IN ('verified', 'failed', 'cancelled')",
            limit,
        )
    }

    fn escrow_jobs_where(
        &self,
        chain_id: u64,
        status: &str,
        condition: &str,
        limit: i64,
    ) -> Result<Vec<Job>> {
        self.read(|c| {
            c.rows(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE {condition} AND id IN (SELECT job FROM escrows \
                     WHERE chain_id = $1 AND status = $2) ORDER BY id LIMIT $3"
                ),
                vals![chain_id as i64, status, limit],
            )?
            .iter()
            .map(job_from_row)
            .collect()
        })
    }

    /// Records an escrow opened for job `id` with `doc` (the full terms, status `open`). The
    /// job, if it was waiting, is queued in the same transaction.
    pub fn escrow_opened(&self, id: i64, doc: &EscrowPayment) -> Result<Opened> {
        self.tx_about(
            |c| {
                let waiting = c
                    .row(
                        "SELECT state FROM jobs WHERE id = $1 AND payment = 'escrow' FOR UPDATE",
                        vals![id],
                    )?
                    .map(|r| r.text(0))
                    .transpose()?
                    .is_some_and(|s| s == "awaiting_payment");
                let current = read_doc(c, id)?;
                if !waiting || current.as_ref().is_none_or(|d| d.status != "awaiting") {
                    return Ok(Opened::NotWaiting);
                }
                c.exec("UPDATE jobs SET state = 'queued' WHERE id = $1", vals![id])?;
                write_doc(c, id, doc, false)?;
                c.notify(db::QUEUED, "")?;
                Ok(Opened::Queued)
            },
            |o| {
                if *o == Opened::Queued {
                    vec![id]
                } else {
                    Vec::new()
                }
            },
        )
    }

    /// Changes job `id`'s escrow document with `f` (under the row's lock).
    pub fn update_escrow(&self, id: i64, f: impl Fn(&mut EscrowPayment)) -> Result<()> {
        self.tx_about(
            |c| {
                let mut doc = read_doc(c, id)?
                    .ok_or_else(|| StoreError::Invalid(format!("job {id} has no escrow")))?;
                f(&mut doc);
                write_doc(c, id, &doc, false)
            },
            |_| vec![id],
        )
    }

    /// Jobs still waiting for their escrow `older_than` seconds after submission fail.
    pub fn fail_unpaid(&self, older_than: f64) -> Result<usize> {
        let ids: Vec<i64> = self.read(|c| {
            c.rows(
                "SELECT id FROM jobs WHERE state = 'awaiting_payment' AND created_at < ciro_now() - $1",
                vals![older_than],
            )?
            .iter()
            .map(|r| r.int(0))
            .collect()
        })?;
        let mut n = 0;
        for id in ids {
            if self.fail_where(
                id,
                "no escrow was opened for this job in time",
                "state = 'awaiting_payment'",
                &[],
            )? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The last block whose events were read for `escrow` on `chain_id`.
    pub fn chain_cursor(&self, chain_id: u64, escrow: &str) -> Result<Option<u64>> {
        self.read(|c| {
            c.row(
                "SELECT block FROM chain_cursors WHERE chain_id = $1 AND escrow = $2",
                vals![chain_id as i64, escrow],
            )?
            .map(|r| r.int(0).map(|b| b as u64))
            .transpose()
        })
    }

    pub fn set_chain_cursor(&self, chain_id: u64, escrow: &str, block: u64) -> Result<()> {
        self.read(|c| {
            c.exec(
                "INSERT INTO chain_cursors (chain_id, escrow, block) VALUES ($1, $2, $3) \
                 ON CONFLICT (chain_id, escrow) DO UPDATE SET block = excluded.block",
                vals![chain_id as i64, escrow, block as i64],
            )
            .map(|_| ())
        })
    }

    /// The contracts recorded for `chain_id` (JSON), if the service deployed them.
    pub fn chain_deployment(&self, chain_id: u64) -> Result<Option<String>> {
        self.read(|c| {
            c.row(
                "SELECT deployment FROM chain_deployments WHERE chain_id = $1",
                vals![chain_id as i64],
            )?
            .map(|r| r.text(0))
            .transpose()
        })
    }

    /// Records a deployment unless one is recorded already; returns the one that stands.
    pub fn record_chain_deployment(&self, chain_id: u64, deployment: &str) -> Result<String> {
        self.tx(|c| {
            c.exec(
                "INSERT INTO chain_deployments (chain_id, deployment) VALUES ($1, $2) \
                 ON CONFLICT (chain_id) DO NOTHING",
                vals![chain_id as i64, deployment],
            )?;
            c.row(
                "SELECT deployment FROM chain_deployments WHERE chain_id = $1",
                vals![chain_id as i64],
            )?
            .ok_or_else(|| StoreError::Invalid("no deployment".into()))?
            .text(0)
        })
    }
}
