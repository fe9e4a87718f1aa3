"""The service endpoints: ``healthz``, the server's capabilities (the base models it serves) and the telemetry
batches clients send (kept, so tests can read them)."""

from __future__ import annotations

from typing import Any

from tinkex import types as t

from .calls import Call, Result
from .registry import Registry
from .replies import json_reply

__all__ = ["ServiceEndpoints"]

_MAX_CONTEXT_LENGTH = 32768


class ServiceEndpoints:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.telemetry_batches: list[Any] = []

    def healthz(self, call: Call) -> Result:
        return Result(json_reply(t.HealthResponse()))

    def get_server_capabilities(self, call: Call) -> Result:
        models = [
            t.SupportedModel(model_name=name, max_context_length=_MAX_CONTEXT_LENGTH, trainable=True, sampleable=True)
            for name in self.registry.base_models
        ]
        return Result(json_reply(t.GetServerCapabilitiesResponse(supported_models=models)))

    def telemetry(self, call: Call) -> Result:
        self.telemetry_batches.append(call.body)
        return Result(json_reply(t.TelemetryResponse()))
