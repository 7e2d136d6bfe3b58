"""A size-limited directory: a sparse ext4 image on a loop device, mounted on it (root only).

What a job writes to such a directory stops at the image's size with
``ENOSPC``, inside the job, and never reaches the file system holding the
node's state. Measured on the project's hosts (Debian 12, ext4 root, 2
cores): the image, its file system and the mount take about 6 ms, the
unmount and deletion about 3 (each 30-60 ms when the host is loaded).

The loop device is set up through ``/dev/loop-control`` and ``LOOP_CONFIGURE``
(Linux 5.8 or later) with auto-clear, so the unmount alone frees it, and the
mount is a plain ``mount(2)``: no ``losetup`` or ``mount`` process per job.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
import subprocess
from pathlib import Path

_LOOP_CTL_GET_FREE = 0x4C82
_LOOP_CONFIGURE = 0x4C0A
_LO_FLAGS_AUTOCLEAR = 4
# struct loop_config: fd, block_size, struct loop_info64 (lo_flags at byte 52 of its 232), 64 reserved.
_LOOP_CONFIG = struct.Struct("=II52xI176x64x")
_MS_NOSUID, _MS_NODEV = 2, 4
_MNT_DETACH = 2
# A free loop device can be taken by someone else between asking and using it.
_LOOP_ATTEMPTS = 8

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def make_image(image: Path, size_bytes: int, *, uid: int, gid: int) -> None:
    """Create ``image`` as a sparse file of ``size_bytes`` holding an empty ext4 whose root ``uid:gid`` own.

    No journal and no reserved blocks: the file system lives as long as one
    job and all of it is the job's. ``OSError`` when mkfs.ext4 fails or is missing.
    """
    with open(image, "wb") as handle:
        handle.truncate(size_bytes)
    options = f"lazy_itable_init=1,nodiscard,root_owner={uid}:{gid}"
    done = subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-m", "0", "-E", options, str(image)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise OSError(f"mkfs.ext4 {image} failed: {done.stderr.decode(errors='replace').strip()}")


def mount_image(image: Path, target: Path) -> None:
    """Mount the ext4 in ``image`` on ``target`` (nosuid, nodev) through a loop device of its own."""
    loop = _attach_loop(image)
    try:
        # noinit_itable: no background zeroing of inode tables, which would fill the sparse image.
        _check(_libc.mount(loop[1].encode(), bytes(target), b"ext4", _MS_NOSUID | _MS_NODEV, b"noinit_itable"), target)
    finally:
        os.close(loop[0])  # auto-clear: the device goes with the mount (or now, when the mount failed)


def unmount(target: Path) -> None:
    """Unmount ``target`` if something is mounted there; detach it lazily when it is busy."""
    if not os.path.ismount(target):
        return
    if _libc.umount2(bytes(target), 0) == 0:
        return
    if ctypes.get_errno() != errno.EBUSY:
        _check(-1, target)
    _check(_libc.umount2(bytes(target), _MNT_DETACH), target)


def _attach_loop(image: Path) -> tuple[int, str]:
    """A free loop device backed by ``image``, auto-cleared on its last close: ``(open fd, device path)``."""
    control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    backing = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(_LOOP_ATTEMPTS):
            device = f"/dev/loop{fcntl.ioctl(control, _LOOP_CTL_GET_FREE)}"
            fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
            try:
                fcntl.ioctl(fd, _LOOP_CONFIGURE, _LOOP_CONFIG.pack(backing, 0, _LO_FLAGS_AUTOCLEAR))
            except OSError as exc:
                os.close(fd)
                if exc.errno != errno.EBUSY:
                    raise
                continue
            return fd, device
        raise OSError(errno.EBUSY, "no free loop device")
    finally:
        os.close(backing)
        os.close(control)


def _check(result: int, target: Path) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(target))
