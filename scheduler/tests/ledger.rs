//! Property test of the ledger: after any sequence of credits, submissions, claims, proofs,
//! verifications, failures, cancellations and crash recoveries, no balance is negative,
//! every account's money adds up, and each verified job was charged exactly once.

use ciro_scheduler::pricing::{Chain, Token, CHAINS};
use ciro_scheduler::store::{JobState, NewJob, Store};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Step {
    Credit {
        account: usize,
        chain: usize,
        amount: i64,
    },
    Submit {
        account: usize,
        chain: usize,
        price: i64,
        key: Option<u8>,
    },
    Claim,
    Prove,
    Verify {
        job: usize,
    },
    Fail {
        job: usize,
    },
    Cancel {
        account: usize,
        job: usize,
    },
    Crash,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..2usize, 0..3usize, 1..5_000i64).prop_map(|(account, chain, amount)| Step::Credit {
            account,
            chain,
            amount
        }),
        (
            0..2usize,
            0..3usize,
            1..3_000i64,
            proptest::option::of(0..3u8)
        )
            .prop_map(|(account, chain, price, key)| Step::Submit {
                account,
                chain,
                price,
                key
            }),
        Just(Step::Claim),
        Just(Step::Prove),
        (0..20usize).prop_map(|job| Step::Verify { job }),
        (0..20usize).prop_map(|job| Step::Fail { job }),
        (0..2usize, 0..20usize).prop_map(|(account, job)| Step::Cancel { account, job }),
        Just(Step::Crash),
    ]
}

fn check(store: &Store, accounts: &[i64]) {
    for &a in accounts {
        let jobs = store.jobs_of(a, 10_000).unwrap();
        for b in store.balances(a).unwrap() {
            assert!(b.available_micro >= 0 && b.held_micro >= 0 && b.spent_micro >= 0);
            assert_eq!(
                b.available_micro + b.held_micro + b.spent_micro,
                b.credited_micro,
                "money appeared or vanished: {b:?}"
            );
            let mine = jobs
                .iter()
                .filter(|j| j.doc.chain == b.chain && j.doc.token == b.token);
            let held: i64 = mine
                .clone()
                .filter(|j| !j.doc.state.is_final())
                .map(|j| j.doc.price_micro)
                .sum();
            let spent: i64 = mine
                .clone()
                .filter(|j| j.doc.state == JobState::Verified)
                .map(|j| j.doc.price_micro)
                .sum();
            assert_eq!(b.held_micro, held, "holds do not match the open jobs");
            assert_eq!(
                b.spent_micro, spent,
                "charges do not match the verified jobs"
            );
            let total = |k| store.ledger_total(a, b.chain, b.token, k).unwrap();
            assert_eq!(total("credit"), b.credited_micro);
            assert_eq!(total("capture"), b.spent_micro);
            assert_eq!(
                total("hold"),
                b.held_micro + total("capture") + total("release")
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn balances_add_up_after_any_sequence(steps in proptest::collection::vec(step(), 1..60)) {
        let store = Store::open_in_memory().unwrap();
        let accounts = [
            store.create_account("a", "key-a").unwrap(),
            store.create_account("b", "key-b").unwrap(),
        ];
        let mut jobs: Vec<i64> = Vec::new();
        for s in steps {
            match s {
                Step::Credit { account, chain, amount } => {
                    store.credit(accounts[account], CHAINS[chain], Token::Ciro, amount, i64::MAX).unwrap();
                }
                Step::Submit { account, chain, price, key } => {
                    let key = key.map(|k| format!("k{k}"));
                    let r = store.create_job(&NewJob {
                        account: accounts[account],
                        model: "m",
                        model_hash: "h",
                        input: "[[1.0]]",
                        chain: CHAINS[chain],
                        token: Token::Ciro,
                        price_micro: price,
                        proof_system: "stwo",
                        idempotency_key: key.as_deref(),
                    });
                    // Refusals (no balance, a reused key with another request) change nothing.
                    if let Ok((job, true)) = r {
                        jobs.push(job.doc.id);
                    }
                }
                Step::Claim => {
                    store.claim_next().unwrap();
                }
                Step::Prove => {
                    if let Some(j) = store.claim_next().unwrap() {
                        store.record_proof(j.doc.id, b"proof", &serde_json::json!({}), 1.0, 1.0).unwrap();
                    }
                }
                Step::Verify { job } => {
                    if let Some(&id) = jobs.get(job) {
                        // Twice: a repeated capture must be a no-op.
                        store.record_verified(id, 1.0).unwrap();
                        store.record_verified(id, 1.0).unwrap();
                    }
                }
                Step::Fail { job } => {
                    if let Some(&id) = jobs.get(job) {
                        store.record_failure(id, "test").unwrap();
                    }
                }
                Step::Cancel { account, job } => {
                    if let Some(&id) = jobs.get(job) {
                        let _ = store.cancel(accounts[account], id);
                    }
                }
                Step::Crash => {
                    store.recover(3).unwrap();
                }
            }
            check(&store, &accounts);
        }
    }
}

#[test]
fn a_job_is_charged_once_even_if_verified_again_after_a_crash() {
    let store = Store::open_in_memory().unwrap();
    let a = store.create_account("a", "k").unwrap();
    store
        .credit(a, Chain::Starknet, Token::Usdc, 1_000, i64::MAX)
        .unwrap();
    let new = NewJob {
        account: a,
        model: "m",
        model_hash: "h",
        input: "[]",
        chain: Chain::Starknet,
        token: Token::Usdc,
        price_micro: 400,
        proof_system: "stwo",
        idempotency_key: Some("once"),
    };
    let (job, created) = store.create_job(&new).unwrap();
    assert!(created);
    let (same, created) = store.create_job(&new).unwrap();
    assert!(!created);
    assert_eq!(same.doc.id, job.doc.id);
    // Crash while proving: back to the queue, then proved and verified.
    store.claim_next().unwrap().unwrap();
    assert_eq!(store.recover(3).unwrap(), (1, 0));
    let j = store.claim_next().unwrap().unwrap();
    assert_eq!(j.doc.attempts, 2);
    store
        .record_proof(j.doc.id, b"p", &serde_json::json!({}), 1.0, 1.0)
        .unwrap();
    store.record_verified(j.doc.id, 1.0).unwrap();
    store.record_verified(j.doc.id, 1.0).unwrap();
    store.record_failure(j.doc.id, "late").unwrap();
    let b = &store.balances(a).unwrap()[0];
    assert_eq!(
        (b.available_micro, b.held_micro, b.spent_micro),
        (600, 0, 400)
    );
    assert_eq!(store.job(j.doc.id).unwrap().doc.state, JobState::Verified);
    // A job that keeps killing the service fails after max_attempts, and is released.
    let (k, _) = store
        .create_job(&NewJob {
            idempotency_key: None,
            ..new
        })
        .unwrap();
    for _ in 0..3 {
        store.claim_next().unwrap().unwrap();
        store.recover(3).unwrap();
    }
    let k = store.job(k.doc.id).unwrap();
    assert_eq!(k.doc.state, JobState::Failed);
    assert!(k.doc.error.unwrap().contains("3 times"));
    let b = &store.balances(a).unwrap()[0];
    assert_eq!(
        (b.available_micro, b.held_micro, b.spent_micro),
        (600, 0, 400)
    );
}

#[test]
fn the_faucet_cap_is_checked_before_the_balance_moves() {
    let store = Store::open_in_memory().unwrap();
    let a = store.create_account("a", "k").unwrap();
    store
        .credit(a, Chain::Starknet, Token::Ciro, 600, 1_000)
        .unwrap();
    let e = store
        .credit(a, Chain::Starknet, Token::Ciro, 600, 1_000)
        .unwrap_err();
    assert!(e.to_string().contains("at most 1000"), "{e}");
    let b = &store.balances(a).unwrap()[0];
    assert_eq!((b.available_micro, b.credited_micro), (600, 600));
}

#[test]
fn one_account_backlog_does_not_starve_another() {
    let store = Store::open_in_memory().unwrap();
    let a = store.create_account("a", "ka").unwrap();
    let b = store.create_account("b", "kb").unwrap();
    for acc in [a, b] {
        store
            .credit(acc, Chain::Starknet, Token::Ciro, 1_000_000, i64::MAX)
            .unwrap();
    }
    let submit = |account| {
        store
            .create_job(&NewJob {
                account,
                model: "m",
                model_hash: "h",
                input: "[]",
                chain: Chain::Starknet,
                token: Token::Ciro,
                price_micro: 10,
                proof_system: "stwo",
                idempotency_key: None,
            })
            .unwrap()
            .0
            .doc
            .id
    };
    let a_jobs: Vec<i64> = (0..3).map(|_| submit(a)).collect();
    let b_job = submit(b);
    let order: Vec<i64> = (0..4)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(5));
            store.claim_next().unwrap().unwrap().doc.id
        })
        .collect();
    assert_eq!(order, vec![a_jobs[0], b_job, a_jobs[1], a_jobs[2]]);
}
