import pickle

import httpx
import msgspec
import pytest

from pristine_transport.request import (
    NOT_GIVEN,
    NotGiven,
    Omit,
    encode_query,
    json_body,
    merge_headers,
    merge_query,
    omit,
)


def test_sentinels_are_falsy_singletons_with_readable_reprs() -> None:
    assert not NOT_GIVEN and not omit
    assert repr(NOT_GIVEN) == "NOT_GIVEN" and repr(omit) == "omit"
    assert NotGiven() is NOT_GIVEN and Omit() is omit
    assert pickle.loads(pickle.dumps(NOT_GIVEN)) is NOT_GIVEN
    assert pickle.loads(pickle.dumps(omit)) is omit


@pytest.mark.parametrize(
    ("array_format", "expected"),
    [
        ("comma", [("ids", "1,2,3")]),
        ("repeat", [("ids", "1"), ("ids", "2"), ("ids", "3")]),
        ("brackets", [("ids[]", "1"), ("ids[]", "2"), ("ids[]", "3")]),
    ],
)
def test_arrays_follow_the_array_format(array_format: str, expected: list[tuple[str, str]]) -> None:
    assert encode_query({"ids": [1, 2, 3]}, array_format) == expected  # type: ignore[arg-type]


def test_booleans_none_and_nested_mappings() -> None:
    pairs = encode_query(
        {"public": True, "corrupted": False, "cursor": None, "filter": {"owner": "me", "deep": {"x": 1}}, "limit": 20}
    )
    assert pairs == [
        ("public", "true"),
        ("corrupted", "false"),
        ("filter[owner]", "me"),
        ("filter[deep][x]", "1"),
        ("limit", "20"),
    ]


def test_none_items_are_dropped_from_arrays_and_empty_comma_arrays_vanish() -> None:
    assert encode_query({"a": [1, None, 2], "b": []}) == [("a", "1,2")]
    assert encode_query({"a": [True, False]}, "repeat") == [("a", "true"), ("a", "false")]


def test_encoded_pairs_go_through_httpx_percent_encoding() -> None:
    url = httpx.Request("GET", "http://h/x", params=encode_query({"scope": ["owned", "accessible"]})).url
    assert url.params["scope"] == "owned,accessible"


def test_unknown_array_format_is_rejected() -> None:
    with pytest.raises(ValueError, match="array_format"):
        encode_query({"a": [1]}, "pipes")  # type: ignore[arg-type]


def test_merge_headers_is_case_insensitive_last_wins_and_omit_removes() -> None:
    merged = merge_headers(
        {"Accept": "application/json", "X-Default": "d", "User-Agent": "base"},
        None,
        {"accept": "text/plain", "x-default": omit},
        httpx.Headers({"X-Extra": "e"}),
    )
    assert merged == {"accept": "text/plain", "User-Agent": "base", "x-extra": "e"}


def test_merge_query_last_wins_and_omit_removes() -> None:
    assert merge_query({"limit": 20, "offset": 0}, {"limit": 5, "offset": omit}) == {"limit": 5}


class Adam(msgspec.Struct, omit_defaults=True):
    learning_rate: float = 1e-4
    beta2: float = 0.95


def test_json_body_encodes_structs_and_plain_data_compactly() -> None:
    assert json_body({"adam_params": Adam(), "seed": None}) == b'{"adam_params":{},"seed":null}'
    assert json_body(Adam(learning_rate=0.5)) == b'{"learning_rate":0.5}'
