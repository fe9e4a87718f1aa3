"""The server process is killed (SIGKILL, no restart): futures in flight and new writes end within their
no-progress deadline with ``DeadlineExceededError``, instead of polling forever."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import tinkex
from pristine_transport.deadlines import DeadlineExceededError, deadlines
from tinkex import types

MODEL = "Qwen/Qwen3-8B"
NO_PROGRESS_S = 3.0
SLACK_S = 1.5
SERVER = """
import time
from tinkex.testing import LocalServer
with LocalServer(long_poll_timeout=0.2, latency_by_endpoint={"forward_backward": 30.0}) as server:
    print(server.base_url, flush=True)
    time.sleep(120)
"""


@pytest.fixture
def server_process() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), url
    yield process, url
    if process.poll() is None:
        process.kill()
    process.wait(10)


def _datum() -> types.Datum:
    return types.Datum(
        model_input=types.ModelInput.from_ints([1, 2, 3]),
        loss_fn_inputs={"target_tokens": [2, 3, 4], "weights": [1.0] * 3},
    )


def test_futures_and_writes_end_when_the_server_is_killed(server_process: tuple[subprocess.Popen[str], str]) -> None:
    process, url = server_process
    client = tinkex.Client(api_key="tml-death", base_url=url, telemetry=False)
    try:
        training = client.create_lora_training_client(MODEL, rank=4)
        with deadlines(no_progress_s=NO_PROGRESS_S):
            pending = training.forward_backward([_datum()], "cross_entropy")  # its result is 30 s away
            time.sleep(0.5)  # dispatched: the future is being polled
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
            killed_at = time.monotonic()
            with pytest.raises(DeadlineExceededError) as caught:
                pending.result(timeout=NO_PROGRESS_S + 10)
            waited = time.monotonic() - killed_at
            error = caught.value
            assert waited < NO_PROGRESS_S + SLACK_S
            assert error.request_id is not None and error.may_have_run
            assert "ForwardBackward" in str(error) and "made no progress" in str(error)

            started = time.monotonic()
            with pytest.raises(DeadlineExceededError) as write:
                training.optim_step(types.AdamParams(learning_rate=1e-4)).result(timeout=NO_PROGRESS_S + 10)
            assert time.monotonic() - started < NO_PROGRESS_S + SLACK_S
            assert not write.value.may_have_run  # no connection: the write surely did not run
            assert "did not run on the server" in str(write.value)
    finally:
        client.close()
