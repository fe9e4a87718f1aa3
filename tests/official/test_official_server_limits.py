"""Official 0.38.0 against a LocalServer that sets limits in client/config, observed the way tests/tinkex/wire's
test_server_limits_* observe tinkex: the sample concurrency cap (``sample_max_concurrent_requests``), the chunk
limits (``fwdbwd_max_chunk_len``) and the 402 billing pause. Both SDKs must behave alike on the same server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tinkex.testing import FaultRule, LocalServer
from tinkex.types import ClientConfigResponse as Flags

from .conftest import run_official

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "server_limits_script.py"
SAMPLE_LATENCY = 0.6


def run(official_python: Callable[[str], Path], server: LocalServer, mode: str) -> dict[str, Any]:
    return run_official(
        official_python("0.38.0"), SCRIPT, mode, base_url=server.base_url, TINKER_API_KEY="tml-official-limits"
    )

def _most_arrivals_within(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(sum(1 for later in times[i:] if later - start < window) for i, start in enumerate(times))


@pytest.mark.parametrize(("cap", "most"), [(3, 3), (2000, 20)])
def test_official_038_caps_samples_in_flight(official_python: Callable[[str], Path], cap: int, most: int) -> None:
    flags = Flags(sample_max_concurrent_requests=cap)
    with LocalServer(client_config=flags, latency_by_endpoint={"asample": SAMPLE_LATENCY}) as server:
        assert run(official_python, server, "samples")["sequences"] == [1] * 20
        arrivals = [r.time for r in server.ledger.received("asample")]
    assert _most_arrivals_within(arrivals, SAMPLE_LATENCY * 0.8) == most


@pytest.mark.parametrize(("flags", "chunks"), [(Flags(fwdbwd_max_chunk_len=2), 3), (Flags(), 1)])
def test_official_038_chunks_by_the_servers_limits(
    official_python: Callable[[str], Path], flags: Flags, chunks: int
) -> None:
    with LocalServer(client_config=flags) as server:
        assert run(official_python, server, "chunks")["outputs"] == 5
        assert len(server.ledger.executions("forward_backward")) == chunks


def test_official_038_pauses_on_a_402(official_python: Callable[[str], Path]) -> None:
    billing = FaultRule(endpoint="forward_backward", status=402, body={"detail": "billing is not set up"}, count=1)
    with LocalServer(client_config=Flags(), faults=[billing]) as server:
        assert run(official_python, server, "chunks")["outputs"] == 5
        assert [r.status for r in server.ledger.received("forward_backward")] == [402, 200]
