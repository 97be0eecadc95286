#!/usr/bin/env python3
"""Ciro (stwo and halo2-KZG) against EZKL on the same fixture ONNX models, on this machine.

EZKL runs with public input, public output and fixed (committed-in-key) parameters, its settings
tuned by its own `calibrate_settings` on the fixture's calibration inputs (its recommended flow,
target "resources"; `--no-calibrate` keeps its defaults), and an SRS generated offline with
`gen_srs` (never downloaded). Each EZKL step runs in its
own child process so its time and peak memory are its own; Ciro's figures come from
`ciro bench --json [--backend halo2]`, which also measures each model in a child process
(Ciro's halo2 "proof KiB" is its whole bundle, public values included).

    python3 -m venv .venv-ezkl && .venv-ezkl/bin/pip install ezkl==23.0.5
    cargo build --release --bin ciro
    .venv-ezkl/bin/python benches/ezkl_compare.py [MODELS...] [--runs N] [-o results.md]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ["mlp_small", "mlp_mnist", "cnn_lenet", "act_mix", "image_recognition_v1"]

CHILD = r"""
import asyncio, inspect, json, sys, ezkl
name, args = sys.argv[1], json.loads(sys.argv[2])
if name == "gen_settings":
    ra = ezkl.PyRunArgs()
    ra.input_visibility = "public"
    ra.output_visibility = "public"
    ra.param_visibility = "fixed"
    res = ezkl.gen_settings(args[0], args[1], py_run_args=ra)
else:
    res = getattr(ezkl, name)(*args[:-1], **args[-1])
if inspect.isawaitable(res):
    res = asyncio.run(res)
assert res is None or res is True or isinstance(res, (dict, str)), res
"""


# Seconds any one EZKL step may take (`--ezkl-timeout`).
STEP_TIMEOUT = None
# Resident memory (GiB) any one EZKL step may use before it is stopped (`--ezkl-max-gib`), so that
# a model EZKL cannot fit reports "out of memory" instead of taking the machine down.
STEP_MAX_GIB = None


def rss_gib(pid):
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def step(name, *args, **kwargs):
    """Runs one ezkl call in a child; returns (seconds, peak RSS MiB)."""
    t = time.perf_counter()
    p = subprocess.Popen(
        [sys.executable, "-c", CHILD, name, json.dumps(list(args) + [kwargs])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    while True:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if STEP_TIMEOUT and time.perf_counter() - t > STEP_TIMEOUT:
            p.kill()
            _, status, usage = os.wait4(p.pid, 0)
            raise RuntimeError(
                f"ezkl {name} did not finish in {STEP_TIMEOUT} s (peak {usage.ru_maxrss / 1024.0:.0f} MiB)"
            )
        if STEP_MAX_GIB and rss_gib(p.pid) > STEP_MAX_GIB:
            p.kill()
            _, status, usage = os.wait4(p.pid, 0)
            raise RuntimeError(
                f"ezkl {name} ran out of memory: stopped at {STEP_MAX_GIB} GiB resident "
                f"after {time.perf_counter() - t:.0f} s"
            )
        time.sleep(0.05)
    secs = time.perf_counter() - t
    err = p.stderr.read().decode(errors="replace")
    if status != 0:
        raise RuntimeError(
            f"ezkl {name} failed (status {status}, peak {usage.ru_maxrss / 1024.0:.0f} MiB): {err[-300:]}"
        )
    return secs, usage.ru_maxrss / 1024.0


def calibration_data(d, out):
    """The fixture's calibration inputs as one EZKL data file (a batch per input)."""
    cal = os.path.join(d, "calibration")
    samples = [json.load(open(os.path.join(cal, n)))["input_data"] for n in sorted(os.listdir(cal))]
    # EZKL's calibration data: one flat list per model input, the samples concatenated.
    merged = [sum((s[i] for s in samples), []) for i in range(len(samples[0]))]
    json.dump({"input_data": merged}, open(out, "w"))


def ezkl_model(name, work, runs, srs_dir, calibrate=True):
    d = os.path.join(ROOT, "fixtures", "models", name)
    f = lambda n: os.path.join(work, n)
    model, data = os.path.join(d, "model.onnx"), os.path.join(d, "input.json")
    step("gen_settings", model, f("settings.json"))
    if calibrate:
        calibration_data(d, f("calibration.json"))
        step("calibrate_settings", f("calibration.json"), model, f("settings.json"), "resources")
    step("compile_circuit", model, f("model.compiled"), f("settings.json"))
    logrows = json.load(open(f("settings.json")))["run_args"]["logrows"]
    srs = os.path.join(srs_dir, f"kzg{logrows}.srs")
    if not os.path.exists(srs):
        step("gen_srs", srs, logrows)
    step("gen_witness", data, f("model.compiled"), f("witness.json"), srs_path=srs)
    setup_s, setup_mib = step(
        "setup", f("model.compiled"), f("vk.key"), f("pk.key"), srs_path=srs
    )
    proves, verifies, prove_mib = [], [], 0.0
    for _ in range(runs):
        s, mib = step(
            "prove", f("witness.json"), f("model.compiled"), f("pk.key"), f("proof.json"), srs_path=srs
        )
        proves.append(s)
        prove_mib = max(prove_mib, mib)
        # Verification in-process would be fairer; a child includes interpreter start-up, so
        # subtract an empty child's time.
        v, _ = step("verify", f("proof.json"), f("settings.json"), f("vk.key"), srs_path=srs)
        verifies.append(v)
    proof = json.load(open(f("proof.json")))
    proof_bytes = len(bytes.fromhex(proof["hex_proof"][2:])) if proof.get("hex_proof") else len(proof["proof"])
    return {
        "logrows": logrows,
        "setup_s": setup_s,
        "setup_mib": setup_mib,
        "prove_s": sorted(proves)[len(proves) // 2],
        "prove_mib": prove_mib,
        "verify_ms": sorted(verifies)[len(verifies) // 2] * 1e3,
        "proof_kib": proof_bytes / 1024.0,
    }


def python_startup_ms():
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import ezkl"], check=True)
    return (time.perf_counter() - t) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", default=MODELS)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ciro", default=os.path.join(ROOT, "target", "release", "ciro"))
    ap.add_argument("-o", "--output", help="also write the markdown table here")
    ap.add_argument("--no-halo2", action="store_true", help="measure Ciro's stwo backend only")
    ap.add_argument("--no-calibrate", action="store_true", help="skip EZKL's calibrate_settings")
    ap.add_argument("--srs-dir", default=os.path.expanduser("~/.cache/ciro/ezkl-srs"),
                    help="where EZKL's SRS files (gen_srs, not timed) are kept between runs")
    ap.add_argument("--ezkl-timeout", type=int, help="give up on an EZKL step after this many seconds")
    ap.add_argument("--ezkl-max-gib", type=float, default=22.0,
                    help="stop an EZKL step whose resident memory passes this many GiB")
    a = ap.parse_args()
    global STEP_TIMEOUT, STEP_MAX_GIB
    STEP_TIMEOUT = a.ezkl_timeout
    STEP_MAX_GIB = a.ezkl_max_gib
    os.makedirs(a.srs_dir, exist_ok=True)

    def ciro_bench(backend, runs):
        out = subprocess.run(
            [a.ciro, "bench", "--json", "--backend", backend, "--runs", str(runs),
             "--fixtures", os.path.join(ROOT, "fixtures"), *a.models],
            check=True,
            capture_output=True,
        ).stdout
        return {r["model"]: r for r in json.loads(out)}

    print("Ciro stwo bench", file=sys.stderr)
    stwo = ciro_bench("stwo", 5)
    halo2 = {}
    if not a.no_halo2:
        print("Ciro halo2 bench", file=sys.stderr)
        halo2 = ciro_bench("halo2", a.runs)
    startup = python_startup_ms()
    rows, failures = [], []
    with tempfile.TemporaryDirectory(prefix="ciro-ezkl-") as tmp:
        for name in a.models:
            work = os.path.join(tmp, name)
            os.makedirs(work)
            print(f"{name}: EZKL setup and prove ({a.runs} runs)", file=sys.stderr)
            try:
                e = ezkl_model(name, work, a.runs, a.srs_dir, calibrate=not a.no_calibrate)
            except RuntimeError as err:
                print(f"{name}: {err}", file=sys.stderr)
                failures.append((name, f"{name}: {err}"))
                continue
            e["verify_ms"] = max(e["verify_ms"] - startup, 0.0)
            rows.append((name, stwo[name], halo2.get(name), e))

    head = (
        "| model | Ciro stwo prove s | Ciro halo2 prove s | EZKL prove s | stwo speed-up | halo2 speed-up | "
        "EZKL setup s | Ciro halo2 setup s | stwo / halo2 / EZKL peak MiB | stwo / halo2 / EZKL proof KiB | "
        "stwo / halo2 / EZKL verify ms |"
    )
    lines = [head, "|" + "---:|" * 11]
    for name, c, h, e in rows:
        h = h or {"prove_s": float("nan"), "setup_s": float("nan"), "peak_rss_mib": float("nan"),
                  "proof_kib": float("nan"), "verify_ms": float("nan")}
        lines.append(
            f"| {name} | {c['prove_s']:.3f} | {h['prove_s']:.2f} | {e['prove_s']:.2f} | "
            f"{e['prove_s'] / c['prove_s']:.0f}x | {e['prove_s'] / h['prove_s']:.1f}x | "
            f"{e['setup_s']:.2f} | {h['setup_s']:.2f} | "
            f"{c['peak_rss_mib']:.0f} / {h['peak_rss_mib']:.0f} / {e['prove_mib']:.0f} | "
            f"{c['proof_kib']:.0f} / {h['proof_kib']:.1f} / {e['proof_kib']:.1f} | "
            f"{c['verify_ms']:.1f} / {h['verify_ms']:.0f} / {e['verify_ms']:.0f} |"
        )
    # Ciro's figures for the models EZKL could not finish, in the same run.
    for name, _ in failures:
        c, h = stwo[name], halo2.get(name) or {}
        lines.append(
            f"| {name} | {c['prove_s']:.3f} | {h.get('prove_s', float('nan')):.2f} | did not finish | "
            f"— | — | — | {h.get('setup_s', float('nan')):.2f} | "
            f"{c['peak_rss_mib']:.0f} / {h.get('peak_rss_mib', float('nan')):.0f} / — | "
            f"{c['proof_kib']:.0f} / {h.get('proof_kib', float('nan')):.1f} / — | "
            f"{c['verify_ms']:.1f} / {h.get('verify_ms', float('nan')):.0f} / — |"
        )
    table = "\n".join(lines)
    print(table)
    print(
        f"\nEZKL: public input/output, fixed params, "
        f"{'default settings' if a.no_calibrate else 'calibrate_settings (resources)'}, logrows per model "
        f"{ {n: e['logrows'] for n, _, _, e in rows} }; EZKL verify = child process time minus "
        f"{startup:.0f} ms interpreter + import start-up.",
    )
    for _, f in failures:
        print(f"EZKL did not finish {f}")
    if a.output:
        with open(a.output, "w") as fh:
            fh.write(table + "\n" + "".join(f"\nEZKL did not finish {f}" for _, f in failures) + "\n")


if __name__ == "__main__":
    main()
