"""The sandbox agent runner (agents_contract.md 5.4 to 5.8), run inside an SBA job's sandbox.

``python3 -I -B /opt/cynode/sba/runner.py --job /job/job.json --result /job/result.json --workspace /workspace``

Python 3.9 or newer and its standard library only: a sandbox has no network,
so nothing can be installed at run time. The node mounts this directory
read-only at ``/opt/cynode/sba`` with the job contract,
``cynode_core/contract/job/sba.py``, next to it as ``sba_spec.py``
(``node_agent.sba.runner_files``). ``-I`` keeps the script's directory out
of ``sys.path``, so the runner puts it back first.

The runner checks the spec, writes the todo list to ``todo.json`` next to the
job file after every change, runs the steps (``direct_steps``) or the
decide/act loop (``agent_inference``) until ``finish``, the step limit or the
deadline (start + ``max_runtime_seconds`` - 5 s), then writes the result
atomically, prints the final answer on stdout (progress goes to stderr) and
exits 0 on success, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sba_inference  # noqa: E402
import sba_prompt  # noqa: E402
import sba_schema  # noqa: E402
import sba_spec as spec  # noqa: E402
import sba_tools  # noqa: E402

DEADLINE_MARGIN = 5.0
SEED_ENV = "CYNODE_AGENT_SEED"
DEFAULT_SEED = 42


def log(text: str) -> None:
    print(f"[sba] {text}", file=sys.stderr, flush=True)


def write_json(path: str, value: Any) -> None:
    """Write ``value`` atomically (a temporary file next to ``path``, then a rename).

    When the directory is not writable (only the file was made writable for
    the sandbox's user) the file is written in place. Lone surrogates become
    ``?``: what the node reads must be UTF-8.
    """
    data = json.dumps(value, ensure_ascii=False).encode("utf-8", "replace")
    temp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except OSError:
        if os.path.exists(temp):
            os.unlink(temp)
        with open(path, "wb") as handle:
            handle.write(data)


def initial_todo(job: spec.JobSpec) -> list[spec.TodoItem]:
    """Upstream's ``BuildInitialTodo``: the requirements, the acceptance criteria, then the suggested steps."""
    context = job.context or spec.ContextSpec()
    titles = list(context.requirements) + [f"Acceptance: {text}" for text in context.acceptance_criteria]
    titles += [f"Step {n}: {step.type}" for n, step in enumerate(job.steps, 1)]
    return [spec.TodoItem(title) for title in titles]


def artifacts(job_dir: str) -> tuple[str, ...]:
    """``artifacts/<name>`` for each regular file directly in the job's ``artifacts/``."""
    try:
        with os.scandir(os.path.join(job_dir, "artifacts")) as entries:
            names = sorted(entry.name for entry in entries if entry.is_file(follow_symlinks=False))
    except OSError:
        return ()
    return tuple(f"artifacts/{name}" for name in names)


class Run:
    """One job's run: its spec, deadline, tools, and the steps and todo list so far."""

    def __init__(self, job: spec.JobSpec, job_path: str, workspace: str, started: float):
        self.job = job
        self.job_dir = os.path.dirname(os.path.abspath(job_path))
        self.deadline = started + job.constraints.max_runtime_seconds - DEADLINE_MARGIN
        self.steps: list[spec.StepResult] = []
        self.todo = initial_todo(job)
        max_output = job.constraints.max_output_bytes
        self.tools = sba_tools.Toolbox(workspace, max_output, self.deadline, self.todo, self.save_todo)
        self.save_todo()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save_todo(self) -> None:
        """Rewrite ``todo.json``; a job dir the runner cannot write costs the file, not the job."""
        try:
            write_json(os.path.join(self.job_dir, "todo.json"), [item.to_json() for item in self.todo])
        except OSError as exc:
            log(f"cannot write todo.json: {exc.strerror or exc}")

    def record(self, tool: str, outcome: sba_tools.Outcome) -> None:
        step = spec.StepResult(len(self.steps), tool, outcome.status, outcome.exit_code, outcome.output, outcome.error)
        self.steps.append(step)
        log(f"step {step.index} {tool}: {step.status}" + (f" ({step.error})" if step.error else ""))

    def result(
        self, status: str, code: str | None = None, message: str | None = None, answer: str | None = None
    ) -> spec.SbaResult:
        return spec.SbaResult(
            job_id=self.job.job_id,
            status=status,
            steps=tuple(self.steps),
            artifacts=artifacts(self.job_dir),
            todo=tuple(self.todo),
            final_answer=answer,
            inference_used=self.job.mode == spec.AGENT_INFERENCE,
            failure_code=code,
            failure_message=message,
        )

    def timed_out(self) -> spec.SbaResult:
        return self.result(spec.TIMEOUT, spec.TIMEOUT_CODE, spec.TIMEOUT_MESSAGE)


def run_direct(run: Run) -> spec.SbaResult:
    """``direct_steps`` (5.8): the steps in order, without inference; the first failure stops the job."""
    first_step_item = len(run.todo) - len(run.job.steps)
    for n, step in enumerate(run.job.steps):
        if run.left() <= 0:
            return run.timed_out()
        outcome = run.tools.run(step.type, dict(step.args))
        run.record(step.type, outcome)
        if outcome.status != spec.SUCCESS:
            if run.left() <= 0:
                return run.timed_out()
            return run.result(spec.FAILURE, spec.STEP_FAILED, outcome.error or f"step {step.type} failed")
        run.todo[first_step_item + n] = spec.TodoItem(run.todo[first_step_item + n].title, True)
        run.save_todo()
    return run.result(spec.SUCCESS)


def seed() -> int:
    value = os.environ.get(SEED_ENV, "").strip()
    try:
        return int(value)
    except ValueError:
        return DEFAULT_SEED


def _problem(text: str, schema: dict[str, Any]) -> str:
    """Why ``text`` is not a valid decision, or ``""``."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        return f"the answer is not JSON ({exc})"
    return sba_schema.check(value, schema)


def decide(run: Run, url: str, messages: list[dict[str, str]]) -> dict[str, Any]:
    """One decision under the step schema; an invalid answer is asked again once with the problem appended."""
    schema = sba_schema.step_schema([n for n, item in enumerate(run.todo) if not item.done])
    problem = ""
    for _ in range(2):
        text = sba_inference.chat(url, run.job.model, messages, schema, seed(), run.left())
        problem = _problem(text, schema)
        if not problem:
            decision: dict[str, Any] = json.loads(text)
            return decision
        log(f"invalid decision: {problem}")
        messages = messages + [
            {"role": "assistant", "content": text[: sba_schema.STEP_MAX_LENGTH]},
            {"role": "user", "content": f"That answer is not valid: {problem}. Answer again with one JSON object."},
        ]
    raise sba_inference.InferenceError(f"two invalid decisions in a row: {problem}")


def run_agent(run: Run) -> spec.SbaResult:
    """``agent_inference`` (5.4): decide, act, observe, until ``finish``, the step limit or the deadline."""
    url = os.environ.get("INFERENCE_PROXY_URL", "")
    system = sba_prompt.system_text(run.job.context)
    observations: list[str] = []
    limit = run.job.max_steps
    for step in range(1, limit + 1):
        if run.left() <= 0:
            return run.timed_out()
        messages = sba_prompt.messages(system, run.left(), step, limit, run.todo, observations)
        try:
            decision = decide(run, url, messages)
        except sba_inference.InferenceError as exc:
            if run.left() <= 0:
                return run.timed_out()
            return run.result(spec.FAILURE, spec.INFERENCE_FAILED, str(exc))
        tool, args = decision["tool"], decision["arguments"]
        if tool == spec.FINISH:
            run.record(tool, sba_tools.Outcome())
            return run.result(spec.SUCCESS, answer=args["answer"])
        outcome = run.tools.run(tool, args)
        run.record(tool, outcome)
        observations.append(sba_prompt.observation(tool, args, outcome.status, outcome.output, outcome.error))
        if run.left() <= 0:
            return run.timed_out()
    return run.result(spec.FAILURE, spec.CONSTRAINT_VIOLATION, spec.MAX_STEPS_MESSAGE.format(limit))


def _job_id(text: str) -> str:
    """The job id of a spec that failed validation, when it has a readable one."""
    try:
        value = json.loads(text)
    except ValueError:
        return ""
    job_id = value.get("job_id") if isinstance(value, dict) else None
    return job_id if isinstance(job_id, str) else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="cynode sandbox agent runner")
    parser.add_argument("--job", required=True, help="the job spec (job.json)")
    parser.add_argument("--result", required=True, help="where the result goes (result.json)")
    parser.add_argument("--workspace", required=True, help="the workspace the tools work in")
    options = parser.parse_args(argv)
    started = time.monotonic()
    text = ""
    try:
        with open(options.job, encoding="utf-8") as handle:
            text = handle.read()
        job = spec.JobSpec.from_text(text)
    except (OSError, ValueError) as exc:
        reason = f"cannot read the job spec: {exc}" if isinstance(exc, OSError) else str(exc)
        code = spec.SCHEMA_VALIDATION
        failed = spec.SbaResult(_job_id(text), spec.FAILURE, failure_code=code, failure_message=reason)
        write_json(options.result, failed.to_json())
        log(f"job failure: {code}: {reason}")
        return 1
    log(f"job {job.job_id}: {job.mode}, {len(job.steps)} steps given")
    run = Run(job, options.job, options.workspace, started)
    result = run_agent(run) if job.mode == spec.AGENT_INFERENCE else run_direct(run)
    write_json(options.result, result.to_json())
    if result.final_answer is not None:
        sys.stdout.buffer.write(result.final_answer.encode("utf-8", "replace") + b"\n")
        sys.stdout.flush()
    log(f"job {result.status}" + (f": {result.failure_code}: {result.failure_message}" if result.failure_code else ""))
    return 0 if result.status == spec.SUCCESS else 1


if __name__ == "__main__":
    sys.exit(main())
