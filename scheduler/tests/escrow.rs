//! The escrow contract on real local nodes (anvil, chain ids 1 and 137): a user opens a job by
//! paying in; only a proof the model's verifier accepts, about the job's own input, pays the
//! operator; a tampered proof or another input's proof reverts and the funds stay; after the
//! deadline the user reclaims; jobs settle independently; only the operator settles. Prints the
//! gas figures.

use std::path::Path;

use ciro_prover::halo2_backend::InputVisibility;
use ciro_prover::public::flatten_inputs;
use ciro_prover::{Halo2Backend, ProofSystem};
use ciro_scheduler::chain::primitives::{keccak256, Address, B256, U256};
use ciro_scheduler::chain::{self, ChainError, EscrowState, Node, Terms};
use ciro_test_support::{self as common, Anvil};
use ciro_verifier::evm;

struct Proved {
    vk: ciro_prover::Halo2VerifyingKey,
    /// (input commitment, calldata) for two different inputs.
    jobs: Vec<([u8; 32], Vec<u8>)>,
}

/// mlp_mnist with a hashed input (the on-chain case), proved on two inputs.
fn prove_two_inputs() -> Proved {
    let backend = Halo2Backend::new(Path::new(env!("CARGO_TARGET_TMPDIR")).join("srs"))
        .with_inputs(InputVisibility::Hashed);
    let model = common::compile_fixture("mlp_mnist");
    let input = common::sample_input(&model, "mlp_mnist");
    let (pk, vk) = backend.setup(&model).expect("halo2 setup");
    let mut other = input.clone();
    other[0].data[0] += 1;
    let jobs = [input, other]
        .iter()
        .map(|x| {
            let bundle = backend.prove(&pk, x, &mut |_| {}).expect("proof");
            let flat = flatten_inputs(&vk.inputs, x).unwrap();
            let commitment = evm::input_commitment(&vk, &flat).unwrap();
            (commitment, evm::calldata(&bundle).unwrap())
        })
        .collect();
    Proved { vk, jobs }
}

fn rt() -> chain::Runtime {
    chain::runtime().unwrap()
}

async fn node(anvil: &Anvil, i: usize) -> Node {
    Node::connect(&anvil.url, Some(chain::parse_key(Anvil::KEYS[i]).unwrap()))
        .await
        .unwrap()
}

fn reverted(r: Result<chain::TxInfo, ChainError>, reason: &str) {
    match r {
        Err(ChainError::Reverted { reason: got, .. }) => {
            assert!(
                got.contains(reason),
                "reverted with {got:?}, expected {reason:?}"
            )
        }
        other => panic!("expected a revert with {reason:?}, got {other:?}"),
    }
}

/// Moves the node's clock on (anvil's `evm_increaseTime`) and mines a block.
async fn advance(node: &Node, seconds: u64) {
    use alloy::providers::Provider;
    use chain::primitives::U64;
    let p = node.provider();
    let _: serde_json::Value = p
        .raw_request("evm_increaseTime".into(), (U64::from(seconds),))
        .await
        .unwrap();
    let _: serde_json::Value = p.raw_request("evm_mine".into(), ()).await.unwrap();
}

struct Gas {
    /// The first job opened: the escrow's token balance goes from zero to non-zero.
    first_open: u64,
    /// A job opened while the escrow holds others.
    open: u64,
    settle: u64,
}

/// The whole contract flow on one node.
async fn flow(anvil: &Anvil, proved: &Proved) -> Gas {
    let operator = node(anvil, 0).await;
    let user = node(anvil, 1).await;
    let other_user = node(anvil, 2).await;
    assert_eq!(operator.chain_id, anvil.chain_id);
    let dep = operator
        .deploy_dev()
        .await
        .expect("deploy the escrow and tokens");

    let verifier = evm::evm_verifier(&proved.vk).expect("verifier");
    let (verifier_at, _) = operator.deploy_verifier(&verifier).await.unwrap();
    let model = B256::from(evm::model_word(&proved.vk).unwrap());
    let layout = evm::instance_layout(&proved.vk);
    assert_eq!(layout, (1, 10), "a hashed input and ten logits");
    reverted(
        user.register(dep.escrow, model, verifier_at, layout).await,
        "only the operator",
    );
    // A verifier whose proofs show nothing of their input would settle any job of its model.
    reverted(
        operator
            .register(dep.escrow, B256::repeat_byte(9), verifier_at, (0, 10))
            .await,
        "show its input",
    );
    operator
        .register(dep.escrow, model, verifier_at, layout)
        .await
        .unwrap();
    reverted(
        operator
            .register(dep.escrow, model, verifier_at, layout)
            .await,
        "already registered",
    );
    assert_eq!(
        operator.registered(dep.escrow, model).await.unwrap(),
        Some((verifier_at, 1, 10))
    );

    let usdc = dep.usdc;
    let price = chain::units(ciro_scheduler::pricing::Token::Usdc, 25_000);
    for u in [&user, &other_user] {
        u.mint(usdc, u.from, U256::from(1_000_000u64))
            .await
            .unwrap();
        u.approve(usdc, dep.escrow, U256::MAX).await.unwrap();
    }
    let now = operator.time().await.unwrap();
    let terms = |r: u64, who: Address, input: [u8; 32], deadline: u64| Terms {
        r#ref: chain::job_ref(r as i64),
        user: who,
        token: usdc,
        price,
        deadline,
        model,
        input: B256::from(input),
    };
    let balance = |a: Address| {
        let n = &operator;
        async move { n.token_balance(usdc, a).await.unwrap() }
    };
    let (input_a, proof_a) = &proved.jobs[0];
    let (input_b, proof_b) = &proved.jobs[1];

    // Open: the price moves into the escrow.
    let t1 = terms(1, user.from, *input_a, now + 3600);
    reverted(other_user.open(dep.escrow, &t1).await, "another user");
    let opened = user.open(dep.escrow, &t1).await.unwrap();
    assert_eq!(balance(dep.escrow).await, price);
    assert_eq!(balance(user.from).await, U256::from(1_000_000u64) - price);
    reverted(user.open(dep.escrow, &t1).await, "already open");
    let id1 = chain::job_id(&t1);
    assert_eq!(
        operator.escrow_state(dep.escrow, id1).await.unwrap(),
        EscrowState::Open
    );
    let seen = operator.opened(dep.escrow, 0, opened.block).await.unwrap();
    assert!(seen
        .iter()
        .any(|o| o.id == id1 && o.terms == t1 && o.tx == opened.hash));

    // A tampered proof, another input's proof, a non-operator: reverted, the funds stay.
    let mut tampered = proof_a.clone();
    let at = tampered.len() - 100;
    tampered[at] ^= 0x10;
    reverted(
        operator.settle(dep.escrow, &t1, &tampered).await,
        "rejects the proof",
    );
    let mut changed_output = proof_a.clone();
    changed_output[32 * 11 - 1] ^= 1;
    reverted(
        operator.settle(dep.escrow, &t1, &changed_output).await,
        "rejects the proof",
    );
    reverted(
        operator.settle(dep.escrow, &t1, proof_b).await,
        "another input",
    );
    reverted(
        operator.settle(dep.escrow, &t1, &proof_a[..32 * 5]).await,
        "too short",
    );
    reverted(
        user.settle(dep.escrow, &t1, proof_a).await,
        "only the operator",
    );
    assert_eq!(balance(dep.escrow).await, price);
    assert_eq!(balance(operator.from).await, U256::ZERO);

    // A second job of the same user and one of another user, open at the same time.
    let t2 = terms(2, user.from, *input_b, now + 3600);
    let t3 = terms(3, other_user.from, *input_a, now + 3600);
    let open_again = user.open(dep.escrow, &t2).await.unwrap();
    other_user.open(dep.escrow, &t3).await.unwrap();
    assert_eq!(balance(dep.escrow).await, price * U256::from(3));

    // The right proof settles: the operator is paid, the output hash recorded; once only.
    let settled = operator.settle(dep.escrow, &t1, proof_a).await.unwrap();
    let outputs = keccak256(&proof_a[32..32 * 11]);
    assert_eq!(
        operator.escrow_state(dep.escrow, id1).await.unwrap(),
        EscrowState::Settled(outputs)
    );
    assert_eq!(balance(operator.from).await, price);
    reverted(operator.settle(dep.escrow, &t1, proof_a).await, "not open");
    reverted(operator.refund(dep.escrow, &t1).await, "not open");
    assert_eq!(
        operator.closing_tx(dep.escrow, id1, 0).await.unwrap(),
        Some(settled.clone())
    );
    // Job 3 (the same input as job 1, another user) and job 2 settle on their own.
    operator.settle(dep.escrow, &t3, proof_a).await.unwrap();
    reverted(
        operator.settle(dep.escrow, &t2, proof_a).await,
        "another input",
    );
    operator.settle(dep.escrow, &t2, proof_b).await.unwrap();
    assert_eq!(balance(operator.from).await, price * U256::from(3));
    assert_eq!(balance(dep.escrow).await, U256::ZERO);

    // The operator may refund early; the user only after the deadline, when settling is over.
    let t4 = terms(4, user.from, *input_a, now + 600);
    user.open(dep.escrow, &t4).await.unwrap();
    reverted(user.refund(dep.escrow, &t4).await, "has not passed");
    advance(&operator, 700).await;
    reverted(
        operator.settle(dep.escrow, &t4, proof_a).await,
        "deadline has passed",
    );
    let before = balance(user.from).await;
    user.refund(dep.escrow, &t4).await.unwrap();
    assert_eq!(balance(user.from).await, before + price);
    assert_eq!(
        operator
            .escrow_state(dep.escrow, chain::job_id(&t4))
            .await
            .unwrap(),
        EscrowState::Refunded
    );
    let later = operator.time().await.unwrap();
    let t5 = terms(5, user.from, *input_a, later + 600);
    user.open(dep.escrow, &t5).await.unwrap();
    let before = balance(user.from).await;
    operator.refund(dep.escrow, &t5).await.unwrap();
    assert_eq!(balance(user.from).await, before + price);
    assert_eq!(balance(dep.escrow).await, U256::ZERO);
    Gas {
        first_open: opened.gas,
        open: open_again.gas,
        settle: settled.gas,
    }
}

#[test]
fn escrow_pays_the_operator_only_for_a_valid_proof_of_the_jobs_input() {
    let proved = prove_two_inputs();
    let rt = rt();
    let mut rows = Vec::new();
    for (name, chain_id) in [("ethereum", 1), ("polygon", 137)] {
        let anvil = Anvil::start(chain_id);
        let gas = rt.block_on(flow(&anvil, &proved));
        assert!(gas.open <= 80_000, "{name}: opening took {} gas", gas.open);
        assert!(
            gas.first_open <= 100_000,
            "{name}: the first open took {} gas",
            gas.first_open
        );
        assert!(
            gas.settle <= 500_000,
            "{name}: settling took {} gas",
            gas.settle
        );
        rows.push(format!(
            "| {name} ({chain_id}) | mlp_mnist, hashed input | {} | {} | {} |",
            gas.open, gas.first_open, gas.settle
        ));
    }
    eprintln!("| chain | model | open gas | first open gas (empty escrow) | settle gas (escrow + verifier) |");
    eprintln!("|---|---|---:|---:|---:|");
    for r in rows {
        eprintln!("{r}");
    }
}
