"""Hostile JSON, as raw bytes, and the one rule every answer to it must keep.

A body is built from an endpoint's valid example (:class:`Endpoint`) with
one field replaced by a hostile fragment (:func:`hostile_fragments`), or
replaced whole by a hostile document (:func:`hostile_documents`). Fragments
are JSON text, not Python values: nesting 100 000 levels deep, integers of
5000 digits and ``NaN`` cannot go through ``json.dumps``, and a lone
surrogate must travel as the escape ``"\\ud800"`` (``ensure_ascii``), as an
attacker would send it, since the raw code point is not UTF-8.

:func:`assert_client_error_or_success` is the property: never a 5xx, every
4xx a problem+json document whose ``status`` is the answer's, and the
answer within a bound.
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests
from hypothesis import strategies as st

PROBLEM = "application/problem+json"
ANSWER_SECONDS = 10.0  # a generous bound per answer; tests/fuzz/test_answer_time.py bounds the growth
_MARK = "\x00fuzz-field\x00"
MiB = 1024 * 1024


@dataclass(frozen=True)
class Endpoint:
    """A JSON-body endpoint: its path, a valid body, and which token it takes."""

    name: str
    path: str
    example: dict[str, Any]
    token: str = ""  # whose token it takes: "user", "node", "worker" or "" (none)
    openai: bool = False  # its errors are OpenAI error objects (the chat surface), not problem details
    fields: list[tuple[str, ...]] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", list(field_paths(self.example)))

    def body_with(self, path: tuple[str, ...], fragment: bytes) -> bytes:
        """The example as JSON text with the value at ``path`` replaced by ``fragment`` (raw JSON); () is the body."""
        if not path:
            return fragment
        doc = json.loads(json.dumps(self.example))
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = _MARK
        text = json.dumps(doc).encode()
        return text.replace(json.dumps(_MARK).encode(), fragment, 1)


def field_paths(value: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every key path of ``value`` (objects only; a list is a leaf, replaced whole)."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from field_paths(child, (*prefix, key))


# -- fragments -------------------------------------------------------------------------


def _ascii(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=True).encode()


def nested_arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def nested_objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"0" + b"}" * depth


def incompressible_text(size: int, seed: int) -> bytes:
    """A JSON string of about ``size`` bytes of random base64 (no repetition a parser or a log could fold)."""
    raw = random.Random(seed).randbytes(size * 3 // 4)
    return b'"' + base64.b64encode(raw) + b'"'


def random_unicode_text(chars: int, seed: int) -> bytes:
    """A JSON string of random scalar values from all planes, sent as UTF-8 (no surrogates)."""
    rng = random.Random(seed)
    low, high = (0x20, 0xD800), (0xE000, 0x110000)  # around the surrogates
    picks = (rng.randrange(*(low if rng.random() < 0.8 else high)) for _ in range(chars))
    return json.dumps("".join(map(chr, picks)), ensure_ascii=False).encode("utf-8")


def huge_array(items: int, item: bytes = b"0") -> bytes:
    return b"[" + b",".join([item] * items) + b"]"


def many_keys(count: int) -> bytes:
    return b"{" + b",".join(b'"k%d":0' % i for i in range(count)) + b"}"


SIZES = st.sampled_from([1, 100, 10_000, 1 * MiB, 5 * MiB])
DEPTHS = st.sampled_from([2, 63, 65, 1_000, 10_000, 100_000])
COUNTS = st.sampled_from([0, 1, 1_000, 100_000, 1_000_000])
# Text with lone surrogates among other characters, NUL included.
_SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
_ANY_CHAR = st.characters(codec=None, exclude_categories=())
SURROGATE_TEXT = st.lists(st.one_of(_SURROGATES, _ANY_CHAR), min_size=1, max_size=8).filter(
    lambda chars: any(0xD800 <= ord(c) <= 0xDFFF for c in chars)
)


BIG_NUMBERS = [
    b"9" * 5000,
    b"-" + b"9" * 4000,
    b"1e999",
    b"-1e999",
    b"NaN",
    b"Infinity",
    b"-0.0",
    b"18446744073709551616",
]
WRONG_TYPES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=4), st.just([]), st.just({})
)


@st.composite
def hostile_fragments(draw: st.DrawFn) -> bytes:
    """One hostile JSON value, as text."""
    kind = draw(
        st.sampled_from(
            [
                "surrogate",
                "nul",
                "deep_arrays",
                "deep_objects",
                "huge_string",
                "unicode_string",
                "wrong_type",
                "huge_array",
                "huge_array_of_strings",
                "many_keys",
                "big_number",
            ]
        )
    )
    if kind == "surrogate":
        return _ascii("".join(draw(SURROGATE_TEXT)))
    if kind == "nul":
        text = draw(st.text(max_size=8))
        return _ascii(text[: len(text) // 2] + "\x00" + text[len(text) // 2 :])
    if kind == "deep_arrays":
        return nested_arrays(draw(DEPTHS))
    if kind == "deep_objects":
        return nested_objects(draw(DEPTHS))
    if kind == "huge_string":
        return incompressible_text(draw(SIZES), draw(st.integers(0, 2**32)))
    if kind == "unicode_string":
        return random_unicode_text(draw(st.sampled_from([1, 1_000, 300_000])), draw(st.integers(0, 2**32)))
    if kind == "huge_array":
        return huge_array(draw(COUNTS))
    if kind == "huge_array_of_strings":
        return huge_array(draw(st.sampled_from([10, 100_000])), draw(st.sampled_from([b'"x"', b'"\\ud800"', b"{}"])))
    if kind == "many_keys":
        return many_keys(draw(st.sampled_from([10, 100_000])))
    if kind == "big_number":
        return draw(st.sampled_from(BIG_NUMBERS))
    return _ascii(draw(WRONG_TYPES))


@st.composite
def hostile_documents(draw: st.DrawFn) -> bytes:
    """A whole body that is not the object the endpoint wants: a hostile value, broken text, or no JSON at all."""
    return draw(
        st.one_of(
            hostile_fragments(),
            st.sampled_from([b"", b" ", b"{", b'{"a":}', b"\xff\xfe{}", b"\xef\xbb\xbf{}", b'"\xed\xa0\x80"', b"[1,]"]),
            st.binary(max_size=64),
        )
    )


# -- the property ------------------------------------------------------------------------


def assert_client_error_or_success(resp: requests.Response, elapsed: float, what: str, *, openai: bool = False) -> None:
    """No 5xx; a 4xx is an error document of the endpoint's format; the answer came within the bound.

    An OpenAI endpoint answers ``{"error": {"code", "message", "type"}}``, except a body the server
    itself refused before the app saw it (over the size cap), which is problem details everywhere.
    """
    assert resp.status_code < 500, f"{what}: {resp.status_code} {resp.text[:500]!r}"
    if resp.status_code >= 400:
        content_type = resp.headers.get("Content-Type", "")
        if openai and content_type.startswith("application/json"):
            error = resp.json()["error"]
            assert error["code"] and error["type"] == "cynodeai_error" and "message" in error, f"{what}: {error}"
        else:
            assert content_type.startswith(PROBLEM), f"{what}: {resp.headers} {resp.text[:200]!r}"
            problem = resp.json()
            assert problem["status"] == resp.status_code and problem["type"] and problem["title"], f"{what}: {problem}"
    assert elapsed < ANSWER_SECONDS, f"{what}: answered in {elapsed:.1f} s"


def post_timed(url: str, body: bytes, headers: dict[str, str]) -> tuple[requests.Response, float]:
    """POST ``body`` as JSON; the answer and how long it took."""
    started = time.monotonic()
    resp = requests.post(url, data=body, headers={"Content-Type": "application/json", **headers}, timeout=60)
    return resp, time.monotonic() - started
