//! `ciro-model-compiler`: ONNX (via tract-onnx) → a quantized integer graph IR in which every
//! tensor has a power-of-two scale, a proven integer bound and a proven error bound; the exact
//! integer reference evaluator (the witness generator's ground truth); and the float reference.
//! Each op family's import, bound analysis and evaluation live together in [`ops`].
//!
//! ```no_run
//! use ciro_model_compiler::{compile, onnx, CompileOptions};
//! let loaded = onnx::load(std::path::Path::new("fixtures/models/mlp_small/model.onnx"))?;
//! let compiled = compile(&loaded, &[], &CompileOptions::default())?;
//! let out = ciro_model_compiler::run(&compiled.graph, &[vec![0.0; 64]])?;
//! # Ok::<(), ciro_model_compiler::CompileError>(())
//! ```

pub mod artifact;
pub mod builder;
pub mod compile;
pub mod error;
pub mod eval;
pub mod input;
pub mod ir;
pub mod limits;
pub mod onnx;
pub mod ops;
mod proto;
pub mod quant;
pub mod reference;

pub use artifact::{CompileReport, CompiledModel};
pub use compile::{
    compile, compile_model_dir, quantize_inputs, run, run_lenient, synthetic_inputs,
    CompileOptions, GraphCheck, RangeMode,
};
pub use error::{panic_message, CompileError};
pub use ir::{Graph, Op, OpFamily, QuantConfig};
pub use limits::{Limits, ModelCost};
