"""Artifact upload and download throughput through the gateway vs a plain file copy on the same disk.

Run: .venv/bin/python -m benchmarks.artifacts [--mib 64] [--rounds 3] [--store pg|fs]

The floor is ``shutil.copyfile`` of the same file in the same temporary
directory, measured in the same run (best of the rounds, each way); the
figures are the best upload (``cynode``'s streamed POST) and download
(streamed GET, SHA-256 checked) of the same bytes on an embedded-PostgreSQL
stack, as MiB/s and as ratios of the floor.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.harness import report, stack
from cynode_core.artifact_client import download, upload


def best(rounds: int, action) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--store", default="pg")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cynode-bench-artifacts-"))
    try:
        source = work / "source.bin"
        source.write_bytes(os.urandom(args.mib * 1024 * 1024))
        floor = best(args.rounds, lambda: shutil.copyfile(source, work / "copy.bin"))
        size = args.mib
        with stack(CYNODE_ARTIFACT_STORE=args.store, CYNODE_ARTIFACT_MAX_BYTES=str((args.mib + 1) << 20)) as (
            _s,
            client,
        ):
            made: list[str] = []
            n = iter(range(10**6))

            def up() -> None:
                made.append(
                    upload(client, source, {"scope_level": "user", "path": f"bench/{next(n)}.bin"})["artifact_id"]
                )

            up_time = best(args.rounds, up)
            down_time = best(args.rounds, lambda: download(client, made[0], work / "down.bin"))
        print(f"{size} MiB, store {args.store}, best of {args.rounds}")
        report("upload", size / up_time, size / floor, "MiB/s", "as fast as the disk allows")
        report("download", size / down_time, size / floor, "MiB/s", "as fast as the disk allows")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
