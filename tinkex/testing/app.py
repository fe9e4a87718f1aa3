"""The raw ASGI app: routing, auth, strict decoding, replay of re-sent writes, the ledger and fault injection.

What each endpoint does lives in :mod:`tinkex.testing.handlers`; this module is the request pipeline around it:

1. route by method and path (404 / 405 otherwise) and record the request in the ledger;
2. check ``X-API-Key`` (401; with JWTs on, a live JWT of this server: :mod:`.jwt_tokens`);
3. decode the body into the endpoint's request type (400 bad JSON or an unknown field, 422 naming any other
   wrong field; both dialects decode: 0.16's minimal bodies and 0.38's with defaults and ``type`` tags, and 0.38's
   protobuf ``forward_backward`` bodies, see :mod:`.dialect`; 415 for protobuf elsewhere), then apply a matching
   "before" fault (delay, status reply or dropped connection), which wins over a decode error: nothing executes;
4. for writes, answer a re-send (same idempotency key, or same seq identity) from the replay cache;
5. execute, record the execution (in the ledger, the account journal of the admin endpoints and, with a state
   directory, the write journal) and cache the reply; with a state directory the reply waits for ``state.json``;
6. apply a matching "after" fault: the operation ran but its answer is lost.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import msgspec

from tinkex.types import codec

from . import dialect, jwt_tokens, request_rules
from .dedup import CachedReply
from .deprecation import deprecation_headers
from .faults import FaultKind, FaultPhase
from .handlers import Call, Operation, Rejection, Result, TinkerApi
from .hosting import Connections
from .ledger import Execution
from .replies import Reply, error_reply, json_reply, validation_error_reply

__all__ = ["TinkerApp"]

_log = logging.getLogger("tinkex.testing.server")

_RESPOND: frozenset[FaultKind] = frozenset({"respond"})
_UNAUTHENTICATED = frozenset({"healthz", "download"})
"""Download links are signed URLs: the token in the path is the credential, as with the hosted storage URLs."""

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _Dropped(Exception):
    """The connection was cut on purpose; nothing may be sent."""


class TinkerApp:
    def __init__(self, api: TinkerApi, connections: Connections) -> None:
        self.api = api
        self.faults = api.faults
        self.ledger = api.ledger
        self.replay = api.replay
        self.connections = connections
        self._persist_lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            reply = await self._handle(scope, receive)
        except _Dropped:
            return
        config = self.api.config
        headers = reply.raw_headers + deprecation_headers(config.deprecation_note, config.deprecation_level)
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    async def _handle(self, scope: Scope, receive: Receive) -> Reply:
        method: str = scope["method"]
        path: str = scope["path"]
        headers = _headers(scope)
        found = self.api.route(method, path)
        endpoint = found.operation.endpoint if found.operation else "unknown"
        query = scope["query_string"].decode("latin-1")
        index = self.ledger.record_received(endpoint, method, path, f"HTTP/{scope['http_version']}", headers, query)
        status: int | None = None
        try:
            body = await _read_body(receive)
            if found.operation is None:
                reply = error_reply(405 if found.path_known else 404, f"no endpoint {method} {path}")
            else:
                call = Call(
                    endpoint=endpoint,
                    params=found.params,
                    query=parse_qs(query, keep_blank_values=True),
                    headers=headers,
                    base_url=_base_url(scope, headers),
                )
                reply = await self._run(found.operation, call, body, scope)
            status = reply.status
            return reply
        except _Dropped:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug in a handler must still answer, and say what broke
            _log.exception("local server: %s %s failed", method, path)
            status = 500
            return error_reply(500, f"internal error in {endpoint}: {type(exc).__name__}: {exc}")
        finally:
            if status is not None:
                self.ledger.record_status(index, status)

    async def _run(self, operation: Operation, call: Call, body: bytes, scope: Scope) -> Reply:
        if operation.endpoint not in _UNAUTHENTICATED:
            refusal = jwt_tokens.authenticate(
                call,
                jwt_enabled=self.api.config.client_config.pjwt_auth_enabled,
                issuer=self.api.jwt,
                check_api_key=self.api.check_api_key,
            )
            if refusal is not None:  # 401; with JWTs on, a key or stale token is refused as invalid_token
                return refusal

        # Decoded before the fault so that a poll fault can match on whose future is polled.
        content_type = call.headers.get("content-type")
        invalid = dialect.json_refused(operation.endpoint, content_type, self.api.config.json_training_bodies)
        invalid = invalid or self._decode(operation, call, body)
        invalid = request_rules.refusal(operation.endpoint, call.body) if invalid is None else invalid  # range: 400
        polled = operation.polled_endpoint(call.body) if operation.polled_endpoint and invalid is None else None
        fault_reply = await self._fault(operation.endpoint, "before", polled, scope)
        if fault_reply is not None:
            return fault_reply
        if invalid is not None:
            return invalid

        if operation.mutates:
            reply = self._execute_once(operation, call)
            if self.api.registry.state_dir is not None:
                await self._persist()
        else:
            try:
                outcome = operation.handler(call)
                reply = (await outcome if inspect.isawaitable(outcome) else outcome).reply
            except Rejection as rejection:
                reply = rejection.reply

        fault_reply = await self._fault(operation.endpoint, "after", polled, scope)
        return fault_reply if fault_reply is not None else reply

    @staticmethod
    def _decode(operation: Operation, call: Call, body: bytes) -> Reply | None:
        """Set ``call.body`` to the decoded request; the 400/422 reply if the body does not decode."""
        if operation.request_type is None:
            return None
        if dialect.is_protobuf(call.headers.get("content-type")):
            if not operation.accepts_protobuf:
                return error_reply(415, f"{operation.endpoint} takes a JSON body, not {dialect.PROTOBUF}")
            decoded = dialect.protobuf_request(body, call.headers.get("content-encoding"))
            if isinstance(decoded, Reply):
                return decoded
            call.body = decoded
            return None
        try:
            call.body = codec.decode(body, operation.request_type)
        except msgspec.ValidationError as exc:
            reply = validation_error_reply(exc)
            # A field the server does not know is a bad request, as the hosted service answers it; other shape errors
            # (missing or mistyped fields) stay 422 like FastAPI's. Both name the field.
            return Reply(400, reply.body, reply.headers) if "unknown field" in str(exc) else reply
        except msgspec.DecodeError as exc:
            return error_reply(400, f"request body is not valid JSON: {exc}")
        return None

    def _execute_once(self, operation: Operation, call: Call) -> Reply:
        """Run a write unless it already ran. Synchronous on purpose: no other request can interleave."""
        key = call.headers.get("x-idempotency-key")
        seq = operation.seq_identity(call.body) if operation.seq_identity is not None else None
        cached = self.replay.lookup(key, seq)
        if cached is not None:
            return cached.reply
        try:
            outcome = operation.handler(call)
        except Rejection as rejection:
            return rejection.reply  # nothing ran, so a re-send must be judged afresh
        if inspect.isawaitable(outcome):
            raise TypeError(f"handler of write endpoint {operation.endpoint} must be synchronous")
        result: Result = outcome
        if result.reply.status >= 400:
            return result.reply
        self.replay.store(key, seq, CachedReply(result.reply, result.request_id))
        execution = Execution(
            endpoint=call.endpoint,  # a forward_only forward_backward body is recorded as the forward it is
            idempotency_key=key,
            model_id=result.model_id,
            seq_id=seq[1] if seq else None,
            session_id=result.session_id,
            request_id=result.request_id,
            time=time.monotonic(),
            outcome="failed" if result.failed else "ok",
            seq_scope=seq[0] if seq else None,
        )
        self.ledger.record_execution(execution)
        journal = self.api.journal
        if journal is not None:
            future = self.api.futures.get(result.request_id) if result.request_id is not None else None
            journal.record_execution(execution, key, seq, result.reply, future)
        self.api.admin_endpoints.observe(call, result)
        return result.reply

    async def _fault(self, endpoint: str, phase: FaultPhase, polled: str | None, scope: Scope) -> Reply | None:
        """Apply the first matching respond rule: sleep, then cut the connection or build its reply.

        ``None`` when no rule fires or the rule only delays.
        """
        rule = self.faults.take(endpoint, _RESPOND, phase, polled)
        if rule is None:
            return None
        if rule.delay > 0:
            await asyncio.sleep(rule.delay)
        if rule.drop_connection:
            self.connections.abort(tuple(scope["client"]))  # type: ignore[arg-type]
            raise _Dropped
        if rule.status is None:
            return None
        if isinstance(rule.body, bytes):
            headers = tuple((name.lower().encode(), value.encode()) for name, value in rule.headers.items())
            return Reply(rule.status, rule.body, headers)
        body = rule.body if rule.body is not None else {"detail": f"injected fault: HTTP {rule.status}"}
        return json_reply(body, rule.status, dict(rule.headers))

    async def _persist(self) -> None:
        async with self._persist_lock:
            # The position is read with the dump, on the loop: the state written includes exactly those executions.
            journal = self.api.journal
            dump = self.api.registry.dump(journal.position if journal is not None else 0)
            await asyncio.to_thread(self.api.registry.write_dump, dump)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Dropped
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _headers(scope: Scope) -> dict[str, str]:
    """Lower-case names; a repeated header (the archive call sends two Accepts) is joined with ", "."""
    merged: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        merged[name] = f"{merged[name]}, {value}" if name in merged else value
    return merged


def _base_url(scope: Scope, headers: dict[str, str]) -> str:
    host = headers.get("host") or headers.get(":authority")
    if not host:
        server_host, server_port = scope["server"]
        host = f"{server_host}:{server_port}"
    return f"{scope['scheme']}://{host}"
