//! The halo2 (PLONKish, BN254 scalar field) arithmetisation of the same gate list the stwo AIR
//! proves.
//!
//! One region of rows over six advice columns `A B C D ACC L`, four coefficient columns
//! `F0..F3`, a lookup tag column, five selectors and one instance column (public inputs or their
//! hash, then public outputs), which the first rows' `D` shows ([`columns`]). Every cell has one
//! canonical place (where its gate writes it); every read is a copy constraint to that place, so
//! the permutation argument plays the role of stwo's LogUp wiring. Weights and gate coefficients
//! are fixed columns, which the verifying key commits to; with private weights
//! ([`WeightVisibility::Private`]) the model's MAC and Arith coefficients move to four advice
//! columns `W0..W3` under two more selectors instead.
//!
//! Every column and lookup is a commitment (an elliptic-curve multiplication) in the on-chain
//! verifier, so the layout spends rows to save columns. One lookup runs on every usable row
//! (`lookup`: the tagged table of ranges, activations, input ranges and public rows). A value
//! proven in `[0, 2^2b)` is two `L` limbs, `L + 2^b·L'` on two rows. The limb width `b` (at most
//! 15) is the narrowest the circuit's checks allow ([`limb_bits`]), so a small model's table, and
//! with it the circuit, stays small. The lookup's degree (5) also lets three selectors share a
//! fixed column and three columns share a permutation product.
//!
//! One chip per gate kind, each with its constraint and the placement of its rows (so the two
//! cannot drift apart), on the row builder of [`layout`] (degree 3 with their selector; the
//! Poseidon round, degree 4):
//! - `mac`: `ceil(terms/4)` rows, `ACC' = ACC + F0·A + F1·B + F2·C + F3·D`, chained.
//! - `arith`: 1 row, `D = A·B`, `C = F0·A + F1·B + F2·D + F3`; also the constants' rows.
//! - `select`: 2 rows, `s = [a >= b]` with the comparison's limbs in `L`.
//! - `div`: 3 rows, `round_div(k·n, d)` with its remainder and quotient range-checked.
//! - `lookup`: 1 row, `C = f(A)`; and the tag gate every tagged row obeys.
//! - `input`: a hashed or private input's range-checked rows, and its packing for the hash.
//! - `poseidon_chip`: the Poseidon rounds and sponge of the input hash.
//!
//! Over a 254-bit field nothing wraps: the lowering's proven bounds (checked against
//! [`FieldBudget::BN254`](crate::FieldBudget::BN254): magnitudes up to `2^62`, ranges up to the
//! `2^30` two limbs can check) keep every equation far from the modulus.

mod arith;
pub mod columns;
mod div;
mod input;
mod layout;
mod lookup;
mod mac;
mod poseidon_chip;
mod select;

use halo2_axiom::circuit::{Cell as H2Cell, Layouter, SimpleFloorPlanner, Value};
use halo2_axiom::halo2curves::bn256::Fr;
use halo2_axiom::plonk::{Any, Circuit as H2Circuit, Column, ConstraintSystem, Error};

use columns::{Columns, EQUALITY};
pub use columns::{N_ADVICE, N_WEIGHT};
pub use layout::{check_bits, limb_bits, Layout, Loc};
use lookup::TableColumns;

/// What a proof shows of the model input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputVisibility {
    /// Every input value is a public value of the proof.
    #[default]
    Public,
    /// Only the Poseidon hash of the input is public (`crate::poseidon::hash_input`).
    Hashed,
    /// Nothing of the input is public; the circuit still proves every value is in range.
    Private,
}

/// How a proof treats the model's weights (the coefficients of its MAC and Arith gates: matrix
/// and convolution weights, biases, folded batch norms, non-foldable constants).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightVisibility {
    /// Fixed columns: the verifying key commits to them (binding, not hiding).
    #[default]
    Fixed,
    /// Advice columns `W0..W3`, blinded in every proof; the key holds a hiding commitment to
    /// them, and each proof shows that its `W` columns hold the committed values.
    Private,
}

/// What the constraint system depends on besides the fixed column values: halo2's circuit
/// parameters, recorded in the key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    pub limb_bits: u32,
    pub weights: WeightVisibility,
}

/// The widest limb: two prove a value in `[0, 2^30)`, which covers every range check the
/// lowering emits (its hi-limb bounds stay below 2^14 in units of 2^16). Each circuit uses the
/// narrowest limb its checks allow ([`limb_bits`]): the range table has `2^bits` rows, so a
/// narrow limb lets a small model fit in fewer rows, and the prover's cost is set by the rows.
pub const MAX_LIMB_BITS: u32 = 15;
/// The constraint system's degree (the lookup's `TAG·C`; see the module documentation).
pub const DEGREE: usize = 5;

/// halo2-axiom caps every constraint system's degree at its `MAX_DEGREE` environment variable
/// (default 5); a lower cap would make keys, provers and verifiers of this circuit disagree with
/// each other. The error to show, if one is set too low.
pub fn degree_cap_error() -> Option<String> {
    let cap = std::env::var("MAX_DEGREE").ok()?;
    match cap.parse::<usize>() {
        Ok(c) if c >= DEGREE => None,
        _ => Some(format!(
            "the MAX_DEGREE environment variable ({cap:?}) caps halo2's constraint degree below the {DEGREE} this circuit needs: unset it"
        )),
    }
}

pub fn fr(v: i64) -> Fr {
    if v >= 0 {
        Fr::from(v as u64)
    } else {
        -Fr::from(v.unsigned_abs())
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    columns: Columns,
    table: TableColumns,
}

/// The halo2 circuit of a layout. Key generation needs its fixed part (coefficients, tables,
/// selectors, copies), the prover its witness; `MockProver` needs both.
pub struct Halo2Circuit<'a> {
    pub layout: &'a Layout,
    pub witness: bool,
    pub fixed: bool,
}

impl H2Circuit<Fr> for Halo2Circuit<'_> {
    type Config = Config;
    type FloorPlanner = SimpleFloorPlanner;
    /// The limb width (the select and division gates recombine `L + 2^bits·R`) and whether the
    /// weights are private (extra advice columns and gates).
    type Params = Shape;

    fn params(&self) -> Shape {
        self.layout.shape()
    }

    fn without_witnesses(&self) -> Self {
        Halo2Circuit {
            layout: self.layout,
            witness: false,
            fixed: true,
        }
    }

    fn configure(meta: &mut ConstraintSystem<Fr>) -> Config {
        Self::configure_with_params(
            meta,
            Shape {
                limb_bits: MAX_LIMB_BITS,
                weights: WeightVisibility::Fixed,
            },
        )
    }

    /// The chips' gates, in the order the verifying key records them.
    fn configure_with_params(meta: &mut ConstraintSystem<Fr>, shape: Shape) -> Config {
        let (cols, table) = Columns::configure(meta, shape.weights, TableColumns::configure);
        mac::configure(meta, &cols, WeightVisibility::Fixed);
        arith::configure(meta, &cols, WeightVisibility::Fixed);
        if shape.weights == WeightVisibility::Private {
            mac::configure(meta, &cols, WeightVisibility::Private);
            arith::configure(meta, &cols, WeightVisibility::Private);
        }
        select::configure(meta, &cols, shape.limb_bits);
        div::configure(meta, &cols);
        lookup::configure_tag_gate(meta, &cols);
        poseidon_chip::configure(meta, &cols);
        lookup::configure_table(meta, &cols, &table);
        Config {
            columns: cols,
            table,
        }
    }

    fn synthesize(&self, cfg: Config, mut layouter: impl Layouter<Fr>) -> Result<(), Error> {
        let lay = self.layout;
        let cols = &cfg.columns;
        let (witness, fixed) = (self.witness, self.fixed);
        layouter.assign_region(
            || "ciro",
            |mut region| {
                if witness {
                    for (c, col) in lay.advice.iter() {
                        for (r, &x) in col.iter().enumerate().take(lay.rows) {
                            if x != 0 || EQUALITY.contains(&c) {
                                region.assign_advice(cols.advice(c), r, Value::known(fr(x)));
                            }
                        }
                    }
                    for (&(c, r), &x) in &lay.wide {
                        region.assign_advice(cols.advice(c), r, Value::known(x));
                    }
                    for (col, (_, values)) in cols.weight().iter().zip(lay.weight.iter()) {
                        for (r, &x) in values.iter().enumerate().take(lay.rows) {
                            if x != 0 {
                                region.assign_advice(*col, r, Value::known(fr(x)));
                            }
                        }
                    }
                }
                if !fixed {
                    return Ok(());
                }
                // The shape, the fixed columns and the copies.
                for (c, col) in lay.coeff.iter() {
                    for (r, &x) in col.iter().enumerate().take(lay.rows) {
                        if x != 0 {
                            region.assign_fixed(cols.coeff(c), r, fr(x));
                        }
                    }
                }
                for (&(c, r), &x) in &lay.wide_coeff {
                    region.assign_fixed(cols.coeff(c), r, x);
                }
                for (r, &t) in lay.tag.iter().enumerate().take(lay.rows) {
                    if t != 0 {
                        region.assign_fixed(cols.tag, r, fr(t));
                    }
                }
                for (s, col) in lay.selectors.iter() {
                    for (r, &on) in col.iter().enumerate().take(lay.rows) {
                        if on {
                            cols.enable(&mut region, s, r)?;
                        }
                    }
                }
                cfg.table.assign(&mut region, &lay.table);
                for &(x, y) in &lay.copies {
                    region.constrain_equal(cell(cols, x), cell(cols, y));
                }
                Ok(())
            },
        )?;
        Ok(())
    }
}

fn cell(cols: &Columns, (c, r): Loc) -> H2Cell {
    H2Cell {
        row_offset: r,
        column: Column::<Any>::from(cols.advice(c)),
    }
}
