//! `ciro-scheduler`: the Ciro service. One process: an HTTP API (axum on tokio), a SQLite job
//! store in a data directory, a model registry, and in-process proving workers. Users submit a
//! job, the service holds its price, proves the inference, verifies its own proof, then
//! captures the payment; a failed or cancelled job releases the hold.
//!
//! Crash safety: every state change is a SQLite transaction (WAL, `synchronous = FULL`). On
//! start, jobs that were proving go back to the queue, so a killed service loses nothing and
//! charges nothing twice.

pub mod api;
pub mod pricing;
pub mod registry;
pub mod store;
pub mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

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
    /// Compile and set up the built-in models at start, in the background.
    pub warm_models: bool,
    /// Stop on Ctrl-C or SIGTERM (for `ciro serve`; off for services embedded in tests).
    pub handle_signals: bool,
    /// The KZG SRS folder for halo2 jobs (see `ciro_prover::halo2_backend`).
    pub srs_dir: PathBuf,
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
}

/// What the API handlers and the workers share.
pub struct Shared {
    pub store: Store,
    pub registry: Registry,
    pub wake: Wake,
    pub stopping: AtomicBool,
}

/// A running service.
pub struct Running {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
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
        for h in self.workers.drain(..) {
            let _ = h.join();
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
    )?;
    let shared = Arc::new(Shared {
        store,
        registry,
        wake: Wake::default(),
        stopping: AtomicBool::new(false),
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
            for name in s.registry.names() {
                if s.stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Err(e) = s.registry.get(&name) {
                    worker::log(&format!("model {name} is unavailable: {e}"));
                }
            }
        });
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
                };
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
                {
                    worker::log(&format!("server error: {e}"));
                }
            })
        })
        .map_err(ServiceError::Runtime)?;
    Ok(Running {
        addr,
        shared,
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
