"""tinkex types <-> the 0.38 dialect's protobuf messages (docs/wire.md §13, Appendix A).

Three bodies travel as protobuf in that dialect: the ``forward_backward`` request (``forward`` is the same message
with ``forward_only``), and the results of forward/backward and sample futures when a poll asks for
``application/x-protobuf``. This module turns each into bytes and back, through the messages generated from
``tinkex/proto/tinker_public.proto``; it knows nothing of HTTP. Numeric arrays are little-endian packed ``bytes``,
built and read by the standard library's :mod:`array` in one C call each, so a client whose data are plain Python
lists never loads numpy (12 MiB of memory); data that already are numpy arrays go through numpy, which is loaded
then anyway.

Conventions the protocol fixes (and the official SDK reads): tokens are int32; tensor data is float32 or int64
(int32 widens to int64 and bfloat16 to float32 on the way in); a missing prompt logprob is NaN; an empty top-k
cell is token 0 with logprob ``MASK_LOGPROB``; ``BatchedTensor.offsets`` are int64 *byte* offsets, one more than
the datums; a ``loss_fn_config`` number is written to both the legacy map and ``loss_fn_config_v2``, and v2 wins
when read.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from google.protobuf.message import DecodeError, Message

from tinkex import types as t
from tinkex.proto import tinker_public_pb2 as pb
from tinkex.types.sampling import MASK_LOGPROB, TopkEntries

__all__ = [
    "ProtobufBodyError",
    "decode_forward_backward_output",
    "decode_forward_backward_request",
    "decode_sample_response",
    "encode_forward_backward_output",
    "encode_forward_backward_request",
    "encode_sample_response",
]

_Message = TypeVar("_Message", bound=Message)


class ProtobufBodyError(ValueError):
    """A protobuf body that does not parse, or holds something its tinkex type cannot (the message says what)."""


_STOP_REASONS: dict[str, int] = {"stop": pb.STOP_REASON_STOP, "length": pb.STOP_REASON_LENGTH}
_STOP_REASON_NAMES: dict[int, t.StopReason] = {pb.STOP_REASON_STOP: "stop", pb.STOP_REASON_LENGTH: "length"}
_PROTO_DTYPE: dict[str, int] = {"float32": pb.DTYPE_FLOAT32, "int64": pb.DTYPE_INT64}


# packed arrays: the standard library's ``array``, whose item codes are C types of the platform's widths


def _code(kind: str, size: int) -> str:
    """The ``array`` type code whose items are ``size`` bytes of ``kind`` on this platform."""
    for code in kind:
        if array(code).itemsize == size:
            return code
    raise ImportError(f"this platform's array module has no {size}-byte type among {kind!r}")  # pragma: no cover


_INT32 = _code("ilh", 4)
_INT64 = _code("qlL", 8)
_FLOAT32 = _code("f", 4)
_UINT16 = _code("HI", 2)
_LITTLE_ENDIAN = sys.byteorder == "little"
_TYPE_NAMES: dict[str, str] = {_INT32: "int32", _INT64: "int64", _FLOAT32: "float32", _UINT16: "uint16"}
_NUMPY_TYPES: dict[str, str] = {_INT32: "<i4", _INT64: "<i8", _FLOAT32: "<f4"}
_TENSOR_CODE: dict[str, str] = {"float32": _FLOAT32, "int64": _INT64}
_READ_CODE: dict[int, tuple[str, t.TensorDtype]] = {
    pb.DTYPE_FLOAT32: (_FLOAT32, "float32"),
    pb.DTYPE_INT64: (_INT64, "int64"),
    pb.DTYPE_INT32: (_INT32, "int64"),
    pb.DTYPE_BFLOAT16: (_UINT16, "float32"),
}


def _numpy_bytes(values: Any, code: str) -> bytes:
    """What numpy makes of ``values`` as little-endian ``code`` items: for arrays (numpy is loaded already) and
    for lists only numpy's conversion accepts (floats for an integer type, ``None`` as NaN, numeric strings)."""
    import numpy as np

    return np.asarray(values, dtype=_NUMPY_TYPES[code]).tobytes()


def _pack(values: Any, code: str) -> bytes:
    """``values`` (a list of numbers, or an array) as packed little-endian ``code`` items."""
    if type(values) is list or type(values) is tuple:
        try:
            packed = array(code, values)
        except (TypeError, ValueError, OverflowError):
            return _numpy_bytes(values, code)  # numpy converts or refuses them, as it always did
        if not _LITTLE_ENDIAN:
            packed.byteswap()
        return packed.tobytes()
    return _numpy_bytes(values, code)


def _unpack(raw: bytes, code: str, where: str) -> list[Any]:
    """The Python numbers of packed little-endian ``code`` items."""
    values = array(code)
    if len(raw) % values.itemsize:
        raise ProtobufBodyError(f"{where}: {len(raw)} bytes is not a whole number of {_TYPE_NAMES[code]} values")
    values.frombytes(raw)
    if not _LITTLE_ENDIAN:
        values.byteswap()
    return values.tolist()


def _parsed(message_type: type[_Message], body: bytes) -> _Message:
    message = message_type()
    try:
        message.ParseFromString(body)
    except DecodeError as exc:
        raise ProtobufBodyError(f"body is not a valid tinker_public.{message_type.__name__}: {exc}") from None
    return message


# tensors


def _tensor_bytes(tensor: t.TensorData) -> bytes:
    code = _TENSOR_CODE.get(tensor.dtype)
    if code is None:
        raise ProtobufBodyError(f"TensorData dtype {tensor.dtype!r} has no protobuf form (float32 or int64 only)")
    return _pack(tensor.data, code)


def _write_tensor(message: pb.Tensor, tensor: t.TensorData) -> None:
    message.dtype = _PROTO_DTYPE[tensor.dtype] if tensor.dtype in _PROTO_DTYPE else pb.DTYPE_UNSPECIFIED
    message.dense = _tensor_bytes(tensor)
    if tensor.shape is not None:
        message.shape.extend(tensor.shape)  # type: ignore[arg-type]  # reads as None while unset


def _widened(raw: bytes, proto_dtype: int, where: str) -> tuple[list[Any], t.TensorDtype]:
    """The values of a packed array as Python floats or ints, with the public dtype they read as."""
    known = _READ_CODE.get(proto_dtype)
    if known is None:
        raise ProtobufBodyError(f"{where}: unsupported protobuf dtype {proto_dtype}")
    code, public = known
    if proto_dtype == pb.DTYPE_BFLOAT16:
        if len(raw) % 2:
            raise ProtobufBodyError(f"{where}: {len(raw)} bytes is not a whole number of uint16 values")
        # bfloat16 is a float32's upper half: each little-endian pair becomes the high bytes of four.
        widened = bytearray(2 * len(raw))
        widened[2::4] = raw[0::2]
        widened[3::4] = raw[1::2]
        return _unpack(bytes(widened), _FLOAT32, where), public
    return _unpack(raw, code, where), public


def _dense_from_csr(
    csr: pb.SparseCsr, proto_dtype: int, shape: list[int], where: str
) -> tuple[list[Any], t.TensorDtype]:
    """The row-major dense values of a CSR tensor (zero where it holds nothing), with their public dtype."""
    values, public = _widened(csr.values, proto_dtype, where)
    rows = _unpack(csr.crow_indices, _INT64, where)
    columns = _unpack(csr.col_indices, _INT64, where)
    if len(shape) != 2 or len(rows) != shape[0] + 1 or len(columns) != len(values):
        raise ProtobufBodyError(f"{where}: sparse CSR tensor does not match its shape {shape}")
    height, width = shape
    dense: list[Any] = [0.0 if public == "float32" else 0] * (height * width)
    for row in range(height):
        if not 0 <= rows[row] <= rows[row + 1] <= len(values):
            raise ProtobufBodyError(f"{where}: sparse CSR row offsets {rows} do not index its {len(values)} values")
        for index in range(rows[row], rows[row + 1]):
            column = columns[index]
            if not 0 <= column < width:
                raise ProtobufBodyError(f"{where}: sparse CSR column {column} is outside shape {shape}")
            dense[row * width + column] = values[index]
    return dense, public


def _read_tensor(message: pb.Tensor, where: str) -> t.TensorData:
    shape = list(message.shape)
    if message.HasField("sparse_csr"):
        values, public = _dense_from_csr(message.sparse_csr, message.dtype, shape, where)
    else:
        values, public = _widened(message.dense, message.dtype, where)
    if shape and math.prod(shape) != len(values):
        raise ProtobufBodyError(f"{where}: {len(values)} values do not fill shape {shape}")
    if shape:
        return t.TensorData.model_construct(data=values, dtype=public, shape=shape)
    return t.TensorData.model_construct(data=values, dtype=public)


# forward_backward request


def _write_chunk(message: pb.Chunk, chunk: Any) -> None:
    if isinstance(chunk, t.EncodedTextChunk):
        message.encoded_text.tokens = _pack(chunk.tokens, _INT32)
    elif isinstance(chunk, t.ImageChunk):
        message.image.data = chunk.data
        message.image.format = chunk.format
        if chunk.expected_tokens is not None:
            message.image.expected_tokens = chunk.expected_tokens  # type: ignore[assignment]
    elif isinstance(chunk, t.DmelChunk):
        message.dmel.dmel = chunk.dmel
    else:
        raise ProtobufBodyError(f"{type(chunk).__name__} has no protobuf form (encoded_text, image or dmel only)")


def _read_chunk(message: pb.Chunk, where: str) -> Any:
    kind = message.WhichOneof("chunk")
    if kind == "encoded_text":
        raw = message.encoded_text.tokens
        if len(raw) % 4:
            raise ProtobufBodyError(f"{where}: {len(raw)} token bytes is not a whole number of int32 tokens")
        return t.EncodedTextChunk.model_construct(tokens=_unpack(raw, _INT32, where))
    if kind == "image":
        image = message.image
        if image.HasField("expected_tokens"):
            return t.ImageChunk(data=image.data, format=image.format, expected_tokens=image.expected_tokens)
        return t.ImageChunk(data=image.data, format=image.format)
    if kind == "dmel":
        return t.DmelChunk(dmel=message.dmel.dmel)
    raise ProtobufBodyError(f"{where}: chunk has no content")


def _write_spans(target: Any, spans: Iterable[t.PromptProvenanceSpan | t.SampledProvenanceSpan]) -> None:
    for span in spans:
        message = target.add()
        arm = message.sampled_tokens if isinstance(span, t.SampledProvenanceSpan) else message.prompt_tokens
        arm.sequence_id = span.sequence_id
        arm.offset = span.offset
        arm.length = span.length


def _read_spans(messages: Iterable[pb.ProvenanceSpan], where: str) -> list[Any]:
    spans: list[Any] = []
    for message in messages:
        kind = message.WhichOneof("span")
        if kind == "prompt_tokens":
            arm, span_type = message.prompt_tokens, t.PromptProvenanceSpan
        elif kind == "sampled_tokens":
            arm, span_type = message.sampled_tokens, t.SampledProvenanceSpan
        else:
            raise ProtobufBodyError(f"{where}: provenance span has neither prompt_tokens nor sampled_tokens")
        try:
            spans.append(span_type(sequence_id=arm.sequence_id, offset=arm.offset, length=arm.length))
        except ValueError as exc:
            raise ProtobufBodyError(f"{where}: {exc}") from None
    return spans


def encode_forward_backward_request(request: t.ForwardBackwardRequest | t.ForwardRequest) -> bytes:
    """The ``tinker_public.ForwardBackwardRequest`` body; a :class:`ForwardRequest` sets ``forward_only``."""
    forward_only = isinstance(request, t.ForwardRequest)
    fb_input = request.forward_input if isinstance(request, t.ForwardRequest) else request.forward_backward_input
    message = pb.ForwardBackwardRequest(
        model_id=request.model_id,
        seq_id=request.seq_id if request.seq_id is not None else 0,
        loss_fn=fb_input.loss_fn,
        forward_only=forward_only,
    )
    for name, value in (fb_input.loss_fn_config or {}).items():
        if isinstance(value, str):
            message.loss_fn_config_v2[name].text = value
        else:
            # Numbers go to both maps: a server that predates v2 reads the legacy one.
            message.loss_fn_config[name] = float(value)
            message.loss_fn_config_v2[name].number = float(value)
    for datum in fb_input.data:
        datum_message = message.data.add()
        for chunk in datum.model_input.chunks:
            _write_chunk(datum_message.model_input.add(), chunk)
        for name, tensor in datum.loss_fn_inputs.items():
            _write_tensor(datum_message.loss_fn_inputs[name], tensor)
        if datum.model_input_spans is not None:
            _write_spans(datum_message.model_input_spans, datum.model_input_spans)  # type: ignore[arg-type]
        if datum.loss_fn_input_spans is not None:
            _write_spans(datum_message.loss_fn_input_spans, datum.loss_fn_input_spans)  # type: ignore[arg-type]
    return message.SerializeToString()


def _read_loss_fn_config(message: pb.ForwardBackwardRequest) -> dict[str, float | str] | None:
    if message.loss_fn_config_v2:
        config: dict[str, float | str] = {}
        for name, value in message.loss_fn_config_v2.items():
            kind = value.WhichOneof("value")
            if kind is None:
                raise ProtobufBodyError(f"loss_fn_config_v2[{name!r}] has neither number nor text")
            config[name] = value.number if kind == "number" else value.text
        return config
    if message.loss_fn_config:
        return dict(message.loss_fn_config.items())
    return None


def decode_forward_backward_request(body: bytes) -> t.ForwardBackwardRequest | t.ForwardRequest:
    """The request a ``tinker_public.ForwardBackwardRequest`` body carries (a ForwardRequest if ``forward_only``)."""
    message = _parsed(pb.ForwardBackwardRequest, body)
    data: list[t.Datum] = []
    for index, datum_message in enumerate(message.data):
        where = f"data[{index}]"
        chunks = [_read_chunk(chunk, f"{where}.model_input") for chunk in datum_message.model_input]
        inputs = {
            name: _read_tensor(tensor, f"{where}.loss_fn_inputs[{name!r}]")
            for name, tensor in datum_message.loss_fn_inputs.items()
        }
        fields: dict[str, Any] = {"loss_fn_inputs": inputs, "model_input": t.ModelInput(chunks=chunks)}
        # An absent list is the official writer's None (it writes spans only when set), so one list alone is the
        # half pair Datum refuses.
        if datum_message.model_input_spans:
            fields["model_input_spans"] = _read_spans(datum_message.model_input_spans, where)
        if datum_message.loss_fn_input_spans:
            fields["loss_fn_input_spans"] = _read_spans(datum_message.loss_fn_input_spans, where)
        try:
            data.append(t.Datum(**fields))
        except ValueError as exc:
            raise ProtobufBodyError(f"{where}: {exc}") from None
    fb_input = t.ForwardBackwardInput(data=data, loss_fn=message.loss_fn, loss_fn_config=_read_loss_fn_config(message))
    if message.forward_only:
        return t.ForwardRequest(forward_input=fb_input, model_id=message.model_id, seq_id=message.seq_id)
    return t.ForwardBackwardRequest(forward_backward_input=fb_input, model_id=message.model_id, seq_id=message.seq_id)


# forward_backward result


def _field_signature(output: Mapping[str, t.TensorData]) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    """What must agree for datums to share one ArrayRecord: field names, dtypes and trailing shapes."""
    signature = []
    for name, tensor in sorted(output.items()):
        shape = tensor.shape if tensor.shape is not None else [len(tensor.data)]
        signature.append((name, tensor.dtype, tuple(shape[1:])))  # type: ignore[index]
    return tuple(signature)


def _runs(outputs: list[t.LossFnOutput]) -> list[list[t.LossFnOutput]]:
    """Consecutive datums grouped while their signature holds (a ragged field starts a new record)."""
    runs: list[list[t.LossFnOutput]] = []
    previous: object = None
    for output in outputs:
        signature = _field_signature(output)
        if not runs or signature != previous:
            runs.append([])
            previous = signature
        runs[-1].append(output)
    return runs


def encode_forward_backward_output(output: t.ForwardBackwardOutput) -> bytes:
    """The ``tinker_public.ForwardBackwardOutput`` body: per field, all datums' values in one packed array."""
    message = pb.ForwardBackwardOutput(loss_fn_output_type=output.loss_fn_output_type)
    message.metrics.update({name: float(value) for name, value in output.metrics.items()})
    for run in _runs(output.loss_fn_outputs):
        record = message.loss_fn_outputs.add(num_datums=len(run))
        for name, dtype, trailing in _field_signature(run[0]):
            packed = [_tensor_bytes(datum[name]) for datum in run]
            offsets = [0]
            for piece in packed:
                offsets.append(offsets[-1] + len(piece))
            batched = record.fields[name]
            batched.data = b"".join(packed)
            batched.offsets = _pack(offsets, _INT64)
            batched.dtype = _PROTO_DTYPE[dtype]
            batched.trailing_shape.extend(trailing)
    return message.SerializeToString()


def decode_forward_backward_output(body: bytes) -> t.ForwardBackwardOutput:
    message = _parsed(pb.ForwardBackwardOutput, body)
    outputs: list[t.LossFnOutput] = []
    for index, record in enumerate(message.loss_fn_outputs):
        datums: list[t.LossFnOutput] = [{} for _ in range(record.num_datums)]
        for name, batched in record.fields.items():
            where = f"loss_fn_outputs[{index}].fields[{name!r}]"
            raw_code = _READ_CODE.get(batched.dtype)
            if raw_code is None:
                raise ProtobufBodyError(f"{where}: unsupported protobuf dtype {batched.dtype}")
            values, public = _widened(batched.data, batched.dtype, where)
            item_size = array(raw_code[0]).itemsize
            offsets = [offset // item_size for offset in _unpack(batched.offsets, _INT64, f"{where}.offsets")]
            if len(offsets) != record.num_datums + 1 or (len(offsets) and offsets[-1] != len(values)):
                raise ProtobufBodyError(f"{where}: offsets do not cover {record.num_datums} datums")
            trailing = list(batched.trailing_shape)
            per_row = math.prod(trailing) if trailing else 1
            for datum_index in range(record.num_datums):
                piece = values[offsets[datum_index] : offsets[datum_index + 1]]
                leading = len(piece) // per_row if per_row else 0
                datums[datum_index][name] = t.TensorData.model_construct(
                    data=piece, dtype=public, shape=[leading, *trailing]
                )
        outputs.extend(datums)
    return t.ForwardBackwardOutput(
        loss_fn_output_type=message.loss_fn_output_type.rsplit(":", 1)[-1] or "ArrayRecord",
        loss_fn_outputs=outputs,
        metrics=dict(message.metrics.items()),
    )


# sample result


def _write_topk(message: pb.TopkLogprobs, entries: TopkEntries) -> None:
    """The dense ``length x k`` form (``TopkLogprobs.from_lists``, row-major, without building numpy arrays)."""
    k = max((len(row) for row in entries if row), default=0)
    token_ids: list[Any] = [0] * (len(entries) * k)
    logprobs: list[Any] = [MASK_LOGPROB] * (len(entries) * k)
    for position, row in enumerate(entries):
        for cell, (token_id, logprob) in enumerate(row or (), start=position * k):
            token_ids[cell] = token_id
            logprobs[cell] = logprob
    message.token_ids = _pack(token_ids, _INT32)
    message.logprobs = _pack(logprobs, _FLOAT32)
    message.length, message.k = len(entries), k


def _read_topk(message: pb.TopkLogprobs, where: str) -> TopkEntries:
    """The list form (``topk_to_lists``): per position, its non-empty cells as pairs, or None for none."""
    length, k = message.length, message.k
    if len(message.token_ids) != 4 * length * k or len(message.logprobs) != 4 * length * k:
        raise ProtobufBodyError(f"{where}: top-k arrays do not hold {length} x {k} cells")
    if k == 0:
        return [None] * length
    token_ids = _unpack(message.token_ids, _INT32, where)
    logprobs = _unpack(message.logprobs, _FLOAT32, where)
    rows: TopkEntries = []
    for start in range(0, length * k, k):
        cells = zip(token_ids[start : start + k], logprobs[start : start + k], strict=True)
        pairs = [(token_id, logprob) for token_id, logprob in cells if not (token_id == 0 and logprob == MASK_LOGPROB)]
        rows.append(pairs or None)
    return rows


def encode_sample_response(response: t.SampleResponse) -> bytes:
    message = pb.SampleResponse(prompt_cache_hit_tokens=response.prompt_cache_hit_tokens)
    for sequence in response.sequences:
        sequence_message = message.sequences.add(
            stop_reason=_STOP_REASONS[sequence.stop_reason],
            tokens=_pack(sequence.tokens, _INT32),
        )
        if sequence.logprobs is not None:
            sequence_message.logprobs = _pack(sequence.logprobs, _FLOAT32)
        if sequence.topk_logprobs is not None:
            _write_topk(sequence_message.topk_sampled_logprobs, sequence.topk_logprobs)
    if response.prompt_logprobs is not None:
        missing = float("nan")
        values = [missing if value is None else value for value in response.prompt_logprobs]
        message.prompt_logprobs = _pack(values, _FLOAT32)
    if response.topk_prompt_logprobs is not None:
        _write_topk(message.topk_prompt_logprobs, response.topk_prompt_logprobs)
    if response.target_prompt_logprobs is not None:
        _write_tensor(message.target_prompt_logprobs, response.target_prompt_logprobs)
    if response.prompt_alt_tokens is not None:
        _write_tensor(message.prompt_alt_tokens.tokens, response.prompt_alt_tokens.tokens)
        _write_tensor(message.prompt_alt_tokens.logprobs, response.prompt_alt_tokens.logprobs)
    return message.SerializeToString()


def decode_sample_response(body: bytes) -> t.SampleResponse:
    """The result of a sample future. ``sequence_id`` stays None: it comes from the future's ``sample_sequence_ids``."""
    message = _parsed(pb.SampleResponse, body)
    sequences: list[t.SampledSequence] = []
    for index, sequence in enumerate(message.sequences):
        where = f"sequences[{index}]"
        stop_reason = _STOP_REASON_NAMES.get(sequence.stop_reason)
        if stop_reason is None:
            raise ProtobufBodyError(f"{where}: unknown stop_reason {sequence.stop_reason}")
        tokens, _ = _widened(sequence.tokens, pb.DTYPE_INT32, f"{where}.tokens")
        logprobs = None
        if sequence.HasField("logprobs"):
            logprobs = _widened(sequence.logprobs, pb.DTYPE_FLOAT32, f"{where}.logprobs")[0]
        topk = None
        if sequence.HasField("topk_sampled_logprobs"):
            topk = _read_topk(sequence.topk_sampled_logprobs, f"{where}.topk_sampled_logprobs")
        sequences.append(
            t.SampledSequence(stop_reason=stop_reason, tokens=tokens, logprobs=logprobs, topk_logprobs=topk)
        )
    prompt_logprobs: list[float | None] | None = None
    if message.HasField("prompt_logprobs"):
        values = _widened(message.prompt_logprobs, pb.DTYPE_FLOAT32, "prompt_logprobs")[0]
        prompt_logprobs = [None if value != value else value for value in values]  # NaN: not scored
    alt = None
    if message.HasField("prompt_alt_tokens"):
        alt = t.PromptAltTokens(
            tokens=_read_tensor(message.prompt_alt_tokens.tokens, "prompt_alt_tokens.tokens"),
            logprobs=_read_tensor(message.prompt_alt_tokens.logprobs, "prompt_alt_tokens.logprobs"),
        )
    return t.SampleResponse(
        sequences=sequences,
        prompt_logprobs=prompt_logprobs,
        topk_prompt_logprobs=(
            _read_topk(message.topk_prompt_logprobs, "topk_prompt_logprobs")
            if message.HasField("topk_prompt_logprobs")
            else None
        ),
        prompt_cache_hit_tokens=message.prompt_cache_hit_tokens,
        target_prompt_logprobs=(
            _read_tensor(message.target_prompt_logprobs, "target_prompt_logprobs")
            if message.HasField("target_prompt_logprobs")
            else None
        ),
        prompt_alt_tokens=alt,
    )
