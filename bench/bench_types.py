"""What building, encoding and decoding the wire types costs: the user-facing constructors (``Datum``,
``ModelInput``, ``SamplingParams``) with their construction-time conversion, and the codec paths around them.

Run: ``pytest bench/bench_types.py --benchmark-enable`` (the repo's addopts disable benchmarks, so plain runs
just smoke-test), or ``python bench/bench_types.py`` for a table of microseconds per operation (best of
``--repeats`` timeit runs). The script measures whichever ``tinkex`` it imports, so the same file gives the
before/after pair: ``PYTHONPATH=/path/to/old/checkout python bench/bench_types.py``.

Sizes follow the client workloads (``_local_server.Sizes``): 64-token datums, 32-token prompts, batches of 8.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _local_server import SIZES  # noqa: E402  (the bench dir is put on the path just above)

from tinkex import types  # noqa: E402
from tinkex.types import codec  # noqa: E402

DATUM_TOKENS = [(7 * i) % 200 + 1 for i in range(SIZES.datum_tokens + 1)]
PROMPT_TOKENS = [(11 * i) % 200 + 1 for i in range(SIZES.prompt_tokens)]


def _datum_from_lists() -> Any:
    return types.Datum(
        model_input=types.ModelInput.from_ints(DATUM_TOKENS[:-1]),
        loss_fn_inputs={"target_tokens": DATUM_TOKENS[1:], "weights": [1.0] * (len(DATUM_TOKENS) - 1)},
    )


def _case_datum_from_numpy() -> Callable[[], Any]:
    import numpy as np

    targets = np.asarray(DATUM_TOKENS[1:], dtype=np.int64)
    weights = np.ones(len(DATUM_TOKENS) - 1, dtype=np.float32)
    model_input = types.ModelInput.from_ints(DATUM_TOKENS[:-1])
    return lambda: types.Datum(model_input=model_input, loss_fn_inputs={"target_tokens": targets, "weights": weights})


def _case_datum_from_tensor_data() -> Callable[[], Any]:
    built = _datum_from_lists()
    model_input, inputs = built.model_input, dict(built.loss_fn_inputs)
    return lambda: types.Datum(model_input=model_input, loss_fn_inputs=inputs)


def _forward_backward_body() -> bytes:
    request = types.ForwardBackwardRequest(
        forward_backward_input=types.ForwardBackwardInput(
            data=[_datum_from_lists() for _ in range(SIZES.batch)], loss_fn="cross_entropy"
        ),
        model_id="model-1",
        seq_id=1,
    )
    return codec.encode(request)


def _case_encode_forward_backward() -> Callable[[], Any]:
    request = codec.decode(_forward_backward_body(), types.ForwardBackwardRequest)
    return lambda: codec.encode(request)


def _case_decode_forward_backward() -> Callable[[], Any]:
    body = _forward_backward_body()
    return lambda: codec.decode(body, types.ForwardBackwardRequest)


def _case_decode_sample_response() -> Callable[[], Any]:
    tokens = PROMPT_TOKENS[: SIZES.max_tokens]
    body = codec.encode(
        {"type": "sample", "sequences": [{"stop_reason": "length", "tokens": tokens, "logprobs": [-0.5] * len(tokens)}]}
    )
    return lambda: codec.decode(body, types.SampleResponse)


CASES: dict[str, Callable[[], Callable[[], Any]]] = {
    "SamplingParams(max_tokens, temperature)": lambda: lambda: types.SamplingParams(max_tokens=16, temperature=0.7),
    "SamplingParams()": lambda: types.SamplingParams,
    "ModelInput.from_ints(32)": lambda: lambda: types.ModelInput.from_ints(PROMPT_TOKENS),
    "ModelInput(chunks=[EncodedTextChunk(32)])": lambda: lambda: types.ModelInput(
        chunks=[types.EncodedTextChunk(tokens=PROMPT_TOKENS)]
    ),
    "Datum(lists of 64)": lambda: _datum_from_lists,
    "Datum(numpy arrays of 64)": _case_datum_from_numpy,
    "Datum(TensorData values)": _case_datum_from_tensor_data,
    "encode ForwardBackwardRequest (8 x 64)": _case_encode_forward_backward,
    "decode ForwardBackwardRequest (8 x 64)": _case_decode_forward_backward,
    "decode SampleResponse (16 tokens)": _case_decode_sample_response,
}
"""Name -> a factory of the operation to time (set-up happens in the factory, outside the timing)."""


@pytest.mark.parametrize("name", list(CASES))
def test_types(benchmark: Any, name: str) -> None:
    operation = CASES[name]()
    benchmark(operation)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["us_per_op"] = benchmark.stats.stats.median * 1e6


def measure(repeats: int, number: int) -> dict[str, float]:
    """Microseconds per operation, best of ``repeats`` runs of ``number`` calls each."""
    results = {}
    for name, factory in CASES.items():
        operation = factory()
        operation()
        best = min(timeit.repeat(operation, number=number, repeat=repeats))
        results[name] = best / number * 1e6
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--number", type=int, default=2000)
    args = parser.parse_args(argv)
    print(f"tinkex from {Path(types.__file__).parents[1]}")
    for name, us in measure(args.repeats, args.number).items():
        print(f"{name:45s} {us:9.2f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
