"""tinkex's JSON bodies take the shapes of the dialect it speaks: every JSON request the official SDKs were seen
sending (captured once, tests/tinkex/testing/data) is rebuilt from tinkex's request type and must come out the same, in
0.38.0's shape (defaults and ``type`` sent, no ``null``) for the 0.38 dialect and in 0.16.1's for the 0.16 one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tinkex import types as t
from tinkex.testing import LocalServer
from tinkex.types import codec
from tinkex.wire.dialect import json_encoder

DATA = Path(__file__).parent.parent / "testing" / "data"


def _request_types() -> dict[str, Any]:
    with LocalServer() as server:
        return server.call(lambda api: {op.endpoint: op.request_type for op in api.operations})


REQUEST_TYPES = _request_types()


def _json_requests(version: str) -> list[tuple[str, dict[str, Any]]]:
    """The first JSON body of each endpoint in the official capture (``<non-json body>`` entries skipped)."""
    captured = json.loads((DATA / f"official-{version}-bodies.json").read_text())["requests"]
    seen: dict[str, dict[str, Any]] = {}
    for request in captured:
        body = request["body"]
        if isinstance(body, dict) and "<non-json body>" not in body and REQUEST_TYPES.get(request["endpoint"]):
            seen.setdefault(request["endpoint"], body)
    return sorted(seen.items())


@pytest.mark.parametrize(("version", "dialect"), [("0.38.0", "0.38"), ("0.16.1", "0.16")])
def test_tinkex_sends_each_official_body_in_its_dialect(version: str, dialect: str) -> None:
    requests = _json_requests(version)
    assert len(requests) >= 10
    encode = json_encoder(lambda: dialect)  # type: ignore[arg-type, return-value]
    different = {}
    for endpoint, body in requests:
        request = codec.convert(body, REQUEST_TYPES[endpoint])
        sent = msgspec.json.decode(encode(request))
        if sent != body:
            different[endpoint] = (sent, body)
    assert different == {}


def test_the_two_shapes_differ_where_the_sdks_do() -> None:
    request = t.OptimStepRequest(adam_params=t.AdamParams(learning_rate=1e-4), model_id="m", seq_id=2)
    as_038 = msgspec.json.decode(json_encoder(lambda: "0.38")(request))
    as_016 = msgspec.json.decode(json_encoder(lambda: "0.16")(request))
    assert as_038 == {"adam_params": {"learning_rate": 1e-4, "beta1": 0.9, "beta2": 0.95, "eps": 1e-12,
                                      "weight_decay": 0.0, "grad_clip_norm": 0.0},
                      "model_id": "m", "seq_id": 2, "type": "optim_step"}
    assert as_016 == {"adam_params": {"learning_rate": 1e-4}, "model_id": "m", "seq_id": 2}
    unsettled = msgspec.json.decode(json_encoder(lambda: None)(request))
    assert unsettled == as_016  # before the handshake answers, nothing 0.38-only is sent


def test_a_literal_rest_body_keeps_its_null_in_both_dialects() -> None:
    """Official 0.38 writes set_checkpoint_ttl's body as a dict: ``ttl_seconds: null`` removes the expiry."""
    request = t.SetCheckpointTtlRequest(ttl_seconds=None)
    for dialect in ("0.16", "0.38"):
        assert json_encoder(lambda d=dialect: d)(request) == b'{"ttl_seconds":null}'  # type: ignore[misc]
