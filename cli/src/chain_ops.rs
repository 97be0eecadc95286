//! `ciro`'s on-chain side (the operator): the chains `ciro serve` settles on, and
//! `ciro chain deploy` for a dev chain.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ciro_scheduler::chain::{self, Deployment, Node};
use ciro_scheduler::pricing::Chain;
use ciro_scheduler::settler::ChainConfig;

/// Jobs on EVM chains paid through the escrow on a real node (`ciro serve`).
#[derive(clap::Args, Clone, Debug)]
pub struct ChainArgs {
    /// Settle jobs on `NAME` (ethereum or polygon) through the escrow on the node at RPC_URL
    /// (plain HTTP JSON-RPC); repeatable. Without it, every chain uses the embedded ledger.
    #[arg(long = "chain", value_name = "NAME=RPC_URL")]
    chains: Vec<String>,
    /// The contracts on chain NAME: the JSON `ciro chain deploy --out FILE` wrote [default:
    /// those this service deployed there before, else a new dev deployment].
    #[arg(long = "contracts", value_name = "NAME=FILE")]
    contracts: Vec<String>,
    /// A file holding the operator's private key in hex (deploys, registers verifiers,
    /// settles, refunds) [or env CIRO_OPERATOR_KEY].
    #[arg(long)]
    operator_key: Option<PathBuf>,
    /// The shortest time before its deadline an escrow must leave the service to prove, in
    /// seconds (the user's client adds ten minutes).
    #[arg(long, default_value_t = 3600)]
    min_deadline_s: u64,
    /// A job whose escrow is not opened within this many seconds fails.
    #[arg(long, default_value_t = 3600)]
    payment_window_s: u64,
    /// Blocks an escrow's opening must be buried under before the job is proved (0 suits a
    /// dev chain; a public chain wants enough to outlast its reorganisations).
    #[arg(long, default_value_t = 0)]
    confirmations: u64,
}

fn named(spec: &str, what: &str) -> Result<(Chain, String)> {
    let (name, value) = spec
        .split_once('=')
        .with_context(|| format!("{what} takes NAME=VALUE, got {spec:?}"))?;
    let chain: Chain = name.parse().map_err(anyhow::Error::msg)?;
    if chain::expected_chain_id(chain).is_none() {
        bail!(
            "{chain} settles on the embedded ledger: escrow payments are for ethereum and polygon"
        );
    }
    Ok((chain, value.to_string()))
}

impl ChainArgs {
    pub fn apply(&self, config: &mut ciro_scheduler::Config) -> Result<()> {
        for spec in &self.chains {
            let (chain, url) = named(spec, "--chain")?;
            if config.chains.iter().any(|c| c.chain == chain) {
                bail!("--chain {chain} is given twice");
            }
            config.chains.push(ChainConfig {
                chain,
                rpc_url: url,
                deployment: None,
            });
        }
        for spec in &self.contracts {
            let (chain, file) = named(spec, "--contracts")?;
            let d = read_deployment(Path::new(&file))?;
            let c = config
                .chains
                .iter_mut()
                .find(|c| c.chain == chain)
                .with_context(|| format!("--contracts {chain}=… without --chain {chain}=…"))?;
            c.deployment = Some(d);
        }
        if !config.chains.is_empty() {
            let key = operator_signer(self.operator_key.as_deref(), "--chain needs")?;
            config.operator_key = Some(hex::encode(key.to_bytes()));
        }
        config.min_deadline = std::time::Duration::from_secs(self.min_deadline_s);
        config.payment_window = std::time::Duration::from_secs(self.payment_window_s);
        config.confirmations = self.confirmations;
        Ok(())
    }
}

/// The operator's key: from a file, else `CIRO_OPERATOR_KEY`; `needs` says who asks when
/// there is none.
fn operator_signer(path: Option<&Path>, needs: &str) -> Result<chain::PrivateKeySigner> {
    match path {
        Some(p) => Ok(chain::read_key_file(p)?),
        None => {
            let key = std::env::var("CIRO_OPERATOR_KEY")
                .ok()
                .filter(|k| !k.is_empty())
                .with_context(|| {
                    format!("{needs} the operator's key: --operator-key FILE or CIRO_OPERATOR_KEY")
                })?;
            chain::parse_key(&key)
                .map_err(anyhow::Error::msg)
                .context("CIRO_OPERATOR_KEY")
        }
    }
}

/// A deployment file, as `ciro chain deploy --out` writes it.
fn read_deployment(path: &Path) -> Result<Deployment> {
    serde_json::from_slice(
        &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
    )
    .with_context(|| format!("{} is not a deployment file", path.display()))
}

/// `ciro chain mint`: dev-chain test tokens to an address.
pub fn mint(
    rpc: &str,
    contracts: &Path,
    token: &str,
    to: &str,
    amount: &str,
    key: Option<&Path>,
) -> Result<chain::TxInfo> {
    let d = read_deployment(contracts)?;
    let token: ciro_scheduler::pricing::Token = token.parse().map_err(anyhow::Error::msg)?;
    let micro = ciro_scheduler::pricing::parse_amount(amount).map_err(anyhow::Error::msg)?;
    let to: chain::primitives::Address = to.parse().context("--to is not an address")?;
    let signer = operator_signer(key, "minting needs")?;
    Ok(chain::runtime()?.block_on(async {
        let node = Node::connect(rpc, Some(signer)).await?;
        node.mint(d.token(token), to, chain::units(token, micro))
            .await
    })?)
}

/// `ciro chain deploy`: the escrow (operated by the key) and the dev tokens; the addresses.
pub fn deploy(rpc: &str, key: Option<&Path>, out: Option<&Path>) -> Result<Deployment> {
    let signer = operator_signer(key, "deploying needs")?;
    let d = chain::runtime()?.block_on(async {
        let node = Node::connect(rpc, Some(signer)).await?;
        node.deploy_dev().await
    })?;
    if let Some(path) = out {
        std::fs::write(path, serde_json::to_vec_pretty(&d)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(d)
}
