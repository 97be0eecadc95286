//! On-chain payments (Ethereum, Polygon): a service started with `--chain NAME=RPC_URL` quotes
//! escrow terms for jobs on that chain, watches the escrow for the jobs users open, queues them,
//! and once a job's proof has verified here, settles it on chain with that proof (the escrow
//! pays only if the model's verifier contract accepts it). A job that fails or is cancelled
//! with its escrow open is refunded to the user.
//!
//! The chain is the source of truth: before sending a settlement the escrow's state is read,
//! so a service that stopped between sending and confirming one records the settlement it
//! finds instead of paying twice (the contract refuses a second settlement anyway).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use ciro_client::types::{EscrowPayment, JobState};
use ciro_prover::{BackendId, Halo2VerifyingKey, ProofBundle};
use ciro_verifier::evm;

use crate::chain::{self, ChainError, Deployment, EscrowState, Node, OpenedJob, Terms};
use crate::pricing::{Chain, Token};
use crate::store::{Job, Opened};
use crate::worker::log;
use crate::Shared;

/// A chain the service settles on.
#[derive(Clone, Debug)]
pub struct ChainConfig {
    pub chain: Chain,
    pub rpc_url: String,
    /// The contracts to use; `None`: those this service deployed on this chain before (in its
    /// store), or a new dev deployment (escrow and test tokens).
    pub deployment: Option<Deployment>,
}

/// A connected chain: the operator's node and the contracts.
pub struct ChainLink {
    pub chain: Chain,
    pub node: Node,
    pub deployment: Deployment,
    /// Models whose verifier is registered in the escrow (by model commitment).
    registered: Mutex<HashSet<B256>>,
    /// One registration at a time (each deploys a verifier).
    registering: tokio::sync::Mutex<()>,
}

/// The advisory lock key of the settler's lead (one API node settles per cluster).
const SETTLER_LEAD: i64 = 727_103;

/// A settlement is sent only while the deadline is at least this far off (chain time).
const SETTLE_MARGIN_S: u64 = 120;

fn hex0x(b: impl AsRef<[u8]>) -> String {
    format!("0x{}", hex::encode(b))
}

/// Connects to each configured chain and finds (or, on a dev chain, deploys) the contracts.
pub async fn connect(shared: &Shared) -> Result<Vec<Arc<ChainLink>>, String> {
    let c = &shared.config;
    if !c.chains.is_empty()
        && c.halo2_inputs == ciro_prover::halo2_backend::InputVisibility::Private
    {
        return Err(
            "escrow payments need proofs that show their input or its hash: \
                    --halo2-inputs public or hashed, not private (a proof of any input would \
                    settle every job of its model)"
                .into(),
        );
    }
    let key = match (&c.operator_key, c.chains.is_empty()) {
        (_, true) => return Ok(Vec::new()),
        (None, false) => {
            return Err(
                "--chain needs the operator's key (--operator-key FILE or CIRO_OPERATOR_KEY)"
                    .into(),
            )
        }
        (Some(k), false) => chain::parse_key(k).map_err(|e| format!("the operator key: {e}"))?,
    };
    let mut links = Vec::new();
    for cc in &c.chains {
        let node = Node::connect(&cc.rpc_url, Some(key.clone()))
            .await
            .map_err(|e| format!("{}: {e}", cc.chain))?;
        let deployment = match &cc.deployment {
            Some(d) => d.clone(),
            None => match shared
                .store
                .chain_deployment(node.chain_id)
                .map_err(|e| e.to_string())?
            {
                Some(json) => serde_json::from_str(&json).map_err(|e| e.to_string())?,
                None => {
                    let d = node
                        .deploy_dev()
                        .await
                        .map_err(|e| format!("{}: deploying the contracts: {e}", cc.chain))?;
                    let json = serde_json::to_string(&d).map_err(|e| e.to_string())?;
                    // Another node may have deployed meanwhile: the first record stands.
                    let stands = shared
                        .store
                        .record_chain_deployment(node.chain_id, &json)
                        .map_err(|e| e.to_string())?;
                    serde_json::from_str(&stands).map_err(|e| e.to_string())?
                }
            },
        };
        if deployment.chain_id != node.chain_id {
            return Err(format!(
                "{}: the contracts are for chain {}, the node is chain {}",
                cc.chain, deployment.chain_id, node.chain_id
            ));
        }
        let code = node
            .code_size(deployment.escrow)
            .await
            .map_err(|e| e.to_string())?;
        if code == 0 {
            return Err(format!(
                "{}: no escrow contract at {} on chain {}",
                cc.chain, deployment.escrow, node.chain_id
            ));
        }
        log(&format!(
            "{}: chain {} at {}, escrow {}, CIRO {}, USDC {}",
            cc.chain,
            node.chain_id,
            cc.rpc_url,
            deployment.escrow,
            deployment.ciro,
            deployment.usdc
        ));
        if chain::expected_chain_id(cc.chain) != Some(node.chain_id) {
            log(&format!(
                "{}: note: the node is chain {}, not {}'s {} (a dev chain?)",
                cc.chain,
                node.chain_id,
                cc.chain,
                chain::expected_chain_id(cc.chain).unwrap_or_default()
            ));
        }
        // Jobs can only be opened after the service quotes them: a first watch starts from
        // now, not from the chain's genesis.
        let key = hex0x(deployment.escrow);
        if shared
            .store
            .chain_cursor(node.chain_id, &key)
            .map_err(|e| e.to_string())?
            .is_none()
        {
            let now = node.block_number().await.map_err(|e| e.to_string())?;
            shared
                .store
                .set_chain_cursor(node.chain_id, &key, now.saturating_sub(1))
                .map_err(|e| e.to_string())?;
        }
        links.push(Arc::new(ChainLink {
            chain: cc.chain,
            node,
            deployment,
            registered: Mutex::new(HashSet::new()),
            registering: tokio::sync::Mutex::new(()),
        }));
    }
    Ok(links)
}

fn halo2_key(shared: &Shared, model: &str) -> Result<Arc<crate::registry::Keys>, String> {
    let m = shared.registry.get(model).map_err(|e| e.to_string())?;
    m.keys(BackendId::Halo2, &shared.registry.provers)
}

pub(crate) fn as_halo2(keys: &crate::registry::Keys) -> Result<&Halo2VerifyingKey, String> {
    keys.vk()
        .downcast_ref::<Halo2VerifyingKey>()
        .ok_or_else(|| "not a halo2 key".to_string())
}

/// Makes sure the escrow knows model `name`'s verifier: deploys the generated verifier and
/// registers it the first time. Returns the model's commitment word and its halo2 keys.
pub async fn ensure_registered(
    shared: &Arc<Shared>,
    link: &ChainLink,
    name: &str,
) -> Result<(B256, Arc<crate::registry::Keys>), String> {
    let s = shared.clone();
    let n = name.to_string();
    let (model, layout, keys) = tokio::task::spawn_blocking(move || {
        let keys = halo2_key(&s, &n)?;
        let vk = as_halo2(&keys)?;
        let model = B256::from(evm::model_word(vk).map_err(|e| e.to_string())?);
        Ok::<_, String>((model, evm::instance_layout(vk), keys))
    })
    .await
    .map_err(|e| e.to_string())??;
    if lock(&link.registered).contains(&model) {
        return Ok((model, keys));
    }
    let _one = link.registering.lock().await;
    let escrow = link.deployment.escrow;
    if link
        .node
        .registered(escrow, model)
        .await
        .map_err(|e| e.to_string())?
        .is_none()
    {
        let k = keys.clone();
        let verifier = tokio::task::spawn_blocking(move || {
            evm::evm_verifier(as_halo2(&k)?).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())??;
        let (at, gas) = link
            .node
            .deploy_verifier(&verifier)
            .await
            .map_err(|e| e.to_string())?;
        match link.node.register(escrow, model, at, layout).await {
            Ok(_) => log(&format!(
                "{}: model {name} registered with its verifier at {at} ({gas} gas to deploy)",
                link.chain
            )),
            // Another node registered it meanwhile.
            Err(ChainError::Reverted { reason, .. }) if reason.contains("already registered") => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    lock(&link.registered).insert(model);
    Ok((model, keys))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The terms the service quotes for job `id` (the user adds their address and a deadline).
pub fn quote(
    link: &ChainLink,
    shared: &Shared,
    token: Token,
    price_micro: i64,
    model: B256,
    input: [u8; 32],
) -> impl Fn(i64) -> EscrowPayment {
    let base = EscrowPayment {
        chain_id: link.node.chain_id,
        escrow: hex0x(link.deployment.escrow),
        token_address: hex0x(link.deployment.token(token)),
        price_units: chain::units(token, price_micro).to_string(),
        job_ref: String::new(),
        model: hex0x(model),
        input: hex0x(input),
        min_deadline_s: shared.config.min_deadline.as_secs(),
        status: "awaiting".into(),
        ..Default::default()
    };
    move |id| EscrowPayment {
        job_ref: hex0x(chain::job_ref(id)),
        ..base.clone()
    }
}

/// The full terms of an opened escrow, from its document.
pub fn terms_of(doc: &EscrowPayment) -> Result<Terms, String> {
    let word = |s: &str| s.parse::<B256>().map_err(|e| format!("{s:?}: {e}"));
    let addr = |s: &str| s.parse::<Address>().map_err(|e| format!("{s:?}: {e}"));
    Ok(Terms {
        r#ref: word(&doc.job_ref)?,
        user: addr(doc.user.as_deref().ok_or("the escrow names no user")?)?,
        token: addr(&doc.token_address)?,
        price: doc
            .price_units
            .parse::<U256>()
            .map_err(|e| format!("price: {e}"))?,
        deadline: doc.deadline.ok_or("the escrow has no deadline")?,
        model: word(&doc.model)?,
        input: word(&doc.input)?,
    })
}

/// Runs until the service stops: one pass over every chain about twice a second.
pub fn run(shared: Arc<Shared>, links: Vec<Arc<ChainLink>>) {
    let rt = match chain::runtime() {
        Ok(rt) => rt,
        Err(e) => return log(&format!("settler: no runtime: {e}")),
    };
    let mut lead = shared
        .config
        .database
        .as_deref()
        .map(|url| crate::store::postgres::Leader::new(url, SETTLER_LEAD));
    let mut backoff = Backoff::default();
    while !shared.stopping.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(500));
        if let Some(lead) = &mut lead {
            if !lead.holds() {
                std::thread::sleep(Duration::from_secs(2));
                continue;
            }
        }
        for link in &links {
            if let Err(e) = rt.block_on(pass(&shared, link, &mut backoff)) {
                log(&format!("settler: {}: {e}", link.chain));
            }
        }
        let window = shared.config.payment_window.as_secs_f64();
        if let Ok(n @ 1..) = shared.store.fail_unpaid(window) {
            log(&format!(
                "settler: {n} job(s) unpaid after {window} s failed"
            ));
        }
    }
}

/// Jobs whose settlement (or refund) failed wait before the next try: 1 s, doubling to 5
/// minutes, so one that keeps failing neither floods the node nor holds up the others.
#[derive(Default)]
struct Backoff(std::collections::HashMap<i64, (u32, std::time::Instant)>);

impl Backoff {
    fn due(&self, id: i64) -> bool {
        self.0
            .get(&id)
            .is_none_or(|(_, at)| std::time::Instant::now() >= *at)
    }

    fn failed(&mut self, id: i64) {
        let n = self.0.get(&id).map_or(0, |(n, _)| *n + 1);
        let wait = Duration::from_secs((1u64 << n.min(9)).min(300));
        self.0.insert(id, (n, std::time::Instant::now() + wait));
    }
}

async fn pass(shared: &Shared, link: &ChainLink, backoff: &mut Backoff) -> Result<(), String> {
    watch(shared, link).await?;
    let due: Vec<Job> = shared
        .store
        .escrows_to_close(link.node.chain_id, 1000)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|j| backoff.due(j.doc.id))
        .take(100)
        .collect();
    for job in due {
        let outcome = match job.doc.state {
            JobState::Verified => settle(shared, link, &job).await,
            JobState::Failed | JobState::Cancelled => refund(shared, link, &job).await,
            _ => Ok(()),
        };
        match outcome {
            Ok(()) => {
                backoff.0.remove(&job.doc.id);
            }
            Err(e) => {
                backoff.failed(job.doc.id);
                log(&format!("settler: job {}: {e}", job.doc.id));
            }
        }
    }
    Ok(())
}

/// Reads the escrow's `Opened` events since the last pass and queues the jobs they pay for.
async fn watch(shared: &Shared, link: &ChainLink) -> Result<(), String> {
    let escrow = link.deployment.escrow;
    let key = hex0x(escrow);
    let chain_id = link.node.chain_id;
    // Only blocks with enough confirmations: an open that a reorganisation drops is never
    // queued.
    let latest = link
        .node
        .block_number()
        .await
        .map_err(|e| e.to_string())?
        .saturating_sub(shared.config.confirmations);
    let from = match shared
        .store
        .chain_cursor(chain_id, &key)
        .map_err(|e| e.to_string())?
    {
        Some(b) => b + 1,
        None => 0,
    };
    if from > latest {
        return Ok(());
    }
    // At most 5,000 blocks per request (nodes cap log queries).
    let to = latest.min(from + 5_000);
    for opened in link
        .node
        .opened(escrow, from, to)
        .await
        .map_err(|e| e.to_string())?
    {
        // A transient failure (the node, the database) ends the pass before the cursor moves:
        // the next pass reads the event again, and handling it twice is harmless.
        on_opened(shared, link, &opened).await?;
    }
    shared
        .store
        .set_chain_cursor(chain_id, &key, to)
        .map_err(|e| e.to_string())
}

async fn on_opened(shared: &Shared, link: &ChainLink, o: &OpenedJob) -> Result<(), String> {
    let t = &o.terms;
    let job_id = U256::from_be_bytes(t.r#ref.0);
    let job = match i64::try_from(job_id) {
        Ok(id) => match shared.store.job(id) {
            Ok(job) => Some(job),
            Err(crate::store::StoreError::NoSuchJob(_)) => None,
            Err(e) => return Err(e.to_string()),
        },
        Err(_) => None,
    };
    let escrow_id = hex0x(o.id);
    if job
        .as_ref()
        .and_then(|j| j.doc.payment.as_ref())
        .is_some_and(|p| p.escrow_id.as_deref() == Some(escrow_id.as_str()))
    {
        // This very escrow is recorded already (the event is read again after a pass that
        // did not finish): nothing to do.
        return Ok(());
    }
    let problem = match &job {
        None => Some("names no job of this service".to_string()),
        Some(job) => match &job.doc.payment {
            None => Some("names a job paid on the ledger".into()),
            Some(doc) => {
                let now = link.node.time().await.map_err(|e| e.to_string())?;
                let agreed = hex0x(t.token) == doc.token_address
                    && t.price.to_string() == doc.price_units
                    && hex0x(t.model) == doc.model
                    && hex0x(t.input) == doc.input;
                if doc.chain_id != link.node.chain_id || !agreed {
                    Some("does not match the quoted terms".into())
                } else if t.deadline < now + doc.min_deadline_s / 2 {
                    Some("leaves too little time before its deadline".into())
                } else {
                    None
                }
            }
        },
    };
    if let (None, Some(job)) = (&problem, &job) {
        let mut doc = job.doc.payment.clone().unwrap_or_default();
        doc.status = "open".into();
        doc.user = Some(hex0x(t.user));
        doc.deadline = Some(t.deadline);
        doc.escrow_id = Some(escrow_id.clone());
        doc.open_tx = Some(hex0x(o.tx));
        doc.open_block = Some(o.block);
        match shared
            .store
            .escrow_opened(job.doc.id, &doc)
            .map_err(|e| e.to_string())?
        {
            Opened::Queued => {
                shared.wake.notify();
                log(&format!(
                    "{}: job {} paid in escrow (tx {})",
                    link.chain, job.doc.id, o.tx
                ));
                return Ok(());
            }
            Opened::NotWaiting => {}
        }
    }
    // Not a payment this service will prove against: give the money back now rather than
    // make the user wait for the deadline; but only in the service's own tokens (a token
    // anyone wrote could refuse the transfer or burn the operator's gas), and never let a
    // refund that fails stop the watch (the user can reclaim after the deadline).
    let why = problem.unwrap_or_else(|| "pays for a job that is not waiting for payment".into());
    if t.token != link.deployment.ciro && t.token != link.deployment.usdc {
        log(&format!(
            "{}: escrow {} {why}, in a token of no use here: left to its user to reclaim",
            link.chain, o.id
        ));
        return Ok(());
    }
    let escrow = link.deployment.escrow;
    match link.node.escrow_state(escrow, o.id).await {
        Ok(EscrowState::Open) => match link.node.refund(escrow, t).await {
            Ok(tx) => log(&format!(
                "{}: escrow {} {why}: refunded (tx {})",
                link.chain, o.id, tx.hash
            )),
            Err(e) => log(&format!(
                "{}: escrow {} {why}; the refund failed ({e}): its user can reclaim it after the deadline",
                link.chain, o.id
            )),
        },
        Ok(_) => {}
        Err(e) => return Err(e.to_string()),
    }
    Ok(())
}

/// Records what the chain shows for a job whose escrow is no longer open. Returns `false`
/// when it is still open.
async fn reconcile(shared: &Shared, link: &ChainLink, job: &Job, id: B256) -> Result<bool, String> {
    let (escrow, from) = job_escrow(job)?;
    let state = link
        .node
        .escrow_state(escrow, id)
        .await
        .map_err(|e| e.to_string())?;
    let closing = || async {
        // Looked up from the block the escrow was opened in; if the node cannot say, the
        // state is recorded without it.
        link.node
            .closing_tx(escrow, id, from)
            .await
            .unwrap_or_else(|e| {
                log(&format!(
                    "{}: escrow {id}: its closing transaction: {e}",
                    link.chain
                ));
                None
            })
    };
    match state {
        EscrowState::Open => return Ok(false),
        EscrowState::Unknown => return Err(format!("escrow {id} is unknown to the chain")),
        EscrowState::Settled(output) => {
            let tx = closing().await;
            shared
                .store
                .update_escrow(job.doc.id, |d| {
                    d.status = "settled".into();
                    d.output_hash = Some(hex0x(output));
                    if let Some(tx) = &tx {
                        d.settle_tx = Some(hex0x(tx.hash));
                        d.settle_block = Some(tx.block);
                        d.settle_gas = Some(tx.gas);
                    }
                })
                .map_err(|e| e.to_string())?;
            log(&format!("{}: job {} settled", link.chain, job.doc.id));
        }
        EscrowState::Refunded => {
            let tx = closing().await;
            shared
                .store
                .update_escrow(job.doc.id, |d| {
                    d.status = "refunded".into();
                    d.refund_tx = tx.as_ref().map(|t| hex0x(t.hash));
                })
                .map_err(|e| e.to_string())?;
            log(&format!("{}: job {} refunded", link.chain, job.doc.id));
        }
    }
    Ok(true)
}

/// The escrow a job was opened in (its own record, whatever the service is configured with
/// now) and the block to look for its events from.
fn job_escrow(job: &Job) -> Result<(Address, u64), String> {
    let doc = job.doc.payment.as_ref().ok_or("the job has no escrow")?;
    let escrow = doc
        .escrow
        .parse::<Address>()
        .map_err(|e| format!("escrow address {:?}: {e}", doc.escrow))?;
    Ok((escrow, doc.open_block.unwrap_or(0)))
}

fn open_terms(job: &Job) -> Result<(EscrowPayment, Terms, B256), String> {
    let doc = job.doc.payment.clone().ok_or("the job has no escrow")?;
    let terms = terms_of(&doc)?;
    let id = chain::job_id(&terms);
    Ok((doc, terms, id))
}

/// Settles a verified job with its proof, unless the chain shows it settled (or refunded).
async fn settle(shared: &Shared, link: &ChainLink, job: &Job) -> Result<(), String> {
    let (doc, terms, id) = open_terms(job)?;
    if reconcile(shared, link, job, id).await? {
        return Ok(());
    }
    let now = link.node.time().await.map_err(|e| e.to_string())?;
    // A settlement mined after the deadline reverts (and costs gas): leave it a margin.
    if now + SETTLE_MARGIN_S > terms.deadline {
        // Too late to be paid: the user reclaims (`ciro-cli chain refund`), or we refund now.
        return refund(shared, link, job).await;
    }
    let bundle = shared
        .store
        .proof(job.doc.id)
        .map_err(|e| e.to_string())?
        .ok_or("the verified job has no proof stored")?;
    let bundle = ProofBundle::from_bytes(&bundle).map_err(|e| e.to_string())?;
    if format!("0x{}", bundle.header.model_commitment) != doc.model {
        // Proved under another key (a worker with other --halo2-inputs, say): the escrow's
        // verifier would reject it, so give the money back instead of spending gas on it.
        log(&format!(
            "{}: job {} was proved under key 0x{}, not the escrow's {}; refunding",
            link.chain, job.doc.id, bundle.header.model_commitment, doc.model
        ));
        return refund(shared, link, job).await;
    }
    let calldata = evm::calldata(&bundle).map_err(|e| e.to_string())?;
    let (escrow, _) = job_escrow(job)?;
    let sent = link.node.send_settle(escrow, &terms, &calldata).await;
    let hash = match sent {
        Ok(h) => h,
        Err(ChainError::Reverted { reason, .. }) => {
            // The chain refuses the proof this service verified: never keep the user's money
            // for a job it cannot settle.
            log(&format!(
                "{}: job {}: settlement refused ({reason}); refunding",
                link.chain, job.doc.id
            ));
            return refund(shared, link, job).await;
        }
        Err(e) => return Err(e.to_string()),
    };
    if std::env::var_os("CIRO_FAULT_ABORT_AFTER_SETTLE_SEND").is_some() {
        // Fault injection for the crash test: stop dead between sending and confirming.
        log(&format!("fault injection: aborting after sending {hash}"));
        std::process::abort();
    }
    let receipt = link.node.receipt(hash).await.map_err(|e| e.to_string())?;
    if !receipt.status() {
        log(&format!(
            "{}: job {}: settlement {hash} reverted when mined; refunding",
            link.chain, job.doc.id
        ));
        return refund(shared, link, job).await;
    }
    reconcile(shared, link, job, id).await.map(|_| ())
}

/// Refunds a job's open escrow to its user (the job failed, was cancelled, or missed its
/// deadline).
async fn refund(shared: &Shared, link: &ChainLink, job: &Job) -> Result<(), String> {
    let (_, terms, id) = open_terms(job)?;
    if reconcile(shared, link, job, id).await? {
        return Ok(());
    }
    link.node
        .refund(job_escrow(job)?.0, &terms)
        .await
        .map_err(|e| e.to_string())?;
    reconcile(shared, link, job, id).await.map(|_| ())
}
