"""Custom-loss upload types [0.38]: a torch.fx-traced loss as plain data (``create_custom_loss``).

Nothing in a graph is executable: the server rebuilds it from its own list of allowed operations.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from ._base import RequestStruct, ResponseStruct

__all__ = [
    "CreateCustomLossRequest",
    "CreateCustomLossResponse",
    "CustomLossGraph",
    "CustomLossInput",
    "CustomLossInputRank",
    "CustomLossNode",
    "CustomLossNodeOp",
]

CustomLossNodeOp = Literal["placeholder", "get_attr", "call_function", "call_method", "call_module", "output"]

CustomLossInputRank = Literal[0, 1, 2]
"""A custom-loss input's rank: 0 is a scalar, 1 is ``[T]`` and 2 is ``[T, K]``."""


class CustomLossNode(RequestStruct, kw_only=True):
    """One node of a traced loss, as torch.fx records it.

    ``args``/``kwargs`` are encoded: JSON scalars, strings and lists stand for themselves; anything else is a
    one-key object (``{"ref": name}``, ``{"tuple": [...]}``, ``{"dict": {...}}``, ``{"slice": [a, b, c]}``,
    ``{"ellipsis": true}``, ``{"float": "inf"}``, ``{"dtype": "float32"}``, ``{"device": "cpu"}``, ...).
    """

    op: CustomLossNodeOp
    name: str
    """Unique within the graph; later nodes refer to the node by it."""
    target: str
    args: list[Any] = msgspec.field(default_factory=list)
    kwargs: dict[str, Any] = msgspec.field(default_factory=dict)


class CustomLossGraph(RequestStruct, kw_only=True):
    """A traced loss: its nodes in execution order."""

    format: Literal[1] = 1
    nodes: list[CustomLossNode]


class CustomLossInput(RequestStruct, kw_only=True):
    """One input of a custom loss (``logprobs`` or a ``loss_fn_inputs`` key) with its rank."""

    name: str
    rank: CustomLossInputRank


class CreateCustomLossRequest(RequestStruct, kw_only=True):
    session_id: str
    custom_loss_seq_id: int
    name: str
    inputs: list[CustomLossInput]
    """The graph's inputs in order, ``logprobs`` first."""
    graph: CustomLossGraph
    type: Literal["create_custom_loss"] = "create_custom_loss"


class CreateCustomLossResponse(ResponseStruct, kw_only=True):
    loss_id: str
    type: Literal["create_custom_loss"] = "create_custom_loss"
