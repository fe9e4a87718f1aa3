"""The header of a TensorContainer blob (what ``DmelChunk.dmel`` holds): its shape, without the payload.

Layout: an optional constant-tensor marker byte (254), a dtype byte (0-7), then the number of dimensions and
each dimension as LEB128 varints.
"""

from __future__ import annotations

__all__ = ["tensor_container_shape"]

_CONSTANT_MARKER = 254
_DTYPE_BYTES = range(0, 8)
_MAX_VARINT_SHIFT = 63


def _varint(data: bytes, offset: int) -> tuple[int, int]:
    """(value, offset after it) of the LEB128 varint at ``offset``."""
    value = 0
    shift = 0
    while offset < len(data):
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7
        if shift > _MAX_VARINT_SHIFT:
            raise ValueError("TensorContainer header has a varint longer than 64 bits")
    raise ValueError("TensorContainer header is truncated")


def tensor_container_shape(data: bytes) -> tuple[int, ...]:
    """The tensor's shape, read from the header alone."""
    if not data:
        raise ValueError("TensorContainer bytes are empty")
    offset = 1 if data[0] == _CONSTANT_MARKER else 0
    if offset >= len(data):
        raise ValueError("TensorContainer header is truncated")
    if data[offset] not in _DTYPE_BYTES:
        raise ValueError(f"TensorContainer header has unknown dtype byte {data[offset]}")
    ndim, offset = _varint(data, offset + 1)
    shape = []
    for _ in range(ndim):
        dim, offset = _varint(data, offset)
        shape.append(dim)
    return tuple(shape)
