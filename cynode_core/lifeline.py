"""Child processes that end with this process, however this process ends.

A signal handler does nothing when a process is killed with SIGKILL, and the
kernel's parent-death signal (``PR_SET_PDEATHSIG``) fires when the *thread*
that forked the child exits, not the process: a child started from a worker
thread would die with that thread. So :func:`spawn` puts a small watcher,
``python -m cynode_core.lifeline``, between this process and the command.
The watcher holds the read end of a pipe whose only write end stays in this
process (descriptors Python opens are close-on-exec, so no other child gets
a copy). When this process ends, whatever ended it, the kernel closes that
write end and the watcher reads end-of-file. It then, in this order:

1. runs its cleanup command, if it was given one (bounded in time);
2. ends its command: SIGTERM, then SIGKILL after the grace period;
3. with ``adopt_orphans``, ends whatever the command left behind.

The watcher itself is single-threaded, so it can safely give its command the
parent-death signal (SIGKILL): if the watcher is killed, its command dies.
It forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the
command and ends with the command's own status, so the ``Popen`` returned
by :func:`spawn` is driven like the command's: ``terminate()``, ``wait()``,
``returncode``. The cleanup command also runs when the command ended for
any other reason (it must work whether the command still runs or not); a
watcher without a command waits for the end of this process, or for a stop
signal, then runs its cleanup.

With ``adopt_orphans`` the watcher is a child subreaper: processes its
command daemonizes (Podman's ``conmon``, one per container) become the
watcher's children instead of init's, so they are found and ended. The
cleanup command is then for them: it runs only when there are some, as a
child of the watcher, so ``children(os.getppid())`` lists them from there.

Linux only. A child this process forks without exec holds a copy of the
write end and delays the watchers until it ends too; cynode forks none.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

DEFAULT_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
CLEANUP_TIMEOUT = 60.0
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
_STOPPING = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT})

_pipe_lock = threading.Lock()
_pipe: tuple[int, int, int] | None = None  # (read end, write end, pid of the process that made it)


def _read_end() -> int:
    """The read end of this process's lifeline; the pipe is made once per process."""
    global _pipe
    with _pipe_lock:
        if _pipe is None or _pipe[2] != os.getpid():
            read_end, write_end = os.pipe()  # both non-inheritable (PEP 446)
            _pipe = (read_end, write_end, os.getpid())
        return _pipe[0]


def spawn(
    command: Sequence[str] = (),
    *,
    cleanup: Sequence[str] = (),
    grace: float = DEFAULT_GRACE,
    adopt_orphans: bool = False,
    **popen: Any,
) -> subprocess.Popen[bytes]:
    """Start ``command`` under a watcher that ends it (and runs ``cleanup``) when this process ends.

    ``popen`` goes to :class:`subprocess.Popen` for the watcher, whose
    command inherits its standard streams, environment and directory. The
    watcher starts a session of its own unless ``start_new_session=False``
    is given: a Ctrl-C or a hang-up meant for this process must not reach it.
    """
    if not command and not cleanup:
        raise ValueError("a watcher needs a command, a cleanup command or both")
    read_end = _read_end()
    argv = [sys.executable, "-m", "cynode_core.lifeline", "--fd", str(read_end), "--grace", str(grace)]
    if cleanup:
        argv += ["--cleanup", json.dumps(list(cleanup))]
    if adopt_orphans:
        argv.append("--adopt-orphans")
    popen["pass_fds"] = (*popen.get("pass_fds", ()), read_end)
    popen.setdefault("start_new_session", True)
    return subprocess.Popen([*argv, "--", *command], **popen)


def stop(proc: subprocess.Popen[bytes], grace: float = DEFAULT_GRACE) -> int:
    """SIGTERM to a watcher (it hands it to its command), SIGKILL after ``grace`` seconds; the exit status."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def children(pid: int) -> list[tuple[int, list[str]]]:
    """The processes whose parent is ``pid``, each with its command line (read from ``/proc``)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
                parent = int(stat.read().rsplit(b")", 1)[1].split()[1])
            if parent != pid:
                continue
            with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                argv = [arg.decode("utf-8", "replace") for arg in cmdline.read().split(b"\0") if arg]
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
        found.append((int(entry.name), argv))
    return found


# -- the watcher ---------------------------------------------------------------


def _prctl(option: int, value: int) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _die_with(watcher: int) -> Callable[[], None]:
    """A ``preexec_fn``: the command gets SIGKILL when the watcher dies (safe: the watcher has one thread)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # loaded before the fork

    def set_parent_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != watcher:  # the watcher died before the signal was set
            os._exit(1)
        os.setpgid(0, 0)  # a group of its own: the final SIGKILL also reaches its helpers

    return set_parent_death_signal


def _kill(pid: int, signum: int, *, group: bool = False) -> None:
    try:
        if group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        pass


class _Watcher:
    def __init__(self, lifeline: int, command: list[str], cleanup: list[str], grace: float, adopt: bool):
        self.lifeline, self.command, self.cleanup, self.grace, self.adopt = lifeline, command, cleanup, grace, adopt
        self.child: subprocess.Popen[bytes] | None = None
        self.status: int | None = None  # the command's exit status, as Popen.returncode has it
        self.stop_asked = False
        self._early: list[int] = []  # signals that came before the command was started
        self._wake, wake_write = os.pipe()
        os.set_blocking(self._wake, False)
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)  # a signal (SIGCHLD included) wakes the select below
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for signum in _FORWARDED:
            signal.signal(signum, self._forward)

    def _forward(self, signum: int, _frame: Any) -> None:
        self.stop_asked = self.stop_asked or signum in _STOPPING
        if self.child is None:
            self._early.append(signum)
        elif self.status is None:  # not reaped: the pid is still the command's
            _kill(self.child.pid, signum)

    def run(self) -> int:
        if self.adopt:
            _prctl(_PR_SET_CHILD_SUBREAPER, 1)
        if self.command:
            try:
                self.child = subprocess.Popen(self.command, preexec_fn=_die_with(os.getpid()))
            except OSError as exc:
                print(f"lifeline: cannot run {self.command[0]}: {exc}", file=sys.stderr, flush=True)
                self._run_cleanup()
                return 127
            for signum in self._early:
                _kill(self.child.pid, signum)
        orphaned = False
        while not orphaned:
            self._reap()
            if (self.child is not None and self.status is not None) or (self.child is None and self.stop_asked):
                break
            orphaned = self._pause(1.0, watch_lifeline=True)
        self._run_cleanup()
        if orphaned:
            self._end_command()
        if self.adopt:
            self._end_adopted()
        return self.status or 0

    def _pause(self, timeout: float, *, watch_lifeline: bool = False) -> bool:
        """Sleep until a signal, the timeout or (when watched) the lifeline's end; True when the lifeline ended."""
        fds = [self._wake, self.lifeline] if watch_lifeline else [self._wake]
        ready, _, _ = select.select(fds, [], [], timeout)
        if self._wake in ready:
            while True:
                try:
                    if not os.read(self._wake, 512):
                        break
                except BlockingIOError:
                    break
        return self.lifeline in ready and os.read(self.lifeline, 1) == b""

    def _reap(self) -> None:
        """Collect every ended child; the command's status is kept."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.child is not None and pid == self.child.pid:
                self.status = self.child.returncode = os.waitstatus_to_exitcode(status)

    def _run_cleanup(self) -> None:
        if not self.cleanup:
            return
        if self.adopt:
            self._reap()
            command = self.child.pid if self.child is not None and self.status is None else None
            if not [pid for pid, _ in children(os.getpid()) if pid != command]:
                return  # the cleanup is for what the command left behind: nothing was
        try:
            subprocess.run(self.cleanup, stdin=subprocess.DEVNULL, timeout=CLEANUP_TIMEOUT, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"lifeline: cleanup {self.cleanup[:3]} failed: {exc}", file=sys.stderr, flush=True)

    def _end_command(self) -> None:
        """SIGTERM to the command, SIGKILL to its process group after the grace period."""
        if self.child is None:
            return
        for signum, wait in ((signal.SIGTERM, self.grace), (signal.SIGKILL, 10.0)):
            self._reap()
            if self.status is not None:
                return
            _kill(self.child.pid, signum, group=signum == signal.SIGKILL)
            deadline = time.monotonic() + wait
            while self.status is None and time.monotonic() < deadline:
                self._pause(0.2)
                self._reap()

    def _end_adopted(self) -> None:
        """End the orphans the command left to this subreaper: SIGTERM, then SIGKILL after the grace period.

        Ending one may orphan its own children, which come here next; the
        loop runs until none is left (or gives up on what even SIGKILL spares).
        """
        late = time.monotonic() + self.grace
        while time.monotonic() < late + 10.0:
            self._reap()
            left = [pid for pid, _ in children(os.getpid())]
            if not left:
                return
            for pid in left:
                _kill(pid, signal.SIGKILL if time.monotonic() > late else signal.SIGTERM)
            self._pause(0.1)


def _parse(argv: list[str]) -> tuple[int, float, list[str], bool, list[str]]:
    """``--fd N [--grace S] [--cleanup JSON] [--adopt-orphans] -- command...``"""
    options, command = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    fd, grace, cleanup, adopt = -1, DEFAULT_GRACE, [], False
    words = iter(options)
    for word in words:
        if word == "--fd":
            fd = int(next(words))
        elif word == "--grace":
            grace = float(next(words))
        elif word == "--cleanup":
            cleanup = [str(arg) for arg in json.loads(next(words))]
        elif word == "--adopt-orphans":
            adopt = True
        else:
            raise ValueError(f"unknown option {word!r}")
    if fd < 0 or not (command or cleanup):
        raise ValueError("usage: python -m cynode_core.lifeline --fd N [--grace S] [--cleanup JSON] -- command...")
    return fd, grace, cleanup, adopt, command


def main(argv: list[str] | None = None) -> NoReturn:
    try:
        fd, grace, cleanup, adopt, command = _parse(sys.argv[1:] if argv is None else argv)
    except (ValueError, StopIteration) as exc:
        print(f"lifeline: {exc or 'an option lacks its value'}", file=sys.stderr)
        sys.exit(2)
    status = _Watcher(fd, command, cleanup, grace, adopt).run()
    if status < 0:  # the command died of a signal: so does the watcher, for whoever waits on it
        signal.set_wakeup_fd(-1)
        if -status not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    sys.exit(status)


if __name__ == "__main__":
    main()
