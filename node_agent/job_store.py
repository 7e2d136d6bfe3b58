"""Job records: what makes the Worker API idempotent by ``job_id``.

A record is written when a job starts (``state: running``) and replaced by
the finished result (``state: finished``). Finished records stay in memory
(the most recent ``memory_limit``) and on disk under ``<state_dir>/jobs``,
so a dispatch retried after an agent restart is answered from the record
instead of running the job a second time. Files are mode 0600: a job's
output may hold whatever the job printed.

A cancel for a job the node has not seen leaves a finished, canceled record
without a result (:meth:`JobStore.keep_cancel`): the job's ``jobs:run``,
should it still come, is answered as canceled and never starts
(:meth:`JobStore.close_unstarted`; docs/wire_contract.md#worker-cancel).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cynode_core.contract.job import RunJobResponse
from node_agent.job_result import interrupted_response, utc_now

log = logging.getLogger(__name__)

STATE_RUNNING = "running"
STATE_FINISHED = "finished"
# The stderr of a job whose cancel came first.
NOT_STARTED_NOTE = "[cynode] job canceled before it started: its cancel reached the node first\n"


@dataclass(frozen=True)
class JobRecord:
    """One job as the store knows it. ``result`` is the RunJobResponse once finished."""

    job_id: str
    task_id: str
    state: str
    canceled: bool = False
    result: RunJobResponse | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "job_id": self.job_id,
            "task_id": self.task_id,
            "state": self.state,
            "canceled": self.canceled,
            "result": self.result.to_json() if self.result is not None else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobRecord:
        return cls(
            job_id=str(data["job_id"]),
            task_id=str(data.get("task_id", "")),
            state=str(data["state"]),
            canceled=bool(data.get("canceled", False)),
            result=RunJobResponse.from_json(data["result"]) if data.get("result") is not None else None,
        )


class JobStore:
    """Finished results in a bounded memory cache backed by one JSON file per job."""

    def __init__(self, directory: Path, *, memory_limit: int = 1000) -> None:
        self._dir = directory
        self._memory_limit = memory_limit
        self._memory: OrderedDict[str, JobRecord] = OrderedDict()
        self._lock = threading.Lock()
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    @property
    def directory(self) -> Path:
        return self._dir

    def _path(self, job_key: str) -> Path:
        # job_key is a validated, lowercased UUID: safe as a file name.
        return self._dir / f"{job_key}.json"

    def get_finished(self, job_key: str) -> JobRecord | None:
        """The finished record of a job, from memory or disk; ``None`` if there is none."""
        with self._lock:
            record = self._memory.get(job_key)
            if record is not None:
                self._memory.move_to_end(job_key)
                return record
        record = self._read(self._path(job_key))
        if record is None or record.state != STATE_FINISHED:
            return None
        self._remember(job_key, record)
        return record

    def mark_running(self, job_key: str, task_id: str) -> None:
        """Note on disk that a job started, so a crash leaves a trace (see ``recover``)."""
        self._write(self._path(job_key), JobRecord(job_key, task_id, STATE_RUNNING))

    def keep_cancel(self, job_key: str) -> JobRecord:
        """A cancel of ``job_key``: its finished record, or else a new one without a result that stops it ever starting.

        The caller serialises this with its own check of the running jobs.
        """
        record = self.get_finished(job_key)
        if record is None:
            record = JobRecord(job_key, "", STATE_FINISHED, canceled=True)
            self.save_finished(record)
            log.info("job %s: canceled before it came; it will not start here", job_key)
        return record

    def close_unstarted(self, job_key: str, task_id: str, job_id: str) -> JobRecord:
        """The answer to a ``jobs:run`` whose cancel came first: failed, -1, not started; kept as its result."""
        # The answer of a job that did not run here, with its own note.
        interrupted = interrupted_response(task_id, job_id, utc_now())
        result = dataclasses.replace(interrupted, stderr=NOT_STARTED_NOTE)
        record = JobRecord(job_key, task_id, STATE_FINISHED, canceled=True, result=result)
        self.save_finished(record)
        return record

    def save_finished(self, record: JobRecord) -> None:
        """Keep a finished record; a disk failure is logged, the memory copy still answers."""
        self._remember(record.job_id, record)
        try:
            self._write(self._path(record.job_id), record)
        except OSError as exc:
            log.error("cannot persist result of job %s: %s", record.job_id, exc)

    def discard(self, job_key: str) -> None:
        """Forget a job that never ran (e.g. its workspace could not be created)."""
        with self._lock:
            self._memory.pop(job_key, None)
        try:
            self._path(job_key).unlink()
        except FileNotFoundError:
            pass

    def recover(self, finish: Callable[[JobRecord], JobRecord], *, retention_seconds: float) -> list[str]:
        """Settle what a previous agent process left: returns the keys of interrupted jobs.

        Each ``running`` record is replaced by ``finish(record)`` (a failed
        result: the job is not re-run, since it may already have had its
        effects). Finished records older than ``retention_seconds`` are
        deleted.
        """
        interrupted = []
        cutoff = time.time() - retention_seconds
        for path in self._files():
            record = self._read(path)
            if record is None:
                continue
            if record.state == STATE_RUNNING:
                interrupted.append(record.job_id)
                self.save_finished(finish(record))
            else:
                try:
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                except FileNotFoundError:
                    pass
        return interrupted

    def prune_finished(self, *, retention_seconds: float) -> int:
        """Delete finished records written more than ``retention_seconds`` ago; return how many.

        A running record stays whatever its age (it is the trace a crash
        recovery needs), and so does a file that does not parse.
        """
        cutoff = time.time() - retention_seconds
        pruned = 0
        for path in self._files():
            try:
                if path.stat().st_mtime >= cutoff:
                    continue
            except FileNotFoundError:
                continue
            record = self._read(path)
            if record is None or record.state != STATE_FINISHED:
                continue
            with self._lock:
                self._memory.pop(record.job_id, None)
            try:
                path.unlink()
                pruned += 1
            except FileNotFoundError:
                pass
        return pruned

    def prune_periodically(self, retention_seconds: float, interval: float, stop: threading.Event) -> None:
        """Call :meth:`prune_finished` every ``interval`` seconds until ``stop`` is set."""
        while not stop.wait(interval):
            try:
                pruned = self.prune_finished(retention_seconds=retention_seconds)
            except OSError as exc:
                log.warning("pruning job records failed: %s", exc)
                continue
            if pruned:
                log.info("dropped %d finished job record(s) older than %g s", pruned, retention_seconds)

    def _files(self) -> Iterator[Path]:
        return (p for p in self._dir.glob("*.json") if p.is_file())

    def _remember(self, job_key: str, record: JobRecord) -> None:
        with self._lock:
            self._memory[job_key] = record
            self._memory.move_to_end(job_key)
            while len(self._memory) > self._memory_limit:
                self._memory.popitem(last=False)

    def _read(self, path: Path) -> JobRecord | None:
        try:
            return JobRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:  # BadResult is a ValueError
            log.warning("ignoring unreadable job record %s: %s", path.name, exc)
            return None

    def _write(self, path: Path, record: JobRecord) -> None:
        # Write then rename, so a crash never leaves half a record behind.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(record.to_json(), handle, ensure_ascii=False)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
            raise


def start_pruning(
    directory: Path, retention_seconds: float, interval: float, stop: threading.Event
) -> threading.Thread | None:
    """A thread dropping the finished records under ``directory`` past their retention (none if ``interval`` <= 0).

    It has a store of its own on the directory: the executor's memory cache
    (the most recent ``memory_limit`` results) is bounded already.
    """
    if interval <= 0:
        return None
    store = JobStore(directory)
    thread = threading.Thread(
        target=store.prune_periodically, args=(retention_seconds, interval, stop), name="job-records-prune", daemon=True
    )
    thread.start()
    return thread
