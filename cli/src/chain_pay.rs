//! `ciro-cli`'s on-chain side: opening a job's escrow from the user's wallet (after checking
//! the service's terms against the model key and input pinned at submission), reading the
//! escrow straight from a node, and reclaiming after the deadline.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use ciro_client::types::{EscrowPayment, Job};
use ciro_prover::Halo2VerifyingKey;
use ciro_scheduler::chain::primitives::{Address, B256, U256};
use ciro_scheduler::chain::{self, EscrowState, Node};
use ciro_scheduler::settler::terms_of;

/// Where the user's wallet and node are.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct WalletArgs {
    /// A file holding the wallet's private key in hex [or env CIRO_WALLET_KEY].
    #[arg(long)]
    pub wallet: Option<PathBuf>,
    /// The chain's JSON-RPC URL (your own node: what it says is what you trust) [or env
    /// CIRO_RPC_URL].
    #[arg(long)]
    pub rpc: Option<String>,
}

impl WalletArgs {
    pub fn rpc(&self) -> Result<String> {
        self.rpc
            .clone()
            .or_else(|| std::env::var("CIRO_RPC_URL").ok().filter(|u| !u.is_empty()))
            .context("no node to reach the chain: pass --rpc URL or set CIRO_RPC_URL")
    }

    fn signer(&self) -> Result<chain::PrivateKeySigner> {
        match &self.wallet {
            Some(path) => Ok(chain::read_key_file(path)?),
            None => chain::parse_key(
                &std::env::var("CIRO_WALLET_KEY")
                    .context("no wallet: pass --wallet FILE or set CIRO_WALLET_KEY")?,
            )
            .map_err(anyhow::Error::msg)
            .context("CIRO_WALLET_KEY"),
        }
    }

    /// A node signing with the wallet.
    pub async fn signer_node(&self) -> Result<Node> {
        Ok(Node::connect(&self.rpc()?, Some(self.signer()?)).await?)
    }

    pub async fn reader_node(&self) -> Result<Node> {
        Ok(Node::connect(&self.rpc()?, None).await?)
    }
}

/// Runs a chain call to completion (the CLI is synchronous).
pub fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    chain::runtime()
        .context("cannot start a runtime")?
        .block_on(f)
}

fn word(s: &str, what: &str) -> Result<[u8; 32]> {
    s.parse::<B256>()
        .map(|w| w.0)
        .with_context(|| format!("the service's {what} {s:?} is not a 32-byte word"))
}

/// A job's on-chain payment; an error for a job paid on the service's own ledger.
pub fn payment_of(job: &Job) -> Result<&EscrowPayment> {
    job.payment
        .as_ref()
        .context("this job is paid on the service's own ledger, not on chain")
}

/// Refuses a node of another chain than the one the job is paid on.
fn same_chain(node: &Node, p: &EscrowPayment) -> Result<()> {
    if node.chain_id != p.chain_id {
        bail!(
            "the node at {} is chain {}, the job is paid on chain {}",
            node.url,
            node.chain_id,
            p.chain_id
        );
    }
    Ok(())
}

/// Checks the service's terms against what the user pinned at submission: the model key's
/// commitment and the input's commitment, recomputed here from the input file.
pub fn check_terms(vk_json: &str, input: &[Vec<f32>], p: &EscrowPayment) -> Result<()> {
    let vk: Halo2VerifyingKey = serde_json::from_str(vk_json)
        .context("escrow payments settle halo2 proofs, and the pinned key is not a halo2 key")?;
    if vk.input_visibility == ciro_prover::halo2_backend::InputVisibility::Private {
        bail!("REFUSED to pay: the key's proofs hide their input, so any proof of the model would settle this job");
    }
    let model = ciro_verifier::evm::model_word(&vk)?;
    if word(&p.model, "model commitment")? != model {
        bail!(
            "REFUSED to pay: the service's model commitment {} is not the pinned key's 0x{}",
            p.model,
            hex::encode(model)
        );
    }
    let scales: Vec<u32> = vk.inputs.iter().map(|t| t.scale).collect();
    let flat: Vec<i64> = ciro_verifier::quantize_at(input, &scales)
        .map_err(anyhow::Error::msg)?
        .concat();
    let mine = ciro_verifier::evm::input_commitment(&vk, &flat)?;
    if word(&p.input, "input commitment")? != mine {
        bail!(
            "REFUSED to pay: the service's input commitment {} is not this input's 0x{}",
            p.input,
            hex::encode(mine)
        );
    }
    Ok(())
}

/// Opens job `job`'s escrow from the wallet: approves the price, then opens with a deadline
/// `min_deadline_s` (plus ten minutes) after the chain's clock. Before paying it checks, on
/// the node, that the price is the one quoted and that the escrow judges the model with a
/// verifier laid out as the pinned key's proofs are. Returns the open transaction.
pub async fn open(wallet: &WalletArgs, job: &Job, vk_json: &str) -> Result<chain::TxInfo> {
    let p = payment_of(job)?;
    let node = wallet.signer_node().await?;
    same_chain(&node, p)?;
    let escrow: Address = p.escrow.parse().context("escrow address")?;
    if p.price_units != chain::units(job.token, job.price_micro).to_string() {
        bail!(
            "REFUSED to pay: the escrow terms ask {} units, the quoted price is {} {}",
            p.price_units,
            ciro_client::types::format_amount(job.price_micro),
            job.token
        );
    }
    let vk: Halo2VerifyingKey = serde_json::from_str(vk_json).context("the pinned key")?;
    let model = p.model.parse().context("model commitment")?;
    let layout = ciro_verifier::evm::instance_layout(&vk);
    match node.registered(escrow, model).await? {
        Some((_, i, o)) if (i, o) == layout => {}
        other => bail!(
            "REFUSED to pay: the escrow at {escrow:#x} does not judge this model as its key's proofs are laid out ({other:?}, expected {layout:?})"
        ),
    }
    let mut doc = p.clone();
    doc.user = Some(format!("{:#x}", node.from));
    doc.deadline = Some(node.time().await? + p.min_deadline_s + 600);
    let terms = terms_of(&doc).map_err(anyhow::Error::msg)?;
    let balance = node.token_balance(terms.token, node.from).await?;
    if balance < terms.price {
        bail!(
            "the wallet {:#x} holds {balance} units of the token, the job costs {}",
            node.from,
            terms.price
        );
    }
    node.approve(terms.token, escrow, terms.price).await?;
    Ok(node.open(escrow, &terms).await?)
}

/// What the node says about a job's escrow.
pub async fn status(wallet: &WalletArgs, p: &EscrowPayment) -> Result<(EscrowState, U256)> {
    let node = wallet.reader_node().await?;
    same_chain(&node, p)?;
    let escrow: Address = p.escrow.parse().context("escrow address")?;
    let id = p
        .escrow_id
        .as_deref()
        .context("no escrow has been opened for this job yet")?
        .parse()
        .context("escrow id")?;
    let token: Address = p.token_address.parse().context("token address")?;
    Ok((
        node.escrow_state(escrow, id).await?,
        node.token_balance(token, escrow).await?,
    ))
}

/// Reclaims a job's escrow after its deadline (or the operator refunds it earlier).
pub async fn refund(wallet: &WalletArgs, p: &EscrowPayment) -> Result<chain::TxInfo> {
    let node = wallet.signer_node().await?;
    let escrow: Address = p.escrow.parse().context("escrow address")?;
    let terms = terms_of(p).map_err(anyhow::Error::msg)?;
    Ok(node.refund(escrow, &terms).await?)
}

pub fn payment_text(p: &EscrowPayment) -> String {
    let mut s = format!(
        "escrow: {} on chain {} (escrow {}, {} units of {})",
        p.status, p.chain_id, p.escrow, p.price_units, p.token_address
    );
    let mut line = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            s.push_str(&format!("\n  {k}: {v}"));
        }
    };
    line("escrow id", &p.escrow_id);
    line("opened in", &p.open_tx);
    line("settled in", &p.settle_tx);
    line("output hash", &p.output_hash);
    line("refunded in", &p.refund_tx);
    if let (Some(b), Some(g)) = (p.settle_block, p.settle_gas) {
        s.push_str(&format!("\n  settlement: block {b}, {g} gas"));
    }
    if let Some(d) = p.deadline {
        s.push_str(&format!("\n  deadline: {d} (unix s)"));
    }
    s
}
