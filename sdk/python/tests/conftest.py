"""Starts a real `ciro serve` (the binary named by CIRO_BIN) on a free port for the tests."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def ciro_bin() -> str:
    exe = os.environ.get("CIRO_BIN") or shutil.which("ciro")
    if not exe:
        pytest.fail("set CIRO_BIN to the ciro binary (cargo build --release: target/release/ciro)")
    return exe


@pytest.fixture(scope="session")
def server(ciro_bin: str):
    data = tempfile.mkdtemp(prefix="ciro-sdk-test-")
    proc = subprocess.Popen(
        [ciro_bin, "serve", "--dev-faucet", "--addr", "127.0.0.1:0", "--workers", "1", "--data-dir", data],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )
    line = proc.stdout.readline()
    url = next((w for w in line.split() if w.startswith("http://")), None)
    if url is None:
        proc.kill()
        pytest.fail(f"ciro serve did not start: {line!r}")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(data, ignore_errors=True)
