//! Load run of the Ciro service on loopback: an in-process service, many concurrent clients
//! each submitting jobs and following them to the end (live events), every proof
//! downloaded and verified offline, and the ledger checked. Then a sequential run that measures
//! the service's own overhead per job (everything but witness, prove and verify).
//!
//! `cargo run --release -p ciro-benches --bin service_load -- --clients 20 --jobs 200`
//!
//! With `--worker-processes N` the service is scaled out as an operator deploys it: a throwaway
//! PostgreSQL store, the API alone in this process, and N `ciro worker` processes (one job at
//! a time each; `--ciro PATH`, default the `ciro` binary beside this one):
//! `cargo build --release -p ciro-cli -p ciro-benches &&
//!  target/release/service_load --clients 20 --jobs 500 --worker-processes 2`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ciro_prover::{ProofBundle, StwoVerifyingKey};
use serde_json::{json, Value};

struct Args {
    clients: usize,
    jobs: usize,
    workers: usize,
    worker_processes: usize,
    ciro: Option<std::path::PathBuf>,
    model: String,
    sequential: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        clients: 20,
        jobs: 200,
        workers: 1,
        worker_processes: 0,
        ciro: None,
        model: "mlp_small".into(),
        sequential: 30,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--clients" => a.clients = val()?.parse()?,
            "--jobs" => a.jobs = val()?.parse()?,
            "--workers" => a.workers = val()?.parse()?,
            "--worker-processes" => a.worker_processes = val()?.parse()?,
            "--ciro" => a.ciro = Some(val()?.into()),
            "--model" => a.model = val()?,
            "--sequential" => a.sequential = val()?.parse()?,
            other => bail!(
                "unknown flag {other}; flags: --clients --jobs --workers --worker-processes --ciro --model --sequential"
            ),
        }
    }
    Ok(a)
}

struct Http {
    url: String,
    agent: ureq::Agent,
}

impl Http {
    fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Result<ureq::Response> {
        let mut r = self.agent.request(method, &format!("{}{path}", self.url));
        if let Some(k) = key {
            r = r.set("Authorization", &format!("Bearer {k}"));
        }
        let res = match body {
            Some(b) => r.send_json(b),
            None => r.call(),
        };
        res.map_err(|e| anyhow::anyhow!("{method} {path}: {e}"))
    }

    fn json(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value> {
        Ok(self.call(method, path, key, body)?.into_json()?)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Submits one job and follows it through its live events (as the clients do; polling if the
/// service refuses a stream); returns (latency, final job).
fn run_job(http: &Http, key: &str, model: &str, input: &Value) -> Result<(Duration, Value)> {
    let start = Instant::now();
    let job = http.json(
        "POST",
        "/v1/jobs",
        Some(key),
        Some(&json!({ "model": model, "input": input, "chain": "starknet" })),
    )?;
    let id = job["id"].as_i64().context("no job id")?;
    let done = |j: &Value| {
        matches!(
            j["state"].as_str(),
            Some("verified" | "failed" | "cancelled")
        )
    };
    if let Ok(r) = http.call("GET", &format!("/v1/jobs/{id}/events"), Some(key), None) {
        use std::io::BufRead;
        for line in std::io::BufReader::new(r.into_reader()).lines() {
            if let Some(data) = line?.strip_prefix("data:") {
                let j: Value = serde_json::from_str(data.trim())?;
                if done(&j) {
                    return Ok((start.elapsed(), j));
                }
            }
        }
    }
    loop {
        let j = http.json("GET", &format!("/v1/jobs/{id}"), Some(key), None)?;
        if done(&j) {
            return Ok((start.elapsed(), j));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let data = std::env::temp_dir().join(format!("ciro-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut config = ciro_scheduler::Config::new(&data);
    config.addr = "127.0.0.1:0".parse()?;
    config.workers = args.workers;
    // Scaled out: PostgreSQL, the API here, the workers in their own processes.
    let pg = (args.worker_processes > 0).then(ciro_test_support::Postgres::start);
    let mut worker_processes = Vec::new();
    if let Some(pg) = &pg {
        let url = pg.fresh_database();
        config.database = Some(url.clone());
        config.workers = 0;
        let ciro = match &args.ciro {
            Some(p) => p.clone(),
            None => std::env::current_exe()?
                .parent()
                .context("no folder")?
                .join("ciro"),
        };
        for _ in 0..args.worker_processes {
            worker_processes.push(WorkerProcess(
                std::process::Command::new(&ciro)
                    .args([
                        "worker",
                        "--concurrency",
                        "1",
                        "--database",
                        &url,
                        "--data-dir",
                    ])
                    .arg(&data)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .with_context(|| format!("cannot start {} worker", ciro.display()))?,
            ));
        }
    }
    config.warm_models = false;
    config.dev_faucet = true;
    // The load generator is one client submitting as fast as it can.
    config.rate_per_minute = u32::MAX;
    config.http.max_expensive = 64;
    let svc = ciro_scheduler::start(config)?;
    let http = Arc::new(Http {
        url: svc.url(),
        agent: ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(600))
            .build(),
    });
    let model = args.model.clone();
    let info = http.json("GET", &format!("/v1/models/{model}"), None, None)?;
    let price = info["price_micro"].as_i64().context("no price")?;
    let vk: StwoVerifyingKey = serde_json::from_slice(&{
        let mut b = Vec::new();
        std::io::Read::read_to_end(
            &mut http
                .call("GET", &format!("/v1/models/{model}/vk"), None, None)?
                .into_reader(),
            &mut b,
        )?;
        b
    })?;
    let input: Value = {
        let shape: Vec<usize> = serde_json::from_value(info["inputs"][0]["shape"].clone())?;
        let n: usize = shape.iter().product();
        let [lo, hi]: [f64; 2] = serde_json::from_value(info["inputs"][0]["range"].clone())?;
        json!({ "input_data": [(0..n).map(|i| lo + (hi - lo) * ((i * 37 % 101) as f64 / 100.0)).collect::<Vec<_>>()] })
    };

    let db_cpu_before = pg.as_ref().map_or(0.0, |p| p.cpu_seconds());
    let workers_cpu =
        |w: &[WorkerProcess]| -> f64 { w.iter().map(|p| process_cpu_seconds(p.0.id())).sum() };
    let workers_cpu_before = workers_cpu(&worker_processes);

    // Concurrent clients, one account each.
    let per_client = args.jobs.div_ceil(args.clients);
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let t0 = Instant::now();
    let mut handles = Vec::new();
    let mut keys = Vec::new();
    for c in 0..args.clients {
        let acct = http.json(
            "POST",
            "/v1/accounts",
            None,
            Some(&json!({ "name": format!("client{c}") })),
        )?;
        let key = acct["api_key"].as_str().context("no key")?.to_string();
        http.json(
            "POST",
            "/v1/faucet",
            Some(&key),
            Some(&json!({ "chain": "starknet", "token": "CIRO", "amount_micro": 100_000_000 })),
        )?;
        keys.push(key.clone());
        let (http, latencies, errors, model, input, vk) = (
            http.clone(),
            latencies.clone(),
            errors.clone(),
            model.clone(),
            input.clone(),
            vk.clone(),
        );
        let n = per_client.min(args.jobs.saturating_sub(c * per_client));
        handles.push(std::thread::spawn(move || {
            for _ in 0..n {
                match run_job(&http, &key, &model, &input) {
                    Ok((lat, j)) if j["state"] == "verified" => {
                        latencies.lock().unwrap().push(lat.as_secs_f64() * 1e3);
                        let id = j["id"].as_i64().unwrap_or(0);
                        let check = http
                            .call("GET", &format!("/v1/jobs/{id}/proof"), Some(&key), None)
                            .and_then(|r| {
                                let mut b = Vec::new();
                                std::io::Read::read_to_end(&mut r.into_reader(), &mut b)?;
                                Ok(ProofBundle::from_bytes(&b)?)
                            })
                            .and_then(|b| Ok(ciro_verifier::verify(&vk, &b)?));
                        if let Err(e) = check {
                            errors
                                .lock()
                                .unwrap()
                                .push(format!("job {id}: proof rejected: {e}"));
                        }
                    }
                    Ok((_, j)) => errors
                        .lock()
                        .unwrap()
                        .push(format!("job ended {}: {}", j["state"], j["error"])),
                    Err(e) => errors.lock().unwrap().push(e.to_string()),
                }
            }
        }));
    }
    for h in handles {
        let _ = h.join();
    }
    let wall = t0.elapsed().as_secs_f64();
    let db_cpu = pg.as_ref().map_or(0.0, |p| p.cpu_seconds()) - db_cpu_before;
    let worker_cpu = workers_cpu(&worker_processes) - workers_cpu_before;
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_by(f64::total_cmp);
    let errors = errors.lock().unwrap().clone();

    // Ledger: every account paid exactly its verified jobs.
    let mut ledger_ok = true;
    let mut verified_total = 0;
    let mut reproved = 0;
    for key in &keys {
        let jobs = http.json("GET", "/v1/jobs?limit=1000", Some(key), None)?;
        let verified = jobs["jobs"]
            .as_array()
            .map_or(0, |j| j.iter().filter(|j| j["state"] == "verified").count())
            as i64;
        verified_total += verified;
        reproved += jobs["jobs"].as_array().map_or(0, |j| {
            j.iter()
                .filter(|j| j["attempts"].as_i64() > Some(1))
                .count()
        });
        let acct = http.json("GET", "/v1/account", Some(key), None)?;
        let b = &acct["balances"][0];
        let (avail, held, spent, credited) = (
            b["available_micro"].as_i64().unwrap_or(-1),
            b["held_micro"].as_i64().unwrap_or(-1),
            b["spent_micro"].as_i64().unwrap_or(-1),
            b["credited_micro"].as_i64().unwrap_or(-1),
        );
        ledger_ok &= held == 0 && spent == verified * price && avail + held + spent == credited;
    }

    // Sequential jobs on an idle service: the service's own overhead per job.
    let mut overhead = Vec::new();
    let mut proving = Vec::new();
    for _ in 0..args.sequential {
        let (_, j) = run_job(&http, &keys[0], &model, &input)?;
        let t = &j["timings"];
        let work = ["witness_ms", "prove_ms", "verify_ms"]
            .iter()
            .map(|k| t[k].as_f64().unwrap_or(0.0))
            .sum::<f64>();
        overhead.push(t["total_ms"].as_f64().unwrap_or(f64::NAN) - work);
        proving.push(work);
    }
    overhead.sort_by(f64::total_cmp);
    proving.sort_by(f64::total_cmp);

    println!("| metric | value |");
    println!("|---|---:|");
    println!("| model | {model} |");
    println!(
        "| clients × jobs | {} × {} = {} |",
        args.clients,
        per_client,
        lat.len() + errors.len()
    );
    if pg.is_some() {
        println!(
            "| proving workers | {} `ciro worker` processes, PostgreSQL store |",
            args.worker_processes
        );
    } else {
        println!(
            "| proving workers | {} (in-process, SQLite store) |",
            args.workers
        );
    }
    println!("| jobs proved more than once | {reproved} |");
    println!(
        "| jobs verified | {} / {} (proofs re-verified by the clients: {}) |",
        lat.len(),
        args.jobs,
        lat.len() - errors.iter().filter(|e| e.contains("rejected")).count()
    );
    println!("| request or job errors | {} |", errors.len());
    println!(
        "| ledger balances | {} ({} verified jobs charged) |",
        if ledger_ok { "yes" } else { "NO" },
        verified_total
    );
    println!("| wall time | {wall:.1} s |");
    println!("| throughput | {:.2} jobs/s |", lat.len() as f64 / wall);
    println!(
        "| latency p50 / p99 | {:.0} ms / {:.0} ms |",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    if pg.is_some() {
        let n = lat.len().max(1) as f64;
        println!(
            "| PostgreSQL CPU per job (load phase) | {:.1} ms |",
            db_cpu * 1e3 / n
        );
        println!(
            "| worker processes' CPU per job (load phase) | {:.0} ms |",
            worker_cpu * 1e3 / n
        );
    }
    println!(
        "| sequential: witness+prove+verify median | {:.1} ms |",
        percentile(&proving, 0.5)
    );
    println!(
        "| sequential: service overhead median (p99) | {:.1} ms ({:.1} ms) |",
        percentile(&overhead, 0.5),
        percentile(&overhead, 0.99)
    );
    for e in errors.iter().take(5) {
        eprintln!("error: {e}");
    }
    svc.stop();
    drop(worker_processes);
    drop(pg);
    let _ = std::fs::remove_dir_all(&data);
    if !errors.is_empty() || !ledger_ok {
        bail!("the load run failed");
    }
    Ok(())
}

/// A `ciro worker` process, stopped when dropped.
struct WorkerProcess(std::process::Child);

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU time (user + system) a process has used, in seconds (Linux; 0 elsewhere).
fn process_cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s[s.rfind(')')? + 2..].to_string();
            let f: Vec<f64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0.0))
                .collect();
            Some((f.get(11)? + f.get(12)?) / 100.0)
        })
        .unwrap_or(0.0)
}
