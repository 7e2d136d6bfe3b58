"""The streaming redactor and the think-tag split (chat contract 5.7, 4.3; decisions.md Chat 9).

Pure functions over text: whatever way a model's text is cut into deltas,
no byte of a secret shorter than the window is ever released, and text that
cannot be part of a secret goes out at once.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cynode_core.orchestrator.chat.streaming import HoldBack, ThinkSplit
from cynode_core.orchestrator.services.redaction import MARK, redact

SECRETS = [
    "sk-abcdefghijklmnopqrstuvwxyz012345",
    "password=hunter2hunter2",
    "Bearer abcdefghijklmnopqrstuvwxyz",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijklmn",
    "ghp_" + "a" * 36,
    "cyk_" + "b" * 40,
    "AKIAABCDEFGHIJKLMNOP",
]


def cuts(text: str, points: list[int]) -> list[str]:
    marks = sorted({min(p, len(text)) for p in points} | {0, len(text)})
    return [text[a:b] for a, b in zip(marks, marks[1:], strict=False)]


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    secret=st.sampled_from(SECRETS),
    before=st.text(alphabet="abc xyz.\n", max_size=80),
    after=st.text(alphabet="abc xyz.\n", max_size=80),
    points=st.lists(st.integers(min_value=0, max_value=300), max_size=40),
)
def test_no_byte_of_a_secret_shorter_than_the_window_is_released(
    secret: str, before: str, after: str, points: list[int]
) -> None:
    text = f"{before} {secret} {after}"
    hold = HoldBack(window=128)
    released = "".join(hold.feed(piece) for piece in cuts(text, points))
    released += hold.finish()
    assert released == redact(text).text and not hold.amended
    assert secret not in released and secret[-8:] not in released
    assert MARK in released and hold.kinds


def test_plain_text_goes_out_at_once_not_a_window_late() -> None:
    hold = HoldBack(window=256)
    out = [hold.feed(piece) for piece in ["Hello", " world", ", how", " are", " you"]]
    # Only an end that may begin a secret waits: "are" ends in "e" (the start of "eyJ"), "you" does not.
    assert out == ["Hello", " world", ", how", " ar", "e you"]
    assert hold.finish() == ""


def test_an_end_that_may_grow_into_a_secret_waits_for_the_next_delta() -> None:
    hold = HoldBack(window=256)
    assert hold.feed("my pass") == "my "
    assert hold.feed("word=hunter2hunter2") == ""
    assert hold.finish() == f"password: {MARK}"


def test_text_is_held_from_a_trigger_until_the_window_has_passed_it() -> None:
    hold = HoldBack(window=16)
    assert hold.feed("my token is ") == "my "  # held from "token" on
    # 16 characters back from the end the window starts; in it, "secret" holds what follows.
    assert hold.feed("not a secret at all") == "token is not a "
    assert hold.finish() == "secret at all"


def test_a_secret_longer_than_the_window_is_amended() -> None:
    hold = HoldBack(window=4)
    key = "sk-" + "z" * 40
    sent = "".join(hold.feed(c) for c in f"key {key} end")
    assert hold.finish() == "" or hold.amended
    assert hold.amended and hold.redacted == f"key {MARK} end" and sent.startswith("key ")


def test_think_tags_are_split_also_across_deltas() -> None:
    split = ThinkSplit()
    pieces = [split.feed(p) for p in ["Hel", "lo <th", "ink>plan</thi", "nk> world <thi"]]
    assert pieces == [("Hel", ""), ("lo ", ""), ("", "plan"), (" world ", "")]
    assert split.finish() == ("<thi", "")
    open_end = ThinkSplit()
    assert open_end.feed("a<think>never closed") == ("a", "never closed")
    assert open_end.finish() == ("", "")
