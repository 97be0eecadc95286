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

/// This machine's name, as workers report it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// This process's name as a worker: host, process id and a random suffix (a restarted process
/// with a recycled pid is still another worker).
pub fn process_id() -> String {
    format!(
        "{}-{}-{}",
        hostname(),
        std::process::id(),
        hex::encode(rand::random::<[u8; 3]>())
    )
}

pub fn run(shared: Arc<Shared>, index: usize) {
    let systems: Vec<&str> = shared
        .config
        .proof_systems
        .iter()
        .map(String::as_str)
        .collect();
    let mut claims = 0u64;
    while !shared.stopping.load(Ordering::SeqCst) {
        let seen = shared.wake.current();
        // A claimant name of its own per claim: should this process lose a job's lease and
        // claim it again, the first claim can no longer record, renew or fail it.
        claims += 1;
        let token = format!("{}/{index}.{claims}", shared.worker_id);
        let claim = crate::store::Claim {
            worker: &token,
            lease: shared.config.lease,
            proof_systems: &systems,
        };
        match shared.store.claim_next(&claim) {
            Ok(Some(job)) => {
                let id = job.doc.id;
                let in_flight = || shared.in_flight.lock().unwrap_or_else(|p| p.into_inner());
                in_flight().push((id, token.clone()));
                if shared.stopping.load(Ordering::SeqCst) {
                    // Claimed as a stop began (the heartbeat may have ended): hand it back.
                    if let Err(e) = shared.store.hand_back(&[(id, token.clone())]) {
                        log(&format!("worker {index}: cannot hand job {id} back: {e}"));
                    }
                    in_flight().retain(|c| c.1 != token);
                    break;
                }
                // Every step under panic containment: a panic anywhere fails the job (releasing
                // its hold) and the worker goes on.
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    prove_job(&shared, job, &token)
                }))
                .unwrap_or_else(|p| {
                    Err(Failure::Job(format!(
                        "internal error: {}",
                        ciro_prover::public::panic_message(p)
                    )))
                });
                in_flight().retain(|c| c.1 != token);
                match outcome {
                    Ok(()) => {}
                    Err(Failure::Job(reason)) => {
                        log(&format!("worker {index}: job {id} failed: {reason}"));
                        match shared.store.record_worker_failure(id, &token, &reason) {
                            Ok(true) => {}
                            Ok(false) => log(&format!(
                                "worker {index}: job {id} is no longer this worker's; its failure is not recorded"
                            )),
                            Err(e) => log(&format!(
                                "worker {index}: cannot record the failure of job {id} ({e}); it goes back to the queue when its lease runs out"
                            )),
                        }
                    }
                    // The job did nothing wrong: it is proved again once its lease runs out.
                    Err(Failure::Store(e)) => log(&format!(
                        "worker {index}: the job store failed on job {id} ({e}); it goes back to the queue when its lease runs out"
                    )),
                }
            }
            Ok(None) => {
                // New jobs wake the workers (in this process directly, in others by NOTIFY);
                // the timeout only covers a wake-up lost with a dropped connection.
                shared.wake.wait(seen, Duration::from_secs(2));
            }
            Err(e) => {
                log(&format!("worker {index}: the job store failed: {e}"));
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// Why a job did not end verified.
enum Failure {
    /// The job fails, with this reason for the user.
    Job(String),
    /// The store could not record a step (a lost database connection, a full disk): not the
    /// job's fault, so it is not failed.
    Store(crate::store::StoreError),
}

impl From<String> for Failure {
    fn from(reason: String) -> Failure {
        Failure::Job(reason)
    }
}

/// Every third of the lease: renews the leases of the jobs this process's workers are on, and
/// reports the workers in the store (the health report lists them). After a stop, reports them
/// gone.
pub fn heartbeat(shared: Arc<Shared>) {
    let every = (shared.config.lease / 3).max(Duration::from_millis(100));
    let backends = if shared.config.proof_systems.is_empty() {
        ciro_prover::backends()
            .iter()
            .map(|b| b.name.to_string())
            .collect()
    } else {
        shared.config.proof_systems.clone()
    };
    let host = hostname();
    let mut last: Option<Instant> = None;
    // While stopping, leases are still renewed until the jobs in hand are finished (or handed
    // back at the drain deadline).
    let busy = || {
        !shared
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    };
    while !shared.stopping.load(Ordering::SeqCst)
        || (busy() && !shared.drained.load(Ordering::SeqCst))
    {
        if last.is_some_and(|t| t.elapsed() < every) {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        last = Some(Instant::now());
        let claims = shared
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match shared.store.renew_leases(&claims, shared.config.lease) {
            Ok(lost) if !lost.is_empty() => log(&format!(
                "lost the lease of job(s) {lost:?}: they ended or went back to the queue; a result for them will not be recorded"
            )),
            Ok(_) => {}
            Err(e) => log(&format!("cannot renew leases: {e}")),
        }
        let me = crate::store::WorkerInfo {
            id: shared.worker_id.clone(),
            host: host.clone(),
            backends: backends.clone(),
            concurrency: shared.config.workers as i64,
            current_jobs: claims.iter().map(|c| c.0).collect(),
            started_at: shared.started_at,
            heartbeat_at: crate::store::now(),
        };
        if let Err(e) = shared.store.heartbeat(&me) {
            log(&format!("cannot report to the store: {e}"));
        }
    }
    let _ = shared.store.worker_gone(&shared.worker_id);
}

/// Every `sweep_interval`: jobs past the time limit fail, and jobs whose lease ran out (their
/// worker was killed, its machine is gone, or it could not record the job's end) go back to the
/// queue, or fail after too many attempts, releasing their hold. Every process sweeps; the
/// store's state guards make that safe.
pub fn sweep(shared: Arc<Shared>) {
    // Expired leases are looked for every third of a lease (a cheap indexed query), so a lost
    // worker's job waits at most about 1.3 leases; the time limit every `sweep_interval`.
    let lease_every = (shared.config.lease / 3).max(Duration::from_millis(100));
    let mut last_sweep = Instant::now();
    let mut last_lease = Instant::now();
    while !shared.stopping.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        if last_sweep.elapsed() >= shared.config.sweep_interval {
            last_sweep = Instant::now();
            shared.rates.retain_recent();
            let limit = shared.config.job_time_limit;
            match shared.store.fail_overdue(
                limit,
                &format!(
                    "the job passed the service's time limit of {} s",
                    limit.as_secs()
                ),
            ) {
                Ok(0) => {}
                Ok(n) => log(&format!("sweep: {n} job(s) failed past the time limit")),
                Err(e) => log(&format!("sweep: the job store failed: {e}")),
            }
        }
        if last_lease.elapsed() < lease_every.min(shared.config.sweep_interval) {
            continue;
        }
        last_lease = Instant::now();
        match shared.store.requeue_expired(shared.config.max_attempts) {
            Ok((0, 0)) => {}
            Ok((requeued, failed)) => {
                log(&format!(
                    "sweep: {requeued} job(s) whose worker was lost back in the queue, {failed} failed after too many attempts"
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

/// Proves, stores and verifies one job under the claim `token`. An `Err` is the reason the
/// job failed, worded for the user, or the store's failure to record a step.
fn prove_job(shared: &Shared, job: Job, token: &str) -> Result<(), Failure> {
    if let Some(hook) = shared.config.fault_hook {
        hook(&job);
    }
    let model = shared
        .registry
        .get(&job.doc.model)
        .map_err(|e| format!("model {}: {e}", job.doc.model))?;
    if model.compiled.hash != job.doc.model_hash {
        return Err(Failure::Job(format!(
            "model {} changed since the job was submitted (compiled hash {} now, {} then); submit it again",
            job.doc.model, model.compiled.hash, job.doc.model_hash
        )));
    }
    let floats: Vec<Vec<f32>> = serde_json::from_str(&job.input)
        .map_err(|e| format!("the stored input is unreadable: {e}"))?;
    let inputs = quantize_inputs(&model.compiled.graph, &floats).map_err(|e| e.to_string())?;
    let system: BackendId = job.doc.proof_system.parse::<BackendId>()?;
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
    let stored = shared
        .store
        .record_proof(
            job.doc.id,
            token,
            &bytes,
            &result,
            witness.as_secs_f64() * 1e3,
            (total - witness).as_secs_f64() * 1e3,
        )
        .map_err(Failure::Store)?;
    if !stored {
        log(&format!(
            "job {}: proved, but its lease was lost meanwhile; another worker has it",
            job.doc.id
        ));
        return Ok(());
    }
    // The proof is stored before the payment is captured: a crash in between re-proves the
    // job on restart and charges it once.
    shared
        .store
        .record_verified(job.doc.id, token, verify_ms)
        .map_err(Failure::Store)
}
