//! `ciro setup`, `ciro prove`, `ciro verify`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use ciro_model_compiler::{quantize_inputs, CompiledModel};
use ciro_prover::halo2_backend::InputVisibility;
use ciro_prover::halo2_weights::WeightOpening;
use ciro_prover::{
    BackendId, DynProver, DynProvingKey, DynVerifyingKey, Halo2VerifyingKey, ProofBundle,
    ProverSettings,
};

use crate::read_input;
use crate::shared::{self, fmt_values};

/// stwo's verifier asserts on some malformed proofs; the verifier turns those panics into
/// rejections, so keep the default hook from printing a backtrace for them.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

/// `--backend NAME`: any registered proof system.
pub fn parse_backend(s: &str) -> Result<BackendId, String> {
    s.parse()
}

/// The `--backend` help text, from the registry.
pub fn backend_help() -> String {
    ciro_prover::backends()
        .iter()
        .map(|b| format!("{}: {}", b.name, b.summary))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a proof shows of the input (`--input-visibility`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Inputs {
    /// Every input value is public (in the bundle and the calldata).
    Public,
    /// Only the input's Poseidon hash is public (`ciro hash-input` computes it).
    Hashed,
    /// Nothing of the input is public (the circuit still range-checks it).
    Private,
}

impl From<Inputs> for InputVisibility {
    fn from(i: Inputs) -> Self {
        match i {
            Inputs::Public => InputVisibility::Public,
            Inputs::Hashed => InputVisibility::Hashed,
            Inputs::Private => InputVisibility::Private,
        }
    }
}

/// The proof system and its settings for `setup` and `prove`.
pub struct ProveOptions {
    pub backend: BackendId,
    pub inputs: Inputs,
    /// Private weights, with the opening in this file (read if it exists, else written).
    pub private_weights: Option<PathBuf>,
}

impl ProveOptions {
    fn prover(&self) -> Result<Box<dyn DynProver>> {
        let private_weights = match &self.private_weights {
            None => None,
            Some(path) if !path.exists() => Some(None),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the weight opening {}", path.display()))?;
                let opening: WeightOpening = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a weight opening", path.display()))?;
                Some(Some(opening))
            }
        };
        let settings = ProverSettings {
            inputs: self.inputs.into(),
            private_weights,
            ..ProverSettings::default()
        };
        Ok(ciro_prover::prover(self.backend, &settings)?)
    }

    /// Writes a new opening (made by this setup) where `--private-weights` points, readable by
    /// its owner only.
    fn keep_opening(&self, pk: &dyn DynProvingKey) -> Result<()> {
        let (Some(path), Some(opening)) = (&self.private_weights, pk.weight_opening()) else {
            return Ok(());
        };
        if path.exists() {
            return Ok(());
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let json = serde_json::to_vec_pretty(opening).expect("openings serialise");
        let mut f = std::fs::OpenOptions::new();
        f.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut f, 0o600);
        let mut file = f
            .open(path)
            .with_context(|| format!("writing the weight opening {}", path.display()))?;
        std::io::Write::write_all(&mut file, &json)
            .and_then(|_| file.sync_all())
            .with_context(|| format!("writing the weight opening {}", path.display()))?;
        eprintln!(
            "wrote the weight opening {} (secret: every proof under this key needs it)",
            path.display()
        );
        Ok(())
    }
}

fn save_key(vk: &dyn DynVerifyingKey, path: &Path) -> Result<()> {
    ciro_prover::bundle::write_atomic(path, &vk.to_json())
        .with_context(|| format!("writing the verification key {}", path.display()))
}

pub fn cmd_setup(json: bool, compiled: &Path, output: &Path, opts: &ProveOptions) -> Result<()> {
    let m = CompiledModel::load(compiled)?;
    let prover = opts.prover()?;
    let start = Instant::now();
    let pk = prover.setup(&m, &mut |line| eprintln!("{line}"))?;
    opts.keep_opening(pk.as_ref())?;
    let vk = pk.verifying_key();
    save_key(vk, output)?;
    let secs = start.elapsed().as_secs_f64();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "model": m.graph.name,
                "backend": vk.backend().bundle_name(),
                "commitment": vk.commitment(),
                "verification_key": output,
                "security_bits": vk.security_bits(),
                "setup_s": secs,
            })
        );
    } else {
        println!("model        {}", m.graph.name);
        println!("backend      {}", vk.backend().bundle_name());
        println!("commitment   {}", vk.commitment());
        println!("circuit      {}", vk.shape());
        println!("security     {} bits (conjectured)", vk.security_bits());
        println!("wrote        {} ({secs:.2} s)", output.display());
    }
    Ok(())
}

pub fn cmd_prove(
    json: bool,
    compiled: &Path,
    input: &Path,
    output: &Path,
    vk_out: Option<&Path>,
    opts: &ProveOptions,
) -> Result<()> {
    let m = CompiledModel::load(compiled)?;
    let inputs = quantize_inputs(&m.graph, &read_input(&m.graph, input)?)?;
    let prover = opts.prover()?;
    let name = prover.id().bundle_name();
    let start = Instant::now();
    let step = |what: &str| {
        if !json {
            eprintln!("[{:>6.2} s] {what}", start.elapsed().as_secs_f64());
        }
    };
    step(&format!(
        "building the {name} circuit and committing to the model"
    ));
    let pk = prover.setup(&m, &mut |line| step(line))?;
    opts.keep_opening(pk.as_ref())?;
    let vk = pk.verifying_key();
    let setup_s = start.elapsed().as_secs_f64();
    let bundle = prover.prove(pk.as_ref(), &inputs, &mut |s| step(s.describe()))?;
    let prove_s = start.elapsed().as_secs_f64() - setup_s;
    bundle
        .save(output)
        .with_context(|| format!("writing {}", output.display()))?;
    if let Some(p) = vk_out {
        save_key(vk, p)?;
    }
    let size = bundle.to_bytes().len();
    let label = ciro_verifier::verify(vk, &bundle)
        .ok()
        .and_then(|v| v.label().map(|l| l.1));
    if json {
        println!(
            "{}",
            serde_json::json!({
                "bundle": output,
                "backend": name,
                "bytes": size,
                "proof_bytes": bundle.proof.len(),
                "setup_s": setup_s,
                "prove_s": prove_s,
                "outputs": bundle.header.outputs.iter().map(|t| t.real()).collect::<Vec<_>>(),
                "label": label,
                "commitment": bundle.header.model_commitment,
            })
        );
    } else {
        for (i, t) in bundle.header.outputs.iter().enumerate() {
            println!("output {i}: {}", fmt_values(&t.real()));
        }
        if let Some(l) = label {
            println!("label: {l}");
        }
        println!(
            "wrote {} ({:.1} KiB, {name}): setup {setup_s:.2} s, prove {prove_s:.2} s",
            output.display(),
            size as f64 / 1024.0,
        );
    }
    Ok(())
}

pub fn cmd_verify(json: bool, bundle: &Path, vk: &Path, input: Option<&Path>) -> Result<()> {
    quiet_panics();
    let key = ciro_verifier::load_key(vk)?;
    let bundle = ProofBundle::load(bundle)?;
    let start = Instant::now();
    let verified = ciro_verifier::verify(key.as_ref(), &bundle);
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let verified = verified?;
    if let Some(path) = input {
        if shared::is_image(path) {
            anyhow::bail!(
                "--input takes the JSON tensor the image became (`ciro-cli job-result` saves it); {} is an image",
                path.display()
            );
        }
        let floats = ciro_model_compiler::input::read_json(path)?;
        verified
            .check_inputs(key.as_ref(), &floats)
            .map_err(|e| anyhow::anyhow!("REJECTED for {}: {e}", path.display()))?;
    }
    let checked = input.map(|p| p.display().to_string());
    shared::print_verified(json, &verified, ms, checked.as_deref(), None);
    Ok(())
}

pub fn cmd_hash_input(json: bool, vk: &Path, compiled: &Path, input: &Path) -> Result<()> {
    let any = ciro_verifier::load_key(vk)?;
    let halo2 = any.downcast_ref::<Halo2VerifyingKey>();
    let plonky2 = any.downcast_ref::<ciro_prover::Plonky2VerifyingKey>();
    let visibility = match (halo2, plonky2) {
        (Some(k), _) => k.input_visibility,
        (_, Some(k)) => k.input_visibility,
        _ => anyhow::bail!(
            "{} is a {} key: its proofs show the input itself, not a hash",
            vk.display(),
            any.backend()
        ),
    };
    if visibility != InputVisibility::Hashed {
        anyhow::bail!(
            "{} shows the input as {:?}, not as its hash (set up with --input-visibility hashed)",
            vk.display(),
            visibility
        );
    }
    let m = CompiledModel::load(compiled)?;
    if m.hash != any.model_hash() {
        anyhow::bail!(
            "{} was made from another model ({}, not {})",
            vk.display(),
            any.model_hash(),
            m.hash
        );
    }
    let inputs = quantize_inputs(&m.graph, &read_input(&m.graph, input)?)?;
    let flat: Vec<i64> = inputs.iter().flat_map(|t| t.data.iter().copied()).collect();
    let hash = match (halo2, plonky2) {
        (Some(k), _) => ciro_prover::halo2_backend::input_hash(k, &flat)?,
        (_, Some(k)) => ciro_prover::plonky2_backend::input_hash(k, &flat)?,
        _ => anyhow::bail!("{} has no hashed input", vk.display()),
    };
    if json {
        println!("{}", serde_json::json!({ "input_hash": hash }));
    } else {
        println!("{hash}");
    }
    Ok(())
}
