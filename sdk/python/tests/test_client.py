"""The SDK against a real `ciro serve`: the whole job flow, and errors as exceptions with the
API's codes."""

import json

import numpy as np
import pytest
from PIL import Image

from ciro_sdk import CiroError, Client

from conftest import REPO

DIGIT = REPO / "fixtures/images/digit_7.png"


def test_submit_an_image_wait_and_verify(server, ciro_bin, tmp_path):
    client = Client(server)
    key = client.signup("sdk-flow")
    assert key and client.api_key == key
    balances = client.faucet("starknet", "CIRO", 5)
    assert any(b["chain"] == "starknet" and b["available_micro"] == 5_000_000 for b in balances)
    model = next(m for m in client.models() if m["name"] == "image_recognition_v1")
    price = model["prices_micro"]["stwo"]

    job = client.submit_job("image_recognition_v1", DIGIT)
    assert job["price_micro"] == price
    seen = []
    done = client.wait(job["id"], timeout=300, on_progress=lambda j: seen.append(j["state"]))
    assert done["state"] == "verified", done
    assert seen[-1] == "verified" and len(seen) == len(set(seen))

    result = client.result(job["id"])
    assert result["label"] == "7" and result["verified"] is True
    files = client.download(job["id"], tmp_path)
    assert json.loads(files["result"].read_text())["label"] == "7"
    out = Client.verify(files["bundle"], files["key"], ciro=ciro_bin)
    assert "OK: proof verified" in out

    # Charged once, after verification.
    ciro = next(b for b in client.balance() if b["chain"] == "starknet" and b["token"] == "CIRO")
    assert ciro["spent_micro"] == price and ciro["held_micro"] == 0

    # A tampered bundle does not verify.
    tampered = bytearray(files["bundle"].read_bytes())
    tampered[len(tampered) // 2] ^= 1
    files["bundle"].write_bytes(bytes(tampered))
    with pytest.raises(CiroError) as e:
        Client.verify(files["bundle"], files["key"], ciro=ciro_bin)
    assert e.value.code == "verify_failed"


def test_pil_images_and_numpy_arrays_are_inputs(server):
    client = Client(server)
    client.signup("sdk-inputs")
    client.faucet()
    job = client.submit_job("image_recognition_v1", Image.open(DIGIT))
    assert client.wait(job["id"], timeout=300)["state"] == "verified"
    assert client.result(job["id"])["label"] == "7"
    x = np.zeros((1, 64), dtype=np.float32)
    job = client.submit_job("mlp_small", x)
    assert client.wait(job["id"], timeout=300)["state"] == "verified"
    # One array in a list, and NumPy scalars in a list, are one tensor too.
    for one in ([x], [np.float32(0.25)] * 64):
        job = client.submit_job("mlp_small", one)
        assert job["state"] == "queued"


def test_a_tensor_job_verifies_against_its_pinned_key_and_input(server, ciro_bin, tmp_path):
    client = Client(server)
    client.signup("sdk-pinned")
    client.faucet()
    x = np.full((1, 64), 0.5)
    job = client.submit_job("mlp_small", x)
    assert client.wait(job["id"], timeout=300)["state"] == "verified"
    files = client.download(job["id"], tmp_path)
    out = Client.verify(files["bundle"], files["key"], ciro=ciro_bin, input=files["input"])
    assert "OK: proof verified" in out
    # The same proof is refused for another input.
    other = json.loads(files["input"].read_text())
    other["input_data"][0][0] = -0.5
    files["input"].write_text(json.dumps(other))
    with pytest.raises(CiroError) as e:
        Client.verify(files["bundle"], files["key"], ciro=ciro_bin, input=files["input"])
    assert e.value.code == "verify_failed"


def test_no_balance_is_an_error_with_its_code(server):
    client = Client(server)
    client.signup("sdk-poor")
    with pytest.raises(CiroError) as e:
        client.submit_job("image_recognition_v1", DIGIT)
    assert e.value.code == "insufficient_balance" and e.value.status == 402
    assert "faucet" in e.value.message


def test_unknown_key_and_bad_model_and_wrong_shape(server):
    with pytest.raises(CiroError) as e:
        Client(server, api_key="ciro_not_a_key").balance()
    assert e.value.code == "unauthorized" and e.value.status == 401

    client = Client(server)
    client.signup("sdk-errors")
    client.faucet()
    with pytest.raises(CiroError) as e:
        client.upload_model(b"this is not an ONNX model")
    assert e.value.status == 422 and "ONNX" in e.value.message

    with pytest.raises(CiroError) as e:
        client.submit_job("mlp_small", np.zeros(3))
    assert e.value.status == 400 and "64" in e.value.message

    with pytest.raises(CiroError) as e:
        client.result(10**9)
    assert e.value.code == "not_found"


def test_an_unreachable_server_is_a_network_error():
    with pytest.raises(CiroError) as e:
        Client("http://127.0.0.1:9", timeout=2).models()
    assert e.value.code == "network"
