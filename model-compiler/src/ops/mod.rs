//! The IR's ops by family: each file holds one family's import from tract's decluttered ops, its
//! bound and error analysis ([`crate::builder::Builder`] methods) and its reference evaluation.
//! The layers keep their shared parts and one dispatch each: the walk over the model
//! ([`crate::onnx`], which asks each family's `import` in turn), the builder's checks
//! ([`crate::builder`]), and the evaluator ([`crate::eval::eval_node`], which matches on
//! [`Op::family`](crate::ir::Op::family)). The circuits crate lowers each family in a file of the
//! same name (`circuits/src/lower/<family>.rs`).
//!
//! Families (the [`OpFamily`](crate::ir::OpFamily) of each [`Op`](crate::ir::Op)):
//! - [`linear`]: MatMul (from MatMul, Gemm, einsum), Conv.
//! - [`elementwise`]: Add, Sub, Mul, Max, Min, DivConst, ScaleUp, Rescale.
//! - [`activation`]: Clamp (ReLU, Clip), LeakyRelu, Lookup (Sigmoid, Tanh, Exp, Erf).
//! - [`pooling`]: MaxPool, SumPool (average pooling is a SumPool and a DivConst).
//! - [`reduction`]: ReduceSum, ReduceMax.
//! - [`softmax`]: Softmax and normalisation.
//! - [`wiring`]: Input, Const, Reshape, Transpose, Slice, Concat, Pad, Gather.
//! - [`indexing`]: data-dependent Gather, GatherElements, GatherND, ScatterElements and
//!   ScatterND, composed of the ops above (no IR op of their own).
//!
//! Max and Min are elementwise (binary, broadcasting, evaluated like Add) although their circuit
//! is the select gadget Clamp also uses.
//!
//! Adding an op: its variant on [`Op`](crate::ir::Op) (with its `name` and `family`), its
//! import, bounds and evaluation in its family's file here, its lowering in the circuits crate's
//! family file, and a fixture in `fixtures/ops/`.

pub mod activation;
pub mod elementwise;
pub mod indexing;
pub mod linear;
pub mod pooling;
pub mod reduction;
pub mod softmax;
pub mod wiring;
