//! Aggregation batches: verified plonky2 jobs are folded into one aggregate proof
//! (`ciro_prover::plonky2_backend::aggregate`) every `batch_size` jobs, or sooner once the
//! oldest waiting job has waited `batch_wait`. A batch and its members are recorded in one
//! transaction after the aggregate is made, so a crash loses at most the work in progress,
//! never a job: the next start aggregates the same jobs again. With a shared PostgreSQL store,
//! one API node at a time aggregates (it holds an advisory lock; the lead passes on when it
//! stops), so no two nodes spend the work on the same jobs.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ciro_prover::plonky2_backend::aggregate::aggregate;
use ciro_prover::{BackendId, Plonky2VerifyingKey, ProofBundle};

use crate::store::now;
use crate::worker::log;
use crate::Shared;

/// The advisory lock key of the batcher's lead.
const BATCHER_LEAD: i64 = 727_102;

/// Runs until the service stops.
pub fn run(shared: Arc<Shared>) {
    let mut lead = shared
        .config
        .database
        .as_deref()
        .map(|url| crate::store::postgres::Leader::new(url, BATCHER_LEAD));
    while !shared.stopping.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(lead) = &mut lead {
            if !lead.holds() {
                // Another node aggregates; look again in a while.
                std::thread::sleep(Duration::from_secs(2));
                continue;
            }
        }
        // Panic containment as for workers: a bug in one batch must not end aggregation.
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| next_batch(&shared)))
                .unwrap_or_else(|p| {
                    Err(format!(
                        "internal error: {}",
                        ciro_prover::public::panic_message(p)
                    ))
                });
        if let Err(e) = outcome {
            log(&format!("batcher: {e}"));
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// Aggregates the next batch if one is due.
fn next_batch(shared: &Shared) -> Result<(), String> {
    let c = &shared.config;
    if c.batch_size == 0 {
        return Ok(());
    }
    let waiting = shared
        .store
        .unbatched(BackendId::Plonky2.name(), c.batch_size)
        .map_err(|e| e.to_string())?;
    let Some(&(_, oldest)) = waiting.first() else {
        return Ok(());
    };
    if waiting.len() < c.batch_size && now() - oldest < c.batch_wait.as_secs_f64() {
        return Ok(());
    }
    let ids: Vec<i64> = waiting.iter().map(|w| w.0).collect();
    let start = Instant::now();
    let made = aggregate_jobs(shared, &ids);
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let batch = match &made {
        Ok(bytes) => shared.store.record_batch(&ids, Ok(bytes), ms),
        Err(e) => shared.store.record_batch(&ids, Err(e), ms),
    }
    .map_err(|e| e.to_string())?;
    match made {
        Ok(_) => log(&format!(
            "batch {batch}: {} plonky2 proofs aggregated in {:.1} s",
            ids.len(),
            ms / 1e3
        )),
        Err(e) => log(&format!("batch {batch} of {} jobs failed: {e}", ids.len())),
    }
    Ok(())
}

/// The aggregate file of these jobs' proofs, each under its model's current plonky2 key.
fn aggregate_jobs(shared: &Shared, ids: &[i64]) -> Result<Vec<u8>, String> {
    let mut keys: Vec<(String, Arc<crate::registry::Keys>)> = Vec::new();
    let mut bundles = Vec::new();
    let mut key_of = Vec::new();
    for &id in ids {
        let job = shared.store.job(id).map_err(|e| e.to_string())?;
        let bytes = shared
            .store
            .proof(id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("job {id} has no proof stored"))?;
        bundles.push(ProofBundle::from_bytes(&bytes).map_err(|e| format!("job {id}: {e}"))?);
        let k = match keys.iter().position(|(m, _)| *m == job.doc.model) {
            Some(k) => k,
            None => {
                let model = shared
                    .registry
                    .get(&job.doc.model)
                    .map_err(|e| format!("job {id}: {e}"))?;
                let made = model
                    .keys(BackendId::Plonky2, &shared.registry.provers)
                    .map_err(|e| format!("job {id}: {e}"))?;
                keys.push((job.doc.model.clone(), made));
                keys.len() - 1
            }
        };
        key_of.push(k);
    }
    let vks: Vec<&Plonky2VerifyingKey> = keys
        .iter()
        .map(|(m, k)| {
            k.vk()
                .as_any()
                .downcast_ref::<Plonky2VerifyingKey>()
                .ok_or_else(|| format!("model {m}: its plonky2 key is of another backend"))
        })
        .collect::<Result<_, _>>()?;
    let items: Vec<(&Plonky2VerifyingKey, &ProofBundle)> = key_of
        .iter()
        .zip(&bundles)
        .map(|(&k, b)| (vks[k], b))
        .collect();
    let (agg, _) = aggregate(&items, &mut |_| {}).map_err(|e| e.to_string())?;
    Ok(agg.to_bytes())
}
