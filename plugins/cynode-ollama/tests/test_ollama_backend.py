"""The ``ollama`` backend against a real Ollama-API server: real model, real HTTP, the official client."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cynode_llamacpp.backend import LlamaCppBackend
from cynode_ollama.backend import OllamaBackend

from cynode_core.contract import InferenceBackend, InferenceUnavailable
from cynode_core.plugin_manager import get_plugin_manager
from node_agent.registry import inference_backend_factories

MODEL = "gemma3:270m"
GREEDY = {"temperature": 0}


class _Recorder(BaseHTTPRequestHandler):
    """A bare Ollama look-alike with no models that records every request (to prove we never pull)."""

    seen: list[str]
    version_status = 200

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _answer(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.seen.append(f"GET {self.path}")
        if self.path == "/api/version":
            self._answer(self.version_status, {"version": "0.12.6"} if self.version_status == 200 else {})
        elif self.path == "/api/tags":
            self._answer(200, {"models": []})
        else:
            self._answer(404, {"error": "not found"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append(f"POST {self.path}")
        self._answer(404, {"error": "not found"})


@pytest.fixture
def recorder() -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("Recorder", (_Recorder,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_the_node_agent_finds_the_backend_by_name(ollama_server: LlamaCppBackend) -> None:
    factory = inference_backend_factories(get_plugin_manager())["ollama"]
    backend = factory({"ollama_url": ollama_server.base_url + "/", "model": None, "selected_model": MODEL})
    assert isinstance(backend, InferenceBackend) and backend.name == "ollama"
    assert backend.base_url == ollama_server.base_url  # the URL as configured, no trailing slash


def test_start_checks_version_and_models(backend: OllamaBackend, ollama_server: LlamaCppBackend) -> None:
    assert backend.server_version == "0.1.0"
    assert backend.models() == [MODEL]
    assert backend.base_url == ollama_server.base_url


def test_generate_with_the_official_client(backend: OllamaBackend) -> None:
    answer = backend.generate("The capital of France is", options={**GREEDY, "num_predict": 12})
    assert answer.done is True and answer.done_reason == "length" and answer.eval_count == 12
    assert "France" in answer.response or "Paris" in answer.response
    assert answer.context and answer.total_duration and answer.total_duration > 0


def test_streamed_generate_ends_with_the_counts(backend: OllamaBackend) -> None:
    parts = list(backend.generate("Once upon a time", stream=True, options={**GREEDY, "num_predict": 16}))
    assert all(part.done is False for part in parts[:-1]) and parts[-1].done is True
    assert parts[-1].eval_count == 16 and parts[-1].prompt_eval_count and parts[-1].eval_duration
    text = "".join(part.response or "" for part in parts)
    assert text.strip() and text == backend.generate("Once upon a time", options={**GREEDY, "num_predict": 16}).response


def test_chat_with_the_official_client(backend: OllamaBackend) -> None:
    answer = backend.chat([{"role": "user", "content": "What is 2+2? Answer with one number."}], options=GREEDY)
    assert answer.message.role == "assistant" and "4" in answer.message.content
    streamed = list(
        backend.chat([{"role": "user", "content": "Say hello."}], stream=True, options={**GREEDY, "num_predict": 12})
    )
    assert streamed[-1].done is True and "".join(p.message.content or "" for p in streamed).strip()


def test_a_missing_model_fails_start_and_is_never_pulled(recorder: tuple[str, type[_Recorder]]) -> None:
    url, handler = recorder
    backend = OllamaBackend.from_options({"ollama_url": url, "selected_model": "qwen3:8b"})
    with pytest.raises(InferenceUnavailable) as failure:
        backend.start()
    assert str(failure.value).startswith(f"model 'qwen3:8b' not found on the Ollama server at {url}; pull it there")
    assert handler.seen == ["GET /api/version", "GET /api/tags"]  # no /api/pull, nothing else


def test_the_real_server_missing_a_model(ollama_server: LlamaCppBackend) -> None:
    backend = OllamaBackend.from_options(
        {"ollama_url": ollama_server.base_url, "model": "llama3:8b", "selected_model": MODEL}
    )
    with pytest.raises(InferenceUnavailable, match="model 'llama3:8b' not found .*; the server has: gemma3:270m"):
        backend.start()
    # Names compare as Ollama compares them.
    same = OllamaBackend.from_options({"ollama_url": ollama_server.base_url, "model": "Gemma3:270M"})
    same.start()
    same.stop()


def test_an_unreachable_server_is_a_clear_error(closed_port_url: str) -> None:
    backend = OllamaBackend.from_options({"ollama_url": closed_port_url, "start_timeout": 0.5})
    started = time.monotonic()
    with pytest.raises(
        InferenceUnavailable, match=f"the Ollama server at {closed_port_url} is unreachable.*never starts one"
    ):
        backend.start()
    assert time.monotonic() - started < 5
    with pytest.raises(InferenceUnavailable, match="unreachable"):
        backend.models()


def test_something_else_at_the_url_is_not_taken_for_ollama(recorder: tuple[str, type[_Recorder]]) -> None:
    url, handler = recorder
    handler.version_status = 404
    with pytest.raises(InferenceUnavailable, match="HTTP 404 .*does not look like an Ollama server"):
        OllamaBackend.from_options({"ollama_url": url}).start()


def test_errors_of_the_server_become_inference_unavailable(backend: OllamaBackend) -> None:
    with pytest.raises(InferenceUnavailable, match='HTTP 404: model "nope:1b" not found, try pulling it first'):
        backend.generate("hi", model="nope:1b")
    with pytest.raises(InferenceUnavailable, match="HTTP 404"):
        list(backend.chat([{"role": "user", "content": "hi"}], model="nope:1b", stream=True))


def test_stop_leaves_the_server_running(backend: OllamaBackend, ollama_server: LlamaCppBackend) -> None:
    backend.stop()
    assert ollama_server.models() == [MODEL]
    again = OllamaBackend.from_options({"ollama_url": ollama_server.base_url, "selected_model": MODEL})
    again.start()
    assert again.models() == [MODEL]
    again.stop()


def test_a_server_that_goes_away_fails_the_readiness_probe(ollama_server: LlamaCppBackend) -> None:
    server = LlamaCppBackend.from_options({"home": str(ollama_server.settings.models_dir.parent)})
    server.start()
    backend = OllamaBackend.from_options({"ollama_url": server.base_url, "selected_model": MODEL})
    backend.start()
    server.stop()
    with pytest.raises(InferenceUnavailable, match="unreachable"):
        backend.models()


@pytest.mark.parametrize(
    ("options", "message"),
    [({"start_timeout": "soon"}, "start_timeout must be a number"), ({"request_timeout": -1}, "must not be negative")],
)
def test_bad_settings_are_named(options: dict[str, object], message: str) -> None:
    with pytest.raises(InferenceUnavailable, match=message):
        OllamaBackend.from_options(options)


def test_url_defaults_and_scheme() -> None:
    assert OllamaBackend.from_options({}, environ={}).base_url == "http://127.0.0.1:11434"
    assert (
        OllamaBackend.from_options({}, environ={"CYNODE_OLLAMA_URL": "10.0.0.5:11434/"}).base_url
        == "http://10.0.0.5:11434"
    )
    with pytest.raises(ValueError, match="no model named"):
        OllamaBackend.from_options({}, environ={}).generate("hi")
