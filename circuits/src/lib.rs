//! Ciro's circuits: the IR lowered to gates over cells ([`lower`]) within a backend's field
//! budget ([`budget`]), the stwo AIR that proves them ([`air`]) with its trace generator
//! ([`trace`]), and the halo2 circuit of the same gates ([`halo2`]).

pub mod air;
pub mod budget;
pub mod error;
pub mod field;
pub mod halo2;
pub mod lower;
pub mod poseidon;
pub mod trace;

pub use budget::FieldBudget;
pub use error::CircuitError;
pub use lower::{Cell, Circuit, Gate, Operand};
