"""Official 0.38.0 against a LocalServer whose client/config sets the sampling flags, so LocalServer serves what
the official SDK does with them: the batched ``retrieve_futures`` poller (``sample_use_retrieve_futures``), clone
numbers from ``join_sampling_session`` (``sample_join_sampling_session``) and no re-submission of an expired sample
(``sample_no_retries``). tests/tinkex/sdk/test_sampling_server_flags.py checks tinkex on the same server the same way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tinkex.testing import FaultRule, LocalServer
from tinkex.types import ClientConfigResponse as Flags

from .conftest import run_official

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "sampling_flags_script.py"
SEQ_ID_BLOCK = 1_000_000_000


def run(official_python: Callable[[str], Path], server: LocalServer, mode: str) -> dict[str, Any]:
    return run_official(
        official_python("0.38.0"), SCRIPT, mode, base_url=server.base_url, TINKER_API_KEY="tml-official-flags"
    )

def _acknowledged(server: LocalServer) -> set[str]:
    handler: Any = server.call(lambda api: api.route("POST", "/api/v1/retrieve_futures").operation.handler)
    return set(handler.__self__.retrieved)


@pytest.mark.parametrize("batched", [True, False])
def test_official_038_polls_a_sessions_samples_in_batches_only_when_told(
    official_python: Callable[[str], Path], batched: bool
) -> None:
    flags = Flags(sample_use_retrieve_futures=batched)
    with LocalServer(client_config=flags, long_poll_timeout=0.5, latency_by_endpoint={"asample": 0.3}) as server:
        sequence_ids = run(official_python, server, "samples")["sequence_ids"]
        executed = {e.request_id for e in server.ledger.executions("asample")}
        polls = server.ledger.received("retrieve_futures")
        fetches = server.ledger.received("retrieve_future")
        acknowledged = _acknowledged(server)
    assert len(set(sequence_ids)) == 12 and None not in sequence_ids
    if batched:
        assert polls and all(p.status == 200 for p in polls)
        assert len(fetches) == 12  # one fetch per sample, after the batch said it was done
        assert acknowledged <= executed and acknowledged  # the official poller acks what it fetched
    else:
        assert polls == [] and len(fetches) >= 12


@pytest.mark.parametrize("join", [True, False])
def test_official_038_copies_join_the_sampling_session_only_when_told(
    official_python: Callable[[str], Path], join: bool
) -> None:
    flags = Flags(sample_join_sampling_session=join)
    with LocalServer(client_config=flags) as server:
        assert run(official_python, server, "copy")["copy_samples"] == 3
        blocks = [e.seq_id // SEQ_ID_BLOCK for e in server.ledger.executions("asample")]  # type: ignore[operator]
        joins = server.ledger.received("join_sampling_session")
    assert blocks[0] == 0 and len(set(blocks[1:])) == 1
    if join:
        assert blocks[1:] == [1, 1, 1] and len(joins) == 1
    else:
        assert blocks[1] > 0 and joins == []


@pytest.mark.parametrize(("no_retries", "outcome", "submits"), [(True, "RetryableException", 1), (False, "answered", 2)])
def test_official_038_sends_an_expired_sample_again_unless_told_not_to(
    official_python: Callable[[str], Path], no_retries: bool, outcome: str, submits: int
) -> None:
    expire = FaultRule.expired(future_endpoint="asample")
    with LocalServer(client_config=Flags(sample_no_retries=no_retries), faults=[expire]) as server:
        assert run(official_python, server, "expired")["outcome"] == outcome
        assert len(server.ledger.executions("asample")) == submits
