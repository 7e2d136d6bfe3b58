"""A job's files through the Worker API on real Podman: inputs into /workspace/inputs, outputs from /job/artifacts.

Inputs arrive in ``sandbox.inputs`` and are checked before any container
runs; outputs are whatever regular files the job left in
``$CYNODE_ARTIFACTS_DIR``, returned in the answer's ``artifacts`` within
the contract's limits (artifacts_contract.md 7, 8).
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from node_helpers import Worker, containers_of, job_body

from cynode_core.contract import SandboxRuntime
from cynode_core.contract.job.files import MAX_OUTPUT_FILES, JobInput
from node_agent.job_files import collect_outputs


def _with_inputs(body: dict, *inputs: JobInput) -> dict:  # type: ignore[type-arg]
    body["sandbox"]["inputs"] = [item.to_json() for item in inputs]
    return body


def test_inputs_are_in_the_workspace_and_outputs_come_back_with_their_content(worker: Worker) -> None:
    script = (
        'test "$CYNODE_ARTIFACTS_DIR" = /workspace/.cynode/artifacts && '
        "cat /workspace/inputs/data.csv | tr a-z A-Z > $CYNODE_ARTIFACTS_DIR/upper.csv; "
        "mkdir -p $CYNODE_ARTIFACTS_DIR/deep/er && echo nested > $CYNODE_ARTIFACTS_DIR/deep/er/note.txt; "
        "ln -s /etc/passwd $CYNODE_ARTIFACTS_DIR/link; echo changed >> /workspace/inputs/data.csv; "
        "ls -l /workspace/inputs"
    )
    body = _with_inputs(job_body(["sh", "-c", script]), JobInput.of("data.csv", b"id,name\n1,ada\n"))
    result = worker.run(body).json()
    assert result["status"] == "completed", result
    assert "data.csv" in result["stdout"]
    outputs = {item["path"]: item for item in result["artifacts"]}
    assert set(outputs) == {"upper.csv", "deep/er/note.txt"}  # the symbolic link is never followed or listed

    upper = outputs["upper.csv"]
    assert base64.b64decode(upper["content_base64"]) == b"ID,NAME\n1,ADA\n"
    assert upper["sha256"] == hashlib.sha256(b"ID,NAME\n1,ADA\n").hexdigest() and upper["size_bytes"] == 14
    assert upper["content_type"] == "text/csv"
    assert not (worker.workspace_root / body["job_id"]).exists(), "the workspace (and its outputs) was kept"


def test_an_outputs_directory_swapped_for_a_link_out_of_the_workspace_gives_nothing(worker: Worker) -> None:
    script = "rm -r /workspace/.cynode/artifacts && ln -s /etc /workspace/.cynode/artifacts"
    result = worker.run(job_body(["sh", "-c", script])).json()
    assert result["status"] == "completed", result
    assert "artifacts" not in result  # the node never walked the host's /etc


def test_an_input_that_is_not_what_was_declared_fails_the_job_before_any_container(
    worker: Worker, podman_runtime: SandboxRuntime
) -> None:
    good = JobInput.of("a.txt", b"hello")
    forged = JobInput(good.path, b"jello", good.size_bytes, good.sha256)
    body = _with_inputs(job_body(["sh", "-c", "echo ran"]), forged)
    result = worker.run(body).json()
    assert (result["status"], result["exit_code"], result["stdout"]) == ("failed", -1, ""), result
    assert result["stderr"] == "input inputs/a.txt checksum mismatch\n"
    assert containers_of(podman_runtime, body["job_id"]) == []


def test_malformed_inputs_are_400(worker: Worker) -> None:
    for bad in (
        [{"path": "../x", "content_base64": "", "size_bytes": 0, "sha256": "0" * 64}],
        [{"path": "inputs/a/b", "content_base64": "", "size_bytes": 0, "sha256": "0" * 64}],
        [{"path": "inputs/a", "content_base64": "!!", "size_bytes": 0, "sha256": "0" * 64}],
        "inputs/a",
    ):
        body = job_body(["true"])
        body["sandbox"]["inputs"] = bad
        answer = worker.run(body)
        assert answer.status_code == 400 and answer.json()["detail"] == "invalid sandbox.inputs", (bad, answer.text)


def test_outputs_past_the_limits_are_listed_without_content(tmp_path: Path) -> None:
    (tmp_path / "big.bin").write_bytes(b"x" * (6 * 1024 * 1024 + 1))
    for n in range(MAX_OUTPUT_FILES + 2):
        (tmp_path / f"f{n:02d}.txt").write_text(str(n))
    (tmp_path / "a" / "b" / "c" / "d" / "e").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c" / "d" / "four.txt").write_text("kept")
    (tmp_path / "a" / "b" / "c" / "d" / "e" / "five.txt").write_text("too deep")
    found = {item.path: item for item in collect_outputs(tmp_path)}
    assert "a/b/c/d/four.txt" in found and "a/b/c/d/e/five.txt" not in found
    assert found["big.bin"].content is None and found["big.bin"].omitted == "size_limit"
    assert found["big.bin"].size_bytes == 6 * 1024 * 1024 + 1
    counted = sorted(found)
    assert len(counted) == MAX_OUTPUT_FILES + 4
    assert [found[p].omitted for p in counted[MAX_OUTPUT_FILES:]] == ["count_limit"] * 4
