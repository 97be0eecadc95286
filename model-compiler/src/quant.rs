//! Fixed-point conversions shared by the compiler, the evaluator's callers and the tests.

/// `2^scale` as a float.
pub fn scale_f(scale: u32) -> f64 {
    (1u64 << scale) as f64
}

/// Real → fixed point at `scale`, rounding half up: `floor(x * 2^scale + 1/2)`.
pub fn quantize(x: f64, scale: u32) -> i64 {
    (x * scale_f(scale) + 0.5).floor() as i64
}

/// Fixed point at `scale` → real.
pub fn dequantize(v: i64, scale: u32) -> f64 {
    v as f64 / scale_f(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_rounds_half_up() {
        assert_eq!(quantize(0.5, 1), 1);
        assert_eq!(quantize(-0.25, 1), 0); // -0.5 -> 0
        assert_eq!(quantize(-0.3, 1), -1);
        assert_eq!(quantize(1.0, 8), 256);
        assert_eq!(dequantize(-384, 8), -1.5);
    }
}
