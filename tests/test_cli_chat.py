"""``cynode chat`` and ``cynode models list`` against a real orchestrator and a real model (issue 13, item 7).

The orchestrator is served on loopback in this process, with the embedded
llama.cpp backend behind ``CYNODE_CHAT_INFERENCE_URL``; the commands run
through click's CliRunner with credentials stored as ``cynode login`` leaves
them, and speak the same OpenAI endpoints every client uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cynode_llamacpp.backend import LlamaCppBackend
from harness.api import ApiClient
from harness.llama import MODEL, llama_backend
from harness.orchestrator import USER_PASSWORD, create_users
from sqlalchemy import text

from cynode_core.cli import main
from cynode_core.client import Credentials


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppBackend]:
    with llama_backend(tmp_path_factory.mktemp("llama-home")) as backend:
        yield backend


@pytest.fixture
def settings_overrides(llama: LlamaCppBackend) -> dict[str, Any]:
    return {"chat_inference_url": llama.base_url, "inference_model": MODEL}


@pytest.fixture
def env(orchestrator: Any, live_orchestrator: str, tmp_path: Path) -> dict[str, str]:
    create_users(orchestrator.db, "erin")
    api = ApiClient(live_orchestrator)
    api.login("erin", USER_PASSWORD, expect=200)
    assert api.credentials is not None
    config = tmp_path / "config"
    stored = Credentials(live_orchestrator, api.token, api.credentials.refresh_token)
    stored.save(config / "cynode" / "credentials.json")
    return {"XDG_CONFIG_HOME": str(config)}


def test_models_list_and_a_one_shot_chat(env: dict[str, str], orchestrator: Any) -> None:
    runner = CliRunner()
    listed = runner.invoke(main, ["models", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert listed.output.split() == ["cynodeai.pm", MODEL]
    once = runner.invoke(main, ["chat", "--model", MODEL, "-m", "Say the word yes."], env=env)
    assert once.exit_code == 0, once.output
    assert once.output.strip()
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
