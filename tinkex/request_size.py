"""Size estimators named in ``manifest.json`` (``size_estimator``), for requests sent without a size hint.

tinkex's own clients pass the estimate in ``extensions.SIZE_BYTES`` (computed from the typed objects, no
re-parse); these estimators only serve requests sent some other way, e.g. a raw ``ManifestClient.send``.
"""

from __future__ import annotations

import httpx
import msgspec

from .estimate import estimate_datum_bytes, estimate_model_input_bytes
from .types import ForwardBackwardRequest, ForwardRequest, SampleRequest
from .types.codec import decode

__all__ = ["SIZE_ESTIMATORS"]


def training_request_bytes(request: httpx.Request) -> int:
    body = request.content
    try:
        if request.url.path.endswith("/forward"):
            data = decode(body, ForwardRequest).forward_input.data
        else:
            data = decode(body, ForwardBackwardRequest).forward_backward_input.data
    except msgspec.MsgspecError:
        return len(body)
    return sum(estimate_datum_bytes(d) for d in data)


def sample_request_bytes(request: httpx.Request) -> int:
    try:
        return estimate_model_input_bytes(decode(request.content, SampleRequest).prompt)
    except msgspec.MsgspecError:
        return len(request.content)


SIZE_ESTIMATORS = {"training_request": training_request_bytes, "sample_request": sample_request_bytes}
