//! Any bytes as an ONNX upload: loading (protobuf, tract, Ciro's rewrites and size checks) and,
//! when that succeeds, compiling under tight caps. Errors are fine; a panic, an abort, a hang
//! or an allocation past libFuzzer's `-rss_limit_mb` is a finding.
#![no_main]

use std::path::Path;

use ciro_model_compiler::{compile, onnx, CompileOptions, Limits};
use libfuzzer_sys::fuzz_target;

mod caught_panics;
use caught_panics::quiet_caught_panics;

fuzz_target!(|data: &[u8]| {
    quiet_caught_panics();
    let Ok(loaded) = onnx::load_bytes(data, Path::new("fuzz.onnx"), &Default::default()) else {
        return;
    };
    let opts = CompileOptions {
        limits: Limits {
            max_macs: 1 << 16,
            max_values: 1 << 14,
        },
        // One scale keeps each run short; the search itself is not what is fuzzed.
        scale: Some(8),
        accept_inaccurate: true,
        ..ciro_prover::compile_options()
    };
    let _ = compile(&loaded, &[], &opts);
});
