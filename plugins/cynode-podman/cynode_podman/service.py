"""A private ``podman system service`` for one node, started and stopped by the runtime.

The service and the containers it starts end with the node agent, however
the agent ends. The service runs under a lifeline watcher
(:mod:`cynode_core.lifeline`) that adopts the ``conmon`` process Podman
leaves behind for each container (conmon outlives the service, and keeps
its container running). When the agent ends, or the service is stopped,
the watcher runs ``python -m cynode_podman.service remove-containers``,
which removes every container whose conmon it adopted (``podman rm -f``),
then ends the service and whatever is left. Containers of other nodes on
the same host are not touched: only this service's conmons are children of
this watcher.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

from cynode_core import lifeline
from cynode_core.contract import RuntimeUnavailable

# Podman needs runc and lowered rlimits on our machines (see ENVIRONMENT.md);
# this file carries both settings and is used when CONTAINERS_CONF is unset.
DEFAULT_CONTAINERS_CONF = "/etc/cynode/containers.conf"

# The only variables the service inherits. The node agent's environment holds
# secrets (PSK, tokens) and Podman copies e.g. proxy variables from its own
# environment into containers, so nothing else is passed on.
_INHERITED_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "DBUS_SESSION_BUS_ADDRESS",
    "CONTAINERS_CONF",
    "CONTAINERS_STORAGE_CONF",
    "CONTAINERS_REGISTRIES_CONF",
)

# sun_path holds 108 bytes on Linux; longer socket paths cannot be bound.
_MAX_SOCKET_PATH = 100


def service_env() -> dict[str, str]:
    """The environment every podman process of this plugin runs with."""
    env = {name: os.environ[name] for name in _INHERITED_ENV if name in os.environ}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    if "CONTAINERS_CONF" not in env and os.path.exists(DEFAULT_CONTAINERS_CONF):
        env["CONTAINERS_CONF"] = DEFAULT_CONTAINERS_CONF
    return env


def ping(socket_path: str, timeout: float = 1.0) -> bool:
    """True when a Podman service answers ``GET /_ping`` on ``socket_path``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(socket_path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n")
            status_line = sock.recv(64)
    except OSError:
        return False
    return status_line.startswith(b"HTTP/1.") and status_line[9:12] == b"200"


class PodmanService:
    """``podman system service --time=0`` on a Unix socket under ``run_dir``."""

    def __init__(self, run_dir: Path, *, start_timeout: float = 30.0) -> None:
        self.run_dir = run_dir
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._socket_dir: str | None = None  # a short temp dir, when run_dir is too deep
        self._default_socket_path = str(run_dir / "podman.sock")
        self.socket_path = self._default_socket_path

    @property
    def pid(self) -> int | None:
        """The service's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def url(self) -> str:
        """The socket as a podman-py ``base_url``."""
        return f"unix://{self.socket_path}"

    def start(self) -> str:
        """Start the service and wait until it answers; return its URL.

        :raises RuntimeUnavailable: podman is missing, or the service exits
            or does not answer within ``start_timeout`` seconds.
        """
        podman = shutil.which("podman")
        if podman is None:
            raise RuntimeUnavailable("podman is not installed (apt-get install podman runc)")
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.socket_path = self._default_socket_path
        if len(self.socket_path) > _MAX_SOCKET_PATH:
            self._socket_dir = tempfile.mkdtemp(prefix="cynode-podman-")
            self.socket_path = os.path.join(self._socket_dir, "podman.sock")
        # A service whose agent died while its watcher could not act (both killed
        # at once) is stopped before a new one starts.
        _stop_leftover(self.run_dir / "service.pid")
        # A socket file left by a killed service would make the bind fail.
        Path(self.socket_path).unlink(missing_ok=True)
        log_path = self.run_dir / "service.log"
        self._log = open(log_path, "ab")  # noqa: SIM115 - held open for the service's whole life
        # In a session of its own (a Ctrl-C meant for the node must not kill it mid-job),
        # under a watcher that ends it, and its containers, when this process ends.
        self._proc = lifeline.spawn(
            [podman, "system", "service", "--time=0", self.url],
            cleanup=[sys.executable, "-m", __name__, "remove-containers"],
            adopt_orphans=True,
            env=service_env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        (self.run_dir / "service.pid").write_text(str(self._proc.pid))
        atexit.register(self.stop)
        deadline = time.monotonic() + self.start_timeout
        while not ping(self.socket_path):
            code = self._proc.poll()
            if code is not None or time.monotonic() > deadline:
                self.stop()
                why = f"exited with {code}" if code is not None else f"did not answer in {self.start_timeout:g} s"
                raise RuntimeUnavailable(f"podman system service {why}; see {log_path}: {_tail(log_path)}")
            time.sleep(0.02)
        return self.url

    def stop(self) -> None:
        """Stop the service (TERM, then KILL) and remove its socket. Idempotent."""
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is not None:
            lifeline.stop(proc, grace=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        (self.run_dir / "service.pid").unlink(missing_ok=True)
        Path(self.socket_path).unlink(missing_ok=True)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None


def _tail(path: Path, limit: int = 2000) -> str:
    """The end of the service log, for error messages."""
    try:
        return path.read_bytes()[-limit:].decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _stop_leftover(pid_file: Path) -> None:
    """Terminate the ``podman system service`` recorded in ``pid_file``, if it still runs."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        import psutil

        proc = psutil.Process(pid)
        if "system" in proc.cmdline() and "service" in proc.cmdline():
            proc.terminate()
            proc.wait(timeout=10)
    except Exception:  # noqa: BLE001 - gone already, not ours, or will not die: nothing more to do here
        pass
    pid_file.unlink(missing_ok=True)


def adopted_containers(watcher: int) -> list[str]:
    """The ids of the containers whose ``conmon`` is a child of ``watcher`` (``conmon -c <id>``)."""
    ids = []
    for _pid, argv in lifeline.children(watcher):
        if argv and os.path.basename(argv[0]) == "conmon" and "-c" in argv[:-1]:
            ids.append(argv[argv.index("-c") + 1])
    return ids


def remove_containers(watcher: int) -> list[str]:
    """Kill and remove the containers of the service under ``watcher``; their ids.

    The local ``podman`` command does it, not the service's socket: it works
    whether the service still answers or has already ended.
    """
    ids = adopted_containers(watcher)
    podman = shutil.which("podman", path=service_env()["PATH"])
    if ids and podman:
        subprocess.run(
            [podman, "rm", "--force", "--time", "0", "--ignore", *ids],
            env=service_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=50,
            check=False,
        )
    return ids


if __name__ == "__main__":
    # The lifeline cleanup of a private service: this process is the watcher's child.
    if sys.argv[1:] != ["remove-containers"]:
        sys.exit("usage: python -m cynode_podman.service remove-containers")
    removed = remove_containers(os.getppid())
    if removed:
        print(f"cynode-podman: removed {len(removed)} container(s) left running: {' '.join(removed)}", flush=True)
