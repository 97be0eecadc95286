//! The HTTP server loop: hyper's HTTP/1 connections with a header timeout, a cap on open
//! connections (in all and per client address), and graceful shutdown. `axum::serve` sets no
//! header timeout, so 300 half-sent requests could hold 300 connections for as long as they liked.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// Connection-level limits.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// Open connections in all; past it, new ones wait in the listen backlog.
    pub max_connections: usize,
    /// Open connections from one client address; past it, new ones are closed at once.
    pub max_connections_per_ip: usize,
    /// A client must send its request head within this.
    pub header_timeout: Duration,
    /// Every request but an upload is answered (or refused with 503) within this, body
    /// included.
    pub request_timeout: Duration,
    /// A model upload (read, compiled and set up) within this.
    pub upload_timeout: Duration,
    /// Requests that decode images or compile models, running at once; more get 503.
    pub max_expensive: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 512,
            max_connections_per_ip: 64,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            upload_timeout: Duration::from_secs(900),
            max_expensive: 4,
        }
    }
}

/// Open connections per client address.
#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

impl PerIp {
    fn enter(&self, ip: IpAddr, max: usize) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_default();
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn leave(&self, ip: IpAddr) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

/// Serves `app` until `shutdown` resolves, then lets open requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_ip = Arc::new(PerIp::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, remote) = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    crate::worker::log(&format!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let ip = remote.ip();
        if !per_ip.enter(ip, limits.max_connections_per_ip) {
            drop(stream);
            continue;
        }
        let svc = app
            .clone()
            .map_request(move |mut req: axum::extract::Request| {
                req.extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(remote));
                req
            })
            .map_request(|req: hyper::Request<hyper::body::Incoming>| {
                req.map(axum::body::Body::new)
            });
        let per_ip = per_ip.clone();
        let mut stop_rx = stop_rx.clone();
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop_rx.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.as_mut().await;
                }
            }
            per_ip.leave(ip);
            drop(permit);
        });
    }
    let _ = stop_tx.send(true);
    // Open connections finish their request; idle ones close now.
    let all = limits.max_connections.max(1) as u32;
    let _ = tokio::time::timeout(limits.request_timeout, permits.acquire_many(all)).await;
}
