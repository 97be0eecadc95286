//! The range component: the table `[0, 2^RANGE_BITS)`, serving `range(v)` to the select and
//! division components with each value's multiplicity.

#[cfg(feature = "prover")]
use super::trace::{for_each_use, ComponentTrace};
use super::{main_col, pre_col, LookupSpec, Rel};
#[cfg(feature = "prover")]
use super::{Kind, RANGE_BITS};
#[cfg(feature = "prover")]
use crate::field::P;

/// Preprocessed column: row `i` holds `i`.
pub mod pre {
    columns!(VALUE = "value");
}

/// Main column: how many times each value is checked.
pub mod main {
    columns!(MULT = "mult");
}

/// Serves each value as often as it is checked.
pub(super) fn lookups() -> Vec<LookupSpec> {
    vec![LookupSpec {
        rel: Rel::Range,
        mult: main_col(main::MULT),
        values: vec![pre_col(pre::VALUE)],
    }]
}

/// Every value of the range, in order; the multiplicities are counted later, from every use.
#[cfg(feature = "prover")]
pub(super) fn gen_trace() -> ComponentTrace {
    let mut t = ComponentTrace::new(Kind::Range);
    let uncounted = [0i64; main::COUNT];
    for value in 0..1i64 << RANGE_BITS {
        let mut p = [0i64; pre::COUNT];
        p[pre::VALUE] = value;
        t.push(&p, &uncounted);
    }
    t.pad(&[0; pre::COUNT], &uncounted);
    t
}

/// How many times each value of the range is checked. A value outside the range (a cheating
/// prover's) is not counted, so the LogUp sum cannot vanish.
#[cfg(feature = "prover")]
pub(super) fn multiplicities(comps: &[ComponentTrace]) -> Vec<i64> {
    let mut counts = vec![0i64; 1 << RANGE_BITS];
    for_each_use(comps, Rel::Range, |vals, mult| {
        let x = vals[0].rem_euclid(P as i64);
        if x < 1 << RANGE_BITS {
            counts[x as usize] += mult;
        }
    });
    counts
}
