//! The MAC component: a dot product `out = Σ x_i·w_i` runs over consecutive rows of
//! [`MAC_LANES`] products each. The accumulator carries over from the row before unless `first`
//! restarts it; the dot product's last row writes `out`. Weights are preprocessed.

use stwo_constraint_framework::{EvalAtRow, ORIGINAL_TRACE_IDX};

#[cfg(feature = "prover")]
use super::trace::{reads, ComponentTrace};
#[cfg(feature = "prover")]
use super::Kind;
use super::{one, read, read_main, write, LookupSpec, MAC_LANES};
#[cfg(feature = "prover")]
use crate::lower::{Circuit, Gate};

/// Preprocessed columns: `first`, `out_id`, `out_mult`, then `(x_id, w, x_mult)` per lane.
pub mod pre {
    use super::MAC_LANES;

    /// 1 on a dot product's first row: the accumulator restarts.
    pub const FIRST: usize = 0;
    /// The output cell, on a dot product's last row (else 0, with `OUT_MULT` 0).
    pub const OUT_ID: usize = 1;
    pub const OUT_MULT: usize = 2;
    pub const fn x_id(lane: usize) -> usize {
        3 + 3 * lane
    }
    pub const fn w(lane: usize) -> usize {
        4 + 3 * lane
    }
    /// 1 when the lane holds a product, 0 on an unused lane.
    pub const fn x_mult(lane: usize) -> usize {
        5 + 3 * lane
    }
    pub const COUNT: usize = 3 + 3 * MAC_LANES;

    pub fn names() -> Vec<String> {
        let mut v = vec!["first".to_string(), "out_id".into(), "out_mult".into()];
        for j in 0..MAC_LANES {
            v.extend([format!("x_id{j}"), format!("w{j}"), format!("x_mult{j}")]);
        }
        v
    }
}

/// Main columns: the accumulator, then the value each lane reads.
pub mod main {
    use super::MAC_LANES;

    pub const ACC: usize = 0;
    pub const fn x(lane: usize) -> usize {
        1 + lane
    }
    pub const COUNT: usize = 1 + MAC_LANES;
}

/// Writes the accumulator as `out`, reads every lane's `x`.
pub(super) fn lookups() -> Vec<LookupSpec> {
    let mut v = vec![write(pre::OUT_ID, pre::OUT_MULT, main::ACC)];
    for j in 0..MAC_LANES {
        v.push(read(pre::x_id(j), pre::x_mult(j), main::x(j)));
    }
    v
}

/// Reads the main columns (the accumulator also at the row before) and constrains the row.
pub(super) fn evaluate<E: EvalAtRow>(eval: &mut E, pre: &[E::F]) -> Vec<E::F> {
    let [acc_prev, acc] = eval.next_interaction_mask(ORIGINAL_TRACE_IDX, [-1, 0]);
    let mut main = vec![acc];
    main.extend(read_main(eval, MAC_LANES));
    // acc = (1 - first) * acc_prev + sum x_j * w_j
    let mut sum = acc_prev * (one::<E>() - pre[pre::FIRST].clone());
    for j in 0..MAC_LANES {
        sum += main[main::x(j)].clone() * pre[pre::w(j)].clone();
    }
    eval.add_constraint(main[main::ACC].clone() - sum);
    main
}

/// One row per [`MAC_LANES`] products of every MAC gate, in gate order.
#[cfg(feature = "prover")]
pub(super) fn gen_trace(circuit: &Circuit, cells: &[i64]) -> Option<ComponentTrace> {
    let mut t = ComponentTrace::new(Kind::Mac);
    for gate in &circuit.gates {
        let Gate::Mac { out, terms } = gate else {
            continue;
        };
        let chunks: Vec<_> = terms.chunks(MAC_LANES).collect();
        let mut acc = 0i64;
        for (i, chunk) in chunks.iter().enumerate() {
            let mut p = [0i64; pre::COUNT];
            let mut m = [0i64; main::COUNT];
            p[pre::FIRST] = (i == 0) as i64;
            if i + 1 == chunks.len() {
                p[pre::OUT_ID] = *out as i64;
                p[pre::OUT_MULT] = reads(circuit, *out);
            }
            for (j, &(x, w)) in chunk.iter().enumerate() {
                p[pre::x_id(j)] = x as i64;
                p[pre::w(j)] = w;
                p[pre::x_mult(j)] = 1;
                m[main::x(j)] = cells[x as usize];
                acc += cells[x as usize] * w;
            }
            m[main::ACC] = acc;
            t.push(&p, &m);
        }
    }
    // An idle row starts an empty dot product and writes nothing.
    let mut idle_pre = [0i64; pre::COUNT];
    idle_pre[pre::FIRST] = 1;
    t.padded_if_used(&idle_pre, &[0; main::COUNT])
}
