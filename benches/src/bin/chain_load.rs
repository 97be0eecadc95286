//! Load run of on-chain payments: a local anvil node (chain id 1), an in-process service that
//! settles on it (`--chain ethereum=…`, halo2 with hashed inputs), and `--users` users (anvil's
//! development accounts) each submitting `--jobs-per-user` jobs at once, opening each job's
//! escrow from their own wallet and waiting for its settlement. At the end every on-chain
//! balance must equal what the service recorded: each user's tokens went down by exactly the
//! prices of their settled jobs, the operator's went up by their sum, the escrow holds nothing,
//! and no job was settled twice or lost.
//!
//! `cargo build --release -p ciro-benches --bin chain_load && target/release/chain_load
//!  --users 10 --jobs-per-user 5`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ciro_client::types::{JobRequest, JobState};
use ciro_scheduler::chain::primitives::{Address, U256};
use ciro_scheduler::chain::{self, Node};
use ciro_scheduler::settler::{terms_of, ChainConfig};
use ciro_test_support::{fixtures, Anvil};

struct Args {
    users: usize,
    jobs_per_user: usize,
    workers: usize,
    model: String,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        users: 10,
        jobs_per_user: 5,
        workers: 2,
        model: "mlp_small".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--users" => a.users = val()?.parse()?,
            "--jobs-per-user" => a.jobs_per_user = val()?.parse()?,
            "--workers" => a.workers = val()?.parse()?,
            "--model" => a.model = val()?,
            other => {
                bail!("unknown flag {other}; flags: --users --jobs-per-user --workers --model")
            }
        }
    }
    if a.users == 0 || a.users + 1 > Anvil::KEYS.len() {
        bail!("--users is 1 to {}", Anvil::KEYS.len() - 1);
    }
    Ok(a)
}

/// One job, from submission to settlement.
struct Done {
    user: usize,
    price: U256,
    open_gas: u64,
    settle_gas: u64,
    /// From opening the escrow to the service's settlement being recorded.
    open_to_settled: Duration,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A job on Ethereum, paid in USDC, proved with halo2.
fn request(model: &str, input: &serde_json::Value) -> JobRequest {
    JobRequest {
        model: model.into(),
        input: Some(input.clone()),
        chain: "ethereum".into(),
        token: Some("USDC".into()),
        proof_system: Some("halo2".into()),
        ..Default::default()
    }
}

fn run_user(
    url: &str,
    rpc: &str,
    user: usize,
    jobs: usize,
    model: &str,
    input: &serde_json::Value,
) -> Result<Vec<Done>> {
    let rt = chain::runtime()?;
    let mut api = ciro_client::Client::new(url, None);
    api.signup(Some(&format!("load-{user}")))?;
    let wallet = rt.block_on(Node::connect(
        rpc,
        Some(chain::parse_key(Anvil::KEYS[user]).map_err(anyhow::Error::msg)?),
    ))?;
    // Submit every job first, then pay for each: the service proves while the others open.
    let mut submitted = Vec::new();
    for _ in 0..jobs {
        let job = api.submit_job(&request(model, input), None)?;
        let mut p = job.payment.context("the service quoted no escrow")?;
        p.user = Some(format!("{:#x}", wallet.from));
        p.deadline = Some(rt.block_on(wallet.time())? + p.min_deadline_s + 600);
        let terms = terms_of(&p).map_err(anyhow::Error::msg)?;
        let escrow: Address = p.escrow.parse()?;
        let opened = rt.block_on(wallet.open(escrow, &terms))?;
        submitted.push((job.id, terms.price, opened.gas, Instant::now()));
    }
    let mut done = Vec::new();
    for (id, price, open_gas, opened_at) in submitted {
        let deadline = Instant::now() + Duration::from_secs(1800);
        loop {
            let j = api.job(id)?;
            if matches!(j.state, JobState::Failed | JobState::Cancelled) {
                bail!("job {id} {}: {:?}", j.state, j.error);
            }
            let p = j.payment.context("no payment")?;
            if p.status == "settled" {
                done.push(Done {
                    user,
                    price,
                    open_gas,
                    settle_gas: p.settle_gas.unwrap_or(0),
                    open_to_settled: opened_at.elapsed(),
                });
                break;
            }
            if p.status == "refunded" {
                bail!("job {id} was refunded");
            }
            if Instant::now() > deadline {
                bail!("job {id} never settled");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(done)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let anvil = Anvil::start(1);
    let rt = chain::runtime()?;
    let operator = rt.block_on(Node::connect(
        &anvil.url,
        Some(chain::parse_key(Anvil::KEYS[0]).map_err(anyhow::Error::msg)?),
    ))?;
    let d = rt.block_on(operator.deploy_dev())?;
    let start_balance = U256::from(1_000_000_000_000u64);
    for user in 1..=args.users {
        let w = rt.block_on(Node::connect(
            &anvil.url,
            Some(chain::parse_key(Anvil::KEYS[user]).map_err(anyhow::Error::msg)?),
        ))?;
        rt.block_on(w.mint(d.usdc, w.from, start_balance))?;
        rt.block_on(w.approve(d.usdc, d.escrow, U256::MAX))?;
    }

    let data = std::env::temp_dir().join(format!("ciro-chain-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut config = ciro_scheduler::Config::new(&data);
    config.addr = "127.0.0.1:0".parse()?;
    config.workers = args.workers;
    config.warm_models = false;
    config.rate_per_minute = u32::MAX;
    config.halo2_inputs = ciro_prover::halo2_backend::InputVisibility::Hashed;
    config.operator_key = Some(Anvil::KEYS[0].into());
    config.min_deadline = Duration::from_secs(600);
    config.chains = vec![ChainConfig {
        chain: ciro_scheduler::pricing::Chain::Ethereum,
        rpc_url: anvil.url.clone(),
        deployment: Some(d.clone()),
    }];
    let svc = ciro_scheduler::start(config)?;
    let url = svc.url();
    let input: serde_json::Value = serde_json::from_slice(&std::fs::read(
        fixtures()
            .join("models")
            .join(&args.model)
            .join("input.json"),
    )?)?;
    // Registers the model's verifier before the clock starts (a first job does it otherwise).
    {
        let mut api = ciro_client::Client::new(&url, None);
        api.signup(Some("warm-up"))?;
        let j = api.submit_job(&request(&args.model, &input), None)?;
        api.cancel(j.id)?;
    }

    let results = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let threads: Vec<_> = (1..=args.users)
        .map(|user| {
            let (url, rpc, model, input) = (
                url.clone(),
                anvil.url.clone(),
                args.model.clone(),
                input.clone(),
            );
            let jobs = args.jobs_per_user;
            let results = results.clone();
            std::thread::spawn(move || {
                let r = run_user(&url, &rpc, user, jobs, &model, &input);
                results.lock().unwrap().push(r);
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a user thread panicked"))?;
    }
    let wall = started.elapsed();
    let mut done = Vec::new();
    for r in results.lock().unwrap().drain(..) {
        done.extend(r?);
    }
    let expected = args.users * args.jobs_per_user;
    if done.len() != expected {
        bail!("{} of {expected} jobs settled", done.len());
    }

    // Every on-chain balance against the service's record.
    let mut paid_total = U256::ZERO;
    for user in 1..=args.users {
        let who = chain::parse_key(Anvil::KEYS[user])
            .map_err(anyhow::Error::msg)?
            .address();
        let paid: U256 = done
            .iter()
            .filter(|j| j.user == user)
            .map(|j| j.price)
            .sum();
        paid_total += paid;
        let now = rt.block_on(operator.token_balance(d.usdc, who))?;
        if now != start_balance - paid {
            bail!(
                "user {user}: {now} on chain, expected {}",
                start_balance - paid
            );
        }
    }
    let op = rt.block_on(operator.token_balance(d.usdc, operator.from))?;
    let held = rt.block_on(operator.token_balance(d.usdc, d.escrow))?;
    if op != paid_total || held != U256::ZERO {
        bail!("operator holds {op} (expected {paid_total}), the escrow {held} (expected 0)");
    }
    svc.stop();

    let mut lat: Vec<f64> = done
        .iter()
        .map(|j| j.open_to_settled.as_secs_f64())
        .collect();
    lat.sort_by(f64::total_cmp);
    let mut open_gas: Vec<f64> = done.iter().map(|j| j.open_gas as f64).collect();
    open_gas.sort_by(f64::total_cmp);
    let mut settle_gas: Vec<f64> = done.iter().map(|j| j.settle_gas as f64).collect();
    settle_gas.sort_by(f64::total_cmp);
    println!(
        "| users | jobs | workers | wall s | jobs/s | open→settled p50 s | p90 s | open gas p50 | settle gas p50 | balances |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    println!(
        "| {} | {} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | all equal the service's record; escrow empty |",
        args.users,
        done.len(),
        args.workers,
        wall.as_secs_f64(),
        done.len() as f64 / wall.as_secs_f64(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&open_gas, 0.5),
        percentile(&settle_gas, 0.5),
    );
    Ok(())
}
