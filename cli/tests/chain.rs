//! Paying on chain, end to end on real local nodes (anvil, chain ids 1 and 137): `ciro chain
//! deploy`, `ciro serve --chain … --operator-key …`, and `ciro-cli submit-job --pay-with
//! ethereum --wallet … --rpc …`: the user's escrow is opened from their wallet, the service
//! proves, settles with the proof, and the on-chain balances move by exactly the price. An
//! escrow opened with other terms is refunded by the service; a service killed between sending
//! and confirming a settlement settles exactly once after a restart.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use ciro_scheduler::chain::primitives::{Address, B256, U256};
use ciro_scheduler::chain::{self, EscrowState, Node, Terms};
use ciro_test_support::{fixtures, Anvil, Service};

const OPERATOR: usize = 0;

fn fresh_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn key_file(dir: &Path, name: &str, i: usize) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("0x{}\n", Anvil::KEYS[i])).unwrap();
    p
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: Output) -> Value {
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)))
}

fn ciro(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ciro"))
        .args(args)
        .output()
        .expect("ciro runs")
}

fn cli(svc: &Service, home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ciro-cli"))
        .args(args)
        .current_dir(home)
        .env("CIRO_SERVER", &svc.url)
        .env("CIRO_CONFIG", home.join("config.json"))
        .env_remove("CIRO_API_KEY")
        .env_remove("CIRO_WALLET_KEY")
        .env_remove("CIRO_RPC_URL")
        .output()
        .expect("ciro-cli runs")
}

/// `ciro chain deploy` on a node: the deployment file and its addresses.
fn deploy(anvil: &Anvil, dir: &Path, operator_key: &Path) -> (PathBuf, chain::Deployment) {
    let out = dir.join(format!("contracts-{}.json", anvil.chain_id));
    let d: chain::Deployment = serde_json::from_value(json(ciro(&[
        "chain",
        "deploy",
        "--rpc",
        &anvil.url,
        "--operator-key",
        &operator_key.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--json",
    ])))
    .unwrap();
    assert_eq!(d.chain_id, anvil.chain_id);
    (out, d)
}

fn rt() -> chain::Runtime {
    chain::runtime().unwrap()
}

fn node(anvil: &Anvil, i: usize) -> Node {
    rt().block_on(Node::connect(
        &anvil.url,
        Some(chain::parse_key(Anvil::KEYS[i]).unwrap()),
    ))
    .unwrap()
}

fn balance(n: &Node, token: Address, who: Address) -> U256 {
    rt().block_on(n.token_balance(token, who)).unwrap()
}

/// Mints the user `amount` USDC units on a node.
fn fund(anvil: &Anvil, d: &chain::Deployment, user: usize, amount: u64) {
    let n = node(anvil, user);
    rt().block_on(n.mint(d.usdc, n.from, U256::from(amount)))
        .unwrap();
}

fn pay_args<'a>(model: &'a str, chain: &'a str, wallet: &'a str, rpc: &'a str) -> Vec<&'a str> {
    vec![
        "submit-job",
        "--model",
        model,
        "--input",
        if model == "mlp_mnist" {
            "mnist.json"
        } else {
            "input.json"
        },
        "--pay-with",
        chain,
        "--token",
        "USDC",
        "--wallet",
        wallet,
        "--rpc",
        rpc,
    ]
}

fn job_of(svc: &Service, home: &Path, id: i64) -> Value {
    json(cli(
        svc,
        home,
        &["job-status", "--job-id", &id.to_string(), "--json"],
    ))
}

fn wait_payment(svc: &Service, home: &Path, id: i64, status: &str) -> Value {
    let start = Instant::now();
    loop {
        let j = job_of(svc, home, id);
        if j["payment"]["status"] == status {
            return j;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "job {id}'s escrow never became {status}: {j}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn setup_home(name: &str, svc: &Service) -> PathBuf {
    let home = fresh_dir(name);
    std::fs::copy(
        fixtures().join("models/mlp_small/input.json"),
        home.join("input.json"),
    )
    .unwrap();
    std::fs::copy(
        fixtures().join("models/mlp_mnist/input.json"),
        home.join("mnist.json"),
    )
    .unwrap();
    json(cli(svc, &home, &["signup", "--save", "--json"]));
    home
}

#[test]
fn jobs_paid_through_the_escrow_settle_with_their_proof_on_both_chains() {
    let eth = Anvil::start(1);
    let pol = Anvil::start(137);
    let dir = fresh_dir("chain-flow");
    let op_key = key_file(&dir, "operator.key", OPERATOR);
    let wallet = key_file(&dir, "wallet.key", 1);
    let wallet = wallet.display().to_string();
    let (eth_file, eth_d) = deploy(&eth, &dir, &op_key);
    let svc = Service::start(
        Path::new(env!("CARGO_BIN_EXE_ciro")),
        &dir.join("data"),
        &[
            "--workers",
            "1",
            "--chain",
            &format!("ethereum={}", eth.url),
            "--contracts",
            &format!("ethereum={}", eth_file.display()),
            "--chain",
            &format!("polygon={}", pol.url),
            "--operator-key",
            &op_key.display().to_string(),
            "--min-deadline-s",
            "600",
            "--halo2-inputs",
            "hashed",
        ],
    );
    let home = setup_home("chain-flow-home", &svc);
    let start_balance = 1_000_000_000u64;
    fund(&eth, &eth_d, 1, start_balance);
    let op = node(&eth, OPERATOR);
    let user = node(&eth, 1);

    // A job on Ethereum: opened from the wallet, proved, settled with the proof.
    let mut args = pay_args("mlp_mnist", "ethereum", &wallet, &eth.url);
    args.extend(["--wait", "--json"]);
    let job = json(cli(&svc, &home, &args));
    assert_eq!(job["state"], "verified", "{job}");
    let p = &job["payment"];
    assert_eq!(p["status"], "settled", "{job}");
    assert_eq!(p["escrow"], format!("{:#x}", eth_d.escrow));
    let price: U256 = p["price_units"].as_str().unwrap().parse().unwrap();
    assert!(price > U256::ZERO);
    assert!(p["settle_tx"].as_str().unwrap().starts_with("0x"));
    let gas = p["settle_gas"].as_u64().unwrap();
    eprintln!("mlp_mnist (hashed input) settled through the service: {gas} gas");
    assert!(gas <= 500_000, "settling took {gas} gas");
    assert_eq!(balance(&op, eth_d.usdc, op.from), price);
    assert_eq!(
        balance(&op, eth_d.usdc, user.from),
        U256::from(start_balance) - price
    );
    assert_eq!(balance(&op, eth_d.usdc, eth_d.escrow), U256::ZERO);

    // The user reads the escrow from the node, not from the service.
    let id = job["id"].as_i64().unwrap();
    let st = json(cli(
        &svc,
        &home,
        &[
            "chain",
            "status",
            "--job-id",
            &id.to_string(),
            "--rpc",
            &eth.url,
            "--json",
        ],
    ));
    assert_eq!(st["on_chain"], "settled", "{st}");
    assert_eq!(st["output_hash"], p["output_hash"]);
    let shown = text(&cli(
        &svc,
        &home,
        &["job-status", "--job-id", &id.to_string()],
    ));
    assert!(shown.contains("paid from the escrow"), "{shown}");
    assert!(shown.contains("settled in: 0x"), "{shown}");

    // A second job of the same user (another model) settles on its own.
    let mut args = pay_args("mlp_small", "ethereum", &wallet, &eth.url);
    args.extend(["--wait", "--json"]);
    let job2 = json(cli(&svc, &home, &args));
    let p2 = &job2["payment"];
    assert_eq!(p2["status"], "settled", "{job2}");
    assert_ne!(p2["escrow_id"], p["escrow_id"]);
    eprintln!(
        "mlp_small (hashed input) settled through the service: {} gas",
        p2["settle_gas"]
    );
    let price2: U256 = p2["price_units"].as_str().unwrap().parse().unwrap();
    assert_eq!(balance(&op, eth_d.usdc, op.from), price + price2);

    // Polygon: the service deployed its own contracts there at start.
    let j = json(cli(&svc, &home, &["list-models", "--json"]));
    assert!(j.to_string().contains("mlp_small"));
    let pol_job = {
        // No USDC on Polygon yet: submitted, refused before paying, with what to do.
        let o = cli(
            &svc,
            &home,
            &pay_args("mlp_small", "polygon", &wallet, &pol.url),
        );
        assert!(!o.status.success());
        let t = text(&o);
        assert!(t.contains("is submitted but not paid"), "{t}");
        let id: i64 = t
            .split("--job-id ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.trim_end_matches(['`', ')', ':']).parse().ok())
            .unwrap_or_else(|| panic!("no job id in {t}"));
        id
    };
    let pj = job_of(&svc, &home, pol_job);
    assert_eq!(pj["state"], "awaiting_payment");
    let pol_usdc: Address = pj["payment"]["token_address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let pol_escrow: Address = pj["payment"]["escrow"].as_str().unwrap().parse().unwrap();
    let pol_user = node(&pol, 1);
    rt().block_on(pol_user.mint(pol_usdc, pol_user.from, U256::from(start_balance)))
        .unwrap();

    // An escrow opened with other terms (another input) is refunded at once by the service.
    let mut wrong = Terms {
        r#ref: pj["payment"]["ref"].as_str().unwrap().parse().unwrap(),
        user: pol_user.from,
        token: pol_usdc,
        price: U256::ZERO,
        deadline: rt().block_on(pol_user.time()).unwrap() + 3600,
        model: pj["payment"]["model"].as_str().unwrap().parse().unwrap(),
        input: B256::repeat_byte(7),
    };
    wrong.price = pj["payment"]["price_units"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    rt().block_on(async {
        pol_user.approve(pol_usdc, pol_escrow, U256::MAX).await?;
        pol_user.open(pol_escrow, &wrong).await
    })
    .unwrap();
    let start = Instant::now();
    while rt()
        .block_on(pol_user.escrow_state(pol_escrow, chain::job_id(&wrong)))
        .unwrap()
        != EscrowState::Refunded
    {
        assert!(start.elapsed() < Duration::from_secs(60), "never refunded");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        balance(&pol_user, pol_usdc, pol_user.from),
        U256::from(start_balance)
    );
    assert_eq!(job_of(&svc, &home, pol_job)["state"], "awaiting_payment");

    // Paid properly (`ciro-cli chain pay`), it settles on Polygon.
    json(cli(
        &svc,
        &home,
        &[
            "chain",
            "pay",
            "--job-id",
            &pol_job.to_string(),
            "--wallet",
            &wallet,
            "--rpc",
            &pol.url,
            "--json",
        ],
    ));
    let done = wait_payment(&svc, &home, pol_job, "settled");
    assert_eq!(done["payment"]["chain_id"], 137);
    let pol_op = node(&pol, OPERATOR);
    let pol_price: U256 = done["payment"]["price_units"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(balance(&pol_op, pol_usdc, pol_op.from), pol_price);
    assert_eq!(balance(&pol_op, pol_usdc, pol_escrow), U256::ZERO);
}

#[test]
fn a_service_killed_between_sending_and_confirming_a_settlement_settles_once() {
    let eth = Anvil::start(1);
    let dir = fresh_dir("chain-crash");
    let op_key = key_file(&dir, "operator.key", OPERATOR);
    let wallet = key_file(&dir, "wallet.key", 2);
    let wallet = wallet.display().to_string();
    let (eth_file, d) = deploy(&eth, &dir, &op_key);
    // `ciro chain mint`: 1,000 test USDC (10^9 units) to the user's wallet.
    let user = format!("{:#x}", chain::parse_key(Anvil::KEYS[2]).unwrap().address());
    json(ciro(&[
        "chain",
        "mint",
        "--rpc",
        &eth.url,
        "--contracts",
        &eth_file.display().to_string(),
        "--token",
        "USDC",
        "--to",
        &user,
        "--amount",
        "1000",
        "--operator-key",
        &op_key.display().to_string(),
        "--json",
    ]));
    assert_eq!(
        balance(&node(&eth, 2), d.usdc, user.parse().unwrap()),
        U256::from(1_000_000_000u64)
    );
    let data = dir.join("data");
    let chain_arg = format!("ethereum={}", eth.url);
    let contracts_arg = format!("ethereum={}", eth_file.display());
    let key_arg = op_key.display().to_string();
    let args = [
        "--workers",
        "1",
        "--chain",
        &chain_arg,
        "--contracts",
        &contracts_arg,
        "--operator-key",
        &key_arg,
        "--min-deadline-s",
        "600",
    ];
    let bin = Path::new(env!("CARGO_BIN_EXE_ciro"));
    let mut svc = Service::start_with_env(
        bin,
        &data,
        &args,
        &[("CIRO_FAULT_ABORT_AFTER_SETTLE_SEND", "1")],
    );
    let home = setup_home("chain-crash-home", &svc);
    let job = json(cli(&svc, &home, &{
        let mut a = pay_args("mlp_small", "ethereum", &wallet, &eth.url);
        a.push("--json");
        a
    }));
    let id = job["id"].as_i64().unwrap();
    // The service proves, sends the settlement, and dies before it reads the receipt.
    let start = Instant::now();
    while svc.child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the service never reached the fault"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let op = node(&eth, OPERATOR);
    let price: U256 = job["payment"]["price_units"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // The settlement was mined; the service's store does not know yet.
    assert_eq!(balance(&op, d.usdc, op.from), price);
    drop(svc);

    let svc = Service::start(bin, &data, &args);
    let done = wait_payment(&svc, &home, id, "settled");
    assert!(done["payment"]["settle_tx"]
        .as_str()
        .unwrap()
        .starts_with("0x"));
    // Paid once: the operator holds one price, the escrow nothing.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(balance(&op, d.usdc, op.from), price);
    assert_eq!(balance(&op, d.usdc, d.escrow), U256::ZERO);
    assert_eq!(job_of(&svc, &home, id)["payment"]["status"], "settled");
}

/// Proofs that hide their input would let one proof settle every job of its model: a service
/// that settles on chain refuses to start with them.
#[test]
fn escrow_payments_refuse_proofs_that_hide_their_input() {
    let dir = fresh_dir("chain-private");
    let op_key = key_file(&dir, "operator.key", OPERATOR);
    let o = ciro(&[
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--data-dir",
        &dir.join("data").display().to_string(),
        "--chain",
        "ethereum=http://127.0.0.1:9",
        "--operator-key",
        &op_key.display().to_string(),
        "--halo2-inputs",
        "private",
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("not private"), "{}", text(&o));
}
