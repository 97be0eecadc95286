//! The Python SDK's tests (pytest, `sdk/python/tests`) against a real `ciro serve` built by
//! this workspace. Needs, once: `pip install './sdk/python[test]'` (pytest, NumPy, Pillow); a
//! missing pytest fails the test with that message rather than skipping it.

use std::path::Path;
use std::process::Command;

#[test]
fn the_python_sdk_tests_pass_against_a_real_service() {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/python");
    let has_pytest = Command::new("python3")
        .args(["-c", "import pytest, numpy, PIL"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_pytest,
        "pytest, numpy or Pillow is missing: `pip install './sdk/python[test]'`"
    );
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pytest-cache");
    let status = Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .current_dir(&sdk)
        // The working tree's SDK, not an installed copy.
        .env("PYTHONPATH", &sdk)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("CIRO_BIN", env!("CARGO_BIN_EXE_ciro"))
        .env("PYTEST_CACHE_DIR", &cache)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "the SDK tests failed: {status}");
}
