//! `ciro-cli`: the user client of the Ciro service.
//!
//! The server URL and API key come from flags, then the environment (`CIRO_SERVER`,
//! `CIRO_API_KEY`), then the config file (`--config`, `CIRO_CONFIG`, or
//! `~/.config/ciro/config.json`, which `ciro-cli signup --save` writes).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine;
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use ciro_client::types::{
    format_amount, parse_amount, Account, Job, JobRequest, JobState, ModelEntry, ModelList,
};
use ciro_client::ClientError;
use ciro_prover::plonky2_backend::aggregate::Aggregate;
use ciro_prover::ProofBundle;
use sha2::{Digest, Sha256};

mod chain_pay;
mod shared;
use shared::{fmt_values, is_image};

const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

#[derive(Parser)]
#[command(
    name = "ciro-cli",
    version,
    about = "Submit ML inference jobs to a Ciro service and get results with zero-knowledge proofs"
)]
struct Cli {
    /// Service URL [env CIRO_SERVER; default http://127.0.0.1:8080]
    #[arg(long, global = true)]
    server: Option<String>,
    /// API key [env CIRO_API_KEY]
    #[arg(long, global = true)]
    api_key: Option<String>,
    /// Config file [env CIRO_CONFIG; default ~/.config/ciro/config.json]
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an account and print its API key (`--save` writes it to the config file).
    Signup {
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        save: bool,
    },
    /// Credit test tokens from the local faucet.
    Faucet {
        #[arg(long)]
        chain: String,
        #[arg(long, default_value = "CIRO")]
        token: String,
        /// Whole tokens, e.g. 100 or 0.5.
        #[arg(long, default_value = "100")]
        amount: String,
    },
    /// Show balances per chain and token.
    Balance,
    /// List the models the service proves.
    ListModels,
    /// Upload an ONNX model (it must declare `ciro.input_range` metadata).
    UploadModel { model: PathBuf },
    /// Submit a job; prints its id and price.
    SubmitJob {
        /// A model name from `list-models`.
        #[arg(long)]
        model: String,
        /// A JSON tensor (`{"input_data": [[...]]}`) or a PNG/JPEG image.
        #[arg(long)]
        input: PathBuf,
        /// Chain to pay on: starknet, ethereum or polygon.
        #[arg(long)]
        pay_with: String,
        /// CIRO or USDC.
        #[arg(long, default_value = "CIRO")]
        token: String,
        /// stwo, halo2 or plonky2 [default: stwo on Starknet, halo2 on Ethereum and Polygon, whose
        /// verifier contracts check halo2-KZG proofs].
        #[arg(long)]
        proof_system: Option<String>,
        /// Makes a retried submission return the first job instead of paying twice [default: a
        /// new random key per submission, so a retry after a lost answer cannot pay twice].
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Follow the job until it finishes.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up following after this many seconds (the job goes on).
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
        /// On a service that settles on chain: the wallet that opens the job's escrow.
        #[command(flatten)]
        wallet: chain_pay::WalletArgs,
    },
    /// On-chain payments: open a job's escrow, read it from your node, reclaim it.
    Chain {
        #[command(subcommand)]
        command: ChainCommand,
    },
    /// Show a job's state, timings and result.
    JobStatus {
        #[arg(long)]
        job_id: i64,
        /// Follow the job until it finishes.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up following after this many seconds (the job goes on).
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    /// Download a verified job's result and proof bundle, check the proof against the key and
    /// input pinned when the job was submitted from this machine, and save them with the key
    /// (and, for halo2 jobs, the calldata for the model's Solidity verifier).
    JobResult {
        #[arg(long)]
        job_id: i64,
        /// Folder to write into.
        #[arg(short, long, default_value = ".")]
        output: PathBuf,
    },
    /// List your jobs, newest first.
    ListJobs {
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Cancel a queued job (its held price is released).
    CancelJob {
        #[arg(long)]
        job_id: i64,
    },
    /// Verify a proof: a job's (its proof downloaded now, checked against the key and input
    /// pinned at submission) or files from `job-result`.
    Verify {
        #[arg(long, conflicts_with_all = ["bundle", "vk"])]
        job_id: Option<i64>,
        #[arg(long, requires = "vk")]
        bundle: Option<PathBuf>,
        #[arg(long, requires = "bundle")]
        vk: Option<PathBuf>,
        /// With --bundle: also check that the proof is about this input (JSON).
        #[arg(long, requires = "bundle")]
        input: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ChainCommand {
    /// Open a submitted job's escrow from your wallet (checks the service's terms against the
    /// key and input pinned at submission first).
    Pay {
        #[arg(long)]
        job_id: i64,
        #[command(flatten)]
        wallet: chain_pay::WalletArgs,
    },
    /// Read a job's escrow straight from a node: open, settled (with the proved output hash)
    /// or refunded, without trusting the service.
    Status {
        #[arg(long)]
        job_id: i64,
        #[command(flatten)]
        wallet: chain_pay::WalletArgs,
    },
    /// Reclaim a job's escrow after its deadline.
    Refund {
        #[arg(long)]
        job_id: i64,
        #[command(flatten)]
        wallet: chain_pay::WalletArgs,
    },
}

#[derive(Default, Serialize, Deserialize)]
struct ConfigFile {
    server: Option<String>,
    api_key: Option<String>,
}

fn config_path(cli: &Cli) -> Option<PathBuf> {
    cli.config
        .clone()
        .or_else(|| std::env::var_os("CIRO_CONFIG").map(PathBuf::from))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| {
                PathBuf::from(h)
                    .join(".config")
                    .join("ciro")
                    .join("config.json")
            })
        })
}

fn read_config(path: Option<&Path>) -> Result<ConfigFile> {
    let Some(path) = path else {
        return Ok(ConfigFile::default());
    };
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("config file {} is not valid JSON", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read config file {}", path.display())),
    }
}

/// The library client, plus the check that a command needing a key has one.
struct Client {
    api: ciro_client::Client,
    server: String,
}

impl Client {
    fn need_key(&self) -> Result<()> {
        if self.api.api_key().is_none() {
            bail!("no API key: pass --api-key, set CIRO_API_KEY, or run `ciro-cli signup --save`");
        }
        Ok(())
    }
}

pub fn main() {
    let cli = Cli::parse();
    shared::exit_on_error(cli.json, dispatch(&cli));
}

fn dispatch(cli: &Cli) -> Result<()> {
    let cfg_path = config_path(cli);
    let cfg = read_config(cfg_path.as_deref())?;
    let server = cli
        .server
        .clone()
        .or_else(|| std::env::var("CIRO_SERVER").ok())
        .or(cfg.server)
        .unwrap_or_else(|| DEFAULT_SERVER.into());
    let api_key = cli
        .api_key
        .clone()
        .or_else(|| std::env::var("CIRO_API_KEY").ok())
        .or(cfg.api_key);
    let mut client = Client {
        api: ciro_client::Client::new(&server, api_key),
        server,
    };
    let out = Output { json: cli.json };
    match &cli.command {
        Command::Signup { name, save } => {
            let v = client.api.signup(name.as_deref())?;
            if *save {
                let path = cfg_path.context("no config path: pass --config")?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                let file = ConfigFile {
                    server: Some(client.server.clone()),
                    api_key: Some(v.api_key.clone()),
                };
                write_private(&path, &serde_json::to_vec_pretty(&file)?)?;
                if !cli.json {
                    eprintln!("saved the key to {}", path.display());
                }
            }
            out.show(&v, || {
                format!(
                    "account {} ({})\napi key: {}",
                    v.account_id, v.name, v.api_key
                )
            })
        }
        Command::Faucet {
            chain,
            token,
            amount,
        } => {
            client.need_key()?;
            let micro = parse_amount(amount).map_err(anyhow::Error::msg)?;
            let v = client.api.faucet(chain, token, micro)?;
            out.show(&v, || balances_text(&v))
        }
        Command::Balance => {
            client.need_key()?;
            let v = client.api.account()?;
            out.show(&v, || balances_text(&v))
        }
        Command::ListModels => {
            let v = client.api.models()?;
            out.show(&v, || models_text(&v))
        }
        Command::UploadModel { model } => {
            client.need_key()?;
            let bytes =
                std::fs::read(model).with_context(|| format!("cannot read {}", model.display()))?;
            let v = client.api.upload_model(&bytes)?;
            out.show(&v, || {
                format!(
                    "model {} registered\n{}",
                    v.name,
                    model_line(&ModelEntry::Model(Box::new(v.clone())))
                )
            })
        }
        Command::SubmitJob {
            model,
            input,
            pay_with,
            token,
            proof_system,
            idempotency_key,
            wait,
            timeout,
            wallet,
        } => {
            client.need_key()?;
            let chain: ciro_scheduler::pricing::Chain =
                pay_with.parse().map_err(anyhow::Error::msg)?;
            let system = match proof_system {
                Some(p) => p.clone(),
                None => ciro_scheduler::pricing::default_backend(chain)
                    .name()
                    .to_string(),
            };
            let mut body = JobRequest {
                model: model.clone(),
                chain: pay_with.clone(),
                token: Some(token.clone()),
                proof_system: Some(system.clone()),
                ..Default::default()
            };
            let bytes =
                std::fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
            // Pin what the proof must be about now, before the service is involved: the model's
            // key as served at submission and the input as this machine reads it.
            let info = client.api.model(model)?;
            let vk_bytes = client.api.verifying_key(model, &system)?;
            let vk = ciro_prover::load_verifying_key(&vk_bytes).map_err(|e| {
                anyhow::anyhow!("the service sent an unusable key for {model}: {e}")
            })?;
            let floats: Vec<Vec<f32>> = if is_image(input) {
                let image = info
                    .image
                    .as_ref()
                    .with_context(|| format!("model {model} takes no images; give a JSON input"))?;
                let spec = ciro_model_compiler::ir::ImageSpec {
                    height: image.height,
                    width: image.width,
                    channels: image.channels,
                    range: image.range,
                };
                body.image_base64 = Some(base64::engine::general_purpose::STANDARD.encode(&bytes));
                vec![ciro_model_compiler::input::decode_image(
                    &bytes,
                    &input.display().to_string(),
                    &spec,
                )?]
            } else {
                let v: Value = serde_json::from_slice(&bytes).with_context(|| {
                    format!(
                        "{} is neither a PNG/JPEG image nor a JSON input",
                        input.display()
                    )
                })?;
                let floats = ciro_model_compiler::input::parse_json(&v.to_string())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
                body.input = Some(v);
                floats
            };
            let size = serde_json::to_vec(&body)?.len();
            if size > ciro_scheduler::api::MAX_JOB_BYTES {
                bail!(
                    "the request would be {size} bytes; the service accepts up to {} (use a smaller image)",
                    ciro_scheduler::api::MAX_JOB_BYTES
                );
            }
            let key = idempotency_key
                .clone()
                .unwrap_or_else(|| format!("ciro-cli-{}", hex::encode(rand::random::<[u8; 16]>())));
            // A lost answer (a dropped connection, a time-out) is retried with the same key:
            // the service returns the job the first attempt made instead of holding twice.
            let mut attempt = 0;
            let job = loop {
                attempt += 1;
                match client.api.submit_job(&body, Some(&key)) {
                    Err(ClientError::Transport { detail, .. }) if attempt < 3 => {
                        eprintln!(
                            "submission not answered ({detail}); retrying with the same idempotency key"
                        );
                        std::thread::sleep(Duration::from_secs(attempt));
                    }
                    other => break other?,
                }
            };
            let id = job.id;
            let pin = Pinned {
                server: client.server.clone(),
                job_id: id,
                model: model.clone(),
                proof_system: system.clone(),
                commitment: vk.commitment(),
                vk: String::from_utf8(vk_bytes).context("the key is not UTF-8 JSON")?,
                input: floats,
            };
            pin.save(cfg_path.as_deref())?;
            if !cli.json {
                println!(
                    "job {} submitted: {} on {}, price {} {} ({})",
                    job.id,
                    job.model,
                    job.chain,
                    format_amount(job.price_micro),
                    job.token,
                    if job.payment.is_some() {
                        "paid into the escrow contract; paid out only for a proof it verifies"
                    } else {
                        "held; charged only once the proof verifies"
                    }
                );
            }
            if job.payment.is_some() {
                pay(&pin, &job, wallet, cli.json)?;
            }
            if *wait {
                let done = follow(&client, id, cli.json, *timeout)?;
                return out.show(&done, || job_text(&done));
            }
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&job)?);
            }
            Ok(())
        }
        Command::Chain { command } => {
            client.need_key()?;
            match command {
                ChainCommand::Pay { job_id, wallet } => {
                    let pin = Pinned::load(cfg_path.as_deref(), &client.server, *job_id)?;
                    let job = client.api.job(*job_id)?;
                    let tx = pay(&pin, &job, wallet, true)?;
                    let v = json!({ "job_id": job_id, "open_tx": format!("{:#x}", tx.hash), "gas": tx.gas });
                    out.show(&v, || {
                        format!(
                            "job {job_id}: escrow opened in {:#x} ({} gas); the service proves it once it sees the payment",
                            tx.hash, tx.gas
                        )
                    })
                }
                ChainCommand::Status { job_id, wallet } => {
                    let job = client.api.job(*job_id)?;
                    let p = chain_pay::payment_of(&job)?;
                    let (state, held) = chain_pay::block_on(chain_pay::status(wallet, p))?;
                    let (state_name, output) = match state {
                        ciro_scheduler::chain::EscrowState::Unknown => ("unknown", None),
                        ciro_scheduler::chain::EscrowState::Open => ("open", None),
                        ciro_scheduler::chain::EscrowState::Refunded => ("refunded", None),
                        ciro_scheduler::chain::EscrowState::Settled(h) => {
                            ("settled", Some(format!("{h:#x}")))
                        }
                    };
                    let v = json!({
                        "job_id": job_id,
                        "chain_id": p.chain_id,
                        "escrow": p.escrow,
                        "on_chain": state_name,
                        "output_hash": output,
                        "escrow_token_balance": held.to_string(),
                        "service_says": p.status,
                    });
                    out.show(&v, || {
                        format!(
                            "job {job_id}: escrow {state_name} on chain {} (the node says; the service says {}){}",
                            p.chain_id,
                            p.status,
                            output.as_deref().map(|h| format!("\noutput hash: {h}")).unwrap_or_default()
                        )
                    })
                }
                ChainCommand::Refund { job_id, wallet } => {
                    let job = client.api.job(*job_id)?;
                    let p = chain_pay::payment_of(&job)?;
                    let tx = chain_pay::block_on(chain_pay::refund(wallet, p))?;
                    let v = json!({ "job_id": job_id, "refund_tx": format!("{:#x}", tx.hash) });
                    out.show(&v, || {
                        format!("job {job_id}: escrow refunded in {:#x}", tx.hash)
                    })
                }
            }
        }
        Command::JobStatus {
            job_id,
            wait,
            timeout,
        } => {
            client.need_key()?;
            let v = if *wait {
                follow(&client, *job_id, cli.json, *timeout)?
            } else {
                client.api.job(*job_id)?
            };
            out.show(&v, || job_text(&v))
        }
        Command::JobResult { job_id, output } => {
            client.need_key()?;
            let pin = Pinned::load(cfg_path.as_deref(), &client.server, *job_id)?;
            let result = client.api.result(*job_id)?;
            let bundle = client.api.proof(*job_id)?;
            // Nothing is saved unless the proof is about the pinned model and input.
            pin.check(&bundle)?;
            let model = safe_file_name(&pin.model);
            let system = safe_file_name(&pin.proof_system);
            let vk = pin.vk.clone().into_bytes();
            std::fs::create_dir_all(output)
                .with_context(|| format!("creating {}", output.display()))?;
            let mut paths = vec![
                (
                    output.join(format!("job-{job_id}.result.json")),
                    serde_json::to_vec_pretty(&result)?,
                ),
                (output.join(format!("job-{job_id}.bundle")), bundle),
                (
                    output.join(match system.as_str() {
                        "stwo" => format!("{model}.vk.json"),
                        other => format!("{model}.{other}.vk.json"),
                    }),
                    vk,
                ),
            ];
            if let Some(hex_data) = result.evm_calldata.as_deref() {
                let data = hex::decode(hex_data.trim_start_matches("0x"))
                    .context("the service sent calldata that is not hex")?;
                paths.push((output.join(format!("job-{job_id}.calldata")), data));
            }
            for (p, bytes) in &paths {
                std::fs::write(p, bytes).with_context(|| format!("writing {}", p.display()))?;
            }
            let v = json!({
                "result": result,
                "files": paths.iter().map(|(p, _)| p.display().to_string()).collect::<Vec<_>>(),
            });
            out.show(&v, || {
                let mut s = result_text(
                    &result.outputs,
                    result.label.as_deref(),
                    Some(&result.model_commitment),
                );
                for (p, _) in &paths {
                    s.push_str(&format!("\nwrote {}", p.display()));
                }
                s
            })
        }
        Command::ListJobs { limit } => {
            client.need_key()?;
            let v = client.api.jobs(Some(*limit))?;
            out.show(&v, || {
                if v.jobs.is_empty() {
                    return "no jobs".into();
                }
                let mut s = format!(
                    "{:>6}  {:<22} {:<10} {:<9} {:>10}  {}",
                    "id", "model", "state", "chain", "price", "label"
                );
                for j in &v.jobs {
                    let label = j.result.as_ref().and_then(|r| r["label"].as_str());
                    s.push_str(&format!(
                        "\n{:>6}  {:<22} {:<10} {:<9} {:>10}  {}",
                        j.id,
                        j.model,
                        j.state,
                        j.chain,
                        format_amount(j.price_micro),
                        label.unwrap_or("")
                    ));
                }
                s
            })
        }
        Command::CancelJob { job_id } => {
            client.need_key()?;
            let v = client.api.cancel(*job_id)?;
            out.show(&v, || {
                format!("job {job_id} cancelled; its hold is released")
            })
        }
        Command::Verify {
            job_id,
            bundle,
            vk,
            input,
        } => {
            std::panic::set_hook(Box::new(|_| {}));
            let start = Instant::now();
            let (v, checked, batch) = match (job_id, bundle, vk) {
                (Some(id), _, _) => {
                    client.need_key()?;
                    let pin = Pinned::load(cfg_path.as_deref(), &client.server, *id)?;
                    let bytes = client.api.proof(*id)?;
                    let v = pin.check(&bytes)?;
                    let batch = pin.check_batch(&client, &bytes)?;
                    (v, Some(format!("the input submitted as job {id}")), batch)
                }
                (None, Some(b), Some(k)) => {
                    let key = ciro_verifier::load_key(k)?;
                    let v = ciro_verifier::verify(key.as_ref(), &ProofBundle::load(b)?)?;
                    if let Some(path) = input {
                        let floats = ciro_model_compiler::input::read_json(path)?;
                        v.check_inputs(key.as_ref(), &floats)
                            .map_err(|e| anyhow::anyhow!("REJECTED for {}: {e}", path.display()))?;
                    }
                    (v, input.as_ref().map(|p| p.display().to_string()), None)
                }
                _ => bail!("give --job-id, or --bundle and --vk"),
            };
            let ms = start.elapsed().as_secs_f64() * 1e3;
            shared::print_verified(cli.json, &v, ms, checked.as_deref(), batch.as_ref());
            Ok(())
        }
    }
}

/// What a submission pinned: the key the model's proofs must verify under, and the input the
/// proof must be about, as this machine read it. Kept beside the config file, one file per job.
#[derive(Serialize, Deserialize)]
struct Pinned {
    server: String,
    job_id: i64,
    model: String,
    proof_system: String,
    commitment: String,
    /// The verification key file as served at submission.
    vk: String,
    input: Vec<Vec<f32>>,
}

impl Pinned {
    fn path(cfg: Option<&Path>, server: &str, job_id: i64) -> Result<PathBuf> {
        let dir = cfg
            .and_then(Path::parent)
            .context("no config path to keep submitted jobs beside: pass --config")?;
        let tag = hex::encode(&Sha256::digest(server.trim_end_matches('/').as_bytes())[..6]);
        Ok(dir.join("jobs").join(format!("{tag}-{job_id}.json")))
    }

    fn save(&self, cfg: Option<&Path>) -> Result<()> {
        let path = Self::path(cfg, &self.server, self.job_id)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        write_private(&path, &serde_json::to_vec(self)?)
    }

    fn load(cfg: Option<&Path>, server: &str, job_id: i64) -> Result<Pinned> {
        let path = Self::path(cfg, server, job_id)?;
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "job {job_id} was not submitted from this machine (no record at {}): download its files with the web app and check them with `ciro verify BUNDLE --vk KEY --input INPUT`",
                path.display()
            )
        })?;
        serde_json::from_slice(&bytes).with_context(|| format!("{} is unreadable", path.display()))
    }

    /// Verifies a downloaded bundle under the pinned key and checks it is about the pinned input.
    fn check(&self, bundle: &[u8]) -> Result<ciro_verifier::Verified> {
        let key = ciro_prover::load_verifying_key(self.vk.as_bytes()).map_err(|e| {
            anyhow::anyhow!("the pinned key of job {} is unusable: {e}", self.job_id)
        })?;
        let bundle = ProofBundle::from_bytes(bundle)
            .map_err(|e| anyhow::anyhow!("the service sent an unreadable proof: {e}"))?;
        let v = ciro_verifier::verify(key.as_ref(), &bundle).map_err(|e| {
            anyhow::anyhow!(
                "the proof of job {} does not verify under the key pinned at submission: {e}",
                self.job_id
            )
        })?;
        v.check_inputs(key.as_ref(), &self.input)
            .map_err(|e| anyhow::anyhow!("REJECTED: job {}: {e}", self.job_id))?;
        Ok(v)
    }
}

impl Pinned {
    /// A plonky2 job the service has aggregated: its batch's aggregate, downloaded, must verify
    /// and list this job's statement under the pinned key. `None` while the job is in no batch.
    fn check_batch(&self, client: &Client, bundle: &[u8]) -> Result<Option<shared::BatchCheck>> {
        let id = self.job_id;
        let job = client.api.job(id)?;
        let Some(batch_ref) = job.batch else {
            return Ok(None);
        };
        let batch = batch_ref.id;
        let bytes = client.api.batch_aggregate(batch)?;
        let agg = Aggregate::from_bytes(&bytes)
            .map_err(|e| anyhow::anyhow!("the service sent an unreadable aggregate: {e}"))?;
        let key = ciro_prover::load_verifying_key(self.vk.as_bytes())
            .map_err(|e| anyhow::anyhow!("the pinned key of job {id} is unusable: {e}"))?;
        let bundle = ProofBundle::from_bytes(bundle)
            .map_err(|e| anyhow::anyhow!("the service sent an unreadable proof: {e}"))?;
        let v = ciro_verifier::aggregate::verify(&agg, &[key], Some(&bundle))
            .map_err(|e| anyhow::anyhow!("REJECTED: batch {batch} and job {id}: {e}"))?;
        // The service's index for this job, if the statement is there (equal statements of
        // jobs on one input are listed once each); else the first place it is listed.
        let claimed = usize::try_from(batch_ref.index).ok();
        let index = match claimed {
            Some(i) if v.covers.contains(&i) => i,
            _ => v.covers[0],
        };
        Ok(Some(shared::BatchCheck {
            id: batch,
            index,
            proofs: v.statements.len(),
            verify_ms: v.verify_ms,
        }))
    }
}

/// Writes a file only its owner can read (API keys, pinned jobs).
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(0o600);
        // An existing file keeps its mode on open: tighten it first.
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("restricting {}", path.display()))?;
        }
    }
    opts.open(path)
        .and_then(|mut f| f.write_all(bytes))
        .with_context(|| format!("writing {}", path.display()))
}

/// A name from the service made safe as a file name: letters, digits, `_`, `-` and `.` only,
/// never starting with a dot (no `../`, no absolute paths, no hidden files).
fn safe_file_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_start_matches('.').to_string();
    if s.is_empty() {
        "model".into()
    } else {
        s
    }
}

struct Output {
    json: bool,
}

impl Output {
    fn show(&self, v: &impl Serialize, text: impl FnOnce() -> String) -> Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v)?);
        } else {
            println!("{}", text());
        }
        Ok(())
    }
}

/// Follows a job through its live events until it is final, showing each state on stderr.
/// Opens a job's escrow from the wallet, once the service's terms match what was pinned.
fn pay(
    pin: &Pinned,
    job: &Job,
    wallet: &chain_pay::WalletArgs,
    quiet: bool,
) -> Result<ciro_scheduler::chain::TxInfo> {
    let p = chain_pay::payment_of(job)?;
    if p.status != "awaiting" {
        bail!("job {}'s escrow is {} already", job.id, p.status);
    }
    chain_pay::check_terms(&pin.vk, &pin.input, p)
        .with_context(|| format!("job {} is submitted but not paid", job.id))?;
    let tx = chain_pay::block_on(chain_pay::open(wallet, job, &pin.vk)).with_context(|| {
        format!(
            "job {} is submitted but not paid: open its escrow with `ciro-cli chain pay --job-id {}`",
            job.id, job.id
        )
    })?;
    if !quiet {
        eprintln!(
            "job {}: escrow opened on chain {} in {:#x} ({} gas); the service proves it once it sees the payment",
            job.id, p.chain_id, tx.hash, tx.gas
        );
    }
    Ok(tx)
}

fn follow(client: &Client, id: i64, quiet: bool, timeout_s: u64) -> Result<Job> {
    let start = Instant::now();
    let done = client
        .api
        .follow(id, Duration::from_secs(timeout_s), |j| {
            if !quiet {
                eprintln!(
                    "[{:>7.2} s] job {id}: {}",
                    start.elapsed().as_secs_f64(),
                    j.state
                );
            }
        })
        .map_err(|e| match e {
            ClientError::Timeout { state, .. } => anyhow::anyhow!(
                "job {id} is still {state} after {timeout_s} s; it goes on: check it with `ciro-cli job-status --job-id {id}`"
            ),
            e => e.into(),
        })?;
    if !quiet {
        if let Some(p) = &done.payment {
            eprintln!(
                "[{:>7.2} s] job {id}: escrow {}",
                start.elapsed().as_secs_f64(),
                p.status
            );
        }
    }
    Ok(done)
}

fn ms(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1} ms"))
        .unwrap_or_else(|| "-".into())
}

fn job_text(j: &Job) -> String {
    let t = &j.timings;
    let mut s = format!(
        "job {}: {}\nmodel: {} ({})\npaid with: {} {} on {} ({})",
        j.id,
        j.state,
        j.model,
        j.proof_system,
        format_amount(j.price_micro),
        j.token,
        j.chain,
        match (j.state, &j.payment) {
            (_, Some(p)) => match p.status.as_str() {
                "settled" => "paid from the escrow",
                "refunded" => "escrow refunded, not charged",
                "open" => "held in the escrow",
                _ => "awaiting the escrow",
            },
            (JobState::Verified, None) => "charged",
            (JobState::Failed | JobState::Cancelled, None) => "released, not charged",
            _ => "held",
        }
    );
    s.push_str(&format!(
        "\ntimings: queue {}, witness {}, prove {}, verify {}, total {}",
        ms(t.queue_wait_ms),
        ms(t.witness_ms),
        ms(t.prove_ms),
        ms(t.verify_ms),
        ms(t.total_ms)
    ));
    if let Some(e) = &j.error {
        s.push_str(&format!("\nerror: {e}"));
    }
    if let Some(p) = &j.payment {
        s.push('\n');
        s.push_str(&chain_pay::payment_text(p));
    }
    if let Some(b) = j.batch {
        s.push_str(&format!(
            "\naggregated: batch {}, statement #{} (`ciro-cli verify --job-id {}` checks it)",
            b.id, b.index, j.id
        ));
    }
    if let Some(r) = j.result.as_ref().filter(|r| r.is_object()) {
        let outputs: Vec<Vec<f64>> =
            serde_json::from_value(r["outputs"].clone()).unwrap_or_default();
        s.push('\n');
        s.push_str(&result_text(
            &outputs,
            r["label"].as_str(),
            r["model_commitment"].as_str(),
        ));
    }
    s
}

fn result_text(outputs: &[Vec<f64>], label: Option<&str>, commitment: Option<&str>) -> String {
    let mut s = String::new();
    for (i, vals) in outputs.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        s.push_str(&format!("output {i}: {}", fmt_values(vals)));
    }
    if let Some(l) = label {
        s.push_str(&format!("\nlabel: {l}"));
    }
    if let Some(c) = commitment {
        s.push_str(&format!("\nmodel commitment: {c}"));
    }
    s
}

fn balances_text(v: &Account) -> String {
    if v.balances.is_empty() {
        return "no balances yet: credit test tokens with `ciro-cli faucet --chain starknet`"
            .into();
    }
    let mut s = format!(
        "{:<9} {:<5} {:>16} {:>14} {:>14}",
        "chain", "token", "available", "held", "spent"
    );
    for x in &v.balances {
        s.push_str(&format!(
            "\n{:<9} {:<5} {:>16} {:>14} {:>14}",
            x.chain,
            x.token,
            format_amount(x.available_micro),
            format_amount(x.held_micro),
            format_amount(x.spent_micro),
        ));
    }
    s
}

fn model_line(m: &ModelEntry) -> String {
    let m = match m {
        ModelEntry::Unavailable { name, error } => {
            return format!("{name:<22} unavailable: {error}")
        }
        ModelEntry::Model(m) => m,
    };
    let shapes: Vec<String> = m
        .inputs
        .iter()
        .map(|i| format!("{:?}", i.shape).replace(' ', ""))
        .collect();
    format!(
        "{:<22} input {:<16} {:>8} rows  price {}{}",
        m.name,
        shapes.join(" "),
        m.trace_rows,
        format_amount(m.price_micro),
        if m.accepts_images {
            "  (accepts images)"
        } else {
            ""
        }
    )
}

fn models_text(v: &ModelList) -> String {
    v.models
        .iter()
        .map(model_line)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::safe_file_name;

    #[test]
    fn names_from_the_service_cannot_leave_the_output_folder() {
        assert_eq!(safe_file_name("mlp_small"), "mlp_small");
        assert_eq!(safe_file_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(safe_file_name("/abs/path"), "_abs_path");
        assert_eq!(safe_file_name(".hidden"), "hidden");
        assert_eq!(safe_file_name(".."), "model");
        assert_eq!(safe_file_name("a\\b:c"), "a_b_c");
    }
}
