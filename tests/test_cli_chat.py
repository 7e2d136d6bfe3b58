"""``cynode chat`` and ``cynode models list`` against a real orchestrator and a real model (issue 13, item 7).

The orchestrator is served on loopback in this process, with the embedded
llama.cpp backend behind ``CYNODE_CHAT_INFERENCE_URL``; the commands run
through click's CliRunner with credentials stored as ``cynode login`` leaves
them, and speak the same OpenAI endpoints every client uses.
"""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from cynode_llamacpp.backend import LlamaCppBackend
from harness.llama import MODEL
from sqlalchemy import text

from cynode_core.cli import main


@pytest.fixture
def settings_overrides(llama: LlamaCppBackend) -> dict[str, Any]:
    return {"chat_inference_url": llama.base_url, "inference_model": MODEL}


@pytest.fixture
def env(logged_in: tuple[dict[str, str], Any]) -> dict[str, str]:
    return logged_in[0]


def test_models_list_and_a_one_shot_chat(env: dict[str, str], orchestrator: Any) -> None:
    runner = CliRunner()
    listed = runner.invoke(main, ["models", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert listed.output.split() == ["cynodeai.pm", MODEL]
    once = runner.invoke(main, ["chat", "--model", MODEL, "-m", "Say the word yes."], env=env)
    assert once.exit_code == 0, once.output  # the answer (sampled: it may be short) is what was stored
    with orchestrator.db.engine.connect() as conn:
        stored = conn.execute(text("SELECT role, content FROM chat_messages ORDER BY created_at")).all()
    assert [r[0] for r in stored] == ["user", "assistant"]
    assert stored[1][1].strip() == once.output.strip()
    unknown = runner.invoke(main, ["chat", "--model", "nope", "-m", "hi"], env=env)
    assert unknown.exit_code != 0 and "model_not_found" in unknown.output


def test_an_interactive_chat_with_commands_and_a_new_conversation(env: dict[str, str], orchestrator: Any) -> None:
    session = "/models\nHello there.\n/new\nAnd again.\n/exit\n"
    done = CliRunner().invoke(main, ["chat", "--model", MODEL], input=session, env=env)
    assert done.exit_code == 0, done.output
    assert "* " + MODEL in done.output and "new conversation" in done.output
    with orchestrator.db.engine.connect() as conn:
        threads = conn.execute(
            text(
                "SELECT t.id, count(m.id) FROM chat_threads t JOIN chat_messages m ON m.thread_id = t.id GROUP BY t.id"
            )
        ).all()
    assert sorted(n for _, n in threads) == [2, 2]  # two conversations of one question and one answer each
