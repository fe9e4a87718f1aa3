"""Per-datum custom losses made by ``Client.create_custom_loss`` (0.38) and run by handle.

A :class:`LossHandle` names a per-datum loss ``fn(logprobs, *inputs) -> (loss, metrics)`` whose parameters after
``logprobs`` are ``loss_fn_inputs`` keys, each with a declared rank. ``forward_backward_custom(data, handle)`` runs
it once per datum on the client and sums the losses (tinkex does not upload losses to the server, so ``loss_id``
stays None and ``fn`` runs as written: no torch.fx tracing restrictions). Metrics named ``…:mean`` are averaged
over the datums, every other one summed.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from .types import CustomLossInput, CustomLossInputRank, Datum

if TYPE_CHECKING:
    import torch

__all__ = ["LossHandle", "PerDatumLossFn", "check_loss_inputs", "make_loss_handle", "run_loss_handle"]

PerDatumLossFn: TypeAlias = "Callable[..., tuple[torch.Tensor, Mapping[str, Any]]]"
"""``(logprobs, *the loss_fn_inputs it reads, each a tensor) -> (scalar loss, metrics)`` for one datum."""

_INPUT_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")
_MAX_INPUTS = 16


@dataclass(frozen=True)
class LossHandle:
    """A loss made by ``Client.create_custom_loss``; pass it to ``forward_backward_custom`` as the loss."""

    name: str
    inputs: tuple[CustomLossInput, ...]
    """``logprobs``, then the ``loss_fn_inputs`` keys the loss reads, in its parameter order, with their ranks."""
    session_id: str
    """The session that made the loss; only clients of that session can use it."""
    fn: PerDatumLossFn = field(repr=False, compare=False)
    loss_id: str | None = None
    """The server's id of an uploaded loss; tinkex runs losses client-side, so None."""

    @property
    def input_names(self) -> tuple[str, ...]:
        """The ``loss_fn_inputs`` keys the loss reads, in the order it takes them."""
        return tuple(loss_input.name for loss_input in self.inputs[1:])


def make_loss_handle(fn: PerDatumLossFn, input_ranks: Mapping[str, CustomLossInputRank], session_id: str) -> LossHandle:
    name = getattr(fn, "__name__", type(fn).__name__)
    return LossHandle(name=name, inputs=_inputs(name, fn, input_ranks), session_id=session_id, fn=fn)


def _inputs(
    name: str, fn: Callable[..., Any], input_ranks: Mapping[str, CustomLossInputRank]
) -> tuple[CustomLossInput, ...]:
    params = list(inspect.signature(fn).parameters.values())
    if not params or params[0].name != "logprobs":
        raise ValueError(
            f"create_custom_loss: {name} must take logprobs as its first parameter, followed by the loss_fn_inputs "
            "it reads, e.g. def loss(logprobs, advantages)"
        )
    if len(params) > _MAX_INPUTS:
        raise ValueError(f"create_custom_loss: {name} takes {len(params)} parameters; at most {_MAX_INPUTS}")
    for param in params:
        if not _INPUT_NAME.fullmatch(param.name):
            raise ValueError(f"create_custom_loss: {name} parameter {param.name!r} must be a lowercase identifier")
        if param.kind not in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD) or param.default is not param.empty:
            raise ValueError(
                f"create_custom_loss: {name} parameter {param.name!r} must be a plain positional parameter without "
                "a default (each names a required loss_fn_inputs key)"
            )
    names = [param.name for param in params]
    if set(input_ranks) != set(names):
        raise ValueError(
            f"create_custom_loss: input_ranks must give a rank for each parameter of {name} ({', '.join(names)}), "
            f"got {sorted(input_ranks)}"
        )
    for input_name, rank in input_ranks.items():
        if rank not in (0, 1, 2):
            raise ValueError(f"create_custom_loss: the rank of {input_name} must be 0, 1 or 2, got {rank!r}")
    if input_ranks["logprobs"] == 0:
        raise ValueError("create_custom_loss: logprobs has rank 1 ([T]) or 2 ([T, K])")
    return tuple(CustomLossInput(name=input_name, rank=input_ranks[input_name]) for input_name in names)


def check_loss_inputs(handle: LossHandle, data: Sequence[Datum], session_id: str | None) -> None:
    """Refuse a handle of another session, and data without an input the loss reads (or at another rank).
    ``logprobs`` has the shape of the datum's ``target_tokens``."""
    if session_id is not None and handle.session_id != session_id:
        raise ValueError(
            f"LossHandle {handle.name!r} was created in session {handle.session_id}; only clients of that session "
            "can use it"
        )
    logprobs, *inputs = handle.inputs
    for index, datum in enumerate(data):
        for loss_input, key in [(logprobs, "target_tokens"), *((x, x.name) for x in inputs)]:
            if key not in datum.loss_fn_inputs:
                raise ValueError(f"datum[{index}] has no loss_fn_inputs[{key!r}], which loss {handle.name!r} takes")
            shape = datum.loss_fn_inputs[key].shape
            rank = 1 if shape is None else len(shape)
            if rank != loss_input.rank:
                raise ValueError(
                    f"datum[{index}] loss_fn_inputs[{key!r}] has rank {rank}, but loss {handle.name!r} declared "
                    f"{loss_input.name} with rank {loss_input.rank}"
                )


def run_loss_handle(
    handle: LossHandle, data: list[Datum], logprobs_list: list[torch.Tensor]
) -> tuple[torch.Tensor, dict[str, float]]:
    """The batch loss ``forward_backward_custom`` differentiates: the per-datum losses summed."""
    total: Any = None
    sums: dict[str, float] = {}
    for datum, logprobs in zip(data, logprobs_list, strict=True):
        inputs = [datum.loss_fn_inputs[name].to_torch() for name in handle.input_names]
        loss, metrics = handle.fn(logprobs, *inputs)
        if getattr(loss, "ndim", None) != 0:
            raise ValueError(f"loss {handle.name!r} must return a scalar loss, got {type(loss).__name__}")
        total = loss if total is None else total + loss
        for key, value in metrics.items():
            number = float(value.detach().item() if hasattr(value, "detach") else value)
            sums[key] = sums.get(key, 0.0) + number
    return total, {key: value / len(data) if key.endswith(":mean") else value for key, value in sums.items()}
