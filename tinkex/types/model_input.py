"""ModelInput and its chunks (`docs/wire.md` §1.6).

Chunks go out without their ``type`` discriminator unless the caller set it (``{"tokens":[...]}``), so a
decoder infers the variant from the keys present. ``ImageChunk.data`` is raw bytes in Python and base64 on
the wire (msgspec's native ``bytes`` encoding).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any, Literal, Protocol, cast

import msgspec
from msgspec import UNSET, UnsetType

from ._base import InferredUnion, RequestStruct, unset_reads_as
from .tensor_container import tensor_container_shape

__all__ = [
    "DmelChunk",
    "EncodedTextChunk",
    "ImageAssetPointerChunk",
    "ImageChunk",
    "ImageFormat",
    "ModelInput",
    "ModelInputChunk",
]

ImageFormat = Literal["png", "jpeg"]


class TextEncoder(Protocol):
    """What :meth:`ModelInput.from_text` needs of a tokenizer: a :class:`tinkex.tokenizer.Tokenizer`, or a Hugging
    Face one. Structural, so the types need not import the tokenizer module (which imports the types)."""

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]: ...


class ModelInputChunk(InferredUnion):
    """The chunk union: ``EncodedTextChunk | ImageChunk | ImageAssetPointerChunk | DmelChunk``.

    Narrow with ``isinstance`` before touching variant fields; every variant has ``length``.
    """

    __slots__ = ()

    @property
    def length(self) -> int:
        """Number of context positions the chunk occupies."""
        raise NotImplementedError

    @classmethod
    def variant_for(cls, obj: dict[str, Any]) -> type[msgspec.Struct]:
        tag = obj.get("type")
        tagged = _CHUNK_BY_TYPE.get(tag) if isinstance(tag, str) else None
        if tagged is not None:
            return tagged
        for key, variant in _CHUNK_BY_KEY:
            if key in obj:
                return variant
        raise ValueError(
            f"cannot tell the ModelInputChunk variant from keys {sorted(obj)}: "
            "expected `tokens` (encoded_text), `data` (image), `location` (image_asset_pointer) or `dmel` (dmel)"
        )


@unset_reads_as(type="encoded_text")
class EncodedTextChunk(RequestStruct, ModelInputChunk, kw_only=True):
    tokens: list[int]
    type: Literal["encoded_text"] | UnsetType = UNSET

    @property
    def length(self) -> int:
        return len(self.tokens)


def _bytes_from_wire(value: bytes | str) -> bytes:
    return base64.b64decode(value, validate=True) if isinstance(value, str) else value


def _bytes_to_wire(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _image_length(chunk: ImageChunk | ImageAssetPointerChunk) -> int:
    expected = cast("int | None", chunk.expected_tokens)  # reads as None while unset (``unset_reads_as``)
    if expected is None:
        raise ValueError(
            f"{type(chunk).__name__}.expected_tokens is not set, so its context length is unknown"
        )
    return expected


@unset_reads_as(expected_tokens=None, type="image")
class ImageChunk(RequestStruct, ModelInputChunk, kw_only=True):
    data: bytes
    format: ImageFormat
    expected_tokens: int | None | UnsetType = UNSET
    type: Literal["image"] | UnsetType = UNSET

    @classmethod
    def validate_data(cls, value: bytes | str) -> bytes:
        """The image bytes from raw bytes or their base64 text (the official validator's contract)."""
        return _bytes_from_wire(value)

    def serialize_data(self, value: bytes) -> str:
        """``value`` as the base64 text the JSON carries."""
        return _bytes_to_wire(value)

    @property
    def length(self) -> int:
        return _image_length(self)


@unset_reads_as(expected_tokens=None, type="image_asset_pointer")
class ImageAssetPointerChunk(RequestStruct, ModelInputChunk, kw_only=True):
    format: ImageFormat
    location: str
    expected_tokens: int | None | UnsetType = UNSET
    type: Literal["image_asset_pointer"] | UnsetType = UNSET

    @property
    def length(self) -> int:
        return _image_length(self)


@unset_reads_as(type="dmel")
class DmelChunk(RequestStruct, ModelInputChunk, kw_only=True):
    """[0.38] DMel model tokens: ``dmel`` is a serialized TensorContainer (base64 on the wire) whose first
    dimension is the number of positions."""

    dmel: bytes
    type: Literal["dmel"] | UnsetType = UNSET

    @classmethod
    def validate_dmel(cls, value: bytes | str) -> bytes:
        """The TensorContainer bytes from raw bytes or their base64 text (the official validator's contract)."""
        return _bytes_from_wire(value)

    def serialize_dmel(self, value: bytes) -> str:
        """``value`` as the base64 text the JSON carries."""
        return _bytes_to_wire(value)

    @property
    def length(self) -> int:
        shape = tensor_container_shape(self.dmel)
        if not shape:
            raise ValueError("DmelChunk.dmel holds a scalar TensorContainer, so its context length is unknown")
        return shape[0]


_CHUNK_BY_TYPE: dict[str, type[msgspec.Struct]] = {
    "encoded_text": EncodedTextChunk,
    "image": ImageChunk,
    "image_asset_pointer": ImageAssetPointerChunk,
    "dmel": DmelChunk,
}
_CHUNK_BY_KEY: tuple[tuple[str, type[msgspec.Struct]], ...] = (
    ("tokens", EncodedTextChunk),
    ("location", ImageAssetPointerChunk),
    ("data", ImageChunk),
    ("dmel", DmelChunk),
)


class ModelInput(RequestStruct, kw_only=True):
    """A sequence of chunks. Immutable: ``append``/``append_int`` return a new ModelInput."""

    chunks: list[ModelInputChunk]

    @classmethod
    def from_ints(cls, tokens: Iterable[int]) -> ModelInput:
        return cls(chunks=[EncodedTextChunk(tokens=list(tokens))])

    @classmethod
    def empty(cls) -> ModelInput:
        return cls(chunks=[])

    @classmethod
    def from_text(cls, text: str, tokenizer: TextEncoder) -> ModelInput:
        """Tokenize ``text`` with a :class:`tinkex.tokenizer.Tokenizer` (see ``tinkex.get_tokenizer``), special
        tokens added as the model does."""
        return cls.from_ints(tokenizer.encode(text, add_special_tokens=True))

    def to_ints(self) -> list[int]:
        """All tokens in order; raises ``ValueError`` if any chunk is not an ``EncodedTextChunk``."""
        tokens: list[int] = []
        for index, chunk in enumerate(self.chunks):
            if not isinstance(chunk, EncodedTextChunk):
                raise ValueError(
                    f"to_ints needs only EncodedTextChunks, chunk {index} is {type(chunk).__name__}"
                )
            tokens.extend(chunk.tokens)
        return tokens

    @property
    def length(self) -> int:
        """Total context length (sum of chunk lengths)."""
        return sum(chunk.length for chunk in self.chunks)

    def append(self, chunk: ModelInputChunk) -> ModelInput:
        return ModelInput(chunks=[*self.chunks, chunk])

    def append_int(self, token: int) -> ModelInput:
        return self.append(EncodedTextChunk(tokens=[token]))
