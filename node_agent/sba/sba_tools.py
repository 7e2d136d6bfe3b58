"""The runner's local tools (agents_contract.md 5.5), each confined to the job's workspace.

A path is relative to the workspace, or absolute under it; its real path
(symlinks resolved) must stay inside, else the step fails with ``path
escapes workspace``. Output is cut to ``max_output_bytes`` with upstream's
``\\n...[truncated]`` marker and the step stays a success. A tool never
raises: :meth:`Toolbox.run` gives an :class:`Outcome` (a failure carries its
message), which the runner records as a step result.
"""

from __future__ import annotations

import fnmatch
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sba_patch
import sba_schema
import sba_spec as spec

COMMAND_TIMEOUT = 60.0
TREE_DEPTH = 6
SKIPPED_DIRS = (".git", "node_modules")
SEARCH_MAX_FILE = 1024 * 1024
BINARY_PROBE = 8192
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ToolError(Exception):
    """A step failure: its message, and the output and exit code it had, if any."""

    def __init__(self, message: str, output: str = "", exit_code: int | None = None):
        super().__init__(message)
        self.output = output
        self.exit_code = exit_code


@dataclass
class Outcome:
    status: str = spec.SUCCESS
    output: str = ""
    error: str = ""
    exit_code: int | None = None


class Toolbox:
    """The tools of one job: its workspace, output cap, deadline and todo list."""

    def __init__(
        self,
        workspace: str,
        max_output_bytes: int,
        deadline: float,
        todo: list[spec.TodoItem],
        save_todo: Callable[[], None],
    ):
        self.home = workspace
        self.root = os.path.realpath(workspace)
        self.max_output_bytes = max_output_bytes
        self.deadline = deadline
        self.todo = todo
        self.save_todo = save_todo

    def run(self, tool: str, args: dict[str, Any]) -> Outcome:
        """Check ``args`` against the tool's schema, then run it."""
        if tool not in sba_schema.ARGUMENTS or tool == spec.FINISH:
            return Outcome(spec.FAILURE, error=f"unknown tool: {tool}")
        problem = sba_schema.check(args, sba_schema.ARGUMENTS[tool], "args")
        if problem:
            return Outcome(spec.FAILURE, error=f"invalid {tool} args: {problem}")
        try:
            outcome: Outcome = getattr(self, tool)(**args)
            return outcome
        except ToolError as exc:
            return Outcome(spec.FAILURE, exc.output, str(exc), exc.exit_code)
        except sba_patch.PatchError as exc:
            return Outcome(spec.FAILURE, error=str(exc))
        except (OSError, ValueError) as exc:  # ValueError: a NUL in a path, text that is not UTF-8
            return Outcome(spec.FAILURE, error=getattr(exc, "strerror", None) or str(exc))

    # ------------------------------------------------------------ helpers

    def resolve(self, path: str) -> str:
        """The real path of ``path`` (relative to the workspace, or absolute under it); ToolError outside."""
        real = os.path.realpath(os.path.join(self.root, path))
        if real != self.root and not real.startswith(self.root + os.sep):
            raise ToolError(spec.PATH_ESCAPES)
        return real

    def relative(self, real: str) -> str:
        return os.path.relpath(real, self.root)

    def cut(self, data: bytes) -> str:
        """``data`` as text, cut to ``max_output_bytes`` with the truncation marker."""
        if len(data) <= self.max_output_bytes:
            return data.decode("utf-8", "replace")
        return data[: self.max_output_bytes].decode("utf-8", "ignore") + spec.TRUNCATED_MARKER

    def _lines_out(self, lines: list[str]) -> str:
        return self.cut("".join(line + "\n" for line in lines).encode("utf-8", "replace"))

    # -------------------------------------------------------------- tools

    def run_command(self, argv: list[str], cwd: str = "") -> Outcome:
        if not argv:
            raise ToolError("run_command args.argv must be non-empty")
        directory = self.resolve(cwd or ".")
        if not os.path.isdir(directory):
            raise ToolError(f"cwd is not a directory: {cwd}")
        left = self.deadline - time.monotonic()
        if left <= 0:
            return Outcome(spec.TIMEOUT, error=spec.TIMEOUT_MESSAGE)
        limit = min(COMMAND_TIMEOUT, left)
        env = {"PATH": os.environ.get("PATH") or DEFAULT_PATH, "HOME": self.home, "LANG": "C.UTF-8"}
        try:
            proc = subprocess.Popen(
                argv,
                cwd=directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise ToolError(f"command not found: {argv[0]}", exit_code=127) from None
        except PermissionError:
            raise ToolError(f"permission denied: {argv[0]}", exit_code=126) from None
        kept = bytearray()
        reader = threading.Thread(target=self._drain, args=(proc, kept), daemon=True)
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            timed_out = True
        self._kill_group(proc)
        reader.join(5)
        output = self.cut(bytes(kept))
        code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        if timed_out:
            return Outcome(spec.TIMEOUT, output, f"command timed out after {limit:.0f} s", code)
        if code != 0:
            return Outcome(spec.FAILURE, output, f"exit status {code}", code)
        return Outcome(spec.SUCCESS, output, exit_code=0)

    def _drain(self, proc: subprocess.Popen[bytes], kept: bytearray) -> None:
        """Read the command's output to its end, keeping only what the cap can show (and a byte more)."""
        assert proc.stdout is not None
        with proc.stdout:
            for chunk in iter(lambda: proc.stdout.read(65536), b""):  # type: ignore[union-attr]
                room = self.max_output_bytes + 1 - len(kept)
                if room > 0:
                    kept += chunk[:room]

    @staticmethod
    def _kill_group(proc: subprocess.Popen[bytes]) -> None:
        """Kill what the command left in its process group (it had a session of its own), then reap it."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()

    def read_file(self, path: str, start_line: int | None = None, end_line: int | None = None) -> Outcome:
        real = self.resolve(path)
        if not os.path.isfile(real):
            raise ToolError(f"file not found: {path}")
        first, count, kept = start_line or 1, 0, bytearray()
        with open(real, "rb") as handle:
            if start_line is None and end_line is None:
                return Outcome(output=self.cut(handle.read(self.max_output_bytes + 1)))
            for count, line in enumerate(handle, 1):  # noqa: B007 - count is the number of lines read
                if count >= first and len(kept) <= self.max_output_bytes:
                    kept += line
                if count == end_line:
                    break
        last = end_line or count
        if first > last or last > count:
            raise ToolError(f"line range {first}-{last} out of bounds (the file has {count} lines)")
        return Outcome(output=self.cut(bytes(kept)))

    def write_file(self, path: str, content: str) -> Outcome:
        real = self.resolve(path)
        data = content.encode("utf-8")
        if os.path.isdir(real):
            raise ToolError(f"is a directory: {path}")
        os.makedirs(os.path.dirname(real), exist_ok=True)
        with open(real, "wb") as handle:
            handle.write(data)
        return Outcome(output=f"wrote {len(data)} bytes to {self.relative(real)}")

    def apply_unified_diff(self, diff: str) -> Outcome:
        def resolve(path: str) -> str:
            try:
                return self.resolve(path)
            except ToolError:
                raise ToolError(f"{spec.PATH_ESCAPES}: {path}") from None

        def read(real: str) -> str | None:
            if not os.path.lexists(real):
                return None
            if not os.path.isfile(real):
                raise sba_patch.PatchError(f"{self.relative(real)}: not a regular file")
            with open(real, "rb") as handle:
                return handle.read().decode("utf-8")

        changes = sba_patch.plan(diff, resolve, read)
        done = []
        for real, name, text in changes:
            if text is None:
                os.remove(real)
                done.append(f"deleted {name}")
                continue
            created = not os.path.exists(real)
            os.makedirs(os.path.dirname(real), exist_ok=True)
            with open(real, "wb") as handle:
                handle.write(text.encode("utf-8"))
            done.append(f"{'created' if created else 'patched'} {name}")
        return Outcome(output=self._lines_out(done))

    def list_tree(self, path: str = "") -> Outcome:
        top = self.resolve(path or ".")
        if not os.path.isdir(top):
            raise ToolError(f"not a directory: {path}")
        lines: list[str] = []
        self._walk(top, 1, lines)
        return Outcome(output=self._lines_out(lines))

    def _walk(self, directory: str, depth: int, lines: list[str]) -> None:
        """Workspace-relative entries under ``directory``, depth first, sorted, bounded by the output cap."""
        with os.scandir(directory) as entries:
            ordered = sorted(entries, key=lambda entry: entry.name)
        for entry in ordered:
            if sum(len(line) + 1 for line in lines) > self.max_output_bytes:
                return
            if entry.is_dir(follow_symlinks=False):
                if entry.name in SKIPPED_DIRS:
                    continue
                lines.append(self.relative(entry.path) + "/")
                if depth < TREE_DEPTH:
                    self._walk(entry.path, depth + 1, lines)
            else:
                lines.append(self.relative(entry.path))

    def search_files(self, pattern: str, path: str = "", include: str = "") -> Outcome:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ToolError(f"search_files invalid regex: {exc}") from None
        top = self.resolve(path or ".")
        matches: list[str] = []
        size = 0
        for real in self._files(top):
            if include and not fnmatch.fnmatch(os.path.basename(real), include):
                continue
            for n, line in enumerate(self._text_lines(real), 1):
                if regex.search(line):
                    matches.append(f"{self.relative(real)}:{n}:{line}")
                    size += len(matches[-1]) + 1
            if size > self.max_output_bytes:
                break
        return Outcome(output=self._lines_out(matches))

    def _files(self, top: str) -> list[str]:
        """Regular files at or under ``top`` whose real path stays in the workspace, sorted, skipped dirs left out."""
        if not os.path.isdir(top):
            return [top] if os.path.isfile(top) else []
        found = []
        for directory, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
            for name in sorted(files):
                full = os.path.join(directory, name)
                try:
                    found.append(self.resolve(full))
                except ToolError:
                    continue
        return [real for real in found if os.path.isfile(real)]

    @staticmethod
    def _text_lines(real: str) -> list[str]:
        """The lines of a text file; none for a file over 1 MiB or a binary one (NUL in its first 8 KiB)."""
        if os.path.getsize(real) > SEARCH_MAX_FILE:
            return []
        with open(real, "rb") as handle:
            data = handle.read()
        if b"\0" in data[:BINARY_PROBE]:
            return []
        return data.decode("utf-8", "replace").split("\n")

    def todo_add(self, title: str) -> Outcome:
        self.todo.append(spec.TodoItem(title))
        self.save_todo()
        return Outcome(output=f"added todo [{len(self.todo) - 1}]: {title}")

    def todo_done(self, index: int) -> Outcome:
        if not 0 <= index < len(self.todo):
            raise ToolError(f"no todo item [{index}]")
        self.todo[index] = spec.TodoItem(self.todo[index].title, True)
        self.save_todo()
        return Outcome(output=f"done: [{index}] {self.todo[index].title}")
