"""The PM agent on the real tiny model (agents_contract.md 7, tiny-model smoke): the mechanics hold with it.

Real parts: the embedded llama.cpp backend with the bundled gemma-3-270m
(sampling under the step schema through ``format``), the orchestrator app on
loopback with its MCP gateway on the control plane's port, PostgreSQL. What
the model says is not asserted; that its every decision was valid, each
call it made was audited, and the turn ended within the step limit is.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import requests
from cynode_llamacpp.backend import LlamaCppBackend
from harness.api import ApiClient
from harness.llama import MODEL
from sqlalchemy import text

STEPS = 2


@pytest.fixture
def settings_overrides(llama: LlamaCppBackend, control_port: int) -> dict[str, Any]:
    return {
        "chat_inference_url": llama.base_url,
        "inference_model": MODEL,
        "control_listen": f"127.0.0.1:{control_port}",
        "pma_tools": ["help.list"],
        "pma_max_steps": STEPS,
    }


def test_a_pm_turn_on_the_tiny_model_decides_validly_and_ends_within_the_limit(
    live_control_plane: str, api: ApiClient, orchestrator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    api.login("admin", orchestrator.secrets.admin_password, expect=200)
    caplog.set_level(logging.INFO, logger="cynode_core.agents.pm_loop")
    with requests.post(
        f"{live_control_plane}/v1/chat/completions",
        json={"model": "cynodeai.pm", "stream": True, "messages": [{"role": "user", "content": "What can you do?"}]},
        headers={"Authorization": f"Bearer {api.token}", "X-CyNodeAI-Events": "true"},
        stream=True,
        timeout=240,
    ) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines(decode_unicode=True) if line]
    assert lines[-1] == "data: [DONE]"
    assert not any('"error"' in line for line in lines if line.startswith("data: {")), lines
    named = [line[7:] for line in lines if line.startswith("event: ")]
    calls = named.count("cynodeai.tool_call")
    assert 1 <= named.count("cynodeai.iteration_start") == calls + 1 <= STEPS + 1
    assert not [r for r in caplog.records if "not valid" in r.getMessage()], "a decide answer did not validate"
    with orchestrator.db.session() as session:
        audited = session.execute(text("SELECT tool_name, decision FROM mcp_tool_call_audit_log")).all()
    assert [tuple(row) for row in audited] == [("help.list", "allow")] * calls
    data = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    assert any(d.get("choices") and d["choices"][0]["delta"].get("content") for d in data), "no answer text"
