//! `ciro bench`: prove and verify fixture models and print a table.
//!
//! Each model is measured in a child process (`ciro bench --single COMPILED`) so that its peak
//! resident memory is its own: the parent compiles the models (tract's memory stays out of the
//! figures), the child sets up, proves and verifies.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ciro_model_compiler::compile::argmax;
use ciro_model_compiler::eval::IntTensor;
use ciro_model_compiler::input::read_json;
use ciro_model_compiler::reference::FloatModel;
use ciro_model_compiler::{
    compile_model_dir, onnx, quantize_inputs, run_lenient, synthetic_inputs, CompileOptions,
    CompiledModel,
};
use ciro_prover::{BackendId, Halo2VerifyingKey, ProverSettings};
use ciro_verifier::evm;

use serde::{Deserialize, Serialize};

const FIXTURE_MODELS: [&str; 5] = [
    "mlp_small",
    "mlp_mnist",
    "cnn_lenet",
    "act_mix",
    "image_recognition_v1",
];

/// The real-sized fixtures, benchmarked when named (`ciro bench cifar_cnn ...`).
const LARGE_MODELS: [&str; 6] = [
    "cifar_cnn",
    "resnet_block",
    "dense_4m",
    "mlp_1024",
    "transformer_block",
    "nanogpt",
];

/// Seed of the held-out inputs the accuracy columns are measured on.
const ACCURACY_SEED: u64 = 2026;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Fixture model names (default: the five small ones; the real-sized cifar_cnn,
    /// resnet_block, dense_4m and mlp_1024 run when named).
    models: Vec<String>,
    /// Proofs per model; medians are reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// The fixtures folder.
    #[arg(long, default_value = "fixtures")]
    fixtures: PathBuf,
    /// Print the table as markdown.
    #[arg(long)]
    markdown: bool,
    /// The proof system to measure.
    #[arg(long, default_value = "stwo", value_parser = crate::proving::parse_backend)]
    backend: BackendId,
    /// Internal: measure one compiled model in this process and print its row as JSON.
    /// Compile at this scale instead of searching (accepting it even if inaccurate).
    #[arg(long)]
    scale: Option<u32>,
    /// Weight scale minus activation scale.
    #[arg(long, default_value_t = 2, allow_hyphen_values = true)]
    weight_shift: i32,
    /// Held-out synthetic inputs to measure label agreement with the float model on.
    #[arg(long, default_value_t = 200)]
    accuracy_inputs: usize,
    #[arg(long, hide = true)]
    single: Option<PathBuf>,
    /// plonky2 recursive aggregation instead: aggregate batches of these sizes of proofs of
    /// the (first) named model, default mlp_small, e.g. `--aggregate 2,4,16,64`.
    #[arg(long, value_delimiter = ',')]
    aggregate: Vec<usize>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Row {
    model: String,
    macs: u64,
    rows: u64,
    columns: usize,
    vk_kib: f64,
    setup_s: f64,
    prove_s: f64,
    verify_ms: f64,
    proof_kib: f64,
    peak_rss_mib: f64,
    quant_error: f64,
    /// halo2 only: the Solidity verifier in a local EVM.
    #[serde(default)]
    evm: Option<EvmRow>,
    /// Label agreement with the float model on held-out inputs (classifiers), and how many of
    /// them left a calibrated range (counted as disagreeing: they cannot be proven).
    #[serde(default)]
    accuracy: Option<f64>,
    #[serde(default)]
    out_of_range: usize,
    #[serde(default)]
    accuracy_inputs: usize,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct EvmRow {
    contracts: usize,
    largest_code_bytes: usize,
    verify_gas: u64,
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Peak resident set size of this process (Linux `VmHWM`), MiB.
pub(crate) fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

pub(crate) fn sample_input(fixtures: &Path, m: &CompiledModel) -> Result<Vec<IntTensor>> {
    let path = fixtures
        .join("models")
        .join(&m.graph.name)
        .join("input.json");
    let x = read_json(&path)?;
    Ok(quantize_inputs(&m.graph, &x)?)
}

fn measure(compiled: &Path, fixtures: &Path, runs: usize, backend: BackendId) -> Result<Row> {
    crate::proving::quiet_panics();
    let m = CompiledModel::load(compiled)?;
    let input = sample_input(fixtures, &m)?;
    let prover = ciro_prover::prover(backend, &ProverSettings::default())?;
    let t = Instant::now();
    let pk = prover.setup(&m, &mut |_| {})?;
    let vk = pk.verifying_key();
    let setup_s = t.elapsed().as_secs_f64();
    let (mut prove, mut verify) = (Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let bundle = prover.prove(pk.as_ref(), &input, &mut |_| {})?;
        prove.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        vk.verify(&bundle)
            .context("a benchmark proof failed to verify")?;
        verify.push(t.elapsed().as_secs_f64() * 1e3);
        last = Some(bundle);
    }
    let bundle = last.context("no proof was made")?;
    let size = vk.size();
    let mut row = Row {
        model: m.graph.name.clone(),
        macs: m.graph.stats().macs,
        rows: size.rows,
        columns: size.columns,
        // The key as compact JSON (what its commitment hashes), not the indented file.
        vk_kib: serde_json::from_slice::<serde_json::Value>(&vk.to_json())
            .map_or(0, |v| v.to_string().len()) as f64
            / 1024.0,
        setup_s,
        prove_s: median(prove),
        verify_ms: median(verify),
        proof_kib: bundle.to_bytes().len() as f64 / 1024.0,
        peak_rss_mib: peak_rss_mib(),
        quant_error: m.report.max_abs_error,
        evm: None,
        accuracy: None,
        out_of_range: 0,
        accuracy_inputs: 0,
    };
    // After the peak-memory reading: the EVM is not part of proving.
    if let Some(vk) = vk.downcast_ref::<Halo2VerifyingKey>() {
        // A circuit too large for an EVM verifier still proves: report the proof without one.
        match evm_row(vk, &bundle) {
            Ok(evm) => row.evm = Some(evm),
            Err(e) => eprintln!("{}: no EVM verifier: {e:#}", m.graph.name),
        }
    }
    Ok(row)
}

/// Deploys `vk`'s Solidity verifier in a local EVM and verifies `bundle` with it.
fn evm_row(vk: &Halo2VerifyingKey, bundle: &ciro_prover::ProofBundle) -> Result<EvmRow> {
    let verifier = evm::evm_verifier(vk)?;
    let mut chain = evm::LocalEvm::default();
    let deployed = chain.deploy(&verifier)?;
    let call = chain.call(deployed.entry, &evm::calldata(bundle)?)?;
    if !call.accepted {
        bail!("the EVM verifier rejected the proof");
    }
    Ok(EvmRow {
        contracts: deployed.runtime_bytes.len(),
        largest_code_bytes: deployed.largest_runtime(),
        verify_gas: call.gas,
    })
}

pub(crate) fn compile_fixture(
    fixtures: &Path,
    name: &str,
    scale: Option<u32>,
    weight_shift: i32,
) -> Result<CompiledModel> {
    let dir = fixtures.join("models").join(name);
    if !dir.is_dir() {
        bail!(
            "no fixture model `{name}` in {} (known: {}, {})",
            fixtures.display(),
            FIXTURE_MODELS.join(", "),
            LARGE_MODELS.join(", ")
        );
    }
    let opts = CompileOptions {
        scale,
        weight_shift,
        accept_inaccurate: scale.is_some(),
        ..ciro_prover::compile_options()
    };
    Ok(compile_model_dir(&dir, &opts)?)
}

/// Label agreement of the integer model with the float model (tract) on `n` held-out synthetic
/// inputs ([`synthetic_inputs`]); inputs that leave a calibrated range count as disagreeing.
/// `None` for models without a single classifier output.
fn accuracy(fixtures: &Path, m: &CompiledModel, n: usize) -> Result<(Option<f64>, usize)> {
    let g = &m.graph;
    if n == 0 || g.outputs.len() != 1 || g.nodes[g.outputs[0].node].len() < 2 {
        return Ok((None, 0));
    }
    let loaded = onnx::load(&fixtures.join("models").join(&g.name).join("model.onnx"))?;
    let float = FloatModel::new(&loaded)?;
    let shapes: Vec<Vec<usize>> = g.inputs.iter().map(|i| i.shape.clone()).collect();
    let mut inputs = synthetic_inputs(
        &shapes,
        g.inputs[0].range,
        g.image.as_ref(),
        g.one_hot,
        n,
        ACCURACY_SEED,
    );
    let integer: Vec<bool> = g.inputs.iter().map(|i| i.integer).collect();
    ciro_model_compiler::compile::round_integer_inputs(&mut inputs, &integer);
    let (mut agree, mut out_of_range) = (0, 0);
    for x in &inputs {
        let (q, violations) = run_lenient(g, x)?;
        let f = &float.run(x)?[0];
        if !violations.is_empty() {
            out_of_range += 1;
        } else if argmax(&q[0]) == argmax(f) {
            agree += 1;
        }
    }
    Ok((Some(agree as f64 / n as f64), out_of_range))
}

pub fn run(json: bool, args: &BenchArgs) -> Result<()> {
    if !args.aggregate.is_empty() {
        let model = args.models.first().map_or("mlp_small", String::as_str);
        return crate::bench_aggregate::run(
            json,
            &args.fixtures,
            model,
            &args.aggregate,
            args.markdown,
        );
    }
    if let Some(compiled) = &args.single {
        let row = measure(compiled, &args.fixtures, args.runs, args.backend)?;
        println!("{}", serde_json::to_string(&row)?);
        return Ok(());
    }
    let names: Vec<String> = if args.models.is_empty() {
        FIXTURE_MODELS.iter().map(|s| s.to_string()).collect()
    } else {
        args.models.clone()
    };
    let dir = std::env::temp_dir().join(format!("ciro-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let exe = std::env::current_exe()?;
    let mut rows = Vec::new();
    for name in &names {
        eprintln!("{name}: compiling");
        let m = compile_fixture(&args.fixtures, name, args.scale, args.weight_shift)?;
        let path = dir.join(format!("{name}.json"));
        m.save(&path)?;
        eprintln!("{name}: proving {} time(s)", args.runs);
        let out = Command::new(&exe)
            .args(["bench", "--runs", &args.runs.to_string(), "--backend"])
            .arg(args.backend.name())
            .arg("--fixtures")
            .arg(&args.fixtures)
            .arg("--single")
            .arg(&path)
            .output()
            .context("starting the benchmark child process")?;
        if !out.status.success() {
            bail!(
                "{name}: benchmark failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let mut row =
            serde_json::from_slice::<Row>(&out.stdout).context("reading a benchmark row")?;
        eprintln!(
            "{name}: accuracy on {} held-out inputs",
            args.accuracy_inputs
        );
        (row.accuracy, row.out_of_range) = accuracy(&args.fixtures, &m, args.accuracy_inputs)?;
        row.accuracy_inputs = args.accuracy_inputs;
        rows.push(row);
    }
    let _ = std::fs::remove_dir_all(&dir);
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_table(&rows, args.markdown);
    }
    Ok(())
}

fn print_table(rows: &[Row], markdown: bool) {
    let with_evm = rows.iter().any(|r| r.evm.is_some());
    let mut head = vec![
        "model",
        "MACs",
        "trace rows",
        "columns",
        "vk KiB",
        "setup s",
        "prove s",
        "verify ms",
        "proof KiB",
        "peak RSS MiB",
        "quant. error",
        "agree %",
    ];
    if with_evm {
        head.extend(["EVM contracts", "largest code B", "verify gas"]);
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut c = vec![
                r.model.clone(),
                r.macs.to_string(),
                r.rows.to_string(),
                r.columns.to_string(),
                format!("{:.1}", r.vk_kib),
                format!("{:.3}", r.setup_s),
                format!("{:.3}", r.prove_s),
                format!("{:.1}", r.verify_ms),
                format!("{:.1}", r.proof_kib),
                format!("{:.0}", r.peak_rss_mib),
                format!("{:.4}", r.quant_error),
                r.accuracy.map_or("-".into(), |a| {
                    let oor = if r.out_of_range > 0 {
                        format!(" ({} out of range)", r.out_of_range)
                    } else {
                        String::new()
                    };
                    format!("{:.1} of {}{oor}", 100.0 * a, r.accuracy_inputs)
                }),
            ];
            if with_evm {
                let e = r.evm.as_ref();
                c.push(e.map_or("-".into(), |e| e.contracts.to_string()));
                c.push(e.map_or("-".into(), |e| e.largest_code_bytes.to_string()));
                c.push(e.map_or("-".into(), |e| e.verify_gas.to_string()));
            }
            c
        })
        .collect();
    render_table(&head, cells, markdown);
}

/// Prints a table with right-aligned columns, as markdown or plain text.
pub(crate) fn render_table(head: &[&str], cells: Vec<Vec<String>>, markdown: bool) {
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].len())
                .chain([head[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |c: Vec<String>| {
        let parts: Vec<String> = c
            .iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s:>w$}"))
            .collect();
        if markdown {
            format!("| {} |", parts.join(" | "))
        } else {
            parts.join("  ")
        }
    };
    println!("{}", line(head.iter().map(|s| s.to_string()).collect()));
    if markdown {
        println!(
            "|{}|",
            widths
                .iter()
                .map(|w| format!("{}:", "-".repeat(w + 1)))
                .collect::<Vec<_>>()
                .join("|")
        );
    }
    for c in cells {
        println!("{}", line(c));
    }
}
