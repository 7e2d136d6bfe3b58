"""The sandbox agent runner (agents_contract.md 5.4 to 5.8) and its job contract (5.2, 5.7).

The runner runs as a real process, ``python3 -I -B runner.py``, with the
system ``python3``: on the host over temporary directories that stand for
``/job`` and ``/workspace``, and once inside a real hardened Podman sandbox.
Agent mode talks to a SCRIPTED stand-in for Ollama's ``/api/chat`` on a Unix
socket (sba_helpers.ScriptedChat says why); direct mode needs no model.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cynode_llamacpp.grammars import format_grammar
from node_helpers import make_settings
from sba_helpers import (
    JOB_ID,
    MODEL,
    SbaDirs,
    ScriptedChat,
    agent_spec,
    call,
    direct_spec,
    run_runner,
)

from cynode_core.contract import Mount, SandboxRuntime, SandboxSpec
from cynode_core.contract.job.sba import AGENT_TOOLS, InvalidSpec, JobSpec, SbaResult, TodoItem
from node_agent.sba import JOB_DIR, RUNNER_COMMAND, RUNNER_DIR

HELLO = ("write_file", {"path": "hello.txt", "content": "hello\n"})
CAT = ("run_command", {"argv": ["cat", "hello.txt"]})
READ = ("read_file", {"path": "hello.txt"})
ANSWER = "Wrote hello.txt and checked it."


@pytest.fixture
def dirs(tmp_path: Path) -> SbaDirs:
    return SbaDirs.make(tmp_path)


@pytest.fixture
def chat() -> Iterator[ScriptedChat]:
    stub = ScriptedChat()
    yield stub
    stub.stop()


def outside(dirs: SbaDirs) -> Path:
    """A directory next to the workspace: the tools must never reach it."""
    path = dirs.workspace.parent / "outside"
    path.mkdir(exist_ok=True)
    (path / "secret.txt").write_text("top secret\n")
    return path


# ------------------------------------------------------------- direct mode


def test_direct_steps_write_run_and_read(dirs: SbaDirs) -> None:
    (dirs.job / "artifacts" / "report.md").write_text("# report\n")
    (dirs.job / "artifacts" / "not-a-file").mkdir()
    run = run_runner(dirs, direct_spec(HELLO, CAT, READ))
    assert run.returncode == 0, run.stderr
    result = run.result
    assert list(result) == ["protocol_version", "job_id", "status", "inference_used", "steps", "artifacts", "todo"]
    assert result["status"] == "success" and result["job_id"] == JOB_ID and result["inference_used"] is False
    assert [(s["index"], s["type"], s["status"]) for s in result["steps"]] == [
        (0, "write_file", "success"),
        (1, "run_command", "success"),
        (2, "read_file", "success"),
    ]
    assert result["steps"][1]["exit_code"] == 0 and result["steps"][1]["output"] == "hello\n"
    assert result["steps"][2]["output"] == "hello\n"
    assert result["artifacts"] == [{"path": "artifacts/report.md"}]
    todo = [
        {"title": f"Step {n}: {kind}", "done": True}
        for n, kind in enumerate(["write_file", "run_command", "read_file"], 1)
    ]
    assert result["todo"] == todo
    assert json.loads((dirs.job / "todo.json").read_text()) == todo
    assert run.stdout == ""  # no final answer in direct mode
    assert "[sba] step 1 run_command: success" in run.stderr
    assert SbaResult.from_json(result).to_json() == result
    assert not list(dirs.job.glob(".*.tmp")) and not list(dirs.runner.glob("__pycache__"))


def test_a_failing_step_stops_direct_mode(dirs: SbaDirs) -> None:
    run = run_runner(dirs, direct_spec(HELLO, ("run_command", {"argv": ["sh", "-c", "echo no >&2; exit 3"]}), READ))
    assert run.returncode == 1
    assert run.result["status"] == "failure"
    assert (run.result["failure_code"], run.result["failure_message"]) == ("step_failed", "exit status 3")
    assert run.result["steps"][1] == {
        "index": 1,
        "type": "run_command",
        "status": "failure",
        "exit_code": 3,
        "output": "no\n",
        "error": "exit status 3",
    }
    assert len(run.result["steps"]) == 2  # read_file never ran
    assert [item["done"] for item in run.result["todo"]] == [True, False, False]


def test_paths_outside_the_workspace_fail_the_step(dirs: SbaDirs) -> None:
    away = outside(dirs)
    (dirs.workspace / "link").symlink_to(away)
    (dirs.workspace / "secret-link.txt").symlink_to(away / "secret.txt")
    attempts = [
        ("write_file", {"path": "../x", "content": "x"}),
        ("write_file", {"path": "link/new.txt", "content": "x"}),
        ("read_file", {"path": "secret-link.txt"}),
        ("read_file", {"path": str(away / "secret.txt")}),
        ("run_command", {"argv": ["ls"], "cwd": "link"}),
        ("list_tree", {"path": "../outside"}),
    ]
    for kind, args in attempts:
        run = run_runner(dirs, direct_spec((kind, args)))
        step = run.result["steps"][0]
        assert (step["status"], step["error"]) == ("failure", "path escapes workspace"), (kind, args)
        assert run.result["failure_code"] == "step_failed"
        assert "top secret" not in json.dumps(run.result)
    assert sorted(p.name for p in away.iterdir()) == ["secret.txt"]
    assert not (dirs.workspace.parent / "x").exists()


def test_output_over_max_output_bytes_is_cut_and_marked(dirs: SbaDirs) -> None:
    content = "0123456789" * 10
    steps = [("write_file", {"path": "big.txt", "content": content}), ("read_file", {"path": "big.txt"})]
    steps.append(("run_command", {"argv": ["cat", "big.txt"]}))
    run = run_runner(dirs, direct_spec(*steps, max_output_bytes=16))
    assert run.result["status"] == "success"
    for step in run.result["steps"][1:]:
        assert step["output"] == content[:16] + "\n...[truncated]"
        assert step["status"] == "success"


def test_read_file_line_ranges(dirs: SbaDirs) -> None:
    (dirs.workspace / "lines.txt").write_text("one\ntwo\nthree\n")
    run = run_runner(dirs, direct_spec(("read_file", {"path": "lines.txt", "start_line": 2, "end_line": 3})))
    assert run.result["steps"][0]["output"] == "two\nthree\n"
    run = run_runner(dirs, direct_spec(("read_file", {"path": "lines.txt", "start_line": 2, "end_line": 9})))
    assert run.result["steps"][0]["error"] == "line range 2-9 out of bounds (the file has 3 lines)"
    run = run_runner(dirs, direct_spec(("read_file", {"path": "missing.txt"})))
    assert run.result["steps"][0]["error"] == "file not found: missing.txt"


DIFF = """diff --git a/keep.txt b/keep.txt
--- a/keep.txt
+++ b/keep.txt
@@ -1,3 +1,3 @@
 one
-two
+TWO
 three
--- /dev/null
+++ b/sub/new.txt
@@ -0,0 +1,2 @@
+fresh
+file
--- a/gone.txt
+++ /dev/null
@@ -1 +0,0 @@
-bye
"""


def test_apply_unified_diff_creates_modifies_and_deletes(dirs: SbaDirs) -> None:
    (dirs.workspace / "keep.txt").write_text("one\ntwo\nthree\n")
    (dirs.workspace / "gone.txt").write_text("bye\n")
    run = run_runner(dirs, direct_spec(("apply_unified_diff", {"diff": DIFF})))
    assert run.result["status"] == "success", run.result
    assert run.result["steps"][0]["output"] == "patched keep.txt\ncreated sub/new.txt\ndeleted gone.txt\n"
    assert (dirs.workspace / "keep.txt").read_text() == "one\nTWO\nthree\n"
    assert (dirs.workspace / "sub" / "new.txt").read_text() == "fresh\nfile\n"
    assert not (dirs.workspace / "gone.txt").exists()


def test_a_diff_with_one_mismatching_hunk_changes_nothing(dirs: SbaDirs) -> None:
    (dirs.workspace / "keep.txt").write_text("one\ntwo\nthree\n")
    (dirs.workspace / "other.txt").write_text("alpha\nbeta\n")
    bad = DIFF.split("--- /dev/null")[0] + "--- a/other.txt\n+++ b/other.txt\n@@ -1,2 +1,2 @@\n alpha\n-BETA\n+gamma\n"
    run = run_runner(dirs, direct_spec(("apply_unified_diff", {"diff": bad})))
    assert run.result["failure_code"] == "step_failed"
    assert run.result["steps"][0]["error"] == "other.txt: hunk at line 1 does not match (no fuzz)"
    assert (
        dirs.workspace / "keep.txt"
    ).read_text() == "one\ntwo\nthree\n"  # the first file's good hunk was not applied
    escaping = "--- a/../x\n+++ b/../x\n@@ -0,0 +1 @@\n+x\n"
    run = run_runner(dirs, direct_spec(("apply_unified_diff", {"diff": escaping})))
    assert run.result["steps"][0]["error"] == "path escapes workspace: ../x"


def test_list_tree_and_search_files_skip_what_they_must(dirs: SbaDirs) -> None:
    ws = dirs.workspace
    for rel in ("src/a.py", ".git/config", "node_modules/m/index.js", "1/2/3/4/5/6/7/deep.txt"):
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text("needle here\n")
    (ws / "blob.bin").write_bytes(b"needle\0binary")
    (ws / "huge.txt").write_bytes(b"needle\n" + b"x" * (1024 * 1024))
    run = run_runner(dirs, direct_spec(("list_tree", {}), ("search_files", {"pattern": "ne+dle"})))
    tree = run.result["steps"][0]["output"].splitlines()
    assert "src/" in tree and "src/a.py" in tree and "blob.bin" in tree
    assert "1/2/3/4/5/6/" in tree and "1/2/3/4/5/6/7/" not in tree  # depth at most 6
    assert not any(line.startswith((".git", "node_modules")) for line in tree)
    found = run.result["steps"][1]["output"].splitlines()
    assert found == ["1/2/3/4/5/6/7/deep.txt:1:needle here", "src/a.py:1:needle here"]
    run = run_runner(dirs, direct_spec(("search_files", {"pattern": "needle", "path": "src", "include": "*.js"})))
    assert run.result["steps"][0] == {"index": 0, "type": "search_files", "status": "success"}


def test_run_command_gets_only_path_home_and_lang(dirs: SbaDirs) -> None:
    (dirs.workspace / "sub").mkdir()
    steps = [("run_command", {"argv": ["env"]}), ("run_command", {"argv": ["pwd"], "cwd": "sub"})]
    run = run_runner(dirs, direct_spec(*steps), env={"SECRET_TOKEN": "nope"})
    env = dict(line.split("=", 1) for line in run.result["steps"][0]["output"].splitlines())
    assert sorted(env) == ["HOME", "LANG", "PATH"]
    assert env["HOME"] == str(dirs.workspace) and env["LANG"] == "C.UTF-8"
    assert run.result["steps"][1]["output"] == f"{os.path.realpath(dirs.workspace / 'sub')}\n"


def test_the_deadline_stops_a_command_and_the_job_times_out(dirs: SbaDirs) -> None:
    run = run_runner(dirs, direct_spec(("run_command", {"argv": ["sleep", "30"]}), runtime=7))
    assert run.returncode == 1 and run.seconds < 10
    assert (run.result["status"], run.result["failure_code"]) == ("timeout", "timeout")
    assert run.result["failure_message"] == "job exceeded max_runtime_seconds"
    assert run.result["steps"][0]["status"] == "timeout"


def test_a_spec_with_an_unknown_field_is_a_schema_validation_failure(dirs: SbaDirs) -> None:
    spec = direct_spec(HELLO).to_json()
    spec["constraints"]["max_cpu"] = 1
    run = run_runner(dirs, spec)
    assert run.returncode == 1
    assert run.result == {
        "protocol_version": "1.0",
        "job_id": JOB_ID,
        "status": "failure",
        "inference_used": False,
        "steps": [],
        "artifacts": [],
        "todo": [],
        "failure_code": "schema_validation",
        "failure_message": "constraints.max_cpu: unknown field",
    }
    assert not (dirs.workspace / "hello.txt").exists()
    assert run_runner(dirs, "{not json").result["failure_code"] == "schema_validation"


# -------------------------------------------------------------- agent mode


def _walk(schema: Any) -> Iterator[dict[str, Any]]:
    if isinstance(schema, dict):
        yield schema
        for value in schema.values():
            yield from _walk(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _walk(value)


def test_agent_mode_executes_the_scripted_calls_and_finishes(dirs: SbaDirs, chat: ScriptedChat) -> None:
    chat.chunked = True  # the runner reads chunked answers as well as Content-Length ones
    chat.script = [
        call("write_file", path="hello.txt", content="hello\n"),
        call("run_command", argv=["cat", "hello.txt"]),
    ]
    chat.script.append(call("finish", answer=ANSWER))
    run = run_runner(dirs, agent_spec(), env={"INFERENCE_PROXY_URL": chat.url, "CYNODE_AGENT_SEED": "7"})
    assert run.returncode == 0, run.stderr
    assert run.stdout == ANSWER + "\n"
    result = run.result
    assert (result["status"], result["final_answer"], result["inference_used"]) == ("success", ANSWER, True)
    assert [(s["type"], s["status"]) for s in result["steps"]] == [
        ("write_file", "success"),
        ("run_command", "success"),
        ("finish", "success"),
    ]
    assert result["steps"][1]["output"] == "hello\n"
    assert (dirs.workspace / "hello.txt").read_text() == "hello\n"
    assert result["todo"] == [{"title": "hello.txt holds hello", "done": False}]

    assert len(chat.requests) == 3
    for body in chat.requests:
        assert body["model"] == MODEL and body["stream"] is False
        assert body["options"] == {"temperature": 0, "seed": 7, "num_predict": 512}
        branches = body["format"]["oneOf"]
        assert [b["properties"]["tool"]["const"] for b in branches] == list(AGENT_TOOLS)
        assert all(list(b["properties"])[:2] == ["action", "tool"] for b in branches)
        for node in _walk(body["format"]):
            assert node.get("maxLength", 0) <= 400
            assert node.get("type") != "array" or "maxItems" in node
    format_grammar(chat.requests[0]["format"])  # the embedded backend can sample under it
    system = chat.requests[0]["messages"][0]["content"]
    order = ["You are a sandbox agent", "Project: project demo", "Task:", "Requirements:", "Tools:"]
    assert sorted(order, key=system.index) == order
    second = chat.requests[1]["messages"][-1]["content"]
    assert "Step 2 of 8" in second and "Result of write_file" in second and "wrote 6 bytes" in second
    assert "Result of run_command" in chat.requests[2]["messages"][-1]["content"]


def test_an_agent_that_never_finishes_stops_at_max_steps(dirs: SbaDirs, chat: ScriptedChat) -> None:
    chat.default = call("list_tree")
    run = run_runner(dirs, agent_spec(max_steps=3), env={"INFERENCE_PROXY_URL": chat.url})
    assert run.returncode == 1
    assert run.result["status"] == "failure" and run.result["failure_code"] == "constraint_violation"
    assert run.result["failure_message"] == "max_steps (3) reached without finish"
    assert [s["type"] for s in run.result["steps"]] == ["list_tree"] * 3
    assert len(chat.requests) == 3
    assert {body["options"]["seed"] for body in chat.requests} == {42}  # CYNODE_AGENT_SEED unset


def test_a_failed_step_does_not_end_an_agent_job(dirs: SbaDirs, chat: ScriptedChat) -> None:
    chat.script = [call("write_file", path="../x", content="x"), call("finish", answer=ANSWER)]
    run = run_runner(dirs, agent_spec(), env={"INFERENCE_PROXY_URL": chat.url})
    assert run.result["status"] == "success"
    first = run.result["steps"][0]
    assert (first["type"], first["status"], first["error"]) == ("write_file", "failure", "path escapes workspace")
    assert not (dirs.workspace.parent / "x").exists()
    assert "(failure):\npath escapes workspace" in chat.requests[1]["messages"][-1]["content"]


def test_the_todo_tools_change_the_list_and_todo_json(dirs: SbaDirs, chat: ScriptedChat) -> None:
    chat.script = [call("todo_add", title="check the file"), call("todo_done", index=0), call("finish", answer="ok")]
    run = run_runner(dirs, agent_spec(), env={"INFERENCE_PROXY_URL": chat.url})
    todo = [{"title": "hello.txt holds hello", "done": True}, {"title": "check the file", "done": False}]
    assert run.result["todo"] == todo
    assert json.loads((dirs.job / "todo.json").read_text()) == todo
    done_branch = [b for b in chat.requests[1]["format"]["oneOf"] if b["properties"]["tool"]["const"] == "todo_done"]
    assert done_branch[0]["properties"]["arguments"]["properties"]["index"] == {"type": "integer", "enum": [0, 1]}
    assert "[1] [ ] check the file" in chat.requests[1]["messages"][-1]["content"]


def test_one_invalid_decision_is_asked_again_and_two_fail_the_job(dirs: SbaDirs, chat: ScriptedChat) -> None:
    chat.script = [call("write_file", path="a.txt"), call("finish", answer=ANSWER)]
    run = run_runner(dirs, agent_spec(), env={"INFERENCE_PROXY_URL": chat.url})
    assert run.result["status"] == "success" and [s["type"] for s in run.result["steps"]] == ["finish"]
    retry = chat.requests[1]["messages"][-1]["content"]
    assert retry.startswith("That answer is not valid: arguments.content: required")

    chat.requests.clear()
    chat.script = ["not json at all", call("delete_everything")]
    run = run_runner(dirs, agent_spec(), env={"INFERENCE_PROXY_URL": chat.url})
    assert run.returncode == 1 and len(chat.requests) == 2
    assert run.result["failure_code"] == "inference_failed"
    assert run.result["failure_message"].startswith("two invalid decisions in a row: value: must be {")


def test_unreachable_inference_fails_the_job(dirs: SbaDirs, chat: ScriptedChat) -> None:
    missing = "http+unix://" + "%2Fnonexistent%2Finference-proxy.sock"
    for env in ({"INFERENCE_PROXY_URL": missing}, {}):
        run = run_runner(dirs, agent_spec(), env=env)
        assert run.returncode == 1
        assert (run.result["status"], run.result["failure_code"]) == ("failure", "inference_failed")
        assert run.result["steps"] == [] and run.result["inference_used"] is True
    assert (
        "inference proxy unreachable"
        in run_runner(dirs, agent_spec(), env={"INFERENCE_PROXY_URL": missing}).result["failure_message"]
    )
    chat.default = None  # the stand-in answers 500 with Ollama's error shape
    run = run_runner(dirs, agent_spec(), env={"INFERENCE_PROXY_URL": chat.url})
    assert run.result["failure_message"] == "inference answered 500: the script is exhausted"


def test_an_agent_past_its_deadline_times_out(dirs: SbaDirs, chat: ScriptedChat) -> None:
    chat.default, chat.delay = call("list_tree"), 20.0
    run = run_runner(dirs, agent_spec(runtime=7), env={"INFERENCE_PROXY_URL": chat.url})
    assert run.returncode == 1 and run.seconds < 10
    assert (run.result["status"], run.result["failure_code"]) == ("timeout", "timeout")
    assert run.result["failure_message"] == "job exceeded max_runtime_seconds"


# ------------------------------------------------------- the real sandbox


def test_the_runner_in_a_real_hardened_sandbox(podman_runtime: SandboxRuntime, tmp_path: Path) -> None:
    """python:alpine through the node's alias, as uid 65534, read-only root, no network; direct mode."""
    dirs = SbaDirs.make(tmp_path)
    for path in (dirs.job, dirs.job / "artifacts", dirs.workspace):
        path.chmod(0o777)  # the job runs as nobody (65534)
    probe = (
        "import os, socket\n"
        "print(open('/proc/1/cmdline').read().replace(chr(0), ' ').strip())\n"
        "print(os.getuid(), os.getgid())\n"
        "try:\n    open('/probe', 'w')\nexcept OSError as exc:\n    print('root', exc.strerror)\n"
        "print(sorted(os.listdir('/sys/class/net')))\n"
    )
    keep = ("run_command", {"argv": ["cp", "hello.txt", f"{JOB_DIR}/artifacts/report.txt"]})
    spec = direct_spec(HELLO, CAT, READ, ("run_command", {"argv": ["python3", "-c", probe]}), keep)
    (dirs.job / "job.json").write_text(spec.to_text())
    job_id = str(uuid.uuid4())
    sandbox = SandboxSpec(
        job_id=job_id,
        task_id=str(uuid.uuid4()),
        image=make_settings(tmp_path / "home").resolve_image("python:alpine"),
        command=list(RUNNER_COMMAND),
        env={"CYNODE_JOB_ID": job_id},
        workspace_dir=str(dirs.workspace),
        timeout_seconds=90,
        max_output_bytes=65536,
        network_policy="none",
        mounts=(Mount(str(dirs.runner), RUNNER_DIR, read_only=True), Mount(str(dirs.job), JOB_DIR, read_only=False)),
    )
    outcome = podman_runtime.run(sandbox)
    assert outcome.status == "completed", outcome
    result = SbaResult.from_json(json.loads((dirs.job / "result.json").read_text()))
    assert result.status == "success" and len(result.steps) == 5
    assert result.steps[1].output == "hello\n" and result.steps[2].output == "hello\n"
    cmdline, ids, root, nets = result.steps[3].output.splitlines()
    assert cmdline == " ".join(RUNNER_COMMAND)  # python3 -I -B /opt/cynode/sba/runner.py --job ...
    assert ids == "65534 65534"
    assert root == "root Read-only file system"
    assert nets == "['lo']"
    assert result.artifacts == ("artifacts/report.txt",)
    assert (dirs.job / "artifacts" / "report.txt").read_text() == "hello\n"
    assert "[sba] job success" in outcome.stderr.decode()


# ------------------------------------------------------ the spec contract


def _spec(**changes: Any) -> dict[str, Any]:
    value = direct_spec(HELLO).to_json()
    value.update(changes)
    return value


def _limits(**extra: Any) -> dict[str, Any]:
    return {"max_runtime_seconds": 1, "max_output_bytes": 1, **extra}


NOT_INTEGER = "constraints.max_runtime_seconds: must be an integer"
STEP_TYPES = "run_command, read_file, write_file, apply_unified_diff, list_tree, search_files"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (_spec(extra=1), "extra: unknown field"),
        (_spec(steps=[{"type": "write_file", "args": {}, "why": "x"}]), "steps[0].why: unknown field"),
        (_spec(context={"task_context": "x", "persona": {}}), "context.persona: unknown field"),
        (_spec(inference={"allowed_models": ["m"], "model_id": "m"}), "inference.model_id: unknown field"),
        (_spec(constraints=_limits(max_cpu=1)), "constraints.max_cpu: unknown field"),
        (_spec(job_id=5), "job_id: must be a string"),
        (_spec(constraints=_limits(max_runtime_seconds="300")), NOT_INTEGER),
        (_spec(constraints=_limits(max_runtime_seconds=True)), NOT_INTEGER),
        (_spec(constraints=_limits(max_runtime_seconds=1.5)), NOT_INTEGER),
        (_spec(constraints=_limits(max_runtime_seconds=0)), "constraints.max_runtime_seconds: must be positive"),
        (_spec(constraints=_limits(max_output_bytes=None)), "constraints.max_output_bytes: must be positive"),
        (_spec(constraints=_limits(ext_net_allowed="no")), "constraints.ext_net_allowed: must be a boolean"),
        (_spec(constraints=_limits(max_steps=51)), "constraints.max_steps: must be between 1 and 50"),
        (_spec(constraints=[]), "constraints: must be a JSON object"),
        (_spec(steps={"type": "write_file"}), "steps: must be an array"),
        (_spec(steps=[{"type": "write_file", "args": []}]), "steps[0].args: must be an object"),
        (_spec(steps=[{"type": "rm_rf", "args": {}}]), f"steps[0].type: must be one of: {STEP_TYPES}"),
        (_spec(steps=[], execution_mode="direct_steps"), "steps: required and must be non-empty for direct_steps"),
        (_spec(execution_mode="shell"), "execution_mode: must be one of: agent_inference, direct_steps"),
        (_spec(context={"requirements": ["a", 1]}), "context.requirements: must be an array of strings"),
        (_spec(context={"preferences": {"a": 1}}), "context.preferences: must be an object of strings"),
        (_spec(protocol_version="2.0"), "protocol_version: unsupported major version 2 (supported: 1)"),
        (_spec(protocol_version="one"), "protocol_version: invalid version format"),
        (_spec(protocol_version=None), "protocol_version: required"),
        (_spec(task_id=""), "task_id: required"),
        ([], "value: must be a JSON object"),
    ],
)
def test_a_bad_spec_is_refused_with_its_reason(value: Any, reason: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        JobSpec.from_json(value)
    assert str(caught.value) == reason
    assert isinstance(caught.value, ValueError)


def test_a_spec_round_trips_and_resolves_its_mode() -> None:
    spec = agent_spec(max_steps=3)
    assert JobSpec.from_text(spec.to_text()) == spec
    assert (spec.mode, spec.max_steps, spec.model) == ("agent_inference", 3, MODEL)
    implicit = _spec()
    del implicit["execution_mode"]
    assert JobSpec.from_json(implicit).mode == "direct_steps"
    assert JobSpec.from_json({**implicit, "steps": []}).mode == "agent_inference"
    assert JobSpec.from_json({**implicit, "context": None, "inference": None}).max_steps == 8
    with pytest.raises(InvalidSpec, match="invalid JSON"):
        JobSpec.from_text('{"protocol_version": NaN}')


def test_a_result_has_failure_fields_exactly_when_it_failed() -> None:
    good = SbaResult(JOB_ID, "success", todo=(TodoItem("x", True),), final_answer="done", inference_used=True)
    assert SbaResult.from_json(good.to_json()) == good
    with pytest.raises(InvalidSpec, match="present exactly when status is not success"):
        SbaResult(JOB_ID, "failure")
    with pytest.raises(InvalidSpec, match="present exactly when status is not success"):
        SbaResult.from_json({**good.to_json(), "failure_code": "timeout", "failure_message": "x"})
    with pytest.raises(InvalidSpec, match="failure_code: must be one of"):
        SbaResult(JOB_ID, "failure", failure_code="oops", failure_message="x")
    with pytest.raises(InvalidSpec, match=r"steps\[0\].exit_code: must be an integer"):
        SbaResult.from_json(
            {**good.to_json(), "steps": [{"index": 0, "type": "x", "status": "success", "exit_code": "0"}]}
        )
    with pytest.raises(InvalidSpec, match="artifacts: required"):
        SbaResult.from_json({k: v for k, v in good.to_json().items() if k != "artifacts"})
    with pytest.raises(InvalidSpec, match="bonus: unknown field"):
        SbaResult.from_json({**good.to_json(), "bonus": 1})
