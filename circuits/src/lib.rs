//! Ciro's circuits: the IR lowered to gates over cells ([`lower`]), the stwo AIR that proves them
//! ([`air`]) and the trace generator ([`trace`]).

pub mod air;
pub mod error;
pub mod field;
pub mod lower;
pub mod trace;

pub use error::CircuitError;
pub use lower::{Cell, Circuit, Gate, Operand};
