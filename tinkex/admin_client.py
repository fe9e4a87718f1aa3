"""``AdminClient`` (0.38): the REST operations that need an organization admin or billing-admin role: the audit
log, hourly billing usage and current checkpoint storage.

Constructed like :class:`~tinkex.rest_client.RestClient` (``base_url`` / ``api_key``, else the environment, and no
session) and sharing its connections; ``RestClient``'s deprecated admin methods hand their holder over. As
everywhere in tinkex, the sync methods return an :class:`~tinkex.api_future.APIFuture` at once (awaitable, or
``.result()``) and each has an ``*_async`` twin that runs on the caller's event loop.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from .api_future import APIFuture, in_background
from .holder import Holder
from .rest_holder import rest_holder
from .telemetry import Telemetry
from .types import (
    AuditLogResponse,
    BillingUsageResponse,
    CurrentCheckpointStorageUsageResponse,
    GetBillingUsageRequest,
    GetCurrentCheckpointStorageUsageRequest,
)
from .types.codec import convert

__all__ = ["AdminClient", "AuditEventType"]

AuditEventType = Literal["all", "checkpoints", "projects", "teams", "organizations"]
"""Which resource's events an audit log query returns (:meth:`AdminClient.get_audit_log`)."""


class AdminClient:
    """Organization-level reports: ``get_audit_log`` (admin role), ``get_billing_usage`` and
    ``get_current_checkpoint_storage_usage`` (admin or billing-admin role).

    ``AdminClient()`` stands alone (``base_url`` and ``api_key``, else ``TINKER_BASE_URL`` / ``TINKER_API_KEY``);
    ``_holder`` is for ``RestClient``, which hands over its own, and cannot be combined with them.
    """

    def __init__(
        self,
        _holder: Holder | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
    ) -> None:
        self.holder = rest_holder("AdminClient", _holder, base_url=base_url, api_key=api_key)

    def __repr__(self) -> str:
        return f"AdminClient(base_url={self.holder.config.base_url!r})"

    def get_telemetry(self) -> Telemetry | None:
        return self.holder.telemetry

    async def _get(self, endpoint: str, params: dict[str, Any]) -> Any:
        """The endpoint's JSON as plain data, decoded by the caller with the wire types' hook (billing events are
        a tagged union, which the manifest client's plain decoder cannot resolve)."""
        return await self.holder.clients().http.call(endpoint, result_type=None, params=params)

    # audit log -------------------------------------------------------------------------------------------
    async def get_audit_log_async(
        self, event_type: AuditEventType = "all", day: date | None = None
    ) -> AuditLogResponse:
        params: dict[str, Any] = {"event_type": event_type}
        if day is not None:
            params["day"] = day.isoformat()
        return convert(await self._get("get_audit_log", params), AuditLogResponse)

    def get_audit_log(
        self, event_type: AuditEventType = "all", day: date | None = None
    ) -> APIFuture[AuditLogResponse]:
        """The organization's audit log of ``day`` (midnight to midnight UTC; today when ``None``), oldest first;
        ``event_type`` keeps one resource's events (``"checkpoints"``, ``"projects"``, ``"teams"``,
        ``"organizations"``)."""
        return in_background(self.get_audit_log_async(event_type, day))

    # billing usage ---------------------------------------------------------------------------------------
    async def get_billing_usage_async(
        self, starting_on: datetime | str, ending_before: datetime | str
    ) -> BillingUsageResponse:
        return await self._billing_usage(_billing_request(starting_on, ending_before))

    def get_billing_usage(
        self, starting_on: datetime | str, ending_before: datetime | str
    ) -> APIFuture[BillingUsageResponse]:
        """Hourly-bucketed usage events of ``[starting_on, ending_before)``: both on UTC hour boundaries (RFC 3339
        strings or datetimes), the start not in the future, the window at most 14 days (the server refuses
        others with a ``BadRequestError`` naming the parameter). Estimated costs are gross, before credits."""
        request = _billing_request(starting_on, ending_before)  # a wrong type fails here, in the caller's stack
        return in_background(self._billing_usage(request))

    async def _billing_usage(self, request: GetBillingUsageRequest) -> BillingUsageResponse:
        found = await self._get("get_billing_usage", request.model_dump(mode="json", exclude_none=True))
        return convert(found, BillingUsageResponse)

    # checkpoint storage ----------------------------------------------------------------------------------
    async def get_current_checkpoint_storage_usage_async(
        self, project_id: str | None = None
    ) -> CurrentCheckpointStorageUsageResponse:
        request = GetCurrentCheckpointStorageUsageRequest(project_id=project_id)
        params = request.model_dump(mode="json", exclude_none=True)
        found = await self._get("get_current_checkpoint_storage_usage", params)
        return convert(found, CurrentCheckpointStorageUsageResponse)

    def get_current_checkpoint_storage_usage(
        self, project_id: str | None = None
    ) -> APIFuture[CurrentCheckpointStorageUsageResponse]:
        """Current checkpoint count and size, grouped by project and owner: the whole organization's, or one
        project's."""
        return in_background(self.get_current_checkpoint_storage_usage_async(project_id))


def _billing_request(starting_on: datetime | str, ending_before: datetime | str) -> GetBillingUsageRequest:
    """The typed query: a value that is neither a datetime nor an RFC 3339 string raises ``ValidationError``
    naming the parameter; datetimes go on the wire as RFC 3339."""
    return GetBillingUsageRequest(starting_on=starting_on, ending_before=ending_before)  # type: ignore[arg-type]
