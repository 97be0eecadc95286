//! Any bytes as an uploaded image, decoded for a grey 28×28 and an RGB 32×32 model.
#![no_main]

use ciro_model_compiler::input::decode_image;
use ciro_model_compiler::ir::ImageSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (channels, side) = match data.first() {
        Some(b) if b % 2 == 1 => (3, 32),
        _ => (1, 28),
    };
    let spec = ImageSpec {
        height: side,
        width: side,
        channels,
        range: [0.0, 1.0],
    };
    if let Ok(v) = decode_image(data, "fuzz", &spec) {
        assert_eq!(v.len(), channels * side * side);
        assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
    }
});
