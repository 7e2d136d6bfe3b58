"""The decide call's messages (agents_contract.md 3.3, 5.4): the job's context, then where the run stands.

The system message holds the context in upstream's order (persona, baseline,
project, task, requirements and acceptance criteria, preferences, additional
context, skills) and the tool catalog, names and one line each: argument
schemas go into ``format``, not the prompt. The user message is the runtime
block: seconds left, step i of N, the todo list and the results so far, each
cut to 1,500 characters. The whole prompt is kept under
``CYNODE_AGENT_PROMPT_CHARS`` (12,000) by dropping the oldest results first.
"""

from __future__ import annotations

import json
import os
from typing import Any

import sba_schema
import sba_spec as spec

OBSERVATION_CHARS = 1500
DEFAULT_PROMPT_CHARS = 12000
ANSWER_RULE = (
    'Answer with one JSON object: {"action": "call", "tool": <tool name>, "arguments": {...}}. '
    "Use only real tool results; call finish with your report when the task is done."
)


def prompt_chars() -> int:
    value = os.environ.get("CYNODE_AGENT_PROMPT_CHARS", "")
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_PROMPT_CHARS


def _section(title: str, lines: Any) -> str:
    return title + ":\n" + "\n".join(f"- {line}" for line in lines)


def system_text(context: spec.ContextSpec | None) -> str:
    c = context or spec.ContextSpec()
    blocks = []
    if c.persona_title or c.persona_description:
        blocks.append(f"Persona: {c.persona_title}\n{c.persona_description}".strip())
    blocks.append(c.baseline_context)
    blocks.append(f"Project: {c.project_context}" if c.project_context else "")
    blocks.append(f"Task:\n{c.task_context}" if c.task_context else "")
    blocks.append(_section("Requirements", c.requirements) if c.requirements else "")
    blocks.append(_section("Acceptance criteria", c.acceptance_criteria) if c.acceptance_criteria else "")
    blocks.append(_section("Preferences", (f"{k}: {v}" for k, v in c.preferences.items())) if c.preferences else "")
    blocks.append(f"Additional context:\n{c.additional_context}" if c.additional_context else "")
    if c.skill_ids or c.skills is not None:
        skills = ", ".join(c.skill_ids) + ("\n" + json.dumps(c.skills) if c.skills is not None else "")
        blocks.append(f"Skills: {skills}".strip())
    catalog = (f"{name}: {sba_schema.DESCRIPTIONS[name]}" for name in spec.AGENT_TOOLS)
    blocks.append(_section("Tools", catalog) + "\n" + ANSWER_RULE)
    return "\n\n".join(block for block in blocks if block)


def observation(tool: str, args: dict[str, Any], status: str, output: str, error: str) -> str:
    """One result as the model sees it, at most 1,500 characters."""
    shown = json.dumps(args, ensure_ascii=False)
    shown = shown if len(shown) <= 200 else shown[:200] + "...}"
    body = "\n".join(part for part in (error, output) if part) or "(no output)"
    return f"Result of {tool} {shown} ({status}):\n{body}"[:OBSERVATION_CHARS]


def todo_text(todo: list[spec.TodoItem]) -> str:
    if not todo:
        return "Todo: (empty)"
    return "Todo:\n" + "\n".join(f"[{n}] [{'x' if item.done else ' '}] {item.title}" for n, item in enumerate(todo))


def messages(
    system: str, seconds_left: float, step: int, max_steps: int, todo: list[spec.TodoItem], observations: list[str]
) -> list[dict[str, str]]:
    """The decide call's messages, the oldest results dropped while the prompt is over its budget."""
    head = f"Time left: {int(seconds_left)} s. Step {step} of {max_steps}.\n{todo_text(todo)}"
    tail = "Choose the next tool call."
    kept = list(observations)
    dropped = 0

    def runtime() -> str:
        results = ([f"({dropped} earlier results omitted)"] if dropped else []) + kept
        shown = "Results so far:\n" + "\n\n".join(results) if results else "No tool was called yet."
        return f"{head}\n\n{shown}\n\n{tail}"

    while kept and len(system) + len(runtime()) > prompt_chars():
        kept.pop(0)
        dropped += 1
    return [{"role": "system", "content": system}, {"role": "user", "content": runtime()}]
