#!/usr/bin/env python3
"""EZKL's example corpus through Ciro, as a user would run it: each
`examples/onnx/NAME/network.onnx` *as published* (symbolic dimensions included) compiled with its
`input.json` as the calibration input, run on that input and compared with onnxruntime; with
`--prove`, also proved and verified on stwo (and halo2 with `--halo2`).

The corpus is EZKL's public test suite; it is not part of this repository. Get it once (a
checkout of github.com/zkonduit/ezkl, or any copy of its `examples/onnx`), then:

    python3 -m venv .venv-ezkl && .venv-ezkl/bin/pip install onnxruntime==1.32.0 numpy
    cargo build --release --bin ciro
    .venv-ezkl/bin/python benches/ezkl_corpus.py PATH/TO/ezkl/examples/onnx [NAMES...]
        [--prove] [--halo2] [--timeout S] [-o results.md]

A model *matches* when Ciro's outputs are within 2% of onnxruntime's, relative to the largest
output magnitude, or within 1e-3 absolute. Models onnxruntime cannot run on their input are
listed apart and left out of the percentages.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL_TOL, ABS_TOL = 0.02, 1e-3
ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


def reference(model, data):
    """onnxruntime's outputs for the EZKL input (flat lists, shapes from the model, symbolic
    dimensions taking whatever the flat length implies), flattened, and the number of inputs
    the model takes; or raises."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for inp, flat in zip(sess.get_inputs(), data):
        dims = [d if isinstance(d, int) and d > 0 else -1 for d in inp.shape]
        if dims.count(-1) > 1:
            dims = [1 if d == -1 else d for d in dims]
            dims[0] = -1
        arr = np.asarray(flat, dtype=np.float64).reshape(dims or [-1])
        feeds[inp.name] = arr.astype(ORT_TYPES.get(inp.type, np.float32))
    outs = [np.asarray(o, dtype=np.float64).ravel() for o in sess.run(None, feeds)]
    return outs, len(sess.get_inputs())


def ciro(args, timeout):
    """Runs the ciro binary with `--json`; returns (ok, parsed JSON or the error line)."""
    try:
        p = subprocess.run(args + ["--json"], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout} s"
    out = p.stdout.strip()
    try:
        v = json.loads(out) if out else {}
    except json.JSONDecodeError:
        v = {}
    if p.returncode != 0:
        return False, v.get("error") or (p.stderr.strip().splitlines() or ["failed"])[-1]
    return True, v


def rel_error(got, ref):
    got = np.concatenate([np.asarray(o, dtype=np.float64).ravel() for o in got]) if got else np.array([])
    ref = np.concatenate(ref) if ref else np.array([])
    if got.shape != ref.shape:
        return None, f"output size {got.size}, onnxruntime {ref.size}"
    if ref.size == 0:
        return 0.0, None
    diff = float(np.max(np.abs(got - ref)))
    scale = float(np.max(np.abs(ref)))
    if diff <= ABS_TOL:
        return 0.0, None
    return diff / scale if scale > 0 else float("inf"), None


def one(exe, corpus, name, work, a):
    d = os.path.join(corpus, name)
    model, inp = os.path.join(d, "network.onnx"), os.path.join(d, "input.json")
    row = {"model": name}
    try:
        data = json.load(open(inp))["input_data"]
        ref, n_inputs = reference(model, data)
    except Exception as e:  # onnxruntime's own refusal: not Ciro's to answer for
        row["status"] = "no reference"
        row["reason"] = f"onnxruntime: {str(e).splitlines()[0][:160]}"
        return row
    if len(data) != n_inputs:
        # Some input.json files hold more inputs than the model takes (bitwise_ops: 4 for 2,
        # arange: 1 for 0); both runners get the first ones, as onnxruntime's feeds above.
        inp = os.path.join(work, f"{name}.input.json")
        json.dump({"input_data": data[:n_inputs]}, open(inp, "w"))
    compiled = os.path.join(work, f"{name}.json")
    ok, v = ciro([exe, "compile", model, "--calibration", inp, "-o", compiled], a.timeout)
    if not ok:
        row["status"], row["reason"] = "refused", v
        return row
    ok, v = ciro([exe, "run", compiled, "--input", inp], a.timeout)
    if not ok:
        row["status"], row["reason"] = "run failed", v
        return row
    err, why = rel_error(v["outputs"], ref)
    row["error"] = err
    if err is None:
        row["status"], row["reason"] = "wrong shape", why
        return row
    row["status"] = "matches" if err <= REL_TOL else "inaccurate"
    if not a.prove or row["status"] != "matches":
        return row
    for backend in ["stwo"] + (["halo2"] if a.halo2 else []):
        bundle, vk = os.path.join(work, f"{name}.{backend}.proof"), os.path.join(work, f"{name}.{backend}.vk")
        ok, v = ciro([exe, "prove", compiled, "--input", inp, "-o", bundle, "--vk-out", vk,
                      "--backend", backend], a.timeout)
        if ok:
            ok, v = ciro([exe, "verify", bundle, "--vk", vk], a.timeout)
        row[backend] = "verified" if ok else f"failed: {v}"
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", help="EZKL's examples/onnx folder")
    ap.add_argument("names", nargs="*", help="only these examples")
    ap.add_argument("--ciro", default=os.path.join(ROOT, "target", "release", "ciro"))
    ap.add_argument("--prove", action="store_true", help="also prove and verify what matches (stwo)")
    ap.add_argument("--halo2", action="store_true", help="with --prove: on halo2 as well")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per ciro command")
    ap.add_argument("-o", "--output", help="also write the markdown table here")
    a = ap.parse_args()
    names = a.names or sorted(
        n for n in os.listdir(a.corpus) if os.path.exists(os.path.join(a.corpus, n, "network.onnx"))
    )
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for n in names:
            r = one(a.ciro, a.corpus, n, work, a)
            rows.append(r)
            print(f"{n}: {r['status']}" + (f" ({r['reason']})" if r.get("reason") else "")
                  + (f" error {r['error']:.4f}" if r.get("error") is not None else ""),
                  file=sys.stderr, flush=True)
    runnable = [r for r in rows if r["status"] != "no reference"]
    matches = [r for r in runnable if r["status"] == "matches"]
    lines = [
        f"{len(rows)} examples; onnxruntime runs {len(runnable)}; Ciro compiles "
        f"{sum(r['status'] in ('matches', 'inaccurate') for r in runnable)} and matches "
        f"{len(matches)} of them ({100.0 * len(matches) / max(1, len(runnable)):.0f}%)",
    ]
    if a.prove:
        for b in ["stwo"] + (["halo2"] if a.halo2 else []):
            n = sum(r.get(b) == "verified" for r in runnable)
            lines.append(f"{b}: {n} of {len(runnable)} prove and verify ({100.0 * n / max(1, len(runnable)):.0f}%)")
    lines += ["", "| model | status | rel. error | " + " | ".join(["stwo"] + (["halo2"] if a.halo2 else [])) + " | reason |",
              "|---|---|---:|" + "---|" * (1 + a.halo2) + "---|"]
    for r in rows:
        err = "" if r.get("error") is None else f"{r['error']:.4f}"
        proofs = " | ".join(r.get(b, "") for b in ["stwo"] + (["halo2"] if a.halo2 else []))
        reason = (r.get("reason") or "").replace("|", "\\|").replace("\n", " ")[:200]
        lines.append(f"| {r['model']} | {r['status']} | {err} | {proofs} | {reason} |")
    text = "\n".join(lines)
    print(text)
    if a.output:
        open(a.output, "w").write(text + "\n")


if __name__ == "__main__":
    main()
