"""The ``tinkex`` command line: checkpoints, training runs, one-off sampling, version, demo, exec.

One parser: the shared options (``--json``, ``--base-url``, ``--api-key``, ``--timeout``) work before or after the
subcommand, every subcommand has its own options and checks them. Exit codes: 0 success; 1 the operation failed
(API error, network, download); 2 usage error (bad arguments or paths, missing configuration, a destructive
command without confirmation, an existing destination). Every error prints one ``error: …`` line on stderr, never
a traceback and never the API key. ``--json`` prints one JSON document on stdout; progress and notices go to stderr.

Interactive use wants an answer soon: the CLI gives up on a server that makes no progress after ``--timeout``
seconds (default :data:`DEFAULT_TIMEOUT_S`, else ``TINKEX_CLI_TIMEOUT``), where the SDK's default budget is 300 s.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NoReturn, TextIO

import msgspec

from pristine_transport.deadlines import DeadlineExceededError
from pristine_transport.errors import APIConnectionError, ConfigurationError, PristineError
from pristine_transport.policy import Deadlines, RetryBudget

from . import env_names
from .config import TINKEX_VERSION, WIRE_SDK_VERSION
from .rest_client import RestClient, parse_tinker_path

__all__ = ["DEFAULT_TIMEOUT_S", "cli_deadlines", "connection_hint", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_TIMEOUT_S = 20.0
"""Seconds without progress after which a CLI command gives up (the SDK waits 300 s: a batch job's budget)."""
ENV_TIMEOUT = env_names.CLI_TIMEOUT


class UsageError(Exception):
    """The invocation is wrong; the message says how to fix it."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``error: …`` line naming the ``--help`` that explains (not the usage
    block); subcommand parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["exec"]:  # everything after `exec` belongs to the program it runs, `--help` included
        from .compat.launch import exec_program

        return exec_program(arguments[1:])
    try:
        # The shared options' defaults live here: in the parsers they are SUPPRESS (see _build_parser).
        defaults = argparse.Namespace(json=False, base_url=None, api_key=None, timeout=None)
        args = _build_parser().parse_args(arguments, defaults)
    except SystemExit as exit_:  # argparse has printed usage or help
        return int(exit_.code or 0)
    _log_warnings_to_stderr()
    try:
        return int(args.handler(args))
    except (UsageError, ConfigurationError) as exc:
        return _fail(_for_the_cli(str(exc)), EXIT_USAGE)
    except DeadlineExceededError as exc:
        return _fail(_gave_up(args, exc), EXIT_FAILED)
    except APIConnectionError as exc:
        return _fail(connection_hint(_base_url(args), _describe(exc)), EXIT_FAILED)
    except PristineError as exc:  # API status errors included: the message names the status and the body
        return _fail(_describe(exc), EXIT_FAILED)
    except (FileExistsError, ValueError) as exc:
        return _fail(_for_the_cli(_describe(exc)), EXIT_USAGE)
    except (RuntimeError, OSError, TimeoutError) as exc:
        return _fail(_describe(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as exc:  # noqa: BLE001 - the CLI promises one line, never a traceback
        return _fail(f"unexpected {type(exc).__name__}: {_describe(exc)} (please report this)", EXIT_FAILED)


def _log_warnings_to_stderr() -> None:
    """Warnings of the stack (a server that does not answer) as ``warning: …`` lines on stderr, at once; stdout
    stays the command's output. Left alone when the program configured logging itself (``TINKER_LOG`` included)."""
    import logging

    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    handler.setLevel(logging.WARNING)
    root.addHandler(handler)


def connection_hint(base_url: str | None, detail: str) -> str:
    """One line for a server that cannot be reached: where, why, and the likely fix. aiohttp's ``ssl:default``
    (printed even for plain HTTP) is dropped: it misleads more than it tells."""
    detail = detail.replace(" ssl:default", "").replace(" [None]", "")
    where = base_url or "the configured base URL"
    return f"cannot reach the server at {where}: {detail}. Is the server running at {where}?"


def _gave_up(args: argparse.Namespace, exc: DeadlineExceededError) -> str:
    text = f"gave up on {exc.waited_on} after {exc.waited_s:.0f} s without progress (last: {exc.last_seen})"
    if "Connect" in exc.last_seen or "connect" in exc.last_seen:
        text = connection_hint(_base_url(args), text)
    return f"{text} (--timeout SECONDS waits longer)"


def _base_url(args: argparse.Namespace) -> str | None:
    return getattr(args, "base_url", None) or os.environ.get(env_names.BASE_URL) or None


def _for_the_cli(message: str) -> str:
    """The SDK's advice in the CLI's terms: options, not keyword arguments."""
    replacements = (
        ("pass tinkex.Client(api_key='tml-…') or set", "pass --api-key or set"),
        ("pass force=True (CLI: --force)", "pass --force"),
    )
    for sdk, cli in replacements:
        message = message.replace(sdk, cli)
    return message


def cli_deadlines(timeout_s: float | None) -> Deadlines:
    """The CLI's retry budget: give up after ``timeout_s`` (default: ``TINKEX_CLI_TIMEOUT``, else 20 s) without
    progress, re-sending every few seconds meanwhile."""
    if timeout_s is None:
        timeout_s = _env_timeout()
    return Deadlines(no_progress_s=timeout_s, failed_attempts=5, budget=RetryBudget(round_max_s=min(5.0, timeout_s)))


def _env_timeout() -> float:
    text = os.environ.get(ENV_TIMEOUT)
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        return _positive_seconds(text)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{ENV_TIMEOUT}: {exc}") from None


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _describe(exc: BaseException) -> str:
    notes = getattr(exc, "__notes__", None) or []
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return "; ".join([text, *notes])


# parser ---------------------------------------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    # Shared options work before or after the subcommand; SUPPRESS keeps a later default from erasing an earlier value.
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    common.add_argument("--base-url", default=argparse.SUPPRESS, help="API base URL (else TINKER_BASE_URL)")
    common.add_argument("--api-key", default=argparse.SUPPRESS, help="API key (else TINKER_API_KEY)")
    common.add_argument(
        "--timeout", type=_positive_seconds, default=argparse.SUPPRESS, metavar="SECONDS",
        help=f"give up after this many seconds without progress (default: {ENV_TIMEOUT}, else {DEFAULT_TIMEOUT_S:g})",
    )

    parser = _Parser(
        prog="tinkex", description="Tinker checkpoints, runs, sampling and a demo.", parents=[common]
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    checkpoint = commands.add_parser(
        "checkpoint", parents=[common], help="list, inspect, download and manage checkpoints"
    )
    ckpt = checkpoint.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = ckpt.add_parser("list", parents=[common], help="list checkpoints (yours, or one run's)")
    p.add_argument("--run-id", help="only this training run's checkpoints (a run id or any tinker:// path of it)")
    _paging(p, default_limit=100)
    p.set_defaults(handler=_checkpoint_list)
    p = ckpt.add_parser("info", parents=[common], help="show one checkpoint")
    p.add_argument("path", metavar="PATH")
    p.set_defaults(handler=_checkpoint_info)
    p = ckpt.add_parser("download", parents=[common], help="download and extract a checkpoint archive")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--dest", default=".", help="directory to download into (default: .)")
    p.add_argument("--force", action="store_true", help="replace an existing download")
    p.add_argument("--no-extract", dest="extract", action="store_false", help="keep the tar archive as is")
    p.set_defaults(handler=_checkpoint_download)
    p = ckpt.add_parser("delete", parents=[common], help="delete one or more checkpoints")
    p.add_argument("paths", metavar="PATH", nargs="+")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(handler=_checkpoint_delete)
    for name, helptext in (("publish", "make a checkpoint public"), ("unpublish", "make a checkpoint private")):
        p = ckpt.add_parser(name, parents=[common], help=helptext)
        p.add_argument("path", metavar="PATH")
        p.set_defaults(handler=_checkpoint_publish, publish=name == "publish")
    p = ckpt.add_parser("set-ttl", parents=[common], help="set or remove a checkpoint's expiry")
    p.add_argument("path", metavar="PATH")
    p.add_argument("ttl", metavar="SECONDS|none", type=_ttl)
    p.set_defaults(handler=_checkpoint_set_ttl)

    run = commands.add_parser("run", parents=[common], help="list and inspect training runs")
    runs = run.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = runs.add_parser("list", parents=[common], help="list training runs")
    _paging(p, default_limit=20)
    _access_scope(p)
    p.set_defaults(handler=_run_list)
    p = runs.add_parser("info", parents=[common], help="show one training run")
    p.add_argument("run_id", metavar="RUN_ID", help="a run id (e.g. abc:train:0) or any tinker:// path of the run")
    _access_scope(p)
    p.set_defaults(handler=_run_info)

    p = commands.add_parser("sample", parents=[common], help="sample from a base model or a sampler checkpoint")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--model-path", help="a tinker://…/sampler_weights/… path")
    model.add_argument("--base-model", help="a base model name, e.g. Qwen/Qwen3-8B")
    prompt = p.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", help="prompt text (needs a tokenizer for the model)")
    prompt.add_argument("--tokens", type=_token_list, help="prompt token ids, e.g. 1,2,3")
    p.add_argument("--max-tokens", type=_positive_int, default=64, help="tokens per sample (default 64)")
    p.add_argument("--num-samples", type=_positive_int, default=1, help="samples (default 1)")
    p.add_argument("--temperature", type=_temperature, help="0 is greedy (default: the server's)")
    p.add_argument("--seed", type=int)
    p.set_defaults(handler=_sample)

    p = commands.add_parser("version", parents=[common], help="print the version")
    p.set_defaults(handler=_version)

    from . import demo

    p = commands.add_parser(
        "demo", parents=[common], help="train and sample against a local server (or --base-url)",
        description=(demo.__doc__ or "").replace("``", "`").replace(" (see :func:`check_arguments`)", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_arguments(p)
    for action in p._actions:  # show every default in `tinkex demo --help`
        if action.default not in (None, False, argparse.SUPPRESS) and action.help and "default" not in action.help:
            action.help += f" (default {action.default})"
    p.set_defaults(handler=_demo)

    p = commands.add_parser(
        "exec", help="run a program with `import tinker` served by tinkex (see `tinkex exec --help`)", add_help=False
    )
    p.add_argument("program_args", nargs=argparse.REMAINDER)
    p.set_defaults(handler=_exec)
    return parser


def _paging(parser: argparse.ArgumentParser, default_limit: int) -> None:
    parser.add_argument("--all", action="store_true", help="fetch every page (progress on stderr)")
    parser.add_argument("--limit", type=_non_negative, default=default_limit, help=f"page size (default {default_limit})")
    parser.add_argument("--offset", type=_non_negative, default=0)


def _access_scope(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--access-scope", choices=("owned", "accessible"), default="owned")


def _whole_number_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` accepting whole numbers >= ``minimum``, naming what is wrong otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
        return value

    return parse


_non_negative = _whole_number_at_least(0)
_positive_int = _whole_number_at_least(1)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text}")
    return value


def _temperature(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 (0 is greedy), got {text}")
    return value


def _ttl(text: str) -> int | None:
    if text.strip().lower() in ("none", "never", "null"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds or 'none', got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"the TTL must be a positive number of seconds (or 'none'), got {value}")
    return value


def _token_list(text: str) -> list[int]:
    try:
        tokens = [int(part) for part in text.replace(" ", "").strip("[]").split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated token ids like 1,2,3, got {text!r}") from None
    if not tokens:
        raise argparse.ArgumentTypeError("expected at least one token id")
    return tokens


# plumbing -------------------------------------------------------------------------------------------------


@contextmanager
def _client(args: argparse.Namespace) -> Iterator[Any]:
    from .client import Client

    client = Client(api_key=args.api_key, base_url=args.base_url, deadlines=cli_deadlines(args.timeout))
    try:
        yield client
    finally:
        client.close()


@contextmanager
def _rest(args: argparse.Namespace) -> Iterator[RestClient]:
    with _client(args) as client:
        yield client.create_rest_client()


def _checked_path(path: str) -> str:
    try:
        return parse_tinker_path(path).tinker_path
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _run_id(text: str) -> str:
    """A run id as given, or the run id of any ``tinker://`` path (``tinker://<run>`` alone included)."""
    text = text.strip().rstrip("/")
    if text.startswith("tinker://"):
        run_id = text[len("tinker://") :].split("/", 1)[0]
        if not run_id:
            raise UsageError(f"{text!r} names no training run: expected tinker://<training_run_id>[/<kind>/<name>]")
        return run_id
    if "/" in text:
        return _run_id("tinker://" + text)
    return text


def _emit_json(value: Any, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(msgspec.json.format(msgspec.json.encode(msgspec.to_builtins(value)), indent=2).decode() + "\n")


def _print_fields(fields: Sequence[tuple[str, object]]) -> None:
    """``label: value`` lines, the values aligned one column past the longest label."""
    width = max(len(name) for name, _ in fields) + 2
    for name, value in fields:
        print(f"{name + ':':<{width}}{value}")


def _rank(value: int | None) -> str:
    return str(value) if value is not None else "-"


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _fetch_all(
    fetch_page: Callable[[int, int], tuple[list[Any], int | None]], limit: int, offset: int, what: str
) -> list[Any]:
    """Every item from ``offset`` on, page by page, with a progress line on stderr."""
    items: list[Any] = []
    page_size = limit or 100
    live = sys.stderr.isatty()  # redraw one line on a terminal, one line per page in logs
    while True:
        page, total = fetch_page(page_size, offset + len(items))
        items.extend(page)
        shown = f"{len(items)}/{total - offset}" if total is not None else str(len(items))
        prefix, end = ("\r", "") if live else ("", "\n")
        print(f"{prefix}fetching {what}: {shown}", end=end, file=sys.stderr, flush=True)
        done = not page or (total is not None and offset + len(items) >= total) or (total is None and len(page) < page_size)
        if done:
            if live:
                print(file=sys.stderr)
            return items


# checkpoint commands -------------------------------------------------------------------------------------


def _checkpoint_rows(checkpoints: list[Any]) -> None:
    rows = [
        [c.tinker_path, c.checkpoint_type, _size(c.size_bytes), "yes" if c.public else "no", _when(c.time), _when(c.expires_at)]
        for c in checkpoints
    ]
    _table(rows, ["PATH", "TYPE", "SIZE", "PUBLIC", "CREATED", "EXPIRES"])


def _checkpoint_list(args: argparse.Namespace) -> int:
    with _rest(args) as rest:
        if args.run_id:
            checkpoints = rest.list_checkpoints(_run_id(args.run_id)).result().checkpoints
            total = len(checkpoints)
        elif args.all:

            def page(limit: int, offset: int) -> tuple[list[Any], int | None]:
                response = rest.list_user_checkpoints(limit, offset).result()
                return response.checkpoints, response.cursor.total_count if response.cursor else None

            checkpoints = _fetch_all(page, args.limit, args.offset, "checkpoints")
            total = len(checkpoints)
        else:
            response = rest.list_user_checkpoints(args.limit, args.offset).result()
            checkpoints = response.checkpoints
            total = response.cursor.total_count if response.cursor else len(checkpoints)
    if args.json:
        _emit_json({"checkpoints": checkpoints, "total_count": total})
        return EXIT_OK
    if not checkpoints:
        print("no checkpoints")
        return EXIT_OK
    _checkpoint_rows(checkpoints)
    if total > len(checkpoints):
        print(f"showing {len(checkpoints)} of {total}; use --all or --offset for more", file=sys.stderr)
    return EXIT_OK


def _checkpoint_info(args: argparse.Namespace) -> int:
    path = _checked_path(args.path)
    parsed = parse_tinker_path(path)
    with _rest(args) as rest:
        listed = rest.list_checkpoints(parsed.training_run_id).result().checkpoints
        found = next((c for c in listed if c.tinker_path == path or c.checkpoint_id == parsed.checkpoint_id), None)
        if found is None:
            known = ", ".join(c.checkpoint_id for c in listed) or "none"
            return _fail(f"training run {parsed.training_run_id} has no checkpoint {parsed.checkpoint_id!r} (it has: {known})", EXIT_FAILED)
        info = rest.get_weights_info_by_tinker_path(path).result()
    if args.json:
        _emit_json({"checkpoint": found, "weights_info": info})
        return EXIT_OK
    fields = [
        ("path", found.tinker_path),
        ("type", found.checkpoint_type),
        ("base model", info.base_model),
        ("lora rank", _rank(info.lora_rank)),
        ("size", _size(found.size_bytes)),
        ("public", "yes" if found.public else "no"),
        ("created", _when(found.time)),
        ("expires", _when(found.expires_at)),
    ]
    _print_fields(fields)
    return EXIT_OK


def _checkpoint_download(args: argparse.Namespace) -> int:
    from .checkpoints import download_checkpoint

    path = _checked_path(args.path)
    as_json = args.json
    with _rest(args) as rest:
        result = download_checkpoint(
            rest, path, args.dest, force=args.force, progress=not as_json and sys.stderr.isatty(), extract=args.extract
        )
    if as_json:
        _emit_json({"tinker_path": result.tinker_path, "path": str(result.path), "size_bytes": result.size_bytes})
    else:
        print(f"downloaded {result.tinker_path} ({_size(result.size_bytes)}) to {result.path}")
    return EXIT_OK


def _checkpoint_delete(args: argparse.Namespace) -> int:
    paths = list(dict.fromkeys(_checked_path(p) for p in args.paths))  # all valid before anything is deleted
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(f"refusing to delete {len(paths)} checkpoint(s) without confirmation; pass --yes")
        answer = input(f"Delete {len(paths)} checkpoint(s)?\n  " + "\n  ".join(paths) + "\n[y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted", file=sys.stderr)
            return EXIT_USAGE
    results: list[dict[str, Any]] = []
    with _rest(args) as rest:
        futures = [(path, rest.delete_checkpoint_from_tinker_path(path)) for path in paths]
        for path, future in futures:
            try:
                future.result()
                results.append({"tinker_path": path, "deleted": True})
            except PristineError as exc:
                results.append({"tinker_path": path, "deleted": False, "error": _describe(exc)})
    failed = [r for r in results if not r["deleted"]]
    if args.json:
        _emit_json({"results": results})
    else:
        for r in results:
            if r["deleted"]:
                print(f"deleted {r['tinker_path']}")
            else:
                print(f"error: {r['tinker_path']}: {r['error']}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def _checkpoint_publish(args: argparse.Namespace) -> int:
    path = _checked_path(args.path)
    with _rest(args) as rest:
        if args.publish:
            rest.publish_checkpoint_from_tinker_path(path).result()
        else:
            rest.unpublish_checkpoint_from_tinker_path(path).result()
    return _done(args, {"tinker_path": path, "public": args.publish}, f"{'published' if args.publish else 'unpublished'} {path}")


def _checkpoint_set_ttl(args: argparse.Namespace) -> int:
    path = _checked_path(args.path)
    with _rest(args) as rest:
        rest.set_checkpoint_ttl_from_tinker_path(path, args.ttl).result()
    text = f"{path} never expires" if args.ttl is None else f"{path} expires in {args.ttl} s"
    return _done(args, {"tinker_path": path, "ttl_seconds": args.ttl}, text)


def _done(args: argparse.Namespace, data: dict[str, Any], text: str) -> int:
    if args.json:
        _emit_json(data)
    else:
        print(text)
    return EXIT_OK


# run commands ----------------------------------------------------------------------------------------------


def _run_rows(runs: list[Any]) -> None:
    rows = [
        [
            r.training_run_id,
            r.base_model,
            _rank(r.lora_rank),
            "CORRUPTED" if r.corrupted else "ok",
            _newest_checkpoint(r),
            _when(r.last_request_time),
        ]
        for r in runs
    ]
    _table(rows, ["RUN", "BASE MODEL", "RANK", "STATE", "LAST CHECKPOINT", "LAST REQUEST"])


def _newest_checkpoint(run: Any) -> str:
    """The run's newest checkpoint of either kind (``last_checkpoint`` holds training weights only)."""
    candidates = [c for c in (run.last_checkpoint, run.last_sampler_checkpoint) if c is not None]
    if not candidates:
        return "-"
    return max(candidates, key=lambda c: c.time.timestamp() if c.time else 0.0).tinker_path


def _run_list(args: argparse.Namespace) -> int:
    with _rest(args) as rest:
        if args.all:

            def page(limit: int, offset: int) -> tuple[list[Any], int | None]:
                response = rest.list_training_runs(limit, offset, args.access_scope).result()
                return response.training_runs, response.cursor.total_count

            runs = _fetch_all(page, args.limit, args.offset, "training runs")
            total = len(runs)
        else:
            response = rest.list_training_runs(args.limit, args.offset, args.access_scope).result()
            runs, total = response.training_runs, response.cursor.total_count
    if args.json:
        _emit_json({"training_runs": runs, "total_count": total})
        return EXIT_OK
    if not runs:
        print("no training runs")
        return EXIT_OK
    _run_rows(runs)
    if total > len(runs) + args.offset:
        print(f"showing {len(runs)} of {total}; use --all or --offset for more", file=sys.stderr)
    return EXIT_OK


def _run_info(args: argparse.Namespace) -> int:
    run_id = _run_id(args.run_id)
    with _rest(args) as rest:
        run = rest.get_training_run(run_id, args.access_scope).result()
        checkpoints = rest.list_checkpoints(run_id).result().checkpoints
    if args.json:
        _emit_json({"training_run": run, "checkpoints": checkpoints})
        return EXIT_OK
    fields = [
        ("run", run.training_run_id),
        ("base model", run.base_model),
        ("owner", run.model_owner),
        ("lora rank", _rank(run.lora_rank)),
        ("state", "CORRUPTED" if run.corrupted else "ok"),
        ("last request", _when(run.last_request_time)),
        *(("metadata", f"{key}={value}") for key, value in sorted((run.user_metadata or {}).items())),
    ]
    _print_fields(fields)
    if checkpoints:
        print()
        _checkpoint_rows(checkpoints)
    return EXIT_OK


# sample, version --------------------------------------------------------------------------------------------


def _sample(args: argparse.Namespace) -> int:
    from .types import ModelInput, SamplingParams

    model_path = _checked_path(args.model_path) if args.model_path else None
    params: dict[str, Any] = {"max_tokens": args.max_tokens}
    if args.temperature is not None:
        params["temperature"] = args.temperature
    if args.seed is not None:
        params["seed"] = args.seed
    needs_tokenizer = args.prompt is not None
    tokenizer = _tokenizer(args.base_model, required=needs_tokenizer) if args.base_model else None
    with _client(args) as client:
        sampler = client.create_sampling_client(model_path=model_path, base_model=args.base_model)
        base_model = args.base_model or sampler.get_base_model()
        if tokenizer is None and model_path is not None:
            tokenizer = _tokenizer(base_model, required=needs_tokenizer)
        if args.prompt is not None:
            assert tokenizer is not None  # _tokenizer(required=True) raised otherwise
            tokens = tokenizer.encode(args.prompt)
        else:
            tokens = args.tokens
        response = sampler.sample(ModelInput.from_ints(tokens), args.num_samples, SamplingParams(**params)).result()
    samples = [
        {
            "tokens": seq.tokens,
            "text": tokenizer.decode(seq.tokens, skip_special_tokens=True) if tokenizer is not None else None,
            "stop_reason": seq.stop_reason,
        }
        for seq in response.sequences
    ]
    if args.json:
        _emit_json({"model": model_path or base_model, "prompt_tokens": tokens, "samples": samples})
        return EXIT_OK
    for index, sample in enumerate(samples):
        print(f"--- sample {index} ({sample['stop_reason']}, {len(sample['tokens'])} tokens)")
        print(sample["text"] if sample["text"] is not None else ",".join(map(str, sample["tokens"])))
    return EXIT_OK


def _tokenizer(base_model: str, *, required: bool) -> Any:
    from .tokenizer import TokenizerLoadError, TokenizerNotFoundError, get_tokenizer

    try:
        return get_tokenizer(base_model)
    except (TokenizerNotFoundError, TokenizerLoadError) as exc:
        if required:
            raise UsageError(f"no tokenizer available for {base_model} ({exc}); pass --tokens 1,2,3 instead of --prompt") from None
        return None


def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoUsageError, check_arguments, run

    try:
        check_arguments(args)
    except DemoUsageError as exc:
        raise UsageError(str(exc)) from None
    return run(args, client_options={"deadlines": cli_deadlines(args.timeout)})


def _exec(args: argparse.Namespace) -> int:  # `tinkex --json exec ...`: shared options do not apply to a program
    from .compat.launch import exec_program

    return exec_program(args.program_args)


def _version(args: argparse.Namespace) -> int:
    data = {"tinkex": TINKEX_VERSION, "wire_sdk_version": WIRE_SDK_VERSION, "python": sys.version.split()[0]}
    return _done(args, data, f"tinkex {TINKEX_VERSION} (Tinker wire protocol of SDK {WIRE_SDK_VERSION})")


if __name__ == "__main__":
    sys.exit(main())
