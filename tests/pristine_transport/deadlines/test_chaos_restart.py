"""30 % random faults and, on top, the server SIGKILLed and restarted mid-run (``python -m tinkex.testing`` on the
same port and state directory, twice: during pipelined training steps and during concurrent samples). Every
operation ends exactly once, in its result or a typed error, within its deadline; the ledger (read back from the
state directory, so it spans the killed processes) shows that nothing executed twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tinkex
from pristine_transport.deadlines import deadlines
from tinkex import types
from tinkex.testing import LocalServer

MODEL = "tinkex/fake-tiny"
WARMUP_STEPS = 2
STEPS = 8
SAMPLES = 16
NO_PROGRESS_S = 12.0
"""Short deadlines so the test ends quickly; a restart takes about a second (a Python start)."""
BOUND_S = NO_PROGRESS_S + 6.0
"""Each operation's end, result or error, after its start: the no-progress deadline plus one attempt's slack."""

FAULTS: list[dict[str, Any]] = [
    {"endpoint": "forward_backward", "status": 503, "rate": 0.15, "after_execute": True},
    {"endpoint": "forward_backward", "drop_connection": True, "rate": 0.15, "after_execute": True},
    {"endpoint": "optim_step", "drop_connection": True, "rate": 0.15, "after_execute": True},
    {"endpoint": "optim_step", "status": 400, "raw_body": "", "rate": 0.15},
    {"endpoint": "asample", "status": 500, "rate": 0.1, "after_execute": True},
    {"endpoint": "asample", "drop_connection": True, "rate": 0.1, "after_execute": True},
    {"endpoint": "asample", "status": 429, "rate": 0.1},
    {"endpoint": "retrieve_future", "status": 502, "rate": 0.1},
    {"endpoint": "retrieve_future", "drop_connection": True, "rate": 0.1},
    {"endpoint": "retrieve_future", "kind": "try_again", "rate": 0.1},
    {"delay": 0.02, "rate": 0.05},
]
TYPED_ERRORS = (tinkex.TinkerError, tinkex.APIError, tinkex.DeadlineExceededError)


class ServerProcess:
    """``python -m tinkex.testing`` on a state directory, killed and started again on the same port."""

    def __init__(self, state_dir: Path, faults_file: Path) -> None:
        self.state_dir, self.faults_file = state_dir, faults_file
        self.port = 0
        self.starts = 0
        self.process: subprocess.Popen[str] | None = None
        self.base_url = ""

    def start(self) -> None:
        command = [
            sys.executable, "-m", "tinkex.testing", "--port", str(self.port), "--state-dir", str(self.state_dir),
            "--faults", str(self.faults_file), "--base-model", MODEL, "--seed", str(7 + self.starts),
            "--latency", "0.05", "--long-poll", "0.3", "--sample-inflight-limit", "8",
        ]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self.starts += 1
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        assert line.startswith("http://127.0.0.1:"), self.process.communicate(timeout=10)[1]
        if self.port == 0:
            self.port, self.base_url = int(line.rsplit(":", 1)[1]), line
        assert line == self.base_url, f"restarted on {line}, not on {self.base_url}"

    def kill(self) -> None:
        process = self.process
        if process is None:
            return
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
        self.process = None

    def kill_and_restart_when(self, ready: threading.Event) -> threading.Thread:
        def run() -> None:
            assert ready.wait(BOUND_S), "the run never reached the point of the kill"
            self.kill()
            time.sleep(0.2)  # connections refused for a moment, as when a real server restarts
            self.start()

        thread = threading.Thread(target=run, name="chaos-restart")
        thread.start()
        return thread


def _datum(step: int) -> types.Datum:
    tokens = [(step * 5 + i) % 200 + 1 for i in range(10)]
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * 9},
    )


class Outcomes:
    """How each operation ended and how long after its start: exactly one entry per operation."""

    def __init__(self) -> None:
        self.ended: dict[str, tuple[str, float]] = {}
        self._watch: tuple[int, threading.Event] | None = None

    def when_ended(self, count: int) -> threading.Event:
        """Set once ``count`` more operations have ended (the moment of the next kill)."""
        event = threading.Event()
        self._watch = (len(self.ended) + count, event)
        return event

    def _end(self, name: str, verdict: str, started: float) -> None:
        assert name not in self.ended, name
        self.ended[name] = (verdict, time.monotonic() - started)
        if self._watch is not None and len(self.ended) >= self._watch[0]:
            self._watch[1].set()

    def wait(self, name: str, started: float, result: Callable[[], Any]) -> None:
        try:
            result()
            verdict = "result"
        except TYPED_ERRORS as exc:
            verdict = type(exc).__name__
        self._end(name, verdict, started)

    async def wait_async(self, name: str, started: float, awaitable: Any) -> None:
        try:
            await awaitable
            verdict = "result"
        except TYPED_ERRORS as exc:
            verdict = type(exc).__name__
        self._end(name, verdict, started)


def test_thirty_percent_faults_and_a_kill_and_restart_every_operation_once(tmp_path: Path) -> None:
    faults_file = tmp_path / "faults.json"
    faults_file.write_text(json.dumps(FAULTS))
    server = ServerProcess(tmp_path / "state", faults_file)
    server.start()
    outcomes = Outcomes()
    test_started = time.monotonic()
    try:
        client = tinkex.Client(api_key="tml-chaos", base_url=server.base_url, telemetry=False)
        try:
            with deadlines(no_progress_s=NO_PROGRESS_S, attempt_s=3.0):
                training = client.create_lora_training_client(MODEL, rank=4)
                for step in range(WARMUP_STEPS):
                    started = time.monotonic()
                    step_future = training.forward_backward([_datum(step)], "cross_entropy")
                    outcomes.wait(f"fb{step}", started, step_future.result)
                    optim_future = training.optim_step(types.AdamParams(learning_rate=1e-4))
                    outcomes.wait(f"os{step}", started, optim_future.result)

                # pipelined steps, with the server killed while they are in flight: once the first has ended
                restart = server.kill_and_restart_when(outcomes.when_ended(1))
                submitted = []
                for step in range(WARMUP_STEPS, STEPS):
                    started = time.monotonic()
                    submitted.append((f"fb{step}", started, training.forward_backward([_datum(step)], "cross_entropy")))
                    submitted.append((f"os{step}", started, training.optim_step(types.AdamParams(learning_rate=1e-4))))
                for name, started, future in submitted:
                    outcomes.wait(name, started, lambda future=future: future.result(timeout=BOUND_S))
                restart.join()

                sampler = training.save_weights_and_get_sampling_client()
                params = types.SamplingParams(max_tokens=3, seed=2)
                prompt = types.ModelInput.from_ints([3, 4, 5])

                async def sample_all() -> None:
                    started = time.monotonic()
                    await asyncio.gather(
                        *(
                            outcomes.wait_async(f"sample{i}", started, sampler.sample_async(prompt, 1, params))
                            for i in range(SAMPLES)
                        )
                    )

                restart = server.kill_and_restart_when(outcomes.when_ended(SAMPLES // 4))
                asyncio.run(asyncio.wait_for(sample_all(), BOUND_S + 5))
                restart.join()
        finally:
            client.close()
    finally:
        server.kill()

    names = {f"{kind}{step}" for step in range(STEPS) for kind in ("fb", "os")} | {f"sample{i}" for i in range(SAMPLES)}
    assert set(outcomes.ended) == names  # every operation ended, each exactly once (Outcomes refuses a second end)
    late = {name: took for name, (_, took) in outcomes.ended.items() if took > BOUND_S}
    assert not late, late
    errors = {name: verdict for name, (verdict, _) in outcomes.ended.items() if verdict != "result"}
    # The contract allows a deadline error (a loaded machine); any other error means the restarted server forgot
    # something (a 404 for a future issued before the kill, say), and a restart should cost no operation at all.
    assert set(errors.values()) <= {"DeadlineExceededError"} and len(errors) <= 2, errors

    with LocalServer(state_dir=tmp_path / "state", base_models=(MODEL,)) as reader:  # the ledger of all processes
        ledger = reader.ledger
        assert ledger.duplicates_executed() == []
        live = [e for e in ledger.executions() if not e.undone and not e.expired]
        for endpoint, prefix, expected in (("forward_backward", "fb", STEPS), ("optim_step", "os", STEPS),
                                           ("asample", "sample", SAMPLES)):
            ran = [e for e in live if e.endpoint == endpoint]
            succeeded = sum(1 for name, (verdict, _) in outcomes.ended.items() if name.startswith(prefix)
                            and verdict == "result")
            # at most once each; and every operation that got its result did run (a typed error may or may not)
            assert succeeded <= len(ran) <= expected, (endpoint, succeeded, len(ran))
        # request ids tell the server process apart (req-<start>.<n>): the first kill hit mid-run
        starts = {e.request_id.split(".")[0] for e in live if e.request_id is not None}
        assert {"req-1", "req-2"} <= starts, starts
    assert server.starts == 3
    assert time.monotonic() - test_started < 60
