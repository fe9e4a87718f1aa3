"""Byte estimates of the official SDK 0.16.1 (docs/wire.md §4.1, §4.3)."""

from __future__ import annotations

import numpy as np

from tinkex.estimate import BYTES_PER_NUMBER, estimate_datum_bytes, estimate_model_input_bytes
from tinkex.types import Datum, EncodedTextChunk, ImageAssetPointerChunk, ImageChunk, ModelInput
from tinkex.types.codec import decode


def test_tokens_count_ten_bytes_each() -> None:
    assert BYTES_PER_NUMBER == 10
    assert estimate_model_input_bytes(ModelInput.from_ints([1, 2, 3])) == 30
    assert estimate_model_input_bytes(ModelInput.empty()) == 0


def test_images_count_raw_bytes_and_pointers_their_location() -> None:
    model_input = ModelInput(
        chunks=[
            EncodedTextChunk(tokens=[1, 2]),
            ImageChunk(data=b"x" * 300, format="png"),
            ImageAssetPointerChunk(format="jpeg", location="s3://bucket/cat.jpg"),
        ]
    )
    assert estimate_model_input_bytes(model_input) == 20 + 300 + len("s3://bucket/cat.jpg")


def test_image_estimate_uses_decoded_bytes_not_the_base64_text() -> None:
    decoded = decode(b'{"chunks":[{"data":"AAAAAAAA","format":"png"}]}', ModelInput)
    assert estimate_model_input_bytes(decoded) == 6


def test_datum_adds_ten_bytes_per_tensor_element() -> None:
    datum = Datum(
        loss_fn_inputs={"target_tokens": [2, 3, 4, 5], "weights": np.ones((2, 3), dtype=np.float32)},
        model_input=ModelInput.from_ints([1, 2, 3, 4]),
    )
    assert estimate_datum_bytes(datum) == 4 * 10 + (4 + 6) * 10
