//! The model registry: the fixture models by name (embedded in the binary, so a fresh machine
//! needs no files), and uploaded ONNX models by content hash. A model is compiled once and the
//! compiled file cached on disk under the hash of its source; its proving key lives in memory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use ciro_model_compiler::{compile, compile_model_dir, onnx, CompiledModel, Limits};
use ciro_prover::halo2_backend::InputVisibility;
use ciro_prover::{BackendId, DynProver, DynProvingKey, DynVerifyingKey, ProverSettings};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::isolate::Isolation;
use crate::pricing::quote_for;

macro_rules! fixture {
    ($name:literal) => {
        Embedded {
            name: $name,
            onnx: include_bytes!(concat!("../../fixtures/models/", $name, "/model.onnx")),
            calibration: [
                include_str!(concat!(
                    "../../fixtures/models/",
                    $name,
                    "/calibration/cal_00.json"
                )),
                include_str!(concat!(
                    "../../fixtures/models/",
                    $name,
                    "/calibration/cal_01.json"
                )),
                include_str!(concat!(
                    "../../fixtures/models/",
                    $name,
                    "/calibration/cal_02.json"
                )),
                include_str!(concat!(
                    "../../fixtures/models/",
                    $name,
                    "/calibration/cal_03.json"
                )),
                include_str!(concat!(
                    "../../fixtures/models/",
                    $name,
                    "/calibration/cal_04.json"
                )),
                include_str!(concat!(
                    "../../fixtures/models/",
                    $name,
                    "/calibration/cal_05.json"
                )),
                include_str!(concat!(
                    "../../fixtures/models/",
                    $name,
                    "/calibration/cal_06.json"
                )),
                include_str!(concat!(
                    "../../fixtures/models/",
                    $name,
                    "/calibration/cal_07.json"
                )),
            ],
        }
    };
}

struct Embedded {
    name: &'static str,
    onnx: &'static [u8],
    calibration: [&'static str; 8],
}

const FIXTURES: [Embedded; 5] = [
    fixture!("image_recognition_v1"),
    fixture!("mlp_small"),
    fixture!("mlp_mnist"),
    fixture!("cnn_lenet"),
    fixture!("act_mix"),
];

/// Largest ONNX upload accepted.
pub const MAX_MODEL_BYTES: usize = 16 << 20;

/// One prover per registered backend, made once with the service's settings.
pub struct Provers(Vec<Box<dyn DynProver>>);

impl Provers {
    /// One prover per backend; halo2 shows the input as `halo2_inputs` says, the others show
    /// it (`settings.inputs` is ignored).
    pub fn new(
        settings: &ProverSettings,
        halo2_inputs: InputVisibility,
    ) -> Result<Provers, String> {
        ciro_prover::backends()
            .iter()
            .map(|b| {
                let settings = ProverSettings {
                    inputs: if b.id == BackendId::Halo2 {
                        halo2_inputs
                    } else {
                        InputVisibility::Public
                    },
                    ..settings.clone()
                };
                ciro_prover::prover(b.id, &settings).map_err(|e| format!("{}: {e}", b.name))
            })
            .collect::<Result<_, _>>()
            .map(Provers)
    }

    pub fn get(&self, id: BackendId) -> &dyn DynProver {
        self.0
            .iter()
            .find(|p| p.id() == id)
            .map(|p| p.as_ref())
            .expect("a prover for every registered backend")
    }
}

/// A model's keys for one backend.
pub struct Keys {
    pub pk: Box<dyn DynProvingKey>,
    /// The verification key file, as `GET /v1/models/{name}/vk` serves it.
    pub vk_json: Vec<u8>,
}

impl Keys {
    fn make(prover: &dyn DynProver, model: &CompiledModel) -> Result<Keys, String> {
        let pk = prover
            .setup(model, &mut |_| {})
            .map_err(|e| format!("{} setup of {}: {e}", prover.id(), model.graph.name))?;
        let vk_json = pk.verifying_key().to_json();
        Ok(Keys { pk, vk_json })
    }

    pub fn vk(&self) -> &dyn DynVerifyingKey {
        self.pk.verifying_key()
    }
}

/// A model ready to prove: its compiled graph, and its keys per backend (the default backend's
/// made on load, which also prices the model; the others on their first job, since key
/// generation takes seconds).
pub struct Model {
    pub name: String,
    pub compiled: CompiledModel,
    pub trace_rows: u64,
    pub uploaded: bool,
    keys: Vec<(BackendId, KeySlot)>,
}

/// A backend's keys, made once (or why they could not be).
type KeySlot = OnceLock<Result<Arc<Keys>, String>>;

/// The backend whose keys every model gets on load: its circuit size prices every backend.
const PRICING_BACKEND: BackendId = BackendId::Stwo;

pub use ciro_client::types::{ImageInfo, InputInfo, ModelInfo};

impl Model {
    pub fn price(&self, backend: BackendId) -> i64 {
        quote_for(backend, self.trace_rows)
    }

    /// The model's keys for `backend`, made once.
    pub fn keys(&self, backend: BackendId, provers: &Provers) -> Result<Arc<Keys>, String> {
        self.slot(backend)
            .get_or_init(|| Keys::make(provers.get(backend), &self.compiled).map(Arc::new))
            .clone()
    }

    fn slot(&self, backend: BackendId) -> &KeySlot {
        self.keys
            .iter()
            .find(|(id, _)| *id == backend)
            .map(|(_, slot)| slot)
            .expect("a key slot for every registered backend")
    }

    /// The keys made on load.
    fn pricing_keys(&self) -> Arc<Keys> {
        match self.slot(PRICING_BACKEND).get() {
            Some(Ok(k)) => k.clone(),
            _ => unreachable!("a model is only built once its pricing keys exist"),
        }
    }

    pub fn info(&self) -> ModelInfo {
        let g = &self.compiled.graph;
        ModelInfo {
            name: self.name.clone(),
            uploaded: self.uploaded,
            model_hash: self.compiled.hash.clone(),
            commitment: self.pricing_keys().vk().commitment(),
            inputs: g
                .inputs
                .iter()
                .map(|i| InputInfo {
                    shape: i.shape.clone(),
                    range: i.range,
                })
                .collect(),
            outputs: g
                .outputs
                .iter()
                .map(|o| g.nodes[o.node].shape.clone())
                .collect(),
            accepts_images: g.image.is_some(),
            image: g.image.as_ref().map(|i| ImageInfo {
                height: i.height,
                width: i.width,
                channels: i.channels,
                range: i.range,
            }),
            labels: g.labels.clone(),
            trace_rows: self.trace_rows,
            price_micro: self.price(BackendId::Stwo),
            price_halo2_micro: self.price(BackendId::Halo2),
            prices_micro: ciro_prover::backends()
                .iter()
                .map(|b| (b.name.to_string(), self.price(b.id)))
                .collect(),
            proof_systems: ciro_prover::backends()
                .iter()
                .map(|b| b.name.to_string())
                .collect(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "unknown model {0:?}: list the models with GET /v1/models (or `ciro-cli list-models`)"
    )]
    Unknown(String),
    #[error("{0}")]
    BadModel(String),
    #[error("model storage: {0}")]
    Io(String),
}

type Slot = Arc<OnceLock<Result<Arc<Model>, String>>>;

/// Uploaded models kept in memory at once (with their proving keys); past it the one loaded
/// longest ago is dropped and loaded again from disk when next used. Uploads cost an account
/// nothing, so without a bound each distinct one would stay resident for good.
const MAX_LOADED_UPLOADS: usize = 16;

/// Loaded models by name, and the order uploads were loaded in.
#[derive(Default)]
struct Slots {
    by_name: HashMap<String, Slot>,
    uploads: std::collections::VecDeque<String>,
}

impl Slots {
    fn slot(&mut self, name: &str) -> Slot {
        let slot = self.by_name.get(name).cloned().unwrap_or_default();
        self.insert(name, slot)
    }

    fn insert(&mut self, name: &str, slot: Slot) -> Slot {
        if name.starts_with("m-") {
            self.uploads.retain(|n| n != name);
            self.uploads.push_back(name.to_string());
            while self.uploads.len() > MAX_LOADED_UPLOADS {
                if let Some(old) = self.uploads.pop_front() {
                    self.by_name.remove(&old);
                }
            }
        }
        self.by_name.insert(name.to_string(), slot.clone());
        slot
    }
}

pub struct Registry {
    dir: PathBuf,
    /// The provers every model's keys are made with.
    pub provers: Provers,
    slots: Mutex<Slots>,
    limits: Limits,
    max_halo2_k: u32,
    isolation: Option<Isolation>,
}

/// What the registry checks models against, and where uploads are compiled.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    pub limits: Limits,
    pub max_halo2_k: u32,
    /// What halo2 proofs show of the input (public, or its Poseidon hash: cheaper to settle on
    /// chain and private).
    pub halo2_inputs: InputVisibility,
    /// Compile and set up uploads in a child process ([`crate::isolate`]); `None` does it in
    /// this process (tests and tools; a public service should isolate).
    pub isolation: Option<Isolation>,
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// Uploaded models are named by their content: `m-` and 16 hex digits of the ONNX file's sha256.
pub fn upload_name(onnx_bytes: &[u8]) -> String {
    format!("m-{}", &hex::encode(Sha256::digest(onnx_bytes))[..16])
}

impl Registry {
    pub fn open(
        dir: &Path,
        settings: &ProverSettings,
        options: RegistryOptions,
    ) -> Result<Registry, RegistryError> {
        for sub in ["uploads", "compiled", "quarantine"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(|e| RegistryError::Io(format!("{}: {e}", dir.join(sub).display())))?;
        }
        sweep_temporaries(dir);
        let settings = ProverSettings {
            max_halo2_k: options.max_halo2_k,
            ..settings.clone()
        };
        Ok(Registry {
            provers: Provers::new(&settings, options.halo2_inputs)
                .map_err(RegistryError::BadModel)?,
            dir: dir.to_path_buf(),
            slots: Mutex::new(Slots::default()),
            limits: options.limits,
            max_halo2_k: options.max_halo2_k,
            isolation: options.isolation,
        })
    }

    /// The compile options every model is compiled with: the provers' budgets and the caps.
    fn compile_options(&self) -> ciro_model_compiler::CompileOptions {
        ciro_model_compiler::CompileOptions {
            limits: self.limits,
            ..ciro_prover::compile_options()
        }
    }

    fn quarantine_path(&self, name: &str) -> PathBuf {
        self.dir.join("quarantine").join(name)
    }

    /// The names of the built-in models and of every uploaded model on disk.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = FIXTURES.iter().map(|f| f.name.to_string()).collect();
        if let Ok(rd) = std::fs::read_dir(self.dir.join("uploads")) {
            let mut up: Vec<String> = rd
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().to_string();
                    n.strip_suffix(".onnx").map(str::to_string)
                })
                .collect();
            up.sort();
            names.extend(up);
        }
        names
    }

    pub fn is_known(&self, name: &str) -> bool {
        FIXTURES.iter().any(|f| f.name == name)
            || self.upload_path(name).is_some_and(|p| p.exists())
    }

    fn upload_path(&self, name: &str) -> Option<PathBuf> {
        let ok = name.len() == 18
            && name.starts_with("m-")
            && name[2..].bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| self.dir.join("uploads").join(format!("{name}.onnx")))
    }

    /// What the API shows of a model. An upload's is kept beside it when it is published, so
    /// listing the registry never compiles or sets up a model.
    pub fn info(&self, name: &str) -> Result<ModelInfo, RegistryError> {
        if let Some(cached) = self
            .upload_path(name)
            .map(|p| p.with_extension("info.json"))
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice::<ModelInfo>(&b).ok())
        {
            if self.is_known(name) {
                return Ok(cached);
            }
        }
        let info = self.get(name)?.info();
        if let Some(p) = self.upload_path(name) {
            let _ = write_json(&p.with_extension("info.json"), &info);
        }
        Ok(info)
    }

    /// The model, compiled and set up on first use (which can take seconds: call it off the
    /// async runtime). Concurrent callers for the same model wait for one compilation.
    pub fn get(&self, name: &str) -> Result<Arc<Model>, RegistryError> {
        if !self.is_known(name) {
            return Err(RegistryError::Unknown(name.to_string()));
        }
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.slot(name)
        };
        slot.get_or_init(|| self.load(name).map(Arc::new))
            .clone()
            .map_err(RegistryError::BadModel)
    }

    fn load(&self, name: &str) -> Result<Model, String> {
        let (compiled, uploaded) = match FIXTURES.iter().find(|f| f.name == name) {
            Some(f) => (self.compile_fixture(f)?, false),
            None => {
                let path = self.upload_path(name).ok_or("not an uploaded model name")?;
                let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let key = sha256_hex(&[b"upload", &bytes]);
                (
                    self.cached(&key, || {
                        let loaded = onnx::load(&path).map_err(|e| e.to_string())?;
                        compile(&loaded, &[], &self.compile_options()).map_err(|e| e.to_string())
                    })?,
                    true,
                )
            }
        };
        self.model_from(name, compiled, uploaded)
    }

    /// A model from its compiled graph: its pricing keys made now.
    fn model_from(
        &self,
        name: &str,
        compiled: CompiledModel,
        uploaded: bool,
    ) -> Result<Model, String> {
        let keys = Keys::make(self.provers.get(PRICING_BACKEND), &compiled)
            .map_err(|e| format!("model {name} cannot be proved: {e}"))?;
        let trace_rows = keys.vk().size().rows;
        let keys = Arc::new(keys);
        let slots = ciro_prover::backends()
            .iter()
            .map(|b| {
                let slot = OnceLock::new();
                if b.id == PRICING_BACKEND {
                    let _ = slot.set(Ok(keys.clone()));
                }
                (b.id, slot)
            })
            .collect();
        Ok(Model {
            name: name.to_string(),
            compiled,
            trace_rows,
            uploaded,
            keys: slots,
        })
    }

    fn compile_fixture(&self, f: &Embedded) -> Result<CompiledModel, String> {
        let mut parts: Vec<&[u8]> = vec![f.name.as_bytes(), f.onnx];
        parts.extend(f.calibration.iter().map(|c| c.as_bytes()));
        let key = sha256_hex(&parts);
        self.cached(&key, || {
            // The compiler reads files: lay the fixture out as a model folder of this call's
            // own (nodes sharing the models folder may compile the same fixture at once).
            let dir = self.dir.join("fixtures").join(format!(
                ".tmp-{}-{}",
                f.name,
                hex::encode(rand::random::<[u8; 6]>())
            ));
            let cal = dir.join("calibration");
            let compiled = std::fs::create_dir_all(&cal)
                .and_then(|()| std::fs::write(dir.join("model.onnx"), f.onnx))
                .and_then(|()| {
                    f.calibration.iter().enumerate().try_for_each(|(i, c)| {
                        std::fs::write(cal.join(format!("cal_{i:02}.json")), c)
                    })
                })
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    compile_model_dir(&dir, &self.compile_options()).map_err(|e| e.to_string())
                });
            let _ = std::fs::remove_dir_all(&dir);
            compiled
        })
    }

    /// The compiled model cached under `key`, or compiled now and cached.
    fn cached(
        &self,
        key: &str,
        compile: impl FnOnce() -> Result<CompiledModel, String>,
    ) -> Result<CompiledModel, String> {
        let path = self.dir.join("compiled").join(format!("{key}.json"));
        if let Ok(m) = CompiledModel::load(&path) {
            return Ok(m);
        }
        let m = compile()?;
        // A failed cache write only costs a recompilation next time.
        let _ = m.save(&path);
        Ok(m)
    }

    /// Stores an uploaded ONNX model, compiles it and sets it up; returns the model. The same
    /// bytes uploaded twice give the same model. The model is published (listed, usable by
    /// jobs, loaded at start-up) only once its keys exist.
    pub fn upload(&self, bytes: &[u8]) -> Result<Arc<Model>, RegistryError> {
        if bytes.is_empty() {
            return Err(RegistryError::BadModel("the upload is empty".into()));
        }
        if bytes.len() > MAX_MODEL_BYTES {
            return Err(RegistryError::BadModel(format!(
                "the model is {} bytes; the limit is {MAX_MODEL_BYTES}",
                bytes.len()
            )));
        }
        let name = upload_name(bytes);
        if let Ok(reason) = std::fs::read_to_string(self.quarantine_path(&name)) {
            return Err(RegistryError::BadModel(format!(
                "model {name} is quarantined: an earlier upload of it {}",
                reason.trim()
            )));
        }
        if self.is_known(&name) {
            return self.get(&name);
        }
        // A folder of its own per upload: parallel uploads of the same bytes never share a
        // file, and the model keeps its published name while it is checked.
        let staging = self
            .dir
            .join("uploads")
            .join(format!(".tmp-{}", hex::encode(rand::random::<[u8; 8]>())));
        let result = self.stage(&name, bytes, &staging);
        let _ = std::fs::remove_dir_all(&staging);
        result
    }

    fn stage(&self, name: &str, bytes: &[u8], staging: &Path) -> Result<Arc<Model>, RegistryError> {
        let io = |e: std::io::Error| RegistryError::Io(e.to_string());
        std::fs::create_dir_all(staging).map_err(io)?;
        let onnx_path = staging.join(format!("{name}.onnx"));
        std::fs::write(&onnx_path, bytes).map_err(io)?;
        let key = sha256_hex(&[b"upload", bytes]);
        // Messages name the model, never the server's folders.
        let staged = onnx_path.display().to_string();
        let refused = |e: String| {
            RegistryError::BadModel(format!(
                "cannot compile the uploaded model: {}",
                e.replace(&staged, name)
            ))
        };
        let compiled = match &self.isolation {
            Some(iso) => {
                let out = staging.join("compiled.json");
                match crate::isolate::check(iso, &onnx_path, &out, &self.limits, self.max_halo2_k) {
                    crate::isolate::Outcome::Ready => {}
                    crate::isolate::Outcome::Refused(e) => return Err(refused(e)),
                    crate::isolate::Outcome::Crashed(e) => {
                        let _ = std::fs::write(self.quarantine_path(name), format!("{e}\n"));
                        crate::worker::log(&format!("upload {name} quarantined: {e}"));
                        return Err(RegistryError::BadModel(format!(
                            "model {name} is quarantined: {e}"
                        )));
                    }
                }
                let compiled = CompiledModel::load(&out).map_err(|e| refused(e.to_string()))?;
                let _ = compiled.save(&self.dir.join("compiled").join(format!("{key}.json")));
                compiled
            }
            None => self
                .cached(&key, || {
                    let loaded = onnx::load(&onnx_path).map_err(|e| e.to_string())?;
                    compile(&loaded, &[], &self.compile_options()).map_err(|e| e.to_string())
                })
                .map_err(refused)?,
        };
        let model = Arc::new(self.model_from(name, compiled, true).map_err(refused)?);
        {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let slot: Slot = Arc::default();
            let _ = slot.set(Ok(model.clone()));
            slots.insert(name, slot);
        }
        let path = self
            .upload_path(name)
            .expect("names made by upload_name are valid");
        write_json(&path.with_extension("info.json"), &model.info()).map_err(io)?;
        std::fs::rename(&onnx_path, &path).map_err(io)?;
        Ok(model)
    }
}

/// Writes `value` as JSON through a temporary file, so a reader never sees half of it.
fn write_json(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", hex::encode(rand::random::<[u8; 6]>())));
    std::fs::write(
        &tmp,
        serde_json::to_vec(value).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, path)
}

/// Removes what an upload or a fixture compilation interrupted by a crash left behind (its
/// staging folder), once it is an hour old: another node sharing the folder may be using a
/// fresh one.
fn sweep_temporaries(dir: &Path) {
    for sub in ["uploads", "fixtures"] {
        let Ok(rd) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in rd.filter_map(|e| e.ok()) {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > std::time::Duration::from_secs(3600));
            if old && e.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loaded_uploads_are_bounded_and_built_in_models_stay() {
        let mut slots = Slots::default();
        slots.slot("mlp_small");
        for i in 0..40 {
            slots.slot(&format!("m-{i:016x}"));
            // Using an early upload again keeps it among the most recent.
            slots.slot("m-0000000000000000");
        }
        let uploads = slots.by_name.keys().filter(|n| n.starts_with("m-")).count();
        assert_eq!(uploads, MAX_LOADED_UPLOADS);
        assert!(slots.by_name.contains_key("mlp_small"));
        assert!(!slots.by_name.contains_key("m-0000000000000001"));
        assert!(slots.by_name.contains_key(&format!("m-{:016x}", 39)));
    }
}
