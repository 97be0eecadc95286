"""Ciro's Python SDK: submit ML inference jobs to a Ciro service, follow them live, download
their proofs and verify them without trusting the service.

    from ciro_sdk import Client
    client = Client("http://127.0.0.1:8080")
    client.signup("me")
    client.faucet()                       # development services only
    job = client.submit_job("image_recognition_v1", "fixtures/images/digit_7.png")
    done = client.wait(job["id"], on_progress=lambda j: print(j["state"]))
    print(client.result(job["id"])["label"])
    files = client.download(job["id"], "out")
    print(client.verify(files["bundle"], files["key"]))

Only the standard library is needed; NumPy arrays and PIL images are accepted when those
packages are installed. Every API error is raised as :class:`CiroError` with the API's code.
"""

from .client import CiroError, Client

__all__ = ["Client", "CiroError"]
