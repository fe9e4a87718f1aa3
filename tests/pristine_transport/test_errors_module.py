"""Every error class of pristine_transport is defined in pristine_transport.errors; the modules that raise them
re-export them under the import paths they had, and they still pickle."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil

import httpx
import pytest

import pristine_transport
from pristine_transport import errors


def _modules() -> list[str]:
    return [
        info.name
        for info in pkgutil.walk_packages(pristine_transport.__path__, prefix="pristine_transport.")
        if not info.name.endswith("__main__")
    ]


def test_every_error_class_is_defined_in_errors() -> None:
    elsewhere: set[str] = set()
    for name in _modules():
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            is_error = issubclass(cls, BaseException) and not issubclass(cls, Warning)  # a warning category is no error
            if is_error and cls.__module__ == name and name != errors.__name__:
                elsewhere.add(f"{name}.{cls_name}")
    assert elsewhere == set()  # each error moved to errors.py is re-exported where it was


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("pristine_transport.boundary", "ResponseTooLarge"),
        ("pristine_transport.deadlines", "DeadlineExceededError"),
        ("pristine_transport.deadlines", "AttemptDeadlineError"),
        ("pristine_transport.manifest", "ManifestError"),
        ("pristine_transport.manifest", "ManifestProblem"),
        ("pristine_transport", "DeadlineExceededError"),
        ("pristine_transport", "ManifestError"),
        ("pristine_transport.futures", "FutureExpiredError"),
    ],
)
def test_the_old_import_paths_still_work(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


def test_the_moved_errors_pickle() -> None:
    request = httpx.Request("POST", "https://api.example.test/v1/retrieve")
    deadline = errors.DeadlineExceededError(
        request,
        waited_on="future r-1",
        waited_s=301.0,
        deadline="no_progress",
        last_seen="HTTP 408",
        may_have_run=True,
        request_id="r-1",
    )
    copy = pickle.loads(pickle.dumps(deadline))
    assert type(copy) is errors.DeadlineExceededError and str(copy) == str(deadline)
    assert (copy.request_id, copy.outcome, copy.deadline, copy.request.url) == (
        "r-1",
        "ran",
        "no_progress",
        request.url,
    )

    manifest_error = errors.ManifestError([errors.ManifestProblem("futures.x: unknown key", "known keys here: y")])
    copy_m = pickle.loads(pickle.dumps(manifest_error))
    assert str(copy_m) == str(manifest_error) and copy_m.problems[0].hint == "known keys here: y"

    attempt = errors.AttemptDeadlineError("attempt took too long", request=request)
    assert str(pickle.loads(pickle.dumps(attempt))) == "attempt took too long"
