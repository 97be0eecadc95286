//! Proving workers: plain OS threads (proving is CPU-bound and must stay off the async
//! runtime), each taking the oldest queued job, proving it, verifying the proof, and only then
//! capturing the payment.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ciro_model_compiler::quantize_inputs;
use ciro_prover::{BackendId, Stage};

use crate::store::Job;
use crate::Shared;

/// Wakes idle workers when a job is queued (they also poll, so a lost wake-up only delays).
#[derive(Default)]
pub struct Wake {
    generation: Mutex<u64>,
    cv: Condvar,
}

impl Wake {
    pub fn notify(&self) {
        *self.generation.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.cv.notify_all();
    }

    fn wait(&self, seen: u64, timeout: Duration) -> u64 {
        let g = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        let (g, _) = self
            .cv
            .wait_timeout_while(g, timeout, |g| *g == seen)
            .unwrap_or_else(|p| p.into_inner());
        *g
    }

    fn current(&self) -> u64 {
        *self.generation.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub fn run(shared: Arc<Shared>, index: usize) {
    while !shared.stopping.load(Ordering::SeqCst) {
        let seen = shared.wake.current();
        match shared.store.claim_next() {
            Ok(Some(job)) => {
                let id = job.doc.id;
                shared
                    .in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(id);
                // Every step under panic containment: a panic anywhere fails the job (releasing
                // its hold) and the worker goes on.
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    prove_job(&shared, job)
                }))
                .unwrap_or_else(|p| {
                    Err(format!(
                        "internal error: {}",
                        ciro_prover::public::panic_message(p)
                    ))
                });
                shared
                    .in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|&j| j != id);
                if let Err(reason) = outcome {
                    log(&format!("worker {index}: job {id} failed: {reason}"));
                    if let Err(e) = shared.store.record_failure(id, &reason) {
                        log(&format!(
                            "worker {index}: cannot record the failure of job {id}: {e}"
                        ));
                    }
                }
            }
            Ok(None) => {
                shared.wake.wait(seen, Duration::from_millis(250));
            }
            Err(e) => {
                log(&format!("worker {index}: the job store failed: {e}"));
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// Every `sweep_interval`: jobs marked in flight that no worker of this process holds go back
/// to the queue (or fail after too many attempts, releasing their hold). A worker that could
/// not record a job's end (a full disk) leaves such a job; this frees it without a restart.
pub fn sweep(shared: Arc<Shared>) {
    let mut last = Instant::now();
    while !shared.stopping.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() < shared.config.sweep_interval {
            continue;
        }
        last = Instant::now();
        shared.rates.retain_recent();
        let limit = shared.config.job_time_limit;
        match shared.store.fail_overdue(
            crate::store::now() - limit.as_secs_f64(),
            &format!(
                "the job passed the service's time limit of {} s",
                limit.as_secs()
            ),
        ) {
            Ok(0) => {}
            Ok(n) => log(&format!("sweep: {n} job(s) failed past the time limit")),
            Err(e) => log(&format!("sweep: the job store failed: {e}")),
        }
        let held = shared
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match shared.store.recover_except(
            shared.config.max_attempts,
            &held,
            crate::store::now() - shared.config.sweep_interval.as_secs_f64(),
        ) {
            Ok((0, 0)) => {}
            Ok((requeued, failed)) => {
                log(&format!(
                    "sweep: {requeued} job(s) back in the queue, {failed} failed after too many attempts"
                ));
                shared.wake.notify();
            }
            Err(e) => log(&format!("sweep: the job store failed: {e}")),
        }
    }
}

pub fn log(msg: &str) {
    eprintln!("[ciro-scheduler] {msg}");
}

/// Proves, stores and verifies one job. An `Err` is the reason the job failed, worded for
/// the user.
fn prove_job(shared: &Shared, job: Job) -> Result<(), String> {
    if let Some(hook) = shared.config.fault_hook {
        hook(&job);
    }
    let model = shared
        .registry
        .get(&job.doc.model)
        .map_err(|e| format!("model {}: {e}", job.doc.model))?;
    if model.compiled.hash != job.doc.model_hash {
        return Err(format!(
            "model {} changed since the job was submitted (compiled hash {} now, {} then); submit it again",
            job.doc.model, model.compiled.hash, job.doc.model_hash
        ));
    }
    let floats: Vec<Vec<f32>> = serde_json::from_str(&job.input)
        .map_err(|e| format!("the stored input is unreadable: {e}"))?;
    let inputs = quantize_inputs(&model.compiled.graph, &floats).map_err(|e| e.to_string())?;
    let system: BackendId = job.doc.proof_system.parse()?;
    let provers = &shared.registry.provers;
    let keys = model.keys(system, provers)?;
    let start = Instant::now();
    let mut committed_at = None;
    let mut progress = |s: Stage| {
        if s == Stage::Commit {
            committed_at = Some(start.elapsed());
        }
    };
    let proved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        provers
            .get(system)
            .prove(keys.pk.as_ref(), &inputs, &mut progress)
    }))
    .map_err(|_| "the prover crashed".to_string())?
    .map_err(|e| format!("proving failed: {e}"))?;
    let total = start.elapsed();
    let witness = committed_at.unwrap_or_default();
    let bytes = proved.to_bytes();

    let verify_start = Instant::now();
    let verified = ciro_verifier::verify(keys.vk(), &proved)
        .map_err(|e| format!("the service's own check of the proof failed: {e}"))?;
    let verify_ms = verify_start.elapsed().as_secs_f64() * 1e3;
    let mut result = serde_json::json!({
        "outputs": verified.outputs.iter().map(|t| t.real()).collect::<Vec<_>>(),
        "label": verified.label().map(|l| l.1),
        "model_commitment": verified.model_commitment,
        "security_bits": verified.security_bits,
    });
    if system.evm() {
        // What the chain's verifier contract takes (`ciro gen-verifier` writes the contract).
        let calldata = ciro_verifier::evm::calldata(&proved).map_err(|e| e.to_string())?;
        result["evm_calldata"] = format!("0x{}", hex::encode(calldata)).into();
    }
    shared
        .store
        .record_proof(
            job.doc.id,
            &bytes,
            &result,
            witness.as_secs_f64() * 1e3,
            (total - witness).as_secs_f64() * 1e3,
        )
        .map_err(|e| e.to_string())?;
    // The proof is stored before the payment is captured: a crash in between re-proves the
    // job on restart and charges it once.
    shared
        .store
        .record_verified(job.doc.id, verify_ms)
        .map_err(|e| e.to_string())
}
