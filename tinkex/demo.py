"""``tinkex demo``: a real training-and-sampling loop with ``tinkex.Client``.

By default it starts the embedded local Tinker-compatible server on 127.0.0.1 and trains its deterministic fake
model; with ``TINKER_API_KEY`` set and a base URL (``--base-url`` or ``TINKER_BASE_URL``) it runs against the
real service. At the end it prints what the OpenTelemetry spans saw, per endpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence

import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from tqdm import tqdm

from pristine_transport.errors import ConfigurationError, PristineError

from .client import Client
from .metrics import Metrics, MetricsSpanProcessor, format_summary
from .tokenizer import Tokenizer, TokenizerNotFoundError
from .types import AdamParams, Datum, ModelInput, SamplingParams

__all__ = ["main"]

LOCAL_MODEL = "tinkex/fake-tiny"
REMOTE_MODEL = "openai/gpt-oss-20b"  # its tokenizer (o200k_harmony) needs no configuration

CORPUS = (
    "the quick brown fox jumps over the lazy dog",
    "a journey of a thousand miles begins with a single step",
    "to be or not to be that is the question",
    "all that glitters is not gold",
    "the early bird catches the worm",
    "knowledge is power and power is knowledge",
    "practice makes perfect when the practice is right",
    "where there is a will there is a way",
)
PROMPTS = ("the quick", "to be or", "a journey of")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tinkex demo", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="training steps (default 30)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank")
    parser.add_argument("--base-model", default=None, help=f"default {LOCAL_MODEL} locally, {REMOTE_MODEL} remotely")
    parser.add_argument("--base-url", default=None, help="a Tinker service (needs TINKER_API_KEY)")
    parser.add_argument("--samples", type=int, default=2, help="samples per prompt")
    parser.add_argument("--max-tokens", type=int, default=12)
    parser.add_argument("--http2", action="store_true", help="speak HTTP/2 (h2c prior knowledge) to the local server")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="local server: inject this rate of 5xx/429/408/drops")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def _tracing(metrics: Metrics) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(MetricsSpanProcessor(metrics))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[import-not-found]
        except ImportError:
            print("OTEL_EXPORTER_OTLP_ENDPOINT is set but opentelemetry-exporter-otlp is not installed; not exporting")
        else:
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


@contextlib.contextmanager
def _service(args: argparse.Namespace) -> Iterator[tuple[str | None, str | None, str]]:
    """Yields (base_url, api_key, where) — the real service when a key and URL are configured, else a local server."""
    base_url = args.base_url or os.environ.get("TINKER_BASE_URL")
    if os.environ.get("TINKER_API_KEY") and base_url:
        yield base_url, None, f"the Tinker service at {base_url}"
        return
    from .testing import FaultRule, LocalServer
    from .testing.config import DEFAULT_BASE_MODELS

    faults = []
    if args.fault_rate > 0:
        share = args.fault_rate / 4
        faults = [
            FaultRule(status=503, rate=share, after_execute=True),
            FaultRule(endpoint="asample", status=429, rate=share),
            FaultRule(endpoint="retrieve_future", status=408, rate=share, queue_state="paused_capacity"),
            FaultRule(drop_connection=True, rate=share, after_execute=True),
        ]
    with LocalServer(faults=faults, seed=args.seed, base_models=(LOCAL_MODEL, *DEFAULT_BASE_MODELS)) as server:
        yield server.base_url, "tml-local-demo", f"the local Tinker-compatible server at {server.base_url}"


def _batch(tokenizer: Tokenizer, step: int, size: int) -> list[Datum]:
    data = []
    for i in range(size):
        tokens = tokenizer.encode(CORPUS[(step * size + i) % len(CORPUS)])
        data.append(
            Datum(
                model_input=ModelInput.from_ints(tokens[:-1]),
                loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
            )
        )
    return data


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    try:
        return _run(args)
    except (ConfigurationError, TokenizerNotFoundError) as exc:
        print(f"tinkex demo: {exc}", file=sys.stderr)
        return 2
    except PristineError as exc:  # the message names the status and the body, never the key
        print(f"tinkex demo: the service failed: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    metrics = Metrics()
    provider = _tracing(metrics)
    with _service(args) as (base_url, api_key, where):
        base_model = args.base_model or (LOCAL_MODEL if api_key else REMOTE_MODEL)
        print(f"tinkex demo: training {base_model} against {where}")
        transport = (lambda: httpx.AsyncHTTPTransport(http2=True, http1=False)) if args.http2 and api_key else None
        started = time.perf_counter()
        client = Client(
            api_key=api_key,
            base_url=base_url,
            user_metadata={"purpose": "tinkex demo"},
            transport=transport,
            tracer_provider=provider,
        )
        with client:
            training = client.create_lora_training_client(base_model, rank=args.rank, seed=args.seed)
            tokenizer = training.get_tokenizer()
            losses = []
            steps = tqdm(range(args.steps), desc="training", unit="step", disable=args.no_progress, file=sys.stdout)
            for step in steps:
                batch = _batch(tokenizer, step, args.batch_size)
                fwd_bwd = training.forward_backward(batch, "cross_entropy")
                optim = training.optim_step(AdamParams(learning_rate=args.learning_rate))
                output = fwd_bwd.result()
                optim.result()
                weight = sum(len(d.model_input.to_ints()) for d in batch)
                losses.append(output.metrics["loss:sum"] / weight)
                steps.set_postfix(loss=f"{losses[-1]:.4f}")
            steps.close()
            print(f"loss: {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} steps")

            saved = training.save_weights_for_sampler("demo-final").result()
            print(f"saved sampler weights: {saved.path}")
            sampler = client.create_sampling_client(model_path=saved.path)
            params = SamplingParams(max_tokens=args.max_tokens, temperature=0.7, seed=args.seed)
            futures = [
                (prompt, sampler.sample(ModelInput.from_ints(tokenizer.encode(prompt)), args.samples, params))
                for prompt in PROMPTS
            ]
            for prompt, future in futures:
                for sequence in future.result().sequences:
                    text = tokenizer.decode(sequence.tokens, skip_special_tokens=True)
                    print(f"sample: {prompt!r} -> {text!r} ({sequence.stop_reason})")
        elapsed = time.perf_counter() - started
    provider.force_flush()
    print(f"\ntrace summary ({elapsed:.1f} s):")
    print(format_summary(metrics.snapshot()))
    provider.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
