//! `ciro`: the operator/developer command line.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde::Serialize;

use ciro_model_compiler::input::{read_image, read_json};
use ciro_model_compiler::ir::GraphStats;
use ciro_model_compiler::onnx::{self, parse_range};
use ciro_model_compiler::{compile, run_lenient, CompileOptions, CompiledModel, Limits};

mod aggregate;
mod bench;
mod bench_aggregate;
mod chain_ops;
mod evm;
mod proving;
mod shared;

#[derive(Parser)]
#[command(
    name = "ciro",
    version,
    about = "Ciro: zero-knowledge proofs of ML inference"
)]
struct Cli {
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile an ONNX model to Ciro's quantized integer IR.
    Compile {
        /// The ONNX model.
        model: PathBuf,
        /// Calibration inputs: EZKL-style JSON files, or folders of them.
        #[arg(long = "calibration", num_args = 1..)]
        calibration: Vec<PathBuf>,
        /// Where to write the compiled model.
        #[arg(short, long)]
        output: PathBuf,
        /// Use this fixed-point scale (bits) instead of searching for one.
        #[arg(long)]
        scale: Option<u32>,
        /// Declared input range `LO,HI` (overrides the model's `ciro.input_range`).
        #[arg(long, value_parser = parse_range_arg, allow_hyphen_values = true)]
        input_range: Option<[f64; 2]>,
        /// Accepted calibration error, relative to the largest float output.
        #[arg(long, default_value_t = 0.02)]
        tolerance: f64,
        /// Weight scale minus activation scale (weights get this many more bits).
        #[arg(long, default_value_t = 2, allow_hyphen_values = true)]
        weight_shift: i32,
        /// Least fraction of calibration samples whose label must match the float model's.
        #[arg(long, default_value_t = 0.99)]
        min_agreement: f64,
        /// Keep the most accurate scale even when it misses the tolerance or the agreement.
        #[arg(long)]
        accept_inaccurate: bool,
        /// Where the ranges the circuit checks come from: `calibrated` (from the calibration
        /// inputs, with a margin; an input past them cannot be proven) or `worst-case` (from the
        /// declared input range; every input in it proves, but deep models overflow).
        #[arg(long, default_value = "calibrated")]
        ranges: ciro_model_compiler::RangeMode,
        /// A calibrated range is what the calibration inputs reach, widened on each side by this
        /// fraction of its largest magnitude.
        #[arg(long, default_value_t = 1.0)]
        range_margin: f64,
        /// Only pick scales these proof systems can prove (default: all of them), e.g.
        /// `--for halo2` to use BN254's larger budget.
        #[arg(long = "for", value_delimiter = ',', value_parser = proving::parse_backend)]
        for_backends: Vec<ciro_prover::BackendId>,
        /// Size of a symbolic input dimension, `NAME=N` (repeatable); those not named are 1.
        #[arg(long = "dim", value_parser = onnx::DimBindings::parse_one)]
        dims: Vec<(String, usize)>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Describe a compiled model.
    Inspect {
        compiled: PathBuf,
        /// Also list every IR node with its scale, bound and error.
        #[arg(long)]
        nodes: bool,
    },
    /// Run the integer model and print the dequantized output.
    Run {
        compiled: PathBuf,
        /// An EZKL-style JSON input, or a PNG/JPEG image for image models.
        #[arg(long)]
        input: PathBuf,
    },
    /// Make the verification key of a compiled model (commits to its weights and wiring).
    Setup {
        compiled: PathBuf,
        /// Where to write the verification key.
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, default_value = "stwo", value_parser = proving::parse_backend, help = proving::backend_help())]
        backend: ciro_prover::BackendId,
        /// What proofs show of the input (hashed and private need a zero-knowledge backend).
        #[arg(long, value_enum, default_value = "public")]
        input_visibility: proving::Inputs,
        /// halo2 or plonky2: keep the weights private. The key then holds only a hiding
        /// commitment to them, made with the secret opening in this file (created when it does
        /// not exist; keep it: every proof under the key needs it).
        #[arg(long, value_name = "OPENING")]
        private_weights: Option<PathBuf>,
    },
    /// Prove one inference (stwo, halo2-KZG or plonky2) and write a proof bundle.
    Prove {
        compiled: PathBuf,
        /// An EZKL-style JSON input, or a PNG/JPEG image for image models.
        #[arg(long)]
        input: PathBuf,
        /// Where to write the proof bundle.
        #[arg(short, long)]
        output: PathBuf,
        /// Also write the model's verification key here.
        #[arg(long)]
        vk_out: Option<PathBuf>,
        #[arg(long, default_value = "stwo", value_parser = proving::parse_backend, help = proving::backend_help())]
        backend: ciro_prover::BackendId,
        /// What the proof shows of the input (hashed and private need a zero-knowledge backend).
        #[arg(long, value_enum, default_value = "public")]
        input_visibility: proving::Inputs,
        /// halo2 or plonky2: keep the weights private, committed with the opening in this file
        /// (created when it does not exist; the same file gives the same key).
        #[arg(long, value_name = "OPENING")]
        private_weights: Option<PathBuf>,
    },
    /// Print the Poseidon hash of an input, as a halo2 or plonky2 proof with a hashed input
    /// shows it.
    HashInput {
        /// A halo2 or plonky2 verification key made with `--input-visibility hashed`.
        #[arg(long)]
        vk: PathBuf,
        compiled: PathBuf,
        /// An EZKL-style JSON input, or a PNG/JPEG image for image models.
        #[arg(long)]
        input: PathBuf,
    },
    /// Fold plonky2 proof bundles, of one model or of many, into one aggregate proof (a tree
    /// of recursive proofs; the aggregate's circuit is the same for any models and any count).
    Aggregate {
        /// plonky2 proof bundles, in the order the aggregate lists them.
        #[arg(required = true)]
        bundles: Vec<PathBuf>,
        /// The key of each model the bundles prove (repeat for several models).
        #[arg(long = "vk", required = true)]
        vks: Vec<PathBuf>,
        /// Where to write the aggregate.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Verify a proof bundle against a verification key (never the weights). Prints the proven
    /// outputs and a digest of the proven input. Given an aggregate, verifies it in one check
    /// and prints the statements it covers (models confirmed by the keys given).
    Verify {
        /// A proof bundle or an aggregate.
        bundle: PathBuf,
        /// The model's key; for an aggregate, any number of keys (repeat --vk).
        #[arg(long = "vk")]
        vks: Vec<PathBuf>,
        /// With an aggregate: check that it covers this job's proof bundle (whose key is
        /// among --vk).
        #[arg(long, value_name = "BUNDLE")]
        statement: Option<PathBuf>,
        /// Also check that the proof is about this input (an EZKL-style JSON file): without it,
        /// a valid proof shows only that *some* input gave these outputs.
        #[arg(long)]
        input: Option<PathBuf>,
    },
    /// Write the on-chain verifier of a halo2 key (a Solidity contract for EVM chains).
    GenVerifier {
        #[arg(long)]
        vk: PathBuf,
        #[arg(long, value_enum, default_value = "evm")]
        target: evm::Target,
        /// Where to write the Solidity source.
        #[arg(short, long)]
        output: PathBuf,
        /// Also compile it (solc-js 0.8.19, see README) and write the deployment bytecode here.
        #[arg(long)]
        bytecode: Option<PathBuf>,
    },
    /// Write the calldata for the EVM verifier: the bundle's public values, then its proof.
    EncodeCalldata {
        bundle: PathBuf,
        /// Write raw bytes here (default: print 0x-hex).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Verify a halo2 bundle with its Solidity verifier, deployed in a local EVM; prints the gas.
    VerifyEvm {
        bundle: PathBuf,
        #[arg(long)]
        vk: PathBuf,
    },
    /// Benchmark fixture models: compile, set up, prove and verify; print a table.
    Bench(bench::BenchArgs),
    /// Prove jobs from the shared PostgreSQL store, without the HTTP API, until Ctrl-C or
    /// SIGTERM (then it finishes its jobs, or hands them back after --drain-s).
    Worker {
        /// The models folder every node shares (uploads and compiled models are read from
        /// `DIR/models`).
        #[arg(long, default_value = "ciro-data")]
        data_dir: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
        /// Prove only these proof systems (comma-separated) [default: all].
        #[arg(long, value_delimiter = ',')]
        backends: Vec<String>,
        /// Jobs proved at once [default: the number of CPUs].
        #[arg(long)]
        concurrency: Option<usize>,
        #[command(flatten)]
        limits: LimitArgs,
        /// Refuse halo2 circuits of more than 2^K rows (key generation grows with 2^K).
        #[arg(long, default_value_t = 22)]
        max_halo2_k: u32,
        /// After SIGTERM, how long jobs in hand may take before they are handed back.
        #[arg(long, default_value_t = 60)]
        drain_s: u64,
        /// What halo2 proofs show of the input: as the API nodes' `--halo2-inputs` (keys made
        /// otherwise are other models' keys, and their proofs do not settle on chain).
        #[arg(long, value_enum, default_value = "public")]
        halo2_inputs: proving::Inputs,
    },
    /// Run the Ciro service (HTTP API, job store, proving workers) until Ctrl-C or SIGTERM.
    Serve {
        /// Where jobs, accounts, the ledger, proofs and compiled models are kept.
        #[arg(long, default_value = "ciro-data")]
        data_dir: PathBuf,
        /// Address to listen on (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
        /// Proving workers, one job each at a time [default: the number of CPUs].
        #[arg(long, conflicts_with = "no_workers")]
        workers: Option<usize>,
        /// Run the API alone: `ciro worker` processes prove the jobs (needs --database).
        #[arg(long)]
        no_workers: bool,
        #[command(flatten)]
        store: StoreArgs,
        /// Serve the faucet that credits test tokens to anyone (development only).
        #[arg(long)]
        dev_faucet: bool,
        #[command(flatten)]
        limits: LimitArgs,
        /// Refuse halo2 circuits of more than 2^K rows (key generation grows with 2^K).
        #[arg(long, default_value_t = 22)]
        max_halo2_k: u32,
        /// What halo2 proofs show of the input: `public`, or `hashed` (its Poseidon hash: the
        /// cheaper one to settle on chain, and the input stays private).
        #[arg(long, value_enum, default_value = "public")]
        halo2_inputs: proving::Inputs,
        /// Memory for compiling and setting up one upload, in MiB (a child process; past it the
        /// upload is refused and quarantined).
        #[arg(long, default_value_t = 16384)]
        upload_memory_mib: u64,
        /// Compile uploads inside the service process instead of a child (not for public
        /// services: a hostile model can then exhaust the service's memory).
        #[arg(long)]
        no_upload_isolation: bool,
        /// Aggregate verified plonky2 jobs into one proof per this many jobs (0: never).
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
        /// ...or fewer, once the oldest of them has waited this many seconds.
        #[arg(long, default_value_t = 60)]
        batch_wait_s: u64,
        #[command(flatten)]
        chains: chain_ops::ChainArgs,
    },
    /// On-chain payments: set up the contracts on a dev chain.
    Chain {
        #[command(subcommand)]
        command: ChainCommand,
    },
    /// (Internal) Compile and set up an uploaded model for `ciro serve`, in a child process.
    #[command(hide = true)]
    CheckUpload {
        #[arg(num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(Subcommand)]
enum ChainCommand {
    /// Deploy the escrow (operated by the key) and the test tokens CIRO and USDC on a dev
    /// chain; prints their addresses.
    Deploy {
        /// The node's JSON-RPC URL.
        #[arg(long)]
        rpc: String,
        /// A file holding the operator's private key in hex [or env CIRO_OPERATOR_KEY].
        #[arg(long)]
        operator_key: Option<PathBuf>,
        /// Also write the addresses here (for `ciro serve --contracts NAME=FILE`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Mint dev-chain test tokens (the test tokens' `mint` is open to anyone) to an address.
    Mint {
        /// The node's JSON-RPC URL.
        #[arg(long)]
        rpc: String,
        /// The deployment file `ciro chain deploy --out` wrote.
        #[arg(long)]
        contracts: PathBuf,
        /// CIRO or USDC.
        #[arg(long, default_value = "USDC")]
        token: String,
        /// The address to credit (0x…).
        #[arg(long)]
        to: String,
        /// Whole tokens, e.g. 100 or 0.5.
        #[arg(long, default_value = "100")]
        amount: String,
        /// A file holding the key that sends the transaction (any funded account) [or env
        /// CIRO_OPERATOR_KEY].
        #[arg(long)]
        operator_key: Option<PathBuf>,
    },
}

/// Where the service keeps its jobs (`ciro serve`, `ciro worker`).
#[derive(clap::Args, Clone, Debug)]
pub struct StoreArgs {
    /// The PostgreSQL store every node shares (`postgres://user@host:port/db`) instead of SQLite
    /// in the data directory; or set CIRO_DATABASE_URL (keeps a password off the command line).
    #[arg(long)]
    database: Option<String>,
    /// A claimed job goes back to the queue this many seconds after its worker last renewed
    /// its lease (it renews every third of it).
    #[arg(long, default_value_t = 30)]
    lease_s: u64,
}

impl StoreArgs {
    fn apply(&self, config: &mut ciro_scheduler::Config) -> Result<()> {
        config.database = match &self.database {
            Some(url) => Some(url.clone()),
            None => std::env::var("CIRO_DATABASE_URL")
                .ok()
                .filter(|u| !u.is_empty()),
        };
        if self.lease_s == 0 {
            bail!("--lease-s must be at least 1");
        }
        config.lease = std::time::Duration::from_secs(self.lease_s);
        Ok(())
    }
}

/// The size caps a model is checked against before it is compiled (`ciro compile`, `ciro serve`).
#[derive(clap::Args, Clone, Debug)]
pub struct LimitArgs {
    /// Refuse a model needing more multiply-accumulates per inference (setup needs about 230
    /// bytes per MAC).
    #[arg(long, default_value_t = Limits::default().max_macs)]
    pub max_macs: u64,
    /// Refuse a model whose tensors (weights and intermediate results) hold more values than
    /// this in all.
    #[arg(long, default_value_t = Limits::default().max_values)]
    pub max_values: u64,
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            max_macs: self.max_macs,
            max_values: self.max_values,
        }
    }
}

fn parse_range_arg(s: &str) -> Result<[f64; 2], String> {
    parse_range(s)
}

fn main() {
    let cli = Cli::parse();
    shared::exit_on_error(cli.json, dispatch(&cli));
}

fn dispatch(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Compile {
            model,
            calibration,
            output,
            scale,
            input_range,
            tolerance,
            weight_shift,
            min_agreement,
            accept_inaccurate,
            ranges,
            range_margin,
            for_backends,
            dims,
            limits,
        } => {
            let base = if for_backends.is_empty() {
                ciro_prover::compile_options()
            } else {
                ciro_prover::compile_options_for(for_backends)
            };
            let opts = CompileOptions {
                scale: *scale,
                weight_shift: *weight_shift,
                input_range: *input_range,
                tolerance: *tolerance,
                min_label_agreement: *min_agreement,
                accept_inaccurate: *accept_inaccurate,
                ranges: *ranges,
                range_margin: *range_margin,
                limits: limits.limits(),
                ..base
            };
            let dims = onnx::DimBindings(dims.iter().cloned().collect());
            cmd_compile(cli.json, model, &dims, calibration, output, &opts)
        }
        Command::Inspect { compiled, nodes } => {
            let m = CompiledModel::load(compiled)?;
            print_summary(cli.json, &m, *nodes)
        }
        Command::Run { compiled, input } => cmd_run(cli.json, compiled, input),
        Command::Setup {
            compiled,
            output,
            backend,
            input_visibility,
            private_weights,
        } => proving::cmd_setup(
            cli.json,
            compiled,
            output,
            &proving::ProveOptions {
                backend: *backend,
                inputs: *input_visibility,
                private_weights: private_weights.clone(),
            },
        ),
        Command::Prove {
            compiled,
            input,
            output,
            vk_out,
            backend,
            input_visibility,
            private_weights,
        } => proving::cmd_prove(
            cli.json,
            compiled,
            input,
            output,
            vk_out.as_deref(),
            &proving::ProveOptions {
                backend: *backend,
                inputs: *input_visibility,
                private_weights: private_weights.clone(),
            },
        ),
        Command::HashInput {
            vk,
            compiled,
            input,
        } => proving::cmd_hash_input(cli.json, vk, compiled, input),
        Command::Aggregate {
            bundles,
            vks,
            output,
        } => aggregate::cmd_aggregate(cli.json, bundles, vks, output),
        Command::Verify {
            bundle,
            vks,
            statement,
            input,
        } => {
            if aggregate::is_aggregate(bundle)? {
                if input.is_some() {
                    bail!("--input goes with a proof bundle; for an aggregate use --statement");
                }
                aggregate::cmd_verify_aggregate(cli.json, bundle, vks, statement.as_deref())
            } else {
                let vk = aggregate::single_key(vks, statement.as_deref())?;
                proving::cmd_verify(cli.json, bundle, vk, input.as_deref())
            }
        }
        Command::GenVerifier {
            vk,
            target,
            output,
            bytecode,
        } => evm::cmd_gen_verifier(cli.json, vk, *target, output, bytecode.as_deref()),
        Command::EncodeCalldata { bundle, output } => {
            evm::cmd_encode_calldata(cli.json, bundle, output.as_deref())
        }
        Command::VerifyEvm { bundle, vk } => evm::cmd_verify_evm(cli.json, bundle, vk),
        Command::Bench(args) => bench::run(cli.json, args),
        Command::Worker {
            data_dir,
            store,
            backends,
            concurrency,
            limits,
            max_halo2_k,
            drain_s,
            halo2_inputs,
        } => {
            let mut config = ciro_scheduler::Config::new(data_dir);
            store.apply(&mut config)?;
            if config.database.is_none() {
                bail!("a worker needs the shared store: --database postgres://... (or CIRO_DATABASE_URL)");
            }
            config.proof_systems = backends.clone();
            config.workers = concurrency
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            if config.workers == 0 {
                bail!("--concurrency must be at least 1");
            }
            config.limits = limits.limits();
            config.max_halo2_k = *max_halo2_k;
            config.drain_deadline = std::time::Duration::from_secs(*drain_s);
            config.halo2_inputs = (*halo2_inputs).into();
            config.handle_signals = true;
            let running = ciro_scheduler::start_workers(config)?;
            let id = running.shared.worker_id.clone();
            if cli.json {
                println!("{}", serde_json::json!({ "worker": id }));
            } else {
                println!("worker {id} proving jobs");
            }
            use std::io::Write;
            std::io::stdout().flush()?;
            running.wait();
            Ok(())
        }
        Command::Serve {
            data_dir,
            addr,
            workers,
            no_workers,
            store,
            dev_faucet,
            limits,
            max_halo2_k,
            halo2_inputs,
            upload_memory_mib,
            no_upload_isolation,
            batch_size,
            batch_wait_s,
            chains,
        } => {
            let mut config = ciro_scheduler::Config::new(data_dir);
            chains.apply(&mut config)?;
            config.batch_size = *batch_size;
            config.batch_wait = std::time::Duration::from_secs(*batch_wait_s);
            config.addr = *addr;
            store.apply(&mut config)?;
            config.workers = if *no_workers {
                if config.database.is_none() {
                    bail!("--no-workers needs --database: with the embedded store nothing else can prove the jobs");
                }
                0
            } else {
                workers
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            };
            config.dev_faucet = *dev_faucet;
            config.limits = limits.limits();
            config.max_halo2_k = *max_halo2_k;
            config.halo2_inputs = (*halo2_inputs).into();
            if !no_upload_isolation {
                let exe = std::env::current_exe().context("cannot find the ciro binary")?;
                let mut iso = ciro_scheduler::isolate::Isolation::new(vec![
                    exe.into_os_string(),
                    "check-upload".into(),
                ]);
                iso.memory_bytes = upload_memory_mib.saturating_mul(1 << 20);
                config.isolation = Some(iso);
            }
            cmd_serve(cli.json, config)
        }
        Command::Chain {
            command:
                ChainCommand::Deploy {
                    rpc,
                    operator_key,
                    out,
                },
        } => {
            let d = chain_ops::deploy(rpc, operator_key.as_deref(), out.as_deref())?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                println!(
                    "chain {}\nescrow {:#x}\nCIRO   {:#x}\nUSDC   {:#x}",
                    d.chain_id, d.escrow, d.ciro, d.usdc
                );
            }
            Ok(())
        }
        Command::Chain {
            command:
                ChainCommand::Mint {
                    rpc,
                    contracts,
                    token,
                    to,
                    amount,
                    operator_key,
                },
        } => {
            let tx = chain_ops::mint(rpc, contracts, token, to, amount, operator_key.as_deref())?;
            if cli.json {
                println!("{}", serde_json::json!({ "tx": format!("{:#x}", tx.hash) }));
            } else {
                println!("minted {amount} {token} to {to} in {:#x}", tx.hash);
            }
            Ok(())
        }
        Command::CheckUpload { args } => {
            std::process::exit(ciro_scheduler::isolate::child_main(args))
        }
    }
}

fn cmd_serve(json: bool, mut config: ciro_scheduler::Config) -> Result<()> {
    let data_dir = config.data_dir.clone();
    config.handle_signals = true;
    let running = ciro_scheduler::start(config)?;
    // Tests and scripts read this line to find the port.
    if json {
        println!(
            "{}",
            serde_json::json!({ "listening": running.url(), "data_dir": data_dir })
        );
    } else {
        println!(
            "listening on {} (data in {})",
            running.url(),
            data_dir.display()
        );
    }
    use std::io::Write;
    std::io::stdout().flush()?;
    running.wait();
    Ok(())
}

fn json_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inner: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot read folder {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "json"))
                .collect();
            inner.sort();
            if inner.is_empty() {
                bail!("calibration folder {} holds no .json files", p.display());
            }
            files.extend(inner);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

fn cmd_compile(
    json: bool,
    model: &Path,
    dims: &onnx::DimBindings,
    calibration: &[PathBuf],
    output: &Path,
    opts: &CompileOptions,
) -> Result<()> {
    let loaded = onnx::load_with(model, dims)?;
    let samples = json_files(calibration)?
        .iter()
        .map(|f| read_json(f))
        .collect::<Result<Vec<_>, _>>()?;
    let compiled = compile(&loaded, &samples, opts)?;
    compiled.save(output)?;
    if !json {
        println!("compiled {} -> {}", model.display(), output.display());
    }
    print_summary(json, &compiled, false)
}

#[derive(Serialize)]
struct Summary<'a> {
    name: &'a str,
    hash: &'a str,
    source_sha256: &'a str,
    scale: u32,
    weight_scale: u32,
    max_bits: u32,
    inputs: Vec<(String, Vec<usize>, [f64; 2])>,
    outputs: Vec<(String, Vec<usize>, u32, f64)>,
    stats: GraphStats,
    /// Per proof system: `ok`, or why its field budget refuses the model.
    backends: Vec<(&'static str, String)>,
    report: &'a ciro_model_compiler::CompileReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes: Option<&'a [ciro_model_compiler::ir::Node]>,
}

fn print_summary(json: bool, m: &CompiledModel, with_nodes: bool) -> Result<()> {
    let g = &m.graph;
    let stats = g.stats();
    let summary = Summary {
        name: &g.name,
        hash: &m.hash,
        source_sha256: &g.source_sha256,
        scale: g.config.scale,
        weight_scale: g.config.weight_scale,
        max_bits: g.config.max_bits,
        inputs: g
            .inputs
            .iter()
            .map(|i| (i.name.clone(), i.shape.clone(), i.range))
            .collect(),
        outputs: g
            .outputs
            .iter()
            .map(|o| {
                let n = &g.nodes[o.node];
                (o.name.clone(), n.shape.clone(), n.scale, n.error)
            })
            .collect(),
        stats,
        backends: ciro_prover::backends()
            .iter()
            .map(|b| {
                let fit = match b.lower(g) {
                    Ok(_) => "ok".to_string(),
                    Err(e) => e.to_string(),
                };
                (b.name, fit)
            })
            .collect(),
        report: &m.report,
        nodes: with_nodes.then_some(g.nodes.as_slice()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    let s = &summary.stats;
    println!("model        {}", g.name);
    println!("hash         {}", m.hash);
    println!(
        "scale        2^{} activations, 2^{} weights; values within ±2^{}",
        g.config.scale, g.config.weight_scale, g.config.max_bits
    );
    for (name, shape, range) in &summary.inputs {
        println!(
            "input        {name} {shape:?}, declared range [{}, {}]",
            range[0], range[1]
        );
    }
    for d in &m.report.bound_dims {
        println!(
            "dimension    {} = {} (input {}, axis {}; symbolic in the file, set with --dim)",
            d.name, d.size, d.input, d.axis
        );
    }
    for (name, shape, scale, err) in &summary.outputs {
        println!(
            "output       {name} {shape:?} at scale 2^{scale}, {}",
            proven_error(*err)
        );
    }
    let ops: Vec<String> = s
        .op_counts
        .iter()
        .map(|(n, c)| format!("{n}×{c}"))
        .collect();
    println!("ops          {} nodes: {}", s.nodes, ops.join(" "));
    println!("parameters   {}", s.parameters);
    println!("MACs         {}", s.macs);
    println!(
        "lookups      {} (largest table {} entries)",
        s.lookups, s.largest_table
    );
    println!("largest |v|  < 2^{} (proven bound)", s.max_magnitude_bits);
    let r = &m.report;
    println!(
        "ranges       {} checked by the circuit, {}",
        r.checked_ranges.len(),
        match r.ranges {
            ciro_model_compiler::RangeMode::Calibrated => format!(
                "calibrated (margin {}): an input past one cannot be proven",
                r.range_margin
            ),
            ciro_model_compiler::RangeMode::WorstCase => {
                "worst case over the declared input range".to_string()
            }
        }
    );
    for (name, fit) in &summary.backends {
        println!("proves on    {name}: {fit}");
    }
    if r.accepted_inaccurate {
        println!("warning      accepted although inaccurate (--accept-inaccurate)");
    }
    println!(
        "calibration  {} sample(s){}: max abs error {:.6}, mean {:.6} (float outputs up to {:.4}){}",
        r.calibration_samples,
        if r.synthetic_calibration { " (synthetic)" } else { "" },
        r.max_abs_error,
        r.mean_abs_error,
        r.float_output_max,
        r.label_agreement
            .map(|a| format!(", label agreement {:.1}%", a * 100.0))
            .unwrap_or_default()
    );
    for t in &r.trials {
        match t.max_abs_error {
            Some(e) => println!("  scale {:>2}: max abs error {e:.6}", t.scale),
            None => println!("  scale {:>2}: refused: {}", t.scale, t.outcome),
        }
    }
    if let Some(nodes) = summary.nodes {
        println!(
            "\n{:>4}  {:<10} {:<22} {:>5} {:>24} {:>12}  source",
            "id", "op", "shape", "scale", "bound", "error"
        );
        for (i, n) in nodes.iter().enumerate() {
            println!(
                "{i:>4}  {:<10} {:<22} {:>5} {:>24} {:>12.3e}  {}",
                n.op.name(),
                format!("{:?}", n.shape),
                n.scale,
                format!("[{}, {}]", n.bound.lo, n.bound.hi),
                n.error,
                n.name
            );
        }
    }
    Ok(())
}

/// Reads a JSON input, or an image for models that declare image preprocessing.
fn read_input(g: &ciro_model_compiler::Graph, input: &Path) -> Result<Vec<Vec<f32>>> {
    Ok(if shared::is_image(input) {
        let spec = g.image.as_ref().with_context(|| {
            format!(
                "model {} declares no image preprocessing (ciro.image); give a JSON input",
                g.name
            )
        })?;
        vec![read_image(input, spec)?]
    } else {
        read_json(input)?
    })
}

/// A proven error bound as the summaries show it.
fn proven_error(err: f64) -> String {
    if err >= ciro_model_compiler::ops::activation::UNBOUNDED_ERROR {
        "no proven error bound (a table's singularity, 1/√x, 1/x or ln x, is within reach of its input's bound; the calibration error is what was measured)".into()
    } else {
        format!("proven error <= {err:.6}")
    }
}

fn cmd_run(json: bool, compiled: &Path, input: &Path) -> Result<()> {
    let m = CompiledModel::load(compiled)?;
    let g = &m.graph;
    let inputs = read_input(g, input)?;
    let (outputs, violations) = run_lenient(g, &inputs)?;
    for v in &violations {
        eprintln!("warning: {v}; this input cannot be proven");
    }
    let label = match (&g.labels, outputs.first()) {
        (Some(labels), Some(o)) if o.len() == labels.len() => {
            Some(labels[ciro_model_compiler::compile::argmax(o)].clone())
        }
        _ => None,
    };
    let errors: Vec<f64> = g.outputs.iter().map(|o| g.nodes[o.node].error).collect();
    if json {
        let v = serde_json::json!({
            "model": g.name,
            "hash": m.hash,
            "outputs": outputs,
            "proven_error": errors,
            "label": label,
            "provable": violations.is_empty(),
            "out_of_range": violations.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for (i, (o, e)) in outputs.iter().zip(&errors).enumerate() {
        let vals: Vec<String> = o.iter().map(|v| format!("{v:.4}")).collect();
        println!("output {i}: [{}]  ({})", vals.join(", "), proven_error(*e));
    }
    if let Some(l) = label {
        println!("label: {l}");
    }
    Ok(())
}
