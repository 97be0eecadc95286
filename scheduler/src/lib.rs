//! `ciro-scheduler`: the Ciro service. One process: an HTTP API (axum on tokio), a SQLite job
//! store in a data directory, a model registry, and in-process proving workers. Users submit a
//! job, the service holds its price, proves the inference, verifies its own proof, then
//! captures the payment; a failed or cancelled job releases the hold.
//!
//! Crash safety: every state change is a SQLite transaction (WAL, `synchronous = FULL`). On
//! start, jobs that were proving go back to the queue, so a killed service loses nothing and
//! charges nothing twice.

pub mod api;
pub mod batcher;
pub mod events;
pub mod http;
pub mod isolate;
pub mod pricing;
pub mod registry;
pub mod store;
pub mod web;
pub mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ciro_model_compiler::Limits;

use thiserror::Error;

use crate::registry::Registry;
use crate::store::Store;
use crate::worker::Wake;

#[derive(Clone, Debug)]
pub struct Config {
    /// Holds `ciro.db` (jobs, accounts, ledger, proofs) and `models/` (uploads, compiled cache).
    pub data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    pub addr: SocketAddr,
    /// Proving workers (each proves one job at a time). 0 runs the API alone: jobs queue up.
    pub workers: usize,
    /// A job in flight when the service stopped this many times fails instead of retrying.
    pub max_attempts: i64,
    /// Compile and set up the built-in models at start, in the background (uploads load on
    /// first use).
    pub warm_models: bool,
    /// Stop on Ctrl-C or SIGTERM (for `ciro serve`; off for services embedded in tests).
    pub handle_signals: bool,
    /// The KZG SRS folder for halo2 jobs (see `ciro_prover::halo2_backend`).
    pub srs_dir: PathBuf,
    /// Size caps every model (built-in or uploaded) is checked against before it is compiled.
    pub limits: Limits,
    /// halo2 circuits of more than `2^max_halo2_k` rows are refused before key generation.
    pub max_halo2_k: u32,
    /// Where uploads are compiled and set up ([`isolate`]); `None` in this process.
    pub isolation: Option<isolate::Isolation>,
    /// Serve `POST /v1/faucet` (test tokens for anyone): development services only.
    pub dev_faucet: bool,
    /// The most the faucet credits one balance (account, chain, token) in all.
    pub faucet_cap_micro: i64,
    /// Requests per minute per account on the faucet and on job submission, and account
    /// sign-ups per minute per client address.
    pub rate_per_minute: u32,
    pub http: http::HttpLimits,
    /// How often jobs that no worker holds but that are still marked in flight (their worker
    /// could not record the end) are put back in the queue or failed.
    pub sweep_interval: Duration,
    /// A job still in flight this long after it started fails and its hold is released (the
    /// sweep checks), even if its worker is still on it.
    pub job_time_limit: Duration,
    /// After a stop is requested, how long workers may finish their jobs before the process
    /// exits anyway (the jobs are then picked up again at the next start).
    pub drain_deadline: Duration,
    /// Verified plonky2 jobs are aggregated into one proof per this many jobs (0: never).
    pub batch_size: usize,
    /// ...or fewer, once the oldest of them has waited this long.
    pub batch_wait: Duration,
    /// Fault injection for tests: called by a worker with each job it claims, before any other
    /// step (a panic or a sleep here stands for any step failing or hanging).
    #[doc(hidden)]
    pub fault_hook: Option<fn(&store::Job)>,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: 1,
            max_attempts: 3,
            warm_models: true,
            handle_signals: false,
            srs_dir: ciro_prover::halo2_backend::default_srs_dir(),
            limits: Limits::default(),
            max_halo2_k: 22,
            isolation: None,
            dev_faucet: false,
            faucet_cap_micro: 10_000 * pricing::MICRO,
            rate_per_minute: 120,
            http: http::HttpLimits::default(),
            sweep_interval: Duration::from_secs(30),
            job_time_limit: Duration::from_secs(2 * 3600),
            drain_deadline: Duration::from_secs(60),
            batch_size: 16,
            batch_wait: Duration::from_secs(60),
            fault_hook: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum ServiceError {
    #[error("data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("job store: {0}")]
    Store(#[from] store::StoreError),
    #[error("model registry: {0}")]
    Registry(#[from] registry::RegistryError),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
    #[error("data directory {0} is in use by another running service")]
    Locked(String),
}

/// What the API handlers and the workers share.
pub struct Shared {
    pub store: Store,
    pub registry: Registry,
    pub wake: Wake,
    pub stopping: AtomicBool,
    pub config: Config,
    /// Jobs a worker of this process is on (the sweep leaves them alone).
    pub in_flight: Mutex<Vec<i64>>,
    /// Requests that decode images, compile models or make keys, running now.
    pub expensive: Arc<tokio::sync::Semaphore>,
    /// Open live-event streams (each holds a connection and a task).
    pub event_streams: Arc<tokio::sync::Semaphore>,
    /// Open live-event streams per account.
    pub event_streams_by_account: Mutex<std::collections::HashMap<i64, usize>>,
    pub rates: api::RateLimits,
}

/// A running service.
pub struct Running {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    /// Held for the life of the service: a second service on the same data directory is
    /// refused instead of running the same jobs.
    _lock: std::fs::File,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting requests, lets the workers finish their current job, and returns.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.wake.notify();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.join();
        }
        // Workers finish the job in hand, up to the drain deadline; a job cut off there is
        // picked up again at the next start (the store's recovery), and charged once.
        let deadline = std::time::Instant::now() + self.shared.config.drain_deadline;
        while self.workers.iter().any(|h| !h.is_finished()) && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        for h in self.workers.drain(..) {
            if h.is_finished() {
                let _ = h.join();
            } else {
                worker::log(
                    "drain deadline passed with a job in flight; it resumes at the next start",
                );
            }
        }
    }

    /// Blocks until the server stops (for `ciro serve`: on Ctrl-C or SIGTERM).
    pub fn wait(mut self) {
        if let Some(h) = self.server.take() {
            let _ = h.join();
        }
        self.stop_inner();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Opens the data directory, recovers interrupted jobs, starts the workers and the HTTP server.
/// Returns once the server is listening.
pub fn start(config: Config) -> Result<Running, ServiceError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| ServiceError::DataDir(config.data_dir.display().to_string(), e))?;
    let lock = lock_data_dir(&config.data_dir)?;
    let store = Store::open(&config.data_dir.join("ciro.db"))?;
    let (requeued, failed) = store.recover(config.max_attempts)?;
    if requeued + failed > 0 {
        worker::log(&format!(
            "recovered after a stop: {requeued} job(s) back in the queue, {failed} failed after too many attempts"
        ));
    }
    let registry = Registry::open(
        &config.data_dir.join("models"),
        &ciro_prover::ProverSettings {
            srs_dir: config.srs_dir.clone(),
            ..Default::default()
        },
        registry::RegistryOptions {
            limits: config.limits,
            max_halo2_k: config.max_halo2_k,
            isolation: config.isolation.clone(),
        },
    )?;
    let shared = Arc::new(Shared {
        store,
        registry,
        wake: Wake::default(),
        stopping: AtomicBool::new(false),
        in_flight: Mutex::new(Vec::new()),
        expensive: Arc::new(tokio::sync::Semaphore::new(
            config.http.max_expensive.max(1),
        )),
        event_streams: Arc::new(tokio::sync::Semaphore::new(events::MAX_STREAMS)),
        event_streams_by_account: Mutex::new(Default::default()),
        rates: api::RateLimits::new(config.rate_per_minute),
        config: config.clone(),
    });
    let listener =
        std::net::TcpListener::bind(config.addr).map_err(|e| ServiceError::Bind(config.addr, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServiceError::Bind(config.addr, e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| ServiceError::Bind(addr, e))?;

    if config.warm_models {
        let s = shared.clone();
        std::thread::spawn(move || {
            // The built-in models; uploads load on first use (there may be many).
            for name in s
                .registry
                .names()
                .into_iter()
                .filter(|n| !n.starts_with("m-"))
            {
                if s.stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Err(e) = s.registry.get(&name) {
                    worker::log(&format!("model {name} is unavailable: {e}"));
                }
            }
        });
    }
    if config.batch_size > 0 {
        let s = shared.clone();
        std::thread::Builder::new()
            .name("ciro-batcher".into())
            .spawn(move || batcher::run(s))
            .map_err(ServiceError::Runtime)?;
    }
    {
        let s = shared.clone();
        std::thread::Builder::new()
            .name("ciro-sweep".into())
            .spawn(move || worker::sweep(s))
            .map_err(ServiceError::Runtime)?;
    }
    let workers = (0..config.workers)
        .map(|i| {
            let s = shared.clone();
            std::thread::Builder::new()
                .name(format!("ciro-worker-{i}"))
                .spawn(move || worker::run(s, i))
                .map_err(ServiceError::Runtime)
        })
        .collect::<Result<Vec<_>, _>>()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ServiceError::Runtime)?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = api::router(shared.clone());
    let handle_signals = config.handle_signals;
    let http_limits = config.http.clone();
    let stopping = shared.clone();
    let server = std::thread::Builder::new()
        .name("ciro-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        worker::log(&format!("cannot listen: {e}"));
                        return;
                    }
                };
                let shutdown = async move {
                    tokio::select! {
                        _ = rx => {}
                        _ = terminate(), if handle_signals => {}
                    }
                    // Before open requests are drained: live event streams end on this flag,
                    // and workers take no new job.
                    stopping.stopping.store(true, Ordering::SeqCst);
                    stopping.wake.notify();
                };
                http::serve(listener, app, http_limits, shutdown).await;
            })
        })
        .map_err(ServiceError::Runtime)?;
    Ok(Running {
        addr,
        shared,
        _lock: lock,
        shutdown: Some(tx),
        server: Some(server),
        workers,
    })
}

/// Ctrl-C or SIGTERM.
async fn terminate() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Takes an exclusive lock on `DIR/lock` (released when the process ends, however it ends).
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, ServiceError> {
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| ServiceError::DataDir(path.display().to_string(), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(ServiceError::Locked(dir.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(ServiceError::DataDir(path.display().to_string(), e))
        }
    }
}
