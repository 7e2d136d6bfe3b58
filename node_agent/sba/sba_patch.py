"""The unified diff applier behind ``apply_unified_diff`` (agents_contract.md 5.5), in pure Python.

Upstream calls ``patch -p1``, which a sandbox image may not have. This one
reads ``---``/``+++`` file headers (other header lines such as ``diff --git``
or ``index`` are skipped) with ``-p1`` path semantics: the first path
component (``a/``, ``b/``) is stripped, ``/dev/null`` creates or deletes a
file. A hunk applies where its header says or, as ``patch`` does, at the
nearest offset where all its context and removed lines match exactly; there
is no fuzz. Every target path is checked (``resolve``) and every hunk is
applied in memory before :func:`plan` returns, so a diff changes all its
files or none.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

DEV_NULL = "/dev/null"
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


class PatchError(ValueError):
    """The diff cannot be applied as a whole; nothing was written."""


@dataclass
class Hunk:
    old_start: int
    old: list[str] = field(default_factory=list)  # lines as they must be in the file, with their endings
    new: list[str] = field(default_factory=list)


@dataclass
class FilePatch:
    old_path: str  # after -p1, or /dev/null
    new_path: str
    hunks: list[Hunk]


def _path(header: str) -> str:
    """A ``---``/``+++`` header's path with one leading component stripped (``-p1``)."""
    path = header.split("\t", 1)[0].strip()
    if path == DEV_NULL:
        return path
    if "/" not in path:
        raise PatchError(f"cannot strip a leading directory (a/, b/) from {path!r}")
    return path.split("/", 1)[1]


def _hunk(rows: list[str], i: int) -> tuple[Hunk, int]:
    """The hunk whose header is ``rows[i]``, and the index of the row after it."""
    match = _HUNK.match(rows[i])
    if match is None:
        raise PatchError(f"malformed hunk header: {rows[i][:80]!r}")
    old_len = 1 if match.group(2) is None else int(match.group(2))
    new_len = 1 if match.group(4) is None else int(match.group(4))
    hunk = Hunk(int(match.group(1)))
    last = ""
    i += 1
    while len(hunk.old) < old_len or len(hunk.new) < new_len or (i < len(rows) and rows[i].startswith("\\")):
        if i >= len(rows):
            raise PatchError(f"hunk at line {hunk.old_start} ends early")
        row = rows[i]
        tag, text = (row[:1], row[1:] + "\n") if row else (" ", "\n")  # a blank context line may lose its space
        if tag == "\\":  # "\ No newline at end of file": the line before has no line end
            if last not in (" ", "-", "+"):
                raise PatchError(f"a no-newline marker without a line before it at line {hunk.old_start}")
            if last != "+":
                hunk.old[-1] = hunk.old[-1][:-1]
            if last != "-":
                hunk.new[-1] = hunk.new[-1][:-1]
        elif tag in " -+":
            if tag in " -":
                hunk.old.append(text)
            if tag in " +":
                hunk.new.append(text)
        else:
            raise PatchError(f"unexpected line in hunk at line {hunk.old_start}: {row[:80]!r}")
        last = tag
        i += 1
    if len(hunk.old) != old_len or len(hunk.new) != new_len:
        raise PatchError(f"hunk at line {hunk.old_start} does not have the line counts of its header")
    return hunk, i


def parse(diff: str) -> list[FilePatch]:
    """The file patches of ``diff``; :class:`PatchError` when it is not a unified diff."""
    rows = diff.split("\n")
    if rows and rows[-1] == "":
        rows.pop()
    patches: list[FilePatch] = []
    i = 0
    while i < len(rows):
        if rows[i].startswith("--- ") and i + 1 < len(rows) and rows[i + 1].startswith("+++ "):
            patch = FilePatch(_path(rows[i][4:]), _path(rows[i + 1][4:]), [])
            i += 2
            while i < len(rows) and rows[i].startswith("@@"):
                hunk, i = _hunk(rows, i)
                patch.hunks.append(hunk)
            if not patch.hunks:
                raise PatchError(f"no hunks for {patch.new_path}")
            patches.append(patch)
        elif rows[i].startswith("@@"):
            raise PatchError("a hunk without ---/+++ file headers")
        else:
            i += 1
    if not patches:
        raise PatchError("no ---/+++ file headers found: not a unified diff")
    return patches


def _lines(text: str) -> list[str]:
    """``text`` split after each ``\\n`` only (``str.splitlines`` would also split at other separators)."""
    parts = text.split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _find(lines: list[str], old: list[str], want: int, start: int) -> int | None:
    """Where ``old`` matches exactly at or after ``start``, nearest to ``want`` first."""
    if not old:
        return want if start <= want <= len(lines) else None
    for delta in range(len(lines) + 1):
        for at in (want - delta, want + delta):
            if start <= at <= len(lines) - len(old) and lines[at : at + len(old)] == old:
                return at
    return None


def _apply(text: str, hunks: list[Hunk], name: str) -> str:
    lines = _lines(text)
    out: list[str] = []
    pos = 0
    for hunk in hunks:
        want = hunk.old_start - 1 if hunk.old else hunk.old_start
        at = _find(lines, hunk.old, want, pos)
        if at is None:
            raise PatchError(f"{name}: hunk at line {hunk.old_start} does not match (no fuzz)")
        out += lines[pos:at] + hunk.new
        pos = at + len(hunk.old)
    return "".join(out + lines[pos:])


def plan(
    diff: str, resolve: Callable[[str], str], read: Callable[[str], str | None]
) -> list[tuple[str, str, str | None]]:
    """``(real path, diff path, new text or None to delete)`` for each file ``diff`` touches, in order.

    ``resolve`` maps a diff path to its real path (raising when it escapes the
    workspace); ``read`` gives a file's text, ``None`` when it does not exist.
    Nothing is written here.
    """
    patches = parse(diff)
    targets = [tuple(None if p == DEV_NULL else resolve(p) for p in (f.old_path, f.new_path)) for f in patches]
    state: dict[str, str | None] = {}
    names: dict[str, str] = {}

    def current(path: str) -> str | None:
        if path not in state:
            state[path] = read(path)
        return state[path]

    for n, patch in enumerate(patches):
        old, new = targets[n]
        name = patch.new_path if new is not None else patch.old_path
        if old is None and new is None:
            raise PatchError("a file patch from /dev/null to /dev/null")
        if old is None:
            assert new is not None
            if current(new) is not None:
                raise PatchError(f"{name}: already exists")
            text = ""
        else:
            found = current(old)
            if found is None:
                raise PatchError(f"{name}: no such file")
            text = found
        result = _apply(text, patch.hunks, name)
        if new is None:
            assert old is not None
            if result:
                raise PatchError(f"{name}: deleting it would leave lines behind")
            state[old], names[old] = None, patch.old_path
            continue
        if old is not None and old != new:
            state[old], names[old] = None, patch.old_path
        current(new)
        state[new], names[new] = result, patch.new_path
    return [(path, names[path], state[path]) for path in names]
