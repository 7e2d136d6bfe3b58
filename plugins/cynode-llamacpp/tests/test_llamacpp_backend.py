"""The ``llamacpp`` backend as the node agent uses it: found by name, started, asked, stopped."""

from __future__ import annotations

import contextlib
import functools
import http.client
import shutil
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cynode_llamacpp.backend import LlamaCppBackend
from cynode_llamacpp.model_file import bundled_model
from llamacpp_http import MODEL, generate, http_call, long_stream

from cynode_core.contract import InferenceBackend, InferenceUnavailable
from cynode_core.plugin_manager import get_plugin_manager
from node_agent.registry import inference_backend_factories

BUNDLED = "gemma-3-270m-q4_k_m.gguf"


def test_the_node_agent_finds_the_backend_by_name(llamacpp_home: Path) -> None:
    factories = inference_backend_factories(get_plugin_manager())
    backend = factories["llamacpp"]({"home": str(llamacpp_home), "model": None, "ollama_url": "unused"})
    assert isinstance(backend, InferenceBackend) and backend.name == "llamacpp"


def test_start_serves_on_loopback_and_stop_frees_it(llamacpp_home: Path) -> None:
    backend = LlamaCppBackend.from_options({"home": str(llamacpp_home), "selected_model": MODEL})
    backend.start()
    try:
        url = urlsplit(backend.base_url)
        assert url.scheme == "http" and url.hostname == "127.0.0.1" and url.port and not url.path
        assert backend.models() == [MODEL]
        assert backend.load_seconds is not None and backend.load_seconds < 30
        backend.start()  # a second start is a no-op
        assert urlsplit(backend.base_url).port == url.port
    finally:
        backend.stop()
    with pytest.raises(InferenceUnavailable, match="not started"):
        backend.models()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((url.hostname, url.port), timeout=2).close()
    backend.stop()  # idempotent


def test_the_bundled_model_is_assembled_once_and_reused(tmp_path: Path) -> None:
    backend = LlamaCppBackend.from_options({"home": str(tmp_path)})
    backend.start()
    backend.stop()
    model_file = tmp_path / "models" / BUNDLED
    assert model_file.stat().st_size == bundled_model().size
    assert [p.name for p in model_file.parent.iterdir()] == [BUNDLED]  # no partial file left behind
    first = model_file.stat().st_mtime_ns
    again = LlamaCppBackend.from_options({"home": str(tmp_path)})
    again.start()
    again.stop()
    assert model_file.stat().st_mtime_ns == first


def test_a_damaged_assembled_model_is_assembled_again(tmp_path: Path, llamacpp_home: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(llamacpp_home / "models" / BUNDLED, models / BUNDLED)
    with (models / BUNDLED).open("r+b") as damaged:  # same size, different bytes far into the weights
        damaged.seek(bundled_model().size - 4096)
        damaged.write(b"\x00" * 16)
    backend = LlamaCppBackend.from_options({"home": str(tmp_path)})
    backend.start()
    try:
        tags = http_call(backend.base_url, "GET", "/api/tags").json()
        assert tags["models"][0]["digest"] == bundled_model().sha256
    finally:
        backend.stop()


def test_a_missing_model_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    backend = LlamaCppBackend.from_options({"home": str(tmp_path), "model_path": str(missing)})
    with pytest.raises(InferenceUnavailable, match=f"model file {missing} does not exist"):
        backend.start()


@pytest.mark.parametrize("damage", ["junk", "truncated"])
def test_a_corrupt_model_file_is_named(tmp_path: Path, llamacpp_home: Path, damage: str) -> None:
    corrupt = tmp_path / f"{damage}.gguf"
    if damage == "junk":
        corrupt.write_bytes(b"this is not a GGUF file" * 100)
    else:
        with (llamacpp_home / "models" / BUNDLED).open("rb") as source:
            corrupt.write_bytes(source.read(1_000_000))
    backend = LlamaCppBackend.from_options({"home": str(tmp_path), "model_path": str(corrupt), "model": "mine:1b"})
    with pytest.raises(InferenceUnavailable, match=f"cannot load model file {corrupt}: .*gguf") as failure:
        backend.start()
    assert "magic" in str(failure.value) or "failed to read" in str(failure.value)
    assert backend.base_url == ""  # nothing serves


def test_a_selected_model_this_backend_cannot_serve_fails_start(llamacpp_home: Path) -> None:
    backend = LlamaCppBackend.from_options({"home": str(llamacpp_home), "selected_model": "qwen3:8b"})
    with pytest.raises(InferenceUnavailable, match="selected model 'qwen3:8b'.*serves 'gemma3:270m'"):
        backend.start()


def test_an_operator_gguf_is_served_under_the_configured_name(tmp_path: Path, llamacpp_home: Path) -> None:
    own = tmp_path / "my-model.gguf"
    own.symlink_to(llamacpp_home / "models" / BUNDLED)
    backend = LlamaCppBackend.from_options({"home": str(tmp_path), "model_path": str(own), "selected_model": "tiny:1b"})
    backend.start()
    try:
        assert backend.models() == ["tiny:1b"]
        call = functools.partial(http_call, backend.base_url)
        reply = generate(call, "Hello", model="tiny:1b", options={"num_predict": 2})
        assert reply.status == 200 and reply.json()["eval_count"] == 2
        assert not (tmp_path / "models").exists()  # the bundled model is not assembled when a path is given
    finally:
        backend.stop()


def test_a_taken_port_is_a_clear_failure(llamacpp_home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        backend = LlamaCppBackend.from_options({"home": str(llamacpp_home), "port": port})
        with pytest.raises(InferenceUnavailable, match=f"cannot listen on 127.0.0.1:{port}"):
            backend.start()


def test_stop_during_a_stream_ends_it_and_frees_the_model(llamacpp_home: Path) -> None:
    backend = LlamaCppBackend.from_options({"home": str(llamacpp_home)})
    backend.start()
    with long_stream(backend.base_url, num_predict=3000) as (response, first):
        assert first["done"] is False
        started = time.monotonic()
        backend.stop()
        assert time.monotonic() - started < 10
        rest = b""
        with contextlib.suppress(OSError, http.client.HTTPException):
            rest = response.read()
        assert b'"done": true' not in rest  # cut short, never reported as finished
    assert backend.base_url == ""
