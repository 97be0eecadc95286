//! The MAC component: a row reads [`MAC_INPUTS`] cells once and adds their products with a
//! [`MAC_OUTPUTS`]` × `[`MAC_INPUTS`] weight matrix to as many accumulators, so the outputs of a
//! linear layer that share their inputs pay one wire lookup per input per row, not one per
//! product. An accumulator carries over from the row before unless `first` restarts it; a dot
//! product's last row writes each accumulator to its output cell. Weights are preprocessed.
//!
//! Two packings share the row:
//! - a MAC block's outputs, [`MAC_OUTPUTS`] at a time, read the block's inputs
//!   [`MAC_INPUTS`] per row; each read counts once per output of the chunk (the lowering's
//!   "every output reads every input");
//! - blocks of a single output (a sum, a lone dot product) go side by side, [`MAC_OUTPUTS`] per
//!   row group, each on its own `MAC_INPUTS / MAC_OUTPUTS` lanes.
//!
//! Soundness: every `x` is the value of its cell (the wire relation), the weights and `first`
//! are fixed by the key, so each accumulator is `Σ w·x` in M31. Partial sums may wrap; the
//! written output is the true integer because the lowering checked the worst case of `Σ |w·x|`
//! against M31 (the field budget).

use stwo_constraint_framework::{EvalAtRow, ORIGINAL_TRACE_IDX};

#[cfg(feature = "prover")]
use super::trace::{reads, ComponentTrace};
#[cfg(feature = "prover")]
use super::Kind;
use super::{one, read, read_main, write, LookupSpec, MAC_INPUTS, MAC_OUTPUTS};
#[cfg(feature = "prover")]
use crate::lower::{Cell, Circuit, Gate};

/// Preprocessed columns: `first`; `(out_id, out_mult)` per accumulator; `(x_id, x_mult)` per
/// input lane; then the weights, accumulator-major.
pub mod pre {
    use super::{MAC_INPUTS, MAC_OUTPUTS};

    /// 1 on a dot product's first row: the accumulators restart.
    pub const FIRST: usize = 0;
    /// Accumulator `m`'s output cell, on its dot product's last row (else 0, with mult 0).
    pub const fn out_id(m: usize) -> usize {
        1 + 2 * m
    }
    pub const fn out_mult(m: usize) -> usize {
        2 + 2 * m
    }
    const LANES: usize = 1 + 2 * MAC_OUTPUTS;
    pub const fn x_id(k: usize) -> usize {
        LANES + 2 * k
    }
    /// How many outputs read the lane's input on this row (0 on an unused lane).
    pub const fn x_mult(k: usize) -> usize {
        LANES + 1 + 2 * k
    }
    const WEIGHTS: usize = LANES + 2 * MAC_INPUTS;
    /// The weight of lane `k` in accumulator `m`.
    pub const fn w(m: usize, k: usize) -> usize {
        WEIGHTS + m * MAC_INPUTS + k
    }
    pub const COUNT: usize = WEIGHTS + MAC_OUTPUTS * MAC_INPUTS;

    pub fn names() -> Vec<String> {
        let mut v = vec!["first".to_string()];
        for m in 0..MAC_OUTPUTS {
            v.extend([format!("out_id{m}"), format!("out_mult{m}")]);
        }
        for k in 0..MAC_INPUTS {
            v.extend([format!("x_id{k}"), format!("x_mult{k}")]);
        }
        for m in 0..MAC_OUTPUTS {
            v.extend((0..MAC_INPUTS).map(|k| format!("w{m}_{k}")));
        }
        v
    }
}

/// Main columns: the accumulators, then the value each lane reads.
pub mod main {
    use super::{MAC_INPUTS, MAC_OUTPUTS};

    pub const fn acc(m: usize) -> usize {
        m
    }
    pub const fn x(k: usize) -> usize {
        MAC_OUTPUTS + k
    }
    pub const COUNT: usize = MAC_OUTPUTS + MAC_INPUTS;
}

/// Writes each accumulator as its `out`, reads every lane's `x`.
pub(super) fn lookups() -> Vec<LookupSpec> {
    let mut v: Vec<LookupSpec> = (0..MAC_OUTPUTS)
        .map(|m| write(pre::out_id(m), pre::out_mult(m), main::acc(m)))
        .collect();
    v.extend((0..MAC_INPUTS).map(|k| read(pre::x_id(k), pre::x_mult(k), main::x(k))));
    v
}

/// Reads the main columns (each accumulator also at the row before) and constrains the row.
pub(super) fn evaluate<E: EvalAtRow>(eval: &mut E, pre: &[E::F]) -> Vec<E::F> {
    let accs: Vec<[E::F; 2]> = (0..MAC_OUTPUTS)
        .map(|_| eval.next_interaction_mask(ORIGINAL_TRACE_IDX, [-1, 0]))
        .collect();
    let mut main: Vec<E::F> = accs.iter().map(|[_, acc]| acc.clone()).collect();
    main.extend(read_main(eval, MAC_INPUTS));
    let keep = one::<E>() - pre[pre::FIRST].clone();
    for (m, [acc_prev, acc]) in accs.into_iter().enumerate() {
        // acc_m = (1 - first) * acc_m_prev + Σ_k w_mk * x_k
        let mut sum = acc_prev * keep.clone();
        for k in 0..MAC_INPUTS {
            sum += main[main::x(k)].clone() * pre[pre::w(m, k)].clone();
        }
        eval.add_constraint(acc - sum);
    }
    main
}

/// Builds the rows of one group of dot products that run side by side.
#[cfg(feature = "prover")]
struct Rows<'a> {
    t: &'a mut ComponentTrace,
    circuit: &'a Circuit,
    cells: &'a [i64],
}

#[cfg(feature = "prover")]
impl Rows<'_> {
    /// Emits `n_rows` rows; `lane(r, k)` is the cell lane `k` reads on row `r`, how many outputs
    /// read it, and the weight per accumulator. `outs[m]` is written on the last row.
    fn group(
        &mut self,
        n_rows: usize,
        outs: &[Cell],
        mut lane: impl FnMut(usize, usize) -> Option<(Cell, i64, [i64; MAC_OUTPUTS])>,
    ) {
        let mut acc = [0i64; MAC_OUTPUTS];
        for r in 0..n_rows {
            let mut p = [0i64; pre::COUNT];
            let mut v = [0i64; main::COUNT];
            p[pre::FIRST] = (r == 0) as i64;
            for k in 0..MAC_INPUTS {
                let Some((x, mult, w)) = lane(r, k) else {
                    continue;
                };
                let xv = self.cells[x as usize];
                p[pre::x_id(k)] = x as i64;
                p[pre::x_mult(k)] = mult;
                v[main::x(k)] = xv;
                for m in 0..MAC_OUTPUTS {
                    p[pre::w(m, k)] = w[m];
                    acc[m] += xv * w[m];
                }
            }
            for m in 0..MAC_OUTPUTS {
                v[main::acc(m)] = acc[m];
                if r + 1 == n_rows {
                    if let Some(&out) = outs.get(m) {
                        p[pre::out_id(m)] = out as i64;
                        p[pre::out_mult(m)] = reads(self.circuit, out);
                    }
                }
            }
            self.t.push(&p, &v);
        }
    }
}

/// Every MAC block's rows, in gate order; the single-output blocks after them, side by side.
#[cfg(feature = "prover")]
pub(super) fn gen_trace(circuit: &Circuit, cells: &[i64]) -> Option<ComponentTrace> {
    let mut t = ComponentTrace::new(Kind::Mac);
    let mut rows = Rows {
        t: &mut t,
        circuit,
        cells,
    };
    let mut singles = Vec::new();
    for gate in &circuit.gates {
        let Gate::Mac { outs, xs, weights } = gate else {
            continue;
        };
        if outs.len() == 1 {
            singles.push((outs[0], xs, weights));
            continue;
        }
        let n_rows = xs.len().div_ceil(MAC_INPUTS);
        for (c, chunk) in outs.chunks(MAC_OUTPUTS).enumerate() {
            rows.group(n_rows, chunk, |r, k| {
                let i = r * MAC_INPUTS + k;
                let x = *xs.get(i)?;
                let mut w = [0; MAC_OUTPUTS];
                for (m, w) in w.iter_mut().take(chunk.len()).enumerate() {
                    *w = weights[(c * MAC_OUTPUTS + m) * xs.len() + i];
                }
                Some((x, chunk.len() as i64, w))
            });
        }
    }
    // Single outputs: accumulator m reads its terms on the lanes k ≡ m (mod MAC_OUTPUTS).
    const PER: usize = MAC_INPUTS / MAC_OUTPUTS;
    for group in singles.chunks(MAC_OUTPUTS) {
        let n_rows = group
            .iter()
            .map(|g| g.1.len().div_ceil(PER))
            .max()
            .unwrap_or(0);
        let outs: Vec<Cell> = group.iter().map(|g| g.0).collect();
        rows.group(n_rows, &outs, |r, k| {
            let (m, j) = (k % MAC_OUTPUTS, k / MAC_OUTPUTS);
            let (_, xs, weights) = group.get(m)?;
            let i = r * PER + j;
            let mut w = [0; MAC_OUTPUTS];
            w[m] = *weights.get(i)?;
            Some((*xs.get(i)?, 1, w))
        });
    }
    // An idle row starts an empty dot product and writes nothing.
    let mut idle_pre = [0i64; pre::COUNT];
    idle_pre[pre::FIRST] = 1;
    t.padded_if_used(&idle_pre, &[0; main::COUNT])
}
