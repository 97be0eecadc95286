//! Scale-out as an operator deploys it: a throwaway PostgreSQL, `ciro serve --database …
//! --no-workers` (the API alone) and `ciro worker` processes sharing the data directory's
//! models. A worker SIGKILLed mid-proof has its job finished by another once the lease runs
//! out, charged once; workers, and a job being proved, ride out the database going away and
//! coming back; SIGTERM lets a worker finish its job before it exits.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ciro_client::types::{Health, Job, JobRequest, JobState};
use ciro_client::Client;
use ciro_test_support::{fixtures, Postgres, Service};

const LEASE_S: &str = "3";

fn fresh_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ciro"))
}

fn api(data: &Path, url: &str) -> Service {
    Service::start(
        bin(),
        data,
        &["--database", url, "--no-workers", "--lease-s", LEASE_S],
    )
}

/// A `ciro worker` process, killed when dropped.
struct Worker {
    child: Child,
    id: String,
}

impl Worker {
    fn start(data: &Path, url: &str) -> Worker {
        let mut child = Command::new(bin())
            .args([
                "--json",
                "worker",
                "--concurrency",
                "1",
                "--lease-s",
                LEASE_S,
            ])
            .args(["--database", url, "--data-dir"])
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ciro worker starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        Worker {
            child,
            id: v["worker"].as_str().unwrap().to_string(),
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < limit, "worker {} did not exit", self.id);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn account(svc: &Service, name: &str) -> Client {
    let mut c = Client::new(&svc.url, None);
    c.signup(Some(name)).unwrap();
    c.faucet("starknet", "CIRO", 1_000_000).unwrap();
    c.faucet("polygon", "CIRO", 1_000_000).unwrap();
    c
}

fn input(model: &str) -> serde_json::Value {
    let text =
        std::fs::read_to_string(fixtures().join("models").join(model).join("input.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn submit(c: &Client, model: &str, chain: &str, proof_system: &str) -> Job {
    c.submit_job(
        &JobRequest {
            model: model.into(),
            input: Some(input(model)),
            image_base64: None,
            chain: chain.into(),
            token: None,
            proof_system: Some(proof_system.into()),
        },
        None,
    )
    .unwrap()
}

fn wait_final(c: &Client, id: i64, limit: Duration) -> Job {
    let start = Instant::now();
    loop {
        let j = c.job(id).unwrap();
        if j.state.is_final() {
            return j;
        }
        assert!(start.elapsed() < limit, "job {id} still {}", j.state);
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_state(c: &Client, id: i64, state: JobState, limit: Duration) {
    let start = Instant::now();
    while c.job(id).unwrap().state != state {
        assert!(start.elapsed() < limit, "job {id} never {state}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn health(svc: &Service) -> Health {
    ureq::get(&format!("{}/v1/health", svc.url))
        .call()
        .unwrap()
        .into_json()
        .unwrap()
}

fn metrics(svc: &Service) -> String {
    ureq::get(&format!("{}/metrics", svc.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap()
}

/// The states a job's live event stream shows, to its end (a minute at most).
fn follow_events(svc: &Service, c: &Client, id: i64) -> Vec<String> {
    let r = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build()
        .get(&format!("{}/v1/jobs/{id}/events", svc.url))
        .set("Authorization", &format!("Bearer {}", c.api_key().unwrap()))
        .call()
        .unwrap();
    let mut states = Vec::new();
    for line in std::io::BufReader::new(r.into_reader()).lines() {
        let line = line.expect("the stream ends after the final state, within a minute");
        if let Some(data) = line.strip_prefix("data:") {
            let j: serde_json::Value = serde_json::from_str(data.trim()).unwrap();
            states.push(j["state"].as_str().unwrap().to_string());
        }
    }
    states
}

/// The worker proving `job`, as the workers report in the health document.
fn holder(svc: &Service, job: i64, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        if let Some(w) = health(svc)
            .workers
            .into_iter()
            .find(|w| w.current_jobs.contains(&job))
        {
            return w.id;
        }
        assert!(start.elapsed() < limit, "no worker reports job {job}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Each account paid for exactly its verified jobs and holds nothing.
fn assert_charged_once(c: &Client, jobs: &[Job]) {
    let account = c.account().unwrap();
    for b in &account.balances {
        let spent: i64 = jobs
            .iter()
            .filter(|j| j.chain == b.chain && j.token == b.token && j.state == JobState::Verified)
            .map(|j| j.price_micro)
            .sum();
        assert_eq!(b.spent_micro, spent, "{b:?}");
        assert_eq!(b.held_micro, 0, "{b:?}");
        assert_eq!(b.available_micro + b.spent_micro, b.credited_micro, "{b:?}");
    }
}

#[test]
fn three_worker_processes_prove_the_apis_jobs_and_ride_out_a_database_restart() {
    let pg = Postgres::start();
    let url = pg.fresh_database();
    let data = fresh_dir("scale-three");
    let svc = api(&data, &url);
    let mut workers: Vec<Worker> = (0..3).map(|_| Worker::start(&data, &url)).collect();
    let clients: Vec<Client> = (0..3).map(|i| account(&svc, &format!("u{i}"))).collect();

    let h = health(&svc);
    assert_eq!(h.store, "postgres");
    let start = Instant::now();
    while health(&svc).workers.len() < 3 {
        assert!(start.elapsed() < Duration::from_secs(20), "{h:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut ids = health(&svc)
        .workers
        .iter()
        .map(|w| w.id.clone())
        .collect::<Vec<_>>();
    ids.sort();
    let mut started: Vec<String> = workers.iter().map(|w| w.id.clone()).collect();
    started.sort();
    assert_eq!(ids, started, "the health report lists the three workers");

    // Live events cross processes: the API node's stream hears the workers' commits.
    let first = submit(&clients[0], "mlp_small", "starknet", "stwo").id;
    let states = follow_events(&svc, &clients[0], first);
    assert_eq!(
        states.last().map(String::as_str),
        Some("verified"),
        "{states:?}"
    );
    assert!(states.iter().any(|s| s == "proving"), "{states:?}");

    let jobs: Vec<(usize, i64)> = (0..9)
        .map(|i| {
            (
                i % 3,
                submit(&clients[i % 3], "mlp_small", "starknet", "stwo").id,
            )
        })
        .collect();
    let done: Vec<(usize, Job)> = std::iter::once(&(0, first))
        .chain(&jobs)
        .map(|&(c, id)| (c, wait_final(&clients[c], id, Duration::from_secs(300))))
        .collect();
    for (_, j) in &done {
        assert_eq!(j.state, JobState::Verified, "{j:?}");
        assert_eq!(j.attempts, 1, "{j:?}");
    }
    for (i, c) in clients.iter().enumerate() {
        let mine: Vec<Job> = done
            .iter()
            .filter(|(k, _)| *k == i)
            .map(|(_, j)| j.clone())
            .collect();
        assert_charged_once(c, &mine);
    }
    let m = metrics(&svc);
    for line in [
        "ciro_jobs{state=\"verified\"} 10",
        "ciro_workers 3",
        "ciro_queue_depth 0",
        "ciro_prove_seconds_count{model=\"mlp_small\",proof_system=\"stwo\"} 10",
    ] {
        assert!(m.contains(line), "{line} not in\n{m}");
    }

    // The database goes away (every connection cut) and comes back.
    pg.down();
    std::thread::sleep(Duration::from_secs(2));
    pg.up();
    let again: Vec<(usize, i64)> = (0..3)
        .map(|i| {
            // The API's pool replaces its broken connections on the first requests.
            let start = Instant::now();
            loop {
                match clients[i].submit_job(
                    &JobRequest {
                        model: "mlp_small".into(),
                        input: Some(input("mlp_small")),
                        image_base64: None,
                        chain: "starknet".into(),
                        token: None,
                        proof_system: Some("stwo".into()),
                    },
                    None,
                ) {
                    Ok(j) => break (i, j.id),
                    Err(e) => {
                        assert!(start.elapsed() < Duration::from_secs(20), "{e}");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        })
        .collect();
    for (c, id) in again {
        let j = wait_final(&clients[c], id, Duration::from_secs(120));
        assert_eq!(j.state, JobState::Verified, "{j:?}");
    }
    for w in &mut workers {
        assert!(
            w.child.try_wait().unwrap().is_none(),
            "worker {} exited when the database went away",
            w.id
        );
    }
}

#[test]
fn jobs_survive_a_database_restart_and_a_killed_worker_and_sigterm_lets_a_worker_finish() {
    let pg = Postgres::start();
    let url = pg.fresh_database();
    let data = fresh_dir("scale-kill");
    let svc = api(&data, &url);
    let c = account(&svc, "k");
    // The halo2 SRS and keys exist before any worker makes its own (one SRS for all).
    c.verifying_key("cnn_lenet", "halo2").unwrap();
    let mut workers: Vec<Worker> = (0..2).map(|_| Worker::start(&data, &url)).collect();

    // The database restarts while a job is being proved: the job still ends verified (by its
    // worker, or by the other once the lease ran out), charged once.
    let job0 = submit(&c, "cnn_lenet", "polygon", "halo2");
    wait_state(&c, job0.id, JobState::Proving, Duration::from_secs(120));
    pg.down();
    std::thread::sleep(Duration::from_secs(2));
    pg.up();
    let done0 = wait_final(&c, job0.id, Duration::from_secs(300));
    assert_eq!(done0.state, JobState::Verified, "{done0:?}");
    assert_charged_once(&c, std::slice::from_ref(&done0));

    // SIGKILL mid-proof: the other worker takes the job once the lease runs out.
    let job = submit(&c, "cnn_lenet", "polygon", "halo2");
    wait_state(&c, job.id, JobState::Proving, Duration::from_secs(120));
    let victim = holder(&svc, job.id, Duration::from_secs(30));
    let v = workers.iter().position(|w| w.id == victim).unwrap();
    workers[v].signal("-KILL");
    workers[v].wait_exit(Duration::from_secs(10));
    let done = wait_final(&c, job.id, Duration::from_secs(300));
    assert_eq!(done.state, JobState::Verified, "{done:?}");
    assert_eq!(done.attempts, 2, "proved again after the kill: {done:?}");
    assert_charged_once(&c, &[done0.clone(), done.clone()]);
    workers.remove(v);

    // SIGTERM while proving: the worker finishes the job, reports itself gone, and exits 0.
    let job2 = submit(&c, "cnn_lenet", "polygon", "halo2");
    wait_state(&c, job2.id, JobState::Proving, Duration::from_secs(120));
    assert_eq!(
        holder(&svc, job2.id, Duration::from_secs(30)),
        workers[0].id
    );
    workers[0].signal("-TERM");
    let status = workers[0].wait_exit(Duration::from_secs(300));
    assert!(status.success(), "{status}");
    let done2 = c.job(job2.id).unwrap();
    assert_eq!(
        done2.state,
        JobState::Verified,
        "finished before exiting: {done2:?}"
    );
    assert_eq!(done2.attempts, 1, "{done2:?}");
    assert!(
        health(&svc).workers.iter().all(|w| w.id != workers[0].id),
        "a worker that stopped cleanly leaves the health report"
    );
    assert_charged_once(&c, &[done0, done, done2]);
}
