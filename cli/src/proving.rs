//! `ciro setup`, `ciro prove`, `ciro verify`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use ciro_model_compiler::eval::IntTensor;
use ciro_model_compiler::{quantize_inputs, CompiledModel};
use ciro_prover::halo2_backend::InputVisibility;
use ciro_prover::halo2_weights::WeightOpening;
use ciro_prover::{
    Halo2Backend, Halo2ProvingKey, Halo2VerifyingKey, KeyFile, ProofBundle, ProofSystem, Stage,
    StwoBackend, StwoVerifyingKey,
};
use ciro_verifier::AnyKey;

use crate::read_input;
use crate::shared::{self, fmt_values};

/// stwo's verifier asserts on some malformed proofs; the verifier turns those panics into
/// rejections, so keep the default hook from printing a backtrace for them.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

/// The proof system a command uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// Circle STARK over M31: fastest, transparent, large proofs, not zero-knowledge.
    Stwo,
    /// PLONKish with KZG over BN254: succinct, zero-knowledge, EVM-verifiable.
    Halo2,
}

/// What a halo2 proof shows of the input (`--input-visibility`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Inputs {
    /// Every input value is public (in the bundle and the calldata).
    Public,
    /// Only the input's Poseidon hash is public (`ciro hash-input` computes it).
    Hashed,
    /// Nothing of the input is public (the circuit still range-checks it).
    Private,
}

pub fn halo2_backend(inputs: Inputs) -> Halo2Backend {
    Halo2Backend::default().with_inputs(match inputs {
        Inputs::Public => InputVisibility::Public,
        Inputs::Hashed => InputVisibility::Hashed,
        Inputs::Private => InputVisibility::Private,
    })
}

/// The halo2 settings of `setup` and `prove`.
pub struct Halo2Options {
    pub inputs: Inputs,
    /// Private weights, with the opening in this file (read if it exists, else written).
    pub private_weights: Option<PathBuf>,
}

impl Halo2Options {
    fn backend(&self) -> Result<Halo2Backend> {
        let b = halo2_backend(self.inputs);
        let Some(path) = &self.private_weights else {
            return Ok(b);
        };
        if !path.exists() {
            return Ok(b.with_private_weights(None));
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the weight opening {}", path.display()))?;
        let opening: WeightOpening = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a weight opening", path.display()))?;
        Ok(b.with_private_weights(Some(opening)))
    }

    /// Writes a new opening (made by this setup) where `--private-weights` points, readable by
    /// its owner only.
    fn keep_opening(&self, pk: &Halo2ProvingKey) -> Result<()> {
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

/// What the commands need of a verification key, whichever the backend (beyond the file
/// handling and commitment of [`KeyFile`]).
pub trait Key: KeyFile {
    fn any(&self) -> AnyKey;
    /// One line on the circuit's shape.
    fn shape(&self) -> String;
    fn security_bits(&self) -> u32;
}

impl Key for StwoVerifyingKey {
    fn any(&self) -> AnyKey {
        AnyKey::Stwo(self.clone())
    }
    fn shape(&self) -> String {
        self.components
            .iter()
            .map(|c| format!("{} 2^{}", c.kind.name(), c.log_size))
            .collect::<Vec<_>>()
            .join(", ")
    }
    fn security_bits(&self) -> u32 {
        self.params.security_bits()
    }
}

impl Key for Halo2VerifyingKey {
    fn any(&self) -> AnyKey {
        AnyKey::Halo2(self.clone())
    }
    fn shape(&self) -> String {
        format!("2^{} rows, KZG SRS: {}", self.k, self.srs.origin)
    }
    fn security_bits(&self) -> u32 {
        ciro_prover::halo2_backend::SECURITY_BITS
    }
}

pub fn cmd_setup(
    json: bool,
    compiled: &Path,
    output: &Path,
    backend: Backend,
    halo2: &Halo2Options,
) -> Result<()> {
    let m = CompiledModel::load(compiled)?;
    match backend {
        Backend::Stwo => {
            refuse_private_weights(halo2)?;
            setup_with(json, &StwoBackend::default(), &m, output, &mut |_| Ok(()))
        }
        Backend::Halo2 => setup_with(json, &halo2.backend()?, &m, output, &mut |pk| {
            halo2.keep_opening(pk)
        }),
    }
}

fn refuse_private_weights(halo2: &Halo2Options) -> Result<()> {
    if halo2.private_weights.is_some() {
        anyhow::bail!(
            "--private-weights needs --backend halo2 (stwo proofs are not zero-knowledge)"
        );
    }
    Ok(())
}

fn setup_with<P: ProofSystem>(
    json: bool,
    backend: &P,
    m: &CompiledModel,
    output: &Path,
    made: &mut dyn FnMut(&P::ProvingKey) -> Result<()>,
) -> Result<()>
where
    P::VerifyingKey: Key,
{
    let start = Instant::now();
    let (pk, vk) = backend.setup(m)?;
    made(&pk)?;
    vk.save(output)?;
    let secs = start.elapsed().as_secs_f64();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "model": m.graph.name,
                "backend": backend.name(),
                "commitment": vk.commitment(),
                "verification_key": output,
                "security_bits": vk.security_bits(),
                "setup_s": secs,
            })
        );
    } else {
        println!("model        {}", m.graph.name);
        println!("backend      {}", backend.name());
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
    backend: Backend,
    halo2: &Halo2Options,
) -> Result<()> {
    let m = CompiledModel::load(compiled)?;
    let inputs = quantize_inputs(&m.graph, &read_input(&m.graph, input)?)?;
    match backend {
        Backend::Stwo => {
            refuse_private_weights(halo2)?;
            let no_secret = &mut |_: &_| Ok(());
            prove_with(
                json,
                &StwoBackend::default(),
                &m,
                &inputs,
                output,
                vk_out,
                no_secret,
            )
        }
        Backend::Halo2 => prove_with(
            json,
            &halo2.backend()?,
            &m,
            &inputs,
            output,
            vk_out,
            &mut |pk| halo2.keep_opening(pk),
        ),
    }
}

fn prove_with<P: ProofSystem>(
    json: bool,
    backend: &P,
    m: &CompiledModel,
    inputs: &[IntTensor],
    output: &Path,
    vk_out: Option<&Path>,
    made: &mut dyn FnMut(&P::ProvingKey) -> Result<()>,
) -> Result<()>
where
    P::VerifyingKey: Key,
{
    let start = Instant::now();
    let step = |what: &str| {
        if !json {
            eprintln!("[{:>6.2} s] {what}", start.elapsed().as_secs_f64());
        }
    };
    step(&format!(
        "building the {} circuit and committing to the model",
        backend.name()
    ));
    let (pk, vk) = backend.setup(m)?;
    made(&pk)?;
    let setup_s = start.elapsed().as_secs_f64();
    let bundle = backend.prove(&pk, inputs, &mut |s: Stage| step(s.describe()))?;
    let prove_s = start.elapsed().as_secs_f64() - setup_s;
    bundle
        .save(output)
        .with_context(|| format!("writing {}", output.display()))?;
    if let Some(p) = vk_out {
        vk.save(p)?;
    }
    let size = bundle.to_bytes().len();
    let label = ciro_verifier::verify_any(&vk.any(), &bundle)
        .ok()
        .and_then(|v| v.label().map(|l| l.1));
    if json {
        println!(
            "{}",
            serde_json::json!({
                "bundle": output,
                "backend": backend.name(),
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
            "wrote {} ({:.1} KiB, {}): setup {setup_s:.2} s, prove {prove_s:.2} s",
            output.display(),
            size as f64 / 1024.0,
            backend.name()
        );
    }
    Ok(())
}

pub fn cmd_verify(json: bool, bundle: &Path, vk: &Path) -> Result<()> {
    quiet_panics();
    let vk = AnyKey::load(vk)?;
    let bundle = ProofBundle::load(bundle)?;
    let start = Instant::now();
    let verified = ciro_verifier::verify_any(&vk, &bundle);
    let ms = start.elapsed().as_secs_f64() * 1e3;
    shared::print_verified(json, &verified?, ms);
    Ok(())
}

pub fn cmd_hash_input(json: bool, vk: &Path, compiled: &Path, input: &Path) -> Result<()> {
    let key = match AnyKey::load(vk)? {
        AnyKey::Halo2(k) => k,
        AnyKey::Stwo(_) => {
            anyhow::bail!("{} is a stwo key; input hashing is halo2's", vk.display())
        }
    };
    if key.input_visibility != InputVisibility::Hashed {
        anyhow::bail!(
            "{} shows the input as {:?}, not as its hash (set up with --input-visibility hashed)",
            vk.display(),
            key.input_visibility
        );
    }
    let m = CompiledModel::load(compiled)?;
    if m.hash != key.model_hash {
        anyhow::bail!(
            "{} was made from another model ({}, not {})",
            vk.display(),
            key.model_hash,
            m.hash
        );
    }
    let inputs = quantize_inputs(&m.graph, &read_input(&m.graph, input)?)?;
    let flat: Vec<i64> = inputs.iter().flat_map(|t| t.data.iter().copied()).collect();
    let hash = ciro_prover::halo2_backend::input_hash(&key, &flat)?;
    if json {
        println!("{}", serde_json::json!({ "input_hash": hash }));
    } else {
        println!("{hash}");
    }
    Ok(())
}
