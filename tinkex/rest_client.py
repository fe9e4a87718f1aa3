"""``RestClient``: training runs, checkpoints, sessions and samplers over the REST endpoints (`docs/wire.md` §1.5).

Every method has an ``*_async`` twin. The async methods run on the caller's event loop; the sync ones run the
same coroutine on tinkex's background loop and return an :class:`~tinkex.api_future.APIFuture` at once (the
official 0.16 sync methods return futures too), so ``rest.list_checkpoints(run_id).result()`` is the blocking form
(``await rest.list_checkpoints(run_id)`` works as well, as in 0.38). The futures are ``concurrent.futures.Future``
objects too, as 0.16's were.

``RestClient()`` (0.38) needs no ``Client``: it talks to the REST API with ``base_url`` / ``api_key`` (else the
environment) and creates no session.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Literal, TypeVar

import httpx
import msgspec

from pristine_transport.errors import APIStatusError
from pristine_transport.extensions import RETRY_RULES
from pristine_transport.manifest import RetryRuleSpec

from . import env_names
from .admin_client import AdminClient, AuditEventType
from .api_future import APIFuture, in_background
from .holder import Holder
from .rest_holder import rest_holder
from .telemetry import Telemetry
from .types import (
    AccessScope,
    AuditLogResponse,
    BillingUsageResponse,
    Checkpoint,
    CheckpointArchiveUrlResponse,
    CheckpointsListResponse,
    CopyWeightsRequest,
    CopyWeightsResponse,
    CurrentCheckpointStorageUsageResponse,
    ExternalWeightsUrlsResponse,
    GetSamplerResponse,
    GetServerCapabilitiesResponse,
    GetSessionResponse,
    ListSessionsResponse,
    ParsedCheckpointTinkerPath,
    SessionSearchRequest,
    SessionSearchResponse,
    SetCheckpointTtlRequest,
    TrainingRun,
    TrainingRunsResponse,
    WeightsInfoRequest,
    WeightsInfoResponse,
    WhoamiResponse,
)
from .types.codec import convert

__all__ = ["ArchiveRetryConfig", "AuditEventType", "RestClient", "parse_tinker_path", "rest_holder"]

logger = logging.getLogger("tinkex.rest")

T = TypeVar("T")

_EXPIRES_FORMAT = "%a, %d %b %Y %H:%M:%S GMT"
_DEFAULT_ARCHIVE_URL_LIFETIME = timedelta(minutes=15)
ARCHIVE_RULE = "archive_building"
"""The manifest's retry rule for an archive still being built: 503 is what the official SDK waits on; 409 "Archive
creation already in progress" means the same thing."""
_WEIGHTS_ACCESS_TOKEN_HEADER = "X-Tinker-Weights-Access-Token"
TRACE_EXPORT_POLL_INTERVAL_S = 2.0


@dataclass(frozen=True)
class ArchiveRetryConfig:
    """How long ``get_checkpoint_archive_url`` waits while the server is still building an archive, in place of
    the manifest's ``archive_building`` rule (whose values are these defaults)."""

    max_attempts: int = 6
    wait_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"ArchiveRetryConfig.max_attempts must be >= 1, got {self.max_attempts}")
        if self.wait_s < 0:
            raise ValueError(f"ArchiveRetryConfig.wait_s must be >= 0, got {self.wait_s}")


def parse_tinker_path(path: str) -> ParsedCheckpointTinkerPath:
    """Parse a checkpoint path, tolerating what users paste: surrounding blanks, a trailing ``/``, a missing
    ``tinker://``. Run ids may carry suffixes such as ``:train:0``. The error names the path and the expected form."""
    text = path.strip().rstrip("/")
    if "://" not in text and text.count("/") == 2:
        text = "tinker://" + text
    return ParsedCheckpointTinkerPath.from_tinker_path(text)


class RestClient:
    """REST access to runs, checkpoints, sessions and samplers.

    ``RestClient()`` stands alone (0.38: ``base_url`` and ``api_key``, else ``TINKER_BASE_URL`` /
    ``TINKER_API_KEY``, and no session); ``Client.create_rest_client()`` shares that client's connections.
    """

    def __init__(
        self,
        _holder: Holder | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        holder: Holder | None = None,
        archive_retry: ArchiveRetryConfig | None = None,
    ) -> None:
        if holder is not None:  # 0.16's keyword
            if _holder is not None:
                raise TypeError("RestClient got a holder twice (positionally and as holder=)")
            _holder = holder
        self.holder = rest_holder("RestClient", _holder, base_url=base_url, api_key=api_key)
        self.archive_retry = archive_retry

    def __repr__(self) -> str:
        return f"RestClient(base_url={self.holder.config.base_url!r})"

    def _submit(self, work: Coroutine[Any, Any, T]) -> APIFuture[T]:
        return in_background(work)

    def get_telemetry(self) -> Telemetry | None:
        return self.holder.telemetry

    # server ----------------------------------------------------------------------------------------------
    async def get_server_capabilities_async(self) -> GetServerCapabilitiesResponse:
        return await self._call("get_server_capabilities", GetServerCapabilitiesResponse)

    def get_server_capabilities(self) -> APIFuture[GetServerCapabilitiesResponse]:
        """The models this account can use and the server's features (needs no session)."""
        return self._submit(self.get_server_capabilities_async())

    async def whoami_async(self) -> WhoamiResponse:
        return await self._call("whoami", WhoamiResponse)

    def whoami(self) -> APIFuture[WhoamiResponse]:
        """The calling principal: user URN, organization URN and (for a user) email."""
        return self._submit(self.whoami_async())

    async def _call(self, endpoint: str, result_type: Any = type(None), **kwargs: Any) -> Any:
        return await self.holder.clients().http.call(endpoint, result_type=result_type, **kwargs)

    # training runs ---------------------------------------------------------------------------------------
    async def get_training_run_async(self, training_run_id: str, access_scope: AccessScope = "owned") -> TrainingRun:
        return await self._call(
            "get_training_run",
            TrainingRun,
            path_params={"training_run_id": training_run_id},
            params={"access_scope": access_scope},
        )

    def get_training_run(self, training_run_id: str, access_scope: AccessScope = "owned") -> APIFuture[TrainingRun]:
        return self._submit(self.get_training_run_async(training_run_id, access_scope))

    async def get_training_run_by_tinker_path_async(
        self, tinker_path: str, access_scope: AccessScope = "owned"
    ) -> TrainingRun:
        return await self.get_training_run_async(parse_tinker_path(tinker_path).training_run_id, access_scope)

    def get_training_run_by_tinker_path(
        self, tinker_path: str, access_scope: AccessScope = "owned"
    ) -> APIFuture[TrainingRun]:
        return self._submit(self.get_training_run_by_tinker_path_async(tinker_path, access_scope))

    async def list_training_runs_async(
        self, limit: int = 20, offset: int = 0, access_scope: AccessScope = "owned", project_id: str | None = None
    ) -> TrainingRunsResponse:
        """A page of training runs; ``project_id`` (0.38) keeps those of one project."""
        params: dict[str, Any] = {"limit": limit, "offset": offset, "access_scope": access_scope}
        if project_id is not None:
            params["project_id"] = project_id
        return await self._call("list_training_runs", TrainingRunsResponse, params=params)

    def list_training_runs(
        self, limit: int = 20, offset: int = 0, access_scope: AccessScope = "owned", project_id: str | None = None
    ) -> APIFuture[TrainingRunsResponse]:
        return self._submit(self.list_training_runs_async(limit, offset, access_scope, project_id))

    async def iter_training_runs(
        self, page_size: int = 100, access_scope: AccessScope = "owned"
    ) -> AsyncIterator[TrainingRun]:
        """Every training run, fetched page by page."""

        async def page(limit: int, offset: int) -> tuple[list[TrainingRun], int | None]:
            response = await self.list_training_runs_async(limit, offset, access_scope)
            return response.training_runs, response.cursor.total_count

        async for run in _paged(page, page_size):
            yield run

    # checkpoints -----------------------------------------------------------------------------------------
    async def list_checkpoints_async(self, training_run_id: str) -> CheckpointsListResponse:
        return await self._call(
            "list_checkpoints", CheckpointsListResponse, path_params={"training_run_id": training_run_id}
        )

    def list_checkpoints(self, training_run_id: str) -> APIFuture[CheckpointsListResponse]:
        return self._submit(self.list_checkpoints_async(training_run_id))

    async def list_user_checkpoints_async(self, limit: int = 100, offset: int = 0) -> CheckpointsListResponse:
        return await self._call(
            "list_user_checkpoints", CheckpointsListResponse, params={"limit": limit, "offset": offset}
        )

    def list_user_checkpoints(self, limit: int = 100, offset: int = 0) -> APIFuture[CheckpointsListResponse]:
        return self._submit(self.list_user_checkpoints_async(limit, offset))

    async def iter_user_checkpoints(self, page_size: int = 100) -> AsyncIterator[Checkpoint]:
        """Every checkpoint of the user, fetched page by page."""

        async def page(limit: int, offset: int) -> tuple[list[Checkpoint], int | None]:
            response = await self.list_user_checkpoints_async(limit, offset)
            return response.checkpoints, response.cursor.total_count if response.cursor is not None else None

        async for checkpoint in _paged(page, page_size):
            yield checkpoint

    async def delete_checkpoint_async(self, training_run_id: str, checkpoint_id: str) -> None:
        await self._call("delete_checkpoint", path_params=_checkpoint_params(training_run_id, checkpoint_id))

    def delete_checkpoint(self, training_run_id: str, checkpoint_id: str) -> APIFuture[None]:
        return self._submit(self.delete_checkpoint_async(training_run_id, checkpoint_id))

    async def delete_checkpoint_from_tinker_path_async(self, tinker_path: str) -> None:
        await self._call("delete_checkpoint", path_params=_path_params(tinker_path))

    def delete_checkpoint_from_tinker_path(self, tinker_path: str) -> APIFuture[None]:
        return self._submit(self.delete_checkpoint_from_tinker_path_async(tinker_path))

    async def publish_checkpoint_from_tinker_path_async(self, tinker_path: str) -> None:
        await self._call("publish_checkpoint", path_params=_path_params(tinker_path))

    def publish_checkpoint_from_tinker_path(self, tinker_path: str) -> APIFuture[None]:
        return self._submit(self.publish_checkpoint_from_tinker_path_async(tinker_path))

    async def unpublish_checkpoint_from_tinker_path_async(self, tinker_path: str) -> None:
        await self._call("unpublish_checkpoint", path_params=_path_params(tinker_path))

    def unpublish_checkpoint_from_tinker_path(self, tinker_path: str) -> APIFuture[None]:
        return self._submit(self.unpublish_checkpoint_from_tinker_path_async(tinker_path))

    async def set_checkpoint_ttl_from_tinker_path_async(self, tinker_path: str, ttl_seconds: int | None) -> None:
        """``ttl_seconds=None`` removes the expiry."""
        if ttl_seconds is not None and ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be a positive number of seconds or None (never expire), got {ttl_seconds}")
        await self._call(
            "set_checkpoint_ttl",
            path_params=_path_params(tinker_path),
            json=SetCheckpointTtlRequest(ttl_seconds=ttl_seconds),
        )

    def set_checkpoint_ttl_from_tinker_path(self, tinker_path: str, ttl_seconds: int | None) -> APIFuture[None]:
        return self._submit(self.set_checkpoint_ttl_from_tinker_path_async(tinker_path, ttl_seconds))

    async def get_weights_info_by_tinker_path_async(self, tinker_path: str) -> WeightsInfoResponse:
        path = parse_tinker_path(tinker_path).tinker_path
        return await self._call("weights_info", WeightsInfoResponse, json=WeightsInfoRequest(tinker_path=path))

    def get_weights_info_by_tinker_path(self, tinker_path: str) -> APIFuture[WeightsInfoResponse]:
        return self._submit(self.get_weights_info_by_tinker_path_async(tinker_path))

    async def copy_weights_async(
        self,
        path: str,
        destination_project_id: str | None = None,
        *,
        ttl_seconds: int | None = None,
        weights_access_token: str | None = None,
    ) -> str:
        """Copy a checkpoint (either kind) into a project (``destination_project_id``, else
        ``TINKER_PROJECT_ID``); the copy's tinker path. Storage is shared with the source; the copy belongs to a
        new training run that cannot be trained on. ``ttl_seconds``: 3600 to 10 years, or None for no expiry;
        ``weights_access_token`` reads a source of another account (sent as a header, never logged)."""
        request = CopyWeightsRequest(
            source_path=path, destination_project_id=_copy_destination(destination_project_id), ttl_seconds=ttl_seconds
        )
        headers = None
        if weights_access_token is not None:
            self.holder.redactor.add_secret_header(_WEIGHTS_ACCESS_TOKEN_HEADER)
            self.holder.redactor.add_secret_value(weights_access_token)
            headers = {_WEIGHTS_ACCESS_TOKEN_HEADER: weights_access_token}
        response: CopyWeightsResponse = await self._call(
            "copy_weights", CopyWeightsResponse, json=_without_none(request), headers=headers
        )
        logger.info("Copied %s to %s", path, response.tinker_path)
        return response.tinker_path

    def copy_weights(
        self,
        path: str,
        destination_project_id: str | None = None,
        *,
        ttl_seconds: int | None = None,
        weights_access_token: str | None = None,
    ) -> APIFuture[str]:
        destination_project_id = _copy_destination(destination_project_id)  # refused here, in the caller's stack
        return self._submit(
            self.copy_weights_async(
                path, destination_project_id, ttl_seconds=ttl_seconds, weights_access_token=weights_access_token
            )
        )

    async def get_external_weights_urls_async(self, tinker_path: str) -> ExternalWeightsUrlsResponse:
        """Signed download URLs, one per file, of an external-weights checkpoint
        (``tinker://<run>/external_weights/<name>``, made by ``TrainingClient.save_weights_external``)."""
        parsed = parse_tinker_path(tinker_path)
        if not parsed.checkpoint_id.startswith("external_weights/"):
            raise ValueError(
                "get_external_weights_urls only accepts external weights checkpoints "
                f"(tinker://<training_run_id>/external_weights/<name>), got {tinker_path!r}"
            )
        return await self._call("external_weights_urls", ExternalWeightsUrlsResponse, path_params=_path_params(tinker_path))

    def get_external_weights_urls(self, tinker_path: str) -> APIFuture[ExternalWeightsUrlsResponse]:
        return self._submit(self.get_external_weights_urls_async(tinker_path))

    # archive ---------------------------------------------------------------------------------------------
    async def get_checkpoint_archive_url_async(
        self, training_run_id: str, checkpoint_id: str
    ) -> CheckpointArchiveUrlResponse:
        """The signed download URL of a checkpoint archive (the server answers 302 with ``Location``/``Expires``).

        While the server is still building the archive (503, or 409 "already in progress") the retry layer waits
        and asks again: the manifest's ``archive_building`` rule (30 s, up to 6 requests in all), or this client's
        ``archive_retry``.
        """
        params = _checkpoint_params(training_run_id, checkpoint_id)
        label = f"run {training_run_id!r} checkpoint {checkpoint_id!r}"
        rule = self._archive_rule()
        try:
            # ``call`` raises for every non-2xx (the endpoint follows no redirects), with secrets masked.
            response = await self._call(
                "checkpoint_archive_url",
                None,
                path_params=params,
                extensions={RETRY_RULES: {ARCHIVE_RULE: rule}} if rule is not None and self.archive_retry else None,
            )
        except APIStatusError as error:
            if error.status_code == 302:
                return _archive_url_from_redirect(error.response, label)
            if rule is not None and error.status_code in rule.statuses:
                error.add_note(
                    f"the archive of {label} was still being built after {rule.max_attempts} requests; try again later"
                )
            raise
        raise RuntimeError(f"Expected a redirect response, got: {response.status_code} for the archive of {label}")

    def _archive_rule(self) -> RetryRuleSpec | None:
        """The manifest's archive rule with this client's ``archive_retry`` (None: the manifest has no such rule)."""
        policy = self.holder.manifest.retry_policy_for("checkpoint_archive_url")
        rule = policy.rules.get(ARCHIVE_RULE) if policy is not None else None
        if rule is None or self.archive_retry is None:
            return rule
        return msgspec.structs.replace(rule, wait_s=self.archive_retry.wait_s, max_attempts=self.archive_retry.max_attempts)

    def get_checkpoint_archive_url(
        self, training_run_id: str, checkpoint_id: str
    ) -> APIFuture[CheckpointArchiveUrlResponse]:
        return self._submit(self.get_checkpoint_archive_url_async(training_run_id, checkpoint_id))

    async def get_checkpoint_archive_url_from_tinker_path_async(self, tinker_path: str) -> CheckpointArchiveUrlResponse:
        parsed = parse_tinker_path(tinker_path)
        return await self.get_checkpoint_archive_url_async(parsed.training_run_id, parsed.checkpoint_id)

    def get_checkpoint_archive_url_from_tinker_path(self, tinker_path: str) -> APIFuture[CheckpointArchiveUrlResponse]:
        return self._submit(self.get_checkpoint_archive_url_from_tinker_path_async(tinker_path))

    # sessions and samplers -------------------------------------------------------------------------------
    async def get_session_async(self, session_id: str, access_scope: AccessScope = "owned") -> GetSessionResponse:
        return await self._call(
            "get_session",
            GetSessionResponse,
            path_params={"session_id": session_id},
            params={"access_scope": access_scope},
        )

    def get_session(self, session_id: str, access_scope: AccessScope = "owned") -> APIFuture[GetSessionResponse]:
        return self._submit(self.get_session_async(session_id, access_scope))

    async def list_sessions_async(
        self, limit: int = 20, offset: int = 0, access_scope: AccessScope = "owned"
    ) -> ListSessionsResponse:
        return await self._call(
            "list_sessions",
            ListSessionsResponse,
            params={"limit": limit, "offset": offset, "access_scope": access_scope},
        )

    def list_sessions(
        self, limit: int = 20, offset: int = 0, access_scope: AccessScope = "owned"
    ) -> APIFuture[ListSessionsResponse]:
        return self._submit(self.list_sessions_async(limit, offset, access_scope))

    async def search_sessions_async(self, request: SessionSearchRequest) -> SessionSearchResponse:
        # Decoded here with the wire types' hook: a session's status is a tagged union, which the manifest
        # client's plain decoder cannot resolve.
        found = await self._call("search_sessions", None, json=_without_none(request))
        return convert(found, SessionSearchResponse)

    def search_sessions(self, request: SessionSearchRequest) -> APIFuture[SessionSearchResponse]:
        """One page of this organization's sessions, newest first (experimental in the official SDK). Page on by
        passing each answer's ``next_cursor`` as the next request's ``cursor``."""
        return self._submit(self.search_sessions_async(request))

    async def assign_session_project_async(self, session_id: str, project_id: str) -> None:
        await self._call(
            "assign_session_project",
            path_params={"session_id": session_id},
            json=_AssignProjectRequest(project_id=project_id),
        )

    def assign_session_project(self, session_id: str, project_id: str) -> APIFuture[None]:
        """Move a session (and its training runs) into a project."""
        return self._submit(self.assign_session_project_async(session_id, project_id))

    async def export_session_trace_async(self, session_id: str) -> str:
        """Have the server build a Perfetto trace of the session (or reuse an up-to-date one), wait for it, and
        return its signed download URL (valid about an hour)."""
        first_poll = True
        while True:
            state = await self._call("export_session_trace", _TraceExportState, path_params={"session_id": session_id})
            if state.status == "ready":
                if not state.url:
                    raise RuntimeError(f"the trace export of session {session_id} is ready but has no URL")
                return state.url
            if state.status == "failed":
                raise RuntimeError(f"Trace export failed for session {session_id}: {state.error}")
            if first_poll:
                logger.warning("Building trace export for session: %s (this may take a while)", session_id)
                first_poll = False
            await asyncio.sleep(TRACE_EXPORT_POLL_INTERVAL_S)

    def export_session_trace(self, session_id: str) -> APIFuture[str]:
        return self._submit(self.export_session_trace_async(session_id))

    async def get_sampler_async(self, sampler_id: str) -> GetSamplerResponse:
        return await self._call("get_sampler", GetSamplerResponse, path_params={"sampler_id": sampler_id})

    def get_sampler(self, sampler_id: str) -> APIFuture[GetSamplerResponse]:
        return self._submit(self.get_sampler_async(sampler_id))

    # admin reports: official 0.38 moved them to AdminClient and keeps these as deprecated delegates -------------
    def _admin_client(self) -> AdminClient:
        return AdminClient(self.holder)

    def get_audit_log(
        self, event_type: AuditEventType = "all", day: date | None = None
    ) -> APIFuture[AuditLogResponse]:
        """Use :meth:`AdminClient.get_audit_log <tinkex.admin_client.AdminClient.get_audit_log>`."""
        return self._admin_client().get_audit_log(event_type, day)

    async def get_audit_log_async(
        self, event_type: AuditEventType = "all", day: date | None = None
    ) -> AuditLogResponse:
        return await self._admin_client().get_audit_log_async(event_type, day)

    def get_billing_usage(
        self, starting_on: datetime | str, ending_before: datetime | str
    ) -> APIFuture[BillingUsageResponse]:
        """Use :meth:`AdminClient.get_billing_usage <tinkex.admin_client.AdminClient.get_billing_usage>`."""
        return self._admin_client().get_billing_usage(starting_on, ending_before)

    async def get_billing_usage_async(
        self, starting_on: datetime | str, ending_before: datetime | str
    ) -> BillingUsageResponse:
        return await self._admin_client().get_billing_usage_async(starting_on, ending_before)

    def get_current_checkpoint_storage_usage(
        self, project_id: str | None = None
    ) -> APIFuture[CurrentCheckpointStorageUsageResponse]:
        """Use :meth:`AdminClient.get_current_checkpoint_storage_usage
        <tinkex.admin_client.AdminClient.get_current_checkpoint_storage_usage>`."""
        return self._admin_client().get_current_checkpoint_storage_usage(project_id)

    async def get_current_checkpoint_storage_usage_async(
        self, project_id: str | None = None
    ) -> CurrentCheckpointStorageUsageResponse:
        return await self._admin_client().get_current_checkpoint_storage_usage_async(project_id)


class _AssignProjectRequest(msgspec.Struct, kw_only=True):
    project_id: str


class _TraceExportState(msgspec.Struct, kw_only=True):
    """The trace_export poll answer (wire only, as in the official SDK, not a public type)."""

    status: Literal["pending", "ready", "failed"]
    url: str | None = None
    error: str | None = None


async def _paged(
    fetch: Callable[[int, int], Awaitable[tuple[list[T], int | None]]], page_size: int
) -> AsyncIterator[T]:
    """The items of ``fetch(limit, offset)`` pages until an empty page, the reported total, or (without a
    total) a short page."""
    offset = 0
    while True:
        items, total = await fetch(page_size, offset)
        for item in items:
            yield item
        offset += len(items)
        if not items or (offset >= total if total is not None else len(items) < page_size):
            return


def _without_none(request: msgspec.Struct) -> dict[str, Any]:
    """The body of a 0.38-only request as the official SDK sends it (``exclude_none``): unset options absent."""
    return {key: value for key, value in msgspec.to_builtins(request).items() if value is not None}


def _copy_destination(destination_project_id: str | None) -> str:
    destination = destination_project_id or os.environ.get(env_names.PROJECT_ID) or None
    if destination is None:
        raise ValueError("copy_weights needs destination_project_id= or the TINKER_PROJECT_ID environment variable")
    return destination


def _checkpoint_params(training_run_id: str, checkpoint_id: str) -> dict[str, str]:
    if "/" not in checkpoint_id:
        raise ValueError(
            f"checkpoint_id {checkpoint_id!r} lacks its kind: expected 'weights/<name>' or 'sampler_weights/<name>' "
            "(the part of the tinker path after the run id)"
        )
    return {"training_run_id": training_run_id, "checkpoint_id": checkpoint_id}


def _path_params(tinker_path: str) -> dict[str, str]:
    parsed = parse_tinker_path(tinker_path)
    return {"training_run_id": parsed.training_run_id, "checkpoint_id": parsed.checkpoint_id}


def _archive_url_from_redirect(response: httpx.Response, label: str) -> CheckpointArchiveUrlResponse:
    location = response.headers.get("location")
    if not location:
        raise RuntimeError(f"the archive endpoint for {label} answered 302 without a Location header")
    return CheckpointArchiveUrlResponse(url=location, expires=_parse_expires(response.headers.get("expires")))


def _parse_expires(value: str | None) -> datetime:
    """``Expires`` as an aware UTC datetime; missing or unparseable means 15 minutes from now (as the SDK)."""
    if value:
        try:
            return datetime.strptime(value.strip(), _EXPIRES_FORMAT).replace(tzinfo=timezone.utc)
        except ValueError:
            logger.debug("unparseable Expires header on the archive redirect: %r", value)
    return datetime.now(timezone.utc) + _DEFAULT_ARCHIVE_URL_LIFETIME
