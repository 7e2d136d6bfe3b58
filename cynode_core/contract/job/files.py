"""Files in and out of a job: ``sandbox.inputs`` of a request and ``artifacts`` of its answer (artifacts 7, 8).

An input is a file the job finds at ``/workspace/inputs/<name>``: its
content travels base64-encoded in the request with its size and SHA-256,
which the node checks before it writes the file. An output is a regular
file the job left under ``/job/artifacts/``: the node returns it with its
content while the job's outputs total at most :data:`MAX_OUTPUT_BYTES`
(and at most :data:`MAX_OUTPUT_FILES` files); past that it is listed with
``omitted``. The orchestrator stores each output with content as an
artifact and keeps, in the job's result, the item with its ``artifact_id``
instead of its content.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from cynode_core.contract.errors import InvalidInput

INPUTS_DIR = "inputs"
MAX_INPUT_BYTES = 6 * 1024 * 1024
MAX_OUTPUT_BYTES = 6 * 1024 * 1024
MAX_OUTPUT_FILES = 32
MAX_OUTPUT_DEPTH = 4
INVALID_INPUTS = "invalid sandbox.inputs"
OMITTED_SIZE = "size_limit"
OMITTED_COUNT = "count_limit"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME_MAX = 255


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def plain_name(name: str) -> bool:
    """A file name with no directory part, nothing hidden in it, and a length a file system takes."""
    return (
        bool(name)
        and name not in (".", "..")
        and "/" not in name
        and "\\" not in name
        and "\x00" not in name
        and name.isprintable()
        and len(name.encode("utf-8", "surrogatepass")) <= _NAME_MAX
        and not any(0xD800 <= ord(c) <= 0xDFFF for c in name)
    )


@dataclass(frozen=True)
class JobInput:
    """One input file: ``inputs/<name>``, its content, and the size and SHA-256 the sender declared."""

    path: str
    content: bytes
    size_bytes: int
    sha256: str

    @property
    def name(self) -> str:
        return self.path.split("/", 1)[1]

    @property
    def intact(self) -> bool:
        """Whether the content has the declared size and SHA-256."""
        return len(self.content) == self.size_bytes and sha256_hex(self.content) == self.sha256

    @classmethod
    def of(cls, name: str, content: bytes) -> JobInput:
        return cls(f"{INPUTS_DIR}/{name}", content, len(content), sha256_hex(content))

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "content_base64": base64.b64encode(self.content).decode("ascii"),
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
        }

    @classmethod
    def from_json(cls, value: Any) -> JobInput:
        """Decode one item; ``InvalidInput`` (``invalid sandbox.inputs``) for anything malformed."""
        if not isinstance(value, dict):
            raise InvalidInput(INVALID_INPUTS)
        path, encoded = value.get("path"), value.get("content_base64")
        size, digest = value.get("size_bytes"), value.get("sha256")
        if not isinstance(path, str) or not path.startswith(INPUTS_DIR + "/") or not plain_name(path[7:]):
            raise InvalidInput(INVALID_INPUTS)
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_INPUT_BYTES:
            raise InvalidInput(INVALID_INPUTS)
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest) or not isinstance(encoded, str):
            raise InvalidInput(INVALID_INPUTS)
        try:
            content = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(INVALID_INPUTS) from None
        return cls(path, content, size, digest)


def inputs_from_json(value: Any) -> tuple[JobInput, ...]:
    """``sandbox.inputs``: a list of distinct inputs totalling at most :data:`MAX_INPUT_BYTES`."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidInput(INVALID_INPUTS)
    inputs = tuple(JobInput.from_json(item) for item in value)
    if len({i.path for i in inputs}) != len(inputs) or sum(len(i.content) for i in inputs) > MAX_INPUT_BYTES:
        raise InvalidInput(INVALID_INPUTS)
    return inputs


def unique_input_names(names: list[str]) -> list[str]:
    """Names made distinct the contract's way: a repeated ``a.txt`` becomes ``a-2.txt``, ``a-3.txt``."""
    seen: set[str] = set()
    out = []
    for name in names:
        stem, dot, ext = name.rpartition(".") if "." in name.lstrip(".") else (name, "", "")
        candidate, n = name, 1
        while candidate in seen:
            n += 1
            candidate = f"{stem}-{n}{dot}{ext}" if dot else f"{name}-{n}"
        seen.add(candidate)
        out.append(candidate)
    return out


@dataclass(frozen=True)
class JobOutput:
    """One file a job left under ``/job/artifacts/``: its path there, size, SHA-256, type, and content or why not."""

    path: str
    size_bytes: int
    sha256: str
    content_type: str
    content: bytes | None = None
    omitted: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "content_type": self.content_type,
        }
        if self.content is not None:
            out["content_base64"] = base64.b64encode(self.content).decode("ascii")
        if self.omitted is not None:
            out["omitted"] = self.omitted
        return out

    @classmethod
    def from_json(cls, value: Any) -> JobOutput | None:
        """An item as a node sent it; None for one that is not well formed (the orchestrator skips it)."""
        if not isinstance(value, dict):
            return None
        path, size, digest = value.get("path"), value.get("size_bytes"), value.get("sha256")
        kind, encoded, omitted = value.get("content_type"), value.get("content_base64"), value.get("omitted")
        if not isinstance(path, str) or not path or isinstance(size, bool) or not isinstance(size, int) or size < 0:
            return None
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest) or not isinstance(kind, str):
            return None
        content = None
        if isinstance(encoded, str):
            try:
                content = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                return None
        return cls(path, size, digest, kind, content, omitted if isinstance(omitted, str) else None)
