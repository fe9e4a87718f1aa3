"""``python -m tinkex.testing --port 0``: run the local Tinker-compatible server until Ctrl-C.

Prints the base URL on the first line of stdout, so a script can read it and point a client at it. With
``--state-dir`` a server killed (even SIGKILL) and started again on the same directory and ``--port`` carries on:
see :mod:`tinkex.testing.write_journal`.

It serves ``tinkex/fake-tiny`` (whose tokenizer, ``tinkex-bytes``, is built in: everything works offline) and the
names of :data:`~tinkex.testing.config.DEFAULT_BASE_MODELS`; ``--base-model`` (repeatable) replaces that list,
``--list-models`` prints it with each model's tokenizer and exits. Every name is a tiny real language model
(:mod:`tinkex.testing.tiny_lm`) whose frozen weights come from the name, over the byte-level encoding's 283 token
ids; ``--vocab-size`` accepts more ids, for a client that brings its own tokenizer.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from ..types import ClientConfigResponse
from .config import DEFAULT_BASE_MODELS, ServerConfig
from .faults import fault_rules_from_json
from .server import LocalServer

FAKE_MODEL = "tinkex/fake-tiny"
SERVED_BY_DEFAULT: tuple[str, ...] = (FAKE_MODEL, *DEFAULT_BASE_MODELS)
"""What ``python -m tinkex.testing`` serves without ``--base-model``: the model with an offline tokenizer first."""


def tokenizer_status(model: str) -> str:
    """How a client gets ``model``'s tokenizer on this machine: the encoding that loads offline, or what to set."""
    from tinkex.tokenizer import TokenizerLoadError, TokenizerNotFoundError, get_tokenizer

    try:
        tokenizer = get_tokenizer(model)
    except TokenizerNotFoundError:
        return "no built-in tokenizer: set TINKEX_TOKENIZER_FILE (a tiktoken ranks file) or TINKEX_TOKENIZER"
    except TokenizerLoadError:
        return "its tokenizer file is not on this machine: set TINKEX_TOKENIZER_FILE (a tiktoken ranks file)"
    return f"offline: {tokenizer.name}"


def _ranged(kind: type[int] | type[float], low: float, high: float = math.inf) -> Callable[[str], Any]:
    """An argparse type: a number of ``kind`` in [low, high], else a message naming the range."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}")
        if not low <= value <= high or value != value:  # value != value: NaN
            bounds = f"between {low:g} and {high:g}" if high != math.inf else f">= {low:g}"
            raise argparse.ArgumentTypeError(f"expected a number {bounds}, got {text}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tinkex.testing", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_ranged(int, 0, 65535), default=0, help="0 picks a free port")
    parser.add_argument("--api-key", help="exact X-API-Key to accept (default: any key starting with tml-)")
    parser.add_argument("--latency", type=_ranged(float, 0), default=0.0, help="seconds until a future's result is ready")
    parser.add_argument("--long-poll", type=_ranged(float, 0), default=1.0, help="max seconds a retrieve_future poll is held")
    parser.add_argument("--future-ttl", type=_ranged(float, 0), help="seconds a ready result is kept (default: forever)")
    parser.add_argument("--sample-inflight-limit", type=_ranged(int, 1), help="429 asample above this many unfinished samples")
    parser.add_argument("--metadata-only-threshold", type=_ranged(int, 0), help="bytes above which results are metadata-only")
    parser.add_argument("--state-dir", type=Path, help="persist training runs and checkpoints here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--base-model", action="append", dest="base_models",
        help=f"a base model to serve (repeatable; default: {', '.join(SERVED_BY_DEFAULT)})",
    )
    parser.add_argument("--list-models", action="store_true", help="print the models served and their tokenizers")
    parser.add_argument(
        "--vocab-size", type=_ranged(int, 1),
        help="token ids the model accepts (default: the offline byte-level encoding's 283; larger for your tokenizer)",
    )
    parser.add_argument(
        "--faults", type=Path, help="JSON file: a list of FaultRule objects (faults.fault_rules_from_json)"
    )
    parser.add_argument(
        "--jwt-lifetime", type=_ranged(float, 0.1),
        help="exchange API keys for JWTs of this many seconds (pjwt_auth_enabled; see tinkex.testing.jwt_tokens)",
    )
    parser.add_argument(
        "--client-config", metavar="JSON",
        help="flags client/config answers, as a JSON object or @file (e.g. '{\"sample_use_retrieve_futures\": true}'); "
        "unnamed flags keep their defaults",
    )
    parser.add_argument("--deprecation-note", help="send this x-deprecation-note on every response")
    parser.add_argument("--deprecation-level", default="warning", help="its x-deprecation-level (default: warning)")
    parser.add_argument("--certfile", type=Path, help="with --keyfile: serve TLS (h2 via ALPN)")
    parser.add_argument("--keyfile", type=Path)
    return parser


def client_config_from_json(text: str) -> ClientConfigResponse:
    """The ``--client-config`` value (a JSON object, or ``@path`` to a file holding one) over the default flags;
    an unknown flag or a value of the wrong type is a ``ValueError`` naming it."""
    raw = Path(text[1:]).read_text() if text.startswith("@") else text
    try:
        given = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(given, dict):
        raise ValueError("expected a JSON object of client/config flags")
    known = set(ClientConfigResponse.__struct_fields__)
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(f"unknown flag(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        return msgspec.convert({**msgspec.to_builtins(ClientConfigResponse()), **given}, ClientConfigResponse)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    models = tuple(args.base_models) if args.base_models else SERVED_BY_DEFAULT
    if args.list_models:
        for model in models:
            print(f"{model}\t{tokenizer_status(model)}")
        return 0
    if (args.certfile is None) != (args.keyfile is None):
        parser.error("--certfile and --keyfile go together")
    faults = []
    if args.faults is not None:
        try:
            faults = fault_rules_from_json(json.loads(args.faults.read_text()))
        except (OSError, ValueError) as exc:
            parser.error(f"--faults {args.faults}: {exc}")
    client_config = ClientConfigResponse()
    if args.client_config is not None:
        try:
            client_config = client_config_from_json(args.client_config)
        except (OSError, ValueError) as exc:
            parser.error(f"--client-config: {exc}")
    config = ServerConfig(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        future_latency=args.latency,
        long_poll_timeout=args.long_poll,
        future_ttl=args.future_ttl,
        sample_inflight_limit=args.sample_inflight_limit,
        metadata_only_threshold=args.metadata_only_threshold,
        state_dir=args.state_dir,
        seed=args.seed,
        certfile=args.certfile,
        keyfile=args.keyfile,
        base_models=models,
        vocab_size=args.vocab_size,
        client_config=client_config,
    )
    config = dataclasses.replace(
        config, deprecation_note=args.deprecation_note, deprecation_level=args.deprecation_level
    )
    if args.jwt_lifetime is not None:  # JWTs on: client/config says so, and only JWTs of this server are taken
        jwt_flags = msgspec.structs.replace(config.client_config, pjwt_auth_enabled=True)
        config = dataclasses.replace(config, jwt_lifetime=args.jwt_lifetime, client_config=jwt_flags)
    stopped = threading.Event()
    # Both set explicitly: a process started in the background by a non-interactive shell inherits SIGINT ignored,
    # and Python then installs no KeyboardInterrupt handler, so Ctrl-C (or a test's SIGINT) would do nothing.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda *_: stopped.set())
    try:
        server = LocalServer(config, faults=faults).start()
    except (OSError, OverflowError) as exc:  # a port in use, a host that does not resolve, a bad TLS file
        print(f"error: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    try:
        print(server.base_url, flush=True)
        stopped.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
