//! The web app in headless Chromium (Debian's `chromium`, driven by playwright-core from
//! `scheduler/web/test`) against a real `ciro serve`. Needs, once:
//! `apt-get install chromium` and `(cd scheduler/web/test && npm ci)`; a missing one fails the
//! test with that message rather than skipping it.

use std::path::{Path, PathBuf};
use std::process::Command;

use ciro_test_support::Service;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_web_app_runs_a_job_in_a_real_browser() {
    let root = repo();
    let tests = root.join("scheduler/web/test");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: `apt-get install chromium` (or set CHROMIUM)"
    );
    assert!(
        tests.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: `(cd scheduler/web/test && npm ci)`"
    );
    let work =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("web-app-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_ciro"));
    let svc = Service::start(bin, &work.join("data"), &["--workers", "1"]);
    // Screenshots go to docs/screenshots when asked (they are committed and linked from the
    // README), otherwise beside the test's other files.
    let shots = match std::env::var_os("CIRO_WRITE_SCREENSHOTS") {
        Some(_) => root.join("docs/screenshots"),
        None => work.join("screenshots"),
    };
    let status = Command::new("node")
        .args(["--test", "--test-reporter=spec", "app.test.mjs"])
        .current_dir(&tests)
        .env("CIRO_URL", &svc.url)
        .env("CIRO_REPO", &root)
        .env("CIRO_BIN", bin)
        .env("CIRO_SHOTS", &shots)
        .env("CIRO_WORK", &work)
        .env("CHROMIUM", &chromium)
        .status()
        .expect("node runs (Node.js 20)");
    drop(svc);
    assert!(status.success(), "the browser test failed: {status}");
    for shot in ["no-balance", "job-verified", "upload-refused", "phone"] {
        assert!(shots.join(format!("{shot}.png")).exists(), "{shot}.png");
    }
    let _ = std::fs::remove_dir_all(&work);
}
