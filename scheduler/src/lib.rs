//! `ciro-scheduler`: the Ciro service. By default one process: an HTTP API (axum on tokio), a
//! SQLite job store in a data directory, a model registry, and in-process proving workers.
//! Scaled out, the store is PostgreSQL and [`start_workers`] runs proving workers as their own
//! processes on any number of machines. Users submit a job, the service holds its price,
//! proves the inference, verifies its own proof, then captures the payment; a failed or
//! cancelled job releases the hold.
//!
//! Crash safety: every state change is a transaction. A job in flight is leased to its worker,
//! which renews the lease while it proves; a job whose lease runs out goes back to the queue,
//! so a killed worker or service loses nothing and charges nothing twice.

pub mod api;
pub mod batcher;
pub mod chain;
pub mod events;
pub mod http;
pub mod isolate;
pub mod metrics;
pub mod pricing;
pub mod registry;
pub mod settler;
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
    /// Holds `ciro.db` (jobs, accounts, ledger, proofs; unless `database` is set) and
    /// `models/` (uploads, compiled cache). With `database`, every node mounts the same one.
    pub data_dir: PathBuf,
    /// A PostgreSQL URL: the job store shared by every node (`None`: SQLite in `data_dir`).
    pub database: Option<String>,
    /// How long a claimed job stays a worker's without a renewal (renewed every third of it).
    pub lease: Duration,
    /// The proof systems this process's workers prove (empty: all).
    pub proof_systems: Vec<String>,
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
    /// What halo2 proofs show of the input: its values, or only its Poseidon hash (what
    /// on-chain settlement wants: fewer public values, less gas, and the input stays private).
    pub halo2_inputs: ciro_prover::halo2_backend::InputVisibility,
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
    /// EVM chains whose jobs are paid through the escrow contract on a real node (empty: every
    /// chain uses the embedded ledger).
    pub chains: Vec<settler::ChainConfig>,
    /// The operator's private key (hex) that deploys, registers, settles and refunds.
    pub operator_key: Option<String>,
    /// The shortest time to its deadline an escrow must give the service to prove.
    pub min_deadline: Duration,
    /// A job whose escrow is not opened within this long of its submission fails.
    pub payment_window: Duration,
    /// Blocks an escrow's opening must be buried under before its job is queued (0: the
    /// latest block; a dev chain).
    pub confirmations: u64,
    /// Fault injection for tests: called by a worker with each job it claims, before any other
    /// step (a panic or a sleep here stands for any step failing or hanging).
    #[doc(hidden)]
    pub fault_hook: Option<fn(&store::Job)>,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            database: None,
            lease: Duration::from_secs(30),
            proof_systems: Vec::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: 1,
            max_attempts: 3,
            warm_models: true,
            handle_signals: false,
            srs_dir: ciro_prover::halo2_backend::default_srs_dir(),
            limits: Limits::default(),
            max_halo2_k: 22,
            halo2_inputs: ciro_prover::halo2_backend::InputVisibility::Public,
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
            chains: Vec::new(),
            operator_key: None,
            min_deadline: Duration::from_secs(3600),
            payment_window: Duration::from_secs(3600),
            confirmations: 0,
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
    #[error("{0}")]
    Usage(String),
}

/// What the API handlers and the workers share.
pub struct Shared {
    pub store: Store,
    pub registry: Registry,
    pub wake: Wake,
    pub stopping: AtomicBool,
    /// Set once a stop has drained (or given up on) the workers: the heartbeat ends then.
    pub drained: AtomicBool,
    pub config: Config,
    /// Jobs a worker of this process is on, with the name it claimed each under (their leases
    /// are renewed).
    pub in_flight: Mutex<Vec<(i64, String)>>,
    /// This process's name as a worker: `host-pid-random`.
    pub worker_id: String,
    pub started_at: f64,
    /// Requests that decode images, compile models or make keys, running now.
    pub expensive: Arc<tokio::sync::Semaphore>,
    /// Open live-event streams (each holds a connection and a task).
    pub event_streams: Arc<tokio::sync::Semaphore>,
    /// Open live-event streams per account.
    pub event_streams_by_account: Mutex<std::collections::HashMap<i64, usize>>,
    pub rates: api::RateLimits,
    /// The chains jobs are paid on through the escrow (set once connected, at start).
    pub chains: std::sync::OnceLock<Vec<Arc<settler::ChainLink>>>,
}

impl Shared {
    /// The escrow link for `chain`, if the service settles on it.
    pub fn chain_link(&self, chain: pricing::Chain) -> Option<Arc<settler::ChainLink>> {
        self.chains
            .get()?
            .iter()
            .find(|l| l.chain == chain)
            .cloned()
    }
}

/// A running service.
pub struct Running {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    /// Held for the life of the service: a second service on the same data directory is
    /// refused instead of running the same jobs.
    _lock: Option<std::fs::File>,
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
        self.shared.request_stop();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.join();
        }
        // Workers finish the job in hand, up to the drain deadline; a job cut off there is
        // handed back to the queue (another worker, or this service's next start, proves it,
        // and it is charged once).
        let deadline = std::time::Instant::now() + self.shared.config.drain_deadline;
        while self.workers.iter().any(|h| !h.is_finished()) && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = self
            .shared
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if !left.is_empty() {
            match self.shared.store.hand_back(&left) {
                Ok(n) => worker::log(&format!(
                    "drain deadline passed: {n} job(s) in flight handed back to the queue"
                )),
                Err(e) => worker::log(&format!(
                    "drain deadline passed; cannot hand jobs back ({e}): they return when their lease runs out"
                )),
            }
        }
        self.shared.drained.store(true, Ordering::SeqCst);
        for h in self.workers.drain(..) {
            if h.is_finished() {
                let _ = h.join();
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

/// Opens the store, recovers interrupted jobs, starts the workers and the HTTP server.
/// Returns once the server is listening.
pub fn start(config: Config) -> Result<Running, ServiceError> {
    let (shared, lock) = open(&config)?;
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
    if !config.chains.is_empty() {
        let links = chain::runtime()
            .map_err(ServiceError::Runtime)?
            .block_on(settler::connect(&shared))
            .map_err(ServiceError::Usage)?;
        let _ = shared.chains.set(links.clone());
        let s = shared.clone();
        std::thread::Builder::new()
            .name("ciro-settler".into())
            .spawn(move || settler::run(s, links))
            .map_err(ServiceError::Runtime)?;
    }
    let workers = spawn_workers(&shared)?;

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
                let shutdown = stop_requested(rx, handle_signals, stopping);
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

/// A worker process (`ciro worker`): proving workers on the shared PostgreSQL store, without
/// the HTTP API. Returns once they run; [`Running::wait`] blocks until a stop is asked for.
pub fn start_workers(config: Config) -> Result<Running, ServiceError> {
    if config.database.is_none() {
        return Err(ServiceError::Usage(
            "a worker process needs the shared PostgreSQL store (--database postgres://...)".into(),
        ));
    }
    let (shared, lock) = open(&config)?;
    let workers = spawn_workers(&shared)?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServiceError::Runtime)?;
    let handle_signals = config.handle_signals;
    let stopping = shared.clone();
    // Stands where the HTTP server stands in `start`: it ends when a stop is asked for.
    let server = std::thread::Builder::new()
        .name("ciro-signals".into())
        .spawn(move || runtime.block_on(stop_requested(rx, handle_signals, stopping)))
        .map_err(ServiceError::Runtime)?;
    Ok(Running {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        shared,
        _lock: lock,
        shutdown: Some(tx),
        server: Some(server),
        workers,
    })
}

/// The store and the registry, with interrupted jobs recovered, and the threads every process
/// runs: the sweep, and on PostgreSQL the listener for other processes' changes.
fn open(config: &Config) -> Result<(Arc<Shared>, Option<std::fs::File>), ServiceError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| ServiceError::DataDir(config.data_dir.display().to_string(), e))?;
    let mut config = config.clone();
    // The names jobs carry (`halo2`, not `halo2-kzg`).
    config.proof_systems = config
        .proof_systems
        .iter()
        .map(|name| {
            name.parse::<ciro_prover::BackendId>()
                .map(|b| b.name().to_string())
                .map_err(|e| ServiceError::Usage(format!("--backends: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let (store, lock) = match &config.database {
        // Many processes share one PostgreSQL store (and the data directory's models); leases,
        // not a lock file, keep them from proving the same job.
        Some(url) => (
            // A connection per worker thread, and enough for the API's blocking requests (a
            // request holds one only for its few statements).
            Store::connect(url, (config.workers as u32 + 12).min(48))?,
            None,
        ),
        None => {
            let lock = lock_data_dir(&config.data_dir)?;
            let store = Store::open(&config.data_dir.join("ciro.db"))?;
            // The only process on this store: whatever was in flight was ours.
            let (requeued, failed) = store.recover(config.max_attempts)?;
            if requeued + failed > 0 {
                worker::log(&format!(
                    "recovered after a stop: {requeued} job(s) back in the queue, {failed} failed after too many attempts"
                ));
            }
            (store, Some(lock))
        }
    };
    let registry = Registry::open(
        &config.data_dir.join("models"),
        &ciro_prover::ProverSettings {
            srs_dir: config.srs_dir.clone(),
            ..Default::default()
        },
        registry::RegistryOptions {
            limits: config.limits,
            max_halo2_k: config.max_halo2_k,
            halo2_inputs: config.halo2_inputs,
            isolation: config.isolation.clone(),
        },
    )?;
    let shared = Arc::new(Shared {
        store,
        registry,
        wake: Wake::default(),
        stopping: AtomicBool::new(false),
        drained: AtomicBool::new(false),
        in_flight: Mutex::new(Vec::new()),
        worker_id: worker::process_id(),
        started_at: store::now(),
        expensive: Arc::new(tokio::sync::Semaphore::new(
            config.http.max_expensive.max(1),
        )),
        event_streams: Arc::new(tokio::sync::Semaphore::new(events::MAX_STREAMS)),
        event_streams_by_account: Mutex::new(Default::default()),
        rates: api::RateLimits::new(config.rate_per_minute),
        chains: std::sync::OnceLock::new(),
        config: config.clone(),
    });
    {
        let s = shared.clone();
        std::thread::Builder::new()
            .name("ciro-sweep".into())
            .spawn(move || worker::sweep(s))
            .map_err(ServiceError::Runtime)?;
    }
    if let Some(url) = config.database.clone() {
        let s = shared.clone();
        std::thread::Builder::new()
            .name("ciro-listen".into())
            .spawn(move || {
                store::postgres::listen(
                    &url,
                    &[store::db::QUEUED, store::db::CHANGES],
                    &s.stopping,
                    |channel, payload| {
                        if channel == store::db::QUEUED {
                            s.wake.notify();
                        } else {
                            s.store.announce(payload.parse().unwrap_or(store::ANY_JOB));
                        }
                    },
                )
            })
            .map_err(ServiceError::Runtime)?;
    }
    Ok((shared, lock))
}

/// The proving workers, and the heartbeat that renews their leases, when there are any.
fn spawn_workers(shared: &Arc<Shared>) -> Result<Vec<JoinHandle<()>>, ServiceError> {
    let n = shared.config.workers;
    let mut handles = (0..n)
        .map(|i| {
            let s = shared.clone();
            std::thread::Builder::new()
                .name(format!("ciro-worker-{i}"))
                .spawn(move || worker::run(s, i))
                .map_err(ServiceError::Runtime)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if n > 0 {
        let s = shared.clone();
        handles.push(
            std::thread::Builder::new()
                .name("ciro-heartbeat".into())
                .spawn(move || worker::heartbeat(s))
                .map_err(ServiceError::Runtime)?,
        );
    }
    Ok(handles)
}

impl Shared {
    /// Asks every part of this process to stop: workers take no new job, live event streams
    /// end, idle workers wake to see it.
    pub fn request_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify();
    }
}

/// Resolves once a stop is asked for (through `rx`, or by Ctrl-C or SIGTERM when `signals`),
/// having asked `shared` to stop: before an HTTP server drains its open requests, so that live
/// event streams end and workers take no new job.
async fn stop_requested(
    rx: tokio::sync::oneshot::Receiver<()>,
    signals: bool,
    shared: Arc<Shared>,
) {
    tokio::select! {
        _ = rx => {}
        _ = terminate(), if signals => {}
    }
    shared.request_stop();
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
