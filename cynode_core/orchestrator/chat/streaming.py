"""What happens to model text on its way to a client: think tags split off, secrets held back.

:class:`ThinkSplit` separates ``<think>...</think>`` text from the visible
text, also when a tag is cut across deltas (chat contract 4.3); an
unterminated ``<think>`` at the end is dropped from the visible text.

:class:`HoldBack` is the streaming redactor (chat contract 5.7): it keeps
the whole raw text, redacts all of it at each delta, and holds back the
last ``window`` characters only from where a secret could begin: every
secret pattern starts with one of :data:`TRIGGERS` (compared without case),
so text before the first trigger in the window, and before an end that
may still grow into one, goes out at once, and a secret shorter than the window is
still replaced before any byte of it leaves (decisions.md Chat 9). When a
later scan changes text already sent, :attr:`HoldBack.amended` is set and
the caller sends the full redacted text as an amendment.
"""

from __future__ import annotations

from cynode_core.orchestrator.services.redaction import MARK, redact

OPEN, CLOSE = "<think>", "</think>"
# How every secret pattern of services.redaction begins, lower-cased.
TRIGGERS = (
    "-----begin",
    "eyj",
    "bearer",
    "api_key",
    "api-key",
    "apikey",
    "secret",
    "password",
    "token",
    "sk-",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "cyat_",
    "cyk_",
    "akia",
)
_LONGEST_TRIGGER = max(len(t) for t in TRIGGERS)
# The whole text is scanned again once 1/SCAN_SHARE of its length came anew (every delta while it is short, at
# the end in any case): a scan per token of a long answer would cost the square of its length.
SCAN_SHARE = 256


class ThinkSplit:
    """Feeds of model text in, ``(visible, thinking)`` pieces out."""

    def __init__(self) -> None:
        self._pending = ""
        self._thinking = False

    def feed(self, text: str) -> tuple[str, str]:
        self._pending += text
        visible: list[str] = []
        thinking: list[str] = []
        while self._pending:
            tag = CLOSE if self._thinking else OPEN
            at = self._pending.find(tag)
            if at >= 0:
                (thinking if self._thinking else visible).append(self._pending[:at])
                self._pending = self._pending[at + len(tag) :]
                self._thinking = not self._thinking
                continue
            keep = _partial_tag_tail(self._pending, tag)
            out = self._pending[: len(self._pending) - keep]
            (thinking if self._thinking else visible).append(out)
            self._pending = self._pending[len(out) :]
            break
        return "".join(visible), "".join(thinking)

    def finish(self) -> tuple[str, str]:
        """What is left: a cut tag's start is text again; an unterminated think block stays thinking."""
        rest, self._pending = self._pending, ""
        return ("", rest) if self._thinking else (rest, "")


def _partial_tag_tail(text: str, tag: str) -> int:
    """How many characters at the end of ``text`` could be the start of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class HoldBack:
    """The streaming redactor of one text (visible or thinking) of one turn."""

    def __init__(self, window: int) -> None:
        self.window = max(window, 0)
        self.raw = ""
        self.sent = ""
        self.kinds: set[str] = set()
        self.amended = False
        self._scanned_at = 0

    def feed(self, text: str) -> str:
        """Take ``text``; what may be sent now."""
        self.raw += text
        if len(self.raw) - self._scanned_at < len(self.raw) // SCAN_SHARE:
            return ""
        return self._release(final=False)

    def finish(self) -> str:
        """The rest, once the model ended."""
        return self._release(final=True)

    @property
    def redacted(self) -> str:
        return redact(self.raw).text

    def _release(self, *, final: bool) -> str:
        self._scanned_at = len(self.raw)
        scanned = redact(self.raw)
        self.kinds.update(scanned.kinds)
        text = scanned.text
        if final:
            ready = text
        else:
            floor = max(len(text) - self.window, 0)
            ready = text[: floor + _safe_prefix(text[floor:])]
        if not ready.startswith(self.sent):
            # A secret longer than the window changed text already sent: send on from where it differs
            # no more; the amendment carries the corrected whole.
            self.amended = True
            return ""
        out = ready[len(self.sent) :]
        self.sent = ready
        return out


def _safe_prefix(tail: str) -> int:
    """How much of ``tail`` (the last window of the redacted text) cannot be part of a secret still coming.

    Up to the first place a secret could begin: a trigger, or an end that may still grow into one.
    """
    lower = tail.replace(MARK, "#" * len(MARK)).lower()
    first = min((at for at in (lower.find(t) for t in TRIGGERS) if at >= 0), default=len(tail))
    return min(first, len(tail) - _trigger_start_at_end(lower))


def _trigger_start_at_end(lower: str) -> int:
    """The length of the longest end of ``lower`` that is the start of a trigger (0: none)."""
    for size in range(min(_LONGEST_TRIGGER - 1, len(lower)), 0, -1):
        end = lower[-size:]
        if any(trigger.startswith(end) for trigger in TRIGGERS):
            return size
    return 0
