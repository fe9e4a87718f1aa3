"""``FutureRetrieveResponse``: every body ``retrieve_future`` can answer with (official alias).

Like the official SDK, the client does not parse with this union: it tells the replies apart from the raw body
(``docs/wire.md`` §2.2) and decodes the expected result type. The alias serves annotations and type checks.
"""

from __future__ import annotations

from typing import Union

from .futures import RequestFailedResponse, TryAgainResponse
from .models import CreateModelResponse, UnloadModelResponse
from .training import ForwardBackwardOutput, OptimStepResponse
from .weights import (
    LoadWeightsResponse,
    SaveWeightsExternalResponse,
    SaveWeightsForSamplerResponse,
    SaveWeightsResponse,
)

__all__ = ["FutureRetrieveResponse"]

FutureRetrieveResponse = Union[
    TryAgainResponse,
    ForwardBackwardOutput,
    OptimStepResponse,
    SaveWeightsResponse,
    LoadWeightsResponse,
    SaveWeightsForSamplerResponse,
    SaveWeightsExternalResponse,
    CreateModelResponse,
    UnloadModelResponse,
    RequestFailedResponse,
]
