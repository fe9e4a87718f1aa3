"""0.38 records and unions: session status / finish / search, batched future completions, billing, audit and
storage records, DmelChunk, external checkpoints, and the exception hierarchy at the package top level."""

from __future__ import annotations

import json
import typing
import warnings
from datetime import datetime, timezone
from typing import Any

import msgspec
import pytest

import tinkex
from tinkex.types import (
    AuditLogResponse,
    BillingUsageResponse,
    Checkpoint,
    ClientFinishedSessionStatusQuery,
    ClientSessionFinished,
    ClientSessionFinishErrored,
    CurrentCheckpointStorageUsageResponse,
    DmelChunk,
    FinishSessionRequest,
    FutureFailed,
    FutureFinished,
    FutureRetrieveResponse,
    FuturesRetrieveRequest,
    FuturesRetrieveResponse,
    GetSessionResponse,
    ModelID,
    ModelInput,
    OwnSearchOwner,
    ParsedCheckpointTinkerPath,
    RequestID,
    SamplingPrefillBillingEvent,
    SamplingSessionFuturesTarget,
    SaveWeightsExternalResponse,
    SaveWeightsForSamplerResponse,
    SaveWeightsResponse,
    SessionActive,
    SessionFailed,
    SessionFailedRequestReason,
    SessionSearchCursor,
    SessionSearchRequest,
    SessionSearchResponse,
    SessionStatus,
    StorageBillingEvent,
    TelemetryBatch,
    TryAgainResponse,
    UserSearchOwner,
)
from tinkex.types.codec import decode, encode
from tinkex.types.tensor_container import tensor_container_shape

WHEN = datetime(2026, 1, 2, 3, 0, tzinfo=timezone.utc)


# --- session finish / status / search ------------------------------------------------------------------------
@pytest.mark.parametrize("status", ["success", "errored", "interrupted"])
def test_the_finish_body_is_what_close_sends(status: str) -> None:
    body = FinishSessionRequest.for_status(status, "done")  # type: ignore[arg-type]
    assert json.loads(encode(body)) == {"reason": {"type": status}, "detail": "done"}
    assert decode(encode(body), FinishSessionRequest) == body


def test_an_unknown_finish_status_is_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="'crashed'"):
        FinishSessionRequest.for_status("crashed")  # type: ignore[arg-type]
    with pytest.raises(msgspec.ValidationError, match="unknown ClientSessionFinishReason type 'crashed'"):
        decode(b'{"reason":{"type":"crashed"}}', FinishSessionRequest)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"type":"active"}', SessionActive()),
        (b'{"type":"client_finished","reason":{"type":"errored"},"detail":"x"}',
         ClientSessionFinished(reason=ClientSessionFinishErrored(), detail="x")),
        (b'{"type":"failed","category":"user","message":"m","reason":{"type":"request","request_id":"r","request_type":"sample"}}',
         SessionFailed(category="user", message="m", reason=SessionFailedRequestReason(request_id="r", request_type="sample"))),
    ],
)
def test_session_status_variants_decode_by_type(body: bytes, expected: SessionStatus) -> None:
    assert decode(body, SessionStatus) == expected
    assert decode(encode(expected), SessionStatus) == expected  # the server's encoding keeps `type`


def test_session_search_round_trip() -> None:
    request = SessionSearchRequest(
        owner=UserSearchOwner(owner_urns=["urn:u"]),
        statuses=[ClientFinishedSessionStatusQuery(reasons=["success"])],
        cursor=SessionSearchCursor(last_created_at=WHEN, last_session_id="s0"),
    )
    assert decode(encode(request), SessionSearchRequest) == request
    assert SessionSearchRequest().owner == OwnSearchOwner() and SessionSearchRequest().limit == 50
    body = (
        b'{"sessions":[{"session_id":"s","created_at":"2026-01-02T03:00:00Z","owner":"o","project_id":"p",'
        b'"checkpoints_count":2,"status":{"type":"active"},"extra":1}],"next_cursor":null}'
    )
    response = decode(body, SessionSearchResponse)
    assert response.sessions[0].status == SessionActive() and response.sessions[0].checkpoints_count == 2


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SessionSearchRequest(limit=0), "limit must be 1 to 200"),
        (lambda: SessionSearchRequest(display_name=""), "display_name"),
        (lambda: SessionSearchRequest(statuses=[]), "statuses"),
        (lambda: UserSearchOwner(owner_urns=[]), "1 to 10"),
        (lambda: ClientFinishedSessionStatusQuery(reasons=[]), "reasons"),
        (lambda: SessionSearchCursor(last_created_at=datetime(2026, 1, 1), last_session_id="s"), "timezone-aware"),
    ],
)
def test_search_arguments_are_checked(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_get_session_reads_038_fields_and_016_bodies() -> None:
    assert decode(b'{"training_run_ids":[],"sampler_ids":[]}', GetSessionResponse).display_name is None
    body = b'{"training_run_ids":["r"],"sampler_ids":[],"display_name":"n","user_metadata":{"k":"v"}}'
    assert decode(body, GetSessionResponse).user_metadata == {"k": "v"}


# --- batched future polling ----------------------------------------------------------------------------------
def test_retrieve_futures_shapes() -> None:
    request = FuturesRetrieveRequest(target=SamplingSessionFuturesTarget(sampling_session_id="s:sample:0"), timeout=0)
    assert json.loads(encode(request)) == {
        "target": {"type": "sampling_session", "sampling_session_id": "s:sample:0", "cloned_sampler_id": 0},
        "prev_cursor": 0, "timeout": 0, "retrieved_request_ids": [],
    }
    body = b'{"completions":[{"state":"finished","request_id":"a","response_payload_uncompressed_size":9},{"state":"failed","request_id":"b"}],"cursor":4}'
    response = decode(body, FuturesRetrieveResponse)
    assert response.completions == [FutureFinished(request_id="a", response_payload_uncompressed_size=9), FutureFailed(request_id="b")]
    assert decode(encode(response), FuturesRetrieveResponse) == response
    with pytest.raises(msgspec.ValidationError, match="unknown FutureCompletion state 'lost'"):
        decode(b'{"completions":[{"state":"lost","request_id":"a"}],"cursor":1}', FuturesRetrieveResponse)


def test_future_retrieve_response_names_every_reply() -> None:
    members = set(typing.get_args(FutureRetrieveResponse))
    assert {TryAgainResponse, SaveWeightsExternalResponse} <= members and len(members) == 10
    assert ModelID is str and RequestID is str


# --- billing, audit, storage ---------------------------------------------------------------------------------
def test_billing_usage_decodes_each_event_kind() -> None:
    body = (
        b'{"data":[{"bucket_start":"2026-01-02T03:00:00Z","bucket_end":"2026-01-02T04:00:00Z",'
        b'"event_info":{"type":"sampling_prefill","cached":true,"token_count":7}},'
        b'{"bucket_start":"2026-01-02T03:00:00Z","bucket_end":"2026-01-02T04:00:00Z",'
        b'"event_info":{"type":"storage","gigabyte_hours":1.5}}],"sessions":{"s":{"user_metadata":{"a":"b"}}}}'
    )
    usage = decode(body, BillingUsageResponse)
    assert usage.data[0].event_info == SamplingPrefillBillingEvent(cached=True, token_count=7)
    assert usage.data[1].event_info == StorageBillingEvent(gigabyte_hours=1.5, free=False)
    assert usage.sessions["s"].user_metadata == {"a": "b"} and usage.cost_data_through is None
    assert decode(encode(usage), BillingUsageResponse) == usage


def test_audit_and_storage_records_decode() -> None:
    audit = decode(b'{"entries":[{"timestamp":"2026-01-02T03:00:00Z","event":"checkpoint_read"}]}', AuditLogResponse)
    assert audit.entries[0].event_details == {} and audit.entries[0].model_id is None
    storage = decode(
        b'{"data":[{"checkpoint_count":2,"size_bytes":10,"size_gigabytes":1e-8}]}', CurrentCheckpointStorageUsageResponse
    )
    assert storage.data[0].checkpoint_count == 2 and storage.effective_rate_usd_per_gigabyte_month is None


# --- DmelChunk -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "shape"),
    [
        (bytes([1, 2, 5, 3]), (5, 3)),
        (bytes([254, 1, 1, 0x96, 0x01]), (150,)),  # constant marker, then a two-byte varint
        (bytes([3, 0]), ()),
    ],
)
def test_tensor_container_shape_reads_the_header(header: bytes, shape: tuple[int, ...]) -> None:
    assert tensor_container_shape(header + b"payload-ignored") == shape


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "empty"), (bytes([9, 1, 1]), "unknown dtype byte 9"), (bytes([1, 2, 5]), "truncated"), (bytes([254]), "truncated")],
)
def test_tensor_container_header_errors_name_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tensor_container_shape(data)


def test_dmel_chunk_length_and_wire() -> None:
    chunk = DmelChunk(dmel=bytes([1, 2, 5, 3]))
    assert chunk.length == 5 and chunk.type == "dmel"
    model_input = ModelInput(chunks=[chunk])
    assert json.loads(encode(model_input)) == {"chunks": [{"dmel": "AQIFAw=="}]}
    assert decode(encode(model_input), ModelInput) == model_input
    assert decode(b'{"chunks":[{"type":"dmel","dmel":"AQIFAw=="}]}', ModelInput).length == 5


# --- checkpoints ---------------------------------------------------------------------------------------------
def test_external_checkpoints_parse_and_carry_metadata() -> None:
    parsed = ParsedCheckpointTinkerPath.from_tinker_path("tinker://run/external_weights/export")
    assert (parsed.checkpoint_type, parsed.checkpoint_id) == ("external", "external_weights/export")
    body = b'{"checkpoint_id":"c","checkpoint_type":"external","time":"2026-01-02T03:00:00Z","tinker_path":"t","user_metadata":{"a":"b"}}'
    assert decode(body, Checkpoint).user_metadata == {"a": "b"}


def test_telemetry_batches_of_both_releases_read() -> None:
    batch = decode(b'{"events":[],"platform":"Linux","sdk_version":"0.38.0","session_id":"s","process_uuid":"u"}', TelemetryBatch)
    assert batch.process_uuid == "u"
    assert decode(b'{"events":[],"platform":"Linux","sdk_version":"0.16.1","session_id":"s"}', TelemetryBatch).process_uuid is None


# --- exceptions ----------------------------------------------------------------------------------------------
OFFICIAL_HIERARCHY = [
    ("APIError", "TinkerError"),
    ("APIStatusError", "APIError"),
    ("APIConnectionError", "APIError"),
    ("APITimeoutError", "APIConnectionError"),
    ("APIResponseValidationError", "APIError"),
    ("BadRequestError", "APIStatusError"),
    ("AuthenticationError", "APIStatusError"),
    ("BillingError", "APIStatusError"),
    ("PermissionDeniedError", "APIStatusError"),
    ("NotFoundError", "APIStatusError"),
    ("ConflictError", "APIStatusError"),
    ("UnprocessableEntityError", "APIStatusError"),
    ("RateLimitError", "APIStatusError"),
    ("InternalServerError", "APIStatusError"),
    ("RequestFailedError", "TinkerError"),
    ("SidecarError", "TinkerError"),
    ("SidecarStartupError", "SidecarError"),
    ("SidecarDiedError", "SidecarError"),
    ("SidecarIPCError", "SidecarError"),
]


@pytest.mark.parametrize(("name", "base"), OFFICIAL_HIERARCHY)
def test_exceptions_at_the_top_level_keep_the_official_hierarchy(name: str, base: str) -> None:
    assert issubclass(getattr(tinkex, name), getattr(tinkex, base))
    assert name in tinkex.__all__


def test_every_tinkex_exception_export_is_a_tinker_error() -> None:
    exported = [getattr(tinkex, n) for n in tinkex.__all__ if isinstance(getattr(tinkex, n, None), type)]
    errors = [e for e in exported if issubclass(e, Exception) and not issubclass(e, Warning)]
    outside = sorted(e.__name__ for e in errors if not issubclass(e, tinkex.TinkerError))
    # FutureTimeoutError is a builtin TimeoutError, as the official result(timeout) raises.
    assert outside == ["FutureTimeoutError"]


def test_experimental_warning_is_a_future_warning() -> None:
    assert issubclass(tinkex.ExperimentalWarning, FutureWarning)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        warnings.warn("x", tinkex.ExperimentalWarning, stacklevel=1)
    assert caught[0].category is tinkex.ExperimentalWarning


# --- helper methods the official types expose ----------------------------------------------------------------
def test_checkpoint_responses_link_to_the_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKER_CONSOLE_URL", "http://console.local/")
    saved = SaveWeightsResponse(path="tinker://run-1/weights/step 2")
    assert saved.get_console_url() == "http://console.local/checkpoints/run-1/weights%2Fstep%202"
    sampler = SaveWeightsForSamplerResponse(path="tinker://run-1/sampler_weights/final")
    assert sampler.get_console_url() == "http://console.local/checkpoints/run-1/sampler_weights%2Ffinal"
    assert sampler.get_playground_url() == (
        "http://console.local/playground?mode=checkpoint&checkpoint=tinker%3A%2F%2Frun-1%2Fsampler_weights%2Ffinal"
    )
    with pytest.raises(ValueError, match="invalid tinker path"):
        SaveWeightsResponse(path="not-a-path").get_console_url()


@pytest.mark.parametrize("chunk_type", ["ImageChunk", "DmelChunk"])
def test_bytes_fields_have_the_official_base64_hooks(chunk_type: str) -> None:
    cls = getattr(tinkex.types, chunk_type)
    field = "data" if chunk_type == "ImageChunk" else "dmel"
    validate, serialize = getattr(cls, f"validate_{field}"), f"serialize_{field}"
    assert validate("AQID") == b"\x01\x02\x03" and validate(b"\x01") == b"\x01"
    chunk = cls(data=b"\x01", format="png") if chunk_type == "ImageChunk" else cls(dmel=b"\x01\x00")
    assert getattr(chunk, serialize)(b"\x01\x02\x03") == "AQID"
    with pytest.raises(ValueError):
        validate("not base64!")


def test_datum_convert_tensors_is_016s_pre_validation_hook() -> None:
    data = {"loss_fn_inputs": {"target_tokens": [1, 2], "weights": [1, 0]}, "model_input": ModelInput.empty()}
    converted = tinkex.types.Datum.convert_tensors(data)
    assert converted["loss_fn_inputs"]["weights"].dtype == "float32" and data["loss_fn_inputs"]["weights"] == [1, 0]
    assert tinkex.types.Datum.convert_tensors("as is") == "as is"
