"""The client: one method per API operation, JSON in and out, errors as exceptions."""

from __future__ import annotations

import base64
import io
import json
import numbers
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Union

Json = Dict[str, Any]
FINAL_STATES = ("verified", "failed", "cancelled")


def _done(doc: dict) -> bool:
    """A final state, and (for a job paid through an on-chain escrow) the escrow settled or refunded."""
    return doc["state"] in FINAL_STATES and (doc.get("payment") or {}).get("status") != "open"
# The proof system a job gets when it names none (the service's rule: EVM chains get halo2).
DEFAULT_SYSTEM = {"starknet": "stwo", "ethereum": "halo2", "polygon": "halo2"}
MICRO = 1_000_000


class CiroError(Exception):
    """An error from the service (``code`` is the API's error code, e.g. ``insufficient_balance``,
    ``unauthorized``, ``bad_input``) or from the SDK itself (``code`` ``network``, ``timeout``,
    ``verify_failed``, ``bad_argument``)."""

    def __init__(self, message: str, code: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status

    def __str__(self) -> str:
        where = f" (HTTP {self.status})" if self.status else ""
        return f"{self.message} [{self.code}]{where}"


class Client:
    """A client of one Ciro service.

    ``server`` is the service's base URL; ``api_key`` an existing key (or call :meth:`signup`).
    ``timeout`` bounds each request in seconds (following a job has its own limit).
    """

    def __init__(
        self,
        server: str = "http://127.0.0.1:8080",
        api_key: Optional[str] = None,
        timeout: float = 60.0,
    ) -> None:
        self.server = server.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        # Per job submitted through this client: the model's key fetched before submitting,
        # and the tensor input (None for an image).
        self._pinned: Dict[int, tuple] = {}

    # ---- transport ----

    def _request(
        self,
        method: str,
        path: str,
        body: Optional[Union[Json, bytes]] = None,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
    ) -> Any:
        h = {"Accept": "application/json"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        data: Optional[bytes] = None
        if isinstance(body, (bytes, bytearray)):
            data = bytes(body)
            h["Content-Type"] = "application/octet-stream"
        elif body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        req = urllib.request.Request(self.server + path, data=data, headers=h, method=method)
        try:
            return urllib.request.urlopen(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as e:
            raise _api_error(e) from None
        except (urllib.error.URLError, OSError) as e:
            raise CiroError(f"cannot reach {self.server}: {e}", "network") from None

    def _json(self, method: str, path: str, body: Optional[Union[Json, bytes]] = None, **kw: Any) -> Any:
        with self._request(method, path, body, **kw) as resp:
            return json.loads(resp.read())

    def _need_key(self) -> None:
        if not self.api_key:
            raise CiroError("no API key: pass api_key= or call signup() first", "unauthorized")

    # ---- accounts ----

    def signup(self, name: str) -> str:
        """Creates an account, keeps its API key in this client and returns the key (the
        service shows it only once)."""
        created = self._json("POST", "/v1/accounts", {"name": name})
        self.api_key = created["api_key"]
        return self.api_key

    def balance(self) -> List[Json]:
        """Balances per chain and token, in micro-units (``available_micro``, ``held_micro``,
        ``spent_micro``, ``credited_micro``)."""
        self._need_key()
        return self._json("GET", "/v1/account")["balances"]

    def faucet(self, chain: str = "starknet", token: str = "CIRO", amount: float = 10.0) -> List[Json]:
        """Credits test tokens (services started with ``--dev-faucet`` only); returns the
        balances."""
        self._need_key()
        body = {"chain": chain, "token": token, "amount_micro": int(round(amount * MICRO))}
        return self._json("POST", "/v1/faucet", body)["balances"]

    # ---- models ----

    def models(self) -> List[Json]:
        """The registry: each model's name, input shapes and ranges, prices per proof system
        (``prices_micro``) and commitment."""
        return self._json("GET", "/v1/models")["models"]

    def model(self, name: str) -> Json:
        return self._json("GET", f"/v1/models/{urllib.parse.quote(name, safe='')}")

    def upload_model(self, model: Union[str, os.PathLike, bytes]) -> Json:
        """Uploads an ONNX model (a path or its bytes); returns its compile summary. A model the
        compiler refuses raises :class:`CiroError` with the reason."""
        self._need_key()
        data = model if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
        # Compiling and making keys can take a while.
        return self._json("POST", "/v1/models", bytes(data), timeout=max(self.timeout, 600.0))

    # ---- jobs ----

    def submit_job(
        self,
        model: str,
        input: Any,
        chain: str = "starknet",
        token: str = "CIRO",
        proof_system: Optional[str] = None,
        idempotency_key: Optional[str] = None,
    ) -> Json:
        """Submits a job; its price is held and charged only once the proof verifies.

        ``input`` is a NumPy array or nested list (one input tensor), a list of them (several
        inputs), a dict already in the API's ``{"input_data": [...]}`` form, a PIL image, or a
        path to a PNG/JPEG image or a JSON input file. Returns the job (``id``, ``state``,
        ``price_micro``...)."""
        self._need_key()
        body: Json = {"model": model, "chain": chain, "token": token}
        if proof_system:
            body["proof_system"] = proof_system
        body.update(_encode_input(input))
        # Pin the key before the service proves anything; download() hands this one out.
        system = proof_system or DEFAULT_SYSTEM.get(chain.lower(), "stwo")
        key = self.verifying_key(model, system)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        job = self._json("POST", "/v1/jobs", body, headers=headers)
        if job.get("proof_system") == system:
            self._pinned[int(job["id"])] = (key, body.get("input"))
        return job

    def job(self, job_id: int) -> Json:
        self._need_key()
        return self._json("GET", f"/v1/jobs/{int(job_id)}")

    def jobs(self) -> List[Json]:
        self._need_key()
        return self._json("GET", "/v1/jobs")["jobs"]

    def cancel(self, job_id: int) -> Json:
        self._need_key()
        return self._json("POST", f"/v1/jobs/{int(job_id)}/cancel")

    def events(self, job_id: int, timeout: float = 600.0) -> Iterator[Json]:
        """The job as it changes (the service's live event stream), ending with its final
        state. Reconnects if the stream drops (up to 5 failed attempts in a row), polls the job
        if the service refuses a stream (503 ``busy``); raises ``CiroError`` code ``timeout``
        after ``timeout`` seconds."""
        self._need_key()
        deadline = time.monotonic() + timeout
        state = None
        failures = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CiroError(f"job {job_id} is still {state} after {timeout:g} s; it goes on", "timeout")
            try:
                with self._request("GET", f"/v1/jobs/{int(job_id)}/events", timeout=min(left, 60.0)) as resp:
                    failures = 0
                    for event, data in _sse(resp):
                        try:
                            doc = json.loads(data)
                        except ValueError:
                            raise CiroError(f"the service sent an invalid event: {data[:200]!r}", "bad_response") from None
                        if event == "error":
                            raise CiroError(doc.get("error", "event stream failed"), doc.get("code", "error"))
                        if event != "job":
                            continue
                        state = doc["state"]
                        yield doc
                        if _done(doc):
                            return
            except CiroError as e:
                if e.status in (503, 404):
                    # Too many streams open (or none on this service): poll instead.
                    doc = self.job(job_id)
                    if doc["state"] != state:
                        state = doc["state"]
                        yield doc
                    if _done(doc):
                        return
                    time.sleep(1.0)
                    continue
                if e.code != "network":
                    raise
                failures += 1
            except OSError:
                failures += 1  # a read timed out or the connection dropped: reconnect
            if failures >= 5:
                raise CiroError(f"lost the service at {self.server} while following job {job_id}", "network")
            time.sleep(0.2 * (1 + failures))

    def wait(
        self,
        job_id: int,
        timeout: float = 600.0,
        on_progress: Optional[Callable[[Json], None]] = None,
    ) -> Json:
        """Follows the job until it is verified, failed or cancelled; calls ``on_progress``
        with the job at each change. Returns the final job."""
        last: Json = {}
        for job in self.events(job_id, timeout=timeout):
            if on_progress and job.get("state") != last.get("state"):
                on_progress(job)
            last = job
        return last

    def result(self, job_id: int) -> Json:
        """The verified result: ``outputs``, ``label``, ``model_commitment``, ``evm_calldata``
        (halo2)... Raises ``CiroError`` code ``not_ready`` before the job is verified."""
        self._need_key()
        return self._json("GET", f"/v1/jobs/{int(job_id)}/result")

    def proof(self, job_id: int) -> bytes:
        self._need_key()
        with self._request("GET", f"/v1/jobs/{int(job_id)}/proof") as resp:
            return resp.read()

    def verifying_key(self, model: str, proof_system: str) -> bytes:
        path = f"/v1/models/{urllib.parse.quote(model, safe='')}/vk?proof_system={urllib.parse.quote(proof_system)}"
        with self._request("GET", path) as resp:
            return resp.read()

    def download(self, job_id: int, directory: Union[str, os.PathLike]) -> Dict[str, Path]:
        """Saves the job's result, proof bundle and the model's verifying key into
        ``directory``; returns their paths (``result``, ``bundle``, ``key``, and ``input`` for
        a tensor job). For a job submitted through this client the key is the one fetched
        before submitting, and the input is the one submitted: pass both to :meth:`verify`."""
        result = self.result(job_id)
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "result": out / f"job-{int(job_id)}.result.json",
            "bundle": out / f"job-{int(job_id)}.bundle",
            "key": out / f"{_safe(result['model'])}.{_safe(result['proof_system'])}.vk",
        }
        paths["result"].write_text(json.dumps(result, indent=2))
        paths["bundle"].write_bytes(self.proof(job_id))
        key, tensor = self._pinned.get(int(job_id), (None, None))
        if key is None:
            key = self.verifying_key(result["model"], result["proof_system"])
        paths["key"].write_bytes(key)
        if tensor is not None:
            paths["input"] = out / f"job-{int(job_id)}.input.json"
            paths["input"].write_text(json.dumps(tensor))
        return paths

    @staticmethod
    def verify(
        bundle: Union[str, os.PathLike],
        key: Union[str, os.PathLike],
        ciro: Optional[str] = None,
        input: Optional[Union[str, os.PathLike]] = None,
    ) -> str:
        """Verifies a bundle against a verifying key with the ``ciro`` binary (``ciro``, the
        ``CIRO_BIN`` environment variable or ``ciro`` on the PATH), offline and without
        trusting the service; with ``input`` (a JSON tensor file) it also checks that the proof
        is about that input. Returns what it printed; raises ``CiroError`` code
        ``verify_failed`` if the proof does not verify."""
        exe = ciro or os.environ.get("CIRO_BIN") or shutil.which("ciro")
        if not exe:
            raise CiroError("the ciro binary is not found: pass ciro= or set CIRO_BIN", "bad_argument")
        args = [exe, "verify", os.fspath(bundle), "--vk", os.fspath(key)]
        if input is not None:
            args += ["--input", os.fspath(input)]
        run = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if run.returncode != 0:
            raise CiroError((run.stderr or run.stdout).strip() or "the proof did not verify", "verify_failed")
        return run.stdout


def _api_error(e: urllib.error.HTTPError) -> CiroError:
    try:
        doc = json.loads(e.read())
        return CiroError(doc.get("error", str(e)), doc.get("code", "error"), e.code)
    except (ValueError, OSError):
        return CiroError(f"the service answered {e.code} {e.reason}", "error", e.code)


def _sse(resp: Any) -> Iterator[tuple]:
    """(event, data) pairs of a server-sent event stream."""
    event, data = "message", []
    for raw in resp:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".") or "model"


def _tensor(x: Any) -> List[float]:
    """One input tensor, flattened (the service checks its size against the model's shape)."""
    if hasattr(x, "tolist") and hasattr(x, "shape"):
        x = x.tolist()

    def flat(v: Any) -> Iterator[float]:
        if isinstance(v, (list, tuple)):
            for item in v:
                yield from flat(item)
        elif hasattr(v, "tolist") and hasattr(v, "shape"):  # a NumPy array inside a list
            yield from flat(v.tolist())
        elif isinstance(v, numbers.Real) and not isinstance(v, bool):
            yield float(v)
        else:
            raise CiroError(f"an input value must be a number, not {type(v).__name__}", "bad_argument")

    return list(flat(x))


def _encode_input(input: Any) -> Json:
    if isinstance(input, (str, os.PathLike)):
        path = Path(input)
        suffix = path.suffix.lower()
        if suffix in (".png", ".jpg", ".jpeg"):
            return {"image_base64": base64.b64encode(path.read_bytes()).decode()}
        if suffix == ".json":
            return {"input": json.loads(path.read_text())}
        raise CiroError(f"{path}: give a .png, .jpg or .json file", "bad_argument")
    if hasattr(input, "save") and hasattr(input, "mode"):  # a PIL image
        buf = io.BytesIO()
        input.save(buf, format="PNG")
        return {"image_base64": base64.b64encode(buf.getvalue()).decode()}
    if isinstance(input, Mapping):
        return {"input": dict(input)}
    if isinstance(input, (list, tuple)) and len(input) > 1 and all(getattr(t, "ndim", 0) >= 1 for t in input):
        # Several NumPy arrays: one per model input.
        return {"input": {"input_data": [_tensor(t) for t in input]}}
    return {"input": {"input_data": [_tensor(input)]}}
