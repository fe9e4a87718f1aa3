"""``python -m tinkex.testing --jwt-lifetime S --deprecation-note N``: the command-line server exchanges JWTs (and
refuses the bare key elsewhere with ``invalid_token``) and announces the note, and a tinkex client works against it."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import httpx

import tinkex
from tinkex.deprecation import ServerDeprecationWarning

KEY = "tml-command-line-jwt-0123456789"


def test_the_command_line_server_exchanges_jwts_and_announces_a_note() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tinkex.testing", "--port", "0", "--jwt-lifetime", "30", "--deprecation-note", "old"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        headers = {"X-API-Key": KEY}
        flags = httpx.post(f"{base_url}/api/v1/client/config", json={}, headers=headers)
        assert flags.json()["pjwt_auth_enabled"] is True and flags.headers["x-deprecation-note"] == "old"
        refused = httpx.post(f"{base_url}/api/v1/create_session", json={}, headers=headers)
        assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["www-authenticate"]
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            client = tinkex.Client(api_key=KEY, base_url=base_url, telemetry=False)
            try:
                client.create_lora_training_client("Qwen/Qwen3-8B", rank=4).result(30)
            finally:
                client.close()
        assert [str(w.message) for w in shown if w.category is ServerDeprecationWarning] == ["the server says: old"]
    finally:
        process.terminate()
        process.wait(timeout=30)
