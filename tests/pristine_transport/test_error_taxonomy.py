"""One error taxonomy: the transport-level failures the layers raise are defined in pristine_transport.errors
beside the taxonomy they map to, so errors depends on no layer and no module dodges a cycle by importing late."""

import ast
from pathlib import Path

import httpx

import pristine_transport
from pristine_transport import errors
from pristine_transport.layers import retry

PACKAGE = Path(pristine_transport.__file__).parent


def _imports_inside_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    found.append(f"{path.name}:{inner.lineno}")
    return found


def test_errors_retry_and_policy_import_nothing_late() -> None:
    modules = [PACKAGE / "errors.py", PACKAGE / "policy.py", PACKAGE / "layers" / "retry.py"]
    assert [hit for module in modules for hit in _imports_inside_functions(module)] == []


def test_errors_depends_on_no_layer() -> None:
    tree = ast.parse((PACKAGE / "errors.py").read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert not [name for name in imported if "layers" in name]


def test_the_retry_layer_raises_the_taxonomys_progress_timeout() -> None:
    assert retry.ProgressTimeoutError is errors.ProgressTimeoutError is pristine_transport.ProgressTimeoutError
    request = httpx.Request("POST", "https://api.example.test/asample")
    failure = errors.ProgressTimeoutError(120.0, request)
    assert isinstance(failure, httpx.TimeoutException)
    assert failure.timeout_s == 120.0
    mapped = errors.error_for_transport_exception(failure, request)
    assert isinstance(mapped, errors.APITimeoutError)
    assert mapped.message.startswith("No progress made in 120s. Requests appear to be stuck.")


def test_a_futures_failures_are_the_taxonomys() -> None:
    from pristine_transport import futures

    for name in (
        "FutureExpiredError",
        "FutureRetrieveError",
        "FutureTimeoutError",
        "RequestCancelledError",
        "RequestCapacityError",
        "RequestFailedError",
        "RequestRateLimitedError",
    ):
        assert getattr(futures, name) is getattr(errors, name)
        assert getattr(errors, name).__module__ == "pristine_transport.errors"
