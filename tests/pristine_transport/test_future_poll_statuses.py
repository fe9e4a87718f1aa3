"""The manifest's ``futures.poll_statuses``: what a poll's HTTP status means, as typed data. Every problem is reported
at once, under its JSON path, with the manifest's other problems."""

from __future__ import annotations

from typing import Any

import pytest

from pristine_transport.manifest import ManifestError, PollStatusesSpec, load_manifest


def manifest(futures: dict[str, Any], **sections: Any) -> dict[str, Any]:
    return {
        "name": "demo",
        "base_url": {"default": "https://api.example.test"},
        "endpoints": {"poll": {"method": "POST", "path": "/poll"}},
        "futures": {"retrieve_endpoint": "poll", **futures},
        **sections,
    }


def problems_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_manifest(raw)
    return sorted(caught.value.problems)


def test_unstated_meanings_are_the_defaults() -> None:
    futures = load_manifest(manifest({})).futures
    assert futures is not None
    assert futures.poll_statuses == PollStatusesSpec(
        shed=[429], server_errors_from=500, not_yet=[408], empty_bad_request=[400]
    )


def test_a_manifest_states_its_own_meanings() -> None:
    stated = {"shed": [420], "server_errors_from": None, "not_yet": [425, 408], "empty_bad_request": []}
    futures = load_manifest(manifest({"poll_statuses": stated, "expiry_status": 404})).futures
    assert futures is not None
    assert futures.poll_statuses == PollStatusesSpec(**stated)
    assert futures.expiry_status == 404


@pytest.mark.parametrize(
    ("futures", "expected"),
    [
        (
            {"poll_statuses": {"shed": [42, 429]}},
            ["futures.poll_statuses.shed[0]: must be an HTTP status (100-599), got 42"],
        ),
        (
            {"poll_statuses": {"not_yet": [408, 202]}},
            ["futures.poll_statuses.not_yet[1]: 202 is a success; a 2xx poll answer is read by its body"],
        ),
        (
            {"poll_statuses": {"shed": [429, 503]}},
            ["futures.poll_statuses.shed[1]: 503 is already a server error (server_errors_from 500)"],
        ),
        (
            {"poll_statuses": {"shed": [429], "not_yet": [408, 429]}},
            ["futures.poll_statuses.not_yet[1]: 429 is already named in futures.poll_statuses.shed"],
        ),
        (
            {"expiry_status": 408},
            ["futures.expiry_status: 408 is already named in futures.poll_statuses.not_yet"],
        ),
        (
            {"expiry_status": 502},
            ["futures.expiry_status: 502 is already a server error (server_errors_from 500)"],
        ),
        (
            {"poll_statuses": {"server_errors_from": 200}},
            ["futures.poll_statuses.server_errors_from: must be within 300-599 or null, got 200"],
        ),
        (
            {"bad_request_retries": -1},
            ["futures.bad_request_retries: must be 0 or more, got -1"],
        ),
        (
            {"poll_statuses": {"shed": "429"}},
            ["futures.poll_statuses.shed: Expected `array`, got `str`"],
        ),
        (
            {"poll_statuses": {"retry": [503]}},
            ["futures.poll_statuses.retry: unknown key"],
        ),
    ],
)
def test_each_problem_names_its_path(futures: dict[str, Any], expected: list[str]) -> None:
    assert problems_of(manifest(futures)) == expected


def test_every_problem_is_reported_at_once_with_the_manifests_others() -> None:
    raw = manifest(
        {
            "poll_statuses": {"shed": [429, 700], "not_yet": [429], "empty_bad_request": [400], "colour": "red"},
            "expiry_status": 400,
            "bad_request_retries": -2,
        },
        surprise=True,
    )
    assert problems_of(raw) == [
        "futures.bad_request_retries: must be 0 or more, got -2",
        "futures.expiry_status: 400 is already named in futures.poll_statuses.empty_bad_request",
        "futures.poll_statuses.colour: unknown key",
        "futures.poll_statuses.not_yet[0]: 429 is already named in futures.poll_statuses.shed",
        "futures.poll_statuses.shed[1]: must be an HTTP status (100-599), got 700",
        "surprise: unknown key",
    ]


def test_an_unknown_key_is_answered_with_the_known_ones() -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifest(manifest({"poll_statuses": {"retry": [503]}}))
    (problem,) = caught.value.problems
    assert problem.hint == "known keys here: empty_bad_request, not_yet, server_errors_from, shed"
