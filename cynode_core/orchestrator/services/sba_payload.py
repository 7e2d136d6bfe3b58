"""The job a sandbox-agent task becomes: the SBA job spec in ``job_spec_json`` (agents_contract.md 5.1, 5.2).

A task created with ``use_sba`` gets, when it is made ready, one job whose
sandbox request carries no command: the node recognises it by its
``job_spec_json`` and runs the agent runner in the sandbox. With
``sba_steps`` the spec is ``direct_steps`` (the steps run in order, no
model); without, ``agent_inference`` (the runner asks the node's model
through the job's inference proxy, the steps being suggested to-dos). The
job's timeout is the runner's ``max_runtime_seconds`` plus 30 s, so the
runner stops itself first and still writes its result.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from cynode_core.contract.errors import InvalidInput
from cynode_core.contract.job import SandboxRequest
from cynode_core.contract.job.sba import (
    AGENT_INFERENCE,
    DIRECT_STEPS,
    DIRECT_TOOLS,
    MAX_SPEC_STEPS,
    Constraints,
    ContextSpec,
    InferenceSpec,
    InvalidSpec,
    JobSpec,
    StepSpec,
    step_from_json,
)
from cynode_core.orchestrator.settings import OrchestratorSettings

# Seconds the job's timeout leaves the runner beyond its own limit to write its result.
RESULT_GRACE_SECONDS = 30
BASELINE_CONTEXT = (
    "You are a sandbox agent of a cynode cluster. You work in /workspace as an unprivileged user, with no "
    "network; only the tools you are given act. Do the task step by step, keep your to-do list current, "
    "never invent a result, and end with finish and a short report of what you did."
)


def read_steps(value: Any) -> tuple[StepSpec, ...]:
    """``sba_steps`` of a create request as steps; ``InvalidInput`` for anything but at most 50 ``{type, args}``."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_SPEC_STEPS:
        raise InvalidInput(f"sba_steps must be an array of at most {MAX_SPEC_STEPS} steps")
    try:
        return tuple(step_from_json(item, f"sba_steps[{n}]") for n, item in enumerate(value))
    except InvalidSpec as exc:
        raise InvalidInput(str(exc)) from exc


def check_steps(steps: tuple[StepSpec, ...]) -> tuple[StepSpec, ...]:
    """``steps`` when each names a tool a direct-steps agent runs; ``InvalidInput`` otherwise."""
    for n, step in enumerate(steps):
        if step.type not in DIRECT_TOOLS:
            raise InvalidInput(f"sba_steps[{n}].type must be one of: " + ", ".join(DIRECT_TOOLS))
    return steps


def sba_payload(
    settings: OrchestratorSettings,
    *,
    job_id: uuid.UUID,
    task_id: uuid.UUID,
    prompt: str,
    project: str,
    steps: Sequence[StepSpec],
    acceptance_criteria: Any = None,
) -> SandboxRequest:
    """The sandbox request of an SBA job; ``InvalidInput`` when the spec it makes is not valid (a bad step)."""
    mode = DIRECT_STEPS if steps else AGENT_INFERENCE
    criteria = (
        tuple(c for c in acceptance_criteria if isinstance(c, str)) if isinstance(acceptance_criteria, list) else ()
    )
    spec = JobSpec(
        job_id=str(job_id),
        task_id=str(task_id),
        execution_mode=mode,
        constraints=Constraints(
            max_runtime_seconds=settings.sba_max_runtime_seconds,
            max_output_bytes=settings.sba_max_output_bytes,
            ext_net_allowed=False,
            max_steps=settings.sba_max_steps,
        ),
        steps=tuple(steps),
        inference=InferenceSpec((settings.inference_model,), "worker") if mode == AGENT_INFERENCE else None,
        context=ContextSpec(
            baseline_context=BASELINE_CONTEXT,
            project_context=project,
            task_context=prompt,
            acceptance_criteria=criteria,
        ),
    )
    try:
        spec.validate()
    except InvalidSpec as exc:
        raise InvalidInput(f"Invalid sba_steps: {exc}") from exc
    return SandboxRequest(
        image=settings.sba_image or settings.prompt_image,
        command=(),
        use_inference=mode == AGENT_INFERENCE,
        job_spec_json=spec.to_text(),
        timeout_seconds=settings.sba_max_runtime_seconds + RESULT_GRACE_SECONDS,
    )
