"""The official SDK's exception names (``docs/wire.md`` §9), backed by pristine_transport's taxonomy.

``TinkerError`` is the root of every error the transport and the futures raise, with the official hierarchy
under it (``APIError`` > ``APIStatusError`` > ``BadRequestError``, ..., ``RequestFailedError``). The 0.16
sidecar errors and 0.38's ``ExperimentalWarning`` are here so code that names them keeps importing.

tinkex's own, all under ``TinkerError`` too: ``ChunkedRequestError`` (a batch sent in several requests failed in
part: per chunk, which ran, which failed and which were not sent), ``DeadlineExceededError`` (a bound of docs/deadlines.md passed; also an
``APITimeoutError`` and a built-in ``TimeoutError``), ``InFlightAtForkError`` (a call in flight in the parent when
the process forked), ``ForkedTrainingClientError`` (a training request from a process that inherited its
``TrainingClient`` through fork) and ``RequestCancelledError`` (a ``RequestFailedError`` whose request was
cancelled on purpose, e.g. a sample whose caller cancelled it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from pristine_transport.deadlines import DeadlineExceededError
from pristine_transport.errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BillingError,
    ConfigurationError,
    ConflictError,
    FutureExpiredError,
    FutureRetrieveError,
    FutureTimeoutError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    PristineError,
    RateLimitError,
    RequestCancelledError,
    RequestCapacityError,
    RequestFailedError,
    RequestRateLimitedError,
    ResponseTooLargeError,
    UnprocessableEntityError,
)
from pristine_transport.policy import WriteOutcome

from .runtime import InFlightAtForkError
from .validation import InvalidArgumentError

TinkerError = PristineError
"""Root of every tinkex error (the official ``tinker.TinkerError``)."""


class SidecarError(TinkerError):
    """0.16.1's subprocess-sampling failures. tinkex samples in-process (no sidecar), so it never raises these;
    they exist so code written for 0.16 that catches them still imports and runs."""


class SidecarStartupError(SidecarError):
    """0.16.1: the sampling subprocess failed to start (never raised by tinkex)."""


class SidecarDiedError(SidecarError):
    """0.16.1: the sampling subprocess exited with requests pending (never raised by tinkex)."""


class SidecarIPCError(SidecarError):
    """0.16.1: talking to the sampling subprocess failed (never raised by tinkex)."""


class ExperimentalWarning(FutureWarning):
    """Warned when an API that may change or go away in any release is called (0.38). A ``FutureWarning``, so
    it is shown by default; silence it with ``warnings.filterwarnings("ignore", category=ExperimentalWarning)``."""


ChunkState = Literal["ran", "failed", "not_sent"]


class ChunkReport(msgspec.Struct, frozen=True, kw_only=True):
    """What happened to one chunk of a batch sent in several requests."""

    index: int
    data_start: int
    """The chunk is ``data[data_start:data_stop]`` of the caller's batch."""
    data_stop: int
    outcome: WriteOutcome
    """Whether its request ran on the server (``ran``: accepted, so it runs or has run)."""
    seq_id: int | None = None
    """Its wire seq_id; None when it was not sent."""
    request_id: str | None = None
    """Its future's id, when the server accepted it."""
    error: str | None = None
    """What went wrong with it; None when it ran without error or was not sent."""

    @property
    def state(self) -> ChunkState:
        if self.error is not None:
            return "failed"
        return "not_sent" if self.seq_id is None else "ran"

    def describe(self) -> str:
        where = f"chunk {self.index} (data[{self.data_start}:{self.data_stop}]"
        where += f", seq_id {self.seq_id})" if self.seq_id is not None else ")"
        if self.state == "ran":
            return f"{where} ran"
        if self.state == "not_sent":
            return f"{where} was not sent"
        verdict = {"ran": "ran and failed", "did_not_run": "did not run", "may_have_run": "may have run"}[self.outcome]
        return f"{where} {verdict}: {self.error}"


class ChunkedRequestError(TinkerError):
    """A batch that went to the server in several requests (chunks) failed in part. ``chunks`` says, for each,
    whether it ran, failed (and whether it ran) or was not sent; ``outcome`` is the failed chunk's; the message lists
    every chunk and what to do next. ``__cause__`` is the first chunk's own error."""

    def __init__(self, operation: str, chunks: Sequence[ChunkReport], *, changes_state: bool) -> None:
        self.operation = operation
        self.chunks: list[ChunkReport] = list(chunks)
        self.changes_state = changes_state
        failed = [chunk for chunk in self.chunks if chunk.state == "failed"]
        self.outcome: WriteOutcome = failed[0].outcome if failed else "ran"
        total = self.chunks[-1].data_stop if self.chunks else 0
        lines = "; ".join(chunk.describe() for chunk in self.chunks)
        self.message = f"{operation} of {total} data in {len(self.chunks)} chunks failed in part: {lines}. {self._advice()}"
        super().__init__(self.message)

    def data_not_run(self) -> list[tuple[int, int]]:
        """The ``(start, stop)`` ranges of the batch whose chunks surely did not run (failed before running, or
        not sent): what to submit again to complete the batch."""
        return [(c.data_start, c.data_stop) for c in self.chunks if c.outcome == "did_not_run"]

    def _advice(self) -> str:
        ran = [str(c.index) for c in self.chunks if c.state == "ran"]
        ran_and_failed = [str(c.index) for c in self.chunks if c.state == "failed" and c.outcome == "ran"]
        unsure = [str(c.index) for c in self.chunks if c.outcome == "may_have_run"]
        redo = ", ".join(f"data[{start}:{stop}]" for start, stop in self.data_not_run())
        parts = []
        if ran and self.changes_state:
            parts.append(f"chunk(s) {', '.join(ran)} ran and stay applied to the model: do not submit them again")
        elif ran:
            parts.append(f"chunk(s) {', '.join(ran)} ran")
        if ran_and_failed:
            parts.append(
                f"chunk(s) {', '.join(ran_and_failed)} ran on the server and failed there: their errors say whether "
                "their data can be submitted again"
            )
        if unsure:
            parts.append(f"chunk(s) {', '.join(unsure)} may have run: check before submitting them again")
        if redo:
            parts.append(f"to complete the batch, submit only {redo} (error.data_not_run())")
        return "; ".join(parts) + "." if parts else ""

    def __reduce__(self) -> object:
        return (_rebuild_chunked, (self.operation, self.chunks, self.changes_state))


def _rebuild_chunked(operation: str, chunks: list[ChunkReport], changes_state: bool) -> ChunkedRequestError:
    return ChunkedRequestError(operation, chunks, changes_state=changes_state)


class ForkedTrainingClientError(TinkerError, RuntimeError):
    """A ``TrainingClient`` inherited through ``os.fork()`` was asked, in the child, for a request that takes the
    model's next training seq_id (``forward``, ``forward_backward``, ``optim_step``, a save or load ...). The server
    runs one model's training requests as one ordered sequence, and parent and child would number theirs from the
    same counter: the server would answer the later of two equal seq_ids from its replay cache without running it,
    a training step lost without an error. Nothing was sent. Train in the process that made the client; in
    workers, sample (a ``SamplingClient`` works after a fork) or read (``get_info``, ``get_tokenizer``)."""

    def __init__(self, operation: str, model_id: str, parent_pid: int) -> None:
        self.operation = operation
        self.model_id = model_id
        self.parent_pid = parent_pid
        self.message = (
            f"{operation} refused: this TrainingClient of model {model_id} was inherited through fork from process "
            f"{parent_pid}, which numbers this model's training requests; a request from here would take a seq_id "
            "that process also uses, and the server would answer one of the two from its replay cache without "
            "running it. Nothing was sent. Train in the process that created the client (send it data, e.g. over "
            "a multiprocessing queue); in worker processes sample with a SamplingClient (e.g. from "
            "save_weights_and_get_sampling_client() in the parent) or read (get_info, get_tokenizer)"
        )
        super().__init__(self.message)

    def __reduce__(self) -> object:
        return (ForkedTrainingClientError, (self.operation, self.model_id, self.parent_pid))


__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BillingError",
    "ChunkReport",
    "ChunkedRequestError",
    "ConfigurationError",
    "ConflictError",
    "DeadlineExceededError",
    "ExperimentalWarning",
    "FutureExpiredError",
    "FutureRetrieveError",
    "ForkedTrainingClientError",
    "FutureTimeoutError",
    "InFlightAtForkError",
    "InvalidArgumentError",
    "InternalServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestCancelledError",
    "RequestCapacityError",
    "RequestFailedError",
    "RequestRateLimitedError",
    "ResponseTooLargeError",
    "SidecarDiedError",
    "SidecarError",
    "SidecarIPCError",
    "SidecarStartupError",
    "TinkerError",
    "UnprocessableEntityError",
]
