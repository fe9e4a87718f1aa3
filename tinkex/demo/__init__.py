"""``tinkex demo``: a real training-and-sampling loop with ``tinkex.Client``.

It teaches a model a short text: it samples a continuation of the text's first two words, trains a LoRA adapter on
the text (printing the loss of every step), and samples again: the continuation has become the text. By default it
starts the embedded local Tinker-compatible server on 127.0.0.1 and trains its tiny real language model
``tinkex/fake-tiny`` (:mod:`tinkex.testing.tiny_lm`); with a base URL (``--base-url`` or ``TINKER_BASE_URL``) and an API key (``--api-key``
or ``TINKER_API_KEY``) it runs against that server instead: the Tinker service, or a ``python -m tinkex.testing``.
At the end it prints what the OpenTelemetry spans saw, per endpoint and per public call.

Everything the demo prints goes to stdout except the progress bar (on a terminal only) and notices (stderr); with
``--json`` stdout is one JSON document. Bad options end in one ``error: …`` line and exit status 2 (see :func:`check_arguments`).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from tqdm import tqdm

from .. import env_names
from ..client import Client
from ..metrics import Metrics, MetricsSpanProcessor, format_summary
from ..tokenizer import Tokenizer, TokenizerLoadError, TokenizerNotFoundError
from ..types import AdamParams, Datum, ModelInput, SamplingParams

__all__ = ["DemoUsageError", "LOCAL_MODEL", "MAX_FAULT_RATE", "add_arguments", "check_arguments", "run"]

LOCAL_MODEL = "tinkex/fake-tiny"
REMOTE_MODEL = "openai/gpt-oss-20b"  # preferred on a remote server that offers it (tiktoken's o200k_harmony)
MAX_FAULT_RATE = 0.5
"""Above this the injected faults outnumber the answers and a few steps take minutes: refused as a usage error."""

TEXT = "the quick brown fox jumps over the lazy dog"
LOCAL_LEARNING_RATE = 1e-3
"""The tiny model learns the text in about 20 steps at this rate."""
REMOTE_LEARNING_RATE = 2e-4
"""Gentler on a large model, which needs fewer steps to memorise one sentence."""


class DemoUsageError(ValueError):
    """A demo option is wrong; the message names it and says what is allowed."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's own options (``tinkex demo`` adds the CLI's shared ones: ``--base-url``, ``--api-key``, ``--json``)."""
    parser.add_argument("--text", default=TEXT, help="the text to teach (at least two words)")
    parser.add_argument("--steps", type=int, default=30, help="training steps (>= 1)")
    parser.add_argument("--batch-size", type=int, default=1, help="copies of the text per step (>= 1)")
    parser.add_argument(
        "--learning-rate", type=float, default=None,
        help=f"Adam learning rate (> 0; default {LOCAL_LEARNING_RATE:g} on the embedded server, "
        f"{REMOTE_LEARNING_RATE:g} on another)",
    )
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank (>= 1)")
    parser.add_argument(
        "--base-model", default=None,
        help=f"model to train (default: {LOCAL_MODEL} on the embedded server; on another server {REMOTE_MODEL} "
        "if offered, else the first offered model with an offline tokenizer)",
    )
    parser.add_argument("--samples", type=int, default=2, help="samples at temperature 0.7 after training (>= 1)")
    parser.add_argument("--max-tokens", type=int, default=48, help="tokens per sample (>= 1)")
    parser.add_argument("--http2", action="store_true", help="speak HTTP/2 (h2c prior knowledge) to the embedded server")
    parser.add_argument(
        "--fault-rate", type=float, default=0.0,
        help=f"embedded server: inject this rate of 5xx/429/408/drops (0 to {MAX_FAULT_RATE})",
    )
    parser.add_argument("--seed", type=int, default=0, help="server and sampling seed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (shown only when stderr is a terminal)")


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse out-of-range options before anything starts (each would otherwise fail deep inside the loop)."""
    for name, minimum in (("steps", 1), ("batch_size", 1), ("rank", 1), ("samples", 1), ("max_tokens", 1)):
        value = getattr(args, name)
        if value < minimum:
            raise DemoUsageError(f"--{name.replace('_', '-')} must be >= {minimum}, got {value}")
    if args.learning_rate is not None and (not math.isfinite(args.learning_rate) or args.learning_rate <= 0):
        raise DemoUsageError(f"--learning-rate must be a finite number > 0, got {args.learning_rate}")
    if len(args.text.split()) < 2:
        raise DemoUsageError(f"--text must have at least two words (its first two are the prompt), got {args.text!r}")
    if not 0 <= args.fault_rate <= MAX_FAULT_RATE:
        raise DemoUsageError(f"--fault-rate must be between 0 and {MAX_FAULT_RATE}, got {args.fault_rate}")
    target = _target(args)
    if target.remote and args.fault_rate > 0:
        raise DemoUsageError("--fault-rate applies to the embedded server only; drop --base-url to use it")
    if target.remote and args.http2:
        raise DemoUsageError("--http2 applies to the embedded server only; drop --base-url to use it")
    if target.remote and target.api_key is None:
        raise DemoUsageError(
            f"--base-url {target.base_url} needs an API key: pass --api-key or set TINKER_API_KEY "
            "(a tinkex LocalServer accepts any key starting with tml-)"
        )


@dataclass(frozen=True)
class _Target:
    base_url: str | None
    api_key: str | None

    @property
    def remote(self) -> bool:
        return self.base_url is not None


def _target(args: argparse.Namespace) -> _Target:
    return _Target(
        base_url=getattr(args, "base_url", None) or os.environ.get(env_names.BASE_URL) or None,
        api_key=getattr(args, "api_key", None) or os.environ.get(env_names.API_KEY) or None,
    )


def _tracing(metrics: Metrics) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(MetricsSpanProcessor(metrics))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[import-not-found]
        except ImportError:
            print(
                "note: OTEL_EXPORTER_OTLP_ENDPOINT is set but opentelemetry-exporter-otlp is not installed; not exporting",
                file=sys.stderr,
            )
        else:
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


@contextlib.contextmanager
def _service(args: argparse.Namespace) -> Iterator[tuple[str, str, str, bool]]:
    """Yields (base_url, api_key, where, embedded): the configured server, else an embedded local server."""
    target = _target(args)
    if target.base_url is not None:
        assert target.api_key is not None  # check_arguments refused it otherwise
        yield target.base_url, target.api_key, f"the server at {target.base_url}", False
        return
    from ..testing import FaultRule, LocalServer
    from ..testing.config import DEFAULT_BASE_MODELS

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
        yield server.base_url, "tml-local-demo", f"the local Tinker-compatible server at {server.base_url}", True


def _pick_model(client: Client, requested: str | None, embedded: bool) -> str:
    """The model to train: the one asked for, else one the server offers whose tokenizer loads offline."""
    if requested:
        return requested
    if embedded:
        return LOCAL_MODEL
    offered = [model.model_name for model in client.get_server_capabilities().supported_models if model.model_name]
    if REMOTE_MODEL in offered:
        return REMOTE_MODEL
    for name in offered:
        if _offline_tokenizer(name):
            return name
    return offered[0] if offered else REMOTE_MODEL


def _offline_tokenizer(model: str) -> bool:
    from ..tokenizer import get_tokenizer

    try:
        get_tokenizer(model)
    except (TokenizerNotFoundError, TokenizerLoadError):
        return False
    return True


def _tokenizer_for(training: Any, base_model: str) -> Tokenizer:
    try:
        tokenizer: Tokenizer = training.get_tokenizer()
    except (TokenizerNotFoundError, TokenizerLoadError) as exc:
        raise DemoUsageError(
            f"no tokenizer for {base_model} on this machine ({_first_line(exc)}); point TINKEX_TOKENIZER_FILE at its "
            f"tiktoken ranks file, or pick --base-model {LOCAL_MODEL} (the local server's tiny model)"
        ) from None
    return tokenizer


def _first_line(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0].split(". ")[0]


def _prefix(text: str) -> str:
    """The prompt: the text's first two words."""
    first, second = text.split()[:2]
    return text[: text.index(second, text.index(first) + len(first)) + len(second)]


def _datum(tokenizer: Tokenizer, text: str) -> Datum:
    """The whole text, then end-of-sequence (so the model also learns where it stops), as next-token targets."""
    tokens = tokenizer.encode(text)
    if tokenizer.eos_token_id is not None:
        tokens.append(tokenizer.eos_token_id)
    return Datum(
        model_input=ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
    )


def _continuations(sampler: Any, tokenizer: Tokenizer, prompt: str, count: int, params: SamplingParams) -> list[dict[str, Any]]:
    response = sampler.sample(ModelInput.from_ints(tokenizer.encode(prompt)), count, params).result()
    return [
        {"prompt": prompt, "text": tokenizer.decode(sequence.tokens, skip_special_tokens=True),
         "stop_reason": sequence.stop_reason}
        for sequence in response.sequences
    ]


def run(args: argparse.Namespace, *, client_options: dict[str, Any] | None = None) -> int:
    """Train, save, sample, summarise. ``args`` passed :func:`check_arguments`; ``client_options`` go to
    ``tinkex.Client`` (the CLI passes its deadlines). Errors propagate to the caller (the CLI formats them)."""
    as_json = bool(getattr(args, "json", False))
    out: TextIO = sys.stderr if as_json else sys.stdout
    metrics = Metrics()
    provider = _tracing(metrics)
    report: dict[str, Any] = {}
    with _service(args) as (base_url, api_key, where, embedded):
        transport = (lambda: httpx.AsyncHTTPTransport(http2=True, http1=False)) if args.http2 and embedded else None
        started = time.perf_counter()
        client = Client(
            api_key=api_key,
            base_url=base_url,
            user_metadata={"purpose": "tinkex demo"},
            transport=transport,
            tracer_provider=provider,
            **(client_options or {}),
        )
        with client:
            base_model = _pick_model(client, args.base_model, embedded)
            print(f"tinkex demo: training {base_model} against {where}", file=out)
            training = client.create_lora_training_client(base_model, rank=args.rank, seed=args.seed).result()
            tokenizer = _tokenizer_for(training, base_model)
            text, prompt = args.text, _prefix(args.text)
            greedy = SamplingParams(max_tokens=args.max_tokens, temperature=0.0)
            print(f"text: {text!r}", file=out)
            untrained = training.save_weights_and_get_sampling_client().result()
            [before] = _continuations(untrained, tokenizer, prompt, 1, greedy)
            print(f"before: {prompt!r} -> {before['text']!r} ({before['stop_reason']})", file=out)

            learning_rate = args.learning_rate or (LOCAL_LEARNING_RATE if embedded else REMOTE_LEARNING_RATE)
            batch = [_datum(tokenizer, text)] * args.batch_size
            weight = sum(len(d.model_input.to_ints()) for d in batch)
            losses = []
            # None: tqdm shows the bar only on a terminal; in a pipe or a log its redraws would bury the step lines.
            steps = tqdm(
                range(args.steps), desc="training", unit="step", disable=True if args.no_progress else None,
                file=sys.stderr,
            )
            for step in steps:
                fwd_bwd = training.forward_backward(batch, "cross_entropy")
                optim = training.optim_step(AdamParams(learning_rate=learning_rate))
                output = fwd_bwd.result()
                optim.result()
                losses.append(output.metrics["loss:sum"] / weight)
                steps.set_postfix(loss=f"{losses[-1]:.4f}")
                steps.write(f"step {step + 1}: loss {losses[-1]:.4f}", file=out)
            steps.close()
            print(f"loss: {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} steps (per token)", file=out)

            saved = training.save_weights_for_sampler("demo-final").result()
            print(f"saved sampler weights: {saved.path}", file=out)
            sampler = client.create_sampling_client(model_path=saved.path).result()
            [after] = _continuations(sampler, tokenizer, prompt, 1, greedy)
            print(f"after:  {prompt!r} -> {after['text']!r} ({after['stop_reason']})", file=out)
            learned = (prompt + after["text"]).strip() == text.strip()
            print(f"learned the text: {'yes' if learned else 'not yet (try more --steps)'}", file=out)
            warm = SamplingParams(max_tokens=args.max_tokens, temperature=0.7, seed=args.seed)
            samples = _continuations(sampler, tokenizer, prompt, args.samples, warm)
            for sample in samples:
                print(f"sample: {prompt!r} -> {sample['text']!r} ({sample['stop_reason']})", file=out)
            report = {"base_model": base_model, "server": base_url, "text": text, "prompt": prompt,
                      "learning_rate": learning_rate, "losses": losses, "before": before, "after": after,
                      "learned": learned, "sampler_path": saved.path, "samples": samples}
        elapsed = time.perf_counter() - started
    provider.force_flush()
    summary = format_summary(metrics.snapshot())
    print(f"\ntrace summary ({elapsed:.1f} s):", file=out)
    print(summary, file=out)
    provider.shutdown()
    if as_json:
        import json

        print(json.dumps({**report, "elapsed_s": round(elapsed, 3), "trace_summary": summary.splitlines()}, indent=2))
    return 0

