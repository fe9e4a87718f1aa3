"""Official 0.38.0 against LocalServer, observed as tests/tinkex/sdk observes tinkex: with ``parallel_fwdbwd_chunks`` on it
submits a batch's chunks together, the first one last (tinkex does the same, tests/tinkex/sdk/test_parallel_chunks), and
off one after another; a client's future used as the client names its own class in ``x-sdk-method``
(tests/tinkex/sdk/test_backcompat_sdk_method)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tinkex.testing import FaultRule, LocalServer
from tinkex.types import ClientConfigResponse as Flags

from .conftest import run_official

HERE = Path(__file__).resolve().parent
SUBMIT_DELAY_S = 0.3
DATA = 5  # server_limits_script.py's "chunks" batch


def run(official_python: Callable[[str], Path], server: LocalServer, script: str, *arguments: str) -> dict[str, Any]:
    return run_official(
        official_python("0.38.0"), HERE / script, *arguments, base_url=server.base_url,
        TINKER_API_KEY="tml-official-parallel",
    )

@pytest.mark.parametrize("parallel", [True, False], ids=["flag_on", "flag_off"])
def test_official_038_submits_chunks_together_only_with_the_flag_on(
    official_python: Callable[[str], Path], parallel: bool
) -> None:
    flags = Flags(fwdbwd_max_chunk_len=1, parallel_fwdbwd_chunks=parallel)
    slow = FaultRule(endpoint="forward_backward", delay=SUBMIT_DELAY_S, count=DATA)
    with LocalServer(client_config=flags, faults=[slow]) as server:
        assert run(official_python, server, "server_limits_script.py", "chunks")["outputs"] == DATA
        arrivals = sorted(r.time for r in server.ledger.received("forward_backward"))
        runs = server.ledger.executions("forward_backward")
    run_times = sorted(e.time for e in runs)
    in_flight = max(sum(a <= t for a in arrivals) - sum(r <= t for r in run_times) for t in arrivals)
    seq_ids = [e.seq_id for e in runs]
    if parallel:
        assert in_flight == DATA - 1 and sorted(seq_ids[:-1]) == [2, 3, 4, 5] and seq_ids[-1] == 1
    else:
        assert in_flight == 1 and seq_ids == [1, 2, 3, 4, 5]


def test_official_038_names_the_future_class_when_it_is_used_as_the_client(
    official_python: Callable[[str], Path],
) -> None:
    with LocalServer() as server:
        run(official_python, server, "backcompat_methods_script.py")
        sent = [(r.endpoint, r.headers.get("x-sdk-method")) for r in server.ledger.received()]
    trainer, sampling = "BackcompatTrainingClientFuture", "BackcompatSamplingClientFuture"
    for expected in (
        ("forward_backward", f"{trainer}.forward_backward"),
        ("retrieve_future", f"{trainer}.forward_backward"),
        ("optim_step", f"{trainer}.optim_step"),
        ("save_weights_for_sampler", f"{trainer}.save_weights_and_get_sampling_client"),
        ("asample", f"{sampling}.sample"),
        ("retrieve_future", f"{sampling}.sample"),
    ):
        assert expected in sent, (expected, sent)
