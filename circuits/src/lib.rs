//! Ciro's circuits: the IR lowered to gates over cells ([`lower`]) within a backend's field
//! budget ([`budget`]), the stwo AIR that proves them ([`stwo`]: one component per gate kind,
//! with its trace generation behind the `prover` feature), and the halo2 circuit of the same
//! gates ([`halo2`]) and the plonky2 circuit of them ([`plonky2`]).

pub mod budget;
pub mod error;
pub mod field;
pub mod halo2;
pub mod lower;
pub mod plonky2;
pub mod poseidon;
pub mod stwo;

pub use budget::{fits, FieldBudget, PROVING_BUDGETS};
pub use error::CircuitError;
pub use lower::{Cell, Circuit, Gate, Operand};
