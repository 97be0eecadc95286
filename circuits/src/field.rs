//! Signed integers in M31.

use stwo::core::fields::m31::M31;

/// The M31 prime, 2^31 - 1.
pub const P: u32 = (1 << 31) - 1;

/// The field element of a signed integer (`v mod p`).
pub fn m31(v: i64) -> M31 {
    M31::from_u32_unchecked(v.rem_euclid(P as i64) as u32)
}
