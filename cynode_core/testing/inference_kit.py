"""The inference backend contract kit: :class:`InferenceBackendContract`.

What the node needs from an :class:`~cynode_core.contract.InferenceBackend`:
it calls ``start()``, then ``models()`` (and again for every capability
report and ``/readyz`` probe), and puts a per-job proxy in front of
``base_url`` that accepts only a loopback ``http://`` URL and relays
Ollama's endpoints as they answer (wire_contract.md, "Inference proxy").
A prompt job posts ``/api/generate`` with ``stream: false`` and reads
``response`` or ``error``; other jobs use ``/api/chat`` and NDJSON
streaming; ``stop()`` comes at shutdown. So the kit speaks Ollama's HTTP API
to ``base_url`` itself, with ``urllib`` and nothing beyond the standard
library. Subclass it and provide ``backend_factory``::

    class TestMyBackendContract(InferenceBackendContract):
        @pytest.fixture(scope="class")
        @classmethod
        def backend_factory(cls, tmp_path_factory):
            home = tmp_path_factory.mktemp("home")
            return lambda: MyBackend.from_options({"home": str(home)})

The factory returns a fresh, unstarted backend on each call and must be
class-, module- or session-scoped (in a class, such a fixture is a
``classmethod``): the kit starts one backend for the whole class (fixture
``backend``) and builds its own for the lifecycle cases. Set
``starts_its_server = False`` for a backend that reaches a server it did
not start: its ``stop()`` must then leave that server answering.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest

from cynode_core.contract import InferenceBackend, is_loopback_host, normalize_model_name

NDJSON = "application/x-ndjson"
UNKNOWN_MODEL = "cynode-no-such-model:missing"
NewBackend = Callable[[], InferenceBackend]

# A backend listens on loopback: its calls never go through a proxy named in the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclasses.dataclass(frozen=True)
class ApiReply:
    """One answer of the backend's HTTP API, read to its end."""

    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def lines(self) -> list[dict[str, Any]]:
        """The objects of an NDJSON answer, one per non-empty line."""
        return [json.loads(line) for line in self.body.splitlines() if line.strip()]


def api_call(base_url: str, method: str, path: str, payload: object = None, *, timeout: float = 120.0) -> ApiReply:
    """``method`` on ``base_url + path`` with ``payload`` as a JSON body; an HTTP error status is a reply too."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(base_url + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return ApiReply(response.status, response.headers.get("Content-Type", ""), response.read())
    except urllib.error.HTTPError as error:
        try:
            return ApiReply(error.code, error.headers.get("Content-Type", ""), error.read())
        finally:
            error.close()


def answers(base_url: str, timeout: float = 5.0) -> bool:
    """Whether anything answers HTTP at ``base_url`` now (``GET /api/version``, any status)."""
    try:
        api_call(base_url, "GET", "/api/version", timeout=timeout)
    except (OSError, http.client.HTTPException):
        return False
    return True


class InferenceBackendContract:
    """The behaviour every inference backend must show to the node and to its jobs."""

    # False for a backend that reaches a server it did not start (stop() leaves it running).
    starts_its_server: ClassVar[bool] = True
    # Short, repeatable answers; a backend must accept Ollama's options.
    generate_options: ClassVar[Mapping[str, Any]] = {"temperature": 0, "num_predict": 8}
    prompt: ClassVar[str] = "The capital of France is"
    chat_prompt: ClassVar[str] = "What is 2+2? Answer with one number."
    # The inference proxy gives each request 120 s end to end.
    request_timeout: ClassVar[float] = 120.0

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls, backend_factory: NewBackend) -> Iterator[InferenceBackend]:
        """One started backend for the class's cases that only talk to it."""
        started = backend_factory()
        started.start()
        yield started
        started.stop()

    def call(self, backend: InferenceBackend, method: str, path: str, payload: object = None) -> ApiReply:
        """``api_call`` against ``backend.base_url`` with the kit's timeout."""
        return api_call(backend.base_url, method, path, payload, timeout=self.request_timeout)

    def first_model(self, backend: InferenceBackend) -> str:
        """The model the generation cases ask for: the first that ``models()`` lists."""
        models = backend.models()
        assert models, f"backend {backend.name!r} lists no model after start()"
        return models[0]

    def request(self, path: str, model: str) -> dict[str, Any]:
        """A generate or chat request for ``model`` in Ollama's shape, without ``stream``."""
        body: dict[str, Any] = {"model": model, "options": dict(self.generate_options)}
        if path == "/api/chat":
            return body | {"messages": [{"role": "user", "content": self.chat_prompt}]}
        return body | {"prompt": self.prompt}

    @staticmethod
    def text_of(path: str, answer: Mapping[str, Any]) -> str:
        """The generated text an answer (or an NDJSON line) of ``path`` carries."""
        if path == "/api/chat":
            message = answer.get("message")
            assert isinstance(message, dict), f"no message object in {answer}"
            assert message.get("role") == "assistant", answer
            content = message.get("content")
        else:
            content = answer.get("response")
        assert isinstance(content, str), f"no text in {answer}"
        return content

    # -- what the node reads -----------------------------------------------------

    def test_is_an_inference_backend_with_a_name(self, backend: InferenceBackend) -> None:
        assert isinstance(backend, InferenceBackend)
        assert isinstance(backend.name, str) and backend.name.strip()

    def test_base_url_is_loopback_http_without_trailing_slash(self, backend: InferenceBackend) -> None:
        url = backend.base_url
        parts = urlsplit(url)
        assert parts.scheme == "http" and not url.endswith("/"), url
        assert not (parts.query or parts.fragment or parts.username), url
        assert is_loopback_host(parts.hostname or ""), f"{url}: the node's inference proxy takes only loopback"
        assert parts.port is None or 0 < parts.port < 65536, url

    def test_version_answers(self, backend: InferenceBackend) -> None:
        reply = self.call(backend, "GET", "/api/version")
        assert reply.status == 200, reply
        version = reply.json().get("version")
        assert isinstance(version, str) and version, reply

    def test_tags_list_what_models_returns(self, backend: InferenceBackend) -> None:
        reply = self.call(backend, "GET", "/api/tags")
        assert reply.status == 200 and reply.content_type.startswith("application/json"), reply
        listed = [entry["name"] for entry in reply.json()["models"]]
        models = backend.models()
        assert models and all(isinstance(name, str) and name.strip() for name in models), models
        assert {normalize_model_name(name) for name in models} == {normalize_model_name(name) for name in listed}

    def test_models_are_distinct_normalised_names(self, backend: InferenceBackend) -> None:
        normal = [normalize_model_name(name) for name in backend.models()]
        assert normal and len(set(normal)) == len(normal), f"two names of one model in {backend.models()}"
        # No prompt only loads the model (Ollama's done_reason "load"): the normal form names a known model.
        reply = self.call(backend, "POST", "/api/generate", {"model": normal[0], "stream": False})
        assert reply.status == 200 and reply.json().get("done") is True, reply

    # -- what jobs ask through the proxy -------------------------------------------

    @pytest.mark.parametrize("path", ["/api/generate", "/api/chat"])
    def test_a_non_streamed_answer_is_one_json_object(self, backend: InferenceBackend, path: str) -> None:
        reply = self.call(backend, "POST", path, self.request(path, self.first_model(backend)) | {"stream": False})
        assert reply.status == 200 and reply.content_type.startswith("application/json"), reply
        answer = reply.json()
        assert answer.get("done") is True and "error" not in answer, answer
        assert self.text_of(path, answer).strip(), f"empty answer: {answer}"

    @pytest.mark.parametrize("path", ["/api/generate", "/api/chat"])
    def test_streaming_is_the_default_and_ends_with_done(self, backend: InferenceBackend, path: str) -> None:
        reply = self.call(backend, "POST", path, self.request(path, self.first_model(backend)))
        assert reply.status == 200 and reply.content_type.startswith(NDJSON), reply
        lines = reply.lines()
        assert [line.get("done") for line in lines] == [False] * (len(lines) - 1) + [True], lines
        assert not any("error" in line for line in lines), lines
        assert "".join(self.text_of(path, line) for line in lines).strip(), lines

    @pytest.mark.parametrize("stream", [False, True])
    @pytest.mark.parametrize("path", ["/api/generate", "/api/chat"])
    def test_an_unknown_model_is_404_with_an_error(self, backend: InferenceBackend, path: str, stream: bool) -> None:
        reply = self.call(backend, "POST", path, self.request(path, UNKNOWN_MODEL) | {"stream": stream})
        assert reply.status == 404, reply  # Ollama's answer, before any stream starts; never a 500
        error = json.loads(reply.body).get("error")
        assert isinstance(error, str) and error, reply

    # -- lifecycle ---------------------------------------------------------------

    def test_stop_without_start_is_harmless(self, backend_factory: NewBackend) -> None:
        backend_factory().stop()

    def test_stop_ends_what_start_started(self, backend_factory: NewBackend) -> None:
        fresh = backend_factory()
        fresh.start()
        url = fresh.base_url
        try:
            assert answers(url), f"nothing answers at {url} after start()"
        finally:
            fresh.stop()
        fresh.stop()  # a second stop is harmless
        if self.starts_its_server:
            assert not answers(url), f"{url} still answers after stop()"
        else:
            assert answers(url), f"stop() must leave the server at {url} alone: the backend did not start it"

    def test_start_twice_is_harmless(self, backend_factory: NewBackend) -> None:
        fresh = backend_factory()
        fresh.start()
        url = fresh.base_url
        try:
            models = fresh.models()
            fresh.start()
            assert (fresh.base_url, fresh.models()) == (url, models)
            assert self.call(fresh, "GET", "/api/version").status == 200
        finally:
            fresh.stop()
        if self.starts_its_server:
            assert not answers(url), f"{url} still answers: the second start() left a server that stop() missed"
