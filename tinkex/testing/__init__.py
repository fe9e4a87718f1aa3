"""The local Tinker-compatible server: a real HTTP server on 127.0.0.1 with a tiny real language model
(:mod:`tinkex.testing.tiny_lm`: true logprobs, gradients, LoRA training and sampling, in numpy), a ledger of what it
executed, and fault injection. See :class:`LocalServer`.

It speaks the JSON of official 0.16 and of 0.38 (tags, defaults, no nulls) and does the work of 0.38's endpoints:
finished sessions, future cancellation, weight copies, external-weights downloads, session search and projects,
trace export, ``auth/apikey/me`` and server-side custom losses.

With a ``state_dir`` it survives a stop or a SIGKILL: restarted on the same directory it answers the futures it
issued before, replays re-sent writes instead of running them again, keeps its ledger and never repeats an id
(:mod:`tinkex.testing.write_journal`).

:class:`ModelState` is a training run's adapter and optimizer state (``LocalServer.model_state(model_id)`` returns
a copy): ``params`` (the LoRA tensors), ``step``, Adam's ``adam_m`` / ``adam_v``, the ``grads`` and
``pending_backward`` count waiting for ``optim_step``. It replaced the fake model's state (whose ``theta`` is gone).
"""

from .config import ServerConfig
from .faults import FaultKind, FaultRule, Faults
from .ledger import Execution, Ledger, ReceivedRequest
from .server import LocalServer
from .tiny_lm import ModelState

__all__ = [
    "Execution",
    "FaultKind",
    "FaultRule",
    "Faults",
    "Ledger",
    "LocalServer",
    "ModelState",
    "ReceivedRequest",
    "ServerConfig",
]
