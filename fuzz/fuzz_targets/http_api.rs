//! Any request to the service's HTTP API, as `METHOD PATH\nHeader: value\n...\n\nBODY`,
//! through the real router (with its guard: time limits, panic containment) on a service in a
//! scratch folder with one funded account (key `ciro_fuzzkey`). Every answer below 500 is
//! fine; a 500, a panic, or an error that is not JSON is a finding.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ciro_model_compiler::Limits;
use ciro_scheduler::pricing::{Chain, Token};
use libfuzzer_sys::fuzz_target;

mod caught_panics;
use caught_panics::quiet_caught_panics;
use tower::ServiceExt;

struct Fixture {
    _running: ciro_scheduler::Running,
    router: axum::Router,
    rt: tokio::runtime::Runtime,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ciro-fuzz-http-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut c = ciro_scheduler::Config::new(&dir);
        c.addr = "127.0.0.1:0".parse().unwrap();
        c.workers = 0;
        c.warm_models = false;
        c.dev_faucet = true;
        c.rate_per_minute = u32::MAX;
        c.limits = Limits {
            max_macs: 1 << 16,
            max_values: 1 << 14,
        };
        c.max_halo2_k = 12;
        let running = ciro_scheduler::start(c).expect("the service starts");
        let shared = running.shared.clone();
        let id = shared
            .store
            .create_account("fuzz", "ciro_fuzzkey")
            .expect("account");
        shared
            .store
            .credit(id, Chain::Starknet, Token::Ciro, 1_000_000_000, i64::MAX)
            .expect("credit");
        Fixture {
            router: ciro_scheduler::api::router(shared),
            _running: running,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
        }
    })
}

fn request(data: &[u8]) -> Option<Request<Body>> {
    let split = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.lines();
    let (method, path) = lines.next()?.split_once(' ')?;
    let mut req = Request::builder().method(method).uri(path);
    for line in lines {
        let (name, value) = line.split_once(": ")?;
        req = req.header(name, value);
    }
    req.body(Body::from(body.to_vec())).ok()
}

fuzz_target!(|data: &[u8]| {
    quiet_caught_panics();
    let f = fixture();
    let Some(req) = request(data) else {
        return;
    };
    let resp =
        f.rt.block_on(f.router.clone().oneshot(req))
            .expect("the router is infallible");
    let status = resp.status();
    assert!(
        status != StatusCode::INTERNAL_SERVER_ERROR,
        "a request made the service fail"
    );
    if status.is_client_error() || status.is_server_error() {
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            ct.starts_with("application/json"),
            "{status} answered as {ct:?}"
        );
    }
});
