"""A job's output reaches followers while it runs (issue 12, item 2; decisions.md Dispatch 12).

Real processes: an orchestrator on PostgreSQL and a node agent on Podman
that takes jobs with ``jobs:start``. The job prints the host's uptime with
each line (``/proc/uptime`` is not namespaced), so the test knows when each
line was printed and when it reached the follower: every line arrives within
1.5 s, seconds before the job ends, once each. A job that floods its output
ends in about its own time, its streamed and stored output capped with the
cut marker, and the node stays healthy.
"""

from __future__ import annotations

import json
import time

import requests
from harness.follow import EventTap

from cynode_core.contract.job import OUTPUT_CUT_MARKER

PRINTER = "for i in 1 2 3 4 5; do echo line-$i $(cut -d' ' -f1 /proc/uptime); sleep 1; done"
FLOOD = "yes | head -c 20000000"
CAP = 16384


def uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def test_lines_reach_a_follower_as_they_are_printed_once_each(cluster) -> None:  # type: ignore[no-untyped-def]
    orch = cluster.orchestrator().start().wait_healthy()
    cluster.node("node-01", orch).start().wait_ready()
    admin = cluster.admin(orch)
    offset = uptime() - time.monotonic()  # an arrival's monotonic time, as uptime
    task = admin.create_command(PRINTER)
    tap = EventTap(orch.gateway, admin.token, task)
    try:
        assert tap.response.status_code == 200, tap.response.text
        lines = [tap.next(timeout=30)]
        lines += [tap.next(timeout=5) for _ in range(4)]
        _, end = tap.next(timeout=10)
    finally:
        tap.close()
    texts = [event.json()["text"] for _, event in lines]
    assert [t.split()[0] for t in texts] == [f"line-{i}" for i in range(1, 6)], texts
    assert all(event.event == "stdout" for _, event in lines)
    ids = [int(event.id or 0) for _, event in lines]
    assert ids == sorted(set(ids)), ids  # each line once, in order
    delays = [arrived + offset - float(text.split()[1]) for (arrived, _), text in zip(lines, texts, strict=True)]
    print(f"print-to-follower delays: {', '.join(f'{d:.2f}' for d in delays)} s")
    assert all(-0.1 < d < 1.5 for d in delays), delays
    assert (end.event, end.json()["status"]) == ("end", "completed")
    # The first line came long before the end: the job printed 4 more over about 4 s.
    assert lines[-1][0] - lines[0][0] > 3.0
    result = admin.wait_result(task, timeout=10)
    stored = json.loads(result["jobs"][0]["result"])["stdout"]
    assert [line.split()[0] for line in stored.splitlines()] == [f"line-{i}" for i in range(1, 6)]


def test_a_flood_is_capped_with_the_marker_and_the_node_stays_healthy(cluster) -> None:  # type: ignore[no-untyped-def]
    orch = cluster.orchestrator().start().wait_healthy()
    node = cluster.node("node-01", orch, max_output_bytes=str(CAP)).start().wait_ready()
    admin = cluster.admin(orch)
    created = time.monotonic()
    task = admin.create_command(FLOOD)
    tap = EventTap(orch.gateway, admin.token, task)
    events = []
    try:
        assert tap.response.status_code == 200, tap.response.text
        while True:
            _, event = tap.next(timeout=60)
            if event.event == "end":
                break
            events.append(event)
    finally:
        tap.close()
    took = time.monotonic() - created
    print(f"yes | head -c 20000000 with a {CAP}-byte cap: ended {took:.2f} s after its creation")
    assert took < 20, took
    streamed = "".join(e.json()["text"] for e in events if e.event == "stdout")
    assert streamed.endswith(OUTPUT_CUT_MARKER), streamed[-200:]
    body = streamed.removesuffix(OUTPUT_CUT_MARKER)
    assert len(body.encode()) <= CAP and set(body) <= {"y", "\n"}, len(body)
    assert streamed.count(OUTPUT_CUT_MARKER) == 1
    ids = [int(e.id or 0) for e in events if e.event in ("stdout", "stderr")]
    assert ids == sorted(set(ids))
    result = json.loads(admin.wait_result(task, timeout=10)["jobs"][0]["result"])
    assert result["status"] == "completed" and result["truncated"]["stdout"] is True
    assert body == result["stdout"]
    # The node is fine: healthy, and its next job runs at once.
    assert requests.get(f"{node.url}/healthz", timeout=5).status_code == 200
    started = time.monotonic()
    after = admin.wait_result(admin.create_command("echo still-here"), timeout=30)
    assert after["status"] == "completed" and time.monotonic() - started < 15


def test_a_job_printing_nul_bytes_ends_with_its_output_on_either_path(cluster) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL text holds no NUL: the node shows one as U+FFFD, as it shows invalid UTF-8, and the job ends."""
    orch = cluster.orchestrator().start().wait_healthy()
    admin = cluster.admin(orch)
    for reports in ("true", "false"):  # jobs:start with live output, then the synchronous jobs:run
        node = cluster.node(f"node-reports-{reports}", orch, job_reports=reports).start().wait_ready()
        task = admin.create_command(r"printf 'a\000b\n'; printf 'c\000\n' >&2")
        result = admin.wait_result(task, timeout=60)
        assert result["status"] == "completed", result
        stored = json.loads(result["jobs"][0]["result"])
        assert (stored["stdout"], stored["stderr"]) == ("a\ufffdb\n", "c\ufffd\n")
        logs = admin.request("GET", f"/v1/tasks/{task}/logs")
        assert logs.status_code == 200 and logs.json()["stdout"] == "a\ufffdb\n", logs.text
        tap = EventTap(orch.gateway, admin.token, task)  # the task's log, as followers read it
        try:
            got = [tap.next(timeout=10)[1] for _ in range(3)]
        finally:
            tap.close()
        assert sorted((e.event, e.json().get("text")) for e in got[:2]) == [
            ("stderr", "c\ufffd\n"),
            ("stdout", "a\ufffdb\n"),
        ]
        assert got[2].event == "end"
        node.stop()
