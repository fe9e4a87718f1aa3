"""Redactor: secret headers, URLs and free text are masked; nothing secret leaks through repr."""

from __future__ import annotations

import threading

import httpx
import pytest

from pristine_transport.redaction import Redactor

API_KEY = "tml-0123456789abcdefwxyz"


@pytest.mark.parametrize(
    "name", ["Authorization", "proxy-authorization", "X-API-Key", "CF-Access-Client-Secret", "Cookie", "set-cookie"]
)
def test_builtin_secret_headers_case_insensitive(name: str) -> None:
    redactor = Redactor()
    assert redactor.is_secret_header(name)
    assert redactor.is_secret_header(name.upper())
    assert redactor.headers({name: API_KEY}) == {name: "tml-…wxyz"}


def test_mask_shows_at_most_a_short_prefix_and_the_last_four() -> None:
    redactor = Redactor()
    assert redactor.mask(API_KEY) == "tml-…wxyz"
    assert redactor.mask("short-secret") == "***"
    assert redactor.mask("") == ""


def test_headers_keeps_other_headers_and_masks_registered_values_inside_them() -> None:
    redactor = Redactor(secret_headers=["X-Custom-Token"], secret_values=[API_KEY])
    masked = redactor.headers(
        httpx.Headers(
            {
                "x-custom-token": "custom-token-value-1234",
                "Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig9",
                "Accept": "application/json",
                "X-Debug": f"key={API_KEY}",
            }
        )
    )
    assert masked == {
        "x-custom-token": "cust…1234",
        "Authorization": "Bearer eyJh…sig9",
        "Accept": "application/json",
        "X-Debug": "key=tml-…wxyz",
    }


def test_url_masks_password_and_secret_query_values() -> None:
    redactor = Redactor()
    url = "https://user:hunter2@proxy.test:8080/p?api_key=abc&page=2&X-Amz-Signature=f00d&access_token=t&q=x"
    assert redactor.url(url) == (
        "https://user:***@proxy.test:8080/p?api_key=***&page=2&X-Amz-Signature=***&access_token=***&q=x"
    )
    assert redactor.url(httpx.URL("http://api.test/v1/things?limit=3")) == "http://api.test/v1/things?limit=3"


def test_url_masks_registered_values_in_the_path() -> None:
    redactor = Redactor(secret_values=[API_KEY])
    assert redactor.url(f"http://api.test/keys/{API_KEY}/info") == "http://api.test/keys/tml-…wxyz/info"


def test_text_replaces_every_occurrence_including_percent_encoded() -> None:
    secret = "s3cr3t/with+chars=="
    redactor = Redactor()
    redactor.add_secret_value(secret)
    text = f"first {secret} then url?k=s3cr3t%2Fwith%2Bchars%3D%3D end {secret}"
    masked = redactor.text(text)
    assert masked == "first s3cr…rs== then url?k=s3cr…D%3D end s3cr…rs=="


def test_text_prefers_the_longest_secret_when_one_contains_another() -> None:
    redactor = Redactor(secret_values=["abcd1234abcd1234", "abcd1234abcd1234-extended-part"])
    assert redactor.text("v=abcd1234abcd1234-extended-part.") == "v=abcd…part."


def test_tiny_values_are_not_searched_in_text() -> None:
    redactor = Redactor(secret_values=["ab"])
    assert redactor.text("about a tab") == "about a tab"


def test_repr_shows_no_values() -> None:
    redactor = Redactor(secret_values=[API_KEY])
    assert API_KEY not in repr(redactor)
    assert "wxyz" not in repr(redactor)
    assert "secret_values=<1>" in repr(redactor)


def test_concurrent_registration_keeps_every_value() -> None:
    redactor = Redactor()
    values = [[f"secret-value-{t}-{i:04d}" for i in range(200)] for t in range(8)]

    def register(batch: list[str]) -> None:
        for value in batch:
            redactor.add_secret_value(value)
            redactor.add_secret_header(value[:10])

    threads = [threading.Thread(target=register, args=(batch,)) for batch in values]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    joined = " ".join(v for batch in values for v in batch)
    assert "secret-value" not in redactor.text(joined)
