"""TensorData: a flattened numeric array with dtype and shape (`docs/wire.md` §1.6).

numpy and torch are imported only inside the helpers that convert to and from them, so ``import tinkex``
stays light (numpy alone is a third of its memory).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, cast

import msgspec
from msgspec import UNSET, UnsetType

from ._base import DECODING, RequestStruct, unset_reads_as

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import torch

__all__ = ["TensorData", "TensorDtype", "flat_tensor_data"]

TensorDtype = Literal["int64", "float32"]


class _FlatInts(msgspec.Struct, array_like=True):
    value: list[int]


class _FlatFloats(msgspec.Struct, array_like=True):
    value: list[float]


_FLAT_BY_DTYPE: dict[str, type[_FlatInts] | type[_FlatFloats]] = {"int64": _FlatInts, "float32": _FlatFloats}


def flat_tensor_data(values: list[Any] | tuple[Any, ...], dtype: TensorDtype | None) -> TensorData | None:
    """A one-dimensional TensorData of plain Python numbers, converted in C by msgspec (ints to floats for
    ``float32``); ``dtype=None`` takes the values' kind (all ints: int64, else float32). ``None`` when the
    values need numpy: nested lists, bools, numpy scalars, floats for ``int64``, anything not a number."""
    try:
        if dtype is None:
            try:
                data = msgspec.convert((values,), _FlatInts).value
                return TensorData.model_construct(data=data, dtype="int64", shape=[len(data)])
            except msgspec.ValidationError:
                dtype = "float32"
        data = msgspec.convert((values,), _FLAT_BY_DTYPE[dtype]).value
    except msgspec.ValidationError:
        return None
    return TensorData.model_construct(data=data, dtype=dtype, shape=[len(data)])


def _tensor_dtype_for_numpy(dtype: np.dtype[Any]) -> TensorDtype:
    """Wire dtype for a numpy dtype: kind ``f`` -> float32, kind ``i`` -> int64, anything else is an error."""
    if dtype.kind == "f":
        return "float32"
    if dtype.kind == "i":
        return "int64"
    raise ValueError(f"unsupported numpy dtype {dtype} for TensorData: only float and signed int kinds")


@unset_reads_as(shape=None)
class TensorData(RequestStruct, kw_only=True):
    data: list[int | float]
    """Flattened values (row-major)."""
    dtype: TensorDtype
    shape: list[int] | None | UnsetType = UNSET
    """Dense shape; absent/None means one-dimensional."""

    def _after_conversion(self) -> None:
        # As in the official TensorData (a float32 numpy array inside), float32 data reads as floats. Skipped
        # for values already checked (decoded JSON, this module's own constructors, which give floats).
        if self.dtype == "float32" and not DECODING.trusted:
            try:
                floats = msgspec.convert((self.data,), _FlatFloats).value
            except msgspec.ValidationError:
                return  # a lenient construction's leftovers: kept as given
            msgspec.structs.force_setattr(self, "data", floats)

    @classmethod
    def from_numpy(cls, array: npt.NDArray[Any]) -> TensorData:
        # tolist() gives fresh Python numbers: nothing to check or convert.
        return cls.model_construct(
            data=array.reshape(-1).tolist(), dtype=_tensor_dtype_for_numpy(array.dtype), shape=list(array.shape)
        )

    @classmethod
    def from_torch(cls, tensor: torch.Tensor) -> TensorData:
        dtype: TensorDtype = "float32" if tensor.dtype.is_floating_point else "int64"
        return cls.model_construct(
            data=tensor.detach().cpu().reshape(-1).tolist(), dtype=dtype, shape=list(tensor.shape)
        )

    def _shape(self) -> list[int] | None:
        # ``shape`` reads as None while unset (see ``unset_reads_as``); type checkers only see the declared union.
        return cast("list[int] | None", self.shape)

    def to_numpy(self) -> npt.NDArray[Any]:
        import numpy as np

        array = np.asarray(self.data, dtype=np.float32 if self.dtype == "float32" else np.int64)
        shape = self._shape()
        return array if shape is None else array.reshape(shape)

    def to_torch(self) -> torch.Tensor:
        try:
            import torch
        except ImportError as exc:  # pragma: no cover - torch is an optional extra
            raise ImportError("PyTorch is not installed; install tinkex[torch] for TensorData.to_torch") from exc
        torch_dtype = torch.float32 if self.dtype == "float32" else torch.int64
        tensor = torch.tensor(self.data, dtype=torch_dtype)
        shape = self._shape()
        return tensor if shape is None else tensor.reshape(shape)

    def tolist(self) -> list[Any]:
        """Nested Python lists following ``shape``."""
        shape = self._shape()
        if shape is None or len(shape) == 1:
            return list(self.data)
        result: list[Any] = self.to_numpy().tolist()
        return result
