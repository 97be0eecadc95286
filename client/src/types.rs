//! The HTTP API's documents (`scheduler/openapi.json`), as the service writes them and clients
//! read them: one definition for both sides.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

// ---- money ----

pub const MICRO: i64 = 1_000_000;

/// Settlement chains a job can be paid on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Chain {
    Starknet,
    Ethereum,
    Polygon,
}

pub const CHAINS: [Chain; 3] = [Chain::Starknet, Chain::Ethereum, Chain::Polygon];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Token {
    Ciro,
    Usdc,
}

pub const TOKENS: [Token; 2] = [Token::Ciro, Token::Usdc];

impl Chain {
    pub fn as_str(&self) -> &'static str {
        match self {
            Chain::Starknet => "starknet",
            Chain::Ethereum => "ethereum",
            Chain::Polygon => "polygon",
        }
    }
}

impl Token {
    pub fn as_str(&self) -> &'static str {
        match self {
            Token::Ciro => "CIRO",
            Token::Usdc => "USDC",
        }
    }
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Chain {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        CHAINS
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown chain {s:?}: choose one of starknet, ethereum, polygon")
            })
    }
}

impl FromStr for Token {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TOKENS
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown token {s:?}: choose CIRO or USDC"))
    }
}

/// `12.345678` from micro-units.
pub fn format_amount(micro: i64) -> String {
    let sign = if micro < 0 { "-" } else { "" };
    let m = micro.unsigned_abs();
    format!("{sign}{}.{:06}", m / MICRO as u64, m % MICRO as u64)
}

/// Parses a decimal token amount (`100`, `0.25`) into micro-units, exactly.
pub fn parse_amount(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not an amount of tokens (like 100 or 0.25, at most 6 decimals)");
    let (whole, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    if whole.is_empty() && frac.is_empty() || frac.len() > 6 {
        return Err(bad());
    }
    let digits = |d: &str| d.is_empty() || d.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(frac) {
        return Err(bad());
    }
    let w: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let f: i64 = format!("{frac:0<6}").parse().map_err(|_| bad())?;
    w.checked_mul(MICRO)
        .and_then(|m| m.checked_add(f))
        .ok_or_else(bad)
}

// ---- jobs' parts ----

/// A job's lifecycle. `Verified` is the only successful end; `Failed` and `Cancelled` release
/// the hold. (A request that fails validation never becomes a job.) A job paid through an
/// on-chain escrow starts `AwaitingPayment` until the escrow is opened; its settlement is in
/// [`Job::payment`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    AwaitingPayment,
    Queued,
    Proving,
    Proved,
    Verified,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(&self) -> &'static str {
        match self {
            JobState::AwaitingPayment => "awaiting_payment",
            JobState::Queued => "queued",
            JobState::Proving => "proving",
            JobState::Proved => "proved",
            JobState::Verified => "verified",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// A state as the store writes it (anything else reads as failed).
    pub fn from_db(s: &str) -> JobState {
        match s {
            "awaiting_payment" => JobState::AwaitingPayment,
            "queued" => JobState::Queued,
            "proving" => JobState::Proving,
            "proved" => JobState::Proved,
            "verified" => JobState::Verified,
            "cancelled" => JobState::Cancelled,
            _ => JobState::Failed,
        }
    }

    pub fn is_final(&self) -> bool {
        matches!(
            self,
            JobState::Verified | JobState::Failed | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Milliseconds spent in each phase of a job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub queue_wait_ms: Option<f64>,
    pub witness_ms: Option<f64>,
    pub prove_ms: Option<f64>,
    pub verify_ms: Option<f64>,
    /// From submission to the final state.
    pub total_ms: Option<f64>,
}

/// Where a job sits in an aggregate: the batch, and its statement's index in the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRef {
    pub id: i64,
    pub index: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub chain: Chain,
    pub token: Token,
    pub available_micro: i64,
    pub held_micro: i64,
    pub spent_micro: i64,
    pub credited_micro: i64,
}

// ---- accounts ----

/// `POST /v1/accounts`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The answer to `POST /v1/accounts`: the API key is shown this once.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccountCreated {
    pub account_id: i64,
    pub name: String,
    pub api_key: String,
}

/// `GET /v1/account` and the answer to `POST /v1/faucet`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Account {
    pub account_id: i64,
    pub balances: Vec<Balance>,
}

/// `POST /v1/faucet` (chain and token by name, parsed by the service).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaucetRequest {
    pub chain: String,
    pub token: String,
    pub amount_micro: i64,
}

// ---- models ----

/// How an image becomes a model's input: its size, channels (1 or 3) and the range pixels
/// 0..255 map to. Clients decode images the same way to check that a proof is about theirs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub range: [f64; 2],
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputInfo {
    pub shape: Vec<usize>,
    pub range: [f64; 2],
}

/// What the API shows of a model (`GET /v1/models/{name}`, an upload's answer).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub uploaded: bool,
    pub model_hash: String,
    pub commitment: String,
    pub inputs: Vec<InputInfo>,
    pub outputs: Vec<Vec<usize>>,
    pub accepts_images: bool,
    /// How an image becomes the input (clients decode it the same way to check the proof).
    pub image: Option<ImageInfo>,
    pub labels: Option<Vec<String>>,
    pub trace_rows: u64,
    /// The price with stwo.
    pub price_micro: i64,
    /// The price with halo2-KZG (the default on Ethereum and Polygon).
    pub price_halo2_micro: i64,
    /// The price with each proof system, by name (what a client quotes before submitting).
    #[serde(default)]
    pub prices_micro: BTreeMap<String, i64>,
    pub proof_systems: Vec<String>,
}

/// An entry of `GET /v1/models`: a model, or one the service could not load (and why).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModelEntry {
    Model(Box<ModelInfo>),
    Unavailable { name: String, error: String },
}

impl ModelEntry {
    pub fn name(&self) -> &str {
        match self {
            ModelEntry::Model(m) => &m.name,
            ModelEntry::Unavailable { name, .. } => name,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelList {
    pub models: Vec<ModelEntry>,
}

// ---- jobs ----

/// `POST /v1/jobs`. Chain, token and proof system are names (`"ethereum"`, `"USDC"`,
/// `"halo2"`), parsed by the service so that a wrong one gets a message listing the choices.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    pub model: String,
    /// EZKL-style tensor input: `{"input_data": [[...], ...]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// A PNG or JPEG, base64-encoded, for models that declare image preprocessing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_base64: Option<String>,
    pub chain: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof_system: Option<String>,
}

/// A job as the API shows it (`GET /v1/jobs/{id}`, each live event).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: i64,
    pub model: String,
    pub model_hash: String,
    pub state: JobState,
    pub error: Option<String>,
    pub chain: Chain,
    pub token: Token,
    pub price_micro: i64,
    pub proof_system: String,
    pub attempts: i64,
    pub created_at: f64,
    pub finished_at: Option<f64>,
    pub timings: Timings,
    /// Outputs and label once proved.
    pub result: Option<Value>,
    pub proof_bytes: Option<i64>,
    /// plonky2 jobs: the batch whose aggregate covers this job, once aggregated.
    pub batch: Option<BatchRef>,
    /// Jobs paid through an on-chain escrow (Ethereum, Polygon on a chain-backed service): the
    /// terms to open it with, then what the chain shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<EscrowPayment>,
}

impl Job {
    /// Nothing more will happen to it: its state is final and, if it is paid through an
    /// escrow that was opened, the escrow is settled or refunded too.
    pub fn is_done(&self) -> bool {
        self.state.is_final() && self.payment.as_ref().is_none_or(|p| p.status != "open")
    }
}

/// A job's on-chain payment. The service quotes the terms; the user opens the escrow with
/// them (adding their address and a deadline no earlier than `min_deadline_s` from the chain's
/// clock); the service proves, then settles with the proof. Hashes and addresses are `0x` hex.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscrowPayment {
    pub chain_id: u64,
    /// The escrow contract.
    pub escrow: String,
    /// The token contract.
    pub token_address: String,
    /// The price in the token's smallest units (decimal).
    pub price_units: String,
    /// The terms' `ref` (the job id as a word), model commitment and input commitment.
    #[serde(rename = "ref")]
    pub job_ref: String,
    pub model: String,
    pub input: String,
    /// The shortest time to the deadline the service accepts, in seconds.
    pub min_deadline_s: u64,
    /// `awaiting` (no escrow yet), `open`, `settled` or `refunded`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<u64>,
    /// The job's id in the escrow (the hash of its terms), once open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escrow_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_tx: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_block: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_tx: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_block: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_gas: Option<u64>,
    /// keccak256 of the proved output words, as the escrow recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_tx: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobList {
    pub jobs: Vec<Job>,
}

/// `GET /v1/jobs/{id}/result`: a verified job's outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    pub job_id: i64,
    pub model: String,
    pub model_hash: String,
    pub proof_system: String,
    pub verified: bool,
    pub outputs: Vec<Vec<f64>>,
    pub label: Option<String>,
    pub model_commitment: String,
    pub security_bits: u32,
    /// halo2 jobs: `0x`-hex calldata for the model's Solidity verifier.
    pub evm_calldata: Option<String>,
    pub price_micro: i64,
    pub chain: Chain,
    pub token: Token,
}

// ---- batches ----

/// One statement an aggregate covers (hashes only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub model_name: String,
    pub model_commitment: String,
    pub circuit: String,
    pub public_values: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMember {
    pub job: i64,
    pub index: i64,
}

/// `GET /v1/batches/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub id: i64,
    /// `aggregated` or `failed`.
    pub state: String,
    pub error: Option<String>,
    pub created_at: f64,
    pub proofs: i64,
    pub aggregate_ms: f64,
    pub aggregate_bytes: Option<i64>,
    /// Hash of the merge circuit (the aggregate's fixed verification key).
    pub aggregator: Option<String>,
    pub statements: Vec<Statement>,
    /// The caller's jobs in this batch.
    pub your_jobs: Vec<BatchMember>,
}

// ---- service ----

/// `GET /healthz`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Health {
    pub ok: bool,
    pub queued: i64,
    pub proving: i64,
    /// The job store: `sqlite` (the embedded default) or `postgres` (shared by many nodes).
    #[serde(default)]
    pub store: String,
    /// Proving workers heard from in the last minute (this process's and other machines').
    #[serde(default)]
    pub workers: Vec<WorkerInfo>,
}

/// A proving worker process as it last reported itself.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WorkerInfo {
    pub id: String,
    pub host: String,
    /// The proof systems it proves.
    pub backends: Vec<String>,
    /// How many jobs it proves at once.
    pub concurrency: i64,
    /// The jobs it is proving now.
    pub current_jobs: Vec<i64>,
    pub started_at: f64,
    /// When it last reported (seconds since the epoch); it reports every few seconds.
    pub heartbeat_at: f64,
}

/// Every error answer: a message for people and a stable code for programs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub code: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!("StarkNet".parse::<Chain>().unwrap(), Chain::Starknet);
        assert_eq!("usdc".parse::<Token>().unwrap(), Token::Usdc);
        assert!("solana".parse::<Chain>().unwrap_err().contains("starknet"));
        assert!("ETH".parse::<Token>().unwrap_err().contains("CIRO"));
        assert_eq!(format_amount(20_100), "0.020100");
        assert_eq!(format_amount(-3 * MICRO - 5), "-3.000005");
        assert_eq!(parse_amount("100"), Ok(100 * MICRO));
        assert_eq!(parse_amount("0.25"), Ok(250_000));
        assert_eq!(parse_amount(".000001"), Ok(1));
        for bad in [
            "",
            ".",
            "-1",
            "1e3",
            "0.0000001",
            "abc",
            "99999999999999999",
        ] {
            assert!(parse_amount(bad).is_err(), "{bad}");
        }
    }
}
