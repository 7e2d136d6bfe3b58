"""Per-job workspaces: the host directory a job sees at ``/workspace`` (docs/wire_contract.md#sandbox).

Each job gets ``<root>/<job_id>``, made fresh before the run and deleted
after it unless ``CYNODE_KEEP_WORKSPACES`` is set. The root is 0700 and
the agent's own, so no other host user reaches a workspace.

With a quota (``CYNODE_WORKSPACE_QUOTA_MB``, agent running as root) the
directory is the mount point of a file system of that size, in the sparse
image ``<root>/<job_id>.img`` (``quota_mount``): a job that fills it gets
``ENOSPC`` and the disk of the node's state keeps its room. It is
unmounted when the job ends; a kept workspace's files are copied to a
plain directory of the same name first. Without root no file system can be
mounted: the workspace is a plain directory, and the node says so at start.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from node_agent.quota_mount import make_image, mount_image, unmount
from node_agent.sandbox_spec import SANDBOX_GID, SANDBOX_UID

log = logging.getLogger(__name__)

MIB = 1024 * 1024
_IMAGE_SUFFIX = ".img"


def give_to_sandbox(path: Path, *, root_mode: int | None, rootless_mode: int) -> None:
    """Make ``path`` the sandbox user's (65534, when the node runs as root; then ``root_mode``, if given), or
    open it to that user with ``rootless_mode`` (rootless, where 65534 is a subordinate uid we cannot chown to)."""
    if os.geteuid() == 0:
        os.chown(path, SANDBOX_UID, SANDBOX_GID)
        if root_mode is not None:
            path.chmod(root_mode)
    else:
        path.chmod(rootless_mode)


class Workspaces:
    """The workspaces under one root directory."""

    def __init__(self, root: Path, *, keep: bool = False, quota_mb: int = 0) -> None:
        self.root = root
        self._keep = keep
        self.quota_bytes = quota_mb * MIB if quota_mb > 0 and os.geteuid() == 0 else 0
        if quota_mb > 0 and not self.quota_bytes:
            log.warning(
                "workspaces are not size-limited: a quota of %d MiB needs the agent to run as root "
                "(it mounts a file system per job); set CYNODE_WORKSPACE_QUOTA_MB=0 to silence this",
                quota_mb,
            )

    def create(self, key: str) -> Path:
        """A new, empty workspace for job ``key`` that the sandbox user can write; ``OSError`` if not."""
        path = self.root / key
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists() or self._image(key).exists():
            # Left by a crash: start clean rather than hand a job someone else's files.
            self.discard(key)
        path.mkdir(mode=0o700)
        if self.quota_bytes:
            try:
                self._mount_quota(key, path)
            except BaseException:
                self.discard(key)
                raise
        else:
            # Root: the sandbox's own, 0700 keeps everyone else out. Rootless: the
            # root is 0700 and ours, so no other host user can reach this
            # directory; each sandbox mounts only its own.
            give_to_sandbox(path, root_mode=None, rootless_mode=0o777)
        return path

    def release(self, path: Path) -> None:
        """The job ended: delete its workspace; a kept one becomes a plain directory with the job's files."""
        if not self._keep:
            self.discard(path.name)
        elif os.path.ismount(path):
            self._keep_files(path)

    def discard(self, key: str) -> None:
        """Delete job ``key``'s workspace, unmounting it first (kept or not: the job is over). Never raises."""
        path = self.root / key
        try:
            unmount(path)
        except OSError as exc:
            log.error("cannot unmount the workspace %s: %s", path, exc)
        try:
            # The directory goes last: while an image is left, its directory names it to a later discard.
            self._image(key).unlink(missing_ok=True)
        except OSError as exc:
            log.error("cannot delete the workspace image of %s: %s", path, exc)
        shutil.rmtree(path, ignore_errors=True)

    def _keep_files(self, path: Path) -> None:
        """Copy a mounted workspace's files out, then unmount it: no mount outlives its job."""
        copy = path.with_name(path.name + ".kept")
        shutil.rmtree(copy, ignore_errors=True)
        try:
            # Links stay links: a job's link to a host file must not copy the host file.
            shutil.copytree(path, copy, symlinks=True)
        except (shutil.Error, OSError) as exc:  # e.g. a named pipe: the rest is kept
            log.warning("workspace %s: not every file could be kept: %s", path, exc)
        self.discard(path.name)
        try:
            copy.rename(path)
        except OSError as exc:
            log.error("workspace %s: the kept files stay in %s: %s", path, copy, exc)

    def _image(self, key: str) -> Path:
        return self.root / (key + _IMAGE_SUFFIX)

    def _mount_quota(self, key: str, path: Path) -> None:
        """Put a file system of the quota's size, owned by the sandbox user, on the empty ``path``."""
        image = self._image(key)
        make_image(image, self.quota_bytes, uid=SANDBOX_UID, gid=SANDBOX_GID)
        mount_image(image, path)
        (path / "lost+found").rmdir()  # mkfs's; a job's workspace starts empty
        path.chmod(0o700)
