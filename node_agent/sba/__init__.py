"""The sandbox agent runner, shipped with the node and mounted into SBA jobs (agents_contract.md 5.3).

The files of this directory run inside the sandbox with the sandbox's
``python3`` (3.9 or newer, standard library only); the node never imports
them. :func:`runner_files` names what goes into the runner's directory
(mounted read-only at :data:`RUNNER_DIR`), among them the job contract
``cynode_core/contract/job/sba.py`` as ``sba_spec.py``, so the orchestrator,
the node and the runner check a spec with one definition.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from cynode_core.contract.job import sba

RUNNER_DIR = "/opt/cynode/sba"
JOB_DIR = "/job"
SPEC_NAME = "sba_spec.py"
# The runner's own modules, in this directory under the names they have inside the sandbox.
_MODULES = ("runner.py", "sba_inference.py", "sba_patch.py", "sba_prompt.py", "sba_schema.py", "sba_tools.py")
# The sandbox's command (agents_contract.md 5.3 step 4).
RUNNER_COMMAND = (
    "python3",
    "-I",
    "-B",
    f"{RUNNER_DIR}/runner.py",
    "--job",
    f"{JOB_DIR}/job.json",
    "--result",
    f"{JOB_DIR}/result.json",
    "--workspace",
    "/workspace",
)


def runner_files() -> dict[str, Path]:
    """The runner directory's files: the name each has inside the sandbox, and its source."""
    here = Path(__file__).resolve().parent
    files = {name: here / name for name in _MODULES}
    files[SPEC_NAME] = Path(sba.__file__).resolve()
    return files


def install_runner(directory: Path) -> Path:
    """Copy the runner's files into ``directory`` (created; 0755, files 0644) and return it."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    for name, source in runner_files().items():
        target = directory / name
        shutil.copyfile(source, target)
        target.chmod(0o644)
    return directory
