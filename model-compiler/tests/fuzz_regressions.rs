//! Every input the fuzzers (`fuzz/`) found crashing, replayed: each must now end in a value
//! (usually a clear error), never a panic.

use std::path::{Path, PathBuf};

use ciro_model_compiler::{compile, onnx, CompileOptions, Limits};

fn cases(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn onnx_files_that_crashed_the_compiler_are_refused_cleanly() {
    let files = cases("onnx_compile");
    assert!(!files.is_empty(), "the regression corpus is missing");
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let Ok(loaded) = onnx::load_bytes(&bytes, Path::new("fuzz.onnx"), &Default::default())
        else {
            continue;
        };
        let opts = CompileOptions {
            limits: Limits {
                max_macs: 1 << 16,
                max_values: 1 << 14,
            },
            scale: Some(8),
            accept_inaccurate: true,
            ..Default::default()
        };
        let _ = compile(&loaded, &[], &opts);
    }
}
