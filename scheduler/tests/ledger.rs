//! The store suite, run against both stores (SQLite in memory, and PostgreSQL in a throwaway
//! server): a property test of the ledger (after any sequence of credits, submissions, claims,
//! proofs, verifications, failures, cancellations and crash recoveries, no balance is negative,
//! every account's money adds up, and each verified job was charged exactly once), idempotency
//! keys, the state machine, leases and crash recovery, concurrent claims, and migrations.

use std::time::Duration;

use ciro_scheduler::pricing::{Chain, Token, CHAINS};
use ciro_scheduler::store::{Claim, JobState, NewJob, Opened, Store, WorkerInfo};
use ciro_test_support::Postgres;
use proptest::prelude::*;
use serde_json::json;

/// Runs a suite test on both stores: `NAME_sqlite` and `NAME_postgres`.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(&ciro_scheduler::store::Store::open_in_memory().unwrap()); })*
        }
        mod postgres {
            $(#[test] fn $name() {
                let pg = ciro_test_support::Postgres::start();
                super::$name(&ciro_scheduler::store::Store::connect(&pg.fresh_database(), 8).unwrap());
            })*
        }
    };
}

on_both_stores!(
    a_job_is_charged_once_even_if_verified_again_after_a_crash,
    the_faucet_cap_is_checked_before_the_balance_moves,
    one_account_backlog_does_not_starve_another,
    an_expired_lease_returns_the_job_and_its_old_worker_cannot_record_it,
    a_renewed_lease_keeps_the_job_and_a_handed_back_job_is_no_strike,
    concurrent_claims_never_give_one_job_to_two_workers,
    concurrent_submissions_with_one_idempotency_key_make_one_job,
    workers_report_and_leave,
    claims_respect_a_workers_proof_systems,
    an_escrow_paid_job_waits_for_its_escrow_and_holds_nothing_on_the_ledger,
);

const WORKERS: [&str; 2] = ["w1", "w2"];

fn claim(worker: &str) -> Claim<'_> {
    Claim {
        worker,
        lease: Duration::from_secs(60),
        proof_systems: &[],
    }
}

fn funded(store: &Store, name: &str) -> i64 {
    let a = store.create_account(name, &format!("key-{name}")).unwrap();
    store
        .credit(a, Chain::Starknet, Token::Ciro, 1_000_000, i64::MAX)
        .unwrap();
    a
}

/// A job of 10 micro-CIRO on Starknet, without an idempotency key.
fn new_job(account: i64, proof_system: &str) -> NewJob<'_> {
    NewJob {
        account,
        model: "m",
        model_hash: "h",
        input: "[]",
        chain: Chain::Starknet,
        token: Token::Ciro,
        price_micro: 10,
        proof_system,
        idempotency_key: None,
        escrow: None,
    }
}

fn submit(store: &Store, account: i64, proof_system: &str) -> i64 {
    store
        .create_job(&new_job(account, proof_system))
        .unwrap()
        .0
        .doc
        .id
}

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
    /// A claim by one of two workers, with a lease that lasts (or has already run out).
    Claim {
        worker: usize,
        expired: bool,
    },
    Prove {
        worker: usize,
    },
    Verify {
        job: usize,
        worker: usize,
    },
    /// A worker's own failure of a job (refused unless it holds the job).
    WorkerFails {
        job: usize,
        worker: usize,
    },
    /// Any process's sweep: expired leases back to the queue (or failed after 3 claims).
    Sweep,
    /// A stopping worker hands back every job it holds.
    HandBack {
        worker: usize,
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
        (0..2usize, any::<bool>()).prop_map(|(worker, expired)| Step::Claim { worker, expired }),
        (0..2usize).prop_map(|worker| Step::Prove { worker }),
        (0..20usize, 0..2usize).prop_map(|(job, worker)| Step::Verify { job, worker }),
        (0..20usize, 0..2usize).prop_map(|(job, worker)| Step::WorkerFails { job, worker }),
        Just(Step::Sweep),
        (0..2usize).prop_map(|worker| Step::HandBack { worker }),
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

fn run_steps(store: &Store, steps: Vec<Step>) {
    let accounts = [
        store.create_account("a", "key-a").unwrap(),
        store.create_account("b", "key-b").unwrap(),
    ];
    let mut jobs: Vec<i64> = Vec::new();
    for s in steps {
        match s {
            Step::Credit {
                account,
                chain,
                amount,
            } => {
                store
                    .credit(
                        accounts[account],
                        CHAINS[chain],
                        Token::Ciro,
                        amount,
                        i64::MAX,
                    )
                    .unwrap();
            }
            Step::Submit {
                account,
                chain,
                price,
                key,
            } => {
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
                    escrow: None,
                });
                // Refusals (no balance, a reused key with another request) change nothing.
                if let Ok((job, true)) = r {
                    jobs.push(job.doc.id);
                }
            }
            Step::Claim { worker, expired } => {
                store
                    .claim_next(&Claim {
                        lease: if expired {
                            Duration::ZERO
                        } else {
                            Duration::from_secs(600)
                        },
                        ..claim(WORKERS[worker])
                    })
                    .unwrap();
            }
            Step::Prove { worker } => {
                if let Some(j) = store.claim_next(&claim(WORKERS[worker])).unwrap() {
                    store
                        .record_proof(j.doc.id, WORKERS[worker], b"proof", &json!({}), 1.0, 1.0)
                        .unwrap();
                }
                // A worker that may have lost some of its jobs records a proof for each.
                for &id in &jobs {
                    store
                        .record_proof(id, WORKERS[worker], b"late", &json!({}), 1.0, 1.0)
                        .unwrap();
                }
            }
            Step::Verify { job, worker } => {
                if let Some(&id) = jobs.get(job) {
                    // Twice: a repeated capture must be a no-op.
                    store.record_verified(id, WORKERS[worker], 1.0).unwrap();
                    store.record_verified(id, WORKERS[worker], 1.0).unwrap();
                }
            }
            Step::WorkerFails { job, worker } => {
                if let Some(&id) = jobs.get(job) {
                    let before = store.job(id).unwrap().doc.state;
                    if store
                        .record_worker_failure(id, WORKERS[worker], "test")
                        .unwrap()
                    {
                        assert!(
                            matches!(before, JobState::Proving | JobState::Proved),
                            "a worker failed a job it did not hold: {before}"
                        );
                    }
                }
            }
            Step::Sweep => {
                store.requeue_expired(3).unwrap();
            }
            Step::HandBack { worker } => {
                let claims: Vec<(i64, String)> = jobs
                    .iter()
                    .map(|&id| (id, WORKERS[worker].to_string()))
                    .collect();
                store.hand_back(&claims).unwrap();
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
        check(store, &accounts);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn balances_add_up_after_any_sequence_sqlite(steps in proptest::collection::vec(step(), 1..60)) {
        run_steps(&Store::open_in_memory().unwrap(), steps);
    }
}

/// The same property on PostgreSQL: fewer cases (each makes a database), same steps.
#[test]
fn balances_add_up_after_any_sequence_postgres() {
    let pg = Postgres::start();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    });
    runner
        .run(&proptest::collection::vec(step(), 1..60), |steps| {
            run_steps(&Store::connect(&pg.fresh_database(), 2).unwrap(), steps);
            Ok(())
        })
        .unwrap();
}

fn a_job_is_charged_once_even_if_verified_again_after_a_crash(store: &Store) {
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
        escrow: None,
    };
    let (job, created) = store.create_job(&new).unwrap();
    assert!(created);
    let (same, created) = store.create_job(&new).unwrap();
    assert!(!created);
    assert_eq!(same.doc.id, job.doc.id);
    // Crash while proving: back to the queue, then proved and verified.
    store.claim_next(&claim("w1")).unwrap().unwrap();
    assert_eq!(store.recover(3).unwrap(), (1, 0));
    let j = store.claim_next(&claim("w2")).unwrap().unwrap();
    assert_eq!(j.doc.attempts, 2);
    assert!(store
        .record_proof(j.doc.id, "w2", b"p", &serde_json::json!({}), 1.0, 1.0)
        .unwrap());
    store.record_verified(j.doc.id, "w2", 1.0).unwrap();
    store.record_verified(j.doc.id, "w2", 1.0).unwrap();
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
        store.claim_next(&claim("w")).unwrap().unwrap();
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

fn the_faucet_cap_is_checked_before_the_balance_moves(store: &Store) {
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

fn one_account_backlog_does_not_starve_another(store: &Store) {
    let a = funded(store, "a");
    let b = funded(store, "b");
    let submit = |account| submit(store, account, "stwo");
    let a_jobs: Vec<i64> = (0..3).map(|_| submit(a)).collect();
    let b_job = submit(b);
    let order: Vec<i64> = (0..4)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(5));
            store.claim_next(&claim("w")).unwrap().unwrap().doc.id
        })
        .collect();
    assert_eq!(order, vec![a_jobs[0], b_job, a_jobs[1], a_jobs[2]]);
}

fn an_expired_lease_returns_the_job_and_its_old_worker_cannot_record_it(store: &Store) {
    let a = funded(store, "a");
    let id = submit(store, a, "stwo");
    let short = Claim {
        lease: Duration::from_millis(200),
        ..claim("lost")
    };
    assert_eq!(store.claim_next(&short).unwrap().unwrap().doc.id, id);
    assert_eq!(
        store.requeue_expired(3).unwrap(),
        (0, 0),
        "lease still running"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(store.requeue_expired(3).unwrap(), (1, 0));
    assert_eq!(store.requeue_expired(3).unwrap(), (0, 0), "once");
    let j = store.claim_next(&claim("other")).unwrap().unwrap();
    assert_eq!((j.doc.id, j.doc.attempts), (id, 2));
    // The lost worker comes back with a proof: not recorded, nothing charged.
    assert!(!store
        .record_proof(id, "lost", b"late", &serde_json::json!({}), 1.0, 1.0)
        .unwrap());
    store.record_verified(id, "lost", 1.0).unwrap();
    assert!(
        !store
            .record_worker_failure(id, "lost", "late error")
            .unwrap(),
        "a worker that lost the lease cannot fail the job its successor proves"
    );
    assert_eq!(store.job(id).unwrap().doc.state, JobState::Proving);
    assert_eq!(store.proof(id).unwrap(), None);
    assert_eq!(
        store
            .renew_leases(&[(id, "lost".into())], Duration::from_secs(9))
            .unwrap(),
        vec![id]
    );
    assert!(store
        .record_proof(id, "other", b"p", &serde_json::json!({}), 1.0, 1.0)
        .unwrap());
    store.record_verified(id, "other", 1.0).unwrap();
    assert_eq!(store.job(id).unwrap().doc.state, JobState::Verified);
    let b = &store.balances(a).unwrap()[0];
    assert_eq!((b.held_micro, b.spent_micro), (0, 10));
    // Three lost leases in a row: the job fails and its hold is released.
    let k = submit(store, a, "stwo");
    for _ in 0..3 {
        assert_eq!(store.claim_next(&short).unwrap().unwrap().doc.id, k);
        std::thread::sleep(Duration::from_millis(250));
        store.requeue_expired(3).unwrap();
    }
    let k = store.job(k).unwrap();
    assert_eq!(k.doc.state, JobState::Failed);
    assert!(k.doc.error.unwrap().contains("3 times"));
    let b = &store.balances(a).unwrap()[0];
    assert_eq!((b.held_micro, b.spent_micro), (0, 10));
}

fn a_renewed_lease_keeps_the_job_and_a_handed_back_job_is_no_strike(store: &Store) {
    let a = funded(store, "a");
    let id = submit(store, a, "stwo");
    let short = Claim {
        lease: Duration::from_millis(300),
        ..claim("w")
    };
    store.claim_next(&short).unwrap().unwrap();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(150));
        assert!(store
            .renew_leases(&[(id, "w".into())], Duration::from_millis(300))
            .unwrap()
            .is_empty());
        assert_eq!(store.requeue_expired(3).unwrap(), (0, 0));
    }
    assert_eq!(store.hand_back(&[(id, "someone-else".into())]).unwrap(), 0);
    assert_eq!(store.hand_back(&[(id, "w".into())]).unwrap(), 1);
    let j = store.job(id).unwrap();
    assert_eq!((j.doc.state, j.doc.attempts), (JobState::Queued, 0));
}

fn concurrent_claims_never_give_one_job_to_two_workers(store: &Store) {
    let accounts: Vec<i64> = (0..3).map(|i| funded(store, &format!("a{i}"))).collect();
    let mut jobs: Vec<i64> = (0..30)
        .map(|i| submit(store, accounts[i % 3], "stwo"))
        .collect();
    let claimed: Vec<(String, i64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|w| {
                s.spawn(move || {
                    let name = format!("w{w}");
                    let mut mine = Vec::new();
                    let mut idle = 0;
                    while idle < 20 {
                        match store.claim_next(&claim(&name)).unwrap() {
                            Some(j) => {
                                mine.push((name.clone(), j.doc.id));
                                idle = 0;
                            }
                            None => {
                                idle += 1;
                                std::thread::sleep(Duration::from_millis(5));
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut ids: Vec<i64> = claimed.iter().map(|c| c.1).collect();
    ids.sort();
    jobs.sort();
    assert_eq!(ids, jobs, "every job claimed exactly once");
    for (worker, id) in &claimed {
        assert!(store
            .record_proof(*id, worker, b"p", &serde_json::json!({}), 1.0, 1.0)
            .unwrap());
        store.record_verified(*id, worker, 1.0).unwrap();
    }
    for a in accounts {
        let b = &store.balances(a).unwrap()[0];
        assert_eq!((b.held_micro, b.spent_micro), (0, 100));
    }
}

fn concurrent_submissions_with_one_idempotency_key_make_one_job(store: &Store) {
    let a = funded(store, "a");
    let ids: Vec<(i64, bool)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(move || {
                    let (j, created) = store
                        .create_job(&NewJob {
                            idempotency_key: Some("same"),
                            ..new_job(a, "stwo")
                        })
                        .unwrap();
                    (j.doc.id, created)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(ids.iter().all(|x| x.0 == ids[0].0), "{ids:?}");
    assert_eq!(ids.iter().filter(|x| x.1).count(), 1, "{ids:?}");
    let b = &store.balances(a).unwrap()[0];
    assert_eq!(b.held_micro, 10, "held once");
}

fn workers_report_and_leave(store: &Store) {
    let now = ciro_scheduler::store::now();
    let w = WorkerInfo {
        id: "host-1-abc".into(),
        host: "host".into(),
        backends: vec!["stwo".into(), "halo2".into()],
        concurrency: 2,
        current_jobs: vec![7, 9],
        started_at: now,
        heartbeat_at: now,
    };
    store.heartbeat(&w).unwrap();
    store
        .heartbeat(&WorkerInfo {
            current_jobs: vec![],
            ..w.clone()
        })
        .unwrap();
    let seen = store.workers_seen(Duration::from_secs(60)).unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].backends, w.backends);
    assert!(seen[0].current_jobs.is_empty(), "the latest report wins");
    std::thread::sleep(Duration::from_millis(50));
    assert!(store
        .workers_seen(Duration::from_millis(10))
        .unwrap()
        .is_empty());
    store.worker_gone(&w.id).unwrap();
    assert!(store
        .workers_seen(Duration::from_secs(60))
        .unwrap()
        .is_empty());
}

fn claims_respect_a_workers_proof_systems(store: &Store) {
    let a = funded(store, "a");
    let stwo = submit(store, a, "stwo");
    let halo2 = submit(store, a, "halo2");
    let only = |systems: &'static [&'static str]| Claim {
        proof_systems: systems,
        ..claim("w")
    };
    assert_eq!(
        store
            .claim_next(&only(&["plonky2"]))
            .unwrap()
            .map(|j| j.doc.id),
        None
    );
    assert_eq!(
        store
            .claim_next(&only(&["halo2"]))
            .unwrap()
            .map(|j| j.doc.id),
        Some(halo2),
        "an account's older job of another proof system does not block it"
    );
    assert_eq!(
        store
            .claim_next(&only(&["stwo", "halo2"]))
            .unwrap()
            .map(|j| j.doc.id),
        Some(stwo)
    );
    assert!(store
        .claim_next(&only(&["stwo'; DROP TABLE jobs; --"]))
        .is_err());
}

#[test]
fn migrations_run_once_and_a_newer_database_is_refused() {
    let pg = Postgres::start();
    let url = pg.fresh_database();
    let store = Store::connect(&url, 2).unwrap();
    let a = funded(&store, "a");
    drop(store);
    // Reopened: nothing re-applied, data kept.
    let store = Store::connect(&url, 2).unwrap();
    assert_eq!(store.balances(a).unwrap().len(), 1);
    drop(store);
    let mut c = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    c.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)",
        &[],
    )
    .unwrap();
    let e = Store::connect(&url, 2).err().expect("refused");
    assert!(e.to_string().contains("schema version 99"), "{e}");

    // SQLite: a database made before versioned migrations (the first schema, no version table)
    // is brought up to date with its data.
    let dir = std::env::temp_dir().join(format!("ciro-migrate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ciro.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(include_str!(
            "../src/store/migrations/sqlite/0001_initial.sql"
        ))
        .unwrap();
        c.execute(
            "INSERT INTO accounts (name, key_hash, created_at) VALUES ('old', 'h', 0)",
            [],
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let w = funded(&store, "new");
    assert_eq!(w, 2, "the old account is still there");
    let id = submit(&store, w, "stwo");
    assert!(store.claim_next(&claim("w")).unwrap().is_some());
    assert_eq!(store.job(id).unwrap().doc.state, JobState::Proving);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_process_at_a_time_leads_and_the_lead_passes_on() {
    use ciro_scheduler::store::postgres::Leader;
    let pg = Postgres::start();
    let url = pg.fresh_database();
    let mut a = Leader::new(&url, 42);
    let mut b = Leader::new(&url, 42);
    assert!(a.holds());
    assert!(!b.holds(), "two leaders at once");
    assert!(a.holds(), "the lead is kept");
    assert!(
        Leader::new(&url, 43).holds(),
        "another task has its own lead"
    );
    drop(a);
    let start = std::time::Instant::now();
    while !b.holds() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the lead never passed on"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A job paid through an escrow: `awaiting_payment` (not claimable) until its escrow is
/// recorded once; verifying or failing it never touches the ledger's balances; the watcher's
/// cursor and the first recorded deployment persist; unpaid jobs fail after the window.
fn an_escrow_paid_job_waits_for_its_escrow_and_holds_nothing_on_the_ledger(store: &Store) {
    use ciro_client::types::EscrowPayment;
    let a = funded(store, "chain");
    let before = store.balances(a).unwrap();
    let terms = |id: i64| EscrowPayment {
        chain_id: 1,
        escrow: "0xe".into(),
        job_ref: format!("ref-{id}"),
        status: "awaiting".into(),
        ..Default::default()
    };
    let new = NewJob {
        chain: Chain::Ethereum,
        escrow: Some(&terms),
        ..new_job(a, "halo2")
    };
    let (job, created) = store.create_job(&new).unwrap();
    assert!(created);
    assert_eq!(job.doc.state, JobState::AwaitingPayment);
    let p = job.doc.payment.clone().unwrap();
    assert_eq!(
        (p.status.as_str(), p.job_ref.clone()),
        ("awaiting", format!("ref-{}", job.doc.id))
    );
    assert_eq!(
        store.balances(a).unwrap(),
        before,
        "nothing held on the ledger"
    );
    assert!(
        store.claim_next(&claim("w1")).unwrap().is_none(),
        "not claimable unpaid"
    );
    assert_eq!(store.escrow_jobs(1, "awaiting", 10).unwrap().len(), 1);

    let mut open = p.clone();
    open.status = "open".into();
    open.user = Some("0xu".into());
    assert_eq!(
        store.escrow_opened(job.doc.id, &open).unwrap(),
        Opened::Queued
    );
    assert_eq!(
        store.escrow_opened(job.doc.id, &open).unwrap(),
        Opened::NotWaiting
    );
    let j = store.claim_next(&claim("w1")).unwrap().unwrap();
    assert_eq!(j.doc.id, job.doc.id);
    assert!(store
        .record_proof(j.doc.id, "w1", b"p", &json!({}), 1.0, 1.0)
        .unwrap());
    store.record_verified(j.doc.id, "w1", 1.0).unwrap();
    assert_eq!(
        store.balances(a).unwrap(),
        before,
        "verifying charges nothing here"
    );
    let open_jobs = store.escrow_jobs(1, "open", 10).unwrap();
    assert_eq!(open_jobs.len(), 1);
    assert_eq!(open_jobs[0].doc.state, JobState::Verified);
    store
        .update_escrow(j.doc.id, |d| {
            d.status = "settled".into();
            d.settle_tx = Some("0xs".into());
        })
        .unwrap();
    let done = store.job(j.doc.id).unwrap().doc.payment.unwrap();
    assert_eq!(
        (done.status.as_str(), done.settle_tx.as_deref()),
        ("settled", Some("0xs"))
    );
    assert!(store.escrow_jobs(1, "open", 10).unwrap().is_empty());

    // An unpaid job fails after the payment window, releasing nothing (nothing was held).
    let (unpaid, _) = store.create_job(&new).unwrap();
    assert_eq!(store.fail_unpaid(3600.0).unwrap(), 0);
    assert_eq!(store.fail_unpaid(-1.0).unwrap(), 1);
    assert_eq!(
        store.job(unpaid.doc.id).unwrap().doc.state,
        JobState::Failed
    );
    assert_eq!(store.balances(a).unwrap(), before);
    assert_eq!(
        store.escrow_opened(unpaid.doc.id, &open).unwrap(),
        Opened::NotWaiting
    );
    let (unwanted, _) = store.create_job(&new).unwrap();
    let cancelled = store.cancel(a, unwanted.doc.id).unwrap();
    assert_eq!(cancelled.doc.state, JobState::Cancelled);
    assert_eq!(store.balances(a).unwrap(), before);

    assert_eq!(store.chain_cursor(1, "0xe").unwrap(), None);
    store.set_chain_cursor(1, "0xe", 7).unwrap();
    store.set_chain_cursor(1, "0xe", 9).unwrap();
    assert_eq!(store.chain_cursor(1, "0xe").unwrap(), Some(9));
    assert_eq!(store.record_chain_deployment(1, "first").unwrap(), "first");
    assert_eq!(store.record_chain_deployment(1, "second").unwrap(), "first");
    assert_eq!(store.chain_deployment(1).unwrap().as_deref(), Some("first"));
}
