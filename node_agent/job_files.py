"""A job's files: its inputs written into the workspace before it starts, its outputs collected after it ends.

Inputs (``sandbox.inputs``, artifacts_contract.md 7) are checked against
their declared size and SHA-256 (a mismatch fails the job before any
container: ``input <path> checksum mismatch``) and written to
``<workspace>/inputs/<name>``, where the sandbox user may read and change
them. Outputs (artifacts_contract.md 8) are what the job left in the
directory ``$CYNODE_ARTIFACTS_DIR`` names: ``/job/artifacts`` for an SBA job,
``/workspace/.cynode/artifacts`` for any other (in its own workspace, so a
job has no host mount besides it; docs/decisions.md Artifacts 5): regular
files only (symbolic links and
special files are skipped, never followed), at most four directories deep,
at most 32 files in path order, each with its size, SHA-256 and a type
guessed from its name, and its content while the job's outputs total at
most 6 MiB (past that, ``omitted``). They are read after the container
exited, so nothing changes under the walk.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import stat
from pathlib import Path

from cynode_core.contract import SandboxOutcome
from cynode_core.contract.job import RunStatus
from cynode_core.contract.job.files import (
    INPUTS_DIR,
    MAX_OUTPUT_BYTES,
    MAX_OUTPUT_DEPTH,
    MAX_OUTPUT_FILES,
    OMITTED_COUNT,
    OMITTED_SIZE,
    JobInput,
    JobOutput,
)
from node_agent.sandbox_spec import OUTPUTS_IN_WORKSPACE
from node_agent.workspace import give_to_sandbox

_READ_CHUNK = 1024 * 1024


def write_inputs(workspace: Path, inputs: tuple[JobInput, ...]) -> SandboxOutcome | None:
    """Write the inputs into the workspace; a failed outcome (no container) when one is not what was declared."""
    for item in inputs:
        if not item.intact:
            stderr = f"input {item.path} checksum mismatch\n".encode()
            return SandboxOutcome(status=RunStatus.FAILED, exit_code=-1, stderr=stderr)
    if not inputs:
        return None
    directory = workspace / INPUTS_DIR
    directory.mkdir(exist_ok=True)
    give_to_sandbox(directory, root_mode=0o755, rootless_mode=0o777)
    for item in inputs:
        target = directory / item.name
        with open(target, "xb") as handle:
            handle.write(item.content)
        give_to_sandbox(target, root_mode=0o644, rootless_mode=0o666)
    return None


def prepare_outputs(workspace: Path) -> Path:
    """A plain job's outputs directory, inside its own workspace (no second host mount): ``.cynode/artifacts``."""
    directory = workspace / OUTPUTS_IN_WORKSPACE
    directory.mkdir(parents=True)
    for made in (directory.parent, directory):
        give_to_sandbox(made, root_mode=0o755, rootless_mode=0o777)
    return directory


def outputs_dir(workspace: Path) -> Path | None:
    """The outputs directory of a plain job after it ran, or None when the job replaced a part of the path
    with something that is not a real directory (a symbolic link out of the workspace is never followed)."""
    current = workspace
    for part in Path(OUTPUTS_IN_WORKSPACE).parts:
        current = current / part
        if current.is_symlink() or not current.is_dir():
            return None
    return current


def collect_outputs(directory: Path | None) -> list[JobOutput]:
    """The regular files under ``directory`` as outputs, within the contract's limits (none when it is not a
    real directory: the job may have replaced it with a symbolic link, which is never followed)."""
    if directory is None or directory.is_symlink() or not directory.is_dir():
        return []
    files = sorted(_regular_files(directory, directory, 0))
    outputs, total = [], 0
    for n, relative in enumerate(files):
        path = directory / relative
        kind = mimetypes.guess_type(relative)[0] or "application/octet-stream"
        if n >= MAX_OUTPUT_FILES:
            size, digest = _size_and_digest(path)
            outputs.append(JobOutput(relative, size, digest, kind, omitted=OMITTED_COUNT))
            continue
        content = _read(path, MAX_OUTPUT_BYTES - total)
        if content is None:
            size, digest = _size_and_digest(path)
            outputs.append(JobOutput(relative, size, digest, kind, omitted=OMITTED_SIZE))
            continue
        total += len(content)
        outputs.append(JobOutput(relative, len(content), hashlib.sha256(content).hexdigest(), kind, content))
    return outputs


def _regular_files(top: Path, directory: Path, depth: int) -> list[str]:
    """Regular files under ``directory``, which lies ``depth`` directories below ``top``."""
    found: list[str] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return found
    for entry in entries:
        try:
            mode = entry.stat(follow_symlinks=False).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode):
            found.append(os.path.relpath(entry.path, top))
        elif stat.S_ISDIR(mode) and depth + 1 <= MAX_OUTPUT_DEPTH:
            found += _regular_files(top, Path(entry.path), depth + 1)
    return found


def _read(path: Path, room: int) -> bytes | None:
    """The file's content if it fits in ``room`` bytes; None otherwise (or when it is no regular file now)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > room:
            return None
        data = handle.read(room + 1)
    return data if len(data) <= room else None


def _size_and_digest(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return 0, digest.hexdigest()
    with os.fdopen(fd, "rb") as handle:
        while piece := handle.read(_READ_CHUNK):
            digest.update(piece)
            size += len(piece)
    return size, digest.hexdigest()
