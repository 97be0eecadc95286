//! EVM chains (Ethereum, Polygon): the escrow contract (`contracts/CiroEscrow.sol`), its
//! bindings, and a JSON-RPC client for a real node (`alloy`). Used by the service (operator:
//! deploy, register, settle, refund, watch) and by `ciro-cli` (user: approve, open, read).

use std::time::Duration;

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{keccak256, Address, Bytes, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, TransactionReceipt, TransactionRequest};
use alloy::sol;
use alloy::sol_types::{SolCall, SolConstructor, SolEvent, SolValue};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use crate::pricing::{Chain, Token};
pub use alloy::primitives;
pub use alloy::signers::local::PrivateKeySigner;

/// The escrow and test-token sources, compiled with the pinned solc-js when deployed.
pub const CONTRACTS_SOURCE: &str = include_str!("../contracts/CiroEscrow.sol");

// The bindings come from the contracts' own source, so they cannot drift from it.
sol!(
    #[sol(rpc, all_derives)]
    "contracts/CiroEscrow.sol"
);

pub use CiroEscrow::Terms;

#[derive(Debug, Error)]
pub enum ChainError {
    #[error("{0}")]
    Config(String),
    #[error("the node at {url}: {detail}")]
    Rpc { url: String, detail: String },
    #[error("{what} reverted: {reason}")]
    Reverted { what: String, reason: String },
    #[error("compiling the contracts: {0}")]
    Compile(String),
}

pub type Result<T> = std::result::Result<T, ChainError>;

/// The chain ids the service expects: a node for `ethereum` must be chain 1 or a dev chain's.
pub fn expected_chain_id(chain: Chain) -> Option<u64> {
    match chain {
        Chain::Ethereum => Some(1),
        Chain::Polygon => Some(137),
        Chain::Starknet => None,
    }
}

/// A token's decimals: USDC has 6, CIRO 18.
pub fn decimals(token: Token) -> u32 {
    match token {
        Token::Usdc => 6,
        Token::Ciro => 18,
    }
}

/// A price in micro-units (10^-6 of a token) as the token's smallest units.
pub fn units(token: Token, micro: i64) -> U256 {
    U256::from(micro.max(0) as u64) * U256::from(10u64).pow(U256::from(decimals(token) - 6))
}

/// Reads a private key (hex, with or without `0x`) from a file's first line.
pub fn read_key_file(path: &std::path::Path) -> Result<PrivateKeySigner> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ChainError::Config(format!("cannot read the key file {}: {e}", path.display()))
    })?;
    parse_key(text.trim()).map_err(|e| ChainError::Config(format!("{}: {e}", path.display())))
}

pub fn parse_key(hex_key: &str) -> std::result::Result<PrivateKeySigner, String> {
    hex_key
        .trim()
        .parse::<PrivateKeySigner>()
        .map_err(|_| "not a hex secp256k1 private key".to_string())
}

/// Where the contracts of one chain are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub chain_id: u64,
    pub escrow: Address,
    pub ciro: Address,
    pub usdc: Address,
}

impl Deployment {
    pub fn token(&self, token: Token) -> Address {
        match token {
            Token::Ciro => self.ciro,
            Token::Usdc => self.usdc,
        }
    }
}

/// A mined transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxInfo {
    pub hash: B256,
    pub block: u64,
    pub gas: u64,
}

impl TxInfo {
    fn of(r: &TransactionReceipt) -> TxInfo {
        TxInfo {
            hash: r.transaction_hash,
            block: r.block_number.unwrap_or_default(),
            gas: r.gas_used,
        }
    }
}

/// A job's state in the escrow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EscrowState {
    Unknown,
    Open,
    Refunded,
    /// Settled; the keccak256 of the proved output words.
    Settled(B256),
}

/// A job opened in the escrow, as its `Opened` event shows it.
#[derive(Clone, Debug)]
pub struct OpenedJob {
    pub id: B256,
    pub terms: Terms,
    pub tx: B256,
    pub block: u64,
}

/// A node and, optionally, the key that signs transactions.
#[derive(Clone)]
pub struct Node {
    provider: DynProvider,
    pub url: String,
    pub chain_id: u64,
    /// The signer's address (`Address::ZERO` for a read-only connection).
    pub from: Address,
    /// One send at a time per signer: each reads its nonce from the node, so two at once
    /// would take the same one.
    sending: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Node {
    /// Connects to `url` (plain HTTP JSON-RPC) and reads its chain id.
    pub async fn connect(url: &str, key: Option<PrivateKeySigner>) -> Result<Node> {
        let parsed: alloy::transports::http::reqwest::Url = url
            .parse()
            .map_err(|e| ChainError::Config(format!("{url:?} is not a URL: {e}")))?;
        let from = key.as_ref().map_or(Address::ZERO, |k| k.address());
        let provider = match key {
            // The nonce is read from the node for each transaction: a send that fails its gas
            // estimate (a revert) then uses no nonce, as the cached manager's would.
            Some(k) => ProviderBuilder::new()
                .disable_recommended_fillers()
                .with_gas_estimation()
                .with_simple_nonce_management()
                .fetch_chain_id()
                .wallet(EthereumWallet::from(k))
                .connect_http(parsed)
                .erased(),
            None => ProviderBuilder::new().connect_http(parsed).erased(),
        };
        let mut node = Node {
            provider,
            url: url.to_string(),
            chain_id: 0,
            from,
            sending: Default::default(),
        };
        node.chain_id = node.rpc(node.provider.get_chain_id()).await?;
        Ok(node)
    }

    async fn rpc<T, E: std::fmt::Display>(
        &self,
        f: impl std::future::IntoFuture<Output = std::result::Result<T, E>>,
    ) -> Result<T> {
        match tokio::time::timeout(Duration::from_secs(30), f.into_future()).await {
            Ok(r) => r.map_err(|e| self.error(e)),
            Err(_) => Err(ChainError::Rpc {
                url: self.url.clone(),
                detail: "no answer in 30 s".into(),
            }),
        }
    }

    fn error(&self, e: impl std::fmt::Display) -> ChainError {
        ChainError::Rpc {
            url: self.url.clone(),
            detail: e.to_string(),
        }
    }

    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    pub async fn block_number(&self) -> Result<u64> {
        self.rpc(self.provider.get_block_number()).await
    }

    /// The latest block's timestamp (the chain's clock, which deadlines are checked against).
    pub async fn time(&self) -> Result<u64> {
        let block = self
            .rpc(self.provider.get_block_by_number(Default::default()))
            .await?
            .ok_or_else(|| self.error("no latest block"))?;
        Ok(block.header.timestamp)
    }

    /// Sends a transaction and waits for its receipt; a revert (in the gas estimate or mined)
    /// is [`ChainError::Reverted`] with the contract's reason.
    pub async fn send(&self, what: &str, tx: TransactionRequest) -> Result<TxInfo> {
        let hash = self.send_only(what, tx).await?;
        let receipt = self.receipt(hash).await?;
        if !receipt.status() {
            return Err(ChainError::Reverted {
                what: what.to_string(),
                reason: format!("transaction {} failed", receipt.transaction_hash),
            });
        }
        Ok(TxInfo::of(&receipt))
    }

    /// Sends a transaction without waiting for it to be mined: its hash.
    pub async fn send_only(&self, what: &str, tx: TransactionRequest) -> Result<B256> {
        let _one = self.sending.lock().await;
        let pending = self
            .provider
            .send_transaction(tx.from(self.from))
            .await
            .map_err(|e| self.revert_or_rpc(what, e))?;
        Ok(*pending.tx_hash())
    }

    /// The size of the code at `address` (0: no contract).
    pub async fn code_size(&self, address: Address) -> Result<usize> {
        Ok(self.rpc(self.provider.get_code_at(address)).await?.len())
    }

    /// Waits for `hash` to be mined (polling: a receipt mined before a block watcher starts
    /// is never missed), up to two minutes.
    pub async fn receipt(&self, hash: B256) -> Result<TransactionReceipt> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(r) = self
                .rpc(self.provider.get_transaction_receipt(hash))
                .await?
            {
                return Ok(r);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(self.error(format!("transaction {hash} not mined in 120 s")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn revert_or_rpc(&self, what: &str, e: impl std::fmt::Display) -> ChainError {
        let detail = e.to_string();
        match detail.split_once("execution reverted") {
            Some((_, reason)) => ChainError::Reverted {
                what: what.to_string(),
                reason: reason.trim_start_matches([':', ' ']).trim().to_string(),
            },
            None => self.error(detail),
        }
    }

    async fn call(&self, to: Address, data: Vec<u8>) -> Result<Bytes> {
        let tx = call_to(to, data);
        self.rpc(self.provider.call(tx)).await
    }

    /// Deploys `code` (constructor arguments appended): the new contract's address.
    pub async fn deploy(&self, what: &str, code: Vec<u8>) -> Result<(Address, TxInfo)> {
        let tx = TransactionRequest::default().with_deploy_code(code);
        let hash = self.send_only(what, tx).await?;
        let receipt = self.receipt(hash).await?;
        let address = receipt
            .contract_address
            .filter(|_| receipt.status())
            .ok_or_else(|| ChainError::Reverted {
                what: what.to_string(),
                reason: "deployment failed".into(),
            })?;
        Ok((address, TxInfo::of(&receipt)))
    }

    /// Deploys a generated verifier's contracts (last part first, each constructed with the
    /// address of the one after it): the entry's address and the gas spent.
    pub async fn deploy_verifier(
        &self,
        verifier: &ciro_verifier::evm::EvmVerifier,
    ) -> Result<(Address, u64)> {
        let mut next: Option<Address> = None;
        let mut gas = 0;
        for c in &verifier.contracts {
            let mut code = c.deployment_code.clone();
            if let Some(a) = next {
                code.extend_from_slice(&a.abi_encode());
            }
            let (address, tx) = self.deploy(&format!("deploying {}", c.name), code).await?;
            gas += tx.gas;
            next = Some(address);
        }
        next.map(|a| (a, gas))
            .ok_or_else(|| ChainError::Config("the verifier has no contracts".into()))
    }

    /// Compiles and deploys the escrow (operated by this node's key) and the dev tokens CIRO
    /// (18 decimals) and USDC (6).
    pub async fn deploy_dev(&self) -> Result<Deployment> {
        let compiled = ciro_verifier::evm::compile_solidity_with(CONTRACTS_SOURCE, true)
            .map_err(|e| ChainError::Compile(e.to_string()))?;
        let code = |name: &str| {
            compiled
                .iter()
                .find(|c| c.name == name)
                .map(|c| c.deployment_code.clone())
                .ok_or_else(|| ChainError::Compile(format!("no contract {name}")))
        };
        let token = |name: &str, decimals: u8| -> Result<Vec<u8>> {
            let mut c = code("TestToken")?;
            c.extend(
                TestToken::constructorCall {
                    name_: name.into(),
                    symbol_: name.into(),
                    decimals_: decimals,
                }
                .abi_encode(),
            );
            Ok(c)
        };
        let (escrow, _) = self
            .deploy("deploying CiroEscrow", code("CiroEscrow")?)
            .await?;
        let (ciro, _) = self.deploy("deploying CIRO", token("CIRO", 18)?).await?;
        let (usdc, _) = self.deploy("deploying USDC", token("USDC", 6)?).await?;
        Ok(Deployment {
            chain_id: self.chain_id,
            escrow,
            ciro,
            usdc,
        })
    }

    // ---- tokens ----

    pub async fn token_balance(&self, token: Address, who: Address) -> Result<U256> {
        let out = self
            .call(token, TestToken::balanceOfCall(who).abi_encode())
            .await?;
        U256::abi_decode(&out).map_err(|e| self.error(e))
    }

    pub async fn mint(&self, token: Address, to: Address, amount: U256) -> Result<TxInfo> {
        let data = TestToken::mintCall { to, amount }.abi_encode();
        self.send("mint", call_to(token, data)).await
    }

    pub async fn approve(&self, token: Address, spender: Address, amount: U256) -> Result<TxInfo> {
        let data = TestToken::approveCall { spender, amount }.abi_encode();
        self.send("approve", call_to(token, data)).await
    }

    // ---- the escrow ----

    pub async fn register(
        &self,
        escrow: Address,
        model: B256,
        verifier: Address,
        (input_words, output_words): (u32, u32),
    ) -> Result<TxInfo> {
        let data = CiroEscrow::registerCall {
            model,
            verifier,
            inputWords: input_words,
            outputWords: output_words,
        }
        .abi_encode();
        self.send("register", call_to(escrow, data)).await
    }

    /// The verifier registered for `model` and its instance layout, if any.
    pub async fn registered(
        &self,
        escrow: Address,
        model: B256,
    ) -> Result<Option<(Address, u32, u32)>> {
        let out = self
            .call(escrow, CiroEscrow::modelsCall(model).abi_encode())
            .await?;
        let r = CiroEscrow::modelsCall::abi_decode_returns(&out).map_err(|e| self.error(e))?;
        Ok((r._0 != Address::ZERO).then_some((r._0, r._1, r._2)))
    }

    pub async fn open(&self, escrow: Address, terms: &Terms) -> Result<TxInfo> {
        let data = CiroEscrow::openCall { t: terms.clone() }.abi_encode();
        self.send("open", call_to(escrow, data)).await
    }

    pub async fn settle(&self, escrow: Address, terms: &Terms, calldata: &[u8]) -> Result<TxInfo> {
        self.send("settle", settle_tx(escrow, terms, calldata))
            .await
    }

    /// Sends a settlement without waiting for it to be mined.
    pub async fn send_settle(
        &self,
        escrow: Address,
        terms: &Terms,
        calldata: &[u8],
    ) -> Result<B256> {
        self.send_only("settle", settle_tx(escrow, terms, calldata))
            .await
    }

    pub async fn refund(&self, escrow: Address, terms: &Terms) -> Result<TxInfo> {
        let data = CiroEscrow::refundCall { t: terms.clone() }.abi_encode();
        self.send("refund", call_to(escrow, data)).await
    }

    pub async fn escrow_state(&self, escrow: Address, id: B256) -> Result<EscrowState> {
        let out = self
            .call(escrow, CiroEscrow::jobsCall(id).abi_encode())
            .await?;
        let word = B256::abi_decode(&out).map_err(|e| self.error(e))?;
        let n = U256::from_be_bytes(word.0);
        Ok(if n.is_zero() {
            EscrowState::Unknown
        } else if n == U256::from(1) {
            EscrowState::Open
        } else if n == U256::from(2) {
            EscrowState::Refunded
        } else {
            EscrowState::Settled(word)
        })
    }

    /// Jobs opened in `escrow` in blocks `from..=to`.
    pub async fn opened(&self, escrow: Address, from: u64, to: u64) -> Result<Vec<OpenedJob>> {
        let filter = Filter::new()
            .address(escrow)
            .event_signature(CiroEscrow::Opened::SIGNATURE_HASH)
            .from_block(from)
            .to_block(to);
        let logs = self.rpc(self.provider.get_logs(&filter)).await?;
        let mut out = Vec::new();
        for log in logs {
            let Ok(ev) = CiroEscrow::Opened::decode_log(&log.inner) else {
                continue;
            };
            out.push(OpenedJob {
                id: ev.data.id,
                terms: ev.data.terms,
                tx: log.transaction_hash.unwrap_or_default(),
                block: log.block_number.unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// The transaction that settled (or refunded) job `id`, from the escrow's events.
    pub async fn closing_tx(&self, escrow: Address, id: B256, from: u64) -> Result<Option<TxInfo>> {
        let filter = Filter::new()
            .address(escrow)
            .event_signature(vec![
                CiroEscrow::Settled::SIGNATURE_HASH,
                CiroEscrow::Refunded::SIGNATURE_HASH,
            ])
            .topic1(id)
            .from_block(from);
        let logs = self.rpc(self.provider.get_logs(&filter)).await?;
        let Some(hash) = logs.first().and_then(|l| l.transaction_hash) else {
            return Ok(None);
        };
        let receipt = self
            .rpc(self.provider.get_transaction_receipt(hash))
            .await?;
        Ok(receipt.as_ref().map(TxInfo::of))
    }
}

fn settle_tx(escrow: Address, terms: &Terms, calldata: &[u8]) -> TransactionRequest {
    let data = CiroEscrow::settleCall {
        t: terms.clone(),
        proof: Bytes::copy_from_slice(calldata),
    }
    .abi_encode();
    call_to(escrow, data)
}

/// A call of the contract at `to` with `data`.
fn call_to(to: Address, data: Vec<u8>) -> TransactionRequest {
    TransactionRequest::default().with_to(to).with_input(data)
}

/// A job's id in the escrow: the hash of its terms (what the contract's `jobId` computes).
pub fn job_id(terms: &Terms) -> B256 {
    keccak256(terms.abi_encode())
}

/// The service's reference for its job `id`.
pub fn job_ref(id: i64) -> B256 {
    B256::from(U256::from(id.max(0) as u64))
}

pub use tokio::runtime::Runtime;

/// A single-threaded runtime for chain calls from synchronous code (the CLI, start-up, the
/// settler's thread).
pub fn runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
